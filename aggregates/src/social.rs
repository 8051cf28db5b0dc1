//! Chat8's social half (seed 003): a `Friendship` per pair of accounts
//! (requests, acceptance, removal) and a `Conversation` per pair for their
//! direct messages, read marks and deletions. Both streams are named by the
//! pair (`<lower number>:<higher number>`), so 20 identical requests queue on
//! one stream and make one request.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::values::{bounded_text, invalid, InvalidValue};

/// The stream id of a pair of accounts (by number), whichever asks.
pub fn pair_id(a: i64, b: i64) -> String {
    format!("{}:{}", a.min(b), a.max(b))
}

/// A friend request's note: at most 200 characters, may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestNote(String);

impl RequestNote {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, "message", 200, true, true).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One of the seed's five message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectKind {
    Text,
    Image,
    File,
    Audio,
    Video,
}

impl DirectKind {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Ok(match raw {
            "text" => Self::Text,
            "image" => Self::Image,
            "file" => Self::File,
            "audio" => Self::Audio,
            "video" => Self::Video,
            _ => {
                return Err(invalid(
                    "message_type must be text, image, file, audio or video",
                ))
            }
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::File => "file",
            Self::Audio => "audio",
            Self::Video => "video",
        }
    }
}

/// A direct message's content: 1–10,000 characters (an encrypted one is the
/// client's ciphertext, as text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DirectContent(String);

impl DirectContent {
    pub const MAX_CHARS: usize = 10_000;
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, "content", Self::MAX_CHARS, false, true).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    Pending,
    Accepted,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Request {
    from: i64,
    to: i64,
    status: RequestStatus,
}

#[derive(Debug)]
pub enum FriendshipCommand {
    /// `request_id` is drawn by the adapter before the command runs.
    RequestFriendship {
        request_id: i64,
        from: i64,
        to: i64,
        note: RequestNote,
        at: DateTime<Utc>,
    },
    AnswerRequest {
        request_id: i64,
        by: i64,
        accept: bool,
        at: DateTime<Utc>,
    },
    RemoveFriend {
        by: i64,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FriendshipEvent {
    FriendRequested {
        request_id: i64,
        from_id: i64,
        to_id: i64,
        message: String,
        at: DateTime<Utc>,
    },
    /// The two are friends from here on.
    FriendRequestAccepted {
        request_id: i64,
        from_id: i64,
        to_id: i64,
        at: DateTime<Utc>,
    },
    FriendRequestRejected {
        request_id: i64,
        from_id: i64,
        to_id: i64,
        at: DateTime<Utc>,
    },
    FriendRemoved {
        by_id: i64,
        other_id: i64,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for FriendshipEvent {
    fn event_type(&self) -> String {
        match self {
            Self::FriendRequested { .. } => "FriendRequested",
            Self::FriendRequestAccepted { .. } => "FriendRequestAccepted",
            Self::FriendRequestRejected { .. } => "FriendRequestRejected",
            Self::FriendRemoved { .. } => "FriendRemoved",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FriendshipError {
    #[error("cannot befriend oneself")]
    SelfRequest,
    #[error("already friends")]
    AlreadyFriends,
    #[error("a request is already pending")]
    AlreadyRequested,
    #[error("no such friend request")]
    UnknownRequest,
    #[error("only the addressee answers a request")]
    NotAddressee,
    #[error("the request was handled already")]
    AlreadyHandled,
    #[error("not friends")]
    NotFriends,
}

/// Two accounts: their requests (each handled once) and whether they are
/// friends.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Friendship {
    friends: bool,
    requests: BTreeMap<i64, Request>,
}

impl Friendship {
    fn pending(&self) -> Option<(i64, &Request)> {
        self.requests
            .iter()
            .find(|(_, r)| r.status == RequestStatus::Pending)
            .map(|(id, r)| (*id, r))
    }
}

impl Aggregate for Friendship {
    const TYPE: &'static str = "Friendship";
    type Command = FriendshipCommand;
    type Event = FriendshipEvent;
    type Error = FriendshipError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            FriendshipCommand::RequestFriendship {
                request_id,
                from,
                to,
                note,
                at,
            } => {
                if from == to {
                    return Err(FriendshipError::SelfRequest);
                }
                if self.friends {
                    return Err(FriendshipError::AlreadyFriends);
                }
                match self.pending() {
                    Some((_, r)) if r.from == from => {
                        return Err(FriendshipError::AlreadyRequested)
                    }
                    // they asked first: asking back accepts theirs
                    Some((theirs, r)) => FriendshipEvent::FriendRequestAccepted {
                        request_id: theirs,
                        from_id: r.from,
                        to_id: r.to,
                        at,
                    },
                    None => FriendshipEvent::FriendRequested {
                        request_id,
                        from_id: from,
                        to_id: to,
                        message: note.0,
                        at,
                    },
                }
            }
            FriendshipCommand::AnswerRequest {
                request_id,
                by,
                accept,
                at,
            } => {
                let r = self
                    .requests
                    .get(&request_id)
                    .ok_or(FriendshipError::UnknownRequest)?;
                if r.to != by {
                    return Err(if r.from == by {
                        FriendshipError::NotAddressee
                    } else {
                        FriendshipError::UnknownRequest
                    });
                }
                if r.status != RequestStatus::Pending {
                    return Err(FriendshipError::AlreadyHandled);
                }
                let (from_id, to_id) = (r.from, r.to);
                if accept {
                    FriendshipEvent::FriendRequestAccepted {
                        request_id,
                        from_id,
                        to_id,
                        at,
                    }
                } else {
                    FriendshipEvent::FriendRequestRejected {
                        request_id,
                        from_id,
                        to_id,
                        at,
                    }
                }
            }
            FriendshipCommand::RemoveFriend { by, at } => {
                if !self.friends {
                    return Err(FriendshipError::NotFriends);
                }
                let other_id = self
                    .requests
                    .values()
                    .rev()
                    .find(|r| r.status == RequestStatus::Accepted)
                    .map(|r| if r.from == by { r.to } else { r.from })
                    .unwrap_or_default();
                FriendshipEvent::FriendRemoved {
                    by_id: by,
                    other_id,
                    at,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            FriendshipEvent::FriendRequested {
                request_id,
                from_id,
                to_id,
                ..
            } => {
                self.requests.insert(
                    request_id,
                    Request {
                        from: from_id,
                        to: to_id,
                        status: RequestStatus::Pending,
                    },
                );
            }
            FriendshipEvent::FriendRequestAccepted { request_id, .. } => {
                self.friends = true;
                if let Some(r) = self.requests.get_mut(&request_id) {
                    r.status = RequestStatus::Accepted;
                }
            }
            FriendshipEvent::FriendRequestRejected { request_id, .. } => {
                if let Some(r) = self.requests.get_mut(&request_id) {
                    r.status = RequestStatus::Rejected;
                }
            }
            FriendshipEvent::FriendRemoved { .. } => self.friends = false,
        }
    }
}

/// A file sent in a message: its bytes are kept by the adapter under their
/// hash; the event carries what identifies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentFile {
    pub sha256: String,
    pub name: String,
    pub size: i64,
    pub content_type: String,
}

#[derive(Debug)]
pub enum ConversationCommand {
    /// `message_id` is drawn by the adapter; that the two are friends is
    /// the adapter's check (the friendship is another stream).
    SendMessage {
        message_id: i64,
        sender: i64,
        receiver: i64,
        kind: DirectKind,
        content: DirectContent,
        encrypted: bool,
        at: DateTime<Utc>,
    },
    /// A file uploaded for the other (its bytes kept by the adapter): from
    /// here on the two may read it.
    ShareFile {
        sender: i64,
        receiver: i64,
        file: SentFile,
        at: DateTime<Utc>,
    },
    /// A read mark: `reader` has read every message up to `up_to` sent to
    /// them (ids the adapter found in this conversation).
    MarkRead {
        reader: i64,
        up_to: i64,
        at: DateTime<Utc>,
    },
    /// The sender deletes for both, the receiver for themself.
    DeleteMessage {
        message_id: i64,
        by: i64,
        for_both: bool,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConversationEvent {
    DirectMessageSent {
        message_id: i64,
        sender_id: i64,
        receiver_id: i64,
        message_type: DirectKind,
        content: String,
        is_encrypted: bool,
        sent_at: DateTime<Utc>,
    },
    FileShared {
        sender_id: i64,
        receiver_id: i64,
        file: SentFile,
        at: DateTime<Utc>,
    },
    DirectMessagesRead {
        reader_id: i64,
        up_to: i64,
        at: DateTime<Utc>,
    },
    /// A tombstone: the read model forgets the content (for both) or hides
    /// the message from `by_id`.
    DirectMessageDeleted {
        message_id: i64,
        by_id: i64,
        for_both: bool,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for ConversationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::DirectMessageSent { .. } => "DirectMessageSent",
            Self::FileShared { .. } => "FileShared",
            Self::DirectMessagesRead { .. } => "DirectMessagesRead",
            Self::DirectMessageDeleted { .. } => "DirectMessageDeleted",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    #[error("a conversation is between two others")]
    SelfMessage,
}

/// Two accounts' messages: only the read marks are state (what a mark
/// covers is decided by the mark, not by the messages), so the stream's
/// snapshots stay small however long the conversation.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Conversation {
    read_up_to: BTreeMap<i64, i64>,
    deleted: u64,
}

impl Aggregate for Conversation {
    const TYPE: &'static str = "Conversation";
    type Command = ConversationCommand;
    type Event = ConversationEvent;
    type Error = ConversationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            ConversationCommand::SendMessage {
                message_id,
                sender,
                receiver,
                kind,
                content,
                encrypted,
                at,
            } => {
                if sender == receiver {
                    return Err(ConversationError::SelfMessage);
                }
                ConversationEvent::DirectMessageSent {
                    message_id,
                    sender_id: sender,
                    receiver_id: receiver,
                    message_type: kind,
                    content: content.0,
                    is_encrypted: encrypted,
                    sent_at: at,
                }
            }
            ConversationCommand::ShareFile {
                sender,
                receiver,
                file,
                at,
            } => {
                if sender == receiver {
                    return Err(ConversationError::SelfMessage);
                }
                ConversationEvent::FileShared {
                    sender_id: sender,
                    receiver_id: receiver,
                    file,
                    at,
                }
            }
            ConversationCommand::MarkRead { reader, up_to, at } => {
                // a mark at or before the last one changes nothing
                if self.read_up_to.get(&reader).is_some_and(|m| *m >= up_to) {
                    return Ok(());
                }
                ConversationEvent::DirectMessagesRead {
                    reader_id: reader,
                    up_to,
                    at,
                }
            }
            ConversationCommand::DeleteMessage {
                message_id,
                by,
                for_both,
                at,
            } => ConversationEvent::DirectMessageDeleted {
                message_id,
                by_id: by,
                for_both,
                at,
            },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ConversationEvent::DirectMessagesRead {
                reader_id, up_to, ..
            } => {
                self.read_up_to.insert(reader_id, up_to);
            }
            ConversationEvent::DirectMessageDeleted { .. } => self.deleted += 1,
            ConversationEvent::DirectMessageSent { .. } | ConversationEvent::FileShared { .. } => {}
        }
    }
}

/// A public key as clients publish them: PEM (`-----BEGIN PUBLIC KEY-----`),
/// a JWK (`{"kty": …}`), or base64 / base64url of 32 to 4096 bytes; at
/// most 8 KiB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PublicKey(String);

fn base64_len(body: &str) -> Option<usize> {
    let body: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let trimmed = body.trim_end_matches('=');
    let ok = !trimmed.is_empty()
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'));
    (ok && trimmed.len() % 4 != 1).then(|| trimmed.len() * 3 / 4)
}

impl PublicKey {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let raw = raw.trim();
        let bad = || invalid("public_key must be PEM, a JWK or base64 of 32 to 4096 bytes");
        if raw.is_empty() || raw.len() > 8192 {
            return Err(bad());
        }
        let bytes = if let Some(rest) = raw.strip_prefix("-----BEGIN ") {
            let (label, rest) = rest.split_once("-----").ok_or_else(bad)?;
            let end = format!("-----END {label}-----");
            let body = rest.trim().strip_suffix(end.as_str()).ok_or_else(bad)?;
            if !label.contains("PUBLIC KEY") {
                return Err(bad());
            }
            base64_len(body).ok_or_else(bad)?
        } else if raw.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(raw).map_err(|_| bad())?;
            if !v.get("kty").is_some_and(serde_json::Value::is_string) {
                return Err(bad());
            }
            32
        } else {
            base64_len(raw).ok_or_else(bad)?
        };
        if !(32..=4096).contains(&bytes) {
            return Err(bad());
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The private key as the client encrypted it: opaque, 1 to 16 KiB.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedKey(String);

impl SealedKey {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.is_empty() || raw.len() > 16 * 1024 {
            return Err(invalid("private_key_encrypted must be 1 to 16384 bytes"));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedKey(<redacted>)")
    }
}

#[derive(Debug)]
pub enum KeysCommand {
    PublishKeys {
        user_id: i64,
        public_key: PublicKey,
        private_key_encrypted: SealedKey,
        at: DateTime<Utc>,
    },
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub enum KeysEvent {
    /// A (new) key pair; friends are told, as safety numbers change.
    KeysPublished {
        user_id: i64,
        public_key: String,
        private_key_encrypted: String,
        at: DateTime<Utc>,
    },
}

impl std::fmt::Debug for KeysEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let KeysEvent::KeysPublished { user_id, at, .. } = self;
        write!(f, "KeysPublished {{ user_id: {user_id}, at: {at}, .. }}")
    }
}

impl DomainEvent for KeysEvent {
    fn event_type(&self) -> String {
        "KeysPublished".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {}

/// An account's end-to-end key pair (stream id: the account number).
/// Publishing the same pair again records nothing.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct EncryptionKeys {
    public_key: Option<String>,
    sealed: Option<String>,
}

impl Aggregate for EncryptionKeys {
    const TYPE: &'static str = "EncryptionKeys";
    type Command = KeysCommand;
    type Event = KeysEvent;
    type Error = KeysError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let KeysCommand::PublishKeys {
            user_id,
            public_key,
            private_key_encrypted,
            at,
        } = command;
        let same = self.public_key.as_deref() == Some(public_key.as_str())
            && self.sealed.as_deref() == Some(private_key_encrypted.expose());
        if !same {
            let event = KeysEvent::KeysPublished {
                user_id,
                public_key: public_key.0,
                private_key_encrypted: private_key_encrypted.0,
                at,
            };
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let KeysEvent::KeysPublished {
            public_key,
            private_key_encrypted,
            ..
        } = event;
        self.public_key = Some(public_key);
        self.sealed = Some(private_key_encrypted);
    }
}

/// Voice or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallKind {
    Voice,
    Video,
}

/// What the invited (or the inviter) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallAction {
    Accept,
    Reject,
    End,
}

#[derive(Debug)]
pub enum CallCommand {
    Invite {
        kind: CallKind,
        from: i64,
        to: i64,
        at: DateTime<Utc>,
    },
    Answer {
        by: i64,
        action: CallAction,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CallEvent {
    CallInvited {
        kind: CallKind,
        from_id: i64,
        to_id: i64,
        at: DateTime<Utc>,
    },
    CallAnswered {
        action: CallAction,
        by_id: i64,
        other_id: i64,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for CallEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CallInvited { .. } => "CallInvited",
            Self::CallAnswered { .. } => "CallAnswered",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("no such call")]
    UnknownCall,
    #[error("not a party of this call")]
    NotAParty,
    #[error("the call has ended")]
    Ended,
}

/// A call between two friends (stream id: the call id). The media do not
/// pass here: only the invitation and its answers, relayed to the other.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Call {
    parties: Option<(i64, i64)>,
    answered: bool,
    ended: bool,
}

impl Aggregate for Call {
    const TYPE: &'static str = "Call";
    type Command = CallCommand;
    type Event = CallEvent;
    type Error = CallError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            CallCommand::Invite { kind, from, to, at } => {
                if self.parties.is_some() {
                    return Ok(());
                }
                CallEvent::CallInvited {
                    kind,
                    from_id: from,
                    to_id: to,
                    at,
                }
            }
            CallCommand::Answer { by, action, at } => {
                let (from, to) = self.parties.ok_or(CallError::UnknownCall)?;
                if by != from && by != to {
                    return Err(CallError::NotAParty);
                }
                if self.ended {
                    return Err(CallError::Ended);
                }
                // only the invited accepts or rejects; either ends
                if action != CallAction::End && (by != to || self.answered) {
                    return Err(CallError::NotAParty);
                }
                CallEvent::CallAnswered {
                    action,
                    by_id: by,
                    other_id: if by == from { to } else { from },
                    at,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CallEvent::CallInvited { from_id, to_id, .. } => self.parties = Some((from_id, to_id)),
            CallEvent::CallAnswered { action, .. } => {
                self.answered = true;
                self.ended |= action != CallAction::Accept;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).unwrap()
    }

    fn ask(request_id: i64, from: i64, to: i64) -> FriendshipCommand {
        FriendshipCommand::RequestFriendship {
            request_id,
            from,
            to,
            note: RequestNote::parse("hi").unwrap(),
            at: at(),
        }
    }

    fn asked(request_id: i64, from: i64, to: i64) -> FriendshipEvent {
        FriendshipEvent::FriendRequested {
            request_id,
            from_id: from,
            to_id: to,
            message: "hi".into(),
            at: at(),
        }
    }

    fn accepted(request_id: i64, from: i64, to: i64) -> FriendshipEvent {
        FriendshipEvent::FriendRequestAccepted {
            request_id,
            from_id: from,
            to_id: to,
            at: at(),
        }
    }

    #[test]
    fn a_request_is_made_once_and_never_to_oneself() {
        TestFramework::<Friendship>::with(())
            .given_no_previous_events()
            .when(ask(1, 10, 20))
            .then_expect_events(vec![asked(1, 10, 20)]);
        TestFramework::<Friendship>::with(())
            .given(vec![asked(1, 10, 20)])
            .when(ask(2, 10, 20))
            .then_expect_error(FriendshipError::AlreadyRequested);
        TestFramework::<Friendship>::with(())
            .given_no_previous_events()
            .when(ask(1, 10, 10))
            .then_expect_error(FriendshipError::SelfRequest);
        TestFramework::<Friendship>::with(())
            .given(vec![asked(1, 10, 20), accepted(1, 10, 20)])
            .when(ask(2, 20, 10))
            .then_expect_error(FriendshipError::AlreadyFriends);
    }

    #[test]
    fn asking_someone_who_asked_you_accepts_their_request() {
        TestFramework::<Friendship>::with(())
            .given(vec![asked(1, 10, 20)])
            .when(ask(2, 20, 10))
            .then_expect_events(vec![accepted(1, 10, 20)]);
    }

    #[test]
    fn only_the_addressee_answers_and_only_once() {
        let answer = |by, accept| FriendshipCommand::AnswerRequest {
            request_id: 1,
            by,
            accept,
            at: at(),
        };
        TestFramework::<Friendship>::with(())
            .given(vec![asked(1, 10, 20)])
            .when(answer(10, true))
            .then_expect_error(FriendshipError::NotAddressee);
        TestFramework::<Friendship>::with(())
            .given(vec![asked(1, 10, 20)])
            .when(answer(30, true))
            .then_expect_error(FriendshipError::UnknownRequest);
        TestFramework::<Friendship>::with(())
            .given(vec![asked(1, 10, 20)])
            .when(answer(20, false))
            .then_expect_events(vec![FriendshipEvent::FriendRequestRejected {
                request_id: 1,
                from_id: 10,
                to_id: 20,
                at: at(),
            }]);
        TestFramework::<Friendship>::with(())
            .given(vec![
                asked(1, 10, 20),
                FriendshipEvent::FriendRequestRejected {
                    request_id: 1,
                    from_id: 10,
                    to_id: 20,
                    at: at(),
                },
            ])
            .when(answer(20, true))
            .then_expect_error(FriendshipError::AlreadyHandled);
        // after a rejection a new request may be made
        TestFramework::<Friendship>::with(())
            .given(vec![
                asked(1, 10, 20),
                FriendshipEvent::FriendRequestRejected {
                    request_id: 1,
                    from_id: 10,
                    to_id: 20,
                    at: at(),
                },
            ])
            .when(ask(2, 10, 20))
            .then_expect_events(vec![asked(2, 10, 20)]);
    }

    #[test]
    fn friends_are_removed_once() {
        let remove = || FriendshipCommand::RemoveFriend { by: 20, at: at() };
        TestFramework::<Friendship>::with(())
            .given(vec![asked(1, 10, 20), accepted(1, 10, 20)])
            .when(remove())
            .then_expect_events(vec![FriendshipEvent::FriendRemoved {
                by_id: 20,
                other_id: 10,
                at: at(),
            }]);
        TestFramework::<Friendship>::with(())
            .given(vec![
                asked(1, 10, 20),
                accepted(1, 10, 20),
                FriendshipEvent::FriendRemoved {
                    by_id: 20,
                    other_id: 10,
                    at: at(),
                },
            ])
            .when(remove())
            .then_expect_error(FriendshipError::NotFriends);
    }

    #[test]
    fn a_read_mark_only_moves_forward() {
        let mark = |up_to| ConversationCommand::MarkRead {
            reader: 20,
            up_to,
            at: at(),
        };
        let marked = |up_to| ConversationEvent::DirectMessagesRead {
            reader_id: 20,
            up_to,
            at: at(),
        };
        TestFramework::<Conversation>::with(())
            .given(vec![marked(5)])
            .when(mark(7))
            .then_expect_events(vec![marked(7)]);
        TestFramework::<Conversation>::with(())
            .given(vec![marked(5)])
            .when(mark(5))
            .then_expect_events(vec![]);
    }

    #[test]
    fn message_types_and_pairs_parse() {
        assert_eq!(DirectKind::parse("video").unwrap(), DirectKind::Video);
        assert!(DirectKind::parse("gif").is_err());
        assert_eq!(pair_id(9, 3), "3:9");
        assert!(DirectContent::parse("").is_err());
        assert!(RequestNote::parse("").is_ok());
    }

    #[test]
    fn public_keys_are_pem_jwk_or_base64_and_a_republish_records_nothing() {
        let b64 = "A".repeat(44);
        assert!(PublicKey::parse(&b64).is_ok());
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----");
        assert!(PublicKey::parse(&pem).is_ok());
        assert!(PublicKey::parse(r#"{"kty":"EC","crv":"P-256","x":"a","y":"b"}"#).is_ok());
        for bad in [
            "",
            "short",
            "not base64!!",
            "{\"x\":1}",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ] {
            assert!(PublicKey::parse(bad).is_err(), "{bad}");
        }
        assert!(!format!("{:?}", SealedKey::parse("secret").unwrap()).contains("secret"));
        let publish = || KeysCommand::PublishKeys {
            user_id: 1,
            public_key: PublicKey::parse(&b64).unwrap(),
            private_key_encrypted: SealedKey::parse("sealed").unwrap(),
            at: at(),
        };
        let published = KeysEvent::KeysPublished {
            user_id: 1,
            public_key: b64.clone(),
            private_key_encrypted: "sealed".into(),
            at: at(),
        };
        TestFramework::<EncryptionKeys>::with(())
            .given_no_previous_events()
            .when(publish())
            .then_expect_events(vec![published.clone()]);
        TestFramework::<EncryptionKeys>::with(())
            .given(vec![published])
            .when(publish())
            .then_expect_events(vec![]);
    }

    #[test]
    fn only_the_invited_answers_a_call_and_an_ended_call_stays_ended() {
        let invited = CallEvent::CallInvited {
            kind: CallKind::Voice,
            from_id: 1,
            to_id: 2,
            at: at(),
        };
        let answer = |by, action| CallCommand::Answer {
            by,
            action,
            at: at(),
        };
        TestFramework::<Call>::with(())
            .given(vec![invited.clone()])
            .when(answer(2, CallAction::Accept))
            .then_expect_events(vec![CallEvent::CallAnswered {
                action: CallAction::Accept,
                by_id: 2,
                other_id: 1,
                at: at(),
            }]);
        TestFramework::<Call>::with(())
            .given(vec![invited.clone()])
            .when(answer(1, CallAction::Accept))
            .then_expect_error(CallError::NotAParty);
        TestFramework::<Call>::with(())
            .given(vec![invited.clone()])
            .when(answer(3, CallAction::End))
            .then_expect_error(CallError::NotAParty);
        TestFramework::<Call>::with(())
            .given(vec![
                invited,
                CallEvent::CallAnswered {
                    action: CallAction::Reject,
                    by_id: 2,
                    other_id: 1,
                    at: at(),
                },
            ])
            .when(answer(1, CallAction::End))
            .then_expect_error(CallError::Ended);
        TestFramework::<Call>::with(())
            .given_no_previous_events()
            .when(answer(1, CallAction::End))
            .then_expect_error(CallError::UnknownCall);
    }
}

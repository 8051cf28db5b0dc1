//! Chat8's social service (seed 003): friend requests, friendships, direct
//! messages, read marks, deletions, shared files and published keys. Takes
//! the narrow [`Core`]; the surface maps [`SocialError`] to its codes.

pub mod feed;
pub mod files;
pub mod presence;

use aggregates::social::{
    pair_id, CallAction, CallCommand, CallError, CallKind, ConversationCommand, ConversationError,
    DirectContent, DirectKind, FriendshipCommand, FriendshipError, KeysCommand, KeysError,
    PublicKey, RequestNote, SealedKey, SentFile,
};
use projections::social as read;

use crate::core::Core;
use crate::store::{CommandError, CommandMeta, LogPosition};

/// The read model every social command waits for.
pub const READ_MODELS: &[&str] = &["social"];

#[derive(Debug, thiserror::Error)]
pub enum SocialError {
    #[error("no such user")]
    UnknownUser,
    #[error("cannot befriend oneself")]
    SelfRequest,
    #[error("a request is pending or they are friends already")]
    AlreadyRequested,
    #[error("no such friend request")]
    UnknownRequest,
    #[error("only the addressee answers a request")]
    NotAddressee,
    #[error("the request was handled already")]
    AlreadyHandled,
    #[error("not friends")]
    NotFriends,
    #[error("no such message")]
    UnknownMessage,
    #[error("not your message")]
    NotYourMessage,
    #[error("no such call")]
    UnknownCall,
    #[error("not a party of this call, or not its turn")]
    NotYourCall,
    #[error("the call has ended")]
    CallEnded,
    #[error("busy, retry")]
    Contended,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T> = std::result::Result<T, SocialError>;

impl From<sqlx::Error> for SocialError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

fn store<E: std::error::Error>(e: CommandError<E>) -> SocialError {
    match e {
        CommandError::Contended => SocialError::Contended,
        other => SocialError::Internal(anyhow::anyhow!("{other}")),
    }
}

impl From<CommandError<FriendshipError>> for SocialError {
    fn from(e: CommandError<FriendshipError>) -> Self {
        match e {
            CommandError::Domain(d) => match d {
                FriendshipError::SelfRequest => Self::SelfRequest,
                FriendshipError::AlreadyFriends | FriendshipError::AlreadyRequested => {
                    Self::AlreadyRequested
                }
                FriendshipError::UnknownRequest => Self::UnknownRequest,
                FriendshipError::NotAddressee => Self::NotAddressee,
                FriendshipError::AlreadyHandled => Self::AlreadyHandled,
                FriendshipError::NotFriends => Self::NotFriends,
            },
            other => store(other),
        }
    }
}

impl From<CommandError<ConversationError>> for SocialError {
    fn from(e: CommandError<ConversationError>) -> Self {
        match e {
            CommandError::Domain(ConversationError::SelfMessage) => Self::NotFriends,
            other => store(other),
        }
    }
}

impl From<CommandError<CallError>> for SocialError {
    fn from(e: CommandError<CallError>) -> Self {
        match e {
            CommandError::Domain(CallError::UnknownCall) => Self::UnknownCall,
            CommandError::Domain(CallError::NotAParty) => Self::NotYourCall,
            CommandError::Domain(CallError::Ended) => Self::CallEnded,
            other => store(other),
        }
    }
}

impl From<CommandError<KeysError>> for SocialError {
    fn from(e: CommandError<KeysError>) -> Self {
        store(e)
    }
}

async fn next_id(core: &Core, sequence: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(&format!("SELECT nextval('{sequence}')"))
        .fetch_one(&core.pool)
        .await?)
}

async fn known(core: &Core, number: i64) -> Result<()> {
    projections::accounts::by_number(&core.pool, number)
        .await?
        .map(|_| ())
        .ok_or(SocialError::UnknownUser)
}

/// What a friend request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    Pending(i64),
    /// the other had asked first: their request is accepted
    Accepted(i64),
}

pub async fn request_friend(
    core: &Core,
    meta: &CommandMeta,
    from: i64,
    to: i64,
    note: RequestNote,
) -> Result<Requested> {
    if from == to {
        return Err(SocialError::SelfRequest);
    }
    known(core, to).await?;
    let request_id = next_id(core, "friend_request_ids").await?;
    let at = crate::store::now();
    let pos = core
        .store
        .execute(&core.store.friendships, &pair_id(from, to), meta, || {
            FriendshipCommand::RequestFriendship {
                request_id,
                from,
                to,
                note: note.clone(),
                at,
            }
        })
        .await?;
    core.settle(READ_MODELS, pos).await;
    let r = read::request(&core.pool, request_id).await?;
    Ok(match r {
        Some(_) => Requested::Pending(request_id),
        None => {
            // theirs was accepted: find it
            let theirs: Option<i64> = sqlx::query_scalar(
                "SELECT request_id FROM friend_requests WHERE from_id = $1 AND to_id = $2
                  ORDER BY request_id DESC LIMIT 1",
            )
            .bind(to)
            .bind(from)
            .fetch_optional(&core.pool)
            .await?;
            Requested::Accepted(theirs.unwrap_or_default())
        }
    })
}

pub async fn answer_request(
    core: &Core,
    meta: &CommandMeta,
    by: i64,
    request_id: i64,
    accept: bool,
) -> Result<()> {
    let r = read::request(&core.pool, request_id)
        .await?
        .ok_or(SocialError::UnknownRequest)?;
    if r.to_id != by && r.from_id != by {
        return Err(SocialError::UnknownRequest);
    }
    let at = crate::store::now();
    let pos = core
        .store
        .execute(
            &core.store.friendships,
            &pair_id(r.from_id, r.to_id),
            meta,
            || FriendshipCommand::AnswerRequest {
                request_id,
                by,
                accept,
                at,
            },
        )
        .await?;
    core.settle(READ_MODELS, pos).await;
    Ok(())
}

pub async fn remove_friend(core: &Core, meta: &CommandMeta, by: i64, friend: i64) -> Result<()> {
    let at = crate::store::now();
    let pos = core
        .store
        .execute(&core.store.friendships, &pair_id(by, friend), meta, || {
            FriendshipCommand::RemoveFriend { by, at }
        })
        .await?;
    core.settle(READ_MODELS, pos).await;
    Ok(())
}

pub struct Sent {
    pub message_id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub position: Option<LogPosition>,
}

/// Sends a message to a friend (only friends: another stream's state, read
/// from its read model, which every friendship change settles before it
/// answers).
pub async fn send_message(
    core: &Core,
    meta: &CommandMeta,
    sender: i64,
    receiver: i64,
    kind: DirectKind,
    content: DirectContent,
    encrypted: bool,
) -> Result<Sent> {
    // whether they are friends and, if so, the message's id: one round trip
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT nextval('direct_message_ids') FROM friendships WHERE user_id = $1 AND friend_id = $2",
    )
    .bind(sender)
    .bind(receiver)
    .fetch_optional(&core.pool)
    .await?;
    let Some(message_id) = id else {
        known(core, receiver).await?;
        return Err(SocialError::NotFriends);
    };
    let at = crate::store::now();
    let pos = core
        .store
        .execute(
            &core.store.conversations,
            &pair_id(sender, receiver),
            meta,
            || ConversationCommand::SendMessage {
                message_id,
                sender,
                receiver,
                kind,
                content: content.clone(),
                encrypted,
                at,
            },
        )
        .await?;
    core.settle_on_read(READ_MODELS, pos).await;
    Ok(Sent {
        message_id,
        at,
        position: pos,
    })
}

/// A read mark: the message and every earlier one sent to the reader.
pub async fn mark_read(
    core: &Core,
    meta: &CommandMeta,
    reader: i64,
    message_id: i64,
) -> Result<()> {
    let m = read::message(&core.pool, message_id)
        .await?
        .filter(|m| !m.deleted)
        .ok_or(SocialError::UnknownMessage)?;
    if m.receiver_id != reader {
        return Err(SocialError::NotYourMessage);
    }
    let at = crate::store::now();
    let pos = core
        .store
        .execute(
            &core.store.conversations,
            &pair_id(m.sender_id, m.receiver_id),
            meta,
            || ConversationCommand::MarkRead {
                reader,
                up_to: message_id,
                at,
            },
        )
        .await?;
    core.settle(READ_MODELS, pos).await;
    Ok(())
}

/// The sender deletes a message for both; the receiver hides it for
/// themself.
pub async fn delete_message(
    core: &Core,
    meta: &CommandMeta,
    by: i64,
    message_id: i64,
) -> Result<()> {
    let m = read::message(&core.pool, message_id)
        .await?
        .filter(|m| !m.deleted)
        .ok_or(SocialError::UnknownMessage)?;
    let for_both = if m.sender_id == by {
        true
    } else if m.receiver_id == by {
        if m.hidden_for_receiver {
            return Err(SocialError::UnknownMessage);
        }
        false
    } else {
        return Err(SocialError::NotYourMessage);
    };
    let at = crate::store::now();
    let pos = core
        .store
        .execute(
            &core.store.conversations,
            &pair_id(m.sender_id, m.receiver_id),
            meta,
            || ConversationCommand::DeleteMessage {
                message_id,
                by,
                for_both,
                at,
            },
        )
        .await?;
    core.settle(READ_MODELS, pos).await;
    Ok(())
}

/// Lets `receiver` (a friend) read a file `sender` uploaded.
pub async fn share_file(
    core: &Core,
    meta: &CommandMeta,
    sender: i64,
    receiver: i64,
    file: SentFile,
) -> Result<()> {
    known(core, receiver).await?;
    if !read::are_friends(&core.pool, sender, receiver).await? {
        return Err(SocialError::NotFriends);
    }
    let at = crate::store::now();
    let pos = core
        .store
        .execute(
            &core.store.conversations,
            &pair_id(sender, receiver),
            meta,
            || ConversationCommand::ShareFile {
                sender,
                receiver,
                file: file.clone(),
                at,
            },
        )
        .await?;
    core.settle(READ_MODELS, pos).await;
    Ok(())
}

pub async fn publish_keys(
    core: &Core,
    meta: &CommandMeta,
    user: i64,
    public_key: PublicKey,
    sealed: SealedKey,
) -> Result<()> {
    let at = crate::store::now();
    let pos = core
        .store
        .execute(&core.store.encryption_keys, &user.to_string(), meta, || {
            KeysCommand::PublishKeys {
                user_id: user,
                public_key: public_key.clone(),
                private_key_encrypted: sealed.clone(),
                at,
            }
        })
        .await?;
    core.settle(READ_MODELS, pos).await;
    Ok(())
}

/// Invites a friend to a call; the invitation reaches their sockets from
/// the log. Answers the new call's id.
pub async fn invite_call(
    core: &Core,
    meta: &CommandMeta,
    kind: CallKind,
    from: i64,
    to: i64,
) -> Result<String> {
    if from == to {
        return Err(SocialError::NotFriends);
    }
    known(core, to).await?;
    if !read::are_friends(&core.pool, from, to).await? {
        return Err(SocialError::NotFriends);
    }
    let call_id = uuid::Uuid::now_v7().to_string();
    let at = crate::store::now();
    core.store
        .execute(&core.store.calls, &call_id, meta, || CallCommand::Invite {
            kind,
            from,
            to,
            at,
        })
        .await?;
    Ok(call_id)
}

/// Accepts, rejects or ends a call; the other party hears it.
pub async fn answer_call(
    core: &Core,
    meta: &CommandMeta,
    call_id: &str,
    by: i64,
    action: CallAction,
) -> Result<()> {
    // not a call id: no such call (and no stream named by a client's junk)
    if uuid::Uuid::parse_str(call_id).is_err() {
        return Err(SocialError::UnknownCall);
    }
    let at = crate::store::now();
    core.store
        .execute(&core.store.calls, call_id, meta, || CallCommand::Answer {
            by,
            action,
            at,
        })
        .await?;
    Ok(())
}

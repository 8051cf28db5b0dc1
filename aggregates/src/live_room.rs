//! LiveRoom (seed 000): an anchor's room for one AI role-play character
//! (a SillyTavern card): its settings, whether it is live, and the anchor's
//! chat with the character as it grows. Viewers' chat is not here (see
//! `audience`): a room with thousands of chatters must not queue them all
//! on this stream's lock.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{bounded_text, invalid, InvalidValue};

/// A room id: 16 lowercase hexadecimal characters (as the seed shows).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LiveRoomId(String);

impl LiveRoomId {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = raw.len() == 16
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(invalid("room_id must be 16 lowercase hex characters"));
        }
        Ok(Self(raw.to_owned()))
    }
    /// A fresh id from 8 random bytes.
    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LiveRoomId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $empty:expr, $multiline:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;
            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                bounded_text(raw, $what, $max, $empty, $multiline).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

text_value!(
    /// The live title shown in the lists; may be empty.
    RoomTitle, "title", 100, true, false
);
text_value!(
    /// The room's description; may be empty.
    RoomDescribe, "describe", 2000, true, true
);
text_value!(
    /// The character's name, from its card.
    CharacterName, "character name", 100, false, false
);
text_value!(
    /// A chat message of the anchor or the character.
    ChatText, "mes", 20_000, false, true
);
text_value!(
    /// Who wrote a chat message (the anchor's persona or the character).
    SenderName, "name", 100, false, false
);

/// Free, or paid once per viewer (`coin_num` coins, 1 ..= 1,000,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomAccess {
    Free,
    Vip(i64),
}

impl RoomAccess {
    pub const MAX_PRICE: i64 = 1_000_000;

    /// From the contract's `room_type` (0 free, 1 paid) and `coin_num`; a
    /// free room's price is 0 whatever `coin_num` says.
    pub fn parse(room_type: i64, coin_num: i64) -> Result<Self, InvalidValue> {
        match room_type {
            0 => Ok(Self::Free),
            1 if (1..=Self::MAX_PRICE).contains(&coin_num) => Ok(Self::Vip(coin_num)),
            1 => Err(invalid(
                "a paid room (room_type 1) needs coin_num between 1 and 1000000",
            )),
            _ => Err(invalid("room_type must be 0 (free) or 1 (paid)")),
        }
    }
    pub fn room_type(self) -> i64 {
        match self {
            Self::Free => 0,
            Self::Vip(_) => 1,
        }
    }
    pub fn price(self) -> i64 {
        match self {
            Self::Free => 0,
            Self::Vip(p) => p,
        }
    }
}

/// A language code such as `en` or `zh-CN`: 1–16 ASCII letters, digits or
/// `-`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Language(String);

impl Language {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let raw = raw.trim();
        let ok = !raw.is_empty()
            && raw.len() <= 16
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(invalid(
                "language must be a code such as \"en\" or \"zh-CN\"",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Language {
    fn default() -> Self {
        Self("en".into())
    }
}

/// A room's tags: at most 30, each 1–50 characters after trimming, no
/// control characters; repeats (ignoring case) are dropped, the first
/// spelling kept.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tags(Vec<String>);

impl Tags {
    pub const MAX_TAGS: usize = 30;
    pub const MAX_CHARS: usize = 50;

    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, InvalidValue> {
        let mut tags: Vec<String> = Vec::new();
        for t in raw {
            let t = t.as_ref().trim();
            if t.is_empty() {
                continue;
            }
            let t = bounded_text(t, "tag", Self::MAX_CHARS, false, false)?;
            if !tags.iter().any(|k| k.to_lowercase() == t.to_lowercase()) {
                tags.push(t);
            }
        }
        if tags.len() > Self::MAX_TAGS {
            return Err(invalid(format!("at most {} tags", Self::MAX_TAGS)));
        }
        Ok(Self(tags))
    }
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// The character a room plays, from its SillyTavern card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Character {
    pub name: CharacterName,
    /// as SillyTavern writes `create_date` (`2025-9-16 @21h 19m 03s 522ms`)
    pub date: String,
    /// `chara_card_v3`, `chara_card_v2` or `v1`
    pub spec: String,
    /// SHA-256 (hex) of the card as uploaded (its bytes are kept by the adapter)
    pub card_sha256: String,
}

/// The room's picture: the card PNG, kept by the adapter under its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomImage {
    pub name: String,
    pub path: String,
    pub sha256: String,
    pub size: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSettings {
    pub title: RoomTitle,
    pub describe: RoomDescribe,
    pub access: RoomAccess,
    pub language: Language,
    pub tags: Tags,
}

/// A change of some settings; what is `None` stays.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub title: Option<RoomTitle>,
    pub describe: Option<RoomDescribe>,
    /// `room_type`, `coin_num` as sent (checked together with the rest)
    pub room_type: Option<i64>,
    pub coin_num: Option<i64>,
    pub language: Option<Language>,
    pub tags: Option<Tags>,
}

/// One message of the anchor's chat with the character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// identifies the message for de-duplication (claimed in the event
    /// store with the event, so a resend is recorded once)
    pub key: String,
    /// true: the anchor wrote it; false: the character (the AI)
    pub is_user: bool,
    pub sender_name: SenderName,
    pub text: ChatText,
    pub sent_at: DateTime<Utc>,
}

#[derive(Debug)]
pub enum LiveRoomCommand {
    CreateLiveRoom {
        room_id: LiveRoomId,
        anchor: Uuid,
        character: Character,
        settings: RoomSettings,
        image: Option<RoomImage>,
        at: DateTime<Utc>,
    },
    ChangeSettings {
        actor: Uuid,
        change: SettingsChange,
        at: DateTime<Utc>,
    },
    /// Go live (`true`) or end the live (`false`); no change, no event.
    SetLive {
        actor: Uuid,
        live: bool,
        at: DateTime<Utc>,
    },
    /// Appends messages of the anchor's chat, in order.
    RecordChat {
        actor: Uuid,
        lines: Vec<ChatLine>,
        at: DateTime<Utc>,
    },
}

// events are values on their way to and from JSON: a boxed variant would
// buy nothing
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LiveRoomEvent {
    LiveRoomCreated {
        room_id: String,
        anchor_id: Uuid,
        character_name: String,
        character_date: String,
        card_spec: String,
        card_sha256: String,
        image: Option<RoomImage>,
        title: String,
        describe: String,
        room_type: i64,
        coin_num: i64,
        language: String,
        tags: Vec<String>,
        created_at: DateTime<Utc>,
    },
    /// The settings after the change, whole.
    LiveRoomSettingsChanged {
        title: String,
        describe: String,
        room_type: i64,
        coin_num: i64,
        language: String,
        tags: Vec<String>,
        changed_at: DateTime<Utc>,
    },
    LiveStarted {
        started_at: DateTime<Utc>,
    },
    LiveEnded {
        ended_at: DateTime<Utc>,
    },
    LiveChatRecorded {
        key: String,
        is_user: bool,
        sender_name: String,
        message: String,
        sent_at: DateTime<Utc>,
        recorded_at: DateTime<Utc>,
    },
}

impl DomainEvent for LiveRoomEvent {
    fn event_type(&self) -> String {
        match self {
            Self::LiveRoomCreated { .. } => "LiveRoomCreated",
            Self::LiveRoomSettingsChanged { .. } => "LiveRoomSettingsChanged",
            Self::LiveStarted { .. } => "LiveStarted",
            Self::LiveEnded { .. } => "LiveEnded",
            Self::LiveChatRecorded { .. } => "LiveChatRecorded",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveRoomError {
    #[error("room not found")]
    NotFound,
    #[error("room already exists")]
    AlreadyExists,
    #[error("only the room's anchor may change it")]
    NotTheAnchor,
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct LiveRoom {
    created: bool,
    anchor: Option<Uuid>,
    live: bool,
    title: String,
    describe: String,
    room_type: i64,
    coin_num: i64,
    language: String,
    tags: Vec<String>,
}

impl LiveRoom {
    pub fn anchor(&self) -> Option<Uuid> {
        self.anchor
    }

    fn require_anchor(&self, actor: Uuid) -> Result<(), LiveRoomError> {
        if !self.created {
            return Err(LiveRoomError::NotFound);
        }
        if self.anchor != Some(actor) {
            return Err(LiveRoomError::NotTheAnchor);
        }
        Ok(())
    }

    fn changed(
        &self,
        c: SettingsChange,
        at: DateTime<Utc>,
    ) -> Result<LiveRoomEvent, LiveRoomError> {
        let room_type = c.room_type.unwrap_or(self.room_type);
        let coin_num = c.coin_num.unwrap_or(self.coin_num);
        let access = RoomAccess::parse(room_type, coin_num)?;
        Ok(LiveRoomEvent::LiveRoomSettingsChanged {
            title: c.title.map_or_else(|| self.title.clone(), |t| t.0),
            describe: c.describe.map_or_else(|| self.describe.clone(), |d| d.0),
            room_type: access.room_type(),
            coin_num: access.price(),
            language: c.language.map_or_else(|| self.language.clone(), |l| l.0),
            tags: c.tags.map_or_else(|| self.tags.clone(), |t| t.0),
            changed_at: at,
        })
    }
}

impl Aggregate for LiveRoom {
    const TYPE: &'static str = "LiveRoom";
    type Command = LiveRoomCommand;
    type Event = LiveRoomEvent;
    type Error = LiveRoomError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            LiveRoomCommand::CreateLiveRoom {
                room_id,
                anchor,
                character,
                settings,
                image,
                at,
            } => {
                if self.created {
                    return Err(LiveRoomError::AlreadyExists);
                }
                let event = LiveRoomEvent::LiveRoomCreated {
                    room_id: room_id.0,
                    anchor_id: anchor,
                    character_name: character.name.0,
                    character_date: character.date,
                    card_spec: character.spec,
                    card_sha256: character.card_sha256,
                    image,
                    title: settings.title.0,
                    describe: settings.describe.0,
                    room_type: settings.access.room_type(),
                    coin_num: settings.access.price(),
                    language: settings.language.0,
                    tags: settings.tags.0,
                    created_at: at,
                };
                sink.write(event, self).await;
            }
            LiveRoomCommand::ChangeSettings { actor, change, at } => {
                self.require_anchor(actor)?;
                let event = self.changed(change, at)?;
                let same = matches!(&event, LiveRoomEvent::LiveRoomSettingsChanged {
                    title, describe, room_type, coin_num, language, tags, ..
                } if *title == self.title && *describe == self.describe
                    && *room_type == self.room_type && *coin_num == self.coin_num
                    && *language == self.language && *tags == self.tags);
                if !same {
                    sink.write(event, self).await;
                }
            }
            LiveRoomCommand::SetLive { actor, live, at } => {
                self.require_anchor(actor)?;
                if live != self.live {
                    let event = if live {
                        LiveRoomEvent::LiveStarted { started_at: at }
                    } else {
                        LiveRoomEvent::LiveEnded { ended_at: at }
                    };
                    sink.write(event, self).await;
                }
            }
            LiveRoomCommand::RecordChat { actor, lines, at } => {
                self.require_anchor(actor)?;
                for line in lines {
                    let event = LiveRoomEvent::LiveChatRecorded {
                        key: line.key,
                        is_user: line.is_user,
                        sender_name: line.sender_name.0,
                        message: line.text.0,
                        sent_at: line.sent_at,
                        recorded_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            LiveRoomEvent::LiveRoomCreated {
                anchor_id,
                title,
                describe,
                room_type,
                coin_num,
                language,
                tags,
                ..
            } => {
                self.created = true;
                self.anchor = Some(anchor_id);
                (self.title, self.describe, self.language, self.tags) =
                    (title, describe, language, tags);
                (self.room_type, self.coin_num) = (room_type, coin_num);
            }
            LiveRoomEvent::LiveRoomSettingsChanged {
                title,
                describe,
                room_type,
                coin_num,
                language,
                tags,
                ..
            } => {
                (self.title, self.describe, self.language, self.tags) =
                    (title, describe, language, tags);
                (self.room_type, self.coin_num) = (room_type, coin_num);
            }
            LiveRoomEvent::LiveStarted { .. } => self.live = true,
            LiveRoomEvent::LiveEnded { .. } => self.live = false,
            LiveRoomEvent::LiveChatRecorded { .. } => {}
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

    fn anchor() -> Uuid {
        Uuid::from_u128(1)
    }

    fn created() -> LiveRoomEvent {
        LiveRoomEvent::LiveRoomCreated {
            room_id: "4cff21a28f2c0961".into(),
            anchor_id: anchor(),
            character_name: "Kotohime".into(),
            character_date: "2025-9-16 @21h 19m 03s 522ms".into(),
            card_spec: "chara_card_v2".into(),
            card_sha256: "ab".into(),
            image: None,
            title: "".into(),
            describe: "".into(),
            room_type: 0,
            coin_num: 0,
            language: "en".into(),
            tags: vec!["Touhou".into()],
            created_at: at(),
        }
    }

    #[test]
    fn a_room_is_created_once_from_its_character() {
        let command = || LiveRoomCommand::CreateLiveRoom {
            room_id: LiveRoomId::parse("4cff21a28f2c0961").unwrap(),
            anchor: anchor(),
            character: Character {
                name: CharacterName::parse("Kotohime").unwrap(),
                date: "2025-9-16 @21h 19m 03s 522ms".into(),
                spec: "chara_card_v2".into(),
                card_sha256: "ab".into(),
            },
            settings: RoomSettings {
                title: RoomTitle::parse("").unwrap(),
                describe: RoomDescribe::parse("").unwrap(),
                access: RoomAccess::Free,
                language: Language::default(),
                tags: Tags::parse(&["Touhou", "touhou"]).unwrap(),
            },
            image: None,
            at: at(),
        };
        TestFramework::<LiveRoom>::with(())
            .given_no_previous_events()
            .when(command())
            .then_expect_events(vec![created()]);
        TestFramework::<LiveRoom>::with(())
            .given(vec![created()])
            .when(command())
            .then_expect_error(LiveRoomError::AlreadyExists);
    }

    #[test]
    fn only_the_anchor_changes_the_room_and_a_paid_room_needs_a_price() {
        let change = |actor, room_type, coin_num| LiveRoomCommand::ChangeSettings {
            actor,
            change: SettingsChange {
                room_type,
                coin_num,
                ..Default::default()
            },
            at: at(),
        };
        TestFramework::<LiveRoom>::with(())
            .given(vec![created()])
            .when(change(Uuid::from_u128(2), Some(1), Some(30)))
            .then_expect_error(LiveRoomError::NotTheAnchor);
        TestFramework::<LiveRoom>::with(())
            .given(vec![created()])
            .when(change(anchor(), Some(1), None))
            .then_expect_error(LiveRoomError::Invalid(InvalidValue(
                "a paid room (room_type 1) needs coin_num between 1 and 1000000".into(),
            )));
        TestFramework::<LiveRoom>::with(())
            .given(vec![created()])
            .when(change(anchor(), Some(1), Some(30)))
            .then_expect_events(vec![LiveRoomEvent::LiveRoomSettingsChanged {
                title: "".into(),
                describe: "".into(),
                room_type: 1,
                coin_num: 30,
                language: "en".into(),
                tags: vec!["Touhou".into()],
                changed_at: at(),
            }]);
        // nothing new, nothing recorded
        TestFramework::<LiveRoom>::with(())
            .given(vec![created()])
            .when(change(anchor(), Some(0), None))
            .then_expect_events(vec![]);
    }

    #[test]
    fn going_live_twice_records_one_start() {
        let live = |live| LiveRoomCommand::SetLive {
            actor: anchor(),
            live,
            at: at(),
        };
        TestFramework::<LiveRoom>::with(())
            .given(vec![created()])
            .when(live(true))
            .then_expect_events(vec![LiveRoomEvent::LiveStarted { started_at: at() }]);
        TestFramework::<LiveRoom>::with(())
            .given(vec![
                created(),
                LiveRoomEvent::LiveStarted { started_at: at() },
            ])
            .when(live(true))
            .then_expect_events(vec![]);
        TestFramework::<LiveRoom>::with(())
            .given_no_previous_events()
            .when(live(true))
            .then_expect_error(LiveRoomError::NotFound);
    }

    #[test]
    fn chat_lines_are_recorded_in_order() {
        let line = |key: &str, is_user, name: &str, text: &str| ChatLine {
            key: key.into(),
            is_user,
            sender_name: SenderName::parse(name).unwrap(),
            text: ChatText::parse(text).unwrap(),
            sent_at: at(),
        };
        TestFramework::<LiveRoom>::with(())
            .given(vec![created()])
            .when(LiveRoomCommand::RecordChat {
                actor: anchor(),
                lines: vec![
                    line("k1", true, "pride88", "hi"),
                    line("k2", false, "Kotohime", "hello"),
                ],
                at: at(),
            })
            .then_expect_events(vec![
                LiveRoomEvent::LiveChatRecorded {
                    key: "k1".into(),
                    is_user: true,
                    sender_name: "pride88".into(),
                    message: "hi".into(),
                    sent_at: at(),
                    recorded_at: at(),
                },
                LiveRoomEvent::LiveChatRecorded {
                    key: "k2".into(),
                    is_user: false,
                    sender_name: "Kotohime".into(),
                    message: "hello".into(),
                    sent_at: at(),
                    recorded_at: at(),
                },
            ]);
    }

    #[test]
    fn values_parse() {
        assert!(LiveRoomId::parse("4cff21a28f2c0961").is_ok());
        assert!(LiveRoomId::parse("4CFF21A28F2C0961").is_err());
        assert!(LiveRoomId::parse("4cff21a28f2c096").is_err());
        assert_eq!(
            LiveRoomId::from_bytes([0xab; 8]).as_str(),
            "abababababababab"
        );
        assert_eq!(RoomAccess::parse(0, 50).unwrap(), RoomAccess::Free);
        assert_eq!(RoomAccess::parse(1, 50).unwrap().price(), 50);
        assert!(RoomAccess::parse(2, 50).is_err());
        assert!(RoomAccess::parse(1, 0).is_err());
        assert_eq!(
            Tags::parse(&[" a ", "A", "", "b"]).unwrap().as_slice(),
            &["a".to_string(), "b".to_string()]
        );
        assert!(Tags::parse(&["x".repeat(51)]).is_err());
        assert!(Language::parse("zh-CN").is_ok());
        assert!(Language::parse("e n").is_err());
    }
}

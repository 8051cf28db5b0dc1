//! Value types: constructed only through parsing, so a command never holds an
//! invalid username, room name or message.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

pub(crate) fn invalid(msg: impl Into<String>) -> InvalidValue {
    InvalidValue(msg.into())
}

fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// A name as one would read it, for telling whether two names could pass
/// for each other (a guest posing as a registered user): compatibility
/// forms folded (NFKC: `ｃａｔ` is `cat`), invisible characters dropped
/// (zero-width spaces and joiners, format controls, variation selectors),
/// case folded, and letters that look alike mapped to one (Unicode TR 39's
/// confusable skeleton: Cyrillic `а` is Latin `a`), until nothing changes.
pub fn name_skeleton(raw: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let mut s: String = raw
        .nfkc()
        .filter(|c| !invisible(*c))
        .collect::<String>()
        .to_lowercase();
    for _ in 0..4 {
        let next = unicode_security::skeleton(&s)
            .collect::<String>()
            .nfkc()
            .collect::<String>()
            .to_lowercase();
        if next == s {
            break;
        }
        s = next;
    }
    s
}

/// Characters that show nothing: Unicode's default-ignorable code points,
/// white space and controls.
fn invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(c as u32,
            0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
            | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
            | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF)
}

/// A login name: 1–32 characters, no white space or control characters.
/// Compared case-insensitively for uniqueness (see [`Username::key`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub const MAX_CHARS: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let n = raw.chars().count();
        if n == 0 {
            return Err(invalid("username must not be empty"));
        }
        if n > Self::MAX_CHARS {
            return Err(invalid("username must be at most 32 characters"));
        }
        if raw.chars().any(char::is_whitespace) || has_control(raw) {
            return Err(invalid(
                "username must not contain spaces or control characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form under which the name is unique (Unicode lower
    /// case, so `Ärger` and `äRGER` are one name whatever the database's locale).
    pub fn key(&self) -> String {
        Self::key_of(&self.0)
    }

    /// The same folding for raw input that need not be a valid name (sign-in).
    pub fn key_of(raw: &str) -> String {
        raw.to_lowercase()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A plain-text password as typed: 6–128 characters. Never stored or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let n = raw.chars().count();
        if n < 6 {
            return Err(invalid("password must be at least 6 characters"));
        }
        if n > 128 {
            return Err(invalid("password must be at most 128 characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A PHC-format password hash (argon2id), produced by the adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: String) -> Self {
        Self(phc)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! positive_id {
    ($name:ident, $what:literal) => {
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            pub fn new(raw: i64) -> Result<Self, InvalidValue> {
                if raw <= 0 {
                    return Err(invalid(concat!($what, " must be a positive integer")));
                }
                Ok(Self(raw))
            }
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

positive_id!(AccountNumber, "user id");
positive_id!(RoomId, "room_id");
positive_id!(MessageId, "message id");

/// Bounded, non-blank text without control characters (newlines and tabs
/// allowed where `multiline`).
pub(crate) fn bounded_text(
    raw: &str,
    what: &str,
    max: usize,
    allow_empty: bool,
    multiline: bool,
) -> Result<String, InvalidValue> {
    if !allow_empty && raw.trim().is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if raw.chars().count() > max {
        return Err(invalid(format!("{what} must be at most {max} characters")));
    }
    let bad = raw
        .chars()
        .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t' || c == '\r')));
    if bad {
        return Err(invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(raw.to_owned())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoomName(String);

impl RoomName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, "name", 64, false, false).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoomDescription(String);

impl RoomDescription {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, "description", 512, true, true).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message kind such as `text` or `image`: 1–16 lowercase ASCII letters,
/// digits or underscores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageKind(String);

impl MessageKind {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = !raw.is_empty()
            && raw.len() <= 16
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(invalid(
                "type must be 1-16 lowercase letters, digits or '_' (e.g. \"text\")",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageContent(String);

impl MessageContent {
    pub const MAX_CHARS: usize = 4000;
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, "content", Self::MAX_CHARS, false, true).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Owner,
    Admin,
    Member,
}

impl MemberRole {
    /// Roles a member may grant when adding someone; `owner` is only the creator's.
    pub fn parse_grantable(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "member" => Ok(Self::Member),
            "admin" => Ok(Self::Admin),
            _ => Err(invalid("role must be \"member\" or \"admin\"")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
}

/// A display name shown to others (a username, or seed 002's nickname):
/// 1–64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw.trim(), "nickname", 64, false, false).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&Username> for DisplayName {
    fn from(u: &Username) -> Self {
        Self(u.as_str().to_owned())
    }
}

/// An email address: `local@domain.tld`, at most 254 characters, no spaces.
/// Unique case-insensitively (see [`Email::key`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let raw = raw.trim();
        let bad = || invalid("email must look like name@example.com");
        if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = raw.rsplit_once('@').ok_or_else(bad)?;
        let labels_ok = domain
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
        if local.is_empty()
            || local.len() > 64
            || local.contains('@')
            || !domain.contains('.')
            || !labels_ok
            || domain.contains(['(', ')', '<', '>', ',', ';', ':', '\\', '"', '[', ']'])
        {
            return Err(bad());
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn key(&self) -> String {
        Self::key_of(&self.0)
    }
    pub fn key_of(raw: &str) -> String {
        raw.trim().to_lowercase()
    }
}

/// A browser-generated device id (seed 002's `x-device-id`): 1–128 visible
/// ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = !raw.is_empty() && raw.len() <= 128 && raw.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(invalid("device_id must be 1-128 visible ASCII characters"));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An avatar reference (URL or path): at most 512 characters, may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Avatar(String);

/// Where tidelog serves its stored files (Chat8's `/api/v1/files/{sha256}`).
pub const FILES_PATH: &str = "/api/v1/files/";

impl Avatar {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw.trim(), "avatar", 512, true, false).map(Self)
    }
    /// Whether it names one of tidelog's own stored files (which only an
    /// upload may make an avatar).
    pub fn is_tidelog_file(&self) -> bool {
        self.0.starts_with(FILES_PATH)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A streamer's name as the monitor shows it: 1–64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AnchorName(String);

impl AnchorName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw.trim(), "room_anchors", 64, false, false).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Seed 003's presence status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Online,
    Offline,
    Away,
}

impl Presence {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "online" => Ok(Self::Online),
            "offline" => Ok(Self::Offline),
            "away" => Ok(Self::Away),
            _ => Err(invalid(
                "status must be \"online\", \"offline\" or \"away\"",
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Away => "away",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_bounded_and_fold_case_for_uniqueness() {
        assert!(Username::parse("").is_err());
        assert!(Username::parse("has space").is_err());
        assert!(Username::parse(&"x".repeat(33)).is_err());
        assert_eq!(Username::parse("Alice").unwrap().key(), "alice");
        assert!(Username::parse("用户一").is_ok());
    }

    #[test]
    fn ids_must_be_positive() {
        assert!(RoomId::new(0).is_err());
        assert!(RoomId::new(-3).is_err());
        assert_eq!(RoomId::new(7).unwrap().get(), 7);
    }

    #[test]
    fn message_text_rejects_blank_and_control_but_keeps_newlines() {
        assert!(MessageContent::parse("   ").is_err());
        assert!(MessageContent::parse("a\u{0}b").is_err());
        assert!(MessageContent::parse("line1\nline2").is_ok());
        assert!(MessageContent::parse(&"a".repeat(4001)).is_err());
        assert!(MessageKind::parse("text").is_ok());
        assert!(MessageKind::parse("Text").is_err());
    }

    #[test]
    fn emails_are_checked_and_fold_case() {
        assert_eq!(
            Email::parse(" Bob@Example.COM ").unwrap().key(),
            "bob@example.com"
        );
        for bad in [
            "",
            "bob",
            "bob@",
            "@x.com",
            "bob@localhost",
            "b ob@x.com",
            "bob@x..com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Email::parse(&format!("{}@x.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn device_ids_and_presence_parse() {
        assert!(DeviceId::parse("3f1c-uuid").is_ok());
        assert!(DeviceId::parse("").is_err());
        assert!(DeviceId::parse("has space").is_err());
        assert_eq!(Presence::parse("away").unwrap(), Presence::Away);
        assert!(Presence::parse("busy").is_err());
    }

    #[test]
    fn password_is_redacted_in_debug() {
        let p = Password::parse("secret123").unwrap();
        assert!(!format!("{p:?}").contains("secret"));
        assert!(Password::parse("12345").is_err());
    }

    #[test]
    fn names_that_pass_for_each_other_share_a_skeleton() {
        let cat = name_skeleton("catsec");
        for alike in [
            "CatSec",
            "\u{ff43}\u{ff41}\u{ff54}\u{ff53}\u{ff45}\u{ff43}", // full width
            "cat\u{200b}sec",                                   // zero-width space
            "cat\u{2060}se\u{200d}c",                           // word joiner, ZWJ
            "c\u{0430}tsec",                                    // Cyrillic a
            "ca\u{0074}\u{fe0f}sec",                            // variation selector
        ] {
            assert_eq!(name_skeleton(alike), cat, "{alike:?}");
        }
        for other in ["catsex", "dogsec", "cat_sec"] {
            assert_ne!(name_skeleton(other), cat, "{other}");
        }
        assert_eq!(name_skeleton("游客1234"), name_skeleton("游客1234"));
    }
}

//! The contract's request and response shapes (seed 004), and their
//! conversion into domain values.

use crate::identity::NewAccount;
use aggregates::values::{
    AccountNumber, InvalidValue, MemberRole, MessageContent, MessageKind, Password,
    RoomDescription, RoomId, RoomName, Username,
};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use projections::roomchat::{MemberRow, MessageRow, RoomRow};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::timefmt::{go_rfc3339, local_seconds};

#[derive(Serialize, ToSchema)]
pub struct Envelope<T> {
    /// 0: success.
    #[schema(example = 0)]
    pub code: i32,
    #[schema(value_type = String)]
    pub msg: &'static str,
    pub data: T,
}

pub fn ok<T>(msg: &'static str, data: T) -> axum::Json<Envelope<T>> {
    axum::Json(Envelope { code: 0, msg, data })
}

/// An integer that a frontend may also send as a numeric string.
fn int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Str(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) => Ok(n),
        Raw::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("expected an integer, got {s:?}"))),
    }
}

fn opt_int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "int_or_string")] i64);
    Option::<W>::deserialize(d).map(|o| o.map(|w| w.0))
}

#[derive(Deserialize, ToSchema)]
pub struct CredentialsRequest {
    #[schema(pattern = r"^\S{1,32}$", example = "alice")]
    pub username: String,
    #[schema(min_length = 6, max_length = 128, example = "secret123")]
    pub password: String,
}

impl TryFrom<CredentialsRequest> for NewAccount {
    type Error = InvalidValue;
    fn try_from(r: CredentialsRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            username: Some(Username::parse(&r.username)?),
            email: None,
            nickname: None,
            password: Password::parse(&r.password)?,
            invited_by: None,
            device: None,
        })
    }
}

#[derive(Deserialize, ToSchema)]
pub struct CreateRoomRequest {
    #[schema(min_length = 1, max_length = 64, example = "general")]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 512)]
    pub description: Option<String>,
}

pub struct NewRoom {
    pub name: RoomName,
    pub description: RoomDescription,
}

impl TryFrom<CreateRoomRequest> for NewRoom {
    type Error = InvalidValue;
    fn try_from(r: CreateRoomRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            name: RoomName::parse(&r.name)?,
            description: RoomDescription::parse(r.description.as_deref().unwrap_or(""))?,
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoomQuery {
    #[serde(deserialize_with = "int_or_string")]
    pub room_id: i64,
}

#[derive(Deserialize, ToSchema)]
pub struct AddUserRequest {
    #[serde(deserialize_with = "int_or_string")]
    pub room_id: i64,
    #[serde(deserialize_with = "int_or_string")]
    pub user_id: i64,
    /// `member` (default) or `admin`
    #[serde(default)]
    pub role: Option<String>,
}

pub struct AddUser {
    pub room_id: RoomId,
    pub user_id: AccountNumber,
    pub role: MemberRole,
}

impl TryFrom<AddUserRequest> for AddUser {
    type Error = InvalidValue;
    fn try_from(r: AddUserRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            room_id: RoomId::new(r.room_id)?,
            user_id: AccountNumber::new(r.user_id)?,
            role: MemberRole::parse_grantable(r.role.as_deref().unwrap_or("member"))?,
        })
    }
}

#[derive(Deserialize, ToSchema)]
pub struct SendRequest {
    #[serde(deserialize_with = "int_or_string")]
    pub room_id: i64,
    /// `text` (default), `image`, …
    #[serde(rename = "type", default)]
    #[schema(pattern = "^[a-z0-9_]{1,16}$", example = "text")]
    pub kind: Option<String>,
    #[schema(min_length = 1, max_length = 4000, example = "hello")]
    pub content: String,
}

pub struct NewMessage {
    pub room_id: RoomId,
    pub kind: MessageKind,
    pub content: MessageContent,
}

impl TryFrom<SendRequest> for NewMessage {
    type Error = InvalidValue;
    fn try_from(r: SendRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            room_id: RoomId::new(r.room_id)?,
            kind: MessageKind::parse(r.kind.as_deref().unwrap_or("text"))?,
            content: MessageContent::parse(&r.content)?,
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListMessagesQuery {
    #[serde(deserialize_with = "int_or_string")]
    pub room_id: i64,
    #[serde(default, deserialize_with = "opt_int_or_string")]
    pub last_message_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_int_or_string")]
    pub limit: Option<i64>,
}

pub const DEFAULT_PAGE: i64 = 20;
pub const MAX_PAGE: i64 = 100;

pub struct MessagePage {
    pub room_id: RoomId,
    /// `None`: the newest messages.
    pub before: Option<i64>,
    pub limit: i64,
}

impl TryFrom<ListMessagesQuery> for MessagePage {
    type Error = InvalidValue;
    fn try_from(q: ListMessagesQuery) -> Result<Self, Self::Error> {
        let before = match q.last_message_id.unwrap_or(0) {
            0 => None,
            n if n < 0 => return Err(InvalidValue("last_message_id must not be negative".into())),
            n => Some(n),
        };
        let limit = match q.limit.unwrap_or(DEFAULT_PAGE) {
            n if n <= 0 => return Err(InvalidValue("limit must be a positive integer".into())),
            n => n.min(MAX_PAGE),
        };
        Ok(Self {
            room_id: RoomId::new(q.room_id)?,
            before,
            limit,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct UserDto {
    #[serde(rename = "ID")]
    pub id: i64,
    pub username: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginDto {
    pub token: String,
    pub user: UserDto,
}

#[derive(Serialize, ToSchema)]
pub struct RoomDto {
    #[serde(rename = "ID")]
    pub id: i64,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "UpdatedAt")]
    pub updated_at: String,
    #[serde(rename = "DeletedAt")]
    pub deleted_at: Option<String>,
    pub name: String,
    pub description: String,
}

impl RoomDto {
    pub fn new(
        id: i64,
        name: &str,
        description: &str,
        created: DateTime<Utc>,
        updated: DateTime<Utc>,
        tz: Tz,
    ) -> Self {
        Self {
            id,
            created_at: go_rfc3339(created, tz),
            updated_at: go_rfc3339(updated, tz),
            deleted_at: None,
            name: name.to_owned(),
            description: description.to_owned(),
        }
    }
    pub fn from_row(r: &RoomRow, tz: Tz) -> Self {
        Self::new(
            r.room_id,
            &r.name,
            &r.description,
            r.created_at,
            r.updated_at,
            tz,
        )
    }
}

#[derive(Serialize, ToSchema)]
pub struct MemberDto {
    #[serde(rename = "ID")]
    pub id: i64,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "UpdatedAt")]
    pub updated_at: String,
    #[serde(rename = "DeletedAt")]
    pub deleted_at: Option<String>,
    pub username: String,
}

impl MemberDto {
    pub fn from_row(r: &MemberRow, tz: Tz) -> Self {
        Self {
            id: r.user_id,
            created_at: go_rfc3339(r.created_at, tz),
            updated_at: go_rfc3339(r.updated_at, tz),
            deleted_at: None,
            username: r.username.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MessageDto {
    #[serde(rename = "ID")]
    pub id: i64,
    pub send_time: String,
    pub room_id: i64,
    pub sender_id: i64,
    pub sender_name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
}

impl MessageDto {
    pub fn from_row(r: MessageRow, tz: Tz) -> Self {
        Self {
            id: r.message_id,
            send_time: local_seconds(r.sent_at, tz),
            room_id: r.room_id,
            sender_id: r.sender_id,
            sender_name: r.sender_name,
            kind: r.kind,
            content: r.content,
        }
    }
}

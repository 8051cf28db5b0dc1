//! The document's shapes of Chat8's bodies (the handlers build most answers
//! with `json!`); `scripts/fuzz.sh` checks real answers against them.
#![allow(dead_code)]

use utoipa::{IntoParams, ToSchema};

use super::dto::UserDto;

/// `{success: true, data, message, timestamp}`.
#[derive(ToSchema)]
pub struct Envelope<T> {
    #[schema(example = true)]
    success: bool,
    data: T,
    #[schema(example = "获取成功")]
    message: String,
    #[schema(example = "2026-12-01T08:00:00Z")]
    timestamp: String,
}

/// `{success: true, message, timestamp}`.
#[derive(ToSchema)]
pub struct Done {
    success: bool,
    message: String,
    timestamp: String,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// `VALIDATION_ERROR`, `AUTH_001`, `USER_001`, `FRIEND_001`…, `NOT_FOUND`, …
    #[schema(example = "AUTH_001")]
    code: String,
    message: String,
    /// `{field, reason}` for a validation error; else `{}`.
    details: Object,
}

type Object = serde_json::Map<String, serde_json::Value>;

/// Failures: `{success: false, error: {code, message, details}, timestamp}`.
#[derive(ToSchema)]
pub struct Failure {
    #[schema(example = false)]
    success: bool,
    error: ErrorDetail,
    timestamp: String,
}

#[derive(ToSchema)]
pub struct Registered {
    user_id: i64,
    username: String,
    email: String,
    access_token: String,
    #[schema(example = "bearer")]
    token_type: String,
}

#[derive(ToSchema)]
pub struct LoggedIn {
    access_token: String,
    token_type: String,
    /// Seconds.
    expires_in: i64,
    user: UserDto,
}

#[derive(ToSchema)]
pub struct Refreshed {
    access_token: String,
    token_type: String,
    expires_in: i64,
}

#[derive(ToSchema)]
pub struct StatusSet {
    /// `online`, `away`, `busy` or `offline`
    status: String,
}

#[derive(ToSchema)]
pub struct Friend {
    id: i64,
    username: String,
    avatar: String,
    status: String,
    last_seen: Option<String>,
}

#[derive(ToSchema)]
pub struct Found {
    id: i64,
    username: String,
    avatar: String,
    is_friend: bool,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Part of a name (an email only when `q` is the whole address).
    q: Option<String>,
}

#[derive(ToSchema)]
pub struct FriendRequest {
    /// The user asked.
    user_id: i64,
    message: Option<String>,
}

#[derive(ToSchema)]
pub struct Requested {
    request_id: i64,
    /// `pending`, or `accepted` when the other had already asked
    status: String,
}

#[derive(ToSchema)]
pub struct Answer {
    /// `accept` or `reject`
    #[schema(example = "accept")]
    action: String,
}

#[derive(ToSchema)]
pub struct SendMessage {
    /// A friend.
    receiver_id: i64,
    content: String,
    /// `text` (default), `image`, `file`, …
    message_type: Option<String>,
    is_encrypted: Option<bool>,
}

#[derive(ToSchema)]
pub struct Sent {
    id: i64,
    sender_id: i64,
    receiver_id: i64,
    content: String,
    message_type: String,
    timestamp: String,
    is_encrypted: bool,
}

#[derive(ToSchema)]
pub struct Message {
    id: i64,
    sender_id: i64,
    receiver_id: i64,
    /// Empty once deleted.
    content: String,
    message_type: String,
    timestamp: String,
    is_read: bool,
    is_encrypted: bool,
}

#[derive(ToSchema)]
pub struct Pagination {
    page: i64,
    limit: i64,
    total: i64,
    pages: i64,
}

#[derive(ToSchema)]
pub struct History {
    messages: Vec<Message>,
    pagination: Pagination,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// From 1 (1).
    page: Option<i64>,
    /// 1 to 100 (50).
    limit: Option<i64>,
}

#[derive(ToSchema)]
pub struct Keys {
    public_key: String,
    /// Encrypted by the client; kept opaque.
    private_key_encrypted: String,
}

#[derive(ToSchema)]
pub struct OwnKeys {
    user_id: i64,
    public_key: String,
    private_key_encrypted: String,
    updated_at: String,
}

#[derive(ToSchema)]
pub struct PublicKey {
    user_id: i64,
    public_key: String,
}

/// Multipart: `file`.
#[derive(ToSchema)]
pub struct AvatarForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Multipart: `file` and `receiver_id` (a friend).
#[derive(ToSchema)]
pub struct FileForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    receiver_id: i64,
}

#[derive(ToSchema)]
pub struct Uploaded {
    avatar_url: Option<String>,
    file_url: String,
    file_name: String,
    file_size: i64,
    file_type: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// A signed link's expiry (Unix seconds) …
    exp: Option<i64>,
    /// … and signature.
    sig: Option<String>,
    /// The session, for an `<img>` that cannot send headers.
    token: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SocketQuery {
    /// The session token.
    token: Option<String>,
    /// The last frame `seq` seen: what was missed is replayed first.
    since: Option<i64>,
}

//! The document's shapes of Ocean1's answers (built with `json!` in the
//! handlers) and of the proxy's loosely read bodies; `scripts/fuzz.sh`
//! checks real answers against them.
#![allow(dead_code)]

use utoipa::ToSchema;

/// `{"status": "success", "msg"}`.
#[derive(ToSchema)]
pub struct Done {
    #[schema(example = "success")]
    status: String,
    #[schema(example = "邮件已发送")]
    msg: String,
}

#[derive(ToSchema)]
pub struct Profile {
    nickname: String,
    email: String,
    points: i64,
    /// The session token (also set as the `tidelog_session` cookie).
    token: String,
    /// The caller's own invite code.
    invite_code: String,
}

/// A signed-in answer; `{"status": "NEED_VERIFY"}` when the device is new
/// and an emailed code must confirm it (`/api/auth/login_verify`).
#[derive(ToSchema)]
pub struct SignedIn {
    /// `success` or `NEED_VERIFY`
    #[schema(example = "success")]
    status: String,
    data: Option<Profile>,
}

/// `ok`, with `has_reward` when today's login points were just paid; or
/// `rejected` when another device has taken the session over.
#[derive(ToSchema)]
pub struct Beat {
    #[schema(example = "ok")]
    status: String,
    has_reward: Option<bool>,
}

#[derive(ToSchema)]
pub struct Redeemed {
    #[schema(example = "success")]
    status: String,
    #[schema(example = "充值成功")]
    msg: String,
    new_points: i64,
}

/// A Sora video: GrsAI's fields, points held until it ends.
#[derive(ToSchema)]
pub struct SoraRequest {
    prompt: String,
    /// `sora-2` by default
    model: Option<String>,
    /// `16:9` (default) or `9:16`
    #[schema(rename = "aspectRatio")]
    aspect_ratio: Option<String>,
    /// 1 to 25 seconds (10)
    duration: Option<i64>,
    /// `small` (default) or `large` (double price)
    size: Option<String>,
    /// A reference picture (http(s))
    url: Option<String>,
    /// Server-sent events (default) or `{"status":"success","data":{"id"}}`
    stream: Option<bool>,
}

/// A Nano Banana picture.
#[derive(ToSchema)]
pub struct BananaRequest {
    prompt: String,
    /// `nano-banana` by default
    model: Option<String>,
    /// `1K` by default
    #[schema(rename = "imageSize")]
    image_size: Option<String>,
    /// `auto` by default
    #[schema(rename = "aspectRatio")]
    aspect_ratio: Option<String>,
    /// Up to 5 reference pictures (http(s))
    urls: Option<Vec<String>>,
    stream: Option<bool>,
}

/// One server-sent event of a job's stream: `data` is where the job stands,
/// as JSON text: `{id, status, progress, result_url?, error?}`.
#[derive(ToSchema)]
pub struct JobEvent {
    #[schema(example = r#"{"id":"…","status":"processing","progress":0}"#)]
    data: String,
    /// `message`
    event: Option<String>,
}

#[derive(ToSchema)]
pub struct JobId {
    id: uuid::Uuid,
}

#[derive(ToSchema)]
pub struct Started {
    #[schema(example = "success")]
    status: String,
    data: JobId,
}

#[derive(ToSchema)]
pub struct ResultRequest {
    /// A job id the caller started.
    id: String,
}

#[derive(ToSchema)]
pub struct JobState {
    /// `queued`, `running`, `completed` or `failed`
    status: String,
    progress: i64,
    result_url: Option<String>,
    error: Option<String>,
}

#[derive(ToSchema)]
pub struct JobAnswer {
    #[schema(example = "success")]
    status: String,
    data: JobState,
}

#[derive(ToSchema)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`
    role: String,
    content: String,
}

/// OpenAI-style messages: 1 to 50, at least one from the user.
#[derive(ToSchema)]
pub struct ChatRequest {
    messages: Vec<ChatMessage>,
}

#[derive(ToSchema)]
pub struct ChatReply {
    #[schema(example = "success")]
    status: String,
    reply: String,
}

/// A Jimeng video: `prompt` and Jimeng's own fields (`req_key` is the
/// server's).
#[derive(ToSchema)]
pub struct JimengRequest {
    prompt: String,
    /// Any further Jimeng field is passed on.
    seed: Option<i64>,
}

/// A Jimeng picture: `prompt` and Jimeng's fields as text, and an optional
/// `image` (PNG, JPEG or WebP, at most 4 MiB).
#[derive(ToSchema)]
pub struct JimengImageForm {
    prompt: String,
    #[schema(value_type = Option<String>, format = Binary, content_media_type = "application/octet-stream")]
    image: Option<Vec<u8>>,
}

/// Failures: `{"status": "failed", "msg"}`.
#[derive(ToSchema)]
pub struct Failure {
    #[schema(example = "failed")]
    status: String,
    msg: String,
}

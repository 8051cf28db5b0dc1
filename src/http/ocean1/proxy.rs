//! Ocean1's generation proxy (seed 002 §4): `/api/proxy/sora`,
//! `/api/proxy/banana` and `/api/proxy/v1/draw/result`. Thin: parse the
//! contract's body into a [`JobSpec`], start it, and stream where it
//! stands (server-sent events) or answer its id.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aggregates::generation::{GenerationKind, Prompt};
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::error::OceanError;
use super::extract::{check_headers, OJson};
use super::Ocean1State;
use super::SURFACE;
use crate::auth::Caller;
use crate::core::Core;
use crate::generation::{self, GenerationError, JobSpec};
use crate::http::context::RequestContext;
use crate::identity::{self, AuthFailure, Authenticator};
use crate::store::CommandMeta;

use super::schema::*;

type Result<T> = std::result::Result<T, OceanError>;

/// What the proxy takes from the application.
#[derive(Clone)]
pub struct Proxy {
    core: Core,
    http: reqwest::Client,
    starts: Arc<Semaphore>,
}

impl FromRef<Ocean1State> for Proxy {
    fn from_ref(state: &Ocean1State) -> Self {
        Self {
            core: state.core.clone(),
            http: state.upstream_http.clone(),
            starts: state.job_starts.clone(),
        }
    }
}

/// The Ocean1 session (cookie or bearer) whose headers agree with it.
pub struct Session(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Session
where
    Authenticator: FromRef<S>,
{
    type Rejection = OceanError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let token =
            crate::http::session::token_of(&parts.headers, true)?.ok_or(AuthFailure::Missing)?;
        let caller = Authenticator::from_ref(state).authenticate(&token).await?;
        check_headers(&parts.headers, &caller)?;
        Ok(Session(caller))
    }
}

impl From<GenerationError> for OceanError {
    fn from(e: GenerationError) -> Self {
        use StatusCode as S;
        match e {
            GenerationError::NotConfigured => Self::new(S::SERVICE_UNAVAILABLE, "生成服务未配置"),
            GenerationError::Insufficient { balance, price } => Self::new(
                S::PAYMENT_REQUIRED,
                format!("积分不足: 需要 {price}，当前 {balance}"),
            ),
            GenerationError::TooMany => {
                Self::new(S::TOO_MANY_REQUESTS, "进行中的任务过多，请稍后再试")
            }
            GenerationError::RateLimited(secs) => Self::new(
                S::TOO_MANY_REQUESTS,
                format!("请求过于频繁，请 {secs} 秒后再试"),
            ),
            GenerationError::Refused(why) => {
                Self::new(S::BAD_GATEWAY, format!("生成服务拒绝了请求: {why}"))
            }
            GenerationError::Unreachable(_) => {
                Self::new(S::BAD_GATEWAY, "生成服务暂时不可用，积分已退回")
            }
            GenerationError::Contended => Self::new(S::SERVICE_UNAVAILABLE, "系统繁忙，请重试"),
            GenerationError::Internal(e) => Self::internal(e),
        }
    }
}

fn bad(msg: impl Into<String>) -> OceanError {
    OceanError::bad_request(format!("参数错误: {}", msg.into()))
}

fn text_field(v: Option<&Value>, name: &str, default: &str, max: usize) -> Result<String> {
    match v {
        None | Some(Value::Null) => Ok(default.to_owned()),
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max => {
            Ok(s.trim().to_owned())
        }
        _ => Err(bad(format!("{name} 必须是不超过 {max} 个字符的字符串"))),
    }
}

fn url_field(v: &Value, name: &str) -> Result<String> {
    match v.as_str() {
        Some(u) if (u.starts_with("https://") || u.starts_with("http://")) && u.len() <= 2048 => {
            Ok(u.to_owned())
        }
        _ => Err(bad(format!("{name} 必须是 http(s) 地址"))),
    }
}

/// The contract's request (any JSON object), checked field by field.
#[derive(Deserialize)]
pub struct ProxyBody(serde_json::Map<String, Value>);

fn prompt_of(b: &ProxyBody) -> Result<Prompt> {
    match b.0.get("prompt") {
        Some(Value::String(p)) => Prompt::parse(p).map_err(|e| bad(e.to_string())),
        _ => Err(bad("prompt 必填")),
    }
}

fn streams(b: &ProxyBody) -> Result<bool> {
    match b.0.get("stream") {
        None | Some(Value::Null) => Ok(true),
        Some(Value::Bool(s)) => Ok(*s),
        _ => Err(bad("stream 必须是布尔值")),
    }
}

fn sora_spec(core: &Core, b: &ProxyBody) -> Result<JobSpec> {
    let prompt = prompt_of(b)?;
    let model = text_field(b.0.get("model"), "model", "sora-2", 64)?;
    let aspect = text_field(b.0.get("aspectRatio"), "aspectRatio", "16:9", 8)?;
    if !matches!(aspect.as_str(), "16:9" | "9:16") {
        return Err(bad("aspectRatio 必须是 16:9 或 9:16"));
    }
    let duration = match b.0.get("duration") {
        None | Some(Value::Null) => 10,
        Some(v) => v
            .as_i64()
            .filter(|d| (1..=25).contains(d))
            .ok_or_else(|| bad("duration 必须是 1 到 25 的整数（秒）"))?,
    };
    let size = text_field(b.0.get("size"), "size", "small", 8)?;
    if !matches!(size.as_str(), "small" | "large") {
        return Err(bad("size 必须是 small 或 large"));
    }
    let mut body = json!({
        "model": model, "prompt": prompt.as_str(), "aspectRatio": aspect,
        "duration": duration, "size": size,
    });
    if let Some(u) = b.0.get("url").filter(|u| !u.is_null()) {
        body["url"] = Value::String(url_field(u, "url")?);
    }
    let per_second = priced(&core.config.generation.sora_prices, &model)?;
    let price = per_second * duration * if size == "large" { 2 } else { 1 };
    Ok(JobSpec {
        kind: GenerationKind::Sora,
        model,
        prompt,
        body,
        price,
    })
}

fn banana_spec(core: &Core, b: &ProxyBody) -> Result<JobSpec> {
    let prompt = prompt_of(b)?;
    let model = text_field(b.0.get("model"), "model", "nano-banana", 64)?;
    let price = priced(&core.config.generation.banana_prices, &model)?;
    let image_size = text_field(b.0.get("imageSize"), "imageSize", "1K", 16)?;
    let aspect = text_field(b.0.get("aspectRatio"), "aspectRatio", "auto", 8)?;
    let mut body = json!({
        "model": model, "prompt": prompt.as_str(), "imageSize": image_size, "aspectRatio": aspect,
    });
    match b.0.get("urls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(urls)) if urls.len() <= 5 => {
            let urls: Result<Vec<String>> = urls.iter().map(|u| url_field(u, "urls")).collect();
            body["urls"] = json!(urls?);
        }
        Some(_) => return Err(bad("urls 必须是最多 5 个地址的数组")),
    }
    Ok(JobSpec {
        kind: GenerationKind::Banana,
        model,
        prompt,
        body,
        price,
    })
}

/// The price of a model the table offers; any other is refused before
/// anything is held or sent (the gateway would bill it at its own price).
fn priced(table: &std::collections::BTreeMap<String, i64>, model: &str) -> Result<i64> {
    table.get(model).copied().ok_or_else(|| {
        let offered: Vec<&str> = table.keys().map(String::as_str).collect();
        bad(format!("model 不支持: 可用 {}", offered.join(", ")))
    })
}

#[utoipa::path(post, path = "/api/proxy/sora", tag = "ocean1", request_body = SoraRequest, params(("x-user-email" = Option<String>, Header), ("x-device-id" = Option<String>, Header)), security(("session" = []), ("sessionCookie" = [])),
    responses((status = 200, description = "Server-sent events `{id, status, progress, result_url?, error?}` until the job ends; with `stream: false` the job's id", content((JobEvent = "text/event-stream"), (Started = "application/json"))), (status = "4XX", description = "Rejected: bad input, no session, too few points (402), too many jobs (429)", body = Failure), (status = 502, description = "The gateway refused or failed: nothing is charged", body = Failure)))]
pub async fn sora(
    State(p): State<Proxy>,
    ctx: RequestContext,
    Session(caller): Session,
    OJson(body): OJson<ProxyBody>,
) -> Result<Response> {
    let spec = sora_spec(&p.core, &body)?;
    run(p, ctx, caller, spec, streams(&body)?).await
}

#[utoipa::path(post, path = "/api/proxy/banana", tag = "ocean1", request_body = BananaRequest, params(("x-user-email" = Option<String>, Header), ("x-device-id" = Option<String>, Header)), security(("session" = []), ("sessionCookie" = [])),
    responses((status = 200, description = "Server-sent events until the job ends; with `stream: false` the job's id", content((JobEvent = "text/event-stream"), (Started = "application/json"))), (status = "4XX", description = "Rejected: bad input, no session, too few points (402), too many jobs (429)", body = Failure), (status = 502, description = "The gateway refused or failed: nothing is charged", body = Failure)))]
pub async fn banana(
    State(p): State<Proxy>,
    ctx: RequestContext,
    Session(caller): Session,
    OJson(body): OJson<ProxyBody>,
) -> Result<Response> {
    let spec = banana_spec(&p.core, &body)?;
    run(p, ctx, caller, spec, streams(&body)?).await
}

async fn run(
    p: Proxy,
    ctx: RequestContext,
    caller: Caller,
    spec: JobSpec,
    stream: bool,
) -> Result<Response> {
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let job = start(&p, &meta, caller.account_id, spec).await?;
    if !stream {
        return Ok(axum::Json(json!({"status": "success", "data": {"id": job}})).into_response());
    }
    Ok(Sse::new(updates(p.core, job))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Starts the job in one of the surface's slots. Boxed: the start's state
/// (most of a request's future) is taken once the slot is, not while
/// waiting for it.
async fn start(p: &Proxy, meta: &CommandMeta, owner: Uuid, spec: JobSpec) -> Result<Uuid> {
    let _slot = p.starts.acquire().await.expect("never closed");
    Ok(Box::pin(generation::start(&p.core, &p.http, meta, owner, spec)).await?)
}

/// How long an ended job's stream waits for its points to be settled.
const SETTLE_WAIT: Duration = Duration::from_secs(10);

/// Where the job stands, each time it changes, until it ends. The caller
/// going away ends only this stream: the job goes on.
fn updates(
    core: Core,
    job: Uuid,
) -> impl futures::Stream<Item = std::result::Result<Event, Infallible>> {
    struct S {
        core: Core,
        job: Uuid,
        last: Option<(String, i32)>,
        tick: tokio::sync::watch::Receiver<u64>,
        done: bool,
        ended_at: Option<tokio::time::Instant>,
    }
    let tick = core.progress.subscribe();
    let start = S {
        core,
        job,
        last: None,
        tick,
        done: false,
        ended_at: None,
    };
    futures::stream::unfold(start, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            let row = generation::job(&s.core, s.job).await.ok().flatten();
            if let Some(r) = row {
                let now = (r.status.clone(), r.progress);
                // An end is told once its points are settled (a client
                // that reads its points on `failed` sees them back), or
                // after SETTLE_WAIT if the settlement is slow to come.
                let ended = matches!(r.status.as_str(), "completed" | "failed");
                let told_early = ended && !r.settled && {
                    let since = *s.ended_at.get_or_insert_with(tokio::time::Instant::now);
                    since.elapsed() < SETTLE_WAIT
                };
                if s.last.as_ref() != Some(&now) && !told_early {
                    s.last = Some(now);
                    s.done = matches!(r.status.as_str(), "completed" | "failed");
                    let mut data = json!({"id": s.job, "status": r.status, "progress": r.progress});
                    if let Some(u) = &r.result_url {
                        data["result_url"] = json!(u);
                    }
                    if r.status == "failed" {
                        data["error"] = json!(r.error.unwrap_or_else(|| "failed".into()));
                    }
                    return Some((Ok(Event::default().data(data.to_string())), s));
                }
            }
            // the read model moved (or a while passed): look again
            let _ = tokio::time::timeout(Duration::from_secs(2), s.tick.changed()).await;
        }
    })
}

#[derive(Deserialize)]
pub struct ResultBody {
    id: Value,
}

/// `POST /api/proxy/v1/draw/result {id}`: the owner's job, from its read
/// model (404 for anyone else's, as for an unknown one).
#[utoipa::path(post, path = "/api/proxy/v1/draw/result", tag = "ocean1", request_body = ResultRequest, params(("x-user-email" = Option<String>, Header), ("x-device-id" = Option<String>, Header)), security(("session" = []), ("sessionCookie" = [])),
    responses((status = 200, description = "Where the caller's job stands (404 for anyone else's)", body = JobAnswer), (status = "4XX", description = "Rejected: bad input, no session, too few points (402), too many jobs (429)", body = Failure), (status = 502, description = "The gateway refused or failed: nothing is charged", body = Failure)))]
pub async fn draw_result(
    State(p): State<Proxy>,
    Session(caller): Session,
    OJson(body): OJson<ResultBody>,
) -> Result<impl IntoResponse> {
    let not_found = || OceanError::new(StatusCode::NOT_FOUND, "任务不存在");
    let id = body
        .id
        .as_str()
        .ok_or_else(|| bad("id 必须是字符串"))?
        .parse::<Uuid>()
        .map_err(|_| not_found())?;
    let row = generation::job_settled(&p.core, id, Duration::from_secs(5))
        .await
        .map_err(OceanError::internal)?
        .filter(|r| r.owner_id == caller.account_id)
        .ok_or_else(not_found)?;
    let mut data =
        json!({"status": row.status, "progress": row.progress, "result_url": row.result_url});
    if row.status == "failed" {
        data["error"] = json!(row.error);
    }
    Ok(axum::Json(json!({"status": "success", "data": data})))
}

/// Messages a cat chat may carry, and their size.
const CHAT_MAX_MESSAGES: usize = 50;
const CHAT_MAX_CHARS: usize = 8_000;
const CHAT_MAX_TOTAL: usize = 32_000;

fn chat_messages(body: &ProxyBody) -> Result<Vec<generation::chat::Message>> {
    let Some(Value::Array(raw)) = body.0.get("messages") else {
        return Err(bad("messages 必须是数组"));
    };
    if raw.is_empty() || raw.len() > CHAT_MAX_MESSAGES {
        return Err(bad(format!("messages 必须有 1 到 {CHAT_MAX_MESSAGES} 条")));
    }
    let mut total = 0;
    let mut out = Vec::with_capacity(raw.len());
    for m in raw {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if !matches!(role, "system" | "user" | "assistant") {
            return Err(bad("role 必须是 system、user 或 assistant"));
        }
        let content = m.get("content").and_then(Value::as_str).unwrap_or_default();
        let chars = content.chars().count();
        if content.trim().is_empty() || chars > CHAT_MAX_CHARS {
            return Err(bad(format!("content 必须是 1 到 {CHAT_MAX_CHARS} 个字符")));
        }
        total += chars;
        out.push(generation::chat::Message {
            role: role.into(),
            content: content.into(),
        });
    }
    if total > CHAT_MAX_TOTAL {
        return Err(bad(format!(
            "messages 合计不能超过 {CHAT_MAX_TOTAL} 个字符"
        )));
    }
    if !out.iter().any(|m| m.role == "user") {
        return Err(bad("至少需要一条 user 消息"));
    }
    Ok(out)
}

/// `POST /api/proxy/cat/chat {messages}`: `{"status":"success","reply"}`.
#[utoipa::path(post, path = "/api/proxy/cat/chat", tag = "ocean1", request_body = ChatRequest, params(("x-user-email" = Option<String>, Header), ("x-device-id" = Option<String>, Header)), security(("session" = []), ("sessionCookie" = [])),
    responses((status = 200, description = "The model's reply; its points charged once", body = ChatReply), (status = "4XX", description = "Rejected: bad input, no session, too few points (402), too many jobs (429)", body = Failure), (status = 502, description = "The gateway refused or failed: nothing is charged", body = Failure)))]
pub async fn cat_chat(
    State(p): State<Proxy>,
    ctx: RequestContext,
    Session(caller): Session,
    OJson(body): OJson<ProxyBody>,
) -> Result<impl IntoResponse> {
    let messages = chat_messages(&body)?;
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let reply = generation::chat(&p.core, &p.http, &meta, caller.account_id, messages).await?;
    Ok(axum::Json(json!({"status": "success", "reply": reply})))
}

/// Largest image `jimeng/image` takes.
pub const JIMENG_IMAGE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Fields a Jimeng payload may carry besides `prompt`.
const JIMENG_MAX_FIELDS: usize = 32;

/// The caller's payload as Jimeng takes it: `prompt` checked, `req_key`
/// ours (the price depends on it), the rest passed on.
fn jimeng_spec(
    core: &Core,
    kind: GenerationKind,
    mut fields: serde_json::Map<String, Value>,
) -> Result<JobSpec> {
    let prompt = match fields.get("prompt") {
        Some(Value::String(p)) => Prompt::parse(p).map_err(|e| bad(e.to_string()))?,
        _ => return Err(bad("prompt 必填")),
    };
    if fields.len() > JIMENG_MAX_FIELDS {
        return Err(bad("字段过多"));
    }
    let g = &core.config.generation;
    let (req_key, price) = match kind {
        GenerationKind::JimengVideo => (g.jimeng_video_req_key.clone(), g.jimeng_video_price),
        _ => (g.jimeng_image_req_key.clone(), g.jimeng_image_price),
    };
    fields.remove("stream");
    fields.insert("req_key".into(), json!(req_key));
    fields.insert("prompt".into(), json!(prompt.as_str()));
    Ok(JobSpec {
        kind,
        model: req_key,
        prompt,
        body: Value::Object(fields),
        price,
    })
}

async fn start_answering_id(
    p: &Proxy,
    ctx: &RequestContext,
    caller: &Caller,
    spec: JobSpec,
) -> Result<Response> {
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let job = start(p, &meta, caller.account_id, spec).await?;
    Ok(axum::Json(json!({"status": "success", "data": {"id": job}})).into_response())
}

/// `POST /api/proxy/jimeng/create` (JSON, at least `prompt`): a video.
#[utoipa::path(post, path = "/api/proxy/jimeng/create", tag = "ocean1", request_body = JimengRequest, params(("x-user-email" = Option<String>, Header), ("x-device-id" = Option<String>, Header)), security(("session" = []), ("sessionCookie" = [])),
    responses((status = 200, description = "The job's id; ask `/api/proxy/v1/draw/result`", body = Started), (status = "4XX", description = "Rejected: bad input, no session, too few points (402), too many jobs (429)", body = Failure), (status = 502, description = "The gateway refused or failed: nothing is charged", body = Failure)))]
pub async fn jimeng_create(
    State(p): State<Proxy>,
    ctx: RequestContext,
    Session(caller): Session,
    OJson(body): OJson<ProxyBody>,
) -> Result<Response> {
    let spec = jimeng_spec(&p.core, GenerationKind::JimengVideo, body.0)?;
    start_answering_id(&p, &ctx, &caller, spec).await
}

/// `POST /api/proxy/jimeng/image` (multipart: `prompt` and other fields as
/// text, optional `image`: PNG, JPEG or WebP by its bytes, ≤ 4 MiB): a
/// picture, from the image when one is sent.
#[utoipa::path(post, path = "/api/proxy/jimeng/image", tag = "ocean1", request_body(content = JimengImageForm, content_type = "multipart/form-data"), params(("x-user-email" = Option<String>, Header), ("x-device-id" = Option<String>, Header)), security(("session" = []), ("sessionCookie" = [])),
    responses((status = 200, description = "The job's id", body = Started), (status = "4XX", description = "Rejected: bad input, no session, too few points (402), too many jobs (429)", body = Failure), (status = 502, description = "The gateway refused or failed: nothing is charged", body = Failure)))]
pub async fn jimeng_image(
    State(p): State<Proxy>,
    ctx: RequestContext,
    Session(caller): Session,
    form: std::result::Result<
        axum::extract::Multipart,
        axum::extract::multipart::MultipartRejection,
    >,
) -> Result<Response> {
    let mut form = form.map_err(|e| bad(e.body_text()))?;
    let too_large = || OceanError::new(StatusCode::PAYLOAD_TOO_LARGE, "图片过大（最大 4 MiB）");
    let mut fields = serde_json::Map::new();
    let mut image = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => return Err(bad(e.body_text())),
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "image" {
            let bytes = field.bytes().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    bad(e.body_text())
                }
            })?;
            if bytes.len() > JIMENG_IMAGE_MAX_BYTES {
                return Err(too_large());
            }
            if !bytes.is_empty() {
                image = Some(bytes);
            }
            continue;
        }
        if name.is_empty() || name.len() > 64 {
            return Err(bad("字段名无效"));
        }
        let text = field.text().await.map_err(|e| bad(e.body_text()))?;
        if text.chars().count() > Prompt::MAX_CHARS {
            return Err(bad(format!("{name} 过长")));
        }
        // numbers and booleans as Jimeng expects them, the rest as text
        let value = serde_json::from_str::<Value>(&text)
            .ok()
            .filter(|v| v.is_number() || v.is_boolean())
            .unwrap_or(Value::String(text));
        fields.insert(name, value);
    }
    if let Some(bytes) = &image {
        match crate::social::files::image(bytes) {
            Ok("image/png" | "image/jpeg" | "image/webp") => {}
            _ => return Err(bad("image 必须是完整的 PNG、JPEG 或 WebP 图片")),
        }
    }
    let mut spec = jimeng_spec(&p.core, GenerationKind::JimengImage, fields)?;
    if let Some(bytes) = image {
        use base64::Engine;
        spec.body["binary_data_base64"] =
            json!([base64::engine::general_purpose::STANDARD.encode(&bytes)]);
    }
    start_answering_id(&p, &ctx, &caller, spec).await
}

//! Chat8 uploads (`/api/v1/upload/avatar`, `/api/v1/upload/file`) and the
//! files they store (`/api/v1/files/{sha256}`). Bytes are recognised by
//! their content (`social::files`), kept once under their SHA-256 in
//! PostgreSQL (every server process reads them there); the events carry
//! the hash, name, type and size.

use aggregates::social::SentFile;
use aggregates::values::Avatar;
use aggregates::AccountCommand;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::dto::ok;
use super::error::Chat8Error;
use super::extract::Bearer;
use super::SURFACE;
use crate::core::Core;
use crate::http::context::RequestContext;
use crate::identity::{self, Authenticator};
use crate::social::files::{self, FileError};

use super::schema::{self as doc, AvatarForm, Envelope, Failure, FileForm, Uploaded};

type Result<T> = std::result::Result<T, Chat8Error>;

/// How long a chat file's signed link works.
pub const LINK_TTL_SECS: i64 = 7 * 86_400;
/// What a multipart body may carry beyond the file itself.
pub const FORM_OVERHEAD: usize = 64 * 1024;

impl From<FileError> for Chat8Error {
    fn from(e: FileError) -> Self {
        match e {
            FileError::Type(m) => Self::new(
                StatusCode::BAD_REQUEST,
                "FILE_001",
                format!("文件类型不支持: {m}"),
            ),
            FileError::Size(max) => Self {
                details: json!({ "max_bytes": max }),
                ..Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "FILE_002",
                    "文件大小超出限制",
                )
            },
        }
    }
}

fn form_error(e: axum::extract::multipart::MultipartError, max: usize) -> Chat8Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        FileError::Size(max).into()
    } else {
        Chat8Error::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            format!("表单无效: {}", e.body_text()),
        )
    }
}

struct Upload {
    bytes: Vec<u8>,
    name: String,
    receiver_id: Option<String>,
}

/// The form's `file` (and `receiver_id`), refusing a file over `max`.
async fn form(req: Request, max: usize) -> Result<Upload> {
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| Chat8Error::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", e.body_text()))?;
    let (mut file, mut receiver_id) = (None, None);
    while let Some(field) = form.next_field().await.map_err(|e| form_error(e, max))? {
        match field.name().unwrap_or("") {
            "file" => {
                let name = field.file_name().unwrap_or("file").to_owned();
                let bytes = field.bytes().await.map_err(|e| form_error(e, max))?;
                if bytes.len() > max {
                    return Err(FileError::Size(max).into());
                }
                file = Some((bytes.to_vec(), name));
            }
            "receiver_id" => {
                receiver_id = Some(field.text().await.map_err(|e| form_error(e, max))?);
            }
            _ => {}
        }
    }
    let (bytes, name) = file.ok_or_else(|| Chat8Error::validation("file", "缺少文件 file"))?;
    if bytes.is_empty() {
        return Err(Chat8Error::validation("file", "文件为空"));
    }
    Ok(Upload {
        bytes,
        name,
        receiver_id,
    })
}

/// A file name as shown: the last path part, without control characters,
/// at most 200 characters.
fn clean_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let name: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    if name.trim().is_empty() {
        "file".into()
    } else {
        name
    }
}

pub fn file_path(sha256: &str) -> String {
    format!("{}/files/{sha256}", super::PREFIX)
}

/// `POST /upload/avatar` (multipart `file`): PNG, JPEG, GIF or WebP,
/// becomes the caller's avatar.
#[utoipa::path(post, path = "/api/v1/upload/avatar", tag = "chat8", request_body(content = AvatarForm, content_type = "multipart/form-data"), security(("session" = [])), responses((status = 200, description = "头像已上传: PNG, JPEG, GIF or WebP, now the avatar", body = Envelope<Uploaded>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn avatar(
    State(core): State<Core>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
    req: Request,
) -> Result<impl IntoResponse> {
    let max = core.config.chat8_avatar_max_bytes;
    let up = form(req, max).await?;
    let mime = files::image(&up.bytes)?;
    let sha = crate::files::put(&core.pool, &up.bytes, mime).await?;
    let url = file_path(&sha);
    let avatar = Avatar::parse(&url).map_err(|e| Chat8Error::internal(anyhow::anyhow!("{e}")))?;
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let at = crate::store::now();
    let pos = core
        .store
        .execute(
            &core.store.accounts,
            &caller.account_id.to_string(),
            &meta,
            || AccountCommand::UploadAvatar {
                avatar: avatar.clone(),
                at,
            },
        )
        .await
        .map_err(|e| Chat8Error::internal(anyhow::anyhow!("{e}")))?;
    core.settle(identity::READ_MODELS, pos).await;
    Ok(ok(
        "头像已上传",
        json!({
            "avatar_url": url,
            "file_url": url,
            "file_name": clean_name(&up.name),
            "file_size": up.bytes.len(),
            "file_type": mime,
        }),
    ))
}

/// `POST /upload/file` (multipart `file`, `receiver_id`: a friend): the
/// two may read it; the answer's `file_url` is a signed link (7 days).
#[utoipa::path(post, path = "/api/v1/upload/file", tag = "chat8", request_body(content = FileForm, content_type = "multipart/form-data"), security(("session" = [])), responses((status = 200, description = "文件已上传: `file_url` is a signed link (7 days)", body = Envelope<Uploaded>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn file(
    State(core): State<Core>,
    State(auth): State<Authenticator>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
    req: Request,
) -> Result<impl IntoResponse> {
    let max = core.config.chat8_file_max_bytes;
    let up = form(req, max).await?;
    let receiver: i64 = up
        .receiver_id
        .as_deref()
        .map(str::trim)
        .and_then(|r| r.parse().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| Chat8Error::validation("receiver_id", "receiver_id 必须是用户 id"))?;
    let mime = files::chat_file(&up.bytes)?;
    let sha = crate::files::put(&core.pool, &up.bytes, &mime).await?;
    let name = clean_name(&up.name);
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let shared = SentFile {
        sha256: sha.clone(),
        name: name.clone(),
        size: up.bytes.len() as i64,
        content_type: mime.clone(),
    };
    crate::social::share_file(&core, &meta, caller.number, receiver, shared).await?;
    let exp = chrono::Utc::now().timestamp() + LINK_TTL_SECS;
    let sig = auth.sign(&format!("file:{sha}:{exp}"));
    Ok(ok(
        "文件已上传",
        json!({
            "file_url": format!("{}?exp={exp}&sig={sig}", file_path(&sha)),
            "file_name": name,
            "file_size": up.bytes.len(),
            "file_type": mime,
        }),
    ))
}

#[derive(Deserialize)]
pub struct FileQuery {
    exp: Option<i64>,
    sig: Option<String>,
    token: Option<String>,
}

/// `GET /files/{sha256}`: an avatar to any signed-in user (only an upload
/// makes one of these files an avatar: a profile naming it is refused); a
/// chat file to its sender and receiver — by bearer (or `?token=`), or by
/// its signed link until it expires.
#[utoipa::path(get, path = "/api/v1/files/{sha256}", tag = "chat8", params(("sha256" = String, Path, description = "The file's SHA-256 (64 hex digits)"), doc::FileQuery), security(("session" = []), ()), responses((status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn get(
    State(core): State<Core>,
    State(auth): State<Authenticator>,
    headers: axum::http::HeaderMap,
    Path(sha): Path<String>,
    q: std::result::Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let q = q.map(|Query(q)| q).unwrap_or(FileQuery {
        exp: None,
        sig: None,
        token: None,
    });
    let not_found = || Chat8Error::not_found("文件不存在");
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let signed = match (q.exp, &q.sig) {
        (Some(exp), Some(sig)) => {
            use subtle::ConstantTimeEq;
            let good = auth.sign(&format!("file:{sha}:{exp}"));
            bool::from(good.as_bytes().ct_eq(sig.as_bytes()))
                && exp > chrono::Utc::now().timestamp()
        }
        _ => false,
    };
    let mut name = None;
    if !signed {
        let token = match crate::http::session::token_of(&headers, false)? {
            Some(t) => t,
            None => q.token.clone().ok_or_else(Chat8Error::invalid_token)?,
        };
        let caller = auth.authenticate(&token).await?;
        let is_avatar: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM accounts WHERE avatar = $1)")
                .bind(file_path(&sha))
                .fetch_one(&core.pool)
                .await?;
        if !is_avatar {
            let shared = projections::social::shared_file(&core.pool, &sha, caller.number)
                .await?
                .ok_or_else(not_found)?;
            name = Some(shared.0);
        }
    }
    let (content_type, bytes) = crate::files::get(&core.pool, &sha)
        .await?
        .ok_or_else(not_found)?;
    let mut resp = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=3600".into()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
        ],
        bytes,
    )
        .into_response();
    if let Some(n) = name {
        let ascii: String = n
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != '"')
            .collect();
        if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"")) {
            resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(resp)
}

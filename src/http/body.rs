//! JSON bodies for every surface: each surface's extractor maps
//! [`BodyError`] into its own envelope. Size, syntax and shape are insisted
//! on everywhere; the content type where a session cookie authenticates
//! (seeds 000 and 002: [`json_only`]), so that a page of another site
//! cannot post a form or `text/plain` body with the victim's cookie
//! without a CORS preflight. The bearer-only surfaces leave the content
//! type to their frontends' clients.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Unreadable(StatusCode),
    Empty,
    Syntax,
    /// Well-formed JSON of the wrong shape (missing field, wrong type).
    Shape(String),
    /// A body whose `Content-Type` is not JSON, where only JSON is taken.
    NotJson,
}

impl BodyError {
    /// The Chinese message the seeds' surfaces answer with; `param` starts
    /// the messages about the body's content, `shape` those about its fields.
    pub fn zh_message(&self, param: &str, shape: &str) -> String {
        match self {
            Self::TooLarge => "请求体过大".to_owned(),
            Self::Unreadable(_) => "无法读取请求体".to_owned(),
            Self::Empty => format!("{param}请求体为空"),
            Self::Syntax => format!("{param}JSON 格式不正确"),
            Self::Shape(detail) => format!("{shape}{detail}"),
            Self::NotJson => "请求体必须是 JSON (Content-Type: application/json)".to_owned(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unreadable(s) => *s,
            Self::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// The raw body within the size limit (for signed bodies).
pub async fn bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, BodyError> {
    Bytes::from_request(req, state).await.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            BodyError::TooLarge
        } else {
            BodyError::Unreadable(rej.status())
        }
    })
}

/// Whether the request says its body is JSON (`application/json`, or a
/// `+json` type such as `application/merge-patch+json`).
pub fn says_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| {
            t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
        })
}

/// The raw body, refused unless it is empty or says it is JSON.
pub async fn json_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, BodyError> {
    let json = says_json(req.headers());
    let bytes = bytes(req, state).await?;
    if !json && !bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::NotJson);
    }
    Ok(bytes)
}

/// [`json`] where only a JSON content type is taken.
pub async fn json_only<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<T, BodyError> {
    parse(json_bytes(req, state).await?)
}

pub async fn json<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<T, BodyError> {
    parse(bytes(req, state).await?)
}

/// A body read with [`bytes`], parsed as [`json`] does.
pub fn parse<T: DeserializeOwned>(bytes: Bytes) -> Result<T, BodyError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => BodyError::Shape(e.to_string()),
        _ => BodyError::Syntax,
    })
}

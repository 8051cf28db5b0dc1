//! JSON bodies for every surface: each surface's extractor maps
//! [`BodyError`] into its own envelope. The content type is not insisted on
//! (the frontends' own clients decide it); size, syntax and shape are.

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
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unreadable(s) => *s,
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

pub async fn json<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<T, BodyError> {
    let bytes = bytes(req, state).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => BodyError::Shape(e.to_string()),
        _ => BodyError::Syntax,
    })
}

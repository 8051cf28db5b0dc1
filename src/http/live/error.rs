//! Seed 000's failure shape: `{"code": 1, "msg": "..."}` with a fitting status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::identity::{AuthFailure, IdentityError};

#[derive(Debug)]
pub struct LiveError {
    pub status: StatusCode,
    pub msg: String,
}

impl LiveError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self {
            status,
            msg: msg.into(),
        }
    }
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        let err = err.into();
        tracing::error!(error = format!("{err:#}"), "live request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "服务器内部错误")
    }
}

impl IntoResponse for LiveError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({ "code": 1, "msg": self.msg })),
        )
            .into_response()
    }
}

impl From<AuthFailure> for LiveError {
    fn from(e: AuthFailure) -> Self {
        match e {
            AuthFailure::Unavailable(err) => Self::internal(err),
            _ => Self::new(StatusCode::UNAUTHORIZED, "未登录"),
        }
    }
}

impl From<IdentityError> for LiveError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::SessionEnded => Self::new(StatusCode::UNAUTHORIZED, "未登录"),
            IdentityError::Contended => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "系统繁忙，请重试")
            }
            other => Self::internal(anyhow::Error::from(other)),
        }
    }
}

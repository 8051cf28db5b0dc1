//! Chat8's error envelope (seed 003):
//! `{"success": false, "error": {"code", "message", "details"}, "timestamp"}`
//! with the documented codes and HTTP statuses.

use aggregates::values::InvalidValue;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::timestamp;
use crate::http::body::BodyError;
use crate::identity::{AuthFailure, IdentityError};

#[derive(Debug)]
pub struct Chat8Error {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

impl Chat8Error {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({}),
        }
    }
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            details: json!({ "field": field, "reason": message.clone() }),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_ERROR",
                message,
            )
        }
    }
    pub fn invalid_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AUTH_001", "无效的认证令牌")
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", what)
    }
    /// Logs the cause chain; the client sees only a generic message.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        let status = crate::http::reply::failure_status(super::SURFACE, &err.into());
        match status {
            StatusCode::BAD_REQUEST => Self::validation("body", "参数错误: 含有无法保存的字符"),
            StatusCode::SERVICE_UNAVAILABLE => {
                Self::new(status, "SERVICE_UNAVAILABLE", "服务暂时不可用，请稍后重试")
            }
            _ => Self::new(status, "INTERNAL_ERROR", "服务器内部错误"),
        }
    }
}

impl IntoResponse for Chat8Error {
    fn into_response(self) -> Response {
        let body = json!({
            "success": false,
            "error": { "code": self.code, "message": self.message, "details": self.details },
            "timestamp": timestamp(),
        });
        crate::http::reply::retry_after((self.status, axum::Json(body)).into_response())
    }
}

/// A value that failed to parse, attributed to the request field it came from.
pub fn field(name: &'static str) -> impl Fn(InvalidValue) -> Chat8Error {
    move |e| Chat8Error::validation(name, e.to_string())
}

impl From<BodyError> for Chat8Error {
    fn from(e: BodyError) -> Self {
        let status = e.status();
        match e {
            BodyError::TooLarge => Self::new(status, "PAYLOAD_TOO_LARGE", "请求体过大"),
            BodyError::Unreadable(_) => Self::new(status, "BAD_REQUEST", "无法读取请求体"),
            BodyError::Empty => Self::new(status, "BAD_REQUEST", "请求体为空"),
            BodyError::Syntax => Self::new(status, "BAD_REQUEST", "JSON 格式不正确"),
            BodyError::NotJson => Self::new(status, "UNSUPPORTED_MEDIA_TYPE", "请求体必须是 JSON"),
            BodyError::Shape(detail) => Self {
                details: json!({ "reason": detail }),
                ..Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "VALIDATION_ERROR",
                    "请求参数验证失败",
                )
            },
        }
    }
}

impl From<AuthFailure> for Chat8Error {
    fn from(e: AuthFailure) -> Self {
        match e {
            AuthFailure::Expired => Self::new(StatusCode::UNAUTHORIZED, "AUTH_002", "令牌已过期"),
            AuthFailure::Missing | AuthFailure::Invalid | AuthFailure::Ended { .. } => {
                Self::invalid_token()
            }
            AuthFailure::Unavailable(err) => Self::internal(err),
        }
    }
}

impl From<IdentityError> for Chat8Error {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Invalid(v) => Self::validation("", v.to_string()),
            IdentityError::BadCredentials => {
                Self::new(StatusCode::UNAUTHORIZED, "AUTH_003", "用户名或密码错误")
            }
            IdentityError::UsernameTaken => {
                Self::new(StatusCode::CONFLICT, "USER_002", "用户名已存在")
            }
            IdentityError::EmailTaken => Self::new(StatusCode::CONFLICT, "USER_003", "邮箱已存在"),
            IdentityError::NoAccount => Self::new(StatusCode::NOT_FOUND, "USER_001", "用户不存在"),
            IdentityError::SessionEnded => Self::invalid_token(),
            IdentityError::RateLimited { retry_after_secs } => Self {
                details: json!({ "retry_after": retry_after_secs }),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    "尝试次数过多，请稍后再试",
                )
            },
            IdentityError::Contended => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "BUSY", "系统繁忙，请重试")
            }
            IdentityError::WrongCode => {
                Self::new(StatusCode::BAD_REQUEST, "CODE_001", "验证码错误或已使用")
            }
            IdentityError::ExpiredCode => {
                Self::new(StatusCode::BAD_REQUEST, "CODE_002", "验证码已过期")
            }
            IdentityError::CodeTooSoon { retry_after_secs } => Self {
                details: json!({ "retry_after": retry_after_secs }),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    "验证码发送过于频繁，请稍后再试",
                )
            },
            IdentityError::MailFailed => Self::new(
                StatusCode::BAD_GATEWAY,
                "MAIL_FAILED",
                "邮件发送失败，请稍后重试",
            ),
            other => Self::internal(anyhow::Error::from(other)),
        }
    }
}

impl From<sqlx::Error> for Chat8Error {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

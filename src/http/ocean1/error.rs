//! Ocean1's failure shape (seed 002): `{"status": "failed", "msg": "..."}`
//! with a fitting HTTP status.

use aggregates::values::InvalidValue;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::body::BodyError;
use crate::identity::{AuthFailure, IdentityError};

#[derive(Debug)]
pub struct OceanError {
    pub status: StatusCode,
    pub msg: String,
}

impl OceanError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self {
            status,
            msg: msg.into(),
        }
    }
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "未登录或登录已失效")
    }
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        let status = crate::http::reply::failure_status(super::SURFACE, &err.into());
        Self::new(status, crate::http::reply::failure_message(status))
    }
}

impl IntoResponse for OceanError {
    fn into_response(self) -> Response {
        crate::http::reply::retry_after(
            (
                self.status,
                axum::Json(json!({ "status": "failed", "msg": self.msg })),
            )
                .into_response(),
        )
    }
}

impl From<InvalidValue> for OceanError {
    fn from(e: InvalidValue) -> Self {
        Self::bad_request(format!("参数错误: {e}"))
    }
}

impl From<BodyError> for OceanError {
    fn from(e: BodyError) -> Self {
        Self::new(e.status(), e.zh_message("参数错误: ", "参数错误: "))
    }
}

impl From<AuthFailure> for OceanError {
    fn from(e: AuthFailure) -> Self {
        match e {
            AuthFailure::Unavailable(err) => Self::internal(err),
            _ => Self::unauthorized(),
        }
    }
}

impl From<IdentityError> for OceanError {
    fn from(e: IdentityError) -> Self {
        use StatusCode as S;
        match e {
            IdentityError::Invalid(v) => v.into(),
            IdentityError::BadCredentials => Self::new(S::UNAUTHORIZED, "邮箱或密码错误"),
            IdentityError::EmailTaken => Self::new(S::CONFLICT, "该邮箱已注册"),
            IdentityError::UsernameTaken => Self::new(S::CONFLICT, "该名称已被使用"),
            IdentityError::WrongCode => Self::bad_request("验证码错误"),
            IdentityError::ExpiredCode => Self::bad_request("验证码已过期，请重新获取"),
            IdentityError::CodeTooSoon { retry_after_secs } => Self::new(
                S::TOO_MANY_REQUESTS,
                format!("发送过于频繁，请 {retry_after_secs} 秒后再试"),
            ),
            IdentityError::RateLimited { .. } => {
                Self::new(S::TOO_MANY_REQUESTS, "尝试次数过多，请稍后再试")
            }
            IdentityError::BadInvite => Self::bad_request("邀请码无效"),
            IdentityError::NoAccount => Self::new(S::NOT_FOUND, "账号不存在"),
            IdentityError::UnknownDevice => Self::new(S::FORBIDDEN, "设备未验证"),
            IdentityError::SessionEnded => Self::unauthorized(),
            IdentityError::MailFailed => Self::new(S::BAD_GATEWAY, "邮件发送失败，请稍后再试"),
            IdentityError::Contended => Self::new(S::SERVICE_UNAVAILABLE, "系统繁忙，请重试"),
            IdentityError::Internal(err) => Self::internal(err),
        }
    }
}

impl From<sqlx::Error> for OceanError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

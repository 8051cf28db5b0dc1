//! The room-chat error envelope: `{"code": 1, "msg": "...", "data": null}`
//! with a fitting HTTP status.

use aggregates::values::InvalidValue;
use aggregates::ChatRoomError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::identity::{AuthFailure, IdentityError};
use crate::store::CommandError;

#[derive(Debug)]
pub struct RoomChatError {
    pub status: StatusCode,
    pub msg: String,
}

impl RoomChatError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self {
            status,
            msg: msg.into(),
        }
    }
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }
    pub fn unauthorized(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, msg)
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, msg)
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, msg)
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, msg)
    }
    /// Logs the cause chain; the client sees only a generic message.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        let status = crate::http::reply::failure_status(super::SURFACE, &err.into());
        Self::new(status, crate::http::reply::failure_message(status))
    }

    /// The envelope as JSON text, fields in the seed's order.
    pub fn body(&self) -> String {
        serde_json::to_string(&Envelope {
            code: 1,
            msg: &self.msg,
            data: (),
        })
        .expect("plain struct")
    }
}

/// The failure envelope, as the document shows it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Failure {
    /// 1: failure.
    #[schema(example = 1)]
    code: i32,
    msg: String,
    /// Always `null`.
    data: Option<serde_json::Value>,
}

#[derive(serde::Serialize)]
struct Envelope<'a> {
    code: i32,
    msg: &'a str,
    data: (),
}

impl IntoResponse for RoomChatError {
    fn into_response(self) -> Response {
        crate::http::reply::retry_after(
            (
                self.status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                self.body(),
            )
                .into_response(),
        )
    }
}

impl From<InvalidValue> for RoomChatError {
    fn from(e: InvalidValue) -> Self {
        Self::bad_request(format!("参数错误: {e}"))
    }
}

impl From<sqlx::Error> for RoomChatError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl From<CommandError<ChatRoomError>> for RoomChatError {
    fn from(e: CommandError<ChatRoomError>) -> Self {
        match e {
            CommandError::Domain(ChatRoomError::NotFound) => Self::not_found("房间不存在"),
            CommandError::Domain(ChatRoomError::NotAMember) => {
                Self::forbidden("你不是该房间的成员")
            }
            CommandError::Domain(ChatRoomError::AlreadyMember) => {
                Self::conflict("添加用户到聊天室失败，用户已在聊天室中")
            }
            CommandError::Domain(ChatRoomError::AlreadyExists) => Self::conflict("房间已存在"),
            CommandError::Contended => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "房间繁忙，请重试")
            }
            other => Self::internal(anyhow::anyhow!("{other}")),
        }
    }
}

impl From<IdentityError> for RoomChatError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Invalid(v) => v.into(),
            IdentityError::BadCredentials => Self::unauthorized("用户名或密码错误"),
            IdentityError::UsernameTaken => Self::conflict("用户名已存在"),
            IdentityError::EmailTaken => Self::conflict("邮箱已存在"),
            IdentityError::RateLimited { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "尝试次数过多，请稍后再试")
            }
            IdentityError::SessionEnded => Self::unauthorized("token已失效，请重新登录"),
            IdentityError::Contended => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "系统繁忙，请重试")
            }
            other => Self::internal(anyhow::Error::from(other)),
        }
    }
}

impl From<AuthFailure> for RoomChatError {
    fn from(e: AuthFailure) -> Self {
        match e {
            AuthFailure::Missing => Self::unauthorized("未登录：缺少token"),
            AuthFailure::Invalid => Self::unauthorized("token无效"),
            AuthFailure::Expired => Self::unauthorized("token已过期，请重新登录"),
            AuthFailure::Ended { .. } => Self::unauthorized("token已失效，请重新登录"),
            AuthFailure::Unavailable(err) => Self::internal(err),
        }
    }
}

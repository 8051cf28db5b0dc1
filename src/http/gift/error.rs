//! Seed 001's error shape: `{"error": "..."}` with 400/401/404/409/500.

use aggregates::values::InvalidValue;
use aggregates::MonitoredRoomError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::http::body::BodyError;
use crate::store::CommandError;

#[derive(Debug)]
pub struct GiftError {
    pub status: StatusCode,
    pub error: String,
}

impl GiftError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
        }
    }
    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "API 密钥缺失或无效")
    }
    pub fn no_room(room_id: i64) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("房间 {room_id} 不存在"))
    }
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        let status = crate::http::reply::failure_status(super::SURFACE, &err.into());
        Self::new(status, crate::http::reply::failure_message(status))
    }
}

impl IntoResponse for GiftError {
    fn into_response(self) -> Response {
        crate::http::reply::retry_after(
            (
                self.status,
                axum::Json(serde_json::json!({ "error": self.error })),
            )
                .into_response(),
        )
    }
}

impl From<InvalidValue> for GiftError {
    fn from(e: InvalidValue) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<sqlx::Error> for GiftError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl From<BodyError> for GiftError {
    fn from(e: BodyError) -> Self {
        Self::new(e.status(), e.zh_message("", "参数校验失败: "))
    }
}

pub fn from_command(room_id: i64, e: CommandError<MonitoredRoomError>) -> GiftError {
    match e {
        CommandError::Domain(MonitoredRoomError::AlreadyMonitored) => {
            GiftError::new(StatusCode::CONFLICT, format!("房间 {room_id} 已存在"))
        }
        CommandError::Domain(MonitoredRoomError::NotMonitored) => GiftError::no_room(room_id),
        CommandError::Contended => GiftError::new(StatusCode::CONFLICT, "并发冲突，请重试"),
        other => GiftError::internal(anyhow::anyhow!("{other}")),
    }
}

impl From<crate::gifts::BadMonth> for GiftError {
    fn from(e: crate::gifts::BadMonth) -> Self {
        GiftError::bad_request(e.0)
    }
}

//! Bilibili gift monitor (seed 001): `/add/room`, `/delete/room`, the
//! ingestion endpoint `/ingest/bilibili/{room_id}` and the `/gift*` reads.
//! Bare JSON bodies; errors `{"error": "..."}`.

mod cache;
mod error;
mod handlers;
pub mod month;
pub mod summary;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

pub use cache::MonthCache;
pub use error::GiftError;

use crate::app::AppState;

pub const SURFACE: &str = "gift";
pub(crate) const READ_MODELS: &[&str] = &["gifts"];

pub fn router(ingest_max_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/add/room", post(handlers::add_room))
        .route("/delete/room", post(handlers::delete_room))
        .route(
            "/ingest/bilibili/{room_id}",
            post(handlers::ingest).layer(DefaultBodyLimit::max(ingest_max_bytes)),
        )
        .route("/gift", get(handlers::current_month))
        .route("/gift/by_month", get(handlers::by_month))
        .route("/gift/live_sessions", get(handlers::live_sessions))
        .route("/gift/sc", get(handlers::super_chats))
        .method_not_allowed_fallback(method_not_allowed)
}

async fn method_not_allowed() -> GiftError {
    GiftError::new(StatusCode::METHOD_NOT_ALLOWED, "请求方法不允许")
}

pub async fn not_found(uri: axum::http::Uri) -> GiftError {
    GiftError::new(StatusCode::NOT_FOUND, format!("接口不存在: {}", uri.path()))
}

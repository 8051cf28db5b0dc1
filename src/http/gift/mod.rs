//! Bilibili gift monitor (seed 001): `/add/room`, `/delete/room`, the
//! ingestion endpoint `/ingest/bilibili/{room_id}` and the `/gift*` reads.
//! Bare JSON bodies; errors `{"error": "..."}`.

mod cache;
mod error;
mod handlers;
mod schema;
mod state;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use utoipa_axum::router::UtoipaMethodRouterExt;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use cache::MonthCache;
pub use error::GiftError;
pub use state::GiftState;

use crate::config::Config;

pub const SURFACE: &str = "gift";
pub(crate) const READ_MODELS: &[&str] = &["gifts"];

/// The surface's routes with their documentation.
pub fn routes(config: &Config) -> OpenApiRouter<GiftState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::add_room))
        .routes(routes!(handlers::delete_room))
        .routes(routes!(handlers::ingest).layer(DefaultBodyLimit::max(config.ingest_max_bytes)))
        .routes(routes!(handlers::current_month))
        .routes(routes!(handlers::by_month))
        .routes(routes!(handlers::live_sessions))
        .routes(routes!(handlers::super_chats))
}

pub fn router(config: &Config) -> Router<GiftState> {
    routes(config)
        .split_for_parts()
        .0
        .method_not_allowed_fallback(method_not_allowed)
}

async fn method_not_allowed() -> GiftError {
    GiftError::new(StatusCode::METHOD_NOT_ALLOWED, "请求方法不允许")
}

pub async fn not_found(uri: axum::http::Uri) -> GiftError {
    GiftError::new(StatusCode::NOT_FOUND, format!("接口不存在: {}", uri.path()))
}

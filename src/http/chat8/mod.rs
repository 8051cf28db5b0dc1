//! Chat8 (seed 003), accounts part: `/api/v1/auth/*`, `/api/v1/user/*`.
//! Envelope `{success, data, message, timestamp}`; errors per [`error`].

mod dto;
mod error;
mod extract;
mod handlers;

use axum::http::StatusCode;
use axum::routing::{post, put};
use axum::Router;

pub use error::Chat8Error;

use crate::app::AppState;

pub const SURFACE: &str = "chat8";
pub const PREFIX: &str = "/api/v1";

/// `2024-01-01T00:00:00Z`, as the seed writes its timestamps.
pub fn timestamp() -> String {
    format_time(chrono::Utc::now())
}

pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn router() -> Router<AppState> {
    let api = Router::new()
        .route("/auth/register", post(handlers::register))
        .route("/auth/login", post(handlers::login))
        .route("/auth/refresh", post(handlers::refresh))
        .route("/auth/logout", post(handlers::logout))
        .route(
            "/user/profile",
            put(handlers::update_profile).get(handlers::profile),
        )
        .route("/user/password", put(handlers::change_password))
        .route("/user/status", put(handlers::set_status))
        .method_not_allowed_fallback(method_not_allowed);
    Router::new().nest(PREFIX, api)
}

async fn method_not_allowed() -> Chat8Error {
    Chat8Error::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "请求方法不允许",
    )
}

pub async fn not_found(uri: axum::http::Uri) -> Chat8Error {
    Chat8Error::not_found(format!("接口不存在: {}", uri.path()))
}

//! Chat8 (seed 003): accounts (`/api/v1/auth/*`, `/api/v1/user/*`), friends,
//! direct messages, uploads and keys.
//! Envelope `{success, data, message, timestamp}`; errors per [`error`].

mod dto;
mod error;
mod extract;
mod handlers;
mod social;
mod uploads;
pub mod ws;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
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

pub fn router(avatar_max: usize, file_max: usize) -> Router<AppState> {
    let api = Router::new()
        .route("/friends", get(social::friends))
        .route("/friends/search", get(social::search))
        .route("/friends/request", post(social::request))
        .route("/friends/request/{request_id}", put(social::answer))
        .route("/friends/{friend_id}", delete(social::unfriend))
        .route("/messages", post(social::send))
        .route(
            "/messages/{id}",
            get(social::history).delete(social::delete),
        )
        .route("/messages/{message_id}/read", put(social::mark_read))
        .route(
            "/upload/avatar",
            post(uploads::avatar).layer(DefaultBodyLimit::max(avatar_max + uploads::FORM_OVERHEAD)),
        )
        .route(
            "/upload/file",
            post(uploads::file).layer(DefaultBodyLimit::max(file_max + uploads::FORM_OVERHEAD)),
        )
        .route("/files/{sha256}", get(uploads::get))
        .route(
            "/encryption/keys",
            post(social::publish_keys).get(social::my_keys),
        )
        .route("/encryption/public-key/{user_id}", get(social::public_key))
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
    Router::new()
        .nest(PREFIX, api)
        .route("/ws/{user_id}", get(ws::upgrade))
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

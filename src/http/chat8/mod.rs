//! Chat8 (seed 003): accounts (`/api/v1/auth/*`, `/api/v1/user/*`), friends,
//! direct messages, uploads and keys.
//! Envelope `{success, data, message, timestamp}`; errors per [`error`].

mod dto;
mod error;
mod extract;
mod handlers;
mod schema;
mod social;
mod state;
mod uploads;
pub mod ws;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use utoipa_axum::router::UtoipaMethodRouterExt;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use error::Chat8Error;
pub use state::Chat8State;

use crate::config::Config;

pub const SURFACE: &str = "chat8";
pub const PREFIX: &str = "/api/v1";

/// `2024-01-01T00:00:00Z`, as the seed writes its timestamps.
pub fn timestamp() -> String {
    format_time(chrono::Utc::now())
}

pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    crate::timefmt::rfc3339_utc(t)
}

/// The surface's routes with their documentation.
pub fn routes(config: &Config) -> OpenApiRouter<Chat8State> {
    let avatar_limit =
        DefaultBodyLimit::max(config.chat8_avatar_max_bytes + uploads::FORM_OVERHEAD);
    let file_limit = DefaultBodyLimit::max(config.chat8_file_max_bytes + uploads::FORM_OVERHEAD);
    let api = OpenApiRouter::new()
        .routes(routes!(social::friends))
        .routes(routes!(social::search))
        .routes(routes!(social::request))
        .routes(routes!(social::answer))
        .routes(routes!(social::unfriend))
        .routes(routes!(social::send))
        .routes(routes!(social::history, social::delete))
        .routes(routes!(social::mark_read))
        .routes(routes!(uploads::avatar).layer(avatar_limit))
        .routes(routes!(uploads::file).layer(file_limit))
        .routes(routes!(uploads::get))
        .routes(routes!(social::publish_keys, social::my_keys))
        .routes(routes!(social::public_key))
        .routes(routes!(handlers::register))
        .routes(routes!(handlers::login))
        .routes(routes!(handlers::refresh))
        .routes(routes!(handlers::logout))
        .routes(routes!(handlers::update_profile, handlers::profile))
        .routes(routes!(handlers::change_password))
        .routes(routes!(handlers::verify_email))
        .routes(routes!(handlers::set_status));
    OpenApiRouter::new().routes(routes!(ws::upgrade)).merge(api)
}

pub fn router(config: &Config) -> Router<Chat8State> {
    routes(config)
        .split_for_parts()
        .0
        .method_not_allowed_fallback(method_not_allowed)
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

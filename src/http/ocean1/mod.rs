//! Ocean1 (seed 002), accounts and points: `/api/auth/*` (email codes,
//! device-bound login), `/api/user/heartbeat`, `/api/user/history` and
//! `/api/pay/redeem`. Bodies `{status, ...}`; failures
//! `{status: "failed", msg}`.

mod cache;
mod dto;
mod error;
mod extract;
mod handlers;
mod pay;
pub mod proxy;
mod schema;
mod state;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use utoipa_axum::router::UtoipaMethodRouterExt;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use cache::HistoryCache;
pub use error::OceanError;
pub use state::{Ocean1State, STARTS_AT_ONCE};

use crate::config::Config;

pub const SURFACE: &str = "ocean1";

/// The surface's routes with their documentation.
pub fn routes(_: &Config) -> OpenApiRouter<Ocean1State> {
    let image_limit = DefaultBodyLimit::max(proxy::JIMENG_IMAGE_MAX_BYTES + 64 * 1024);
    OpenApiRouter::new()
        .routes(routes!(handlers::send_code))
        .routes(routes!(handlers::register))
        .routes(routes!(handlers::login))
        .routes(routes!(handlers::login_verify))
        .routes(routes!(handlers::reset_password))
        .routes(routes!(handlers::heartbeat))
        .routes(routes!(pay::history))
        .routes(routes!(pay::redeem))
        .routes(routes!(proxy::sora))
        .routes(routes!(proxy::banana))
        .routes(routes!(proxy::draw_result))
        .routes(routes!(proxy::cat_chat))
        .routes(routes!(proxy::jimeng_create))
        .routes(routes!(proxy::jimeng_image).layer(image_limit))
}

pub fn router(config: &Config) -> Router<Ocean1State> {
    routes(config)
        .split_for_parts()
        .0
        .method_not_allowed_fallback(method_not_allowed)
}

async fn method_not_allowed() -> OceanError {
    OceanError::new(StatusCode::METHOD_NOT_ALLOWED, "请求方法不允许")
}

pub async fn not_found(uri: axum::http::Uri) -> OceanError {
    OceanError::new(StatusCode::NOT_FOUND, format!("接口不存在: {}", uri.path()))
}

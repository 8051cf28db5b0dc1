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

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

pub use cache::HistoryCache;
pub use error::OceanError;

use crate::app::AppState;

pub const SURFACE: &str = "ocean1";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/send_code", post(handlers::send_code))
        .route("/api/auth/register", post(handlers::register))
        .route("/api/auth/login", post(handlers::login))
        .route("/api/auth/login_verify", post(handlers::login_verify))
        .route("/api/auth/reset_password", post(handlers::reset_password))
        .route("/api/user/heartbeat", post(handlers::heartbeat))
        .route("/api/user/history", get(pay::history))
        .route("/api/pay/redeem", post(pay::redeem))
        .route("/api/proxy/sora", post(proxy::sora))
        .route("/api/proxy/banana", post(proxy::banana))
        .route("/api/proxy/v1/draw/result", post(proxy::draw_result))
        .route("/api/proxy/cat/chat", post(proxy::cat_chat))
        .route("/api/proxy/jimeng/create", post(proxy::jimeng_create))
        .route(
            "/api/proxy/jimeng/image",
            post(proxy::jimeng_image).layer(axum::extract::DefaultBodyLimit::max(
                proxy::JIMENG_IMAGE_MAX_BYTES + 64 * 1024,
            )),
        )
        .method_not_allowed_fallback(method_not_allowed)
}

async fn method_not_allowed() -> OceanError {
    OceanError::new(StatusCode::METHOD_NOT_ALLOWED, "请求方法不允许")
}

pub async fn not_found(uri: axum::http::Uri) -> OceanError {
    OceanError::new(StatusCode::NOT_FOUND, format!("接口不存在: {}", uri.path()))
}

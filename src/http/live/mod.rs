//! The live-streaming site (seed 000), accounts and coins:
//! `/api/users/is_logged_in`, `/api/users/login_out` and the crypto recharge
//! under `/api/payment/`. Envelope `{code: 0, data}`; failures
//! `{code: 1, msg}`. A session from any surface's login counts (session
//! cookie or `Authorization: Bearer`).

mod error;
mod handlers;
mod payment;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

pub use error::LiveError;

use crate::app::AppState;

pub const SURFACE: &str = "live";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/users/is_logged_in", get(handlers::is_logged_in))
        .route("/api/users/login_out", get(handlers::login_out))
        .route(
            "/api/payment/process_recharge/",
            post(payment::process_recharge),
        )
        .route(
            "/api/payment/process_recharge",
            post(payment::process_recharge),
        )
        .route(
            "/api/payment/check_payment_status/{order_id}",
            get(payment::check_payment_status),
        )
        .route("/api/payment/ipn", post(payment::ipn))
        .method_not_allowed_fallback(method_not_allowed)
}

async fn method_not_allowed() -> LiveError {
    LiveError::new(StatusCode::METHOD_NOT_ALLOWED, "请求方法不允许")
}

/// Seed 000's `uid`: the account's UUID in unpadded base64url (22 characters).
pub fn uid_of(account_id: uuid::Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(account_id.as_bytes())
}

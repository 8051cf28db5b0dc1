//! The live-streaming site (seed 000): accounts and coins
//! (`/api/users/is_logged_in`, `/api/users/login_out`, the crypto recharge
//! under `/api/payment/`), the live rooms (`/api/live/*`) and the anchors'
//! own calls (`/api/anchor/*`). Envelope `{code: 0, data}`; failures
//! `{code: 1, msg}`. A session from any surface's login counts (session
//! cookie or `Authorization: Bearer`).

mod anchor;
mod error;
mod handlers;
mod payment;
mod rooms;
mod state;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

pub use error::LiveError;
pub use rooms::{account_of_uid, ranked_answer};
pub use state::{LiveSurface, Parts};

use crate::app::AppState;

pub const SURFACE: &str = "live";

pub fn router(card_max_bytes: usize) -> Router<AppState> {
    let anchors = DefaultBodyLimit::max(card_max_bytes);
    Router::new()
        .route("/api/live/get_all_lives", get(rooms::get_all_lives))
        .route("/api/live/get_all_lives/", get(rooms::get_all_lives))
        .route("/api/live/get_ranked_lives/", get(rooms::get_ranked_lives))
        .route("/api/live/get_ranked_lives", get(rooms::get_ranked_lives))
        .route("/api/live/get_live_info", get(rooms::get_live_info))
        .route(
            "/api/live/get_live_chat_history",
            get(rooms::get_live_chat_history),
        )
        .route(
            "/api/live/get_user_chat_history",
            get(rooms::get_user_chat_history),
        )
        .route(
            "/api/live/save_user_chat_history",
            post(rooms::save_user_chat_history),
        )
        .route("/api/live/pay_vip_coin", post(rooms::pay_vip_coin))
        .route("/api/live/get_all_tags/", get(rooms::get_all_tags))
        .route("/api/live/get_all_tags", get(rooms::get_all_tags))
        .route("/api/live/follow", post(rooms::follow))
        .route("/api/live/unfollow", post(rooms::unfollow))
        .route("/api/live/subscribe", post(rooms::subscribe))
        .route("/api/live/images/{*path}", get(rooms::image))
        .route(
            "/api/anchor/rooms",
            post(anchor::create_room)
                .get(anchor::my_rooms)
                .layer(anchors),
        )
        .route("/api/anchor/rooms/{room_id}", post(anchor::change_room))
        .route("/api/anchor/rooms/{room_id}/live", post(anchor::set_live))
        .route(
            "/api/anchor/rooms/{room_id}/messages",
            post(anchor::record_messages).layer(anchors),
        )
        .route("/api/anchor/subscription", post(anchor::set_subscription))
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

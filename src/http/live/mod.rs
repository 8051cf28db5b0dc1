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
mod schema;
mod state;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use utoipa_axum::router::UtoipaMethodRouterExt;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use error::LiveError;
pub use rooms::account_of_uid;
pub use state::{LiveSurface, Parts};

use crate::config::Config;

pub const SURFACE: &str = "live";

/// The surface's routes with their documentation.
pub fn routes(config: &Config) -> OpenApiRouter<LiveSurface> {
    let anchors = DefaultBodyLimit::max(config.live.card_max_bytes);
    let r = OpenApiRouter::new()
        .routes(routes!(rooms::get_all_lives))
        .routes(routes!(rooms::get_ranked_lives))
        .routes(routes!(rooms::get_live_info))
        .routes(routes!(rooms::get_live_chat_history))
        .routes(routes!(rooms::get_user_chat_history))
        .routes(routes!(rooms::save_user_chat_history))
        .routes(routes!(rooms::pay_vip_coin))
        .routes(routes!(rooms::get_all_tags))
        .routes(routes!(rooms::follow))
        .routes(routes!(rooms::unfollow))
        .routes(routes!(rooms::subscribe))
        .routes(routes!(rooms::image))
        .routes(routes!(anchor::create_room, anchor::my_rooms).layer(anchors))
        .routes(routes!(anchor::change_room))
        .routes(routes!(anchor::set_live))
        .routes(routes!(anchor::record_messages).layer(anchors))
        .routes(routes!(anchor::set_subscription))
        .routes(routes!(handlers::is_logged_in))
        .routes(routes!(handlers::login_out))
        .routes(routes!(payment::process_recharge))
        .routes(routes!(payment::check_payment_status))
        .routes(routes!(payment::ipn));
    // the seed writes some paths with a trailing slash, some without: both serve
    let r = slash_alias(r, "/api/live/get_all_lives", get(rooms::get_all_lives));
    let r = slash_alias(
        r,
        "/api/live/get_ranked_lives",
        get(rooms::get_ranked_lives),
    );
    let r = slash_alias(r, "/api/live/get_all_tags", get(rooms::get_all_tags));
    slash_alias(
        r,
        "/api/payment/process_recharge",
        post(payment::process_recharge),
    )
}

/// `path` + `/` served by `method` and documented as `path` is.
fn slash_alias(
    mut r: OpenApiRouter<LiveSurface>,
    path: &str,
    method: MethodRouter<LiveSurface>,
) -> OpenApiRouter<LiveSurface> {
    let alias = format!("{path}/");
    let paths = &mut r.get_openapi_mut().paths.paths;
    let mut item = paths.get(path).cloned().expect("the path is documented");
    for op in [&mut item.get, &mut item.post].into_iter().flatten() {
        op.operation_id = op.operation_id.take().map(|id| format!("{id}_slash"));
    }
    paths.insert(alias.clone(), item);
    r.route(&alias, method)
}

pub fn router(config: &Config) -> Router<LiveSurface> {
    routes(config)
        .split_for_parts()
        .0
        .method_not_allowed_fallback(method_not_allowed)
}

async fn method_not_allowed() -> LiveError {
    LiveError::new(StatusCode::METHOD_NOT_ALLOWED, "请求方法不允许")
}

pub use crate::liverooms::uid_of;

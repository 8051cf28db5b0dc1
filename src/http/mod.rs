//! HTTP surfaces: one module per seed document, each with its own router,
//! envelope and error type.

pub mod admin;
pub mod body;
pub mod chat8;
pub mod context;
pub mod docs;
pub mod gift;
pub mod health;
pub mod live;
pub mod metrics;
pub mod ocean1;
pub mod origin;
pub mod reply;
pub mod roomchat;
pub mod session;
pub mod socket;
pub mod witness;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::Router;
use tower_http::cors::CorsLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::core::Core;

pub use context::REQUEST_ID;

/// Keeps a caller's request id when it is short and plain, else makes one.
#[derive(Clone, Default)]
struct RequestIds;

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _req: &Request<B>) -> Option<RequestId> {
        uuid::Uuid::now_v7()
            .to_string()
            .parse()
            .ok()
            .map(RequestId::new)
    }
}

/// Unknown paths answer in the envelope of the surface they would belong to.
async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    if uri.path().starts_with("/admin") {
        return admin::AdminError::not_found().into_response();
    }
    let p = uri.path();
    if p.starts_with("/gift")
        || p.starts_with("/ingest/")
        || p.starts_with("/add/")
        || p.starts_with("/delete/")
    {
        return gift::not_found(uri).await.into_response();
    }
    if ["/api/users/", "/api/payment/", "/api/live/", "/api/anchor/"]
        .iter()
        .any(|prefix| uri.path().starts_with(prefix))
    {
        return live::LiveError::new(axum::http::StatusCode::NOT_FOUND, "接口不存在")
            .into_response();
    }
    if uri.path().starts_with("/api/auth/")
        || uri.path().starts_with("/api/user/")
        || uri.path().starts_with("/api/pay/")
        || uri.path().starts_with("/api/proxy/")
    {
        return ocean1::not_found(uri).await.into_response();
    }
    if uri.path().starts_with(chat8::PREFIX) || uri.path().starts_with("/ws/") {
        return chat8::not_found(uri).await.into_response();
    }
    roomchat::not_found(uri).await
}

/// The paths of the surfaces a session cookie authenticates (000, 002).
const COOKIE_PATHS: &[&str] = &[
    "/api/users/",
    "/api/payment/",
    "/api/live/",
    "/api/anchor/",
    "/api/auth/",
    "/api/user/",
    "/api/pay/",
    "/api/proxy/",
];

/// A cookie-authenticated write from another site, refused in the envelope
/// of the surface it was for.
fn cross_site_refused(path: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    const WHY: &str = "跨站请求被拒绝: 请从本站页面操作";
    let status = axum::http::StatusCode::FORBIDDEN;
    if ["/api/users/", "/api/payment/", "/api/live/", "/api/anchor/"]
        .iter()
        .any(|p| path.starts_with(p))
    {
        live::LiveError::new(status, WHY).into_response()
    } else {
        ocean1::OceanError::new(status, WHY).into_response()
    }
}

/// Any origin without credentials by default; the configured frontends'
/// origins with credentials (cookies), their own headers allowed.
fn cors(browser: &crate::config::BrowserConfig) -> CorsLayer {
    use axum::http::{header, HeaderValue, Method};
    use tower_http::cors::AllowOrigin;
    let Some(origins) = &browser.cors_origins else {
        return CorsLayer::permissive().max_age(Duration::from_secs(3600));
    };
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::ACCEPT_LANGUAGE,
            HeaderName::from_static("x-user-email"),
            HeaderName::from_static("x-device-id"),
            HeaderName::from_static("x-api-key"),
            REQUEST_ID,
        ])
        .expose_headers([REQUEST_ID, header::RETRY_AFTER])
        .max_age(Duration::from_secs(3600))
}

/// Each surface's state, built by the composition root (`app`).
pub struct Surfaces {
    pub roomchat: roomchat::RoomChatState,
    pub chat8: chat8::Chat8State,
    pub ocean1: ocean1::Ocean1State,
    pub live: live::LiveSurface,
    pub gift: gift::GiftState,
    pub admin: admin::AdminState,
    /// `/healthz` and `/metrics`
    pub ops: Core,
}

/// The requests that need not wait for deferred writes: the commands that
/// defer, so that a caller's next command does not queue behind the
/// previous one's projection. A deferred write adds a message or moves a
/// VIP payment's coins and access. The message sends read no message (they
/// decide on their stream's state, and read memberships and friendships,
/// which no deferred write changes); room access, which a payment grants,
/// is refused only after waiting for answered writes (`may_watch`). A VIP
/// payment decides on the payer's wallet; a stale access read costs a
/// repeat that the wallet answers as one, and the balance it answers is
/// the payment's own (or read after waiting, when nothing moved). A card
/// redeem and an operator's adjustment decide on the wallet, the card and
/// the account (none of them a deferred read model) and answer the
/// balance from their own event.
const NEED_NO_ANSWERED_WRITES: &[(&str, &str)] = &[
    ("POST", "/api/message/send"),
    ("POST", "/api/v1/messages"),
    ("POST", "/api/live/save_user_chat_history"),
    ("POST", "/api/live/pay_vip_coin"),
    ("POST", "/api/pay/redeem"),
    ("POST", "/admin/ledger/adjustments"),
];

/// Before anything else, a request waits until the read models include
/// every write answered so far (`projector::fence`): an in-memory compare
/// when they do, which is nearly always.
async fn answered_writes(
    axum::extract::State(core): axum::extract::State<Core>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let exempt = NEED_NO_ANSWERED_WRITES
        .iter()
        .any(|(m, p)| req.method().as_str() == *m && req.uri().path() == *p);
    if !exempt {
        core.answered_writes().await;
    }
    next.run(req).await
}

/// Every surface's routes on its own state, the documents, the fallback
/// that answers in the envelope of the surface a path belongs to, and the
/// layers every request passes.
pub fn router(config: &Config, s: Surfaces) -> Router {
    let max_body = config.max_body_bytes;
    let browser = config.browser.clone();
    let core = s.ops.clone();
    Router::new()
        .merge(roomchat::router(config).with_state(s.roomchat))
        .merge(chat8::router(config).with_state(s.chat8))
        .merge(ocean1::router(config).with_state(s.ocean1))
        .merge(live::router(config).with_state(s.live))
        .merge(gift::router(config).with_state(s.gift))
        .merge(admin::router(config).with_state(s.admin))
        .merge(docs::ops_routes(config).split_for_parts().0.with_state(s.ops))
        .merge(docs::router())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(core, answered_writes))
        .layer(axum::middleware::from_fn_with_state(
            origin::Guard {
                allowed: browser.cors_origins.clone().unwrap_or_default(),
                cookie_paths: COOKIE_PATHS,
                unsafe_gets: &["/api/users/login_out"],
                refuse: cross_site_refused,
            },
            origin::guard,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(cors(&browser))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let rid = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %rid)
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(axum::middleware::from_fn(context::sanitize_request_id))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RequestIds))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route renamed or removed would silently lose its exemption (still
    /// correct, only slower): every listed route is one the server has.
    #[test]
    fn every_route_exempt_from_the_answered_writes_wait_is_served() {
        let doc = docs::openapi(None).expect("the combined document");
        for (method, path) in NEED_NO_ANSWERED_WRITES {
            let served = doc["paths"][path][method.to_ascii_lowercase()].is_object();
            assert!(
                served,
                "{method} {path} is exempt but not a documented route"
            );
        }
    }
}

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
pub mod roomchat;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::Router;
use tower_http::cors::CorsLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::app::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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

pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let state_browser = state.config.browser.clone();
    Router::new()
        .merge(roomchat::router(&state.config))
        .merge(chat8::router(&state.config))
        .merge(ocean1::router(&state.config))
        .merge(live::router(&state.config))
        .merge(gift::router(&state.config))
        .merge(admin::router(&state.config))
        .merge(docs::ops_routes(&state.config).split_for_parts().0)
        .merge(docs::router())
        .fallback(not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(cors(&state_browser))
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

/// Seconds a 503 asks the client to wait before retrying.
pub const RETRY_AFTER_SECS: u32 = 2;

/// The status of a request that failed on the server's side, its cause
/// chain logged: 503 when the database was out of reach (during a failover:
/// safe to retry), 400 when it refused a value of the request (a NUL),
/// else 500.
pub(crate) fn failure_status(surface: &str, err: &anyhow::Error) -> axum::http::StatusCode {
    if crate::db::unavailable_in(err) {
        tracing::warn!(surface, error = format!("{err:#}"), "database unavailable");
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    } else if crate::db::bad_text_in(err) {
        // a value no check stopped, refused by PostgreSQL: the request's fault
        tracing::warn!(
            surface,
            error = format!("{err:#}"),
            "a value the database cannot store"
        );
        axum::http::StatusCode::BAD_REQUEST
    } else {
        tracing::error!(surface, error = format!("{err:#}"), "request failed");
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// What a Chinese-language surface says for a [`failure_status`].
pub(crate) fn failure_message(status: axum::http::StatusCode) -> &'static str {
    match status {
        axum::http::StatusCode::BAD_REQUEST => "参数错误: 含有无法保存的字符",
        axum::http::StatusCode::SERVICE_UNAVAILABLE => "服务暂时不可用，请稍后重试",
        _ => "服务器内部错误",
    }
}

/// A 503 says when to come back (`Retry-After`).
pub(crate) fn retry_after(mut resp: axum::response::Response) -> axum::response::Response {
    if resp.status() == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(RETRY_AFTER_SECS),
        );
    }
    resp
}

/// A JSON answer already serialised (a kept answer's bytes).
pub(crate) fn json_bytes(bytes: axum::body::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

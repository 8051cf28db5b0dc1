//! Per-request context that flows into event metadata.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::store::CommandMeta;

pub const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub correlation_id: String,
    pub client_ip: String,
}

fn plain_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// A caller-supplied `x-request-id` is kept only when short and plain;
/// anything else is replaced, so ids stay safe to log and store.
pub async fn sanitize_request_id(mut req: Request, next: Next) -> Response {
    let bad = req
        .headers()
        .get(REQUEST_ID)
        .map(|v| !v.to_str().map(plain_id).unwrap_or(false))
        .unwrap_or(false);
    if bad {
        let id = uuid::Uuid::now_v7().to_string();
        req.headers_mut().insert(
            REQUEST_ID,
            HeaderValue::from_str(&id).expect("uuid is a valid header"),
        );
    }
    next.run(req).await
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| plain_id(v))
                .map(str::to_owned)
        };
        let request_id = header("x-request-id").unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let correlation_id = header("x-correlation-id").unwrap_or_else(|| request_id.clone());
        let client_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        Ok(Self {
            request_id,
            correlation_id,
            client_ip,
        })
    }
}

impl RequestContext {
    /// Metadata for a command caused directly by this request.
    pub fn meta(&self, surface: &'static str, actor: String) -> CommandMeta {
        CommandMeta {
            actor,
            surface,
            request_id: self.request_id.clone(),
            correlation_id: self.correlation_id.clone(),
            causation_id: self.request_id.clone(),
            client_ip: self.client_ip.clone(),
        }
    }
}

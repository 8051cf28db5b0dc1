//! Extractors for Ocean1: JSON bodies in its failure shape, and the signed-in
//! caller. The frontend sends `x-user-email` and `x-device-id` on every call;
//! they are never trusted alone: the caller is the session the server issued
//! at login (cookie or `Authorization: Bearer`), and the headers must match it.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::error::OceanError;
use super::Ocean1State;
use crate::auth::Caller;
use crate::http::body;
use crate::identity::AuthFailure;

pub struct OJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OJson<T> {
    type Rejection = OceanError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(OJson(body::json_only(req, state).await?))
    }
}

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The session behind the request, or why there is none (heartbeat tells a
/// displaced device apart from a stranger).
pub async fn session_of(headers: &HeaderMap, state: &Ocean1State) -> Result<Caller, AuthFailure> {
    let token = crate::http::session::token_of(headers, true)?.ok_or(AuthFailure::Missing)?;
    state.auth.authenticate(&token).await
}

/// The claimed identity headers must agree with the session.
pub fn check_headers(headers: &HeaderMap, caller: &Caller) -> Result<(), OceanError> {
    let mismatch = || OceanError::new(StatusCode::FORBIDDEN, "身份信息与登录会话不一致");
    if let Some(claimed) = header(headers, "x-user-email") {
        let own = caller.email.as_deref().unwrap_or_default();
        if !claimed.eq_ignore_ascii_case(own) && claimed.to_lowercase() != own.to_lowercase() {
            return Err(mismatch());
        }
    }
    if let (Some(claimed), Some(own)) =
        (header(headers, "x-device-id"), caller.device_id.as_deref())
    {
        if claimed != own {
            return Err(mismatch());
        }
    }
    Ok(())
}

//! The session as HTTP carries it: the token of a request (header or
//! cookie) and the cookie a login sets or a logout clears.

use axum::http::HeaderMap;

use crate::auth::token_from_header;
use crate::config::BrowserConfig;
use crate::identity::{AuthFailure, OpenedSession, SESSION_COOKIE};

/// The token a request carries: `Authorization: [Bearer] <token>`, else the
/// session cookie when `cookie` is allowed. A malformed header is invalid,
/// not absent.
pub fn token_of(headers: &HeaderMap, cookie: bool) -> Result<Option<String>, AuthFailure> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        return v
            .to_str()
            .ok()
            .and_then(token_from_header)
            .map(|t| Some(t.to_owned()))
            .ok_or(AuthFailure::Invalid);
    }
    if !cookie {
        return Ok(None);
    }
    let found = headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, v)| *k == SESSION_COOKIE && !v.is_empty())
        .map(|(_, v)| v.to_owned());
    Ok(found)
}

/// `Set-Cookie` for surfaces whose frontends rely on a cookie (000, 002).
pub fn cookie(session: &OpenedSession, browser: &BrowserConfig) -> String {
    format!(
        "{SESSION_COOKIE}={}; {}; Max-Age={}",
        session.token,
        browser.cookie_attributes(),
        session.ttl.as_secs()
    )
}

/// `Set-Cookie` that ends the cookie.
pub fn clear_cookie(browser: &BrowserConfig) -> String {
    format!(
        "{SESSION_COOKIE}=; {}; Max-Age=0",
        browser.cookie_attributes()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            "a=1; tidelog_session=tok.en; b=2".parse().unwrap(),
        );
        assert_eq!(token_of(&h, true).unwrap().as_deref(), Some("tok.en"));
        assert_eq!(token_of(&h, false).unwrap(), None);
        h.insert("authorization", "Basic x".parse().unwrap());
        assert!(token_of(&h, true).is_err());
    }
}

//! Cross-site request refusal for the surfaces a session cookie
//! authenticates (seeds 000 and 002). A browser sends the cookie with any
//! request to this server, whichever page makes it; so an unsafe request
//! (a write, and the seed's `GET /api/users/login_out`) that the cookie
//! alone authenticates must come from the server's own origin or one of
//! `TIDELOG_CORS_ORIGINS`: its `Origin`, else its `Referer`, else
//! `Sec-Fetch-Site` says so. `SameSite` alone does not hold against a
//! sibling subdomain, another port, or `TIDELOG_COOKIE_SAMESITE=none`.
//! Requests with `Authorization` (bearer tokens, which no other site can
//! attach) and requests from no browser at all (none of the three
//! headers) pass.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;

use crate::identity::SESSION_COOKIE;

#[derive(Clone)]
pub struct Guard {
    /// the configured frontends' origins (`scheme://host[:port]`)
    pub allowed: Vec<String>,
    /// the path prefixes whose surfaces take the session cookie
    pub cookie_paths: &'static [&'static str],
    /// unsafe GETs (they change state)
    pub unsafe_gets: &'static [&'static str],
    /// the refusal, in the envelope of the surface `path` belongs to
    pub refuse: fn(path: &str) -> Response,
}

pub async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let guarded = g.cookie_paths.iter().any(|p| path.starts_with(p))
        && match *req.method() {
            Method::GET | Method::HEAD | Method::OPTIONS => g.unsafe_gets.contains(&path),
            _ => true,
        };
    if guarded && by_cookie(req.headers()) && !same_site(req.headers(), &g.allowed) {
        tracing::warn!(
            path,
            origin = ?req.headers().get(header::ORIGIN),
            "cookie-authenticated request from another site refused"
        );
        return (g.refuse)(path);
    }
    next.run(req).await
}

/// The session cookie would authenticate it: it carries one and no
/// `Authorization` (which takes precedence).
fn by_cookie(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::AUTHORIZATION) {
        return false;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, v)| k == SESSION_COOKIE && !v.is_empty())
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&url[..scheme.len() + 3 + end])
}

fn same_site(headers: &HeaderMap, allowed: &[String]) -> bool {
    let text = |h| {
        headers
            .get(h)
            .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
    };
    let ours = |origin: &str| {
        let host = origin.split_once("://").map(|(_, h)| h);
        let same_host =
            host.is_some_and(|h| text(header::HOST).is_some_and(|own| own.eq_ignore_ascii_case(h)));
        same_host || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
    };
    if let Some(origin) = text(header::ORIGIN) {
        // "null": a sandboxed frame, a file, a redirect across sites
        return origin != "null" && ours(origin);
    }
    if let Some(referer) = text(header::REFERER) {
        return origin_of(referer).is_some_and(ours);
    }
    match text(axum::http::HeaderName::from_static("sec-fetch-site")) {
        Some(site) => site == "same-origin" || site == "none",
        // no browser sent it
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_the_own_and_configured_origins_are_the_same_site() {
        let allowed = vec!["https://app.example.com".to_owned()];
        let host = ("host", "api.example.com");
        for (pairs, ok) in [
            (vec![host, ("origin", "https://api.example.com")], true),
            (vec![host, ("origin", "https://app.example.com")], true),
            (vec![host, ("origin", "https://evil.example")], false),
            // a sibling subdomain or another port is another origin
            (vec![host, ("origin", "https://shop.example.com")], false),
            (
                vec![host, ("origin", "https://api.example.com:8443")],
                false,
            ),
            (vec![host, ("origin", "null")], false),
            (
                vec![host, ("referer", "https://app.example.com/pay?x=1")],
                true,
            ),
            (vec![host, ("referer", "https://evil.example/")], false),
            (vec![host, ("sec-fetch-site", "same-origin")], true),
            (vec![host, ("sec-fetch-site", "same-site")], false),
            (vec![host, ("sec-fetch-site", "cross-site")], false),
            // not a browser
            (vec![host], true),
        ] {
            assert_eq!(same_site(&headers(&pairs), &allowed), ok, "{pairs:?}");
        }
    }

    #[test]
    fn only_the_session_cookie_without_a_bearer_counts_as_cookie_authentication() {
        assert!(by_cookie(&headers(&[("cookie", "a=1; tidelog_session=t")])));
        assert!(!by_cookie(&headers(&[("cookie", "tidelog_session=")])));
        assert!(!by_cookie(&headers(&[
            ("cookie", "tidelog_session=t"),
            ("authorization", "Bearer t")
        ])));
        assert!(!by_cookie(&headers(&[])));
    }
}

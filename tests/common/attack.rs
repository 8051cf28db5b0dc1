//! An attacker's tools: tokens forged from a real one, and raw HTTP
//! requests no client library would send as written (`..` segments,
//! encoded dots, bytes a header should not carry).

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tidelog::auth::{TokenSubject, Tokens};
use tidelog::config::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::JWT_SECRET;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The claims of a token, read without checking its signature.
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// The account and session a token names.
pub fn subject_of(token: &str) -> TokenSubject {
    let c = claims_of(token);
    TokenSubject {
        account_id: c["sub"].as_str().unwrap().parse().unwrap(),
        session_id: c["sid"].as_str().unwrap().parse().unwrap(),
    }
}

fn in_secs(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::seconds(secs)
}

/// The same session's token, properly signed, whose expiry has passed.
pub fn expired(token: &str) -> String {
    Tokens::new(&Secret::new(JWT_SECRET.into())).issue(subject_of(token), in_secs(-120))
}

/// The same session's token signed with a secret that is not the server's.
pub fn signed_elsewhere(token: &str) -> String {
    Tokens::new(&Secret::new("an-attacker-s-own-secret-0123456789ab".into()))
        .issue(subject_of(token), in_secs(3600))
}

/// The same claims with `"alg": "none"` and no signature.
pub fn unsigned(token: &str) -> String {
    let header = b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes());
    let claims = b64(claims_of(token).to_string().as_bytes());
    format!("{header}.{claims}.")
}

/// The same claims, the expiry pushed a year ahead, the old signature kept.
pub fn extended(token: &str) -> String {
    let mut c = claims_of(token);
    c["exp"] = json!(in_secs(365 * 86_400).timestamp());
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        b64(c.to_string().as_bytes()),
        parts[2]
    )
}

/// A token signed with the server's secret for a session that never was.
pub fn unknown_session(token: &str) -> String {
    let subject = TokenSubject {
        session_id: uuid::Uuid::new_v4(),
        ..subject_of(token)
    };
    Tokens::new(&Secret::new(JWT_SECRET.into())).issue(subject, in_secs(3600))
}

/// A token signed with the server's secret naming `account`'s id with the
/// session of `token` (a session is one account's only).
pub fn session_for_another_account(token: &str, account: uuid::Uuid) -> String {
    let subject = TokenSubject {
        account_id: account,
        ..subject_of(token)
    };
    Tokens::new(&Secret::new(JWT_SECRET.into())).issue(subject, in_secs(3600))
}

/// A raw HTTP/1.1 request, path and headers sent byte for byte as given;
/// the status and the body (de-chunked).
pub async fn raw_request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> (StatusCode, Vec<u8>) {
    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    stream.write_all(&req).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("an answer within 30 s")
    .unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let rest = answer[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(&rest) } else { rest };
    (StatusCode::from_u16(status).unwrap(), body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]).to_string();
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// A raw GET's status and body as JSON (panics on anything else).
pub async fn raw_get_json(base: &str, path: &str) -> (StatusCode, Value) {
    let (status, body) = raw_request(base, "GET", path, &[], b"").await;
    let value = serde_json::from_slice(&body).unwrap_or_else(|_| {
        panic!(
            "{path} answered non-JSON ({status}): {:?}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, value)
}

//! Jimeng through the Volcengine visual API: `POST
//! {JIMENG_API_URL}/?Action=CVSync2AsyncSubmitTask&Version=2022-08-31
//! {req_key, prompt, …}` answers `{"code": 10000, "data": {"task_id"}}`;
//! `Action=CVSync2AsyncGetResult {req_key, task_id}` answers `{"code":
//! 10000, "data": {status: in_queue|generating|done|not_found|expired,
//! image_urls?, video_url?}}`. Requests are signed as Volcengine documents
//! (HMAC-SHA256 over the canonical request; region `cn-north-1`, service
//! `cv`) with `JIMENG_ACCESS_KEY` / `JIMENG_SECRET_KEY`.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::grsai::{Outcome, Submitted};

pub const VERSION: &str = "2022-08-31";
pub const REGION: &str = "cn-north-1";
pub const SERVICE: &str = "cv";
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The headers of a signed request: `X-Date`, `X-Content-Sha256` and
/// `Authorization`, for `POST {path}?{query}` to `host` with `body`.
pub fn sign(
    access_key: &str,
    secret_key: &str,
    host: &str,
    path: &str,
    query: &str,
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(&'static str, String)> {
    let x_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let short_date = &x_date[..8];
    let content_sha = sha256_hex(body);
    let signed_headers = "content-type;host;x-content-sha256;x-date";
    let canonical_headers = format!(
        "content-type:application/json\nhost:{host}\nx-content-sha256:{content_sha}\nx-date:{x_date}\n"
    );
    let canonical_request =
        format!("POST\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{content_sha}");
    let scope = format!("{short_date}/{REGION}/{SERVICE}/request");
    let string_to_sign = format!(
        "HMAC-SHA256\n{x_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac(secret_key.as_bytes(), short_date);
    let k_region = hmac(&k_date, REGION);
    let k_service = hmac(&k_region, SERVICE);
    let k_signing = hmac(&k_service, "request");
    let signature = hex::encode(hmac(&k_signing, &string_to_sign));
    vec![
        ("X-Date", x_date),
        ("X-Content-Sha256", content_sha),
        (
            "Authorization",
            format!(
                "HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
            ),
        ),
    ]
}

/// The query of an action, in canonical (sorted) order.
pub fn query(action: &str) -> String {
    format!("Action={action}&Version={VERSION}")
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    keys: (&str, &str),
    action: &str,
    body: &Value,
    timeout: Duration,
) -> Result<(reqwest::StatusCode, Option<Value>), reqwest::Error> {
    let base = base.trim_end_matches('/');
    let host = reqwest::Url::parse(base)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| u.port().map_or(h.to_owned(), |p| format!("{h}:{p}")))
        })
        .unwrap_or_default();
    let q = query(action);
    let bytes = serde_json::to_vec(body).expect("JSON");
    let mut req = http
        .post(format!("{base}/?{q}"))
        .timeout(timeout)
        .header("content-type", "application/json")
        .body(bytes.clone());
    for (k, v) in sign(keys.0, keys.1, &host, "/", &q, &bytes, chrono::Utc::now()) {
        req = req.header(k, v);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let body = resp.json::<Value>().await.ok();
    Ok((status, body))
}

pub async fn submit(
    http: &reqwest::Client,
    base: &str,
    keys: (&str, &str),
    body: Value,
    timeout: Duration,
) -> Submitted {
    match call(http, base, keys, "CVSync2AsyncSubmitTask", &body, timeout).await {
        Err(e) if e.is_connect() => Submitted::Unreachable(e.to_string()),
        Err(e) => Submitted::Unknown(e.to_string()),
        Ok((status, Some(v))) => {
            let code = v.get("code").and_then(Value::as_i64);
            match (code, v.pointer("/data/task_id").and_then(Value::as_str)) {
                (Some(10000), Some(id)) if !id.is_empty() => Submitted::Accepted(id.to_owned()),
                (Some(_), _) if !status.is_server_error() => Submitted::Refused(
                    v.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("refused")
                        .chars()
                        .take(200)
                        .collect(),
                ),
                _ => Submitted::Unknown(format!("HTTP {status}")),
            }
        }
        Ok((status, None)) if status.is_client_error() => {
            Submitted::Refused(format!("HTTP {status}"))
        }
        Ok((status, None)) => Submitted::Unknown(format!("HTTP {status}")),
    }
}

pub async fn result(
    http: &reqwest::Client,
    base: &str,
    keys: (&str, &str),
    req_key: &str,
    task_id: &str,
) -> Option<Outcome> {
    let body = serde_json::json!({ "req_key": req_key, "task_id": task_id });
    let (_, v) = call(
        http,
        base,
        keys,
        "CVSync2AsyncGetResult",
        &body,
        CALL_TIMEOUT,
    )
    .await
    .ok()?;
    let v = v?;
    match v.get("code").and_then(Value::as_i64) {
        Some(10000) => {}
        // the task is gone or refused upstream
        Some(_) => {
            let why = v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("failed upstream");
            return Some(Outcome::Failed(why.chars().take(200).collect()));
        }
        None => return None,
    }
    let data = v.get("data")?;
    match data.get("status").and_then(Value::as_str) {
        Some("done") => {
            let url = data
                .get("video_url")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                .or_else(|| data.pointer("/image_urls/0").and_then(Value::as_str));
            Some(match url {
                Some(u) => Outcome::Succeeded(u.to_owned()),
                None => Outcome::Failed("done without a result".into()),
            })
        }
        Some("not_found") | Some("expired") => {
            Some(Outcome::Failed("the task is gone upstream".into()))
        }
        _ => Some(Outcome::Running(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_the_body_the_date_and_the_host() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-03T10:04:27Z")
            .unwrap()
            .to_utc();
        let q = query("CVSync2AsyncSubmitTask");
        let h = sign("AK", "SK", "visual.volcengineapi.com", "/", &q, b"{}", at);
        assert_eq!(h[0], ("X-Date", "20261203T100427Z".to_owned()));
        assert_eq!(h[1].1, sha256_hex(b"{}"));
        assert!(h[2].1.starts_with(
            "HMAC-SHA256 Credential=AK/20261203/cn-north-1/cv/request, SignedHeaders=content-type;host;x-content-sha256;x-date, Signature="
        ));
        let other = sign(
            "AK",
            "SK",
            "visual.volcengineapi.com",
            "/",
            &q,
            b"{\"a\":1}",
            at,
        );
        assert_ne!(h[2], other[2]);
        let later = sign(
            "AK",
            "SK",
            "visual.volcengineapi.com",
            "/",
            &q,
            b"{}",
            at + chrono::Duration::seconds(1),
        );
        assert_ne!(h[2], later[2]);
    }
}

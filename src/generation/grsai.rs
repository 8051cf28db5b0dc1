//! A GrsAI-compatible generation gateway: `POST {base}/v1/video/sora-video`
//! and `POST {base}/v1/draw/nano-banana` with `"webHook": "-1"` answer
//! `{"code": 0, "data": {"id"}}` at once; `POST {base}/v1/draw/result
//! {id}` answers `{"code": 0, "data": {id, status: running|succeeded|failed,
//! progress, results: [{url}], failure_reason, error}}`. Bearer
//! `GENERATION_API_KEY`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use aggregates::generation::GenerationKind;

/// How long a submit or a result query may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub enum Submitted {
    Accepted(String),
    /// The gateway answered and refused (nothing runs upstream).
    Refused(String),
    /// Nothing reached the gateway (it is down).
    Unreachable(String),
    /// Sent, but no answer came back: the task may exist upstream.
    Unknown(String),
}

#[derive(Debug, PartialEq)]
pub enum Outcome {
    Running(u8),
    Succeeded(String),
    Failed(String),
}

#[derive(Deserialize)]
struct Envelope {
    code: Option<i64>,
    msg: Option<String>,
    data: Option<Value>,
}

fn path(kind: GenerationKind) -> &'static str {
    match kind {
        GenerationKind::Sora => "/v1/video/sora-video",
        // chat has its own upstream (`super::chat`)
        _ => "/v1/draw/nano-banana",
    }
}

pub async fn submit(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    kind: GenerationKind,
    mut body: Value,
    timeout: Duration,
) -> Submitted {
    body["webHook"] = Value::String("-1".into());
    let sent = http
        .post(format!("{base}{}", path(kind)))
        .bearer_auth(key)
        .timeout(timeout)
        .json(&body)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Submitted::Unreachable(e.to_string()),
        Err(e) => return Submitted::Unknown(e.to_string()),
    };
    let status = resp.status();
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => return Submitted::Unknown(e.to_string()),
    };
    let parsed: Option<Envelope> = serde_json::from_str(&text).ok();
    match parsed {
        Some(Envelope {
            code: Some(0),
            data: Some(d),
            ..
        }) if status.is_success() => match d.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => Submitted::Accepted(id.to_owned()),
            _ => Submitted::Refused("the gateway answered without a task id".into()),
        },
        Some(e) if status.is_client_error() || e.code.is_some_and(|c| c != 0) => {
            Submitted::Refused(
                e.msg
                    .unwrap_or_else(|| format!("HTTP {status}"))
                    .chars()
                    .take(200)
                    .collect(),
            )
        }
        _ if status.is_client_error() => Submitted::Refused(format!("HTTP {status}")),
        // a 5xx or an unreadable answer: whether a task started is unknown
        _ => Submitted::Unknown(format!("HTTP {status}")),
    }
}

/// One result query; `None` when the gateway could not be asked (try later).
pub async fn result(http: &reqwest::Client, base: &str, key: &str, id: &str) -> Option<Outcome> {
    let resp = http
        .post(format!("{base}/v1/draw/result"))
        .bearer_auth(key)
        .timeout(CALL_TIMEOUT)
        .json(&serde_json::json!({ "id": id }))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let e: Envelope = resp.json().await.ok()?;
    if e.code != Some(0) {
        return None;
    }
    let d = e.data?;
    let progress = d.get("progress").and_then(Value::as_f64).unwrap_or(0.0);
    match d.get("status").and_then(Value::as_str) {
        Some("succeeded") => {
            let url = d
                .pointer("/results/0/url")
                .and_then(Value::as_str)
                .or_else(|| d.get("url").and_then(Value::as_str));
            match url {
                Some(u) if !u.is_empty() => Some(Outcome::Succeeded(u.to_owned())),
                _ => Some(Outcome::Failed("succeeded without a result".into())),
            }
        }
        Some("failed") => {
            let why = d
                .get("failure_reason")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .or_else(|| d.get("error").and_then(Value::as_str))
                .unwrap_or("failed upstream");
            Some(Outcome::Failed(why.chars().take(200).collect()))
        }
        _ => Some(Outcome::Running(progress.clamp(0.0, 99.0) as u8)),
    }
}

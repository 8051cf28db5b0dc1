//! An OpenAI-compatible chat completion: `POST {base}/chat/completions`
//! `{model, messages, stream: false}` with `Authorization: Bearer`; the
//! reply is `choices[0].message.content`.

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Debug)]
pub enum ChatFailure {
    /// The upstream answered and refused (4xx, or no reply in its answer).
    Refused(String),
    /// Down, too slow, or a 5xx.
    Unavailable(String),
}

pub async fn complete(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    model: &str,
    messages: &[Message],
    deadline: Duration,
) -> Result<String, ChatFailure> {
    let resp = http
        .post(format!("{base}/chat/completions"))
        .bearer_auth(key)
        .timeout(deadline)
        .json(&json!({ "model": model, "messages": messages, "stream": false }))
        .send()
        .await
        .map_err(|e| ChatFailure::Unavailable(e.to_string()))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| ChatFailure::Unavailable(format!("HTTP {status}: {e}")))?;
    if status.is_server_error() {
        return Err(ChatFailure::Unavailable(format!("HTTP {status}")));
    }
    if !status.is_success() {
        let why = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("refused");
        return Err(ChatFailure::Refused(why.chars().take(200).collect()));
    }
    body.pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ChatFailure::Refused("the answer has no reply".into()))
}

//! Chat8 test users: registered over HTTP, calling the API with their
//! bearer token; Chat8's envelopes asserted.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::TestApp;

#[derive(Clone)]
pub struct User {
    pub id: i64,
    pub token: String,
    pub base: String,
    pub http: reqwest::Client,
}

impl User {
    pub async fn register(app: &TestApp, name: &str) -> Self {
        Self::register_at(&app.base, &app.http, name).await
    }

    pub async fn register_at(base: &str, http: &reqwest::Client, name: &str) -> Self {
        let resp = http
            .post(format!("{base}/api/v1/auth/register"))
            .json(
                &json!({"username": name, "email": format!("{name}@example.com"),
                          "password": "password123", "confirm_password": "password123"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let v: Value = resp.json().await.unwrap();
        Self {
            id: v["data"]["user_id"].as_i64().unwrap(),
            token: v["data"]["access_token"].as_str().unwrap().to_owned(),
            base: base.to_owned(),
            http: http.clone(),
        }
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        send(r).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    pub async fn befriend(&self, other: &User) {
        let (s, v) = self
            .post(
                "/friends/request",
                json!({"user_id": other.id, "message": "hi"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let id = v["data"]["request_id"].as_i64().unwrap();
        let (s, v) = other
            .put(
                &format!("/friends/request/{id}"),
                json!({"action": "accept"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    pub async fn say(&self, to: &User, text: &str) -> i64 {
        let (s, v) = self
            .post(
                "/messages",
                json!({"receiver_id": to.id, "content": text, "message_type": "text"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["data"]["id"].as_i64().unwrap()
    }
}

pub async fn send(r: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON ({status}): {text:?}"));
    (status, v)
}

pub fn success(got: &(StatusCode, Value)) -> &Value {
    assert!(got.0.is_success(), "{}", got.1);
    assert_eq!(got.1["success"], true, "{}", got.1);
    assert!(
        got.1["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{}",
        got.1
    );
    &got.1
}

/// Chat8's error envelope with its code and status.
pub fn failed(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["success"], false, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(got.1["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

impl User {
    /// The same account, calling another server process.
    pub fn on(&self, base: &str) -> Self {
        Self {
            base: base.to_owned(),
            ..self.clone()
        }
    }

    /// `ws://…/ws/{id}?token=…[&since=…]`
    pub fn socket_url(&self, since: Option<&str>) -> String {
        let mut url = format!(
            "{}/ws/{}?token={}",
            self.base.replacen("http", "ws", 1),
            self.id,
            self.token
        );
        if let Some(s) = since {
            url.push_str(&format!("&since={s}"));
        }
        url
    }
}

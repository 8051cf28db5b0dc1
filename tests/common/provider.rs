//! A NOWPayments-compatible payment provider on loopback: records what it
//! was asked, answers payments with fresh ids, reports the status the test
//! sets, and signs IPN bodies like the real one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha512;

pub const API_KEY: &str = "provider-api-key";
pub const IPN_SECRET: &str = "provider-ipn-secret";

#[derive(Default)]
pub struct ProviderState {
    /// every create request body, in order
    pub created: Vec<Value>,
    /// payment id -> status reported by GET
    pub statuses: HashMap<String, String>,
    pub status_calls: usize,
    /// answer creates with 500
    pub down: bool,
    next_id: u64,
}

#[derive(Clone)]
pub struct FakeProvider {
    pub url: String,
    pub state: Arc<Mutex<ProviderState>>,
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(API_KEY)
}

async fn create(
    State(state): State<Arc<Mutex<ProviderState>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"message": "Invalid api key"})),
        );
    }
    let mut s = state.lock().unwrap();
    if s.down {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"message": "down"})),
        );
    }
    s.next_id += 1;
    let id = 6_422_917_700 + s.next_id;
    s.statuses.insert(id.to_string(), "waiting".into());
    s.created.push(body.clone());
    let price = body["price_amount"].as_f64().unwrap();
    (
        StatusCode::CREATED,
        Json(json!({
            "payment_id": id,
            "payment_status": "waiting",
            "pay_address": format!("TVPw1vYm71owVoB6NXfV4AUxRcrHPbN{:03}", s.next_id),
            "price_amount": price,
            "price_currency": body["price_currency"],
            "pay_amount": 19.916393,
            "pay_currency": body["pay_currency"],
            "order_id": body["order_id"],
        })),
    )
}

async fn status(
    State(state): State<Arc<Mutex<ProviderState>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"message": "Invalid api key"})),
        );
    }
    let mut s = state.lock().unwrap();
    s.status_calls += 1;
    match s.statuses.get(&id) {
        Some(st) => (
            StatusCode::OK,
            Json(
                json!({"payment_id": id.parse::<u64>().unwrap(), "payment_status": st, "actually_paid": 19.916393}),
            ),
        ),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "not found"}))),
    }
}

impl FakeProvider {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(ProviderState::default()));
        let app = Router::new()
            .route("/v1/payment", post(create))
            .route("/v1/payment/{id}", get(status))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    pub fn set_status(&self, payment_id: &str, status: &str) {
        self.state
            .lock()
            .unwrap()
            .statuses
            .insert(payment_id.into(), status.into());
    }
}

/// The provider's signature: HMAC-SHA512 over the body with sorted keys.
pub fn sign(body: &Value) -> String {
    let mut mac = Hmac::<Sha512>::new_from_slice(IPN_SECRET.as_bytes()).unwrap();
    mac.update(serde_json::to_string(body).unwrap().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

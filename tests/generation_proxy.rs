//! Ocean1's generation proxy (seed 002 §4) against a GrsAI-style gateway
//! the test starts on loopback: points held before the gateway is called,
//! settled once on success, returned once on refusal, failure, deadline or
//! an unreachable gateway; the caller's stream; the owner's draw/result.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::Json;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const KEY: &str = "gateway-key-for-tests";

#[derive(Default)]
struct Gateway {
    submits: usize,
    /// task id -> (prompt, polls so far)
    tasks: HashMap<String, (String, u32)>,
}

type Shared = Arc<Mutex<Gateway>>;

fn authorized(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {KEY}"))
}

async fn submit(
    State(g): State<Shared>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> (AxStatus, Json<Value>) {
    if !authorized(&h) {
        return (
            AxStatus::UNAUTHORIZED,
            Json(json!({"code": -1, "msg": "bad key"})),
        );
    }
    assert_eq!(body["webHook"], "-1", "the proxy polls: {body}");
    let prompt = body["prompt"].as_str().unwrap_or_default().to_owned();
    if prompt.contains("hang") {
        // answers long after the job's deadline
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let mut g = g.lock().unwrap();
    g.submits += 1;
    if prompt.contains("refuse") {
        return (
            AxStatus::OK,
            Json(json!({"code": -22, "msg": "input_moderation"})),
        );
    }
    let id = format!("task-{}", g.submits);
    g.tasks.insert(id.clone(), (prompt, 0));
    (
        AxStatus::OK,
        Json(json!({"code": 0, "msg": "success", "data": {"id": id}})),
    )
}

async fn result(State(g): State<Shared>, h: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    assert!(authorized(&h));
    let id = body["id"].as_str().unwrap().to_owned();
    let mut g = g.lock().unwrap();
    let Some((prompt, polls)) = g.tasks.get_mut(&id) else {
        return Json(json!({"code": -1, "msg": "not found"}));
    };
    *polls += 1;
    let data = if prompt.contains("slow") || *polls < 2 {
        json!({"id": id, "status": "running", "progress": 40, "results": []})
    } else if prompt.contains("fail") {
        json!({"id": id, "status": "failed", "progress": 40, "failure_reason": "output_moderation", "error": ""})
    } else {
        json!({"id": id, "status": "succeeded", "progress": 100,
               "results": [{"url": format!("https://cdn.example/{id}.mp4")}]})
    };
    Json(json!({"code": 0, "msg": "success", "data": data}))
}

async fn gateway() -> (String, Shared) {
    let g: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/v1/video/sora-video", axum::routing::post(submit))
        .route("/v1/draw/nano-banana", axum::routing::post(submit))
        .route("/v1/draw/result", axum::routing::post(result))
        .with_state(g.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, g)
}

async fn start(base: Option<String>, tweak: impl FnOnce(&mut tidelog::config::Config)) -> TestApp {
    TestApp::start_with(move |c| {
        c.generation.api_url = base;
        c.generation.api_key = Some(tidelog::config::Secret::new(KEY.into()));
        c.generation.poll_interval = Duration::from_millis(100);
        c.generation.max_running = 100;
        tweak(c);
    })
    .await
}

/// A signed-in user with `points`; answers (account number, token).
async fn funded(app: &TestApp, name: &str, points: i64) -> (i64, String) {
    let (number, token) = app.api().user(name).await;
    let (s, v) = app
        .api()
        .post(
            "/admin/ledger/adjustments",
            Some(&format!("Bearer {ADMIN_TOKEN}")),
            json!({"account": number.to_string(), "currency": "points", "direction": "credit",
                   "amount": points, "description": "test funds", "operation_id": format!("fund-{name}")}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    (number, token)
}

async fn balance(app: &TestApp, number: i64) -> i64 {
    count(
        &app.pool,
        &format!(
            "SELECT coalesce((SELECT w.balance FROM wallets w JOIN accounts a ON a.account_id = w.account_id
               WHERE a.number = {number} AND w.currency = 'points'), 0)"
        ),
    )
    .await
}

async fn proxy(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, String) {
    let resp = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

/// `n` banana jobs (`stream: false`) sent at once; each answers (status, body).
fn bananas_at_once(
    app: &TestApp,
    token: &str,
    prompt: &str,
    n: usize,
) -> Vec<tokio::task::JoinHandle<(StatusCode, String)>> {
    (0..n)
        .map(|i| {
            let (http, url, token) = (
                app.http.clone(),
                format!("{}/api/proxy/banana", app.base),
                token.to_owned(),
            );
            let body = json!({"prompt": format!("{prompt} {i}"), "stream": false});
            tokio::spawn(async move {
                let resp = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (resp.status(), resp.text().await.unwrap())
            })
        })
        .collect()
}

async fn draw_result(app: &TestApp, token: &str, id: &str) -> (StatusCode, Value) {
    let (s, t) = proxy(app, token, "/api/proxy/v1/draw/result", json!({"id": id})).await;
    (s, serde_json::from_str(&t).unwrap())
}

async fn ended(app: &TestApp, token: &str, id: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (s, v) = draw_result(app, token, id).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if matches!(v["data"]["status"].as_str(), Some("completed" | "failed")) {
            // and its hold closed
            let settled = count(
                &app.pool,
                &format!("SELECT count(*) FROM generation_jobs WHERE job_id = '{id}' AND settled"),
            )
            .await;
            if settled == 1 {
                return v;
            }
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} did not end: {last}");
}

async fn wallet_events(app: &TestApp, job: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_type = 'Wallet'
            AND payload::text LIKE '%' || $1 || '%' ORDER BY global_position",
    )
    .bind(job)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_generation_streams_to_completed_and_its_points_are_paid_once() {
    let (base, gw) = gateway().await;
    let app = start(Some(base), |_| {}).await;
    let (number, token) = funded(&app, "maker", 1000).await;

    let (s, text) = proxy(
        &app,
        &token,
        "/api/proxy/sora",
        json!({"model": "sora-2", "prompt": "a cat", "duration": 10}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let frames: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    let last = frames.last().expect("frames");
    assert_eq!(last["status"], "completed", "{text}");
    assert!(last["result_url"]
        .as_str()
        .unwrap()
        .starts_with("https://cdn.example/task-"));
    let id = last["id"].as_str().unwrap().to_owned();
    assert!(frames.iter().all(|f| f["id"] == id.as_str()));
    assert!(frames.iter().any(|f| f["status"] == "processing"), "{text}");

    let v = ended(&app, &token, &id).await;
    assert_eq!(v["data"]["progress"], 100);
    assert_eq!(
        balance(&app, number).await,
        900,
        "10 s of video at 10 points"
    );
    assert_eq!(
        wallet_events(&app, &id).await,
        ["HoldPlaced", "HoldSettled"]
    );
    let history = app
        .api()
        .get("/api/user/history", Some(&format!("Bearer {token}")))
        .await
        .1;
    assert_eq!(history["data"][0]["balance_after"], 900, "{history}");
    assert!(
        history["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "consume" && e["description"] == "Sora 视频生成"),
        "{history}"
    );
    assert_eq!(gw.lock().unwrap().submits, 1);

    // a banana without a stream answers its id at once
    let (s, text) = proxy(
        &app,
        &token,
        "/api/proxy/banana",
        json!({"prompt": "a sunset", "stream": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["status"], "success");
    let id2 = v["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        ended(&app, &token, &id2).await["data"]["status"],
        "completed"
    );
    assert_eq!(balance(&app, number).await, 880);

    // another user cannot see it
    let (_, other) = app.api().user("stranger").await;
    assert_eq!(
        draw_result(&app, &other, &id).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        draw_result(&app, &other, "not-an-id").await.0,
        StatusCode::NOT_FOUND
    );

    // the auditors' recomputation agrees: holds closed, balances right
    let report = tidelog::ledger::audit::verify(&app.pool, |_| {})
        .await
        .unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    assert_eq!(
        count(
            &app.pool,
            "SELECT coalesce(sum(held), 0)::bigint FROM wallets"
        )
        .await,
        0,
        "no points left held"
    );
    app.stop().await;
}

#[tokio::test]
async fn refusals_failures_deadlines_and_an_unreachable_gateway_return_the_points_once() {
    let (base, _gw) = gateway().await;
    let app = start(Some(base), |c| {
        c.generation.sora_deadline = Duration::from_secs(1)
    })
    .await;
    let (number, token) = funded(&app, "unlucky", 1000).await;

    let (s, text) = proxy(
        &app,
        &token,
        "/api/proxy/sora",
        json!({"prompt": "please refuse"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["status"],
        "failed"
    );
    assert_eq!(balance(&app, number).await, 1000);

    // a submit that hangs past the job's deadline: given up, points back
    let asked = std::time::Instant::now();
    let (s, text) = proxy(
        &app,
        &token,
        "/api/proxy/sora",
        json!({"prompt": "hang on"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{text}");
    assert!(asked.elapsed() < Duration::from_secs(4), "not waited out");
    assert_eq!(balance(&app, number).await, 1000);

    let mut ids = vec![];
    for prompt in ["this will fail", "slow and past its deadline"] {
        let (s, text) = proxy(
            &app,
            &token,
            "/api/proxy/sora",
            json!({"prompt": prompt, "stream": false}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{text}");
        ids.push(
            serde_json::from_str::<Value>(&text).unwrap()["data"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        let v = ended(&app, &token, id).await;
        assert_eq!(v["data"]["status"], "failed", "{v}");
        assert_eq!(
            wallet_events(&app, id).await,
            ["HoldPlaced", "HoldReleased"]
        );
    }
    assert_eq!(balance(&app, number).await, 1000);
    let history = app
        .api()
        .get("/api/user/history", Some(&format!("Bearer {token}")))
        .await
        .1;
    let refunds = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "refund")
        .count();
    assert_eq!(refunds, 4, "one refund per failed job: {history}");
    app.stop().await;

    // a gateway that is down
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = start(Some(dead), |_| {}).await;
    let (number, token) = funded(&app, "offline", 500).await;
    let (s, text) = proxy(
        &app,
        &token,
        "/api/proxy/banana",
        json!({"prompt": "anything"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{text}");
    assert_eq!(balance(&app, number).await, 500);
    app.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_jobs_on_points_for_seven_admit_exactly_seven() {
    let (base, gw) = gateway().await;
    let app = start(Some(base), |_| {}).await;
    let (number, token) = funded(&app, "eager", 140).await;
    let mut statuses = vec![];
    for t in bananas_at_once(&app, &token, "picture", 20) {
        statuses.push(t.await.unwrap().0);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::PAYMENT_REQUIRED)
            .count(),
        13
    );
    assert_eq!(
        gw.lock().unwrap().submits,
        7,
        "nothing sent upstream for a refused job"
    );
    eventually("the seven settle", || async {
        count(
            &app.pool,
            "SELECT count(*) FROM generation_jobs WHERE settled",
        )
        .await
            == 7
    })
    .await;
    assert_eq!(balance(&app, number).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn bad_bodies_an_unconfigured_gateway_and_missing_sessions_hold_nothing() {
    let (base, gw) = gateway().await;
    let app = start(Some(base), |_| {}).await;
    let (number, token) = funded(&app, "careless", 1000).await;
    for (path, body) in [
        ("/api/proxy/sora", json!({})),
        ("/api/proxy/sora", json!({"prompt": ""})),
        ("/api/proxy/sora", json!({"prompt": 7})),
        (
            "/api/proxy/sora",
            json!({"prompt": "x", "duration": "long"}),
        ),
        ("/api/proxy/sora", json!({"prompt": "x", "duration": 600})),
        (
            "/api/proxy/sora",
            json!({"prompt": "x", "aspectRatio": "4:3"}),
        ),
        (
            "/api/proxy/sora",
            json!({"prompt": "x", "url": "file:///etc/passwd"}),
        ),
        ("/api/proxy/sora", json!({"prompt": "x", "stream": "yes"})),
        // a model the price table does not know: the gateway would bill it at its price
        (
            "/api/proxy/sora",
            json!({"prompt": "x", "model": "sora-2-pro"}),
        ),
        (
            "/api/proxy/banana",
            json!({"prompt": "x", "model": "nano-banana-pro-4k"}),
        ),
        (
            "/api/proxy/banana",
            json!({"prompt": "x", "urls": "https://a"}),
        ),
        ("/api/proxy/banana", json!({"prompt": "x".repeat(5000)})),
        ("/api/proxy/banana", json!([1, 2])),
        ("/api/proxy/v1/draw/result", json!({"id": 5})),
    ] {
        let (s, text) = proxy(&app, &token, path, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {body}: {text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["status"],
            "failed"
        );
    }
    let resp = app
        .http
        .post(format!("{}/api/proxy/sora", app.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (s, _) = proxy(
        &app,
        "forged.token.here",
        "/api/proxy/sora",
        json!({"prompt": "x"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let poor = funded(&app, "poor", 50).await;
    let (s, text) = proxy(&app, &poor.1, "/api/proxy/sora", json!({"prompt": "a cat"})).await;
    assert_eq!(s, StatusCode::PAYMENT_REQUIRED, "{text}");
    assert_eq!(gw.lock().unwrap().submits, 0);
    assert_eq!(balance(&app, number).await, 1000);
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE aggregate_type = 'GenerationJob'"
        )
        .await,
        0
    );
    app.stop().await;

    let app = start(None, |_| {}).await;
    let (_, token) = funded(&app, "early", 1000).await;
    let (s, _) = proxy(&app, &token, "/api/proxy/sora", json!({"prompt": "a cat"})).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'HoldPlaced'"
        )
        .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn jobs_running_when_the_server_is_killed_are_finished_once_after_the_restart() {
    let (base, gw) = gateway().await;
    let db = fresh_database().await;
    let dir = open_tempdir();
    let env = vec![
        ("DATABASE_URL", url_of(&db)),
        ("TIDELOG_JWT_SECRET", JWT_SECRET.to_string()),
        ("TIDELOG_ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        ("TIDELOG_DATA_DIR", dir.path().display().to_string()),
        ("GENERATION_API_URL", base),
        ("GENERATION_API_KEY", KEY.to_string()),
        // slow enough that the jobs are still open at the kill
        ("TIDELOG_GENERATION_POLL_MS", "3000".to_string()),
    ];
    let mut first = ServerProcess::spawn(&env);
    let api = first.api();
    let (number, token) = api.user("crashy").await;
    let (s, _) = api
        .post(
            "/admin/ledger/adjustments",
            Some(&format!("Bearer {ADMIN_TOKEN}")),
            json!({"account": number.to_string(), "currency": "points", "direction": "credit",
                   "amount": 1000, "description": "funds", "operation_id": "fund-crashy"}),
        )
        .await;
    assert!(s.is_success());
    let mut ids = vec![];
    for prompt in ["one", "two", "this will fail", "three"] {
        let (s, v) = api
            .post(
                "/api/proxy/banana",
                Some(&format!("Bearer {token}")),
                json!({"prompt": prompt, "stream": false}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        ids.push(v["data"]["id"].as_str().unwrap().to_owned());
    }
    first.kill9();
    let pool = tidelog::db::connect_pool(db.clone(), 2).await.unwrap();
    let open = count(
        &pool,
        "SELECT count(*) FROM generation_jobs WHERE NOT settled",
    )
    .await;
    assert!(open > 0, "some jobs were running at the kill");

    let _second = ServerProcess::spawn(&env);
    eventually("every job ends and closes its hold", || async {
        count(&pool, "SELECT count(*) FROM generation_jobs WHERE settled").await == 4
    })
    .await;
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM generation_jobs WHERE status = 'completed'"
        )
        .await,
        3
    );
    for id in &ids {
        let n = count(
            &pool,
            &format!(
                "SELECT count(*) FROM events WHERE aggregate_type = 'Wallet'
                  AND event_type IN ('HoldSettled', 'HoldReleased') AND payload::text LIKE '%{id}%'"
            ),
        )
        .await;
        assert_eq!(n, 1, "job {id} closed once");
    }
    let report = tidelog::ledger::audit::verify(&pool, |_| {}).await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    assert_eq!(gw.lock().unwrap().submits, 4, "no job submitted twice");
    drop(first);
}

async fn openai(
    State(seen): State<Arc<Mutex<Vec<Value>>>>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> (AxStatus, Json<Value>) {
    if h.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer chat-key") {
        return (
            AxStatus::UNAUTHORIZED,
            Json(json!({"error": {"message": "bad key"}})),
        );
    }
    seen.lock().unwrap().push(body.clone());
    let last = body["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    if last.contains("break") {
        return (
            AxStatus::INTERNAL_SERVER_ERROR,
            Json(json!({"error": {"message": "overloaded"}})),
        );
    }
    (
        AxStatus::OK,
        Json(
            json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("喵~ {last}")},
                         "finish_reason": "stop"}]}),
        ),
    )
}

#[tokio::test]
async fn cat_chat_replies_through_an_openai_style_upstream_and_charges_only_replies() {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(openai))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let app = start(None, move |c| {
        c.generation.chat_api_url = Some(upstream);
        c.generation.chat_api_key = Some(tidelog::config::Secret::new("chat-key".into()));
        c.generation.chat_model = "cat-model".into();
        c.generation.chat_price = 2;
    })
    .await;
    let (number, token) = funded(&app, "catlover", 10).await;
    let body = json!({"messages": [{"role": "system", "content": "你是一只可爱的猫猫"},
                                   {"role": "user", "content": "你好呀"}]});
    let (s, text) = proxy(&app, &token, "/api/proxy/cat/chat", body).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"status": "success", "reply": "喵~ 你好呀"})
    );
    assert_eq!(seen.lock().unwrap()[0]["model"], "cat-model");
    assert_eq!(seen.lock().unwrap()[0]["messages"][0]["role"], "system");
    assert_eq!(balance(&app, number).await, 8);

    let (s, _) = proxy(
        &app,
        &token,
        "/api/proxy/cat/chat",
        json!({"messages": [{"role": "user", "content": "please break"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert_eq!(balance(&app, number).await, 8, "no reply, no charge");
    for bad in [
        json!({}),
        json!({"messages": []}),
        json!({"messages": [{"role": "wizard", "content": "hi"}]}),
        json!({"messages": [{"role": "user", "content": "x".repeat(9000)}]}),
        json!({"messages": [{"role": "system", "content": "only rules"}]}),
        json!({"messages": "hi"}),
    ] {
        let (s, text) = proxy(&app, &token, "/api/proxy/cat/chat", bad.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {text}");
    }
    assert_eq!(seen.lock().unwrap().len(), 2, "bad bodies reach nobody");
    let report = tidelog::ledger::audit::verify(&app.pool, |_| {})
        .await
        .unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_heartbeats_on_two_processes_credit_the_daily_reward_once() {
    let db = fresh_database().await;
    let a = TestApp::start_on(db.clone(), |c| c.daily_reward_points = 25).await;
    let b = TestApp::start_on(db.clone(), |c| c.daily_reward_points = 25).await;
    let (number, token) = a.api().user("daily").await;
    let beats: Vec<_> = (0..12)
        .map(|i| {
            let app = if i % 2 == 0 { &a } else { &b };
            let (http, url, token) = (
                app.http.clone(),
                format!("{}/api/user/heartbeat", app.base),
                token.clone(),
            );
            tokio::spawn(async move {
                let v: Value = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                v
            })
        })
        .collect();
    let mut rewarded = 0;
    for t in beats {
        let v = t.await.unwrap();
        assert_eq!(v["status"], "ok", "{v}");
        rewarded += usize::from(v["has_reward"] == true);
    }
    assert_eq!(
        rewarded, 1,
        "exactly one heartbeat says it brought the reward"
    );
    assert_eq!(balance(&a, number).await, 25);
    let history = a
        .api()
        .get("/api/user/history", Some(&format!("Bearer {token}")))
        .await
        .1;
    assert_eq!(history["data"][0]["type"], "reward", "{history}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn holds_past_their_expiry_are_returned_on_a_schedule() {
    use aggregates::wallet::{Counterparty, Movement, Reason};
    use aggregates::{Amount, Currency, WalletCommand};
    let app = start(None, |_| {}).await;
    let (number, _) = funded(&app, "forgotten", 100).await;
    let account: uuid::Uuid =
        sqlx::query_scalar("SELECT account_id FROM accounts WHERE number = $1")
            .bind(number)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    // a hold whose owner never came back (placed by another writer of the store)
    let store = tidelog::store::Store::new(app.pool.clone());
    let meta = tidelog::store::CommandMeta {
        actor: "test".into(),
        surface: "test",
        request_id: "r".into(),
        correlation_id: "c".into(),
        causation_id: "c".into(),
        client_ip: "local".into(),
    };
    let now = chrono::Utc::now();
    tidelog::ledger::operate(&store, account, Currency::Points, &meta, || {
        WalletCommand::Hold {
            movement: Movement {
                operation_id: "stale-hold".into(),
                amount: Amount::new(30).unwrap(),
                counter: Counterparty::PlatformRevenue,
                reason: Reason::Consume,
                reference: None,
                description: "stale".into(),
                at: now,
            },
            hold_id: "stale".into(),
            expires_at: now + chrono::Duration::milliseconds(200),
        }
    })
    .await
    .unwrap();
    eventually("the expired hold comes back", || async {
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'HoldReleased'",
        )
        .await
            == 1
    })
    .await;
    eventually("the balance is whole again", || async {
        balance(&app, number).await == 100
    })
    .await;
    app.stop().await;
}

const AK: &str = "AKLTtestaccesskey";
const SK: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";

/// Recomputes Volcengine's signature from the request as it arrived.
fn volc_signature_ok(h: &HeaderMap, query: &str, body: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let hmac = |k: &[u8], d: &str| {
        let mut m = Hmac::<Sha256>::new_from_slice(k).unwrap();
        m.update(d.as_bytes());
        m.finalize().into_bytes().to_vec()
    };
    let get = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (x_date, content_sha) = (get("x-date"), get("x-content-sha256"));
    if content_sha != hex::encode(Sha256::digest(body)) || x_date.len() != 16 {
        return false;
    }
    let canonical = format!(
        "POST\n/\n{query}\ncontent-type:{}\nhost:{}\nx-content-sha256:{content_sha}\nx-date:{x_date}\n\ncontent-type;host;x-content-sha256;x-date\n{content_sha}",
        get("content-type"),
        get("host")
    );
    let scope = format!("{}/cn-north-1/cv/request", &x_date[..8]);
    let to_sign = format!(
        "HMAC-SHA256\n{x_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut k = hmac(SK.as_bytes(), &x_date[..8]);
    for part in ["cn-north-1", "cv", "request"] {
        k = hmac(&k, part);
    }
    let want = format!(
        "HMAC-SHA256 Credential={AK}/{scope}, SignedHeaders=content-type;host;x-content-sha256;x-date, Signature={}",
        hex::encode(hmac(&k, &to_sign))
    );
    get("authorization") == want
}

async fn volcengine(
    State(g): State<Shared>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> (AxStatus, Json<Value>) {
    let q = q.unwrap_or_default();
    if !volc_signature_ok(&h, &q, &body) {
        return (
            AxStatus::UNAUTHORIZED,
            Json(json!({"code": 100010, "message": "SignatureDoesNotMatch"})),
        );
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    let mut g = g.lock().unwrap();
    if q == "Action=CVSync2AsyncSubmitTask&Version=2022-08-31" {
        g.submits += 1;
        let prompt = v["prompt"].as_str().unwrap_or_default().to_owned();
        if prompt.contains("refuse") {
            return (
                AxStatus::OK,
                Json(json!({"code": 50411, "message": "Pre Img Risk Not Pass"})),
            );
        }
        let id = format!("jm-{}", g.submits);
        // what came in: the image, if any, as base64
        g.tasks.insert(
            id.clone(),
            (
                format!(
                    "{}|{}|{}",
                    prompt,
                    v["req_key"],
                    v["binary_data_base64"].is_array()
                ),
                0,
            ),
        );
        return (
            AxStatus::OK,
            Json(json!({"code": 10000, "message": "Success", "data": {"task_id": id}})),
        );
    }
    assert_eq!(q, "Action=CVSync2AsyncGetResult&Version=2022-08-31");
    let id = v["task_id"].as_str().unwrap().to_owned();
    let Some((_, polls)) = g.tasks.get_mut(&id) else {
        return (
            AxStatus::OK,
            Json(json!({"code": 10000, "data": {"status": "not_found"}})),
        );
    };
    *polls += 1;
    let data = if *polls < 2 {
        json!({"status": "generating"})
    } else {
        json!({"status": "done", "video_url": "", "image_urls": [format!("https://volc.example/{id}.png")]})
    };
    (
        AxStatus::OK,
        Json(json!({"code": 10000, "message": "Success", "data": data})),
    )
}

#[tokio::test]
async fn jimeng_requests_are_signed_and_its_results_come_through_draw_result() {
    let g: Shared = Arc::default();
    let router = axum::Router::new()
        .route("/", axum::routing::post(volcengine))
        .with_state(g.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let app = start(None, move |c| {
        c.generation.jimeng_api_url = base;
        c.generation.jimeng_access_key = Some(tidelog::config::Secret::new(AK.into()));
        c.generation.jimeng_secret_key = Some(tidelog::config::Secret::new(SK.into()));
    })
    .await;
    let (number, token) = funded(&app, "dreamer", 200).await;

    let (s, text) = proxy(
        &app,
        &token,
        "/api/proxy/jimeng/create",
        json!({"prompt": "a dragon", "seed": 7}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = ended(&app, &token, &id).await;
    assert_eq!(v["data"]["status"], "completed", "{v}");
    assert_eq!(v["data"]["result_url"], "https://volc.example/jm-1.png");
    assert_eq!(balance(&app, number).await, 150, "a video costs 50");
    assert!(g.lock().unwrap().tasks["jm-1"]
        .0
        .starts_with("a dragon|\"jimeng_vgfm_t2v_l20\"|false"));

    // a picture from an uploaded image (multipart)
    let png = {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 4, 4);
        enc.set_color(png::ColorType::Rgb);
        enc.write_header()
            .unwrap()
            .write_image_data(&[9u8; 48])
            .unwrap();
        out
    };
    let form = |image: Vec<u8>, name: &str| {
        reqwest::multipart::Form::new()
            .text("prompt", "make it blue")
            .text("width", "1024")
            .part(
                "image",
                reqwest::multipart::Part::bytes(image).file_name(name.to_owned()),
            )
    };
    let send = |f: reqwest::multipart::Form| {
        app.http
            .post(format!("{}/api/proxy/jimeng/image", app.base))
            .bearer_auth(&token)
            .multipart(f)
            .send()
    };
    let resp = send(form(png.clone(), "cat.exe")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let id = resp.json::<Value>().await.unwrap()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        ended(&app, &token, &id).await["data"]["status"],
        "completed"
    );
    assert!(g.lock().unwrap().tasks["jm-2"]
        .0
        .ends_with("|\"jimeng_t2i_v40\"|true"));
    assert_eq!(balance(&app, number).await, 130, "a picture costs 20");

    // refused upstream: points back; an executable or a truncated image: 400, nothing held
    let (s, _) = proxy(
        &app,
        &token,
        "/api/proxy/jimeng/create",
        json!({"prompt": "please refuse"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert_eq!(
        send(form(b"MZ\x90\x00not an image".to_vec(), "x.png"))
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(form(png[..png.len() - 10].to_vec(), "x.png"))
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    let (s, _) = proxy(&app, &token, "/api/proxy/jimeng/create", json!({"seed": 1})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(balance(&app, number).await, 130);
    assert_eq!(g.lock().unwrap().submits, 3);
    let report = tidelog::ledger::audit::verify(&app.pool, |_| {})
        .await
        .unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    app.stop().await;
}

#[tokio::test]
async fn a_caller_that_leaves_mid_stream_gets_the_result_by_draw_result_and_pays_once() {
    let (base, _gw) = gateway().await;
    let app = start(Some(base), |c| {
        c.generation.poll_interval = Duration::from_millis(400)
    })
    .await;
    let (number, token) = funded(&app, "impatient", 500).await;
    let mut resp = app
        .http
        .post(format!("{}/api/proxy/sora", app.base))
        .bearer_auth(&token)
        .json(&json!({"prompt": "a long walk", "duration": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let first = resp.chunk().await.unwrap().unwrap();
    let first = String::from_utf8_lossy(&first).into_owned();
    let frame: Value =
        serde_json::from_str(first.trim().strip_prefix("data:").unwrap().trim()).unwrap();
    assert_ne!(frame["status"], "completed", "left before the end: {first}");
    let id = frame["id"].as_str().unwrap().to_owned();
    drop(resp);
    let v = ended(&app, &token, &id).await;
    assert_eq!(v["data"]["status"], "completed");
    assert_eq!(balance(&app, number).await, 450);
    assert_eq!(
        wallet_events(&app, &id).await,
        ["HoldPlaced", "HoldSettled"]
    );
    app.stop().await;
}

#[tokio::test]
async fn an_account_starting_too_many_jobs_a_minute_is_told_to_wait_and_holds_nothing() {
    let (base, gw) = gateway().await;
    let app = start(Some(base), |c| c.generation.per_minute = 3).await;
    let (number, token) = funded(&app, "hasty", 1000).await;
    for i in 0..3 {
        let (s, text) = proxy(
            &app,
            &token,
            "/api/proxy/banana",
            json!({"prompt": format!("p{i}"), "stream": false}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{text}");
    }
    let (s, text) = proxy(
        &app,
        &token,
        "/api/proxy/banana",
        json!({"prompt": "one more", "stream": false}),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{text}");
    assert_eq!(gw.lock().unwrap().submits, 3);
    eventually("the three settle", || async {
        count(
            &app.pool,
            "SELECT count(*) FROM generation_jobs WHERE settled",
        )
        .await
            == 3
    })
    .await;
    assert_eq!(balance(&app, number).await, 940);
    // another account is not held back by this one
    let (_, other) = funded(&app, "patient", 100).await;
    let (s, _) = proxy(
        &app,
        &other,
        "/api/proxy/banana",
        json!({"prompt": "mine", "stream": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    app.stop().await;
}

/// A gateway whose submits wait until released, counting those inside.
struct Stalled {
    inside: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    release: tokio::sync::watch::Receiver<bool>,
}

async fn stalled_submit(State(s): State<Arc<Stalled>>) -> Json<Value> {
    use std::sync::atomic::Ordering::SeqCst;
    let now = s.inside.fetch_add(1, SeqCst) + 1;
    s.most.fetch_max(now, SeqCst);
    let _ = s.release.clone().wait_for(|r| *r).await;
    s.inside.fetch_sub(1, SeqCst);
    let id = uuid::Uuid::new_v4();
    Json(json!({"code": 0, "msg": "success", "data": {"id": id.to_string()}}))
}

async fn stalled_result(Json(body): Json<Value>) -> Json<Value> {
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    Json(
        json!({"code": 0, "msg": "success", "data": {"id": id, "status": "succeeded",
        "progress": 100, "results": [{"url": format!("https://cdn.example/{id}.png")}]}}),
    )
}

#[tokio::test]
async fn a_burst_of_jobs_is_started_a_bounded_number_at_a_time_and_every_one_is_answered() {
    use std::sync::atomic::Ordering::SeqCst;
    let (release, held) = tokio::sync::watch::channel(false);
    let gw = Arc::new(Stalled {
        inside: Default::default(),
        most: Default::default(),
        release: held,
    });
    let router = axum::Router::new()
        .route("/v1/draw/nano-banana", axum::routing::post(stalled_submit))
        .route("/v1/draw/result", axum::routing::post(stalled_result))
        .with_state(gw.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let app = start(Some(base), |c| {
        c.generation.max_running = 1000;
        c.generation.per_minute = 1000;
    })
    .await;
    let bound = tidelog::http::ocean1::STARTS_AT_ONCE;
    let burst = bound + 16;
    let (number, token) = funded(&app, "bursty", 20 * burst as i64).await;
    let calls = bananas_at_once(&app, &token, "burst", burst);
    eventually("the gateway holds a full set of submits", || async {
        gw.inside.load(SeqCst) == bound
    })
    .await;
    // the rest wait for a slot: nothing of theirs reaches the gateway
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gw.inside.load(SeqCst), bound);
    release.send(true).unwrap();
    for call in calls {
        let (status, text) = call.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    assert_eq!(gw.most.load(SeqCst), bound);
    eventually("every job settles", || async {
        count(
            &app.pool,
            "SELECT count(*) FROM generation_jobs WHERE settled",
        )
        .await
            == burst as i64
    })
    .await;
    assert_eq!(balance(&app, number).await, 0, "each job paid once");
    app.stop().await;
}

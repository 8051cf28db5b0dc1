//! Attacks replayed at the HTTP and WebSocket boundary: what an attacker
//! tried against tidelog, and what must keep holding. Sessions end on every
//! socket they opened, on every process; private files stay private; other
//! users' objects stay theirs on every surface; missing, malformed, forged,
//! expired and ended tokens get nowhere (REST and sockets); paths and file
//! names never leave the file store; URLs a caller gives are never fetched
//! by tidelog; CORS credentials go to the configured frontends only;
//! cookie-authenticated writes refuse other sites and take JSON only;
//! password and code guessing is throttled per account (whatever name is
//! typed) and per address, on every process. Each refusal is checked in
//! the surface's own envelope, and that it wrote nothing.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::attack::{self, raw_request};
use common::chat8::{failed, success, User};
use common::smtp::MailCatcher;
use common::*;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tidelog::config::Secret;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How soon an ended session's sockets must close, on any process.
const CLOSE_WITHIN: Duration = Duration::from_secs(3);

async fn chat8_socket(user: &User) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(user.socket_url(None))
        .await
        .expect("socket connects");
    // in its session once a ping is answered
    ws.send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .unwrap();
    loop {
        match next_text(&mut ws, Duration::from_secs(10)).await {
            Some(f) if f["type"] == "pong" => return ws,
            Some(_) => continue,
            None => panic!("the socket closed before its pong"),
        }
    }
}

async fn roomchat_socket(base: &str, token: &str) -> Ws {
    let url = format!(
        "{}/api/message/ws?token={token}",
        base.replace("http", "ws")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url.into_client_request().unwrap())
        .await
        .expect("socket connects");
    let greeting = next_text(&mut ws, Duration::from_secs(10)).await.unwrap();
    assert_eq!(greeting["msg"], "连接成功");
    ws
}

/// The next text frame, or `None` once the socket closed (or nothing came).
async fn next_text(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Reads until the socket closes, within `within`: every text frame seen
/// on the way, and the close code.
async fn until_closed(ws: &mut Ws, within: Duration) -> (Vec<Value>, Option<CloseCode>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("the socket was still open after {within:?}; it saw {seen:?}"),
            Ok(None) | Ok(Some(Err(_))) => return (seen, None),
            Ok(Some(Ok(Message::Close(frame)))) => return (seen, frame.map(|f| f.code)),
            Ok(Some(Ok(Message::Text(t)))) => seen.push(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn befriended(app: &TestApp) -> (User, User) {
    let alice = User::register(app, "alice").await;
    let bob = User::register(app, "bob").await;
    alice.befriend(&bob).await;
    (alice, bob)
}

async fn chat8_login(base: &str, name: &str) -> String {
    let resp = client()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": name, "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    v["data"]["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_chat8_logout_closes_that_session_s_socket_at_once_and_nothing_follows() {
    let app = TestApp::start().await;
    let (alice, bob) = befriended(&app).await;
    let mut bob_ws = chat8_socket(&bob).await;
    let mut alice_ws = chat8_socket(&alice).await;

    let started = Instant::now();
    let (s, v) = bob.post("/auth/logout", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // a message sent once the logout was answered never reaches the socket
    alice.say(&bob, "after the logout").await;
    let (seen, code) = until_closed(&mut bob_ws, CLOSE_WITHIN).await;
    assert_eq!(code, Some(CloseCode::Library(4001)), "{seen:?}");
    assert!(started.elapsed() < CLOSE_WITHIN);
    assert!(
        seen.iter().all(|f| f["type"] != "new_message"),
        "a frame after the end: {seen:?}"
    );
    // the REST side agrees, and alice's own session is untouched
    let (s, _) = bob.get("/friends").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    alice_ws
        .send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .unwrap();
    loop {
        let f = next_text(&mut alice_ws, Duration::from_secs(5))
            .await
            .expect("alice's socket lives on");
        if f["type"] == "pong" {
            break;
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_password_change_closes_the_other_sessions_sockets_and_keeps_its_own() {
    let app = TestApp::start().await;
    let (alice, bob) = befriended(&app).await;
    // bob signed in twice: the socket belongs to the other session
    let other = User {
        token: chat8_login(&app.base, "bob").await,
        ..bob.clone()
    };
    let mut other_ws = chat8_socket(&other).await;
    let mut own_ws = chat8_socket(&bob).await;
    let (s, v) = bob
        .put(
            "/user/password",
            json!({"current_password": "password123", "new_password": "password456", "confirm_password": "password456"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, code) = until_closed(&mut other_ws, CLOSE_WITHIN).await;
    assert_eq!(code, Some(CloseCode::Library(4001)));
    // the changing session's socket still hears alice
    let id = alice.say(&bob, "still here").await;
    loop {
        let f = next_text(&mut own_ws, Duration::from_secs(10))
            .await
            .expect("the own session's socket stays open");
        if f["type"] == "new_message" {
            assert_eq!(f["data"]["id"], id);
            break;
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn an_expired_session_closes_its_sockets_on_both_surfaces() {
    let app = TestApp::start_with(|c| {
        c.access_token_ttl = Duration::from_secs(2);
        c.jwt_ttl = Duration::from_secs(2);
    })
    .await;
    let bob = User::register(&app, "bob").await;
    let mut chat8 = chat8_socket(&bob).await;
    let (_, token) = app.api().user("carol").await;
    let mut room = roomchat_socket(&app.base, &token).await;
    for ws in [&mut chat8, &mut room] {
        let (_, code) = until_closed(ws, Duration::from_secs(6)).await;
        assert_eq!(code, Some(CloseCode::Library(4001)));
    }
    app.stop().await;
}

#[tokio::test]
async fn a_room_socket_whose_session_ended_elsewhere_closes_and_posts_nothing() {
    let app = TestApp::start().await;
    let api = app.api();
    let (_, token) = api.user("dave").await;
    let room = api.room(&token, "den").await;
    let mut ws = roomchat_socket(&app.base, &token).await;
    // the same session ends through another surface (tokens are shared)
    let resp = client()
        .post(format!("{}/api/v1/auth/logout", app.base))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // a frame sent right after the end is not posted
    let _ = ws
        .send(Message::Text(
            json!({"room_id": room, "content": "after the end"})
                .to_string()
                .into(),
        ))
        .await;
    let (_, code) = until_closed(&mut ws, CLOSE_WITHIN).await;
    assert_eq!(code, Some(CloseCode::Library(4001)));
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'MessagePosted' AND payload::text LIKE '%after the end%'"
        )
        .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_logout_on_one_process_closes_the_socket_held_by_another() {
    let db = fresh_database().await;
    let dir = open_tempdir();
    let env = |name: &str| process_env(&db, &dir, name);
    let p1 = ServerProcess::spawn(&env("p1"));
    let p2 = ServerProcess::spawn(&env("p2"));
    let http = client();
    let bob = User::register_at(&p1.base, &http, "bob").await;
    let mut ws = chat8_socket(&bob.on(&p2.base)).await;
    let started = Instant::now();
    let (s, v) = bob.post("/auth/logout", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, code) = until_closed(&mut ws, CLOSE_WITHIN).await;
    assert_eq!(code, Some(CloseCode::Library(4001)));
    assert!(started.elapsed() < CLOSE_WITHIN);
    // and a socket opened with the ended token is refused before anything
    let (mut again, _) = tokio_tungstenite::connect_async(bob.on(&p2.base).socket_url(None))
        .await
        .unwrap();
    let (seen, code) = until_closed(&mut again, CLOSE_WITHIN).await;
    assert_eq!(code, Some(CloseCode::Library(4001)));
    assert!(seen.is_empty());
    drop((p1, p2));
}

async fn upload_chat_file(from: &User, to: &User, bytes: &[u8]) -> String {
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes.to_vec()).file_name("private.txt"),
        )
        .text("receiver_id", to.id.to_string());
    let resp = from
        .req(reqwest::Method::POST, "/upload/file")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    v["data"]["file_url"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_private_chat_file_cannot_be_made_an_avatar_to_read_it() {
    let app = TestApp::start().await;
    let (alice, bob) = befriended(&app).await;
    let mallory = User::register(&app, "mallory").await;
    let link = upload_chat_file(&alice, &bob, b"the pair's secret\n").await;
    let path = link.split('?').next().unwrap().to_owned();
    let read = |u: &User| {
        u.http
            .get(format!("{}{path}", app.base))
            .bearer_auth(&u.token)
            .send()
    };
    assert_eq!(
        read(&mallory).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // naming the file as an avatar is refused, and changes nothing
    let (s, v) = mallory
        .put("/user/profile", json!({"avatar": path.clone()}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "VALIDATION_ERROR", "{v}");
    assert_eq!(
        read(&mallory).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // nor does the receiver make it public by naming it
    let (s, _) = bob
        .put("/user/profile", json!({"avatar": path.clone()}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        read(&mallory).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM accounts WHERE avatar LIKE '/api/v1/files/%'"
        )
        .await,
        0
    );
    // the two parties still read it, and so does its link
    assert_eq!(read(&alice).await.unwrap().status(), StatusCode::OK);
    assert_eq!(read(&bob).await.unwrap().status(), StatusCode::OK);
    let by_link = app
        .http
        .get(format!("{}{link}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(by_link.status(), StatusCode::OK);
    // an expired link (or one re-dated by hand) opens nothing
    let exp = link
        .split("exp=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let redated = link.replace(&format!("exp={exp}"), "exp=9999999999");
    let forged = app
        .http
        .get(format!("{}{redated}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

// ------------------------------------------------------------ the harness

/// Events in the log: what any write leaves behind (but the presence a
/// Chat8 socket records on its own).
async fn events(app: &TestApp) -> i64 {
    count(
        &app.pool,
        "SELECT count(*) FROM events
          WHERE metadata::jsonb->>'actor' IS DISTINCT FROM 'system:presence'",
    )
    .await
}

async fn events_of_type(pool: &sqlx::PgPool, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// An answer's status and JSON body.
async fn answer(r: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = r.send().await.expect("request sent");
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("non-JSON answer ({status}): {text:?}"));
    (status, v)
}

/// Room chat's failure `{code: 1, msg, data: null}` (seed 004) and the
/// live site's `{code: 1, msg}` (seed 000).
fn code_1(got: &(StatusCode, Value), status: StatusCode) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["code"], 1, "{}", got.1);
    assert!(
        got.1["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

/// Ocean1's failure `{status: "failed", msg}` (seed 002).
fn ocean_failed(got: &(StatusCode, Value), status: StatusCode) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["status"], "failed", "{}", got.1);
    assert!(
        got.1["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

/// The gift monitor's and the operators' `{"error": "..."}`.
fn bare_error(got: &(StatusCode, Value), status: StatusCode) {
    assert_eq!(got.0, status, "{}", got.1);
    assert!(
        got.1["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
    assert_eq!(got.1.as_object().map(|o| o.len()), Some(1), "{}", got.1);
}

fn post(app: &TestApp, path: &str) -> reqwest::RequestBuilder {
    app.http.post(format!("{}{path}", app.base))
}

fn get(app: &TestApp, path: &str) -> reqwest::RequestBuilder {
    app.http.get(format!("{}{path}", app.base))
}

/// Credits points (or coins) by the operators' API.
async fn credit(app: &TestApp, number: i64, currency: &str, amount: i64) {
    let got = answer(
        post(app, "/admin/ledger/adjustments")
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"account": number.to_string(), "currency": currency,
                          "direction": "credit", "amount": amount, "description": "test funds",
                          "operation_id": format!("fund-{number}-{currency}")})),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
}

fn v2_card(name: &str) -> Value {
    json!({"spec": "chara_card_v2", "spec_version": "2.0",
           "data": {"name": name, "description": "a princess", "first_mes": "Hello!", "tags": []}})
}

/// A live room of `anchor`'s (a bearer token), made from a JSON card.
async fn live_room(app: &TestApp, anchor: &str, name: &str) -> String {
    let got = answer(
        post(app, "/api/anchor/rooms")
            .bearer_auth(anchor)
            .json(&json!({"character": v2_card(name)})),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    got.1["data"]["room_id"].as_str().unwrap().to_owned()
}

/// A GrsAI-style gateway on loopback: it takes every job (keeping the
/// body it was sent), and the first poll finds it succeeded with
/// `result_url`.
#[derive(Clone)]
struct Gateway {
    base: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

const GATEWAY_KEY: &str = "gateway-key-for-tests";

impl Gateway {
    async fn start(result_url: String) -> Self {
        use axum::routing::post as route_post;
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let kept = bodies.clone();
        let submit = move |axum::Json(body): axum::Json<Value>| {
            let kept = kept.clone();
            async move {
                let mut b = kept.lock().unwrap();
                b.push(body);
                axum::Json(
                    json!({"code": 0, "msg": "success", "data": {"id": format!("task-{}", b.len())}}),
                )
            }
        };
        let result = move |axum::Json(body): axum::Json<Value>| {
            let url = result_url.clone();
            async move {
                axum::Json(json!({"code": 0, "msg": "success", "data": {
                    "id": body["id"], "status": "succeeded", "progress": 100,
                    "results": [{"url": url}]}}))
            }
        };
        let app = axum::Router::new()
            .route("/v1/video/sora-video", route_post(submit.clone()))
            .route("/v1/draw/nano-banana", route_post(submit))
            .route("/v1/draw/result", route_post(result));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, bodies }
    }

    fn configure(&self, c: &mut tidelog::config::Config) {
        c.generation.api_url = Some(self.base.clone());
        c.generation.api_key = Some(Secret::new(GATEWAY_KEY.into()));
        c.generation.poll_interval = Duration::from_millis(100);
    }
}

/// A loopback listener that counts every connection made to it (any
/// protocol): the internal service an SSRF would reach.
async fn internal_service() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(sock);
        }
    });
    (port, hits)
}

/// Waits until every generation job has ended and its points are settled.
async fn jobs_settled(app: &TestApp, jobs: i64) {
    eventually("the jobs end and settle", || async {
        count(
            &app.pool,
            "SELECT count(*) FROM generation_jobs WHERE settled",
        )
        .await
            == jobs
    })
    .await;
}

// ------------------------------------------- other users' objects, per surface

#[tokio::test]
async fn room_chat_rooms_stay_closed_to_non_members_on_rest_and_socket() {
    let app = TestApp::start().await;
    let api = app.api();
    let (_, owner) = api.user("owner").await;
    let (mallory_id, mallory) = api.user("mallory").await;
    let room = api.room(&owner, "private").await;
    api.say(&owner, room, "members only").await;
    let mut ws = roomchat_socket(&app.base, &mallory).await;
    let before = events(&app).await;

    let send = |content: &str| json!({"room_id": room, "type": "text", "content": content});
    for got in [
        api.get(&format!("/api/message/list?room_id={room}"), Some(&mallory))
            .await,
        api.get(
            &format!("/api/message/list?room_id={room}&last_message_id=999999&limit=50"),
            Some(&mallory),
        )
        .await,
        api.get(&format!("/api/room/members?room_id={room}"), Some(&mallory))
            .await,
        api.post("/api/message/send", Some(&mallory), send("let me in"))
            .await,
        api.post(
            "/api/room/add_user",
            Some(&mallory),
            json!({"room_id": room, "user_id": mallory_id}),
        )
        .await,
        api.post(
            "/api/room/add_user",
            Some(&mallory),
            json!({"room_id": room, "user_id": mallory_id, "role": "admin"}),
        )
        .await,
    ] {
        assert_error(&got, StatusCode::FORBIDDEN);
        assert!(!got.1.to_string().contains("members only"), "{}", got.1);
    }
    let (s, v) = api.get("/api/room/list", Some(&mallory)).await;
    assert_eq!((s, &v["data"]), (StatusCode::OK, &json!([])), "{v}");

    // a frame into the room over mallory's socket is refused in the envelope
    ws.send(Message::Text(send("via the socket").to_string().into()))
        .await
        .unwrap();
    let refusal = next_text(&mut ws, Duration::from_secs(10))
        .await
        .expect("an answer to the frame");
    assert_eq!(refusal["code"], 1, "{refusal}");
    assert!(refusal["data"].is_null(), "{refusal}");
    assert_eq!(events(&app).await, before, "a refused request wrote");

    // the room's next message never reaches mallory's socket: her own
    // room's message, later in the log, comes first on it
    api.say(&owner, room, "still members only").await;
    let own = api.room(&mallory, "mine").await;
    api.say(&mallory, own, "my own").await;
    loop {
        let f = next_text(&mut ws, Duration::from_secs(10))
            .await
            .expect("mallory's own message is pushed");
        assert!(!f.to_string().contains("members only"), "leaked: {f}");
        if f["data"]["content"] == "my own" {
            break;
        }
    }
    assert_eq!(api.messages(&owner, room, "").await.len(), 2);
    let (_, members) = api
        .get(&format!("/api/room/members?room_id={room}"), Some(&owner))
        .await;
    assert_eq!(members["data"].as_array().unwrap().len(), 1, "{members}");
    app.stop().await;
}

#[tokio::test]
async fn chat8_conversations_requests_and_private_keys_stay_with_their_owners() {
    let app = TestApp::start().await;
    let (alice, bob) = befriended(&app).await;
    let mallory = User::register(&app, "mallory").await;
    let carol = User::register(&app, "carol").await;
    let secret = alice.say(&bob, "for bob only").await;
    let (s, v) = carol
        .post("/friends/request", json!({"user_id": bob.id}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let request = v["data"]["request_id"].as_i64().unwrap();
    let public = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----",
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE".repeat(2)
    );
    success(
        &alice
            .post(
                "/encryption/keys",
                json!({"public_key": public, "private_key_encrypted": "alice-sealed-private-key"}),
            )
            .await,
    );
    let before = events(&app).await;

    // another pair's conversation: mallory only ever reads her own pairs
    for other in [&alice, &bob] {
        let got = mallory.get(&format!("/messages/{}", other.id)).await;
        assert!(
            !got.1.to_string().contains("for bob only"),
            "leaked: {}",
            got.1
        );
        assert_eq!(success(&got)["data"]["pagination"]["total"], 0, "{}", got.1);
    }
    // someone else's message: deleting it, marking it read
    for got in [
        mallory.delete(&format!("/messages/{secret}")).await,
        mallory
            .put(&format!("/messages/{secret}/read"), json!({}))
            .await,
        // the sender cannot mark it read for its receiver either
        alice
            .put(&format!("/messages/{secret}/read"), json!({}))
            .await,
    ] {
        failed(&got, StatusCode::FORBIDDEN, "MESSAGE_002");
    }
    // a friend request addressed to someone else
    failed(
        &mallory
            .put(
                &format!("/friends/request/{request}"),
                json!({"action": "accept"}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    failed(
        &carol
            .put(
                &format!("/friends/request/{request}"),
                json!({"action": "accept"}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    // another user's keys: the public one only
    failed(
        &mallory.get("/encryption/keys").await,
        StatusCode::NOT_FOUND,
        "ENCRYPT_001",
    );
    let got = mallory
        .get(&format!("/encryption/public-key/{}", alice.id))
        .await;
    assert_eq!(
        success(&got)["data"],
        json!({"user_id": alice.id, "public_key": public})
    );
    // another user's socket: closed 4003 before any frame
    let url = format!(
        "{}/ws/{}?token={}",
        app.base.replacen("http", "ws", 1),
        alice.id,
        mallory.token
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (seen, code) = until_closed(&mut ws, CLOSE_WITHIN).await;
    assert_eq!(code, Some(CloseCode::Library(4003)));
    assert!(seen.is_empty(), "{seen:?}");

    assert_eq!(events(&app).await, before, "a refused request wrote");
    let history = success(&bob.get(&format!("/messages/{}", alice.id)).await).clone();
    let m = &history["data"]["messages"][0];
    assert_eq!(
        (m["id"].as_i64(), &m["is_read"]),
        (Some(secret), &json!(false))
    );
    let friends = success(&bob.get("/friends").await).clone();
    assert_eq!(friends["data"].as_array().unwrap().len(), 1, "{friends}");
    assert_eq!(success(&mallory.get("/friends").await)["data"], json!([]));
    app.stop().await;
}

async fn draw_result(app: &TestApp, who: &User, id: &str) -> (StatusCode, Value) {
    answer(
        post(app, "/api/proxy/v1/draw/result")
            .bearer_auth(&who.token)
            .json(&json!({"id": id})),
    )
    .await
}

#[tokio::test]
async fn ocean1_jobs_and_point_histories_answer_their_owner_only() {
    let gateway = Gateway::start("https://cdn.example/cat.png".into()).await;
    let app = TestApp::start_with(|c| gateway.configure(c)).await;
    let alice = User::register(&app, "alice").await;
    let mallory = User::register(&app, "mallory").await;
    credit(&app, alice.id, "points", 100).await;
    let started = answer(
        post(&app, "/api/proxy/banana")
            .bearer_auth(&alice.token)
            .header("x-user-email", "alice@example.com")
            .json(&json!({"prompt": "a cat", "stream": false})),
    )
    .await;
    assert_eq!(started.0, StatusCode::OK, "{}", started.1);
    let job = started.1["data"]["id"].as_str().unwrap().to_owned();
    jobs_settled(&app, 1).await;
    let before = events(&app).await;

    // another account's job answers as an unknown one does
    let unknown = draw_result(&app, &mallory, &uuid::Uuid::new_v4().to_string()).await;
    ocean_failed(&unknown, StatusCode::NOT_FOUND);
    let theirs = draw_result(&app, &mallory, &job).await;
    assert_eq!(theirs, unknown);
    let own = draw_result(&app, &alice, &job).await;
    assert_eq!(own.1["data"]["status"], "completed", "{}", own.1);

    // claiming another's email: the identity headers must match the session
    ocean_failed(
        &answer(
            get(&app, "/api/user/history")
                .bearer_auth(&mallory.token)
                .header("x-user-email", "alice@example.com"),
        )
        .await,
        StatusCode::FORBIDDEN,
    );
    for (path, body) in [
        (
            "/api/pay/redeem",
            json!({"email": "alice@example.com", "card_key": "ABCD-EFGH-IJKL-MNOP"}),
        ),
        ("/api/user/heartbeat", json!({"email": "alice@example.com"})),
    ] {
        ocean_failed(
            &answer(post(&app, path).bearer_auth(&mallory.token).json(&body)).await,
            StatusCode::FORBIDDEN,
        );
    }
    ocean_failed(
        &answer(
            post(&app, "/api/proxy/v1/draw/result")
                .bearer_auth(&mallory.token)
                .header("x-user-email", "ALICE@example.com")
                .json(&json!({"id": job})),
        )
        .await,
        StatusCode::FORBIDDEN,
    );
    // mallory's own history holds none of alice's movements
    let mine = answer(get(&app, "/api/user/history").bearer_auth(&mallory.token)).await;
    assert_eq!(
        (mine.0, &mine.1["data"]),
        (StatusCode::OK, &json!([])),
        "{}",
        mine.1
    );
    assert_eq!(events(&app).await, before, "a refused request wrote");
    let hers = answer(get(&app, "/api/user/history").bearer_auth(&alice.token)).await;
    assert_eq!(hers.1["data"][0]["balance_after"], 80, "{}", hers.1);
    app.stop().await;
}

#[tokio::test]
async fn a_live_room_s_anchor_calls_refuse_every_other_anchor() {
    let app = TestApp::start().await;
    let (_, anchor) = app.api().user("anchor").await;
    let (_, rival) = app.api().user("rival").await;
    let room = live_room(&app, &anchor, "Kotohime").await;
    let path = format!("/api/anchor/rooms/{room}");
    let said = json!([{"name": "Kotohime", "is_user": false, "mes": "said by her"}]);
    let got = answer(
        post(&app, &format!("{path}/messages"))
            .bearer_auth(&anchor)
            .json(&said),
    )
    .await;
    assert_eq!(got.1["data"]["recorded"], 1, "{}", got.1);
    let before = events(&app).await;

    let forged = json!([{"name": "Kotohime", "is_user": false, "mes": "not said by her"}]);
    for r in [
        // going live
        post(&app, &format!("{path}/live")).json(&json!({"live": true})),
        // uploading the chat, as JSON and as a SillyTavern file
        post(&app, &format!("{path}/messages")).json(&forged),
        post(&app, &format!("{path}/messages"))
            .header("content-type", "application/jsonl")
            .body(format!("{}\n", forged[0])),
        // the anchor's own lines again: refused, not told "skipped"
        post(&app, &format!("{path}/messages")).json(&said),
        // changing the price, the access, the title
        post(&app, &path).json(&json!({"room_type": 1, "coin_num": 500})),
        post(&app, &path).json(&json!({"title": "mine now"})),
    ] {
        code_1(&answer(r.bearer_auth(&rival)).await, StatusCode::FORBIDDEN);
    }
    assert_eq!(events(&app).await, before, "a refused request wrote");
    let mine = answer(get(&app, "/api/anchor/rooms").bearer_auth(&anchor)).await;
    let r = &mine.1["data"]["rooms"][0];
    assert_eq!(r["live_status"], false, "{r}");
    assert_eq!(r["room_info"]["coin_num"], 0, "{r}");
    assert_eq!(r["room_info"]["room_type"], 0, "{r}");
    assert_ne!(r["room_info"]["title"], "mine now", "{r}");
    let lines = answer(get(
        &app,
        &format!("/api/live/get_live_chat_history?room_id={room}"),
    ))
    .await;
    assert!(
        !lines.1.to_string().contains("not said by her"),
        "{}",
        lines.1
    );
    let theirs = answer(get(&app, "/api/anchor/rooms").bearer_auth(&rival)).await;
    assert_eq!(theirs.1["data"]["rooms"], json!([]), "{}", theirs.1);
    app.stop().await;
}

const GIFT_KEY: &str = "gift-monitor-api-key-0123456789";

#[tokio::test]
async fn gift_monitor_writes_refuse_a_missing_or_wrong_api_key() {
    let app = TestApp::start_with(|c| c.api_secret = Some(Secret::new(GIFT_KEY.into()))).await;
    let (_, session) = app.api().user("viewer").await;
    let before = events(&app).await;
    let room = json!({"room_id": 21452505, "room_anchors": "某主播"});
    let with_key = |key: &str| {
        let mut b = room.clone();
        b["api_key"] = json!(key);
        b
    };
    let near = &GIFT_KEY[..GIFT_KEY.len() - 1];
    for r in [
        post(&app, "/add/room").json(&room),
        post(&app, "/add/room")
            .header("x-api-key", "wrong")
            .json(&room),
        post(&app, "/add/room")
            .header("x-api-key", format!("{GIFT_KEY}x"))
            .json(&room),
        post(&app, "/add/room")
            .header("x-api-key", near)
            .json(&room),
        post(&app, "/add/room").json(&with_key("wrong")),
        post(&app, "/add/room").json(&with_key(near)),
        // a wrong header key is not saved by a right one in the body
        post(&app, "/add/room")
            .header("x-api-key", "wrong")
            .json(&with_key(GIFT_KEY)),
        // a user's session, the operators' token: not the API key
        post(&app, "/add/room").bearer_auth(&session).json(&room),
        post(&app, "/add/room").bearer_auth(ADMIN_TOKEN).json(&room),
        post(&app, "/add/room")
            .header("content-type", "application/json")
            .body("{not json"),
        post(&app, "/delete/room").json(&room),
        post(&app, "/delete/room")
            .header("x-api-key", "wrong")
            .json(&room),
        post(&app, "/ingest/bilibili/21452505").json(&json!([])),
        post(&app, "/ingest/bilibili/21452505")
            .header("x-api-key", near)
            .json(&json!([{"cmd": "DANMU_MSG"}])),
    ] {
        bare_error(&answer(r).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(events(&app).await, before, "a refused request wrote");
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE aggregate_type = 'MonitoredRoom'"
        )
        .await,
        0
    );
    app.stop().await;
}

const AUDIT_TOKEN: &str = "audit-token-for-tests";

#[tokio::test]
async fn admin_writes_need_the_admin_token_and_the_audit_token_only_reads() {
    let app = TestApp::start_with(|c| c.audit_token = Some(Secret::new(AUDIT_TOKEN.into()))).await;
    let (number, session) = app.api().user("someone").await;
    let before = events(&app).await;
    let adjust = json!({"account": number.to_string(), "currency": "coins", "direction": "credit",
                        "amount": 1_000_000, "description": "free coins", "operation_id": "steal-1"});
    let near = &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1];
    for auth in [
        None,
        Some("Bearer wrong".to_owned()),
        Some(format!("Bearer {ADMIN_TOKEN}x")),
        Some(format!("Bearer {near}")),
        Some(format!("Basic {ADMIN_TOKEN}")),
        Some(format!("Bearer {session}")),
    ] {
        let mut r = post(&app, "/admin/ledger/adjustments").json(&adjust);
        if let Some(a) = &auth {
            r = r.header("authorization", a);
        }
        bare_error(&answer(r).await, StatusCode::UNAUTHORIZED);
    }
    // the auditors' token reads, and writes nothing
    let audit = |r: reqwest::RequestBuilder| r.bearer_auth(AUDIT_TOKEN);
    bare_error(
        &answer(audit(post(&app, "/admin/ledger/adjustments").json(&adjust))).await,
        StatusCode::FORBIDDEN,
    );
    bare_error(
        &answer(audit(get(&app, "/admin/projections"))).await,
        StatusCode::FORBIDDEN,
    );
    let read = audit(get(&app, "/admin/ledger/entries"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(events(&app).await, before, "a refused request wrote");
    let (_, v) = app
        .api()
        .get("/api/users/is_logged_in", Some(&session))
        .await;
    assert_eq!(v["data"]["user_info"]["coin_num"], 0, "{v}");
    app.stop().await;
}

// ------------------------------------------------------------ token variants

/// A token (or header) an attacker might send, and whether it is refused
/// as expired rather than as invalid.
struct Variant {
    what: &'static str,
    /// `Authorization`'s bytes; `None`: no header at all
    header: Option<Vec<u8>>,
    /// the token alone, where one can be sent (a cookie, a socket's query)
    token: Option<String>,
    expired: bool,
}

/// Every kind of bad credential, made from `token` (a live session's) and
/// `ended` (a signed-out one's); `other` is another account's id.
fn variants(token: &str, ended: &str, other: uuid::Uuid) -> Vec<Variant> {
    let bearer = |what, t: String, expired| Variant {
        what,
        header: Some(format!("Bearer {t}").into_bytes()),
        token: Some(t),
        expired,
    };
    let header = |what, h: &[u8]| Variant {
        what,
        header: Some(h.to_vec()),
        token: None,
        expired: false,
    };
    vec![
        Variant {
            what: "no token",
            header: None,
            token: None,
            expired: false,
        },
        header("another scheme", format!("Basic {token}").as_bytes()),
        header("a scheme without a token", b"Bearer"),
        header("bytes a header should not carry", b"Bearer \xff\xfe\xfd"),
        bearer("garbage", "garbage".into(), false),
        bearer(
            "signed with another secret",
            attack::signed_elsewhere(token),
            false,
        ),
        bearer("alg none, unsigned", attack::unsigned(token), false),
        bearer(
            "claims changed, signature kept",
            attack::extended(token),
            false,
        ),
        bearer("expired", attack::expired(token), true),
        bearer(
            "a session that never was",
            attack::unknown_session(token),
            false,
        ),
        bearer(
            "the session named for another account",
            attack::session_for_another_account(token, other),
            false,
        ),
        bearer("a signed-out session", ended.to_owned(), false),
    ]
}

/// A live session and a signed-out one of the same account (signed out on
/// Chat8: sessions are one on every surface), and another account's id.
async fn tokens_of_one_account(app: &TestApp) -> (String, String, uuid::Uuid) {
    let api = app.api();
    let (_, token) = api.user("holder").await;
    let (_, ended) = api
        .post(
            "/login",
            None,
            json!({"username": "holder", "password": "password123"}),
        )
        .await;
    let ended = ended["data"]["token"].as_str().unwrap().to_owned();
    let resp = post(app, "/api/v1/auth/logout")
        .bearer_auth(&ended)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, other) = api.user("bystander").await;
    (token, ended, attack::subject_of(&other).account_id)
}

fn with(r: reqwest::RequestBuilder, v: &Variant) -> reqwest::RequestBuilder {
    match &v.header {
        Some(h) => r.header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(h).unwrap(),
        ),
        None => r,
    }
}

#[tokio::test]
async fn every_surface_refuses_bad_tokens_with_401_in_its_envelope_and_writes_nothing() {
    let app = TestApp::start().await;
    let (token, ended, other) = tokens_of_one_account(&app).await;
    let anchor = app.api().user("anchor").await.1;
    let room = live_room(&app, &anchor, "Kotohime").await;
    let before = events(&app).await;

    for v in variants(&token, &ended, other) {
        let what = v.what;
        // room chat (seed 004)
        for r in [
            get(&app, "/api/room/list"),
            post(&app, "/api/room/create").json(&json!({"name": "r", "description": "d"})),
        ] {
            let got = answer(with(r, &v)).await;
            assert_error(&got, StatusCode::UNAUTHORIZED);
            assert_eq!(got.1["code"], 1, "{what}");
        }
        // Chat8 (seed 003): AUTH_002 for an expired token, else AUTH_001
        let code = if v.expired { "AUTH_002" } else { "AUTH_001" };
        for r in [
            get(&app, "/api/v1/friends"),
            post(&app, "/api/v1/friends/request").json(&json!({"user_id": 1})),
            post(&app, "/api/v1/auth/refresh"),
        ] {
            let got = answer(with(r, &v)).await;
            assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{what}: {}", got.1);
            failed(&got, StatusCode::UNAUTHORIZED, code);
        }
        // Ocean1 (seed 002) and the live site (seed 000), which also take
        // the token as the session cookie
        let cookie = |r: reqwest::RequestBuilder| {
            v.token
                .as_ref()
                .map(|t| r.header("cookie", format!("tidelog_session={t}")))
        };
        let ocean = || {
            [
                get(&app, "/api/user/history"),
                post(&app, "/api/proxy/sora").json(&json!({"prompt": "a cat"})),
                post(&app, "/api/pay/redeem").json(&json!({"card_key": "ABCD-EFGH"})),
            ]
        };
        let live = || {
            [
                post(&app, "/api/live/follow").json(&json!({"room_id": room})),
                get(&app, "/api/anchor/rooms"),
                get(&app, "/api/users/login_out"),
            ]
        };
        for r in ocean() {
            let got = answer(with(r, &v)).await;
            assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{what}: {}", got.1);
            ocean_failed(&got, StatusCode::UNAUTHORIZED);
        }
        for r in ocean().into_iter().filter_map(cookie) {
            ocean_failed(&answer(r).await, StatusCode::UNAUTHORIZED);
        }
        for r in live() {
            let got = answer(with(r, &v)).await;
            assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{what}: {}", got.1);
            code_1(&got, StatusCode::UNAUTHORIZED);
        }
        for r in live().into_iter().filter_map(cookie) {
            code_1(&answer(r).await, StatusCode::UNAUTHORIZED);
        }
        // where a session is optional, a bad one is a guest
        let got = answer(with(get(&app, "/api/users/is_logged_in"), &v)).await;
        assert_eq!(got.1["data"]["user_info"]["status"], false, "{what}");
    }
    assert_eq!(events(&app).await, before, "a refused request wrote");
    // and the good token still works everywhere
    let got = answer(get(&app, "/api/v1/friends").bearer_auth(&token)).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    app.stop().await;
}

#[tokio::test]
async fn sockets_refuse_bad_tokens_before_any_frame() {
    let app = TestApp::start().await;
    let (token, ended, other) = tokens_of_one_account(&app).await;
    let number = app
        .api()
        .get("/api/v1/user/profile", Some(&format!("Bearer {token}")))
        .await
        .1["data"]["id"]
        .as_i64()
        .unwrap();
    let ws_base = app.base.replacen("http", "ws", 1);
    for v in variants(&token, &ended, other) {
        let what = v.what;
        let query = match (&v.token, &v.header) {
            (Some(t), _) => format!("?token={t}"),
            (None, None) => String::new(),
            // only a token goes in a socket's query
            (None, Some(_)) => continue,
        };
        // Chat8: the upgrade happens, then 4001 and nothing else
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{ws_base}/ws/{number}{query}"))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let (seen, code) = until_closed(&mut ws, CLOSE_WITHIN).await;
        assert_eq!(code, Some(CloseCode::Library(4001)), "{what}");
        assert!(seen.is_empty(), "{what}: {seen:?}");
        // room chat: the upgrade itself is refused, 401 in its envelope
        let refused = |req| async move {
            match tokio_tungstenite::connect_async(req).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    let body = resp.body().clone().unwrap_or_default();
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    (resp.status(), v)
                }
                Err(e) => panic!("{what}: {e}"),
                Ok(_) => panic!("{what}: the room socket opened"),
            }
        };
        let got = refused(
            format!("{ws_base}/api/message/ws{query}")
                .into_client_request()
                .unwrap(),
        )
        .await;
        assert_error(&got, StatusCode::UNAUTHORIZED);
    }
    // a header variant on the room socket's handshake is refused the same
    // (those a WebSocket client can send)
    for v in variants(&token, &ended, other) {
        let Some(h) = v.header.as_ref().filter(|h| std::str::from_utf8(h).is_ok()) else {
            continue;
        };
        let mut req = format!("{ws_base}/api/message/ws")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(h).unwrap(),
        );
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{}", v.what)
            }
            other => panic!("{}: {:?}", v.what, other.map(|_| "opened")),
        }
    }
    // a page of another site cannot ride the session cookie into a socket
    // (cross-site WebSocket hijacking): no socket takes the cookie
    let mut req = format!("{ws_base}/api/message/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "cookie",
        format!("tidelog_session={token}").parse().unwrap(),
    );
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("the cookie opened a socket: {:?}", other.map(|_| ())),
    }
    let mut req = format!("{ws_base}/ws/{number}")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "cookie",
        format!("tidelog_session={token}").parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let (seen, code) = until_closed(&mut ws, CLOSE_WITHIN).await;
    assert_eq!(code, Some(CloseCode::Library(4001)));
    assert!(seen.is_empty(), "{seen:?}");
    // the good token opens both
    chat8_socket(&User {
        id: number,
        token: token.clone(),
        base: app.base.clone(),
        http: app.http.clone(),
    })
    .await;
    roomchat_socket(&app.base, &token).await;
    app.stop().await;
}

// ----------------------------------------------------------------- traversal

/// A card PNG as SillyTavern exports one: the card as base64 JSON in a
/// `chara` tEXt chunk.
fn card_png(card: &Value) -> Vec<u8> {
    use base64::Engine;
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, 4, 4);
    enc.set_color(png::ColorType::Rgb);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&[7u8; 48]).unwrap();
    let text = base64::engine::general_purpose::STANDARD.encode(card.to_string());
    w.write_text_chunk(&png::text_metadata::TEXtChunk::new("chara", text))
        .unwrap();
    w.finish().unwrap();
    out
}

#[tokio::test]
async fn traversal_paths_and_file_names_never_reach_outside_the_file_store() {
    let app = TestApp::start().await;
    let (alice, bob) = befriended(&app).await;

    // file names with `..`: kept as their last part, never a path
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"notes of the pair\n".to_vec())
                .file_name("../../../../etc/passwd"),
        )
        .text("receiver_id", bob.id.to_string());
    let up = answer(
        alice
            .req(reqwest::Method::POST, "/upload/file")
            .multipart(form),
    )
    .await;
    assert_eq!(success(&up)["data"]["file_name"], "passwd", "{}", up.1);
    let link = up.1["data"]["file_url"].as_str().unwrap().to_owned();
    let path = link.split('?').next().unwrap().to_owned();
    let served = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        served.headers()["content-disposition"],
        "attachment; filename=\"passwd\""
    );
    assert_eq!(
        served.bytes().await.unwrap().as_ref(),
        b"notes of the pair\n"
    );
    let sha = path.trim_start_matches("/api/v1/files/").to_owned();

    let (_, anchor) = app.api().user("anchor").await;
    let png = card_png(&v2_card("../../../etc/passwd"));
    let form = reqwest::multipart::Form::new().part(
        "card",
        reqwest::multipart::Part::bytes(png.clone())
            .file_name("../../../var/lib/tidelog/evil.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let room = answer(
        post(&app, "/api/anchor/rooms")
            .bearer_auth(&anchor)
            .multipart(form),
    )
    .await;
    assert_eq!(room.0, StatusCode::OK, "{}", room.1);
    let image_path = room.1["data"]["image_path"].as_str().unwrap().to_owned();
    let uid = answer(get(&app, "/api/users/is_logged_in").bearer_auth(&anchor))
        .await
        .1["data"]["user_info"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        image_path.starts_with(&format!("{uid}/characters/"))
            && !image_path.contains("..")
            && image_path.matches('/').count() == 2,
        "{image_path}"
    );
    let picture = get(&app, &format!("/api/live/images/{image_path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(picture.status(), StatusCode::OK);
    assert_eq!(picture.bytes().await.unwrap().as_ref(), png.as_slice());

    // paths with `..`, raw and encoded, sent byte for byte: 4xx in the
    // surface's envelope (or hyper's bare 400), never a file, never a 500
    let auth = format!("Bearer {}", alice.token);
    for path in [
        "/api/v1/files/..".to_owned(),
        "/api/v1/files/../../../../etc/passwd".to_owned(),
        "/api/v1/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd".to_owned(),
        "/api/v1/files/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd".to_owned(),
        "/api/v1/files/..%2f..%2f..%2fetc%2fpasswd".to_owned(),
        "/api/v1/files/%252e%252e%252f%252e%252e%252fetc%252fpasswd".to_owned(),
        "/api/v1/files/..%5c..%5c..%5cetc%5cpasswd".to_owned(),
        "/api/v1/files/....//....//etc/passwd".to_owned(),
        "/api/v1/files/%00".to_owned(),
        format!("/api/v1/files/{sha}/../../../../etc/passwd"),
        format!("/api/v1/files/{sha}%2f..%2f..%2fetc%2fpasswd"),
        "/api/live/images/..%2f..%2fetc%2fpasswd".to_owned(),
        "/api/live/images/../../../../etc/passwd".to_owned(),
        "/api/live/images/%2e%2e/%2e%2e/%2e%2e/etc/passwd".to_owned(),
        "/api/live/images/%2fetc%2fpasswd".to_owned(),
        "/api/live/images//etc/passwd".to_owned(),
        format!("/api/live/images/{uid}/characters/../../../../etc/passwd"),
        format!("/api/live/images/{image_path}/..%2f..%2f..%2fetc%2fpasswd"),
        "/../../../../etc/passwd".to_owned(),
        "/api/v1/../../../../etc/passwd".to_owned(),
    ] {
        let (status, body) = raw_request(
            &app.base,
            "GET",
            &path,
            &[("Authorization", auth.as_bytes())],
            b"",
        )
        .await;
        let text = String::from_utf8_lossy(&body);
        assert!(status.is_client_error(), "{path}: {status} {text}");
        assert!(!text.contains("root:"), "{path}: {text}");
        if !body.is_empty() {
            let v: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|_| panic!("{path}: not an envelope: {text}"));
            if path.starts_with("/api/v1/") {
                assert_eq!(v["success"], false, "{path}: {v}");
            } else {
                assert_eq!(v["code"], 1, "{path}: {v}");
            }
        }
    }
    app.stop().await;
}

// ---------------------------------------------------------------------- SSRF

#[tokio::test]
async fn urls_given_to_the_generation_proxy_are_refused_or_passed_on_never_fetched() {
    let (port, hits) = internal_service().await;
    let internal = format!("http://127.0.0.1:{port}");
    let gateway = Gateway::start(format!("{internal}/result.png")).await;
    let app = TestApp::start_with(|c| gateway.configure(c)).await;
    let (number, token) = app.api().user("maker").await;
    credit(&app, number, "points", 10_000).await;
    let proxy = |path: &str, body: Value| answer(post(&app, path).bearer_auth(&token).json(&body));

    // not http(s): refused before anything is held or sent
    let sora = |url: Value| json!({"prompt": "a cat", "duration": 1, "url": url, "stream": false});
    let banana = |urls: Value| json!({"prompt": "a cat", "urls": urls, "stream": false});
    for (path, body) in [
        ("/api/proxy/sora", sora(json!("file:///etc/passwd"))),
        (
            "/api/proxy/sora",
            sora(json!(format!("gopher://127.0.0.1:{port}/_GET%20/"))),
        ),
        (
            "/api/proxy/sora",
            sora(json!(format!("ftp://127.0.0.1:{port}/x"))),
        ),
        (
            "/api/proxy/sora",
            sora(json!(format!("dict://127.0.0.1:{port}/"))),
        ),
        ("/api/proxy/sora", sora(json!(" http://127.0.0.1/"))),
        ("/api/proxy/sora", sora(json!(["http://127.0.0.1/"]))),
        ("/api/proxy/banana", banana(json!(["file:///etc/passwd"]))),
        (
            "/api/proxy/banana",
            banana(json!([
                "https://cdn.example/a.png",
                "gopher://169.254.169.254/"
            ])),
        ),
        ("/api/proxy/banana", banana(json!("http://127.0.0.1/"))),
    ] {
        ocean_failed(&proxy(path, body).await, StatusCode::BAD_REQUEST);
    }
    assert_eq!(events_of_type(&app.pool, "HoldPlaced").await, 0);
    assert!(gateway.bodies.lock().unwrap().is_empty());

    // http(s) anywhere: passed on to the gateway as given, never fetched here
    let inside = [
        format!("{internal}/admin"),
        "http://169.254.169.254/latest/meta-data/iam/".to_owned(),
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
    ];
    let mut jobs = Vec::new();
    for (path, body) in [
        ("/api/proxy/sora", sora(json!(inside[0]))),
        ("/api/proxy/banana", banana(json!(inside))),
    ] {
        let got = proxy(path, body).await;
        assert_eq!(got.0, StatusCode::OK, "{}", got.1);
        jobs.push(got.1["data"]["id"].as_str().unwrap().to_owned());
    }
    jobs_settled(&app, 2).await;
    let sent = gateway.bodies.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter().any(|b| b["url"] == json!(inside[0])),
        "{sent:?}"
    );
    assert!(sent.iter().any(|b| b["urls"] == json!(inside)), "{sent:?}");
    for job in &jobs {
        let got = answer(
            post(&app, "/api/proxy/v1/draw/result")
                .bearer_auth(&token)
                .json(&json!({"id": job})),
        )
        .await;
        assert_eq!(got.1["data"]["status"], "completed", "{}", got.1);
        // the gateway's result URL is handed back, not fetched either
        assert_eq!(
            got.1["data"]["result_url"],
            format!("{internal}/result.png")
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "tidelog connected inside");
    app.stop().await;
}

// ---------------------------------------------------------------------- CORS

async fn preflight(app: &TestApp, origin: &str) -> reqwest::header::HeaderMap {
    let resp = app
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/proxy/sora", app.base),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .send()
        .await
        .unwrap();
    resp.headers().clone()
}

#[tokio::test]
async fn cors_allows_credentials_to_the_configured_frontends_only() {
    let frontend = "https://app.example.com";
    let app = TestApp::start_with(|c| c.browser.cors_origins = Some(vec![frontend.into()])).await;
    let h = preflight(&app, frontend).await;
    assert_eq!(h["access-control-allow-origin"], frontend);
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert_eq!(h["access-control-allow-credentials"], "true");
    for other in [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "https://evil.app.example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "null",
    ] {
        // (tower-http sends `…-Allow-Credentials` to anyone; without its
        // origin echoed, a browser lets the page read nothing)
        let h = preflight(&app, other).await;
        assert!(
            h.get("access-control-allow-origin").is_none(),
            "{other}: {h:?}"
        );
        let got = get(&app, "/api/users/is_logged_in")
            .header("origin", other)
            .send()
            .await
            .unwrap();
        assert!(
            got.headers().get("access-control-allow-origin").is_none(),
            "{other}"
        );
    }
    app.stop().await;

    // unset: any origin, never with credentials
    let app = TestApp::start().await;
    for origin in ["https://evil.example", frontend] {
        let h = preflight(&app, origin).await;
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(h.get("access-control-allow-credentials").is_none());
    }
    app.stop().await;
}

// --------------------------------------------- cross-site writes, JSON only

#[tokio::test]
async fn cookie_writes_from_other_sites_are_refused_and_bearer_writes_pass() {
    let frontend = "https://app.example.com";
    let app = TestApp::start_with(|c| c.browser.cors_origins = Some(vec![frontend.into()])).await;
    let anchor = app.api().user("anchor").await.1;
    let room = live_room(&app, &anchor, "Kotohime").await;
    let (_, viewer) = app.api().user("viewer").await;
    let cookie = format!("tidelog_session={viewer}");
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let before = events(&app).await;

    let follow = || post(&app, "/api/live/follow").json(&json!({"room_id": room}));
    let heartbeat = || post(&app, "/api/user/heartbeat").json(&json!({}));
    for (name, value) in [
        ("origin", "https://evil.example".to_owned()),
        ("origin", "null".to_owned()),
        (
            "origin",
            format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        ),
        ("origin", format!("http://localhost:{port}")),
        ("referer", "https://evil.example/page.html".to_owned()),
        ("sec-fetch-site", "same-site".to_owned()),
        ("sec-fetch-site", "cross-site".to_owned()),
    ] {
        let site = |r: reqwest::RequestBuilder| r.header("cookie", &cookie).header(name, &value);
        let what = format!("{name}: {value}");
        let got = answer(site(follow())).await;
        assert_eq!(got.0, StatusCode::FORBIDDEN, "{what}: {}", got.1);
        code_1(&got, StatusCode::FORBIDDEN);
        code_1(
            &answer(site(get(&app, "/api/users/login_out"))).await,
            StatusCode::FORBIDDEN,
        );
        let got = answer(site(heartbeat())).await;
        assert_eq!(got.0, StatusCode::FORBIDDEN, "{what}: {}", got.1);
        ocean_failed(&got, StatusCode::FORBIDDEN);
    }
    assert_eq!(events(&app).await, before, "a refused request wrote");
    // the session lived through the cross-site sign-out
    let got = answer(get(&app, "/api/users/is_logged_in").bearer_auth(&viewer)).await;
    assert_eq!(got.1["data"]["user_info"]["status"], true);

    // a bearer token is no cookie: no other site can attach it
    let evil = |r: reqwest::RequestBuilder| {
        r.bearer_auth(&viewer)
            .header("cookie", &cookie)
            .header("origin", "https://evil.example")
    };
    let got = answer(evil(follow())).await;
    assert_eq!(
        (got.0, &got.1["code"]),
        (StatusCode::OK, &json!(0)),
        "{}",
        got.1
    );
    let got = answer(evil(heartbeat())).await;
    assert_eq!(
        (got.0, &got.1["status"]),
        (StatusCode::OK, &json!("ok")),
        "{}",
        got.1
    );
    // the server's own origin and the configured frontend's pass with the cookie
    for (path, name, value) in [
        ("/api/live/unfollow", "origin", app.base.as_str()),
        ("/api/live/follow", "origin", frontend),
        (
            "/api/live/unfollow",
            "referer",
            &format!("{frontend}/rooms"),
        ),
        ("/api/live/follow", "sec-fetch-site", "same-origin"),
    ] {
        let got = answer(
            post(&app, path)
                .header("cookie", &cookie)
                .header(name, value)
                .json(&json!({"room_id": room})),
        )
        .await;
        assert_eq!(got.0, StatusCode::OK, "{name}: {value}: {}", got.1);
    }
    app.stop().await;
}

#[tokio::test]
async fn json_endpoints_of_the_cookie_surfaces_refuse_other_content_types() {
    let app = TestApp::start().await;
    let anchor = app.api().user("anchor").await.1;
    let room = live_room(&app, &anchor, "Kotohime").await;
    let (_, viewer) = app.api().user("viewer").await;
    let before = events(&app).await;
    let body = json!({"room_id": room}).to_string();
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let send = |path: &str, body: String| {
            answer(
                post(&app, path)
                    .bearer_auth(&viewer)
                    .header("content-type", content_type)
                    .body(body),
            )
        };
        code_1(
            &send("/api/live/follow", body.clone()).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        );
        code_1(
            &send("/api/anchor/subscription", json!({"amount": 5}).to_string()).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        );
        for path in ["/api/user/heartbeat", "/api/proxy/sora", "/api/auth/login"] {
            ocean_failed(
                &send(path, json!({"prompt": "x"}).to_string()).await,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            );
        }
    }
    assert_eq!(events(&app).await, before, "a refused request wrote");
    app.stop().await;
}

// ---------------------------------------------------------------- throttling

/// Long windows (under the day after which `limits::hit` trims a window's
/// row); `inside_one_window` keeps a test from running across two.
const LONG_WINDOW: Duration = Duration::from_secs(20 * 3600);

/// Limits count per fixed window on the database's clock: when the current
/// window of `window` ends within `margin`, waits for the next one, so the
/// attempts that follow all fall in one window.
async fn inside_one_window(pool: &sqlx::PgPool, window: Duration, margin: Duration) {
    let left: f64 = sqlx::query_scalar(
        "SELECT $1 - mod(extract(epoch FROM now())::numeric, $1::numeric)::float8",
    )
    .bind(window.as_secs_f64())
    .fetch_one(pool)
    .await
    .unwrap();
    if left < margin.as_secs_f64() {
        tokio::time::sleep(Duration::from_secs_f64(left + 0.5)).await;
    }
}

async fn room_login(app: &TestApp, name: &str, password: &str) -> (StatusCode, Value) {
    app.api()
        .post(
            "/login",
            None,
            json!({"username": name, "password": password}),
        )
        .await
}

async fn chat8_login_as(app: &TestApp, name: &str, password: &str) -> (StatusCode, Value) {
    answer(post(app, "/api/v1/auth/login").json(&json!({"username": name, "password": password})))
        .await
}

async fn ocean_login(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    answer(
        post(app, "/api/auth/login")
            .json(&json!({"email": email, "password": password, "device_id": "device-1"})),
    )
    .await
}

/// Chat8's 429: `RATE_LIMITED` with when to come back.
fn chat8_throttled(got: &(StatusCode, Value)) {
    failed(got, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(
        got.1["error"]["details"]["retry_after"]
            .as_u64()
            .is_some_and(|s| s > 0),
        "{}",
        got.1
    );
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_whichever_of_its_names_is_typed() {
    let app = TestApp::start_with(|c| {
        c.rate_limits.login_per_account = 4;
        c.rate_limits.login_per_ip = 1000;
        c.rate_limits.login_window = LONG_WINDOW;
    })
    .await;
    inside_one_window(&app.pool, LONG_WINDOW, Duration::from_secs(60)).await;
    User::register(&app, "victim").await;
    let signed_in = events_of_type(&app.pool, "SignedIn").await;
    // four guesses, by username and by email, on three surfaces
    assert_error(
        &room_login(&app, "victim", "guess-1").await,
        StatusCode::UNAUTHORIZED,
    );
    ocean_failed(
        &ocean_login(&app, "victim@example.com", "guess-2").await,
        StatusCode::UNAUTHORIZED,
    );
    failed(
        &chat8_login_as(&app, "VICTIM@example.com", "guess-3").await,
        StatusCode::UNAUTHORIZED,
        "AUTH_003",
    );
    failed(
        &chat8_login_as(&app, "Victim", "guess-4").await,
        StatusCode::UNAUTHORIZED,
        "AUTH_003",
    );
    // now even the right password is refused, by either name, everywhere
    chat8_throttled(&chat8_login_as(&app, "victim", "password123").await);
    chat8_throttled(&chat8_login_as(&app, "victim@example.com", "password123").await);
    assert_error(
        &room_login(&app, "victim", "password123").await,
        StatusCode::TOO_MANY_REQUESTS,
    );
    ocean_failed(
        &ocean_login(&app, "victim@example.com", "password123").await,
        StatusCode::TOO_MANY_REQUESTS,
    );
    assert_eq!(events_of_type(&app.pool, "SignInFailed").await, 4);
    assert_eq!(events_of_type(&app.pool, "SignedIn").await, signed_in);
    // another account is not locked
    User::register(&app, "bystander").await;
    assert_eq!(
        chat8_login_as(&app, "bystander", "password123").await.0,
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test]
async fn a_stolen_session_cannot_guess_the_password_through_the_password_change() {
    let app = TestApp::start_with(|c| {
        c.rate_limits.login_per_account = 3;
        c.rate_limits.login_window = LONG_WINDOW;
    })
    .await;
    inside_one_window(&app.pool, LONG_WINDOW, Duration::from_secs(60)).await;
    let victim = User::register(&app, "victim").await;
    let change = |current: &str| {
        victim.put(
            "/user/password",
            json!({"current_password": current, "new_password": "password456", "confirm_password": "password456"}),
        )
    };
    for guess in ["guess-1", "guess-2", "guess-3"] {
        failed(&change(guess).await, StatusCode::BAD_REQUEST, "AUTH_003");
    }
    chat8_throttled(&change("password123").await);
    assert_eq!(events_of_type(&app.pool, "PasswordChanged").await, 0);
    // the guesses count against sign-ins too
    chat8_throttled(&chat8_login_as(&app, "victim", "password123").await);
    app.stop().await;
}

#[tokio::test]
async fn wrong_passwords_from_one_address_are_throttled_across_accounts() {
    let app = TestApp::start_with(|c| {
        c.rate_limits.login_per_account = 1000;
        c.rate_limits.login_per_ip = 5;
        c.rate_limits.login_window = LONG_WINDOW;
    })
    .await;
    inside_one_window(&app.pool, LONG_WINDOW, Duration::from_secs(60)).await;
    let (s, v) = app
        .api()
        .post(
            "/register",
            None,
            json!({"username": "victim", "password": "password123"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // five guesses at five names, each claiming another forwarded address
    for i in 0..5 {
        let got = answer(
            post(&app, "/login")
                .header("x-forwarded-for", format!("203.0.113.{i}"))
                .header("x-real-ip", format!("203.0.113.{i}"))
                .header("forwarded", format!("for=203.0.113.{i}"))
                .json(&json!({"username": format!("user{i}"), "password": "guess"})),
        )
        .await;
        assert_error(&got, StatusCode::UNAUTHORIZED);
    }
    // the address is throttled: a new name, the right password, another
    // forwarded address change nothing
    let got = answer(
        post(&app, "/login")
            .header("x-forwarded-for", "198.51.100.7")
            .json(&json!({"username": "victim", "password": "password123"})),
    )
    .await;
    assert_error(&got, StatusCode::TOO_MANY_REQUESTS);
    chat8_throttled(&chat8_login_as(&app, "victim", "password123").await);
    ocean_failed(
        &ocean_login(&app, "victim@example.com", "password123").await,
        StatusCode::TOO_MANY_REQUESTS,
    );
    assert_eq!(events_of_type(&app.pool, "SignedIn").await, 0);
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM rate_limit_hits WHERE bucket LIKE 'login:ip:%' AND bucket <> 'login:ip:127.0.0.1'"
        )
        .await,
        0,
        "a forwarded address was believed"
    );
    app.stop().await;
}

#[tokio::test]
async fn email_codes_are_throttled_per_address_and_per_ip_and_so_is_guessing_them() {
    let mail = MailCatcher::start().await;
    let url = mail.url();
    let app = TestApp::start_with(|c| {
        c.smtp_url = Some(Secret::new(url));
        c.code_resend_interval = Duration::ZERO;
        let l = &mut c.rate_limits;
        l.send_code_per_email = 2;
        l.send_code_per_ip = 5;
        l.send_code_window = LONG_WINDOW;
        l.verify_per_account = 3;
        l.verify_window = LONG_WINDOW;
    })
    .await;
    inside_one_window(&app.pool, LONG_WINDOW, Duration::from_secs(60)).await;
    let send =
        |email: &str| answer(post(&app, "/api/auth/send_code").json(&json!({"email": email})));
    // per address: two codes, then no more
    for _ in 0..2 {
        assert_eq!(send("a@example.com").await.0, StatusCode::OK);
    }
    ocean_failed(&send("a@example.com").await, StatusCode::TOO_MANY_REQUESTS);
    // per address of the sender: five attempts in all (the refused one counted no IP hit)
    for to in ["b@example.com", "c@example.com", "d@example.com"] {
        assert_eq!(send(to).await.0, StatusCode::OK, "{to}");
    }
    ocean_failed(&send("e@example.com").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(events_of_type(&app.pool, "CodeIssued").await, 5);
    assert_eq!(mail.to("a@example.com").len(), 2);
    assert!(mail.to("e@example.com").is_empty());

    // guessing a code: three wrong ones, then even the right one is refused
    let code = mail.code_for("a@example.com", 1).await;
    let register = |code: &str| {
        answer(post(&app, "/api/auth/register").json(&json!({
            "email": "a@example.com", "password": "secret-1", "nickname": "A", "verify_code": code})))
    };
    let mut wrong =
        (0..).map(|i| format!("{:06}", (code.parse::<u32>().unwrap() + 1 + i) % 1_000_000));
    for _ in 0..3 {
        ocean_failed(
            &register(&wrong.next().unwrap()).await,
            StatusCode::BAD_REQUEST,
        );
    }
    ocean_failed(&register(&code).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(events_of_type(&app.pool, "AccountRegistered").await, 0);
    assert_eq!(events_of_type(&app.pool, "CodeRedeemed").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn password_guesses_spread_over_two_processes_share_one_budget() {
    let db = fresh_database().await;
    let dir = open_tempdir();
    let env = |name: &str| process_env(&db, &dir, name);
    let p1 = ServerProcess::spawn(&env("p1"));
    let p2 = ServerProcess::spawn(&env("p2"));
    let pool = tidelog::db::connect_pool(db.clone(), 2).await.unwrap();
    let limits = tidelog::config::RateLimits::default();
    // the processes' limits are the defaults (a 5-minute window)
    inside_one_window(&pool, limits.login_window, Duration::from_secs(60)).await;
    let (s, v) = p1
        .api()
        .post(
            "/register",
            None,
            json!({"username": "victim", "password": "password123"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for i in 0..limits.login_per_account {
        let p = if i % 2 == 0 { &p1 } else { &p2 };
        let got = p
            .api()
            .post(
                "/login",
                None,
                json!({"username": "victim", "password": "guess"}),
            )
            .await;
        assert_error(&got, StatusCode::UNAUTHORIZED);
    }
    for p in [&p1, &p2] {
        let got = p
            .api()
            .post(
                "/login",
                None,
                json!({"username": "victim", "password": "password123"}),
            )
            .await;
        assert_error(&got, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(
        events_of_type(&pool, "SignInFailed").await,
        limits.login_per_account as i64
    );
    assert_eq!(events_of_type(&pool, "SignedIn").await, 0);
    pool.close().await;
    drop((p1, p2));
}

// ------------------------------------------- ended sessions, across processes

/// Whether `token` gets in on each surface of the server at `base`:
/// refused with 401 in every surface's envelope, or let in everywhere.
async fn check_everywhere(base: &str, token: &str, let_in: bool) {
    let http = client();
    let call = |path: &str| answer(http.get(format!("{base}{path}")).bearer_auth(token));
    let room_chat = call("/api/room/list").await;
    let chat8 = call("/api/v1/friends").await;
    let ocean1 = call("/api/user/history").await;
    let live = call("/api/anchor/rooms").await;
    let guest = call("/api/users/is_logged_in").await;
    if let_in {
        for got in [&room_chat, &chat8, &ocean1, &live] {
            assert_eq!(got.0, StatusCode::OK, "{base}: {}", got.1);
        }
        assert_eq!(guest.1["data"]["user_info"]["status"], true);
    } else {
        assert_error(&room_chat, StatusCode::UNAUTHORIZED);
        failed(&chat8, StatusCode::UNAUTHORIZED, "AUTH_001");
        ocean_failed(&ocean1, StatusCode::UNAUTHORIZED);
        code_1(&live, StatusCode::UNAUTHORIZED);
        assert_eq!(guest.1["data"]["user_info"]["status"], false);
    }
}

#[tokio::test]
async fn a_session_ended_on_one_process_is_refused_at_once_on_the_other_on_every_surface() {
    let db = fresh_database().await;
    let dir = open_tempdir();
    let env = |name: &str| process_env(&db, &dir, name);
    let p1 = ServerProcess::spawn(&env("p1"));
    let p2 = ServerProcess::spawn(&env("p2"));
    let (s, v) = p1
        .api()
        .post(
            "/register",
            None,
            json!({"username": "holder", "password": "password123"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // each process in turn ends the session (whichever keeps sessions in
    // memory, the other must not believe it open)
    for (ends, other) in [(&p1, &p2), (&p2, &p1)] {
        let (s, v) = ends
            .api()
            .post(
                "/login",
                None,
                json!({"username": "holder", "password": "password123"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let token = v["data"]["token"].as_str().unwrap().to_owned();
        for p in [&p1, &p2] {
            check_everywhere(&p.base, &token, true).await;
        }
        let resp = client()
            .post(format!("{}/api/v1/auth/logout", ends.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        // at once: the logout's answer came after every process could see it
        for p in [other, ends] {
            check_everywhere(&p.base, &token, false).await;
        }
    }
    drop((p1, p2));
}

//! Attacks replayed at the HTTP and WebSocket boundary: what an attacker
//! tried against tidelog, and what must keep holding. Sessions end on every
//! socket they opened, on every process; private files stay private;
//! cookie-authenticated writes refuse other sites; names cannot pose as
//! others; ended, forged and foreign tokens get nowhere.

mod common;

use std::time::{Duration, Instant};

use common::chat8::User;
use common::*;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
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
    let env = |name: &str| {
        vec![
            ("DATABASE_URL", url_of(&db)),
            ("TIDELOG_JWT_SECRET", JWT_SECRET.to_string()),
            (
                "TIDELOG_DATA_DIR",
                dir.path().join(name).display().to_string(),
            ),
        ]
    };
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

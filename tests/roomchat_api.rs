//! Seed 004 (room chat) driven over real HTTP and WebSocket against a real
//! PostgreSQL database, asserting both the answers and what was stored.

mod common;

use common::*;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn is_go_time(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.ends_with("+08:00")
}

#[tokio::test]
async fn a_frontend_session_works_exactly_as_the_seed_documents() {
    let app = TestApp::start().await;
    let api = app.api();

    let (s, v) = api
        .post(
            "/register",
            None,
            json!({"username": "user12345", "password": "password12345"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["code"], 0);
    assert_eq!(v["msg"], "注册成功");
    assert_eq!(v["data"]["username"], "user12345");
    let alice = v["data"]["ID"].as_i64().unwrap();

    let (s, v) = api
        .post(
            "/login",
            None,
            json!({"username": "user12345", "password": "password12345"}),
        )
        .await;
    assert_eq!((s, v["msg"].as_str()), (StatusCode::OK, Some("登录成功")));
    assert_eq!(
        v["data"]["user"],
        json!({"ID": alice, "username": "user12345"})
    );
    let token = v["data"]["token"].as_str().unwrap().to_owned();

    let (s, v) = api
        .post(
            "/api/room/create",
            Some(&token),
            json!({"name": "room1", "description": "test room"}),
        )
        .await;
    assert_eq!((s, v["msg"].as_str()), (StatusCode::OK, Some("创建成功")));
    let room = &v["data"];
    assert_eq!(room["name"], "room1");
    assert_eq!(room["description"], "test room");
    assert!(room["DeletedAt"].is_null());
    assert!(
        is_go_time(&room["CreatedAt"]) && is_go_time(&room["UpdatedAt"]),
        "{room}"
    );
    let room_id = room["ID"].as_i64().unwrap();

    // The list answers right after the create: commands wait for their read model.
    let (s, v) = api.get("/api/room/list", Some(&token)).await;
    assert_eq!((s, v["msg"].as_str()), (StatusCode::OK, Some("获取成功")));
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["data"][0], *room,
        "list shows the room exactly as create answered it"
    );

    let (bob, bob_token) = api.user("bob").await;
    let (s, v) = api
        .post(
            "/api/room/add_user",
            Some(&token),
            json!({"room_id": room_id, "user_id": bob, "role": "member"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"code": 0, "msg": "添加用户到聊天室成功", "data": null})
    );
    let again = api
        .post(
            "/api/room/add_user",
            Some(&token),
            json!({"room_id": room_id, "user_id": bob, "role": "member"}),
        )
        .await;
    assert_error(&again, StatusCode::CONFLICT);
    assert_eq!(again.1["msg"], "添加用户到聊天室失败，用户已在聊天室中");

    let (s, v) = api
        .get(
            &format!("/api/room/members?room_id={room_id}"),
            Some(&bob_token),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["user12345", "bob"]);
    assert_eq!(v["data"][1]["ID"], bob);
    assert!(is_go_time(&v["data"][1]["CreatedAt"]));

    let (s, v) = api
        .post(
            "/api/message/send",
            Some(&format!("Bearer {bob_token}")),
            json!({"room_id": room_id, "type": "text", "content": "hello"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let m = &v["data"];
    assert_eq!(
        (m["room_id"].as_i64(), m["sender_id"].as_i64()),
        (Some(room_id), Some(bob))
    );
    assert_eq!(
        (
            m["sender_name"].as_str(),
            m["type"].as_str(),
            m["content"].as_str()
        ),
        (Some("bob"), Some("text"), Some("hello"))
    );
    let send_time = m["send_time"].as_str().unwrap();
    chrono::NaiveDateTime::parse_from_str(send_time, "%Y-%m-%d %H:%M:%S")
        .expect("send_time is YYYY-MM-DD HH:MM:SS");

    let (s, v) = api
        .get(
            &format!("/api/message/list?room_id={room_id}&last_message_id=0&limit=20"),
            Some(&token),
        )
        .await;
    assert_eq!(
        (s, v["msg"].as_str()),
        (StatusCode::OK, Some("历史消息获取成功"))
    );
    assert_eq!(v["data"], json!([m]));

    // What was stored: the events, with the request's metadata.
    let rows: Vec<(String, String, Value)> = sqlx::query_as(
        "SELECT aggregate_type, event_type, metadata::jsonb FROM events ORDER BY global_position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let types: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        types,
        [
            "AccountRegistered",
            "SignedIn",
            "ChatRoomCreated",
            "MemberAdded",
            "AccountRegistered",
            "SignedIn",
            "MemberAdded",
            "MessagePosted"
        ]
    );
    for (_, _, meta) in &rows {
        for key in [
            "actor",
            "surface",
            "request_id",
            "correlation_id",
            "causation_id",
            "client_ip",
        ] {
            assert!(
                meta[key].as_str().is_some_and(|v| !v.is_empty()),
                "metadata lacks {key}: {meta}"
            );
        }
        assert_eq!(meta["surface"], "roomchat");
        assert_eq!(meta["client_ip"], "127.0.0.1");
    }
    let hash_stored: Value = sqlx::query_scalar(
        "SELECT payload::jsonb FROM events WHERE event_type = 'AccountRegistered' LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        hash_stored["AccountRegistered"]["password_hash"]
            .as_str()
            .unwrap()
            .starts_with("$argon2id$"),
        "passwords are argon2id"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_request_id_given_by_the_caller_is_echoed_and_recorded() {
    let app = TestApp::start().await;
    let resp = app
        .http
        .post(format!("{}/register", app.base))
        .header("x-request-id", "trace-me-123")
        .json(&json!({"username": "traced", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-me-123");
    let rid: String = sqlx::query_scalar("SELECT metadata->>'request_id' FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rid, "trace-me-123");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_in_any_case_yield_one_account() {
    let app = TestApp::start().await;
    let api = app.api();
    let names = [
        "Racer", "racer", "RACER", "rAcEr", "racer", "Racer", "RaCeR", "racer",
    ];
    let results = futures::future::join_all(names.iter().map(|n| {
        api.post(
            "/register",
            None,
            json!({"username": n, "password": "password123"}),
        )
    }))
    .await;
    let ok = results.iter().filter(|r| r.0 == StatusCode::OK).count();
    assert_eq!(ok, 1, "{results:?}");
    for r in results.iter().filter(|r| r.0 != StatusCode::OK) {
        assert_error(r, StatusCode::CONFLICT);
        assert_eq!(r.1["msg"], "用户名已存在");
    }
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'AccountRegistered'"
        )
        .await,
        1
    );
    assert_eq!(count(&app.pool, "SELECT count(*) FROM accounts").await, 1);
    app.stop().await;
}

/// A request that must be refused, and why.
struct Bad {
    why: &'static str,
    method: reqwest::Method,
    path: String,
    token: Option<String>,
    body: Body,
    status: StatusCode,
}

enum Body {
    None,
    Json(Value),
    Raw(&'static str),
}

fn bad(
    why: &'static str,
    method: &str,
    path: impl Into<String>,
    token: Option<&str>,
    body: Body,
    status: StatusCode,
) -> Bad {
    Bad {
        why,
        method: method.parse().unwrap(),
        path: path.into(),
        token: token.map(str::to_owned),
        body,
        status,
    }
}

#[tokio::test]
async fn bad_input_gets_the_envelope_and_writes_nothing() {
    use Body::{Json, Raw};
    use StatusCode as S;
    let app = TestApp::start_with(|c| c.max_body_bytes = 8 * 1024).await;
    let api = app.api();
    let (alice, token) = api.user("alice").await;
    let room = api.room(&token, "r").await;
    let (_, outsider) = api.user("outsider").await;
    let events_before = count(&app.pool, "SELECT count(*) FROM events").await;

    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let foreign = tidelog::auth::Tokens::new(&tidelog::config::Secret::new("z".repeat(40))).issue(
        tidelog::auth::TokenSubject {
            account_id: uuid::Uuid::new_v4(),
            session_id: uuid::Uuid::new_v4(),
        },
        chrono::Utc::now() + chrono::Duration::seconds(60),
    );
    let expired = {
        let claims = json!({"sub": uuid::Uuid::new_v4().to_string(), "sid": uuid::Uuid::new_v4().to_string(), "iat": 1, "exp": 2, "jti": "x"});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    let t = Some(token.as_str());
    let o = Some(outsider.as_str());
    let send = "/api/message/send";
    let list = format!("/api/message/list?room_id={room}");
    #[rustfmt::skip]
    let cases = [
        // malformed and mistyped bodies
        bad("truncated JSON", "POST", send, t, Raw("{\"room_id\": 1,"), S::BAD_REQUEST),
        bad("empty body", "POST", send, t, Raw(""), S::BAD_REQUEST),
        bad("array instead of object", "POST", send, t, Raw("[1,2]"), S::BAD_REQUEST),
        bad("missing password", "POST", "/register", None, Raw("{\"username\": \"x\"}"), S::BAD_REQUEST),
        bad("username with a space", "POST", "/register", None, Json(json!({"username": "has space", "password": "password123"})), S::BAD_REQUEST),
        bad("short password", "POST", "/register", None, Json(json!({"username": "shortpw", "password": "123"})), S::BAD_REQUEST),
        bad("numeric username", "POST", "/register", None, Json(json!({"username": 5, "password": "password123"})), S::BAD_REQUEST),
        bad("non-numeric room id", "POST", send, t, Json(json!({"room_id": "abc", "content": "x"})), S::BAD_REQUEST),
        bad("room id zero", "POST", send, t, Json(json!({"room_id": 0, "content": "x"})), S::BAD_REQUEST),
        bad("blank content", "POST", send, t, Json(json!({"room_id": room, "content": "   "})), S::BAD_REQUEST),
        bad("bad message type", "POST", send, t, Json(json!({"room_id": room, "type": "Bad Type", "content": "x"})), S::BAD_REQUEST),
        bad("oversized body", "POST", send, t, Json(json!({"room_id": room, "content": "x".repeat(20 * 1024)})), S::PAYLOAD_TOO_LARGE),
        bad("empty room name", "POST", "/api/room/create", t, Json(json!({"name": ""})), S::BAD_REQUEST),
        bad("unknown role", "POST", "/api/room/add_user", t, Json(json!({"room_id": room, "user_id": alice, "role": "emperor"})), S::BAD_REQUEST),
        bad("limit zero", "GET", format!("{list}&limit=0"), t, Body::None, S::BAD_REQUEST),
        bad("limit not a number", "GET", format!("{list}&limit=ten"), t, Body::None, S::BAD_REQUEST),
        bad("room id missing", "GET", "/api/message/list", t, Body::None, S::BAD_REQUEST),
        bad("negative room id", "GET", "/api/room/members?room_id=-1", t, Body::None, S::BAD_REQUEST),
        // unknown things
        bad("unknown room (send)", "POST", send, t, Json(json!({"room_id": 999999, "content": "x"})), S::NOT_FOUND),
        bad("unknown room (list)", "GET", "/api/message/list?room_id=999999", t, Body::None, S::NOT_FOUND),
        bad("unknown user", "POST", "/api/room/add_user", t, Json(json!({"room_id": room, "user_id": 999999})), S::NOT_FOUND),
        bad("unknown path", "GET", "/api/nothing/here", t, Body::None, S::NOT_FOUND),
        bad("wrong method", "DELETE", "/api/room/list", t, Body::None, S::METHOD_NOT_ALLOWED),
        // only members read or post
        bad("outsider posts", "POST", send, o, Json(json!({"room_id": room, "content": "x"})), S::FORBIDDEN),
        bad("outsider reads", "GET", list.clone(), o, Body::None, S::FORBIDDEN),
        bad("outsider lists members", "GET", format!("/api/room/members?room_id={room}"), o, Body::None, S::FORBIDDEN),
        bad("outsider adds", "POST", "/api/room/add_user", o, Json(json!({"room_id": room, "user_id": alice})), S::FORBIDDEN),
        // authentication
        bad("no token", "GET", "/api/room/list", None, Body::None, S::UNAUTHORIZED),
        bad("other scheme", "GET", "/api/room/list", Some("Basic abc"), Body::None, S::UNAUTHORIZED),
        bad("forged signature", "GET", "/api/room/list", Some(&forged), Body::None, S::UNAUTHORIZED),
        bad("another server's key", "GET", "/api/room/list", Some(&foreign), Body::None, S::UNAUTHORIZED),
        bad("expired token", "GET", "/api/room/list", Some(&expired), Body::None, S::UNAUTHORIZED),
        bad("wrong password", "POST", "/login", None, Json(json!({"username": "alice", "password": "wrong-password"})), S::UNAUTHORIZED),
        bad("unknown user login", "POST", "/login", None, Json(json!({"username": "nobody", "password": "password123"})), S::UNAUTHORIZED),
    ];
    for case in cases {
        let mut req = app
            .http
            .request(case.method.clone(), format!("{}{}", app.base, case.path));
        if let Some(tok) = &case.token {
            req = req.header("Authorization", tok);
        }
        req = match case.body {
            Body::None => req,
            Json(v) => req.json(&v),
            Raw(text) => req.header("content-type", "application/json").body(text),
        };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{}: not JSON: {text:?}", case.why));
        assert_eq!(status, case.status, "{}: {body}", case.why);
        assert_eq!(body["code"], 1, "{}: {body}", case.why);
        assert!(
            body["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: {body}",
            case.why
        );
        assert!(body["data"].is_null(), "{}: {body}", case.why);
        if case.why == "expired token" {
            assert_eq!(body["msg"], "token已过期，请重新登录");
        }
    }
    // The one thing a rejected request writes is the security record of a
    // wrong password for an existing account.
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type <> 'SignInFailed'"
        )
        .await,
        events_before,
        "rejected requests wrote events"
    );
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'SignInFailed'"
        )
        .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn message_history_pages_backwards_with_the_cursor() {
    let app = TestApp::start().await;
    let api = app.api();
    let (_, token) = api.user("pager").await;
    let room = api.room(&token, "r").await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(api.say(&token, room, &format!("m{i}")).await);
    }
    let page1 = api
        .messages(&token, room, "&last_message_id=0&limit=20")
        .await;
    let got: Vec<i64> = page1.iter().map(|m| m["ID"].as_i64().unwrap()).collect();
    assert_eq!(got, ids[5..], "the newest 20, oldest first");
    let cursor = got[0];
    let page2 = api
        .messages(&token, room, &format!("&last_message_id={cursor}&limit=20"))
        .await;
    let got2: Vec<i64> = page2.iter().map(|m| m["ID"].as_i64().unwrap()).collect();
    assert_eq!(got2, ids[..5], "strictly before the cursor");
    let defaults = api.messages(&token, room, "").await;
    assert_eq!(defaults.len(), 20);
    let big = api.messages(&token, room, "&limit=1000").await;
    assert_eq!(big.len(), 25, "limit is capped at 100, not refused");
    app.stop().await;
}

async fn ws_connect(
    base: &str,
    token: &str,
    via_header: bool,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let ws_base = base.replace("http://", "ws://");
    let req = if via_header {
        let mut r = format!("{ws_base}/api/message/ws")
            .into_client_request()
            .unwrap();
        r.headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        r
    } else {
        format!("{ws_base}/api/message/ws?token={token}")
            .into_client_request()
            .unwrap()
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket connects");
    let greeting = next_json(&mut ws).await;
    assert_eq!(
        greeting,
        json!({"code": 0, "msg": "连接成功", "data": null})
    );
    ws
}

pub async fn next_json<S>(ws: &mut S) -> Value
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test]
async fn websocket_pushes_new_messages_to_every_member_and_only_them() {
    let app = TestApp::start().await;
    let api = app.api();
    let (_, alice) = api.user("alice").await;
    let (bob_id, bob) = api.user("bob").await;
    let (_, eve) = api.user("eve").await;
    let room = api.room(&alice, "r").await;
    api.post(
        "/api/room/add_user",
        Some(&alice),
        json!({"room_id": room, "user_id": bob_id}),
    )
    .await;

    let mut ws_alice = ws_connect(&app.base, &alice, true).await;
    let mut ws_bob = ws_connect(&app.base, &bob, false).await;
    let mut ws_eve = ws_connect(&app.base, &eve, false).await;

    ws_alice
        .send(Message::Text(
            json!({"room_id": room, "type": "text", "content": "hello"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    for ws in [&mut ws_alice, &mut ws_bob] {
        let push = next_json(ws).await;
        assert_eq!(push["code"], 0);
        assert_eq!(push["msg"], "新消息");
        assert_eq!(push["data"]["content"], "hello");
        assert_eq!(push["data"]["sender_name"], "alice");
        assert_eq!(push["data"]["room_id"], room);
    }
    // HTTP sends are pushed too
    api.say(&bob, room, "via http").await;
    assert_eq!(
        next_json(&mut ws_alice).await["data"]["content"],
        "via http"
    );

    // bad frames get an error envelope on that socket only; the socket stays open
    ws_eve
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    let err = next_json(&mut ws_eve).await;
    assert_eq!(
        (err["code"].as_i64(), err["data"].is_null()),
        (Some(1), true)
    );
    ws_eve
        .send(Message::Text(
            json!({"room_id": room, "content": "let me in"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let err = next_json(&mut ws_eve).await;
    assert_eq!(err["code"], 1, "non-members cannot post: {err}");
    // eve never saw the room's messages
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), ws_eve.next())
            .await
            .is_err()
    );

    let unauth = tokio_tungstenite::connect_async(format!(
        "{}/api/message/ws",
        app.base.replace("http://", "ws://")
    ))
    .await;
    match unauth {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("unauthenticated websocket should be refused, got {other:?}"),
    }
    // Shutting down closes open sockets instead of waiting on them.
    let started = std::time::Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "shutdown took {:?}",
        started.elapsed()
    );
    let closed = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        loop {
            match ws_bob.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the socket was closed by the server");
}

#[tokio::test]
async fn concurrent_sends_to_one_room_all_land_once_in_one_order() {
    let app = TestApp::start().await;
    let api = app.api();
    let (_, token) = api.user("hot").await;
    let room = api.room(&token, "hot").await;
    let sends = (0..64).map(|i| {
        let api = api.clone();
        let token = token.clone();
        async move {
            api.post(
                "/api/message/send",
                Some(&token),
                json!({"room_id": room, "content": format!("c{i}")}),
            )
            .await
        }
    });
    let results = futures::future::join_all(sends).await;
    for r in &results {
        assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    }
    let sequences: Vec<i64> = sqlx::query_scalar(
        "SELECT sequence FROM events WHERE aggregate_type = 'ChatRoom' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(room.to_string())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        sequences,
        (1..=66).collect::<Vec<i64>>(),
        "one gap-free stream"
    );
    assert_eq!(api.messages(&token, room, "&limit=100").await.len(), 64);
    app.stop().await;
}

/// Sends to one room pipelined: each decided on the state the previous one
/// left while that one's rows were still being written, several of them
/// written in one transaction; and with a second server appending to the
/// same room, a send whose rows another server's append beat is decided
/// again, together with every send decided on top of it: nothing lost,
/// nothing twice, no gap, and each answer names its own message.
#[tokio::test]
async fn sends_to_one_hot_room_are_pipelined_and_two_servers_on_it_lose_nothing() {
    let app = TestApp::start().await;
    let other = TestApp::start_on(app.db.clone(), |_| {}).await;
    let (api, api2) = (app.api(), other.api());
    let (_, token) = api.user("pipelined").await;
    let room = api.room(&token, "pipelined").await;
    let send = |api: Api, token: String, content: String| async move {
        let (status, v) = api
            .post(
                "/api/message/send",
                Some(&token),
                json!({"room_id": room, "content": content}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        (content, v["data"]["ID"].as_i64().unwrap())
    };
    let mut answered: Vec<(String, i64)> = futures::future::join_all(
        (0..48).map(|i| send(api.clone(), token.clone(), format!("one{i}"))),
    )
    .await;
    let together = count(
        &app.pool,
        &format!(
            "SELECT count(*) FROM (SELECT transaction_id FROM events
              WHERE aggregate_type = 'ChatRoom' AND aggregate_id = '{room}'
              GROUP BY transaction_id HAVING count(*) > 1) t"
        ),
    )
    .await;
    assert!(
        together > 0,
        "no two sends to the room were written together"
    );
    answered.extend(
        futures::future::join_all((0..96).map(|i| {
            let api = if i % 2 == 0 {
                api.clone()
            } else {
                api2.clone()
            };
            send(api, token.clone(), format!("two{i}"))
        }))
        .await,
    );
    let stored: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT sequence, payload->'MessagePosted'->>'content',
                (payload->'MessagePosted'->>'message_id')::bigint
           FROM events WHERE aggregate_type = 'ChatRoom' AND aggregate_id = $1
            AND event_type = 'MessagePosted' ORDER BY sequence",
    )
    .bind(room.to_string())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let sequences: Vec<i64> = sqlx::query_scalar(
        "SELECT sequence FROM events WHERE aggregate_type = 'ChatRoom' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(room.to_string())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        sequences,
        (1..=146).collect::<Vec<i64>>(),
        "one gap-free stream"
    );
    let mut stored_pairs: Vec<(String, i64)> =
        stored.into_iter().map(|(_, c, id)| (c, id)).collect();
    stored_pairs.sort();
    answered.sort();
    assert_eq!(stored_pairs, answered, "each send stored once, as answered");
    assert_eq!(api2.messages(&token, room, "&limit=100").await.len(), 100);
    other.stop().await;
    app.stop().await;
}

/// A send running on its own task (to look at it while it waits).
fn spawn_say(
    api: &Api,
    token: &str,
    room: i64,
    content: &'static str,
) -> tokio::task::JoinHandle<i64> {
    let (api, token) = (api.clone(), token.to_owned());
    tokio::spawn(async move { api.say(&token, room, content).await })
}

async fn projected(pool: &sqlx::PgPool, message_id: i64) -> bool {
    count(
        pool,
        &format!("SELECT count(*) FROM chat_messages WHERE message_id = {message_id}"),
    )
    .await
        == 1
}

/// Under load (another send already waiting for the room-chat read model)
/// a send answers once durable, before its read model has it; the next
/// read (the sender's or anyone's) waits until it does.
#[tokio::test]
async fn a_send_answers_before_its_projection_and_the_next_read_waits_for_it() {
    let app =
        TestApp::start_with(|c| c.read_your_writes_timeout = std::time::Duration::from_secs(30))
            .await;
    let api = app.api();
    let (_, alice) = api.user("fenced").await;
    let (bob_id, bob) = api.user("reader").await;
    let room = api.room(&alice, "fenced").await;
    let (s, v) = api
        .post(
            "/api/room/add_user",
            Some(&alice),
            json!({"room_id": room, "user_id": bob_id}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let posted = "SELECT count(*) FROM events WHERE event_type = 'MessagePosted'";
    let held = hold_projector(&app.pool, "roomchat").await;
    // a lone send waits for its batch, as before
    let first = spawn_say(&api, &bob, room, "waiting");
    eventually("the first send is stored", || async {
        count(&app.pool, posted).await == 1
    })
    .await;
    assert!(!first.is_finished());
    let id = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        api.say(&alice, room, "early"),
    )
    .await
    .expect("the second send answered while its projector was held");
    assert!(
        !projected(&app.pool, id).await,
        "answered before it was projected"
    );
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        held.rollback().await.unwrap();
    });
    let page = api.messages(&bob, room, "&limit=5").await;
    assert!(
        page.iter().any(|m| m["ID"] == id),
        "another member's next read shows it"
    );
    release.await.unwrap();
    first.await.unwrap();
    app.stop().await;

    // TIDELOG_READ_YOUR_WRITES=write: the send waits for its projection
    let app = TestApp::start_with(|c| {
        c.read_your_writes_timeout = std::time::Duration::from_secs(30);
        c.read_your_writes_on_read = false;
    })
    .await;
    let api = app.api();
    let (_, alice) = api.user("waits").await;
    let room = api.room(&alice, "waits").await;
    let held = hold_projector(&app.pool, "roomchat").await;
    let send = spawn_say(&api, &alice, room, "late");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!send.is_finished(), "the send waited for its read model");
    held.rollback().await.unwrap();
    let id = send.await.unwrap();
    assert!(projected(&app.pool, id).await);
    app.stop().await;
}

/// A server that is not alone on its database waits before answering, and
/// one that may have missed another's deferred sends (just started beside
/// it) waits for their read model's head before a read: a send on the
/// first, deferred or not, shows on the second at once.
#[tokio::test]
async fn beside_another_server_a_send_shows_on_both_at_once() {
    let app = TestApp::start().await;
    let api = app.api();
    let (_, alice) = api.user("twofold").await;
    let room = api.room(&alice, "twofold").await;
    let other = TestApp::start_on(app.db.clone(), |_| {}).await;
    let api2 = other.api();
    // bursts, so that sends defer (a lone one waits for its batch anyway)
    let burst = |api: Api, room: i64, tag: &'static str| {
        let alice = alice.clone();
        async move {
            futures::future::join_all((0..8).map(|k| {
                let (api, alice) = (api.clone(), alice.clone());
                async move { api.say(&alice, room, &format!("{tag}{k}")).await }
            }))
            .await
        }
    };
    let shows_all =
        |page: Vec<Value>, ids: &[i64]| ids.iter().all(|id| page.iter().any(|m| m["ID"] == *id));
    for i in 0..10 {
        let room = api.room(&alice, &format!("twofold{i}")).await;
        let ids = burst(api.clone(), room, "m").await;
        let page = api2.messages(&alice, room, "&limit=100").await;
        assert!(shows_all(page, &ids), "burst {i} read on the other server");
        let ids = burst(api2.clone(), room, "n").await;
        let page = api.messages(&alice, room, "&limit=100").await;
        assert!(shows_all(page, &ids), "burst {i} read back on the first");
    }
    // both know of each other by now: neither defers
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let held = hold_projector(&app.pool, "roomchat").await;
    let send = spawn_say(&api, &alice, room, "waits");
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert!(
        !send.is_finished(),
        "with another server, a send waits for its read model"
    );
    held.rollback().await.unwrap();
    send.await.unwrap();
    other.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn message_ids_drawn_in_blocks_are_unique_across_processes_and_increase_in_each() {
    let app = TestApp::start().await;
    // two of them stand for two server processes on one database
    let (one, other) = (
        tidelog::ids::SequenceBlocks::default(),
        tidelog::ids::SequenceBlocks::default(),
    );
    let draws = (0..300).map(|i| {
        let (pool, blocks) = (&app.pool, if i % 3 == 0 { &other } else { &one });
        async move {
            (
                i % 3 == 0,
                blocks.next(pool, "chat_message_ids").await.unwrap(),
            )
        }
    });
    let drawn = futures::future::join_all(draws).await;
    let mut all: Vec<i64> = drawn.iter().map(|d| d.1).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 300, "no number handed out twice");
    for process in [true, false] {
        let mine: Vec<i64> = drawn
            .iter()
            .filter(|d| d.0 == process)
            .map(|d| d.1)
            .collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "in the order handed out: {mine:?}"
        );
    }
    // an old block is left: the next number comes from a fresh draw, past
    // everything the other process drew meanwhile
    let before = one.next(&app.pool, "chat_message_ids").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let elsewhere = other.next(&app.pool, "chat_message_ids").await.unwrap();
    let after = one.next(&app.pool, "chat_message_ids").await.unwrap();
    assert!(
        after > elsewhere && elsewhere > before,
        "{before} {elsewhere} {after}"
    );
    app.stop().await;
}

#[tokio::test]
async fn usernames_are_unique_under_unicode_case_folding_and_sign_in_in_any_case() {
    let app = TestApp::start().await;
    let api = app.api();
    let (id, _) = api.user("Ärger").await;
    let dup = api
        .post(
            "/register",
            None,
            json!({"username": "äRGER", "password": "password123"}),
        )
        .await;
    assert_error(&dup, StatusCode::CONFLICT);
    let dup = api
        .post(
            "/register",
            None,
            json!({"username": "ПРИВЕТ", "password": "password123"}),
        )
        .await;
    assert_eq!(
        dup.0,
        StatusCode::OK,
        "a different name registers: {}",
        dup.1
    );
    let dup = api
        .post(
            "/register",
            None,
            json!({"username": "привет", "password": "password123"}),
        )
        .await;
    assert_error(&dup, StatusCode::CONFLICT);
    let (s, v) = api
        .post(
            "/login",
            None,
            json!({"username": "ÄRGER", "password": "password123"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["user"], json!({"ID": id, "username": "Ärger"}));
    app.stop().await;
}

/// Concurrent appends share one INSERT (group commit); one that the store
/// refuses (a name already claimed) must fail alone, and every other append
/// of its group still land exactly once.
#[tokio::test]
async fn appends_committed_together_succeed_or_fail_each_on_its_own() {
    let app = TestApp::start().await;
    let api = app.api();
    let mut senders = Vec::new();
    for i in 0..16 {
        let (_, token) = api.user(&format!("group{i}")).await;
        let room = api.room(&token, &format!("room{i}")).await;
        senders.push((token, room));
    }
    let sends = senders.iter().flat_map(|(token, room)| {
        let api = &api;
        (0..4).map(move |k| async move {
            api.post(
                "/api/message/send",
                Some(token),
                json!({"room_id": room, "content": format!("m{k}")}),
            )
            .await
        })
    });
    let registrations = (0..8).map(|_| {
        api.post(
            "/register",
            None,
            json!({"username": "contested", "password": "password123"}),
        )
    });
    let (sent, registered) = tokio::join!(
        futures::future::join_all(sends),
        futures::future::join_all(registrations)
    );
    for r in &sent {
        assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    }
    assert_eq!(
        registered.iter().filter(|r| r.0 == StatusCode::OK).count(),
        1,
        "{registered:?}"
    );
    for r in registered.iter().filter(|r| r.0 != StatusCode::OK) {
        assert_error(r, StatusCode::CONFLICT);
    }
    for (token, room) in &senders {
        let mut contents: Vec<String> = api
            .messages(token, *room, "&limit=100")
            .await
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect();
        contents.sort();
        assert_eq!(contents, ["m0", "m1", "m2", "m3"], "room {room}");
    }
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'MessagePosted'"
        )
        .await,
        64
    );
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'AccountRegistered'"
        )
        .await,
        17
    );
    // 64 sends at once on 16 streams: some went in together
    assert!(
        count(
            &app.pool,
            "SELECT count(*) FROM (SELECT transaction_id FROM events WHERE event_type = 'MessagePosted'
               GROUP BY transaction_id HAVING count(DISTINCT aggregate_id) > 1) t"
        )
        .await
            > 0,
        "no two streams were appended in one transaction"
    );
    app.stop().await;
}

/// Pages are kept while their room is unchanged: every change to the room
/// shows at once, whoever reads, and a page kept for a member is never
/// shown to anyone else.
#[tokio::test]
async fn a_room_page_read_again_follows_every_change_to_its_room() {
    let app = TestApp::start().await;
    let api = app.api();
    let (_, alice) = api.user("alice").await;
    let (bob, bob_token) = api.user("bob").await;
    let (_, carol) = api.user("carol").await;
    let room = api.room(&alice, "kept").await;
    let other = api.room(&alice, "elsewhere").await;
    let content = |page: &[Value]| -> Vec<String> {
        page.iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect()
    };

    assert!(api.messages(&alice, room, "&limit=5").await.is_empty());
    assert!(api.messages(&alice, room, "&limit=5").await.is_empty());
    // alice's kept page is not carol's to read
    let refused = api
        .get(
            &format!("/api/message/list?room_id={room}&limit=5"),
            Some(&carol),
        )
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN);

    let (s, v) = api
        .post(
            "/api/room/add_user",
            Some(&alice),
            json!({"room_id": room, "user_id": bob}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let one = api.say(&bob_token, room, "one").await;
    assert_eq!(
        content(&api.messages(&alice, room, "&limit=5").await),
        ["one"]
    );
    assert_eq!(
        content(&api.messages(&bob_token, room, "&limit=5").await),
        ["one"]
    );

    // another room's traffic leaves this room's page as it was
    api.say(&alice, other, "elsewhere").await;
    assert_eq!(
        content(&api.messages(&alice, room, "&limit=5").await),
        ["one"]
    );

    let two = api.say(&alice, room, "two").await;
    assert_eq!(
        content(&api.messages(&bob_token, room, "&limit=5").await),
        ["one", "two"]
    );
    let older = format!("&limit=5&last_message_id={two}");
    assert_eq!(content(&api.messages(&alice, room, &older).await), ["one"]);
    assert_eq!(content(&api.messages(&alice, room, &older).await), ["one"]);
    assert!(two > one);
    let refused = api
        .get(
            &format!("/api/message/list?room_id={room}&limit=5"),
            Some(&carol),
        )
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN);
    app.stop().await;
}

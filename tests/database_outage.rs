//! While no database can be reached (a failover between the primary's death
//! and the standby's promotion), every surface answers 503 with
//! `Retry-After` in its own envelope within a bounded time, writes nothing,
//! and everything — pool, projector workers, the progress listener —
//! resumes by itself once the database is back. The database sits behind a
//! TCP relay the test cuts, as HAProxy does when no server is primary.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use tokio::net::{TcpListener, UnixStream};
use tokio::task::AbortHandle;

/// 127.0.0.1:port → the database (the test cluster's Unix socket, or
/// `DATABASE_URL`'s server); `cut` drops every relayed connection and
/// closes new ones at once, `restore` relays again.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Relay {
    async fn start(target: Target) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (c, l) = (cut.clone(), live.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    match target {
                        Target::Unix(path) => {
                            if let Ok(mut server) = UnixStream::connect(&path).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        }
                        Target::Tcp(addr) => {
                            if let Ok(mut server) = tokio::net::TcpStream::connect(&addr).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        }
                    }
                });
                l.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { port, cut, live }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for task in self.live.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[derive(Clone)]
enum Target {
    Unix(std::path::PathBuf),
    Tcp(String),
}

fn target_of(db: &PgConnectOptions) -> Target {
    match db.get_socket() {
        Some(dir) => Target::Unix(dir.join(format!(".s.PGSQL.{}", db.get_port()))),
        None => Target::Tcp(format!("{}:{}", db.get_host(), db.get_port())),
    }
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value, Duration) {
    let started = Instant::now();
    let mut req = app.http.request(method, format!("{}{path}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("an answer");
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, retry, body, started.elapsed())
}

/// Surface, method, path, token, body.
type Case<'a> = (&'a str, Method, String, Option<&'a str>, Option<Value>);

#[tokio::test]
async fn without_a_database_every_surface_answers_503_and_all_resumes_after() {
    let db = fresh_database().await;
    let relay = Relay::start(target_of(&db)).await;
    let relayed: PgConnectOptions = match db.get_socket() {
        // the relay reaches the cluster over its socket: no password
        Some(_) => PgConnectOptions::new()
            .host("127.0.0.1")
            .port(relay.port)
            .username(db.get_username())
            .database(db.get_database().unwrap()),
        None => url_of(&db)
            .parse::<PgConnectOptions>()
            .unwrap()
            .host("127.0.0.1")
            .port(relay.port),
    };
    let app = TestApp::start_on(relayed, |_| {}).await;
    let api = app.api();
    let (_, token) = api.user("outage").await;
    let room = api.room(&token, "outage room").await;
    api.say(&token, room, "before").await;
    let (s, _) = api
        .post(
            "/add/room",
            None,
            json!({"room_id": 77, "room_anchors": "a", "api_key": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the gift key is checked first");

    relay.cut();
    let admin = Some(ADMIN_TOKEN);
    let cases: Vec<Case> = vec![
        (
            "roomchat",
            Method::POST,
            "/api/message/send".into(),
            Some(token.as_str()),
            Some(json!({"room_id": room, "content": "during"})),
        ),
        (
            "chat8",
            Method::GET,
            "/api/v1/user/profile".into(),
            Some(token.as_str()),
            None,
        ),
        (
            "ocean1",
            Method::POST,
            "/api/auth/login".into(),
            None,
            Some(json!({"email": "a@example.com", "password": "password123", "device_id": "d"})),
        ),
        (
            "live",
            Method::GET,
            "/api/users/is_logged_in".into(),
            Some(token.as_str()),
            None,
        ),
        (
            "gift",
            Method::GET,
            "/gift/live_sessions?room_id=77".into(),
            None,
            None,
        ),
        (
            "admin",
            Method::GET,
            "/admin/projections".into(),
            admin,
            None,
        ),
        ("ops", Method::GET, "/healthz".into(), None, None),
    ];
    for (surface, method, path, token, body) in &cases {
        let (status, retry, body, took) =
            call(&app, method.clone(), path, *token, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{surface} {path}: {body}"
        );
        assert_eq!(retry.as_deref(), Some("2"), "{surface} {path}: Retry-After");
        assert!(
            took < Duration::from_secs(15),
            "{surface} {path} took {took:?}"
        );
        // each in its own surface's envelope
        let own = match *surface {
            "roomchat" => body["code"] == 1 && body["msg"].is_string(),
            "chat8" => body["success"] == false && body["error"]["code"] == "SERVICE_UNAVAILABLE",
            "ocean1" => body["status"] == "failed" && body["msg"].is_string(),
            "live" => body["code"] == 1 && body["msg"].is_string(),
            "gift" | "admin" => body["error"].is_string(),
            _ => body["status"] == "unavailable",
        };
        assert!(own, "{surface} {path}: {body}");
    }

    relay.restore();
    // the pool reconnects, the workers take their locks again, the
    // listener listens again: a send is answered and read back
    let mut answered = None;
    for _ in 0..100 {
        let (s, v) = api
            .post(
                "/api/message/send",
                Some(&token),
                json!({"room_id": room, "content": "after"}),
            )
            .await;
        if s == StatusCode::OK {
            answered = Some(v);
            break;
        }
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answered.is_some(), "sends resume once the database is back");
    eventually("the projection catches up", || async {
        let page = api.messages(&token, room, "").await;
        page.iter().any(|m| m["content"] == "after")
    })
    .await;
    // straight to the database (the test's pool went through the relay)
    let direct = tidelog::db::connect_pool(db.clone(), 1).await.unwrap();
    let contents: Vec<String> = sqlx::query_scalar(
        "SELECT content FROM chat_messages WHERE room_id = $1 ORDER BY message_id",
    )
    .bind(room)
    .fetch_all(&direct)
    .await
    .unwrap();
    assert_eq!(
        contents,
        ["before", "after"],
        "nothing written while cut off"
    );
    let (s, _) = api.get("/healthz", None).await;
    assert_eq!(s, StatusCode::OK);
    app.stop().await;
}

//! Real `tidelog serve` processes: two on one database, and the embedded
//! default surviving a crash.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn two_processes_share_projections_and_apply_each_event_exactly_once() {
    let db = fresh_database().await;
    let env = [
        ("DATABASE_URL", url_of(&db)),
        ("TIDELOG_JWT_SECRET", JWT_SECRET.to_string()),
    ];
    let mut p1 = ServerProcess::spawn(&env);
    let p2 = ServerProcess::spawn(&env);
    let (a1, a2) = (p1.api(), p2.api());
    let pool = tidelog::db::connect_pool(db.clone(), 2).await.unwrap();

    let (_, alice) = a1.user("alice").await;
    let (bob_id, bob) = a2.user("bob").await;
    let room = a2.room(&alice, "shared").await;
    let (s, _) = a1
        .post(
            "/api/room/add_user",
            Some(&alice),
            json!({"room_id": room, "user_id": bob_id}),
        )
        .await;
    assert!(s.is_success());

    // bob listens on process 1; alice talks to process 2
    let ws_url = format!(
        "{}/api/message/ws?token={bob}",
        p1.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let _greeting = ws.next().await;

    let sends = (0..60).map(|i| {
        let (api, tok) = if i % 2 == 0 {
            (a1.clone(), alice.clone())
        } else {
            (a2.clone(), bob.clone())
        };
        async move { api.say(&tok, room, &format!("m{i}")).await }
    });
    futures::future::join_all(sends).await;

    let mut pushed = 0;
    while pushed < 60 {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("pushes arrive")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = frame {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["msg"], "新消息");
            pushed += 1;
        }
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM chat_messages").await, 60);
    assert_eq!(
        count(&pool, "SELECT message_count FROM chat_rooms").await,
        60,
        "a double application would show here"
    );
    let owners: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT name, owner FROM projection_checkpoints ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap();
    let projections = projections::all(chrono_tz::UTC).len();
    assert_eq!(owners.len(), projections);
    // one advisory lock per projection, held by exactly one session; one
    // for the transparency log's integrator
    let held = |app: &'static str| {
        let pool = pool.clone();
        async move {
            count(&pool, &format!("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = '{app}'
                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")).await
        }
    };
    assert_eq!(held("tidelog-projector-lock").await, projections as i64);
    assert_eq!(held("tidelog-tlog-integrator").await, 1);

    // Kill one process: the other takes over whatever it was working.
    p1.kill9();
    for i in 0..5 {
        a2.say(&alice, room, &format!("after{i}")).await;
    }
    let list = a2.messages(&alice, room, "&limit=100").await;
    assert_eq!(list.len(), 65, "projected by the surviving process");
    let mut ws2 = {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!(
            "{}/api/message/ws?token={bob}",
            p2.base.replace("http://", "ws://")
        ))
        .await
        .unwrap();
        let _ = ws.next().await;
        ws
    };
    ws2.send(Message::Text(
        json!({"room_id": room, "content": "still here"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let echo = loop {
        if let Message::Text(t) = ws2.next().await.unwrap().unwrap() {
            break serde_json::from_str::<Value>(&t).unwrap();
        }
    };
    assert_eq!(echo["data"]["content"], "still here");
    assert_eq!(
        count(&pool, "SELECT message_count FROM chat_rooms").await,
        66
    );
}

fn postmaster_pid(data_dir: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(data_dir.join("postgres/data/postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

#[tokio::test]
async fn the_embedded_default_survives_a_crash_and_stops_cleanly() {
    let dir = open_tempdir();
    let data = dir.path().join("data");
    let env = [("TIDELOG_DATA_DIR", data.display().to_string())];

    let mut first = ServerProcess::spawn(&env);
    let api = first.api();
    let (_, token) = api.user("survivor").await;
    let room = api.room(&token, "r").await;
    api.say(&token, room, "before the crash").await;
    assert!(
        data.join("secrets/jwt_secret").exists(),
        "the generated secret is kept in the data directory"
    );

    // Crash everything: the server and its database.
    first.kill9();
    let pid = postmaster_pid(&data).expect("cluster was running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut second = ServerProcess::spawn(&env);
    let api = second.api();
    // The old token still works: same secret, same data.
    assert_eq!(
        api.messages(&token, room, "").await[0]["content"],
        "before the crash"
    );
    let (s, v) = api
        .post(
            "/login",
            None,
            json!({"username": "survivor", "password": "password123"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let status = second.terminate();
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");
    assert!(
        postmaster_pid(&data).is_none(),
        "the cluster it started is stopped"
    );
    assert!(second
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("stopping embedded PostgreSQL")));
}

#[test]
fn without_postgres_binaries_the_error_names_the_fix() {
    let dir = open_tempdir();
    let out = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("TIDELOG_DATA_DIR", dir.path().join("d"))
        .env("TIDELOG_POSTGRES_BIN", "/nonexistent/bin")
        .env("TIDELOG_BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("apt-get install postgresql") && err.contains("DATABASE_URL"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.contains("ERROR")).count(),
        1,
        "one clear error line: {err}"
    );
}

/// A server killed in the middle of traffic (and of projector batches) must
/// leave nothing half-applied: the read models end up matching the log exactly.
#[tokio::test]
async fn killing_a_server_mid_traffic_loses_and_duplicates_nothing() {
    let db = fresh_database().await;
    let env = [
        ("DATABASE_URL", url_of(&db)),
        ("TIDELOG_JWT_SECRET", JWT_SECRET.to_string()),
        // small batches: more batch boundaries for the kill to land between
        ("TIDELOG_PROJECTOR_BATCH", "3".to_string()),
    ];
    let mut victim = ServerProcess::spawn(&env);
    let survivor = ServerProcess::spawn(&env);
    let pool = tidelog::db::connect_pool(db.clone(), 2).await.unwrap();
    let (_, token) = survivor.api().user("chaos").await;
    let rooms: Vec<i64> = futures::future::join_all((0..4).map(|i| {
        let api = survivor.api();
        let token = token.clone();
        async move { api.room(&token, &format!("r{i}")).await }
    }))
    .await;

    // Writers on both processes; the victim's writers see errors once it dies.
    let writer = |base: String, n: usize| {
        let token = token.clone();
        let rooms = rooms.clone();
        tokio::spawn(async move {
            let api = Api::new(&base);
            let mut ok = 0;
            for i in 0..n {
                let body = json!({"room_id": rooms[i % rooms.len()], "content": format!("m{i}")});
                let sent = api
                    .http
                    .post(format!("{base}/api/message/send"))
                    .header("Authorization", &token)
                    .json(&body)
                    .send()
                    .await;
                if sent.map(|r| r.status().is_success()).unwrap_or(false) {
                    ok += 1;
                }
            }
            ok
        })
    };
    let on_victim: Vec<_> = (0..4).map(|_| writer(victim.base.clone(), 60)).collect();
    let on_survivor: Vec<_> = (0..4).map(|_| writer(survivor.base.clone(), 60)).collect();
    eventually("traffic is under way", || async {
        count(
            &pool,
            "SELECT count(*) FROM events WHERE event_type = 'MessagePosted'",
        )
        .await
            >= 100
    })
    .await;
    victim.kill9();
    let mut acknowledged = 0;
    for h in on_victim.into_iter().chain(on_survivor) {
        acknowledged += h.await.unwrap();
    }

    let logged = count(
        &pool,
        "SELECT count(*) FROM events WHERE event_type = 'MessagePosted'",
    )
    .await;
    assert!(
        logged >= acknowledged,
        "an acknowledged message is in the log ({logged} < {acknowledged})"
    );
    assert!(
        acknowledged >= 240,
        "the survivor's writers all succeeded: {acknowledged}"
    );
    assert!(
        acknowledged < 480,
        "the kill landed mid-traffic: {acknowledged}"
    );
    eventually("the read models catch up with the log", || async {
        count(&pool, "SELECT count(*) FROM chat_messages").await == logged
    })
    .await;
    assert_eq!(
        count(&pool, "SELECT sum(message_count)::bigint FROM chat_rooms").await,
        logged,
        "no event applied twice"
    );
    let failing = count(
        &pool,
        "SELECT count(*) FROM projection_checkpoints WHERE last_error IS NOT NULL",
    )
    .await;
    assert_eq!(failing, 0);
}

#[tokio::test]
async fn two_processes_with_only_the_database_in_common_share_the_secrets_they_generate() {
    let db = fresh_database().await;
    let dir = open_tempdir();
    let env = |name: &str| {
        vec![
            ("DATABASE_URL", url_of(&db)),
            (
                "TIDELOG_DATA_DIR",
                dir.path().join(name).display().to_string(),
            ),
        ]
    };
    let p1 = ServerProcess::spawn(&env("p1"));
    let p2 = ServerProcess::spawn(&env("p2"));
    let (a1, a2) = (p1.api(), p2.api());

    // a session from one process is good on the other
    let (_, token) = a1.user("alice").await;
    let room = a2.room(&token, "shared secrets").await;
    a2.say(&token, room, "signed by p1, accepted by p2").await;

    // a card issued by the CLI (a third data directory) redeems on p2
    let out = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(["cards", "issue", "--points", "7", "--count", "1"])
        .env("DATABASE_URL", url_of(&db))
        .env("TIDELOG_DATA_DIR", dir.path().join("cli"))
        .env_remove("TIDELOG_CARD_SECRET")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (s, v) = a2
        .post(
            "/api/pay/redeem",
            Some(&format!("Bearer {token}")),
            json!({"card_key": code}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK, "{v}");
    assert_eq!(v["status"], "success", "{v}");

    // each process's data directory shows the shared value (the admin
    // token an operator calls /admin with), and the database keeps one each
    for name in [
        "jwt_secret",
        "admin_token",
        "api_secret",
        "card_secret",
        "audit_token",
    ] {
        let read = |p: &str| {
            std::fs::read_to_string(dir.path().join(p).join("secrets").join(name)).unwrap()
        };
        assert_eq!(read("p1"), read("p2"), "{name}");
        assert!(read("p1").len() >= 32);
    }
    let pool = tidelog::db::connect_pool(db.clone(), 1).await.unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM server_secrets").await, 5);
    let admin = std::fs::read_to_string(dir.path().join("p2/secrets/admin_token")).unwrap();
    let resp = client()
        .get(format!("{}/admin/projections", p1.base))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
}

//! Chat8's real-time socket (seed 003): frames from the log reach sockets on
//! every server process, reconnects with `since` lose and repeat nothing,
//! calls are relayed between friends only, presence holds across processes
//! and a crash, and refused sockets close with their code before anything.

mod common;

use std::time::Duration;

use common::chat8::*;
use common::*;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A socket that is connected and in its session (a ping was answered), so
/// that what happens next reaches it.
async fn open(user: &User, since: Option<&str>) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(user.socket_url(since))
        .await
        .expect("socket connects");
    ping(&mut ws).await;
    ws
}

async fn ping(ws: &mut Ws) {
    ws.send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .unwrap();
    loop {
        let f = next(ws).await;
        if f["type"] == "pong" {
            assert!(f["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
            return;
        }
        // a replay comes before the answer to a ping sent after it
        assert_ne!(f["type"], "error", "{f}");
    }
}

async fn next_within(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(wait, ws.next()).await.ok()??.ok()?;
        match msg {
            Message::Text(t) => return Some(serde_json::from_str(&t).unwrap()),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

async fn next(ws: &mut Ws) -> Value {
    next_within(ws, Duration::from_secs(15))
        .await
        .expect("a frame in time")
}

/// The next frame of `kind`, skipping presence frames (they come and go
/// with the other users' sockets).
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let f = next(ws).await;
        if f["type"] == kind {
            return f;
        }
        assert_eq!(f["type"], "user_status", "expected {kind}, got {f}");
    }
}

/// Nothing but presence frames for a while.
async fn quiet(ws: &mut Ws, wait: Duration) {
    while let Some(f) = next_within(ws, wait).await {
        assert_eq!(f["type"], "user_status", "unexpected frame {f}");
    }
}

async fn client_frame(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// A socket's status frames until one says `status` for `user`.
async fn status_of(ws: &mut Ws, user: i64, status: &str) {
    loop {
        let f = next(ws).await;
        if f["type"] == "user_status" && f["data"]["user_id"] == user {
            if f["data"]["status"] == status {
                assert!(f["data"]["username"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty()));
                return;
            }
        } else {
            panic!("expected {user} {status}, got {f}");
        }
    }
}

fn seq(f: &Value) -> String {
    f["seq"]
        .as_str()
        .expect("a frame from the log has its seq")
        .to_owned()
}

#[tokio::test]
async fn a_socket_on_one_process_hears_messages_requests_and_status_taken_by_another() {
    let db = fresh_database().await;
    let dir = open_tempdir();
    let env = |name: &str| {
        let mut env = process_env(&db, &dir, name);
        env.extend([
            ("TIDELOG_CHAT8_PRESENCE_GRACE_MS", "200".to_string()),
            ("TIDELOG_CHAT8_PRESENCE_STALE_MS", "1500".to_string()),
        ]);
        env
    };
    let p1 = ServerProcess::spawn(&env("p1"));
    let mut p2 = ServerProcess::spawn(&env("p2"));
    let http = client();
    let bob = User::register_at(&p1.base, &http, "bob").await;
    let alice = User::register_at(&p2.base, &http, "alice").await;
    let mut bob_ws = open(&bob, None).await;

    // a friend request taken by p2 reaches bob's socket on p1
    let (s, v) = alice
        .post(
            "/friends/request",
            json!({"user_id": bob.id, "message": "hello bob"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let request_id = v["data"]["request_id"].as_i64().unwrap();
    let f = next_of(&mut bob_ws, "friend_request").await;
    assert_eq!(
        f["data"],
        json!({"request_id": request_id, "from_user_id": alice.id,
               "from_username": "alice", "message": "hello bob"})
    );
    assert!(f["timestamp"].as_str().unwrap().ends_with('Z'));
    // the acceptance taken by p1 reaches alice's socket on p2
    let mut alice_ws = open(&alice, None).await;
    let (s, v) = bob
        .put(
            &format!("/friends/request/{request_id}"),
            json!({"action": "accept"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let accepted = next_of(&mut alice_ws, "friend_request_accepted").await;
    assert_eq!(accepted["data"]["user_id"], bob.id);
    assert_eq!(accepted["data"]["username"], "bob");

    // a message sent through p2: to the receiver on p1, and the sender's socket
    let id = alice.say(&bob, "across processes").await;
    let f = next_of(&mut bob_ws, "new_message").await;
    assert_eq!(f["data"]["id"], id);
    assert_eq!(f["data"]["sender_id"], alice.id);
    assert_eq!(f["data"]["sender_username"], "alice");
    assert_eq!(f["data"]["content"], "across processes");
    assert_eq!(f["data"]["message_type"], "text");
    assert_eq!(f["data"]["is_encrypted"], false);
    assert_eq!(f["data"]["event_id"], f["seq"]);
    let mine = next_of(&mut alice_ws, "new_message").await;
    assert_eq!(mine["data"]["id"], id);

    // a status set over REST, then the last socket closing (after the grace)
    let (s, v) = alice
        .on(&p1.base)
        .put("/user/status", json!({"status": "away"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    status_of(&mut bob_ws, alice.id, "away").await;
    alice_ws.close(None).await.unwrap();
    status_of(&mut bob_ws, alice.id, "offline").await;
    let (_, friends) = bob.get("/friends").await;
    assert_eq!(friends["data"][0]["status"], "offline", "{friends}");

    // a first socket makes her online; a crashed process's sockets stop counting
    let _alice_again = open(&alice, None).await;
    status_of(&mut bob_ws, alice.id, "online").await;
    p2.kill9();
    let crashed = std::time::Instant::now();
    status_of(&mut bob_ws, alice.id, "offline").await;
    assert!(crashed.elapsed() < Duration::from_secs(10));
    let pool = tidelog::db::connect_pool(db.clone(), 2).await.unwrap();
    assert_eq!(
        count(
            &pool,
            &format!(
                "SELECT count(*) FROM chat8_sockets WHERE user_id = {}",
                alice.id
            )
        )
        .await,
        0
    );
    drop(p1);
}

#[tokio::test]
async fn a_reconnect_with_since_gets_exactly_the_missed_frames_in_order() {
    let app = TestApp::start().await;
    let alice = User::register(&app, "alice").await;
    let bob = User::register(&app, "bob").await;
    let carol = User::register(&app, "carol").await;
    alice.befriend(&bob).await;

    let mut ws = open(&bob, None).await;
    let first = alice.say(&bob, "one").await;
    let f = next_of(&mut ws, "new_message").await;
    assert_eq!(f["data"]["id"], first);
    let cursor = seq(&f);
    ws.close(None).await.unwrap();

    // missed while away: three messages and a request
    let mut missed = vec![];
    for text in ["two", "three"] {
        missed.push(alice.say(&bob, text).await);
    }
    let (s, _) = carol
        .post(
            "/friends/request",
            json!({"user_id": bob.id, "message": "hey"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    missed.push(alice.say(&bob, "four").await);

    let mut ws = open(&bob, Some(&cursor)).await;
    // `open` waited for its pong, which came after the replay: read the
    // replay from a second socket that does not ping first
    let (mut raw, _) = tokio_tungstenite::connect_async(bob.socket_url(Some(&cursor)))
        .await
        .unwrap();
    let mut kinds = vec![];
    let mut seqs = vec![];
    for _ in 0..4 {
        let f = next(&mut raw).await;
        kinds.push(f["type"].as_str().unwrap().to_owned());
        seqs.push(seq(&f));
        if f["type"] == "new_message" {
            assert_eq!(
                f["data"]["id"],
                missed[kinds.iter().filter(|k| *k == "new_message").count() - 1]
            );
        } else {
            assert_eq!(f["data"]["from_user_id"], carol.id);
        }
    }
    assert_eq!(
        kinds,
        [
            "new_message",
            "new_message",
            "friend_request",
            "new_message"
        ]
    );
    let mut sorted = seqs.clone();
    sorted.sort_by_key(|s| {
        let (t, p) = s.split_once('.').unwrap();
        (t.parse::<i64>().unwrap(), p.parse::<i64>().unwrap())
    });
    assert_eq!(seqs, sorted, "in log order");

    // then live, once each: nothing replayed comes again
    let five = alice.say(&bob, "five").await;
    for socket in [&mut ws, &mut raw] {
        let f = next_of(socket, "new_message").await;
        assert_eq!(f["data"]["id"], five);
        quiet(socket, Duration::from_millis(700)).await;
    }

    // a reconnect from the newest cursor gets nothing
    let (mut none, _) = tokio_tungstenite::connect_async(bob.socket_url(Some(&seqs[3])))
        .await
        .unwrap();
    let f = next_of(&mut none, "new_message").await;
    assert_eq!(f["data"]["id"], five, "only what came after the cursor");
    client_frame(&mut none, json!({"type": "ping"})).await;
    assert_eq!(next(&mut none).await["type"], "pong");

    // a cursor that is not one: told to refetch, then live
    let (mut junk, _) = tokio_tungstenite::connect_async(bob.socket_url(Some("yesterday")))
        .await
        .unwrap();
    let f = next(&mut junk).await;
    assert_eq!(f["type"], "resync");
    assert_eq!(f["data"]["reason"], "invalid_cursor");
    app.stop().await;
}

#[tokio::test]
async fn a_reconnect_too_far_behind_is_told_to_refetch() {
    let app = TestApp::start().await;
    let alice = User::register(&app, "alice").await;
    let bob = User::register(&app, "bob").await;
    alice.befriend(&bob).await;
    let mut ws = open(&bob, None).await;
    alice.say(&bob, "start").await;
    let cursor = seq(&next_of(&mut ws, "new_message").await);
    ws.close(None).await.unwrap();
    let sends = (0..8).map(|w| {
        let (alice, bob) = (alice.clone(), bob.clone());
        tokio::spawn(async move {
            for i in 0..126 {
                alice.say(&bob, &format!("{w}-{i}")).await;
            }
        })
    });
    for s in sends.collect::<Vec<_>>() {
        s.await.unwrap();
    }
    // 1,008 frames missed: more than a replay gives
    let (mut raw, _) = tokio_tungstenite::connect_async(bob.socket_url(Some(&cursor)))
        .await
        .unwrap();
    let f = next(&mut raw).await;
    assert_eq!(f["type"], "resync", "{f}");
    assert_eq!(f["data"]["reason"], "too_far_behind");
    assert_eq!(f["data"]["max"], 1000);
    app.stop().await;
}

#[tokio::test]
async fn call_invites_are_relayed_to_a_friend_and_refused_to_a_stranger() {
    let app = TestApp::start().await;
    let alice = User::register(&app, "alice").await;
    let bob = User::register(&app, "bob").await;
    let carol = User::register(&app, "carol").await;
    alice.befriend(&bob).await;
    let mut a = open(&alice, None).await;
    let mut b = open(&bob, None).await;
    let mut c = open(&carol, None).await;

    client_frame(
        &mut a,
        json!({"type": "voice_call_invite", "data": {"to_user_id": bob.id}}),
    )
    .await;
    let created = next_of(&mut a, "call_created").await;
    let call_id = created["data"]["call_id"].as_str().unwrap().to_owned();
    assert_eq!(created["data"]["to_user_id"], bob.id);
    let invite = next_of(&mut b, "voice_call_invite").await;
    assert_eq!(
        invite["data"],
        json!({"call_id": call_id, "from_user_id": alice.id, "from_username": "alice"})
    );

    // a stranger cannot answer it, nor call someone who is not a friend
    client_frame(
        &mut c,
        json!({"type": "call_accept", "data": {"call_id": call_id}}),
    )
    .await;
    let refused = next_of(&mut c, "error").await;
    assert_eq!(refused["data"]["code"], "CALL_002");
    client_frame(
        &mut c,
        json!({"type": "video_call_invite", "data": {"to_user_id": alice.id}}),
    )
    .await;
    assert_eq!(next_of(&mut c, "error").await["data"]["code"], "FRIEND_001");
    client_frame(
        &mut c,
        json!({"type": "video_call_invite", "data": {"to_user_id": "x"}}),
    )
    .await;
    assert_eq!(
        next_of(&mut c, "error").await["data"]["code"],
        "VALIDATION_ERROR"
    );
    client_frame(
        &mut c,
        json!({"type": "call_end", "data": {"call_id": "../etc"}}),
    )
    .await;
    assert_eq!(next_of(&mut c, "error").await["data"]["code"], "CALL_001");
    c.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(
        next_of(&mut c, "error").await["data"]["code"],
        "VALIDATION_ERROR"
    );
    client_frame(&mut c, json!({"type": "teleport"})).await;
    assert_eq!(
        next_of(&mut c, "error").await["data"]["code"],
        "VALIDATION_ERROR"
    );

    // bob accepts, alice hears it; alice ends, bob hears it; it stays ended
    client_frame(
        &mut b,
        json!({"type": "call_accept", "data": {"call_id": call_id}}),
    )
    .await;
    let f = next_of(&mut a, "call_accepted").await;
    assert_eq!(f["data"]["call_id"], call_id.as_str());
    assert_eq!(f["data"]["from_user_id"], bob.id);
    client_frame(
        &mut a,
        json!({"type": "call_end", "data": {"call_id": call_id}}),
    )
    .await;
    let f = next_of(&mut b, "call_ended").await;
    assert_eq!(f["data"]["from_user_id"], alice.id);
    client_frame(
        &mut b,
        json!({"type": "call_end", "data": {"call_id": call_id}}),
    )
    .await;
    assert_eq!(next_of(&mut b, "error").await["data"]["code"], "CALL_003");

    quiet(&mut c, Duration::from_millis(500)).await;
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE aggregate_type = 'Call'"
        )
        .await,
        3,
        "invited, accepted, ended: the refused frames wrote nothing"
    );
    app.stop().await;
}

#[tokio::test]
async fn read_marks_and_deletions_reach_the_parties_sockets() {
    let app = TestApp::start().await;
    let alice = User::register(&app, "alice").await;
    let bob = User::register(&app, "bob").await;
    alice.befriend(&bob).await;
    let mut a = open(&alice, None).await;
    let mut b = open(&bob, None).await;
    let first = alice.say(&bob, "one").await;
    let second = alice.say(&bob, "two").await;
    for ws in [&mut a, &mut b] {
        for id in [first, second] {
            assert_eq!(next_of(ws, "new_message").await["data"]["id"], id);
        }
    }

    let (s, v) = bob
        .put(&format!("/messages/{second}/read"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for ws in [&mut a, &mut b] {
        let f = next_of(ws, "messages_read").await;
        assert_eq!(f["data"], json!({"reader_id": bob.id, "up_to": second}));
    }

    // hidden by the receiver: only the receiver's sockets hear it
    let (s, _) = bob.delete(&format!("/messages/{first}")).await;
    assert_eq!(s, StatusCode::OK);
    let f = next_of(&mut b, "message_deleted").await;
    assert_eq!(
        f["data"],
        json!({"id": first, "by_id": bob.id, "for_both": false})
    );
    // deleted by the sender: both
    let (s, _) = alice.delete(&format!("/messages/{second}")).await;
    assert_eq!(s, StatusCode::OK);
    for ws in [&mut a, &mut b] {
        let f = next_of(ws, "message_deleted").await;
        assert_eq!(
            f["data"],
            json!({"id": second, "by_id": alice.id, "for_both": true})
        );
    }
    quiet(&mut a, Duration::from_millis(500)).await;
    app.stop().await;
}

async fn refused_with(url: String) -> CloseCode {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Close(Some(frame)))) => frame.code,
        other => panic!("expected a close frame first, got {other:?}"),
    }
}

#[tokio::test]
async fn a_socket_for_another_user_or_without_a_valid_token_closes_before_anything() {
    let app = TestApp::start().await;
    let alice = User::register(&app, "alice").await;
    let bob = User::register(&app, "bob").await;
    let ws_base = app.base.replacen("http", "ws", 1);

    let other = format!("{ws_base}/ws/{}?token={}", bob.id, alice.token);
    assert_eq!(refused_with(other).await, CloseCode::Library(4003));
    let junk_id = format!("{ws_base}/ws/me?token={}", alice.token);
    assert_eq!(refused_with(junk_id).await, CloseCode::Library(4003));
    let forged = format!(
        "{ws_base}/ws/{}?token=eyJhbGciOiJIUzI1NiJ9.e30.forged",
        alice.id
    );
    assert_eq!(refused_with(forged).await, CloseCode::Library(4001));
    let none = format!("{ws_base}/ws/{}", alice.id);
    assert_eq!(refused_with(none).await, CloseCode::Library(4001));

    // a token whose session ended
    let url = alice.socket_url(None);
    let (s, _) = alice.post("/auth/logout", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(refused_with(url).await, CloseCode::Library(4001));

    // not an upgrade: Chat8's envelope
    let got = send(app.http.get(format!("{}/ws/{}", app.base, bob.id))).await;
    failed(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(
        count(&app.pool, "SELECT count(*) FROM chat8_sockets").await,
        0,
        "refused sockets are not counted"
    );
    app.stop().await;
}

/// Every scan node of an `EXPLAIN (ANALYZE, FORMAT JSON)` plan: its type
/// and the rows it read (those it produced and those its filter dropped).
fn scans(plan: &Value, out: &mut Vec<(String, i64)>) {
    let kind = plan["Node Type"].as_str().unwrap_or_default();
    if kind.contains("Scan") && kind != "Subquery Scan" {
        let rows = plan["Actual Rows"].as_i64().expect("analysed rows")
            + plan["Rows Removed by Filter"].as_i64().unwrap_or(0);
        let loops = plan["Actual Loops"].as_i64().unwrap_or(1);
        out.push((kind.to_owned(), rows * loops));
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        scans(child, out);
    }
}

/// The feed's read (inside `sql`) from the log's start to `upto`.
fn from_the_start(
    sql: &str,
    upto: (i64, i64),
) -> sqlx::query::QueryScalar<'_, sqlx::Postgres, Value, sqlx::postgres::PgArguments> {
    sqlx::query_scalar(sql)
        .bind("0")
        .bind(0i64)
        .bind(upto.0.to_string())
        .bind(upto.1)
        .bind(tidelog::social::feed::BATCH)
        .bind(tidelog::social::feed::ACCOUNT_EVENTS)
}

#[tokio::test]
async fn a_feed_far_behind_reads_one_batch_not_its_whole_backlog() {
    let db = fresh_database().await;
    let pool = tidelog::db::connect_pool(db, 2).await.unwrap();
    tidelog::db::migrate(&pool).await.unwrap();
    // statistics from before the messages (as when they were last taken
    // before a burst of them): the planner expects next to none, and a
    // scan of every row of the feed's types looked cheap
    sqlx::query("ALTER TABLE events SET (autovacuum_enabled = false)")
        .execute(&pool)
        .await
        .unwrap();
    let batch = tidelog::social::feed::BATCH;
    let append = |types: &'static str, per_type: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                 SELECT k.t, k.t || '-' || gen_random_uuid(), 1, k.e, '1', '{}', '{}'
                   FROM generate_series(1, $1) n,
                        LATERAL (SELECT split_part(x, ':', 1), split_part(x, ':', 2)
                                   FROM unnest(string_to_array($2, ',')) x) k(t, e)",
            )
            .bind(per_type)
            .bind(types)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    append("ChatRoom:MessagePosted", 3 * batch).await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'Account', 'presence', n, 'PresenceChanged', '1', '{}', '{}' FROM generate_series(1, 5) n",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE events").execute(&pool).await.unwrap();
    // then a backlog of direct messages six batches deep, between other
    // streams' events
    append(
        "Conversation:DirectMessageSent,ChatRoom:MessagePosted",
        6 * batch,
    )
    .await;
    let (txid, position): (i64, i64) = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM events
          ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();

    let explain = format!(
        "EXPLAIN (ANALYZE, FORMAT JSON) {}",
        tidelog::social::feed::READ
    );
    let rows = format!(
        "SELECT json_build_object('type', aggregate_type, 'position', global_position) FROM ({}) r",
        tidelog::social::feed::READ
    );
    let explained: Value = from_the_start(&explain, (txid, position))
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut found = Vec::new();
    scans(&explained[0]["Plan"], &mut found);
    assert!(!found.is_empty(), "{explained}");
    // a batch's worth (its type's rows, or the log's between them), not
    // the backlog
    for (kind, rows) in &found {
        assert!(
            *rows <= 2 * batch,
            "a {kind} read {rows} rows for a batch of {batch}: {explained}"
        );
    }
    // and the batch is the feed's first rows in log order: the presence
    // changes, then the messages
    let first: Vec<Value> = from_the_start(&rows, (txid, position))
        .fetch_all(&pool)
        .await
        .unwrap();
    // the same rows as one plain read in log order
    let expected: Vec<i64> = sqlx::query_scalar(
        "SELECT global_position FROM events
          WHERE aggregate_type IN ('Friendship', 'Conversation', 'EncryptionKeys', 'Call')
             OR (aggregate_type = 'Account' AND event_type = ANY($1))
          ORDER BY transaction_id, global_position LIMIT $2",
    )
    .bind(tidelog::social::feed::ACCOUNT_EVENTS)
    .bind(batch)
    .fetch_all(&pool)
    .await
    .unwrap();
    let positions: Vec<i64> = first
        .iter()
        .map(|r| r["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, expected);
    let kinds = |t: &str| first.iter().filter(|r| r["type"] == t).count() as i64;
    assert_eq!((kinds("Account"), kinds("Conversation")), (5, batch - 5));
}

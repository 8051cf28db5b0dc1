//! The projector runtime against real PostgreSQL: log order under late
//! commits, failure isolation and retry, rebuilds, and the event store's
//! own guarantees.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tidelog::embedded_pg::{ClusterOptions, EmbeddedPostgres};

async fn contents(api: &Api, token: &str, room: i64) -> Vec<String> {
    api.messages(token, room, "&limit=100")
        .await
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

/// A raw append of a message, as postgres-es would write it.
async fn insert_message(
    conn: &mut PgConnection,
    room: i64,
    sequence: i64,
    sender: i64,
    content: &str,
) -> (i64, i64) {
    let id: i64 = sqlx::query_scalar("SELECT nextval('chat_message_ids')")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let payload = json!({"MessagePosted": {"room_id": room, "message_id": id, "sender_id": sender, "sender_name": "alice",
        "kind": "text", "content": content, "sent_at": chrono::Utc::now()}});
    sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('ChatRoom', $1, $2, 'MessagePosted', '1', $3::jsonb::json, '{}')
         RETURNING global_position, transaction_id::text::bigint",
    )
    .bind(room.to_string())
    .bind(sequence)
    .bind(payload)
    .fetch_one(&mut *conn)
    .await
    .unwrap()
}

async fn next_sequence(app: &TestApp, room: i64) -> i64 {
    sqlx::query_scalar("SELECT max(sequence) + 1 FROM events WHERE aggregate_type = 'ChatRoom' AND aggregate_id = $1")
        .bind(room.to_string())
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Holds transactions open on purpose, so it runs on a cluster of its own:
/// the horizon is cluster-wide and would stall every other test's projectors.
#[tokio::test]
async fn an_append_that_commits_late_is_projected_not_skipped() {
    let dir = open_tempdir();
    let root = dir.path().join("pg");
    let pg = tokio::task::spawn_blocking(move || {
        let opts = ClusterOptions {
            settings: vec![("fsync".into(), "off".into())],
            bin_dir: None,
            ..Default::default()
        };
        EmbeddedPostgres::start(&root, &opts).unwrap()
    })
    .await
    .unwrap();
    let db = fresh_database_on(&pg.connect_options("postgres")).await;
    let app = TestApp::start_on(db.clone(), |c| {
        c.read_your_writes_timeout = Duration::from_millis(200)
    })
    .await;
    let api = app.api();
    let (alice_id, alice) = api.user("alice").await;
    let room_a = api.room(&alice, "a").await;
    let room_b = api.room(&alice, "b").await;
    let (seq_a, seq_b) = (
        next_sequence(&app, room_a).await,
        next_sequence(&app, room_b).await,
    );

    // B takes its xid first; A appends first; B appends later and commits first.
    let mut conn_b = db.connect().await.unwrap();
    let mut conn_a = db.connect().await.unwrap();
    sqlx::query("BEGIN").execute(&mut conn_b).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut conn_b)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut conn_a).await.unwrap();
    let (pos_a, xid_a) = insert_message(&mut conn_a, room_a, seq_a, alice_id, "held").await;
    let (pos_b, xid_b) = insert_message(&mut conn_b, room_b, seq_b, alice_id, "later").await;
    sqlx::query("COMMIT").execute(&mut conn_b).await.unwrap();
    assert!(
        pos_a < pos_b && xid_b < xid_a,
        "the scenario: A has the lower position but commits last"
    );

    eventually("the later append is projected", || async {
        contents(&api, &alice, room_b).await == ["later"]
    })
    .await;
    // A reader that checkpointed at pos_b by global_position alone would never see "held".
    assert!(contents(&api, &alice, room_a).await.is_empty());
    // the log's numbering waits the same way: "later" is numbered, "held" not yet
    eventually("the later append is numbered", || async {
        count(
            &app.pool,
            &format!("SELECT count(*) FROM log_positions WHERE global_position = {pos_b}"),
        )
        .await
            == 1
    })
    .await;
    assert_eq!(
        count(
            &app.pool,
            &format!("SELECT count(*) FROM log_positions WHERE global_position = {pos_a}")
        )
        .await,
        0
    );

    // Appends after A's xid wait for A; status says who holds them back.
    api.post(
        "/api/message/send",
        Some(&alice),
        json!({"room_id": room_b, "content": "after"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        contents(&api, &alice, room_b).await,
        ["later"],
        "nothing above the horizon is projected"
    );
    let (_, health) = api.get("/healthz", None).await;
    let roomchat = health["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "roomchat")
        .unwrap()
        .clone();
    assert!(
        roomchat["held_back"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("xid {xid_a}")),
        "{roomchat}"
    );
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let held =
        format!("tidelog_projection_held_back_seconds{{projection=\"roomchat\",xid=\"{xid_a}\"}}");
    assert!(metrics.contains(&held), "{metrics}");

    sqlx::query("COMMIT").execute(&mut conn_a).await.unwrap();
    eventually("the late commit is projected", || async {
        contents(&api, &alice, room_a).await == ["held"]
    })
    .await;
    eventually("and everything after it", || async {
        contents(&api, &alice, room_b).await == ["later", "after"]
    })
    .await;
    let counted: i64 = count(
        &app.pool,
        "SELECT sum(message_count)::bigint FROM chat_rooms",
    )
    .await;
    assert_eq!(counted, 3, "each event applied exactly once");
    // every event numbered once, contiguously, in (transaction_id, global_position) order
    eventually("every event is numbered", || async {
        count(&app.pool, "SELECT count(*) FROM log_positions").await
            == count(&app.pool, "SELECT count(*) FROM events").await
    })
    .await;
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM (SELECT position, row_number() OVER (ORDER BY transaction_id, global_position) AS n
                                     FROM log_positions) p WHERE position <> n"
        )
        .await,
        0,
        "contiguous from 1 in log order"
    );
    let numbers: Vec<(i64,)> = sqlx::query_as(
        "SELECT position FROM log_positions WHERE global_position = ANY($1) ORDER BY position",
    )
    .bind(vec![pos_b, pos_a])
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let of_b: i64 = count(
        &app.pool,
        &format!("SELECT position FROM log_positions WHERE global_position = {pos_b}"),
    )
    .await;
    assert_eq!(numbers.len(), 2);
    assert_eq!(numbers[0].0, of_b, "the late commit sorts after");
    assert!(
        sqlx::query("DELETE FROM log_positions")
            .execute(&app.pool)
            .await
            .is_err(),
        "numbers are never taken back"
    );

    app.stop().await;
    drop(conn_a);
    drop(conn_b);
    tokio::task::spawn_blocking(move || pg.stop().unwrap())
        .await
        .unwrap();
}

/// The log's numbering applies a batch in one statement led by its
/// checkpoint's move: when the checkpoint is no longer where the worker
/// left it (another process numbered those events), the statement numbers
/// nothing and the worker carries on from the stored checkpoint.
#[tokio::test]
async fn a_numbering_batch_whose_checkpoint_moved_under_it_numbers_nothing() {
    let app = TestApp::start().await;
    let api = app.api();
    let (alice_id, alice) = api.user("alice").await;
    let room = api.room(&alice, "numbers").await;
    let all_numbered = || async {
        count(&app.pool, "SELECT count(*) FROM log_positions").await
            == count(&app.pool, "SELECT count(*) FROM events").await
    };
    eventually("everything so far is numbered", all_numbered).await;
    let numbered = count(&app.pool, "SELECT max(position) FROM log_positions").await;

    // another worker's batch as the stored checkpoint tells it: an event
    // appended and the checkpoint moved past it at once, its number kept
    // elsewhere (here: nowhere)
    let seq = next_sequence(&app, room).await;
    let mut conn = app.db.connect().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let (elsewhere, _) = insert_message(&mut tx, room, seq, alice_id, "numbered elsewhere").await;
    sqlx::query(
        "UPDATE projection_checkpoints SET last_txid = pg_current_xact_id(), last_position = $1
          WHERE name = 'positions'",
    )
    .bind(elsewhere)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (_, sent) = api
        .post(
            "/api/message/send",
            Some(&alice),
            json!({"room_id": room, "content": "after"}),
        )
        .await;
    assert_eq!(sent["code"], 0, "{sent}");

    let after = format!("FROM events WHERE global_position > {elsewhere}");
    let later = count(&app.pool, &format!("SELECT count(*) {after}")).await;
    assert!(later >= 1, "the send appended");
    eventually("the events after it are numbered", || async {
        count(
            &app.pool,
            &format!("SELECT count(*) FROM log_positions WHERE global_position IN (SELECT global_position {after})"),
        )
        .await
            == later
    })
    .await;
    assert_eq!(
        count(
            &app.pool,
            &format!("SELECT count(*) FROM log_positions WHERE global_position = {elsewhere}")
        )
        .await,
        0,
        "the batch whose checkpoint had moved numbered nothing"
    );
    assert_eq!(
        count(&app.pool, "SELECT max(position) FROM log_positions").await,
        numbered + later,
        "the numbers go on from the last one given"
    );
    app.stop().await;
}

fn cli(db_url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn projection(api: &Api, name: &str) -> Value {
    let (_, health) = api.get("/healthz", None).await;
    health["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_failing_projection_stops_alone_reports_and_recovers_on_retry() {
    let app =
        TestApp::start_with(|c| c.read_your_writes_timeout = Duration::from_millis(300)).await;
    let api = app.api();
    let (_, alice) = api.user("alice").await;
    let room = api.room(&alice, "r").await;
    api.say(&alice, room, "fine").await;
    // The read model refuses one event; the log keeps it.
    sqlx::query("ALTER TABLE chat_messages ADD CONSTRAINT no_poison CHECK (content <> 'poison')")
        .execute(&app.pool)
        .await
        .unwrap();
    api.say(&alice, room, "poison").await;
    let poison_pos: i64 = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE payload::text LIKE '%\"poison\"%'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();

    eventually("the failure is reported with its position", || async {
        let p = projection(&api, "roomchat").await;
        p["failed_position"] == poison_pos
            && p["last_error"].as_str().unwrap_or("").contains("no_poison")
    })
    .await;
    let (_, health) = api.get("/healthz", None).await;
    assert_eq!(health["status"], "degraded");
    let (s, admin) = api
        .get("/admin/projections", Some(&format!("Bearer {ADMIN_TOKEN}")))
        .await;
    assert!(s.is_success(), "{admin}");
    let failing = admin
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "roomchat")
        .unwrap();
    assert_eq!(failing["failed_position"], poison_pos);
    for bad in [None, Some("Bearer wrong"), Some(alice.as_str())] {
        let (s, v) = api.get("/admin/projections", bad).await;
        assert_eq!(s.as_u16(), 401, "{v}");
        assert!(v["error"].is_string(), "{v}");
    }
    let (ok, out, err) = cli(&url_of(&app.db), &["projections", "status"]);
    assert!(ok, "{err}");
    assert!(
        out.lines().any(|l| l.starts_with("roomchat")
            && l.contains(&format!("FAILING at position {poison_pos}"))),
        "{out}"
    );

    // Other projections keep going: a new account registers and signs in.
    let (carol, _) = api.user("carol").await;
    assert!(carol > 0);
    assert_eq!(contents(&api, &alice, room).await, ["fine"]);
    eventually("it retries", || async {
        projection(&api, "roomchat").await["retries"]
            .as_i64()
            .unwrap_or(0)
            >= 2
    })
    .await;

    sqlx::query("ALTER TABLE chat_messages DROP CONSTRAINT no_poison")
        .execute(&app.pool)
        .await
        .unwrap();
    eventually("the retry succeeds", || async {
        contents(&api, &alice, room).await == ["fine", "poison"]
    })
    .await;
    let p = projection(&api, "roomchat").await;
    assert!(
        p["last_error"].is_null() && p["failed_position"].is_null(),
        "{p}"
    );
    assert_eq!(
        count(&app.pool, "SELECT message_count FROM chat_rooms").await,
        2
    );
    app.stop().await;
}

async fn read_models(app: &TestApp) -> Value {
    let mut all = serde_json::Map::new();
    for (table, order) in [
        ("accounts", "number"),
        ("chat_rooms", "room_id"),
        ("chat_members", "room_id, user_id"),
        ("chat_messages", "message_id"),
    ] {
        let v: Option<Value> = sqlx::query_scalar(&format!(
            "SELECT jsonb_agg(t ORDER BY {order}) FROM {table} t"
        ))
        .fetch_one(&app.pool)
        .await
        .unwrap();
        all.insert(table.into(), v.unwrap_or(Value::Null));
    }
    Value::Object(all)
}

#[tokio::test]
async fn rebuilding_from_zero_gives_the_incremental_result_while_serving() {
    let app = TestApp::start().await;
    let api = app.api();
    let (_, alice) = api.user("alice").await;
    let (bob_id, bob) = api.user("bob").await;
    let room = api.room(&alice, "r1").await;
    let other = api.room(&bob, "r2").await;
    api.post(
        "/api/room/add_user",
        Some(&alice),
        json!({"room_id": room, "user_id": bob_id, "role": "admin"}),
    )
    .await;
    for i in 0..30 {
        if i % 3 == 0 {
            api.say(&bob, other, &format!("m{i}")).await;
        } else {
            api.say(
                if i % 2 == 0 { &alice } else { &bob },
                room,
                &format!("m{i}"),
            )
            .await;
        }
    }
    let before = read_models(&app).await;
    let url = url_of(&app.db);

    // Traffic keeps flowing during the rebuild.
    let writer = {
        let api = api.clone();
        let bob = bob.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                api.say(&bob, room, &format!("during{i}")).await;
            }
        })
    };
    let rebuild =
        tokio::task::spawn_blocking(move || cli(&url, &["projections", "rebuild", "roomchat"]));
    let (ok, out, err) = rebuild.await.unwrap();
    writer.await.unwrap();
    assert!(ok, "rebuild failed: {err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["projection"], "roomchat");

    let total_messages = count(
        &app.pool,
        "SELECT count(*) FROM events WHERE event_type = 'MessagePosted'",
    )
    .await;
    assert_eq!(total_messages, 70);
    eventually(
        "every message is in the swapped-in tables exactly once",
        || async {
            count(&app.pool, "SELECT count(*) FROM chat_messages").await == 70
                && count(
                    &app.pool,
                    "SELECT sum(message_count)::bigint FROM chat_rooms",
                )
                .await
                    == 70
        },
    )
    .await;
    // and the rows that existed before are identical
    let after = read_models(&app).await;
    let before_ids: Vec<&Value> = before["chat_messages"].as_array().unwrap().iter().collect();
    let after_msgs = after["chat_messages"].as_array().unwrap();
    for m in before_ids {
        assert!(after_msgs.contains(m), "lost or changed by rebuild: {m}");
    }
    assert_eq!(before["chat_members"], after["chat_members"]);
    assert_eq!(before["accounts"], after["accounts"]);

    // A second rebuild with no traffic reproduces the tables exactly, also
    // with several projections rebuilt at once (a report line each).
    let settled = read_models(&app).await;
    let rebuilt = |args: &[&str]| {
        let (ok, out, err) = cli(&url_of(&app.db), args);
        assert!(ok, "{err}");
        out.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["projection"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rebuilt(&["projections", "rebuild", "roomchat", "accounts"]),
        [json!("roomchat"), json!("accounts")]
    );
    assert_eq!(read_models(&app).await, settled);
    assert_eq!(
        rebuilt(&["projections", "rebuild", "all"]),
        [
            json!("accounts"),
            json!("roomchat"),
            json!("gifts"),
            json!("ledger"),
            json!("live"),
            json!("livechat"),
            json!("social"),
            json!("generation")
        ]
    );
    assert_eq!(read_models(&app).await, settled);
    // The live projector works on in the new tables.
    api.say(&alice, room, "after rebuild").await;
    assert!(contents(&api, &alice, room)
        .await
        .contains(&"after rebuild".to_string()));
    let (ok, _, err) = cli(&url_of(&app.db), &["projections", "rebuild", "nope"]);
    assert!(!ok && err.contains("known: accounts, roomchat"), "{err}");
    app.stop().await;
}

#[tokio::test]
async fn the_event_store_is_append_only_and_hash_chained() {
    let app = TestApp::start().await;
    let api = app.api();
    let (_, alice) = api.user("alice").await;
    let room = api.room(&alice, "r").await;
    for i in 0..5 {
        api.say(&alice, room, &format!("m{i}")).await;
    }
    for sql in [
        "UPDATE events SET payload = '{}' WHERE sequence = 1",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = sqlx::query(sql).execute(&app.pool).await.unwrap_err();
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("TL003"), "{sql}: {err}");
    }
    let broken: i64 = count(
        &app.pool,
        "SELECT count(*) FROM events e LEFT JOIN events p
            ON p.aggregate_type = e.aggregate_type AND p.aggregate_id = e.aggregate_id AND p.sequence = e.sequence - 1
          WHERE e.hash IS DISTINCT FROM event_hash(e.prev_hash, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                                                   e.event_version, e.payload, e.metadata, e.recorded_at)
             OR e.prev_hash IS DISTINCT FROM p.hash",
    )
    .await;
    assert_eq!(broken, 0);
    assert_eq!(
        count(&app.pool, "SELECT count(*) FROM events").await,
        9,
        "registration, sign-in, room, member, 5 messages"
    );

    // A stream's next event links to the one just before it; a gap in the
    // sequence writes nothing (a stream of a type no projection reads).
    let append = |sequence: i64| {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES ('Probe', 'p', $1, 'Probed', '1', '{}', '{}')",
        )
        .bind(sequence)
        .execute(&app.pool)
    };
    append(1).await.unwrap();
    let err = append(3).await.unwrap_err();
    assert!(
        err.to_string().contains("appends must be contiguous"),
        "{err}"
    );
    append(2).await.unwrap();
    let linked: i64 = count(
        &app.pool,
        "SELECT count(*) FROM events e JOIN events p
            ON p.aggregate_type = e.aggregate_type AND p.aggregate_id = e.aggregate_id AND p.sequence = e.sequence - 1
          WHERE e.aggregate_type = 'Probe' AND e.prev_hash = p.hash
            AND e.hash = event_hash(e.prev_hash, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                                    e.event_version, e.payload, e.metadata, e.recorded_at)",
    )
    .await;
    assert_eq!(
        (
            linked,
            count(
                &app.pool,
                "SELECT count(*) FROM events WHERE aggregate_type = 'Probe'"
            )
            .await
        ),
        (1, 2)
    );

    // Finding the previous event costs the same however long the stream is:
    // on a young table a plan that filters the type's whole index looked
    // cheap, and appends to one stream grew quadratic (13 s for the gRPC
    // tests' 12,288-event burst). Buffers touched an event, counted in a
    // session of its own and rolled back: a short stream against a long one.
    let mut conn = app.db.connect().await.unwrap();
    let mut buffers_per_event = Vec::new();
    for (stream, events) in [("short", 250), ("long", 2000)] {
        let mut tx = conn.begin().await.unwrap();
        let plan: Value = sqlx::query_scalar(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF, FORMAT JSON)
             INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT 'Probe', $1, g, 'Probed', '1', '{}', '{}' FROM generate_series(1, $2) g",
        )
        .bind(stream)
        .bind(events)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.rollback().await.unwrap();
        // hit or read: either is a buffer the append needed
        let node = &plan[0]["Plan"];
        let buffers = node["Shared Hit Blocks"].as_f64().unwrap()
            + node["Shared Read Blocks"].as_f64().unwrap();
        buffers_per_event.push(buffers / events as f64);
    }
    conn.close().await.unwrap();
    assert!(
        buffers_per_event[1] < 1.5 * buffers_per_event[0],
        "buffers an append, 250 then 2,000 events: {buffers_per_event:?}"
    );

    // A superuser who bypasses the trigger leaves a detectable mismatch.
    let mut conn = app.db.connect().await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE events SET payload = replace(payload::text, 'm3', 'forged')::json WHERE payload::text LIKE '%\"m3\"%'")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE events ENABLE TRIGGER events_append_only")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let mismatched: i64 = count(
        &app.pool,
        "SELECT count(*) FROM events WHERE hash <> event_hash(prev_hash, aggregate_type, aggregate_id, sequence, event_type,
                                                        event_version, payload, metadata, recorded_at)",
    )
    .await;
    assert_eq!(mismatched, 1);
    app.stop().await;
}

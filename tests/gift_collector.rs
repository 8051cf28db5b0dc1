//! The gift monitor's own collector against a Bilibili the test runs on
//! loopback (tests/common/bilibili.rs: the web API with real WBI checks
//! that answers -352 when unsigned, wrongly signed or without buvid, and
//! the `/sub` WebSocket with auth, heartbeats, batches and faults): a room
//! added is connected and its money shows in `/gift*`; drops reconnect
//! with nothing lost or counted twice; two processes share the rooms and
//! one takes over a room of the other's after a kill -9.

mod common;
#[path = "common/bilibili.rs"]
mod fake;

use std::time::Duration;

use common::*;
use fake::{Encoding, FakeBilibili, FakeConfig, FakeRoom, Fault, MODERN_UA};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tidelog::config::{CollectorConfig, Secret};

const KEY: &str = "test-api-secret-0123456789";

fn collector(fake: &FakeBilibili) -> CollectorConfig {
    CollectorConfig {
        enabled: true,
        live_api_url: fake.base_url(),
        api_url: fake.base_url(),
        ws_url: None,
        cookie: None,
        user_agent: MODERN_UA.into(),
        http_per_second: 500,
        lease: Duration::from_secs(6),
        stats_every: Duration::from_secs(600),
        heartbeat: Duration::from_secs(2),
        risk_pause: Duration::from_secs(1),
    }
}

async fn start(fake: &FakeBilibili) -> TestApp {
    let cfg = collector(fake);
    TestApp::start_with(move |c| {
        c.api_secret = Some(Secret::new(KEY.into()));
        c.collector = cfg;
    })
    .await
}

async fn add_room(base: &str, room: i64) {
    let r = client()
        .post(format!("{base}/add/room"))
        .json(&json!({"room_id": room, "room_anchors": format!("主播{room}"), "api_key": KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn get(base: &str, path: &str) -> Value {
    let r = client().get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

/// Waits until the fake counts `n` authenticated connections of the room.
async fn connected(fake: &FakeBilibili, room: u64, n: usize) {
    let control = fake.control();
    eventually(&format!("{n} connection(s) to room {room}"), || async {
        control.connections(room) == n
    })
    .await;
}

fn gift(tid: &str, gold: i64) -> Value {
    json!({"cmd": "SEND_GIFT", "data": {"uid": 42, "uname": "viewer", "giftId": 31036, "giftName": "小花花",
        "num": 1, "price": gold, "total_coin": gold, "coin_type": "gold", "tid": tid}})
}

async fn gold_of(app: &TestApp, room: i64) -> i64 {
    count(
        &app.pool,
        &format!(
            "SELECT coalesce(sum(gift_gold), 0)::bigint FROM bili_days WHERE room_id = {room}"
        ),
    )
    .await
}

fn v2(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/bilibili/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn a_room_added_is_collected_by_itself_and_its_money_shows() {
    let fake = FakeBilibili::start(FakeConfig::default()).await.unwrap();
    let app = start(&fake).await;
    // the operator adds the room by its short id: the collector finds the real one
    add_room(&app.base, 1).await;
    connected(&fake, 5440, 1).await;
    let auth = fake.control().auth_attempts();
    assert!(
        !auth.is_empty() && auth.iter().all(|a| a.body["roomid"] == 5440),
        "{auth:?}"
    );

    let control = fake.control();
    control.push(
        5440,
        &[
            json!({"cmd": "LIVE", "data": {}}),
            gift("collected-1", 1000),
            json!({"cmd": "DANMU_MSG:4:0:2:2:2:0", "info": [[0, 1, 25, 16777215, 1788426000123u64, 0, 0, "abc", 0, 0, 0, "", 0, "{}", "{}", {"extra": "{\"content\":\"hi\"}"}], "hi", [42, "viewer"], [], [], [], 0, 0, null, {"ts": 1788426000, "ct": "C0FFEE"}, 0, 0, null, null, 0, 105]}),
            json!({"cmd": "SUPER_CHAT_MESSAGE", "data": {"id": 7001, "uid": 42, "price": 30, "message": "加油", "start_time": 1788426001, "user_info": {"uname": "viewer"}}}),
            json!({"cmd": "GUARD_BUY", "data": {"uid": 43, "username": "captain", "guard_level": 3, "num": 1, "price": 198000, "gift_id": 10003, "gift_name": "舰长", "start_time": 1788426002}}),
        ],
        Encoding::Brotli,
    );
    control.push(
        5440,
        &[v2("starbot_send_gift_v2_gold.json")],
        Encoding::Zlib,
    );
    eventually("the gifts are recorded", || async {
        gold_of(&app, 1).await == 1100
    })
    .await;
    // the guard list and the fan club, read when the session began
    eventually("the guard counts are read", || async {
        count(
            &app.pool,
            // the fake's 20 舰长, 2 提督 and 1 总督, as seed 001 numbers them
            "SELECT count(*) FROM bili_rooms WHERE room_id = 1 AND guard_1 = 20 AND guard_2 = 2 AND guard_3 = 1 AND fans_count = 89",
        )
        .await
            == 1
    })
    .await;
    let rows = get(&app.base, "/gift").await;
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == 1)
        .unwrap()
        .clone();
    assert_eq!(row["status"], 1, "{row}");
    assert!(row["gift"].as_f64().unwrap() >= 1.1, "{row}");
    let sc = get(&app.base, "/gift/sc?room_id=1").await;
    assert!(sc.to_string().contains("加油"), "{sc}");
    // the session ends: its start and end carry the counts read then
    control.push(
        5440,
        &[json!({"cmd": "PREPARING", "roomid": 5440})],
        Encoding::Plain,
    );
    eventually("the session ends with its counts", || async {
        count(
            &app.pool,
            "SELECT count(*) FROM bili_sessions WHERE room_id = 1 AND ended_at IS NOT NULL
                AND start_guard_1 = 20 AND start_guard_3 = 1 AND end_guard_1 = 20 AND end_fans_count = 89",
        )
        .await
            == 1
    })
    .await;

    // the operator sees who holds it
    let r = client()
        .get(format!("{}/admin/collector", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status: Value = r.json().await.unwrap();
    let me = &status.as_array().unwrap()[0];
    assert_eq!(me["room_id"], 1);
    assert!(me["holder"].is_string(), "{status}");

    // deleting the room stops the connection
    let r = client()
        .post(format!("{}/delete/room", app.base))
        .json(&json!({"room_id": 1, "room_anchors": "主播1", "api_key": KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    connected(&fake, 5440, 0).await;
    app.stop().await;
}

#[tokio::test]
async fn drops_and_bad_frames_reconnect_and_nothing_is_lost_or_counted_twice() {
    let fake = FakeBilibili::start(FakeConfig::default()).await.unwrap();
    let app = start(&fake).await;
    add_room(&app.base, 5440).await;
    connected(&fake, 5440, 1).await;
    let control = fake.control();
    control.push(
        5440,
        &[gift("d-1", 100), gift("d-2", 100)],
        Encoding::Brotli,
    );
    eventually("the first batch", || async {
        gold_of(&app, 5440).await == 200
    })
    .await;

    // garbage, a truncated batch and a broken compressed body: skipped and counted
    control.inject(5440, Fault::Garbage);
    control.inject(5440, Fault::BadCompressed(Encoding::Brotli));
    control.inject(
        5440,
        Fault::Truncated(vec![gift("t-1", 100), gift("t-2", 100)]),
    );
    // an abrupt drop: the collector reconnects with a new token
    let accepted = control.accepted(5440);
    control.inject(5440, Fault::Drop);
    eventually("reconnected", || async {
        control.accepted(5440) > accepted
    })
    .await;
    connected(&fake, 5440, 1).await;
    // what was sent before the drop comes again (as after a real reconnect): counted once
    control.push(
        5440,
        &[
            gift("d-1", 100),
            gift("d-2", 100),
            gift("t-1", 100),
            gift("d-3", 100),
        ],
        Encoding::Zlib,
    );
    eventually("after the reconnect", || async {
        gold_of(&app, 5440).await == 400
    })
    .await;
    // a cut mid-batch: its messages come again after the next reconnect, once
    let accepted = control.accepted(5440);
    control.inject(5440, Fault::CutMidBatch(vec![gift("c-1", 100)]));
    eventually("reconnected again", || async {
        control.accepted(5440) > accepted
    })
    .await;
    connected(&fake, 5440, 1).await;
    control.push(5440, &[gift("c-1", 100), gift("t-2", 100)], Encoding::Plain);
    eventually("everything, once", || async {
        gold_of(&app, 5440).await == 600
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gold_of(&app, 5440).await, 600, "nothing counted twice");
    let tokens: std::collections::HashSet<String> = control
        .auth_attempts()
        .into_iter()
        .filter_map(|a| a.body["key"].as_str().map(str::to_owned))
        .collect();
    assert!(tokens.len() >= 3, "a new token for each connection");
    let metrics = client()
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tidelog_collector_reconnects_total"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn risk_control_expired_tokens_and_a_dead_host_are_ridden_out() {
    let fake = FakeBilibili::start(FakeConfig::default()).await.unwrap();
    let control = fake.control();
    // -352 for the first calls, and the first host named is dead
    control.fail_danmu_info(2);
    control.set_dead_host_first(true);
    let app = start(&fake).await;
    add_room(&app.base, 5440).await;
    connected(&fake, 5440, 1).await;
    assert!(control.danmu_info_calls() >= 3);
    // the server expires every token and drops the connection: a new token is asked for
    let calls = control.danmu_info_calls();
    control.expire_tokens();
    control.inject(5440, Fault::Drop);
    eventually("a fresh token", || async {
        control.danmu_info_calls() > calls
    })
    .await;
    connected(&fake, 5440, 1).await;
    control.push(5440, &[gift("r-1", 100)], Encoding::Brotli);
    eventually("collected after it all", || async {
        gold_of(&app, 5440).await == 100
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn two_processes_connect_each_room_once_and_take_over_after_a_kill() {
    let rooms: Vec<FakeRoom> = (0..6)
        .map(|i| FakeRoom::new(7000 + i, 0, 900 + i))
        .collect();
    let fake = FakeBilibili::start(FakeConfig {
        rooms,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let db = fresh_database().await;
    let dir = open_tempdir();
    let env = |name: &str| {
        let mut env = process_env(&db, &dir, name);
        env.extend([
            ("API_SECRET", KEY.to_string()),
            ("TIDELOG_COLLECTOR", "on".to_string()),
            ("BILIBILI_LIVE_API_URL", fake.base_url()),
            ("BILIBILI_API_URL", fake.base_url()),
            ("BILIBILI_USER_AGENT", MODERN_UA.to_string()),
            ("BILIBILI_HTTP_PER_SECOND", "500".to_string()),
            ("BILIBILI_LEASE_SECS", "6".to_string()),
            ("BILIBILI_HEARTBEAT_SECS", "2".to_string()),
        ]);
        env
    };
    let mut p1 = ServerProcess::spawn(&env("p1"));
    let p2 = ServerProcess::spawn(&env("p2"));
    for i in 0..6 {
        add_room(&p1.base, 7000 + i).await;
    }
    let control = fake.control();
    let all_once = || async { (0..6).all(|i| control.connections(7000 + i) == 1) };
    eventually("every room connected once", all_once).await;
    // shared out between the two
    let pool = tidelog::db::connect_pool(db.clone(), 2).await.unwrap();
    eventually("both processes hold rooms", || async {
        count(
            &pool,
            "SELECT count(DISTINCT holder) FROM bili_collector_leases WHERE expires_at > now()",
        )
        .await
            == 2
    })
    .await;
    // kill -9 one: its rooms come over to the other within the lease
    let p1_node: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT holder FROM bili_collector_leases WHERE holder LIKE '%:' || $1",
    )
    .bind(p1.child.id().to_string())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(p1_node.len(), 1, "p1 holds rooms");
    let killed = std::time::Instant::now();
    p1.kill9();
    eventually(
        "every room connected once again, by the survivor",
        || async {
            (0..6).all(|i| control.connections(7000 + i) == 1)
                && count(
                    &pool,
                    &format!(
                        "SELECT count(*) FROM bili_collector_leases WHERE holder = '{}'",
                        p1_node[0].0
                    ),
                )
                .await
                    == 0
        },
    )
    .await;
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "taken over in {:?}",
        killed.elapsed()
    );
    control.push(7003, &[gift("after-kill", 100)], Encoding::Brotli);
    eventually("collected by the survivor", || async {
        count(
            &pool,
            "SELECT coalesce(sum(gift_gold), 0)::bigint FROM bili_days WHERE room_id = 7003",
        )
        .await
            == 100
    })
    .await;
    drop(p2);
}

#[tokio::test]
async fn a_thousand_rooms_on_one_process_stay_connected_and_heartbeating() {
    const N: u64 = 1000;
    let rooms: Vec<FakeRoom> = (0..N)
        .map(|i| FakeRoom {
            live_status: 0,
            ..FakeRoom::new(100_000 + i, 0, 50_000 + i)
        })
        .collect();
    let fake = FakeBilibili::start(FakeConfig {
        rooms,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let cfg = CollectorConfig {
        heartbeat: Duration::from_secs(5),
        ..collector(&fake)
    };
    let app = TestApp::start_with(move |c| {
        c.api_secret = Some(Secret::new(KEY.into()));
        c.collector = cfg;
    })
    .await;
    // the rooms as the monitor's operators add them, many at once
    let adds: Vec<_> = (0..N)
        .map(|i| {
            let base = app.base.clone();
            tokio::spawn(async move { add_room(&base, (100_000 + i) as i64).await })
        })
        .collect();
    for a in adds {
        a.await.unwrap();
    }
    let control = fake.control();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let all = || {
        (0..N)
            .filter(|i| control.connections(100_000 + i) == 1)
            .count()
    };
    while all() < N as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {N} rooms connected after 2 minutes",
            all()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // and they keep beating: every room's heartbeats reach the server
    let before: usize = (0..N).map(|i| control.heartbeats(100_000 + i)).sum();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let beating = (0..N)
        .filter(|i| control.heartbeats(100_000 + i) > 0)
        .count();
    let after: usize = (0..N).map(|i| control.heartbeats(100_000 + i)).sum();
    assert_eq!(beating, N as usize);
    assert!(
        after >= before + N as usize,
        "{before} → {after} heartbeats"
    );
    assert_eq!(all(), N as usize, "none dropped");
    app.stop().await;
}

//! Seed 001 over real HTTP and PostgreSQL: a generated month of raw
//! Bilibili traffic is ingested (resent, reordered, late), and the totals
//! the projections serve equal totals recomputed here from what was sent.

mod common;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use common::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};

const KEY: &str = "test-api-secret-0123456789";

async fn start() -> TestApp {
    TestApp::start_with(|c| c.api_secret = Some(tidelog::config::Secret::new(KEY.into()))).await
}

async fn post(app: &TestApp, path: &str, key: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut req = app.http.post(format!("{}{path}", app.base)).json(body);
    if let Some(k) = key {
        req = req.header("X-API-Key", k);
    }
    let r = req.send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap())
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let r = app
        .http
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap())
}

fn local_ms(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
    Shanghai
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .unwrap()
        .timestamp_millis()
}

fn utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

/// What the test sent, recounted with seed 001's money rules.
#[derive(Default, Debug, Clone, PartialEq)]
struct Totals {
    gift_gold: i64,
    guard_gold: i64,
    sc_yuan: i64,
    boxes: i64,
    profit_gold: i64,
    danmaku: i64,
}

struct Gen {
    rng: StdRng,
    next_id: i64,
}

impl Gen {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// A random money message at `ms`, counted into `t`; may come with a
    /// twin (the guard's toast, the SC's JPN copy) that must not count.
    fn money(&mut self, ms: i64, t: &mut Totals) -> Vec<Value> {
        let id = self.id();
        let uid = self.rng.gen_range(1..50);
        match self.rng.gen_range(0..10) {
            0..=3 => {
                let (price, num) = (self.rng.gen_range(1..20) * 100, self.rng.gen_range(1..5));
                t.gift_gold += price * num;
                vec![json!({"cmd": "SEND_GIFT", "received_at": ms, "data": {
                    "uid": uid, "uname": format!("u{uid}"), "giftId": 31036, "giftName": "小花花",
                    "num": num, "price": price, "total_coin": price * num, "coin_type": "gold",
                    "tid": format!("tid-{id}"), "rnd": format!("{id}"), "blind_gift": null}})]
            }
            4 => vec![json!({"cmd": "SEND_GIFT", "received_at": ms, "data": {
                    "uid": uid, "uname": "s", "giftId": 1, "giftName": "辣条", "num": 10, "price": 100,
                    "total_coin": 1000, "coin_type": "silver", "tid": format!("tid-{id}")}})],
            5 | 6 => {
                // blind box: 1500 per box, opened into something cheaper or dearer
                let opened = *[500i64, 1000, 1500, 5200, 15000]
                    .choose(&mut self.rng)
                    .unwrap();
                let num = self.rng.gen_range(1..4);
                t.gift_gold += 1500 * num;
                t.boxes += num;
                t.profit_gold += (opened - 1500) * num;
                vec![
                    json!({"cmd": "SEND_GIFT:extra", "received_at": ms, "data": {
                    "uid": uid, "uname": "b", "giftId": 32000 + opened, "giftName": "opened", "num": num,
                    "price": opened, "total_coin": opened * num, "coin_type": "gold", "tid": format!("tid-{id}"),
                    "blind_gift": {"original_gift_id": 32251, "original_gift_name": "心动盲盒", "original_gift_price": 1500}}}),
                ]
            }
            7 => {
                let (level, price) = *[(3, 198_000), (2, 1_998_000), (1, 19_998_000)]
                    .choose(&mut self.rng)
                    .unwrap();
                t.guard_gold += price;
                let start = ms / 1000;
                vec![
                    json!({"cmd": "GUARD_BUY", "received_at": ms, "data": {"uid": uid, "username": "g",
                        "guard_level": level, "num": 1, "price": price, "gift_id": 10003, "start_time": start}}),
                    json!({"cmd": "USER_TOAST_MSG_V2", "received_at": ms + 5, "data": {
                        "sender_uinfo": {"uid": uid, "base": {"name": "g"}},
                        "guard_info": {"guard_level": level, "start_time": start},
                        "pay_info": {"num": 1, "price": price}}}),
                ]
            }
            _ => {
                let price = *[30i64, 50, 100, 1000].choose(&mut self.rng).unwrap();
                t.sc_yuan += price;
                let sc = json!({"id": id, "uid": uid, "price": price, "message": format!("sc {id}"),
                                "user_info": {"uname": format!("u{uid}")}});
                vec![
                    json!({"cmd": "SUPER_CHAT_MESSAGE", "received_at": ms, "data": sc}),
                    json!({"cmd": "SUPER_CHAT_MESSAGE_JPN", "received_at": ms, "data": sc}),
                ]
            }
        }
    }
}

struct Session {
    start: i64,
    end: i64,
    totals: Totals,
}

/// Seconds per local day of `[start, end)`, recounted minute by minute.
fn live_by_day(sessions: &[Session]) -> BTreeMap<NaiveDate, i64> {
    let mut days: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    for s in sessions {
        let mut t = s.start;
        while t < s.end {
            let step = (60_000 - t.rem_euclid(60_000)).min(s.end - t);
            *days
                .entry(utc(t).with_timezone(&Shanghai).date_naive())
                .or_default() += step;
            t += step;
        }
    }
    days.into_iter().map(|(d, ms)| (d, ms / 1000)).collect()
}

async fn ingest(app: &TestApp, room: i64, batch: &[Value]) -> Value {
    let (s, v) = post(
        app,
        &format!("/ingest/bilibili/{room}"),
        Some(KEY),
        &json!(batch),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn projected(app: &TestApp) {
    eventually("gifts projection caught up", || async {
        count(
            &app.pool,
            // in log order: concurrent appends commit out of position order
            "SELECT count(*) FROM events e, projection_checkpoints c
              WHERE c.name = 'gifts' AND e.aggregate_type = 'MonitoredRoom'
                AND (e.transaction_id, e.global_position) > (c.last_txid, c.last_position)",
        )
        .await
            == 0
    })
    .await;
}

#[tokio::test]
async fn projected_totals_equal_a_recount_of_the_raw_messages() {
    let app = start().await;
    let mut g = Gen {
        rng: StdRng::seed_from_u64(2026),
        next_id: 0,
    };
    // room → sessions (local times); one crosses the July/August
    // boundary, one midnight, one the August/September boundary.
    let plan: Vec<(i64, Vec<(i64, i64)>)> = vec![
        (
            1001,
            vec![
                (local_ms(2026, 7, 31, 23, 0), local_ms(2026, 8, 1, 1, 30)),
                (local_ms(2026, 8, 10, 20, 0), local_ms(2026, 8, 10, 22, 30)),
                (local_ms(2026, 8, 15, 23, 30), local_ms(2026, 8, 16, 0, 20)),
            ],
        ),
        (
            1002,
            vec![
                (local_ms(2026, 8, 5, 12, 0), local_ms(2026, 8, 5, 12, 45)),
                (local_ms(2026, 8, 31, 22, 0), local_ms(2026, 9, 1, 3, 0)),
            ],
        ),
        (1003, vec![]),
    ];
    let mut by_month: HashMap<(i64, String), Totals> = HashMap::new();
    let mut sessions: HashMap<i64, Vec<Session>> = HashMap::new();
    for (room, spans) in &plan {
        let (s, v) = post(
            &app,
            "/add/room",
            Some(KEY),
            &json!({"room_id": room, "room_anchors": {room.to_string(): format!("anchor{room}")}}),
        )
        .await;
        assert_eq!((s, &v["ok"]), (StatusCode::OK, &json!(true)), "{v}");
        ingest(&app, *room, &[json!({"cmd": "GUARD_COUNTS", "data": {"guard_1": 10, "guard_2": 2, "guard_3": 0}}),
                               json!({"cmd": "ROOM_REAL_TIME_MESSAGE_UPDATE", "data": {"roomid": room, "fans": 5000, "fans_club": 300}})]).await;
        let mut resend = Vec::new();
        for &(start, end) in spans {
            let mut totals = Totals::default();
            let mut middle = Vec::new();
            for _ in 0..40 {
                let ms = g.rng.gen_range(start..end);
                let month = utc(ms).with_timezone(&Shanghai).format("%Y%m").to_string();
                let mut t = Totals::default();
                middle.extend(g.money(ms, &mut t));
                for (acc, add) in [
                    (&mut totals, &t),
                    (by_month.entry((*room, month)).or_default(), &t),
                ] {
                    acc.gift_gold += add.gift_gold;
                    acc.guard_gold += add.guard_gold;
                    acc.sc_yuan += add.sc_yuan;
                    acc.boxes += add.boxes;
                    acc.profit_gold += add.profit_gold;
                }
                let dm = g.rng.gen_range(start..end);
                middle.push(json!({"cmd": "DANMU_MSG:4:0:2:2:2:0", "received_at": dm,
                    "info": [[0, 1, 25, 16777215, dm, 0], format!("弹幕 {dm}"), [g.id(), "viewer"], [], [], 0, 0, 0, 0, {"ts": dm / 1000, "ct": format!("CT{dm}")}]}));
                totals.danmaku += 1;
                middle.push(json!({"cmd": "ONLINE_RANK_COUNT", "received_at": g.rng.gen_range(start..end), "data": {"count": 1, "online_count": g.rng.gen_range(100..900)}}));
                middle.push(json!({"cmd": "SOME_UNKNOWN_CMD", "data": {"x": 1}}));
            }
            middle.shuffle(&mut g.rng);
            ingest(
                &app,
                *room,
                &[
                    json!({"cmd": "LIVE", "received_at": start, "roomid": room}),
                    json!({"cmd": "LIVE", "received_at": start + 1000, "roomid": room}),
                ],
            )
            .await;
            let chunks: Vec<Vec<Value>> = middle.chunks(25).map(|c| c.to_vec()).collect();
            let (late, on_time) = chunks.split_last().unwrap();
            for c in on_time {
                ingest(&app, *room, c).await;
            }
            ingest(
                &app,
                *room,
                &[json!({"cmd": "PREPARING", "received_at": end, "round": 1, "roomid": room})],
            )
            .await;
            // a batch delivered after the session ended still belongs to it
            ingest(&app, *room, late).await;
            resend.extend(on_time.iter().step_by(2).cloned());
            resend.push(vec![json!({"cmd": "LIVE", "received_at": start})]);
            sessions
                .entry(*room)
                .or_default()
                .push(Session { start, end, totals });
        }
        // Gifts outside any session count for the month, not for a session.
        let outside = local_ms(2026, 8, 20, 9, 0);
        let mut t = Totals::default();
        let mut msgs = Vec::new();
        while msgs.is_empty() || t.gift_gold == 0 {
            msgs = g.money(outside, &mut t);
        }
        let e = by_month.entry((*room, "202608".into())).or_default();
        e.gift_gold += t.gift_gold;
        e.guard_gold += t.guard_gold;
        e.sc_yuan += t.sc_yuan;
        e.boxes += t.boxes;
        e.profit_gold += t.profit_gold;
        ingest(&app, *room, &msgs).await;
        // Everything again, in another order: nothing may count twice.
        resend.shuffle(&mut g.rng);
        for batch in resend {
            let v = ingest(&app, *room, &batch).await;
            let keyed = batch
                .iter()
                .filter(|m| {
                    m["cmd"] != "LIVE"
                        && m["cmd"] != "SOME_UNKNOWN_CMD"
                        && m["cmd"] != "SUPER_CHAT_MESSAGE_JPN"
                })
                .count() as i64;
            assert_eq!(v["duplicates"].as_i64().unwrap(), keyed, "{v}");
        }
    }
    projected(&app).await;

    for month in ["202607", "202608", "202609"] {
        let (s, rows) = get(&app, &format!("/gift/by_month?month={month}")).await;
        assert_eq!(s, StatusCode::OK, "{rows}");
        let rows = rows.as_array().unwrap().clone();
        assert_eq!(rows.len(), 3);
        for row in rows {
            let room = row["room_id"].as_i64().unwrap();
            let want = by_month
                .get(&(room, month.to_string()))
                .cloned()
                .unwrap_or_default();
            let (m0, m1) = tidelog_month_span(month);
            let room_sessions = sessions.get(&room).map(Vec::as_slice).unwrap_or(&[]);
            let days: Vec<(NaiveDate, i64)> = live_by_day(room_sessions)
                .into_iter()
                .filter(|(d, _)| *d >= m0 && *d < m1)
                .collect();
            let live: i64 = days.iter().map(|d| d.1).sum();
            let effective = days.iter().filter(|d| d.1 >= 3600).count() as i64;
            let ctx = format!("room {room} month {month}: {row}");
            assert_eq!(
                row["gift"].as_f64().unwrap(),
                want.gift_gold as f64 / 1000.0,
                "{ctx}"
            );
            assert_eq!(
                row["guard"].as_f64().unwrap(),
                want.guard_gold as f64 / 1000.0,
                "{ctx}"
            );
            assert_eq!(
                row["super_chat"].as_f64().unwrap(),
                want.sc_yuan as f64,
                "{ctx}"
            );
            assert_eq!(
                row["blind_box_count"].as_i64().unwrap(),
                want.boxes,
                "{ctx}"
            );
            assert_eq!(
                row["blind_box_profit"].as_f64().unwrap(),
                (want.profit_gold as f64 / 100.0).round() / 10.0,
                "{ctx}"
            );
            assert_eq!(
                row["live_duration"],
                format!(
                    "{:02}:{:02}:{:02}",
                    live / 3600,
                    live % 3600 / 60,
                    live % 60
                ),
                "{ctx}"
            );
            assert_eq!(row["effective_days"].as_i64().unwrap(), effective, "{ctx}");
            // historical months: the documented defaults
            assert_eq!(
                (
                    row["live_time"].as_str(),
                    row["title"].as_str(),
                    row["status"].as_i64()
                ),
                (Some("0000-00-00 00:00:00"), Some(""), Some(0)),
                "{ctx}"
            );
            assert!(
                row["guard_1"].is_null()
                    && row["fans_count"].is_null()
                    && row.get("current_concurrency").is_none(),
                "{ctx}"
            );
            assert_eq!(row["month"], month);
        }
    }

    // Sessions of room 1001 overlapping August, with their own totals.
    let (s, v) = get(&app, "/gift/live_sessions?room_id=1001&month=202608").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let got = v["sessions"].as_array().unwrap();
    let want = &sessions[&1001];
    assert_eq!(got.len(), want.len());
    for (row, s) in got.iter().zip(want) {
        assert_eq!(
            row["start_time"],
            tidelog::timefmt::local_seconds(utc(s.start), Shanghai)
        );
        assert_eq!(
            row["end_time"],
            tidelog::timefmt::local_seconds(utc(s.end), Shanghai)
        );
        assert_eq!(
            row["gift"].as_f64().unwrap(),
            s.totals.gift_gold as f64 / 1000.0,
            "{row}"
        );
        assert_eq!(
            row["guard"].as_f64().unwrap(),
            s.totals.guard_gold as f64 / 1000.0,
            "{row}"
        );
        assert_eq!(
            row["super_chat"].as_f64().unwrap(),
            s.totals.sc_yuan as f64,
            "{row}"
        );
        assert_eq!(
            row["danmaku_count"].as_i64().unwrap(),
            s.totals.danmaku,
            "{row}"
        );
        assert_eq!(
            (
                row["start_guard_1"].as_i64(),
                row["end_fans_count"].as_i64()
            ),
            (Some(10), Some(300)),
            "{row}"
        );
        assert!(
            row["max_concurrency"].as_i64().unwrap() >= 100 && row["current_concurrency"].is_null(),
            "{row}"
        );
    }
    assert_eq!(v["month"], "202608");

    // The SC log: every super chat once, in time order.
    let (s, v) = get(&app, "/gift/sc?room_id=1002&month=2026-08").await;
    assert_eq!(s, StatusCode::OK);
    let list = v["list"].as_array().unwrap();
    let total: i64 = list.iter().map(|x| x["price"].as_i64().unwrap()).sum();
    assert_eq!(total, by_month[&(1002, "202608".to_string())].sc_yuan);
    let stored: i64 = count(&app.pool, "SELECT count(*) FROM events WHERE event_type = 'SuperChatReceived' AND aggregate_id = '1002'").await;
    assert!(stored >= list.len() as i64);

    // Replaying the log into fresh tables gives the same answers.
    let before = get(&app, "/gift/by_month?month=202608").await.1;
    let report = tidelog::projector::rebuild(
        &app.pool,
        &projections::gifts::GiftsProjector { tz: Shanghai },
        500,
        false,
    )
    .await
    .unwrap();
    assert!(report.events_applied > 0);
    assert_eq!(get(&app, "/gift/by_month?month=202608").await.1, before);
    app.stop().await;
}

fn tidelog_month_span(month: &str) -> (NaiveDate, NaiveDate) {
    let y: i32 = month[..4].parse().unwrap();
    let m: u32 = month[4..].parse().unwrap();
    let next = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (
        NaiveDate::from_ymd_opt(y, m, 1).unwrap(),
        NaiveDate::from_ymd_opt(next.0, next.1, 1).unwrap(),
    )
}

#[tokio::test]
async fn the_current_month_shows_the_live_room() {
    let app = start().await;
    post(
        &app,
        "/add/room",
        None,
        &json!({"room_id": 7, "room_anchors": "主播七", "api_key": KEY}),
    )
    .await;
    let now = Utc::now().timestamp_millis();
    let start = now - 2 * 3600 * 1000;
    ingest(&app, 7, &[
        json!({"cmd": "ROOM_CHANGE", "received_at": start - 1000, "data": {"title": "今晚唱歌"}}),
        json!({"cmd": "LIVE", "received_at": start}),
        json!({"cmd": "ONLINE_RANK_COUNT", "received_at": now - 1000, "data": {"count": 321}}),
        json!({"cmd": "SEND_GIFT", "received_at": now - 500, "data": {"uid": 1, "uname": "a", "giftId": 1, "giftName": "g", "num": 2, "price": 1000, "total_coin": 2000, "coin_type": "gold", "tid": "x1"}}),
    ]).await;
    projected(&app).await;
    let (s, v) = get(&app, "/gift").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let row = &v[0];
    assert_eq!(
        (
            row["room_id"].as_i64(),
            row["anchor_name"].as_str(),
            row["status"].as_i64()
        ),
        (Some(7), Some("主播七"), Some(1)),
        "{row}"
    );
    assert_eq!(row["title"], "今晚唱歌");
    assert_eq!(
        row["live_time"],
        tidelog::timefmt::local_seconds(utc(start), Shanghai)
    );
    assert_eq!(row["current_concurrency"], 321);
    assert_eq!(row["gift"].as_f64(), Some(2.0));
    let month = Utc::now()
        .with_timezone(&Shanghai)
        .format("%Y%m")
        .to_string();
    let (_, v) = get(&app, &format!("/gift/by_month?month={month}")).await;
    assert!(
        v[0].get("current_concurrency").is_none() && v[0]["status"] == 1,
        "{v}"
    );
    let (_, v) = get(&app, "/gift/live_sessions?room_id=7").await;
    assert_eq!(
        (
            v["sessions"][0]["current_concurrency"].as_i64(),
            v["sessions"][0]["end_time"].is_null()
        ),
        (Some(321), true),
        "{v}"
    );
    // A running session's duration follows the clock, even when the rest
    // of the answer is served as kept.
    let seconds = |v: &Value| {
        let d = v["sessions"][0]["live_duration"]
            .as_str()
            .unwrap()
            .to_owned();
        let p: Vec<i64> = d.split(':').map(|x| x.parse().unwrap()).collect();
        p[0] * 3600 + p[1] * 60 + p[2]
    };
    assert!((2 * 3600..2 * 3600 + 60).contains(&seconds(&v)), "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (_, later) = get(&app, "/gift/live_sessions?room_id=7").await;
    assert!(seconds(&later) >= seconds(&v) + 2, "{v} then {later}");
    let mut same = later.clone();
    same["sessions"][0]["live_duration"] = v["sessions"][0]["live_duration"].clone();
    assert_eq!(same, v);

    // A room's kept answer stays through another room's traffic and follows
    // its own: the next gift here shows at once.
    post(
        &app,
        "/add/room",
        None,
        &json!({"room_id": 8, "room_anchors": "主播八", "api_key": KEY}),
    )
    .await;
    ingest(&app, 8, &[json!({"cmd": "LIVE", "received_at": now})]).await;
    projected(&app).await;
    let (_, unchanged) = get(&app, "/gift/live_sessions?room_id=7").await;
    assert_eq!(unchanged["sessions"][0]["gift"], v["sessions"][0]["gift"]);
    ingest(&app, 7, &[
        json!({"cmd": "SEND_GIFT", "received_at": now, "data": {"uid": 1, "uname": "a", "giftId": 1, "giftName": "g", "num": 1, "price": 1000, "total_coin": 3000, "coin_type": "gold", "tid": "x2"}}),
    ]).await;
    projected(&app).await;
    let (_, after) = get(&app, "/gift/live_sessions?room_id=7").await;
    assert_eq!(after["sessions"][0]["gift"].as_f64(), Some(5.0), "{after}");

    // Deleted rooms leave the listing; their history stays in the log.
    let (s, _) = post(
        &app,
        "/delete/room",
        Some(KEY),
        &json!({"room_id": 7, "room_anchors": "主播七"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, left) = get(&app, "/gift").await;
    let rooms: Vec<i64> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].as_i64().unwrap())
        .collect();
    assert_eq!(rooms, [8]);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_documented_status_and_writes_nothing() {
    let app = start().await;
    post(
        &app,
        "/add/room",
        Some(KEY),
        &json!({"room_id": 5, "room_anchors": "a"}),
    )
    .await;
    let before = count(&app.pool, "SELECT count(*) FROM events").await;
    let cases: Vec<(&str, Option<&str>, Value, StatusCode)> = vec![
        (
            "/add/room",
            None,
            json!({"room_id": 6, "room_anchors": "a"}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/add/room",
            Some("wrong"),
            json!({"room_id": 6, "room_anchors": "a"}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/add/room",
            None,
            json!({"room_id": 6, "room_anchors": "a", "api_key": "wrong"}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/add/room",
            Some(KEY),
            json!({"room_id": 0, "room_anchors": "a"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/add/room",
            Some(KEY),
            json!({"room_id": -3, "room_anchors": "a"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/add/room",
            Some(KEY),
            json!({"room_id": "abc", "room_anchors": "a"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/add/room",
            Some(KEY),
            json!({"room_id": 6}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/add/room",
            Some(KEY),
            json!({"room_id": 6, "room_anchors": {"7": "other room"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/add/room",
            Some(KEY),
            json!({"room_id": 6, "room_anchors": 12}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/add/room",
            Some(KEY),
            json!([1, 2]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/add/room",
            Some(KEY),
            json!({"room_id": 5, "room_anchors": "a"}),
            StatusCode::CONFLICT,
        ),
        (
            "/delete/room",
            Some(KEY),
            json!({"room_id": 404, "room_anchors": "x"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/ingest/bilibili/404",
            Some(KEY),
            json!([{"cmd": "LIVE"}]),
            StatusCode::NOT_FOUND,
        ),
        (
            "/ingest/bilibili/0",
            Some(KEY),
            json!([{"cmd": "LIVE"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/ingest/bilibili/5",
            None,
            json!([{"cmd": "LIVE"}]),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/ingest/bilibili/5",
            Some(KEY),
            json!({"cmd": "LIVE"}),
            StatusCode::BAD_REQUEST,
        ),
        // the valid first message is not written either: batches are whole
        (
            "/ingest/bilibili/5",
            Some(KEY),
            json!([{"cmd": "LIVE"}, {"cmd": "SEND_GIFT", "data": {"uid": 1}}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/ingest/bilibili/5",
            Some(KEY),
            json!([{"cmd": 5}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/ingest/bilibili/5",
            Some(KEY),
            json!([{"cmd": "SEND_GIFT", "data": {"uid": 1, "giftId": 1, "num": 1, "price": 10, "coin_type": "bronze", "tid": "t"}}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/ingest/bilibili/5",
            Some(KEY),
            json!([{"cmd": "LIVE", "received_at": "yesterday"}]),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (path, key, body, status) in cases {
        let (s, v) = post(&app, path, key, &body).await;
        assert_eq!(s, status, "{path} {body}: {v}");
        assert!(v["error"].is_string(), "{path} {body}: {v}");
    }
    let raw = app
        .http
        .post(format!("{}/ingest/bilibili/5", app.base))
        .header("X-API-Key", KEY)
        .body("[{\"cmd\":")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    for (path, status) in [
        ("/gift/by_month?month=2026-13", StatusCode::BAD_REQUEST),
        ("/gift/by_month?month=abc", StatusCode::BAD_REQUEST),
        ("/gift/live_sessions?room_id=0", StatusCode::BAD_REQUEST),
        (
            "/gift/live_sessions?room_id=x&month=202608",
            StatusCode::BAD_REQUEST,
        ),
        ("/gift/live_sessions", StatusCode::BAD_REQUEST),
        (
            "/gift/live_sessions?room_id=5&month=20261",
            StatusCode::BAD_REQUEST,
        ),
        ("/gift/live_sessions?room_id=404", StatusCode::NOT_FOUND),
        ("/gift/sc?room_id=-1", StatusCode::BAD_REQUEST),
        ("/gift/sc?room_id=404&month=2026-08", StatusCode::NOT_FOUND),
        ("/gift/nothing", StatusCode::NOT_FOUND),
    ] {
        let (s, v) = get(&app, path).await;
        assert_eq!(s, status, "{path}: {v}");
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    assert_eq!(
        count(&app.pool, "SELECT count(*) FROM events").await,
        before,
        "rejected requests wrote events"
    );
    // the header's `Authorization: Bearer` works too
    let r = app
        .http
        .post(format!("{}/ingest/bilibili/5", app.base))
        .bearer_auth(KEY)
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn an_as_of_replay_shows_the_month_as_it_stood_then() {
    let app = start().await;
    post(
        &app,
        "/add/room",
        Some(KEY),
        &json!({"room_id": 9, "room_anchors": "nine"}),
    )
    .await;
    let gift = |tid: &str, coins: i64| {
        json!({"cmd": "SEND_GIFT", "received_at": local_ms(2026, 8, 3, 20, 0), "data": {"uid": 1, "uname": "a",
            "giftId": 1, "giftName": "g", "num": 1, "price": coins, "total_coin": coins, "coin_type": "gold", "tid": tid}})
    };
    ingest(&app, 9, &[gift("a", 5000)]).await;
    projected(&app).await;
    let then = get(&app, "/gift/by_month?month=202608").await.1;
    let instant: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    ingest(&app, 9, &[gift("b", 7000)]).await;
    projected(&app).await;
    assert_eq!(
        get(&app, "/gift/by_month?month=202608").await.1[0]["gift"],
        12.0
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(["gifts", "as-of", &instant.to_rfc3339(), "--month", "202608"])
        .env("DATABASE_URL", url_of(&app.db))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(replayed, then);
    assert_eq!(replayed[0]["gift"], 5.0);
    // the private schema is gone
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'asof_%'"
        )
        .await,
        0
    );
    app.stop().await;
}

fn v2_fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/bilibili/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Real SEND_GIFT_V2 messages (captured in 2026-09, tests/fixtures/bilibili):
/// each item is its SEND_GIFT — gold counted, a blind box at the box's
/// price, silver not — once, however often it arrives.
#[tokio::test]
async fn send_gift_v2_items_count_once_each_at_their_gold() {
    let app = start().await;
    post(
        &app,
        "/add/room",
        None,
        &json!({"room_id": 9, "room_anchors": "主播九", "api_key": KEY}),
    )
    .await;
    let now = Utc::now().timestamp_millis();
    let mut batch = vec![json!({"cmd": "LIVE", "received_at": now - 3_600_000})];
    for (i, name) in [
        "starbot_send_gift_v2_gold.json",
        "starbot_send_gift_v2_blind_box.json",
        "starbot_send_gift_v2_silver.json",
    ]
    .iter()
    .enumerate()
    {
        let mut m = v2_fixture(name);
        m["received_at"] = json!(now - 1000 + i as i64);
        batch.push(m);
    }
    let v = ingest(&app, 9, &batch).await;
    // the blind box holds two items, each its own gift
    assert_eq!(
        (
            v["received"].as_i64(),
            v["recorded"].as_i64(),
            v["ignored"].as_i64()
        ),
        (Some(4), Some(5), Some(0)),
        "{v}"
    );
    let again = ingest(&app, 9, &batch[1..]).await;
    assert_eq!(
        (again["recorded"].as_i64(), again["duplicates"].as_i64()),
        (Some(0), Some(4)),
        "{again}"
    );
    projected(&app).await;
    let (_, v) = get(&app, "/gift").await;
    let row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == 9)
        .unwrap()
        .clone();
    // 100 gold, plus two blind-box items of 5 × 33,000 at the box price; silver is not money
    assert_eq!(row["gift"].as_f64(), Some(330.1), "{row}");
    app.stop().await;
}

/// The server parses and records a bounded number of batches at once
/// (its memory); batches beyond it wait their turn and none is lost,
/// doubled or refused.
#[tokio::test]
async fn more_batches_at_once_than_the_server_records_at_once_all_count_once() {
    let app = start().await;
    for room in [21, 22, 23] {
        post(
            &app,
            "/add/room",
            Some(KEY),
            &json!({"room_id": room, "room_anchors": format!("主播{room}")}),
        )
        .await;
    }
    let now = Utc::now().timestamp_millis();
    let gift = |tid: String| {
        json!({"cmd": "SEND_GIFT", "received_at": now, "data": {"uid": 1, "uname": "a",
            "giftId": 1, "giftName": "g", "num": 1, "price": 100, "total_coin": 100, "coin_type": "gold", "tid": tid}})
    };
    // 48 batches of 20 at once, three times the 16 recorded at once
    let sends = (0..48).map(|b| {
        let batch: Vec<Value> = (0..20).map(|i| gift(format!("{b}-{i}"))).collect();
        let app = &app;
        async move { ingest(app, 21 + b % 3, &batch).await }
    });
    let answers = futures::future::join_all(sends).await;
    for v in &answers {
        assert_eq!(
            (v["recorded"].as_i64(), v["duplicates"].as_i64()),
            (Some(20), Some(0)),
            "{v}"
        );
    }
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM event_store_unique_keys
              WHERE kind = 'ingest' AND split_part(key, ':', 1) IN ('21', '22', '23')",
        )
        .await,
        960
    );
    projected(&app).await;
    let (_, v) = get(&app, "/gift").await;
    for room in [21, 22, 23] {
        let row = v
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["room_id"] == room)
            .unwrap_or_else(|| panic!("room {room} in {v}"));
        // 16 batches of 20 gifts of 100 gold: 32,000 gold, 32 yuan
        assert_eq!(row["gift"].as_f64(), Some(32.0), "{row}");
    }
    app.stop().await;
}

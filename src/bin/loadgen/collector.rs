//! The collector's figures, on a server of their own pointed at a loopback
//! Bilibili (the tests' tests/common/bilibili.rs): messages decoded and
//! recorded per second from brotli batches pushed to 16 rooms at once
//! (against `/ingest`'s batch-100 figure of the same run), and the
//! server's RSS with 1,000 rooms connected and heartbeating.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use serde_json::{json, Value};
use sqlx::PgPool;

use super::fake_bilibili::{frame_for, Encoding, FakeBilibili, FakeConfig, FakeRoom, MODERN_UA};
use super::stats::Figure;
use super::{check, rss_mb, start_server_with, API_KEY};

const ROOMS: u64 = 16;
const MANY: u64 = 1000;
const FIRST: u64 = 300_000;

fn gift(tag: &str, room: u64, b: usize, j: usize) -> Value {
    json!({"cmd": "SEND_GIFT", "data": {"uid": 1000 + j, "uname": "viewer", "giftId": 31036,
        "giftName": "小花花", "num": 1, "price": 100, "total_coin": 100, "coin_type": "gold",
        "tid": format!("{tag}-{room}-{b}-{j}")}})
}

async fn add(http: &reqwest::Client, base: &str, room: u64) -> anyhow::Result<()> {
    check(
        http.post(format!("{base}/add/room"))
            .header("X-API-Key", API_KEY)
            .json(&json!({"room_id": room, "room_anchors": format!("bench{room}")}))
            .send()
            .await?,
    )
    .await?;
    Ok(())
}

async fn connected(
    fake: &FakeBilibili,
    rooms: std::ops::Range<u64>,
    within: Duration,
) -> anyhow::Result<()> {
    let control = fake.control();
    let deadline = Instant::now() + within;
    loop {
        let n = rooms
            .clone()
            .filter(|r| control.connections(*r) == 1)
            .count();
        if n == rooms.clone().count() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{n} of {} rooms connected in {within:?}", rooms.count());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (messages per second, RSS in MB with 1,000 rooms)
pub async fn figures(
    pool: &PgPool,
    url: &str,
    out: &Path,
    gateway: &str,
    batches_per_room: usize,
) -> anyhow::Result<(Figure, f64)> {
    let rooms: Vec<FakeRoom> = (0..ROOMS + MANY)
        .map(|i| FakeRoom {
            live_status: 0,
            ..FakeRoom::new(FIRST + i, 0, 700_000 + i)
        })
        .collect();
    let fake = FakeBilibili::start(FakeConfig {
        rooms,
        ..FakeConfig::default()
    })
    .await?;
    let server = start_server_with(
        url,
        out,
        "collector",
        gateway,
        &[
            ("TIDELOG_COLLECTOR", "on".into()),
            ("BILIBILI_LIVE_API_URL", fake.base_url()),
            ("BILIBILI_API_URL", fake.base_url()),
            ("BILIBILI_USER_AGENT", MODERN_UA.into()),
            ("BILIBILI_HTTP_PER_SECOND", "1000".into()),
        ],
    )?;
    let http = reqwest::Client::new();
    let control = fake.control();
    // first the memory of 1,000 rooms connected and heartbeating, on a
    // fresh server (a burst of messages leaves the allocator's arenas grown)
    for chunk in (FIRST + ROOMS..FIRST + ROOMS + MANY)
        .collect::<Vec<_>>()
        .chunks(50)
    {
        let adds: Vec<_> = chunk.iter().map(|r| add(&http, &server.base, *r)).collect();
        futures::future::try_join_all(adds).await?;
    }
    connected(
        &fake,
        FIRST + ROOMS..FIRST + ROOMS + MANY,
        Duration::from_secs(180),
    )
    .await?;
    let beats: usize = (FIRST + ROOMS..FIRST + ROOMS + MANY)
        .map(|r| control.heartbeats(r))
        .sum();
    ensure!(
        beats >= MANY as usize,
        "{beats} heartbeats from {MANY} rooms"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, rss_now) = rss_mb(server.child.id());

    // then messages to 16 more rooms
    for r in FIRST..FIRST + ROOMS {
        add(&http, &server.base, r).await?;
    }
    connected(&fake, FIRST..FIRST + ROOMS, Duration::from_secs(60)).await?;

    // every batch pushed at once; the figure is until the last is recorded
    let tag = format!("col{}", chrono::Utc::now().timestamp_millis());
    let total = (ROOMS as usize) * batches_per_room * 100;
    // compressed before the clock starts: the figure is the collector's
    let mut frames = Vec::new();
    for b in 0..batches_per_room {
        for room in FIRST..FIRST + ROOMS {
            let msgs: Vec<Value> = (0..100).map(|j| gift(&tag, room, b, j)).collect();
            frames.push((room, frame_for(&msgs, Encoding::Brotli)));
        }
    }
    let started = Instant::now();
    for (room, frame) in frames {
        ensure!(
            control.push_frame(room, frame) == 1,
            "room {room} not connected"
        );
    }
    let pattern = format!("%:gift:{tag}-%");
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM event_store_unique_keys WHERE kind = 'ingest' AND key LIKE $1",
        )
        .bind(&pattern)
        .fetch_one(pool)
        .await?;
        if done as usize >= total {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the collector recorded {done} of {total} messages in 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let figure = Figure {
        per_s: total as f64 / secs,
        ..Figure::default()
    };

    drop(server);
    Ok((figure, rss_now))
}

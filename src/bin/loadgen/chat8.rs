//! Chat8's figures: direct messages over HTTP between many pairs of
//! friends, and how long a message takes from its send on one server
//! process to its receiver's socket on another.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::stats::{self, Figure};
use crate::{check, Fixture};

/// Makes friends of users 0 and 1, 2 and 3, …; answers the pairs (indexes
/// into the fixture's users).
pub async fn befriend_pairs(fx: &Fixture) -> anyhow::Result<Vec<(usize, usize)>> {
    let mut pairs = Vec::new();
    for a in (0..fx.tokens.len().saturating_sub(1)).step_by(2) {
        let b = a + 1;
        let v = check(
            fx.http
                .post(format!("{}/api/v1/friends/request", fx.base))
                .bearer_auth(&fx.tokens[a])
                .json(&json!({"user_id": fx.numbers[b], "message": "bench"}))
                .send()
                .await?,
        )
        .await?;
        let id = v["data"]["request_id"].as_i64().context("request_id")?;
        check(
            fx.http
                .put(format!("{}/api/v1/friends/request/{id}", fx.base))
                .bearer_auth(&fx.tokens[b])
                .json(&json!({"action": "accept"}))
                .send()
                .await?,
        )
        .await?;
        pairs.push((a, b));
    }
    anyhow::ensure!(!pairs.is_empty(), "Chat8 figures need two users at least");
    Ok(pairs)
}

/// One direct message from worker `w`'s pair, its direction alternating.
pub async fn send_dm(
    fx: &Fixture,
    base: &str,
    pairs: &[(usize, usize)],
    w: usize,
    i: u64,
    content: String,
) -> anyhow::Result<()> {
    let (a, b) = pairs[w % pairs.len()];
    let (from, to) = if i.is_multiple_of(2) { (a, b) } else { (b, a) };
    check(
        fx.http
            .post(format!("{base}/api/v1/messages"))
            .bearer_auth(&fx.tokens[from])
            .json(
                &json!({"receiver_id": fx.numbers[to], "content": content, "message_type": "text"}),
            )
            .send()
            .await?,
    )
    .await?;
    Ok(())
}

/// Open loop at `rate` messages a second over 16 workers through `send_base`,
/// every paired user holding a socket on `socket_base`; each message's time
/// from its send to its receiver's frame. A message whose frame has not
/// come 10 s after the run is an error.
#[allow(clippy::too_many_arguments)]
pub async fn socket_delivery(
    fx: &Arc<Fixture>,
    pairs: &Arc<Vec<(usize, usize)>>,
    send_base: &str,
    socket_base: &str,
    rate: f64,
    warmup: Duration,
    measure: Duration,
    tag: String,
) -> anyhow::Result<Figure> {
    // probe id -> when it was sent; arrivals are matched to it
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let lat: Arc<Mutex<Vec<f64>>> = Arc::default();
    let arrived = Arc::new(AtomicU64::new(0));
    let ws_base = socket_base.replacen("http", "ws", 1);
    let mut readers = Vec::new();
    for &(a, b) in pairs.iter() {
        for u in [a, b] {
            let token = fx.tokens[u].trim_start_matches("Bearer ").to_owned();
            let url = format!("{ws_base}/ws/{}?token={token}", fx.numbers[u]);
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .context("socket")?;
            let (sent, lat, arrived, me) =
                (sent.clone(), lat.clone(), arrived.clone(), fx.numbers[u]);
            let prefix = format!("{tag}:");
            readers.push(tokio::spawn(async move {
                let (_, mut rx) = ws.split();
                while let Some(Ok(msg)) = rx.next().await {
                    let Message::Text(t) = msg else { continue };
                    let Ok(f) = serde_json::from_str::<Value>(&t) else {
                        continue;
                    };
                    if f["type"] != "new_message" || f["data"]["receiver_id"] != me {
                        continue;
                    }
                    let Some(probe) = f["data"]["content"]
                        .as_str()
                        .filter(|c| c.starts_with(&prefix))
                    else {
                        continue;
                    };
                    let at = Instant::now();
                    if let Some(t0) = sent.lock().unwrap().remove(probe) {
                        lat.lock().unwrap().push((at - t0).as_secs_f64() * 1000.0);
                        arrived.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    // the sockets are in their sessions before the first probe
    tokio::time::sleep(Duration::from_millis(500)).await;
    let workers = 16usize;
    let interval = Duration::from_secs_f64(workers as f64 / rate);
    let measure_from = Instant::now() + warmup;
    let deadline = measure_from + measure;
    let next = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for w in 0..workers {
        let (fx, pairs, sent, next) = (fx.clone(), pairs.clone(), sent.clone(), next.clone());
        let (base, tag) = (send_base.to_owned(), tag.to_owned());
        senders.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut counted, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                tick.tick().await;
                let i = next.fetch_add(1, Ordering::Relaxed);
                let probe = format!("{tag}:{i}");
                let t0 = Instant::now();
                let measured = t0 >= measure_from;
                if measured {
                    sent.lock().unwrap().insert(probe.clone(), t0);
                    counted += 1;
                }
                if send_dm(&fx, &base, &pairs, w, i, probe.clone())
                    .await
                    .is_err()
                    && measured
                {
                    sent.lock().unwrap().remove(&probe);
                    errors += 1;
                }
            }
            (counted, errors)
        }));
    }
    let (mut counted, mut errors) = (0, 0);
    for s in senders {
        let (c, e) = s.await?;
        counted += c;
        errors += e;
    }
    let wait_until = Instant::now() + Duration::from_secs(10);
    while arrived.load(Ordering::Relaxed) + errors < counted && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in readers {
        r.abort();
    }
    let lost = sent.lock().unwrap().len() as u64;
    let mut all = std::mem::take(&mut *lat.lock().unwrap());
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(Figure {
        ops: all.len() as u64,
        errors: errors + lost,
        seconds: measure.as_secs_f64(),
        per_s: all.len() as f64 / measure.as_secs_f64(),
        p50_ms: stats::percentile(&all, 0.5),
        p99_ms: stats::percentile(&all, 0.99),
        p999_ms: stats::percentile(&all, 0.999),
        ..Default::default()
    })
}

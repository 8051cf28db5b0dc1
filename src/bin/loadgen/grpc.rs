//! The KurrentDB-protocol endpoint's figures, through the stock Rust client
//! (`grpc-client`, an example built beside this binary):
//! - `grpc_read_all`: `$all` from the start over the whole store, against
//!   `ceiling_catch_up_read`, the same events read straight from
//!   PostgreSQL in the projectors' catch-up order on one connection;
//! - `grpc_subscription_lag`: from a room-chat send's HTTP answer to each
//!   of 100 `$all` subscribers receiving its event; the server's RSS with
//!   the 100 subscribers connected.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::stats::{self, Figure};

/// The client program, next to the load generator (`examples/`).
pub fn client_exe() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?
        .with_file_name("examples")
        .join("grpc-client");
    ensure!(
        exe.exists(),
        "{} is missing: build it with `cargo build --release --example grpc-client` (scripts/bench.sh does)",
        exe.display()
    );
    Ok(exe)
}

/// `$all` read through the client: events per second.
pub async fn read_all(addr: &str) -> anyhow::Result<(f64, u64)> {
    let out = tokio::process::Command::new(client_exe()?)
        .args(["read-all", "--addr", addr])
        .stderr(Stdio::inherit())
        .output()
        .await?;
    ensure!(out.status.success(), "grpc-client read-all failed");
    let v: Value = serde_json::from_slice(&out.stdout).context("grpc-client's answer")?;
    let events = v["events"].as_u64().context("events")?;
    let seconds = v["seconds"].as_f64().context("seconds")?;
    Ok((events as f64 / seconds, events))
}

/// The raw catch-up read: every event, page after page, in
/// `(transaction_id, global_position)` order below the horizon, every
/// column a projector gets decoded, on one connection.
pub async fn catch_up_read(pool: &PgPool) -> anyhow::Result<(f64, u64)> {
    type Row = (
        i64,
        i64,
        String,
        String,
        i64,
        String,
        String,
        String,
        String,
        chrono::DateTime<chrono::Utc>,
    );
    let mut conn = pool.acquire().await?;
    let t0 = Instant::now();
    let (mut txid, mut position, mut events) = (0i64, 0i64, 0u64);
    loop {
        let page: Vec<Row> = sqlx::query_as(
            "SELECT global_position, transaction_id::text::bigint, aggregate_type, aggregate_id, sequence,
                    event_type, event_version, payload::text, metadata::text, recorded_at
               FROM events
              WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
                AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
              ORDER BY events.transaction_id, events.global_position LIMIT 1000",
        )
        .bind(txid.to_string())
        .bind(position)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = page.last() else { break };
        (position, txid) = (last.0, last.1);
        events += page.len() as u64;
        if page.len() < 1000 {
            break;
        }
    }
    Ok((events as f64 / t0.elapsed().as_secs_f64(), events))
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// `subscribers` `$all` subscribers from the end; `sends` messages posted
/// one by one at `rate` per second; the lag of every (message,
/// subscriber) pair from the send's answer, and the server's RSS (MB)
/// once every subscriber is live.
#[allow(clippy::too_many_arguments)]
pub async fn subscription_lag(
    addr: &str,
    http: &reqwest::Client,
    base: &str,
    (token, room): (&str, i64),
    subscribers: usize,
    sends: usize,
    rate: f64,
    pid: u32,
) -> anyhow::Result<(Figure, f64)> {
    let marker = format!("lagmark{}", now_us());
    let mut child = tokio::process::Command::new(client_exe()?)
        .args(["subscribe", "--addr", addr, "--marker", &marker])
        .args(["--subscribers", &subscribers.to_string()])
        .args(["--expect", &sends.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let ready = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .context("subscribers not live in 120 s")??;
    ensure!(
        ready.as_deref() == Some("ready"),
        "grpc-client said {ready:?}"
    );
    let rss = crate::rss_mb(pid).1;
    let mut answered = Vec::with_capacity(sends);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    for k in 0..sends {
        tick.tick().await;
        let resp = http
            .post(format!("{base}/api/message/send"))
            .header("Authorization", token)
            .json(&json!({"room_id": room, "type": "text", "content": format!("{marker}-{k}")}))
            .send()
            .await?;
        let at = now_us();
        if !resp.status().is_success() {
            bail!("send {k}: HTTP {}", resp.status());
        }
        answered.push(at);
    }
    let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .context("subscribers did not receive every message in 120 s")??
        .context("grpc-client ended without an answer")?;
    let v: Value = serde_json::from_str(&line)?;
    let received = v["received"].as_array().context("received")?;
    ensure!(
        received.len() == sends * subscribers,
        "{} receptions, {} expected",
        received.len(),
        sends * subscribers
    );
    let mut lags: Vec<f64> = received
        .iter()
        .map(|r| {
            let k = r[0].as_u64().unwrap_or_default() as usize;
            let at = r[2].as_u64().unwrap_or_default();
            at.saturating_sub(answered[k]) as f64 / 1000.0
        })
        .collect();
    lags.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let _ = child.wait().await;
    let seconds = sends as f64 / rate;
    Ok((
        Figure {
            ops: lags.len() as u64,
            errors: 0,
            seconds,
            per_s: lags.len() as f64 / seconds,
            p50_ms: stats::percentile(&lags, 0.5),
            p99_ms: stats::percentile(&lags, 0.99),
            p999_ms: stats::percentile(&lags, 0.999),
            ..Default::default()
        },
        rss,
    ))
}

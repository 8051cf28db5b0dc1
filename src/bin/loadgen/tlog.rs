//! The transparency log's figures. The bench server runs with
//! `TIDELOG_TLOG_INTEGRATOR=false`; the integrator (the same code,
//! `tidelog::tlog::integrator`) runs in this process instead, on the same
//! machine and database, so that it can be switched off for the sends
//! figure "with the integrator off" and timed alone over the loaded store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use tidelog::config::Config;
use tidelog::core::Core;
use tidelog::projector::{self, Progress};
use tidelog::tlog::integrator::Integrator;
use tidelog::tlog::Log;
use tokio::sync::watch;

use crate::stats::percentile;

/// The integrator (with a listener for the server's progress
/// announcements), running until stopped.
pub struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub fn start(
    config: &Arc<Config>,
    pool: &PgPool,
    connect: &sqlx::postgres::PgConnectOptions,
    log: &Arc<Log>,
) -> Running {
    let (stop, rx) = watch::channel(false);
    let progress = Progress::new();
    let core = Core {
        config: config.clone(),
        pool: pool.clone(),
        store: Arc::new(tidelog::store::Store::new(pool.clone())),
        progress: progress.clone(),
        fences: tidelog::projector::fence::Fences::off(),
    };
    let tasks = vec![
        tokio::spawn(projector::run_listener(pool.clone(), progress, rx.clone())),
        tokio::spawn(tidelog::tlog::integrator::run(
            core,
            log.clone(),
            connect.clone(),
            "loadgen".into(),
            rx,
        )),
    ];
    Running { stop, tasks }
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn head(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT (SELECT size FROM tlog_head), (SELECT coalesce(max(position), 0) FROM log_positions)",
    )
    .fetch_one(pool)
    .await?)
}

/// Integrates everything numbered so far, timed: (leaves, seconds).
pub async fn integrate_all(pool: &PgPool, batch: i64) -> anyhow::Result<(u64, f64)> {
    let mut conn = pool.acquire().await?;
    let mut integrator = Integrator::load(&mut conn).await?;
    drop(conn);
    let from = integrator.size();
    let t0 = Instant::now();
    while integrator.step(pool, batch, "loadgen").await? > 0 {}
    Ok((integrator.size() - from, t0.elapsed().as_secs_f64()))
}

/// Waits until the integrator has every numbered event.
pub async fn caught_up(pool: &PgPool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let (size, numbered) = head(pool).await?;
        if size >= numbered {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the integrator did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Samples, every 100 ms, the log's numbered head, and when the tree
/// reached it: the integration delays (ms) of the whole load, until
/// stopped.
pub struct DelaySampler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<Vec<f64>>>,
}

impl DelaySampler {
    pub fn start(pool: &PgPool) -> Self {
        let (stop, mut rx) = watch::channel(false);
        let pool = pool.clone();
        let task = tokio::spawn(async move {
            let mut waiting: std::collections::VecDeque<(Instant, i64)> = Default::default();
            let mut delays = Vec::new();
            loop {
                let (size, numbered) = head(&pool).await?;
                let now = Instant::now();
                while waiting.front().is_some_and(|(_, n)| *n <= size) {
                    let (t, _) = waiting.pop_front().unwrap();
                    delays.push(now.duration_since(t).as_secs_f64() * 1000.0);
                }
                if waiting.back().is_none_or(|(_, n)| *n < numbered) && numbered > size {
                    waiting.push_back((now, numbered));
                }
                tokio::select! {
                    _ = rx.changed() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            // what never caught up counts as long as it waited
            let now = Instant::now();
            delays.extend(
                waiting
                    .iter()
                    .map(|(t, _)| now.duration_since(*t).as_secs_f64() * 1000.0),
            );
            Ok(delays)
        });
        Self { stop, task }
    }

    /// (p99, max) in ms, and the number of samples.
    pub async fn finish(self) -> anyhow::Result<(f64, f64, usize)> {
        let _ = self.stop.send(true);
        let mut d = self.task.await??;
        d.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let max = d.last().copied().unwrap_or(0.0);
        Ok((percentile(&d, 0.99).max(0.0), max, d.len()))
    }
}

/// Waits for a signed checkpoint over every leaf the tree had when called
/// (the tree may grow meanwhile); returns its size.
pub async fn checkpointed(pool: &PgPool) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let (wanted, _) = head(pool).await?;
    loop {
        let signed: Option<i64> = sqlx::query_scalar("SELECT max(size) FROM tlog_checkpoints")
            .fetch_one(pool)
            .await?;
        if let Some(size) = signed.filter(|s| *s >= wanted && *s > 0) {
            return Ok(size);
        }
        let (now, _) = head(pool).await?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "no checkpoint over the tree's {wanted} leaves in 120 s (the newest signed: {signed:?}; the tree now: {now})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The full verification as `tidelog audit verify` runs it (the ledger and
/// the transparency log at once); the seconds of each and of the whole.
pub async fn verify(pool: &PgPool, log: &Log) -> anyhow::Result<Value> {
    use tidelog::tlog::audit::{Policy, VerifyOptions};
    let opts = VerifyOptions {
        policy: Policy {
            origin: Some(log.origin().to_owned()),
            log_keys: log.verifiers(),
            witnesses: Default::default(),
            quorum: 0,
        },
        archive: None,
        incremental: None,
    };
    let t0 = Instant::now();
    let (ledger, tlog) = tokio::join!(
        tidelog::ledger::audit::verify_without_chains(pool, |_| {}),
        tidelog::tlog::audit::verify(pool, &opts, |_| {})
    );
    let seconds = t0.elapsed().as_secs_f64();
    let (ledger, tlog) = (ledger?, tlog?);
    if let Some(d) = ledger
        .discrepancies
        .first()
        .or(tlog.chain_broken.as_ref())
        .or(tlog.discrepancies.first())
    {
        anyhow::bail!("audit verify found a discrepancy in the benchmark store: {d}");
    }
    Ok(serde_json::json!({
        "seconds": seconds,
        "events": tlog.events,
        "wallet_events": ledger.wallet_events,
        "ledger_seconds": ledger.seconds,
        "tlog_seconds": tlog.seconds,
        "leaves_hashed": tlog.leaves_hashed,
    }))
}

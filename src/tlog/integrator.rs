//! The integrator: one process at a time (an advisory lock) follows the
//! log's numbering (`log_positions`, filled by the `positions` projection
//! in the horizon-safe order) and appends each newly numbered event's leaf
//! hash, and every tile-level subtree it completes, with the new head in
//! one transaction. The head moves only from the size it read
//! (compare-and-set), and a run of hashes must start where its level ends
//! (a trigger): a process killed mid-batch leaves nothing, and the next one
//! continues from the committed head, with no gap and no leaf twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

use super::merkle::{Frontier, Hash};
use super::tiles::TILE_HEIGHT;
use super::{leaf, stored, Log};
use crate::core::Core;

const POLL_EVERY: Duration = Duration::from_millis(500);
const LOCK_RETRY_EVERY: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The tree's right edge as committed, kept in memory between batches.
pub struct Integrator {
    frontier: Frontier,
}

impl Integrator {
    /// Reloads the frontier from the stored hashes and checks it against
    /// the committed head.
    pub async fn load(conn: &mut PgConnection) -> anyhow::Result<Self> {
        let head = stored::head(conn).await?;
        let hashes = stored::nodes(conn, &Frontier::ids(head.size)).await?;
        let frontier = Frontier::load(head.size, &hashes)?;
        if frontier.root() != head.root {
            bail!(
                "the stored hashes of the transparency log do not give its head's root at size {}: they were changed",
                head.size
            );
        }
        Ok(Self { frontier })
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Integrates up to `batch` newly numbered events in one transaction;
    /// returns how many (0: none numbered yet).
    pub async fn step(&mut self, pool: &PgPool, batch: i64, owner: &str) -> anyhow::Result<usize> {
        let size = self.frontier.size();
        let first = size as i64 + 1;
        let mut conn = pool.acquire().await?;
        let rows = leaf::numbered(&mut conn, first, first + batch).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut frontier = self.frontier.clone();
        // level -> (first node, hashes): the runs this batch appends
        let mut runs: BTreeMap<u8, (u64, Vec<u8>)> = BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            let want = first + i as i64;
            if row.position != want {
                bail!("log position {want} is missing (the numbering goes on at {})", row.position);
            }
            let Some(event) = &row.event else {
                bail!(
                    "log position {} names the event at global position {}, which is not in the events table",
                    row.position,
                    row.global_position
                );
            };
            frontier.push(event.leaf_hash(), |id, h| {
                if id.level % TILE_HEIGHT == 0 {
                    runs.entry(id.level)
                        .or_insert_with(|| (id.index, Vec::new()))
                        .1
                        .extend_from_slice(h);
                }
            });
        }
        let levels: Vec<i16> = runs.keys().map(|l| i16::from(*l)).collect();
        let firsts: Vec<i64> = runs.values().map(|r| r.0 as i64).collect();
        let hashes: Vec<Vec<u8>> = runs.into_values().map(|r| r.1).collect();
        let mut tx = conn.begin().await?;
        sqlx::query(
            "INSERT INTO tlog_hashes (level, first, hashes)
             SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])",
        )
        .bind(&levels)
        .bind(&firsts)
        .bind(&hashes)
        .execute(&mut *tx)
        .await?;
        let moved = sqlx::query(
            "UPDATE tlog_head SET size = $2, root = $3, updated_at = now(), owner = $4 WHERE size = $1",
        )
        .bind(size as i64)
        .bind(frontier.size() as i64)
        .bind(frontier.root().as_slice())
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            // another integrator moved the head: this batch gives way
            tx.rollback().await?;
            *self = Self::load(&mut conn).await?;
            return Ok(0);
        }
        tx.commit().await?;
        self.frontier = frontier;
        Ok(rows.len())
    }
}

/// Works the integrator while this process holds its lock; woken by the
/// projections' progress (the numbering moving), else every 500 ms.
pub async fn run(
    core: Core,
    log: Arc<Log>,
    connect: PgConnectOptions,
    owner: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut wake = core.progress.subscribe();
    loop {
        let result = work(&core, &log, &connect, &owner, &mut wake, &mut shutdown).await;
        match result {
            Ok(()) => return,
            Err(e) => {
                let e = format!("{e:#}");
                tracing::error!(error = %e, "transparency log integrator stopped; retrying");
                log.set_status(|s| s.integrator_error = Some(e));
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(MAX_BACKOFF) => {}
                }
            }
        }
    }
}

async fn work(
    core: &Core,
    log: &Log,
    connect: &PgConnectOptions,
    owner: &str,
    wake: &mut watch::Receiver<u64>,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Some(mut lock) =
        super::hold_lock(connect, super::INTEGRATOR_LOCK, LOCK_RETRY_EVERY, shutdown).await?
    else {
        return Ok(());
    };
    let mut conn = core.pool.acquire().await?;
    let mut integrator = Integrator::load(&mut conn)
        .await
        .context("loading the transparency log")?;
    drop(conn);
    tracing::info!(size = integrator.size(), "transparency log integrator holds its lock");
    let mut last_ping = tokio::time::Instant::now();
    loop {
        let n = integrator.step(&core.pool, log.batch, owner).await?;
        log.set_status(|s| s.integrator_error = None);
        if n as i64 == log.batch {
            continue;
        }
        if last_ping.elapsed() > Duration::from_secs(2) {
            // the lock lives as long as its session
            lock.ping().await?;
            last_ping = tokio::time::Instant::now();
        }
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            _ = wake.changed() => {}
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
}

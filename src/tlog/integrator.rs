//! The integrator: one process at a time (an advisory lock) follows the
//! log's numbering (`log_positions`, filled by the `positions` projection
//! in the horizon-safe order) and appends each newly numbered event's leaf
//! hash, and every tile-level subtree it completes, with the new head in
//! one transaction. The head moves only from the size it read
//! (compare-and-set), and a run of hashes must start where its level ends
//! (a trigger): a process killed mid-batch leaves nothing, and the next one
//! continues from the committed head, with no gap and no leaf twice.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

use super::merkle::{Frontier, Hash, HASH_SIZE};
use super::tiles::{TILE_HEIGHT, TILE_WIDTH};
use super::{leaf, stored, Log};
use crate::core::Core;

const POLL_EVERY: Duration = Duration::from_millis(500);
/// After a batch that was not full, at least this long before the next:
/// fewer, larger transactions beside the write path, a bounded delay.
const PACE: Duration = Duration::from_millis(200);
const LOCK_RETRY_EVERY: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The tree's right edge as committed, kept in memory between batches.
pub struct Integrator {
    frontier: Frontier,
    /// the next batch's read, started while this one hashes and commits:
    /// (its first position, the read)
    ahead: Option<(
        i64,
        tokio::task::JoinHandle<sqlx::Result<Vec<leaf::Numbered>>>,
    )>,
}

/// Reads positions `[from, from + batch)` on a connection of its own.
fn read_ahead(
    pool: &PgPool,
    from: i64,
    batch: i64,
) -> tokio::task::JoinHandle<sqlx::Result<Vec<leaf::Numbered>>> {
    let pool = pool.clone();
    tokio::spawn(async move {
        let mut conn = pool.acquire().await?;
        leaf::numbered(&mut conn, from, from + batch).await
    })
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
        Ok(Self {
            frontier,
            ahead: None,
        })
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
        let rows = match self.ahead.take() {
            Some((from, read)) if from == first => read.await??,
            Some((_, read)) => {
                read.abort();
                let mut conn = pool.acquire().await?;
                leaf::numbered(&mut conn, first, first + batch).await?
            }
            None => {
                let mut conn = pool.acquire().await?;
                leaf::numbered(&mut conn, first, first + batch).await?
            }
        };
        if rows.is_empty() {
            return Ok(0);
        }
        if rows.len() as i64 == batch {
            // more is likely numbered: read it while this batch is done
            self.ahead = Some((first + batch, read_ahead(pool, first + batch, batch)));
        }
        let mut conn = pool.acquire().await?;
        let mut frontier = self.frontier.clone();
        let mut leaves = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let want = first + i as i64;
            if row.position != want {
                bail!(
                    "log position {want} is missing (the numbering goes on at {})",
                    row.position
                );
            }
            let Some(event) = &row.event else {
                bail!(
                    "log position {} names the event at global position {}, which is not in the events table",
                    row.position,
                    row.global_position
                );
            };
            leaves.push(event.leaf_hash());
        }
        let runs = append_runs(&mut frontier, &leaves);
        let levels: Vec<i16> = runs.iter().map(|r| i16::from(r.level)).collect();
        let firsts: Vec<i64> = runs.iter().map(|r| r.first as i64).collect();
        let hashes: Vec<Vec<u8>> = runs.into_iter().map(|r| r.hashes).collect();
        let mut tx = conn.begin().await?;
        // derived from durable events and numbers, recomputed the same after
        // a crash: no need to wait for this commit's flush
        sqlx::query("SET LOCAL synchronous_commit TO off")
            .execute(&mut *tx)
            .await?;
        // one statement: the transaction holds its id (and so every
        // projector's horizon) for as short a time as it can
        let moved = sqlx::query(
            "WITH runs AS (INSERT INTO tlog_hashes (level, first, hashes)
                           SELECT * FROM unnest($5::smallint[], $6::bigint[], $7::bytea[]))
             UPDATE tlog_head SET size = $2, root = $3, updated_at = now(), owner = $4 WHERE size = $1",
        )
        .bind(size as i64)
        .bind(frontier.size() as i64)
        .bind(frontier.root().as_slice())
        .bind(owner)
        .bind(&levels)
        .bind(&firsts)
        .bind(&hashes)
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

/// Hashes one level's consecutive complete subtrees, as stored: never
/// across a tile boundary (a run is at most one tile, 8 KiB).
pub struct Run {
    pub level: u8,
    pub first: u64,
    pub hashes: Vec<u8>,
}

/// Appends leaf hashes to `frontier`; returns the runs of tile-level hashes
/// they complete, in an order the contiguity trigger accepts.
pub fn append_runs(frontier: &mut Frontier, leaves: &[Hash]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for h in leaves {
        frontier.push(*h, |id, h| {
            if id.level % TILE_HEIGHT != 0 {
                return;
            }
            let open = runs
                .iter_mut()
                .rev()
                .find(|r| r.level == id.level)
                .filter(|r| {
                    id.index % u64::from(TILE_WIDTH) != 0
                        && r.first + (r.hashes.len() / HASH_SIZE) as u64 == id.index
                });
            match open {
                Some(r) => r.hashes.extend_from_slice(h),
                None => runs.push(Run {
                    level: id.level,
                    first: id.index,
                    hashes: h.to_vec(),
                }),
            }
        });
    }
    runs
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
    tracing::info!(
        size = integrator.size(),
        "transparency log integrator holds its lock"
    );
    let mut last_ping = tokio::time::Instant::now();
    loop {
        let n = integrator.step(&core.pool, log.batch, owner).await?;
        log.set_status(|s| s.integrator_error = None);
        if n > 0 {
            // a projector that found this transaction in its horizon looks again now
            core.progress.wake_held_back_workers();
        }
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
            _ = tokio::time::sleep(PACE) => {}
        }
        if n == 0 {
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                _ = wake.changed() => {}
                _ = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    }
}

//! What one command costs the database, counted around a figure's first
//! run: WAL bytes and write transactions (exact at any instant: the WAL
//! position and the next transaction id), WAL flushes (`pg_stat_wal`) and
//! commits (`pg_stat_database`). The last two are statistics each backend
//! reports when it goes idle, up to `PGSTAT_IDLE_INTERVAL` (10 s) late:
//! the snapshots are taken after the system has been quiet that long.
//! Everything the command set off is counted — its projections, the
//! positions numbering, the transparency log's integration, the anchors'
//! earnings — divided by the calls the figure made (warm-up included).
//! Statements come from `pg_stat_statements` (exact at any instant: each
//! counted as it ends), which the bench's own cluster preloads when the
//! installation has it; on a database without it they are not counted.
//! They are the top-level statements every client sent (the load
//! generator's few probes included), each `BEGIN` and `COMMIT` one.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;

/// How long after the last activity the statistics are read.
const SETTLE: Duration = Duration::from_millis(11_000);

#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    wal_bytes: f64,
    next_xid: i64,
    wal_syncs: Option<i64>,
    commits: i64,
    statements: Option<(i64, i64)>,
}

/// Makes statements countable, where `pg_stat_statements` is loaded; they
/// are counted only between `settled` and `after` (tracking slows a hot
/// statement, the ceiling's one INSERT above all, which would flatter the
/// ratios; this machine's noise hid how much).
pub async fn count_statements(pool: &PgPool) {
    let made = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(pool)
        .await;
    match made {
        Ok(_) => track(pool, false).await,
        Err(e) => tracing::info!(error = %e, "statements per command are not counted"),
    }
}

/// Turns statement tracking on or off for every session (each backend
/// takes it up before its next statement).
async fn track(pool: &PgPool, on: bool) {
    let level = if on { "top" } else { "none" };
    let set = sqlx::query(&format!(
        "ALTER SYSTEM SET pg_stat_statements.track = '{level}'"
    ))
    .execute(pool)
    .await;
    if set.is_ok() {
        let _ = sqlx::query("SELECT pg_reload_conf()").execute(pool).await;
    }
}

/// Statements run in this database so far, with how many entries the
/// extension has evicted (a difference across an eviction is not the
/// count); none: not counted here.
async fn statements(pool: &PgPool) -> Option<(i64, i64)> {
    sqlx::query_as(
        "SELECT (SELECT sum(calls)::bigint FROM pg_stat_statements
                  WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())),
                (SELECT dealloc FROM pg_stat_statements_info)",
    )
    .fetch_one(pool)
    .await
    .ok()
}

/// The counters once the system has been quiet for `SETTLE`, statements
/// counted from then on.
pub async fn settled(pool: &PgPool) -> anyhow::Result<Snapshot> {
    track(pool, true).await;
    tokio::time::sleep(SETTLE).await;
    read(pool, Duration::ZERO).await
}

/// The counters after a run whose work is done: the exact ones at once,
/// the reported ones once every backend has reported (what the quiet
/// seconds add, the projectors' polls, is a few dozen commits a second).
/// Statements are no longer counted after it.
pub async fn after(pool: &PgPool) -> anyhow::Result<Snapshot> {
    let snapshot = read(pool, SETTLE).await;
    track(pool, false).await;
    snapshot
}

/// The exact counters now, the reported ones `wait` later.
async fn read(pool: &PgPool, wait: Duration) -> anyhow::Result<Snapshot> {
    let (wal_bytes, next_xid) = exact(pool).await?;
    let statements = statements(pool).await;
    tokio::time::sleep(wait).await;
    let (wal_syncs, commits) = reported(pool).await?;
    Ok(Snapshot {
        wal_bytes,
        next_xid,
        wal_syncs,
        commits,
        statements,
    })
}

/// The WAL position in bytes and the next transaction id.
async fn exact(pool: &PgPool) -> anyhow::Result<(f64, i64)> {
    Ok(sqlx::query_as(
        "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::float8,
                pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
    )
    .fetch_one(pool)
    .await?)
}

/// WAL flushes (PostgreSQL 18 moved them to pg_stat_io: none there) and
/// commits, as the backends reported them.
async fn reported(pool: &PgPool) -> anyhow::Result<(Option<i64>, i64)> {
    let commits = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await?;
    let wal_syncs = sqlx::query_scalar::<_, i64>("SELECT wal_sync FROM pg_stat_wal")
        .fetch_one(pool)
        .await
        .ok();
    Ok((wal_syncs, commits))
}

/// The differences per call, for the report.
pub fn per_call(before: &Snapshot, after: &Snapshot, calls: u64) -> Value {
    let n = calls.max(1) as f64;
    let r = |x: f64| (x / n * 1000.0).round() / 1000.0;
    json!({
        "calls": calls,
        "wal_bytes": ((after.wal_bytes - before.wal_bytes) / n).round(),
        "write_transactions": r((after.next_xid - before.next_xid) as f64),
        "wal_flushes": after.wal_syncs.zip(before.wal_syncs).map(|(a, b)| r((a - b) as f64)),
        // read-only ones included (session checks, reads of the load
        // generator's samplers)
        "commits": r((after.commits - before.commits) as f64),
        "statements": after
            .statements
            .zip(before.statements)
            .filter(|((_, evicted_after), (_, evicted_before))| evicted_after == evicted_before)
            .map(|((a, _), (b, _))| r((a - b) as f64)),
    })
}

//! The projector runtime: tails the whole log in (transaction_id,
//! global_position) order below the snapshot horizon, applies each
//! projection's batch and its checkpoint in one transaction, one process per
//! projection at a time (advisory lock), woken by LISTEN/NOTIFY with a slow
//! poll as fallback.

mod asof;
mod rebuild;
mod status;

pub use asof::replay_as_of;
pub use rebuild::rebuild;
pub use status::{status, ProjectionStatus};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use projections::{ProjectionError, Projector, StoredEvent};
use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Row};
use tokio::sync::{watch, Notify};

use crate::store::LogPosition;

pub const EVENTS_CHANNEL: &str = "tidelog_events";
pub const PROGRESS_CHANNEL: &str = "tidelog_progress";
const POLL_EVERY: Duration = Duration::from_millis(500);
const LOCK_RETRY_EVERY: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const HELD_BACK_FIRST_RETRY: Duration = Duration::from_millis(2);
const TARGET_BATCH_TIME: Duration = Duration::from_millis(20);
/// Batches at least this long are folded by projections that can.
const FOLD_FROM: usize = 8;

/// The rows of a batch, selected in log order below the horizon.
pub(crate) const SELECT_BATCH: &str = "
SELECT global_position, transaction_id::text::bigint AS txid, aggregate_type, aggregate_id, sequence,
       event_type, event_version, payload, metadata, recorded_at
  FROM events
 WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
   AND aggregate_type = ANY($3)
   AND ($5::timestamptz IS NULL OR recorded_at <= $5)
 ORDER BY transaction_id, global_position
 LIMIT $4";

/// The same for a projection of one aggregate type (all of today's): an
/// equality lets PostgreSQL walk `events_type_log_order` instead of
/// filtering the whole log's order (measured: 20 ms -> 0.5 ms per batch of
/// 500 with other types interleaved).
const SELECT_BATCH_ONE_TYPE: &str = "
SELECT global_position, transaction_id::text::bigint AS txid, aggregate_type, aggregate_id, sequence,
       event_type, event_version, payload, metadata, recorded_at
  FROM events
 WHERE aggregate_type = ($3::text[])[1]
   AND (transaction_id, global_position) > ($1::text::xid8, $2)
   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
   AND ($5::timestamptz IS NULL OR recorded_at <= $5)
 ORDER BY transaction_id, global_position
 LIMIT $4";

pub(crate) fn row_to_event(row: &sqlx::postgres::PgRow) -> sqlx::Result<StoredEvent> {
    Ok(StoredEvent {
        global_position: row.try_get("global_position")?,
        transaction_id: row.try_get("txid")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

/// What every task in this process knows about projection progress.
pub struct Progress {
    checkpoints: Mutex<HashMap<String, LogPosition>>,
    tick: watch::Sender<u64>,
    /// Woken on every event notification: projector workers and live feeds.
    wakers: Mutex<Vec<Arc<Notify>>>,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            checkpoints: Mutex::default(),
            tick: watch::channel(0).0,
            wakers: Mutex::default(),
        })
    }

    pub fn checkpoint(&self, name: &str) -> LogPosition {
        self.checkpoints
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or_default()
    }

    fn advance(&self, name: &str, pos: LogPosition) {
        let mut map = self.checkpoints.lock().unwrap();
        let entry = map.entry(name.to_owned()).or_default();
        if pos > *entry {
            *entry = pos;
            drop(map);
            self.tick.send_modify(|t| *t += 1);
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }

    pub fn waker(&self) -> Arc<Notify> {
        let n = Arc::new(Notify::new());
        self.wakers.lock().unwrap().push(n.clone());
        n
    }

    fn wake_others(&self, me: &Arc<Notify>) {
        for w in self.wakers.lock().unwrap().iter() {
            if !Arc::ptr_eq(w, me) {
                w.notify_one();
            }
        }
    }

    pub(crate) fn wake_all(&self) {
        for w in self.wakers.lock().unwrap().iter() {
            w.notify_one();
        }
    }

    async fn refresh_from_db(&self, pool: &PgPool) -> sqlx::Result<()> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT name, last_txid::text::bigint, last_position FROM projection_checkpoints",
        )
        .fetch_all(pool)
        .await?;
        for (name, txid, position) in rows {
            self.advance(&name, LogPosition { txid, position });
        }
        Ok(())
    }

    /// Waits until every named projection has applied `pos` (read-your-writes
    /// for the command that produced it). Returns false on timeout.
    pub async fn wait_for(
        &self,
        pool: &PgPool,
        names: &[&str],
        pos: LogPosition,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.subscribe();
        loop {
            if names.iter().all(|n| self.checkpoint(n) >= pos) {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            // A missed notification costs at most one slow re-read.
            let slice = (deadline - now).min(Duration::from_millis(250));
            if tokio::time::timeout(slice, rx.changed()).await.is_err() {
                let _ = self.refresh_from_db(pool).await;
            }
        }
    }
}

/// Listens for event and progress notifications and fans them out in-process.
/// Wakes this process's projectors after each local append, and tells
/// other processes with one NOTIFY per burst (appends that happen while a
/// NOTIFY is being sent are covered by the next one).
pub async fn run_announcer(
    pool: PgPool,
    progress: Arc<Progress>,
    mut appends: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            changed = appends.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        appends.borrow_and_update();
        progress.wake_all();
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(EVENTS_CHANNEL)
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "could not notify other processes of appends");
        }
    }
}

pub async fn run_listener(
    pool: PgPool,
    progress: Arc<Progress>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "notification listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener
            .listen_all([EVENTS_CHANNEL, PROGRESS_CHANNEL])
            .await
        {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Anything sent while we were not listening is re-read here.
        let _ = progress.refresh_from_db(&pool).await;
        progress.wake_all();
        loop {
            let msg = tokio::select! {
                _ = shutdown.changed() => return,
                m = listener.try_recv() => m,
            };
            match msg {
                Ok(Some(n)) if n.channel() == EVENTS_CHANNEL => progress.wake_all(),
                Ok(Some(n)) => {
                    if let Some((name, pos)) = parse_progress(n.payload()) {
                        progress.advance(name, pos);
                    }
                }
                Ok(None) => {
                    // connection lost and re-established: notifications may be lost
                    let _ = progress.refresh_from_db(&pool).await;
                    progress.wake_all();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "notification listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}

fn parse_progress(payload: &str) -> Option<(&str, LogPosition)> {
    let mut parts = payload.rsplitn(3, ':');
    let position = parts.next()?.parse().ok()?;
    let txid = parts.next()?.parse().ok()?;
    Some((parts.next()?, LogPosition { txid, position }))
}

/// Settings shared by the workers of one process.
#[derive(Clone)]
pub struct RuntimeSettings {
    pub pool: PgPool,
    /// For each worker's dedicated lock connection.
    pub connect: PgConnectOptions,
    pub batch_size: i64,
    pub node: String,
}

/// Starts one worker per projection; each competes for its projection's
/// advisory lock and works it while it holds it.
pub fn spawn_workers(
    settings: RuntimeSettings,
    projectors: Vec<Arc<dyn Projector>>,
    progress: Arc<Progress>,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    projectors
        .into_iter()
        .map(|p| {
            let worker = Worker {
                settings: settings.clone(),
                projector: p,
                progress: progress.clone(),
                wake: progress.waker(),
            };
            let shutdown = shutdown.clone();
            tokio::spawn(worker.run(shutdown))
        })
        .collect()
}

struct Worker {
    settings: RuntimeSettings,
    projector: Arc<dyn Projector>,
    progress: Arc<Progress>,
    wake: Arc<Notify>,
}

impl Worker {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.projector.name();
        loop {
            match self.hold_and_work(&mut shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(projection = name, error = %e, "projector worker stopped (lock connection lost?); re-acquiring");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(LOCK_RETRY_EVERY) => {}
                    }
                }
            }
        }
    }

    /// Holds the projection's lock and works it until shutdown (`Ok`) or
    /// until the lock's session fails (`Err`).
    async fn hold_and_work(&self, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        let name = self.projector.name();
        let mut lock_conn = self
            .settings
            .connect
            .clone()
            .application_name("tidelog-projector-lock")
            .connect()
            .await?;
        loop {
            let got: bool = sqlx::query_scalar(
                "SELECT pg_try_advisory_lock(hashtextextended('tidelog-projection:' || $1, 0))",
            )
            .bind(name)
            .fetch_one(&mut lock_conn)
            .await?;
            if got {
                break;
            }
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                _ = tokio::time::sleep(LOCK_RETRY_EVERY) => {}
            }
        }
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, owner) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner",
        )
        .bind(name)
        .bind(&self.settings.node)
        .execute(&self.settings.pool)
        .await?;
        tracing::info!(projection = name, node = %self.settings.node, "projector acquired its lock");

        let mut backoff = Duration::from_millis(250);
        let mut held_back_retry = HELD_BACK_FIRST_RETRY;
        let mut last_liveness = tokio::time::Instant::now();
        loop {
            let mut failed = false;
            let mut held_back = false;
            loop {
                match self.run_batch().await {
                    Ok((_, _, true)) => continue,
                    Ok((n, cp, false)) => {
                        backoff = Duration::from_millis(250);
                        if n > 0 {
                            held_back_retry = HELD_BACK_FIRST_RETRY;
                        }
                        // Events past the checkpoint that the horizon still
                        // hides wait for some other transaction to end —
                        // which may be no append (another projection's
                        // batch, say) and so wake nobody: look again soon.
                        held_back = self.has_events_after(cp).await.unwrap_or(false);
                        break;
                    }
                    Err(BatchError { position, error }) => {
                        self.record_failure(position, &error).await;
                        failed = true;
                        break;
                    }
                }
            }
            let pause = if failed {
                let b = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                b
            } else if held_back {
                let b = held_back_retry;
                held_back_retry = (held_back_retry * 2).min(POLL_EVERY);
                b
            } else {
                POLL_EVERY
            };
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                _ = self.wake.notified(), if !failed => {}
                _ = tokio::time::sleep(pause) => {}
            }
            if last_liveness.elapsed() > Duration::from_secs(2) {
                // The lock lives as long as this session: if it is gone, so is the lock.
                lock_conn.ping().await?;
                last_liveness = tokio::time::Instant::now();
            }
        }
    }

    /// One transaction: lock the checkpoint row, read a batch, apply it, move
    /// the checkpoint, announce progress. Returns the number applied.
    async fn has_events_after(&self, cp: LogPosition) -> sqlx::Result<bool> {
        let types: Vec<&str> = self.projector.aggregate_types().to_vec();
        sqlx::query_scalar(
            "SELECT bool_or(EXISTS (SELECT 1 FROM events WHERE aggregate_type = t
                              AND (transaction_id, global_position) > ($2::text::xid8, $3)))
               FROM unnest($1::text[]) AS t",
        )
        .bind(&types)
        .bind(cp.txid.to_string())
        .bind(cp.position)
        .fetch_one(&self.settings.pool)
        .await
    }

    /// Returns (applied, checkpoint, more to read now).
    async fn run_batch(&self) -> Result<(usize, LogPosition, bool), BatchError> {
        let name = self.projector.name();
        let mut tx = self.settings.pool.begin().await?;
        let (txid, position): (i64, i64) = sqlx::query_as(
            "SELECT last_txid::text::bigint, last_position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        let mut cp = LogPosition { txid, position };
        // A batch's transaction holds the horizon — every other
        // projection's view of newer events — until it commits: stop
        // applying after TARGET_BATCH_TIME and commit what is done.
        let (n, more) = apply_batch(
            &mut tx,
            &*self.projector,
            &mut cp,
            self.settings.batch_size,
            None,
            Some(TARGET_BATCH_TIME),
        )
        .await?;
        if n == 0 {
            return Ok((0, cp, false));
        }
        sqlx::query(
            "UPDATE projection_checkpoints
                SET last_txid = $2::text::xid8, last_position = $3, events_applied = events_applied + $4,
                    updated_at = now(), owner = $5, last_error = NULL, failed_position = NULL, failed_at = NULL, retries = 0
              WHERE name = $1",
        )
        .bind(name)
        .bind(cp.txid.to_string())
        .bind(cp.position)
        .bind(n as i64)
        .bind(&self.settings.node)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.progress.advance(name, cp);
        // this batch's transaction may have been what held the others back
        self.progress.wake_others(&self.wake);
        // after the commit, so the notification queue's lock is never held
        // through this batch's WAL flush; a lost one costs waiters elsewhere
        // one 250 ms re-read
        if let Err(e) = announce(&mut *self.settings.pool.acquire().await?, name, cp).await {
            tracing::warn!(projection = name, error = %e, "could not announce progress");
        }
        Ok((n, cp, more))
    }

    async fn record_failure(&self, at: Option<i64>, err: &anyhow::Error) {
        let name = self.projector.name();
        tracing::error!(projection = name, position = ?at, error = format!("{err:#}"), "projection stopped on an event; will retry");
        let res = sqlx::query(
            "UPDATE projection_checkpoints
                SET last_error = $2, failed_position = $3, failed_at = now(), retries = retries + 1
              WHERE name = $1",
        )
        .bind(name)
        .bind(format!("{err:#}"))
        .bind(at)
        .execute(&self.settings.pool)
        .await;
        if let Err(e) = res {
            tracing::warn!(projection = name, error = %e, "could not record the projection failure");
        }
    }
}

/// Why a batch stopped, and at which event if one was to blame.
pub(crate) struct BatchError {
    pub position: Option<i64>,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for BatchError {
    fn from(e: E) -> Self {
        Self {
            position: None,
            error: e.into(),
        }
    }
}

/// Reads the projection's next batch after `cp` (in log order, below the
/// horizon) and applies it on `conn`, advancing `cp`. Used by the live
/// workers and by rebuilds; the caller owns the transaction.
pub(crate) async fn apply_next_batch(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    cp: &mut LogPosition,
    batch: i64,
) -> Result<usize, BatchError> {
    Ok(apply_batch(conn, projector, cp, batch, None, None).await?.0)
}

/// As [`apply_next_batch`], only events recorded up to `until` (an as-of
/// replay: what the system knew then).
pub(crate) async fn apply_batch_until(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    cp: &mut LogPosition,
    batch: i64,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<usize, BatchError> {
    Ok(apply_batch(conn, projector, cp, batch, until, None)
        .await?
        .0)
}

/// Reads up to `batch` events after `cp` and applies them, stopping early
/// once `deadline` passes. Returns (applied, whether more may be waiting).
pub(crate) async fn apply_batch(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    cp: &mut LogPosition,
    batch: i64,
    until: Option<chrono::DateTime<chrono::Utc>>,
    max_apply_time: Option<Duration>,
) -> Result<(usize, bool), BatchError> {
    let types: Vec<&str> = projector.aggregate_types().to_vec();
    let sql = if types.len() == 1 {
        SELECT_BATCH_ONE_TYPE
    } else {
        SELECT_BATCH
    };
    let rows = sqlx::query(sql)
        .bind(cp.txid.to_string())
        .bind(cp.position)
        .bind(&types)
        .bind(batch)
        .bind(until)
        .fetch_all(&mut *conn)
        .await?;
    // a savepoint costs two round trips: worth it for real batches, not for
    // the one or two events of a live trickle
    if projector.folds_batches() && rows.len() >= FOLD_FROM {
        let events = rows
            .iter()
            .map(row_to_event)
            .collect::<Result<Vec<_>, _>>()?;
        // one savepoint per batch: if the folded apply fails, redo it event
        // by event below to name the culprit
        sqlx::query("SAVEPOINT folded_batch")
            .execute(&mut *conn)
            .await?;
        match projector.apply_batch(conn, &events).await {
            Ok(()) => {
                sqlx::query("RELEASE SAVEPOINT folded_batch")
                    .execute(&mut *conn)
                    .await?;
                let last = events.last().expect("more than one");
                *cp = LogPosition {
                    txid: last.transaction_id,
                    position: last.global_position,
                };
                return Ok((events.len(), events.len() as i64 == batch));
            }
            Err(e) => {
                tracing::warn!(projection = projector.name(), error = %e, "folded batch failed; applying one by one");
                sqlx::query("ROLLBACK TO SAVEPOINT folded_batch")
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    // timed from the first event applied, so a slow read cannot shrink
    // batches to one event each
    let deadline = max_apply_time.map(|t| tokio::time::Instant::now() + t);
    let mut applied = 0;
    for row in &rows {
        // at least one event per batch, however slow the read was
        if applied > 0 && deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Ok((applied, true));
        }
        let event = row_to_event(row)?;
        projector
            .apply(conn, &event)
            .await
            .map_err(|e| BatchError {
                position: Some(event.global_position),
                error: match e {
                    ProjectionError::Sql(s) => anyhow::Error::new(s).context(format!(
                        "applying {} at position {}",
                        event.event_type, event.global_position
                    )),
                    other => anyhow::Error::new(other),
                },
            })?;
        *cp = LogPosition {
            txid: event.transaction_id,
            position: event.global_position,
        };
        applied += 1;
    }
    Ok((applied, applied as i64 == batch))
}

/// Tells every process's waiters and live feeds, at commit.
pub(crate) async fn announce(
    conn: &mut PgConnection,
    name: &str,
    cp: LogPosition,
) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(PROGRESS_CHANNEL)
        .bind(format!("{name}:{}:{}", cp.txid, cp.position))
        .execute(conn)
        .await
        .map(|_| ())
}

pub fn find(name: &str, tz: chrono_tz::Tz) -> Option<Arc<dyn Projector>> {
    projections::all(tz).into_iter().find(|p| p.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_payloads_round_trip() {
        assert_eq!(
            parse_progress("roomchat:741:12"),
            Some((
                "roomchat",
                LogPosition {
                    txid: 741,
                    position: 12
                }
            ))
        );
        assert_eq!(parse_progress("garbage"), None);
    }
}

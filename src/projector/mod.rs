//! The projector runtime: tails the whole log in (transaction_id,
//! global_position) order below the snapshot horizon, applies each
//! projection's batch and its checkpoint in one transaction, one process per
//! projection at a time (advisory lock), woken by LISTEN/NOTIFY with a slow
//! poll as fallback.

mod asof;
mod batch;
pub mod fence;
mod rebuild;
mod standing;
mod status;

pub use asof::replay_as_of;
use batch::{live_options, read_batch_of, read_live_batch};
pub(crate) use batch::{read_batch, Batch};
pub use rebuild::{rebuild, rebuild_many};
pub use standing::{StandingCache, StreamCache};
pub use status::{status, ProjectionStatus};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use projections::{ProjectionError, Projector, StoredEvent};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgListener};
use sqlx::{Arguments, ConnectOptions, Connection, PgConnection, PgPool};
use tokio::sync::{watch, Notify};

use crate::store::LogPosition;

pub const EVENTS_CHANNEL: &str = "tidelog_events";
pub const PROGRESS_CHANNEL: &str = "tidelog_progress";
/// A progress notification `rebuilt:<name>`: the projection's tables were
/// swapped for rebuilt ones (possibly at the same checkpoint).
const REBUILT_PREFIX: &str = "rebuilt:";
const POLL_EVERY: Duration = Duration::from_millis(500);
const LOCK_RETRY_EVERY: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const HELD_BACK_FIRST_RETRY: Duration = Duration::from_millis(2);
const TARGET_BATCH_TIME: Duration = Duration::from_millis(20);
/// Streams remembered per projection as touched; past it, a new epoch.
const MAX_TOUCHED_STREAMS: usize = 65_536;
/// A batch's transaction does not wait for its WAL flush: it holds only
/// what the durable event log can give again, and its checkpoint moves
/// with it — lost in a crash, they are lost together and applied again.
/// One flush fewer between a command's append and its read model.
const BEGIN_BATCH: &str = "BEGIN; SET LOCAL synchronous_commit TO off";

/// One projector worker as the rest of the process sees it: what wakes it
/// and what it is doing.
pub(crate) struct Waker {
    name: &'static str,
    types: &'static [&'static str],
    notify: Notify,
    /// This process holds the projection's lock (works it).
    working: AtomicBool,
    /// Its last read found events that the horizon still hides.
    held_back: AtomicBool,
}

impl Waker {
    fn reads_any(&self, types: &[&str]) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| types.contains(t))
    }
}

/// What every task in this process knows about projection progress.
pub struct Progress {
    checkpoints: Mutex<HashMap<String, LogPosition>>,
    tick: watch::Sender<u64>,
    /// One per projector worker; woken by the appends of its types.
    wakers: Mutex<Vec<Arc<Waker>>>,
    /// Per projection worked here: the streams its batches touched.
    touched: Mutex<HashMap<String, Touched>>,
}

/// The streams a projection's batches touched in this process, each with
/// the checkpoint of the last batch that touched it, since `epoch` began.
/// An epoch ends whenever what this process saw may be incomplete: the
/// projection's lock was taken or lost, a batch found its checkpoint moved
/// (a rebuild's swap, another worker), the announcement of a swap, a lost
/// listener connection, or too many streams to remember.
#[derive(Default)]
struct Touched {
    epoch: u64,
    streams: HashMap<String, LogPosition>,
    /// Batches between their commit's start and the checkpoint's move here
    /// (see [`Progress::standing`]).
    applying: u32,
}

/// A batch of the projection is committing: until this is dropped (after
/// the checkpoint moved here) [`Progress::standing`] gives nothing.
struct Applying<'a> {
    progress: &'a Progress,
    name: &'a str,
}

impl Drop for Applying<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.progress.touched.lock().unwrap().get_mut(self.name) {
            t.applying = t.applying.saturating_sub(1);
        }
    }
}

/// Where a projection stood, as seen by this process, when a read began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stand {
    epoch: u64,
    at: LogPosition,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            checkpoints: Mutex::default(),
            tick: watch::channel(0).0,
            wakers: Mutex::default(),
            touched: Mutex::default(),
        })
    }

    /// Where the projection stands, if this process works it — only then
    /// does it see every change to its tables (its own batches), so only
    /// then may a value read from them after this be kept.
    pub fn stand(&self, name: &str) -> Option<Stand> {
        self.stand_if(name, false)
    }

    /// Where the projection stands for a value read from much of its
    /// tables (`StandingCache`): as [`Progress::stand`], but nothing while
    /// one of its batches is committing. From its commit until the
    /// checkpoint moves here the tables may show the batch while the
    /// checkpoint does not — and another process, told at the commit, may
    /// already have answered the write (a sign-out there, then a request
    /// here finding the session kept as open).
    pub fn standing(&self, name: &str) -> Option<Stand> {
        self.stand_if(name, true)
    }

    fn stand_if(&self, name: &str, not_while_committing: bool) -> Option<Stand> {
        if !self.works(name) {
            return None;
        }
        let epoch = {
            let touched = self.touched.lock().unwrap();
            let t = touched.get(name);
            if not_while_committing && t.is_some_and(|t| t.applying > 0) {
                return None;
            }
            t.map_or(0, |t| t.epoch)
        };
        Some(Stand {
            epoch,
            at: self.checkpoint(name),
        })
    }

    /// Marks a batch of `name` as committing until the guard is dropped.
    fn applying<'a>(&'a self, name: &'a str) -> Applying<'a> {
        self.touched
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .applying += 1;
        Applying {
            progress: self,
            name,
        }
    }

    /// Whether no batch of the projection touched `stream` since a read
    /// that began at `since` (and this process still works it, in the same
    /// epoch).
    pub fn unchanged(&self, name: &str, stream: &str, since: Stand) -> bool {
        if !self.works(name) {
            return false;
        }
        let touched = self.touched.lock().unwrap();
        let Some(t) = touched.get(name) else {
            return since.epoch == 0;
        };
        t.epoch == since.epoch && t.streams.get(stream).is_none_or(|at| *at <= since.at)
    }

    /// Records the streams of a batch that ends at `at`; before its commit
    /// (and so before the checkpoint moves there), so that a read which
    /// stands at `at` or later began after the batch, and one which stood
    /// before sees the touch.
    fn touch<'a>(&self, name: &str, at: LogPosition, streams: impl Iterator<Item = &'a str>) {
        let mut touched = self.touched.lock().unwrap();
        let t = touched.entry(name.to_owned()).or_default();
        for stream in streams {
            if let Some(last) = t.streams.get_mut(stream) {
                *last = at;
                continue;
            }
            if t.streams.len() >= MAX_TOUCHED_STREAMS {
                t.epoch += 1;
                t.streams.clear();
            }
            t.streams.insert(stream.to_owned(), at);
        }
    }

    /// Ends the projection's epoch: nothing read before is kept.
    fn forget(&self, name: &str) {
        let mut touched = self.touched.lock().unwrap();
        let t = touched.entry(name.to_owned()).or_default();
        t.epoch += 1;
        t.streams.clear();
    }

    fn forget_all(&self) {
        for t in self.touched.lock().unwrap().values_mut() {
            t.epoch += 1;
            t.streams.clear();
        }
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

    pub(crate) fn waker(&self, projector: &dyn Projector) -> Arc<Waker> {
        let w = Arc::new(Waker {
            name: projector.name(),
            types: projector.aggregate_types(),
            notify: Notify::new(),
            working: AtomicBool::new(false),
            held_back: AtomicBool::new(false),
        });
        self.wakers.lock().unwrap().push(w.clone());
        w
    }

    /// Wakes the workers that read any of `types` (a worker that is not
    /// waiting keeps the wake-up for its next wait).
    pub(crate) fn wake_for(&self, types: &[&str]) {
        for w in self.wakers.lock().unwrap().iter() {
            if w.reads_any(types) {
                w.notify.notify_one();
            }
        }
    }

    /// Wakes the workers that last found themselves held back: a
    /// transaction that just ended may have been what held them.
    fn wake_held_back(&self, me: &Arc<Waker>) {
        for w in self.wakers.lock().unwrap().iter() {
            if !Arc::ptr_eq(w, me) && w.held_back.load(Ordering::Relaxed) {
                w.notify.notify_one();
            }
        }
    }

    /// Wakes the workers that last found themselves held back, after a
    /// transaction of another kind (the transparency log's) ended.
    pub(crate) fn wake_held_back_workers(&self) {
        for w in self.wakers.lock().unwrap().iter() {
            if w.held_back.load(Ordering::Relaxed) {
                w.notify.notify_one();
            }
        }
    }

    pub(crate) fn wake_all(&self) {
        for w in self.wakers.lock().unwrap().iter() {
            w.notify.notify_one();
        }
    }

    /// Whether this process works (holds the lock of) the projection.
    pub fn works(&self, name: &str) -> bool {
        self.wakers
            .lock()
            .unwrap()
            .iter()
            .any(|w| w.name == name && w.working.load(Ordering::Relaxed))
    }

    /// Whether some projection of these types is worked by another process
    /// (which then needs to hear of the appends).
    fn worked_elsewhere(&self, types: &[&str]) -> bool {
        self.wakers
            .lock()
            .unwrap()
            .iter()
            .any(|w| w.reads_any(types) && !w.working.load(Ordering::Relaxed))
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

/// Wakes the projectors of each aggregate type this process appended, and
/// tells other processes (one NOTIFY per burst, naming the types) only when
/// one of those projections is worked elsewhere: with every projector here,
/// nobody else needs to hear (measured: one NOTIFY per send before).
pub async fn run_announcer(
    pool: PgPool,
    progress: Arc<Progress>,
    appended: Arc<crate::store::Appended>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let types = tokio::select! {
            types = appended.next() => types,
            _ = shutdown.changed() => return,
        };
        progress.wake_for(&types);
        if !progress.worked_elsewhere(&types) {
            continue;
        }
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(EVENTS_CHANNEL)
            .bind(types.join(","))
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
                Ok(Some(n)) if n.channel() == EVENTS_CHANNEL => {
                    if n.payload().is_empty() {
                        progress.wake_all();
                    } else {
                        progress.wake_for(&n.payload().split(',').collect::<Vec<_>>());
                    }
                }
                Ok(Some(n)) => {
                    if let Some(name) = n.payload().strip_prefix(REBUILT_PREFIX) {
                        progress.forget(name);
                    } else if let Some((name, pos)) = parse_progress(n.payload()) {
                        progress.advance(name, pos);
                    }
                }
                Ok(None) => {
                    // connection lost and re-established: notifications may be lost
                    progress.forget_all();
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
                wake: progress.waker(&*p),
                projector: p,
                progress: progress.clone(),
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
    wake: Arc<Waker>,
}

/// What one batch did.
struct Outcome {
    applied: usize,
    /// more events may be readable right now
    more: bool,
    /// events past the checkpoint are still hidden by the horizon
    held_back: bool,
}

impl Worker {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.projector.name();
        loop {
            let result = self.hold_and_work(&mut shutdown).await;
            self.wake.working.store(false, Ordering::Relaxed);
            self.progress.forget(name);
            match result {
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
            // the batches are read here too, each with one kept plan
            .options(live_options())
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
        let mut cp = self.stored_checkpoint().await?;
        // what this process knows of the projection is at least what is
        // stored before it counts as working it (the session cache relies on it)
        self.progress.advance(name, cp);
        self.progress.forget(name);
        self.wake.working.store(true, Ordering::Relaxed);
        tracing::info!(projection = name, node = %self.settings.node, "projector acquired its lock");

        let mut backoff = Duration::from_millis(250);
        let mut held_back_retry = HELD_BACK_FIRST_RETRY;
        let mut last_liveness = tokio::time::Instant::now();
        let interval = self.projector.batch_interval();
        loop {
            let mut failed = false;
            let mut held_back = false;
            let mut last_batch;
            let mut applied_any = false;
            loop {
                last_batch = tokio::time::Instant::now();
                match self.run_batch(&mut lock_conn, &mut cp).await {
                    Ok(Outcome { more: true, .. }) => continue,
                    Ok(outcome) => {
                        backoff = Duration::from_millis(250);
                        if outcome.applied > 0 {
                            held_back_retry = HELD_BACK_FIRST_RETRY;
                            applied_any = true;
                        }
                        // Events past the checkpoint that the horizon still
                        // hides wait for some other transaction to end —
                        // which may be no append (another projection's
                        // batch, say) and so wake nobody: look again soon.
                        held_back = outcome.held_back;
                        break;
                    }
                    Err(BatchError { position, error }) => {
                        self.record_failure(position, &error).await;
                        failed = true;
                        break;
                    }
                }
            }
            self.wake.held_back.store(held_back, Ordering::Relaxed);
            if failed {
                // nothing of the batch was kept; start again from what is stored
                cp = self.stored_checkpoint().await?;
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
            if applied_any && !failed && !interval.is_zero() {
                // events keep coming: let more gather for the next batch
                tokio::select! {
                    _ = shutdown.changed() => return Ok(()),
                    _ = tokio::time::sleep_until(last_batch + interval) => {}
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                _ = self.wake.notify.notified(), if !failed => {}
                _ = tokio::time::sleep(pause) => {}
            }
            if last_liveness.elapsed() > Duration::from_secs(2) {
                // The lock lives as long as this session: if it is gone, so is the lock.
                lock_conn.ping().await?;
                last_liveness = tokio::time::Instant::now();
            }
        }
    }

    async fn stored_checkpoint(&self) -> sqlx::Result<LogPosition> {
        let (txid, position): (i64, i64) = sqlx::query_as(
            "SELECT last_txid::text::bigint, last_position FROM projection_checkpoints WHERE name = $1",
        )
        .bind(self.projector.name())
        .fetch_one(&self.settings.pool)
        .await?;
        Ok(LogPosition { txid, position })
    }

    /// Reads the next batch after `cp` (no transaction: events do not
    /// change), then in one transaction moves the checkpoint — only if it is
    /// still `cp`, so a rebuild's swap or another worker that took over in
    /// between makes this batch give way — and applies the batch. The
    /// checkpoint moves first so that a swap holding its row is waited for
    /// before any read-model write.
    async fn run_batch(
        &self,
        reading: &mut PgConnection,
        cp: &mut LogPosition,
    ) -> Result<Outcome, BatchError> {
        let name = self.projector.name();
        let size = self.settings.batch_size;
        let types = self.projector.aggregate_types();
        let batch = read_live_batch(reading, types, *cp, size).await?;
        let events = &batch.events;
        if events.is_empty() {
            return Ok(Outcome {
                applied: 0,
                more: false,
                held_back: batch.held_back,
            });
        }
        // A batch's transaction holds the horizon — every other
        // projection's view of newer events — until it commits: stop
        // applying after TARGET_BATCH_TIME and commit what is done.
        let claim = Claim {
            name,
            from: *cp,
            node: &self.settings.node,
        };
        // before the commit, which may announce the batch: a read that
        // stands before the batch's end then sees the touch (a batch that
        // stops early or fails touched more than it wrote: less is kept);
        // values kept while the checkpoint stands are not served until it
        // moves here
        let applying = self.progress.applying(name);
        self.progress.touch(
            name,
            events[events.len() - 1].position(),
            events.iter().map(|e| e.aggregate_id.as_str()),
        );
        let applied = match self.apply_untransacted(reading, events, &claim).await {
            Some(applied) => applied?,
            None => {
                let mut conn = self.settings.pool.acquire().await?;
                apply_and_commit(
                    &mut conn,
                    &*self.projector,
                    events,
                    Some(TARGET_BATCH_TIME),
                    Some(&claim),
                )
                .await?
            }
        };
        let Some((applied, announced)) = applied else {
            // the checkpoint moved under us: carry on from where it is
            self.progress.forget(name);
            *cp = self.stored_checkpoint().await?;
            return Ok(Outcome {
                applied: 0,
                more: true,
                held_back: false,
            });
        };
        *cp = events[applied - 1].position();
        self.progress.advance(name, *cp);
        drop(applying);
        self.progress.wake_held_back(&self.wake);
        // a batch that stopped early announces where it stopped, after the
        // commit; a lost announcement costs waiters elsewhere one 250 ms
        // re-read
        if !announced {
            if let Err(e) = announce(reading, name, *cp).await {
                tracing::warn!(projection = name, error = %e, "could not announce progress");
            }
        }
        let more = applied < events.len() || events.len() as i64 == size;
        Ok(Outcome {
            applied,
            more,
            held_back: !more && batch.held_back,
        })
    }

    /// A batch applied without a transaction of its own where it needs
    /// none ([`untransacted`]), on `conn`, the lock's session, whose
    /// commits do not wait for their WAL flush, as a batch's transaction
    /// does not ([`live_options`]). `None`: not such a batch, or its
    /// statement failed — then applied in a transaction, which names the
    /// event to blame.
    async fn apply_untransacted(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
        claim: &Claim<'_>,
    ) -> Option<Result<Option<(usize, bool)>, BatchError>> {
        let projector = &*self.projector;
        let moved = match untransacted(projector, events)? {
            Untransacted::CheckpointOnly => claim
                .take(conn, events, true)
                .await
                .map_err(BatchError::from),
            Untransacted::OneStatement => {
                let args = match claim.args(events, true) {
                    Ok(args) => args,
                    Err(e) => return Some(Err(e.into())),
                };
                let claimed = projections::Claimed {
                    cte: CLAIM_CTE,
                    args,
                };
                match projector.apply_claimed(conn, events, claimed).await {
                    Ok(moved) => Ok(moved),
                    Err(e) => {
                        tracing::warn!(projection = projector.name(), error = %e, "one-statement batch failed; applying in a transaction");
                        return None;
                    }
                }
            }
        };
        Some(moved.map(|moved| moved.then_some((events.len(), true))))
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

/// How a live batch is applied without a transaction of its own.
#[derive(Debug, PartialEq)]
enum Untransacted {
    /// every event one the projection ignores: only the checkpoint moves
    CheckpointOnly,
    /// a projection never rebuilt whose batch is one statement, led by the
    /// checkpoint's move ([`Projector::apply_claimed`])
    OneStatement,
}

/// Whether `events` (a live batch) need no transaction of their own; `None`:
/// they are applied in one, the checkpoint moved first.
fn untransacted(projector: &dyn Projector, events: &[StoredEvent]) -> Option<Untransacted> {
    if events.is_empty() {
        None
    } else if events.iter().all(|e| projector.ignores(e)) {
        Some(Untransacted::CheckpointOnly)
    } else if projector.applies_claimed() && !projector.rebuildable() {
        Some(Untransacted::OneStatement)
    } else {
        None
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

trait Positioned {
    fn position(&self) -> LogPosition;
}

impl Positioned for StoredEvent {
    fn position(&self) -> LogPosition {
        LogPosition {
            txid: self.transaction_id,
            position: self.global_position,
        }
    }
}

/// A live worker's hold on its checkpoint for one batch: the batch's
/// transaction moves the checkpoint from `from` to the batch's end first —
/// only if it is still `from`, so that a rebuild's swap or another worker
/// that took over makes the batch give way — and the swap, which holds the
/// row, is waited for before any read-model write.
pub(crate) struct Claim<'a> {
    pub name: &'a str,
    pub from: LogPosition,
    pub node: &'a str,
}

/// A live batch's checkpoint move (`$1` the projection, `$2`/`$3` where
/// it must stand, `$4`/`$5` where it goes, `$6` the events, `$7` the
/// owner), announced by the same statement if `$8` (on `$9`, `$10`).
macro_rules! claim_text {
    () => {
        "UPDATE projection_checkpoints
            SET last_txid = $4::text::xid8, last_position = $5, events_applied = events_applied + $6,
                updated_at = now(), owner = $7, last_error = NULL, failed_position = NULL,
                failed_at = NULL, retries = 0
          WHERE name = $1 AND last_txid = $2::text::xid8 AND last_position = $3
          RETURNING CASE WHEN $8 THEN pg_notify($9, $10) END"
    };
}

/// The move as a CTE named `claim` ([`projections::Claimed`]).
const CLAIM_CTE: &str = concat!("claim AS (", claim_text!(), ")");
const _: () = assert!(projections::CLAIM_ARGS == 10);

impl Claim<'_> {
    /// The move's parameters over `events` (not empty).
    fn args(&self, events: &[StoredEvent], announce: bool) -> sqlx::Result<PgArguments> {
        let to = events[events.len() - 1].position();
        let mut args = PgArguments::default();
        let add =
            |result: Result<(), sqlx::error::BoxDynError>| result.map_err(sqlx::Error::Encode);
        add(args.add(self.name))?;
        add(args.add(self.from.txid.to_string()))?;
        add(args.add(self.from.position))?;
        add(args.add(to.txid.to_string()))?;
        add(args.add(to.position))?;
        add(args.add(events.len() as i64))?;
        add(args.add(self.node))?;
        add(args.add(announce))?;
        add(args.add(PROGRESS_CHANNEL))?;
        add(args.add(progress_message(self.name, to)))?;
        Ok(args)
    }

    /// Moves the checkpoint over `events`; false when it was not at `from`.
    /// With `announce`, the move is announced at commit by the same
    /// statement (a round trip less per batch than announcing apart) — only
    /// for a batch that commits whole or not at all.
    async fn take(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
        announce: bool,
    ) -> sqlx::Result<bool> {
        if events.is_empty() {
            return Ok(false);
        }
        let moved = sqlx::query_with(claim_text!(), self.args(events, announce)?)
            .fetch_optional(conn)
            .await?;
        Ok(moved.is_some())
    }

    /// Sets the checkpoint back to the last event applied when the batch
    /// stopped early.
    async fn cut(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
        applied: usize,
    ) -> sqlx::Result<()> {
        let at = events[applied - 1].position();
        sqlx::query(
            "UPDATE projection_checkpoints
                SET last_txid = $2::text::xid8, last_position = $3, events_applied = events_applied - $4
              WHERE name = $1",
        )
        .bind(self.name)
        .bind(at.txid.to_string())
        .bind(at.position)
        .bind((events.len() - applied) as i64)
        .execute(conn)
        .await
        .map(|_| ())
    }
}

/// Applies `events` in one transaction on `conn` and commits it, with the
/// checkpoint move of `claim` if given (`None` when the claim failed and
/// nothing was applied). The events are folded into a few statements when
/// the projector can and there is more than one; a folded batch that fails
/// is rolled back and applied again event by event to name the one to
/// blame; applying one by one stops early once `max_apply_time` passes.
/// Returns the number applied, and whether the claim's move was announced
/// at commit (a batch that cannot stop early announces with its claim).
pub(crate) async fn apply_and_commit(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    events: &[StoredEvent],
    max_apply_time: Option<Duration>,
    claim: Option<&Claim<'_>>,
) -> Result<Option<(usize, bool)>, BatchError> {
    let mut fold = projector.folds_batches() && events.len() > 1;
    loop {
        let mut tx = conn.begin_with(BEGIN_BATCH).await?;
        let whole = fold || events.len() == 1;
        if let Some(claim) = claim {
            if !claim.take(&mut tx, events, whole).await? {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        let applied = if fold {
            match projector.apply_batch(&mut tx, events).await {
                Ok(()) => events.len(),
                Err(e) => {
                    tracing::warn!(projection = projector.name(), error = %e, "folded batch failed; applying one by one");
                    tx.rollback().await?;
                    fold = false;
                    continue;
                }
            }
        } else {
            apply_each(&mut tx, projector, events, max_apply_time).await?
        };
        if let Some(claim) = claim.filter(|_| applied < events.len()) {
            claim.cut(&mut tx, events, applied).await?;
        }
        tx.commit().await?;
        return Ok(Some((applied, whole && claim.is_some())));
    }
}

/// Applies events one by one, stopping early once `max_apply_time` passes
/// (at least one, however slow). Returns the number applied.
async fn apply_each(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    events: &[StoredEvent],
    max_apply_time: Option<Duration>,
) -> Result<usize, BatchError> {
    let deadline = max_apply_time.map(|t| tokio::time::Instant::now() + t);
    for (applied, event) in events.iter().enumerate() {
        if applied > 0 && deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Ok(applied);
        }
        projector.apply(conn, event).await.map_err(|e| BatchError {
            position: Some(event.global_position),
            error: match e {
                ProjectionError::Sql(s) => anyhow::Error::new(s).context(format!(
                    "applying {} at position {}",
                    event.event_type, event.global_position
                )),
                other => anyhow::Error::new(other),
            },
        })?;
    }
    Ok(events.len())
}

/// Replays the projection's events after `cp` (those recorded up to
/// `until`, if given) on `conn`, whose `search_path` leads to the tables to
/// fill, a batch per transaction, until no more are readable; `advanced`
/// hears each batch's size. Returns the number applied. The next batch is
/// read on another connection while one is applied, so reading the log
/// and writing the tables keep two backends busy instead of taking turns
/// on one (a rebuild is otherwise bound by a single backend: measured ~50 %
/// idle on 2 cores).
pub(crate) async fn replay(
    pool: &PgPool,
    conn: &mut PgConnection,
    projector: &dyn Projector,
    cp: &mut LogPosition,
    batch: i64,
    until: Option<chrono::DateTime<chrono::Utc>>,
    mut advanced: impl FnMut(usize),
) -> Result<u64, BatchError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(2);
    let from = *cp;
    let (pool, types) = (pool.clone(), projector.aggregate_types());
    // its own task: decoding rows runs beside applying (in one task with
    // the applier, measured 6 of 12 s of a rebuild spent waiting on it)
    let reader = tokio::spawn(async move {
        let mut reading = pool.acquire().await?;
        let mut at = from;
        loop {
            let next = read_batch_of(&mut reading, types, at, batch, until).await?;
            let Some(end) = next.end() else { break };
            at = end;
            let last = (next.events.len() as i64) < batch;
            if tx.send(next).await.is_err() || last {
                // the applier stopped (its error is the one to report), or done
                break;
            }
        }
        Ok::<_, BatchError>(())
    });
    let applier = async {
        // owned here: when applying stops, the reader's next send fails
        let mut rx = rx;
        let mut applied = 0u64;
        while let Some(next) = rx.recv().await {
            let (n, _) = apply_and_commit(conn, projector, &next.events, None, None)
                .await?
                .unwrap_or_default();
            if let Some(end) = next.end() {
                *cp = end;
            }
            applied += n as u64;
            advanced(n);
        }
        Ok::<_, BatchError>(applied)
    };
    let applied = applier.await;
    let read = reader.await;
    let applied = applied?;
    read??;
    Ok(applied)
}

/// Waits (up to `timeout`) until every projection has applied the events of
/// its types that the log held when called; false on timeout. A server
/// starts serving after this: batches do not wait for their WAL flush, so
/// a crash of the database can take back the last ones applied (never an
/// event), and read models should show again what they showed before.
pub async fn wait_caught_up(
    pool: &PgPool,
    progress: &Progress,
    projectors: &[Arc<dyn Projector>],
    timeout: Duration,
) -> sqlx::Result<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    for p in projectors {
        // a projection of every type: the head of the whole log
        let every: &[&str] = &[""];
        let types = match p.aggregate_types() {
            [] => every,
            types => types,
        };
        for t in types {
            // The order names the table's columns: unqualified,
            // `transaction_id` was the output's bigint cast, which no
            // index gives, so PostgreSQL scanned and sorted (1–1.4 s a
            // call after a gift ingestion burst). And two statements, not
            // one with `($1 = '' OR aggregate_type = $1)`, whose generic
            // plan cannot use the type's index.
            let head: Option<(i64, i64)> = if t.is_empty() {
                sqlx::query_as(
                    "SELECT transaction_id::text::bigint, global_position FROM events
                      ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1",
                )
                .fetch_optional(pool)
                .await?
            } else {
                sqlx::query_as(
                    "SELECT transaction_id::text::bigint, global_position FROM events
                      WHERE aggregate_type = $1
                      ORDER BY events.aggregate_type DESC, events.transaction_id DESC,
                               events.global_position DESC
                      LIMIT 1",
                )
                .bind(t)
                .fetch_optional(pool)
                .await?
            };
            let Some((txid, position)) = head else {
                continue;
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let head = LogPosition { txid, position };
            if !progress.wait_for(pool, &[p.name()], head, left).await {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Tells every process that the projection's tables were swapped, at commit.
pub(crate) async fn announce_rebuilt(conn: &mut PgConnection, name: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(PROGRESS_CHANNEL)
        .bind(format!("{REBUILT_PREFIX}{name}"))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Tells every process's waiters and live feeds, at commit.
pub(crate) async fn announce(
    conn: &mut PgConnection,
    name: &str,
    cp: LogPosition,
) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(PROGRESS_CHANNEL)
        .bind(progress_message(name, cp))
        .execute(conn)
        .await
        .map(|_| ())
}

/// What `announce` says: the projection and its checkpoint.
fn progress_message(name: &str, cp: LogPosition) -> String {
    format!("{name}:{}:{}", cp.txid, cp.position)
}

pub fn find(name: &str, tz: chrono_tz::Tz) -> Option<Arc<dyn Projector>> {
    projections::all(tz).into_iter().find(|p| p.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: i64) -> LogPosition {
        LogPosition {
            txid: position,
            position,
        }
    }

    /// A process that works `roomchat` (the worker's lock taken) at 10.
    fn working_roomchat() -> (Arc<Progress>, Arc<Waker>) {
        let progress = Progress::new();
        let w = progress.waker(&*find("roomchat", chrono_tz::UTC).unwrap());
        progress.advance("roomchat", at(10));
        progress.forget("roomchat");
        w.working.store(true, Ordering::Relaxed);
        (progress, w)
    }

    fn event(aggregate_type: &str, event_type: &str) -> StoredEvent {
        let raw = |v: &str| serde_json::value::RawValue::from_string(v.into()).unwrap();
        StoredEvent {
            global_position: 1,
            transaction_id: 1,
            aggregate_type: aggregate_type.into(),
            aggregate_id: "a".into(),
            sequence: 1,
            event_type: event_type.into(),
            event_version: "1".into(),
            payload: raw("{}"),
            metadata: raw("{}"),
            recorded_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_batch_needs_no_transaction_only_when_it_writes_nothing_or_one_statement_of_a_log_never_rebuilt(
    ) {
        let of = |name: &str, events: &[StoredEvent]| {
            untransacted(&*find(name, chrono_tz::UTC).unwrap(), events)
        };
        let credit = event("Wallet", "WalletCredited");
        let paid = event("Wallet", "VipCoinPaid");
        let room = event("LiveRoom", "LiveRoomCreated");
        // the live rooms read a wallet's payments only
        assert_eq!(
            of("live", &[credit.clone(), event("Wallet", "WalletDebited")]),
            Some(Untransacted::CheckpointOnly)
        );
        assert_eq!(of("live", &[credit.clone(), paid.clone()]), None);
        assert_eq!(of("live", &[event("Wallet", "SubscriptionPaid")]), None);
        assert_eq!(of("live", &[room.clone(), credit.clone()]), None);
        // the ledger reads every wallet event, in a transaction (rebuildable)
        assert_eq!(of("ledger", std::slice::from_ref(&credit)), None);
        // the log's numbering: one statement, whatever the events
        assert_eq!(
            of("positions", &[room, credit, paid]),
            Some(Untransacted::OneStatement)
        );
        assert_eq!(of("positions", &[]), None);
    }

    #[test]
    fn a_stream_cache_keeps_a_value_until_its_stream_is_touched() {
        let (progress, _w) = working_roomchat();
        let cache = StreamCache::<i64, &str>::new("roomchat", 16);
        let since = cache.stand(&progress);
        cache.put(1, "1".into(), since, "room 1 at 10");
        cache.put(2, "2".into(), since, "room 2 at 10");
        assert_eq!(cache.get(&progress, &1), Some("room 1 at 10"));

        // a batch touching room 2 only
        progress.touch("roomchat", at(12), ["2", "2"].into_iter());
        progress.advance("roomchat", at(12));
        assert_eq!(cache.get(&progress, &1), Some("room 1 at 10"));
        assert_eq!(cache.get(&progress, &2), None);

        // a read that stood before a batch is not kept past it, even if
        // it was put after the batch
        let before = cache.stand(&progress);
        progress.touch("roomchat", at(14), ["1"].into_iter());
        cache.put(1, "1".into(), before, "room 1 read from 12, maybe 14");
        progress.advance("roomchat", at(14));
        assert_eq!(cache.get(&progress, &1), None);
        let now = cache.stand(&progress);
        cache.put(1, "1".into(), now, "room 1 at 14");
        assert_eq!(cache.get(&progress, &1), Some("room 1 at 14"));
    }

    #[test]
    fn a_standing_cache_serves_nothing_while_a_batch_commits_before_the_checkpoint_moves_here() {
        let (progress, _w) = working_roomchat();
        let cache = StandingCache::<i64, &str>::new("roomchat", 16);
        cache.put(1, cache.stand(&progress), "open at 10");
        assert_eq!(cache.get(&1, cache.stand(&progress)), Some("open at 10"));
        let applying = progress.applying("roomchat");
        // committed (another process may have answered the write), the
        // checkpoint here still at 10: the table may say otherwise
        assert_eq!(cache.stand(&progress), None);
        assert_eq!(cache.get(&1, cache.stand(&progress)), None);
        cache.put(2, cache.stand(&progress), "not kept");
        // values kept per stream are not held up by it
        assert!(StreamCache::<i64, &str>::new("roomchat", 16)
            .stand(&progress)
            .is_some());
        progress.advance("roomchat", at(12));
        drop(applying);
        assert_eq!(cache.get(&1, cache.stand(&progress)), None);
        assert_eq!(cache.get(&2, cache.stand(&progress)), None);
        cache.put(1, cache.stand(&progress), "ended at 12");
        assert_eq!(cache.get(&1, cache.stand(&progress)), Some("ended at 12"));
    }

    #[test]
    fn a_stream_cache_keeps_nothing_across_an_epoch_or_without_the_lock() {
        let (progress, w) = working_roomchat();
        let cache = StreamCache::<i64, &str>::new("roomchat", 16);
        cache.put(1, "1".into(), cache.stand(&progress), "kept");
        // a rebuild's swap (or a moved checkpoint) at the same position
        progress.forget("roomchat");
        assert_eq!(cache.get(&progress, &1), None);

        cache.put(1, "1".into(), cache.stand(&progress), "kept");
        assert_eq!(cache.get(&progress, &1), Some("kept"));
        w.working.store(false, Ordering::Relaxed);
        assert_eq!(
            cache.get(&progress, &1),
            None,
            "another process may work it now"
        );
        assert_eq!(cache.stand(&progress), None);
        cache.put(2, "2".into(), cache.stand(&progress), "not kept");
        w.working.store(true, Ordering::Relaxed);
        assert_eq!(cache.get(&progress, &2), None);

        // past the streams it can remember, a new epoch
        cache.put(1, "1".into(), cache.stand(&progress), "kept");
        let many: Vec<String> = (0..=MAX_TOUCHED_STREAMS).map(|i| format!("x{i}")).collect();
        progress.touch("roomchat", at(11), many.iter().map(String::as_str));
        assert_eq!(cache.get(&progress, &1), None);
    }

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

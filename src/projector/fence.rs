//! Read-your-writes on the next read instead of on the write (a "fence",
//! as MongoDB's causal sessions have one per session, here one per read
//! model): a message command answers once its events are durable and
//! raises its read models' fences to its position; every authenticated
//! request (and every read of a surface's public pages) first waits until
//! the read models it may read include every write answered so far — an
//! in-memory compare when they do. So nobody, the writer or anyone else,
//! reads a state older than an answer given, and the writer no longer
//! waits for a projector batch after each write. A command defers only
//! when others are already waiting for the same read models (under load);
//! a lone command waits for its batch as before, which costs it nothing
//! more than the next read would.
//!
//! Fences live in one process, so a process defers only while it is the
//! only server on the database (`start_presence`): with others, a command
//! waits for its read models before answering, as before. A process that
//! may have missed another's deferred writes (it started beside another,
//! saw the set of servers change, or lost its view of it) also probes the
//! heads of the deferring read models on every such request, until every
//! deferral it could have missed is projected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use projections::Projector;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Progress;
use crate::store::LogPosition;

/// The application name of each server's presence connection.
pub const PRESENCE_APP: &str = "tidelog-server";
/// The read models whose writes may be deferred: room chat's, Chat8's
/// social graph and messages, the live rooms' viewer chat, and a VIP
/// payment's (the ledger's and the live rooms' access), and a card
/// redeem's and an operator's adjustment (the ledger's).
pub const DEFERRING: &[&str] = &["roomchat", "social", "livechat", "ledger", "live"];
/// How often a server counts the servers.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);

pub struct Fences {
    /// `TIDELOG_READ_YOUR_WRITES=read`
    enabled: bool,
    /// this process is the only server on the database
    alone: AtomicBool,
    /// probe the deferring read models' heads until then
    probe_until: Mutex<Instant>,
    /// per read model, the newest write answered before it was projected
    raised: Mutex<HashMap<&'static str, LogPosition>>,
    /// commands waiting for their read models now
    settling: AtomicUsize,
    /// the read models commands may defer (probed by a process that may
    /// have missed another's deferrals)
    deferring: Vec<Arc<dyn Projector>>,
    timeout: Duration,
}

impl Fences {
    /// `deferring`: the projectors of every read model a command may defer.
    pub fn new(enabled: bool, deferring: Vec<Arc<dyn Projector>>, timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            enabled,
            alone: AtomicBool::new(false),
            probe_until: Mutex::new(Instant::now()),
            raised: Mutex::default(),
            settling: AtomicUsize::new(0),
            deferring,
            timeout,
        })
    }

    /// Fences that never defer (every command waits for its read models).
    pub fn off() -> Arc<Self> {
        Self::new(false, Vec::new(), Duration::ZERO)
    }

    /// How long after a change of the servers another may still have
    /// deferrals unprojected: until it learns of the change, and then for
    /// as long as a command would have waited.
    fn window(timeout: Duration) -> Duration {
        2 * PRESENCE_EVERY + timeout
    }

    /// Raises the fences of `names` to `pos` instead of waiting now;
    /// `false` when the caller must wait now: another server may take the
    /// next request, or deferring is off, or nothing else is waiting for
    /// these read models (a lone command waits for its batch as before;
    /// under load its wait would only lengthen everyone's).
    pub fn defer(&self, progress: &Progress, names: &[&'static str], pos: LogPosition) -> bool {
        if !self.enabled
            || !self.alone.load(Ordering::Acquire)
            || !names
                .iter()
                .all(|n| self.deferring.iter().any(|p| p.name() == *n))
        {
            return false;
        }
        let mut raised = self.raised.lock().unwrap();
        raised.retain(|n, at| progress.checkpoint(n) < *at);
        let busy = self.settling.load(Ordering::Acquire) > 0
            || names.iter().any(|n| raised.contains_key(n));
        if !busy {
            return false;
        }
        for n in names {
            let at = raised.entry(n).or_default();
            *at = (*at).max(pos);
        }
        true
    }

    /// Counts a command waiting for its read models, until dropped.
    pub fn settling(&self) -> Settling<'_> {
        self.settling.fetch_add(1, Ordering::AcqRel);
        Settling(self)
    }

    /// Waits until every write answered so far is in its read models (at
    /// most the read-your-writes timeout; `false` then, logged).
    pub async fn wait(&self, pool: &PgPool, progress: &Progress) -> bool {
        if !self.enabled {
            return true;
        }
        let behind: Vec<(&'static str, LogPosition)> = {
            let mut raised = self.raised.lock().unwrap();
            raised.retain(|n, at| progress.checkpoint(n) < *at);
            raised.iter().map(|(n, at)| (*n, *at)).collect()
        };
        let mut caught_up = true;
        for (name, at) in behind {
            caught_up &= progress.wait_for(pool, &[name], at, self.timeout).await;
        }
        if Instant::now() < *self.probe_until.lock().unwrap() {
            // another server's deferrals: their heads
            caught_up &= super::wait_caught_up(pool, progress, &self.deferring, self.timeout)
                .await
                .unwrap_or(false);
        }
        if !caught_up {
            tracing::warn!(
                "read models did not catch up with the writes answered in time; reading anyway"
            );
        }
        caught_up
    }

    /// `count`: the servers on the database (`None`: unknown); `last`: the
    /// count before (`None`: this is the first).
    fn servers_seen(&self, count: Option<i64>, last: &mut Option<Option<i64>>) {
        // alone from the start: whatever was written before, the startup's
        // catch-up waited for
        let alone_from_start = last.is_none() && count == Some(1);
        if !alone_from_start && (count.is_none() || Some(count) != *last) {
            *self.probe_until.lock().unwrap() = Instant::now() + Self::window(self.timeout);
        }
        self.alone.store(count == Some(1), Ordering::Release);
        *last = Some(count);
    }
}

/// A command waiting for its read models (`Fences::settling`).
pub struct Settling<'a>(&'a Fences);

impl Drop for Settling<'_> {
    fn drop(&mut self) {
        self.0.settling.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The read models whose writes a server may defer, of `all` projectors.
pub fn deferring(all: &[Arc<dyn Projector>]) -> Vec<Arc<dyn Projector>> {
    all.iter()
        .filter(|p| DEFERRING.contains(&p.name()))
        .cloned()
        .collect()
}

/// Holds this server's presence connection and counts the servers on the
/// database every second, until shutdown. Returns once the first count is
/// in (the server serves after that).
pub async fn start_presence(
    connect: PgConnectOptions,
    fences: Arc<Fences>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut first = Some(first_tx);
        let mut last = None;
        loop {
            let conn = connect
                .clone()
                .application_name(PRESENCE_APP)
                .connect()
                .await;
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "presence connection");
                    fences.servers_seen(None, &mut last);
                    first.take().map(|f| f.send(()));
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(PRESENCE_EVERY) => continue,
                    }
                }
            };
            loop {
                let count: sqlx::Result<i64> = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE application_name = $1 AND datname = current_database()",
                )
                .bind(PRESENCE_APP)
                .fetch_one(&mut conn)
                .await;
                let failed = count.is_err();
                fences.servers_seen(count.ok(), &mut last);
                first.take().map(|f| f.send(()));
                if failed {
                    break;
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(PRESENCE_EVERY) => {}
                }
            }
        }
    });
    let _ = first_rx.await;
    handle
}

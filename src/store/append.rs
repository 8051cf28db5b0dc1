//! Group commit: the appends that commands of this process make at the same
//! time go into the event store as one multi-row INSERT — one statement,
//! one transaction, one WAL flush for all of them — instead of one each.
//! Each append is still all or nothing on its own: when a group's INSERT
//! fails (a lost optimistic race, a unique key taken, a duplicate wallet
//! operation), nothing of it was written and every append of the group is
//! tried again alone, so each gets its own answer.
//!
//! Appends of one stream are pipelined: `Store` decides a stream's next
//! command on the state its previous command left (in the cache) as soon
//! as that command's rows are queued here, without waiting for their
//! commit. So the appends of a stream keep their order here: rows of one
//! stream go in one group in the order they came, and a stream whose rows
//! are in a flushing group waits for the next group. Every append carries
//! the epoch of the cached state it was decided on; when one fails, its
//! epoch dies, and every append decided on top of it (queued, or still
//! arriving) fails as superseded and is decided again on a reloaded state.
//!
//! A few flushers at most run at once; an append that finds them all busy
//! waits in the queue and goes with the next group, so groups grow with
//! the load by themselves. Flushes run as their own tasks: a request that
//! is dropped halfway cannot cancel another command's append.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{oneshot, Notify, Semaphore};

use super::LogPosition;

/// Flushes in flight at once.
const FLUSHERS: usize = 2;

/// Dead epochs remembered; past it, the older half is forgotten (a late
/// append decided on one would then fail in the store on the chain's
/// contiguity, and be decided again all the same).
const DEAD_CAPACITY: usize = 4096;

/// Inserts the rows in order and answers where each landed.
pub(super) const INSERT_EVENTS: &str = "
WITH ins AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    SELECT t, i, s, e, v, p, m
      FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::json[], $7::json[])
           WITH ORDINALITY AS u(t, i, s, e, v, p, m, n)
     ORDER BY n
    RETURNING aggregate_type, aggregate_id, sequence, transaction_id::text::bigint AS txid, global_position)
SELECT aggregate_type, aggregate_id, sequence, txid, global_position FROM ins";

/// (aggregate type, aggregate id)
pub(super) type Stream = (String, String);

/// The rows of one or more appends, column by column.
#[derive(Default)]
pub(super) struct Rows {
    pub aggregate_types: Vec<String>,
    pub aggregate_ids: Vec<String>,
    pub sequences: Vec<i64>,
    pub event_types: Vec<String>,
    pub event_versions: Vec<String>,
    pub payloads: Vec<Value>,
    pub metadata: Vec<Value>,
}

/// Where each row landed, by (stream, sequence).
pub(super) type Landed = HashMap<(Stream, i64), LogPosition>;

impl Rows {
    fn extend(&mut self, other: &Rows) {
        self.aggregate_types
            .extend_from_slice(&other.aggregate_types);
        self.aggregate_ids.extend_from_slice(&other.aggregate_ids);
        self.sequences.extend_from_slice(&other.sequences);
        self.event_types.extend_from_slice(&other.event_types);
        self.event_versions.extend_from_slice(&other.event_versions);
        self.payloads.extend_from_slice(&other.payloads);
        self.metadata.extend_from_slice(&other.metadata);
    }

    /// The stream these rows belong to (one append is one stream).
    pub fn stream(&self) -> Stream {
        (
            self.aggregate_types.first().cloned().unwrap_or_default(),
            self.aggregate_ids.first().cloned().unwrap_or_default(),
        )
    }

    /// Where the last of these rows landed.
    pub fn last_of(&self, landed: &Landed) -> sqlx::Result<LogPosition> {
        let last = *self.sequences.last().unwrap_or(&0);
        landed
            .get(&(self.stream(), last))
            .copied()
            .ok_or_else(|| sqlx::Error::Protocol("the append returned no position".into()))
    }

    /// Runs the INSERT on `conn` (a pool or an open transaction).
    pub async fn insert<'e, E>(&self, conn: E) -> sqlx::Result<Landed>
    where
        E: sqlx::PgExecutor<'e>,
    {
        let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(INSERT_EVENTS)
            .bind(&self.aggregate_types)
            .bind(&self.aggregate_ids)
            .bind(&self.sequences)
            .bind(&self.event_types)
            .bind(&self.event_versions)
            .bind(&self.payloads)
            .bind(&self.metadata)
            .fetch_all(conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(t, i, s, txid, position)| (((t, i), s), LogPosition { txid, position }))
            .collect())
    }
}

/// Why an append was not written.
#[derive(Debug, thiserror::Error)]
pub(super) enum AppendError {
    /// An earlier append of its stream, whose state it was decided on,
    /// failed: decide it again.
    #[error("decided on a state that was not written")]
    Superseded,
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

struct Pending {
    rows: Rows,
    stream: Stream,
    epoch: u64,
    reply: oneshot::Sender<Result<LogPosition, AppendError>>,
}

#[derive(Default)]
struct State {
    queue: Vec<Pending>,
    /// streams with rows in a flushing group
    busy: HashSet<Stream>,
    /// appends queued or flushing, per stream
    open: HashMap<Stream, usize>,
    /// per stream, the newest epoch whose append failed
    dead: HashMap<Stream, u64>,
}

impl State {
    /// Whether an append decided on `epoch` of `stream` grew from a failed one.
    fn is_dead(&self, stream: &Stream, epoch: u64) -> bool {
        self.dead.get(stream).is_some_and(|dead| epoch <= *dead)
    }

    fn eligible(&self, p: &Pending) -> bool {
        !self.busy.contains(&p.stream)
    }

    /// The queued appends of streams no flusher holds, in order; their
    /// streams become busy.
    fn take_group(&mut self) -> Vec<Pending> {
        let (group, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|p| self.eligible(p));
        self.queue = rest;
        for p in &group {
            self.busy.insert(p.stream.clone());
        }
        group
    }

    fn close(&mut self, stream: &Stream) {
        if let Some(n) = self.open.get_mut(stream) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(stream);
            }
        }
    }

    /// Kills `epoch` of `stream`: its queued appends are answered as
    /// superseded, and so are those that still arrive.
    fn kill(&mut self, stream: &Stream, epoch: u64) {
        if self.dead.len() >= DEAD_CAPACITY {
            let mut epochs: Vec<u64> = self.dead.values().copied().collect();
            epochs.sort_unstable();
            let median = epochs[epochs.len() / 2];
            self.dead.retain(|_, e| *e > median);
        }
        let newest = self.dead.entry(stream.clone()).or_insert(0);
        *newest = (*newest).max(epoch);
        let (doomed, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|p| &p.stream == stream && p.epoch <= epoch);
        self.queue = rest;
        for p in doomed {
            self.close(&p.stream);
            let _ = p.reply.send(Err(AppendError::Superseded));
        }
    }
}

pub struct Appender {
    pool: PgPool,
    state: Mutex<State>,
    flushers: Arc<Semaphore>,
    /// rung whenever an append is answered
    answered: Notify,
}

impl Appender {
    pub fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            state: Mutex::default(),
            flushers: Arc::new(Semaphore::new(FLUSHERS)),
            answered: Notify::new(),
        })
    }

    /// Appends one stream's rows, decided on a state of `epoch` (with
    /// whatever else is waiting), and answers where the last one landed.
    /// The rows are queued before the first await: a caller may let the
    /// stream's next command decide once this future has been polled once.
    pub(super) fn append(
        self: &Arc<Self>,
        rows: Rows,
        epoch: u64,
    ) -> impl std::future::Future<Output = Result<LogPosition, AppendError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let stream = rows.stream();
        {
            let mut state = self.state.lock().unwrap();
            if state.is_dead(&stream, epoch) {
                let _ = reply.send(Err(AppendError::Superseded));
            } else {
                *state.open.entry(stream.clone()).or_insert(0) += 1;
                state.queue.push(Pending {
                    rows,
                    stream,
                    epoch,
                    reply,
                });
            }
        }
        self.start_flusher();
        async move {
            answer.await.unwrap_or_else(|_| {
                Err(AppendError::Sql(sqlx::Error::Protocol(
                    "the append was lost with its flusher".into(),
                )))
            })
        }
    }

    /// Whether appends of `stream` are queued or flushing.
    pub(super) fn is_open(&self, stream: &Stream) -> bool {
        self.state.lock().unwrap().open.contains_key(stream)
    }

    /// Waits until no append of `stream` is queued or flushing (the caller
    /// holds the stream's lock, so none can start meanwhile).
    pub(super) async fn drained(&self, stream: &Stream) {
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            if !self.is_open(stream) {
                return;
            }
            answered.await;
        }
    }

    fn start_flusher(self: &Arc<Self>) {
        if let Ok(permit) = self.flushers.clone().try_acquire_owned() {
            let me = self.clone();
            tokio::spawn(async move {
                let mut permit = Some(permit);
                loop {
                    let group = me.state.lock().unwrap().take_group();
                    if group.is_empty() {
                        // an append queued after the take and before the
                        // release found no free flusher: look once more
                        // (appends of a stream another flusher holds wait
                        // for that flusher, which looks again when done)
                        drop(permit.take());
                        let waiting = {
                            let state = me.state.lock().unwrap();
                            state.queue.iter().any(|p| state.eligible(p))
                        };
                        if !waiting {
                            return;
                        }
                        match me.flushers.clone().try_acquire_owned() {
                            Ok(p) => permit = Some(p),
                            Err(_) => return,
                        }
                        continue;
                    }
                    let streams: HashSet<Stream> = group.iter().map(|p| p.stream.clone()).collect();
                    me.flush(group).await;
                    let mut state = me.state.lock().unwrap();
                    for s in &streams {
                        state.busy.remove(s);
                    }
                }
            });
        }
    }

    fn answer(&self, p: Pending, result: Result<LogPosition, AppendError>) {
        let mut state = self.state.lock().unwrap();
        if result.is_err() {
            state.kill(&p.stream, p.epoch);
        }
        state.close(&p.stream);
        drop(state);
        let _ = p.reply.send(result);
        self.answered.notify_waiters();
    }

    async fn flush(&self, group: Vec<Pending>) {
        if group.len() > 1 {
            let mut all = Rows::default();
            for p in &group {
                all.extend(&p.rows);
            }
            if let Ok(landed) = all.insert(&self.pool).await {
                for p in group {
                    let at = p.rows.last_of(&landed).map_err(AppendError::from);
                    self.answer(p, at);
                }
                return;
            }
            // nothing of the group was written: each alone, for its own
            // answer, a stream's appends one after another in their order
        }
        let mut streams: Vec<Vec<Pending>> = Vec::new();
        for p in group {
            match streams.iter_mut().find(|s| s[0].stream == p.stream) {
                Some(s) => s.push(p),
                None => streams.push(vec![p]),
            }
        }
        let alone = streams.into_iter().map(|appends| async move {
            for p in appends {
                if self.superseded(&p) {
                    self.answer(p, Err(AppendError::Superseded));
                    continue;
                }
                let at = match p.rows.insert(&self.pool).await {
                    Ok(landed) => p.rows.last_of(&landed).map_err(AppendError::from),
                    Err(e) => Err(AppendError::Sql(e)),
                };
                self.answer(p, at);
            }
        });
        futures::future::join_all(alone).await;
    }

    fn superseded(&self, p: &Pending) -> bool {
        self.state.lock().unwrap().is_dead(&p.stream, p.epoch)
    }
}

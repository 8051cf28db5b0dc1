//! An event store that keeps each stream's last state in memory: loading a
//! stream this process wrote last costs nothing instead of its snapshot
//! plus up to 99 events decoded from JSON — the cost that bounded hot rooms
//! and wallets. The state is installed when a command's rows are queued,
//! before they are written, so the stream's next command can decide on it
//! at once (see `append`); it carries the epoch of the load it grew from,
//! and a failed append forgets it. Whether another process appended
//! meanwhile is found out by the optimistic lock itself: the next sequence
//! number is then taken, the commit fails, the stream is forgotten and the
//! conflict's retry reloads it. A command that appends nothing (refused,
//! or nothing to do) cannot be caught that way, so `Freshness::confirm`
//! asks the store once for those (one index probe), after the appends its
//! decision rested on were written, and the command runs again if the
//! state was stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use sqlx::PgPool;

use super::append::Appender;
use super::repo::Repository;
use super::turn::{self, Decided};

/// Streams kept per aggregate type; past it, half are dropped.
const CAPACITY: usize = 4096;

struct Cached<A> {
    aggregate: A,
    sequence: usize,
    snapshot: Option<usize>,
    epoch: u64,
}

type Streams<A> = Arc<Mutex<HashMap<String, Cached<A>>>>;

/// The newest sequence number of a stream in the store (0: none).
async fn head(pool: &PgPool, aggregate_type: &str, aggregate_id: &str) -> sqlx::Result<usize> {
    // in primary-key order: `max(sequence)` let a small table's plan walk
    // `events_type_log_order` and filter the type's events
    let head: Option<i64> = sqlx::query_scalar(
        "SELECT sequence FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
          ORDER BY sequence DESC LIMIT 1",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_optional(pool)
    .await?;
    Ok(head.unwrap_or(0) as usize)
}

/// Checks a stream against the store after a command that appended
/// nothing.
pub struct Freshness<A> {
    pool: PgPool,
    cache: Streams<A>,
}

impl<A: Aggregate> Freshness<A> {
    /// Whether the state a command was decided on (under the stream's
    /// lock, once the appends queued before it were answered) is the
    /// stream's newest; if not, the stream is forgotten (the caller runs
    /// the command again on the reloaded stream).
    pub(super) async fn confirm(&self, aggregate_id: &str, decided: Decided) -> sqlx::Result<bool> {
        if !decided.from_cache && !decided.open {
            // just read from the store, with nothing of ours on the way
            return Ok(true);
        }
        if decided.from_cache {
            let alive = self
                .cache
                .lock()
                .unwrap()
                .get(aggregate_id)
                .is_some_and(|c| c.epoch == decided.epoch);
            if !alive {
                // an append it rested on failed
                return Ok(false);
            }
        }
        let fresh = head(&self.pool, A::TYPE, aggregate_id).await? == decided.sequence;
        if !fresh {
            forget_if(&self.cache, aggregate_id, decided.epoch);
        }
        Ok(fresh)
    }
}

/// Forgets a stream's cached state if it still grows from `epoch`.
fn forget_if<A>(cache: &Streams<A>, aggregate_id: &str, epoch: u64) {
    let mut cache = cache.lock().unwrap();
    if cache.get(aggregate_id).is_some_and(|c| c.epoch == epoch) {
        cache.remove(aggregate_id);
    }
}

pub struct CachingEventStore<A: Aggregate> {
    inner: PersistedEventStore<Repository, A>,
    pool: PgPool,
    /// 0: no snapshots
    snapshot_size: usize,
    cache: Streams<A>,
    appender: Arc<Appender>,
}

impl<A: Aggregate + Clone> CachingEventStore<A> {
    pub fn new(pool: PgPool, snapshot_size: usize, appender: Arc<Appender>) -> Self {
        let repo = Repository::new(pool.clone(), appender.clone());
        let inner = if snapshot_size == 0 {
            PersistedEventStore::new_event_store(repo)
        } else {
            PersistedEventStore::new_snapshot_store(repo, snapshot_size)
        };
        Self {
            inner,
            pool,
            snapshot_size,
            cache: Streams::default(),
            appender,
        }
    }

    pub fn freshness(&self) -> Freshness<A> {
        Freshness {
            pool: self.pool.clone(),
            cache: self.cache.clone(),
        }
    }

    /// Whether `PersistedEventStore::commit` writes a snapshot for these
    /// events (its rule, which cqrs-es keeps private).
    fn snapshots(&self, current_sequence: usize, num_events: usize) -> bool {
        self.snapshot_size > 0
            && num_events >= self.snapshot_size - (current_sequence % self.snapshot_size)
    }
}

impl<A: Aggregate + Clone + 'static> EventStore<A> for CachingEventStore<A> {
    type AC = EventStoreAggregateContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        self.inner.load_events(aggregate_id).await
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<EventStoreAggregateContext<A>, AggregateError<A::Error>> {
        let open = self
            .appender
            .is_open(&(A::TYPE.to_owned(), aggregate_id.to_owned()));
        let cached = self.cache.lock().unwrap().get(aggregate_id).map(|c| {
            (
                EventStoreAggregateContext {
                    aggregate_id: aggregate_id.to_owned(),
                    aggregate: c.aggregate.clone(),
                    current_sequence: c.sequence,
                    current_snapshot: c.snapshot,
                },
                c.epoch,
            )
        });
        let (context, epoch, from_cache) = match cached {
            Some((context, epoch)) => (context, epoch, true),
            None => (
                self.inner.load_aggregate(aggregate_id).await?,
                turn::new_epoch(),
                false,
            ),
        };
        if let Some(turn) = turn::current() {
            turn.decided_on(Decided {
                epoch,
                sequence: context.current_sequence,
                from_cache,
                open,
            });
        }
        Ok(context)
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: EventStoreAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        // cqrs-es commits even a decision that produced nothing: leave the
        // cached stream as it is (`Freshness::confirm` checks that decision)
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let aggregate_id = context.aggregate_id.clone();
        let epoch = turn::current().map_or_else(turn::new_epoch, |t| t.decided().epoch);
        // the context's aggregate is the state after `handle`, whose sink
        // applied each event already: applying them again doubled what
        // `apply` accumulates (a viewer's message times, a wallet's recent
        // operations)
        let mut next = Cached {
            aggregate: context.aggregate.clone(),
            sequence: context.current_sequence + events.len(),
            snapshot: context.current_snapshot,
            epoch,
        };
        if self.snapshots(context.current_sequence, events.len()) {
            next.snapshot = Some(next.snapshot.map_or(1, |s| s + 1));
        }
        {
            // installed before the append, which lets the stream's next
            // command decide on it as soon as the rows are queued
            let mut cache = self.cache.lock().unwrap();
            if cache.len() >= CAPACITY {
                let drop: Vec<String> = cache.keys().take(CAPACITY / 2).cloned().collect();
                for k in drop {
                    cache.remove(&k);
                }
            }
            cache.insert(aggregate_id.clone(), next);
        }
        let envelopes = self
            .inner
            .commit(events, context, metadata)
            .await
            .inspect_err(|_| forget_if(&self.cache, &aggregate_id, epoch))?;
        if let Some(turn) = turn::current() {
            turn.appended(
                envelopes
                    .iter()
                    .map(|e| e.payload.clone())
                    .collect::<Vec<A::Event>>(),
            );
        }
        Ok(envelopes)
    }
}

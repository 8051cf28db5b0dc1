//! An event store that keeps each stream's last state in memory: loading a
//! stream this process wrote last costs nothing instead of its snapshot
//! plus up to 99 events decoded from JSON — the cost that bounded hot rooms
//! and wallets. Whether another process appended meanwhile is found out by
//! the optimistic lock itself: the next sequence number is then taken, the
//! commit fails, the stream is forgotten and the conflict's retry reloads
//! it. A command that appends nothing (refused, or nothing to do) cannot be
//! caught that way, so `Freshness::confirm` asks the store once for those
//! (one index probe), and the command runs again if the state was stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use sqlx::PgPool;

use super::append::Appender;
use super::repo::{Positions, Repository};

/// Streams kept per aggregate type; past it, half are dropped.
const CAPACITY: usize = 4096;

struct Cached<A> {
    aggregate: A,
    sequence: usize,
    snapshot: Option<usize>,
    /// handed to a command without asking the store
    served: bool,
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

/// Checks a cached stream against the store after a command that appended
/// nothing.
pub struct Freshness<A> {
    pool: PgPool,
    cache: Streams<A>,
}

impl<A: Aggregate> Freshness<A> {
    /// Whether the state the last command on this stream decided on was
    /// the stream's newest; if not, the stream is forgotten (the caller
    /// runs the command again on the reloaded stream).
    pub async fn confirm(&self, aggregate_id: &str) -> sqlx::Result<bool> {
        let served = self
            .cache
            .lock()
            .unwrap()
            .get(aggregate_id)
            .filter(|c| c.served)
            .map(|c| c.sequence);
        let Some(sequence) = served else {
            return Ok(true);
        };
        let fresh = head(&self.pool, A::TYPE, aggregate_id).await? == sequence;
        let mut cache = self.cache.lock().unwrap();
        if fresh {
            if let Some(c) = cache.get_mut(aggregate_id) {
                c.served = false;
            }
        } else {
            cache.remove(aggregate_id);
        }
        Ok(fresh)
    }
}

pub struct CachingEventStore<A: Aggregate> {
    inner: PersistedEventStore<Repository, A>,
    pool: PgPool,
    /// 0: no snapshots
    snapshot_size: usize,
    cache: Streams<A>,
}

impl<A: Aggregate + Clone> CachingEventStore<A> {
    pub fn new(
        pool: PgPool,
        snapshot_size: usize,
        positions: Positions,
        appender: Arc<Appender>,
    ) -> Self {
        let repo = Repository::new(pool.clone(), positions, appender);
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
        }
    }

    pub fn freshness(&self) -> Freshness<A> {
        Freshness {
            pool: self.pool.clone(),
            cache: self.cache.clone(),
        }
    }

    fn forget(&self, aggregate_id: &str) {
        self.cache.lock().unwrap().remove(aggregate_id);
    }

    /// Whether `PersistedEventStore::commit` writes a snapshot for these
    /// events (its rule, which cqrs-es keeps private).
    fn snapshots(&self, current_sequence: usize, num_events: usize) -> bool {
        self.snapshot_size > 0
            && num_events >= self.snapshot_size - (current_sequence % self.snapshot_size)
    }
}

impl<A: Aggregate + Clone> EventStore<A> for CachingEventStore<A> {
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
        if let Some(c) = self.cache.lock().unwrap().get_mut(aggregate_id) {
            c.served = true;
            return Ok(EventStoreAggregateContext {
                aggregate_id: aggregate_id.to_owned(),
                aggregate: c.aggregate.clone(),
                current_sequence: c.sequence,
                current_snapshot: c.snapshot,
            });
        }
        self.inner.load_aggregate(aggregate_id).await
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: EventStoreAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        // cqrs-es commits even a decision that produced nothing: leave the
        // cached stream as it is, so that `Freshness::confirm` still knows
        // it served that decision (re-caching it here marked it unserved,
        // and a no-op decided on a stale state was taken as fresh)
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let aggregate_id = context.aggregate_id.clone();
        let mut next = Cached {
            aggregate: context.aggregate.clone(),
            sequence: context.current_sequence,
            snapshot: context.current_snapshot,
            served: false,
        };
        if self.snapshots(context.current_sequence, events.len()) {
            next.snapshot = Some(next.snapshot.map_or(1, |s| s + 1));
        }
        match self.inner.commit(events, context, metadata).await {
            Ok(envelopes) => {
                // the context's aggregate is the state after `handle`, whose
                // sink applied each event already: applying them again
                // doubled what `apply` accumulates (a viewer's message
                // times, a wallet's recent operations)
                if let Some(last) = envelopes.last() {
                    next.sequence = last.sequence;
                }
                let mut cache = self.cache.lock().unwrap();
                if cache.len() >= CAPACITY {
                    let drop: Vec<String> = cache.keys().take(CAPACITY / 2).cloned().collect();
                    for k in drop {
                        cache.remove(&k);
                    }
                }
                cache.insert(aggregate_id, next);
                Ok(envelopes)
            }
            Err(e) => {
                self.forget(&aggregate_id);
                Err(e)
            }
        }
    }
}

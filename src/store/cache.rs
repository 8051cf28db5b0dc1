//! An event store that keeps each stream's last state in memory. Loading a
//! stream then costs one index probe (is the stream still at the sequence
//! we know?) instead of its snapshot plus up to 99 events decoded from
//! JSON — the cost that bounded hot rooms and wallets. Anything another
//! process appended makes the probe miss and the stream load as before; a
//! failed commit forgets the stream, so a conflict's retry reloads it.

use std::collections::HashMap;
use std::sync::Mutex;

use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use sqlx::PgPool;

use super::repo::{Positions, Repository};

/// Streams kept per aggregate type; past it, half are dropped.
const CAPACITY: usize = 4096;

struct Cached<A> {
    aggregate: A,
    sequence: usize,
    snapshot: Option<usize>,
}

pub struct CachingEventStore<A: Aggregate> {
    inner: PersistedEventStore<Repository, A>,
    pool: PgPool,
    /// 0: no snapshots
    snapshot_size: usize,
    cache: Mutex<HashMap<String, Cached<A>>>,
}

impl<A: Aggregate + Clone> CachingEventStore<A> {
    pub fn new(pool: PgPool, snapshot_size: usize, positions: Positions) -> Self {
        let repo = Repository::new(pool.clone(), positions);
        let inner = if snapshot_size == 0 {
            PersistedEventStore::new_event_store(repo)
        } else {
            PersistedEventStore::new_snapshot_store(repo, snapshot_size)
        };
        Self {
            inner,
            pool,
            snapshot_size,
            cache: Mutex::new(HashMap::new()),
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

    async fn head(&self, aggregate_id: &str) -> Result<usize, AggregateError<A::Error>> {
        let head: Option<i64> = sqlx::query_scalar(
            "SELECT max(sequence) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?;
        Ok(head.unwrap_or(0) as usize)
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
        let known = self
            .cache
            .lock()
            .unwrap()
            .get(aggregate_id)
            .map(|c| c.sequence);
        if let Some(sequence) = known {
            if self.head(aggregate_id).await? == sequence {
                let cache = self.cache.lock().unwrap();
                if let Some(c) = cache.get(aggregate_id).filter(|c| c.sequence == sequence) {
                    return Ok(EventStoreAggregateContext {
                        aggregate_id: aggregate_id.to_owned(),
                        aggregate: c.aggregate.clone(),
                        current_sequence: c.sequence,
                        current_snapshot: c.snapshot,
                    });
                }
            }
        }
        self.inner.load_aggregate(aggregate_id).await
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: EventStoreAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let aggregate_id = context.aggregate_id.clone();
        let mut next = Cached {
            aggregate: context.aggregate.clone(),
            sequence: context.current_sequence,
            snapshot: context.current_snapshot,
        };
        if self.snapshots(context.current_sequence, events.len()) {
            next.snapshot = Some(next.snapshot.map_or(1, |s| s + 1));
        }
        match self.inner.commit(events, context, metadata).await {
            Ok(envelopes) => {
                for envelope in &envelopes {
                    next.aggregate.apply(envelope.payload.clone());
                    next.sequence = envelope.sequence;
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

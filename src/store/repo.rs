//! The event repository under cqrs-es: postgres-es's reads, and an append
//! of our own. postgres-es appends in an explicit transaction (BEGIN, one
//! INSERT per event, COMMIT) and cannot say where the events landed, so
//! every command paid four round trips plus a fifth to find its position.
//! Here a commit without a snapshot is one multi-row INSERT (atomic on its
//! own; the hash-chain trigger sees the statement's earlier rows) that
//! returns the position of its last event; a commit with a snapshot (every
//! 100th event of a snapshotted stream) adds the snapshot write in one
//! transaction that fails as a whole.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;

use super::append::{Appender, Rows};
use super::LogPosition;

/// Where each stream's latest append (by this process) landed, keyed by
/// (aggregate type, aggregate id); read by `Store::execute` under the
/// stream's lock.
pub type Positions = Arc<Mutex<HashMap<(String, String), LogPosition>>>;

pub struct Repository {
    inner: PostgresEventRepository,
    pool: PgPool,
    positions: Positions,
    appender: Arc<Appender>,
}

impl Repository {
    pub fn new(pool: PgPool, positions: Positions, appender: Arc<Appender>) -> Self {
        Self {
            inner: PostgresEventRepository::new(pool.clone()),
            pool,
            positions,
            appender,
        }
    }
}

/// postgres-es's mapping: a duplicate key is a lost optimistic race;
/// anything else keeps its sqlx error for `classify_store_error`.
fn persistence_error(err: sqlx::Error) -> PersistenceError {
    match &err {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => {
            PersistenceError::ConnectionError(Box::new(err))
        }
        _ => PersistenceError::UnknownError(Box::new(err)),
    }
}

impl PersistedEventRepository for Repository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.inner.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.inner
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.inner.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            // nothing new: postgres-es would still write a due snapshot,
            // but a snapshot is only due with new events
            return Ok(());
        };
        let aggregate_id = first.aggregate_id.clone();
        let stream = (A::TYPE.to_owned(), aggregate_id.clone());
        let rows = Rows {
            aggregate_types: events.iter().map(|e| e.aggregate_type.clone()).collect(),
            aggregate_ids: events.iter().map(|e| e.aggregate_id.clone()).collect(),
            sequences: events.iter().map(|e| e.sequence as i64).collect(),
            event_types: events.iter().map(|e| e.event_type.clone()).collect(),
            event_versions: events.iter().map(|e| e.event_version.clone()).collect(),
            payloads: events.iter().map(|e| e.payload.clone()).collect(),
            metadata: events.iter().map(|e| e.metadata.clone()).collect(),
        };
        let last_sequence = events.last().map_or(0, |e| e.sequence) as i64;
        let at = match snapshot_update {
            None => self
                .appender
                .append(rows)
                .await
                .map_err(persistence_error)?,
            Some((snapshot_id, payload, current_snapshot)) => {
                let mut tx = self.pool.begin().await.map_err(persistence_error)?;
                let at = rows
                    .insert(&mut *tx)
                    .await
                    .map_err(persistence_error)?
                    .get(&stream)
                    .copied()
                    .ok_or(PersistenceError::OptimisticLockError)?;
                let written = if current_snapshot == 1 {
                    sqlx::query(
                        "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(A::TYPE)
                    .bind(&snapshot_id)
                    .bind(last_sequence)
                    .bind(current_snapshot as i64)
                    .bind(&payload)
                    .execute(&mut *tx)
                    .await
                } else {
                    sqlx::query(
                        "UPDATE snapshots SET last_sequence = $3, payload = $5, current_snapshot = $4
                          WHERE aggregate_type = $1 AND aggregate_id = $2 AND current_snapshot = $6",
                    )
                    .bind(A::TYPE)
                    .bind(&snapshot_id)
                    .bind(last_sequence)
                    .bind(current_snapshot as i64)
                    .bind(&payload)
                    .bind(current_snapshot as i64 - 1)
                    .execute(&mut *tx)
                    .await
                }
                .map_err(persistence_error)?;
                if written.rows_affected() != 1 {
                    // someone else moved the snapshot on: nothing is kept
                    return Err(PersistenceError::OptimisticLockError);
                }
                tx.commit().await.map_err(persistence_error)?;
                at
            }
        };
        self.positions.lock().unwrap().insert(stream, at);
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_all_events::<A>().await
    }
}

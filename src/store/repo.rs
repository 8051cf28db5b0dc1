//! The event repository under cqrs-es: postgres-es's reads, and an append
//! of our own. postgres-es appends in an explicit transaction (BEGIN, one
//! INSERT per event, COMMIT) and cannot say where the events landed, so
//! every command paid four round trips plus a fifth to find its position.
//! Here a commit without a snapshot is one multi-row INSERT (atomic on its
//! own; the hash-chain trigger sees the statement's earlier rows) that
//! returns the position of its last event; a commit with a snapshot (every
//! 100th event of a snapshotted stream) adds the snapshot write in one
//! transaction that fails as a whole, after the stream's earlier appends
//! were written. A commit lets the stream's next command decide as soon as
//! its rows are queued (see `append`).

use std::sync::Arc;

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;

use super::append::{AppendError, Appender, Rows};
use super::turn;

pub struct Repository {
    inner: PostgresEventRepository,
    pool: PgPool,
    appender: Arc<Appender>,
}

impl Repository {
    pub fn new(pool: PgPool, appender: Arc<Appender>) -> Self {
        Self {
            inner: PostgresEventRepository::new(pool.clone()),
            pool,
            appender,
        }
    }
}

/// postgres-es's mapping: a duplicate key is a lost optimistic race (but
/// for a taken write-side key, see [`super::taken_key`]), and so
/// is a gap in the stream's chain (an append decided on a state whose rows
/// were not written, that got past `append`'s epochs); anything else keeps
/// its sqlx error for `classify_store_error`.
fn persistence_error(err: sqlx::Error) -> PersistenceError {
    match &err {
        sqlx::Error::Database(db) if super::taken_key(db.as_ref()).is_some() => {
            PersistenceError::UnknownError(Box::new(err))
        }
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::Database(db)
            if db.code().as_deref() == Some("P0001")
                && db.message().ends_with("appends must be contiguous") =>
        {
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
        let turn = turn::current();
        let at = match snapshot_update {
            None => {
                let epoch = turn
                    .as_ref()
                    .map_or_else(turn::new_epoch, |t| t.decided().epoch);
                let appended = self.appender.append(rows, epoch);
                if let Some(turn) = &turn {
                    turn.release();
                }
                appended.await.map_err(|e| match e {
                    AppendError::Superseded => PersistenceError::OptimisticLockError,
                    AppendError::Sql(e) => persistence_error(e),
                })?
            }
            Some((snapshot_id, payload, current_snapshot)) => {
                // the chain: the stream's queued rows go first (its lock
                // keeps new ones out meanwhile)
                self.appender.drained(&stream).await;
                let mut tx = self.pool.begin().await.map_err(persistence_error)?;
                let at = rows.insert(&mut *tx).await.map_err(persistence_error)?;
                let at = rows.last_of(&at).map_err(persistence_error)?;
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
        if let Some(turn) = &turn {
            turn.landed(at);
        }
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

//! Projectors (event -> read-model SQL) and the read queries over the tables
//! they maintain. The runtime that feeds them lives in the server crate.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::PgConnection;

pub mod accounts;
pub mod generation;
pub mod gifts;
pub mod ledger;
pub mod live;
pub mod positions;
pub mod roomchat;
pub mod social;

/// One row of the event store, as the projector runtime hands it over.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub global_position: i64,
    pub transaction_id: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The stored JSON text, parsed only by `decode` (straight into the
    /// event type: no `Value` tree per event).
    pub payload: Box<serde_json::value::RawValue>,
    pub metadata: Box<serde_json::value::RawValue>,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E, ProjectionError> {
        serde_json::from_str(self.payload.get()).map_err(|e| {
            ProjectionError::Payload(format!(
                "{} v{} at position {}: {e}",
                self.event_type, self.event_version, self.global_position
            ))
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("undecodable event payload: {0}")]
    Payload(String),
    #[error("projection {0} cannot do that")]
    Unsupported(&'static str),
}

/// `aggregate_types` of a projection that reads every event, whatever its
/// type (the log's numbering, `positions`).
pub const EVERY_TYPE: &[&str] = &[];

/// A batch's checkpoint move as the projector runtime makes it, for a
/// projection that applies its whole batch in the same statement
/// ([`Projector::apply_claimed`]): `cte` is a data-modifying CTE named
/// `claim` that yields a row only when the checkpoint stood where the batch
/// starts (and then moves it to the batch's end); `args` holds its
/// parameters, `$1` to `$CLAIM_ARGS`, to which the statement adds its own.
pub struct Claimed {
    pub cte: &'static str,
    pub args: PgArguments,
}

/// The parameters of [`Claimed::cte`]: a statement's own start after them.
pub const CLAIM_ARGS: usize = 10;

/// A projection: owns some read-model tables and keeps them up to date from
/// the events of some aggregate types. `apply` runs inside the batch's
/// transaction and must use unqualified table names (rebuilds redirect them
/// through `search_path`).
#[async_trait]
pub trait Projector: Send + Sync {
    fn name(&self) -> &'static str;
    /// Tables written by this projection (and only by it).
    fn tables(&self) -> &'static [&'static str];
    /// Aggregate types whose events this projection reads ([`EVERY_TYPE`]:
    /// all of them).
    fn aggregate_types(&self) -> &'static [&'static str];
    /// Whether `tidelog projections rebuild` may build its tables again
    /// (not the log's numbering, which is assigned once).
    fn rebuildable(&self) -> bool {
        true
    }
    /// Tables `apply` only inserts into (never reads or updates): a rebuild
    /// fills them without their non-unique indexes and builds those after.
    fn insert_only_tables(&self) -> &'static [&'static str] {
        &[]
    }
    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError>;

    /// Whether `apply_batch` folds a batch into a few multi-row statements
    /// (the runtime then applies whole batches, falling back to `apply`
    /// event by event to name the one that fails).
    fn folds_batches(&self) -> bool {
        false
    }

    /// The least time between the starts of two batches while events keep
    /// coming (none by default): a projection no caller waits for reads
    /// fewer, larger batches under load — each batch costs its statements
    /// and a commit whatever its size — and trails the log by at most this
    /// much more. A backlog is read without pause.
    fn batch_interval(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Whether this projection does nothing with `event` (a type it reads
    /// for its other events): a batch of nothing else only moves the
    /// checkpoint, in one statement without a transaction.
    fn ignores(&self, _event: &StoredEvent) -> bool {
        false
    }

    /// Whether `apply_claimed` applies a batch in one statement led by the
    /// checkpoint's move — one round trip, no explicit transaction. Used
    /// only for a projection never rebuilt: a rebuild's swap holds the
    /// checkpoint's row while it renames the tables, which one statement
    /// would already have opened (the runtime otherwise moves the
    /// checkpoint before any read-model write, waiting for the swap).
    fn applies_claimed(&self) -> bool {
        false
    }

    /// Applies consecutive events (at least one, in log order) as
    /// `apply_batch` does, in one statement that starts with `claim` and
    /// writes nothing unless the claim yields its row. Returns whether it
    /// did.
    async fn apply_claimed(
        &self,
        _conn: &mut PgConnection,
        _events: &[StoredEvent],
        _claim: Claimed,
    ) -> Result<bool, ProjectionError> {
        Err(ProjectionError::Unsupported(self.name()))
    }

    /// Applies consecutive events (in log order) with the same effect as
    /// `apply` on each in turn.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        for event in events {
            self.apply(conn, event).await?;
        }
        Ok(())
    }
}

/// Every projection the server runs; days and months in `tz`.
pub fn all(tz: chrono_tz::Tz) -> Vec<Arc<dyn Projector>> {
    vec![
        Arc::new(accounts::AccountsProjector),
        Arc::new(roomchat::RoomChatProjector),
        Arc::new(gifts::GiftsProjector { tz }),
        Arc::new(ledger::LedgerProjector),
        Arc::new(live::LiveProjector),
        Arc::new(live::LiveChatProjector),
        Arc::new(social::SocialProjector),
        Arc::new(generation::GenerationProjector),
        Arc::new(positions::PositionsProjector),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: serde_json::Value) -> StoredEvent {
        let raw = |v: serde_json::Value| serde_json::value::to_raw_value(&v).unwrap();
        StoredEvent {
            global_position: 42,
            transaction_id: 7,
            aggregate_type: "ChatRoom".into(),
            aggregate_id: "1".into(),
            sequence: 3,
            event_type: "MessagePosted".into(),
            event_version: "1".into(),
            payload: raw(payload),
            metadata: raw(serde_json::json!({})),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn an_undecodable_payload_names_the_event_and_its_position() {
        let err = event(serde_json::json!({"MessagePosted": {"room_id": "x"}}))
            .decode::<aggregates::ChatRoomEvent>()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("MessagePosted v1 at position 42"), "{text}");
    }

    #[test]
    fn every_projection_has_a_unique_name_and_owns_distinct_tables() {
        let all = all(chrono_tz::UTC);
        let mut names: Vec<_> = all.iter().map(|p| p.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        let mut tables: Vec<_> = all
            .iter()
            .flat_map(|p| p.tables().iter().copied())
            .collect();
        let n = tables.len();
        tables.sort();
        tables.dedup();
        assert_eq!(
            tables.len(),
            n,
            "a table written by two projections could not be rebuilt alone"
        );
    }
}

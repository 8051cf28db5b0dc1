//! Projectors (event -> read-model SQL) and the read queries over the tables
//! they maintain. The runtime that feeds them lives in the server crate.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

pub mod accounts;
pub mod roomchat;

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
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    /// The log position as the tuple projectors order by.
    pub fn log_position(&self) -> (i64, i64) {
        (self.transaction_id, self.global_position)
    }

    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E, ProjectionError> {
        serde_json::from_value(self.payload.clone()).map_err(|e| {
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
}

/// A projection: owns some read-model tables and keeps them up to date from
/// the events of some aggregate types. `apply` runs inside the batch's
/// transaction and must use unqualified table names (rebuilds redirect them
/// through `search_path`).
#[async_trait]
pub trait Projector: Send + Sync {
    fn name(&self) -> &'static str;
    /// Tables written by this projection (and only by it).
    fn tables(&self) -> &'static [&'static str];
    /// Aggregate types whose events this projection reads.
    fn aggregate_types(&self) -> &'static [&'static str];
    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError>;
}

/// Every projection the server runs.
pub fn all() -> Vec<Arc<dyn Projector>> {
    vec![
        Arc::new(accounts::AccountsProjector),
        Arc::new(roomchat::RoomChatProjector),
    ]
}

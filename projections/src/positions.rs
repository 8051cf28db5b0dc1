//! Projection "positions": numbers every event of every type, contiguous
//! from 1, in the log order every reader uses — the `(transaction_id,
//! global_position)` order below the horizon, final once read (a later
//! commit always sorts after). Analysts' `$all` positions and, less one, the
//! transparency log's leaf indexes are these numbers. Never rebuilt: the
//! numbers are assigned once (the table refuses changes).

use async_trait::async_trait;
use sqlx::PgConnection;

use crate::{ProjectionError, Projector, StoredEvent};

pub struct PositionsProjector;

#[async_trait]
impl Projector for PositionsProjector {
    fn name(&self) -> &'static str {
        "positions"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["log_positions"]
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        crate::EVERY_TYPE
    }
    fn rebuildable(&self) -> bool {
        false
    }
    fn folds_batches(&self) -> bool {
        true
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    /// One statement: the batch numbered after the last number given.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let positions: Vec<i64> = events.iter().map(|e| e.global_position).collect();
        let txids: Vec<String> = events
            .iter()
            .map(|e| e.transaction_id.to_string())
            .collect();
        sqlx::query(
            "INSERT INTO log_positions (position, global_position, transaction_id)
             SELECT (SELECT coalesce(max(position), 0) FROM log_positions) + t.n, t.gp, t.txid::xid8
               FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS t(gp, txid, n)",
        )
        .bind(&positions)
        .bind(&txids)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// The number of an event (by its `global_position`), once assigned.
pub async fn of_event(pool: &sqlx::PgPool, global_position: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT position FROM log_positions WHERE global_position = $1")
        .bind(global_position)
        .fetch_optional(pool)
        .await
}

/// The last number assigned (0: none yet).
pub async fn head(pool: &sqlx::PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM log_positions")
        .fetch_one(pool)
        .await
}

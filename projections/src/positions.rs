//! Projection "positions": numbers every event of every type, contiguous
//! from 1, in the log order every reader uses — the `(transaction_id,
//! global_position)` order below the horizon, final once read (a later
//! commit always sorts after). Analysts' `$all` positions and, less one, the
//! transparency log's leaf indexes are these numbers. Never rebuilt: the
//! numbers are assigned once (the table refuses changes).

use std::sync::OnceLock;

use async_trait::async_trait;
use sqlx::{Arguments, PgConnection};

use crate::{Claimed, ProjectionError, Projector, StoredEvent, CLAIM_ARGS};

/// Numbers the events at the positions `$positions` (with their
/// transaction ids `$txids`, as text) after the last number given.
macro_rules! number_batch {
    ($positions:literal, $txids:literal) => {
        concat!(
            "INSERT INTO log_positions (position, global_position, transaction_id)
             SELECT (SELECT coalesce(max(position), 0) FROM log_positions) + t.n, t.gp, t.txid::xid8
               FROM unnest(",
            $positions,
            "::bigint[], ",
            $txids,
            "::text[]) WITH ORDINALITY AS t(gp, txid, n)"
        )
    };
}

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
    /// Nobody's command waits for the numbers (the transparency log and
    /// the gRPC `$all` feed follow them): under load a batch every 5 ms
    /// instead of one per wake-up.
    fn batch_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(5)
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
        let (positions, txids) = columns(events);
        sqlx::query(number_batch!("$1", "$2"))
            .bind(&positions)
            .bind(&txids)
            .execute(conn)
            .await?;
        Ok(())
    }

    fn applies_claimed(&self) -> bool {
        true
    }

    /// The same statement led by the checkpoint's move: a live batch is
    /// one round trip (it was six with the transaction's own).
    async fn apply_claimed(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
        claim: Claimed,
    ) -> Result<bool, ProjectionError> {
        // its own parameters follow the claim's
        const _: () = assert!(CLAIM_ARGS == 10);
        static TEXT: OnceLock<String> = OnceLock::new();
        let text = TEXT.get_or_init(|| {
            format!(
                "WITH {}\n{}\n WHERE EXISTS (SELECT FROM claim)",
                claim.cte,
                number_batch!("$11", "$12")
            )
        });
        let (positions, txids) = columns(events);
        let mut args = claim.args;
        args.add(&positions).map_err(sqlx::Error::Encode)?;
        args.add(&txids).map_err(sqlx::Error::Encode)?;
        let done = sqlx::query_with(text, args).execute(conn).await?;
        Ok(done.rows_affected() > 0)
    }
}

/// The batch's positions and transaction ids (as text: `xid8` has no
/// array encoding in sqlx).
fn columns(events: &[StoredEvent]) -> (Vec<i64>, Vec<String>) {
    events
        .iter()
        .map(|e| (e.global_position, e.transaction_id.to_string()))
        .unzip()
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

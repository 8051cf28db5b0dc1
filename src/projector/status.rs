//! What `tidelog projections status` and `/healthz` report.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

#[derive(Debug, Clone, Default, serde::Serialize, sqlx::FromRow)]
pub struct ProjectionStatus {
    pub name: String,
    pub last_txid: i64,
    pub last_position: i64,
    pub events_applied: i64,
    /// Events of this projection's types not applied yet.
    #[sqlx(skip)]
    pub lag_events: i64,
    pub updated_at: Option<DateTime<Utc>>,
    pub owner: Option<String>,
    pub failed_position: Option<i64>,
    pub last_error: Option<String>,
    pub failed_at: Option<DateTime<Utc>>,
    pub retries: i32,
    /// "held back by xid N since T" when an old transaction holds the horizon.
    #[sqlx(skip)]
    pub held_back: Option<String>,
    #[sqlx(skip)]
    pub held_back_by_xid: Option<String>,
    #[sqlx(skip)]
    pub held_back_since: Option<DateTime<Utc>>,
}

pub async fn status(pool: &PgPool) -> sqlx::Result<Vec<ProjectionStatus>> {
    // The oldest transaction with an xid anywhere in the cluster sets the horizon.
    let holder: Option<(String, Option<DateTime<Utc>>, Option<String>)> = sqlx::query_as(
        "SELECT backend_xid::text, xact_start, datname::text FROM pg_stat_activity
          WHERE backend_xid IS NOT NULL AND xact_start < now() - interval '1 second'
          ORDER BY age(backend_xid) DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let mut out = Vec::new();
    // only names and aggregate types are read here; the zone does not matter
    for p in projections::all(chrono_tz::UTC) {
        let types: Vec<String> = p.aggregate_types().iter().map(|s| s.to_string()).collect();
        let mut row: ProjectionStatus = sqlx::query_as(
            "SELECT name, last_txid::text::bigint AS last_txid, last_position, events_applied, updated_at, owner,
                    failed_position, last_error, failed_at, retries
               FROM projection_checkpoints WHERE name = $1",
        )
        .bind(p.name())
        .fetch_optional(pool)
        .await?
        .unwrap_or_else(|| ProjectionStatus { name: p.name().into(), ..Default::default() });
        row.lag_events = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE (cardinality($1::text[]) = 0 OR aggregate_type = ANY($1))
                AND (transaction_id, global_position) > ($2::text::xid8, $3)",
        )
        .bind(&types)
        .bind(row.last_txid.to_string())
        .bind(row.last_position)
        .fetch_one(pool)
        .await?;
        if let (Some((xid, since, db)), true) = (&holder, row.lag_events > 0) {
            row.held_back_by_xid = Some(xid.clone());
            row.held_back_since = *since;
            row.held_back = Some(format!(
                "held back by xid {xid} since {} (database {})",
                since.map(|t| t.to_rfc3339()).unwrap_or_default(),
                db.clone().unwrap_or_default()
            ));
        }
        out.push(row);
    }
    Ok(out)
}

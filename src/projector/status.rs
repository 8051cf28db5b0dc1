//! What `tidelog projections status`, `/healthz` and `/admin/projections` report.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub last_txid: i64,
    pub last_position: i64,
    pub events_applied: i64,
    /// Events of this projection's types not applied yet.
    pub lag_events: i64,
    pub updated_at: Option<DateTime<Utc>>,
    pub owner: Option<String>,
    pub failed_position: Option<i64>,
    pub last_error: Option<String>,
    pub failed_at: Option<DateTime<Utc>>,
    pub retries: i32,
    /// "held back by xid N since T" when an old transaction holds the horizon.
    pub held_back: Option<String>,
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
    for p in projections::all() {
        let types: Vec<String> = p.aggregate_types().iter().map(|s| s.to_string()).collect();
        let row: Option<(
            i64,
            i64,
            i64,
            DateTime<Utc>,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<DateTime<Utc>>,
            i32,
        )> = sqlx::query_as(
            "SELECT last_txid::text::bigint, last_position, events_applied, updated_at, owner,
                        failed_position, last_error, failed_at, retries
                   FROM projection_checkpoints WHERE name = $1",
        )
        .bind(p.name())
        .fetch_optional(pool)
        .await?;
        let (txid, pos) = row.as_ref().map(|r| (r.0, r.1)).unwrap_or((0, 0));
        let lag: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_type = ANY($1)
                AND (transaction_id, global_position) > ($2::text::xid8, $3)",
        )
        .bind(&types)
        .bind(txid.to_string())
        .bind(pos)
        .fetch_one(pool)
        .await?;
        let held_back = match (&holder, lag > 0) {
            (Some((xid, since, db)), true) => Some(format!(
                "held back by xid {xid} since {} (database {})",
                since.map(|t| t.to_rfc3339()).unwrap_or_default(),
                db.clone().unwrap_or_default()
            )),
            _ => None,
        };
        out.push(match row {
            Some((_, _, applied, updated, owner, fpos, err, fat, retries)) => ProjectionStatus {
                name: p.name().into(),
                last_txid: txid,
                last_position: pos,
                events_applied: applied,
                lag_events: lag,
                updated_at: Some(updated),
                owner,
                failed_position: fpos,
                last_error: err,
                failed_at: fat,
                retries,
                held_back,
            },
            None => ProjectionStatus {
                name: p.name().into(),
                last_txid: 0,
                last_position: 0,
                events_applied: 0,
                lag_events: lag,
                updated_at: None,
                owner: None,
                failed_position: None,
                last_error: None,
                failed_at: None,
                retries: 0,
                held_back,
            },
        });
    }
    Ok(out)
}

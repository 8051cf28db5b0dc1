//! Which process connects which room: a lease per room in PostgreSQL,
//! renewed while held, taken by another process once it lapses (its holder
//! died). Every process that runs the collector says so every few seconds
//! (`bili_collectors`), so the rooms are shared out among the live ones.

use std::time::Duration;

use sqlx::PgPool;

/// What a holder reports with each renewal.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub room_id: i64,
    pub connected_since: Option<chrono::DateTime<chrono::Utc>>,
    pub last_message_at: Option<chrono::DateTime<chrono::Utc>>,
    pub reconnects: i64,
    pub messages: i64,
    pub last_error: Option<String>,
}

/// Says this process runs the collector; returns how many do (itself
/// included).
pub async fn heartbeat(pool: &PgPool, node: &str, ttl: Duration) -> sqlx::Result<i64> {
    sqlx::query(
        "INSERT INTO bili_collectors (node, seen_at) VALUES ($1, now())
         ON CONFLICT (node) DO UPDATE SET seen_at = now()",
    )
    .bind(node)
    .execute(pool)
    .await?;
    sqlx::query_scalar(
        "SELECT count(*) FROM bili_collectors WHERE seen_at > now() - make_interval(secs => $1)",
    )
    .bind(ttl.as_secs_f64())
    .fetch_one(pool)
    .await
}

/// Takes the room's lease if it is free, lapsed, or already this node's.
pub async fn acquire(pool: &PgPool, room_id: i64, node: &str, ttl: Duration) -> sqlx::Result<bool> {
    let got: Option<i64> = sqlx::query_scalar(
        "INSERT INTO bili_collector_leases (room_id, holder, expires_at, acquired_at)
         VALUES ($1, $2, now() + make_interval(secs => $3), now())
         ON CONFLICT (room_id) DO UPDATE
            SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at,
                acquired_at = CASE WHEN bili_collector_leases.holder = EXCLUDED.holder
                                   THEN bili_collector_leases.acquired_at ELSE now() END
          WHERE bili_collector_leases.expires_at < now()
             OR bili_collector_leases.holder = EXCLUDED.holder
         RETURNING room_id",
    )
    .bind(room_id)
    .bind(node)
    .bind(ttl.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(got.is_some())
}

/// Renews the leases this node holds, with their state; returns the rooms
/// still held (a lease lost — lapsed and taken — is not).
pub async fn renew(
    pool: &PgPool,
    node: &str,
    ttl: Duration,
    reports: &[Report],
) -> sqlx::Result<Vec<i64>> {
    let ids: Vec<i64> = reports.iter().map(|r| r.room_id).collect();
    let since: Vec<Option<chrono::DateTime<chrono::Utc>>> =
        reports.iter().map(|r| r.connected_since).collect();
    let last: Vec<Option<chrono::DateTime<chrono::Utc>>> =
        reports.iter().map(|r| r.last_message_at).collect();
    let reconnects: Vec<i64> = reports.iter().map(|r| r.reconnects).collect();
    let messages: Vec<i64> = reports.iter().map(|r| r.messages).collect();
    let errors: Vec<Option<String>> = reports.iter().map(|r| r.last_error.clone()).collect();
    sqlx::query_scalar(
        "UPDATE bili_collector_leases l
            SET expires_at = now() + make_interval(secs => $3), connected_since = r.since,
                last_message_at = r.last, reconnects = r.reconnects, messages = r.messages,
                last_error = r.error
           FROM UNNEST($1::bigint[], $4::timestamptz[], $5::timestamptz[], $6::bigint[],
                       $7::bigint[], $8::text[]) AS r(room_id, since, last, reconnects, messages, error)
          WHERE l.room_id = r.room_id AND l.holder = $2
         RETURNING l.room_id",
    )
    .bind(&ids)
    .bind(node)
    .bind(ttl.as_secs_f64())
    .bind(&since)
    .bind(&last)
    .bind(&reconnects)
    .bind(&messages)
    .bind(&errors)
    .fetch_all(pool)
    .await
}

/// Gives a room up (deleted, shared out, or this process stopping).
pub async fn release(pool: &PgPool, room_id: i64, node: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM bili_collector_leases WHERE room_id = $1 AND holder = $2")
        .bind(room_id)
        .bind(node)
        .execute(pool)
        .await?;
    Ok(())
}

/// Every room's collector, as `/admin/collector` and `tidelog gifts
/// collectors` show them.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct CollectorRow {
    pub room_id: i64,
    pub anchor_name: String,
    /// the process holding it (`host:pid`), if any holds it now
    pub holder: Option<String>,
    pub connected_since: Option<chrono::DateTime<chrono::Utc>>,
    pub last_message_at: Option<chrono::DateTime<chrono::Utc>>,
    pub reconnects: Option<i64>,
    pub messages: Option<i64>,
    pub last_error: Option<String>,
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn status(pool: &PgPool) -> sqlx::Result<Vec<CollectorRow>> {
    sqlx::query_as(
        "SELECT r.room_id, r.anchor_name,
                CASE WHEN l.expires_at > now() THEN l.holder END AS holder,
                l.connected_since, l.last_message_at, l.reconnects, l.messages, l.last_error,
                l.expires_at AS lease_expires_at
           FROM bili_rooms r LEFT JOIN bili_collector_leases l USING (room_id)
          WHERE r.monitored
          ORDER BY r.room_id",
    )
    .fetch_all(pool)
    .await
}

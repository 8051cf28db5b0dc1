//! Fixed-window rate limits kept in PostgreSQL, so every server process
//! counts the same attempts.

use std::time::Duration;

use sqlx::PgPool;

/// Counts one attempt in `bucket`; `Err(retry_after_secs)` once more than
/// `limit` attempts fall in the current window.
pub async fn hit(
    pool: &PgPool,
    bucket: &str,
    limit: i32,
    window: Duration,
) -> sqlx::Result<Result<(), u64>> {
    let secs = window.as_secs().max(1) as f64;
    let (hits, retry_after): (i32, f64) = sqlx::query_as(
        "WITH w AS (SELECT to_timestamp(floor(extract(epoch FROM now()) / $2) * $2) AS start)
         INSERT INTO rate_limit_hits (bucket, window_start, hits)
         SELECT $1, w.start, 1 FROM w
         ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limit_hits.hits + 1
         RETURNING hits, extract(epoch FROM (window_start + make_interval(secs => $2) - now()))::float8",
    )
    .bind(bucket)
    .bind(secs)
    .fetch_one(pool)
    .await?;
    if rand::random::<u8>() == 0 {
        // old windows are worthless; trim now and then
        sqlx::query("DELETE FROM rate_limit_hits WHERE window_start < now() - interval '1 day'")
            .execute(pool)
            .await?;
    }
    if hits > limit {
        Ok(Err(retry_after.ceil().max(1.0) as u64))
    } else {
        Ok(Ok(()))
    }
}

/// Like `hit` without counting: `Err(retry_after_secs)` when `bucket`
/// already has more than `limit` attempts in the current window (for limits
/// on failures, counted by `hit` only when an attempt fails).
pub async fn check(
    pool: &PgPool,
    bucket: &str,
    limit: i32,
    window: Duration,
) -> sqlx::Result<Result<(), u64>> {
    let secs = window.as_secs().max(1) as f64;
    let row: Option<(i32, f64)> = sqlx::query_as(
        "SELECT hits, extract(epoch FROM (window_start + make_interval(secs => $2) - now()))::float8
           FROM rate_limit_hits
          WHERE bucket = $1 AND window_start = to_timestamp(floor(extract(epoch FROM now()) / $2) * $2)",
    )
    .bind(bucket)
    .bind(secs)
    .fetch_optional(pool)
    .await?;
    match row {
        Some((hits, retry_after)) if hits >= limit => Ok(Err(retry_after.ceil().max(1.0) as u64)),
        _ => Ok(Ok(())),
    }
}

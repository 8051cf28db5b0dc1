//! Projection "generation" (seed 002's `/api/proxy/*`): a row per paid
//! generation job, as `draw/result` answers it and the poller works it.

use aggregates::generation::GenerationEvent;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{ProjectionError, Projector, StoredEvent};

pub struct GenerationProjector;

#[async_trait]
impl Projector for GenerationProjector {
    fn name(&self) -> &'static str {
        "generation"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["generation_jobs"]
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &["GenerationJob"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let job: Uuid = event
            .aggregate_id
            .parse()
            .map_err(|e| ProjectionError::Payload(format!("job id {}: {e}", event.aggregate_id)))?;
        use GenerationEvent as E;
        let q = match event.decode::<GenerationEvent>()? {
            E::GenerationRequested {
                owner,
                kind,
                model,
                price,
                deadline,
                at,
                ..
            } => sqlx::query(
                "INSERT INTO generation_jobs (job_id, owner_id, kind, model, price, status, deadline, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $7)",
            )
            .bind(job)
            .bind(owner)
            .bind(kind.as_str())
            .bind(model)
            .bind(price)
            .bind(deadline)
            .bind(at),
            E::GenerationSubmitted { upstream_id, at } => sqlx::query(
                "UPDATE generation_jobs SET status = 'processing', upstream_id = $2, updated_at = $3 WHERE job_id = $1",
            )
            .bind(job)
            .bind(upstream_id)
            .bind(at),
            E::GenerationProgressed { progress, at } => sqlx::query(
                "UPDATE generation_jobs SET progress = $2, updated_at = $3 WHERE job_id = $1",
            )
            .bind(job)
            .bind(progress as i32)
            .bind(at),
            E::GenerationCompleted { result_url, at } => sqlx::query(
                "UPDATE generation_jobs SET status = 'completed', progress = 100, result_url = $2, updated_at = $3
                  WHERE job_id = $1",
            )
            .bind(job)
            .bind(result_url)
            .bind(at),
            E::GenerationFailed { reason, at } => sqlx::query(
                "UPDATE generation_jobs SET status = 'failed', error = $2, updated_at = $3 WHERE job_id = $1",
            )
            .bind(job)
            .bind(reason)
            .bind(at),
            E::GenerationSettled { at, .. } => sqlx::query(
                "UPDATE generation_jobs SET settled = true, updated_at = $2 WHERE job_id = $1",
            )
            .bind(job)
            .bind(at),
        };
        q.execute(conn).await?;
        Ok(())
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub job_id: Uuid,
    pub owner_id: Uuid,
    pub kind: String,
    pub model: String,
    pub price: i64,
    pub status: String,
    pub progress: i32,
    pub upstream_id: Option<String>,
    pub result_url: Option<String>,
    pub error: Option<String>,
    pub deadline: DateTime<Utc>,
    pub settled: bool,
}

const COLUMNS: &str =
    "job_id, owner_id, kind, model, price, status, progress, upstream_id, result_url, error, deadline, settled";

pub async fn job(pool: &PgPool, job: Uuid) -> sqlx::Result<Option<JobRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM generation_jobs WHERE job_id = $1"
    ))
    .bind(job)
    .fetch_optional(pool)
    .await
}

/// Open jobs, the nearest deadline first.
pub async fn open_jobs(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<JobRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM generation_jobs WHERE status IN ('pending', 'processing')
          ORDER BY deadline LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Ended jobs whose hold is not yet closed.
pub async fn unsettled_jobs(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<JobRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM generation_jobs WHERE NOT settled AND status IN ('completed', 'failed')
          ORDER BY updated_at LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// An account's jobs still running.
pub async fn running_of(pool: &PgPool, owner: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM generation_jobs WHERE owner_id = $1 AND status IN ('pending', 'processing')",
    )
    .bind(owner)
    .fetch_one(pool)
    .await
}

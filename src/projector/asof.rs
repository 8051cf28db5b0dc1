//! As-of replay: a projection rebuilt, in a private schema, from only the
//! events recorded up to an instant — the read model as it stood then.

use indicatif::{ProgressBar, ProgressStyle};
use projections::Projector;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

use super::replay;
use crate::store::LogPosition;

/// Replays `projector` into a fresh schema and hands `read` a pool whose
/// unqualified table names resolve there; the schema is dropped afterwards.
pub async fn replay_as_of<T, F, Fut>(
    pool: &PgPool,
    connect: &PgConnectOptions,
    projector: &dyn Projector,
    until: chrono::DateTime<chrono::Utc>,
    show_progress: bool,
    read: F,
) -> anyhow::Result<T>
where
    F: FnOnce(PgPool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let schema = format!(
        "asof_{}_{}",
        projector.name(),
        chrono::Utc::now().format("%Y%m%d%H%M%S%f")
    );
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(pool)
        .await?;
    let result = async {
        for t in projector.tables() {
            sqlx::query(&format!(
                "CREATE TABLE {schema}.{t} (LIKE public.{t} INCLUDING ALL)"
            ))
            .execute(pool)
            .await?;
        }
        let types: Vec<String> = projector
            .aggregate_types()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_type = ANY($1) AND recorded_at <= $2",
        )
        .bind(&types)
        .bind(until)
        .fetch_one(pool)
        .await?;
        let bar = if show_progress {
            ProgressBar::new(total as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        bar.set_message(format!("replaying {} as of {until}", projector.name()));
        let mut cp = LogPosition::default();
        // one connection with a session-wide search_path (see rebuild)
        let mut conn = pool.acquire().await?;
        sqlx::query(&format!("SET search_path TO {schema}, public"))
            .execute(&mut *conn)
            .await?;
        let replayed = replay(
            pool,
            &mut conn,
            projector,
            &mut cp,
            1000,
            Some(until),
            |n| bar.inc(n as u64),
        )
        .await
        .map_err(|e| e.error);
        conn.close_on_drop();
        drop(conn);
        replayed?;
        bar.finish_and_clear();
        let scoped = crate::db::connect_pool(
            connect
                .clone()
                .options([("search_path", format!("{schema},public"))]),
            2,
        )
        .await?;
        let out = read(scoped.clone()).await;
        scoped.close().await;
        out
    }
    .await;
    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(pool)
        .await;
    result
}

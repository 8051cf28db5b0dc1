//! As-of replay: a projection rebuilt, in a private schema, from only the
//! events recorded up to an instant — the read model as it stood then.

use indicatif::{ProgressBar, ProgressStyle};
use projections::Projector;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

use super::replay;
use crate::store::LogPosition;

/// Replays `projectors` into a fresh schema and hands `read` a pool whose
/// unqualified table names resolve there (other tables: the live ones);
/// the schema is dropped afterwards.
pub async fn replay_as_of<T, F, Fut>(
    pool: &PgPool,
    connect: &PgConnectOptions,
    projectors: &[&dyn Projector],
    until: chrono::DateTime<chrono::Utc>,
    show_progress: bool,
    read: F,
) -> anyhow::Result<T>
where
    F: FnOnce(PgPool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let names: Vec<&str> = projectors.iter().map(|p| p.name()).collect();
    let schema = format!(
        "asof_{}_{}",
        names.join("_"),
        chrono::Utc::now().format("%Y%m%d%H%M%S%f")
    );
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(pool)
        .await?;
    let result = async {
        for t in projectors.iter().flat_map(|p| p.tables()) {
            sqlx::query(&format!(
                "CREATE TABLE {schema}.{t} (LIKE public.{t} INCLUDING ALL)"
            ))
            .execute(pool)
            .await?;
        }
        let mut types: Vec<String> = projectors
            .iter()
            .flat_map(|p| p.aggregate_types())
            .map(|s| s.to_string())
            .collect();
        types.sort();
        types.dedup();
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
        bar.set_message(format!("replaying {} as of {until}", names.join(", ")));
        // one connection with a session-wide search_path (see rebuild)
        let mut conn = pool.acquire().await?;
        sqlx::query(&format!("SET search_path TO {schema}, public"))
            .execute(&mut *conn)
            .await?;
        let mut replayed = Ok(());
        for projector in projectors {
            let mut cp = LogPosition::default();
            replayed = replay(
                pool,
                &mut conn,
                *projector,
                &mut cp,
                1000,
                Some(until),
                |n| bar.inc(n as u64),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.error);
            if replayed.is_err() {
                break;
            }
        }
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

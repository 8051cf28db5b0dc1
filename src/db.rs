//! Connecting to the database and migrating it.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

use crate::config::Config;
use crate::embedded_pg::{ClusterOptions, EmbeddedPostgres};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub const EMBEDDED_DATABASE: &str = "tidelog";

/// Where the database is: an external URL or the embedded cluster.
pub struct Database {
    pub options: PgConnectOptions,
    pub embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// Resolves `DATABASE_URL`, or starts the embedded cluster and makes sure
    /// its database exists.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        Self::open_preloading(config, &[]).await
    }

    /// [`Database::open`], a new embedded cluster preloading the libraries
    /// `preload` that the installation has (the bench's statement counts).
    pub async fn open_preloading(config: &Config, preload: &[&str]) -> anyhow::Result<Self> {
        if let Some(url) = &config.database_url {
            let options = PgConnectOptions::from_str(url.expose())
                .context("DATABASE_URL is not a valid PostgreSQL URL")?;
            return Ok(Self {
                options,
                embedded: None,
            });
        }
        let root = config.data_dir.join("postgres");
        let opts = ClusterOptions {
            bin_dir: config.postgres_bin.clone(),
            preload_if_installed: preload.iter().map(|l| l.to_string()).collect(),
            ..Default::default()
        };
        let pg =
            tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&root, &opts)).await??;
        let admin = pg.connect_options("postgres");
        let mut conn = sqlx::ConnectOptions::connect(&admin)
            .await
            .context("connecting to the embedded cluster")?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(EMBEDDED_DATABASE)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            sqlx::query(&format!("CREATE DATABASE {EMBEDDED_DATABASE}"))
                .execute(&mut conn)
                .await?;
        }
        Ok(Self {
            options: pg.connect_options(EMBEDDED_DATABASE),
            embedded: Some(pg),
        })
    }

    pub async fn pool(&self, size: u32) -> anyhow::Result<PgPool> {
        connect_pool(self.options.clone(), size).await
    }

    /// Stops the embedded cluster if this process started it.
    pub fn stop_embedded_if_started(&self) {
        if let Some(pg) = &self.embedded {
            if pg.started_here() {
                if let Err(e) = pg.stop() {
                    tracing::error!(error = %e, "stopping embedded PostgreSQL");
                }
            }
        }
    }
}

/// A read-only, repeatable-read transaction (one snapshot for every read
/// of an audit), in `snapshot` when given (exported by another such
/// transaction with `pg_export_snapshot()`, so two connections read the same
/// state).
pub async fn begin_snapshot(
    pool: &PgPool,
    snapshot: Option<&str>,
) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    if let Some(id) = snapshot {
        sqlx::query(&format!(
            "SET TRANSACTION SNAPSHOT '{}'",
            id.replace('\'', "")
        ))
        .execute(&mut *tx)
        .await?;
    }
    Ok(tx)
}

/// The text that marks an error as the database being out of reach (kept
/// through layers that carry errors as text, e.g. the event store's).
pub const UNAVAILABLE: &str = "database unavailable";

/// The database is out of reach rather than the request wrong: the
/// connection was refused, lost or not had from the pool in time, or it
/// reached a server that cannot write now (a standby, one shutting down,
/// one starting up) — as during a failover. The operation may or may not
/// have happened; a retry with the same operation id or key is safe.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| unavailable_code(&c)),
        // a proxy with no server behind it closes the connection at once
        sqlx::Error::Decode(e) => e.to_string().contains("SSLRequest"),
        _ => false,
    }
}

/// Connection exceptions, operator intervention (shutdown, starting up), a
/// read-only transaction (a demoted primary), too many connections.
fn unavailable_code(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || code == "25006" || code == "53300"
}

/// What sqlx says of the errors above, for chains that carry them past
/// the typed error (`#[error(transparent)]` wrappers skip it).
const UNAVAILABLE_TEXTS: &[&str] = &[
    "pool timed out while waiting for an open connection",
    "attempted to acquire a connection on a closed pool",
    "error communicating with database",
    "unexpected response from SSLRequest",
];

fn unavailable_link(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<sqlx::Error>().is_some_and(is_unavailable)
        || e.downcast_ref::<std::io::Error>().is_some()
        || e.downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|d| unavailable_code(d.code()))
}

/// Anywhere in an error's chain: a database error that [`is_unavailable`],
/// an I/O error, or a text marked [`UNAVAILABLE`] (or sqlx's own words).
pub fn unavailable_in(err: &anyhow::Error) -> bool {
    if err.chain().any(unavailable_link) {
        return true;
    }
    let text = format!("{err:#}");
    text.contains(UNAVAILABLE) || UNAVAILABLE_TEXTS.iter().any(|t| text.contains(t))
}

/// PostgreSQL refused a value the request carried: a NUL in text or JSON
/// (`22021`, `22P05`), which no validation let through on purpose.
pub fn bad_text_in(err: &anyhow::Error) -> bool {
    let code = |c: &str| c == "22021" || c == "22P05";
    err.chain().any(|e| {
        e.downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|d| code(d.code()))
            || matches!(e.downcast_ref::<sqlx::Error>(), Some(sqlx::Error::Database(d)) if d.code().is_some_and(|c| code(&c)))
    }) || format!("{err:#}").contains("invalid byte sequence for encoding \"UTF8\": 0x00")
        || format!("{err:#}").contains("unsupported Unicode escape sequence")
}

/// A store error's text, marked when the database was out of reach.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if unavailable_link(e) {
            return format!("{UNAVAILABLE}: {err}");
        }
        cur = e.source();
    }
    err.to_string()
}

/// A pooled connection idle longer than this is pinged before use.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// No JIT, on every session: every statement here is short, but the
/// generic plans of the `LIMIT $n` reads (the projectors' batches) carry
/// estimates past the JIT thresholds, and compiling took ~250 ms for a read
/// of 0.2 ms.
pub const NO_JIT: (&str, &str) = ("jit", "off");

pub async fn connect_pool(options: PgConnectOptions, size: u32) -> anyhow::Result<PgPool> {
    let options = options.application_name("tidelog").options([NO_JIT]);
    PgPoolOptions::new()
        .max_connections(size)
        .min_connections(1)
        // without a primary (a failover) a request waits this long for a
        // connection, then answers 503
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every idle connection it hands out by default: one
        // more round trip (and backend wake-up) per query. Only those idle
        // long enough to have gone stale are checked.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")
}

/// The server is a standby (replaying the primary's log, read-only).
pub async fn in_recovery(pool: &PgPool) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(pool)
        .await?)
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("running migrations")?;
    Ok(())
}

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

/// A pooled connection idle longer than this is pinged before use.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

pub async fn connect_pool(options: PgConnectOptions, size: u32) -> anyhow::Result<PgPool> {
    let options = options.application_name("tidelog");
    PgPoolOptions::new()
        .max_connections(size)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
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

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("running migrations")?;
    Ok(())
}

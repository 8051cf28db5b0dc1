//! Typed configuration from the environment. Secrets are wrapped so that
//! `Debug` never prints them.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono_tz::Tz;

#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Self(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`; `None` starts the embedded cluster under `data_dir`.
    pub database_url: Option<Secret>,
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    pub timezone: Tz,
    /// `TIDELOG_JWT_SECRET`; `None` generates one kept in the data directory.
    pub jwt_secret: Option<Secret>,
    pub jwt_ttl: Duration,
    /// `TIDELOG_ADMIN_TOKEN`; `None` generates one kept in the data directory.
    pub admin_token: Option<Secret>,
    pub db_pool_size: u32,
    pub projector_batch: i64,
    pub max_body_bytes: usize,
    /// How long a command waits for its projections before answering.
    pub read_your_writes_timeout: Duration,
    pub postgres_bin: Option<PathBuf>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_var<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={v:?} is invalid: {e}")),
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: None,
            data_dir: PathBuf::from("./.tidelog"),
            bind: "127.0.0.1:8080".parse().unwrap(),
            timezone: chrono_tz::Asia::Shanghai,
            jwt_secret: None,
            jwt_ttl: Duration::from_secs(86_400),
            admin_token: None,
            db_pool_size: 16,
            projector_batch: 500,
            max_body_bytes: 64 * 1024,
            read_your_writes_timeout: Duration::from_secs(5),
            postgres_bin: None,
        }
    }
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let timezone: Tz = match var("TIDELOG_TIMEZONE") {
            None => chrono_tz::Asia::Shanghai,
            Some(v) => v
                .parse()
                .map_err(|e| anyhow::anyhow!("TIDELOG_TIMEZONE={v:?} is invalid: {e}"))?,
        };
        let jwt_secret = var("TIDELOG_JWT_SECRET").map(Secret::new);
        if let Some(s) = &jwt_secret {
            if s.expose().len() < 32 {
                bail!("TIDELOG_JWT_SECRET must be at least 32 characters");
            }
        }
        let bind: SocketAddr = parse_var("TIDELOG_BIND", "127.0.0.1:8080".parse().unwrap())
            .context("TIDELOG_BIND takes host:port, e.g. 127.0.0.1:8080")?;
        Ok(Self {
            database_url: var("DATABASE_URL").map(Secret::new),
            data_dir: PathBuf::from(var("TIDELOG_DATA_DIR").unwrap_or_else(|| "./.tidelog".into())),
            bind,
            timezone,
            jwt_secret,
            jwt_ttl: Duration::from_secs(parse_var("TIDELOG_JWT_TTL_SECS", 86_400u64)?),
            admin_token: var("TIDELOG_ADMIN_TOKEN").map(Secret::new),
            db_pool_size: parse_var("TIDELOG_DB_POOL_SIZE", 16u32)?.max(2),
            projector_batch: parse_var("TIDELOG_PROJECTOR_BATCH", 500i64)?.clamp(1, 10_000),
            max_body_bytes: parse_var("TIDELOG_MAX_BODY_BYTES", 64 * 1024usize)?,
            read_your_writes_timeout: Duration::from_millis(parse_var(
                "TIDELOG_READ_YOUR_WRITES_MS",
                5_000u64,
            )?),
            postgres_bin: var("TIDELOG_POSTGRES_BIN").map(PathBuf::from),
        })
    }
}

//! The server as a library: start it on any address (port 0 in tests),
//! learn where it listens, shut it down.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::FromRef;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{shared_secret, Tokens};
use crate::config::{Config, Secret};
use crate::db::{self, Database};
use crate::identity::{Identity, Mailer};
use crate::ledger::payments::{self, Provider};
use crate::live::{self, Hub};
use crate::projector::{self, Progress, RuntimeSettings};
use crate::store::{LogPosition, Store};

/// How long a starting server waits for its read models to catch up.
const STARTUP_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub store: Arc<Store>,
    pub progress: Arc<Progress>,
    pub tokens: Arc<Tokens>,
    pub admin_token: Secret,
    pub hub: Arc<Hub>,
    pub identity: Arc<Identity>,
    /// The gift monitor's API key.
    pub api_secret: Secret,
    /// Keys card-key hashes.
    pub card_secret: Secret,
    /// The auditors' read-only token.
    pub audit_token: Secret,
    pub payment_provider: Arc<Provider>,
    /// Answers of ended months (`/gift/by_month`, `/gift/live_sessions`).
    pub gift_months: Arc<crate::http::gift::MonthCache>,
    /// Room-chat message pages, kept while their room is unchanged.
    pub room_pages: Arc<crate::http::roomchat::PageCache>,
    /// Ocean1 point histories, kept while their wallet is unchanged.
    pub point_histories: Arc<crate::http::ocean1::HistoryCache>,
    /// Room and message ids, drawn from their sequences a block at a time.
    pub sequences: Arc<crate::ids::SequenceBlocks>,
    /// What the live rooms surface keeps (presence, list answers).
    pub live_rooms: Arc<crate::http::live::Parts>,
    /// Chat8's sockets on this process.
    pub social_hub: Arc<crate::social::feed::SocialHub>,
    /// Pooled HTTP client for the generation gateway.
    pub upstream_http: reqwest::Client,
}

impl AppState {
    /// Read-your-writes: returns once the named read models include the
    /// write at `pos` (or after the configured timeout, logged).
    pub async fn settle(&self, names: &[&str], pos: Option<LogPosition>) {
        crate::core::Core::from_ref(self).settle(names, pos).await
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub pool: PgPool,
    shutdown: watch::Sender<bool>,
    hub: Arc<Hub>,
    social_hub: Arc<crate::social::feed::SocialHub>,
    http: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
    database: Database,
}

impl Server {
    /// Connects (starting the embedded cluster if no `DATABASE_URL`),
    /// migrates, starts projectors and the live feed, and serves HTTP.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let database = Database::open(&config).await?;
        let pool = database.pool(config.db_pool_size).await?;
        db::migrate(&pool).await?;
        let secret = match &config.jwt_secret {
            Some(s) => s.clone(),
            None => shared_secret(&pool, &config, "jwt_secret").await?,
        };
        let tokens = Arc::new(Tokens::new(&secret));
        // codes are keyed with the token secret, domain-separated by the HMAC input
        let identity = Arc::new(Identity::new(Mailer::from_config(&config)?, secret.clone()));
        let admin_token = match &config.admin_token {
            Some(s) => s.clone(),
            None => shared_secret(&pool, &config, "admin_token").await?,
        };
        let api_secret = match &config.api_secret {
            Some(s) => s.clone(),
            None => shared_secret(&pool, &config, "api_secret").await?,
        };
        let card_secret = match &config.card_secret {
            Some(s) => s.clone(),
            None => shared_secret(&pool, &config, "card_secret").await?,
        };
        let audit_token = match &config.audit_token {
            Some(s) => s.clone(),
            None => shared_secret(&pool, &config, "audit_token").await?,
        };
        let payment_provider = Arc::new(Provider::new(&config.payments)?);
        let progress = Progress::new();
        let hub = Arc::new(Hub::default());
        let (shutdown, shutdown_rx) = watch::channel(false);

        let mut background = vec![tokio::spawn(projector::run_listener(
            pool.clone(),
            progress.clone(),
            shutdown_rx.clone(),
        ))];
        let node = format!("{}:{}", hostname(), std::process::id());
        let settings = RuntimeSettings {
            pool: pool.clone(),
            connect: database.options.clone(),
            batch_size: config.projector_batch,
            node,
        };
        let projectors = projections::all(config.timezone);
        background.extend(projector::spawn_workers(
            settings,
            projectors.clone(),
            progress.clone(),
            shutdown_rx.clone(),
        ));
        background.push(tokio::spawn(live::run_roomchat_feed(
            pool.clone(),
            progress.clone(),
            hub.clone(),
            config.timezone,
            shutdown_rx.clone(),
        )));

        let store = Arc::new(Store::new(pool.clone()));
        background.push(tokio::spawn(projector::run_announcer(
            pool.clone(),
            progress.clone(),
            store.appended(),
            shutdown_rx.clone(),
        )));

        // read models as they were before a restart (or a crash) first
        if !projector::wait_caught_up(&pool, &progress, &projectors, STARTUP_CATCH_UP).await? {
            tracing::warn!(
                "projections still catching up after {STARTUP_CATCH_UP:?}; serving anyway"
            );
        }
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let addr = listener.local_addr()?;
        let state = AppState {
            config: Arc::new(config),
            pool: pool.clone(),
            store,
            progress,
            tokens,
            admin_token,
            hub: hub.clone(),
            identity,
            api_secret,
            card_secret,
            audit_token,
            payment_provider,
            gift_months: Arc::default(),
            room_pages: Arc::default(),
            point_histories: Arc::default(),
            sequences: Arc::default(),
            live_rooms: Arc::default(),
            social_hub: crate::social::feed::SocialHub::new(),
            upstream_http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()?,
        };
        background.push(tokio::spawn(crate::generation::run(
            crate::core::Core::from_ref(&state),
            state.upstream_http.clone(),
            shutdown_rx.clone(),
        )));
        let social_hub = state.social_hub.clone();
        background.push(tokio::spawn(crate::social::feed::run(
            crate::core::Core::from_ref(&state),
            social_hub.clone(),
            shutdown_rx.clone(),
        )));
        background.push(tokio::spawn(crate::social::presence::run(
            crate::core::Core::from_ref(&state),
            social_hub.node.clone(),
            shutdown_rx.clone(),
        )));
        background.push(tokio::spawn(payments::run_reconciler(
            state.clone(),
            std::time::Duration::from_secs(30),
            shutdown_rx.clone(),
        )));
        background.push(tokio::spawn(crate::liverooms::earnings::run(
            crate::core::Core::from_ref(&state),
            std::time::Duration::from_secs(2),
            shutdown_rx.clone(),
        )));
        let app = crate::http::router(state);
        let mut stop = shutdown_rx.clone();
        let http = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            })
            .await
        });
        tracing::info!(%addr, "tidelog listening");
        Ok(Self {
            addr,
            pool,
            shutdown,
            hub,
            social_hub,
            http,
            background,
            database,
        })
    }

    /// Graceful stop: HTTP drains, workers release their locks, and an
    /// embedded cluster this process started is stopped.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // WebSocket sessions end when their feed closes; anything else still
        // open after 5 s does not hold the process.
        self.hub.close_all();
        self.social_hub.sockets.close_all();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.http).await;
        for h in self.background {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), h).await;
        }
        self.pool.close().await;
        let db = self.database;
        let _ = tokio::task::spawn_blocking(move || db.stop_embedded_if_started()).await;
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

//! The server as a library: start it on any address (port 0 in tests),
//! learn where it listens, shut it down.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::FromRef;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::shared_secret;
use crate::config::{Config, Secret};
use crate::core::Core;
use crate::db::{self, Database};
use crate::http::admin::AdminState;
use crate::http::chat8::Chat8State;
use crate::http::gift::GiftState;
use crate::http::live::LiveSurface;
use crate::http::ocean1::Ocean1State;
use crate::http::roomchat::RoomChatState;
use crate::http::Surfaces;
use crate::identity::{Identity, Mailer};
use crate::ids::SequenceBlocks;
use crate::ledger::payments::{self, Provider};
use crate::live::Hub;
use crate::projector::fence::{self, Fences};
use crate::projector::{self, Progress, RuntimeSettings};
use crate::social::feed::SocialHub;
use crate::store::Store;

/// How often the gRPC endpoint's live feed looks for new events when no
/// projection progress is announced (it is, on every batch, here).
const GRPC_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a starting server waits for its read models to catch up.
const STARTUP_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(10);

/// What the application is built of, once, at start: the core and each
/// service's own state. Every surface's state is made from it (the
/// `FromRef` impls below) and nothing else holds it.
#[derive(Clone)]
struct AppState {
    core: Core,
    identity: Arc<Identity>,
    /// room chat's sockets on this process
    roomchat_hub: Arc<Hub>,
    /// Chat8's sockets on this process
    social_hub: Arc<SocialHub>,
    payment_provider: Arc<Provider>,
    /// room and message ids, drawn from their sequences a block at a time
    sequences: Arc<SequenceBlocks>,
    /// pooled HTTP client for the generation gateways
    upstream_http: reqwest::Client,
    secrets: Secrets,
    /// the transparency log: this process's signing key and witnesses
    tlog: Arc<crate::tlog::Log>,
}

/// The shared secrets: configured, else generated once and kept in the
/// database for every process.
#[derive(Clone)]
struct Secrets {
    admin_token: Secret,
    /// the gift monitor's API key
    api_secret: Secret,
    /// keys card-key hashes
    card_secret: Secret,
    /// the auditors' read-only token
    audit_token: Secret,
}

impl FromRef<AppState> for Core {
    fn from_ref(s: &AppState) -> Self {
        s.core.clone()
    }
}

impl FromRef<AppState> for RoomChatState {
    fn from_ref(s: &AppState) -> Self {
        RoomChatState::new(
            s.core.clone(),
            s.identity.clone(),
            s.roomchat_hub.clone(),
            s.sequences.clone(),
        )
    }
}

impl FromRef<AppState> for Chat8State {
    fn from_ref(s: &AppState) -> Self {
        Chat8State::new(s.core.clone(), s.identity.clone(), s.social_hub.clone())
    }
}

impl FromRef<AppState> for Ocean1State {
    fn from_ref(s: &AppState) -> Self {
        Ocean1State::new(
            s.core.clone(),
            s.identity.clone(),
            s.secrets.card_secret.clone(),
            s.upstream_http.clone(),
        )
    }
}

impl FromRef<AppState> for LiveSurface {
    fn from_ref(s: &AppState) -> Self {
        LiveSurface::new(
            s.core.clone(),
            s.identity.clone(),
            s.payment_provider.clone(),
        )
    }
}

impl FromRef<AppState> for GiftState {
    fn from_ref(s: &AppState) -> Self {
        GiftState::new(s.core.clone(), s.secrets.api_secret.clone())
    }
}

impl FromRef<AppState> for AdminState {
    fn from_ref(s: &AppState) -> Self {
        AdminState {
            core: s.core.clone(),
            admin_token: s.secrets.admin_token.clone(),
            audit_token: s.secrets.audit_token.clone(),
            tlog: s.tlog.clone(),
            account_ids: Default::default(),
        }
    }
}

impl AppState {
    /// Each surface's state, made once: their caches live as long as
    /// the server.
    fn surfaces(&self) -> Surfaces {
        Surfaces {
            roomchat: RoomChatState::from_ref(self),
            chat8: Chat8State::from_ref(self),
            ocean1: Ocean1State::from_ref(self),
            live: LiveSurface::from_ref(self),
            gift: GiftState::from_ref(self),
            admin: AdminState::from_ref(self),
            ops: Core::from_ref(self),
        }
    }
}

pub struct Server {
    pub addr: SocketAddr,
    /// The KurrentDB-protocol read endpoint's address (`TIDELOG_GRPC_BIND`;
    /// `None`: off).
    pub grpc_addr: Option<SocketAddr>,
    pub pool: PgPool,
    shutdown: watch::Sender<bool>,
    hub: Arc<Hub>,
    social_hub: Arc<SocialHub>,
    http: JoinHandle<std::io::Result<()>>,
    grpc: Option<crate::grpc::Endpoint>,
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
        let identity = Arc::new(Identity::new(Mailer::from_config(&config)?, secret));
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
        // the signing key from its file (never the database), generated on first start
        let tlog = Arc::new(crate::tlog::Log::open(&config)?);
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
            node: node.clone(),
        };
        let projectors = projections::all(config.timezone);
        background.extend(projector::spawn_workers(
            settings,
            projectors.clone(),
            progress.clone(),
            shutdown_rx.clone(),
        ));
        let store = Arc::new(Store::new(pool.clone()));
        background.push(tokio::spawn(projector::run_announcer(
            pool.clone(),
            progress.clone(),
            store.appended(),
            shutdown_rx.clone(),
        )));

        // the read models a command may leave for its caller's next request
        // (counted in before the catch-up below, which covers deferrals of
        // servers gone by then)
        let deferring = fence::deferring(&projectors);
        let fences = Fences::new(
            config.read_your_writes_on_read,
            deferring,
            config.read_your_writes_timeout,
        );
        background.push(
            fence::start_presence(
                database.options.clone(),
                fences.clone(),
                shutdown_rx.clone(),
            )
            .await,
        );
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
        let config = Arc::new(config);
        let core = Core {
            config: config.clone(),
            pool: pool.clone(),
            store,
            progress,
            fences,
        };
        let grpc = crate::grpc::start(
            &core,
            &config.grpc,
            crate::grpc::Settings {
                audit_token: Some(audit_token.clone()),
                poll: GRPC_POLL,
            },
            shutdown_rx.clone(),
        )
        .await?;
        let state = AppState {
            core: core.clone(),
            identity,
            roomchat_hub: hub.clone(),
            social_hub: SocialHub::new(),
            payment_provider,
            sequences: Arc::default(),
            upstream_http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()?,
            secrets: Secrets {
                admin_token,
                api_secret,
                card_secret,
                audit_token,
            },
            tlog: tlog.clone(),
        };
        if config.tlog.integrate {
            background.push(tokio::spawn(crate::tlog::integrator::run(
                core.clone(),
                tlog.clone(),
                database.options.clone(),
                node,
                shutdown_rx.clone(),
            )));
        }
        background.push(tokio::spawn(crate::tlog::signer::run(
            core.clone(),
            tlog,
            database.options.clone(),
            shutdown_rx.clone(),
        )));
        background.push(tokio::spawn(crate::http::roomchat::feed::run(
            core.clone(),
            hub.clone(),
            config.timezone,
            shutdown_rx.clone(),
        )));
        background.push(tokio::spawn(crate::generation::run(
            core.clone(),
            state.upstream_http.clone(),
            shutdown_rx.clone(),
        )));
        let social_hub = state.social_hub.clone();
        background.push(tokio::spawn(crate::social::feed::run(
            core.clone(),
            social_hub.clone(),
            shutdown_rx.clone(),
        )));
        background.push(tokio::spawn(crate::social::presence::run(
            core.clone(),
            social_hub.node.clone(),
            shutdown_rx.clone(),
        )));
        background.push(tokio::spawn(payments::run_reconciler(
            core.clone(),
            std::time::Duration::from_secs(30),
            shutdown_rx.clone(),
        )));
        background.push(tokio::spawn(crate::gifts::collector::run(
            core.clone(),
            format!("{}:{}", hostname(), std::process::id()),
            shutdown_rx.clone(),
        )));
        background.push(tokio::spawn(crate::liverooms::earnings::run(
            core.clone(),
            std::time::Duration::from_secs(2),
            shutdown_rx.clone(),
        )));
        let app = crate::http::router(&config, state.surfaces());
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
            grpc_addr: grpc.as_ref().map(|g| g.addr),
            grpc,
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
        if let Some(grpc) = self.grpc {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), grpc.stopped()).await;
        }
        for h in self.background {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), h).await;
        }
        self.pool.close().await;
        let db = self.database;
        let _ = tokio::task::spawn_blocking(move || db.stop_embedded_if_started()).await;
    }
}

/// `tidelog witness serve`: a tlog-witness on `bind`, its state in its
/// own directory.
pub struct WitnessServer {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
}

impl WitnessServer {
    pub async fn start(
        store: crate::tlog::witness_store::WitnessStore,
        bind: SocketAddr,
    ) -> anyhow::Result<Self> {
        let state = crate::http::witness::WitnessState {
            store: Arc::new(store),
        };
        let app = crate::http::witness::routes()
            .split_for_parts()
            .0
            .with_state(state)
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024));
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding {bind}"))?;
        let addr = listener.local_addr()?;
        let (shutdown, mut stop) = watch::channel(false);
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await
        });
        tracing::info!(%addr, "tidelog witness listening");
        Ok(Self {
            addr,
            shutdown,
            http,
        })
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.http).await;
    }
}

/// The KurrentDB-protocol read endpoint alone (`tidelog grpc serve`): no
/// HTTP, no projectors. Progress is heard through LISTEN on a primary and
/// polled for on a hot standby (which takes no LISTEN).
pub struct GrpcAlone {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    endpoint: crate::grpc::Endpoint,
    listener: Option<JoinHandle<()>>,
}

impl GrpcAlone {
    pub async fn start(config: &Config, pool: &PgPool, standby: bool) -> anyhow::Result<Self> {
        let core = Core::new(Arc::new(config.clone()), pool.clone());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let listener = (!standby).then(|| {
            tokio::spawn(projector::run_listener(
                pool.clone(),
                core.progress.clone(),
                shutdown_rx.clone(),
            ))
        });
        // the token is needed where there are credentials to check: over TLS
        let audit_token = match (&config.grpc.tls_cert, &config.audit_token) {
            (None, _) => None,
            (Some(_), Some(token)) => Some(token.clone()),
            (Some(_), None) => Some(shared_secret(pool, config, "audit_token").await?),
        };
        let settings = crate::grpc::Settings {
            audit_token,
            poll: if standby {
                std::time::Duration::from_millis(100)
            } else {
                GRPC_POLL
            },
        };
        let endpoint = crate::grpc::start(&core, &config.grpc, settings, shutdown_rx)
            .await?
            .ok_or_else(|| {
                anyhow::anyhow!("TIDELOG_GRPC_BIND is off: there is nothing to serve")
            })?;
        Ok(Self {
            addr: endpoint.addr,
            shutdown,
            endpoint,
            listener,
        })
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), self.endpoint.stopped()).await;
        if let Some(listener) = self.listener {
            let _ = listener.await;
        }
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

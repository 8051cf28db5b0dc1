//! Typed configuration from the environment. Secrets are wrapped so that
//! `Debug` never prints them.

use std::collections::BTreeMap;
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
    /// How long a command (or its caller's next request) waits for its
    /// projections.
    pub read_your_writes_timeout: Duration,
    /// `TIDELOG_READ_YOUR_WRITES`: `read` (default) lets a signed-in
    /// caller's message and payment commands answer once durable and makes
    /// the caller's next request wait for their read models, while this
    /// server is the only one on the database; `write` makes every command
    /// wait before answering.
    pub read_your_writes_on_read: bool,
    pub postgres_bin: Option<PathBuf>,
    /// Seed 003's access tokens (`expires_in`); `auth/refresh` extends them.
    pub access_token_ttl: Duration,
    /// `SMTP_URL` (`smtp://user:pass@host:587?tls=required`, `smtps://…`);
    /// `None` writes codes to the server log instead of mailing them.
    pub smtp_url: Option<Secret>,
    pub smtp_from: String,
    pub code_ttl: Duration,
    pub code_resend_interval: Duration,
    /// Seed 002's `invite_code`: required at registration, or optional.
    pub invite_required: bool,
    pub rate_limits: RateLimits,
    /// `API_SECRET` for the gift monitor; `None` generates one kept in the
    /// data directory.
    pub api_secret: Option<Secret>,
    /// A day counts as an effective streaming day from this much live time.
    pub effective_day_minutes: i64,
    /// Body limit of the ingestion endpoint (batches of raw messages).
    pub ingest_max_bytes: usize,
    /// `TIDELOG_CARD_SECRET` keys the card-key hashes; `None` generates one
    /// kept in the data directory.
    pub card_secret: Option<Secret>,
    /// `TIDELOG_AUDIT_TOKEN`: the auditors' read-only token for `/admin/ledger`;
    /// `None` generates one kept in the data directory.
    pub audit_token: Option<Secret>,
    pub payments: PaymentConfig,
    pub live: LiveConfig,
    /// `TIDELOG_CHAT8_AVATAR_MAX_BYTES`: Chat8 avatar uploads
    pub chat8_avatar_max_bytes: usize,
    /// `TIDELOG_CHAT8_FILE_MAX_BYTES`: Chat8 chat files
    pub chat8_file_max_bytes: usize,
    /// `TIDELOG_CHAT8_PRESENCE_GRACE_MS`: how long after a user's last
    /// socket closed they turn offline (a reload is not a flicker)
    pub chat8_presence_grace: Duration,
    /// `TIDELOG_CHAT8_PRESENCE_STALE_MS`: a process whose sockets have not
    /// beaten for this long is gone (they are beaten every third of it)
    pub chat8_presence_stale: Duration,
    pub browser: BrowserConfig,
    pub generation: GenerationConfig,
    /// The gift monitor's own Bilibili collector.
    pub collector: CollectorConfig,
    /// `TIDELOG_DAILY_REWARD_POINTS`: Ocean1's reward on an account's first
    /// heartbeat of a local day (0: none)
    pub daily_reward_points: i64,
    pub tlog: TlogConfig,
    pub grpc: GrpcConfig,
}

/// The transparency log (`src/tlog`): its signing key, checkpoints and
/// witnesses.
#[derive(Debug, Clone)]
pub struct TlogConfig {
    /// `TIDELOG_TLOG_ORIGIN`: the checkpoints' origin line and key name;
    /// unset: the name kept in the key file (generated as
    /// `tidelog.localhost/<16 hex digits>` with the key)
    pub origin: Option<String>,
    /// `TIDELOG_TLOG_KEY_FILE`: the Ed25519 signing key (never in the
    /// database); unset: `<data dir>/tlog/log.key`, generated on first start
    pub key_file: Option<PathBuf>,
    /// `TIDELOG_TLOG_CHECKPOINT_MS`: how often a checkpoint is signed when
    /// the tree grew
    pub checkpoint_interval: Duration,
    /// `TIDELOG_TLOG_BATCH`: events per integration transaction
    pub batch: i64,
    /// `TIDELOG_TLOG_INTEGRATOR`: whether this process may integrate (one
    /// process at a time does); `false` leaves it to the others
    pub integrate: bool,
    /// `TIDELOG_TLOG_WITNESSES`: `<vkey> <url>` pairs, comma-separated
    /// (tlog-witness `add-checkpoint` is posted to `<url>/add-checkpoint`)
    pub witnesses: Vec<WitnessConfig>,
    /// `TIDELOG_TLOG_WITNESS_QUORUM`: cosignatures a checkpoint needs to be
    /// served as the latest; default: every configured witness
    pub quorum: usize,
}

/// A witness the log sends its checkpoints to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessConfig {
    /// Its cosignature/v1 verifier key (`<name>+<id>+<base64>`)
    pub vkey: String,
    /// Its tlog-witness prefix, e.g. `https://witness.example/tlog`
    pub url: String,
}

impl Default for TlogConfig {
    fn default() -> Self {
        Self {
            origin: None,
            key_file: None,
            checkpoint_interval: Duration::from_secs(5),
            batch: 5_000,
            integrate: true,
            witnesses: Vec::new(),
            quorum: 0,
        }
    }
}

/// The analysts' KurrentDB-protocol read endpoint (`src/grpc`).
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// `TIDELOG_GRPC_BIND`: where it listens (`off`: nowhere). Plaintext
    /// only on a loopback address; anywhere else it needs TLS.
    pub bind: Option<SocketAddr>,
    /// `TIDELOG_GRPC_TLS_CERT` / `TIDELOG_GRPC_TLS_KEY`: PEM files of the
    /// certificate chain and its private key. With them the endpoint
    /// speaks TLS only and every read needs the auditors' token as the
    /// password of the clients' basic credentials.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// KurrentDB's own port, on loopback.
pub const DEFAULT_GRPC_BIND: &str = "127.0.0.1:2113";

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            bind: Some(DEFAULT_GRPC_BIND.parse().unwrap()),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl TlogConfig {
    fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        let witnesses = match var("TIDELOG_TLOG_WITNESSES") {
            None => Vec::new(),
            Some(raw) => parse_witnesses(&raw)?,
        };
        let quorum = parse_var("TIDELOG_TLOG_WITNESS_QUORUM", witnesses.len())?;
        if quorum > witnesses.len() {
            bail!(
                "TIDELOG_TLOG_WITNESS_QUORUM={quorum} is more than the {} witnesses configured",
                witnesses.len()
            );
        }
        Ok(Self {
            origin: var("TIDELOG_TLOG_ORIGIN").map(|o| o.trim().to_owned()),
            key_file: var("TIDELOG_TLOG_KEY_FILE").map(PathBuf::from),
            checkpoint_interval: Duration::from_millis(
                parse_var("TIDELOG_TLOG_CHECKPOINT_MS", 5_000u64)?.max(100),
            ),
            batch: parse_var("TIDELOG_TLOG_BATCH", d.batch)?.clamp(1, 50_000),
            integrate: parse_var("TIDELOG_TLOG_INTEGRATOR", true)?,
            witnesses,
            quorum,
        })
    }

    /// The signing key's file.
    pub fn key_path(&self, data_dir: &std::path::Path) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("tlog").join("log.key"))
    }
}

/// `<vkey> <url>, <vkey> <url>, ...`
pub fn parse_witnesses(raw: &str) -> anyhow::Result<Vec<WitnessConfig>> {
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let mut parts = item.split_whitespace();
        let (Some(vkey), Some(url), None) = (parts.next(), parts.next(), parts.next()) else {
            bail!("TIDELOG_TLOG_WITNESSES: {item:?} is not `<vkey> <url>`");
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("TIDELOG_TLOG_WITNESSES: {url:?} is not an http(s) URL");
        }
        if vkey.splitn(3, '+').count() != 3 {
            bail!("TIDELOG_TLOG_WITNESSES: {vkey:?} is not a vkey <name>+<id>+<key>");
        }
        out.push(WitnessConfig {
            vkey: vkey.to_owned(),
            url: url.trim_end_matches('/').to_owned(),
        });
    }
    Ok(out)
}

impl GrpcConfig {
    fn from_env() -> anyhow::Result<Self> {
        let bind = match var("TIDELOG_GRPC_BIND").as_deref().map(str::trim) {
            None => Self::default().bind,
            Some("off") | Some("none") => None,
            Some(v) => Some(v.parse().map_err(|e| {
                anyhow::anyhow!("TIDELOG_GRPC_BIND={v:?} is not host:port (or off): {e}")
            })?),
        };
        let tls_cert = var("TIDELOG_GRPC_TLS_CERT").map(PathBuf::from);
        let tls_key = var("TIDELOG_GRPC_TLS_KEY").map(PathBuf::from);
        if tls_cert.is_some() != tls_key.is_some() {
            bail!(
                "TIDELOG_GRPC_TLS_CERT and TIDELOG_GRPC_TLS_KEY go together: set both or neither"
            );
        }
        Ok(Self {
            bind,
            tls_cert,
            tls_key,
        })
    }
}

/// Seed 002's generation proxy: the GrsAI-style gateway and the prices.
#[derive(Debug, Clone)]
pub struct GenerationConfig {
    /// `GENERATION_API_URL`; unset: the endpoints answer 503
    pub api_url: Option<String>,
    /// `GENERATION_API_KEY` (bearer)
    pub api_key: Option<Secret>,
    /// `TIDELOG_PRICES_SORA` (`model=points,…`): the Sora models offered
    /// and their points per second of video (`size: "large"` costs
    /// double); by default `sora-2` at `TIDELOG_PRICE_SORA_PER_SECOND` (10).
    /// Any other model is refused (400): the gateway bills by model.
    pub sora_prices: BTreeMap<String, i64>,
    /// `TIDELOG_PRICES_BANANA` (`model=points,…`): the picture models
    /// offered and their points per picture; by default `nano-banana`,
    /// `nano-banana-fast` and the seed's `banana-v1` at
    /// `TIDELOG_PRICE_BANANA` (20).
    pub banana_prices: BTreeMap<String, i64>,
    /// `TIDELOG_GENERATION_SORA_DEADLINE_SECS` / `_BANANA_`: a job not
    /// ended by then fails, its points returned
    pub sora_deadline: Duration,
    pub banana_deadline: Duration,
    /// `TIDELOG_GENERATION_POLL_MS`: how often open jobs are asked about
    pub poll_interval: Duration,
    /// `TIDELOG_GENERATION_MAX_RUNNING`: running jobs per account (429 past it)
    pub max_running: i64,
    /// `TIDELOG_GENERATION_PER_MINUTE`: jobs (and chats) an account may
    /// start per minute, on every process together (0: no limit)
    pub per_minute: i32,
    /// `CHAT_API_URL` (an OpenAI-compatible base, e.g.
    /// `https://api.openai.com/v1`: `/chat/completions` is appended),
    /// `CHAT_API_KEY`, `CHAT_MODEL`; unset: cat chat answers 503
    pub chat_api_url: Option<String>,
    pub chat_api_key: Option<Secret>,
    pub chat_model: String,
    /// `TIDELOG_PRICE_CHAT`: points per cat-chat reply
    pub chat_price: i64,
    /// `JIMENG_ACCESS_KEY` / `JIMENG_SECRET_KEY` (Volcengine request
    /// signing; unset: Jimeng answers 503) and `JIMENG_API_URL`
    pub jimeng_api_url: String,
    pub jimeng_access_key: Option<Secret>,
    pub jimeng_secret_key: Option<Secret>,
    /// `JIMENG_VIDEO_REQ_KEY` / `JIMENG_IMAGE_REQ_KEY`: the models asked for
    pub jimeng_video_req_key: String,
    pub jimeng_image_req_key: String,
    /// `TIDELOG_PRICE_JIMENG_VIDEO` / `TIDELOG_PRICE_JIMENG_IMAGE`
    pub jimeng_video_price: i64,
    pub jimeng_image_price: i64,
    /// `TIDELOG_GENERATION_JIMENG_DEADLINE_SECS`
    pub jimeng_deadline: Duration,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            api_url: None,
            api_key: None,
            sora_prices: default_prices(&["sora-2"], 10),
            banana_prices: default_prices(&["nano-banana", "nano-banana-fast", "banana-v1"], 20),
            sora_deadline: Duration::from_secs(600),
            banana_deadline: Duration::from_secs(300),
            poll_interval: Duration::from_secs(2),
            max_running: 5,
            per_minute: 30,
            chat_api_url: None,
            chat_api_key: None,
            chat_model: "gpt-4o-mini".into(),
            chat_price: 1,
            jimeng_api_url: "https://visual.volcengineapi.com".into(),
            jimeng_access_key: None,
            jimeng_secret_key: None,
            jimeng_video_req_key: "jimeng_vgfm_t2v_l20".into(),
            jimeng_image_req_key: "jimeng_t2i_v40".into(),
            jimeng_video_price: 50,
            jimeng_image_price: 20,
            jimeng_deadline: Duration::from_secs(300),
        }
    }
}

/// The gift monitor's collector: each monitored room's Bilibili live stream,
/// connected by one process at a time.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// `TIDELOG_COLLECTOR` (`on`, `off`): whether this process connects rooms
    pub enabled: bool,
    /// `BILIBILI_LIVE_API_URL` (`https://api.live.bilibili.com`)
    pub live_api_url: String,
    /// `BILIBILI_API_URL` (`https://api.bilibili.com`)
    pub api_url: String,
    /// `BILIBILI_WS_URL`: a WebSocket URL used instead of the hosts
    /// Bilibili names (`ws://127.0.0.1:PORT/sub`: tests, proxies)
    pub ws_url: Option<String>,
    /// `BILIBILI_COOKIE`: a logged-in browser's cookie (`SESSDATA=…;
    /// buvid3=…`); without it Bilibili masks names and may withhold messages
    pub cookie: Option<Secret>,
    /// `BILIBILI_USER_AGENT`: a current desktop browser's (stale ones are
    /// refused by Bilibili)
    pub user_agent: String,
    /// `BILIBILI_HTTP_PER_SECOND`: calls to Bilibili's web API per second,
    /// over every room of this process
    pub http_per_second: u32,
    /// `BILIBILI_LEASE_SECS`: how long a room stays with a process that
    /// stops renewing (a crash); renewed every third of it
    pub lease: Duration,
    /// `BILIBILI_STATS_EVERY_SECS`: guard and fan-club counts polled this
    /// often while a room is live (and at each session's start and end)
    pub stats_every: Duration,
    /// `BILIBILI_HEARTBEAT_SECS` (30)
    pub heartbeat: Duration,
    /// `BILIBILI_RISK_PAUSE_SECS`: how long every call waits after a `-352`
    /// (180)
    pub risk_pause: Duration,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            live_api_url: "https://api.live.bilibili.com".into(),
            api_url: "https://api.bilibili.com".into(),
            ws_url: None,
            cookie: None,
            user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/147.0.0.0 Safari/537.36".into(),
            http_per_second: 5,
            lease: Duration::from_secs(20),
            stats_every: Duration::from_secs(600),
            heartbeat: Duration::from_secs(30),
            risk_pause: Duration::from_secs(180),
        }
    }
}

impl CollectorConfig {
    fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        let enabled = match var("TIDELOG_COLLECTOR").as_deref().map(str::trim) {
            None | Some("on") | Some("true") | Some("1") => true,
            Some("off") | Some("false") | Some("0") => false,
            Some(other) => bail!("TIDELOG_COLLECTOR: {other:?} is neither on nor off"),
        };
        let url = |name: &str, default: String| -> anyhow::Result<String> {
            let u = var(name).unwrap_or(default);
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                bail!("{name}: {u:?} is not an http(s) URL");
            }
            Ok(u.trim_end_matches('/').to_owned())
        };
        let ws_url = var("BILIBILI_WS_URL");
        if let Some(u) = &ws_url {
            if !(u.starts_with("ws://") || u.starts_with("wss://")) {
                bail!("BILIBILI_WS_URL: {u:?} is not a ws(s) URL");
            }
        }
        Ok(Self {
            enabled,
            live_api_url: url("BILIBILI_LIVE_API_URL", d.live_api_url)?,
            api_url: url("BILIBILI_API_URL", d.api_url)?,
            ws_url,
            cookie: var("BILIBILI_COOKIE").map(Secret::new),
            user_agent: var("BILIBILI_USER_AGENT").unwrap_or(d.user_agent),
            http_per_second: parse_var("BILIBILI_HTTP_PER_SECOND", d.http_per_second)?.max(1),
            lease: Duration::from_secs(parse_var("BILIBILI_LEASE_SECS", 20u64)?.max(3)),
            stats_every: Duration::from_secs(
                parse_var("BILIBILI_STATS_EVERY_SECS", 600u64)?.max(5),
            ),
            heartbeat: Duration::from_secs(parse_var("BILIBILI_HEARTBEAT_SECS", 30u64)?.max(1)),
            risk_pause: Duration::from_secs(parse_var("BILIBILI_RISK_PAUSE_SECS", 180u64)?.max(1)),
        })
    }
}

fn default_prices(models: &[&str], price: i64) -> BTreeMap<String, i64> {
    models.iter().map(|m| ((*m).to_owned(), price)).collect()
}

/// A price table `model=points,…` from `name`, else `models` at `price`.
fn prices(name: &str, models: &[&str], price: i64) -> anyhow::Result<BTreeMap<String, i64>> {
    let Some(raw) = var(name) else {
        return Ok(default_prices(models, price));
    };
    let mut table = BTreeMap::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let parsed = item.split_once('=').and_then(|(m, p)| {
            let m = m.trim();
            let p: i64 = p.trim().parse().ok()?;
            (!m.is_empty() && m.len() <= 64 && p >= 1).then(|| (m.to_owned(), p))
        });
        let Some((model, points)) = parsed else {
            bail!("{name}: {item:?} is not model=points (points at least 1)");
        };
        table.insert(model, points);
    }
    if table.is_empty() {
        bail!("{name}: no model priced");
    }
    Ok(table)
}

impl GenerationConfig {
    fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        let secs = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            Ok(Duration::from_secs(
                parse_var(name, default.as_secs())?.max(1),
            ))
        };
        Ok(Self {
            api_url: var("GENERATION_API_URL").map(|u| u.trim_end_matches('/').to_owned()),
            api_key: var("GENERATION_API_KEY").map(Secret::new),
            sora_prices: prices(
                "TIDELOG_PRICES_SORA",
                &["sora-2"],
                parse_var("TIDELOG_PRICE_SORA_PER_SECOND", 10i64)?.max(1),
            )?,
            banana_prices: prices(
                "TIDELOG_PRICES_BANANA",
                &["nano-banana", "nano-banana-fast", "banana-v1"],
                parse_var("TIDELOG_PRICE_BANANA", 20i64)?.max(1),
            )?,
            sora_deadline: secs("TIDELOG_GENERATION_SORA_DEADLINE_SECS", d.sora_deadline)?,
            banana_deadline: secs("TIDELOG_GENERATION_BANANA_DEADLINE_SECS", d.banana_deadline)?,
            poll_interval: Duration::from_millis(
                parse_var("TIDELOG_GENERATION_POLL_MS", 2_000u64)?.max(50),
            ),
            max_running: parse_var("TIDELOG_GENERATION_MAX_RUNNING", d.max_running)?.max(1),
            per_minute: parse_var("TIDELOG_GENERATION_PER_MINUTE", d.per_minute)?.max(0),
            chat_api_url: var("CHAT_API_URL").map(|u| u.trim_end_matches('/').to_owned()),
            chat_api_key: var("CHAT_API_KEY").map(Secret::new),
            chat_model: var("CHAT_MODEL").unwrap_or(d.chat_model),
            chat_price: parse_var("TIDELOG_PRICE_CHAT", d.chat_price)?.max(1),
            jimeng_api_url: var("JIMENG_API_URL")
                .map(|u| u.trim_end_matches('/').to_owned())
                .unwrap_or(d.jimeng_api_url),
            jimeng_access_key: var("JIMENG_ACCESS_KEY").map(Secret::new),
            jimeng_secret_key: var("JIMENG_SECRET_KEY").map(Secret::new),
            jimeng_video_req_key: var("JIMENG_VIDEO_REQ_KEY").unwrap_or(d.jimeng_video_req_key),
            jimeng_image_req_key: var("JIMENG_IMAGE_REQ_KEY").unwrap_or(d.jimeng_image_req_key),
            jimeng_video_price: parse_var("TIDELOG_PRICE_JIMENG_VIDEO", d.jimeng_video_price)?
                .max(1),
            jimeng_image_price: parse_var("TIDELOG_PRICE_JIMENG_IMAGE", d.jimeng_image_price)?
                .max(1),
            jimeng_deadline: secs("TIDELOG_GENERATION_JIMENG_DEADLINE_SECS", d.jimeng_deadline)?,
        })
    }
}

/// How browsers on other origins may call the server.
#[derive(Debug, Clone, Default)]
pub struct BrowserConfig {
    /// `TIDELOG_CORS_ORIGINS`: the frontends' origins (comma-separated),
    /// answered with credentials allowed; unset or `*`: any origin,
    /// without credentials.
    pub cors_origins: Option<Vec<String>>,
    /// `TIDELOG_COOKIE_SAMESITE` (`lax`, `strict`, `none`; `none` implies
    /// `Secure`) and `TIDELOG_COOKIE_SECURE`: the session cookie's
    /// attributes, for a frontend on another site.
    pub cookie_same_site: SameSite,
    pub cookie_secure: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SameSite {
    #[default]
    Lax,
    Strict,
    None,
}

impl BrowserConfig {
    fn from_env() -> anyhow::Result<Self> {
        let cors_origins = match var("TIDELOG_CORS_ORIGINS") {
            None => None,
            Some(v) if v.trim() == "*" => None,
            Some(v) => {
                let list: Vec<String> = v
                    .split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect();
                for o in &list {
                    let ok = (o.starts_with("http://") || o.starts_with("https://"))
                        // what a header value can carry: visible ASCII
                        && o.bytes().all(|b| b.is_ascii_graphic());
                    if !ok {
                        bail!("TIDELOG_CORS_ORIGINS: {o:?} is not an origin like https://app.example.com");
                    }
                }
                Some(list)
            }
        };
        let cookie_same_site = match var("TIDELOG_COOKIE_SAMESITE").as_deref().map(str::trim) {
            None | Some("lax") | Some("Lax") => SameSite::Lax,
            Some("strict") | Some("Strict") => SameSite::Strict,
            Some("none") | Some("None") => SameSite::None,
            Some(other) => bail!("TIDELOG_COOKIE_SAMESITE={other:?} is not lax, strict or none"),
        };
        Ok(Self {
            cors_origins,
            cookie_same_site,
            cookie_secure: parse_var("TIDELOG_COOKIE_SECURE", false)?,
        })
    }

    /// The session cookie's attributes after its value.
    pub fn cookie_attributes(&self) -> String {
        let same_site = match self.cookie_same_site {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        };
        // browsers refuse SameSite=None without Secure
        let secure = self.cookie_secure || self.cookie_same_site == SameSite::None;
        format!(
            "Path=/; HttpOnly; SameSite={same_site}{}",
            if secure { "; Secure" } else { "" }
        )
    }
}

/// Seed 000's live rooms.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// `TIDELOG_LIVE_PLATFORM_SHARE_PERCENT`: the platform's part of every
    /// VIP payment and subscription (rounded up to whole coins)
    pub platform_share_percent: u8,
    /// `TIDELOG_LIVE_SUBSCRIPTION_DAYS`: what one subscription payment buys
    pub subscription_period: Duration,
    /// `TIDELOG_LIVE_CARD_MAX_BYTES`: body limit of the anchors' routes
    /// (card PNGs, chat files)
    pub card_max_bytes: usize,
    /// `TIDELOG_LIVE_CHAT_PER_MINUTE`: viewer messages per chatter and room
    /// (at most 64; 0: no limit)
    pub chat_per_minute: u32,
    /// `TIDELOG_LIVE_CHAT_PER_IP_PER_MINUTE`: viewer messages per client IP
    /// (counted by each server process; 0: no limit)
    pub chat_per_ip_per_minute: u32,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            platform_share_percent: 20,
            subscription_period: Duration::from_secs(30 * 86_400),
            card_max_bytes: 8 * 1024 * 1024,
            chat_per_minute: 20,
            chat_per_ip_per_minute: 120,
        }
    }
}

impl LiveConfig {
    fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        let c = Self {
            platform_share_percent: parse_var(
                "TIDELOG_LIVE_PLATFORM_SHARE_PERCENT",
                d.platform_share_percent,
            )?,
            subscription_period: Duration::from_secs(
                parse_var("TIDELOG_LIVE_SUBSCRIPTION_DAYS", 30u64)? * 86_400,
            ),
            card_max_bytes: parse_var("TIDELOG_LIVE_CARD_MAX_BYTES", d.card_max_bytes)?,
            chat_per_minute: parse_var("TIDELOG_LIVE_CHAT_PER_MINUTE", d.chat_per_minute)?,
            chat_per_ip_per_minute: parse_var(
                "TIDELOG_LIVE_CHAT_PER_IP_PER_MINUTE",
                d.chat_per_ip_per_minute,
            )?,
        };
        if c.platform_share_percent > 100
            || c.subscription_period.is_zero()
            || c.chat_per_minute > aggregates::audience::KEEP_TIMES as u32
        {
            bail!("TIDELOG_LIVE_PLATFORM_SHARE_PERCENT must be 0-100, TIDELOG_LIVE_SUBSCRIPTION_DAYS at least 1, TIDELOG_LIVE_CHAT_PER_MINUTE 0-64");
        }
        Ok(c)
    }
}

/// The crypto payment provider (NOWPayments-compatible API).
#[derive(Debug, Clone)]
pub struct PaymentConfig {
    /// `PAYMENT_API_URL`, the provider's base (`…/v1/payment` is appended)
    pub api_url: String,
    /// `PAYMENT_API_KEY`; without it recharges answer "not configured"
    pub api_key: Option<Secret>,
    /// `PAYMENT_IPN_SECRET`; without it every callback is refused
    pub ipn_secret: Option<Secret>,
    /// `PAYMENT_IPN_CALLBACK_URL`: where the provider posts status callbacks
    /// (this server's `/api/payment/ipn` as the provider reaches it)
    pub ipn_callback_url: Option<String>,
    /// `PAYMENT_PRICE_CURRENCY`: the unit of `crypto_amount`
    pub price_currency: String,
    /// `PAYMENT_PAY_CURRENCY`: what the customer pays in
    pub pay_currency: String,
    /// `PAYMENT_COINS_PER_UNIT`: coins credited per whole price unit
    pub coins_per_unit: i64,
    /// `PAYMENT_MIN_AMOUNT` / `PAYMENT_MAX_AMOUNT` in whole price units
    pub min_amount: i64,
    pub max_amount: i64,
    /// `PAYMENT_POLL_AFTER_SECS`: a status check asks the provider when the
    /// order heard nothing for this long
    pub poll_after: Duration,
    pub timeout: Duration,
}

impl PaymentConfig {
    fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        let c = Self {
            api_url: var("PAYMENT_API_URL")
                .map(|u| u.trim_end_matches('/').to_owned())
                .unwrap_or(d.api_url),
            api_key: var("PAYMENT_API_KEY").map(Secret::new),
            ipn_secret: var("PAYMENT_IPN_SECRET").map(Secret::new),
            ipn_callback_url: var("PAYMENT_IPN_CALLBACK_URL"),
            price_currency: var("PAYMENT_PRICE_CURRENCY").unwrap_or(d.price_currency),
            pay_currency: var("PAYMENT_PAY_CURRENCY").unwrap_or(d.pay_currency),
            coins_per_unit: parse_var("PAYMENT_COINS_PER_UNIT", d.coins_per_unit)?,
            min_amount: parse_var("PAYMENT_MIN_AMOUNT", d.min_amount)?,
            max_amount: parse_var("PAYMENT_MAX_AMOUNT", d.max_amount)?,
            poll_after: Duration::from_secs(parse_var("PAYMENT_POLL_AFTER_SECS", 60u64)?),
            timeout: d.timeout,
        };
        if c.coins_per_unit < 1 || c.min_amount < 1 || c.max_amount < c.min_amount {
            bail!("PAYMENT_COINS_PER_UNIT and PAYMENT_MIN_AMOUNT must be ≥ 1, PAYMENT_MAX_AMOUNT ≥ PAYMENT_MIN_AMOUNT");
        }
        Ok(c)
    }
}

impl Default for PaymentConfig {
    fn default() -> Self {
        Self {
            api_url: "https://api.nowpayments.io".into(),
            api_key: None,
            ipn_secret: None,
            ipn_callback_url: None,
            price_currency: "usd".into(),
            pay_currency: "usdttrc20".into(),
            coins_per_unit: 10,
            min_amount: 1,
            max_amount: 10_000,
            poll_after: Duration::from_secs(60),
            timeout: Duration::from_secs(15),
        }
    }
}

/// Attempts allowed per fixed window, per account (or email) and per client
/// IP, shared by every server process through the database.
#[derive(Debug, Clone)]
pub struct RateLimits {
    pub login_per_account: i32,
    pub login_per_ip: i32,
    pub login_window: Duration,
    pub send_code_per_email: i32,
    pub send_code_per_ip: i32,
    pub send_code_window: Duration,
    pub verify_per_account: i32,
    pub verify_per_ip: i32,
    pub verify_window: Duration,
    /// failed card-key redeems
    pub redeem_failures_per_account: i32,
    pub redeem_failures_per_ip: i32,
    pub redeem_window: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            login_per_account: 10,
            login_per_ip: 100,
            login_window: Duration::from_secs(300),
            send_code_per_email: 5,
            send_code_per_ip: 30,
            send_code_window: Duration::from_secs(3600),
            verify_per_account: 10,
            verify_per_ip: 100,
            verify_window: Duration::from_secs(900),
            redeem_failures_per_account: 10,
            redeem_failures_per_ip: 30,
            redeem_window: Duration::from_secs(900),
        }
    }
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
            read_your_writes_on_read: true,
            postgres_bin: None,
            access_token_ttl: Duration::from_secs(1800),
            smtp_url: None,
            smtp_from: "tidelog <no-reply@tidelog.localhost>".into(),
            code_ttl: Duration::from_secs(600),
            code_resend_interval: Duration::from_secs(60),
            invite_required: false,
            rate_limits: RateLimits::default(),
            api_secret: None,
            effective_day_minutes: 60,
            ingest_max_bytes: 4 * 1024 * 1024,
            card_secret: None,
            audit_token: None,
            payments: PaymentConfig::default(),
            live: LiveConfig::default(),
            chat8_avatar_max_bytes: 2 * 1024 * 1024,
            chat8_file_max_bytes: 20 * 1024 * 1024,
            chat8_presence_grace: Duration::from_secs(5),
            chat8_presence_stale: Duration::from_secs(30),
            browser: BrowserConfig::default(),
            generation: GenerationConfig::default(),
            collector: CollectorConfig::default(),
            daily_reward_points: 10,
            tlog: TlogConfig::default(),
            grpc: GrpcConfig::default(),
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
            read_your_writes_on_read: match var("TIDELOG_READ_YOUR_WRITES").as_deref() {
                None | Some("read") => true,
                Some("write") => false,
                Some(other) => {
                    bail!("TIDELOG_READ_YOUR_WRITES must be `read` or `write`, not {other:?}")
                }
            },
            postgres_bin: var("TIDELOG_POSTGRES_BIN").map(PathBuf::from),
            access_token_ttl: Duration::from_secs(
                parse_var("TIDELOG_ACCESS_TOKEN_TTL_SECS", 1800u64)?.max(60),
            ),
            smtp_url: var("SMTP_URL").map(Secret::new),
            smtp_from: var("SMTP_FROM")
                .unwrap_or_else(|| "tidelog <no-reply@tidelog.localhost>".into()),
            code_ttl: Duration::from_secs(parse_var("TIDELOG_CODE_TTL_SECS", 600u64)?.max(1)),
            code_resend_interval: Duration::from_secs(parse_var(
                "TIDELOG_CODE_RESEND_SECS",
                60u64,
            )?),
            invite_required: parse_var("TIDELOG_INVITE_REQUIRED", false)?,
            rate_limits: RateLimits::default(),
            api_secret: var("API_SECRET").map(Secret::new),
            effective_day_minutes: parse_var("TIDELOG_EFFECTIVE_DAY_MINUTES", 60i64)?.max(0),
            ingest_max_bytes: parse_var("TIDELOG_INGEST_MAX_BYTES", 4 * 1024 * 1024usize)?,
            card_secret: var("TIDELOG_CARD_SECRET").map(Secret::new),
            audit_token: var("TIDELOG_AUDIT_TOKEN").map(Secret::new),
            payments: PaymentConfig::from_env()?,
            live: LiveConfig::from_env()?,
            chat8_avatar_max_bytes: parse_var(
                "TIDELOG_CHAT8_AVATAR_MAX_BYTES",
                2 * 1024 * 1024usize,
            )?,
            chat8_file_max_bytes: parse_var("TIDELOG_CHAT8_FILE_MAX_BYTES", 20 * 1024 * 1024usize)?,
            chat8_presence_grace: Duration::from_millis(parse_var(
                "TIDELOG_CHAT8_PRESENCE_GRACE_MS",
                5_000u64,
            )?),
            chat8_presence_stale: Duration::from_millis(
                parse_var("TIDELOG_CHAT8_PRESENCE_STALE_MS", 30_000u64)?.max(300),
            ),
            browser: BrowserConfig::from_env()?,
            generation: GenerationConfig::from_env()?,
            collector: CollectorConfig::from_env()?,
            daily_reward_points: parse_var("TIDELOG_DAILY_REWARD_POINTS", 10i64)?.max(0),
            tlog: TlogConfig::from_env()?,
            grpc: GrpcConfig::from_env()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_tables_are_model_points_pairs_and_refuse_anything_else() {
        std::env::set_var("TIDELOG_TEST_PRICES", " sora-2=10, sora-2-pro = 30 ");
        let t = prices("TIDELOG_TEST_PRICES", &["x"], 1).unwrap();
        assert_eq!(t.get("sora-2"), Some(&10));
        assert_eq!(t.get("sora-2-pro"), Some(&30));
        assert_eq!(t.len(), 2);
        for bad in ["sora-2", "sora-2=0", "=5", "a=b", ","] {
            std::env::set_var("TIDELOG_TEST_PRICES", bad);
            assert!(prices("TIDELOG_TEST_PRICES", &["x"], 1).is_err(), "{bad}");
        }
        std::env::remove_var("TIDELOG_TEST_PRICES");
        assert_eq!(
            prices("TIDELOG_TEST_PRICES", &["a", "b"], 7).unwrap(),
            BTreeMap::from([("a".to_owned(), 7), ("b".to_owned(), 7)])
        );
    }
}

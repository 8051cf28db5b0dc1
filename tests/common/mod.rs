//! Test harness: a private PostgreSQL cluster shared by the test processes
//! (or `DATABASE_URL`'s server), one fresh database per test cloned from a
//! migrated template, and helpers to drive the real HTTP API.
#![allow(dead_code)]

pub mod attack;
pub mod chat8;
pub mod provider;
pub mod smtp;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};
use tidelog::app::Server;
use tidelog::config::{Config, Secret};
use tidelog::embedded_pg::{ClusterOptions, EmbeddedPostgres};
use tokio::sync::OnceCell;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// Settings that make a throwaway cluster fast; durability is not tested here.
fn fast_settings() -> ClusterOptions {
    ClusterOptions {
        settings: [
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "500"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        bin_dir: None,
        ..Default::default()
    }
}

/// A directory the `postgres` user can enter even when tests run as root.
pub fn open_tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("tidelog-test-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// The server every test process shares: (admin options, URL prefix).
struct SharedServer {
    admin: PgConnectOptions,
}

static SHARED: OnceCell<SharedServer> = OnceCell::const_new();

async fn shared() -> &'static SharedServer {
    SHARED
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("DATABASE_URL") {
                let admin = PgConnectOptions::from_str(&url)
                    .unwrap()
                    .database("postgres");
                return SharedServer { admin };
            }
            let root = PathBuf::from(format!(
                "/tmp/tidelog-test-cluster-{}",
                nix::unistd::geteuid()
            ));
            let pg = tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&root).unwrap();
                // One process starts the cluster; the others wait and attach.
                let lock = std::fs::File::create(root.with_extension("lock")).unwrap();
                let _guard =
                    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
                EmbeddedPostgres::start(&root, &fast_settings()).expect("starting the test cluster")
            })
            .await
            .unwrap();
            SharedServer {
                admin: pg.connect_options("postgres"),
            }
        })
        .await
}

fn migrations_key() -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for m in tidelog::db::MIGRATOR.iter() {
        m.version.hash(&mut h);
        m.checksum.hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

/// Creates a fresh, migrated database on `admin`'s server.
pub async fn fresh_database_on(admin: &PgConnectOptions) -> PgConnectOptions {
    let template = format!("tidelog_tpl_{}", &migrations_key()[..12]);
    let mut conn = admin
        .connect()
        .await
        .expect("connecting to the test server");
    sqlx::query("SELECT pg_advisory_lock(7401)")
        .execute(&mut conn)
        .await
        .unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    if !exists {
        let building = format!("{template}_building");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {building}"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {building}"))
            .execute(&mut conn)
            .await
            .unwrap();
        // One connection, closed before the rename: a pool's connection
        // could still be on its way back to it when the pool closed, and
        // then held the database open (the rename refused, "being accessed
        // by other users").
        let mut migrating = admin.clone().database(&building).connect().await.unwrap();
        tidelog::db::MIGRATOR.run(&mut migrating).await.unwrap();
        migrating.close().await.unwrap();
        sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {template}"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    // Databases of runs more than two hours old are garbage, and so,
    // on this machine's own cluster, are those of test processes that
    // ended: a whole `cargo test` (and CI's repeated rounds) would
    // otherwise keep ~1,000 databases, gigabytes of disk, until it ends.
    let cutoff = chrono::Utc::now().timestamp() - 7200;
    let local = std::env::var_os("DATABASE_URL").is_none();
    let old: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname ~ '^t_[0-9]+_'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    for name in old {
        let mut parts = name.split('_').skip(1);
        let ts: i64 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(i64::MAX);
        let ended = parts
            .next()
            .and_then(|p| p.strip_prefix('p'))
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|pid| {
                local
                    && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                        == Err(nix::errno::Errno::ESRCH)
            });
        if ts < cutoff || ended {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    }
    let name = format!(
        "t_{}_p{}_{}",
        chrono::Utc::now().timestamp(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_unlock(7401)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    admin.clone().database(&name)
}

pub async fn fresh_database() -> PgConnectOptions {
    fresh_database_on(&shared().await.admin).await
}

/// A URL for `opts`, for child processes (`DATABASE_URL`).
pub fn url_of(opts: &PgConnectOptions) -> String {
    let db = opts.get_database().unwrap();
    match opts.get_socket() {
        Some(sock) => format!(
            "postgres://{}@localhost:{}/{db}?host={}",
            opts.get_username(),
            opts.get_port(),
            sock.display()
        ),
        // DATABASE_URL's server (its credentials), at `opts`' address
        // (the same, or a relay in front of it)
        None => match std::env::var("DATABASE_URL") {
            Ok(u) => {
                let mut u = reqwest::Url::parse(&u).unwrap();
                u.set_path(db);
                u.set_host(Some(opts.get_host())).unwrap();
                u.set_port(Some(opts.get_port())).unwrap();
                u.to_string()
            }
            Err(_) => format!(
                "postgres://{}@{}:{}/{db}",
                opts.get_username(),
                opts.get_host(),
                opts.get_port()
            ),
        },
    }
}

pub fn test_config(db: &PgConnectOptions, data_dir: &Path) -> Config {
    Config {
        database_url: Some(Secret::new(url_of(db))),
        data_dir: data_dir.to_path_buf(),
        bind: "127.0.0.1:0".parse().unwrap(),
        jwt_secret: Some(Secret::new(JWT_SECRET.into())),
        admin_token: Some(Secret::new(ADMIN_TOKEN.into())),
        db_pool_size: 8,
        // tests that want the Bilibili collector turn it on, against a loopback Bilibili
        collector: tidelog::config::CollectorConfig {
            enabled: false,
            ..Default::default()
        },
        // the gRPC endpoint on loopback: tests that read it turn it on
        // (`start_with`) at port 0, no two servers share a port
        grpc: tidelog::config::GrpcConfig {
            bind: None,
            ..Default::default()
        },
        ..Config::default()
    }
}

pub struct TestApp {
    pub server: Server,
    pub base: String,
    pub http: reqwest::Client,
    pub db: PgConnectOptions,
    /// A pool of the test's own, for asserting what was stored.
    pub pool: PgPool,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let db = fresh_database().await;
        Self::start_on(db, tweak).await
    }

    pub async fn start_on(db: PgConnectOptions, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = open_tempdir();
        let mut config = test_config(&db, dir.path());
        tweak(&mut config);
        let server = Server::start(config).await.expect("server starts");
        let pool = tidelog::db::connect_pool(db.clone(), 4).await.unwrap();
        Self {
            base: format!("http://{}", server.addr),
            server,
            http: client(),
            db,
            pool,
            _dir: dir,
        }
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
    }

    pub fn api(&self) -> Api {
        Api {
            base: self.base.clone(),
            http: self.http.clone(),
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The room-chat API as a frontend calls it.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: client(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.header("Authorization", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{path} answered non-JSON ({status}): {text:?}"));
        (status, value)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    /// Registers and signs in; returns (account number, token).
    pub async fn user(&self, name: &str) -> (i64, String) {
        let (s, v) = self
            .post(
                "/register",
                None,
                json!({"username": name, "password": "password123"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "register {name}: {v}");
        let (s, v) = self
            .post(
                "/login",
                None,
                json!({"username": name, "password": "password123"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "login {name}: {v}");
        (
            v["data"]["user"]["ID"].as_i64().unwrap(),
            v["data"]["token"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn room(&self, token: &str, name: &str) -> i64 {
        let (s, v) = self
            .post(
                "/api/room/create",
                Some(token),
                json!({"name": name, "description": "d"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["data"]["ID"].as_i64().unwrap()
    }

    pub async fn say(&self, token: &str, room: i64, content: &str) -> i64 {
        let (s, v) = self
            .post(
                "/api/message/send",
                Some(token),
                json!({"room_id": room, "type": "text", "content": content}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["data"]["ID"].as_i64().unwrap()
    }

    pub async fn messages(&self, token: &str, room: i64, query: &str) -> Vec<Value> {
        let (s, v) = self
            .get(
                &format!("/api/message/list?room_id={room}{query}"),
                Some(token),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["data"].as_array().unwrap().clone()
    }
}

/// Asserts the room-chat error envelope and status.
pub fn assert_error(got: &(StatusCode, Value), status: StatusCode) {
    assert_eq!(got.0, status, "body: {}", got.1);
    assert_eq!(got.1["code"], 1, "{}", got.1);
    assert!(
        got.1["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
    assert!(got.1["data"].is_null(), "{}", got.1);
}

pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Polls `check` until it holds or 20 s pass.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A `tidelog` server running as its own OS process.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

/// The environment of a `tidelog serve` process of a multi-process test:
/// the test's database, the tests' JWT secret and a data directory of its
/// own (`<dir>/<name>`).
pub fn process_env(
    db: &PgConnectOptions,
    dir: &tempfile::TempDir,
    name: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", url_of(db)),
        ("TIDELOG_JWT_SECRET", JWT_SECRET.to_string()),
        (
            "TIDELOG_DATA_DIR",
            dir.path().join(name).display().to_string(),
        ),
    ]
}

impl ServerProcess {
    pub fn spawn(envs: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidelog"));
        cmd.arg("serve")
            .env_remove("DATABASE_URL")
            .env("TIDELOG_BIND", "127.0.0.1:0")
            .env("TIDELOG_GRPC_BIND", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env("TIDELOG_COLLECTOR", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning tidelog");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("tidelog listening addr=") {
                    let _ = tx.send(
                        line[i + "tidelog listening addr=".len()..]
                            .trim()
                            .to_owned(),
                    );
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("server did not start: {:?}", log.lock().unwrap()));
        Self {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Holds projection `name` at its checkpoint (its batch's claim waits for
/// this row lock) until the transaction ends.
pub async fn hold_projector(
    pool: &PgPool,
    name: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(name)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

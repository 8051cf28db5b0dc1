//! tidelog's benchmark: starts its own server (a child process, on the
//! embedded default or `DATABASE_URL`), runs every scenario side by side
//! with the ceilings on the same machine in one run, and writes
//! `report.md` and `report.json`. Claims are ratios, never absolute times
//! alone. Run it through `scripts/bench.sh [--quick]`.

#![recursion_limit = "256"]

mod chat8;
mod collector;
mod cost;
#[path = "../../../tests/common/bilibili.rs"]
mod fake_bilibili;
mod grpc;
mod peer;
mod proxy;
mod seed;
mod stats;
mod tlog;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use stats::{closed_loop, median, median_figure, Figure};
use tidelog::config::{Config, Secret};
use tidelog::db::{self, Database};
use tidelog::projector::{self, Progress};
use tidelog::store::LogPosition;

const API_KEY: &str = "bench-api-secret-0123456789abcdef";
/// Rooms of the live-list read figures.
const LIVE_ROOMS: usize = 10_000;
const JWT: &str = "bench-jwt-secret-0123456789abcdef0123456789";
const ADMIN: &str = "bench-admin-token-0123456789abcdef";

#[derive(Parser)]
#[command(about = "tidelog's benchmark harness (see scripts/bench.sh)")]
struct Args {
    /// Every scenario, briefly (well under two minutes)
    #[arg(long)]
    quick: bool,
    /// Where report.md, report.json and the embedded cluster go
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Repeats per figure (median reported); default 3, quick 1
    #[arg(long)]
    repeats: Option<usize>,
    /// Events in the store for the read and rebuild scenarios; default
    /// 1,000,000, quick 20,000
    #[arg(long)]
    events: Option<u64>,
    /// Measured seconds per scenario; default 10, quick 1.5
    #[arg(long)]
    seconds: Option<f64>,
    /// Accounts (each with its own room and gift room) the clients use
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// Only the figures whose names contain one of these comma-separated
    /// parts (for profiling); parts of the run no selected figure needs
    /// (lag, the store's loading, rebuild, audit) are skipped
    #[arg(long)]
    only: Option<String>,
    /// Before the audit figure, add wallet movements until the ledger holds
    /// this many (default: the store's third; `1000000` for the issue's
    /// figure)
    #[arg(long)]
    audit_events: Option<u64>,
    /// Count each command figure's cost to the database (WAL bytes and
    /// flushes, transactions, commits per call; 22 s of quiet per figure):
    /// on in full runs, off in quick ones unless asked for
    #[arg(long)]
    costs: bool,
}

struct Plan {
    audit_events: u64,
    costs: bool,
    users: usize,
    only: Option<String>,
    repeats: usize,
    events: u64,
    warmup: Duration,
    measure: Duration,
    levels: Vec<usize>,
}

impl Plan {
    /// Whether `--only` selects the figure (or part of the run) `name`.
    fn wants(&self, name: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|part| name.contains(part)))
    }
}

struct ServerChild {
    child: Child,
    base: String,
    /// the KurrentDB-protocol endpoint (plaintext, loopback)
    grpc: Option<String>,
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn url_of(opts: &PgConnectOptions, external: Option<&str>) -> anyhow::Result<String> {
    let db = opts.get_database().unwrap_or("tidelog");
    match (opts.get_socket(), external) {
        (Some(sock), _) => Ok(format!(
            "postgres://{}@localhost:{}/{db}?host={}",
            opts.get_username(),
            opts.get_port(),
            sock.display()
        )),
        (None, Some(url)) => {
            let mut u = reqwest::Url::parse(url)?;
            u.set_path(db);
            Ok(u.to_string())
        }
        (None, None) => bail!("no way to reach the database"),
    }
}

/// The data directories of the servers a run starts (`start_server_with`'s
/// names), under the output directory.
const SERVER_DIRS: [&str; 3] = ["server", "server2", "collector"];

fn start_server(
    url: &str,
    out: &std::path::Path,
    name: &str,
    gateway: &str,
) -> anyhow::Result<ServerChild> {
    // the collector's own figures run a server of their own (collector.rs)
    start_server_with(
        url,
        out,
        name,
        gateway,
        &[("TIDELOG_COLLECTOR", "off".into())],
    )
}

fn start_server_with(
    url: &str,
    out: &std::path::Path,
    name: &str,
    gateway: &str,
    extra: &[(&str, String)],
) -> anyhow::Result<ServerChild> {
    let exe = std::env::current_exe()?.with_file_name("tidelog");
    let mut child = Command::new(&exe)
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        // the generation proxy's figures: a gateway on loopback, no limit
        // on running jobs, a brisk poller
        .env("GENERATION_API_URL", gateway)
        .env("GENERATION_API_KEY", "bench-gateway-key")
        .env("TIDELOG_GENERATION_MAX_RUNNING", "1000000")
        .env("TIDELOG_GENERATION_PER_MINUTE", "0")
        .env("TIDELOG_GENERATION_POLL_MS", "200")
        .arg("serve")
        .env("DATABASE_URL", url)
        .env("TIDELOG_DATA_DIR", out.join(name))
        .env("TIDELOG_BIND", "127.0.0.1:0")
        .env("TIDELOG_GRPC_BIND", "127.0.0.1:0")
        .env("TIDELOG_JWT_SECRET", JWT)
        .env("API_SECRET", API_KEY)
        .env("TIDELOG_ADMIN_TOKEN", ADMIN)
        // the clients chat as fast as they can, all from one address
        .env("TIDELOG_LIVE_CHAT_PER_MINUTE", "0")
        // the transparency log's integrator runs in the load generator
        // (tlog.rs), where it can be switched off; checkpoints every second
        .env("TIDELOG_TLOG_INTEGRATOR", "false")
        .env("TIDELOG_TLOG_CHECKPOINT_MS", "1000")
        .env("TIDELOG_LIVE_CHAT_PER_IP_PER_MINUTE", "0")
        .env("RUST_LOG", "warn,tidelog::app=info,tidelog::grpc=info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut grpc = None;
    let addr = loop {
        let Some(line) = lines.next() else {
            bail!("the server exited before listening")
        };
        let line = line?;
        if let Some(i) = line.find("tidelog gRPC listening addr=") {
            grpc = line[i + "tidelog gRPC listening addr=".len()..]
                .split_whitespace()
                .next()
                .map(str::to_owned);
        }
        if let Some(i) = line.find("tidelog listening addr=") {
            break line[i + "tidelog listening addr=".len()..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    // keep draining, so the server never blocks on a full pipe; its
    // warnings and errors go on to the run's log
    std::thread::spawn(move || {
        for line in lines.by_ref().map_while(Result::ok) {
            if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("server: {line}");
            }
        }
    });
    Ok(ServerChild {
        child,
        base: format!("http://{addr}"),
        grpc,
    })
}

/// Peak and current resident memory of a process, in MB.
fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

async fn check(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("HTTP {status}: {body}");
    }
    Ok(body)
}

struct Fixture {
    http: reqwest::Client,
    base: String,
    tokens: Vec<String>,
    /// account numbers, funded with points for the wallet scenarios
    numbers: Vec<i64>,
    /// a user kept out of the write scenarios: its wallet history is seeded
    reader_token: String,
    rooms: Vec<i64>,
    hot_room: i64,
    gift_rooms: Vec<i64>,
    /// seed 000 uids of the users (same order as `tokens`)
    uids: Vec<String>,
    /// the first user's live room, where every client chats
    live_hot_room: String,
    /// the first user's paid rooms (1 coin), live, for the VIP payments
    vip_rooms: Vec<String>,
}

async fn fixture(base: &str, users: usize, vip_rooms: usize) -> anyhow::Result<Fixture> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()?;
    let (mut tokens, mut numbers, mut rooms) = (Vec::new(), Vec::new(), Vec::new());
    // sequentially, so the first user is account number 1 (member of the
    // seeded rooms)
    for u in 0..users {
        let creds = json!({"username": format!("bench{u}"), "password": "bench-password"});
        check(
            http.post(format!("{base}/register"))
                .json(&creds)
                .send()
                .await?,
        )
        .await?;
        let v = check(
            http.post(format!("{base}/login"))
                .json(&creds)
                .send()
                .await?,
        )
        .await?;
        let token = v["data"]["token"].as_str().context("token")?.to_owned();
        numbers.push(v["data"]["user"]["ID"].as_i64().context("ID")?);
        let room = check(
            http.post(format!("{base}/api/room/create"))
                .header("Authorization", &token)
                .json(&json!({"name": format!("room {u}")}))
                .send()
                .await?,
        )
        .await?;
        rooms.push(room["data"]["ID"].as_i64().context("room ID")?);
        tokens.push(token);
    }
    let hot = check(
        http.post(format!("{base}/api/room/create"))
            .header("Authorization", &tokens[0])
            .json(&json!({"name": "hot"}))
            .send()
            .await?,
    )
    .await?;
    let hot_room = hot["data"]["ID"].as_i64().context("hot room")?;
    for n in &numbers[1..] {
        check(
            http.post(format!("{base}/api/room/add_user"))
                .header("Authorization", &tokens[0])
                .json(&json!({"room_id": hot_room, "user_id": n}))
                .send()
                .await?,
        )
        .await?;
    }
    for n in &numbers {
        check(
            http.post(format!("{base}/admin/ledger/adjustments"))
                .bearer_auth(ADMIN)
                .json(
                    &json!({"account": n.to_string(), "currency": "points", "direction": "credit",
                              "amount": 1_000_000_000i64, "description": "bench funds",
                              "operation_id": format!("fund-{n}")}),
                )
                .send()
                .await?,
        )
        .await?;
    }
    let creds = json!({"username": "reader", "password": "bench-password"});
    check(
        http.post(format!("{base}/register"))
            .json(&creds)
            .send()
            .await?,
    )
    .await?;
    let v = check(
        http.post(format!("{base}/login"))
            .json(&creds)
            .send()
            .await?,
    )
    .await?;
    let reader_token = v["data"]["token"].as_str().context("token")?.to_owned();
    // seed 000: coins, uids, a free live room and paid ones of the first user
    let mut uids = Vec::new();
    for (token, n) in tokens.iter().zip(&numbers) {
        check(
            http.post(format!("{base}/admin/ledger/adjustments"))
                .bearer_auth(ADMIN)
                .json(
                    &json!({"account": n.to_string(), "currency": "coins", "direction": "credit",
                              "amount": 1_000_000_000i64, "description": "bench coins",
                              "operation_id": format!("coins-{n}")}),
                )
                .send()
                .await?,
        )
        .await?;
        let v = check(
            http.get(format!("{base}/api/users/is_logged_in"))
                .bearer_auth(token)
                .send()
                .await?,
        )
        .await?;
        uids.push(
            v["data"]["user_info"]["uid"]
                .as_str()
                .context("uid")?
                .to_owned(),
        );
    }
    let card = json!({"spec": "chara_card_v2", "data": {"name": "Bench", "tags": ["bench"]}});
    // several at once: the VIP figure wants up to thousands
    let create = |k: usize| {
        let (http, card, token) = (http.clone(), card.clone(), tokens[0].clone());
        async move {
            // a price the platform's share leaves the anchor a part of (at
            // 1 coin the share, rounded up, took it all and no anchor was
            // ever credited)
            let (room_type, coin_num) = if k == 0 { (0, 0) } else { (1, VIP_PRICE) };
            let v = check(
                http.post(format!("{base}/api/anchor/rooms"))
                    .bearer_auth(&token)
                    .json(&json!({"character": card, "room_type": room_type, "coin_num": coin_num}))
                    .send()
                    .await?,
            )
            .await?;
            let id = v["data"]["room_id"].as_str().context("room_id")?.to_owned();
            check(
                http.post(format!("{base}/api/anchor/rooms/{id}/live"))
                    .bearer_auth(&token)
                    .json(&json!({"live": true}))
                    .send()
                    .await?,
            )
            .await?;
            anyhow::Ok(id)
        }
    };
    let mut live_rooms: Vec<String> = futures::stream::iter(0..=vip_rooms)
        .map(create)
        .buffered(8)
        .try_collect()
        .await?;
    let live_hot_room = live_rooms.remove(0);
    let mut gift_rooms = Vec::new();
    for u in 0..users as i64 {
        let room = 500_000 + u;
        check(
            http.post(format!("{base}/add/room"))
                .header("X-API-Key", API_KEY)
                .json(&json!({"room_id": room, "room_anchors": format!("anchor {u}")}))
                .send()
                .await?,
        )
        .await?;
        gift_rooms.push(room);
    }
    Ok(Fixture {
        http,
        base: base.to_owned(),
        tokens,
        numbers,
        reader_token,
        rooms,
        hot_room,
        gift_rooms,
        uids,
        live_hot_room,
        vip_rooms: live_rooms,
    })
}

fn gift_message(tag: &str, w: usize, i: u64, j: usize) -> Value {
    json!({"cmd": "SEND_GIFT", "received_at": chrono::Utc::now().timestamp_millis(), "data": {
        "uid": 1000 + w, "uname": "viewer", "giftId": 31036, "giftName": "小花花", "num": 1,
        "price": 100, "total_coin": 100, "coin_type": "gold", "tid": format!("{tag}-{w}-{i}-{j}")}})
}

struct Results {
    figures: BTreeMap<String, Figure>,
    notes: BTreeMap<String, Value>,
    /// per-call database costs of the command figures (cost.rs)
    costs: BTreeMap<String, Value>,
}

impl Results {
    fn per_s(&self, name: &str) -> Option<f64> {
        self.figures.get(name).map(|f| f.per_s)
    }
}

async fn repeat<F, Fut>(
    plan: &Plan,
    pool: &PgPool,
    name: &str,
    results: &mut Results,
    mut run: F,
) -> anyhow::Result<()>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Figure>>,
{
    if !plan.wants(name) {
        return Ok(());
    }
    let mut runs = Vec::new();
    // costs are counted around the first run (statements tracked only
    // then: tracking slows a hot statement); not a run more, which would
    // leave the later figures a longer log than earlier runs had
    let costs = plan.costs && (name.starts_with("http_") || name.starts_with("ceiling_append"));
    for r in 0..plan.repeats {
        // from a quiet system: a backlog an earlier run left (a batch-100
        // ingestion leaves seconds of projection work) is not this run's
        wait_caught_up(pool).await?;
        let costed = r == 0 && costs;
        let before = if costed {
            Some(cost::settled(pool).await?)
        } else {
            None
        };
        let f = run(r).await?;
        if let Some(before) = before {
            // the work the commands set off is theirs: projections, the
            // anchors' credits
            wait_caught_up(pool).await?;
            let after = cost::after(pool).await?;
            let c = cost::per_call(&before, &after, f.calls);
            tracing::info!(name, cost = %c, "per call");
            results.costs.insert(name.to_owned(), c);
        }
        tracing::info!(
            name,
            run = r,
            per_s = format!("{:.0}", f.per_s),
            p99_ms = format!("{:.2}", f.p99_ms),
            errors = f.errors,
            "measured"
        );
        runs.push(f);
    }
    results
        .figures
        .insert(name.to_owned(), median_figure(&runs));
    Ok(())
}

async fn ceiling_append(pool: &PgPool, plan: &Plan, c: usize, tag: String) -> Figure {
    let pool = pool.clone();
    closed_loop(c, plan.warmup, plan.measure, 1, move |w, i| {
        let pool = pool.clone();
        let stream = format!("{tag}-{w}");
        async move {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                 VALUES ('BenchCeiling', $1, $2, 'Appended', '1', $3, $4)",
            )
            .bind(&stream)
            .bind(i as i64 + 1)
            .bind(json!({"MessagePosted": {"room_id": 1, "message_id": i, "sender_id": 1, "sender_name": "bench",
                "kind": "text", "content": "a message of ordinary length", "sent_at": chrono::Utc::now()}}))
            .bind(json!({"actor": "system", "surface": "bench", "request_id": "ceiling"}))
            .execute(&pool)
            .await?;
            Ok(())
        }
    })
    .await
}

async fn run(args: Args) -> anyhow::Result<()> {
    let plan = if args.quick {
        Plan {
            audit_events: args.audit_events.unwrap_or(0),
            costs: args.costs,
            users: args.users.max(1),
            only: args.only.clone(),
            repeats: args.repeats.unwrap_or(1),
            events: args.events.unwrap_or(20_000),
            warmup: Duration::from_millis(300),
            measure: Duration::from_secs_f64(args.seconds.unwrap_or(1.5)),
            levels: vec![16, 64],
        }
    } else {
        Plan {
            audit_events: args.audit_events.unwrap_or(0),
            costs: true,
            users: args.users.max(1),
            only: args.only.clone(),
            repeats: args.repeats.unwrap_or(3),
            events: args.events.unwrap_or(1_000_000),
            warmup: Duration::from_secs(2),
            measure: Duration::from_secs_f64(args.seconds.unwrap_or(10.0)),
            levels: vec![16, 64],
        }
    };
    let started = Instant::now();
    std::fs::create_dir_all(&args.out)?;
    let out = std::fs::canonicalize(&args.out)?;

    // A fresh database: a new embedded cluster, or a new database on the
    // given server. The servers' data directories go with it: a signer
    // remembers the last checkpoint it signed there, and refuses to sign a
    // smaller tree (a second run in the same directory signed nothing).
    for dir in SERVER_DIRS {
        let dir = out.join(dir);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
    }
    let mut config = Config::from_env()?;
    let external = config.database_url.as_ref().map(|u| u.expose().to_owned());
    if let Some(url) = &external {
        let admin = PgConnectOptions::from_str(url)?;
        let pool = db::connect_pool(admin.clone(), 1).await?;
        sqlx::query("DROP DATABASE IF EXISTS tidelog_bench WITH (FORCE)")
            .execute(&pool)
            .await?;
        sqlx::query("CREATE DATABASE tidelog_bench")
            .execute(&pool)
            .await?;
        pool.close().await;
        let mut u = reqwest::Url::parse(url)?;
        u.set_path("tidelog_bench");
        config.database_url = Some(Secret::new(u.to_string()));
    } else {
        let data = out.join("data");
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        config.data_dir = data;
    }
    let database = Database::open_preloading(&config, &["pg_stat_statements"]).await?;
    let pool = database.pool(config.db_pool_size).await?;
    db::migrate(&pool).await?;
    cost::count_statements(&pool).await;
    let url = url_of(
        &database.options,
        config.database_url.as_ref().map(|s| s.expose()),
    )?;
    let (gateway_url, gateway) = proxy::start_gateway().await?;
    let server = start_server(&url, &out, "server", &gateway_url)?;
    let pid = server.child.id();
    tracing::info!(base = %server.base, pid, "server started");
    // the server's log (its key, made at its start), integrated from here
    let mut tlog_config = config.clone();
    tlog_config.tlog.key_file = Some(out.join("server").join("tlog").join("log.key"));
    let tlog_config = Arc::new(tlog_config);
    let log = Arc::new(tidelog::tlog::Log::open(&tlog_config)?);
    let mut bench = TlogBench {
        running: Some(tlog::start(&tlog_config, &pool, &database.options, &log)),
        config: tlog_config,
        connect: database.options.clone(),
        log,
    };

    let result = scenarios(
        &plan,
        &pool,
        &server,
        pid,
        (&url, &out),
        (&gateway_url, &gateway),
        &mut bench,
    )
    .await;
    bench.off().await;
    drop(server);
    pool.close().await;
    let _ = tokio::task::spawn_blocking(move || database.stop_embedded_if_started()).await;
    let results = result?;
    report(&plan, &out, &results, started.elapsed(), args.quick)
}

/// The transparency log's integrator, run by the load generator.
struct TlogBench {
    config: Arc<Config>,
    connect: PgConnectOptions,
    log: Arc<tidelog::tlog::Log>,
    running: Option<tlog::Running>,
}

impl TlogBench {
    async fn off(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    fn on(&mut self, pool: &PgPool) {
        if self.running.is_none() {
            self.running = Some(tlog::start(&self.config, pool, &self.connect, &self.log));
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn scenarios(
    plan: &Plan,
    pool: &PgPool,
    server: &ServerChild,
    pid: u32,
    // where a second server process of the same store starts
    (url, out): (&str, &std::path::Path),
    (gateway_url, gateway): (&str, &proxy::Gateway),
    bench: &mut TlogBench,
) -> anyhow::Result<Results> {
    let mut results = Results {
        figures: BTreeMap::new(),
        notes: BTreeMap::new(),
        costs: BTreeMap::new(),
    };
    // how far behind the numbering the integrator is, all through the commands
    let delays = tlog::DelaySampler::start(pool);
    // a fresh (payer, room) pair per VIP payment (every user but the
    // anchor pays): rooms for up to 4,000 payments a second over every
    // repeat (this machine: ~2,000-2,500); beyond, the figure counts errors
    let payers = plan.users.saturating_sub(1).max(1) as f64;
    let vip_rooms = ((plan.measure + plan.warmup).as_secs_f64() * plan.repeats as f64 * 4_000.0
        / payers)
        .clamp(40.0, 5_000.0) as usize;
    let fx = Arc::new(fixture(&server.base, plan.users, vip_rooms).await?);

    // 1. Ceiling: plain SQL appends, one row per transaction.
    for &c in &plan.levels {
        repeat(
            plan,
            pool,
            &format!("ceiling_append_c{c}"),
            &mut results,
            |r| ceiling_append(pool, plan, c, format!("ceil-c{c}-r{r}")).map_ok(),
        )
        .await?;
    }
    // 2. Peer: stock cqrs-es + postgres-es with a synchronous view.
    for &c in &plan.levels {
        repeat(
            plan,
            pool,
            &format!("peer_cqrs_es_c{c}"),
            &mut results,
            |r| {
                peer::run(
                    pool,
                    c,
                    plan.warmup,
                    plan.measure,
                    format!("peer-c{c}-r{r}"),
                )
            },
        )
        .await?;
    }
    // 3. Commands over HTTP.
    for &c in &plan.levels {
        repeat(plan, pool, &format!("http_roomchat_send_c{c}"), &mut results, |_| {
            let fx = fx.clone();
            closed_loop(c, plan.warmup, plan.measure, 1, move |w, i| {
                let fx = fx.clone();
                async move {
                    let k = w % fx.tokens.len();
                    let body = json!({"room_id": fx.rooms[k], "content": format!("message {i} from worker {w}")});
                    check(fx.http.post(format!("{}/api/message/send", fx.base)).header("Authorization", &fx.tokens[k]).json(&body).send().await?).await?;
                    Ok(())
                }
            })
            .map_ok()
        })
        .await?;
        repeat(
            plan,
            pool,
            &format!("http_roomchat_hot_room_c{c}"),
            &mut results,
            |_| {
                let fx = fx.clone();
                closed_loop(c, plan.warmup, plan.measure, 1, move |w, i| {
                    let fx = fx.clone();
                    async move {
                        let body =
                            json!({"room_id": fx.hot_room, "content": format!("hot {i} from {w}")});
                        check(
                            fx.http
                                .post(format!("{}/api/message/send", fx.base))
                                .header("Authorization", &fx.tokens[w % fx.tokens.len()])
                                .json(&body)
                                .send()
                                .await?,
                        )
                        .await?;
                        Ok(())
                    }
                })
                .map_ok()
            },
        )
        .await?;
        for batch in [1usize, 100] {
            repeat(
                plan,
                pool,
                &format!("http_gift_ingest_b{batch}_c{c}"),
                &mut results,
                |r| {
                    let fx = fx.clone();
                    let tag = format!("b{batch}c{c}r{r}");
                    closed_loop(c, plan.warmup, plan.measure, batch as u64, move |w, i| {
                        let fx = fx.clone();
                        let msgs: Vec<Value> =
                            (0..batch).map(|j| gift_message(&tag, w, i, j)).collect();
                        async move {
                            let room = fx.gift_rooms[w % fx.gift_rooms.len()];
                            check(
                                fx.http
                                    .post(format!("{}/ingest/bilibili/{room}", fx.base))
                                    .header("X-API-Key", API_KEY)
                                    .json(&msgs)
                                    .send()
                                    .await?,
                            )
                            .await?;
                            Ok(())
                        }
                    })
                    .map_ok()
                },
            )
            .await?;
        }
    }
    // wallet debit/credit: many wallets (one per worker's user), one hot wallet
    for &c in &plan.levels {
        for hot in [false, true] {
            let name = if hot {
                "http_wallet_hot_c"
            } else {
                "http_wallet_many_c"
            };
            repeat(plan, pool, &format!("{name}{c}"), &mut results, |r| {
                let fx = fx.clone();
                let tag = format!("{name}{c}r{r}");
                closed_loop(c, plan.warmup, plan.measure, 1, move |w, i| {
                    let fx = fx.clone();
                    let account = if hot {
                        fx.numbers[0]
                    } else {
                        fx.numbers[w % fx.numbers.len()]
                    };
                    let body = json!({"account": account.to_string(), "currency": "points",
                        "direction": if i % 2 == 0 { "debit" } else { "credit" }, "amount": 1,
                        "description": "bench", "operation_id": format!("{tag}-{w}-{i}")});
                    async move {
                        check(
                            fx.http
                                .post(format!("{}/admin/ledger/adjustments", fx.base))
                                .bearer_auth(ADMIN)
                                .json(&body)
                                .send()
                                .await?,
                        )
                        .await?;
                        Ok(())
                    }
                })
                .map_ok()
            })
            .await?;
        }
    }
    // seed 000: viewers chatting in one live room (a stream per chatter,
    // so the room is not one hot aggregate), and VIP payments
    for &c in &plan.levels {
        repeat(
            plan,
            pool,
            &format!("http_live_chat_hot_room_c{c}"),
            &mut results,
            |_| {
                let fx = fx.clone();
                closed_loop(c, plan.warmup, plan.measure, 1, move |w, i| {
                    let fx = fx.clone();
                    async move {
                        let body = json!({"room_id": fx.live_hot_room, "room_name": "bench",
                        "username": "", "user_message": format!("chat {i} from {w}")});
                        check(
                            fx.http
                                .post(format!("{}/api/live/save_user_chat_history", fx.base))
                                .bearer_auth(&fx.tokens[w % fx.tokens.len()])
                                .json(&body)
                                .send()
                                .await?,
                        )
                        .await?;
                        Ok(())
                    }
                })
                .map_ok()
            },
        )
        .await?;
    }
    // A caller's own next read after its send: its room's first page must
    // show the message (read-your-writes under load; each miss counted,
    // as an error of the figure too)
    let missed = Arc::new(AtomicU64::new(0));
    repeat(
        plan,
        pool,
        "http_roomchat_send_read_c16",
        &mut results,
        |r| {
            let (fx, missed) = (fx.clone(), missed.clone());
            closed_loop(16, plan.warmup, plan.measure, 1, move |w, i| {
                let (fx, missed) = (fx.clone(), missed.clone());
                async move {
                    let k = w % fx.tokens.len();
                    let content = format!("send-read {r} {w} {i}");
                    let body = json!({"room_id": fx.rooms[k], "content": content});
                    check(
                        fx.http
                            .post(format!("{}/api/message/send", fx.base))
                            .header("Authorization", &fx.tokens[k])
                            .json(&body)
                            .send()
                            .await?,
                    )
                    .await?;
                    let page = check(
                        fx.http
                            .get(format!(
                                "{}/api/message/list?room_id={}&limit=20",
                                fx.base, fx.rooms[k]
                            ))
                            .header("Authorization", &fx.tokens[k])
                            .send()
                            .await?,
                    )
                    .await?;
                    if !page.to_string().contains(&content) {
                        missed.fetch_add(1, Ordering::Relaxed);
                        bail!("the sender's next read did not show its message");
                    }
                    Ok(())
                }
            })
            .map_ok()
        },
    )
    .await?;
    if plan.wants("http_roomchat_send_read_c16") {
        results.notes.insert(
            "roomchat_send_read_misses".into(),
            json!(missed.load(Ordering::Relaxed)),
        );
    }
    // VIP payments into one anchor: every call a real debit of a payer
    // for a room it has not paid yet (a fresh (payer, room) pair each), so
    // each moves coins twice, all crediting the first user
    let next_pair = Arc::new(AtomicU64::new(0));
    // the credits follow the answers: those still missing when a window
    // closes are work its figure did not wait for (the most of any run)
    let vip_behind = Arc::new(AtomicU64::new(0));
    repeat(
        plan,
        pool,
        "http_live_pay_vip_one_anchor_c16",
        &mut results,
        |_| {
            let (fx, next_pair, vip_behind) = (fx.clone(), next_pair.clone(), vip_behind.clone());
            let payments = closed_loop(16, plan.warmup, plan.measure, 1, move |_, _| {
            let fx = fx.clone();
            let n = next_pair.fetch_add(1, Ordering::Relaxed) as usize;
            async move {
                let payers = fx.tokens.len() - 1;
                let (payer, room) = (1 + n % payers, n / payers);
                let Some(room) = fx.vip_rooms.get(room) else {
                    bail!("no fresh (payer, room) pair left: more VIP rooms needed");
                };
                let body = json!({"uid": fx.uids[payer], "anchor_id": fx.uids[0], "room_id": room,
                    "room_name": "bench", "amount": VIP_PRICE});
                check(
                    fx.http
                        .post(format!("{}/api/live/pay_vip_coin", fx.base))
                        .bearer_auth(&fx.tokens[payer])
                        .json(&body)
                        .send()
                        .await?,
                )
                .await?;
                Ok(())
            }
        });
            async move {
                let figure = payments.await;
                let behind =
                    (vip_payments(pool).await? - vip_anchor_credits(pool).await?).max(0) as u64;
                vip_behind.fetch_max(behind, Ordering::Relaxed);
                Ok(figure)
            }
        },
    )
    .await?;
    if plan.wants("http_live_pay_vip_one_anchor_c16") {
        // every call paid: as many payments as calls, none a repeat
        results
            .notes
            .insert("live_vip_payments".into(), json!(vip_payments(pool).await?));
        // and every payment credited its anchor once, in the log
        wait_caught_up(pool).await?;
        results.notes.insert(
            "live_vip_anchor_credits".into(),
            json!(vip_anchor_credits(pool).await?),
        );
        results.notes.insert(
            "live_vip_credits_behind_at_end".into(),
            json!(vip_behind.load(Ordering::Relaxed)),
        );
        results.notes.insert(
            "live_vip_pairs_used".into(),
            json!(next_pair.load(Ordering::Relaxed)),
        );
    }
    results
        .notes
        .insert("live_vip_rooms".into(), json!(fx.vip_rooms.len()));
    // seed 003: direct messages between many pairs of friends, and their
    // delivery to sockets on a second server process
    let chat8_figures = [
        "http_chat8_dm_c16",
        "http_chat8_dm_c64",
        "chat8_socket_delivery",
    ];
    if chat8_figures.iter().any(|n| plan.wants(n)) {
        let pairs = Arc::new(chat8::befriend_pairs(&fx).await?);
        results
            .notes
            .insert("chat8_pairs".into(), json!(pairs.len()));
        for &c in &plan.levels {
            repeat(
                plan,
                pool,
                &format!("http_chat8_dm_c{c}"),
                &mut results,
                |_| {
                    let (fx, pairs) = (fx.clone(), pairs.clone());
                    closed_loop(c, plan.warmup, plan.measure, 1, move |w, i| {
                        let (fx, pairs) = (fx.clone(), pairs.clone());
                        async move {
                            chat8::send_dm(&fx, &fx.base, &pairs, w, i, format!("dm {i} from {w}"))
                                .await
                        }
                    })
                    .map_ok()
                },
            )
            .await?;
        }
        if plan.wants("chat8_socket_delivery") {
            let rate = (results.per_s("http_chat8_dm_c16").unwrap_or(200.0) / 2.0).max(1.0);
            let second = start_server(url, out, "server2", gateway_url)?;
            repeat(plan, pool, "chat8_socket_delivery", &mut results, |r| {
                chat8::socket_delivery(
                    &fx,
                    &pairs,
                    &fx.base,
                    &second.base,
                    rate,
                    plan.warmup,
                    plan.measure,
                    format!("probe{r}"),
                )
            })
            .await?;
            drop(second);
            results
                .notes
                .insert("chat8_socket_delivery_rate_per_s".into(), json!(rate));
        }
    }
    // seed 002's generation proxy against the same gateway called directly
    for (name, through) in [
        ("http_proxy_banana_c16", true),
        ("proxy_direct_gateway_banana_c16", false),
    ] {
        repeat(plan, pool, name, &mut results, |_| {
            let fx = fx.clone();
            let gw = gateway_url.to_owned();
            closed_loop(16, plan.warmup, plan.measure, 1, move |w, i| {
                let (fx, gw) = (fx.clone(), gw.clone());
                async move {
                    let body = json!({"prompt": format!("bench {i} from {w}"), "stream": false});
                    let req = if through {
                        fx.http
                            .post(format!("{}/api/proxy/banana", fx.base))
                            .bearer_auth(&fx.tokens[w % fx.tokens.len()])
                    } else {
                        fx.http
                            .post(format!("{gw}/v1/draw/nano-banana"))
                            .bearer_auth("bench-gateway-key")
                    };
                    check(req.json(&body).send().await?).await?;
                    Ok(())
                }
            })
            .map_ok()
        })
        .await?;
    }
    let streams = if plan.warmup < Duration::from_secs(1) {
        200
    } else {
        1000
    };
    let streams_name = format!("proxy_open_streams_{streams}");
    if plan.wants(&streams_name) {
        let (fig, rss) =
            proxy::open_streams(&fx.http, &fx.base, &fx.tokens, streams, pid, gateway).await?;
        results.figures.insert(streams_name, fig);
        results
            .notes
            .insert("proxy_open_streams_rss_mb".into(), json!(rss));
    }
    // the jobs end before the next figures
    let until = Instant::now() + Duration::from_secs(180);
    while Instant::now() < until {
        let open: i64 =
            sqlx::query_scalar("SELECT count(*) FROM generation_jobs WHERE NOT settled")
                .fetch_one(pool)
                .await?;
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (hwm, _) = rss_mb(pid);
    results
        .notes
        .insert("rss_after_commands_mb".into(), json!(hwm));
    let (p99, max, samples) = delays.finish().await?;
    results
        .notes
        .insert("tlog_integration_delay_p99_ms".into(), json!(p99));
    results
        .notes
        .insert("tlog_integration_delay_max_ms".into(), json!(max));
    results
        .notes
        .insert("tlog_integration_delay_samples".into(), json!(samples));

    // 3b. Sends with the transparency log's integrator off and running,
    // alternately, side by side.
    if plan.wants("tlog_sends") {
        let mut off_runs = Vec::new();
        let mut on_runs = Vec::new();
        for r in 0..plan.repeats {
            for on in [false, true] {
                if on {
                    bench.on(pool);
                    tlog::caught_up(pool).await?;
                } else {
                    bench.off().await;
                }
                wait_caught_up(pool).await?;
                let fx = fx.clone();
                let f = closed_loop(16, plan.warmup, plan.measure, 1, move |w, i| {
                    let fx = fx.clone();
                    async move {
                        let k = w % fx.tokens.len();
                        let body = json!({"room_id": fx.rooms[k], "content": format!("tlog {r} {i} from {w}")});
                        check(fx.http.post(format!("{}/api/message/send", fx.base)).header("Authorization", &fx.tokens[k]).json(&body).send().await?).await?;
                        Ok(())
                    }
                })
                .await;
                tracing::info!(
                    on,
                    run = r,
                    per_s = format!("{:.0}", f.per_s),
                    "sends, integrator on/off"
                );
                if on {
                    on_runs.push(f);
                } else {
                    off_runs.push(f);
                }
            }
        }
        bench.on(pool);
        results.figures.insert(
            "http_roomchat_send_c16_tlog_off".into(),
            median_figure(&off_runs),
        );
        results.figures.insert(
            "http_roomchat_send_c16_tlog_on".into(),
            median_figure(&on_runs),
        );
    }

    // 4. Projection lag at half the peak single-message ingestion rate.
    if plan.wants("projection_lag") {
        let peak = results.per_s("http_gift_ingest_b1_c16").unwrap_or(100.0);
        let rate = (peak / 2.0).max(1.0);
        let progress = Progress::new();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let listener = tokio::spawn(projector::run_listener(
            pool.clone(),
            progress.clone(),
            stop_rx,
        ));
        // the ingestion scenarios leave a backlog; lag is measured from idle
        wait_caught_up(pool).await?;
        let mut lag_runs = Vec::new();
        for r in 0..plan.repeats {
            lag_runs.push(projection_lag(plan, pool, &fx, &progress, rate, r).await?);
        }
        let _ = stop_tx.send(true);
        let _ = listener.await;
        results
            .figures
            .insert("projection_lag_gifts".into(), median_figure(&lag_runs));
        results
            .notes
            .insert("projection_lag_rate_per_s".into(), json!(rate));
    }

    // 4b. The Bilibili collector: decoded and recorded messages per second
    // (brotli batches to 16 rooms at once) beside /ingest's batch-100
    // figure, and the memory of 1,000 rooms connected
    if plan.wants("collector") {
        wait_caught_up(pool).await?;
        let batches = if plan.warmup < Duration::from_secs(1) {
            10
        } else {
            50
        };
        let (fig, rss) = collector::figures(pool, url, out, gateway_url, batches).await?;
        results
            .figures
            .insert("collector_messages_per_s".into(), fig);
        results
            .notes
            .insert("collector_rooms_1000_rss_mb".into(), json!(rss));
    }

    // 5. Reads with the store loaded (loading takes minutes: only when a
    // figure that needs it is selected).
    let after_load = [
        "read_message_list",
        "read_gift_month_summary",
        "read_wallet_history",
        "read_gift_live_sessions",
        "read_live_all_lives",
        "read_live_ranked_lives",
        "ceiling_read_pk",
        "rebuild",
        "audit_verify",
        "tlog_integrate",
        "read_tlog_inclusion_proof",
        "grpc_read_all",
        "grpc_subscription_lag",
    ];
    if !after_load.iter().any(|n| plan.wants(n)) {
        note_rss(&mut results, pid);
        return Ok(results);
    }
    let bar = indicatif::ProgressBar::new(plan.events);
    bar.set_style(
        indicatif::ProgressStyle::with_template("loading {pos}/{len} events ({per_sec})").unwrap(),
    );
    let reader: uuid::Uuid =
        sqlx::query_scalar("SELECT account_id FROM accounts WHERE username = 'reader'")
            .fetch_one(pool)
            .await?;
    // the integrator waits for the store: then it is timed over all of it
    tlog::caught_up(pool).await?;
    bench.off().await;
    let loaded = seed::load(pool, plan.events, reader, &bar).await?;
    bar.finish_and_clear();
    results
        .notes
        .insert("store_events_loaded".into(), json!(loaded.events));
    results.notes.insert(
        "store_load_events_per_s".into(),
        json!(loaded.events as f64 / loaded.seconds),
    );
    let t0 = Instant::now();
    wait_caught_up(pool).await?;
    let catch_up = t0.elapsed().as_secs_f64();
    results.notes.insert(
        "live_projection_catch_up_events_per_s".into(),
        json!(loaded.events as f64 / catch_up),
    );
    let total_events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    results
        .notes
        .insert("store_events_total".into(), json!(total_events));
    // 5a. The integrator over the loaded store, alone, from where it stopped.
    let (leaves, secs) = tlog::integrate_all(pool, bench.log.batch).await?;
    results
        .notes
        .insert("tlog_integrated_leaves".into(), json!(leaves));
    results.notes.insert(
        "tlog_integrate_events_per_s".into(),
        json!(leaves as f64 / secs),
    );
    bench.on(pool);
    let signed = tlog::checkpointed(pool).await?;
    // The store was just bulk-loaded: PostgreSQL's autovacuum would now go
    // through the rows the load and the integrator inserted, during the
    // figures below (seen in `pg_stat_activity`: `events` for the whole
    // first read figure at 1M events, then its keys, messages, ledger and
    // numbers). One VACUUM first, as after any bulk load, so that the read
    // figures measure reads.
    let t0 = Instant::now();
    sqlx::query("VACUUM (ANALYZE)").execute(pool).await?;
    results.notes.insert(
        "post_load_vacuum_s".into(),
        json!(t0.elapsed().as_secs_f64()),
    );
    if plan.wants("read_tlog_inclusion_proof") {
        repeat(
            plan,
            pool,
            "read_tlog_inclusion_proof",
            &mut results,
            |_| {
                let fx = fx.clone();
                closed_loop(16, plan.warmup, plan.measure, 1, move |w, i| {
                    let fx = fx.clone();
                    // leaves from all over the tree
                    let index = (w as u64 * 1_000_003 + i * 104_729) % signed as u64;
                    async move {
                        let resp = fx
                            .http
                            .get(format!("{}/admin/tlog/proof?index={index}", fx.base))
                            .bearer_auth(ADMIN)
                            .send()
                            .await?;
                        let status = resp.status();
                        let body = resp.text().await?;
                        if !status.is_success() || !body.starts_with("c2sp.org/tlog-proof@v1\n") {
                            bail!("HTTP {status}: {body}");
                        }
                        Ok(())
                    }
                })
                .map_ok()
            },
        )
        .await?;
    }

    let chat_room = loaded.chat_rooms[0];
    let month = format!("{}{:02}", seed::GIFT_MONTH.0, seed::GIFT_MONTH.1);
    let reads: Vec<(&str, String)> = vec![
        (
            "read_message_list",
            format!("/api/message/list?room_id={chat_room}&limit=20"),
        ),
        (
            "read_gift_month_summary",
            format!("/gift/by_month?month={month}"),
        ),
        (
            "read_wallet_history",
            "/api/user/history?limit=20".to_owned(),
        ),
        (
            "read_gift_live_sessions",
            format!(
                "/gift/live_sessions?room_id={}&month={month}",
                loaded.gift_rooms[0]
            ),
        ),
    ];
    let max_id: i64 = sqlx::query_scalar("SELECT coalesce(max(message_id), 0) FROM chat_messages")
        .fetch_one(pool)
        .await?;
    let span = (max_id - 1_000_000_000).max(1);
    for (name, path) in reads {
        let token = if name == "read_wallet_history" {
            fx.reader_token.clone()
        } else {
            fx.tokens[0].clone()
        };
        http_read(plan, pool, &mut results, &fx, name, path, token, span).await?;
    }
    if plan.wants("ceiling_read_pk") {
        // keys of messages from all over the table, looked up by its primary
        // key (one scan to draw them; a page sample can come back empty)
        let keys: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT room_id, message_id FROM chat_messages ORDER BY random() LIMIT 4096",
        )
        .fetch_all(pool)
        .await?;
        ensure!(!keys.is_empty(), "no messages to read");
        let keys = Arc::new(keys);
        repeat(plan, pool, "ceiling_read_pk", &mut results, |_| {
            let (pool, keys) = (pool.clone(), keys.clone());
            closed_loop(16, plan.warmup, plan.measure, 1, move |w, i| {
                let pool = pool.clone();
                let (room, id) = keys[(w * 104_729 + i as usize * 7_919) % keys.len()];
                async move {
                    let _: Option<String> = sqlx::query_scalar(
                        "SELECT content FROM chat_messages WHERE room_id = $1 AND message_id = $2",
                    )
                    .bind(room)
                    .bind(id)
                    .fetch_optional(&pool)
                    .await?;
                    Ok(())
                }
            })
            .map_ok()
        })
        .await?;
    }
    note_rss(&mut results, pid);

    // 5b. The KurrentDB-protocol endpoint over the loaded store, through
    // the stock Rust client
    grpc_figures(plan, pool, &mut results, &fx, server, pid).await?;

    // 6. Rebuild the three bulk-loaded projections from zero into fresh
    // tables, at once (as `tidelog projections rebuild all` does).
    if plan.wants("rebuild") {
        let tz = chrono_tz::Asia::Shanghai;
        let mut rebuild_runs = Vec::new();
        for _ in 0..plan.repeats {
            let chosen = ["gifts", "roomchat", "ledger"]
                .iter()
                .map(|name| projector::find(name, tz).context("projection"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let t0 = Instant::now();
            let outcomes = projector::rebuild_many(pool, chosen, 1000, false).await;
            let secs = t0.elapsed().as_secs_f64();
            let mut events = 0u64;
            for outcome in outcomes {
                let report = outcome?;
                tracing::info!(
                    name = report.projection,
                    events = report.events_applied,
                    seconds = report.seconds,
                    "rebuilt"
                );
                events += report.events_applied;
            }
            rebuild_runs.push(events as f64 / secs);
        }
        results
            .notes
            .insert("rebuild_events_per_s".into(), json!(median(rebuild_runs)));
    }

    // 6b. The auditors' full verification over the same store (grown to
    // --audit-events wallet movements first, if asked).
    if plan.wants("audit_verify") {
        let have: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Wallet'")
                .fetch_one(pool)
                .await?;
        if plan.audit_events > have as u64 {
            let more = plan.audit_events - have as u64;
            let bar = indicatif::ProgressBar::new(more);
            bar.set_style(
                indicatif::ProgressStyle::with_template("ledger {pos}/{len} events ({per_sec})")
                    .unwrap(),
            );
            seed::load_wallet_events(pool, more, &bar).await?;
            bar.finish_and_clear();
            wait_caught_up(pool).await?;
        }
        // the Merkle pass checks the tree: every event integrated and signed
        tlog::caught_up(pool).await?;
        tlog::checkpointed(pool).await?;
        let mut runs = Vec::new();
        for _ in 0..plan.repeats {
            runs.push(tlog::verify(pool, &bench.log).await?);
        }
        let m = |key: &str| median(runs.iter().filter_map(|r| r[key].as_f64()).collect());
        let events = m("events");
        // `tidelog audit verify`: the ledger's checks and the transparency
        // log's Merkle pass at once
        for (note, value) in [
            ("audit_verify_seconds", m("seconds")),
            ("audit_verify_ledger_seconds", m("ledger_seconds")),
            ("tlog_verify_seconds", m("tlog_seconds")),
            ("audit_verify_events", events),
            ("audit_verify_wallet_events", m("wallet_events")),
            ("tlog_verify_leaves", m("leaves_hashed")),
            (
                "audit_verify_seconds_per_1m_events",
                m("seconds") / events * 1e6,
            ),
        ] {
            results.notes.insert(note.into(), json!(value));
        }
    }

    // 7. seed 000's lists over 10,000 rooms (a tenth live) and as many live
    // chat events as the store has events, last: they grow the store that
    // the figures above are compared over
    if plan.wants("read_live") {
        let anchor: uuid::Uuid =
            sqlx::query_scalar("SELECT account_id FROM accounts WHERE username = 'bench0'")
                .fetch_one(pool)
                .await?;
        let bar = indicatif::ProgressBar::new(plan.events + LIVE_ROOMS as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("live rooms {pos}/{len} events ({per_sec})")
                .unwrap(),
        );
        let n = seed::load_live(pool, anchor, LIVE_ROOMS, 10, plan.events, &bar).await?;
        bar.finish_and_clear();
        wait_caught_up(pool).await?;
        results.notes.insert("live_events_loaded".into(), json!(n));
        let live: i64 = sqlx::query_scalar("SELECT count(*) FROM live_rooms WHERE live")
            .fetch_one(pool)
            .await?;
        results.notes.insert("live_rooms_live".into(), json!(live));
    }
    for (name, path) in [
        ("read_live_all_lives", "/api/live/get_all_lives"),
        ("read_live_ranked_lives", "/api/live/get_ranked_lives/"),
    ] {
        let token = fx.tokens[0].clone();
        http_read(
            plan,
            pool,
            &mut results,
            &fx,
            name,
            path.to_owned(),
            token,
            span,
        )
        .await?;
    }
    Ok(results)
}

/// `$all` read whole through the Rust client against the raw catch-up read
/// (events per second, medians of the repeats, side by side); the lag
/// from a send's answer to 100 `$all` subscribers, and the server's RSS
/// with them connected.
async fn grpc_figures(
    plan: &Plan,
    pool: &PgPool,
    results: &mut Results,
    fx: &Arc<Fixture>,
    server: &ServerChild,
    pid: u32,
) -> anyhow::Result<()> {
    if !["grpc_read_all", "grpc_subscription_lag"]
        .iter()
        .any(|n| plan.wants(n))
    {
        return Ok(());
    }
    let Some(addr) = server.grpc.as_deref() else {
        bail!("the server did not say where its gRPC endpoint listens");
    };
    if let Err(e) = grpc::client_exe() {
        tracing::warn!("no gRPC figures: {e:#}");
        results.notes.insert(
            "grpc_figures".into(),
            json!("skipped: grpc-client not built"),
        );
        return Ok(());
    }
    if plan.wants("grpc_read_all") {
        let (mut through, mut raw) = (Vec::new(), Vec::new());
        let mut events = 0;
        for _ in 0..plan.repeats {
            let (per_s, n) = grpc::catch_up_read(pool).await?;
            raw.push(per_s);
            let (per_s, m) = grpc::read_all(addr).await?;
            ensure!(m == n, "the gRPC read gave {m} events, the log has {n}");
            through.push(per_s);
            events = n;
        }
        results.notes.insert(
            "ceiling_catch_up_read_events_per_s".into(),
            json!(median(raw)),
        );
        results
            .notes
            .insert("grpc_read_all_events_per_s".into(), json!(median(through)));
        results
            .notes
            .insert("grpc_read_all_events".into(), json!(events));
    }
    if plan.wants("grpc_subscription_lag") {
        let subscribers = 100;
        let sends = if plan.repeats == 1 { 40 } else { 200 };
        let mut runs = Vec::new();
        let mut rss = 0f64;
        for _ in 0..plan.repeats {
            let (fig, r) = grpc::subscription_lag(
                addr,
                &fx.http,
                &fx.base,
                (&fx.tokens[0], fx.rooms[0]),
                subscribers,
                sends,
                20.0,
                pid,
            )
            .await?;
            runs.push(fig);
            rss = rss.max(r);
        }
        results
            .figures
            .insert("grpc_subscription_lag".into(), median_figure(&runs));
        results
            .notes
            .insert("grpc_subscribers".into(), json!(subscribers));
        results
            .notes
            .insert("grpc_subscribers_rss_mb".into(), json!(rss));
    }
    Ok(())
}

/// A read figure: 16 clients GET `path` (message pages alternate with
/// older pages, `span` ids deep).
#[allow(clippy::too_many_arguments)]
async fn http_read(
    plan: &Plan,
    pool: &PgPool,
    results: &mut Results,
    fx: &Arc<Fixture>,
    name: &str,
    path: String,
    token: String,
    span: i64,
) -> anyhow::Result<()> {
    repeat(plan, pool, name, results, |_| {
        let (fx, path, token) = (fx.clone(), path.clone(), token.clone());
        closed_loop(16, plan.warmup, plan.measure, 1, move |w, i| {
            let (fx, token) = (fx.clone(), token.clone());
            // every other message page is an older one, a different one
            // for each client and request (not one cached row)
            let path = if path.contains("message/list") && i % 2 == 1 {
                format!("{path}&last_message_id={}", message_id_at(w, i, span))
            } else {
                path.clone()
            };
            async move {
                // the whole body is read; parsing it is the frontend's
                // cost, not the server's (it competed for the 2 cores).
                // The live lists are asked for gzip, as browsers do (the
                // bytes are read, not inflated)
                let mut req = fx
                    .http
                    .get(format!("{}{path}", fx.base))
                    .header("Authorization", &token);
                if path.starts_with("/api/live/") {
                    req = req.header("Accept-Encoding", "gzip");
                }
                let resp = req.send().await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                if !status.is_success() || body.is_empty() {
                    bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
                }
                Ok(())
            }
        })
        .map_ok()
    })
    .await
}

/// The server's peak and current RSS, as notes.
fn note_rss(results: &mut Results, pid: u32) {
    let (hwm, now) = rss_mb(pid);
    results.notes.insert("rss_peak_mb".into(), json!(hwm));
    results.notes.insert("rss_now_mb".into(), json!(now));
}

/// The price of the benchmark's VIP rooms, in coins.
const VIP_PRICE: i64 = 10;

/// VIP payments in the log.
async fn vip_payments(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'VipCoinPaid'")
            .fetch_one(pool)
            .await?,
    )
}

/// Anchors' credits in the log, one per payment that earned them.
async fn vip_anchor_credits(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'WalletCredited'
           AND payload -> 'WalletCredited' ->> 'operation_id' LIKE 'earning:%'",
    )
    .fetch_one(pool)
    .await?)
}

trait MapOk: std::future::Future<Output = Figure> + Sized {
    fn map_ok(self) -> impl std::future::Future<Output = anyhow::Result<Figure>> {
        async move { Ok(self.await) }
    }
}
impl<F: std::future::Future<Output = Figure>> MapOk for F {}

async fn wait_caught_up(pool: &PgPool) -> anyhow::Result<()> {
    // each projection against the head of its own aggregate types
    let all = projections::all(chrono_tz::Asia::Shanghai);
    let progress = Progress::new();
    let projected = || projector::wait_caught_up(pool, &progress, &all, Duration::from_secs(3600));
    if !projected().await? {
        bail!("projections did not catch up");
    }
    // The anchors' earnings are credited by a worker after the payments
    // (a second command each): a scenario after the VIP payments would
    // otherwise share the machine with that backlog.
    let deadline = std::time::Instant::now() + Duration::from_secs(3600);
    let mut waited = false;
    loop {
        let due: i64 =
            sqlx::query_scalar("SELECT count(*) FROM anchor_earnings WHERE credited_at IS NULL")
                .fetch_one(pool)
                .await?;
        if due == 0 {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("{due} anchor earnings still not credited");
        }
        waited = true;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if waited && !projected().await? {
        bail!("projections did not catch up");
    }
    Ok(())
}

/// Open loop at `rate` SC messages per second over 16 workers (a room
/// each); after each answer, the time until the `gifts` projection has
/// applied that room's newest event.
async fn projection_lag(
    plan: &Plan,
    pool: &PgPool,
    fx: &Arc<Fixture>,
    progress: &Arc<Progress>,
    rate: f64,
    r: usize,
) -> anyhow::Result<Figure> {
    let workers = 16usize;
    let interval = Duration::from_secs_f64(workers as f64 / rate);
    // long enough for a few samples even in the shortest runs
    let measure = plan.measure.max(Duration::from_secs(1));
    let deadline = Instant::now() + plan.warmup + measure;
    let measure_from = Instant::now() + plan.warmup;
    let next_id = Arc::new(AtomicI64::new(1 + 10_000_000 * (r as i64 + 1)));
    let mut handles = Vec::new();
    for w in 0..workers {
        let (fx, pool, progress, next_id) =
            (fx.clone(), pool.clone(), progress.clone(), next_id.clone());
        handles.push(tokio::spawn(async move {
            let room = fx.gift_rooms[w % fx.gift_rooms.len()];
            let mut lags = Vec::new();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < deadline {
                tick.tick().await;
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let msg = json!([{"cmd": "SUPER_CHAT_MESSAGE", "data": {"id": id, "uid": 1, "price": 30, "message": "lag probe", "user_info": {"uname": "probe"}}}]);
                let sent = fx.http.post(format!("{}/ingest/bilibili/{room}", fx.base)).header("X-API-Key", API_KEY).json(&msg).send().await;
                let answered = Instant::now();
                if sent.is_err() {
                    continue;
                }
                let head: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT transaction_id::text::bigint, global_position FROM events
                      WHERE aggregate_type = 'MonitoredRoom' AND aggregate_id = $1 ORDER BY sequence DESC LIMIT 1",
                )
                .bind(room.to_string())
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten();
                let Some((txid, position)) = head else { continue };
                let ok = progress.wait_for(&pool, &["gifts"], LogPosition { txid, position }, Duration::from_secs(10)).await;
                if ok && answered >= measure_from {
                    lags.push(answered.elapsed().as_secs_f64() * 1000.0);
                }
            }
            lags
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await?);
    }
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(Figure {
        ops: all.len() as u64,
        errors: 0,
        seconds: measure.as_secs_f64(),
        per_s: all.len() as f64 / measure.as_secs_f64(),
        p50_ms: stats::percentile(&all, 0.5),
        p99_ms: stats::percentile(&all, 0.99),
        p999_ms: stats::percentile(&all, 0.999),
        ..Default::default()
    })
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn fmt(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn report(
    plan: &Plan,
    out: &std::path::Path,
    r: &Results,
    elapsed: Duration,
    quick: bool,
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let commit = git_commit();
    let f = |name: &str| r.figures.get(name).cloned();
    let note = |name: &str| {
        r.notes
            .get(name)
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    let ceiling = f("ceiling_append_c16").map(|f| f.per_s).unwrap_or(f64::NAN);
    let peer = f("peer_cqrs_es_c16").map(|f| f.per_s).unwrap_or(f64::NAN);
    let http = f("http_roomchat_send_c16")
        .map(|f| f.per_s)
        .unwrap_or(f64::NAN);
    let lag_p99 = f("projection_lag_gifts")
        .map(|f| f.p99_ms)
        .unwrap_or(f64::NAN);
    let read_p99 = [
        "read_message_list",
        "read_wallet_history",
        "read_gift_month_summary",
        "read_gift_live_sessions",
    ]
    .iter()
    .filter_map(|n| f(n).map(|f| f.p99_ms))
    .fold(f64::NAN, f64::max);
    let rebuild = note("rebuild_events_per_s");
    let rss = note("rss_peak_mb");
    let ceiling64 = f("ceiling_append_c64").map(|f| f.per_s).unwrap_or(f64::NAN);
    let live_chat = f("http_live_chat_hot_room_c64")
        .map(|f| f.per_s)
        .unwrap_or(f64::NAN);
    let live_read_p99 = ["read_live_all_lives", "read_live_ranked_lives"]
        .iter()
        .filter_map(|n| f(n).map(|f| f.p99_ms))
        .fold(f64::NAN, f64::max);
    let per_s = |name: &str| f(name).map(|f| f.per_s).unwrap_or(f64::NAN);
    let (dm16, dm64) = (per_s("http_chat8_dm_c16"), per_s("http_chat8_dm_c64"));
    let delivery_p99 = f("chat8_socket_delivery")
        .map(|f| f.p99_ms)
        .unwrap_or(f64::NAN);
    let (proxied, direct) = (
        f("http_proxy_banana_c16"),
        f("proxy_direct_gateway_banana_c16"),
    );
    let proxy_ratio = proxied
        .as_ref()
        .zip(direct.as_ref())
        .map_or(f64::NAN, |(p, d)| p.per_s / d.per_s);
    let proxy_added_p99 = proxied
        .as_ref()
        .zip(direct.as_ref())
        .map_or(f64::NAN, |(p, d)| p.p99_ms - d.p99_ms);
    let streams_rss = note("proxy_open_streams_rss_mb");
    let collector = per_s("collector_messages_per_s");
    let ingest_b100 = per_s("http_gift_ingest_b100_c16");
    let collector_rss = note("collector_rooms_1000_rss_mb");
    let integrate = note("tlog_integrate_events_per_s");
    let (sends_on, sends_off) = (
        per_s("http_roomchat_send_c16_tlog_on"),
        per_s("http_roomchat_send_c16_tlog_off"),
    );
    let tlog_delay = note("tlog_integration_delay_p99_ms");
    let verify_per_1m = note("audit_verify_seconds_per_1m_events");
    let proof_p99 = f("read_tlog_inclusion_proof")
        .map(|f| f.p99_ms)
        .unwrap_or(f64::NAN);
    let grpc_read = note("grpc_read_all_events_per_s");
    let catch_up_read = note("ceiling_catch_up_read_events_per_s");
    let grpc_lag_p99 = f("grpc_subscription_lag")
        .map(|f| f.p99_ms)
        .unwrap_or(f64::NAN);
    let grpc_rss = note("grpc_subscribers_rss_mb");
    let num = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
    let json_report = json!({
        "commit": commit,
        "cores": cores,
        "quick": quick,
        "repeats": plan.repeats,
        "seconds_per_scenario": plan.measure.as_secs_f64(),
        "store_events": plan.events,
        "elapsed_s": elapsed.as_secs_f64(),
        "ceiling_append_per_s": num(ceiling),
        "peer_cqrs_es_per_s": num(peer),
        "http_command_per_s": num(http),
        "projection_lag_p99_ms": num(lag_p99),
        "rebuild_events_per_s": num(rebuild),
        "read_p99_ms": num(read_p99),
        "rss_mb": num(rss),
        "live_chat_hot_room_c64_per_s": num(live_chat),
        "live_read_p99_ms": num(live_read_p99),
        "chat8_dm_c16_per_s": num(dm16),
        "chat8_dm_c64_per_s": num(dm64),
        "chat8_socket_delivery_p99_ms": num(delivery_p99),
        "proxy_over_direct": num(proxy_ratio),
        "proxy_added_p99_ms": num(proxy_added_p99),
        "proxy_open_streams_rss_mb": num(streams_rss),
        "collector_messages_per_s": num(collector),
        "collector_rooms_1000_rss_mb": num(collector_rss),
        "tlog_integrate_events_per_s": num(integrate),
        "tlog_integration_delay_p99_ms": num(tlog_delay),
        "http_command_tlog_on_per_s": num(sends_on),
        "http_command_tlog_off_per_s": num(sends_off),
        "audit_verify_s_per_1m_events": num(verify_per_1m),
        "tlog_inclusion_proof_p99_ms": num(proof_p99),
        "grpc_read_all_events_per_s": num(grpc_read),
        "ceiling_catch_up_read_events_per_s": num(catch_up_read),
        "grpc_subscription_lag_p99_ms": num(grpc_lag_p99),
        "grpc_subscribers_rss_mb": num(grpc_rss),
        "ratios": {
            "http_command_tlog_on_over_off": num(sends_on / sends_off),
            "collector_over_ingest_b100": num(collector / ingest_b100),
            "grpc_read_all_over_catch_up_read": num(grpc_read / catch_up_read),
            "chat8_dm_c16_over_ceiling": num(dm16 / ceiling),
            "chat8_dm_c64_over_ceiling_c64": num(dm64 / ceiling64),
            "http_over_ceiling": num(http / ceiling),
            "http_over_peer": num(http / peer),
            "live_chat_hot_room_c64_over_ceiling_c64": num(live_chat / ceiling64),
        },
        "figures": r.figures,
        "per_call_costs": r.costs,
        "notes": r.notes,
    });
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&json_report)?,
    )?;

    let mut md = String::new();
    use std::fmt::Write as _;
    writeln!(md, "# tidelog benchmark\n")?;
    writeln!(md, "commit `{commit}`, {cores} cores, {} repeat(s) per figure (median), {} s measured per scenario after warm-up, store of {} events{}; run took {:.0} s.\n",
        plan.repeats, plan.measure.as_secs_f64(), plan.events, if quick { " (`--quick`)" } else { "" }, elapsed.as_secs_f64())?;
    writeln!(md, "| target | measured | ratio | target met |")?;
    writeln!(md, "| --- | --- | --- | --- |")?;
    let yes = |b: bool| if b { "yes" } else { "**no**" };
    writeln!(
        md,
        "| HTTP command ≥ 0.5 × SQL append ceiling (c=16) | {} /s vs {} /s | {:.2} | {} |",
        fmt(http),
        fmt(ceiling),
        http / ceiling,
        yes(http / ceiling >= 0.5)
    )?;
    writeln!(
        md,
        "| HTTP command ≥ 2 × stock cqrs-es peer (c=16) | {} /s vs {} /s | {:.2} | {} |",
        fmt(http),
        fmt(peer),
        http / peer,
        yes(http / peer >= 2.0)
    )?;
    writeln!(
        md,
        "| collector messages/s ≥ 0.8 × /ingest batch-100 (c=16) | {} /s vs {} /s | {:.2} | {} |",
        fmt(collector),
        fmt(ingest_b100),
        collector / ingest_b100,
        yes(collector / ingest_b100 >= 0.8)
    )?;
    writeln!(
        md,
        "| server RSS with 1,000 collected rooms ≤ 150 MB | {} MB | {:.2} | {} |",
        fmt(collector_rss),
        collector_rss / 150.0,
        yes(collector_rss <= 150.0)
    )?;
    writeln!(
        md,
        "| projection lag p99 ≤ 50 ms at half peak | {} ms | {:.2} | {} |",
        fmt(lag_p99),
        lag_p99 / 50.0,
        yes(lag_p99 <= 50.0)
    )?;
    writeln!(
        md,
        "| rebuild ≥ 100,000 events/s | {} /s | {:.2} | {} |",
        fmt(rebuild),
        rebuild / 100_000.0,
        yes(rebuild >= 100_000.0)
    )?;
    writeln!(
        md,
        "| reads p99 ≤ 10 ms ({} events) | {} ms | {:.2} | {} |",
        plan.events,
        fmt(read_p99),
        read_p99 / 10.0,
        yes(read_p99 <= 10.0)
    )?;
    writeln!(
        md,
        "| server RSS ≤ 200 MB (peak) | {} MB | {:.2} | {} |",
        fmt(rss),
        rss / 200.0,
        yes(rss <= 200.0)
    )?;
    writeln!(
        md,
        "| live viewer chat, one hot room, c=64 ≥ 0.5 × append ceiling (c=64) | {} /s vs {} /s | {:.2} | {} |",
        fmt(live_chat),
        fmt(ceiling64),
        live_chat / ceiling64,
        yes(live_chat / ceiling64 >= 0.5)
    )?;
    for (c, dm, ceil) in [(16, dm16, ceiling), (64, dm64, ceiling64)] {
        writeln!(
            md,
            "| Chat8 direct messages, many pairs, c={c} ≥ 0.5 × append ceiling (c={c}) | {} /s vs {} /s | {:.2} | {} |",
            fmt(dm),
            fmt(ceil),
            dm / ceil,
            yes(dm / ceil >= 0.5)
        )?;
    }
    writeln!(
        md,
        "| Chat8 socket delivery p99 ≤ 50 ms, other process, at {} msgs/s (half the c=16 rate) | {} ms | {:.2} | {} |",
        fmt(note("chat8_socket_delivery_rate_per_s")),
        fmt(delivery_p99),
        delivery_p99 / 50.0,
        yes(delivery_p99 <= 50.0)
    )?;
    writeln!(
        md,
        "| generation proxy (banana, c=16) against the gateway called directly | {} /s vs {} /s, p99 +{} ms | {:.2} | — |",
        fmt(proxied.as_ref().map_or(f64::NAN, |p| p.per_s)),
        fmt(direct.as_ref().map_or(f64::NAN, |d| d.per_s)),
        fmt(proxy_added_p99),
        proxy_ratio,
    )?;
    writeln!(
        md,
        "| server RSS with the open Sora streams ≤ 200 MB | {} MB | {:.2} | {} |",
        fmt(streams_rss),
        streams_rss / 200.0,
        yes(streams_rss <= 200.0)
    )?;
    writeln!(
        md,
        "| transparency log: integrate ≥ 100,000 events/s ({} leaves of the loaded store) | {} /s | {:.2} | {} |",
        fmt(note("tlog_integrated_leaves")),
        fmt(integrate),
        integrate / 100_000.0,
        yes(integrate >= 100_000.0)
    )?;
    writeln!(
        md,
        "| room-chat sends c=16 with the integrator running, within noise of it off | {} /s vs {} /s | {:.2} | {} |",
        fmt(sends_on),
        fmt(sends_off),
        sends_on / sends_off,
        yes(sends_on / sends_off >= 0.9)
    )?;
    writeln!(
        md,
        "| integration delay p99 ≤ 3 s through every command scenario (max {} ms) | {} ms | {:.2} | {} |",
        fmt(note("tlog_integration_delay_max_ms")),
        fmt(tlog_delay),
        tlog_delay / 3000.0,
        yes(tlog_delay <= 3000.0)
    )?;
    writeln!(
        md,
        "| audit verify (ledger + Merkle pass) ≤ 10 s per 1,000,000 events ({} events: {} s; ledger {} s, Merkle pass {} s, at once) | {} s | {:.2} | {} |",
        fmt(note("audit_verify_events")),
        fmt(note("audit_verify_seconds")),
        fmt(note("audit_verify_ledger_seconds")),
        fmt(note("tlog_verify_seconds")),
        fmt(verify_per_1m),
        verify_per_1m / 10.0,
        yes(verify_per_1m <= 10.0)
    )?;
    writeln!(
        md,
        "| inclusion proof (`/admin/tlog/proof`, c=16) p99 ≤ 5 ms | {} ms | {:.2} | {} |",
        fmt(proof_p99),
        proof_p99 / 5.0,
        yes(proof_p99 <= 5.0)
    )?;
    writeln!(
        md,
        "| gRPC `$all` read through the Rust client ≥ 0.5 × raw catch-up read ({} events) | {} /s vs {} /s | {:.2} | {} |",
        fmt(note("grpc_read_all_events")),
        fmt(grpc_read),
        fmt(catch_up_read),
        grpc_read / catch_up_read,
        yes(grpc_read / catch_up_read >= 0.5)
    )?;
    writeln!(
        md,
        "| gRPC `$all` subscription lag p99 ≤ 50 ms, from a send's answer, {} subscribers | {} ms | {:.2} | {} |",
        fmt(note("grpc_subscribers")),
        fmt(grpc_lag_p99),
        grpc_lag_p99 / 50.0,
        yes(grpc_lag_p99 <= 50.0)
    )?;
    writeln!(
        md,
        "| server RSS with {} gRPC subscribers ≤ 200 MB | {} MB | {:.2} | {} |",
        fmt(note("grpc_subscribers")),
        fmt(grpc_rss),
        grpc_rss / 200.0,
        yes(grpc_rss <= 200.0)
    )?;
    writeln!(
        md,
        "| live lists p99 ≤ 10 ms ({} rooms, {} live, {} chat events) | {} ms | {:.2} | {} |\n",
        LIVE_ROOMS,
        fmt(note("live_rooms_live")),
        fmt(note("live_events_loaded")),
        fmt(live_read_p99),
        live_read_p99 / 10.0,
        yes(live_read_p99 <= 10.0)
    )?;
    writeln!(
        md,
        "| scenario | ops/s | × ceiling | p50 ms | p99 ms | p99.9 ms | errors |"
    )?;
    writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |")?;
    for (name, fig) in &r.figures {
        let c = if name.ends_with("_c64") {
            f("ceiling_append_c64").map(|f| f.per_s).unwrap_or(f64::NAN)
        } else {
            ceiling
        };
        let ratio = if name.starts_with("read")
            || name.starts_with("ceiling_read")
            || name.starts_with("projection")
            || name == "chat8_socket_delivery"
            || name.starts_with("proxy_open_streams")
            || name.starts_with("grpc")
        {
            "".to_owned()
        } else {
            format!("{:.2}", fig.per_s / c)
        };
        writeln!(
            md,
            "| {name} | {} | {ratio} | {} | {} | {} | {} |",
            fmt(fig.per_s),
            fmt(fig.p50_ms),
            fmt(fig.p99_ms),
            fmt(fig.p999_ms),
            fig.errors
        )?;
    }
    if !r.costs.is_empty() {
        writeln!(
            md,
            "\nPer call, over the first run of each command figure, everything it set off included (the ceiling's one INSERT is one write transaction, one commit and at most one flush):\n\n| scenario | WAL bytes | write transactions | WAL flushes | commits (reads too) | statements |\n| --- | --- | --- | --- | --- | --- |"
        )?;
        for (name, c) in &r.costs {
            let v = |k: &str| c[k].as_f64().map(fmt).unwrap_or_else(|| "—".into());
            writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} |",
                v("wal_bytes"),
                v("write_transactions"),
                v("wal_flushes"),
                v("commits"),
                v("statements")
            )?;
        }
    }
    writeln!(md, "\n| note | value |\n| --- | --- |")?;
    for (k, v) in &r.notes {
        writeln!(
            md,
            "| {k} | {} |",
            v.as_f64().map(fmt).unwrap_or_else(|| v.to_string())
        )?;
    }
    writeln!(md, "\nGift ingestion figures count messages (batch × requests). `projection_lag_gifts` is the time from an ingestion answer to the `gifts` read model having it, at {} msgs/s (half the batch-1 peak at c=16). Under load a room-chat send answers once durable and the next request waits for its read model (read-your-writes on the next read), so its projection lag shows in `http_roomchat_send_read_c16`, not in the send's latency.", fmt(note("projection_lag_rate_per_s")))?;
    std::fs::write(out.join("report.md"), &md)?;
    std::io::stdout().write_all(md.as_bytes())?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    run(Args::parse()).await
}

/// A message id of the bulk-loaded store (they start at 1,000,000,000),
/// spread over `span` by client `w` and its request `i`.
fn message_id_at(w: usize, i: u64, span: i64) -> i64 {
    1_000_000_000 + (w as i64 * 104_729 + i as i64 * 7_919) % span
}

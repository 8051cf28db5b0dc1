//! The `tidelog` command line.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};
use sqlx::PgPool;

use crate::app::Server;
use crate::config::Config;
use crate::db::{self, Database};
use crate::projector;

#[derive(Parser)]
#[command(
    name = "tidelog",
    version,
    about = "Event-sourced backend serving five frontends"
)]
struct Cli {
    /// The database to use instead of `DATABASE_URL`: e.g. a hot standby
    /// for an auditor's long reads (`audit verify`, `audit export`,
    /// `gifts as-of`, `live ranking`), which then see a consistent, slightly
    /// earlier state of the primary and do not load it
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (embedded PostgreSQL unless DATABASE_URL is set)
    Serve,
    /// Apply database migrations and exit
    Migrate,
    /// Print the effective configuration (environment and defaults), every
    /// secret redacted; touches no database
    Config,
    /// Print the OpenAPI 3.1 document (every surface, or one); touches no
    /// database
    Openapi {
        /// roomchat, chat8, ocean1, live, gift, admin or ops
        #[arg(long)]
        surface: Option<String>,
    },
    /// Inspect or rebuild read-model projections
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Read the event log
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Analysts' views of the gift monitor (seed 001)
    Gifts {
        #[command(subcommand)]
        command: GiftsCommand,
    },
    /// Analysts' views of the live rooms (seed 000)
    Live {
        #[command(subcommand)]
        command: LiveCommand,
    },
    /// Card keys for points (seed 002)
    Cards {
        #[command(subcommand)]
        command: CardsCommand,
    },
    /// The auditors' checks and exports of the coin and point ledger and
    /// of the transparency log
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// A C2SP tlog-witness an auditor runs: cosigns a log's checkpoints
    /// only when they extend what it saw
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
    },
    /// SQL access for BI tools
    Analytics {
        #[command(subcommand)]
        command: AnalyticsCommand,
    },
    /// The analysts' KurrentDB-protocol read endpoint
    Grpc {
        #[command(subcommand)]
        command: GrpcCommand,
    },
}

#[derive(Subcommand)]
enum WitnessCommand {
    /// Serve `POST /add-checkpoint` (its key and state kept in --dir; every
    /// checkpoint it cosigns archived under `<dir>/logs/<id>/checkpoints/`)
    Serve {
        /// The witness's directory (key, state, archive); mode 0700
        #[arg(long)]
        dir: std::path::PathBuf,
        /// Listen address
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: std::net::SocketAddr,
        /// A log to follow: its verifier key (`tidelog audit vkey`); the
        /// log's origin is the key's name. Repeatable
        #[arg(long = "log-vkey", required = true)]
        log_vkeys: Vec<String>,
        /// The witness's key name on first start (default
        /// `tidelog-witness.localhost/<hostname>`)
        #[arg(long)]
        name: Option<String>,
    },
    /// Print the witness's verifier key (for the log's TIDELOG_TLOG_WITNESSES),
    /// generating the key on first use
    Vkey {
        #[arg(long)]
        dir: std::path::PathBuf,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum AnalyticsCommand {
    /// (Re)build the `analytics` schema of documented views (the events,
    /// every read model, the projections' progress) and give a read-only
    /// role access to it alone; on the primary (standbys get both by
    /// replication). A new role's password is printed once
    Setup {
        /// The role BI tools log in as (created if missing)
        #[arg(long, default_value = crate::analytics::DEFAULT_ROLE)]
        role: String,
        /// Give an existing role a new password (printed once)
        #[arg(long)]
        new_password: bool,
    },
}

#[derive(Subcommand)]
enum GrpcCommand {
    /// Serve the KurrentDB-protocol read endpoint alone (no HTTP, no
    /// projectors) on TIDELOG_GRPC_BIND, reading the database it is given:
    /// a hot standby with --database-url, where it polls for new events
    /// (100 ms) as no notification reaches a standby
    Serve,
}

#[derive(Subcommand)]
enum CardsCommand {
    /// Issue a batch of card keys and print their codes, one per line (the
    /// only time they exist in clear: only keyed hashes are stored)
    Issue {
        /// Points each card gives
        #[arg(long)]
        points: i64,
        /// How many cards
        #[arg(long)]
        count: usize,
        /// Batch name recorded with each card (default: a new UUID)
        #[arg(long)]
        batch: Option<String>,
        /// Cards expire this many days after issue (default: never)
        #[arg(long)]
        expires_days: Option<i64>,
        /// Write the codes to this file (mode 0600) instead of stdout
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute from the events: hash chains, balances against the
    /// projected ones, postings summing to zero per currency, every finished
    /// payment and redeemed card credited exactly once. Exits non-zero
    /// naming the first discrepancy. Then the transparency log: every event
    /// one leaf, unchanged and in place, against every checkpoint of
    /// --checkpoints (and the database's own)
    Verify {
        /// Print the whole report as JSON
        #[arg(long)]
        json: bool,
        /// The auditor's archive of checkpoints: every file in it (any name,
        /// any depth) that is a checkpoint of this log must verify and be
        /// matched by the events
        #[arg(long, value_name = "DIR")]
        checkpoints: Option<std::path::PathBuf>,
        /// Check only what the log grew since the run that wrote this state
        /// file (the transparency log alone; written when the run passes)
        #[arg(long, value_name = "FILE")]
        incremental: Option<std::path::PathBuf>,
        /// The log's verifier key to trust (default: the one of the signing
        /// key file, TIDELOG_TLOG_KEY_FILE)
        #[arg(long)]
        log_vkey: Option<String>,
        /// A witness's verifier key (cosignature/v1); repeatable (default:
        /// TIDELOG_TLOG_WITNESSES)
        #[arg(long = "witness-vkey")]
        witness_vkeys: Vec<String>,
        /// Witness cosignatures each archived checkpoint needs (default:
        /// every witness given, or TIDELOG_TLOG_WITNESS_QUORUM)
        #[arg(long)]
        quorum: Option<usize>,
    },
    /// Print the transparency log's verifier key
    /// (`<name>+<key id>+<base64 key>`), generating the signing key file on
    /// first use
    Vkey,
    /// Print a `c2sp.org/tlog-proof@v1` file for one event: its leaf
    /// index, inclusion proof and the cosigned checkpoint
    Prove {
        /// `<aggregate_type>/<aggregate_id>/<sequence>`
        event: String,
        /// Prove against the signed checkpoint of this size (default: the
        /// latest cosigned one)
        #[arg(long)]
        size: Option<u64>,
        /// Also write the event's leaf bytes (what the proof is checked with)
        #[arg(long, value_name = "FILE")]
        entry: Option<std::path::PathBuf>,
    },
    /// Write ledger entries (with actor, request id, surface, client IP and
    /// event hash) recorded in [from, to) as CSV or JSON lines
    Export {
        /// RFC 3339 or `YYYY-MM-DD HH:MM:SS` in TIDELOG_TIMEZONE
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Only this account (username, email, number or UUID)
        #[arg(long)]
        account: Option<String>,
        /// Write to this file instead of stdout
        #[arg(long)]
        output: Option<std::path::PathBuf>,
        /// Instead: the whole transparency log as C2SP tlog-tiles files in
        /// DIR (`checkpoint`, `tile/<L>/<N>`, `tile/entries/<N>`) at its
        /// latest cosigned checkpoint
        #[arg(long, value_name = "DIR", conflicts_with_all = ["from", "to", "account", "output"])]
        tlog_tiles: Option<std::path::PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Csv,
    Jsonl,
}

#[derive(Subcommand)]
enum GiftsCommand {
    /// The monthly summary as it stood at an instant: replays the events
    /// recorded up to then into a private schema (progress bar on stderr),
    /// prints the `/gift/by_month` rows as JSON
    AsOf {
        /// RFC 3339 (`2026-10-01T00:00:00+08:00`) or `YYYY-MM-DD HH:MM:SS`
        /// in TIDELOG_TIMEZONE
        instant: String,
        /// YYYYMM or YYYY-MM; default: the instant's month
        #[arg(long)]
        month: Option<String>,
    },
    /// Every monitored room's collector: the process holding it, connected
    /// since, last message, messages, reconnects, last error
    Collectors {
        /// JSON instead of a table
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum LiveCommand {
    /// The ranked list of live rooms (`/api/live/get_ranked_lives/`) as it
    /// stood at an instant: replays the events recorded up to then into a
    /// private schema, scores at that instant (viewers are not events: 0),
    /// prints the answer as JSON
    Ranking {
        /// RFC 3339 or `YYYY-MM-DD HH:MM:SS` in TIDELOG_TIMEZONE; default: now
        #[arg(long)]
        as_of: Option<String>,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Checkpoint, lag, owner and last error of every projection
    Status {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Replay the whole log into fresh tables, then swap them in; several
    /// projections are rebuilt at once (one JSON line each when done)
    Rebuild {
        /// Projection names (see `projections status`), or `all`
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Print the newest events as JSON lines, oldest first
    Tail {
        /// How many events
        #[arg(short = 'n', long, default_value_t = 20)]
        count: i64,
        /// Keep printing new events as they are committed
        #[arg(short, long)]
        follow: bool,
    },
    /// Print one account's whole stream (its security history: sign-ins,
    /// failures, devices, password changes, sign-outs) as JSON lines
    Account {
        /// Username, email or account number
        who: String,
    },
}

pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::from_env()?;
    if let Some(url) = cli.database_url {
        config.database_url = Some(crate::config::Secret::new(url));
    }
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Config => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{config:#?}")?;
            let key = config.tlog.key_path(&config.data_dir);
            match crate::tlog::signer::load(&key, config.tlog.origin.as_deref())? {
                Some(signer) => writeln!(out, "transparency log vkey: {}", signer.vkey())?,
                None => writeln!(
                    out,
                    "transparency log vkey: none yet ({} is made on first start)",
                    key.display()
                )?,
            }
            Ok(())
        }
        Command::Audit {
            command: AuditCommand::Vkey,
        } => {
            let key = config.tlog.key_path(&config.data_dir);
            let signer =
                crate::tlog::signer::load_or_generate(&key, config.tlog.origin.as_deref())?;
            writeln!(std::io::stdout(), "{}", signer.vkey())?;
            Ok(())
        }
        Command::Witness { command } => witness(command).await,
        Command::Openapi { surface } => {
            let doc = crate::http::docs::openapi(surface.as_deref()).ok_or_else(|| {
                let known: Vec<_> = crate::http::docs::SURFACES.iter().map(|s| s.name).collect();
                anyhow::anyhow!(
                    "unknown surface {:?}; known: {}",
                    surface.unwrap_or_default(),
                    known.join(", ")
                )
            })?;
            writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&doc)?)?;
            Ok(())
        }
        other => {
            // names resolved before any cluster starts: a typo fails at once
            let rebuilding = match &other {
                Command::Projections {
                    command: ProjectionsCommand::Rebuild { names },
                } => Some(chosen_projections(names, config.timezone)?),
                _ => None,
            };
            let database = Database::open(&config).await?;
            let result = async {
                // a rebuild holds two connections (applier and reader)
                // while it catches up, and several run at once
                let size = match (&rebuilding, &other) {
                    (Some(chosen), _) => (2 * chosen.len() as u32 + 2).max(4),
                    // every read and subscription takes a connection now and then
                    (None, Command::Grpc { .. }) => config.db_pool_size,
                    (None, _) => 4,
                };
                let pool = database.pool(size).await?;
                // a hot standby is read as it is: it takes its schema from the primary
                let standby = db::in_recovery(&pool).await?;
                if standby {
                    tracing::info!("reading a standby: its state is the primary's of a moment ago");
                } else {
                    db::migrate(&pool).await?;
                }
                match other {
                    Command::Migrate => {
                        tracing::info!("migrations applied");
                        Ok(())
                    }
                    Command::Projections {
                        command: ProjectionsCommand::Status { json },
                    } => print_status(&pool, json).await,
                    Command::Projections {
                        command: ProjectionsCommand::Rebuild { .. },
                    } => {
                        let chosen = rebuilding.clone().unwrap_or_default();
                        let outcomes = projector::rebuild_many(
                            &pool,
                            chosen,
                            config.projector_batch.max(1000),
                            true,
                        )
                        .await;
                        let mut failed = None;
                        for outcome in outcomes {
                            match outcome {
                                Ok(report) => writeln!(
                                    std::io::stdout(),
                                    "{}",
                                    serde_json::to_string(&report)?
                                )?,
                                Err(e) => {
                                    tracing::error!(error = format!("{e:#}"), "rebuild failed");
                                    failed.get_or_insert(e);
                                }
                            }
                        }
                        failed.map_or(Ok(()), Err)
                    }
                    Command::Events {
                        command: EventsCommand::Tail { count, follow },
                    } => tail(&pool, count, follow).await,
                    Command::Events {
                        command: EventsCommand::Account { who },
                    } => account_history(&pool, &who).await,
                    Command::Gifts {
                        command: GiftsCommand::Collectors { json },
                    } => print_collectors(&pool, json).await,
                    Command::Gifts {
                        command: GiftsCommand::AsOf { instant, month },
                    } => {
                        gifts_as_of(
                            &pool,
                            &database.options,
                            &config,
                            &instant,
                            month.as_deref(),
                        )
                        .await
                    }
                    Command::Live {
                        command: LiveCommand::Ranking { as_of },
                    } => live_ranking(&pool, &database.options, &config, as_of.as_deref()).await,
                    Command::Cards {
                        command:
                            CardsCommand::Issue {
                                points,
                                count,
                                batch,
                                expires_days,
                                output,
                            },
                    } => {
                        issue_cards(&pool, &config, points, count, batch, expires_days, output)
                            .await
                    }
                    Command::Audit {
                        command:
                            AuditCommand::Verify {
                                json,
                                checkpoints,
                                incremental,
                                log_vkey,
                                witness_vkeys,
                                quorum,
                            },
                    } => {
                        let explicit = log_vkey.is_some();
                        let mut policy = audit_policy(&config, log_vkey, witness_vkeys, quorum)?;
                        if !explicit {
                            implicit_key_of_this_log(&pool, &mut policy).await?;
                        }
                        let opts = crate::tlog::audit::VerifyOptions {
                            policy,
                            archive: checkpoints,
                            incremental,
                        };
                        audit_verify(&pool, json, &opts).await
                    }
                    Command::Audit {
                        command: AuditCommand::Prove { event, size, entry },
                    } => audit_prove(&pool, &config, &event, size, entry).await,
                    Command::Audit {
                        command:
                            AuditCommand::Export {
                                tlog_tiles: Some(dir),
                                ..
                            },
                    } => {
                        let cosigners = crate::tlog::Cosigners::from_config(&config)?;
                        let cp = crate::tlog::audit::export_tiles(&pool, &cosigners, &dir, |_| {})
                            .await?;
                        eprintln_info(&format!(
                            "{} leaves written to {} as tlog-tiles, with the checkpoint of size {}",
                            cp.size,
                            dir.display(),
                            cp.size
                        ));
                        Ok(())
                    }
                    Command::Audit {
                        command:
                            AuditCommand::Export {
                                from,
                                to,
                                format,
                                account,
                                output,
                                tlog_tiles: None,
                            },
                    } => audit_export(&pool, &config, from, to, format, account, output).await,
                    Command::Grpc {
                        command: GrpcCommand::Serve,
                    } => grpc_serve(&pool, &config, standby).await,
                    Command::Analytics {
                        command: AnalyticsCommand::Setup { role, new_password },
                    } => analytics_setup(&pool, &config, &role, new_password).await,
                    Command::Serve
                    | Command::Config
                    | Command::Openapi { .. }
                    | Command::Witness { .. }
                    | Command::Audit {
                        command: AuditCommand::Vkey,
                    } => unreachable!(),
                }
            }
            .await;
            tokio::task::spawn_blocking(move || database.stop_embedded_if_started()).await?;
            result
        }
    }
}

/// The projections `names` ask for (`all`: every one that can be rebuilt,
/// which is all but the log's numbering), each once, in the order given.
fn chosen_projections(
    names: &[String],
    tz: chrono_tz::Tz,
) -> anyhow::Result<Vec<std::sync::Arc<dyn projections::Projector>>> {
    // the log's numbering is assigned once, never rebuilt
    let all: Vec<_> = projections::all(tz)
        .into_iter()
        .filter(|p| p.rebuildable())
        .collect();
    if names.iter().any(|n| n == "all") {
        return Ok(all);
    }
    let mut chosen: Vec<std::sync::Arc<dyn projections::Projector>> = Vec::new();
    for name in names {
        let p = all.iter().find(|p| p.name() == name).ok_or_else(|| {
            let known: Vec<_> = all.iter().map(|p| p.name()).collect();
            anyhow!(
                "no projection named {name:?}; known: {}, all",
                known.join(", ")
            )
        })?;
        if !chosen.iter().any(|c| c.name() == p.name()) {
            chosen.push(p.clone());
        }
    }
    Ok(chosen)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = Server::start(config).await?;
    interrupted().await?;
    server.shutdown().await;
    Ok(())
}

/// Returns on Ctrl-C or SIGTERM.
async fn interrupted() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        _ = term.recv() => tracing::info!("terminated; shutting down"),
    }
    Ok(())
}

async fn analytics_setup(
    pool: &PgPool,
    config: &Config,
    role: &str,
    new_password: bool,
) -> anyhow::Result<()> {
    let core = crate::core::Core::new(std::sync::Arc::new(config.clone()), pool.clone());
    let setup = crate::analytics::setup(&core, role, new_password).await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "role {} {}; read-only, sees only the analytics schema",
        setup.role,
        if setup.created { "created" } else { "kept" }
    )?;
    if let Some(password) = &setup.password {
        writeln!(out, "password (shown once): {password}")?;
    }
    writeln!(
        out,
        "views: {}",
        setup
            .views
            .iter()
            .map(|v| format!("analytics.{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    Ok(())
}

/// The read endpoint on its own, until interrupted.
async fn grpc_serve(pool: &PgPool, config: &Config, standby: bool) -> anyhow::Result<()> {
    let endpoint = crate::app::GrpcAlone::start(config, pool, standby).await?;
    interrupted().await?;
    endpoint.shutdown().await;
    Ok(())
}

async fn print_collectors(pool: &PgPool, json: bool) -> anyhow::Result<()> {
    let rows = crate::gifts::collector::lease::status(pool).await?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("-".to_owned(), |t| {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        })
    };
    writeln!(
        out,
        "{:>12}  {:<24}  {:<19}  {:<19}  {:>9}  {:>10}  last error",
        "room", "held by", "connected since", "last message", "messages", "reconnects"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:>12}  {:<24}  {:<19}  {:<19}  {:>9}  {:>10}  {}",
            r.room_id,
            r.holder.as_deref().unwrap_or("(nobody)"),
            time(r.connected_since),
            time(r.last_message_at),
            r.messages.unwrap_or(0),
            r.reconnects.unwrap_or(0),
            r.last_error.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

async fn print_status(pool: &PgPool, json: bool) -> anyhow::Result<()> {
    let rows = projector::status(pool).await?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<12} {:>12} {:>12} {:>10} {:>8}  {:<24} STATE",
        "PROJECTION", "TXID", "POSITION", "APPLIED", "LAG", "OWNER"
    )?;
    for r in rows {
        let state = match (&r.last_error, &r.held_back) {
            (Some(e), _) => format!(
                "FAILING at position {} ({} retries): {e}",
                r.failed_position.unwrap_or(0),
                r.retries
            ),
            (None, Some(h)) => h.clone(),
            (None, None) if r.lag_events > 0 => "catching up".into(),
            _ => "up to date".into(),
        };
        writeln!(
            out,
            "{:<12} {:>12} {:>12} {:>10} {:>8}  {:<24} {state}",
            r.name,
            r.last_txid,
            r.last_position,
            r.events_applied,
            r.lag_events,
            r.owner.unwrap_or_else(|| "-".into())
        )?;
    }
    Ok(())
}

fn parse_instant(raw: &str, tz: chrono_tz::Tz) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw.trim()) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let raw_t = raw.trim();
    // a plain date is the start of that day in the zone
    let local = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(raw_t, f).ok())
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(raw_t, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| {
            anyhow!("{raw:?} is neither RFC 3339, YYYY-MM-DD HH:MM[:SS] nor YYYY-MM-DD")
        })?;
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok_or_else(|| anyhow!("{raw:?} does not exist in {tz}"))
}

async fn gifts_as_of(
    pool: &PgPool,
    connect: &sqlx::postgres::PgConnectOptions,
    config: &Config,
    instant: &str,
    month: Option<&str>,
) -> anyhow::Result<()> {
    use crate::gifts::{summary, Month};
    let tz = config.timezone;
    let until = parse_instant(instant, tz)?;
    let month = Month::parse_or_current(month, until, tz)?;
    let projector = projections::gifts::GiftsProjector { tz };
    let request = summary::SummaryRequest {
        month,
        now: until,
        tz,
        effective_day_secs: config.effective_day_minutes * 60,
        with_concurrency: false,
    };
    let rows = projector::replay_as_of(
        pool,
        connect,
        &[&projector],
        until,
        true,
        |scoped| async move { Ok(summary::month_summary(&scoped, &request).await?) },
    )
    .await?;
    writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(&rows)?
    )?;
    Ok(())
}

async fn live_ranking(
    pool: &PgPool,
    connect: &sqlx::postgres::PgConnectOptions,
    config: &Config,
    as_of: Option<&str>,
) -> anyhow::Result<()> {
    let tz = config.timezone;
    let until = match as_of {
        Some(raw) => parse_instant(raw, tz)?,
        None => chrono::Utc::now(),
    };
    let projectors: [&dyn projections::Projector; 2] = [
        &projections::live::LiveProjector,
        &projections::live::LiveChatProjector,
    ];
    let answer = projector::replay_as_of(
        pool,
        connect,
        &projectors,
        until,
        true,
        |scoped| async move {
            let rows = projections::live::lives(&scoped, None, None).await?;
            let ranked = projections::live::rank(rows, until);
            let items = crate::liverooms::views::ranked(&ranked, tz);
            // as `GET /api/live/get_ranked_lives` answers, as of `until`
            Ok(serde_json::json!({
                "code": 0, "status": "success", "data": { "lives_info": items }
            }))
        },
    )
    .await?;
    writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(&answer)?
    )?;
    Ok(())
}

async fn account_history(pool: &PgPool, who: &str) -> anyhow::Result<()> {
    let Some(account) = projections::accounts::by_any(pool, who).await? else {
        anyhow::bail!("no account with username, email or number {who:?}");
    };
    let rows: Vec<TailRow> = sqlx::query_as(&format!(
        "SELECT {TAIL_COLUMNS} FROM events WHERE aggregate_type = 'Account' AND aggregate_id = $1 ORDER BY sequence"
    ))
    .bind(account.account_id.to_string())
    .fetch_all(pool)
    .await?;
    let mut out = std::io::stdout().lock();
    for r in rows {
        writeln!(out, "{}", tail_line(r))?;
    }
    Ok(())
}

const TAIL_COLUMNS: &str = "global_position, transaction_id::text::bigint AS txid, recorded_at, aggregate_type, aggregate_id,
    sequence, event_type, event_version, payload::jsonb AS payload, metadata::jsonb AS metadata, encode(hash, 'hex') AS hash";

type TailRow = (
    i64,
    i64,
    chrono::DateTime<chrono::Utc>,
    String,
    String,
    i64,
    String,
    String,
    serde_json::Value,
    serde_json::Value,
    String,
);

fn tail_line(r: TailRow) -> serde_json::Value {
    let mut payload = r.8;
    crate::store::redact_credentials(&mut payload);
    serde_json::json!({
        "global_position": r.0, "transaction_id": r.1, "recorded_at": r.2, "aggregate_type": r.3,
        "aggregate_id": r.4, "sequence": r.5, "event_type": r.6, "event_version": r.7,
        "payload": payload, "metadata": r.9, "hash": r.10,
    })
}

async fn tail(pool: &PgPool, count: i64, follow: bool) -> anyhow::Result<()> {
    let mut rows: Vec<TailRow> = sqlx::query_as(&format!(
        "SELECT {TAIL_COLUMNS} FROM events
          WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY transaction_id DESC, global_position DESC LIMIT $1"
    ))
    .bind(count.max(0))
    .fetch_all(pool)
    .await
    .context("reading the log")?;
    rows.reverse();
    let mut last = rows.last().map(|r| (r.1, r.0)).unwrap_or((0, 0));
    let mut out = std::io::stdout().lock();
    for r in rows {
        writeln!(out, "{}", tail_line(r))?;
    }
    drop(out);
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let rows: Vec<TailRow> = sqlx::query_as(&format!(
            "SELECT {TAIL_COLUMNS} FROM events
              WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
                AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
              ORDER BY transaction_id, global_position LIMIT 1000"
        ))
        .bind(last.0.to_string())
        .bind(last.1)
        .fetch_all(pool)
        .await?;
        let mut out = std::io::stdout().lock();
        for r in rows {
            last = (r.1, r.0);
            writeln!(out, "{}", tail_line(r))?;
        }
    }
}

async fn issue_cards(
    pool: &PgPool,
    config: &Config,
    points: i64,
    count: usize,
    batch: Option<String>,
    expires_days: Option<i64>,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let points = aggregates::Amount::new(points).map_err(|e| anyhow!("--points: {e}"))?;
    if count == 0 || count > 100_000 {
        anyhow::bail!("--count must be between 1 and 100000");
    }
    let expires_at = match expires_days {
        Some(d) if d >= 1 => Some(crate::store::now() + chrono::Duration::days(d)),
        Some(_) => anyhow::bail!("--expires-days must be at least 1"),
        None => None,
    };
    let secret = match &config.card_secret {
        Some(s) => s.clone(),
        None => crate::auth::shared_secret(pool, config, "card_secret").await?,
    };
    let batch = batch.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let store = crate::store::Store::new(pool.clone());
    let meta = crate::store::CommandMeta {
        actor: format!("cli:{}", whoami()),
        surface: "cli",
        request_id: uuid::Uuid::now_v7().to_string(),
        correlation_id: batch.clone(),
        causation_id: batch.clone(),
        client_ip: "local".into(),
    };
    let bar = indicatif::ProgressBar::new(count as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("issuing cards {bar:40} {pos}/{len} {eta}")
            .expect("static template"),
    );
    let spec = crate::ledger::cards::Batch {
        batch_id: batch.clone(),
        points,
        count,
        expires_at,
    };
    let codes = crate::ledger::cards::issue(&store, &secret, &meta, &spec, || bar.inc(1)).await?;
    bar.finish_and_clear();
    let text = codes.join("\n") + "\n";
    match output {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(text.as_bytes())?;
            eprintln_info(&format!(
                "{count} cards of {} points (batch {batch}) written to {}",
                points.get(),
                path.display()
            ));
        }
        None => {
            std::io::stdout().write_all(text.as_bytes())?;
            eprintln_info(&format!(
                "{count} cards of {} points (batch {batch})",
                points.get()
            ));
        }
    }
    Ok(())
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

fn eprintln_info(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Who `audit verify` trusts: the given log key (else the key file's),
/// the given witnesses (else the configured ones) and quorum.
fn audit_policy(
    config: &Config,
    log_vkey: Option<String>,
    witness_vkeys: Vec<String>,
    quorum: Option<usize>,
) -> anyhow::Result<crate::tlog::audit::Policy> {
    use crate::tlog::cosignature::CosignatureVerifier;
    use crate::tlog::note::{Ed25519Verifier, NoteVerifier, Verifiers};
    let log_vkey = match log_vkey {
        Some(v) => Some(v),
        None => {
            let key = config.tlog.key_path(&config.data_dir);
            crate::tlog::signer::load(&key, config.tlog.origin.as_deref())?.map(|s| s.vkey())
        }
    };
    let mut log_keys = Verifiers::new();
    let mut origin = None;
    if let Some(vkey) = log_vkey {
        let log = Ed25519Verifier::from_vkey(vkey.trim())
            .map_err(|e| anyhow!("--log-vkey {vkey:?}: {e}"))?;
        origin = Some(log.name().to_owned());
        log_keys.push(log)?;
    }
    let (vkeys, default_quorum) = if witness_vkeys.is_empty() {
        let configured = config
            .tlog
            .witnesses
            .iter()
            .map(|w| w.vkey.clone())
            .collect();
        (configured, config.tlog.quorum)
    } else {
        let n = witness_vkeys.len();
        (witness_vkeys, n)
    };
    let mut witnesses = Verifiers::new();
    for v in &vkeys {
        witnesses.push(
            CosignatureVerifier::from_vkey(v.trim())
                .map_err(|e| anyhow!("witness key {v:?}: {e}"))?,
        )?;
    }
    Ok(crate::tlog::audit::Policy {
        origin,
        log_keys,
        witnesses,
        quorum: quorum.unwrap_or(default_quorum),
    })
}

/// A key taken from the key file rather than given: if the database's
/// newest checkpoint is another origin's, the file is not this log's key,
/// and the checkpoints are compared without it (saying so).
async fn implicit_key_of_this_log(
    pool: &PgPool,
    policy: &mut crate::tlog::audit::Policy,
) -> anyhow::Result<()> {
    let Some(origin) = policy.origin.clone() else {
        return Ok(());
    };
    let newest: Option<String> =
        sqlx::query_scalar("SELECT note FROM tlog_checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    let theirs = newest
        .as_deref()
        .and_then(crate::tlog::reads::body_of)
        .map(|c| c.origin);
    if theirs.as_ref().is_some_and(|o| *o != origin) {
        eprintln_info(&format!(
            "the key file's log ({origin}) is not this database's ({}): give --log-vkey",
            theirs.unwrap_or_default()
        ));
        policy.origin = None;
        policy.log_keys = Default::default();
    }
    Ok(())
}

async fn audit_verify(
    pool: &PgPool,
    json: bool,
    opts: &crate::tlog::audit::VerifyOptions,
) -> anyhow::Result<()> {
    // the transparency log alone in incremental mode; else with the ledger
    let tlog = crate::tlog::audit::verify(pool, opts, |_| {});
    let (ledger, tlog) = if opts.incremental.is_some() {
        (None, tlog.await?)
    } else {
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(pool)
            .await?;
        let bar = indicatif::ProgressBar::new(total.max(1) as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "verifying {bar:40} {pos}/{len} events {elapsed}",
            )
            .expect("static template"),
        );
        // the hash chains are checked by the transparency log's pass
        let ledger = crate::ledger::audit::verify_without_chains(pool, |n| bar.inc(n));
        let (ledger, tlog) = tokio::join!(ledger, tlog);
        bar.finish_and_clear();
        let (mut ledger, tlog) = (ledger?, tlog?);
        ledger.events = tlog.events as i64;
        if let Some(broken) = &tlog.chain_broken {
            // the headline: a broken chain explains everything after it
            ledger.discrepancies.insert(0, broken.clone());
        }
        (Some(ledger), tlog)
    };
    let mut discrepancies: Vec<String> = ledger
        .as_ref()
        .map(|r| r.discrepancies.clone())
        .unwrap_or_default();
    discrepancies.extend(
        tlog.discrepancies
            .iter()
            .map(|d| format!("transparency log: {d}")),
    );
    let mut out = std::io::stdout().lock();
    if json {
        let mut value = match &ledger {
            Some(r) => serde_json::to_value(r)?,
            None => serde_json::json!({}),
        };
        value["tlog"] = serde_json::to_value(&tlog)?;
        value["discrepancies"] = serde_json::to_value(&discrepancies)?;
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        if let Some(report) = &ledger {
            writeln!(
                out,
                "{} events ({} wallet events, {} wallets), {} finished payments, {} redeemed cards checked in {:.2} s",
                report.events,
                report.wallet_events,
                report.wallets,
                report.payments_finished,
                report.cards_redeemed,
                report.seconds
            )?;
            if report.projection_behind > 0 {
                writeln!(
                    out,
                    "note: the ledger projection has not applied {} wallet events yet; compared up to its checkpoint",
                    report.projection_behind
                )?;
            }
        }
        writeln!(
            out,
            "transparency log {}: {} events numbered, {} leaves integrated, {} leaves hashed{} in {:.2} s; {} archived checkpoints ({} files skipped), {} in the database, the newest of size {}",
            if tlog.origin.is_empty() { "(no log key given)" } else { &tlog.origin },
            tlog.numbered_events,
            tlog.tree_size,
            tlog.leaves_hashed,
            tlog.incremental_from
                .map(|s| format!(" (from {s}, where the last run ended)"))
                .unwrap_or_default(),
            tlog.seconds,
            tlog.archived_checkpoints,
            tlog.skipped_files.len(),
            tlog.database_checkpoints,
            tlog.newest_checkpoint
                .map_or("-".to_owned(), |s| s.to_string()),
        )?;
        writeln!(
            out,
            "not yet under a checkpoint: {} events{} ({} not numbered yet)",
            tlog.not_under_checkpoint,
            tlog.oldest_not_under_checkpoint_secs
                .map(|s| format!(", the oldest {s:.1} s old"))
                .unwrap_or_default(),
            tlog.not_numbered,
        )?;
        if opts.policy.origin.is_none() {
            writeln!(out, "note: no log key (--log-vkey, or a key file): the database's checkpoints were compared, not authenticated")?;
        }
        if opts.archive.is_none() {
            writeln!(out, "note: no --checkpoints archive: the database's own checkpoints prove nothing against whoever controls the database")?;
        }
        for d in &discrepancies {
            writeln!(out, "DISCREPANCY: {d}")?;
        }
    }
    match discrepancies.first() {
        Some(first) => Err(anyhow!("audit failed: {first}")),
        None => {
            if !json {
                if ledger.is_some() {
                    writeln!(
                        out,
                        "OK: hash chains, balances, postings, payments and cards agree"
                    )?;
                }
                writeln!(
                    out,
                    "OK: transparency log: every numbered event is one leaf, unchanged and in place, and every checkpoint checked matches"
                )?;
            }
            Ok(())
        }
    }
}

async fn audit_prove(
    pool: &PgPool,
    config: &Config,
    event: &str,
    size: Option<u64>,
    entry: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use crate::tlog::reads;
    let cosigners = crate::tlog::Cosigners::from_config(config)?;
    let mut conn = pool.acquire().await?;
    let index = reads::index_of_event(&mut conn, event)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let (proof, ev) = reads::proof(&mut conn, &cosigners, None, index, size)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    if let Some(path) = entry {
        std::fs::write(&path, ev.leaf()).with_context(|| format!("writing {}", path.display()))?;
    }
    std::io::stdout().write_all(proof.encode().as_bytes())?;
    Ok(())
}

async fn witness(command: WitnessCommand) -> anyhow::Result<()> {
    use crate::tlog::witness_store::WitnessStore;
    match command {
        WitnessCommand::Vkey { dir, name } => {
            writeln!(
                std::io::stdout(),
                "{}",
                WitnessStore::vkey_of(&dir, name.as_deref())?
            )?;
            Ok(())
        }
        WitnessCommand::Serve {
            dir,
            bind,
            log_vkeys,
            name,
        } => {
            let store = WitnessStore::open(&dir, name.as_deref(), &log_vkeys)?;
            let vkey = store.vkey();
            let origins: Vec<String> = store.origins().map(str::to_owned).collect();
            let server = crate::app::WitnessServer::start(store, bind).await?;
            tracing::info!(%vkey, ?origins, "witnessing");
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            server.shutdown().await;
            Ok(())
        }
    }
}

async fn audit_export(
    pool: &PgPool,
    config: &Config,
    from: Option<String>,
    to: Option<String>,
    format: ExportFormat,
    account: Option<String>,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let tz = config.timezone;
    let mut filter = projections::ledger::AuditFilter {
        from: from.as_deref().map(|f| parse_instant(f, tz)).transpose()?,
        to: to.as_deref().map(|t| parse_instant(t, tz)).transpose()?,
        limit: 10_000,
        ..Default::default()
    };
    if let Some(who) = account {
        let row = projections::accounts::by_any(pool, &who)
            .await?
            .ok_or_else(|| anyhow!("no account {who:?}"))?;
        filter.account_id = Some(row.account_id);
    }
    let sink: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut csv_out = None;
    let mut json_out = None;
    match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(sink);
            w.write_record(crate::ledger::audit::CSV_HEADER)?;
            csv_out = Some(w);
        }
        ExportFormat::Jsonl => json_out = Some(sink),
    }
    let mut rows = 0usize;
    loop {
        let page = projections::ledger::audit_entries(pool, &filter).await?;
        let Some(last) = page.last() else { break };
        filter.after = Some(last.entry.position);
        for r in &page {
            rows += 1;
            if let Some(w) = csv_out.as_mut() {
                w.write_record(crate::ledger::audit::csv_record(r))?;
            }
            if let Some(w) = json_out.as_mut() {
                writeln!(w, "{}", serde_json::to_string(r)?)?;
            }
        }
    }
    if let Some(mut w) = csv_out {
        w.flush()?;
    }
    if let Some(mut w) = json_out {
        w.flush()?;
    }
    eprintln_info(&format!("{rows} ledger entries exported"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_rfc_3339_local_times_or_plain_dates_in_the_zone() {
        let tz = chrono_tz::Asia::Shanghai;
        let at = |s: &str| parse_instant(s, tz).unwrap().to_rfc3339();
        assert_eq!(at("2026-11-01"), "2026-10-31T16:00:00+00:00");
        assert_eq!(at("2026-11-01 08:30"), "2026-11-01T00:30:00+00:00");
        assert_eq!(at("2026-11-01 08:30:15"), "2026-11-01T00:30:15+00:00");
        assert_eq!(at("2026-11-01T08:30:15"), "2026-11-01T00:30:15+00:00");
        assert_eq!(at("2026-11-01T08:30:15Z"), "2026-11-01T08:30:15+00:00");
        for bad in ["", "yesterday", "2026-13-01", "2026-11-01 25:00"] {
            assert!(parse_instant(bad, tz).is_err(), "{bad}");
        }
    }
}

//! Paid generations (seed 002's `/api/proxy/sora`, `/banana`): the price
//! is held on the owner's points wallet (hold id = job id) before anything
//! is sent; the job is submitted to the gateway; the poller asks the
//! gateway about open jobs and ends each once (`GenerationCompleted` or
//! `GenerationFailed`, also at its deadline); then the hold is settled
//! (paid to `platform:revenue`) or released, and the job records it. A job
//! that ended and whose hold is still open (a crash between the two) is
//! closed by the poller; the wallet's operation ids make that once.

pub mod chat;
pub mod grsai;
pub mod jimeng;

use std::time::Duration;

use aggregates::generation::{GenerationCommand, GenerationKind, Prompt};
use aggregates::wallet::{Counterparty, Movement, Reason, Reference};
use aggregates::{Amount, Currency, WalletCommand};
use projections::generation as read;
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use crate::core::Core;
use crate::ledger::{self, LedgerError};
use crate::store::{CommandMeta, LogPosition};

pub const PROJECTION: &str = "generation";
/// A cat chat's reply may take this long.
pub const CHAT_DEADLINE: Duration = Duration::from_secs(60);
/// A hold outlives its job's deadline by this much (the poller ends the
/// job first; expiry is the last resort).
const HOLD_MARGIN: chrono::Duration = chrono::Duration::hours(1);
/// How often expired holds are looked for: every thirty polls, at most a
/// minute apart.
fn expiry_every(core: &Core) -> Duration {
    (core.config.generation.poll_interval * 30).min(Duration::from_secs(60))
}

#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error("the generation gateway is not configured")]
    NotConfigured,
    #[error("not enough points: {balance} available, {price} needed")]
    Insufficient { balance: i64, price: i64 },
    #[error("too many running jobs")]
    TooMany,
    #[error("too many jobs this minute; retry in {0} s")]
    RateLimited(u64),
    #[error("the gateway refused: {0}")]
    Refused(String),
    #[error("the gateway cannot be reached: {0}")]
    Unreachable(String),
    #[error("busy, retry")]
    Contended,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for GenerationError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

/// A job to start: what the gateway is sent, and what it costs.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub kind: GenerationKind,
    pub model: String,
    pub prompt: Prompt,
    /// the gateway's request body (`webHook` is added)
    pub body: Value,
    pub price: i64,
}

fn system_meta(job: Uuid) -> CommandMeta {
    let id = format!("generation-{}", Uuid::now_v7());
    CommandMeta {
        actor: "system:generation".into(),
        surface: "ocean1",
        request_id: id.clone(),
        correlation_id: job.to_string(),
        causation_id: id,
        client_ip: "local".into(),
    }
}

fn gateway(core: &Core) -> Result<(String, String), GenerationError> {
    let g = &core.config.generation;
    match (&g.api_url, &g.api_key) {
        (Some(url), Some(key)) => Ok((url.clone(), key.expose().to_owned())),
        _ => Err(GenerationError::NotConfigured),
    }
}

/// Holds the price, records the job and submits it. Answers the job id;
/// a refusal or an unreachable gateway ends the job failed (points back).
pub async fn start(
    core: &Core,
    http: &reqwest::Client,
    meta: &CommandMeta,
    owner: Uuid,
    spec: JobSpec,
) -> Result<Uuid, GenerationError> {
    // an upstream that is not configured holds nothing
    match spec.kind {
        GenerationKind::JimengVideo | GenerationKind::JimengImage => {
            jimeng_keys(core)?;
        }
        _ => {
            gateway(core)?;
        }
    }
    let (job, held_at) = open_job(core, meta, owner, &spec).await?;
    submit(core, http, meta, job, held_at, spec).await
}

/// How long a job of `kind` may take.
fn deadline_of(core: &Core, kind: GenerationKind) -> Duration {
    let g = &core.config.generation;
    match kind {
        GenerationKind::Sora => g.sora_deadline,
        GenerationKind::Banana => g.banana_deadline,
        GenerationKind::Chat => CHAT_DEADLINE,
        GenerationKind::JimengVideo | GenerationKind::JimengImage => g.jimeng_deadline,
    }
}

/// A submit may take this long at most (and never past the job's deadline).
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);

fn jimeng_keys(core: &Core) -> Result<(String, String, String), GenerationError> {
    let g = &core.config.generation;
    match (&g.jimeng_access_key, &g.jimeng_secret_key) {
        (Some(ak), Some(sk)) => Ok((
            g.jimeng_api_url.clone(),
            ak.expose().to_owned(),
            sk.expose().to_owned(),
        )),
        _ => Err(GenerationError::NotConfigured),
    }
}

/// Holds the price and records the job (nothing is sent yet).
async fn open_job(
    core: &Core,
    meta: &CommandMeta,
    owner: Uuid,
    spec: &JobSpec,
) -> Result<(Uuid, LogPosition), GenerationError> {
    let per_minute = core.config.generation.per_minute;
    if per_minute > 0 {
        let bucket = format!("generation:{owner}");
        let window = Duration::from_secs(60);
        if let Err(retry) =
            crate::identity::limits::hit(&core.pool, &bucket, per_minute, window).await?
        {
            return Err(GenerationError::RateLimited(retry));
        }
    }
    if read::running_of(&core.pool, owner).await? >= core.config.generation.max_running {
        return Err(GenerationError::TooMany);
    }
    let job = Uuid::now_v7();
    let now = crate::store::now();
    let deadline = now + deadline_of(core, spec.kind);
    let amount = Amount::new(spec.price).map_err(|e| anyhow::anyhow!("price: {e}"))?;
    let held = ledger::operate(&core.store, owner, Currency::Points, meta, || {
        WalletCommand::Hold {
            movement: Movement {
                operation_id: format!("gen:{job}"),
                amount,
                counter: Counterparty::PlatformRevenue,
                reason: Reason::Consume,
                reference: Some(Reference::shared("generation", job.to_string())),
                description: spec.kind.description().into(),
                at: now,
            },
            hold_id: job.to_string(),
            expires_at: deadline + HOLD_MARGIN,
        }
    })
    .await;
    let held_at = match held {
        Ok(moved) => moved.position,
        Err(LedgerError::Insufficient { balance, .. }) => {
            return Err(GenerationError::Insufficient {
                balance,
                price: spec.price,
            })
        }
        Err(LedgerError::Contended) => return Err(GenerationError::Contended),
        Err(e) => return Err(anyhow::anyhow!("holding points: {e}").into()),
    };
    let requested = core
        .store
        .execute(&core.store.generation_jobs, &job.to_string(), meta, || {
            GenerationCommand::Request {
                owner,
                kind: spec.kind,
                model: spec.model.clone(),
                prompt: spec.prompt.clone(),
                price: spec.price,
                deadline,
                at: now,
            }
        })
        .await;
    if let Err(e) = requested {
        // no job to end: give the points back now
        release(core, meta, owner, job).await;
        return Err(anyhow::anyhow!("recording the job: {e}").into());
    }
    Ok((job, held_at))
}

async fn submit(
    core: &Core,
    http: &reqwest::Client,
    meta: &CommandMeta,
    job: Uuid,
    held_at: LogPosition,
    spec: JobSpec,
) -> Result<Uuid, GenerationError> {
    let timeout = deadline_of(core, spec.kind).min(SUBMIT_TIMEOUT);
    let submitted = match spec.kind {
        GenerationKind::JimengVideo | GenerationKind::JimengImage => {
            let (base, ak, sk) = jimeng_keys(core)?;
            jimeng::submit(http, &base, (&ak, &sk), spec.body, timeout).await
        }
        _ => {
            let (base, key) = gateway(core)?;
            grsai::submit(http, &base, &key, spec.kind, spec.body, timeout).await
        }
    };
    match submitted {
        grsai::Submitted::Accepted(upstream_id) => {
            let pos = core
                .store
                .execute(&core.store.generation_jobs, &job.to_string(), meta, || {
                    GenerationCommand::RecordSubmission {
                        upstream_id: upstream_id.clone(),
                        at: crate::store::now(),
                    }
                })
                .await
                .map_err(|e| anyhow::anyhow!("recording the submission: {e}"))?;
            // the owner's history shows the hold, and draw/result the job,
            // before the answer (both waits at once)
            tokio::join!(
                core.settle(&[ledger::PROJECTION], Some(held_at)),
                core.settle(&[PROJECTION], pos)
            );
            Ok(job)
        }
        grsai::Submitted::Refused(why) => {
            end(core, job, Ended::Failed(format!("refused: {why}"))).await?;
            Err(GenerationError::Refused(why))
        }
        grsai::Submitted::Unreachable(why) => {
            end(core, job, Ended::Failed("gateway unreachable".into())).await?;
            Err(GenerationError::Unreachable(why))
        }
        // the task may exist upstream, but without its id it cannot be
        // asked about: the job fails now and the points come back (not
        // submitted again: that could run, and be paid upstream, twice)
        grsai::Submitted::Unknown(why) => {
            tracing::warn!(%job, why, "a submit's outcome is unknown; the job fails");
            end(core, job, Ended::Failed("gateway did not answer".into())).await?;
            Err(GenerationError::Unreachable(why))
        }
    }
}

/// A cat chat: held, asked, and paid when the reply comes (returned when
/// it does not). Answers the reply.
pub async fn chat(
    core: &Core,
    http: &reqwest::Client,
    meta: &CommandMeta,
    owner: Uuid,
    messages: Vec<chat::Message>,
) -> Result<String, GenerationError> {
    let g = &core.config.generation;
    let (Some(url), Some(key)) = (&g.chat_api_url, &g.chat_api_key) else {
        return Err(GenerationError::NotConfigured);
    };
    let last = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.clone())
        .unwrap_or_default();
    let spec = JobSpec {
        kind: GenerationKind::Chat,
        model: g.chat_model.clone(),
        prompt: Prompt::parse(&last.chars().take(Prompt::MAX_CHARS).collect::<String>())
            .or_else(|_| Prompt::parse("(chat)"))
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        body: Value::Null,
        price: g.chat_price,
    };
    let (job, _) = open_job(core, meta, owner, &spec).await?;
    match chat::complete(
        http,
        url,
        key.expose(),
        &g.chat_model,
        &messages,
        CHAT_DEADLINE,
    )
    .await
    {
        Ok(reply) => {
            end(core, job, Ended::Completed(String::new())).await?;
            Ok(reply)
        }
        Err(chat::ChatFailure::Refused(why)) => {
            end(core, job, Ended::Failed(format!("refused: {why}"))).await?;
            Err(GenerationError::Refused(why))
        }
        Err(chat::ChatFailure::Unavailable(why)) => {
            end(core, job, Ended::Failed("chat upstream unavailable".into())).await?;
            Err(GenerationError::Unreachable(why))
        }
    }
}

pub enum Ended {
    Completed(String),
    Failed(String),
}

/// Ends the job (if still open: whoever decided first stands) and closes
/// its hold as the job actually ended.
pub async fn end(core: &Core, job: Uuid, how: Ended) -> Result<(), GenerationError> {
    let meta = system_meta(job);
    let at = crate::store::now();
    let pos = core
        .store
        .execute(
            &core.store.generation_jobs,
            &job.to_string(),
            &meta,
            || match &how {
                Ended::Completed(url) => GenerationCommand::Complete {
                    result_url: url.clone(),
                    at,
                },
                Ended::Failed(why) => GenerationCommand::Fail {
                    reason: why.clone(),
                    at,
                },
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("ending job {job}: {e}"))?;
    core.settle(&[PROJECTION], pos).await;
    if let Some(row) = read::job(&core.pool, job).await? {
        close(core, &row).await?;
    }
    Ok(())
}

async fn release(core: &Core, meta: &CommandMeta, owner: Uuid, job: Uuid) -> bool {
    let released = ledger::operate(&core.store, owner, Currency::Points, meta, || {
        WalletCommand::ReleaseHold {
            operation_id: format!("gen:{job}:release"),
            hold_id: job.to_string(),
            at: crate::store::now(),
        }
    })
    .await;
    match released {
        Ok(moved) => {
            core.settle(&[ledger::PROJECTION], Some(moved.position))
                .await;
            true
        }
        // expired (returned by the wallet already) or never placed
        Err(LedgerError::Hold(_)) => true,
        Err(e) => {
            tracing::warn!(%job, error = %e, "releasing a job's points failed; the poller retries");
            false
        }
    }
}

/// Settles (completed) or releases (failed) an ended job's hold, then
/// records that on the job.
async fn close(core: &Core, row: &read::JobRow) -> Result<(), GenerationError> {
    if row.settled || !matches!(row.status.as_str(), "completed" | "failed") {
        return Ok(());
    }
    let job = row.job_id;
    let meta = system_meta(job);
    let done = if row.status == "completed" {
        let amount = Amount::new(row.price).map_err(|e| anyhow::anyhow!("price: {e}"))?;
        let kind = GenerationKind::parse(&row.kind).unwrap_or(GenerationKind::Banana);
        let settled = ledger::operate(&core.store, row.owner_id, Currency::Points, &meta, || {
            WalletCommand::SettleHold {
                movement: Movement {
                    operation_id: format!("gen:{job}:settle"),
                    amount,
                    counter: Counterparty::PlatformRevenue,
                    reason: Reason::Consume,
                    reference: Some(Reference::shared("generation", job.to_string())),
                    description: kind.description().into(),
                    at: crate::store::now(),
                },
                hold_id: job.to_string(),
            }
        })
        .await;
        match settled {
            Ok(moved) => {
                core.settle(&[ledger::PROJECTION], Some(moved.position))
                    .await;
                true
            }
            // expired before it could be paid: the owner has the points back
            Err(LedgerError::Hold(why)) => {
                tracing::warn!(%job, why, "a completed job's hold had expired; not charged");
                true
            }
            Err(e) => {
                tracing::warn!(%job, error = %e, "settling a job's points failed; the poller retries");
                false
            }
        }
    } else {
        release(core, &meta, row.owner_id, job).await
    };
    if done {
        let pos = core
            .store
            .execute(&core.store.generation_jobs, &job.to_string(), &meta, || {
                GenerationCommand::RecordSettlement {
                    at: crate::store::now(),
                }
            })
            .await
            .map_err(|e| anyhow::anyhow!("recording job {job}'s settlement: {e}"))?;
        core.settle(&[PROJECTION], pos).await;
    }
    Ok(())
}

/// One pass over the open and the unsettled jobs.
async fn pass(core: &Core, http: &reqwest::Client) -> Result<(), GenerationError> {
    for row in read::unsettled_jobs(&core.pool, 200).await? {
        close(core, &row).await?;
    }
    let gateway = gateway(core).ok();
    let jimeng = jimeng_keys(core).ok();
    let now = chrono::Utc::now();
    for row in read::open_jobs(&core.pool, 500).await? {
        if row.deadline <= now {
            end(core, row.job_id, Ended::Failed("deadline passed".into())).await?;
            continue;
        }
        let Some(upstream) = &row.upstream_id else {
            continue;
        };
        let asked = match GenerationKind::parse(&row.kind) {
            Some(GenerationKind::JimengVideo | GenerationKind::JimengImage) => match &jimeng {
                Some((base, ak, sk)) => {
                    jimeng::result(http, base, (ak, sk), &row.model, upstream).await
                }
                None => continue,
            },
            _ => match &gateway {
                Some((base, key)) => grsai::result(http, base, key, upstream).await,
                None => continue,
            },
        };
        match asked {
            None => {}
            Some(grsai::Outcome::Running(p)) if i32::from(p) > row.progress => {
                let meta = system_meta(row.job_id);
                core.store
                    .execute_only(
                        &core.store.generation_jobs,
                        &row.job_id.to_string(),
                        &meta,
                        || GenerationCommand::RecordProgress {
                            progress: p,
                            at: crate::store::now(),
                        },
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("recording progress: {e}"))?;
            }
            Some(grsai::Outcome::Running(_)) => {}
            Some(grsai::Outcome::Succeeded(url)) => {
                end(core, row.job_id, Ended::Completed(url)).await?
            }
            Some(grsai::Outcome::Failed(why)) => end(core, row.job_id, Ended::Failed(why)).await?,
        }
    }
    Ok(())
}

/// Returns every hold past its expiry, on every wallet that holds points
/// or coins (the ledger's `ExpireHolds`, on a schedule).
async fn expire_holds(core: &Core) -> Result<(), GenerationError> {
    let wallets: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT account_id, currency FROM wallets WHERE held > 0")
            .fetch_all(&core.pool)
            .await?;
    let at = crate::store::now();
    for (account, currency) in wallets {
        let Ok(currency) = currency.parse::<Currency>() else {
            continue;
        };
        let wallet = aggregates::wallet::wallet_id(account, currency);
        let meta = system_meta(account);
        let expired = core
            .store
            .execute_only(&core.store.wallets, &wallet, &meta, || {
                WalletCommand::ExpireHolds { at }
            })
            .await;
        if let Err(e) = expired {
            tracing::warn!(%wallet, error = %e, "expiring holds failed; retrying later");
        }
    }
    Ok(())
}

/// The poller: one process at a time (a session advisory lock; another
/// takes over when this one dies), a pass every poll interval.
pub async fn run(core: Core, http: reqwest::Client, mut shutdown: watch::Receiver<bool>) {
    const LOCK: i64 = 0x7469_6465_6765_6e00; // "tidegen"
    let mut lock_conn = None;
    let mut last_expiry = std::time::Instant::now();
    loop {
        let wait = core.config.generation.poll_interval;
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if lock_conn.is_none() {
            match core.pool.acquire().await {
                Ok(c) => {
                    let mut c = c.detach();
                    let got: Result<bool, _> =
                        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                            .bind(LOCK)
                            .fetch_one(&mut c)
                            .await;
                    if let Ok(true) = got {
                        lock_conn = Some(c);
                    } else {
                        continue;
                    }
                }
                Err(_) => continue,
            }
        }
        if last_expiry.elapsed() >= expiry_every(&core) {
            last_expiry = std::time::Instant::now();
            if let Err(e) = expire_holds(&core).await {
                tracing::warn!(error = %e, "expiring holds failed; retrying");
            }
        }
        if let Err(e) = pass(&core, &http).await {
            tracing::warn!(error = %e, "a generation poll pass failed; retrying");
            // the lock's connection may be what failed: take it again
            if let Some(mut c) = lock_conn.take() {
                let alive = sqlx::query("SELECT 1").execute(&mut c).await.is_ok();
                if alive {
                    lock_conn = Some(c);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Where a job's row stands now (for the caller's stream).
pub async fn job(core: &Core, job: Uuid) -> sqlx::Result<Option<read::JobRow>> {
    read::job(&core.pool, job).await
}

/// The job as [`job`], but an ended one only once its points are settled
/// (waiting up to `wait` for that): whoever reads its end and then its
/// points sees them match.
pub async fn job_settled(
    core: &Core,
    job: Uuid,
    wait: Duration,
) -> sqlx::Result<Option<read::JobRow>> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut tick = core.progress.subscribe();
    loop {
        let row = read::job(&core.pool, job).await?;
        let unsettled = row
            .as_ref()
            .is_some_and(|r| !r.settled && matches!(r.status.as_str(), "completed" | "failed"));
        if !unsettled || tokio::time::Instant::now() >= deadline {
            return Ok(row);
        }
        let left = deadline - tokio::time::Instant::now();
        let _ = tokio::time::timeout(left.min(Duration::from_millis(250)), tick.changed()).await;
    }
}

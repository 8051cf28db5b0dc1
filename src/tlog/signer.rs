//! Checkpoints: the signing key (a file only the server's user can read,
//! never the database), the signer that signs a C2SP checkpoint when the
//! tree grew — only one consistent with the last it signed — and the
//! tlog-witness client that gets it cosigned.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::watch;

use super::checkpoint::{open_checkpoint, Checkpoint};
use super::merkle::{
    consistency_proof, consistency_proof_ids, tree_hash, tree_hash_ids, verify_consistency,
};
use super::note::{Ed25519Signer, Note, NoteVerifier, Signature};
use super::witness::{parse_size_response, AddCheckpointRequest};
use super::{stored, Log, Witness};
use crate::core::Core;

/// The file next to the key that keeps the last checkpoint it signed.
pub fn state_path(key: &Path) -> PathBuf {
    key.with_extension("last-signed")
}

/// The signing key of `path`, under `origin` when one is configured.
pub fn load(path: &Path, origin: Option<&str>) -> anyhow::Result<Option<Ed25519Signer>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} can be read by other users (mode {:o}): `chmod 600` it",
            path.display(),
            mode & 0o777
        );
    }
    let signer = Ed25519Signer::from_skey(text.trim())
        .map_err(|e| anyhow!("{} is not a signer key: {e}", path.display()))?;
    match origin {
        Some(o) if o != super::note::NoteSigner::name(&signer) => Ok(Some(
            signer
                .renamed(o)
                .map_err(|e| anyhow!("TIDELOG_TLOG_ORIGIN={o:?}: {e}"))?,
        )),
        _ => Ok(Some(signer)),
    }
}

/// The signing key of `path`, generated there (mode 0600) if there is none.
pub fn load_or_generate(path: &Path, origin: Option<&str>) -> anyhow::Result<Ed25519Signer> {
    if let Some(s) = load(path, origin)? {
        return Ok(s);
    }
    let name = match origin {
        Some(o) => o.to_owned(),
        None => {
            let tag: u64 = rand::random();
            format!("tidelog.localhost/{tag:016x}")
        }
    };
    let signer = Ed25519Signer::generate(&name, &mut rand::rngs::OsRng)
        .map_err(|e| anyhow!("TIDELOG_TLOG_ORIGIN={name:?}: {e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(mut f) => {
            f.write_all(format!("{}\n", signer.skey()).as_bytes())?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), vkey = %signer.vkey(), "transparency log signing key generated");
            Ok(signer)
        }
        // another process of the same data directory was first
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            load(path, origin)?.ok_or_else(|| anyhow!("{} vanished", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Signs when the tree grew and gets the newest checkpoint cosigned, every
/// interval, while this process holds the signer's lock. A process whose
/// key is not the one the log's checkpoints are signed with signs nothing.
pub async fn run(
    core: Core,
    log: Arc<Log>,
    connect: PgConnectOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let mut lock: Option<PgConnection> = None;
    let mut warned = false;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(log.checkpoint_interval) => {}
        }
        let result = async {
            if !is_our_log(&core, &log).await? {
                if !warned {
                    tracing::warn!(vkey = %log.vkey(), "the transparency log's checkpoints are signed with another key: this process signs none (share the key file, TIDELOG_TLOG_KEY_FILE)");
                    warned = true;
                }
                lock = None;
                return Ok(());
            }
            if lock.is_none() {
                lock = try_lock(&connect).await?;
            }
            if lock.is_none() {
                return Ok(());
            }
            let mut conn = core.pool.acquire().await?;
            if sign_if_grew(&mut conn, &log).await?.is_some() {
                core.progress.wake_held_back_workers();
            }
            log.set_status(|s| s.signer_error = None);
            drop(conn);
            cosign_latest(&core, &log, &http).await
        }
        .await;
        if let Err(e) = result {
            let e = format!("{e:#}");
            tracing::error!(error = %e, "transparency log signer");
            log.set_status(|s| s.signer_error = Some(e));
            // a lost session lost the lock with it
            if let Some(c) = lock.as_mut() {
                if sqlx::Connection::ping(c).await.is_err() {
                    lock = None;
                }
            }
        }
    }
}

async fn try_lock(connect: &PgConnectOptions) -> anyhow::Result<Option<PgConnection>> {
    let mut conn = connect
        .clone()
        .application_name(super::SIGNER_LOCK)
        .connect()
        .await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(super::SIGNER_LOCK)
        .fetch_one(&mut conn)
        .await?;
    Ok(got.then_some(conn))
}

/// Whether the newest stored checkpoint (if any) carries this key's signature.
async fn is_our_log(core: &Core, log: &Log) -> anyhow::Result<bool> {
    let note: Option<String> =
        sqlx::query_scalar("SELECT note FROM tlog_checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(&core.pool)
            .await?;
    Ok(match note {
        None => true,
        Some(n) => open_checkpoint(n.as_bytes(), log.origin(), &log.verifiers()).is_ok(),
    })
}

/// The last checkpoint this key signed: the newer of the database's newest
/// and the copy kept next to the key (which a database rollback does not
/// touch). Both must verify.
async fn last_signed(conn: &mut PgConnection, log: &Log) -> anyhow::Result<Option<Checkpoint>> {
    let keys = log.verifiers();
    let mut last: Option<Checkpoint> = None;
    let in_db: Option<String> =
        sqlx::query_scalar("SELECT note FROM tlog_checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let on_disk = match std::fs::read_to_string(&log.state_path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("reading the last signed checkpoint"),
    };
    for note in in_db.into_iter().chain(on_disk) {
        let cp = open_checkpoint(note.as_bytes(), log.origin(), &keys)
            .map_err(|e| anyhow!("the last signed checkpoint does not verify: {e}"))?
            .checkpoint;
        if last.as_ref().is_none_or(|l| cp.size > l.size) {
            last = Some(cp);
        }
    }
    Ok(last)
}

/// Signs a checkpoint of the integrated tree if it grew since the last one
/// signed, after checking that the stored hashes give the head's root and
/// prove the new tree an extension of the last signed one.
pub async fn sign_if_grew(conn: &mut PgConnection, log: &Log) -> anyhow::Result<Option<String>> {
    let head = stored::head(conn).await?;
    let last = last_signed(conn, log).await?;
    let last_size = last.as_ref().map_or(0, |l| l.size);
    if head.size < last_size {
        bail!(
            "refusing to sign: the tree has {} leaves, the last checkpoint signed had {last_size} (rolled back?)",
            head.size
        );
    }
    if head.size == last_size {
        return Ok(None);
    }
    let mut ids = tree_hash_ids(head.size);
    ids.extend(consistency_proof_ids(last_size, head.size));
    let hashes = stored::nodes(conn, &ids).await?;
    let root = tree_hash(head.size, &hashes)?;
    if root != head.root {
        bail!(
            "refusing to sign: the stored hashes do not give the head's root at size {}",
            head.size
        );
    }
    if let Some(last) = &last {
        let proof = consistency_proof(last.size, head.size, &hashes)?;
        verify_consistency(last.size, head.size, &last.root, &root, &proof).map_err(|e| {
            anyhow!(
                "refusing to sign size {}: not consistent with the last checkpoint signed (size {}): {e}",
                head.size,
                last.size
            )
        })?;
    }
    let note = Checkpoint::new(log.origin(), head.size, root)?.sign(&[log.signer()])?;
    // first next to the key: a database rolled back cannot make it forget
    write_atomically(&log.state_path, note.as_bytes())?;
    sqlx::query("INSERT INTO tlog_checkpoints (size, note) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(head.size as i64)
        .bind(&note)
        .execute(&mut *conn)
        .await?;
    Ok(Some(note))
}

/// Writes `path` through a temporary file and a rename, flushed.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Sends the newest checkpoint to every witness that has not cosigned it.
async fn cosign_latest(core: &Core, log: &Log, http: &reqwest::Client) -> anyhow::Result<()> {
    if log.witnesses.is_empty() {
        return Ok(());
    }
    let mut conn = core.pool.acquire().await?;
    let labels = log.witness_labels();
    let Some(latest) = stored::latest_checkpoint(&mut conn, &labels, 0).await? else {
        return Ok(());
    };
    drop(conn);
    let sends = log
        .witnesses
        .iter()
        .filter(|w| !latest.cosignatures.iter().any(|(l, _)| *l == w.label()))
        .map(|w| async {
            let result = add_checkpoint(core, w, http, &latest.note, latest.size).await;
            let label = w.label();
            match result {
                Ok(line) => {
                    sqlx::query(
                        "INSERT INTO tlog_cosignatures (size, witness, line) VALUES ($1, $2, $3)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(latest.size as i64)
                    .bind(&label)
                    .bind(&line)
                    .execute(&core.pool)
                    .await?;
                    log.set_status(|s| {
                        s.witness_errors.remove(&label);
                    });
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    tracing::warn!(witness = %label, error = %e, "witness did not cosign");
                    log.set_status(|s| {
                        s.witness_errors.insert(label, e);
                    });
                }
            }
            anyhow::Ok(())
        });
    for r in futures::future::join_all(sends).await {
        r?;
    }
    Ok(())
}

/// tlog-witness `add-checkpoint`: the checkpoint with the consistency proof
/// from the size the witness last cosigned (learnt from a 409 if this
/// process does not know it). Returns the witness's verified cosignature
/// line.
async fn add_checkpoint(
    core: &Core,
    w: &Witness,
    http: &reqwest::Client,
    signed: &str,
    size: u64,
) -> anyhow::Result<String> {
    let known = *w.last_size.lock().unwrap();
    let mut old = match known {
        Some(s) => s,
        None => sqlx::query_scalar::<_, Option<i64>>(
            "SELECT max(size) FROM tlog_cosignatures WHERE witness = $1",
        )
        .bind(w.label())
        .fetch_one(&core.pool)
        .await?
        .unwrap_or(0) as u64,
    };
    for _ in 0..2 {
        if old > size {
            bail!("the witness has cosigned size {old}, more than this log's newest checkpoint ({size})");
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            let mut conn = core.pool.acquire().await?;
            let hashes = stored::nodes(&mut conn, &consistency_proof_ids(old, size)).await?;
            consistency_proof(old, size, &hashes)?
        };
        let body = AddCheckpointRequest {
            old_size: old,
            proof,
            checkpoint: signed.to_owned(),
        }
        .encode()?;
        let resp = http
            .post(format!("{}/add-checkpoint", w.url))
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        match status.as_u16() {
            200 => {
                *w.last_size.lock().unwrap() = Some(size);
                return cosignature_line(signed, &text, w);
            }
            409 => {
                old = parse_size_response(&text)
                    .ok_or_else(|| anyhow!("409 without a size: {text:?}"))?;
                *w.last_size.lock().unwrap() = Some(old);
            }
            _ => bail!("{status}: {}", text.trim()),
        }
    }
    bail!("the witness's size kept changing")
}

/// The witness's line among those answered, checked against its key.
fn cosignature_line(signed: &str, answer: &str, w: &Witness) -> anyhow::Result<String> {
    let note = Note::parse(signed.as_bytes())?;
    for sig in Signature::parse_lines(answer)? {
        if sig.name == w.verifier.name() && sig.key_id == w.verifier.key_id() {
            if !w.verifier.verify(note.text().as_bytes(), &sig.sig) {
                bail!("its cosignature does not verify");
            }
            return Ok(sig.line());
        }
    }
    bail!("no cosignature by {} in its answer", w.label())
}

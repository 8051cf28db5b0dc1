//! The state of `tidelog witness serve`, a small C2SP tlog-witness an
//! auditor runs on their own machine: its cosigner key and, per log it
//! follows, the newest checkpoint it cosigned, on disk in its own
//! directory. It cosigns only a checkpoint that the consistency proof shows
//! to extend the one it holds, so a rewrite or a rollback is refused; every
//! checkpoint it cosigns is also kept (`logs/<id>/checkpoints/<size>`), an
//! archive `tidelog audit verify --checkpoints` reads as it is.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use sha2::{Digest, Sha256};

use super::checkpoint::Checkpoint;
use super::cosignature::Cosigner;
use super::note::{Ed25519Verifier, Note, Verifiers};
use super::signer::write_atomically;
use super::witness::{
    handle_add_checkpoint, AddCheckpointRequest, Refusal, TreeHead, WitnessedLog,
};

/// A refusal the protocol defines, or the witness's own storage failing.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("witness storage: {0:#}")]
    Storage(anyhow::Error),
}

pub struct WitnessStore {
    dir: PathBuf,
    cosigner: Cosigner,
    /// origin -> the log's keys
    logs: BTreeMap<String, Verifiers>,
    /// one add-checkpoint at a time: the check of the stored size and the
    /// write of the new one are one step
    busy: tokio::sync::Mutex<()>,
    /// held while the process lives: one witness per directory
    _flock: nix::fcntl::Flock<std::fs::File>,
}

impl WitnessStore {
    /// Opens (or starts) the witness directory `dir`, following the logs of
    /// `log_vkeys` (each log's origin is its key's name).
    pub fn open(dir: &Path, name: Option<&str>, log_vkeys: &[String]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let lock = std::fs::File::create(dir.join("lock"))?;
        let flock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| anyhow!("another witness is running on {}", dir.display()))?;
        let cosigner = load_or_generate_cosigner(&dir.join("witness.key"), name)?;
        let mut logs: BTreeMap<String, Verifiers> = BTreeMap::new();
        for vkey in log_vkeys {
            let v = Ed25519Verifier::from_vkey(vkey.trim())
                .map_err(|e| anyhow!("log key {vkey:?}: {e}"))?;
            let origin = super::note::NoteVerifier::name(&v).to_owned();
            logs.entry(origin).or_default().push(v)?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            cosigner,
            logs,
            busy: tokio::sync::Mutex::new(()),
            _flock: flock,
        })
    }

    /// The verifier key of the witness of `dir` (its key made on first use),
    /// without taking the directory's lock.
    pub fn vkey_of(dir: &Path, name: Option<&str>) -> anyhow::Result<String> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(load_or_generate_cosigner(&dir.join("witness.key"), name)?.vkey())
    }

    /// The witness's cosignature/v1 verifier key, for the logs' configuration.
    pub fn vkey(&self) -> String {
        self.cosigner.vkey()
    }

    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.logs.keys().map(String::as_str)
    }

    /// Where a log's state and archive live.
    pub fn log_dir(&self, origin: &str) -> PathBuf {
        let id = hex::encode(&Sha256::digest(origin.as_bytes())[..8]);
        self.dir.join("logs").join(id)
    }

    /// The newest checkpoint it cosigned for `origin` (with its cosignature).
    pub fn latest(&self, origin: &str) -> anyhow::Result<Option<String>> {
        match std::fs::read_to_string(self.log_dir(origin).join("latest")) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// tlog-witness `add-checkpoint`: the cosignature lines, or the refusal.
    pub async fn add_checkpoint(&self, body: &[u8]) -> Result<String, WitnessError> {
        let _busy = self.busy.lock().await;
        let internal = WitnessError::Storage;
        let origin = AddCheckpointRequest::parse(body)
            .ok()
            .and_then(|r| r.origin().map(str::to_owned));
        let latest = match &origin {
            Some(o) => self.latest(o).map_err(internal)?,
            None => None,
        };
        let head = match &latest {
            None => None,
            Some(note) => {
                let cp = Note::parse(note.as_bytes())
                    .ok()
                    .and_then(|n| Checkpoint::parse(n.text()).ok())
                    .ok_or_else(|| internal(anyhow!("its stored checkpoint does not parse")))?;
                Some(TreeHead {
                    size: cp.size,
                    root: cp.root,
                })
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs());
        let cosigned = handle_add_checkpoint(
            body,
            |o| {
                self.logs
                    .get(o)
                    .map(|keys| WitnessedLog { keys, latest: head })
            },
            &[&self.cosigner],
            now,
        )?;
        let dir = self.log_dir(&cosigned.checkpoint.origin);
        let persisted = (|| -> anyhow::Result<()> {
            std::fs::create_dir_all(dir.join("checkpoints"))?;
            std::fs::write(
                dir.join("origin"),
                format!("{}\n", cosigned.checkpoint.origin),
            )?;
            // the commitment first, then the archive's copy
            write_atomically(&dir.join("latest"), cosigned.cosigned_checkpoint.as_bytes())?;
            write_atomically(
                &dir.join("checkpoints")
                    .join(cosigned.checkpoint.size.to_string()),
                cosigned.cosigned_checkpoint.as_bytes(),
            )?;
            Ok(())
        })();
        persisted.map_err(internal)?;
        tracing::info!(origin = %cosigned.checkpoint.origin, size = cosigned.checkpoint.size, "cosigned");
        Ok(cosigned.response_body)
    }
}

fn load_or_generate_cosigner(path: &Path, name: Option<&str>) -> anyhow::Result<Cosigner> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let c = Cosigner::from_skey(text.trim())
            .map_err(|e| anyhow!("{} is not a witness key: {e}", path.display()))?;
        if let Some(n) = name.filter(|n| *n != c.name()) {
            anyhow::bail!(
                "{} is the key of witness {:?}, not {n:?}",
                path.display(),
                c.name()
            );
        }
        return Ok(c);
    }
    let name = match name {
        Some(n) => n.to_owned(),
        None => format!(
            "tidelog-witness.localhost/{}",
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "witness".into())
        ),
    };
    let c = Cosigner::generate(&name, &mut rand::rngs::OsRng)
        .map_err(|e| anyhow!("witness name {name:?}: {e}"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(format!("{}\n", c.skey()).as_bytes())?;
    f.sync_all()?;
    Ok(c)
}

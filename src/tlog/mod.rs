//! The transparency log: an RFC 6962 Merkle tree over every event, signed
//! C2SP checkpoints, witnesses, and the proofs auditors check with tools
//! the team did not write.
//!
//! Formats (pure, no I/O): [`merkle`] (RFC 6962 hashing, proofs, the
//! appender), [`tiles`] (C2SP tlog-tiles), [`note`] (signed-note, Ed25519),
//! [`checkpoint`] (tlog-checkpoint), [`cosignature`] (tlog-cosignature v1),
//! [`witness`] (tlog-witness `add-checkpoint`), [`proof`] (tlog-proof@v1).
//!
//! The service: [`leaf`] (an event's canonical bytes, in the log's
//! numbering), [`stored`] (hashes, head and checkpoints in PostgreSQL),
//! [`integrator`] (appends the leaves of newly numbered events), [`signer`]
//! (the key file, checkpoints, the witness client), [`reads`] (tiles,
//! proofs and checkpoints for auditors), [`audit`] (`tidelog audit verify
//! --checkpoints`, `audit export --tlog-tiles`), [`witness_store`] (the
//! state of `tidelog witness serve`).

pub mod checkpoint;
pub mod cosignature;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod tiles;
pub mod witness;

pub mod audit;
pub mod integrator;
pub mod leaf;
pub mod reads;
pub mod signer;
pub mod stored;
pub mod witness_store;

#[cfg(test)]
mod crosscheck_tests;
#[cfg(test)]
mod go_interop_tests;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::watch;

use crate::config::Config;
use cosignature::CosignatureVerifier;
use note::{Ed25519Signer, NoteVerifier, Verifiers};

/// The log as a process knows it: its signing key, the witnesses it sends
/// checkpoints to, and what its workers last ran into.
pub struct Log {
    signer: Ed25519Signer,
    /// where the last checkpoint this key signed is kept, next to the key
    pub state_path: PathBuf,
    pub witnesses: Vec<Witness>,
    /// cosignatures a checkpoint needs to be served as the latest
    pub quorum: usize,
    pub checkpoint_interval: Duration,
    pub batch: i64,
    status: Mutex<Status>,
    /// tile hashes and the latest cosigned checkpoint, kept for proofs
    pub kept: reads::Kept,
}

/// A witness of the log: its key and where it takes `add-checkpoint`.
pub struct Witness {
    pub verifier: CosignatureVerifier,
    pub url: String,
    /// the size it last cosigned, as far as this process knows
    last_size: Mutex<Option<u64>>,
}

impl Witness {
    /// `name+id`: how its cosignatures are stored.
    pub fn label(&self) -> String {
        label(&self.verifier)
    }
}

fn label(v: &dyn NoteVerifier) -> String {
    format!("{}+{:08x}", v.name(), v.key_id())
}

/// What the workers last ran into (for `/admin/tlog/status`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Status {
    pub integrator_error: Option<String>,
    pub signer_error: Option<String>,
    /// per witness label: the last failure, if its last attempt failed
    pub witness_errors: std::collections::BTreeMap<String, String>,
}

impl Log {
    /// The log of this process: the signing key from its file (generated on
    /// first use), the configured witnesses.
    pub fn open(config: &Config) -> anyhow::Result<Self> {
        let path = config.tlog.key_path(&config.data_dir);
        let signer = signer::load_or_generate(&path, config.tlog.origin.as_deref())?;
        let witnesses = config
            .tlog
            .witnesses
            .iter()
            .map(|w| {
                Ok(Witness {
                    verifier: CosignatureVerifier::from_vkey(&w.vkey)
                        .map_err(|e| anyhow::anyhow!("TIDELOG_TLOG_WITNESSES: {}: {e}", w.vkey))?,
                    url: w.url.clone(),
                    last_size: Mutex::new(None),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            signer,
            state_path: signer::state_path(&path),
            witnesses,
            quorum: config.tlog.quorum,
            checkpoint_interval: config.tlog.checkpoint_interval,
            batch: config.tlog.batch,
            status: Mutex::default(),
            kept: reads::Kept::default(),
        })
    }

    pub fn origin(&self) -> &str {
        note::NoteSigner::name(&self.signer)
    }

    /// The verifier key auditors pin: `<name>+<key id>+<base64>`.
    pub fn vkey(&self) -> String {
        self.signer.vkey()
    }

    pub fn signer(&self) -> &Ed25519Signer {
        &self.signer
    }

    /// The log's key as a note verifier.
    pub fn verifiers(&self) -> Verifiers {
        Verifiers::new()
            .with(self.signer.verifier())
            .expect("one key")
    }

    /// The witnesses' keys as note verifiers.
    pub fn witness_verifiers(&self) -> Verifiers {
        let mut v = Verifiers::new();
        for w in &self.witnesses {
            // a key listed twice counts once
            let _ = v.push(w.verifier.clone());
        }
        v
    }

    pub fn witness_labels(&self) -> Vec<String> {
        self.witnesses.iter().map(Witness::label).collect()
    }

    pub fn cosigners(&self) -> Cosigners {
        Cosigners {
            labels: self.witness_labels(),
            quorum: self.quorum,
        }
    }

    pub fn status(&self) -> Status {
        self.status.lock().unwrap().clone()
    }

    fn set_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap());
    }
}

/// Which cosignatures count when a checkpoint is served as the latest: the
/// witnesses' `name+id` labels and how many of them are needed.
#[derive(Clone, Debug, Default)]
pub struct Cosigners {
    pub labels: Vec<String>,
    pub quorum: usize,
}

impl Cosigners {
    /// The configured witnesses and quorum (no signing key needed).
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let labels = config
            .tlog
            .witnesses
            .iter()
            .map(|w| {
                CosignatureVerifier::from_vkey(&w.vkey)
                    .map(|v| label(&v))
                    .map_err(|e| anyhow::anyhow!("TIDELOG_TLOG_WITNESSES: {}: {e}", w.vkey))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            labels,
            quorum: config.tlog.quorum,
        })
    }
}

/// Takes the session-level advisory lock `name` on a connection of its
/// own, retrying every `every` until it gets it (`None`: shut down first).
async fn hold_lock(
    connect: &PgConnectOptions,
    name: &str,
    every: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<PgConnection>> {
    let mut conn = connect.clone().application_name(name).connect().await?;
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        if got {
            return Ok(Some(conn));
        }
        tokio::select! {
            _ = shutdown.changed() => return Ok(None),
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The integrator's lock: whoever holds it integrates (the benchmark takes
/// it to measure the write path with the integrator off).
pub const INTEGRATOR_LOCK: &str = "tidelog-tlog-integrator";
const SIGNER_LOCK: &str = "tidelog-tlog-signer";

//! The auditors' side: `tidelog audit verify --checkpoints DIR` (every
//! archived checkpoint authentic and matched by the events as they are
//! now, every event one leaf, in place) and its incremental mode, and
//! `tidelog audit export --tlog-tiles DIR`.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::TryStreamExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use super::checkpoint::{hash_b64, parse_hash_b64, Checkpoint};
use super::merkle::{consistency_proof, consistency_proof_ids, verify_consistency, Frontier, Hash};
use super::note::{Note, NoteError, NoteVerifier, Verifiers};
use super::stored::{self, StoredCheckpoint};
use super::tiles::{encode_entry_bundle, BundleId, TileId, TILE_HEIGHT, TILE_WIDTH};
use super::{leaf, reads, Cosigners};

/// Positions read per query.
const CHUNK: i64 = 20_000;

/// Who the auditor trusts: the log's key and origin, the witnesses' keys and
/// how many of them must have cosigned each archived checkpoint. Without a
/// log key (`origin` `None`) the database's checkpoints are compared but not
/// authenticated, and no archive can be checked.
pub struct Policy {
    pub origin: Option<String>,
    pub log_keys: Verifiers,
    pub witnesses: Verifiers,
    pub quorum: usize,
}

pub struct VerifyOptions {
    pub policy: Policy,
    /// the auditor's archive of checkpoints (every file, whatever its name)
    pub archive: Option<PathBuf>,
    /// incremental mode: the state file of the last run
    pub incremental: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize)]
pub struct TlogReport {
    pub origin: String,
    /// events in the log's numbering (the leaves there should be)
    pub numbered_events: u64,
    /// leaves the integrator has appended
    pub tree_size: u64,
    /// leaves hashed from the events by this run
    pub leaves_hashed: u64,
    /// incremental mode: where the last run left off
    pub incremental_from: Option<u64>,
    /// archived checkpoint files that verified
    pub archived_checkpoints: usize,
    /// files of the archive that are not this log's checkpoints
    pub skipped_files: Vec<String>,
    /// the checkpoints the database keeps (the operator's copies)
    pub database_checkpoints: usize,
    /// the newest checkpoint size checked (archived, else the database's)
    pub newest_checkpoint: Option<u64>,
    /// events not yet under that checkpoint (numbered after it, or not yet
    /// numbered), and the oldest one's age
    pub not_under_checkpoint: u64,
    pub oldest_not_under_checkpoint_secs: Option<f64>,
    /// events not numbered yet (the newest, still above the horizon)
    pub not_numbered: u64,
    /// every event in the events table
    pub events: u64,
    /// the first event whose hash chain is broken (full runs check the
    /// chains in the same pass, as `event_hash` computes them)
    pub chain_broken: Option<String>,
    pub seconds: f64,
    pub discrepancies: Vec<String>,
}

impl TlogReport {
    fn fail(&mut self, what: String) {
        if self.discrepancies.len() < 100 {
            self.discrepancies.push(what);
        }
    }
}

/// One checkpoint to hold the events against.
struct Target {
    source: String,
    checkpoint: Checkpoint,
}

/// What the incremental mode keeps between runs: the tree's right edge at
/// the newest checkpoint it verified, and the checkpoints already checked.
#[derive(Serialize, Deserialize)]
struct State {
    origin: String,
    size: u64,
    root: String,
    frontier: Vec<String>,
    /// size -> root of every checkpoint verified so far
    checked: BTreeMap<u64, String>,
}

/// The archive's checkpoints of `policy`'s log that verify, the problems
/// (a file of this log whose signatures fail or lack the quorum) and the
/// files skipped (not this log's checkpoints).
fn read_archive(
    dir: &Path,
    origin: &str,
    policy: &Policy,
) -> anyhow::Result<(Vec<Target>, Vec<String>, Vec<String>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let (mut targets, mut problems, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for path in files {
        let name = path.display().to_string();
        let bytes = std::fs::read(&path)?;
        let Some(note) = Note::parse(&bytes).ok() else {
            skipped.push(format!("{name}: not a signed note"));
            continue;
        };
        let Ok(cp) = Checkpoint::parse(note.text()) else {
            skipped.push(format!("{name}: not a checkpoint"));
            continue;
        };
        if cp.origin != origin {
            skipped.push(format!(
                "{name}: a checkpoint of another log ({})",
                cp.origin
            ));
            continue;
        }
        match check_signatures(&note, policy) {
            Ok(()) => targets.push(Target {
                source: format!("checkpoint file {name}"),
                checkpoint: cp,
            }),
            Err(e) => problems.push(format!("checkpoint file {name} (size {}): {e}", cp.size)),
        }
    }
    Ok((targets, problems, skipped))
}

/// The log's signature and the quorum of witness cosignatures.
fn check_signatures(note: &Note, policy: &Policy) -> anyhow::Result<()> {
    let verified = note.verify_with(|name, id| {
        policy
            .log_keys
            .find(name, id)
            .or_else(|| policy.witnesses.find(name, id))
            .map(|v| v as &dyn NoteVerifier)
    });
    let verified = match verified {
        Err(NoteError::InvalidSignature { name, .. }) => {
            bail!("the signature of {name} does not verify (the file was changed or forged)")
        }
        Err(NoteError::UnverifiedNote) => bail!("not signed by the log's key"),
        r => r?,
    };
    let by_log = verified
        .verified
        .iter()
        .any(|s| policy.log_keys.find(&s.name, s.key_id).is_some());
    if !by_log {
        bail!("not signed by the log's key");
    }
    let cosigned = verified.verified.len() - 1;
    if cosigned < policy.quorum {
        bail!(
            "{cosigned} witness cosignatures, the policy requires {}",
            policy.quorum
        );
    }
    Ok(())
}

/// Runs every check of the transparency log in one repeatable-read
/// snapshot; `tick` is called with the number of leaves hashed.
pub async fn verify(
    pool: &PgPool,
    opts: &VerifyOptions,
    mut tick: impl FnMut(u64),
) -> anyhow::Result<TlogReport> {
    let started = std::time::Instant::now();
    let policy = &opts.policy;
    let mut report = TlogReport {
        origin: policy.origin.clone().unwrap_or_default(),
        ..Default::default()
    };
    let mut targets = Vec::new();
    if let Some(dir) = &opts.archive {
        let origin = policy.origin.as_deref().ok_or_else(|| {
            anyhow!("checking an archive of checkpoints needs the log's verifier key")
        })?;
        let (t, problems, skipped) = read_archive(dir, origin, policy)?;
        report.archived_checkpoints = t.len();
        targets = t;
        for p in problems {
            report.fail(p);
        }
        report.skipped_files = skipped;
    }
    let mut tx = crate::db::begin_snapshot(pool, None).await?;
    let head = stored::head(&mut tx).await?;
    report.tree_size = head.size;
    let numbered: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM log_positions")
        .fetch_one(&mut *tx)
        .await?;
    let numbered = numbered as u64;
    report.numbered_events = numbered;
    // the operator's copies are held to the same standard (its signature)
    let in_db = stored::all_checkpoints(&mut tx).await?;
    report.database_checkpoints = in_db.len();
    let archived_newest = targets.iter().map(|t| t.checkpoint.size).max();
    for (size, note) in in_db {
        let opened = Note::parse(note.as_bytes())
            .map_err(|e| anyhow!("{e}"))
            .and_then(|n| {
                if policy.origin.is_some() {
                    n.verify(&policy.log_keys).map_err(|e| anyhow!("{e}"))?;
                }
                Ok(Checkpoint::parse(n.text())?)
            });
        let ours = |cp: &Checkpoint| policy.origin.as_ref().is_none_or(|o| *o == cp.origin);
        match opened {
            Ok(cp) if cp.size == size && ours(&cp) => targets.push(Target {
                source: format!("the database's checkpoint of size {size}"),
                checkpoint: cp,
            }),
            Ok(_) => report.fail(format!(
                "the database's checkpoint of size {size} is another log's or another size's"
            )),
            Err(e) => report.fail(format!(
                "the database's checkpoint of size {size} does not verify under the log's key: {e}"
            )),
        }
    }
    report.newest_checkpoint =
        archived_newest.or_else(|| targets.iter().map(|t| t.checkpoint.size).max());
    // one size, one root: anything else is a split view
    let mut by_size: BTreeMap<u64, Vec<&Target>> = BTreeMap::new();
    for t in &targets {
        by_size.entry(t.checkpoint.size).or_default().push(t);
    }
    for (size, ts) in &by_size {
        if ts
            .iter()
            .any(|t| t.checkpoint.root != ts[0].checkpoint.root)
        {
            let sources: Vec<&str> = ts.iter().map(|t| t.source.as_str()).collect();
            report.fail(format!(
                "split view: the log signed two different trees of size {size} ({})",
                sources.join(", ")
            ));
        }
        if *size > numbered {
            report.fail(format!(
                "rolled back: {} covers {size} events, the log now numbers only {numbered}",
                ts[0].source
            ));
        }
    }

    // where hashing starts: zero, or the incremental state
    let mut state = match &opts.incremental {
        Some(path) if path.exists() => Some(load_state(path, policy)?),
        _ => None,
    };
    let mut frontier = Frontier::new();
    if let Some(s) = &state {
        report.incremental_from = Some(s.size);
        frontier = Frontier::from_hashes(
            s.size,
            s.frontier
                .iter()
                .map(|h| parse_hash_b64(h).ok_or_else(|| anyhow!("bad state file")))
                .collect::<anyhow::Result<_>>()?,
        )
        .map_err(|e| anyhow!("bad state file: {e}"))?;
        if hash_b64(&frontier.root()) != s.root {
            bail!("the state file's frontier does not give its root");
        }
        if s.size > numbered {
            report.fail(format!(
                "rolled back: the last run verified {} events, the log now numbers only {numbered}",
                s.size
            ));
        }
        check_older(&mut tx, &mut report, s, &by_size).await?;
    }
    let start = frontier.size();
    // the checkpoints ahead, in size order; the newest one's frontier is kept
    let ahead: Vec<(u64, Hash, String)> = by_size
        .iter()
        .filter(|(size, _)| **size > start && **size <= numbered)
        .map(|(size, ts)| (*size, ts[0].checkpoint.root, ts[0].source.clone()))
        .collect();
    let covered = report.newest_checkpoint.unwrap_or(0);
    // the stored leaf hashes, on a second connection in the same snapshot
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *tx)
        .await?;
    let mut stored_tx = crate::db::begin_snapshot(pool, Some(&snapshot)).await?;
    let mut pass = Pass {
        keep_at: report
            .newest_checkpoint
            .filter(|c| *c > start && *c <= numbered),
        frontier,
        ahead: ahead.into_iter().peekable(),
        kept: None,
        last_good: start,
        first_changed: None,
        changed: 0,
        covered,
        oldest_uncovered: None,
        seen: HashSet::new(),
        chains: (start == 0).then(Chains::default),
        stored: StoredCursor {
            head: head.size,
            lo: 0,
            buf: Vec::new(),
            broken: false,
        },
        report: &mut report,
    };
    let mut not_numbered: Vec<leaf::Event> = Vec::new();
    if start == 0 {
        // everything: one scan of the events with their numbers (a hash
        // join, not a lookup per event), put back in the log's order
        sqlx::query("SET LOCAL synchronize_seqscans TO off")
            .execute(&mut *tx)
            .await?;
        let mut rows = sqlx::query(leaf::SELECT_ALL).fetch(&mut *tx);
        let mut early: BTreeMap<i64, leaf::Event> = BTreeMap::new();
        let mut next = 1i64;
        let mut scanned = 0u64;
        while let Some(row) = rows.try_next().await? {
            let (position, event) = leaf::event_of(&row)?;
            scanned += 1;
            if scanned.is_multiple_of(50_000) {
                tick(50_000);
            }
            match position {
                None => not_numbered.push(event),
                Some(p) if p == next => {
                    pass.leaf(&mut stored_tx, p as u64 - 1, &event).await?;
                    next += 1;
                    while let Some(e) = early.remove(&next) {
                        pass.leaf(&mut stored_tx, next as u64 - 1, &e).await?;
                        next += 1;
                    }
                }
                Some(p) => {
                    early.insert(p, event);
                }
            }
        }
        drop(rows);
        pass.report.events = scanned;
        // what is left waits behind positions whose events are gone
        while next <= numbered as i64 {
            match early.remove(&next) {
                Some(e) => pass.leaf(&mut stored_tx, next as u64 - 1, &e).await?,
                None => {
                    let gp: Option<i64> = sqlx::query_scalar(
                        "SELECT global_position FROM log_positions WHERE position = $1",
                    )
                    .bind(next)
                    .fetch_optional(&mut *tx)
                    .await?;
                    pass.missing(next as u64 - 1, gp);
                }
            }
            next += 1;
        }
        // the newest, not numbered yet: their chains after the numbered ones
        not_numbered.sort_by_key(|e| e.global_position);
        for e in &not_numbered {
            if let Some(c) = pass.chains.as_mut() {
                c.check(e, pass.report);
            }
        }
    } else {
        // incremental: only the leaves numbered since
        let mut next = start as i64 + 1;
        while next <= numbered as i64 {
            let to = (next + CHUNK).min(numbered as i64 + 1);
            let rows = leaf::numbered(&mut tx, next, to).await?;
            let mut expect = next;
            for row in &rows {
                while expect < row.position {
                    pass.missing(expect as u64 - 1, None);
                    expect += 1;
                }
                match &row.event {
                    Some(e) => {
                        pass.leaf(&mut stored_tx, row.position as u64 - 1, e)
                            .await?
                    }
                    None => pass.missing(row.position as u64 - 1, Some(row.global_position)),
                }
                expect = row.position + 1;
            }
            tick(rows.len() as u64);
            if rows.is_empty() {
                break;
            }
            next = to;
        }
        // every event numbered once: the counts agree, or find which not
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&mut *tx)
            .await?;
        pass.report.events = events as u64;
        if events as u64 != numbered {
            not_numbered = leaf::not_numbered(&mut tx).await?;
        }
    }
    let Pass {
        frontier,
        kept,
        first_changed,
        changed,
        mut oldest_uncovered,
        ..
    } = pass;
    stored_tx.commit().await?;
    if changed > 0 {
        let first = first_changed.clone().unwrap_or_default();
        report.fail(format!(
            "{changed} leaves differ from the events: the first, {first}"
        ));
    }
    if head.size > numbered {
        report.fail(format!(
            "the tree has {} leaves, the log numbers only {numbered} events (events or their numbers were removed)",
            head.size
        ));
    } else if frontier.size() == head.size && frontier.root() != head.root {
        report.fail(format!(
            "the integrator's head (size {}) does not match the events",
            head.size
        ));
    }
    let numbered_missing = report.events as i64 - not_numbered.len() as i64 - numbered as i64;
    if numbered_missing < 0 && start > 0 {
        report.fail(format!(
            "{} numbered events are not in the events table (deleted)",
            -numbered_missing
        ));
    }
    let now: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *tx)
        .await?;
    report.not_numbered = not_numbered.len() as u64;
    if let Some(o) = not_numbered.iter().map(|e| e.recorded_at).min() {
        oldest_uncovered = Some(oldest_uncovered.map_or(o, |u| u.min(o)));
        if now - o > chrono::Duration::minutes(10) {
            report.fail(format!(
                "{} events are not in the log's numbering, the oldest recorded at {o} (an event inserted below the horizon?)",
                not_numbered.len()
            ));
        }
    }
    tx.commit().await?;
    // (incremental: what the last run verified counts as covered)
    report.not_under_checkpoint = numbered.saturating_sub(covered.max(start)) + report.not_numbered;
    report.oldest_not_under_checkpoint_secs =
        oldest_uncovered.map(|o| (now - o).num_milliseconds() as f64 / 1000.0);

    if let Some(path) = &opts.incremental {
        if report.discrepancies.is_empty() {
            let mut s = state.take().unwrap_or(State {
                origin: report.origin.clone(),
                size: 0,
                root: hash_b64(&Frontier::new().root()),
                frontier: Vec::new(),
                checked: BTreeMap::new(),
            });
            if let Some(f) = kept {
                s.size = f.size();
                s.root = hash_b64(&f.root());
                s.frontier = f.hashes().iter().map(hash_b64).collect();
            }
            for (size, ts) in &by_size {
                if *size <= s.size {
                    s.checked.insert(*size, hash_b64(&ts[0].checkpoint.root));
                }
            }
            super::signer::write_atomically(path, serde_json::to_string_pretty(&s)?.as_bytes())?;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The pass over the leaves in the log's order: each leaf hashed from its
/// event, compared with the stored hash, pushed on the frontier, the root
/// compared at every checkpoint's size; the hash chains on the way.
struct Pass<'r> {
    frontier: Frontier,
    ahead: std::iter::Peekable<std::vec::IntoIter<(u64, Hash, String)>>,
    keep_at: Option<u64>,
    kept: Option<Frontier>,
    last_good: u64,
    first_changed: Option<String>,
    changed: u64,
    covered: u64,
    oldest_uncovered: Option<chrono::DateTime<chrono::Utc>>,
    seen: HashSet<i64>,
    chains: Option<Chains>,
    stored: StoredCursor,
    report: &'r mut TlogReport,
}

impl Pass<'_> {
    async fn leaf(
        &mut self,
        stored: &mut PgConnection,
        index: u64,
        event: &leaf::Event,
    ) -> anyhow::Result<()> {
        if !self.seen.insert(event.global_position) {
            self.report
                .fail(format!("event {} has two leaves", event.name()));
        }
        if let Some(c) = self.chains.as_mut() {
            c.check(event, self.report);
        }
        let h = event.leaf_hash();
        if let Some(s) = self.stored.get(stored, index, self.report).await? {
            if s != h {
                self.changed += 1;
                self.first_changed.get_or_insert_with(|| {
                    format!(
                        "event {} (leaf {index}, global position {}) is not what was logged: its bytes changed after integration",
                        event.name(),
                        event.global_position
                    )
                });
            }
        }
        if index >= self.covered {
            self.oldest_uncovered = Some(
                self.oldest_uncovered
                    .map_or(event.recorded_at, |o| o.min(event.recorded_at)),
            );
        }
        self.push(h);
        Ok(())
    }

    /// A numbered position without its event (`gp`: what it names, if the
    /// number itself is there).
    fn missing(&mut self, index: u64, gp: Option<i64>) {
        self.report.fail(match gp {
            Some(gp) => format!(
                "leaf {index}: its event (global position {gp}) is missing from the events table (deleted)"
            ),
            None => format!("the log's numbering lacks position {}", index + 1),
        });
        self.push([0; 32]);
    }

    fn push(&mut self, h: Hash) {
        self.frontier.push(h, |_, _| {});
        self.report.leaves_hashed += 1;
        let size = self.frontier.size();
        if Some(size) == self.keep_at {
            self.kept = Some(self.frontier.clone());
        }
        while let Some((csize, croot, source)) = self.ahead.next_if(|a| a.0 <= size) {
            if csize != size {
                continue;
            }
            if self.frontier.root() == croot {
                self.last_good = size;
                continue;
            }
            let why = self.first_changed.clone().unwrap_or_else(|| {
                format!(
                    "an event among leaves {}..{csize} was changed, added or removed (and the stored hashes rewritten to match)",
                    self.last_good
                )
            });
            self.report.fail(format!(
                "{source}: the events no longer give its root: {why}"
            ));
        }
    }
}

/// The per-stream hash chains, checked in the log's order (a stream's
/// events are numbered in their sequence's order): each event's hash is
/// `event_hash` of its content and its predecessor's hash, as the database
/// computes it.
#[derive(Default)]
struct Chains {
    last: HashMap<(String, String), (i64, Vec<u8>)>,
    broken: bool,
}

impl Chains {
    fn check(&mut self, e: &leaf::Event, report: &mut TlogReport) {
        let key = (e.aggregate_type.clone(), e.aggregate_id.clone());
        let (prev_seq, prev_hash) = match self.last.get(&key) {
            Some((s, h)) => (*s, Some(h.as_slice())),
            None => (0, None),
        };
        let why = if e.prev_hash.as_deref() != prev_hash {
            Some("its link to the previous event is broken")
        } else if e.sequence != prev_seq + 1 {
            Some("the stream has a gap before it")
        } else if e.chain_hash() != e.hash.as_slice() {
            Some("its content does not match its hash")
        } else {
            None
        };
        if let (Some(why), false) = (why, self.broken) {
            self.broken = true;
            report.chain_broken = Some(format!(
                "hash chain: event {}/{} #{} at position {}: {why}",
                e.aggregate_type, e.aggregate_id, e.sequence, e.global_position
            ));
        }
        self.last.insert(key, (e.sequence, e.hash.clone()));
    }
}

/// The stored leaf hashes, read ahead in chunks.
struct StoredCursor {
    head: u64,
    lo: u64,
    buf: Vec<Hash>,
    broken: bool,
}

impl StoredCursor {
    async fn get(
        &mut self,
        conn: &mut PgConnection,
        index: u64,
        report: &mut TlogReport,
    ) -> anyhow::Result<Option<Hash>> {
        if index >= self.head || self.broken {
            return Ok(None);
        }
        if index < self.lo || index >= self.lo + self.buf.len() as u64 {
            let hi = (index + CHUNK as u64).min(self.head);
            match stored::level_ranges(conn, &[(0, index, hi)]).await {
                Ok(mut v) => {
                    self.lo = index;
                    self.buf = v.pop().unwrap_or_default();
                }
                Err(stored::StoredError::Db(e)) => return Err(e.into()),
                Err(e) => {
                    report.fail(format!("the stored leaf hashes are incomplete: {e}"));
                    self.broken = true;
                    return Ok(None);
                }
            }
        }
        Ok(self.buf.get((index - self.lo) as usize).copied())
    }
}

fn load_state(path: &Path, policy: &Policy) -> anyhow::Result<State> {
    let s: State = serde_json::from_slice(&std::fs::read(path)?)
        .with_context(|| format!("reading the state file {}", path.display()))?;
    if policy.origin.as_ref() != Some(&s.origin) {
        bail!(
            "{} is the state of another log ({})",
            path.display(),
            s.origin
        );
    }
    Ok(s)
}

/// Incremental mode: checkpoints at or below the state's size that were not
/// checked before must be consistent with it (proved from the stored
/// hashes, against the two trusted roots).
async fn check_older(
    conn: &mut PgConnection,
    report: &mut TlogReport,
    s: &State,
    by_size: &BTreeMap<u64, Vec<&Target>>,
) -> anyhow::Result<()> {
    let state_root = parse_hash_b64(&s.root).ok_or_else(|| anyhow!("bad state file"))?;
    for (size, ts) in by_size.range(..=s.size) {
        let t = &ts[0];
        if s.checked.get(size) == Some(&hash_b64(&t.checkpoint.root)) {
            continue;
        }
        let ok = if *size == s.size {
            t.checkpoint.root == state_root
        } else {
            match stored::nodes(conn, &consistency_proof_ids(*size, s.size)).await {
                Ok(hashes) => consistency_proof(*size, s.size, &hashes)
                    .map_err(|e| anyhow!("{e}"))
                    .and_then(|p| {
                        Ok(verify_consistency(
                            *size,
                            s.size,
                            &t.checkpoint.root,
                            &state_root,
                            &p,
                        )?)
                    })
                    .is_ok(),
                Err(stored::StoredError::Db(e)) => return Err(e.into()),
                Err(_) => false,
            }
        };
        if !ok {
            report.fail(format!(
                "{}: not consistent with the tree of size {} the last run verified",
                t.source, s.size
            ));
        }
    }
    Ok(())
}

/// Writes the log as C2SP tlog-tiles files under `dir` (`checkpoint`,
/// `tile/<L>/<N>`, `tile/entries/<N>`) at the size of its latest cosigned
/// checkpoint; returns that checkpoint.
pub async fn export_tiles(
    pool: &PgPool,
    cosigners: &Cosigners,
    dir: &Path,
    mut tick: impl FnMut(u64),
) -> anyhow::Result<StoredCheckpoint> {
    let mut tx = crate::db::begin_snapshot(pool, None).await?;
    let cp = stored::latest_checkpoint(&mut tx, &cosigners.labels, cosigners.quorum)
        .await?
        .ok_or_else(|| anyhow!("the log has no checkpoint with its cosignatures yet"))?;
    let size = cp.size;
    std::fs::create_dir_all(dir)?;
    // hash tiles, level by level, a thousand tiles a query
    for level in 0u8.. {
        let count = size
            .checked_shr(u32::from(level * TILE_HEIGHT))
            .unwrap_or(0);
        if count == 0 {
            break;
        }
        let mut lo = 0;
        while lo < count {
            let hi = (lo + 1000 * u64::from(TILE_WIDTH)).min(count);
            let hashes = stored::level_ranges(&mut tx, &[(level * TILE_HEIGHT, lo, hi)])
                .await?
                .pop()
                .unwrap_or_default();
            for (k, chunk) in hashes.chunks(usize::from(TILE_WIDTH)).enumerate() {
                let tile = TileId::new(level, (lo >> TILE_HEIGHT) + k as u64, chunk.len() as u16)?;
                write(dir, &tile.path(), &chunk.concat())?;
            }
            lo = hi;
        }
    }
    // entry bundles: the leaves
    let mut lo = 0;
    while lo < size {
        let hi = (lo + 100 * u64::from(TILE_WIDTH)).min(size);
        let leaves = reads::leaves(&mut tx, lo, hi)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        for (k, chunk) in leaves.chunks(usize::from(TILE_WIDTH)).enumerate() {
            let bundle = BundleId {
                index: (lo >> TILE_HEIGHT) + k as u64,
                width: chunk.len() as u16,
            };
            write(dir, &bundle.path(), &encode_entry_bundle(chunk)?)?;
        }
        tick(hi - lo);
        lo = hi;
    }
    tx.commit().await?;
    write(dir, "checkpoint", cp.cosigned(&cosigners.labels).as_bytes())?;
    Ok(cp)
}

fn write(dir: &Path, rel: &str, data: &[u8]) -> std::io::Result<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, data)
}

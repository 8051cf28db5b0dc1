//! What auditors read: the latest cosigned checkpoint, C2SP tiles and
//! entry bundles, tlog-proof files for one event, consistency proofs.

use std::sync::Arc;

use sqlx::PgConnection;

use super::checkpoint::Checkpoint;
use super::merkle::{consistency_proof, consistency_proof_ids, inclusion_proof_ids, Hash};
use super::note::Note;
use super::proof::TlogProof;
use super::stored::{self, LatestCheckpoint, StoredCheckpoint, StoredError, TileCache};
use super::tiles::{encode_entry_bundle, parse_tile_path, TilePath, TILE_HEIGHT};
use super::{leaf, Cosigners};

/// Why a read has no answer.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Malformed request (a tile path, sizes out of order).
    #[error("{0}")]
    Invalid(String),
    /// Not in the log (yet).
    #[error("{0}")]
    NotFound(String),
    /// The stored log is damaged (a numbered event missing, hashes missing).
    #[error("{0}")]
    Broken(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<StoredError> for ReadError {
    fn from(e: StoredError) -> Self {
        match e {
            StoredError::Db(e) => ReadError::Db(e),
            e => ReadError::Broken(e.to_string()),
        }
    }
}

/// The newest checkpoint with the quorum's cosignatures.
pub async fn latest(
    conn: &mut PgConnection,
    w: &Cosigners,
) -> Result<Option<StoredCheckpoint>, ReadError> {
    Ok(stored::latest_checkpoint(conn, &w.labels, w.quorum).await?)
}

/// The signed note of the latest checkpoint, cosignatures included.
pub async fn latest_note(conn: &mut PgConnection, w: &Cosigners) -> Result<String, ReadError> {
    let cp = latest(conn, w)
        .await?
        .ok_or_else(|| ReadError::NotFound("no checkpoint with its cosignatures yet".into()))?;
    Ok(cp.cosigned(&w.labels))
}

/// A hash tile or entry bundle by its C2SP path (`tile/...`), if the
/// integrated tree has it.
pub async fn tile(conn: &mut PgConnection, path: &str) -> Result<Vec<u8>, ReadError> {
    let parsed = parse_tile_path(path).map_err(|e| ReadError::Invalid(e.to_string()))?;
    let size = stored::head(conn).await?.size;
    match parsed {
        TilePath::Hashes(t) => {
            let level = t.level * TILE_HEIGHT;
            let lo = t.index << TILE_HEIGHT;
            let hi = lo + u64::from(t.width);
            if hi > size.checked_shr(u32::from(level)).unwrap_or(0) {
                return Err(ReadError::NotFound(format!("{path} is beyond the tree")));
            }
            let hashes = stored::level_ranges(conn, &[(level, lo, hi)]).await?;
            Ok(hashes[0].concat())
        }
        TilePath::Entries(b) => {
            let lo = b.first_entry();
            let hi = lo + u64::from(b.width);
            if hi > size {
                return Err(ReadError::NotFound(format!("{path} is beyond the tree")));
            }
            let leaves = leaves(conn, lo, hi).await?;
            Ok(encode_entry_bundle(&leaves).map_err(|e| ReadError::Broken(e.to_string()))?)
        }
    }
}

/// The leaf bytes of leaves `[lo, hi)`.
pub async fn leaves(conn: &mut PgConnection, lo: u64, hi: u64) -> Result<Vec<Vec<u8>>, ReadError> {
    let rows = if hi == lo + 1 {
        // one leaf (an auditor's `/admin/tlog/entry`): the plan PostgreSQL keeps
        leaf::at(conn, lo as i64 + 1).await?.into_iter().collect()
    } else {
        leaf::numbered(conn, lo as i64 + 1, hi as i64 + 1).await?
    };
    if rows.len() as u64 != hi - lo {
        return Err(ReadError::Broken(format!(
            "the log's numbering lacks positions in {}..{}",
            lo + 1,
            hi + 1
        )));
    }
    rows.into_iter()
        .map(|r| match r.event {
            Some(e) => Ok(e.leaf()),
            None => Err(ReadError::Broken(format!(
                "log position {} names a missing event (global position {})",
                r.position, r.global_position
            ))),
        })
        .collect()
}

/// What a serving process keeps for proofs: tile hashes (they never
/// change) and the latest cosigned checkpoint (checked at each proof).
#[derive(Default)]
pub struct Kept {
    pub tiles: TileCache,
    pub latest: LatestCheckpoint,
}

/// A tlog-proof@v1 file for leaf `index` against the checkpoint of `size`
/// (default: the latest cosigned one), naming the event in its `extra`.
pub async fn proof(
    conn: &mut PgConnection,
    w: &Cosigners,
    kept: Option<&Kept>,
    index: u64,
    size: Option<u64>,
) -> Result<(TlogProof, leaf::Event), ReadError> {
    let labels = &w.labels;
    let position = index as i64 + 1;
    let mut leaf_tile = None;
    let (cp, numbered) = match (size, kept.and_then(|k| k.latest.get())) {
        (Some(s), _) => (
            Arc::new(
                stored::checkpoint_of_size(conn, labels, s)
                    .await?
                    .ok_or_else(|| ReadError::NotFound(format!("no checkpoint of size {s}")))?,
            ),
            leaf::at(conn, position).await?,
        ),
        // one statement: the event, whether the kept checkpoint is still
        // the latest, and the event's leaf tile unless kept
        (None, Some((cp, seen))) => {
            let tile = index >> TILE_HEIGHT;
            let start = tile << TILE_HEIGHT;
            let under = cp.size.clamp(start, start + (1 << TILE_HEIGHT)) - start;
            let kept_tile = kept.and_then(|k| k.tiles.get((0, tile), under as usize));
            let ask = (under > 0 && kept_tile.is_none()).then_some(tile);
            let (numbered, now, read) = leaf::at_seeing(conn, position, cp.size, ask).await?;
            if let (Some(bytes), Some(k)) = (read, kept) {
                let hashes = Arc::new(stored::hashes_of(&bytes)?);
                k.tiles.put((0, tile), hashes.clone());
                leaf_tile = Some(((0, tile), hashes));
            }
            if now == seen {
                (cp, numbered)
            } else {
                (latest_kept(conn, w, kept).await?, numbered)
            }
        }
        (None, None) => (
            latest_kept(conn, w, kept).await?,
            leaf::at(conn, position).await?,
        ),
    };
    if index >= cp.size {
        return Err(ReadError::NotFound(format!(
            "leaf {index} is not under the checkpoint of size {} yet",
            cp.size
        )));
    }
    // numbered after the event was read (the checkpoint read later)
    let numbered = match numbered {
        Some(n) => Some(n),
        None => leaf::at(conn, position).await?,
    };
    let event = numbered
        .and_then(|n| n.event)
        .ok_or_else(|| ReadError::Broken(format!("leaf {index}: its event is missing")))?;
    let hashes = stored::nodes_cached(
        conn,
        kept.map(|k| &k.tiles),
        leaf_tile,
        &inclusion_proof_ids(index, cp.size),
    )
    .await?;
    let note = cp.cosigned(labels);
    let proof = TlogProof::build(index, &note, &hashes, Some(event.name().into_bytes()))
        .map_err(|e| ReadError::Broken(e.to_string()))?;
    Ok((proof, event))
}

/// The latest cosigned checkpoint, read and kept.
async fn latest_kept(
    conn: &mut PgConnection,
    w: &Cosigners,
    kept: Option<&Kept>,
) -> Result<Arc<StoredCheckpoint>, ReadError> {
    let (cp, seen) = stored::latest_checkpoint_seen(conn, &w.labels, w.quorum)
        .await?
        .ok_or_else(|| ReadError::NotFound("no checkpoint with its cosignatures yet".into()))?;
    let cp = Arc::new(cp);
    if let Some(k) = kept {
        k.latest.keep(cp.clone(), seen);
    }
    Ok(cp)
}

/// The leaf index of `<type>/<id>/<sequence>`.
pub async fn index_of_event(conn: &mut PgConnection, name: &str) -> Result<u64, ReadError> {
    let (t, id, seq) = leaf::parse_event_name(name).ok_or_else(|| {
        ReadError::Invalid(format!(
            "{name:?} is not <aggregate_type>/<aggregate_id>/<sequence>"
        ))
    })?;
    leaf::index_of(conn, t, id, seq)
        .await?
        .ok_or_else(|| ReadError::NotFound(format!("no event {name} in the log (yet)")))
}

/// The RFC 6962 consistency proof from size `old` to size `new` (a signed
/// checkpoint's size; default the latest cosigned one), with the two
/// roots.
pub async fn consistency(
    conn: &mut PgConnection,
    w: &Cosigners,
    old: u64,
    new: Option<u64>,
) -> Result<(u64, Vec<Hash>), ReadError> {
    let new = match new {
        Some(n) => n,
        None => {
            latest(conn, w)
                .await?
                .ok_or_else(|| ReadError::NotFound("no checkpoint yet".into()))?
                .size
        }
    };
    if old > new {
        return Err(ReadError::Invalid(format!(
            "old size {old} is larger than new size {new}"
        )));
    }
    let size = stored::head(conn).await?.size;
    if new > size {
        return Err(ReadError::NotFound(format!(
            "the tree has {size} leaves, not {new}"
        )));
    }
    let hashes = stored::nodes(conn, &consistency_proof_ids(old, new)).await?;
    let proof =
        consistency_proof(old, new, &hashes).map_err(|e| ReadError::Broken(e.to_string()))?;
    Ok((new, proof))
}

/// The checkpoint body of a signed note (unverified).
pub fn body_of(note: &str) -> Option<Checkpoint> {
    Checkpoint::parse(Note::parse(note.as_bytes()).ok()?.text()).ok()
}

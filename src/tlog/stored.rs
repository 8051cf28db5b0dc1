//! The tree as PostgreSQL keeps it: hash runs at the tile levels
//! (`tlog_hashes`), the integrator's head, the signed checkpoints and their
//! cosignatures. Any complete subtree hash is computed from the stored
//! level below it that is a multiple of 8.

use std::collections::{BTreeMap, HashMap};

use sqlx::{PgConnection, Row};

use super::merkle::{root_from_leaf_hashes, Hash, NodeId, HASH_SIZE};
use super::tiles::TILE_HEIGHT;

/// The tree's size and root as the integrator last committed them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    pub root: Hash,
}

pub async fn head(conn: &mut PgConnection) -> sqlx::Result<Head> {
    let (size, root): (i64, Vec<u8>) = sqlx::query_as("SELECT size, root FROM tlog_head")
        .fetch_one(conn)
        .await?;
    Ok(Head {
        size: size as u64,
        root: to_hash(&root).ok_or_else(|| decode_error("tlog_head.root"))?,
    })
}

fn to_hash(b: &[u8]) -> Option<Hash> {
    b.try_into().ok()
}

fn decode_error(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("{what} is not a 32-byte hash").into())
}

/// What the stored hashes cannot give.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    #[error("stored hashes at level {level} do not cover nodes {lo}..{hi}")]
    Missing { level: u8, lo: u64, hi: u64 },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Hashes of nodes `[lo, hi)` of each `(level, lo, hi)` (levels multiples
/// of 8), in one round trip.
pub async fn level_ranges(
    conn: &mut PgConnection,
    ranges: &[(u8, u64, u64)],
) -> Result<Vec<Vec<Hash>>, StoredError> {
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let levels: Vec<i16> = ranges.iter().map(|r| i16::from(r.0)).collect();
    // a stored run never crosses a tile's end (the table's check), so the
    // runs holding nodes [lo, hi) start at or after lo's tile: a plain
    // index range, which PostgreSQL plans in a tenth of the time the
    // "last run starting at or before lo" subquery took (it plans this
    // statement anew at every call)
    let tile_starts: Vec<i64> = ranges
        .iter()
        .map(|r| (r.1 >> TILE_HEIGHT << TILE_HEIGHT) as i64)
        .collect();
    let his: Vec<i64> = ranges.iter().map(|r| r.2 as i64).collect();
    let rows = sqlx::query(
        "SELECT r.i, t.first, t.hashes
           FROM unnest($1::smallint[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS r(level, lo, hi, i)
           JOIN tlog_hashes t ON t.level = r.level AND t.first >= r.lo AND t.first < r.hi
          ORDER BY r.i, t.first",
    )
    .bind(&levels)
    .bind(&tile_starts)
    .bind(&his)
    .fetch_all(conn)
    .await?;
    let mut out: Vec<Vec<Hash>> = ranges
        .iter()
        .map(|r| Vec::with_capacity((r.2 - r.1) as usize))
        .collect();
    for row in rows {
        let i = row.try_get::<i64, _>(0)? as usize - 1;
        let first = row.try_get::<i64, _>(1)? as u64;
        let bytes: &[u8] = row.try_get(2)?;
        let (_, lo, hi) = ranges[i];
        let got = &mut out[i];
        for (k, h) in bytes.chunks_exact(HASH_SIZE).enumerate() {
            let node = first + k as u64;
            if node == lo + got.len() as u64 && node < hi {
                got.push(to_hash(h).expect("32-byte chunk"));
            }
        }
    }
    for (got, &(level, lo, hi)) in out.iter().zip(ranges) {
        if got.len() as u64 != hi - lo {
            return Err(StoredError::Missing { level, lo, hi });
        }
    }
    Ok(out)
}

/// The stored range a node is computed from: `(base level, lo, hi)`, an
/// aligned range of at most 128 hashes, so inside one tile.
fn base_of(id: NodeId) -> (u8, u64, u64) {
    let base = id.level - id.level % TILE_HEIGHT;
    let k = id.level - base;
    (base, id.index << k, (id.index + 1) << k)
}

/// A tile's first hashes, shared.
pub type TileHashes = std::sync::Arc<Vec<Hash>>;
/// A tile: `(level, index)`, the level a multiple of 8.
pub type TileKey = (u8, u64);

/// The tile column of [`super::leaf::at_seeing`]: leaf tile `tile_sql`'s
/// stored hashes, its runs concatenated (each level's runs are contiguous
/// from 0 and none crosses a tile's end, the table's checks; NULL: no
/// tile wanted). The bound is a subquery so that PostgreSQL keeps one plan
/// for the statement (with the number itself it plans anew at each call).
pub(super) fn leaf_tile_column(tile_sql: &str) -> String {
    format!(
        "(SELECT string_agg(t.hashes, ''::bytea ORDER BY t.first) FROM tlog_hashes t
           WHERE t.level = 0 AND t.first >= (SELECT {tile_sql} * 256)
             AND t.first < (SELECT ({tile_sql} + 1) * 256)) AS leaf_tile"
    )
}

/// Stored hashes from their concatenation.
pub(super) fn hashes_of(bytes: &[u8]) -> Result<Vec<Hash>, StoredError> {
    if !bytes.len().is_multiple_of(HASH_SIZE) {
        return Err(StoredError::Db(decode_error("a tile")));
    }
    Ok(bytes
        .chunks_exact(HASH_SIZE)
        .map(|h| to_hash(h).expect("32-byte chunk"))
        .collect())
}

/// Hashes read from `tlog_hashes`, kept: a stored hash never changes, so
/// the first hashes of a tile, once read, stay true. Bounded; when full,
/// the leaf-level tiles (one per 256 events, the cold ones) are forgotten.
pub struct TileCache {
    tiles: std::sync::Mutex<HashMap<TileKey, TileHashes>>,
    capacity: usize,
    /// Nodes computed from the upper tiles (above the leaves): a complete
    /// subtree's hash never changes, and every proof walks the same few
    /// upper tiles (hashing up to 247 of their hashes again was ~a quarter
    /// of the server's CPU time in the proof figure).
    upper_nodes: std::sync::Mutex<HashMap<NodeId, Hash>>,
}

/// Upper-tile nodes kept (a tree of 2^32 leaves has ~2^24 such nodes; the
/// ones proofs ask for are a few per upper tile).
const UPPER_NODES_KEPT: usize = 16_384;

impl Default for TileCache {
    /// 2,048 tiles of at most 8 KiB
    fn default() -> Self {
        Self::new(2048)
    }
}

impl TileCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            tiles: Default::default(),
            capacity,
            upper_nodes: Default::default(),
        }
    }

    fn upper_node(&self, id: NodeId) -> Option<Hash> {
        self.upper_nodes.lock().unwrap().get(&id).copied()
    }

    fn keep_upper_node(&self, id: NodeId, hash: Hash) {
        let mut nodes = self.upper_nodes.lock().unwrap();
        if nodes.len() >= UPPER_NODES_KEPT {
            nodes.clear();
        }
        nodes.insert(id, hash);
    }

    pub(super) fn get(&self, key: TileKey, len: usize) -> Option<TileHashes> {
        let tiles = self.tiles.lock().unwrap();
        tiles.get(&key).filter(|t| t.len() >= len).cloned()
    }

    pub(super) fn put(&self, key: TileKey, hashes: TileHashes) {
        let mut tiles = self.tiles.lock().unwrap();
        if tiles.len() >= self.capacity {
            tiles.retain(|(level, _), _| *level > 0);
            if tiles.len() >= self.capacity {
                tiles.clear();
            }
        }
        tiles.insert(key, hashes);
    }
}

/// The hashes of `ids` (complete subtrees), computed from the stored levels:
/// each from a range inside one tile, each tile's first hashes read once
/// (and kept in `cache`, if given).
pub async fn nodes(
    conn: &mut PgConnection,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash>, StoredError> {
    nodes_cached(conn, None, None, ids).await
}

pub async fn nodes_cached(
    conn: &mut PgConnection,
    cache: Option<&TileCache>,
    given: Option<(TileKey, TileHashes)>,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash>, StoredError> {
    let tile = |level: u8, lo: u64| (level, lo >> TILE_HEIGHT);
    // nodes above the leaf tiles computed before; tiles are read only for
    // the rest
    let upper_cache = |id: &NodeId| cache.filter(|_| base_of(*id).0 > 0);
    let mut out: HashMap<NodeId, Hash> = ids
        .iter()
        .filter_map(|id| Some((*id, upper_cache(id)?.upper_node(*id)?)))
        .collect();
    let to_compute: Vec<NodeId> = ids
        .iter()
        .filter(|id| !out.contains_key(id))
        .copied()
        .collect();
    // per tile: how many of its first hashes are needed
    let mut needed: BTreeMap<(u8, u64), u64> = BTreeMap::new();
    for id in &to_compute {
        let (level, lo, hi) = base_of(*id);
        let key = tile(level, lo);
        let len = hi - (key.1 << TILE_HEIGHT);
        let n = needed.entry(key).or_insert(len);
        *n = (*n).max(len);
    }
    let mut tiles: HashMap<(u8, u64), TileHashes> = HashMap::new();
    let mut missing = Vec::new();
    for (key, len) in &needed {
        let known = given
            .as_ref()
            .filter(|(k, t)| k == key && t.len() >= *len as usize)
            .map(|(_, t)| t.clone());
        match known.or_else(|| cache.and_then(|c| c.get(*key, *len as usize))) {
            Some(t) => {
                tiles.insert(*key, t);
            }
            None => missing.push(*key),
        }
    }
    let ranges: Vec<(u8, u64, u64)> = missing
        .iter()
        .map(|k| (k.0, k.1 << TILE_HEIGHT, (k.1 << TILE_HEIGHT) + needed[k]))
        .collect();
    for (key, hashes) in missing.into_iter().zip(level_ranges(conn, &ranges).await?) {
        let hashes = std::sync::Arc::new(hashes);
        if let Some(c) = cache {
            c.put(key, hashes.clone());
        }
        tiles.insert(key, hashes);
    }
    for id in to_compute {
        let (level, lo, hi) = base_of(id);
        let key = tile(level, lo);
        let start = key.1 << TILE_HEIGHT;
        let slice = &tiles[&key][(lo - start) as usize..(hi - start) as usize];
        let hash = root_from_leaf_hashes(slice);
        if let Some(c) = upper_cache(&id) {
            c.keep_upper_node(id, hash);
        }
        out.insert(id, hash);
    }
    Ok(out)
}

/// A signed checkpoint as stored, with the cosignature lines received.
#[derive(Clone, Debug)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub note: String,
    pub signed_at: chrono::DateTime<chrono::Utc>,
    /// `(witness, line)`
    pub cosignatures: Vec<(String, String)>,
}

impl StoredCheckpoint {
    /// The note with the cosignature lines of `witnesses` (names `name+id`)
    /// appended.
    pub fn cosigned(&self, witnesses: &[String]) -> String {
        let mut note = self.note.clone();
        for (w, line) in &self.cosignatures {
            if witnesses.contains(w) {
                note.push_str(line);
                if !line.ends_with('\n') {
                    note.push('\n');
                }
            }
        }
        note
    }
}

const CHECKPOINT_COLUMNS: &str = "
SELECT c.size, c.note, c.signed_at,
       coalesce(array_agg(s.witness ORDER BY s.witness) FILTER (WHERE s.witness = ANY($1)), '{}') AS witnesses,
       coalesce(array_agg(s.line ORDER BY s.witness) FILTER (WHERE s.witness = ANY($1)), '{}') AS lines";
const CHECKPOINT_FROM: &str =
    "FROM tlog_checkpoints c LEFT JOIN tlog_cosignatures s ON s.size = c.size";

fn checkpoint_of(row: &sqlx::postgres::PgRow) -> sqlx::Result<StoredCheckpoint> {
    let witnesses: Vec<String> = row.try_get("witnesses")?;
    let lines: Vec<String> = row.try_get("lines")?;
    Ok(StoredCheckpoint {
        size: row.try_get::<i64, _>("size")? as u64,
        note: row.try_get("note")?,
        signed_at: row.try_get("signed_at")?,
        cosignatures: witnesses.into_iter().zip(lines).collect(),
    })
}

/// The newest checkpoint with at least `quorum` cosignatures from
/// `witnesses` (`name+id` each).
pub async fn latest_checkpoint(
    conn: &mut PgConnection,
    witnesses: &[String],
    quorum: usize,
) -> sqlx::Result<Option<StoredCheckpoint>> {
    Ok(latest_checkpoint_seen(conn, witnesses, quorum)
        .await?
        .map(|(cp, _)| cp))
}

/// [`latest_checkpoint`], with what its statement saw of the checkpoint
/// tables (to keep it: [`LatestCheckpoint`]).
pub async fn latest_checkpoint_seen(
    conn: &mut PgConnection,
    witnesses: &[String],
    quorum: usize,
) -> sqlx::Result<Option<(StoredCheckpoint, CheckpointsSeen)>> {
    // newest first, stopping at the first with its quorum (an index scan
    // backwards, not a grouping of every checkpoint ever signed)
    let row = sqlx::query(&format!(
        "{CHECKPOINT_COLUMNS}, {} {CHECKPOINT_FROM}
          WHERE c.size = (SELECT p.size FROM tlog_checkpoints p
                           WHERE (SELECT count(*) FROM tlog_cosignatures q
                                   WHERE q.size = p.size AND q.witness = ANY($1)) >= $2
                           ORDER BY p.size DESC LIMIT 1)
          GROUP BY c.size",
        checkpoints_seen_columns("c.size")
    ))
    .bind(witnesses)
    .bind(quorum as i64)
    .fetch_optional(conn)
    .await?;
    row.as_ref()
        .map(|r| Ok((checkpoint_of(r)?, CheckpointsSeen::of(r)?)))
        .transpose()
}

/// What one statement saw of the (append-only) checkpoint tables, measured
/// from a checkpoint's size: the newest checkpoint, and how many
/// cosignatures of that checkpoint or newer ones there were. Whether the
/// latest cosigned checkpoint is still the one read then is the question
/// whether both are still the same: a newer one can only become the latest
/// by being signed or cosigned, and the kept one's cosignatures only grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointsSeen {
    newest: Option<i64>,
    cosigned_since: i64,
}

/// The columns of [`CheckpointsSeen`] from the size in `size_sql`.
pub(super) fn checkpoints_seen_columns(size_sql: &str) -> String {
    format!(
        "(SELECT max(size) FROM tlog_checkpoints) AS seen_newest,
         (SELECT count(*) FROM tlog_cosignatures WHERE size >= {size_sql}) AS seen_cosigned"
    )
}

impl CheckpointsSeen {
    pub(super) fn of(row: &sqlx::postgres::PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            newest: row.try_get("seen_newest")?,
            cosigned_since: row.try_get("seen_cosigned")?,
        })
    }
}

/// The latest cosigned checkpoint, kept with what was seen when it was
/// read: a proof asks whether that is still what the tables hold in the
/// statement that reads its event, instead of reading the checkpoint again
/// (one statement of three, the costliest to plan and run).
#[derive(Default)]
pub struct LatestCheckpoint(
    std::sync::Mutex<Option<(std::sync::Arc<StoredCheckpoint>, CheckpointsSeen)>>,
);

impl LatestCheckpoint {
    /// Shared, not copied: every proof asks.
    pub fn get(&self) -> Option<(std::sync::Arc<StoredCheckpoint>, CheckpointsSeen)> {
        self.0.lock().unwrap().clone()
    }

    pub fn keep(&self, cp: std::sync::Arc<StoredCheckpoint>, seen: CheckpointsSeen) {
        // a pair from a reader that lost a race is still a consistent
        // pair (one statement's): at worst the next proof reads again
        *self.0.lock().unwrap() = Some((cp, seen));
    }
}

/// The checkpoint of `size`, if one was signed.
pub async fn checkpoint_of_size(
    conn: &mut PgConnection,
    witnesses: &[String],
    size: u64,
) -> sqlx::Result<Option<StoredCheckpoint>> {
    let row = sqlx::query(&format!(
        "{CHECKPOINT_COLUMNS} {CHECKPOINT_FROM} WHERE c.size = $2 GROUP BY c.size"
    ))
    .bind(witnesses)
    .bind(size as i64)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(checkpoint_of).transpose()
}

/// Every signed checkpoint, oldest first, without cosignatures.
pub async fn all_checkpoints(conn: &mut PgConnection) -> sqlx::Result<Vec<(u64, String)>> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT size, note FROM tlog_checkpoints ORDER BY size")
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(|(s, n)| (s as u64, n)).collect())
}

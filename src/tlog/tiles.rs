//! c2sp.org/tlog-tiles: tile paths, hash tiles and entry bundles.
//!
//! Tile height is fixed at 8: a full tile holds 256 hashes (8,192 bytes).
//! Hash `i` of tile `(L, N)` is the stored node `(8·L, N·256 + i)` (see
//! [`super::merkle::NodeId`]). Paths are `tile/<L>/<N>[.p/<W>]` and
//! `tile/entries/<N>[.p/<W>]`, with `N` in 3-digit groups (`x001/x234/067`).
//! Note: these are the C2SP paths, not Go sumdb's `tile/8/<L>/…` paths.

use super::merkle::{node_hash, Hash, HashReader, NodeId, TreeError, HASH_SIZE};

/// Tile height (levels of the Merkle tree per tile).
pub const TILE_HEIGHT: u8 = 8;
/// Hashes (or entries) in a full tile (or entry bundle).
pub const TILE_WIDTH: u16 = 256;
/// Largest entry an entry bundle can hold (uint16 length prefix).
pub const MAX_ENTRY_SIZE: usize = u16::MAX as usize;
/// Highest tile level addressable with 64-bit leaf indexes (8·7 = 56).
pub const MAX_TILE_LEVEL: u8 = 7;

/// Errors of tile paths, tile data and entry bundles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    /// Not a valid C2SP tile or entry-bundle path.
    #[error("malformed tile path {0:?}")]
    BadPath(String),
    /// Width outside 1..=256 or level above [`MAX_TILE_LEVEL`].
    #[error("invalid tile coordinates")]
    BadTile,
    /// Tile data has the wrong length for the tile's width.
    #[error("tile data has {got} bytes, expected {want}")]
    BadTileData {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// The requested node is not inside this tile.
    #[error("node not covered by this tile")]
    NodeNotInTile,
    /// An entry longer than 65,535 bytes.
    #[error("entry of {0} bytes exceeds 65535")]
    EntryTooLarge(usize),
    /// More than 256 entries, or a bundle whose count differs from the expected width.
    #[error("entry bundle has {got} entries, expected {want}")]
    BadEntryCount {
        /// Entries present.
        got: usize,
        /// Entries expected.
        want: usize,
    },
    /// Truncated length prefix or entry.
    #[error("truncated entry bundle")]
    Truncated,
}

/// A hash tile: level `level`, index `index`, `width` hashes (256 = full).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Tile level (hashes at Merkle level 8·level).
    pub level: u8,
    /// Tile index within its level.
    pub index: u64,
    /// Number of hashes, 1..=256.
    pub width: u16,
}

/// An entry bundle: index `index`, `width` entries (256 = full).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleId {
    /// Bundle index (same as the level-0 tile index).
    pub index: u64,
    /// Number of entries, 1..=256.
    pub width: u16,
}

/// A parsed tile path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TilePath {
    /// `tile/<L>/<N>[.p/<W>]`
    Hashes(TileId),
    /// `tile/entries/<N>[.p/<W>]`
    Entries(BundleId),
}

/// Encodes a tile index as 3-digit path elements, all but the last
/// prefixed with `x` (`1234067` → `x001/x234/067`).
pub fn encode_tile_index(n: u64) -> String {
    let mut s = format!("{:03}", n % 1000);
    let mut n = n / 1000;
    while n > 0 {
        s = format!("x{:03}/{s}", n % 1000);
        n /= 1000;
    }
    s
}

fn width_suffix(width: u16) -> String {
    if width == TILE_WIDTH {
        String::new()
    } else {
        format!(".p/{width}")
    }
}

impl TileId {
    /// Tile with validated coordinates.
    pub fn new(level: u8, index: u64, width: u16) -> Result<Self, TileError> {
        if level > MAX_TILE_LEVEL || width == 0 || width > TILE_WIDTH {
            return Err(TileError::BadTile);
        }
        Ok(TileId {
            level,
            index,
            width,
        })
    }
    /// `tile/<L>/<N>[.p/<W>]`
    pub fn path(&self) -> String {
        format!(
            "tile/{}/{}{}",
            self.level,
            encode_tile_index(self.index),
            width_suffix(self.width)
        )
    }
    /// Whether the tile holds 256 hashes.
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }
    /// The stored nodes whose hashes make up this tile, in order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        let level = self.level * TILE_HEIGHT;
        let start = self.index << TILE_HEIGHT;
        (0..u64::from(self.width))
            .map(|i| NodeId::new(level, start + i))
            .collect()
    }
}

impl BundleId {
    /// `tile/entries/<N>[.p/<W>]`
    pub fn path(&self) -> String {
        format!(
            "tile/entries/{}{}",
            encode_tile_index(self.index),
            width_suffix(self.width)
        )
    }
    /// Index of the first entry in the bundle.
    pub fn first_entry(&self) -> u64 {
        self.index << TILE_HEIGHT
    }
    /// The level-0 hash tile with the same coordinates.
    pub fn hash_tile(&self) -> TileId {
        TileId {
            level: 0,
            index: self.index,
            width: self.width,
        }
    }
}

fn parse_dec_no_leading_zero(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Parses `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]` strictly
/// (canonical encoding only; the result's `path()` equals the input).
pub fn parse_tile_path(path: &str) -> Result<TilePath, TileError> {
    let bad = || TileError::BadPath(path.to_string());
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() < 3 || parts[0] != "tile" {
        return Err(bad());
    }
    let level = if parts[1] == "entries" {
        None
    } else {
        let l = parse_dec_no_leading_zero(parts[1]).ok_or_else(bad)?;
        if l > 63 {
            return Err(bad());
        }
        if l > u64::from(MAX_TILE_LEVEL) {
            return Err(TileError::BadTile);
        }
        Some(l as u8)
    };
    let mut elems: Vec<&str> = parts[2..].to_vec();
    let mut width = TILE_WIDTH;
    if elems.len() >= 2 && elems[elems.len() - 2].ends_with(".p") {
        let w = parse_dec_no_leading_zero(elems.pop().expect("len >= 2")).ok_or_else(bad)?;
        if !(1..u64::from(TILE_WIDTH)).contains(&w) {
            return Err(bad());
        }
        width = w as u16;
        let l = elems.len() - 1;
        elems[l] = elems[l].strip_suffix(".p").expect("checked");
    }
    let mut n: u64 = 0;
    for (i, e) in elems.iter().enumerate() {
        let digits = if i + 1 < elems.len() {
            e.strip_prefix('x').ok_or_else(bad)?
        } else {
            e
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let d: u64 = digits.parse().map_err(|_| bad())?;
        n = n
            .checked_mul(1000)
            .and_then(|n| n.checked_add(d))
            .ok_or_else(bad)?;
    }
    let parsed = match level {
        Some(level) => TilePath::Hashes(TileId {
            level,
            index: n,
            width,
        }),
        None => TilePath::Entries(BundleId { index: n, width }),
    };
    let canonical = match parsed {
        TilePath::Hashes(t) => t.path(),
        TilePath::Entries(b) => b.path(),
    };
    if canonical != path {
        return Err(bad());
    }
    Ok(parsed)
}

/// The partial tile at `level` of a tree of `size` leaves, if any:
/// width `floor(size / 256^level) mod 256`.
pub fn partial_tile(level: u8, size: u64) -> Option<TileId> {
    let shift = u32::from(level) * u32::from(TILE_HEIGHT);
    let n = size.checked_shr(shift).unwrap_or(0);
    let w = (n % u64::from(TILE_WIDTH)) as u16;
    (w > 0).then_some(TileId {
        level,
        index: n >> TILE_HEIGHT,
        width: w,
    })
}

/// Tiles to publish when the log grows from `old_size` to `new_size`:
/// tiles that became full, and the partial tile of each level at `new_size`.
/// With `old_size == 0` this is every tile of the tree.
pub fn new_tiles(old_size: u64, new_size: u64) -> Vec<TileId> {
    let mut out = Vec::new();
    if new_size <= old_size {
        return out;
    }
    for level in 0..=MAX_TILE_LEVEL {
        let shift = u32::from(level) * u32::from(TILE_HEIGHT);
        let new_n = new_size.checked_shr(shift).unwrap_or(0);
        if new_n == 0 {
            break;
        }
        let old_n = old_size.checked_shr(shift).unwrap_or(0);
        for index in (old_n >> TILE_HEIGHT)..(new_n >> TILE_HEIGHT) {
            out.push(TileId {
                level,
                index,
                width: TILE_WIDTH,
            });
        }
        if old_n != new_n {
            if let Some(t) = partial_tile(level, new_size) {
                out.push(t);
            }
        }
    }
    out
}

/// Entry bundles to publish when the log grows from `old_size` to `new_size`.
pub fn new_bundles(old_size: u64, new_size: u64) -> Vec<BundleId> {
    new_tiles(old_size, new_size)
        .into_iter()
        .filter(|t| t.level == 0)
        .map(|t| BundleId {
            index: t.index,
            width: t.width,
        })
        .collect()
}

/// Bytes of a hash tile (concatenated 32-byte hashes) from stored hashes.
pub fn read_tile<R: HashReader>(tile: &TileId, reader: &R) -> Result<Vec<u8>, TreeError<R::Error>> {
    let ids = tile.node_ids();
    let hashes = reader.read_hashes(&ids).map_err(TreeError::Reader)?;
    if hashes.len() != ids.len() {
        return Err(TreeError::ShortRead {
            want: ids.len(),
            got: hashes.len(),
        });
    }
    Ok(hashes.concat())
}

/// Splits tile bytes into hashes, checking the length against the width.
pub fn tile_hashes(tile: &TileId, data: &[u8]) -> Result<Vec<Hash>, TileError> {
    let want = usize::from(tile.width) * HASH_SIZE;
    if data.len() != want {
        return Err(TileError::BadTileData {
            got: data.len(),
            want,
        });
    }
    Ok(data
        .chunks_exact(HASH_SIZE)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect())
}

/// Hash of node `node` computed from the data of `tile`, for any node at
/// Merkle levels `8·L ..= 8·L+8` whose leaves all lie inside the tile
/// (level `8·L+8` = the hash of the whole, full, tile).
pub fn hash_from_tile(tile: &TileId, data: &[u8], node: NodeId) -> Result<Hash, TileError> {
    let hashes = tile_hashes(tile, data)?;
    let base = tile.level * TILE_HEIGHT;
    if node.level < base || node.level > base + TILE_HEIGHT {
        return Err(TileError::NodeNotInTile);
    }
    let k = node.level - base;
    let first = node
        .index
        .checked_shl(u32::from(k))
        .ok_or(TileError::NodeNotInTile)?;
    let start = first
        .checked_sub(tile.index << TILE_HEIGHT)
        .ok_or(TileError::NodeNotInTile)?;
    let end = start + (1u64 << k);
    if end > u64::from(tile.width) {
        return Err(TileError::NodeNotInTile);
    }
    let mut layer: Vec<Hash> = hashes[start as usize..end as usize].to_vec();
    while layer.len() > 1 {
        layer = layer
            .chunks_exact(2)
            .map(|p| node_hash(&p[0], &p[1]))
            .collect();
    }
    Ok(layer[0])
}

/// Encodes an entry bundle: each entry as big-endian uint16 length ‖ bytes.
/// At most 256 entries of at most 65,535 bytes each.
pub fn encode_entry_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, TileError> {
    if entries.len() > usize::from(TILE_WIDTH) {
        return Err(TileError::BadEntryCount {
            got: entries.len(),
            want: usize::from(TILE_WIDTH),
        });
    }
    let total: usize = entries.iter().map(|e| 2 + e.as_ref().len()).sum();
    let mut out = Vec::with_capacity(total);
    for e in entries {
        let e = e.as_ref();
        let len = u16::try_from(e.len()).map_err(|_| TileError::EntryTooLarge(e.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Parses an entry bundle strictly (no trailing bytes, at most 256 entries).
pub fn parse_entry_bundle(data: &[u8]) -> Result<Vec<&[u8]>, TileError> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err(TileError::Truncated);
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if rest.len() < 2 + len {
            return Err(TileError::Truncated);
        }
        out.push(&rest[2..2 + len]);
        rest = &rest[2 + len..];
        if out.len() > usize::from(TILE_WIDTH) {
            return Err(TileError::BadEntryCount {
                got: out.len(),
                want: usize::from(TILE_WIDTH),
            });
        }
    }
    Ok(out)
}

/// Parses the bundle `id` and checks it has exactly `id.width` entries.
pub fn parse_entry_bundle_for(id: &BundleId, data: &[u8]) -> Result<Vec<Vec<u8>>, TileError> {
    let entries = parse_entry_bundle(data)?;
    if entries.len() != usize::from(id.width) {
        return Err(TileError::BadEntryCount {
            got: entries.len(),
            want: usize::from(id.width),
        });
    }
    Ok(entries.into_iter().map(<[u8]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::super::merkle::{inclusion_proof, leaf_hash, tree_hash, MemoryStore};
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn spec_paths() {
        assert_eq!(encode_tile_index(1234067), "x001/x234/067");
        assert_eq!(encode_tile_index(0), "000");
        assert_eq!(encode_tile_index(1000), "x001/000");
        assert_eq!(encode_tile_index(999), "999");
        assert_eq!(
            TileId::new(0, 1234067, 256).unwrap().path(),
            "tile/0/x001/x234/067"
        );
        assert_eq!(
            TileId::new(3, 1234067, 1).unwrap().path(),
            "tile/3/x001/x234/067.p/1"
        );
        assert_eq!(
            BundleId {
                index: 5,
                width: 17
            }
            .path(),
            "tile/entries/005.p/17"
        );
        assert_eq!(
            encode_tile_index(u64::MAX),
            "x018/x446/x744/x073/x709/x551/615"
        );
        for p in [
            "tile/0/x001/x234/067",
            "tile/3/x001/x234/067.p/1",
            "tile/entries/005.p/17",
            "tile/7/000",
            "tile/entries/x018/x446/x744/x073/x709/x551/615",
        ] {
            let t = parse_tile_path(p).unwrap();
            let back = match t {
                TilePath::Hashes(t) => t.path(),
                TilePath::Entries(b) => b.path(),
            };
            assert_eq!(back, p);
        }
        for p in [
            "tile/0/1234067",
            "tile/00/000",
            "tile/0/x000/001",
            "tile/0/01",
            "tile/0/000.p/256",
            "tile/0/000.p/0",
            "tile/0/000.p/07",
            "tile/0/x001",
            "tile/0/001/x234",
            "tile/64/000",
            "tile/entries/000.p/",
            "tile/x/000",
            "tiles/0/000",
            "tile/0/000/",
            "tile/0",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/000.p",
            "tile/data/000",
        ] {
            assert!(parse_tile_path(p).is_err(), "{p}");
        }
        assert_eq!(parse_tile_path("tile/8/000"), Err(TileError::BadTile));
    }

    #[test]
    fn spec_example_tile_counts() {
        // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one
        // partial level 0 tile of width 112, one full level 1 tile, one partial
        // level 1 tile of width 17, and one partial level 2 tile of width 1."
        let tiles = new_tiles(0, 70_000);
        let full0 = tiles.iter().filter(|t| t.level == 0 && t.is_full()).count();
        assert_eq!(full0, 273);
        assert!(tiles.contains(&TileId {
            level: 0,
            index: 273,
            width: 112
        }));
        assert!(tiles.contains(&TileId {
            level: 1,
            index: 0,
            width: 256
        }));
        assert!(tiles.contains(&TileId {
            level: 1,
            index: 1,
            width: 17
        }));
        assert!(tiles.contains(&TileId {
            level: 2,
            index: 0,
            width: 1
        }));
        assert_eq!(tiles.len(), 273 + 4);
        // "a tree of size 256 will be represented by a full level 0 tile and a
        // partial level 1 tile of width 1."
        assert_eq!(
            new_tiles(0, 256),
            vec![
                TileId {
                    level: 0,
                    index: 0,
                    width: 256
                },
                TileId {
                    level: 1,
                    index: 0,
                    width: 1
                }
            ]
        );
        assert!(new_tiles(10, 10).is_empty());
        assert_eq!(
            new_tiles(300, 301),
            vec![TileId {
                level: 0,
                index: 1,
                width: 45
            }]
        );
        assert_eq!(new_tiles(0, 0), vec![]);
    }

    #[test]
    fn incremental_new_tiles_cover_everything() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut size = 0u64;
        let mut fulls = std::collections::BTreeSet::new();
        while size < 300_000 {
            let next = size + rng.gen_range(1..5000);
            for t in new_tiles(size, next) {
                if t.is_full() {
                    assert!(
                        fulls.insert((t.level, t.index)),
                        "full tile published twice"
                    );
                } else {
                    assert_eq!(Some(t), partial_tile(t.level, next));
                }
            }
            size = next;
        }
        let expect: std::collections::BTreeSet<_> = new_tiles(0, size)
            .into_iter()
            .filter(|t| t.is_full())
            .map(|t| (t.level, t.index))
            .collect();
        assert_eq!(fulls, expect);
    }

    #[test]
    fn tile_data_and_hashes() {
        let mut s = MemoryStore::new();
        let n = 70_000u64;
        for i in 0..n {
            s.push_leaf(&i.to_be_bytes());
        }
        // level 1 tile 0 hash i == MTH of level-0 tile i
        let t1 = TileId::new(1, 0, 256).unwrap();
        let d1 = read_tile(&t1, &s).unwrap();
        assert_eq!(d1.len(), 8192);
        for i in [0u64, 1, 100, 255] {
            let t0 = TileId::new(0, i, 256).unwrap();
            let d0 = read_tile(&t0, &s).unwrap();
            let h = hash_from_tile(&t0, &d0, NodeId::new(8, i)).unwrap();
            assert_eq!(&d1[i as usize * 32..i as usize * 32 + 32], &h);
            // every node inside the tile
            for k in 0..8u8 {
                let idx = (i << (8 - k)) + (3 & ((1u64 << (8 - k)) - 1));
                assert_eq!(
                    hash_from_tile(&t0, &d0, NodeId::new(k, idx)).unwrap(),
                    *s.get(NodeId::new(k, idx)).unwrap()
                );
            }
            assert_eq!(
                hash_from_tile(&t0, &d0, NodeId::new(0, (i + 1) * 256)),
                Err(TileError::NodeNotInTile)
            );
        }
        // partial tile hashes
        let p = partial_tile(0, n).unwrap();
        let d = read_tile(&p, &s).unwrap();
        assert_eq!(d.len(), 112 * 32);
        assert_eq!(
            hash_from_tile(&p, &d, NodeId::new(4, (p.index << 4) + 6)).unwrap(),
            *s.get(NodeId::new(4, (p.index << 4) + 6)).unwrap()
        );
        assert!(hash_from_tile(&p, &d, NodeId::new(4, (p.index << 4) + 7)).is_err());
        assert!(tile_hashes(&p, &d[1..]).is_err());
        // root and a proof recomputed from a HashReader built on tiles only
        let mut m = std::collections::HashMap::new();
        for t in new_tiles(0, n) {
            let data = read_tile(&t, &s).unwrap();
            for (id, h) in t
                .node_ids()
                .into_iter()
                .zip(tile_hashes(&t, &data).unwrap())
            {
                m.insert(id, h);
            }
            // nodes strictly inside tiles
            for k in 1..8u8 {
                let first = t.index << (8 - k);
                for j in 0..(u64::from(t.width) >> k) {
                    let id = NodeId::new(t.level * 8 + k, first + j);
                    m.insert(id, hash_from_tile(&t, &data, id).unwrap());
                }
            }
        }
        assert_eq!(tree_hash(n, &m).unwrap(), s.root());
        let pr = inclusion_proof(12345, n, &m).unwrap();
        assert_eq!(pr, inclusion_proof(12345, n, &s).unwrap());
    }

    #[test]
    fn entry_bundles() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..50 {
            let k = rng.gen_range(0..=256);
            let entries: Vec<Vec<u8>> = (0..k)
                .map(|_| (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect())
                .collect();
            let b = encode_entry_bundle(&entries).unwrap();
            let back: Vec<Vec<u8>> = parse_entry_bundle(&b)
                .unwrap()
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect();
            assert_eq!(back, entries);
            if !b.is_empty() {
                assert_eq!(
                    parse_entry_bundle(&b[..b.len() - 1]).unwrap_err(),
                    TileError::Truncated
                );
            }
        }
        // exact bytes
        assert_eq!(
            encode_entry_bundle(&[b"ab".as_slice(), b"", b"c"]).unwrap(),
            vec![0, 2, b'a', b'b', 0, 0, 0, 1, b'c']
        );
        let big = vec![7u8; 65_535];
        let b = encode_entry_bundle(&[&big]).unwrap();
        assert_eq!(&b[..2], &[0xff, 0xff]);
        assert_eq!(parse_entry_bundle(&b).unwrap()[0].len(), 65_535);
        assert_eq!(
            encode_entry_bundle(&[vec![0u8; 65_536]]).unwrap_err(),
            TileError::EntryTooLarge(65_536)
        );
        assert!(encode_entry_bundle(&vec![b"x"; 257]).is_err());
        assert!(parse_entry_bundle(&[0u8; 2 * 257]).is_err());
        let id = BundleId { index: 0, width: 3 };
        assert!(parse_entry_bundle_for(&id, &encode_entry_bundle(&[b"a", b"b"]).unwrap()).is_err());
        let e = parse_entry_bundle_for(&id, &encode_entry_bundle(&[b"a", b"b", b"c"]).unwrap())
            .unwrap();
        assert_eq!(leaf_hash(&e[2]), leaf_hash(b"c"));
    }
}

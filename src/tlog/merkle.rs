//! RFC 6962 Merkle tree: hashing, stored-hash addressing, proofs and an
//! incremental appender.
//!
//! Every *complete* subtree hash is addressed by a [`NodeId`] `(level, index)`:
//! level 0 holds the leaf hashes, and node `(L, N)` is the Merkle Tree Hash of
//! leaves `[N·2^L, (N+1)·2^L)`. These hashes never change once the subtree is
//! complete, so they can be stored append-only (e.g. a PostgreSQL table keyed by
//! `(level, index)`). [`stored_hash_index`] maps them to the dense linear order
//! of Go's `golang.org/x/mod/sumdb/tlog` for stores that want a single key.
//!
//! Proof generation follows Go's sumdb/tlog (`ProveRecord`, `ProveTree`);
//! verification follows the RFC 9162 §2.1.3.2 / §2.1.4.2 algorithms, so the two
//! sides are independent implementations that check each other in tests.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// Size of a SHA-256 hash.
pub const HASH_SIZE: usize = 32;

/// A SHA-256 hash (leaf, node or root).
pub type Hash = [u8; HASH_SIZE];

/// Root of the empty tree: SHA-256 of the empty string (RFC 6962 §2.1).
/// (Go's sumdb/tlog `TreeHash(0)` returns all zeroes instead; C2SP uses this.)
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Leaf hash `SHA-256(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    h.finalize().into()
}

/// Interior node hash `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * HASH_SIZE];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// Merkle Tree Hash of a list of leaf hashes, computed in memory.
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    let mut f = Frontier::new();
    for h in leaves {
        f.push(*h, |_, _| {});
    }
    f.root()
}

/// Address of a complete subtree: node `(level, index)` covers leaves
/// `[index << level, (index + 1) << level)`. Level 0 = leaf hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height of the subtree (0..=63).
    pub level: u8,
    /// Position of the subtree among those of the same level.
    pub index: u64,
}

impl NodeId {
    /// Node `(level, index)`.
    pub const fn new(level: u8, index: u64) -> Self {
        NodeId { level, index }
    }
    /// The leaf hash of leaf `index`.
    pub const fn leaf(index: u64) -> Self {
        NodeId { level: 0, index }
    }
    /// Go sumdb/tlog linear storage index of this node.
    pub fn stored_index(&self) -> u64 {
        stored_hash_index(self.level, self.index)
    }
    /// Inverse of [`NodeId::stored_index`].
    pub fn from_stored_index(i: u64) -> Self {
        let (level, index) = split_stored_hash_index(i);
        NodeId { level, index }
    }
}

/// Go sumdb/tlog `StoredHashIndex`: dense linear order of `(level, n)`
/// (level L's n-th hash is written right after level L+1's (2n+1)-th hash).
pub fn stored_hash_index(level: u8, n: u64) -> u64 {
    let mut n = n;
    for _ in 0..level {
        n = 2 * n + 1;
    }
    let mut i = 0u64;
    while n > 0 {
        i += n;
        n >>= 1;
    }
    i + u64::from(level)
}

/// Go sumdb/tlog `SplitStoredHashIndex`: inverse of [`stored_hash_index`].
pub fn split_stored_hash_index(index: u64) -> (u8, u64) {
    // stored_hash_index(0, n) < 2n, so n is in [index/2, index/2 + log2(index)].
    let mut n = index / 2;
    let mut index_n = stored_hash_index(0, n);
    debug_assert!(index_n <= index);
    loop {
        // Each new record n adds 1 + trailing_zeros(n+1) hashes.
        let x = index_n + 1 + u64::from((n + 1).trailing_zeros());
        if x > index {
            break;
        }
        n += 1;
        index_n = x;
    }
    let level = (index - index_n) as u8;
    (level, n >> level)
}

/// Number of stored hashes for a tree of `n` leaves (Go `StoredHashCount`),
/// i.e. the number of complete subtrees.
pub fn stored_hash_count(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut num = stored_hash_index(0, n - 1) + 1;
    let mut i = n - 1;
    while i & 1 != 0 {
        num += 1;
        i >>= 1;
    }
    num
}

/// Errors of proof verification and of malformed arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Index/sizes out of range (e.g. index >= size, old size > new size).
    #[error("invalid proof arguments: {0}")]
    InvalidInput(&'static str),
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has the wrong length")]
    WrongLength,
    /// The proof does not lead to the expected root(s).
    #[error("proof does not verify")]
    Mismatch,
}

/// Errors of the functions that read stored hashes.
#[derive(Debug, thiserror::Error)]
pub enum TreeError<E> {
    /// Index/sizes out of range.
    #[error("invalid arguments: {0}")]
    InvalidInput(&'static str),
    /// The reader returned a different number of hashes than requested.
    #[error("hash reader returned {got} hashes for {want} ids")]
    ShortRead {
        /// Number of ids requested.
        want: usize,
        /// Number of hashes returned.
        got: usize,
    },
    /// The reader itself failed.
    #[error("hash reader: {0}")]
    Reader(#[source] E),
}

/// Source of stored complete-subtree hashes (database, tiles, memory).
///
/// For async stores: call the `*_ids` planning function, fetch those hashes
/// yourself, put them in a `HashMap<NodeId, Hash>` (which implements this
/// trait) and call the sync function with it.
pub trait HashReader {
    /// Error of the underlying store.
    type Error;
    /// Returns the hashes of `ids`, in order, exactly one per id.
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error>;
}

/// A requested hash was not present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("missing hash for node level {} index {}", .0.level, .0.index)]
pub struct MissingHash(pub NodeId);

impl HashReader for HashMap<NodeId, Hash> {
    type Error = MissingHash;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, MissingHash> {
        ids.iter()
            .map(|id| self.get(id).copied().ok_or(MissingHash(*id)))
            .collect()
    }
}

impl<R: HashReader + ?Sized> HashReader for &R {
    type Error = R::Error;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
        (**self).read_hashes(ids)
    }
}

/// In-memory append-only store of all complete subtree hashes, one vector per
/// level. Handy for tests, audits that recompute a whole log, and exports.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemoryStore {
    /// Empty store.
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends one leaf hash and stores every subtree it completes.
    pub fn push_leaf_hash(&mut self, leaf_hash: Hash) {
        let levels = &mut self.levels;
        self.frontier.push(leaf_hash, |id, h| {
            let l = id.level as usize;
            if levels.len() <= l {
                levels.resize_with(l + 1, Vec::new);
            }
            debug_assert_eq!(levels[l].len() as u64, id.index);
            levels[l].push(*h);
        });
    }
    /// Appends the leaf hash of `leaf`.
    pub fn push_leaf(&mut self, leaf: &[u8]) {
        self.push_leaf_hash(leaf_hash(leaf));
    }
    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }
    /// Current root.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
    /// The stored hash of `id`, if that subtree is complete.
    pub fn get(&self, id: NodeId) -> Option<&Hash> {
        self.levels
            .get(id.level as usize)?
            .get(usize::try_from(id.index).ok()?)
    }
}

impl HashReader for MemoryStore {
    type Error = MissingHash;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, MissingHash> {
        ids.iter()
            .map(|id| self.get(*id).copied().ok_or(MissingHash(*id)))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Reading: tree hash and proofs (ported from Go sumdb/tlog, u64 arithmetic).

/// Largest power of two strictly smaller than `n` (n >= 2), and its log2.
fn split_point(n: u64) -> (u64, u8) {
    debug_assert!(n >= 2);
    let l = 63 - (n - 1).leading_zeros();
    (1u64 << l, l as u8)
}

/// Largest power of two <= n (n >= 1) and its log2.
fn maxpow2_le(n: u64) -> (u64, u8) {
    let l = 63 - n.leading_zeros();
    (1u64 << l, l as u8)
}

fn sub_tree_ids(mut lo: u64, hi: u64, need: &mut Vec<NodeId>) {
    while lo < hi {
        // Largest aligned perfect subtree starting at lo that fits in [lo, hi).
        let (mut k, mut level) = maxpow2_le(hi - lo);
        while lo & (k - 1) != 0 {
            k >>= 1;
            level -= 1;
        }
        need.push(NodeId::new(level, lo >> level));
        lo += k;
    }
}

fn sub_tree_hash(mut lo: u64, hi: u64, hashes: &[Hash]) -> (Hash, &[Hash]) {
    let mut num = 0usize;
    while lo < hi {
        let (mut k, _) = maxpow2_le(hi - lo);
        while lo & (k - 1) != 0 {
            k >>= 1;
        }
        num += 1;
        lo += k;
    }
    let mut h = hashes[num - 1];
    for i in (0..num - 1).rev() {
        h = node_hash(&hashes[i], &h);
    }
    (h, &hashes[num..])
}

fn read_exact<R: HashReader>(r: &R, ids: &[NodeId]) -> Result<Vec<Hash>, TreeError<R::Error>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = r.read_hashes(ids).map_err(TreeError::Reader)?;
    if hashes.len() != ids.len() {
        return Err(TreeError::ShortRead {
            want: ids.len(),
            got: hashes.len(),
        });
    }
    Ok(hashes)
}

/// Stored hashes needed by [`tree_hash`] for a tree of `n` leaves: the
/// perfect subtrees of `[0, n)`, left to right (at most 64).
pub fn tree_hash_ids(n: u64) -> Vec<NodeId> {
    let mut need = Vec::new();
    sub_tree_ids(0, n, &mut need);
    need
}

/// Root hash of the tree of `n` leaves from stored hashes
/// (`EMPTY_ROOT` for `n == 0`).
pub fn tree_hash<R: HashReader>(n: u64, reader: &R) -> Result<Hash, TreeError<R::Error>> {
    if n == 0 {
        return Ok(EMPTY_ROOT);
    }
    let ids = tree_hash_ids(n);
    let hashes = read_exact(reader, &ids)?;
    Ok(sub_tree_hash(0, n, &hashes).0)
}

fn leaf_proof_ids(lo: u64, hi: u64, n: u64, need: &mut Vec<NodeId>) {
    if lo + 1 == hi {
        return;
    }
    let (k, _) = split_point(hi - lo);
    if n < lo + k {
        leaf_proof_ids(lo, lo + k, n, need);
        sub_tree_ids(lo + k, hi, need);
    } else {
        sub_tree_ids(lo, lo + k, need);
        leaf_proof_ids(lo + k, hi, n, need);
    }
}

fn leaf_proof<'a>(lo: u64, hi: u64, n: u64, hashes: &'a [Hash], out: &mut Vec<Hash>) -> &'a [Hash] {
    if lo + 1 == hi {
        return hashes;
    }
    let (k, _) = split_point(hi - lo);
    let (th, rest) = if n < lo + k {
        let rest = leaf_proof(lo, lo + k, n, hashes, out);
        sub_tree_hash(lo + k, hi, rest)
    } else {
        let (th, rest) = sub_tree_hash(lo, lo + k, hashes);
        (th, leaf_proof(lo + k, hi, n, rest, out))
    };
    out.push(th);
    rest
}

/// Stored hashes needed by [`inclusion_proof`].
pub fn inclusion_proof_ids(index: u64, n: u64) -> Vec<NodeId> {
    let mut need = Vec::new();
    if index < n {
        leaf_proof_ids(0, n, index, &mut need);
    }
    need
}

/// RFC 6962 §2.1.1 audit path for leaf `index` in the tree of `n` leaves,
/// leaf's sibling first.
pub fn inclusion_proof<R: HashReader>(
    index: u64,
    n: u64,
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    if index >= n {
        return Err(TreeError::InvalidInput("index must be < tree size"));
    }
    let ids = inclusion_proof_ids(index, n);
    let hashes = read_exact(reader, &ids)?;
    let mut out = Vec::with_capacity(64);
    let rest = leaf_proof(0, n, index, &hashes, &mut out);
    debug_assert!(rest.is_empty());
    Ok(out)
}

fn tree_proof_ids(lo: u64, hi: u64, m: u64, need: &mut Vec<NodeId>) {
    if m == hi {
        if lo != 0 {
            sub_tree_ids(lo, hi, need);
        }
        return;
    }
    let (k, _) = split_point(hi - lo);
    if m <= lo + k {
        tree_proof_ids(lo, lo + k, m, need);
        sub_tree_ids(lo + k, hi, need);
    } else {
        sub_tree_ids(lo, lo + k, need);
        tree_proof_ids(lo + k, hi, m, need);
    }
}

fn tree_proof<'a>(lo: u64, hi: u64, m: u64, hashes: &'a [Hash], out: &mut Vec<Hash>) -> &'a [Hash] {
    if m == hi {
        if lo == 0 {
            return hashes;
        }
        let (th, rest) = sub_tree_hash(lo, hi, hashes);
        out.push(th);
        return rest;
    }
    let (k, _) = split_point(hi - lo);
    let (th, rest) = if m <= lo + k {
        let rest = tree_proof(lo, lo + k, m, hashes, out);
        sub_tree_hash(lo + k, hi, rest)
    } else {
        let (th, rest) = sub_tree_hash(lo, lo + k, hashes);
        (th, tree_proof(lo + k, hi, m, rest, out))
    };
    out.push(th);
    rest
}

/// Stored hashes needed by [`consistency_proof`].
pub fn consistency_proof_ids(m: u64, n: u64) -> Vec<NodeId> {
    let mut need = Vec::new();
    if 0 < m && m < n {
        tree_proof_ids(0, n, m, &mut need);
    }
    need
}

/// RFC 6962 §2.1.2 consistency proof that the tree of `m` leaves is a prefix
/// of the tree of `n` leaves. Empty when `m == 0` or `m == n`.
pub fn consistency_proof<R: HashReader>(
    m: u64,
    n: u64,
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    if m > n {
        return Err(TreeError::InvalidInput("old size must be <= new size"));
    }
    if m == 0 || m == n {
        return Ok(Vec::new());
    }
    let ids = consistency_proof_ids(m, n);
    let hashes = read_exact(reader, &ids)?;
    let mut out = Vec::with_capacity(64);
    let rest = tree_proof(0, n, m, &hashes, &mut out);
    debug_assert!(rest.is_empty());
    Ok(out)
}

// ---------------------------------------------------------------------------
// Verification (RFC 9162 §2.1.3.2 and §2.1.4.2).

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` leaves
/// with root `root`, given its audit path.
///
/// As in RFC 9162, the same path may also verify for some other size with the
/// same root; `size` must therefore come from the same signed checkpoint as `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::InvalidInput("index must be < tree size"));
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// Verifies that the tree (`m`, `old_root`) is a prefix of (`n`, `new_root`).
/// `m == 0` requires an empty proof and `old_root == EMPTY_ROOT`;
/// `m == n` requires an empty proof and equal roots.
pub fn verify_consistency(
    m: u64,
    n: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if m > n {
        return Err(ProofError::InvalidInput("old size must be <= new size"));
    }
    if m == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == &EMPTY_ROOT {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    if m == n {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut path = proof.iter();
    let first: Hash = if m.is_power_of_two() {
        *old_root
    } else {
        *path.next().expect("non-empty")
    };
    let mut f_n = m - 1;
    let mut s_n = n - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut fr = first;
    let mut sr = first;
    for c in path {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Incremental appender.

/// Right edge ("frontier", compact range `[0, size)`) of the tree: one hash per
/// set bit of `size`, the perfect subtrees from left (largest) to right.
/// Appending a leaf yields the new complete subtree hashes to store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// Frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stored hashes that make up the frontier of a tree of `size` leaves
    /// (same as [`tree_hash_ids`]).
    pub fn ids(size: u64) -> Vec<NodeId> {
        tree_hash_ids(size)
    }

    /// Frontier from its hashes (as read at [`Frontier::ids`]).
    pub fn from_hashes(size: u64, hashes: Vec<Hash>) -> Result<Self, ProofError> {
        if hashes.len() != size.count_ones() as usize {
            return Err(ProofError::InvalidInput(
                "frontier needs one hash per set bit of size",
            ));
        }
        Ok(Frontier { size, hashes })
    }

    /// Loads the frontier of a tree of `size` leaves from stored hashes.
    pub fn load<R: HashReader>(size: u64, reader: &R) -> Result<Self, TreeError<R::Error>> {
        let hashes = read_exact(reader, &Self::ids(size))?;
        Ok(Frontier { size, hashes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier hashes, left to right.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Root of the tree (`EMPTY_ROOT` when empty).
    pub fn root(&self) -> Hash {
        match self.hashes.split_last() {
            None => EMPTY_ROOT,
            Some((last, rest)) => rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)),
        }
    }

    /// Appends one leaf hash; calls `emit` for each new complete subtree hash,
    /// in order: the leaf `(0, size)` first, then its completed ancestors.
    #[inline]
    pub fn push(&mut self, leaf_hash: Hash, mut emit: impl FnMut(NodeId, &Hash)) {
        let n = self.size;
        emit(NodeId::leaf(n), &leaf_hash);
        let mut h = leaf_hash;
        let mut idx = n;
        let mut level = 0u8;
        while idx & 1 == 1 {
            let left = self.hashes.pop().expect("frontier has a hash per set bit");
            h = node_hash(&left, &h);
            level += 1;
            idx >>= 1;
            emit(NodeId::new(level, idx), &h);
        }
        self.hashes.push(h);
        self.size = n + 1;
    }

    /// Appends leaf hashes; returns every new complete subtree hash to store
    /// (about two per leaf), in append order.
    pub fn append(&mut self, leaf_hashes: &[Hash]) -> Vec<(NodeId, Hash)> {
        let mut out = Vec::with_capacity(leaf_hashes.len() * 2 + 64);
        for h in leaf_hashes {
            self.push(*h, |id, h| out.push((id, *h)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reference MTH straight from the RFC 6962 recursive definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let (k, _) = split_point(n as u64);
                node_hash(&mth(&leaves[..k as usize]), &mth(&leaves[k as usize..]))
            }
        }
    }

    /// RFC 6962 PATH(m, D[n]).
    fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n == 1 {
            return vec![];
        }
        let k = split_point(n as u64).0 as usize;
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    /// RFC 6962 SUBPROOF(m, D[n], b).
    fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = split_point(n as u64).0 as usize;
        if m <= k {
            let mut p = subproof(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn store_of(n: u64) -> (MemoryStore, Vec<Hash>) {
        let mut s = MemoryStore::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let h = leaf_hash(format!("leaf {i}").as_bytes());
            leaves.push(h);
            s.push_leaf_hash(h);
        }
        (s, leaves)
    }

    #[test]
    fn published_vectors() {
        // Empty tree.
        assert_eq!(
            hex(&root_from_leaf_hashes(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Haskell hash-tree docs: leaves "0","1","2".
        let l: Vec<Hash> = ["0", "1", "2"]
            .iter()
            .map(|s| leaf_hash(s.as_bytes()))
            .collect();
        assert_eq!(
            hex(&root_from_leaf_hashes(&l)),
            "725d5230db68f557470dc35f1d8865813acd7ebb07ad152774141decbae71327"
        );
        // RFC 6962 empty leaf hash (certificate-transparency test vectors).
        assert_eq!(
            hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    /// Research-note §4 vectors (10 JSON events), including the full root values.
    #[test]
    fn note_vectors() {
        let leaves: Vec<Hash> = (0..10)
            .map(|i| leaf_hash(format!("{{\"seq\":{i},\"stream\":\"acct-{}\",\"type\":\"CoinsCredited\",\"amount\":{}}}", i % 3, 10 * i).as_bytes()))
            .collect();
        let mut s = MemoryStore::new();
        for h in &leaves {
            s.push_leaf_hash(*h);
        }
        assert_eq!(
            hex(&tree_hash(7, &s).unwrap()),
            "7862bbe2bfaf46e95e291731ec97132d51cd9f44760d366e92e70d41298e59ab"
        );
        assert_eq!(
            hex(&tree_hash(10, &s).unwrap()),
            "305166e12d6de1a952377103bf0442584b100c918901fc61291f3dc07f5a8f4a"
        );
        let p = inclusion_proof(3, 10, &s).unwrap();
        let got: Vec<String> = p.iter().map(hex).collect();
        assert_eq!(got.len(), 4);
        for (g, (pre, suf)) in got.iter().zip([
            ("4c372a88", "06f6"),
            ("bb2c6ace", "945d"),
            ("e47187d1", "360a"),
            ("6bba0445", "cb17"),
        ]) {
            assert!(g.starts_with(pre) && g.ends_with(suf), "{g}");
        }
        let c = consistency_proof(7, 10, &s).unwrap();
        let got: Vec<String> = c.iter().map(hex).collect();
        assert_eq!(got.len(), 5);
        for (g, (pre, suf)) in got.iter().zip([
            ("32baca90", "e1c8"),
            ("c8d89416", "34c0"),
            ("06f4eb0a", "d3cd"),
            ("72295b55", "2932"),
            ("6bba0445", "cb17"),
        ]) {
            assert!(g.starts_with(pre) && g.ends_with(suf), "{g}");
        }
    }

    #[test]
    fn stored_index_matches_go_table() {
        // From Go sumdb/tlog tlog_test.go TestSplitStoredHashIndex/StoredHashIndex layout:
        // level-0 hashes of records 0..7 sit at 0,1,3,4,7,8,10,11.
        let l0: Vec<u64> = (0..8).map(|n| stored_hash_index(0, n)).collect();
        assert_eq!(l0, vec![0, 1, 3, 4, 7, 8, 10, 11]);
        assert_eq!(stored_hash_index(1, 0), 2);
        assert_eq!(stored_hash_index(2, 0), 6);
        assert_eq!(stored_hash_index(3, 0), 14);
        for i in 0..100_000u64 {
            let (l, n) = split_stored_hash_index(i);
            assert_eq!(stored_hash_index(l, n), i);
        }
        let mut s = MemoryStore::new();
        for n in 0..5000u64 {
            let count: u64 = s.levels.iter().map(|v| v.len() as u64).sum();
            assert_eq!(stored_hash_count(n), count, "n={n}");
            s.push_leaf_hash([n as u8; 32]);
        }
        // Large values do not overflow.
        let (l, n) = split_stored_hash_index(stored_hash_index(40, 12345));
        assert_eq!((l, n), (40, 12345));
    }

    #[test]
    fn exhaustive_small_trees() {
        let (s, leaves) = store_of(48);
        for n in 0..=48u64 {
            let d = &leaves[..n as usize];
            let root = mth(d);
            assert_eq!(tree_hash(n, &s).unwrap(), root);
            assert_eq!(root_from_leaf_hashes(d), root);
            for i in 0..n {
                let p = inclusion_proof(i, n, &s).unwrap();
                assert_eq!(p, path(i as usize, d), "n={n} i={i}");
                verify_inclusion(&leaves[i as usize], i, n, &p, &root).unwrap();
                // wrong index / wrong leaf / wrong size must fail
                if n > 1 {
                    assert!(
                        verify_inclusion(&leaves[i as usize], (i + 1) % n, n, &p, &root).is_err()
                    );
                }
                assert!(verify_inclusion(&leaf_hash(b"x"), i, n, &p, &root).is_err());
                // (A path can also verify for another size: e.g. i=0 in n=3 and n=4 hash
                // identically. The signed checkpoint binds the size; see verify_inclusion.)
                if !p.is_empty() {
                    assert!(
                        verify_inclusion(&leaves[i as usize], i, n, &p[..p.len() - 1], &root)
                            .is_err()
                    );
                    let mut q = p.clone();
                    q[0][5] ^= 1;
                    assert_eq!(
                        verify_inclusion(&leaves[i as usize], i, n, &q, &root),
                        Err(ProofError::Mismatch)
                    );
                }
                let mut long = p.clone();
                long.push(root);
                assert!(verify_inclusion(&leaves[i as usize], i, n, &long, &root).is_err());
            }
            for m in 0..=n {
                let old = mth(&leaves[..m as usize]);
                let c = consistency_proof(m, n, &s).unwrap();
                if 0 < m && m < n {
                    assert_eq!(c, subproof(m as usize, d, true), "m={m} n={n}");
                } else {
                    assert!(c.is_empty());
                }
                verify_consistency(m, n, &old, &root, &c).unwrap();
                assert!(verify_consistency(m, n, &leaf_hash(b"x"), &root, &c).is_err());
                if m > 0 {
                    assert!(verify_consistency(m, n, &old, &leaf_hash(b"x"), &c).is_err());
                }
                if !c.is_empty() {
                    for j in 0..c.len() {
                        let mut q = c.clone();
                        q[j][0] ^= 0x80;
                        assert!(verify_consistency(m, n, &old, &root, &q).is_err());
                    }
                    assert!(verify_consistency(m, n, &old, &root, &c[1..]).is_err());
                }
                if m + 1 < n && m > 0 {
                    assert!(verify_consistency(m + 1, n, &old, &root, &c).is_err());
                }
            }
        }
        assert!(inclusion_proof(5, 5, &s).is_err());
        assert!(consistency_proof(6, 5, &s).is_err());
        assert!(verify_inclusion(&leaves[0], 0, 0, &[], &EMPTY_ROOT).is_err());
    }

    #[test]
    fn frontier_matches_store_and_emits_all_subtrees() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut f = Frontier::new();
        let mut all: HashMap<NodeId, Hash> = HashMap::new();
        let mut leaves = Vec::new();
        let mut size = 0u64;
        while size < 5000 {
            let batch: Vec<Hash> = (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect();
            let out = f.append(&batch);
            for (id, h) in out {
                assert!(all.insert(id, h).is_none(), "subtree emitted twice");
            }
            leaves.extend_from_slice(&batch);
            size += batch.len() as u64;
            assert_eq!(f.size(), size);
            assert_eq!(all.len() as u64, stored_hash_count(size));
            assert_eq!(f.root(), tree_hash(size, &all).unwrap());
            // reload from storage
            let g = Frontier::load(size, &all).unwrap();
            assert_eq!(g, f);
        }
        assert_eq!(f.root(), mth(&leaves));
        assert!(Frontier::from_hashes(3, vec![[0; 32]]).is_err());
    }

    #[test]
    fn random_large_proofs() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let n = 30_011u64;
        let mut s = MemoryStore::new();
        let mut leaves = Vec::new();
        for _ in 0..n {
            let h: Hash = rng.gen();
            leaves.push(h);
            s.push_leaf_hash(h);
        }
        for _ in 0..300 {
            let size = rng.gen_range(1..=n);
            let i = rng.gen_range(0..size);
            let root = tree_hash(size, &s).unwrap();
            let p = inclusion_proof(i, size, &s).unwrap();
            verify_inclusion(&leaves[i as usize], i, size, &p, &root).unwrap();
            let m = rng.gen_range(0..=size);
            let old = tree_hash(m, &s).unwrap();
            let c = consistency_proof(m, size, &s).unwrap();
            verify_consistency(m, size, &old, &root, &c).unwrap();
            assert!(c.len() <= 2 * 64);
        }
    }

    #[test]
    fn planning_ids_with_prefetched_map() {
        let (s, leaves) = store_of(1000);
        let ids = inclusion_proof_ids(517, 999);
        let map: HashMap<NodeId, Hash> = ids.iter().map(|id| (*id, *s.get(*id).unwrap())).collect();
        let p = inclusion_proof(517, 999, &map).unwrap();
        verify_inclusion(&leaves[517], 517, 999, &p, &tree_hash(999, &s).unwrap()).unwrap();
        let empty: HashMap<NodeId, Hash> = HashMap::new();
        assert!(matches!(
            tree_hash(5, &empty),
            Err(TreeError::Reader(MissingHash(_)))
        ));
        for id in consistency_proof_ids(300, 999)
            .into_iter()
            .chain(tree_hash_ids(999))
        {
            assert_eq!(NodeId::from_stored_index(id.stored_index()), id);
            // every id names a complete subtree inside the tree
            assert!((id.index + 1) << id.level <= 999);
        }
    }

    /// Integrator throughput: new leaf hashes → subtree hashes to store.
    /// `append_throughput_floor` asserts the 100,000 leaves/s floor (even
    /// unoptimised); `append_throughput_1m` checks the note's 1M-leaf root and
    /// prints rates (`cargo test --release append_throughput -- --nocapture`).
    fn append_throughput(n: usize, hash_leaves: bool) -> (f64, f64) {
        let leaves: Vec<Vec<u8>> = if hash_leaves {
            (0..n).map(|i| format!("{{\"seq\":{i},\"stream\":\"acct-{}\",\"type\":\"CoinsCredited\",\"amount\":{}}}{:<200}", i % 1000, 7 * i, "").into_bytes()[..256].to_vec()).collect()
        } else {
            Vec::new()
        };
        let hashes: Vec<Hash> = (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let t = std::time::Instant::now();
        let mut f = Frontier::new();
        let mut stored = 0usize;
        for chunk in hashes.chunks(10_000) {
            // integrator batch: append, then "store" what comes out
            stored += f.append(chunk).len();
        }
        let appended = n as f64 / t.elapsed().as_secs_f64();
        assert_eq!(stored as u64, stored_hash_count(n as u64));
        let mut with_hashing = 0.0;
        if hash_leaves {
            let t = std::time::Instant::now();
            let mut f = Frontier::new();
            let mut out = Vec::with_capacity(2 * 10_000 + 64);
            for chunk in leaves.chunks(10_000) {
                out.clear();
                for l in chunk {
                    f.push(leaf_hash(l), |id, h| out.push((id, *h)));
                }
            }
            with_hashing = n as f64 / t.elapsed().as_secs_f64();
            // research-note §4 regression vector (Rust, Python and Go agreed on it)
            assert_eq!(
                hex(&f.root()),
                "d818b5e84bbccd5c6bc037dd759ce7a767bd510ed5a55bdd5fdb00e6092a2781"
            );
        }
        (appended, with_hashing)
    }

    #[test]
    fn append_throughput_floor() {
        let (rate, _) = append_throughput(200_000, false);
        eprintln!("append: {rate:.0} leaves/s");
        assert!(rate > 100_000.0, "append too slow: {rate:.0} leaves/s");
    }

    #[test]
    fn append_throughput_1m() {
        let (rate, with_hashing) = append_throughput(1_000_000, true);
        eprintln!("append from leaf hashes: {rate:.0} leaves/s; hashing 256 B leaves + append: {with_hashing:.0} leaves/s");
    }
}

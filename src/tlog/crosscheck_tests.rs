//! Cross-checks against independent Rust implementations (dev-dependencies):
//! `tlog_tiles` 0.2 and `signed_note` 0.2 (Cloudflare ports of Go's
//! sumdb/tlog and sumdb/note) and `ct-merkle` 0.3 (RFC 6962/9162).

use super::checkpoint::{hash_b64, Checkpoint};
use super::cosignature::{CosignatureVerifier, Cosigner};
use super::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, stored_hash_count, stored_hash_index, tree_hash,
    verify_consistency, verify_inclusion, Hash, MemoryStore, NodeId,
};
use super::note::{sign_note, Ed25519Signer, NoteVerifier as _};
use super::tiles::{new_tiles, read_tile};

use rand::{Rng, SeedableRng};

/// tlog_tiles HashReader over our store, addressed by Go stored-hash indexes.
struct TT<'a>(&'a MemoryStore);

impl tlog_tiles::HashReader for TT<'_> {
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::tlog::Error> {
        Ok(indexes
            .iter()
            .map(|i| {
                tlog_tiles::Hash(
                    *self
                        .0
                        .get(NodeId::from_stored_index(*i))
                        .expect("stored hash"),
                )
            })
            .collect())
    }
}

fn leaves(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{{\"seq\":{i},\"amount\":{}}}", i * 7).into_bytes())
        .collect()
}

#[test]
fn tlog_tiles_stored_hashes_roots_and_proofs() {
    let n = 3000u64;
    let data = leaves(n);
    let mut ours = MemoryStore::new();
    // tlog_tiles' own storage, filled with tlog_tiles::stored_hashes
    let mut theirs: Vec<tlog_tiles::Hash> = Vec::new();
    struct V<'a>(&'a Vec<tlog_tiles::Hash>);
    impl tlog_tiles::HashReader for V<'_> {
        fn read_hashes(
            &self,
            idx: &[u64],
        ) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::tlog::Error> {
            Ok(idx.iter().map(|i| self.0[*i as usize]).collect())
        }
    }
    for (i, d) in data.iter().enumerate() {
        let hs = tlog_tiles::stored_hashes(i as u64, d, &V(&theirs)).unwrap();
        assert_eq!(theirs.len() as u64, stored_hash_index(0, i as u64));
        theirs.extend(hs);
        ours.push_leaf(d);
    }
    assert_eq!(theirs.len() as u64, stored_hash_count(n));
    // every stored hash equal at the same Go index
    for (i, h) in theirs.iter().enumerate() {
        assert_eq!(
            ours.get(NodeId::from_stored_index(i as u64)).unwrap(),
            &h.0,
            "stored index {i}"
        );
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for _ in 0..400 {
        let t = rng.gen_range(1..=n);
        let root = tree_hash(t, &ours).unwrap();
        assert_eq!(tlog_tiles::tree_hash(t, &TT(&ours)).unwrap().0, root);
        let i = rng.gen_range(0..t);
        let p = inclusion_proof(i, t, &ours).unwrap();
        let tp = tlog_tiles::prove_record(t, i, &TT(&ours)).unwrap();
        assert_eq!(p, tp.iter().map(|h| h.0).collect::<Vec<Hash>>());
        tlog_tiles::check_record(
            &tp,
            t,
            tlog_tiles::Hash(root),
            i,
            tlog_tiles::record_hash(&data[i as usize]),
        )
        .unwrap();
        let m = rng.gen_range(1..=t);
        let old = tree_hash(m, &ours).unwrap();
        let c = consistency_proof(m, t, &ours).unwrap();
        let tc = tlog_tiles::prove_tree(t, m, &TT(&ours)).unwrap();
        assert_eq!(c, tc.iter().map(|h| h.0).collect::<Vec<Hash>>());
        tlog_tiles::check_tree(&tc, t, tlog_tiles::Hash(root), m, tlog_tiles::Hash(old)).unwrap();
        // and their proofs through our verifiers
        verify_inclusion(&leaf_hash(&data[i as usize]), i, t, &p, &root).unwrap();
        verify_consistency(m, t, &old, &root, &c).unwrap();
    }
}

#[test]
fn tlog_tiles_tiles_and_checkpoint() {
    let n = 70_000u64;
    let mut ours = MemoryStore::new();
    for i in 0..n {
        ours.push_leaf(&i.to_le_bytes());
    }
    for t in new_tiles(0, n) {
        let their_tile = tlog_tiles::Tile::new(8, t.level, t.index, u32::from(t.width), false);
        // tlog_tiles 0.2 writes Go sumdb paths (`tile/8/L/N`); C2SP drops the height.
        assert_eq!(their_tile.path(), t.path().replacen("tile/", "tile/8/", 1));
        assert_eq!(
            their_tile.read_data(&TT(&ours)).unwrap(),
            read_tile(&t, &ours).unwrap()
        );
    }
    let cp = Checkpoint::new("example.com/log", n, ours.root()).unwrap();
    let theirs = tlog_tiles::Checkpoint::from_bytes(cp.to_text().as_bytes()).unwrap();
    assert_eq!(
        (theirs.origin(), theirs.size(), theirs.hash().0),
        ("example.com/log", n, ours.root())
    );
    let back = tlog_tiles::Checkpoint::new("example.com/log", n, tlog_tiles::Hash(ours.root()), "")
        .unwrap();
    assert_eq!(String::from_utf8(back.to_bytes()).unwrap(), cp.to_text());
    assert_eq!(hash_b64(&ours.root()), theirs.hash().to_string());
}

#[test]
fn ct_merkle_roots_and_proofs() {
    use ct_merkle::{mem_backed_tree::MemoryBackedTree, ConsistencyProof, InclusionProof};
    type Sha = sha2_011::Sha256;
    let data = leaves(300);
    let mut ours = MemoryStore::new();
    let mut trees: Vec<MemoryBackedTree<Sha, Vec<u8>>> = vec![MemoryBackedTree::new()];
    for d in &data {
        ours.push_leaf(d);
        let mut t = trees.last().unwrap().clone();
        t.push(d.clone());
        trees.push(t);
    }
    for n in 1..=300u64 {
        let t = &trees[n as usize];
        let root = tree_hash(n, &ours).unwrap();
        assert_eq!(t.root().as_bytes().as_slice(), &root);
        for i in (0..n).step_by(7) {
            let p = inclusion_proof(i, n, &ours).unwrap();
            assert_eq!(
                t.prove_inclusion(i as usize).as_bytes(),
                p.concat().as_slice()
            );
            let ip = InclusionProof::<Sha>::try_from_bytes(p.concat()).unwrap();
            t.root()
                .verify_inclusion(&data[i as usize], i, &ip)
                .unwrap();
        }
        for m in (1..n).step_by(5) {
            let c = consistency_proof(m, n, &ours).unwrap();
            assert_eq!(
                t.prove_consistency((n - m) as usize).as_bytes(),
                c.concat().as_slice(),
                "m={m} n={n}"
            );
            let cp = ConsistencyProof::<Sha>::try_from_bytes(c.concat()).unwrap();
            t.root()
                .verify_consistency(&trees[m as usize].root(), &cp)
                .unwrap();
        }
    }
}

/// Adapter so `signed_note` can verify our v1 cosignatures.
struct CosigForSignedNote(CosignatureVerifier);

impl signed_note::Verifier for CosigForSignedNote {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn key_id(&self) -> u32 {
        self.0.key_id()
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.0.verify(msg, sig)
    }
}

#[test]
fn signed_note_interop() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for i in 0..10 {
        let s = Ed25519Signer::generate(&format!("log{i}.example/x"), &mut rng).unwrap();
        // our vkey/skey accepted by signed_note, and theirs by us
        let their_v = signed_note::StandardVerifier::new(&s.vkey()).unwrap();
        let their_s = signed_note::StandardSigner::new(&s.skey()).unwrap();
        let (tskey, tvkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "their.example/k");
        let ts = Ed25519Signer::from_skey(&tskey).unwrap();
        assert_eq!(ts.vkey(), tvkey);
        let text = format!("example.com/log\n{i}\n{}\n", hash_b64(&[i as u8; 32]));
        // ours signed → theirs verify
        let msg = sign_note(&text, &[&s]).unwrap();
        let list = signed_note::VerifierList::new(vec![Box::new(their_v)]);
        let n = signed_note::Note::from_bytes(msg.as_bytes()).unwrap();
        let (ok, unknown) = n.verify(&list).unwrap();
        assert_eq!((ok.len(), unknown.len()), (1, 0));
        let mut b = msg.clone().into_bytes();
        b[text.len() - 3] ^= 1;
        assert!(signed_note::Note::from_bytes(&b)
            .and_then(|n| n.verify(&list).map(|_| ()))
            .is_err());
        // theirs signed → byte-identical to ours (Ed25519 is deterministic)
        let mut tn = signed_note::Note::new(text.as_bytes(), &[]).unwrap();
        tn.add_sigs(&[&their_s]).unwrap();
        assert_eq!(String::from_utf8(tn.to_bytes()).unwrap(), msg);
        // our cosignature line verified through signed_note with an adapter
        let w = Cosigner::generate("witness.example/w", &mut rng).unwrap();
        let mut note = super::note::Note::parse(msg.as_bytes()).unwrap();
        note.add_signature(w.cosign(&text, 1_700_000_000 + i).unwrap())
            .unwrap();
        let cosigned = note.encode().unwrap();
        let list = signed_note::VerifierList::new(vec![
            Box::new(signed_note::StandardVerifier::new(&s.vkey()).unwrap()),
            Box::new(CosigForSignedNote(
                CosignatureVerifier::from_vkey(&w.vkey()).unwrap(),
            )),
        ]);
        let (ok, _) = signed_note::Note::from_bytes(cosigned.as_bytes())
            .unwrap()
            .verify(&list)
            .unwrap();
        assert_eq!(ok.len(), 2);
        // signed_note ignores the cosignature when it doesn't know the witness
        let list = signed_note::VerifierList::new(vec![Box::new(
            signed_note::StandardVerifier::new(&s.vkey()).unwrap(),
        )]);
        let (ok, unknown) = signed_note::Note::from_bytes(cosigned.as_bytes())
            .unwrap()
            .verify(&list)
            .unwrap();
        assert_eq!((ok.len(), unknown.len()), (1, 1));
    }
}

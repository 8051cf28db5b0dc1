//! c2sp.org/tlog-proof@v1: a self-contained, offline-verifiable inclusion
//! proof (file extension `.tlog-proof`):
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! [extra <base64>]
//! index <decimal>
//! <base64 hash>...        (audit path, leaf's sibling first)
//!
//! <signed checkpoint, verbatim, with cosignatures>
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::checkpoint::{hash_b64, parse_decimal, parse_hash_b64, Checkpoint, CheckpointError};
use super::cosignature::cosignature_timestamp;
use super::merkle::{
    inclusion_proof, leaf_hash, verify_inclusion, Hash, HashReader, ProofError, TreeError,
};
use super::note::{Note, NoteError, NoteVerifier, Verifiers};

/// First line of a proof file.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Errors of proof files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogProofError {
    /// The file does not follow the format.
    #[error("malformed tlog-proof: {0}")]
    Malformed(&'static str),
    /// Checkpoint note errors (syntax, bad signature by a known key, no known signature).
    #[error(transparent)]
    Note(#[from] NoteError),
    /// Checkpoint body error or wrong origin.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// No valid signature by a log key.
    #[error("checkpoint is not signed by the log")]
    NotSignedByLog,
    /// Fewer valid witness cosignatures than required.
    #[error("{got} witness cosignatures, policy requires {need}")]
    Quorum {
        /// Valid cosignatures from distinct known witnesses.
        got: usize,
        /// Required.
        need: usize,
    },
    /// The inclusion proof does not verify.
    #[error("inclusion proof: {0}")]
    Inclusion(#[from] ProofError),
}

/// A parsed `.tlog-proof` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Optional unauthenticated application data.
    pub extra: Option<Vec<u8>>,
    /// Zero-based leaf index.
    pub index: u64,
    /// Audit path, leaf's sibling first.
    pub proof: Vec<Hash>,
    /// The signed checkpoint (note), verbatim.
    pub checkpoint: String,
}

/// What a verifier trusts: the origin, the log's keys, witness keys and how
/// many distinct witnesses must have cosigned (k of n).
pub struct ProofPolicy<'a> {
    /// Accepted origin line.
    pub origin: &'a str,
    /// Log keys for that origin.
    pub log_keys: &'a Verifiers,
    /// Known witnesses (e.g. [`super::cosignature::CosignatureVerifier`]s).
    pub witnesses: &'a Verifiers,
    /// Valid cosignatures from distinct known witnesses required (0 = none).
    pub quorum: usize,
}

/// Result of a successful verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The checkpoint the leaf is included in.
    pub checkpoint: Checkpoint,
    /// Leaf index.
    pub index: u64,
    /// Valid witness cosignatures: (witness name, timestamp if timestamped).
    pub cosigned_by: Vec<(String, Option<u64>)>,
}

impl TlogProof {
    /// Builds a proof for leaf `index` from stored hashes, for the tree size of
    /// `signed_checkpoint` (which should already carry its cosignatures).
    pub fn build<R: HashReader>(
        index: u64,
        signed_checkpoint: &str,
        reader: &R,
        extra: Option<Vec<u8>>,
    ) -> Result<Self, BuildError<R::Error>> {
        let note = Note::parse(signed_checkpoint.as_bytes())
            .map_err(|e| BuildError::Checkpoint(e.into()))?;
        let cp = Checkpoint::parse(note.text()).map_err(BuildError::Checkpoint)?;
        let proof = inclusion_proof(index, cp.size, reader).map_err(BuildError::Tree)?;
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: signed_checkpoint.to_string(),
        })
    }

    /// Encodes the file.
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(self.checkpoint.len() + 64 + 45 * self.proof.len());
        s.push_str(TLOG_PROOF_HEADER);
        s.push('\n');
        if let Some(extra) = &self.extra {
            s.push_str("extra ");
            s.push_str(&B64.encode(extra));
            s.push('\n');
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            s.push_str(&hash_b64(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parses a file strictly; the checkpoint is kept verbatim and only
    /// checked by [`TlogProof::verify`].
    pub fn parse(file: &str) -> Result<Self, TlogProofError> {
        let mut lines = file.split_inclusive('\n');
        let mut next = |what: &'static str| -> Result<&str, TlogProofError> {
            let l = lines.next().ok_or(TlogProofError::Malformed(what))?;
            l.strip_suffix('\n').ok_or(TlogProofError::Malformed(what))
        };
        if next("missing header")? != TLOG_PROOF_HEADER {
            return Err(TlogProofError::Malformed(
                "first line must be c2sp.org/tlog-proof@v1",
            ));
        }
        let mut line = next("missing index line")?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(
                B64.decode(b64)
                    .map_err(|_| TlogProofError::Malformed("bad extra base64"))?,
            );
            line = next("missing index line")?;
        }
        let idx = line
            .strip_prefix("index ")
            .ok_or(TlogProofError::Malformed("expected 'index <n>'"))?;
        let index = parse_decimal(idx).ok_or(TlogProofError::Malformed("bad index"))?;
        let mut proof = Vec::new();
        loop {
            let l = next("missing empty line before checkpoint")?;
            if l.is_empty() {
                break;
            }
            if proof.len() == 64 {
                return Err(TlogProofError::Malformed("more than 64 proof hashes"));
            }
            proof.push(parse_hash_b64(l).ok_or(TlogProofError::Malformed("bad proof hash"))?);
        }
        let checkpoint: String = lines.collect();
        if checkpoint.is_empty() {
            return Err(TlogProofError::Malformed("missing checkpoint"));
        }
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint,
        })
    }

    /// Verifies the proof for `leaf` (the entry bytes; leaf hash = SHA-256(0x00 ‖ leaf)).
    pub fn verify(
        &self,
        leaf: &[u8],
        policy: &ProofPolicy<'_>,
    ) -> Result<VerifiedProof, TlogProofError> {
        self.verify_leaf_hash(&leaf_hash(leaf), policy)
    }

    /// Verifies the proof for a precomputed leaf hash: (1) origin and a log
    /// signature, (2) cosignatures of at least `quorum` known witnesses,
    /// (3) the inclusion proof against the checkpoint root.
    pub fn verify_leaf_hash(
        &self,
        leaf_hash: &Hash,
        policy: &ProofPolicy<'_>,
    ) -> Result<VerifiedProof, TlogProofError> {
        let note = Note::parse(self.checkpoint.as_bytes())?;
        let verified = note.verify_with(|name, id| {
            policy
                .log_keys
                .find(name, id)
                .or_else(|| policy.witnesses.find(name, id))
                .map(|v| v as &dyn NoteVerifier)
        });
        let verified = match verified {
            Err(NoteError::UnverifiedNote) => return Err(TlogProofError::NotSignedByLog),
            r => r?,
        };
        let checkpoint = Checkpoint::parse(note.text())?;
        if checkpoint.origin != policy.origin {
            return Err(CheckpointError::WrongOrigin(checkpoint.origin).into());
        }
        if !verified
            .verified
            .iter()
            .any(|s| policy.log_keys.find(&s.name, s.key_id).is_some())
        {
            return Err(TlogProofError::NotSignedByLog);
        }
        let cosigned_by: Vec<(String, Option<u64>)> = verified
            .verified
            .iter()
            .filter(|s| policy.log_keys.find(&s.name, s.key_id).is_none())
            .map(|s| (s.name.clone(), cosignature_timestamp(s)))
            .collect();
        if cosigned_by.len() < policy.quorum {
            return Err(TlogProofError::Quorum {
                got: cosigned_by.len(),
                need: policy.quorum,
            });
        }
        verify_inclusion(
            leaf_hash,
            self.index,
            checkpoint.size,
            &self.proof,
            &checkpoint.root,
        )?;
        Ok(VerifiedProof {
            checkpoint,
            index: self.index,
            cosigned_by,
        })
    }
}

/// Errors of [`TlogProof::build`].
#[derive(Debug, thiserror::Error)]
pub enum BuildError<E> {
    /// The checkpoint could not be parsed.
    #[error(transparent)]
    Checkpoint(CheckpointError),
    /// Reading hashes failed or the index is out of range.
    #[error(transparent)]
    Tree(TreeError<E>),
}

#[cfg(test)]
mod tests {
    use super::super::cosignature::Cosigner;
    use super::super::merkle::MemoryStore;
    use super::super::note::Ed25519Signer;
    use super::*;

    const SPEC_EXAMPLE: &str = "c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=

example.com/fancylog
109482
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=

— example.com/fancylog hI2DJw[...]1roloI=
— witness1.example mJirIklj[...]qY9v2B/5bg==
— witness2.example TnKKVHLX[...]xwYwrSjgow==
— witness3.example S4X82uH5[...]3oEcROGLFQ==
";

    #[test]
    fn spec_example_parses_and_round_trips() {
        let p = TlogProof::parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(p.index, 73894);
        assert_eq!(p.proof.len(), 5);
        assert!(p
            .extra
            .as_ref()
            .unwrap()
            .starts_with(b"age-v1.2.1-darwin-arm64.tar.gz"));
        assert!(p.checkpoint.starts_with("example.com/fancylog\n109482\n"));
        assert_eq!(p.encode(), SPEC_EXAMPLE);
        // The example is illustrative only: its signatures are elided ("[...]"),
        // and index 73894 in a tree of 109482 needs a 17-hash path, not 5.
        let ids = super::super::merkle::inclusion_proof_ids(73894, 109482);
        let fake: std::collections::HashMap<_, _> =
            ids.into_iter().map(|id| (id, [0u8; 32])).collect();
        assert_eq!(inclusion_proof(73894, 109482, &fake).unwrap().len(), 17);
    }

    struct Log {
        store: MemoryStore,
        log: Ed25519Signer,
        w: Vec<Cosigner>,
        keys: Verifiers,
        wkeys: Verifiers,
    }

    fn log(n: u64) -> Log {
        let mut store = MemoryStore::new();
        for i in 0..n {
            store.push_leaf(format!("entry {i}").as_bytes());
        }
        let log = Ed25519Signer::from_seed("log.example/a", &[3u8; 32]).unwrap();
        let w: Vec<Cosigner> = (0..3)
            .map(|i| Cosigner::from_seed(&format!("w{i}.example"), &[10 + i as u8; 32]).unwrap())
            .collect();
        let keys = Verifiers::new().with(log.verifier()).unwrap();
        let mut wkeys = Verifiers::new();
        for c in &w {
            wkeys.push(c.verifier()).unwrap();
        }
        Log {
            store,
            log,
            w,
            keys,
            wkeys,
        }
    }

    impl Log {
        fn checkpoint(&self, witnesses: usize) -> String {
            let cp =
                Checkpoint::new("log.example/a", self.store.size(), self.store.root()).unwrap();
            let mut note = Note::parse(cp.sign(&[&self.log]).unwrap().as_bytes()).unwrap();
            for (i, c) in self.w.iter().take(witnesses).enumerate() {
                note.add_signature(c.cosign(note.text(), 1_700_000_000 + i as u64).unwrap())
                    .unwrap();
            }
            note.encode().unwrap()
        }
        fn policy(&self, quorum: usize) -> ProofPolicy<'_> {
            ProofPolicy {
                origin: "log.example/a",
                log_keys: &self.keys,
                witnesses: &self.wkeys,
                quorum,
            }
        }
    }

    #[test]
    fn build_verify_and_tamper() {
        let l = log(1000);
        let cp = l.checkpoint(2);
        for idx in [0u64, 1, 500, 999] {
            let p = TlogProof::build(idx, &cp, &l.store, Some(b"ctx".to_vec())).unwrap();
            let file = p.encode();
            let back = TlogProof::parse(&file).unwrap();
            assert_eq!(back, p);
            let leaf = format!("entry {idx}");
            let v = back.verify(leaf.as_bytes(), &l.policy(2)).unwrap();
            assert_eq!(v.checkpoint.size, 1000);
            assert_eq!(
                v.cosigned_by,
                vec![
                    ("w0.example".to_string(), Some(1_700_000_000)),
                    ("w1.example".to_string(), Some(1_700_000_001))
                ]
            );
            assert!(matches!(
                back.verify(leaf.as_bytes(), &l.policy(3)),
                Err(TlogProofError::Quorum { got: 2, need: 3 })
            ));
            assert!(back.verify(b"entry x", &l.policy(0)).is_err());
            // one changed byte anywhere in the file: rejected (parse or verify)
            for i in (0..file.len()).filter(|_| idx == 500) {
                let mut b = file.clone().into_bytes();
                b[i] ^= 0x01;
                let Ok(s) = String::from_utf8(b) else {
                    continue;
                };
                let r = TlogProof::parse(&s).and_then(|p| {
                    // the extra line is unauthenticated by design
                    if p.extra.as_deref() != Some(b"ctx".as_slice())
                        && p.index == idx
                        && p.checkpoint == cp
                        && p.proof == back.proof
                    {
                        return Err(TlogProofError::Malformed("extra changed"));
                    }
                    p.verify(leaf.as_bytes(), &l.policy(2))
                });
                assert!(r.is_err(), "byte {i} of {s}");
            }
        }
        // no extra line
        let p = TlogProof::build(7, &cp, &l.store, None).unwrap();
        assert!(p.encode().starts_with("c2sp.org/tlog-proof@v1\nindex 7\n"));
        // wrong origin, wrong log key
        let other_keys = Verifiers::new()
            .with(
                Ed25519Signer::from_seed("log.example/a", &[4u8; 32])
                    .unwrap()
                    .verifier(),
            )
            .unwrap();
        let pol = ProofPolicy {
            origin: "log.example/a",
            log_keys: &other_keys,
            witnesses: &l.wkeys,
            quorum: 0,
        };
        assert_eq!(
            p.verify(b"entry 7", &pol).unwrap_err(),
            TlogProofError::NotSignedByLog
        );
        let pol = ProofPolicy {
            origin: "log.example/b",
            log_keys: &l.keys,
            witnesses: &l.wkeys,
            quorum: 0,
        };
        assert!(matches!(
            p.verify(b"entry 7", &pol),
            Err(TlogProofError::Checkpoint(CheckpointError::WrongOrigin(_)))
        ));
        // witness-only signatures do not stand in for the log
        let pol = ProofPolicy {
            origin: "log.example/a",
            log_keys: &other_keys,
            witnesses: &l.wkeys,
            quorum: 1,
        };
        assert_eq!(
            p.verify(b"entry 7", &pol).unwrap_err(),
            TlogProofError::NotSignedByLog
        );
        // single-leaf tree: empty proof
        let one = log(1);
        let p = TlogProof::build(0, &one.checkpoint(0), &one.store, None).unwrap();
        assert!(p.proof.is_empty());
        assert!(p.encode().contains("index 0\n\n"));
        p.verify(b"entry 0", &one.policy(0)).unwrap();
    }

    #[test]
    fn strict_parse() {
        let l = log(10);
        let good = TlogProof::build(3, &l.checkpoint(1), &l.store, None)
            .unwrap()
            .encode();
        assert!(TlogProof::parse(&good).is_ok());
        for bad in [
            good.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
            good.replacen("index 3", "index 03", 1),
            good.replacen("index 3", "index  3", 1),
            good.replacen("index 3\n", "", 1),
            good.replacen("index 3\n", "index 3\nextra AAAA\n", 1),
            good.replacen("\n\n", "\n", 1),
            good.split("\n\n").next().unwrap().to_string() + "\n\n",
            good.replacen("\nindex", "\nextra !!\nindex", 1),
        ] {
            assert!(TlogProof::parse(&bad).is_err(), "{bad}");
        }
    }
}

//! c2sp.org/tlog-witness `add-checkpoint`: request body format and the
//! witness's decision as a pure function.
//!
//! Body: `old <size>\n`, 0..=63 base64 consistency-proof lines, `\n`, then the
//! signed checkpoint. The witness answers 200 with cosignature lines, or
//! 400/403/404/409/422 ([`Refusal`]). The caller must persist the new
//! [`TreeHead`] *atomically* with the check of the old one (compare-and-set on
//! the stored size), otherwise concurrent requests can roll the witness back.

use super::checkpoint::{hash_b64, parse_decimal, parse_hash_b64, Checkpoint};
use super::cosignature::{CosignatureError, Cosigner};
use super::merkle::{verify_consistency, Hash, EMPTY_ROOT};
use super::note::{Note, NoteError, Signature, Verifiers};

/// Most consistency-proof lines a client may send.
pub const MAX_PROOF_LINES: usize = 63;
/// Content type of the 409 response body.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// A (size, root) pair: what a witness stores per origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeHead {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
}

/// Body of an `add-checkpoint` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpointRequest {
    /// Size of the checkpoint the witness last cosigned (0 if none).
    pub old_size: u64,
    /// Consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint (note), verbatim.
    pub checkpoint: String,
}

/// Errors of request formatting/parsing (parse errors mean HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Malformed body.
    #[error("malformed add-checkpoint body: {0}")]
    Malformed(&'static str),
}

impl AddCheckpointRequest {
    /// Encodes the body.
    pub fn encode(&self) -> Result<String, RequestError> {
        if self.proof.len() > MAX_PROOF_LINES {
            return Err(RequestError::Malformed("more than 63 proof lines"));
        }
        let mut s = format!("old {}\n", self.old_size);
        for h in &self.proof {
            s.push_str(&hash_b64(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        Ok(s)
    }

    /// Parses a body strictly. The checkpoint part is kept verbatim (its note
    /// syntax is checked when the witness opens it).
    pub fn parse(body: &[u8]) -> Result<Self, RequestError> {
        let body =
            std::str::from_utf8(body).map_err(|_| RequestError::Malformed("invalid UTF-8"))?;
        let (first, mut rest) = body
            .split_once('\n')
            .ok_or(RequestError::Malformed("missing old line"))?;
        let old = first
            .strip_prefix("old ")
            .ok_or(RequestError::Malformed("first line must be 'old <size>'"))?;
        let old_size = parse_decimal(old).ok_or(RequestError::Malformed("bad old size"))?;
        let mut proof = Vec::new();
        loop {
            let (line, r) = rest
                .split_once('\n')
                .ok_or(RequestError::Malformed("missing empty line"))?;
            rest = r;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(RequestError::Malformed("more than 63 proof lines"));
            }
            proof.push(parse_hash_b64(line).ok_or(RequestError::Malformed("bad proof hash"))?);
        }
        if rest.is_empty() {
            return Err(RequestError::Malformed("missing checkpoint"));
        }
        Ok(AddCheckpointRequest {
            old_size,
            proof,
            checkpoint: rest.to_string(),
        })
    }

    /// The checkpoint's origin line (unauthenticated; for looking up the log).
    pub fn origin(&self) -> Option<&str> {
        self.checkpoint.split_once('\n').map(|(o, _)| o)
    }
}

/// Why a witness refuses, with the HTTP status the spec requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: malformed request, or old size > checkpoint size.
    #[error("400 bad request: {0}")]
    BadRequest(String),
    /// 403: no valid signature from a trusted log key, or a trusted key's signature fails.
    #[error("403 forbidden: {0}")]
    Forbidden(String),
    /// 404: unknown origin.
    #[error("404 unknown log origin")]
    UnknownLog,
    /// 409: `old` is not the size of the latest cosigned checkpoint.
    #[error("409 conflict: latest cosigned size is {latest_size}")]
    Conflict {
        /// Size the witness has (body of the 409 response).
        latest_size: u64,
    },
    /// 422: bad consistency proof, proof with old size 0, same size with a
    /// different root, or a size-0 checkpoint with a non-empty-tree root.
    #[error("422 unprocessable: {0}")]
    Unprocessable(String),
}

impl Refusal {
    /// HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden(_) => 403,
            Refusal::UnknownLog => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::Unprocessable(_) => 422,
        }
    }
    /// Response body and content type the spec mandates, if any (409 only:
    /// `"<size>\n"` as `text/x.tlog.size`).
    pub fn body(&self) -> Option<(String, &'static str)> {
        match self {
            Refusal::Conflict { latest_size } => {
                Some((format!("{latest_size}\n"), SIZE_CONTENT_TYPE))
            }
            _ => None,
        }
    }
}

/// A successful `add-checkpoint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosigned {
    /// The checkpoint that was cosigned.
    pub checkpoint: Checkpoint,
    /// The state to persist for `checkpoint.origin`; only if the stored size
    /// still equals `expected_old_size` (compare-and-set).
    pub new_head: TreeHead,
    /// The stored size this decision was based on.
    pub expected_old_size: u64,
    /// The cosignature(s) returned.
    pub cosignatures: Vec<Signature>,
    /// The 200 response body: the cosignature lines.
    pub response_body: String,
    /// The checkpoint with the cosignatures appended (for the witness's own
    /// record / monitoring endpoint).
    pub cosigned_checkpoint: String,
}

/// What the witness knows about a log.
pub struct WitnessedLog<'a> {
    /// Keys trusted for this origin.
    pub keys: &'a Verifiers,
    /// Latest cosigned (size, root); `None` if never cosigned.
    pub latest: Option<TreeHead>,
}

/// The witness's decision for a parsed request, following tlog-witness:
/// 404 unknown origin, 403 signature, 400 old > size, 409 old ≠ stored size,
/// 422 size-0 root / non-empty proof from 0 / same size different root / bad
/// proof; otherwise cosign at `now_unix` with each cosigner.
pub fn decide_add_checkpoint(
    req: &AddCheckpointRequest,
    log: Option<WitnessedLog<'_>>,
    cosigners: &[&Cosigner],
    now_unix: u64,
) -> Result<Cosigned, Refusal> {
    let log = log.ok_or(Refusal::UnknownLog)?;
    let mut note =
        Note::parse(req.checkpoint.as_bytes()).map_err(|e| Refusal::BadRequest(e.to_string()))?;
    match note.verify(log.keys) {
        Ok(_) => {}
        Err(e @ (NoteError::InvalidSignature { .. } | NoteError::UnverifiedNote)) => {
            return Err(Refusal::Forbidden(e.to_string()))
        }
        Err(e) => return Err(Refusal::BadRequest(e.to_string())),
    }
    let cp = Checkpoint::parse(note.text()).map_err(|e| Refusal::BadRequest(e.to_string()))?;
    if req.old_size > cp.size {
        return Err(Refusal::BadRequest(
            "old size is larger than the checkpoint size".into(),
        ));
    }
    let stored = log.latest.unwrap_or(TreeHead {
        size: 0,
        root: EMPTY_ROOT,
    });
    if req.old_size != stored.size {
        return Err(Refusal::Conflict {
            latest_size: stored.size,
        });
    }
    if cp.size == 0 && cp.root != EMPTY_ROOT {
        return Err(Refusal::Unprocessable(
            "size-0 checkpoint must have the empty-tree root".into(),
        ));
    }
    if req.old_size == 0 {
        if !req.proof.is_empty() {
            return Err(Refusal::Unprocessable(
                "consistency proof must be empty when old size is 0".into(),
            ));
        }
    } else if req.old_size == cp.size {
        if cp.root != stored.root {
            return Err(Refusal::Unprocessable("same size, different root".into()));
        }
        if !req.proof.is_empty() {
            return Err(Refusal::Unprocessable(
                "consistency proof must be empty for equal sizes".into(),
            ));
        }
    } else if let Err(e) =
        verify_consistency(stored.size, cp.size, &stored.root, &cp.root, &req.proof)
    {
        return Err(Refusal::Unprocessable(format!("consistency proof: {e}")));
    }
    let mut cosignatures = Vec::with_capacity(cosigners.len());
    for c in cosigners {
        let sig = c.cosign(note.text(), now_unix).map_err(|e| match e {
            CosignatureError::BadTimestamp(_) => {
                Refusal::Unprocessable(format!("witness clock: {e}"))
            }
            e => Refusal::BadRequest(e.to_string()),
        })?;
        note.add_signature(sig.clone())
            .map_err(|e| Refusal::BadRequest(e.to_string()))?;
        cosignatures.push(sig);
    }
    let response_body = cosignatures.iter().map(Signature::line).collect();
    let cosigned_checkpoint = note
        .encode()
        .map_err(|e| Refusal::BadRequest(e.to_string()))?;
    Ok(Cosigned {
        new_head: TreeHead {
            size: cp.size,
            root: cp.root,
        },
        expected_old_size: stored.size,
        checkpoint: cp,
        cosignatures,
        response_body,
        cosigned_checkpoint,
    })
}

/// Parses the body and decides; `lookup(origin)` returns what the witness
/// knows about that log, or `None` if it does not follow it.
pub fn handle_add_checkpoint<'a>(
    body: &[u8],
    lookup: impl FnOnce(&str) -> Option<WitnessedLog<'a>>,
    cosigners: &[&Cosigner],
    now_unix: u64,
) -> Result<Cosigned, Refusal> {
    let req = AddCheckpointRequest::parse(body).map_err(|e| Refusal::BadRequest(e.to_string()))?;
    let origin = req
        .origin()
        .ok_or_else(|| Refusal::BadRequest("empty checkpoint".into()))?;
    decide_add_checkpoint(&req, lookup(origin), cosigners, now_unix)
}

/// Log side: parses a 200 response, keeps the lines that verify under
/// `witnesses` (unknown ones are ignored), and appends them to the signed
/// checkpoint. Errors if a known witness's line is invalid or none is known.
pub fn merge_cosignatures(
    signed_checkpoint: &str,
    response_body: &str,
    witnesses: &Verifiers,
) -> Result<String, NoteError> {
    let mut note = Note::parse(signed_checkpoint.as_bytes())?;
    let sigs = Signature::parse_lines(response_body)?;
    let mut good = 0;
    for s in sigs {
        if let Some(v) = witnesses.find(&s.name, s.key_id) {
            if !v.verify(note.text().as_bytes(), &s.sig) {
                return Err(NoteError::InvalidSignature {
                    name: s.name,
                    key_id: s.key_id,
                });
            }
            note.add_signature(s)?;
            good += 1;
        }
    }
    if good == 0 {
        return Err(NoteError::UnverifiedNote);
    }
    note.encode()
}

/// Log side: parses a 409 body (`"<size>\n"`).
pub fn parse_size_response(body: &str) -> Option<u64> {
    parse_decimal(body.strip_suffix('\n')?)
}

#[cfg(test)]
mod tests {
    use super::super::merkle::{consistency_proof, tree_hash, MemoryStore};
    use super::super::note::Ed25519Signer;
    use super::*;

    const ORIGIN: &str = "ledger.example/coins";

    struct Fixture {
        log: Ed25519Signer,
        keys: Verifiers,
        store: MemoryStore,
        witness: Cosigner,
    }

    fn fixture(n: u64) -> Fixture {
        let log = Ed25519Signer::from_seed(ORIGIN, &[9u8; 32]).unwrap();
        let keys = Verifiers::new().with(log.verifier()).unwrap();
        let mut store = MemoryStore::new();
        for i in 0..n {
            store.push_leaf(format!("event {i}").as_bytes());
        }
        Fixture {
            log,
            keys,
            store,
            witness: Cosigner::from_seed("witness.example/w1", &[8u8; 32]).unwrap(),
        }
    }

    impl Fixture {
        fn signed(&self, size: u64) -> String {
            Checkpoint::new(ORIGIN, size, tree_hash(size, &self.store).unwrap())
                .unwrap()
                .sign(&[&self.log])
                .unwrap()
        }
        fn request(&self, old: u64, new: u64) -> AddCheckpointRequest {
            AddCheckpointRequest {
                old_size: old,
                proof: consistency_proof(old, new, &self.store).unwrap(),
                checkpoint: self.signed(new),
            }
        }
        fn head(&self, size: u64) -> TreeHead {
            TreeHead {
                size,
                root: tree_hash(size, &self.store).unwrap(),
            }
        }
        fn decide(
            &self,
            req: &AddCheckpointRequest,
            latest: Option<TreeHead>,
        ) -> Result<Cosigned, Refusal> {
            decide_add_checkpoint(
                req,
                Some(WitnessedLog {
                    keys: &self.keys,
                    latest,
                }),
                &[&self.witness],
                1_700_000_000,
            )
        }
    }

    #[test]
    fn spec_example_body_parses() {
        let body = "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n— example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n";
        let r = AddCheckpointRequest::parse(body.as_bytes()).unwrap();
        assert_eq!(r.old_size, 20852014);
        assert_eq!(r.proof.len(), 4);
        assert_eq!(r.origin(), Some("example.com/behind-the-sofa"));
        assert_eq!(r.encode().unwrap(), body);
        assert_eq!(
            Note::parse(r.checkpoint.as_bytes())
                .unwrap()
                .signatures()
                .len(),
            2
        );
        // the spec's example response lines parse as cosignatures
        let resp = "— witness.example/w1 CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39QsZTSvVjyQLrdk3DXDqI5G2HgLatVs0pWh6Up69HVOw==\n— witness.example/w1 I7rEps0pvK2UqkS2gSpVUDhrhVtQV9lgF6pRrWAvjJHjyWpW7VcE3SiOlVlbQNt64vWhO+DlkL0+UfzuOBMh9ChdMkP1vi/lCAsmlw==\n— witness.example/w2 AWui8Sk55XjYLOijihBjhqEH6nS1ndDymE0a+6idX7pLcnoB+dhnz0854aLZgrrKbYKA7nC3HNJhm/kWl7oJlqU3rXXvpysAdyP3wQ==\n";
        let sigs = Signature::parse_lines(resp).unwrap();
        assert_eq!(sigs.len(), 3);
        assert!(sigs.iter().all(|s| s.sig.len() == 72));
    }

    #[test]
    fn request_parse_rules() {
        let f = fixture(20);
        let r = f.request(5, 20);
        let body = r.encode().unwrap();
        assert_eq!(AddCheckpointRequest::parse(body.as_bytes()).unwrap(), r);
        let cp = f.signed(20);
        let h = hash_b64(&[0u8; 32]);
        for bad in [
            format!("old 05\n\n{cp}"),
            format!("old -1\n\n{cp}"),
            format!("Old 5\n\n{cp}"),
            format!("old 5\n{cp}"),
            format!("old 5\n{h}\n"),
            format!("old 5\n{}\n\n{cp}", &h[..40]),
            "old 5\n\n".to_string(),
            format!("old  5\n\n{cp}"),
            format!("old 5\n{}\n{cp}", format!("{h}\n").repeat(64)),
        ] {
            assert!(
                AddCheckpointRequest::parse(bad.as_bytes()).is_err(),
                "{bad:?}"
            );
        }
        let ok63 = format!("old 5\n{}\n{cp}", format!("{h}\n").repeat(63));
        assert_eq!(
            AddCheckpointRequest::parse(ok63.as_bytes())
                .unwrap()
                .proof
                .len(),
            63
        );
        assert!(AddCheckpointRequest {
            old_size: 1,
            proof: vec![[0; 32]; 64],
            checkpoint: cp
        }
        .encode()
        .is_err());
    }

    #[test]
    fn witness_accepts_consistent_growth() {
        let f = fixture(1000);
        // first contact: old 0, no proof
        let c = f.decide(&f.request(0, 10), None).unwrap();
        assert_eq!(c.new_head, f.head(10));
        assert_eq!(c.expected_old_size, 0);
        // the response verifies and merges on the log side
        let wkeys = Verifiers::new().with(f.witness.verifier()).unwrap();
        let merged = merge_cosignatures(&f.signed(10), &c.response_body, &wkeys).unwrap();
        assert_eq!(merged, c.cosigned_checkpoint);
        // growth with a proof
        let c2 = f.decide(&f.request(10, 777), Some(c.new_head)).unwrap();
        assert_eq!(c2.new_head, f.head(777));
        // same checkpoint again (old == size, same root): cosigned again
        let c3 = f.decide(&f.request(777, 777), Some(c2.new_head)).unwrap();
        assert_eq!(c3.new_head, f.head(777));
        // empty tree checkpoint
        let c0 = f.decide(&f.request(0, 0), None).unwrap();
        assert_eq!(c0.new_head.root, EMPTY_ROOT);
        // via the body-level handler
        let body = f.request(777, 1000).encode().unwrap();
        let latest = Some(c2.new_head);
        let c4 = handle_add_checkpoint(
            body.as_bytes(),
            |o| {
                (o == ORIGIN).then_some(WitnessedLog {
                    keys: &f.keys,
                    latest,
                })
            },
            &[&f.witness],
            1_700_000_001,
        )
        .unwrap();
        assert_eq!(c4.new_head, f.head(1000));
    }

    #[test]
    fn witness_refusals() {
        let f = fixture(100);
        let at50 = Some(f.head(50));
        // 404
        let body = f.request(50, 60).encode().unwrap();
        assert_eq!(
            handle_add_checkpoint(body.as_bytes(), |_| None, &[&f.witness], 5)
                .unwrap_err()
                .status(),
            404
        );
        // 400: malformed body
        assert_eq!(
            handle_add_checkpoint(b"garbage", |_| None, &[&f.witness], 5)
                .unwrap_err()
                .status(),
            400
        );
        // 403: signed by another key
        let other = Ed25519Signer::from_seed(ORIGIN, &[1u8; 32]).unwrap();
        let mut r = f.request(50, 60);
        r.checkpoint = Checkpoint::new(ORIGIN, 60, tree_hash(60, &f.store).unwrap())
            .unwrap()
            .sign(&[&other])
            .unwrap();
        assert_eq!(f.decide(&r, at50).unwrap_err().status(), 403);
        // 403: trusted key, bad signature (one changed byte in the root line)
        let mut r = f.request(50, 60);
        let mut note = Note::parse(r.checkpoint.as_bytes()).unwrap();
        let mut sig = note.signatures()[0].clone();
        sig.sig[10] ^= 1;
        note.add_signature(sig).unwrap();
        r.checkpoint = note.encode().unwrap();
        assert_eq!(f.decide(&r, at50).unwrap_err().status(), 403);
        // 400: old > size
        let mut r = f.request(50, 60);
        r.old_size = 61;
        assert_eq!(f.decide(&r, at50).unwrap_err().status(), 400);
        // 409: old does not match; body is the latest size
        let e = f.decide(&f.request(40, 60), at50).unwrap_err();
        assert_eq!(e, Refusal::Conflict { latest_size: 50 });
        assert_eq!(e.body(), Some(("50\n".to_string(), "text/x.tlog.size")));
        assert_eq!(parse_size_response("50\n"), Some(50));
        assert_eq!(f.decide(&f.request(0, 60), at50).unwrap_err().status(), 409);
        assert_eq!(
            f.decide(&f.request(10, 60), None).unwrap_err(),
            Refusal::Conflict { latest_size: 0 }
        );
        // rollback attempt: smaller checkpoint with old = stored size → 400
        let mut r = f.request(40, 45);
        r.old_size = 50;
        assert_eq!(f.decide(&r, at50).unwrap_err().status(), 400);
        // 422: proof with old 0
        let mut r = f.request(0, 60);
        r.proof = vec![[0u8; 32]];
        assert_eq!(f.decide(&r, None).unwrap_err().status(), 422);
        // 422: same size, different root (witness saw another history)
        let forked = TreeHead {
            size: 50,
            root: [7u8; 32],
        };
        assert_eq!(
            f.decide(&f.request(50, 50), Some(forked))
                .unwrap_err()
                .status(),
            422
        );
        // 422: inconsistent history (witness's root at 50 differs) and tampered proof
        assert_eq!(
            f.decide(&f.request(50, 60), Some(forked))
                .unwrap_err()
                .status(),
            422
        );
        let mut r = f.request(50, 60);
        r.proof[0][0] ^= 1;
        assert_eq!(f.decide(&r, at50).unwrap_err().status(), 422);
        let mut r = f.request(50, 60);
        r.proof.pop();
        assert_eq!(f.decide(&r, at50).unwrap_err().status(), 422);
        // 422: size-0 checkpoint with a non-empty-tree root
        let r = AddCheckpointRequest {
            old_size: 0,
            proof: vec![],
            checkpoint: Checkpoint::new(ORIGIN, 0, [0u8; 32])
                .unwrap()
                .sign(&[&f.log])
                .unwrap(),
        };
        assert_eq!(f.decide(&r, None).unwrap_err().status(), 422);
        // the checkpoint from a forked log (different leaf 3) cannot get a cosignature
        let mut fork = MemoryStore::new();
        for i in 0..100u64 {
            fork.push_leaf(
                if i == 3 {
                    b"rewritten".to_vec()
                } else {
                    format!("event {i}").into_bytes()
                }
                .as_slice(),
            );
        }
        let r = AddCheckpointRequest {
            old_size: 50,
            proof: consistency_proof(50, 100, &fork).unwrap(),
            checkpoint: Checkpoint::new(ORIGIN, 100, fork.root())
                .unwrap()
                .sign(&[&f.log])
                .unwrap(),
        };
        assert_eq!(f.decide(&r, at50).unwrap_err().status(), 422);
    }

    #[test]
    fn random_request_round_trips() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let f = fixture(3);
        for _ in 0..300 {
            let r = AddCheckpointRequest {
                old_size: rng.gen::<u64>() >> rng.gen_range(0..64),
                proof: (0..rng.gen_range(0..=MAX_PROOF_LINES))
                    .map(|_| rng.gen())
                    .collect(),
                checkpoint: f.signed(rng.gen_range(0..=3)),
            };
            let body = r.encode().unwrap();
            assert_eq!(AddCheckpointRequest::parse(body.as_bytes()).unwrap(), r);
        }
    }
}

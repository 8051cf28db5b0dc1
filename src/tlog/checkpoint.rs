//! c2sp.org/tlog-checkpoint (v1.0.0) note body:
//! `<origin>\n<decimal size>\n<base64 root>\n[<extension line>\n]*`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::merkle::{Hash, HASH_SIZE};
use super::note::{check_note_text, Note, NoteError, NoteSigner, VerifiedNote, Verifiers};

/// Errors of checkpoint formatting, parsing and opening.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The body does not follow tlog-checkpoint.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The origin is not the expected one.
    #[error("unexpected origin {0:?}")]
    WrongOrigin(String),
    /// Signed-note error (format or signatures).
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A checkpoint body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity (first line).
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 6962 root hash.
    pub root: Hash,
    /// Optional, non-empty extension lines (NOT RECOMMENDED by the spec).
    pub extensions: Vec<String>,
}

/// Parses ASCII decimal with no leading zeroes ("0" allowed), as C2SP sizes.
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Decodes a base64 (standard, padded, canonical) SHA-256 hash.
pub fn parse_hash_b64(s: &str) -> Option<Hash> {
    if s.len() != 44 {
        return None;
    }
    let v = B64.decode(s).ok()?;
    let h: [u8; HASH_SIZE] = v.try_into().ok()?;
    Some(h)
}

/// Encodes a hash as standard padded base64 (44 characters).
pub fn hash_b64(h: &Hash) -> String {
    B64.encode(h)
}

impl Checkpoint {
    /// A checkpoint without extensions. The origin must be non-empty and, as
    /// we use it as key name too, contain no Unicode space or `+`.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        if !super::note::is_valid_key_name(origin) {
            return Err(CheckpointError::Malformed(
                "origin must be non-empty, without spaces or '+'",
            ));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// The note text: origin, size, root, extension lines, each ending in `\n`.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.size, hash_b64(&self.root));
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Strictly parses a checkpoint body (the note text).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        check_note_text(text).map_err(|_| CheckpointError::Malformed("not valid note text"))?;
        let lines: Vec<&str> = text[..text.len() - 1].split('\n').collect();
        if lines.len() < 3 {
            return Err(CheckpointError::Malformed("fewer than three lines"));
        }
        if lines[0].is_empty() {
            return Err(CheckpointError::Malformed("empty origin"));
        }
        let size = parse_decimal(lines[1]).ok_or(CheckpointError::Malformed("bad tree size"))?;
        let root = parse_hash_b64(lines[2]).ok_or(CheckpointError::Malformed("bad root hash"))?;
        if lines[3..].iter().any(|l| l.is_empty()) {
            return Err(CheckpointError::Malformed("empty extension line"));
        }
        Ok(Checkpoint {
            origin: lines[0].to_string(),
            size,
            root,
            extensions: lines[3..].iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Signs the checkpoint; returns the signed note.
    pub fn sign(&self, signers: &[&dyn NoteSigner]) -> Result<String, CheckpointError> {
        for e in &self.extensions {
            if e.is_empty() || e.contains('\n') {
                return Err(CheckpointError::Malformed("bad extension line"));
            }
        }
        Ok(super::note::sign_note(&self.to_text(), signers)?)
    }
}

/// A checkpoint opened from a signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedCheckpoint {
    /// The parsed body.
    pub checkpoint: Checkpoint,
    /// The note (text and all signature lines, for re-encoding).
    pub note: Note,
    /// Which signatures verified and which were ignored.
    pub verified: VerifiedNote,
}

/// Parses a signed checkpoint, verifies it against the log's keys and checks
/// that its origin is `origin`.
pub fn open_checkpoint(
    msg: &[u8],
    origin: &str,
    log_keys: &Verifiers,
) -> Result<OpenedCheckpoint, CheckpointError> {
    let note = Note::parse(msg)?;
    let verified = note.verify(log_keys)?;
    let checkpoint = Checkpoint::parse(note.text())?;
    if checkpoint.origin != origin {
        return Err(CheckpointError::WrongOrigin(checkpoint.origin));
    }
    Ok(OpenedCheckpoint {
        checkpoint,
        note,
        verified,
    })
}

#[cfg(test)]
mod tests {
    use super::super::merkle::{leaf_hash, MemoryStore, EMPTY_ROOT};
    use super::super::note::{Ed25519Signer, Ed25519Verifier};
    use super::*;

    #[test]
    fn spec_example_body() {
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let c = Checkpoint::parse(text).unwrap();
        assert_eq!(c.origin, "example.com/behind-the-sofa");
        assert_eq!(c.size, 20852163);
        assert_eq!(c.to_text(), text);
        // The full signed example parses as a note (its key is not published).
        let signed = format!("{text}\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n");
        let n = Note::parse(signed.as_bytes()).unwrap();
        assert_eq!(n.signatures()[0].key_id, 0x033de0ae);
        assert_eq!(n.encode().unwrap(), signed);
    }

    /// Research-note vector: seed 00..1f, 10 JSON events, reproduced byte for byte.
    #[test]
    fn note_checkpoint_vector() {
        let seed: [u8; 32] = core::array::from_fn(|i| i as u8);
        let s = Ed25519Signer::from_seed("ledger.example/coins", &seed).unwrap();
        assert_eq!(
            s.vkey(),
            "ledger.example/coins+f7d71b83+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
        );
        let mut m = MemoryStore::new();
        for i in 0..10 {
            m.push_leaf_hash(leaf_hash(format!("{{\"seq\":{i},\"stream\":\"acct-{}\",\"type\":\"CoinsCredited\",\"amount\":{}}}", i % 3, 10 * i).as_bytes()));
        }
        let c = Checkpoint::new("ledger.example/coins", 10, m.root()).unwrap();
        let signed = c.sign(&[&s]).unwrap();
        assert_eq!(
            signed,
            "ledger.example/coins\n10\nMFFm4S1t4alSN3EDvwRCWEsQDJGJAfxhKR89wH9aj0o=\n\n— ledger.example/coins 99cbg69GD/3L2vGfkyWfAhsWo0yr/Kq9bDfei/zquu+LWiannWD8uSh+gxxlPzCoxLs0YYrFkswso9Oxsqmgl2xOcQo=\n"
        );
        let keys = Verifiers::new()
            .with(Ed25519Verifier::from_vkey(&s.vkey()).unwrap())
            .unwrap();
        let o = open_checkpoint(signed.as_bytes(), "ledger.example/coins", &keys).unwrap();
        assert_eq!(o.checkpoint, c);
        assert_eq!(
            open_checkpoint(signed.as_bytes(), "other", &keys).unwrap_err(),
            CheckpointError::WrongOrigin("ledger.example/coins".into())
        );
        for i in 0..signed.len() {
            let mut b = signed.as_bytes().to_vec();
            b[i] ^= 0x02;
            assert!(
                open_checkpoint(&b, "ledger.example/coins", &keys).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn strict_parse() {
        let root = hash_b64(&EMPTY_ROOT);
        assert_eq!(
            Checkpoint::parse(&format!("o\n0\n{root}\n")).unwrap().size,
            0
        );
        let c = Checkpoint::parse(&format!("o\n1\n{root}\next one\nanother\n")).unwrap();
        assert_eq!(c.extensions, vec!["ext one", "another"]);
        assert_eq!(c.to_text(), format!("o\n1\n{root}\next one\nanother\n"));
        for bad in [
            format!("o\n01\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n 1\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            format!("\n1\n{root}\n"),
            format!("o\n1\n{root}"),
            format!("o\n1\n{}\n", &root[..43]),
            format!("o\n1\n{}\n", root.trim_end_matches('=')),
            format!("o\n1\n{root}\n\n"),
            format!("o\n1\n{root}\nx\n\ny\n"),
            "o\n1\n".to_string(),
            format!("o\n1\n{}\n", B64.encode([0u8; 31])),
            format!("o\r\n1\n{root}\n"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Checkpoint::parse(&format!("o\n18446744073709551615\n{root}\n"))
                .unwrap()
                .size,
            u64::MAX
        );
        assert!(Checkpoint::new("has space", 1, EMPTY_ROOT).is_err());
        assert!(Checkpoint::new("a+b", 1, EMPTY_ROOT).is_err());
        assert!(Checkpoint::new("", 1, EMPTY_ROOT).is_err());
    }

    #[test]
    fn random_round_trips() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        for _ in 0..500 {
            let origin: String = (0..rng.gen_range(1..40))
                .map(|_| rng.gen_range(b'!'..=b'~') as char)
                .filter(|c| *c != '+')
                .collect();
            let origin = if origin.is_empty() {
                "x".to_string()
            } else {
                origin
            };
            let mut c =
                Checkpoint::new(&origin, rng.gen::<u64>() >> rng.gen_range(0..64), rng.gen())
                    .unwrap();
            for _ in 0..rng.gen_range(0..3) {
                c.extensions.push(format!("ext {}", rng.gen::<u32>()));
            }
            let text = c.to_text();
            assert_eq!(Checkpoint::parse(&text).unwrap(), c);
            // any single-byte change in the size or root line changes or breaks the parse
            let i = origin.len() + 1 + rng.gen_range(0..text.len() - origin.len() - 1);
            let mut b = text.clone().into_bytes();
            b[i] ^= 1 << rng.gen_range(0..7);
            if let Ok(t) = String::from_utf8(b) {
                assert_ne!(Checkpoint::parse(&t).ok(), Some(c.clone()));
            }
        }
    }
}

//! c2sp.org/tlog-cosignature v1 (Ed25519, signature type 0x04).
//!
//! Signed message: `cosignature/v1\ntime <POSIX secs>\n<checkpoint body>`.
//! Note signature bytes: `timestamp (u64 big-endian) ‖ Ed25519 signature`,
//! so a line decodes to `key id (4) ‖ timestamp (8) ‖ signature (64)`.
//! Key id: `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ 32-byte public key)[:4]`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use super::checkpoint::Checkpoint;
use super::note::{
    ed25519_public_key, is_valid_key_name, key_id, NoteError, NoteVerifier, Signature, VerifierKey,
    ALG_COSIGNATURE_V1,
};

/// Header line of the v1 signed message.
pub const COSIGNATURE_V1_HEADER: &str = "cosignature/v1";
/// Largest timestamp allowed (2^63 - 1).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// Errors of cosigning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    /// Timestamp zero or above 2^63 - 1.
    #[error("invalid cosignature timestamp {0}")]
    BadTimestamp(u64),
    /// The text to cosign is not a checkpoint body.
    #[error("not a checkpoint: {0}")]
    NotACheckpoint(#[from] super::checkpoint::CheckpointError),
    /// Key or name error.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// The message an Ed25519 v1 cosignature signs.
pub fn cosigned_message(checkpoint_text: &str, timestamp: u64) -> Vec<u8> {
    format!("{COSIGNATURE_V1_HEADER}\ntime {timestamp}\n{checkpoint_text}").into_bytes()
}

/// A witness (cosigner) key.
#[derive(Clone, Debug)]
pub struct Cosigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl Cosigner {
    /// Cosigner `name` with `key`. Use a key distinct from any log key.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidName);
        }
        let id = key_id(name, ALG_COSIGNATURE_V1, key.verifying_key().as_bytes());
        Ok(Cosigner {
            name: name.to_string(),
            key_id: id,
            key,
        })
    }
    /// Cosigner from a 32-byte seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        Self::new(name, SigningKey::from_bytes(seed))
    }
    /// New random key.
    pub fn generate<R: rand::CryptoRng + rand::RngCore>(
        name: &str,
        rng: &mut R,
    ) -> Result<Self, NoteError> {
        Self::new(name, SigningKey::generate(rng))
    }
    /// Parses `PRIVATE+KEY+<name>+<hex8>+<base64(0x04 ‖ seed)>`. This mirrors
    /// Go's signer-key format with type 0x04; it is not standardised by C2SP.
    pub fn from_skey(skey: &str) -> Result<Self, NoteError> {
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey("missing PRIVATE+KEY+"))?;
        let (name, rest) = rest
            .split_once('+')
            .ok_or(NoteError::MalformedKey("missing +"))?;
        let (id_hex, b64) = rest
            .split_once('+')
            .ok_or(NoteError::MalformedKey("missing +"))?;
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::MalformedKey("bad base64"))?;
        let (&alg, seed) = raw
            .split_first()
            .ok_or(NoteError::MalformedKey("empty key"))?;
        if alg != ALG_COSIGNATURE_V1 {
            return Err(NoteError::WrongKeyType(alg));
        }
        let seed: &[u8; 32] = seed
            .try_into()
            .map_err(|_| NoteError::MalformedKey("seed must be 32 bytes"))?;
        let c = Self::from_seed(name, seed)?;
        if format!("{:08x}", c.key_id) != id_hex.to_ascii_lowercase() {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(c)
    }
    /// The signer key string (secret!).
    pub fn skey(&self) -> String {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            B64.encode(raw)
        )
    }
    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Key id (type 0x04).
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
    /// The matching verifier.
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }
    /// The vkey (type 0x04).
    pub fn vkey(&self) -> String {
        self.verifier().vkey()
    }
    /// Cosigns a checkpoint body at `timestamp` (POSIX seconds, 1..=2^63-1).
    /// Returns the note signature (line via [`Signature::line`]).
    pub fn cosign(
        &self,
        checkpoint_text: &str,
        timestamp: u64,
    ) -> Result<Signature, CosignatureError> {
        if timestamp == 0 || timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::BadTimestamp(timestamp));
        }
        Checkpoint::parse(checkpoint_text)?;
        let sig = self.key.sign(&cosigned_message(checkpoint_text, timestamp));
        let mut bytes = Vec::with_capacity(72);
        bytes.extend_from_slice(&timestamp.to_be_bytes());
        bytes.extend_from_slice(&sig.to_bytes());
        Ok(Signature {
            name: self.name.clone(),
            key_id: self.key_id,
            sig: bytes,
        })
    }
}

/// Verifier of v1 cosignatures; usable as a [`NoteVerifier`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Verifier for cosigner `name` with public key `key`.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidName);
        }
        Ok(CosignatureVerifier {
            name: name.to_string(),
            key_id: key_id(name, ALG_COSIGNATURE_V1, key.as_bytes()),
            key,
        })
    }
    /// Parses a type-0x04 vkey.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let k = VerifierKey::parse(vkey)?;
        if k.alg != ALG_COSIGNATURE_V1 {
            return Err(NoteError::WrongKeyType(k.alg));
        }
        Ok(CosignatureVerifier {
            name: k.name,
            key_id: k.key_id,
            key: ed25519_public_key(&k.key)?,
        })
    }
    /// The vkey string (type 0x04).
    pub fn vkey(&self) -> String {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            alg: ALG_COSIGNATURE_V1,
            key: self.key.as_bytes().to_vec(),
        }
        .encode()
    }
    /// Verifies `sig` (timestamp ‖ signature) over `checkpoint_text`;
    /// returns the timestamp if valid.
    pub fn verify_timestamped(&self, checkpoint_text: &[u8], sig: &[u8]) -> Option<u64> {
        if sig.len() != 72 {
            return None;
        }
        let ts = u64::from_be_bytes(sig[..8].try_into().ok()?);
        if ts > MAX_TIMESTAMP {
            return None;
        }
        let text = std::str::from_utf8(checkpoint_text).ok()?;
        let s = ed25519_dalek::Signature::from_slice(&sig[8..]).ok()?;
        self.key
            .verify_strict(&cosigned_message(text, ts), &s)
            .ok()?;
        Some(ts)
    }
}

impl NoteVerifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.verify_timestamped(msg, sig).is_some()
    }
}

/// The timestamp carried by a (72-byte) v1 cosignature, unverified.
pub fn cosignature_timestamp(sig: &Signature) -> Option<u64> {
    (sig.sig.len() == 72).then(|| u64::from_be_bytes(sig.sig[..8].try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::super::merkle::EMPTY_ROOT;
    use super::super::note::{Ed25519Signer, Ed25519Verifier, Note, Verifiers};
    use super::*;

    const BODY: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    #[test]
    fn spec_message_and_example_line() {
        assert_eq!(
            String::from_utf8(cosigned_message(BODY, 1679315147)).unwrap(),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
        // The spec's example cosignature line: 4-byte key id, 8-byte timestamp, 64-byte sig.
        let line = "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
        let s = Signature::parse_line(line).unwrap();
        assert_eq!(s.key_id, 0x8d66cf3f);
        assert_eq!(s.sig.len(), 72);
        assert_eq!(cosignature_timestamp(&s), Some(1679315147));
    }

    #[test]
    fn key_id_uses_type_0x04() {
        let seed = [7u8; 32];
        let c = Cosigner::from_seed("witness.example/w1", &seed).unwrap();
        let pk = SigningKey::from_bytes(&seed).verifying_key();
        let mut pre = b"witness.example/w1\n\x04".to_vec();
        pre.extend_from_slice(pk.as_bytes());
        let d = <sha2::Sha256 as sha2::Digest>::digest(&pre);
        assert_eq!(c.key_id(), u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
        // same key as a log key (type 0x01) gets a different id
        assert_ne!(
            c.key_id(),
            Ed25519Signer::from_seed("witness.example/w1", &seed)
                .unwrap()
                .verifier()
                .key_id()
        );
        assert!(c
            .vkey()
            .starts_with(&format!("witness.example/w1+{:08x}+B", c.key_id())));
        assert_eq!(
            CosignatureVerifier::from_vkey(&c.vkey()).unwrap(),
            c.verifier()
        );
        assert_eq!(Cosigner::from_skey(&c.skey()).unwrap().vkey(), c.vkey());
        // a type-0x04 vkey is not an Ed25519 note key and vice versa
        assert!(Ed25519Verifier::from_vkey(&c.vkey()).is_err());
        assert!(CosignatureVerifier::from_vkey(
            &Ed25519Signer::from_seed("x", &seed).unwrap().vkey()
        )
        .is_err());
    }

    #[test]
    fn cosign_and_verify_in_note() {
        let log = Ed25519Signer::from_seed("example.com/behind-the-sofa", &[1u8; 32]).unwrap();
        let w = Cosigner::from_seed("witness.example/w1", &[2u8; 32]).unwrap();
        let mut note = Note::new(BODY).unwrap();
        note.sign(&log).unwrap();
        let cs = w.cosign(BODY, 1679315147).unwrap();
        assert_eq!(cs.line().len(), "— witness.example/w1 ".len() + 104 + 1);
        note.add_signature(cs.clone()).unwrap();
        let msg = note.encode().unwrap();
        let known = Verifiers::new()
            .with(log.verifier())
            .unwrap()
            .with(w.verifier())
            .unwrap();
        let (_, out) = super::super::note::open_note(msg.as_bytes(), &known).unwrap();
        assert_eq!(out.verified.len(), 2);
        assert_eq!(
            w.verifier().verify_timestamped(BODY.as_bytes(), &cs.sig),
            Some(1679315147)
        );
        // the log key alone: cosignature ignored as unknown
        let only_log = Verifiers::new().with(log.verifier()).unwrap();
        assert_eq!(
            super::super::note::open_note(msg.as_bytes(), &only_log)
                .unwrap()
                .1
                .unknown
                .len(),
            1
        );
        // tampered timestamp, body or signature: rejected
        let mut bad = cs.clone();
        bad.sig[7] ^= 1;
        assert!(!w.verifier().verify(BODY.as_bytes(), &bad.sig));
        assert!(!w
            .verifier()
            .verify(BODY.replace("2163", "2164").as_bytes(), &cs.sig));
        let mut bad = cs.clone();
        bad.sig[40] ^= 1;
        assert!(!w.verifier().verify(BODY.as_bytes(), &bad.sig));
        assert!(!w.verifier().verify(BODY.as_bytes(), &cs.sig[..71]));
        // bad inputs to cosign
        assert!(w.cosign(BODY, 0).is_err());
        assert!(w.cosign(BODY, 1 << 63).is_err());
        assert!(w.cosign("not a checkpoint\n", 5).is_err());
        assert!(w
            .cosign(
                &format!(
                    "o\n0\n{}\n",
                    super::super::checkpoint::hash_b64(&EMPTY_ROOT)
                ),
                MAX_TIMESTAMP
            )
            .is_ok());
    }
}

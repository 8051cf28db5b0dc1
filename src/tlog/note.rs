//! c2sp.org/signed-note (v1.0.0): Ed25519 note signatures, verifier keys
//! (`<name>+<hex key id>+<base64(type ‖ key)>`), signer keys
//! (`PRIVATE+KEY+<name>+<hex key id>+<base64(type ‖ seed)>`, as Go's
//! sumdb/note), signing, parsing and verification.
//!
//! A signed note is `text` (ending in `\n`), a blank line, then one or more
//! lines `— <key name> <base64(key id ‖ signature)>\n` (em dash U+2014).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Signature type byte of Ed25519 note signatures.
pub const ALG_ED25519: u8 = 0x01;
/// Signature type byte of tlog-cosignature v1 (timestamped Ed25519).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// Most signature lines accepted in one note (the spec requires at least 16).
pub const MAX_SIGNATURES: usize = 100;
/// Largest note accepted by [`Note::parse`].
pub const MAX_NOTE_SIZE: usize = 1 << 20;

const SIG_PREFIX: &str = "\u{2014} ";

/// Errors of keys, note parsing, signing and verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Not a well-formed signed note (or note text).
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// Key name empty, or containing a Unicode space or `+`.
    #[error("invalid key name")]
    InvalidName,
    /// Malformed verifier or signer key string.
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    /// The key's signature type is not the one expected.
    #[error("unexpected key type 0x{0:02x}")]
    WrongKeyType(u8),
    /// The key id in the key string does not match the key.
    #[error("key id does not match key")]
    KeyIdMismatch,
    /// Two known verifiers share a name and key id.
    #[error("ambiguous key {name}+{key_id:08x}")]
    AmbiguousKey {
        /// Key name.
        name: String,
        /// Key id.
        key_id: u32,
    },
    /// A signature from a known key failed to verify.
    #[error("invalid signature for key {name}+{key_id:08x}")]
    InvalidSignature {
        /// Key name.
        name: String,
        /// Key id.
        key_id: u32,
    },
    /// No signature from a known key.
    #[error("note has no verifiable signatures")]
    UnverifiedNote,
}

/// Key id: `SHA-256(name ‖ 0x0A ‖ alg ‖ public key)[:4]`, big-endian.
pub fn key_id(name: &str, alg: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Key names are non-empty and contain no Unicode space and no `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// Checks note text: valid UTF-8 (by type), no ASCII control character other
/// than `\n`, ends in `\n`.
pub fn check_note_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must end with a newline"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control character"));
    }
    Ok(())
}

/// A parsed verifier key (vkey) of any signature type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    /// Key name.
    pub name: String,
    /// Key id as written in the vkey.
    pub key_id: u32,
    /// Signature type byte.
    pub alg: u8,
    /// Public key material (after the type byte).
    pub key: Vec<u8>,
}

impl VerifierKey {
    /// Parses `<name>+<hex8>+<base64(alg ‖ key)>` (the base64 may contain `+`).
    /// Checks the name, and the key id for types 0x01 and 0x04, whose key id
    /// is defined by the specs.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, rest) = vkey
            .split_once('+')
            .ok_or(NoteError::MalformedKey("missing +"))?;
        let (id_hex, b64) = rest
            .split_once('+')
            .ok_or(NoteError::MalformedKey("missing +"))?;
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidName);
        }
        let key_id = parse_hex_id(id_hex)?;
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::MalformedKey("bad base64"))?;
        let (&alg, key) = raw
            .split_first()
            .ok_or(NoteError::MalformedKey("empty key"))?;
        if matches!(alg, ALG_ED25519 | ALG_COSIGNATURE_V1) && key_id != self::key_id(name, alg, key)
        {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(VerifierKey {
            name: name.to_string(),
            key_id,
            alg,
            key: key.to_vec(),
        })
    }

    /// Encodes back to the vkey string.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(1 + self.key.len());
        raw.push(self.alg);
        raw.extend_from_slice(&self.key);
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }
}

fn parse_hex_id(s: &str) -> Result<u32, NoteError> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::MalformedKey("key id must be 8 hex digits"));
    }
    u32::from_str_radix(s, 16).map_err(|_| NoteError::MalformedKey("bad key id"))
}

pub(super) fn ed25519_public_key(key: &[u8]) -> Result<VerifyingKey, NoteError> {
    let bytes: [u8; 32] = key
        .try_into()
        .map_err(|_| NoteError::MalformedKey("Ed25519 key must be 32 bytes"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| NoteError::MalformedKey("invalid Ed25519 point"))
}

/// Something that checks note signatures for one (name, key id).
pub trait NoteVerifier {
    /// Key name.
    fn name(&self) -> &str;
    /// Key id.
    fn key_id(&self) -> u32;
    /// Whether `sig` (the signature bytes after the 4-byte key id) is valid over `msg` (the note text).
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool;
}

/// Something that produces note signatures.
pub trait NoteSigner {
    /// Key name.
    fn name(&self) -> &str;
    /// Key id.
    fn key_id(&self) -> u32;
    /// Signature over `msg` (the note text), without the key id.
    fn sign(&self, msg: &[u8]) -> Vec<u8>;
}

/// Ed25519 (type 0x01) note verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519Verifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl Ed25519Verifier {
    /// Verifier for `name` and public key `key`.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidName);
        }
        Ok(Ed25519Verifier {
            name: name.to_string(),
            key_id: key_id(name, ALG_ED25519, key.as_bytes()),
            key,
        })
    }
    /// Parses an Ed25519 vkey.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let k = VerifierKey::parse(vkey)?;
        if k.alg != ALG_ED25519 {
            return Err(NoteError::WrongKeyType(k.alg));
        }
        let key = ed25519_public_key(&k.key)?;
        Ok(Ed25519Verifier {
            name: k.name,
            key_id: k.key_id,
            key,
        })
    }
    /// The vkey string.
    pub fn vkey(&self) -> String {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            alg: ALG_ED25519,
            key: self.key.as_bytes().to_vec(),
        }
        .encode()
    }
    /// The public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl NoteVerifier for Ed25519Verifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match ed25519_dalek::Signature::from_slice(sig) {
            Ok(s) => self.key.verify_strict(msg, &s).is_ok(),
            Err(_) => false,
        }
    }
}

/// Ed25519 (type 0x01) note signer.
#[derive(Clone, Debug)]
pub struct Ed25519Signer {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl Ed25519Signer {
    /// Signer for `name` with `key`.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidName);
        }
        let id = key_id(name, ALG_ED25519, key.verifying_key().as_bytes());
        Ok(Ed25519Signer {
            name: name.to_string(),
            key_id: id,
            key,
        })
    }
    /// Signer from a 32-byte Ed25519 seed.
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
    /// Parses `PRIVATE+KEY+<name>+<hex8>+<base64(0x01 ‖ seed)>`, checking the key id.
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
        let id = parse_hex_id(id_hex)?;
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::MalformedKey("bad base64"))?;
        let (&alg, seed) = raw
            .split_first()
            .ok_or(NoteError::MalformedKey("empty key"))?;
        if alg != ALG_ED25519 {
            return Err(NoteError::WrongKeyType(alg));
        }
        let seed: &[u8; 32] = seed
            .try_into()
            .map_err(|_| NoteError::MalformedKey("seed must be 32 bytes"))?;
        let s = Self::from_seed(name, seed)?;
        if s.key_id != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(s)
    }
    /// The same key under another name (a configured origin).
    pub fn renamed(&self, name: &str) -> Result<Self, NoteError> {
        Self::new(name, self.key.clone())
    }
    /// The signer key string (secret!), as Go's `note.GenerateKey`.
    pub fn skey(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            B64.encode(raw)
        )
    }
    /// The matching verifier.
    pub fn verifier(&self) -> Ed25519Verifier {
        Ed25519Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }
    /// The matching vkey string.
    pub fn vkey(&self) -> String {
        self.verifier().vkey()
    }
}

impl NoteSigner for Ed25519Signer {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.key.sign(msg).to_bytes().to_vec()
    }
}

/// One signature line: key name, key id and signature bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    /// Key name.
    pub name: String,
    /// Key id (first 4 bytes of the decoded base64).
    pub key_id: u32,
    /// Signature bytes after the key id.
    pub sig: Vec<u8>,
}

impl Signature {
    /// `— <name> <base64(key id ‖ sig)>\n`
    pub fn line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.sig.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.sig);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }

    /// Parses one signature line, with or without its final `\n`.
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
            "signature line must start with an em dash and a space",
        ))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(NoteError::Malformed("signature line lacks a space"))?;
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidName);
        }
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("bad signature base64"))?;
        if raw.len() < 5 {
            return Err(NoteError::Malformed("signature too short"));
        }
        Ok(Signature {
            name: name.to_string(),
            key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
            sig: raw[4..].to_vec(),
        })
    }

    /// Parses a block of signature lines (e.g. a witness response body).
    pub fn parse_lines(block: &str) -> Result<Vec<Self>, NoteError> {
        if block.is_empty() || !block.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature block must be non-empty lines ending in newline",
            ));
        }
        let lines: Vec<&str> = block[..block.len() - 1].split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        lines.into_iter().map(Self::parse_line).collect()
    }
}

/// A set of known verifiers; (name, key id) pairs must be unique.
#[derive(Default)]
pub struct Verifiers {
    list: Vec<Box<dyn NoteVerifier + Send + Sync>>,
}

impl std::fmt::Debug for Verifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.list
                    .iter()
                    .map(|v| format!("{}+{:08x}", v.name(), v.key_id())),
            )
            .finish()
    }
}

impl Verifiers {
    /// Empty set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a verifier; refuses a second one with the same (name, key id).
    pub fn push(&mut self, v: impl NoteVerifier + Send + Sync + 'static) -> Result<(), NoteError> {
        if self.find(v.name(), v.key_id()).is_some() {
            return Err(NoteError::AmbiguousKey {
                name: v.name().to_string(),
                key_id: v.key_id(),
            });
        }
        self.list.push(Box::new(v));
        Ok(())
    }
    /// Builder form of [`Verifiers::push`].
    pub fn with(mut self, v: impl NoteVerifier + Send + Sync + 'static) -> Result<Self, NoteError> {
        self.push(v)?;
        Ok(self)
    }
    /// The verifier for (name, key id), if known.
    pub fn find(&self, name: &str, key_id: u32) -> Option<&(dyn NoteVerifier + Send + Sync)> {
        self.list
            .iter()
            .find(|v| v.name() == name && v.key_id() == key_id)
            .map(|b| b.as_ref())
    }
    /// Number of verifiers.
    pub fn len(&self) -> usize {
        self.list.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// A note: text plus signatures, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    sigs: Vec<Signature>,
}

/// Outcome of [`Note::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedNote {
    /// Signatures by known keys, all valid (duplicates dropped).
    pub verified: Vec<Signature>,
    /// Signatures by unknown keys, ignored (duplicates dropped).
    pub unknown: Vec<Signature>,
}

impl Note {
    /// Unsigned note with validated `text`.
    pub fn new(text: &str) -> Result<Self, NoteError> {
        check_note_text(text)?;
        Ok(Note {
            text: text.to_string(),
            sigs: Vec::new(),
        })
    }

    /// Parses a signed note without verifying it. The text is everything up to
    /// and including the newline before the *last* blank line.
    pub fn parse(msg: &[u8]) -> Result<Self, NoteError> {
        if msg.len() > MAX_NOTE_SIZE {
            return Err(NoteError::Malformed("note too large"));
        }
        let msg = std::str::from_utf8(msg).map_err(|_| NoteError::Malformed("invalid UTF-8"))?;
        if msg.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed("control character"));
        }
        let split = msg
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before signatures"))?;
        let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
        let sigs = Signature::parse_lines(sigs)?;
        Ok(Note {
            text: text.to_string(),
            sigs,
        })
    }

    /// The note text (ends in `\n`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signatures, in order.
    pub fn signatures(&self) -> &[Signature] {
        &self.sigs
    }

    /// Adds a signature line; replaces an existing one with the same (name, key id).
    pub fn add_signature(&mut self, sig: Signature) -> Result<(), NoteError> {
        if !is_valid_key_name(&sig.name) {
            return Err(NoteError::InvalidName);
        }
        if let Some(s) = self
            .sigs
            .iter_mut()
            .find(|s| s.name == sig.name && s.key_id == sig.key_id)
        {
            *s = sig;
        } else {
            if self.sigs.len() >= MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            self.sigs.push(sig);
        }
        Ok(())
    }

    /// Signs the text with `signer` and adds the signature.
    pub fn sign(&mut self, signer: &dyn NoteSigner) -> Result<(), NoteError> {
        let sig = signer.sign(self.text.as_bytes());
        self.add_signature(Signature {
            name: signer.name().to_string(),
            key_id: signer.key_id(),
            sig,
        })
    }

    /// Verifies against `known`: signatures from unknown (name, id) pairs are
    /// ignored; any invalid signature from a known key rejects the note; at
    /// least one known signature must verify.
    pub fn verify(&self, known: &Verifiers) -> Result<VerifiedNote, NoteError> {
        self.verify_with(|name, id| known.find(name, id).map(|v| v as &dyn NoteVerifier))
    }

    /// Like [`Note::verify`] with a lookup function instead of a [`Verifiers`].
    pub fn verify_with<'a>(
        &self,
        known: impl Fn(&str, u32) -> Option<&'a dyn NoteVerifier>,
    ) -> Result<VerifiedNote, NoteError> {
        let mut out = VerifiedNote {
            verified: Vec::new(),
            unknown: Vec::new(),
        };
        for sig in &self.sigs {
            match known(&sig.name, sig.key_id) {
                Some(v) => {
                    if out
                        .verified
                        .iter()
                        .any(|s| s.name == sig.name && s.key_id == sig.key_id)
                    {
                        continue;
                    }
                    if !v.verify(self.text.as_bytes(), &sig.sig) {
                        return Err(NoteError::InvalidSignature {
                            name: sig.name.clone(),
                            key_id: sig.key_id,
                        });
                    }
                    out.verified.push(sig.clone());
                }
                None => {
                    if !out.unknown.contains(sig) {
                        out.unknown.push(sig.clone());
                    }
                }
            }
        }
        if out.verified.is_empty() {
            return Err(NoteError::UnverifiedNote);
        }
        Ok(out)
    }

    /// The encoded signed note: text, blank line, signature lines.
    pub fn encode(&self) -> Result<String, NoteError> {
        if self.sigs.is_empty() {
            return Err(NoteError::Malformed(
                "a signed note needs at least one signature",
            ));
        }
        let mut s = String::with_capacity(self.text.len() + 1 + self.sigs.len() * 100);
        s.push_str(&self.text);
        s.push('\n');
        for sig in &self.sigs {
            s.push_str(&sig.line());
        }
        Ok(s)
    }
}

/// Signs `text` with each signer and returns the encoded signed note.
pub fn sign_note(text: &str, signers: &[&dyn NoteSigner]) -> Result<String, NoteError> {
    let mut n = Note::new(text)?;
    for s in signers {
        n.sign(*s)?;
    }
    n.encode()
}

/// Parses and verifies a signed note; returns it with the verification outcome.
pub fn open_note(msg: &[u8], known: &Verifiers) -> Result<(Note, VerifiedNote), NoteError> {
    let n = Note::parse(msg)?;
    let v = n.verify(known)?;
    Ok((n, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    fn peter() -> Verifiers {
        Verifiers::new()
            .with(Ed25519Verifier::from_vkey(PETER_VKEY).unwrap())
            .unwrap()
    }

    #[test]
    fn c2sp_spec_example() {
        // signed-note.md "Example" section, byte for byte.
        let vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
        let msg = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        let v = Ed25519Verifier::from_vkey(vkey).unwrap();
        assert_eq!(v.vkey(), vkey);
        assert_eq!(v.key_id(), 0x530d903a);
        let known = Verifiers::new().with(v).unwrap();
        let (n, out) = open_note(msg.as_bytes(), &known).unwrap();
        assert_eq!(n.text(), "This is an example message.\n");
        assert_eq!(out.verified.len(), 1);
        assert_eq!(n.encode().unwrap(), msg);
        // one changed byte anywhere in text or signature is rejected
        for i in 0..msg.len() {
            let mut b = msg.as_bytes().to_vec();
            b[i] ^= 0x01;
            assert!(open_note(&b, &known).is_err(), "byte {i}");
        }
    }

    #[test]
    fn go_sumdb_note_vectors() {
        // golang.org/x/mod/sumdb/note note_test.go TestSign / TestOpen.
        let s = Ed25519Signer::from_skey(PETER_SKEY).unwrap();
        assert_eq!(s.skey(), PETER_SKEY);
        assert_eq!(s.vkey(), PETER_VKEY);
        let msg = sign_note(TEXT, &[&s]).unwrap();
        assert_eq!(msg, format!("{TEXT}\n{PETER_SIG}"));
        let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let (_, out) = open_note(both.as_bytes(), &peter()).unwrap();
        assert_eq!(out.verified.len(), 1);
        assert_eq!(out.unknown.len(), 1);
        assert_eq!(out.unknown[0].name, "EnochRoot");
        assert_eq!(out.unknown[0].key_id, 0xaf0cfe78);
        let known = peter()
            .with(Ed25519Verifier::from_vkey(ENOCH_VKEY).unwrap())
            .unwrap();
        assert_eq!(
            open_note(both.as_bytes(), &known).unwrap().1.verified.len(),
            2
        );
        // only unknown signatures
        assert_eq!(
            open_note(format!("{TEXT}\n{ENOCH_SIG}").as_bytes(), &peter()).unwrap_err(),
            NoteError::UnverifiedNote
        );
        // duplicates dropped
        let dup = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}");
        let (_, out) = open_note(dup.as_bytes(), &peter()).unwrap();
        assert_eq!((out.verified.len(), out.unknown.len()), (1, 1));
        // malformed messages (Go's badMsgs)
        for bad in [
            TEXT.to_string(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\x01{TEXT}\n{PETER_SIG}"),
            format!("{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
        ] {
            assert!(open_note(bad.as_bytes(), &peter()).is_err(), "{bad:?}");
        }
        let mut invalid_utf8 = b"\xff".to_vec();
        invalid_utf8.extend_from_slice(format!("{TEXT}\n{PETER_SIG}").as_bytes());
        assert!(open_note(&invalid_utf8, &peter()).is_err());
        // a known key with a bad signature rejects the note even if another verifies
        let known = peter()
            .with(Ed25519Verifier::from_vkey(ENOCH_VKEY).unwrap())
            .unwrap();
        let bad_enoch = ENOCH_SIG.replace("vAF1aGr", "vAF1aGs");
        assert!(matches!(
            open_note(format!("{TEXT}\n{PETER_SIG}{bad_enoch}").as_bytes(), &known),
            Err(NoteError::InvalidSignature { .. })
        ));
        // Go's bad keys
        assert!(Ed25519Verifier::from_vkey(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
        .is_err());
        assert!(Ed25519Verifier::from_vkey(
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )
        .is_err());
        assert_eq!(
            Ed25519Verifier::from_vkey(
                "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            )
            .unwrap_err(),
            NoteError::KeyIdMismatch
        );
        assert!(Ed25519Verifier::from_vkey(
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )
        .is_err());
        assert!(Ed25519Signer::from_skey(
            "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
        )
        .is_err());
    }

    #[test]
    fn names_and_text_rules() {
        assert!(is_valid_key_name("example.com/log"));
        for bad in ["", "a b", "a+b", "a\u{00a0}b", "a\u{3000}b", "a\tb"] {
            assert!(!is_valid_key_name(bad), "{bad:?}");
        }
        assert!(Note::new("no newline").is_err());
        assert!(Note::new("tab\there\n").is_err());
        // text may contain blank lines; the last blank line separates
        let s = Ed25519Signer::from_skey(PETER_SKEY).unwrap();
        let text = "a\n\nb\n\n";
        let msg = sign_note(text, &[&s]).unwrap();
        let (n, _) = open_note(msg.as_bytes(), &peter()).unwrap();
        assert_eq!(n.text(), text);
        // 100 signatures accepted (>= 16 required), 101 refused
        let mut many = format!("{TEXT}\n{PETER_SIG}");
        for _ in 0..99 {
            many.push_str(ENOCH_SIG);
        }
        assert!(open_note(many.as_bytes(), &peter()).is_ok());
        many.push_str(ENOCH_SIG);
        assert!(open_note(many.as_bytes(), &peter()).is_err());
        // duplicate verifier refused
        assert!(peter()
            .with(Ed25519Verifier::from_vkey(PETER_VKEY).unwrap())
            .is_err());
    }

    #[test]
    fn random_round_trips() {
        let mut rng = rand::thread_rng();
        for i in 0..20 {
            let name = format!("log{i}.example/ledger");
            let s = Ed25519Signer::generate(&name, &mut rng).unwrap();
            let again = Ed25519Signer::from_skey(&s.skey()).unwrap();
            assert_eq!(again.vkey(), s.vkey());
            let v = Ed25519Verifier::from_vkey(&s.vkey()).unwrap();
            assert_eq!(v, s.verifier());
            let text = format!("line {i}\nüñíçødé — {i}\n");
            let msg = sign_note(&text, &[&s]).unwrap();
            let known = Verifiers::new().with(v).unwrap();
            let (n, _) = open_note(msg.as_bytes(), &known).unwrap();
            assert_eq!(n.encode().unwrap(), msg);
            let mut b = msg.into_bytes();
            b[3] ^= 0x20;
            assert!(open_note(&b, &known).is_err());
        }
    }
}

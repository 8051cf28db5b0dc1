//! Interop with Go's golang.org/x/mod sumdb/note + sumdb/tlog (Debian 12
//! packages `golang-go golang-golang-x-mod-dev`): writes an export directory
//! and runs `scripts/tlog-go-verify/verify.sh` on it, then on tampered copies.
//!
//! Skipped (with a message) when `go` is missing, unless TLOG_REQUIRE_GO=1.
//! TLOG_GO_VERIFY overrides the script path; TLOG_INTEROP_DIR keeps the files.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::checkpoint::Checkpoint;
use super::cosignature::Cosigner;
use super::merkle::{consistency_proof, tree_hash, MemoryStore};
use super::note::{Ed25519Signer, Verifiers};
use super::proof::{ProofPolicy, TlogProof};
use super::tiles::{encode_entry_bundle, new_bundles, new_tiles, read_tile};
use super::witness::{decide_add_checkpoint, AddCheckpointRequest, WitnessedLog};

const ORIGIN: &str = "tidelog.example/ledger/test";
const OLD: u64 = 700;
const SIZE: u64 = 1000;
const INDEX: u64 = 517;

fn entry(i: u64) -> Vec<u8> {
    match i {
        3 => Vec::new(),            // empty entry
        4 => vec![b'x'; 65_535],    // largest entry a bundle can hold
        _ => format!("tidelog-event/v1\n{{\"seq\":{i},\"stream\":\"acct-{}\",\"type\":\"CoinsCredited\",\"amount\":{}}}", i % 7, 10 * i).into_bytes(),
    }
}

fn write(dir: &Path, rel: &str, data: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Writes the export read by scripts/tlog-go-verify/main.go.
fn export(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let log = Ed25519Signer::from_seed(ORIGIN, &[0x11; 32]).unwrap();
    let witness = Cosigner::from_seed("witness.example/w1", &[0x22; 32]).unwrap();
    let keys = Verifiers::new().with(log.verifier()).unwrap();
    let mut store = MemoryStore::new();
    for i in 0..SIZE {
        store.push_leaf(&entry(i));
    }
    let signed = |n: u64| {
        Checkpoint::new(ORIGIN, n, tree_hash(n, &store).unwrap())
            .unwrap()
            .sign(&[&log])
            .unwrap()
    };

    // The witness first cosigns OLD, then SIZE with a consistency proof.
    let first = AddCheckpointRequest {
        old_size: 0,
        proof: vec![],
        checkpoint: signed(OLD),
    };
    let c1 = decide_add_checkpoint(
        &first,
        Some(WitnessedLog {
            keys: &keys,
            latest: None,
        }),
        &[&witness],
        1_760_000_000,
    )
    .unwrap();
    let req = AddCheckpointRequest {
        old_size: OLD,
        proof: consistency_proof(OLD, SIZE, &store).unwrap(),
        checkpoint: signed(SIZE),
    };
    let c2 = decide_add_checkpoint(
        &req,
        Some(WitnessedLog {
            keys: &keys,
            latest: Some(c1.new_head),
        }),
        &[&witness],
        1_760_000_060,
    )
    .unwrap();

    write(dir, "log.vkey", format!("{}\n", log.vkey()).as_bytes());
    write(
        dir,
        "witness.vkey",
        format!("{}\n", witness.vkey()).as_bytes(),
    );
    write(dir, "old-checkpoint", signed(OLD).as_bytes());
    write(dir, "add-checkpoint", req.encode().unwrap().as_bytes());
    write(dir, "checkpoint", c2.cosigned_checkpoint.as_bytes());
    let proof = TlogProof::build(
        INDEX,
        &c2.cosigned_checkpoint,
        &store,
        Some(b"event 517".to_vec()),
    )
    .unwrap();
    let wkeys = Verifiers::new().with(witness.verifier()).unwrap();
    proof
        .verify(
            &entry(INDEX),
            &ProofPolicy {
                origin: ORIGIN,
                log_keys: &keys,
                witnesses: &wkeys,
                quorum: 1,
            },
        )
        .unwrap();
    write(dir, "entry.tlog-proof", proof.encode().as_bytes());
    write(dir, "entry", &entry(INDEX));
    for t in new_tiles(0, SIZE) {
        write(dir, &t.path(), &read_tile(&t, &store).unwrap());
    }
    for b in new_bundles(0, SIZE) {
        let entries: Vec<Vec<u8>> = (b.first_entry()..b.first_entry() + u64::from(b.width))
            .map(entry)
            .collect();
        write(dir, &b.path(), &encode_entry_bundle(&entries).unwrap());
    }
}

fn script() -> PathBuf {
    if let Some(p) = std::env::var_os("TLOG_GO_VERIFY") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tlog-go-verify/verify.sh")
}

fn run(dir: &Path) -> (bool, String) {
    let out = Command::new("sh")
        .arg(script())
        .arg(dir)
        .output()
        .expect("run verify.sh");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Flips one bit of byte `at` (negative = from the end) of `rel`; with
/// `needle`, `at` counts from where `needle` starts.
fn flip(dir: &Path, rel: &str, needle: &str, at: isize) {
    let p = dir.join(rel);
    let mut b = std::fs::read(&p).unwrap();
    let i = if !needle.is_empty() {
        b.windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .expect("needle")
            + at as usize
    } else if at < 0 {
        (b.len() as isize + at) as usize
    } else {
        at as usize
    };
    b[i] ^= 0x01;
    std::fs::write(p, b).unwrap();
}

#[test]
fn go_sumdb_verifies_our_export() {
    let have_go = Command::new("go")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_go {
        assert!(
            std::env::var("TLOG_REQUIRE_GO").is_err(),
            "TLOG_REQUIRE_GO is set but `go` is not installed"
        );
        eprintln!("SKIPPED go interop: install with `apt-get install -y golang-go golang-golang-x-mod-dev`");
        return;
    }
    let base = std::env::var_os("TLOG_INTEROP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("tlog-go-interop-{}", std::process::id()))
        });
    let good = base.join("good");
    export(&good);
    let (ok, out) = run(&good);
    assert!(ok, "Go verifier rejected a valid export:\n{out}");
    assert_eq!(out.matches("OK ").count(), 4, "{out}");
    eprintln!("{out}");

    // Each one-byte change must make the Go verifier fail.
    let bundle0 = "tile/entries/000";
    let cases: Vec<(&str, &str, &str, isize)> = vec![
        ("checkpoint root", "checkpoint", "\n1000\n", 6 + 10),
        (
            "checkpoint log signature",
            "checkpoint",
            "— tidelog.example",
            40,
        ),
        ("checkpoint cosignature", "checkpoint", "", -20),
        ("old-checkpoint size", "old-checkpoint", "\n700\n", 1),
        ("consistency proof hash", "add-checkpoint", "", 10),
        ("tlog-proof index", "entry.tlog-proof", "index 517", 8),
        ("tlog-proof hash", "entry.tlog-proof", "index 517\n", 15),
        ("tlog-proof cosignature", "entry.tlog-proof", "", -20),
        ("entry bytes", "entry", "", 20),
        ("level-0 tile", "tile/0/001", "", 100),
        ("level-1 partial tile", "tile/1/000.p/3", "", 40),
        ("entry bundle", bundle0, "", 9),
        ("partial entry bundle", "tile/entries/003.p/232", "", -1),
    ];
    for (what, file, needle, at) in cases {
        let d = base.join("bad");
        copy_dir(&good, &d);
        flip(&d, file, needle, at);
        let (ok, out) = run(&d);
        assert!(!ok, "Go verifier accepted a tampered {what}:\n{out}");
        eprintln!("tampered {what}: {}", out.lines().last().unwrap_or(""));
    }
    if std::env::var_os("TLOG_INTEROP_DIR").is_none() {
        let _ = std::fs::remove_dir_all(&base);
    }
}

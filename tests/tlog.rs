//! The transparency log against a real database and real processes: what
//! it produces passes verifiers nobody on the team wrote (Go's
//! golang.org/x/mod sumdb/note + sumdb/tlog from Debian, the Rust crates
//! signed_note, tlog_tiles and ct-merkle); a superuser's rewrite of a wallet
//! event and a rollback are caught against an earlier checkpoint; the
//! witness refuses another history; a process killed mid-integration
//! leaves no gap and no leaf twice.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use tidelog::config::WitnessConfig;
use tidelog::tlog::checkpoint::{hash_b64, Checkpoint};
use tidelog::tlog::merkle::{consistency_proof, inclusion_proof, tree_hash, Hash, MemoryStore};
use tidelog::tlog::note::{Ed25519Signer, Note};
use tidelog::tlog::witness::AddCheckpointRequest;
use tidelog::tlog::witness_store::WitnessStore;

const ORIGIN: &str = "tidelog.test/log";

fn tidelog(envs: &[(&str, String)], args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidelog"));
    cmd.args(args)
        .env("RUST_LOG", "warn")
        // never the repository's ./.tidelog
        .env("TIDELOG_DATA_DIR", "/nonexistent/tidelog-test");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn failed(out: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "should have failed:\n{text}");
    text
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, Vec<u8>) {
    let resp = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.bytes().await.unwrap().to_vec())
}

/// `n` events of fresh streams, appended behind the server's back (as any
/// other writer may): the positions projection picks them up by its poll.
async fn bulk_events(pool: &sqlx::PgPool, tag: &str, n: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'Bulk', $1 || '-' || i, 1, 'BulkAppended', '1',
                json_build_object('i', i, 'tag', $1), '{\"actor\": \"test\"}'::json
           FROM generate_series(1, $2) i",
    )
    .bind(tag)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
}

async fn events(pool: &sqlx::PgPool) -> u64 {
    count(pool, "SELECT count(*) FROM events").await as u64
}

/// The body of a signed note.
fn body(note: &[u8]) -> Checkpoint {
    Checkpoint::parse(Note::parse(note).unwrap().text()).unwrap()
}

/// Waits for the latest cosigned checkpoint to cover every event so far.
async fn checkpoint_of_all(app: &TestApp) -> String {
    let want = events(&app.pool).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (s, b) = get(app, "/admin/tlog/checkpoint").await;
        if s == StatusCode::OK && body(&b).size == want {
            return String::from_utf8(b).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint over the {want} events: {s} {}",
            String::from_utf8_lossy(&b)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fast(c: &mut tidelog::config::Config, key: &Path) {
    c.tlog.key_file = Some(key.to_path_buf());
    c.tlog.origin = Some(ORIGIN.into());
    c.tlog.checkpoint_interval = Duration::from_millis(200);
}

/// The whole tree recomputed from the events, in the log's numbering.
async fn tree_from_events(pool: &sqlx::PgPool) -> MemoryStore {
    let mut conn = pool.acquire().await.unwrap();
    let mut store = MemoryStore::new();
    let rows = tidelog::tlog::leaf::numbered(&mut conn, 1, i64::MAX)
        .await
        .unwrap();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.position, i as i64 + 1);
        store.push_leaf(&r.event.as_ref().expect("every numbered event").leaf());
    }
    store
}

/// The auditor's witness of the log `log_vkey`, its state under `dir`.
fn auditors_witness(dir: &Path, log_vkey: &str) -> WitnessStore {
    WitnessStore::open(
        &dir.join("witness"),
        Some("witness.test/w1"),
        &[log_vkey.to_owned()],
    )
    .unwrap()
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).unwrap();
}

/// Verifies a cosignature/v1 line with ed25519-dalek alone (not with
/// tidelog's cosignature module): the witness key from its vkey, the
/// message as C2SP tlog-cosignature spells it.
fn check_cosignature(note: &str, witness_vkey: &str) {
    use base64::Engine as _;
    use ed25519_dalek::Verifier as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut parts = witness_vkey.splitn(3, '+');
    let name = parts.next().unwrap();
    let key = b64.decode(parts.nth(1).unwrap()).unwrap();
    assert_eq!(key[0], 0x04, "a cosignature/v1 key");
    let key = ed25519_dalek::VerifyingKey::from_bytes(key[1..].try_into().unwrap()).unwrap();
    let (text, sigs) = note.split_at(note.rfind("\n\n").unwrap() + 1);
    let line = sigs
        .lines()
        .find(|l| l.starts_with(&format!("— {name} ")))
        .expect("the witness's line");
    let raw = b64.decode(line.rsplit(' ').next().unwrap()).unwrap();
    let time = u64::from_be_bytes(raw[4..12].try_into().unwrap());
    let msg = format!("cosignature/v1\ntime {time}\n{text}");
    let sig = ed25519_dalek::Signature::from_slice(&raw[12..]).unwrap();
    key.verify(msg.as_bytes(), &sig)
        .expect("the witness's cosignature");
}

fn go_available() -> bool {
    let have = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
        && Path::new("/usr/share/gocode/src/golang.org/x/mod/sumdb/note").exists();
    if !have {
        assert!(
            std::env::var_os("TLOG_REQUIRE_GO").is_none(),
            "TLOG_REQUIRE_GO is set but Debian's golang-go and golang-golang-x-mod-dev are not installed"
        );
        eprintln!("SKIPPED the Go verifier: apt-get install -y golang-go golang-golang-x-mod-dev");
    }
    have
}

#[tokio::test]
async fn what_tidelog_produces_passes_verifiers_nobody_on_the_team_wrote() {
    let keys = open_tempdir();
    let key_file = keys.path().join("log.key");
    let log_vkey = tidelog::tlog::signer::load_or_generate(&key_file, Some(ORIGIN))
        .unwrap()
        .vkey();
    // the auditor's witness, in this process
    let store = auditors_witness(keys.path(), &log_vkey);
    let witness_vkey = store.vkey();
    let witness = tidelog::app::WitnessServer::start(store, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let witness_url = format!("http://{}", witness.addr);
    let (wk, wu) = (witness_vkey.clone(), witness_url.clone());
    let app = TestApp::start_with(move |c| {
        fast(c, &key_file);
        c.tlog.witnesses = vec![WitnessConfig { vkey: wk, url: wu }];
        c.tlog.quorum = 1;
    })
    .await;
    let url = url_of(&app.db);
    let env = [
        ("DATABASE_URL", url.clone()),
        (
            "TIDELOG_TLOG_KEY_FILE",
            keys.path().join("log.key").display().to_string(),
        ),
        ("TIDELOG_TLOG_ORIGIN", ORIGIN.into()),
        (
            "TIDELOG_TLOG_WITNESSES",
            format!("{witness_vkey} {witness_url}"),
        ),
        ("TIDELOG_TLOG_WITNESS_QUORUM", "1".into()),
    ];
    assert_eq!(ok(&tidelog(&env, &["audit", "vkey"])).trim(), log_vkey);
    assert!(ok(&tidelog(&env, &["config"])).contains(&format!("transparency log vkey: {log_vkey}")));

    // events through the API and behind its back; a first checkpoint
    let api = app.api();
    let (_, token) = api.user("alice").await;
    let room = api.room(&token, "audited").await;
    for i in 0..3 {
        api.say(&token, room, &format!("message {i}")).await;
    }
    bulk_events(&app.pool, "first", 600).await;
    let old = checkpoint_of_all(&app).await;
    let old_cp = body(old.as_bytes());
    check_cosignature(&old, &witness_vkey);
    // a proof against the latest: the old checkpoint, cosigned (the server
    // keeps it as the latest from here)
    let (s, b) = get(&app, "/admin/tlog/proof?index=0").await;
    assert_eq!(s, StatusCode::OK);
    let first = tidelog::tlog::proof::TlogProof::parse(std::str::from_utf8(&b).unwrap()).unwrap();
    assert_eq!(first.checkpoint, old);
    // more, and a later checkpoint
    for i in 3..6 {
        api.say(&token, room, &format!("message {i}")).await;
    }
    bulk_events(&app.pool, "second", 333).await;
    checkpoint_of_all(&app).await;

    // the export, exactly C2SP tlog-tiles, at the latest cosigned checkpoint
    let out = open_tempdir();
    let dir = out.path();
    ok(&tidelog(
        &env,
        &["audit", "export", "--tlog-tiles", dir.to_str().unwrap()],
    ));
    let note = std::fs::read_to_string(dir.join("checkpoint")).unwrap();
    let cp = body(note.as_bytes());
    assert_eq!(cp.origin, ORIGIN);
    assert!(cp.size > old_cp.size && cp.size >= 942, "{}", cp.size);
    // recomputed here from the events, the same root
    let tree = tree_from_events(&app.pool).await;
    assert_eq!(tree_hash(cp.size, &tree).unwrap(), cp.root);
    // the HTTP tiles are the exported files
    let mut files = vec![dir.join("tile")];
    let mut compared = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let rel = p.strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
        let (s, b) = get(&app, &format!("/admin/tlog/{rel}")).await;
        assert_eq!(s, StatusCode::OK, "{rel}");
        assert_eq!(b, std::fs::read(&p).unwrap(), "{rel}");
        compared += 1;
    }
    assert!(compared >= 9, "{compared} tile files");
    let (s, _) = get(&app, "/admin/tlog/tile/0/999").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = get(&app, "/admin/tlog/tile/9/000").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // what go-verify reads: keys, both checkpoints, the witness request
    // from the old size, one event's tlog-proof and its leaf
    write(dir, "log.vkey", format!("{log_vkey}\n").as_bytes());
    write(dir, "witness.vkey", format!("{witness_vkey}\n").as_bytes());
    write(dir, "old-checkpoint", old.as_bytes());
    let (s, proof_text) = get(
        &app,
        &format!(
            "/admin/tlog/consistency?old={}&new={}",
            old_cp.size, cp.size
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let proof_text = String::from_utf8(proof_text).unwrap();
    let (first, lines) = proof_text.split_once('\n').unwrap();
    assert_eq!(first, format!("new {}", cp.size));
    let log_signed: String =
        sqlx::query_scalar("SELECT note FROM tlog_checkpoints WHERE size = $1")
            .bind(cp.size as i64)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let consistency: Vec<Hash> = lines
        .lines()
        .map(|l| tidelog::tlog::checkpoint::parse_hash_b64(l).unwrap())
        .collect();
    let request = AddCheckpointRequest {
        old_size: old_cp.size,
        proof: consistency.clone(),
        checkpoint: log_signed.clone(),
    };
    write(dir, "add-checkpoint", request.encode().unwrap().as_bytes());
    let event: String = sqlx::query_scalar(
        "SELECT aggregate_type || '/' || aggregate_id || '/' || sequence FROM events
          WHERE event_type = 'MessagePosted' ORDER BY global_position OFFSET 4 LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let size = cp.size.to_string();
    let entry = dir.join("entry");
    let proof = ok(&tidelog(
        &env,
        &[
            "audit",
            "prove",
            &event,
            "--size",
            &size,
            "--entry",
            entry.to_str().unwrap(),
        ],
    ));
    write(dir, "entry.tlog-proof", proof.as_bytes());
    let (s, http_proof) = get(
        &app,
        &format!("/admin/tlog/proof?event={event}&size={size}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(String::from_utf8(http_proof).unwrap(), proof);
    // the latest cosigned checkpoint is the one proved against by default
    // (the server kept the old one since the proof above the later one)
    let (s, latest_proof) = get(&app, &format!("/admin/tlog/proof?event={event}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(String::from_utf8(latest_proof).unwrap(), proof);
    let (s, http_entry) = get(&app, &format!("/admin/tlog/entry?event={event}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(http_entry, std::fs::read(&entry).unwrap());
    let parsed = tidelog::tlog::proof::TlogProof::parse(&proof).unwrap();
    assert_eq!(parsed.extra.as_deref(), Some(event.as_bytes()));

    // Rust: signed_note (the log's signature), tlog_tiles (inclusion and
    // consistency), ct-merkle (the same two)
    let verifiers = signed_note::VerifierList::new(vec![Box::new(
        signed_note::StandardVerifier::new(&log_vkey).unwrap(),
    )]);
    for n in [&note, &old, &log_signed] {
        let (good, unknown) = signed_note::Note::from_bytes(n.as_bytes())
            .unwrap()
            .verify(&verifiers)
            .unwrap();
        assert_eq!(good.len(), 1);
        assert_eq!(unknown.len(), if *n == log_signed { 0 } else { 1 });
    }
    let mut forged = note.clone().into_bytes();
    forged[ORIGIN.len() + 2] ^= 1;
    assert!(signed_note::Note::from_bytes(&forged)
        .and_then(|n| n.verify(&verifiers).map(|_| ()))
        .is_err());
    check_cosignature(&note, &witness_vkey);
    let leaf = std::fs::read(&entry).unwrap();
    let as_theirs = |hs: &[Hash]| hs.iter().map(|h| tlog_tiles::Hash(*h)).collect::<Vec<_>>();
    tlog_tiles::check_record(
        &as_theirs(&parsed.proof),
        cp.size,
        tlog_tiles::Hash(cp.root),
        parsed.index,
        tlog_tiles::record_hash(&leaf),
    )
    .unwrap();
    tlog_tiles::check_tree(
        &as_theirs(&consistency),
        cp.size,
        tlog_tiles::Hash(cp.root),
        old_cp.size,
        tlog_tiles::Hash(old_cp.root),
    )
    .unwrap();
    type Sha = sha2_011::Sha256;
    let root = ct_merkle::RootHash::<Sha>::new(cp.root.into(), cp.size);
    let old_root = ct_merkle::RootHash::<Sha>::new(old_cp.root.into(), old_cp.size);
    root.verify_inclusion(
        &leaf,
        parsed.index,
        &ct_merkle::InclusionProof::<Sha>::try_from_bytes(parsed.proof.concat()).unwrap(),
    )
    .unwrap();
    root.verify_consistency(
        &old_root,
        &ct_merkle::ConsistencyProof::<Sha>::try_from_bytes(consistency.concat()).unwrap(),
    )
    .unwrap();
    let mut other = leaf.clone();
    *other.last_mut().unwrap() ^= 1;
    assert!(tlog_tiles::check_record(
        &as_theirs(&parsed.proof),
        cp.size,
        tlog_tiles::Hash(cp.root),
        parsed.index,
        tlog_tiles::record_hash(&other),
    )
    .is_err());

    // Go: golang.org/x/mod sumdb/note + sumdb/tlog (Debian's), every check
    if go_available() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tlog-go-verify/verify.sh");
        let run = Command::new("sh").arg(&script).arg(dir).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(run.status.success(), "Go rejected tidelog's files:\n{text}");
        assert_eq!(text.matches("OK ").count(), 4, "{text}");
        eprintln!("{text}");
        // and refuses them changed: an event's bytes in a bundle
        let bundle = dir.join("tile/entries/000");
        let mut b = std::fs::read(&bundle).unwrap();
        b[40] ^= 1;
        std::fs::write(&bundle, b).unwrap();
        let run = Command::new("sh").arg(&script).arg(dir).output().unwrap();
        assert!(!run.status.success(), "Go accepted a changed entry bundle");
    }

    // the witness kept what it cosigned: an auditor's archive as it is
    let archive = std::fs::read_dir(keys.path().join("witness/logs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("checkpoints");
    assert!(std::fs::read_dir(&archive).unwrap().count() >= 2);
    let report = ok(&tidelog(
        &env,
        &[
            "audit",
            "verify",
            "--checkpoints",
            archive.to_str().unwrap(),
            "--log-vkey",
            &log_vkey,
            "--witness-vkey",
            &witness_vkey,
        ],
    ));
    assert!(report.contains("OK: transparency log"), "{report}");
    app.stop().await;
    witness.shutdown().await;
}

/// Rewrites one stream's chain as a superuser would: the database's own
/// `event_hash`, in sequence order, triggers off.
async fn rechain(pool: &sqlx::PgPool, aggregate_type: &str, aggregate_id: &str) {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only")
        .execute(&mut *conn)
        .await
        .unwrap();
    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT sequence FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    for seq in seqs {
        sqlx::query(
            "UPDATE events e SET prev_hash = p.hash,
                    hash = event_hash(p.hash, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                                      e.event_version, e.payload, e.metadata, e.recorded_at)
               FROM (SELECT (SELECT hash FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
                                AND sequence = $3 - 1) AS hash) p
              WHERE e.aggregate_type = $1 AND e.aggregate_id = $2 AND e.sequence = $3",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(seq)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    sqlx::query("ALTER TABLE events ENABLE TRIGGER events_append_only")
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// Moves `n` coins to `number` through the operators' API.
async fn adjust(app: &TestApp, number: i64, amount: i64, why: &str) {
    let resp = app
        .http
        .post(format!("{}/admin/ledger/adjustments", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &serde_json::json!({"account": number.to_string(), "currency": "coins",
            "direction": "credit", "amount": amount, "description": why, "operation_id": why}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}",
        resp.text().await.unwrap()
    );
}

#[tokio::test]
async fn a_rewritten_wallet_event_and_a_rollback_fail_verify_against_an_earlier_checkpoint() {
    let keys = open_tempdir();
    let key_file = keys.path().join("log.key");
    let k = key_file.clone();
    let app = TestApp::start_with(move |c| fast(c, &k)).await;
    let url = url_of(&app.db);
    let env = [
        ("DATABASE_URL", url.clone()),
        ("TIDELOG_TLOG_KEY_FILE", key_file.display().to_string()),
        ("TIDELOG_TLOG_ORIGIN", ORIGIN.into()),
    ];
    let api = app.api();
    let (alice, _) = api.user("alice").await;
    let (bob, _) = api.user("bob").await;
    adjust(&app, alice, 100, "welcome bonus").await;
    adjust(&app, alice, 5, "refund of order 17").await;
    adjust(&app, bob, 7, "prize").await;
    adjust(&app, alice, 1, "later").await;
    // the auditor archives the checkpoint (any name; other files are skipped)
    let archive = open_tempdir();
    let first = checkpoint_of_all(&app).await;
    write(archive.path(), "2026-12-07T10:00.txt", first.as_bytes());
    write(archive.path(), "README", b"our checkpoints\n");
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "audit",
            "verify",
            "--checkpoints",
            archive.path().to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        tidelog(&env, &args)
    };
    let report = ok(&verify(&[]));
    assert!(
        report.contains("OK: hash chains") && report.contains("OK: transparency log"),
        "{report}"
    );
    assert!(
        report.contains("1 archived checkpoints (1 files skipped)"),
        "{report}"
    );
    // incremental: a first run writes the state, a second hashes only what grew
    let state_dir = open_tempdir();
    let state = state_dir.path().join("tlog-state.json");
    let state = state.to_str().unwrap();
    ok(&verify(&["--incremental", state]));
    adjust(&app, bob, 2, "more").await;
    let second = checkpoint_of_all(&app).await;
    write(archive.path(), "second", second.as_bytes());
    let json: Value =
        serde_json::from_str(&ok(&verify(&["--incremental", state, "--json"]))).unwrap();
    let grown = body(second.as_bytes()).size - body(first.as_bytes()).size;
    assert_eq!(
        json["tlog"]["incremental_from"],
        body(first.as_bytes()).size
    );
    assert_eq!(json["tlog"]["leaves_hashed"], grown, "{json}");

    // a superuser rewrites what a movement was for, and the stream's chain
    let (wallet, seq): (String, i64) = sqlx::query_as(
        "SELECT aggregate_id, sequence FROM events WHERE aggregate_type = 'Wallet'
          AND payload::text LIKE '%refund of order 17%'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let mut conn = app.pool.acquire().await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE events SET payload = replace(payload::text, 'refund of order 17', 'bonus')::json
          WHERE aggregate_type = 'Wallet' AND aggregate_id = $1 AND sequence = $2",
    )
    .bind(&wallet)
    .bind(seq)
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    rechain(&app.pool, "Wallet", &wallet).await;
    ok(&tidelog(&env, &["projections", "rebuild", "all"]));
    // the chains and the ledger agree again; the log does not
    let text = failed(&verify(&[]));
    assert!(
        text.contains("OK: hash chains") || !text.contains("hash chain:"),
        "{text}"
    );
    let named = format!("event Wallet/{wallet}/{seq}");
    assert!(text.contains(&named), "{text}");
    assert!(
        text.contains("checkpoint file") && text.contains("no longer give its root"),
        "{text}"
    );

    // a thorough superuser also recomputes the log's stored hashes and head
    let all = events(&app.pool).await as i64;
    eventually("every event integrated", || async {
        count(&app.pool, "SELECT size FROM tlog_head").await == all
    })
    .await;
    let tree = tree_from_events(&app.pool).await;
    let mut conn = app.pool.acquire().await.unwrap();
    for t in ["tlog_hashes_append_only", "tlog_hashes_contiguous"] {
        sqlx::query(&format!("ALTER TABLE tlog_hashes DISABLE TRIGGER {t}"))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    sqlx::query("ALTER TABLE tlog_head DISABLE TRIGGER tlog_head_only_grows")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("DELETE FROM tlog_hashes")
        .execute(&mut *conn)
        .await
        .unwrap();
    let size = tree.size();
    let mut f = tidelog::tlog::merkle::Frontier::new();
    let leaves: Vec<Hash> = (0..size)
        .map(|i| *tree.get(tidelog::tlog::merkle::NodeId::leaf(i)).unwrap())
        .collect();
    for run in tidelog::tlog::integrator::append_runs(&mut f, &leaves) {
        sqlx::query("INSERT INTO tlog_hashes (level, first, hashes) VALUES ($1, $2, $3)")
            .bind(i16::from(run.level))
            .bind(run.first as i64)
            .bind(run.hashes)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE tlog_head SET size = $1, root = $2")
        .bind(size as i64)
        .bind(f.root().as_slice())
        .execute(&mut *conn)
        .await
        .unwrap();
    for t in ["tlog_hashes_append_only", "tlog_hashes_contiguous"] {
        sqlx::query(&format!("ALTER TABLE tlog_hashes ENABLE TRIGGER {t}"))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    sqlx::query("ALTER TABLE tlog_head ENABLE TRIGGER tlog_head_only_grows")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let text = failed(&verify(&[]));
    assert!(
        text.contains("checkpoint file") && text.contains("was changed, added or removed"),
        "{text}"
    );
    // the signer refuses to sign the rewritten tree
    adjust(&app, bob, 3, "after the rewrite").await;
    eventually("the signer refuses", || async {
        let (_, b) = get(&app, "/admin/tlog/status").await;
        let v: Value = serde_json::from_slice(&b).unwrap();
        v["signer_error"]
            .as_str()
            .is_some_and(|e| e.contains("refusing to sign"))
    })
    .await;

    // the newest events deleted, with their numbers: a rollback
    let mut conn = app.pool.acquire().await.unwrap();
    for (table, trigger) in [
        ("events", "events_append_only"),
        ("log_positions", "log_positions_append_only"),
    ] {
        sqlx::query(&format!("ALTER TABLE {table} DISABLE TRIGGER {trigger}"))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    sqlx::query(
        "WITH gone AS (DELETE FROM log_positions WHERE position > $1 RETURNING global_position)
         DELETE FROM events WHERE global_position IN (SELECT global_position FROM gone)",
    )
    .bind(body(second.as_bytes()).size as i64 - 2)
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    let text = failed(&verify(&[]));
    assert!(text.contains("rolled back"), "{text}");
    app.stop().await;
}

fn signed(log: &Ed25519Signer, t: &MemoryStore, n: u64) -> String {
    Checkpoint::new(ORIGIN, n, tree_hash(n, t).unwrap())
        .unwrap()
        .sign(&[log])
        .unwrap()
}

fn request(old: u64, proof: Vec<Hash>, checkpoint: String) -> String {
    AddCheckpointRequest {
        old_size: old,
        proof,
        checkpoint,
    }
    .encode()
    .unwrap()
}

async fn add_checkpoint(base: &str, body: String) -> (StatusCode, String) {
    let resp = client()
        .post(format!("{base}/add-checkpoint"))
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// `tidelog witness serve` on `dir`: the process and its base URL.
fn spawn_witness(dir: &Path, log_vkey: &str) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args([
            "witness",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--name",
            "witness.test/auditor",
        ])
        .arg("--dir")
        .arg(dir)
        .args(["--log-vkey", log_vkey])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let marker = "tidelog witness listening addr=";
    let addr = loop {
        let line = lines.next().expect("witness output").unwrap();
        if let Some(i) = line.find(marker) {
            break line[i + marker.len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://{addr}"))
}

/// A witness holding (25, ours) refuses every other history.
async fn refusals(base: &str, log: &Ed25519Signer, ours: &MemoryStore, theirs: &MemoryStore) {
    // another history from its size: the proof cannot hold
    let forged = request(
        25,
        consistency_proof(25, 30, theirs).unwrap(),
        signed(log, theirs, 30),
    );
    assert_eq!(
        add_checkpoint(base, forged).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // the same size with another root
    let same = request(25, vec![], signed(log, theirs, 25));
    assert_eq!(
        add_checkpoint(base, same).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // a rollback to a smaller tree
    let smaller = request(25, vec![], signed(log, ours, 22));
    assert_eq!(
        add_checkpoint(base, smaller).await.0,
        StatusCode::BAD_REQUEST
    );
    // claiming it saw less: 409 with the size it holds
    let less = request(
        20,
        consistency_proof(20, 30, ours).unwrap(),
        signed(log, ours, 30),
    );
    let (s, b) = add_checkpoint(base, less).await;
    assert_eq!((s, b.as_str()), (StatusCode::CONFLICT, "25\n"));
    // a log it does not follow; a signature that does not verify
    let stranger = Ed25519Signer::generate("stranger.test/log", &mut rand::rngs::OsRng).unwrap();
    let cp = Checkpoint::new("stranger.test/log", 1, [1; 32])
        .unwrap()
        .sign(&[&stranger])
        .unwrap();
    assert_eq!(
        add_checkpoint(base, request(0, vec![], cp)).await.0,
        StatusCode::NOT_FOUND
    );
    let mut bad = signed(log, ours, 30).into_bytes();
    bad[ORIGIN.len() + 1] = b'9';
    let bad = request(25, vec![], String::from_utf8(bad).unwrap());
    assert_eq!(add_checkpoint(base, bad).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_witness_cosigns_only_extensions_of_what_it_saw_and_remembers_across_restarts() {
    let dir = open_tempdir();
    let log = Ed25519Signer::generate(ORIGIN, &mut rand::rngs::OsRng).unwrap();
    let (mut child, base) = spawn_witness(dir.path(), &log.vkey());
    // the log's history, and another that shares its first 10 leaves
    let mut ours = MemoryStore::new();
    let mut theirs = MemoryStore::new();
    for i in 0..30u32 {
        ours.push_leaf(format!("event {i}").as_bytes());
        let other = if i < 10 {
            format!("event {i}")
        } else {
            format!("forged {i}")
        };
        theirs.push_leaf(other.as_bytes());
    }
    let (s, lines) = add_checkpoint(&base, request(0, vec![], signed(&log, &ours, 20))).await;
    assert_eq!(s, StatusCode::OK, "{lines}");
    assert!(lines.starts_with("— witness.test/auditor "), "{lines}");
    let grow = request(
        20,
        consistency_proof(20, 25, &ours).unwrap(),
        signed(&log, &ours, 25),
    );
    let (s, lines) = add_checkpoint(&base, grow).await;
    assert_eq!(s, StatusCode::OK, "{lines}");
    refusals(&base, &log, &ours, &theirs).await;
    // restarted, it still holds size 25
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, base) = spawn_witness(dir.path(), &log.vkey());
    refusals(&base, &log, &ours, &theirs).await;
    let grow = request(
        25,
        consistency_proof(25, 30, &ours).unwrap(),
        signed(&log, &ours, 30),
    );
    assert_eq!(add_checkpoint(&base, grow).await.0, StatusCode::OK);
    // its archive: every checkpoint it cosigned
    let log_dir = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut sizes: Vec<String> = std::fs::read_dir(log_dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    sizes.sort();
    assert_eq!(sizes, ["20", "25", "30"]);
    let latest = std::fs::read(log_dir.join("latest")).unwrap();
    assert_eq!(
        hash_b64(&body(&latest).root),
        hash_b64(&tree_hash(30, &ours).unwrap())
    );
    // one witness per directory; its key printed while it runs
    let vkey = ok(&tidelog(
        &[],
        &["witness", "vkey", "--dir", dir.path().to_str().unwrap()],
    ));
    assert!(vkey.starts_with("witness.test/auditor+"), "{vkey}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_process_killed_mid_integration_leaves_no_gap_and_no_leaf_twice() {
    let db = fresh_database().await;
    let url = url_of(&db);
    let pool = tidelog::db::connect_pool(db.clone(), 4).await.unwrap();
    let data = open_tempdir();
    let envs = [
        ("DATABASE_URL", url.clone()),
        ("TIDELOG_DATA_DIR", data.path().display().to_string()),
        ("TIDELOG_TLOG_CHECKPOINT_MS", "200".to_string()),
        ("TIDELOG_TLOG_BATCH", "1000".to_string()),
    ];
    let mut first = ServerProcess::spawn(&envs);
    bulk_events(&pool, "before", 500).await;
    eventually("the first 500 leaves", || async {
        count(&pool, "SELECT size FROM tlog_head").await == 500
    })
    .await;
    // hold the head (a SHARE lock: no transaction id, so the horizon stays
    // open): the next batch appends its hashes, then waits for the head, in
    // the middle of its transaction
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE tlog_head IN SHARE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    bulk_events(&pool, "during", 2500).await;
    eventually("a batch waiting in mid-transaction", || async {
        count(
            &pool,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
               AND query LIKE 'WITH runs AS (INSERT INTO tlog_hashes%' AND pid <> pg_backend_pid()
               AND datname = current_database()",
        )
        .await
            == 1
    })
    .await;
    first.kill9();
    blocker.rollback().await.unwrap();
    eventually("the killed process's session gone", || async {
        count(&pool, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'WITH runs AS (INSERT INTO tlog_hashes%' AND pid <> pg_backend_pid() AND datname = current_database()").await == 0
    })
    .await;
    assert_eq!(
        count(&pool, "SELECT size FROM tlog_head").await,
        500,
        "nothing of the batch kept"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT coalesce(sum(length(hashes) / 32), 0)::bigint FROM tlog_hashes WHERE level = 0"
        )
        .await,
        500
    );
    // the next process continues
    let mut second = ServerProcess::spawn(&envs);
    bulk_events(&pool, "after", 700).await;
    let all = events(&pool).await as i64;
    assert!(all >= 3700);
    eventually("every event a leaf", || async {
        count(&pool, "SELECT size FROM tlog_head").await == all
    })
    .await;
    // level 0: runs end to end, one hash per leaf, the root the events give
    let gaps = count(
        &pool,
        "SELECT count(*) FROM (SELECT first, lag(first + length(hashes) / 32) OVER (ORDER BY first) AS prev_end
                                 FROM tlog_hashes WHERE level = 0) r
          WHERE first <> coalesce(prev_end, 0)",
    )
    .await;
    assert_eq!(gaps, 0);
    assert_eq!(
        count(
            &pool,
            "SELECT sum(length(hashes) / 32)::bigint FROM tlog_hashes WHERE level = 0"
        )
        .await,
        all
    );
    let tree = tree_from_events(&pool).await;
    let root: Vec<u8> = sqlx::query_scalar("SELECT root FROM tlog_head")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(root, tree.root().to_vec());
    let key = data.path().join("tlog/log.key");
    let out = tidelog(
        &[
            ("DATABASE_URL", url),
            ("TIDELOG_TLOG_KEY_FILE", key.display().to_string()),
        ],
        &["audit", "verify"],
    );
    let text = ok(&out);
    assert!(text.contains("OK: transparency log"), "{text}");
    second.terminate();
}

/// Proofs reuse the nodes computed from the upper tiles for earlier ones
/// (a complete subtree's hash never changes): at every size, each must be
/// the proof of the tree recomputed from the events.
#[tokio::test]
async fn inclusion_proofs_above_one_tile_match_the_tree_recomputed_at_every_size() {
    let keys = open_tempdir();
    let key_file = keys.path().join("log.key");
    let k = key_file.clone();
    let app = TestApp::start_with(move |c| fast(c, &k)).await;
    for round in 0..3 {
        bulk_events(&app.pool, &format!("round{round}"), 700).await;
        let size = body(checkpoint_of_all(&app).await.as_bytes()).size;
        let tree = tree_from_events(&app.pool).await;
        let mut conn = app.pool.acquire().await.unwrap();
        let indices: Vec<u64> = [0, 10, 255, 256, 300, 511, 700, 1500, size - 1]
            .into_iter()
            .filter(|i| *i < size)
            .collect();
        let mut events = Vec::new();
        for &index in &indices {
            let event =
                tidelog::tlog::leaf::numbered(&mut conn, index as i64 + 1, index as i64 + 2)
                    .await
                    .unwrap()
                    .pop()
                    .and_then(|n| n.event)
                    .unwrap()
                    .name();
            events.push(event);
        }
        // without a size first: against the latest (the server kept the
        // previous round's checkpoint as the latest), each leaf tile read
        // with the event the first time
        let mut latest = Vec::new();
        for event in &events {
            let (s, text) = get(&app, &format!("/admin/tlog/proof?event={event}")).await;
            assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
            latest.push(text);
        }
        for ((index, event), latest) in indices.iter().zip(&events).zip(latest) {
            let (s, text) = get(
                &app,
                &format!("/admin/tlog/proof?event={event}&size={size}"),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&text));
            let served =
                tidelog::tlog::proof::TlogProof::parse(std::str::from_utf8(&text).unwrap())
                    .unwrap();
            assert_eq!(
                served.proof,
                inclusion_proof(*index, size, &tree).unwrap(),
                "leaf {index} of {size}"
            );
            assert_eq!(latest, text, "leaf {index}, latest of {size}");
        }
        // the leaf past the latest checkpoint is not under it yet
        let (s, _) = get(&app, &format!("/admin/tlog/proof?index={size}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    app.stop().await;
}

/// The signed checkpoints, as the signer's table holds them: (newest size,
/// cosignatures of it).
async fn newest_signed(pool: &sqlx::PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT c.size, (SELECT count(*) FROM tlog_cosignatures s WHERE s.size = c.size)
           FROM tlog_checkpoints c ORDER BY c.size DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_proof_moves_to_a_newer_checkpoint_once_its_cosignature_arrives() {
    let keys = open_tempdir();
    let key_file = keys.path().join("log.key");
    let log_vkey = tidelog::tlog::signer::load_or_generate(&key_file, Some(ORIGIN))
        .unwrap()
        .vkey();
    let open_witness = || auditors_witness(keys.path(), &log_vkey);
    let store = open_witness();
    let witness_vkey = store.vkey();
    let witness = tidelog::app::WitnessServer::start(store, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = witness.addr;
    let (wk, wu) = (witness_vkey.clone(), format!("http://{addr}"));
    let app = TestApp::start_with(move |c| {
        fast(c, &key_file);
        c.tlog.witnesses = vec![WitnessConfig { vkey: wk, url: wu }];
        c.tlog.quorum = 1;
    })
    .await;
    bulk_events(&app.pool, "first", 40).await;
    let old = checkpoint_of_all(&app).await;
    let proof_of_first = || async {
        let (s, b) = get(&app, "/admin/tlog/proof?index=0").await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        tidelog::tlog::proof::TlogProof::parse(std::str::from_utf8(&b).unwrap())
            .unwrap()
            .checkpoint
    };
    // kept by the server as the latest cosigned checkpoint
    assert_eq!(proof_of_first().await, old);

    // the witness goes away; the log grows and signs a checkpoint nobody
    // cosigned: proofs stay with the old one
    witness.shutdown().await;
    bulk_events(&app.pool, "second", 25).await;
    let all = events(&app.pool).await as i64;
    eventually("a newer checkpoint, signed and not cosigned", || async {
        newest_signed(&app.pool).await == (all, 0)
    })
    .await;
    assert_eq!(proof_of_first().await, old);

    // the witness is back and cosigns it: no checkpoint is signed, only a
    // cosignature added, and proofs move to the newer checkpoint
    let witness = tidelog::app::WitnessServer::start(open_witness(), addr)
        .await
        .unwrap();
    eventually("the newer checkpoint cosigned", || async {
        newest_signed(&app.pool).await == (all, 1)
    })
    .await;
    let new = proof_of_first().await;
    assert_eq!(body(new.as_bytes()).size, all as u64);
    check_cosignature(&new, &witness_vkey);
    witness.shutdown().await;
}

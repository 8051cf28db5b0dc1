//! The `tidelog` command line against a real database.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn tidelog(db_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test]
async fn events_tail_prints_the_newest_events_as_json_lines_without_secrets() {
    let app = TestApp::start().await;
    let api = app.api();
    let (_, token) = api.user("tailer").await;
    let room = api.room(&token, "r").await;
    api.say(&token, room, "last words").await;
    let url = url_of(&app.db);

    let out = tidelog(&url, &["events", "tail", "-n", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = lines
        .iter()
        .map(|l| l["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["ChatRoomCreated", "MemberAdded", "MessagePosted"],
        "the newest three, oldest first"
    );
    assert_eq!(
        lines[2]["payload"]["MessagePosted"]["content"],
        "last words"
    );
    assert_eq!(lines[2]["metadata"]["surface"], "roomchat");
    assert_eq!(lines[2]["hash"].as_str().unwrap().len(), 64);
    assert!(lines[0]["global_position"].as_i64() < lines[2]["global_position"].as_i64());

    let all = tidelog(&url, &["events", "tail", "-n", "100"]);
    let text = String::from_utf8(all.stdout).unwrap();
    // registration, sign-in, and the room's three
    assert_eq!(text.lines().count(), 5);
    assert!(
        text.contains("\"password_hash\":\"<redacted>\"") && !text.contains("$argon2"),
        "{text}"
    );

    let migrate = tidelog(&url, &["migrate"]);
    assert!(
        migrate.status.success(),
        "migrating an up-to-date database is a no-op"
    );
    let status = tidelog(&url, &["projections", "status", "--json"]);
    let rows: Value = serde_json::from_slice(&status.stdout).unwrap();
    let roomchat = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "roomchat")
        .unwrap();
    assert_eq!(
        (
            roomchat["events_applied"].as_i64(),
            roomchat["lag_events"].as_i64()
        ),
        (Some(3), Some(0))
    );

    // An auditor reads one account's security history, by name or number.
    let failed = api
        .post(
            "/login",
            None,
            serde_json::json!({"username": "tailer", "password": "not-it-123"}),
        )
        .await;
    assert_eq!(failed.0, reqwest::StatusCode::UNAUTHORIZED);
    let out = tidelog(&url, &["events", "account", "TAILER"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = lines
        .iter()
        .map(|l| l["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["AccountRegistered", "SignedIn", "SignInFailed"]);
    assert_eq!(lines[2]["metadata"]["client_ip"], "127.0.0.1");
    let missing = tidelog(&url, &["events", "account", "nobody"]);
    assert!(!missing.status.success());
    app.stop().await;
}

#[test]
fn unknown_commands_and_bad_configuration_fail_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(["migrate"])
        .env("DATABASE_URL", "postgres://u@localhost/db")
        .env("TIDELOG_TIMEZONE", "Mars/Olympus")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TIDELOG_TIMEZONE"));
}

#[test]
fn config_prints_the_effective_settings_with_every_secret_redacted_and_version_works() {
    let secret = "a-jwt-secret-nobody-may-ever-see-0123456789";
    let out = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .arg("config")
        .env(
            "DATABASE_URL",
            "postgres://user:hunter2-password@db.example/tidelog",
        )
        .env("TIDELOG_JWT_SECRET", secret)
        .env("TIDELOG_DB_POOL_SIZE", "7")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("db_pool_size: 7"), "{text}");
    assert!(text.contains("<secret>"), "{text}");
    assert!(
        !text.contains(secret) && !text.contains("hunter2"),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("tidelog {}", env!("CARGO_PKG_VERSION"))
    );
}

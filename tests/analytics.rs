//! `tidelog analytics setup`: a read-only role that sees the `analytics`
//! views and nothing else — the events with the gRPC endpoint's positions,
//! credentials redacted; every read model, credential columns left out.

mod common;

use std::process::Command;

use common::TestApp;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

async fn as_role(db: &PgConnectOptions, role: &str, password: &str) -> PgConnection {
    db.clone()
        .username(role)
        .password(password)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting as {role}: {e}"))
}

/// Drops the role (roles outlive the test's database).
async fn drop_role(app: &TestApp, role: &str) {
    let mut conn = app.db.connect().await.unwrap();
    sqlx::raw_sql(&format!(
        "DROP SCHEMA analytics CASCADE; DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""
    ))
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_role_sees_the_events_and_read_models_and_no_credentials() {
    let app = TestApp::start().await;
    let api = app.api();
    let (_, alice) = api.user("alice").await;
    let room = api.room(&alice, "bi").await;
    for i in 0..5 {
        api.say(&alice, room, &format!("m{i}")).await;
    }
    common::eventually("every event numbered", || async {
        common::count(&app.pool, "SELECT count(*) FROM events").await
            == common::count(&app.pool, "SELECT count(*) FROM log_positions").await
    })
    .await;
    let role = format!("bi_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);

    // the CLI, as an operator runs it
    let dir = common::open_tempdir();
    let out = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(["analytics", "setup", "--role", &role])
        .env("DATABASE_URL", common::url_of(&app.db))
        .env("TIDELOG_DATA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("password (shown once): "))
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    assert!(stdout.contains("analytics.events") && stdout.contains("analytics.chat_messages"));

    let mut bi = as_role(&app.db, &role, &password).await;
    // the events, as the gRPC endpoint numbers them
    let rows: Vec<(
        i64,
        String,
        i64,
        i64,
        String,
        serde_json::Value,
        serde_json::Value,
    )> = sqlx::query_as(
        "SELECT position, stream, version, revision, type, payload, metadata
               FROM events ORDER BY position",
    )
    .fetch_all(&mut bi)
    .await
    .unwrap();
    let n = common::count(&app.pool, "SELECT count(*) FROM events").await;
    assert_eq!(rows.len() as i64, n);
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    let posted: Vec<_> = rows.iter().filter(|r| r.4 == "MessagePosted").collect();
    assert_eq!(posted.len(), 5);
    assert!(posted
        .iter()
        .all(|r| r.1 == format!("ChatRoom-{room}") && r.3 == r.2 - 1));
    assert!(posted[0].6["surface"].is_string(), "{}", posted[0].6);
    let registered = rows.iter().find(|r| r.4 == "AccountRegistered").unwrap();
    assert_eq!(
        registered.5["AccountRegistered"]["password_hash"], "<redacted>",
        "{}",
        registered.5
    );
    // every read model, without credential columns
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM analytics.chat_messages")
        .fetch_one(&mut bi)
        .await
        .unwrap();
    assert_eq!(messages, 5);
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
          WHERE table_schema = 'analytics' AND table_name IN ('accounts', 'encryption_keys')",
    )
    .fetch_all(&mut bi)
    .await
    .unwrap();
    assert!(columns.contains(&"username".to_owned()), "{columns:?}");
    assert!(!columns
        .iter()
        .any(|c| c == "password_hash" || c == "private_key_encrypted"));
    let projections: i64 = sqlx::query_scalar("SELECT count(*) FROM analytics.projections")
        .fetch_one(&mut bi)
        .await
        .unwrap();
    assert!(projections >= 8);

    // nothing else, and nothing written
    for denied in [
        "SELECT count(*) FROM public.events",
        "SELECT count(*) FROM public.accounts",
        "SELECT value FROM public.server_secrets",
        "INSERT INTO analytics.chat_rooms (room_id) VALUES (1)",
        "CREATE TABLE analytics.mine (x int)",
    ] {
        let e = sqlx::raw_sql(denied).execute(&mut bi).await.unwrap_err();
        assert!(
            e.to_string().contains("permission denied") || e.to_string().contains("read-only"),
            "{denied}: {e}"
        );
    }
    // read-only is a default the role could lift; its grants still hold
    sqlx::raw_sql("SET default_transaction_read_only = off")
        .execute(&mut bi)
        .await
        .unwrap();
    let e = sqlx::raw_sql("CREATE TABLE public.mine (x int)")
        .execute(&mut bi)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("permission denied"), "{e}");
    bi.close().await.unwrap();

    // again: the views rebuilt, the role and its password kept; then renewed
    let core = tidelog::core::Core::new(
        std::sync::Arc::new(tidelog::config::Config::default()),
        app.pool.clone(),
    );
    let verifier = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
        )
        .bind(&role)
        .fetch_one(&app.pool)
        .await
        .unwrap()
        .expect("a password is set")
    };
    let first = verifier().await;
    let again = tidelog::analytics::setup(&core, &role, false)
        .await
        .unwrap();
    assert_eq!(verifier().await, first);
    assert!(!again.created && again.password.is_none());
    as_role(&app.db, &role, &password)
        .await
        .close()
        .await
        .unwrap();
    let renewed = tidelog::analytics::setup(&core, &role, true).await.unwrap();
    let new_password = renewed.password.unwrap();
    assert_ne!(new_password, password);
    assert_ne!(verifier().await, first);
    let mut bi = as_role(&app.db, &role, &new_password).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut bi)
        .await
        .unwrap();
    assert!(events >= n);
    bi.close().await.unwrap();
    assert!(tidelog::analytics::setup(&core, "Not-A-Role", false)
        .await
        .is_err());
    drop_role(&app, &role).await;
    app.stop().await;
}

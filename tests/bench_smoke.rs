//! Keeps the benchmark harness working: a few seconds of every scenario on
//! a tiny store. Asserts that it runs and reports, never how fast.

mod common;

use std::process::Command;

use serde_json::Value;

/// The load generator with `args`, on its own embedded cluster: where it
/// wrote, and its report.json.
fn run_harness(args: &[&str]) -> (tempfile::TempDir, Value) {
    let dir = common::open_tempdir();
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .arg("--out")
        .arg(dir.path())
        // always its own embedded cluster, never a shared server
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    (dir, report)
}

#[test]
fn the_benchmark_harness_runs_every_scenario_and_reports_every_key() {
    let (dir, report) = run_harness(&[
        "--quick",
        "--users",
        "2",
        "--seconds",
        "0.2",
        "--events",
        "400",
        "--repeats",
        "1",
    ]);
    for key in [
        "ceiling_append_per_s",
        "peer_cqrs_es_per_s",
        "http_command_per_s",
        "projection_lag_p99_ms",
        "rebuild_events_per_s",
        "read_p99_ms",
        "rss_mb",
        "live_chat_hot_room_c64_per_s",
        "live_read_p99_ms",
        "chat8_dm_c16_per_s",
        "chat8_socket_delivery_p99_ms",
        "proxy_over_direct",
        "proxy_open_streams_rss_mb",
        "tlog_integrate_events_per_s",
        "tlog_integration_delay_p99_ms",
        "http_command_tlog_on_per_s",
        "http_command_tlog_off_per_s",
        "audit_verify_s_per_1m_events",
        "tlog_inclusion_proof_p99_ms",
    ] {
        let v = report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number: {report}"));
        assert!(v > 0.0, "{key} = {v}");
    }
    // the gRPC figures read through the stock client, an example that a
    // whole `cargo test` builds (a single test target does not)
    let client = std::path::Path::new(env!("CARGO_BIN_EXE_loadgen"))
        .with_file_name("examples")
        .join("grpc-client");
    if client.exists() {
        for key in [
            "grpc_read_all_events_per_s",
            "ceiling_catch_up_read_events_per_s",
            "grpc_subscribers_rss_mb",
        ] {
            let v = report[key].as_f64().unwrap_or(0.0);
            assert!(v > 0.0, "{key} = {v}: {report}");
        }
        assert!(report["grpc_subscription_lag_p99_ms"].as_f64().is_some());
    } else {
        eprintln!(
            "{} not built: the gRPC figures are not checked",
            client.display()
        );
    }
    assert!(report["cores"].as_u64().unwrap() >= 1);
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        md.contains("| target | measured | ratio | target met |"),
        "{md}"
    );
    for figure in [
        "http_gift_ingest_b100_c64",
        "http_roomchat_hot_room_c16",
        "read_gift_month_summary",
        "http_live_pay_vip_one_anchor_c16",
        "http_roomchat_send_read_c16",
        "read_live_ranked_lives",
        "http_chat8_dm_c64",
        "chat8_socket_delivery",
        "http_proxy_banana_c16",
        "proxy_direct_gateway_banana_c16",
        "proxy_open_streams_200",
    ] {
        assert!(
            report["figures"][figure]["ops"].as_u64().unwrap() > 0,
            "{figure}: {report}"
        );
    }
    // a sender's next read showed its message every time
    assert_eq!(report["notes"]["roomchat_send_read_misses"], 0, "{report}");
    // each VIP payment credited its anchor once (a price the platform's
    // share took whole credited nothing, and the figure measured half the
    // work it names)
    assert!(
        report["notes"]["live_vip_payments"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(
        report["notes"]["live_vip_anchor_credits"], report["notes"]["live_vip_payments"],
        "{report}"
    );
    // each VIP call a payment of its own
    assert_eq!(
        report["notes"]["live_vip_payments"].as_u64(),
        Some(
            report["figures"]["http_live_pay_vip_one_anchor_c16"]["calls"]
                .as_u64()
                .unwrap()
                - report["figures"]["http_live_pay_vip_one_anchor_c16"]["errors"]
                    .as_u64()
                    .unwrap()
        ),
        "{report}"
    );
}

/// The per-call costs count what PostgreSQL did: the ceiling's calls are
/// one INSERT each, so one write transaction and one commit a call.
#[test]
fn the_benchmark_counts_what_a_command_costs_the_database() {
    let (_dir, report) = run_harness(&[
        "--quick",
        "--users",
        "2",
        "--seconds",
        "0.5",
        "--repeats",
        "1",
        "--costs",
        "--only",
        "ceiling_append_c16",
    ]);
    let cost = &report["per_call_costs"]["ceiling_append_c16"];
    let calls = cost["calls"].as_u64().unwrap();
    assert!(calls > 100, "{report}");
    let per = |k: &str| cost[k].as_f64().unwrap_or_else(|| panic!("{k}: {report}"));
    // the odd transaction of the harness's own samplers aside
    assert!((0.99..1.2).contains(&per("write_transactions")), "{report}");
    // (with the projectors' polls over the quiet seconds)
    assert!((0.99..3.0).contains(&per("commits")), "{report}");
    assert!(per("wal_bytes") > 100.0, "{report}");
}

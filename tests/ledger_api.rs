//! The coin and point ledger over real HTTP and a real database: card keys
//! (seed 002), crypto recharge against a provider on loopback (seed 000),
//! wallets under concurrency, and the auditors' API and CLI.

mod common;

use std::process::Command;
use std::time::Duration;

use common::provider::{self, FakeProvider};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const CARD_SECRET: &str = "card-secret-for-tests";
const AUDIT_TOKEN: &str = "audit-token-for-tests";

fn tidelog(db_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("TIDELOG_CARD_SECRET", CARD_SECRET)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

async fn start(tweak: impl FnOnce(&mut tidelog::config::Config)) -> TestApp {
    TestApp::start_with(|c| {
        c.card_secret = Some(tidelog::config::Secret::new(CARD_SECRET.into()));
        c.audit_token = Some(tidelog::config::Secret::new(AUDIT_TOKEN.into()));
        tweak(c)
    })
    .await
}

/// One HTTP call with any headers; the body parsed as JSON.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.http.request(method, format!("{}{}", app.base, path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{path} answered non-JSON ({status}): {text:?}"));
    (status, v)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn issue_cards(app: &TestApp, points: i64, count: usize) -> Vec<String> {
    let out = tidelog(
        &url_of(&app.db),
        &[
            "cards",
            "issue",
            "--points",
            &points.to_string(),
            "--count",
            &count.to_string(),
        ],
    );
    let codes: Vec<String> = ok(&out).lines().map(str::to_owned).collect();
    assert_eq!(codes.len(), count);
    codes
}

async fn redeem(app: &TestApp, token: &str, code: &str) -> (StatusCode, Value) {
    call(
        app,
        Method::POST,
        "/api/pay/redeem",
        &[("authorization", &bearer(token))],
        Some(json!({"card_key": code})),
    )
    .await
}

async fn history(app: &TestApp, token: &str) -> Vec<Value> {
    let (s, v) = call(
        app,
        Method::GET,
        "/api/user/history",
        &[("authorization", &bearer(token))],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "success");
    v["data"].as_array().unwrap().clone()
}

async fn admin(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call(
        app,
        method,
        path,
        &[("authorization", &bearer(token))],
        body,
    )
    .await
}

async fn adjust(
    app: &TestApp,
    account: i64,
    direction: &str,
    amount: i64,
    op: &str,
) -> (StatusCode, Value) {
    admin(
        app,
        ADMIN_TOKEN,
        Method::POST,
        "/admin/ledger/adjustments",
        Some(
            json!({"account": account.to_string(), "currency": "points", "direction": direction,
                    "amount": amount, "description": "test", "operation_id": op}),
        ),
    )
    .await
}

fn failed(got: &(StatusCode, Value), status: StatusCode) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["status"], "failed", "{}", got.1);
    assert!(
        got.1["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

fn admin_error(got: &(StatusCode, Value), status: StatusCode) {
    assert_eq!(got.0, status, "{}", got.1);
    assert!(
        got.1["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

async fn wallet_events(app: &TestApp) -> i64 {
    count(
        &app.pool,
        "SELECT count(*) FROM events WHERE aggregate_type = 'Wallet'",
    )
    .await
}

#[tokio::test]
async fn a_card_is_used_once_under_50_concurrent_redeems_and_the_history_follows_the_seed() {
    let app = start(|c| c.rate_limits.redeem_failures_per_ip = 1000).await;
    let api = app.api();
    let mut users = vec![];
    for i in 0..10 {
        users.push(api.user(&format!("redeemer{i}")).await);
    }
    let codes = issue_cards(&app, 200, 3).await;
    assert!(
        codes
            .iter()
            .all(|c| c.len() == 19 && c.matches('-').count() == 3),
        "{codes:?}"
    );
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE aggregate_type = 'CardKey'"
        )
        .await,
        3
    );
    // only keyed hashes are stored
    let stored: String = sqlx::query_scalar("SELECT string_agg(aggregate_id || payload::text, ' ') FROM events WHERE aggregate_type = 'CardKey'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    for code in &codes {
        assert!(!stored.contains(&code.replace('-', "")) && !stored.contains(code.as_str()));
    }

    // 50 redeems of one card from 10 accounts, 5 each, all at once
    let mut tasks = vec![];
    for round in 0..5 {
        for (i, (_, token)) in users.iter().enumerate() {
            let (base, http, token, code) = (
                app.base.clone(),
                app.http.clone(),
                token.clone(),
                codes[0].clone(),
            );
            // mixed spellings of the same code
            let code = if (i + round) % 2 == 0 {
                code.to_lowercase()
            } else {
                code
            };
            tasks.push(tokio::spawn(async move {
                let resp = http
                    .post(format!("{base}/api/pay/redeem"))
                    .header("authorization", bearer(&token))
                    .json(&json!({"card_key": code}))
                    .send()
                    .await
                    .unwrap();
                (i, resp.status(), resp.json::<Value>().await.unwrap())
            }));
        }
    }
    let mut winners = std::collections::BTreeSet::new();
    let mut successes = 0;
    for t in tasks {
        let (i, status, v) = t.await.unwrap();
        match status {
            StatusCode::OK => {
                assert_eq!(
                    v,
                    json!({"status": "success", "msg": "充值成功", "new_points": 200})
                );
                winners.insert(i);
                successes += 1;
            }
            StatusCode::CONFLICT => assert_eq!(v["status"], "failed", "{v}"),
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(winners.len(), 1, "one account got the card");
    assert_eq!(
        successes, 5,
        "its own concurrent retries answer the same success"
    );
    let winner = *winners.iter().next().unwrap();
    let (number, token) = users[winner].clone();
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE aggregate_type = 'Wallet'"
        )
        .await,
        1,
        "credited once"
    );

    // the history, newest first, as seed 002 shows it
    let h = history(&app, &token).await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["type"], "redeem");
    assert_eq!(h[0]["amount"], 200);
    assert_eq!(h[0]["balance_after"], 200);
    assert!(h[0]["id"].as_i64().unwrap() > 0);
    let created = h[0]["created_at"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );

    let (s, v) = redeem(&app, &token, &codes[1]).await;
    assert_eq!((s, v["new_points"].clone()), (StatusCode::OK, json!(400)));
    let (s, v) = adjust(&app, number, "debit", 150, "spend-1").await;
    assert_eq!(
        (s, v["balance_after"].clone()),
        (StatusCode::OK, json!(250)),
        "{v}"
    );
    let h = history(&app, &token).await;
    let amounts: Vec<i64> = h.iter().map(|e| e["amount"].as_i64().unwrap()).collect();
    assert_eq!(amounts, [-150, 200, 200]);
    assert_eq!(
        h[0]["balance_after"], 250,
        "latest balance = data[0].balance_after"
    );
    assert_eq!(h[0]["type"], "adjustment");
    assert!(h[0]["id"].as_i64() > h[1]["id"].as_i64());
    // another account's history is its own
    let other = if winner == 0 { 1 } else { 0 };
    assert!(history(&app, &users[other].1).await.is_empty());

    // bad input: the surface's failure shape, nothing written
    let before = wallet_events(&app).await;
    failed(
        &redeem(&app, &token, "not-a-card").await,
        StatusCode::BAD_REQUEST,
    );
    failed(
        &redeem(&app, &token, "2345-6789-ABCD-EFGH").await,
        StatusCode::NOT_FOUND,
    );
    failed(
        &redeem(&app, &users[other].1, &codes[0]).await,
        StatusCode::CONFLICT,
    );
    failed(
        &call(
            &app,
            Method::POST,
            "/api/pay/redeem",
            &[],
            Some(json!({"card_key": codes[2]})),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    );
    failed(
        &call(
            &app,
            Method::POST,
            "/api/pay/redeem",
            &[("authorization", "Bearer forged.token.value")],
            Some(json!({"card_key": codes[2]})),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    );
    failed(
        &call(
            &app,
            Method::POST,
            "/api/pay/redeem",
            &[("authorization", &bearer(&token))],
            Some(json!({"card_key": 12345})),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    let malformed = app
        .http
        .post(format!("{}/api/pay/redeem", app.base))
        .header("authorization", bearer(&token))
        .header("content-type", "application/json")
        .body("{\"card_key\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json::<Value>().await.unwrap()["status"], "failed");
    // JSON only, by its content type (a form or text/plain body is what
    // another site's page could post without a preflight)
    let not_json = app
        .http
        .post(format!("{}/api/pay/redeem", app.base))
        .header("authorization", bearer(&token))
        .header("content-type", "text/plain")
        .body(json!({"card_key": codes[2]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(not_json.json::<Value>().await.unwrap()["status"], "failed");
    failed(
        &call(&app, Method::GET, "/api/user/history", &[], None).await,
        StatusCode::UNAUTHORIZED,
    );
    assert_eq!(wallet_events(&app).await, before);

    // what the read model says about the card
    let (redeemed_by,): (uuid::Uuid,) =
        sqlx::query_as("SELECT redeemed_by FROM card_keys WHERE redeemed_by IS NOT NULL ORDER BY redeemed_at LIMIT 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let owner: uuid::Uuid = sqlx::query_scalar("SELECT account_id FROM accounts WHERE number = $1")
        .bind(number)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(redeemed_by, owner);
    app.stop().await;
}

#[tokio::test]
async fn failed_redeems_are_limited_per_account_even_for_a_valid_card() {
    let app = start(|c| {
        c.rate_limits.redeem_failures_per_account = 3;
    })
    .await;
    let (_, token) = app.api().user("guesser").await;
    let codes = issue_cards(&app, 10, 1).await;
    for _ in 0..3 {
        failed(
            &redeem(&app, &token, "2345-6789-ABCD-EFGH").await,
            StatusCode::NOT_FOUND,
        );
    }
    failed(
        &redeem(&app, &token, &codes[0]).await,
        StatusCode::TOO_MANY_REQUESTS,
    );
    assert_eq!(wallet_events(&app).await, 0);
    // another account is not held back by this one's failures
    let (_, other) = app.api().user("honest").await;
    let (s, v) = redeem(&app, &other, &codes[0]).await;
    assert_eq!(
        (s, v["new_points"].clone()),
        (StatusCode::OK, json!(10)),
        "{v}"
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_spends_on_one_wallet_never_overdraw_across_two_processes() {
    let app = start(|_| {}).await;
    let db = app.db.clone();
    let second = TestApp::start_on(db, |c| {
        c.card_secret = Some(tidelog::config::Secret::new(CARD_SECRET.into()));
    })
    .await;
    let (number, token) = app.api().user("spender").await;
    let (s, v) = adjust(&app, number, "credit", 1000, "fund").await;
    assert_eq!(
        (s, v["balance_after"].clone()),
        (StatusCode::OK, json!(1000)),
        "{v}"
    );

    let mut tasks = vec![];
    for i in 0..64 {
        let base = if i % 2 == 0 {
            app.base.clone()
        } else {
            second.base.clone()
        };
        let http = app.http.clone();
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(format!("{base}/admin/ledger/adjustments"))
                .header("authorization", bearer(ADMIN_TOKEN))
                .json(&json!({"account": number.to_string(), "currency": "points", "direction": "debit",
                              "amount": 70, "description": "spend", "operation_id": format!("spend-{i}")}))
                .send()
                .await
                .unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        }));
    }
    let mut ok_count = 0;
    let mut balances = vec![];
    for t in tasks {
        let (s, v) = t.await.unwrap();
        match s {
            StatusCode::OK => {
                ok_count += 1;
                balances.push(v["balance_after"].as_i64().unwrap());
            }
            StatusCode::CONFLICT => assert_eq!(v["error"], "insufficient balance"),
            other => panic!("{other}: {v}"),
        }
    }
    assert_eq!(ok_count, 1000 / 70, "exactly floor(balance/amount) succeed");
    balances.sort();
    let expected: Vec<i64> = (0..14).map(|k| 20 + 70 * k).collect();
    assert_eq!(
        balances, expected,
        "every success saw a distinct non-negative balance"
    );
    let h = history(&app, &token).await;
    assert_eq!(h[0]["balance_after"], 20);
    assert_eq!(h.len(), 15);

    // a retry with the same operation id has one effect and the same answer
    let before = wallet_events(&app).await;
    let (s1, v1) = adjust(&app, number, "credit", 5, "refund-1").await;
    let (s2, v2) = adjust(&second, number, "credit", 5, "refund-1").await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(v1, v2);
    assert_eq!(v1["balance_after"], 25);
    admin_error(
        &adjust(&app, number, "credit", 6, "refund-1").await,
        StatusCode::CONFLICT,
    );
    admin_error(
        &adjust(&app, number, "debit", 5, "refund-1").await,
        StatusCode::CONFLICT,
    );
    assert_eq!(wallet_events(&app).await, before + 1);
    // an id older than what the wallet remembers is still recognised
    for i in 0..110 {
        let (s, _) = adjust(&app, number, "credit", 1, &format!("filler-{i}")).await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, v) = adjust(&app, number, "credit", 5, "refund-1").await;
    assert_eq!((s, v), (StatusCode::OK, v1.clone()));
    admin_error(
        &adjust(&app, number, "credit", 7, "refund-1").await,
        StatusCode::CONFLICT,
    );

    // an old debit retried after the balance no longer covers it: still the
    // original answer, not "insufficient"
    let (first_spend, first_after): (String, i64) = sqlx::query_as(
        "SELECT payload::jsonb -> 'WalletDebited' ->> 'operation_id',
                (payload::jsonb -> 'WalletDebited' ->> 'balance_after')::bigint
           FROM events WHERE event_type = 'WalletDebited' ORDER BY global_position LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let (s, v) = adjust(&app, number, "debit", 135, "drain").await;
    assert_eq!(
        (s, v["balance_after"].clone()),
        (StatusCode::OK, json!(0)),
        "{v}"
    );
    let spend = first_spend.strip_prefix("adjust:").unwrap();
    let (s, v) = adjust(&second, number, "debit", 70, spend).await;
    assert_eq!(
        (s, v["balance_after"].clone()),
        (StatusCode::OK, json!(first_after)),
        "{v}"
    );
    admin_error(
        &adjust(&app, number, "debit", 71, spend).await,
        StatusCode::CONFLICT,
    );
    admin_error(
        &adjust(&app, number, "debit", 1, "fresh").await,
        StatusCode::CONFLICT,
    );
    // each process keeps the wallet's last state in memory: a credit on the
    // other process must not leave this one refusing on its stale balance
    assert_eq!(
        adjust(&second, number, "credit", 50, "topup").await.0,
        StatusCode::OK
    );
    let (s, v) = adjust(&app, number, "debit", 50, "after-topup").await;
    assert_eq!(
        (s, v["balance_after"].clone()),
        (StatusCode::OK, json!(0)),
        "{v}"
    );

    // bad input writes nothing
    let before = wallet_events(&app).await;
    let bad_bodies = [
        json!({"account": number.to_string(), "currency": "points", "direction": "credit", "amount": 0, "description": "x", "operation_id": "b1"}),
        json!({"account": number.to_string(), "currency": "points", "direction": "credit", "amount": -5, "description": "x", "operation_id": "b2"}),
        json!({"account": number.to_string(), "currency": "points", "direction": "credit", "amount": 1.5, "description": "x", "operation_id": "b3"}),
        json!({"account": number.to_string(), "currency": "points", "direction": "credit", "amount": "10", "description": "x", "operation_id": "b4"}),
        json!({"account": number.to_string(), "currency": "points", "direction": "credit", "amount": 1e20, "description": "x", "operation_id": "b5"}),
        json!({"account": number.to_string(), "currency": "points", "direction": "credit", "amount": 10_000_000_000_000i64, "description": "x", "operation_id": "b6"}),
        json!({"account": number.to_string(), "currency": "gold", "direction": "credit", "amount": 1, "description": "x", "operation_id": "b7"}),
        json!({"account": number.to_string(), "currency": "points", "direction": "steal", "amount": 1, "description": "x", "operation_id": "b8"}),
        json!({"account": number.to_string(), "currency": "points", "direction": "credit", "amount": 1, "description": "x", "operation_id": ""}),
        json!({"account": number.to_string(), "currency": "points", "direction": "credit", "amount": 1}),
    ];
    for body in bad_bodies {
        let got = admin(
            &app,
            ADMIN_TOKEN,
            Method::POST,
            "/admin/ledger/adjustments",
            Some(body.clone()),
        )
        .await;
        admin_error(&got, StatusCode::BAD_REQUEST);
    }
    let unknown = json!({"account": "nobody-here", "currency": "points", "direction": "credit", "amount": 1, "description": "x", "operation_id": "b9"});
    admin_error(
        &admin(
            &app,
            ADMIN_TOKEN,
            Method::POST,
            "/admin/ledger/adjustments",
            Some(unknown.clone()),
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    admin_error(
        &admin(
            &app,
            AUDIT_TOKEN,
            Method::POST,
            "/admin/ledger/adjustments",
            Some(unknown.clone()),
        )
        .await,
        StatusCode::FORBIDDEN,
    );
    admin_error(
        &admin(
            &app,
            "wrong",
            Method::POST,
            "/admin/ledger/adjustments",
            Some(unknown),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    );
    assert_eq!(wallet_events(&app).await, before);
    second.stop().await;
    app.stop().await;
}

async fn recharge(app: &TestApp, token: &str, user_id: i64, amount: Value) -> (StatusCode, Value) {
    call(
        app,
        Method::POST,
        "/api/payment/process_recharge/",
        &[("authorization", &bearer(token))],
        Some(json!({"user_id": user_id, "crypto_amount": amount})),
    )
    .await
}

async fn status_of(app: &TestApp, token: &str, order: &str) -> (StatusCode, Value) {
    call(
        app,
        Method::GET,
        &format!("/api/payment/check_payment_status/{order}"),
        &[("authorization", &bearer(token))],
        None,
    )
    .await
}

async fn ipn(app: &TestApp, body: &Value, signature: &str) -> (StatusCode, Value) {
    call(
        app,
        Method::POST,
        "/api/payment/ipn",
        &[("x-nowpayments-sig", signature)],
        Some(body.clone()),
    )
    .await
}

async fn coins(app: &TestApp, token: &str) -> i64 {
    let (s, v) = call(
        app,
        Method::GET,
        "/api/users/is_logged_in",
        &[("authorization", &bearer(token))],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["user_info"]["status"], true);
    v["data"]["user_info"]["coin_num"].as_i64().unwrap()
}

fn live_error(got: &(StatusCode, Value), status: StatusCode) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["code"], 1, "{}", got.1);
}

#[tokio::test]
async fn recharge_through_the_provider_credits_once_whatever_the_callbacks() {
    let fake = FakeProvider::start().await;
    let url = fake.url.clone();
    let app = start(move |c| {
        c.payments.api_url = url;
        c.payments.api_key = Some(tidelog::config::Secret::new(provider::API_KEY.into()));
        c.payments.ipn_secret = Some(tidelog::config::Secret::new(provider::IPN_SECRET.into()));
        c.payments.ipn_callback_url = Some("https://example.test/api/payment/ipn".into());
        c.payments.coins_per_unit = 10;
        c.payments.poll_after = Duration::from_secs(1);
    })
    .await;
    let api = app.api();
    let (number, token) = api.user("payer").await;
    let (other_number, other_token) = api.user("bystander").await;
    assert_eq!(coins(&app, &token).await, 0);

    let (s, v) = recharge(&app, &token, number, json!(20)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["code"], 0);
    assert_eq!(v["message"], "Recharge initiated, waiting for confirmation");
    let order = v["order_id"].as_str().unwrap().to_owned();
    let payment_id = v["payment_id"].as_str().unwrap().to_owned();
    assert!(v["pay_address"].as_str().unwrap().starts_with('T'));
    assert_eq!(v["pay_amount"], json!(19.916393));
    assert!(v["qr_code"]
        .as_str()
        .unwrap()
        .starts_with("data:image/svg+xml;base64,"));
    {
        let sent = &fake.state.lock().unwrap().created[0];
        assert_eq!(sent["price_amount"], json!(20.0));
        assert_eq!(sent["price_currency"], "usd");
        assert_eq!(sent["order_id"], order.as_str());
        assert_eq!(
            sent["ipn_callback_url"],
            "https://example.test/api/payment/ipn"
        );
    }
    assert_eq!(
        status_of(&app, &token, &order).await.1,
        json!({"code": 0, "status": "waiting", "message": "Status retrieved"})
    );

    let report = |status: &str| {
        json!({"payment_id": payment_id.parse::<u64>().unwrap(), "payment_status": status,
                                       "order_id": order, "pay_address": "T", "price_amount": 20, "actually_paid": 19.916393})
    };
    // a forged callback changes nothing
    let events = count(&app.pool, "SELECT count(*) FROM events").await;
    live_error(
        &ipn(&app, &report("finished"), "00ff").await,
        StatusCode::UNAUTHORIZED,
    );
    live_error(
        &call(
            &app,
            Method::POST,
            "/api/payment/ipn",
            &[],
            Some(report("finished")),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    );
    let mut tampered = report("finished");
    let sig = provider::sign(&report("confirming"));
    tampered["payment_status"] = json!("finished");
    live_error(&ipn(&app, &tampered, &sig).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        count(&app.pool, "SELECT count(*) FROM events").await,
        events
    );
    assert_eq!(coins(&app, &token).await, 0);

    // out of order and repeated: finished first, then older statuses, then
    // ten concurrent duplicates
    let (s, v) = ipn(
        &app,
        &report("finished"),
        &provider::sign(&report("finished")),
    )
    .await;
    assert_eq!((s, v["code"].clone()), (StatusCode::OK, json!(0)), "{v}");
    for st in ["confirming", "waiting", "partially_paid", "finished"] {
        let (s, _) = ipn(&app, &report(st), &provider::sign(&report(st))).await;
        assert_eq!(s, StatusCode::OK);
    }
    let mut dup = vec![];
    for _ in 0..10 {
        let (base, http, body) = (app.base.clone(), app.http.clone(), report("finished"));
        dup.push(tokio::spawn(async move {
            http.post(format!("{base}/api/payment/ipn"))
                .header("x-nowpayments-sig", provider::sign(&body))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for d in dup {
        assert_eq!(d.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(coins(&app, &token).await, 200, "20 usd × 10 coins, once");
    assert_eq!(
        status_of(&app, &token, &order).await.1["status"],
        "finished"
    );
    let credits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'Wallet' AND payload::text LIKE '%' || $1 || '%'",
    )
    .bind(&order)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(credits, 1);
    let marked: (Option<chrono::DateTime<chrono::Utc>>, Option<String>) = sqlx::query_as(
        "SELECT o.credited_at, c.payload::jsonb->'WalletCredited'->'reference'->>'id'
           FROM payment_orders o LEFT JOIN events c ON c.global_position = o.credit_position
          WHERE o.order_id = $1::uuid",
    )
    .bind(&order)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(marked.0.is_some(), "the order is marked credited");
    assert_eq!(
        marked.1.as_deref(),
        Some(order.as_str()),
        "at its credit's position"
    );
    let reports: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'PaymentOrder' AND aggregate_id = $1 AND event_type = 'PaymentStatusReported'",
    )
    .bind(&order)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        reports, 1,
        "later, older and repeated reports record nothing"
    );
    let meta: Value = sqlx::query_scalar(
        "SELECT metadata::jsonb FROM events WHERE aggregate_type = 'Wallet' ORDER BY global_position LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(meta["surface"], "payment_ipn");
    assert_eq!(meta["actor"], "provider:payments");

    // callbacks stop: the status check asks the provider
    let (_, v) = recharge(&app, &token, number, json!(5.5)).await;
    let order2 = v["order_id"].as_str().unwrap().to_owned();
    fake.set_status(v["payment_id"].as_str().unwrap(), "finished");
    let calls = fake.state.lock().unwrap().status_calls;
    assert_eq!(
        status_of(&app, &token, &order2).await.1["status"],
        "waiting",
        "not quiet for long enough yet"
    );
    assert_eq!(fake.state.lock().unwrap().status_calls, calls);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        status_of(&app, &token, &order2).await.1["status"],
        "finished"
    );
    assert_eq!(coins(&app, &token).await, 255);
    let (_, poll_meta): (i64, Value) = sqlx::query_as(
        "SELECT global_position, payload::jsonb FROM events WHERE aggregate_id = $1 AND event_type = 'PaymentStatusReported'",
    )
    .bind(&order2)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(poll_meta["PaymentStatusReported"]["source"], "poll");

    // partially paid: recorded, nothing credited (documented policy)
    let (_, v) = recharge(&app, &token, number, json!(3)).await;
    let order3 = v["order_id"].as_str().unwrap().to_owned();
    let partial = json!({"payment_id": v["payment_id"].as_str().unwrap().parse::<u64>().unwrap(),
                         "payment_status": "partially_paid", "order_id": order3, "actually_paid": 1.5});
    assert_eq!(
        ipn(&app, &partial, &provider::sign(&partial)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&app, &token, &order3).await.1["status"],
        "partially_paid"
    );
    assert_eq!(coins(&app, &token).await, 255);

    // bad input and strangers
    let before = count(&app.pool, "SELECT count(*) FROM events").await;
    for amount in [
        json!(0),
        json!(-1),
        json!("20"),
        json!(1.001),
        json!(1e300),
        json!(null),
        json!(100_000),
    ] {
        live_error(
            &recharge(&app, &token, number, amount).await,
            StatusCode::BAD_REQUEST,
        );
    }
    live_error(
        &recharge(&app, &token, other_number, json!(20)).await,
        StatusCode::FORBIDDEN,
    );
    live_error(
        &call(
            &app,
            Method::POST,
            "/api/payment/process_recharge/",
            &[],
            Some(json!({"user_id": number, "crypto_amount": 20})),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    );
    live_error(
        &call(
            &app,
            Method::POST,
            "/api/payment/process_recharge/",
            &[("authorization", &bearer(&token))],
            Some(json!({"user_id": "six"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    live_error(
        &status_of(&app, &other_token, &order).await,
        StatusCode::FORBIDDEN,
    );
    live_error(
        &status_of(&app, &token, "not-an-order").await,
        StatusCode::NOT_FOUND,
    );
    live_error(
        &status_of(&app, &token, &uuid::Uuid::new_v4().to_string()).await,
        StatusCode::NOT_FOUND,
    );
    let stranger = json!({"payment_id": 1, "payment_status": "finished", "order_id": uuid::Uuid::new_v4().to_string()});
    live_error(
        &ipn(&app, &stranger, &provider::sign(&stranger)).await,
        StatusCode::NOT_FOUND,
    );
    let wrong_payment = json!({"payment_id": 1, "payment_status": "finished", "order_id": order3});
    live_error(
        &ipn(&app, &wrong_payment, &provider::sign(&wrong_payment)).await,
        StatusCode::BAD_REQUEST,
    );
    let bad_status = json!({"payment_id": 1, "payment_status": "paid-ish", "order_id": order3});
    live_error(
        &ipn(&app, &bad_status, &provider::sign(&bad_status)).await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(
        count(&app.pool, "SELECT count(*) FROM events").await,
        before
    );

    // the provider fails: an error answer, the order recorded as failed
    fake.state.lock().unwrap().down = true;
    live_error(
        &recharge(&app, &token, number, json!(20)).await,
        StatusCode::BAD_GATEWAY,
    );
    let failed_orders = count(
        &app.pool,
        "SELECT count(*) FROM payment_orders WHERE status = 'failed'",
    )
    .await;
    assert_eq!(failed_orders, 1);
    assert_eq!(coins(&app, &token).await, 255);

    let out = tidelog(&url_of(&app.db), &["audit", "verify"]);
    assert!(
        ok(&out).contains("OK"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    app.stop().await;
}

async fn dump(pool: &sqlx::PgPool, sql: &str) -> Vec<Value> {
    sqlx::query_scalar::<_, Value>(&format!("SELECT to_jsonb(t) FROM ({sql}) t"))
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn auditors_see_every_movement_verify_catches_tampering_and_a_replay_is_identical() {
    let app = start(|_| {}).await;
    let api = app.api();
    let (alice, alice_token) = api.user("alice").await;
    let (bob, _) = api.user("bob").await;
    let codes = issue_cards(&app, 50, 2).await;
    let resp = app
        .http
        .post(format!("{}/api/pay/redeem", app.base))
        .header("authorization", bearer(&alice_token))
        .header("x-request-id", "audit-trail-1")
        .json(&json!({"card_key": codes[0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        adjust(&app, alice, "debit", 20, "a1").await.0,
        StatusCode::OK
    );
    assert_eq!(adjust(&app, bob, "credit", 7, "b1").await.0, StatusCode::OK);

    // the auditors' API with the read-only token
    let (s, v) = admin(
        &app,
        AUDIT_TOKEN,
        Method::GET,
        "/admin/ledger/entries?account=alice",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let first = &entries[0];
    assert_eq!(first["balance_before"], 0);
    assert_eq!(first["balance_after"], 50);
    assert_eq!(first["request_id"], "audit-trail-1");
    assert_eq!(first["surface"], "ocean1");
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert!(first["actor"].as_str().unwrap().starts_with("user:"));
    assert_eq!(first["counter"], "external:cards");
    assert_eq!(first["event_hash"].as_str().unwrap().len(), 64);
    let hash: String =
        sqlx::query_scalar("SELECT encode(hash, 'hex') FROM events WHERE global_position = $1")
            .bind(first["position"].as_i64().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(first["event_hash"], hash.as_str());
    assert_eq!(entries[1]["balance_before"], 50);
    assert_eq!(entries[1]["balance_after"], 30);
    assert_eq!(entries[1]["actor"], "admin");
    let (s, v) = admin(
        &app,
        AUDIT_TOKEN,
        Method::GET,
        &format!("/admin/ledger/wallets/{alice}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["wallets"][0]["balance"], 30);
    admin_error(
        &admin(
            &app,
            AUDIT_TOKEN,
            Method::GET,
            "/admin/ledger/entries?currency=gold",
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    admin_error(
        &admin(
            &app,
            AUDIT_TOKEN,
            Method::GET,
            "/admin/ledger/entries?account=nobody",
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    admin_error(
        &call(&app, Method::GET, "/admin/ledger/entries", &[], None).await,
        StatusCode::UNAUTHORIZED,
    );
    // per currency, the postings sum to zero
    let sums = dump(
        &app.pool,
        "SELECT currency, sum(amount)::bigint AS s FROM ledger_postings GROUP BY 1",
    )
    .await;
    assert!(sums.iter().all(|r| r["s"] == 0), "{sums:?}");

    // verify passes; export has every entry
    let url = url_of(&app.db);
    let report: Value =
        serde_json::from_str(&ok(&tidelog(&url, &["audit", "verify", "--json"]))).unwrap();
    assert_eq!(report["discrepancies"], json!([]));
    assert_eq!(report["wallet_events"], 3);
    assert_eq!(report["cards_redeemed"], 1);
    let csv = ok(&tidelog(&url, &["audit", "export", "--format", "csv"]));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("position,created_at,account_id"));
    assert!(lines[1].contains("audit-trail-1") && lines[1].contains(&hash));
    let jsonl = ok(&tidelog(
        &url,
        &["audit", "export", "--format", "jsonl", "--account", "bob"],
    ));
    let rows: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["amount"], 7);
    let future = ok(&tidelog(
        &url,
        &["audit", "export", "--from", "2999-01-01T00:00:00Z"],
    ));
    assert_eq!(future.lines().count(), 1, "only the header");

    // a replay into fresh tables gives identical balances and histories
    let tables = [
        "SELECT * FROM wallets ORDER BY account_id, currency",
        "SELECT * FROM ledger_entries ORDER BY position",
        "SELECT * FROM ledger_postings ORDER BY position, leg",
        "SELECT * FROM card_keys ORDER BY card_id",
    ];
    let mut before = vec![];
    for t in tables {
        before.push(dump(&app.pool, t).await);
    }
    ok(&tidelog(&url, &["projections", "rebuild", "ledger"]));
    for (t, b) in tables.iter().zip(before) {
        assert_eq!(dump(&app.pool, t).await, b, "{t}");
    }

    // a changed read model is named
    sqlx::query("UPDATE wallets SET balance = balance + 1 WHERE currency = 'points' AND account_id = (SELECT account_id FROM accounts WHERE number = $1)")
        .bind(bob)
        .execute(&app.pool)
        .await
        .unwrap();
    let out = tidelog(&url, &["audit", "verify"]);
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("projected balance 8"), "{text}");
    sqlx::query("UPDATE wallets SET balance = balance - 1 WHERE balance = 8")
        .execute(&app.pool)
        .await
        .unwrap();
    ok(&tidelog(&url, &["audit", "verify"]));

    // a superuser edits an event behind the trigger's back: caught
    let mut conn = app.pool.acquire().await.unwrap();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    let changed = sqlx::query(
        "UPDATE events SET payload = replace(payload::text, '\"amount\": 7,', '\"amount\": 700,')::json
          WHERE aggregate_type = 'Wallet' AND payload::text LIKE '%\"amount\": 7,%'",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    sqlx::query("SET session_replication_role = origin")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let out = tidelog(&url, &["audit", "verify"]);
    assert!(!out.status.success(), "tampering must fail the audit");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("hash chain") && text.contains("Wallet/"),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_ocean1_user_sees_redeemed_points_at_login_as_the_frontend_calls_it() {
    let mail = common::smtp::MailCatcher::start().await;
    let smtp = mail.url();
    let app = start(move |c| c.smtp_url = Some(tidelog::config::Secret::new(smtp))).await;
    let email = "points@example.com";
    let ocean = |extra: &[(&'static str, String)]| {
        let mut h = vec![("x-device-id", "browser-1".to_string())];
        h.extend_from_slice(extra);
        h
    };
    let send = |path: &'static str, headers: Vec<(&'static str, String)>, body: Value| {
        let app = &app;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            call(app, Method::POST, path, &h, Some(body)).await
        }
    };
    let (s, _) = send("/api/auth/send_code", ocean(&[]), json!({"email": email})).await;
    assert_eq!(s, StatusCode::OK);
    let code = mail.code_for(email, 0).await;
    let (s, v) = send(
        "/api/auth/register",
        ocean(&[]),
        json!({"email": email, "password": "secret-1", "nickname": "Pt", "invite_code": "", "verify_code": code}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let login = || {
        send(
            "/api/auth/login",
            ocean(&[]),
            json!({"email": email, "password": "secret-1", "device_id": "browser-1", "version": "1.0.0"}),
        )
    };
    let (s, v) = login().await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["points"], 0);
    let token = v["data"]["token"].as_str().unwrap().to_owned();

    let cards = issue_cards(&app, 120, 1).await;
    let headers = ocean(&[
        ("x-user-email", email.to_string()),
        ("authorization", bearer(&token)),
    ]);
    let (s, v) = send(
        "/api/pay/redeem",
        headers.clone(),
        json!({"email": email, "card_key": cards[0]}),
    )
    .await;
    assert_eq!(
        (s, v["new_points"].clone()),
        (StatusCode::OK, json!(120)),
        "{v}"
    );
    // the body's email must be the session's
    let (s, v) = send(
        "/api/pay/redeem",
        headers,
        json!({"email": "else@example.com", "card_key": cards[0]}),
    )
    .await;
    failed(&(s, v), StatusCode::FORBIDDEN);

    let (s, v) = login().await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["points"], 120);
    app.stop().await;
}

/// Under load an operator's adjustment and a card redeem answer from their
/// own events before the ledger read model has them (they read nothing it
/// holds); the caller's next read still shows them.
#[tokio::test]
async fn wallet_operations_answer_before_their_projection_and_the_next_read_shows_them() {
    let app = start(|c| c.read_your_writes_timeout = Duration::from_secs(30)).await;
    let (first, _) = app.api().user("first").await;
    let (number, token) = app.api().user("waiter").await;
    let cards = issue_cards(&app, 50, 1).await;
    let entries = "SELECT count(*) FROM ledger_entries";
    let before = count(&app.pool, entries).await;
    let held = hold_projector(&app.pool, "ledger").await;
    // a lone operation waits for its read model, as before
    let lone = {
        let (http, base) = (app.http.clone(), app.base.clone());
        let body = json!({"account": first.to_string(), "currency": "points", "direction": "credit",
                          "amount": 5, "description": "test", "operation_id": "lone"});
        tokio::spawn(async move {
            let resp = http
                .post(format!("{base}/admin/ledger/adjustments"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        })
    };
    eventually("the lone operation is stored", || async {
        wallet_events(&app).await == 1
    })
    .await;
    assert!(!lone.is_finished());
    let soon = Duration::from_secs(10);
    let (s, v) = tokio::time::timeout(soon, adjust(&app, number, "credit", 30, "deferred"))
        .await
        .expect("the adjustment answered while its projector was held");
    assert_eq!(
        (s, v["balance_after"].clone()),
        (StatusCode::OK, json!(30)),
        "{v}"
    );
    let (s, v) = tokio::time::timeout(soon, redeem(&app, &token, &cards[0]))
        .await
        .expect("the redeem answered while its projector was held");
    assert_eq!(
        (s, v["new_points"].clone()),
        (StatusCode::OK, json!(80)),
        "{v}"
    );
    assert_eq!(
        count(&app.pool, entries).await,
        before,
        "answered before projected"
    );
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        held.rollback().await.unwrap();
    });
    // the caller's next read waits for what was answered
    let h = history(&app, &token).await;
    let amounts: Vec<i64> = h.iter().map(|e| e["amount"].as_i64().unwrap()).collect();
    assert_eq!(amounts, [50, 30]);
    assert_eq!(h[0]["balance_after"], 80);
    release.await.unwrap();
    let (s, v) = lone.await.unwrap();
    assert_eq!(
        (s, v["balance_after"].clone()),
        (StatusCode::OK, json!(5)),
        "{v}"
    );
    app.stop().await;
}

//! A frontend on its own origin, in a real browser (Debian's headless
//! Chromium): a page signs in on Ocean1 and reads its point history with
//! only what Ocean1's frontend sends — the browser's cookie and its
//! `x-user-email` / `x-device-id` headers; a page from an origin that is
//! not configured gets nothing.
//!
//! Needs `chromium` (`.ci/run` installs it when it can, and then sets
//! `TIDELOG_REQUIRE_BROWSER=1`, which makes its absence a failure).

mod common;

use std::sync::{Arc, Mutex};

use axum::response::Html;
use common::smtp::MailCatcher;
use common::*;
use serde_json::json;

fn chromium() -> Option<std::path::PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

/// Serves one page on its own loopback origin; answers the origin.
async fn page_server(html: Arc<Mutex<String>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = html.clone();
            async move { Html(html.lock().unwrap().clone()) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    origin
}

/// The page's `#out` after its script ran (Chromium waits for the page's
/// fetches within the virtual time budget, then prints the DOM).
async fn run_page(browser: std::path::PathBuf, url: String) -> String {
    let profile = open_tempdir();
    run_page_in(browser, url, profile.path()).await
}

/// [`run_page`] in a browser profile kept between runs (its cookies too).
async fn run_page_in(
    browser: std::path::PathBuf,
    url: String,
    profile: &std::path::Path,
) -> String {
    let dir = profile.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=15000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", dir.display()))
            .arg(url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = dom.find("<pre id=\"out\">").expect("the page rendered") + "<pre id=\"out\">".len();
    let end = dom[start..].find("</pre>").unwrap() + start;
    dom[start..end].to_owned()
}

fn page(api: &str, email: &str) -> String {
    // what Ocean1's frontend does: no token of its own, only cookies and headers
    format!(
        r#"<!doctype html><html><body><pre id="out">pending</pre><script>
const api = {api:?}, email = {email:?}, device = "browser-1";
const out = (t) => {{ document.getElementById("out").textContent = t; }};
(async () => {{
  try {{
    const login = await fetch(api + "/api/auth/login", {{
      method: "POST", credentials: "include",
      headers: {{ "content-type": "application/json", "x-device-id": device }},
      body: JSON.stringify({{ email, password: "secret-1", device_id: device, version: "1.0.0" }}),
    }});
    const signed = await login.json();
    const history = await fetch(api + "/api/user/history", {{
      credentials: "include", headers: {{ "x-user-email": email, "x-device-id": device }},
    }});
    out("login " + login.status + " " + signed.status + "; history " + history.status + " " + (await history.text()));
  }} catch (e) {{ out("blocked " + e); }}
}})();
</script></body></html>"#
    )
}

#[tokio::test]
async fn a_frontend_on_an_allowed_origin_signs_in_with_cookies_and_reads_history_and_another_origin_gets_nothing(
) {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("TIDELOG_REQUIRE_BROWSER").is_err(),
            "TIDELOG_REQUIRE_BROWSER is set but chromium is not installed"
        );
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let (allowed_html, other_html) = (Arc::default(), Arc::default());
    let allowed = page_server(Arc::clone(&allowed_html)).await;
    let other = page_server(Arc::clone(&other_html)).await;
    let mail = MailCatcher::start().await;
    let smtp = mail.url();
    let origin = allowed.clone();
    let app = TestApp::start_with(move |c| {
        c.smtp_url = Some(tidelog::config::Secret::new(smtp));
        c.browser.cors_origins = Some(vec![origin]);
    })
    .await;

    // the account exists, proven on this device
    let email = "browser@example.com";
    let post = |path: &str, body: serde_json::Value| {
        app.http
            .post(format!("{}{path}", app.base))
            .header("x-device-id", "browser-1")
            .json(&body)
            .send()
    };
    assert!(post("/api/auth/send_code", json!({"email": email}))
        .await
        .unwrap()
        .status()
        .is_success());
    let code = mail.code_for(email, 0).await;
    let registered = post(
        "/api/auth/register",
        json!({"email": email, "password": "secret-1", "nickname": "Browser", "invite_code": "", "verify_code": code}),
    )
    .await
    .unwrap();
    assert!(registered.status().is_success());

    *allowed_html.lock().unwrap() = page(&app.base, email);
    *other_html.lock().unwrap() = page(&app.base, email);
    let seen = run_page(browser.clone(), format!("{allowed}/")).await;
    assert!(
        seen.starts_with("login 200 success; history 200 "),
        "{seen}"
    );
    let history: serde_json::Value = serde_json::from_str(
        seen.split_once("history 200 ")
            .unwrap()
            .1
            .replace("&amp;", "&")
            .as_str(),
    )
    .unwrap();
    assert_eq!(history["status"], "success", "{history}");

    let refused = run_page(browser, format!("{other}/")).await;
    assert!(refused.starts_with("blocked TypeError"), "{refused}");
    app.stop().await;
}

/// A signed-in victim's browser visits a page of another site on the same
/// host (another port: the same *site*, so a `SameSite=Lax` cookie goes
/// along) that tries to spend the victim's coins with only the cookie: a
/// `text/plain` fetch, a form post, a body-less form post with the
/// parameters in the query (no content type to refuse: only the origin
/// check stops it), and a JSON fetch. None may move a coin; the victim's
/// own frontend can.
async fn cross_site_spending_is_refused(same_site: tidelog::config::SameSite) {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("TIDELOG_REQUIRE_BROWSER").is_err(),
            "TIDELOG_REQUIRE_BROWSER is set but chromium is not installed"
        );
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let (own_html, evil_html) = (Arc::default(), Arc::default());
    let own = page_server(Arc::clone(&own_html)).await;
    let evil = page_server(Arc::clone(&evil_html)).await;
    let mail = MailCatcher::start().await;
    let smtp = mail.url();
    let origin = own.clone();
    let app = TestApp::start_with(move |c| {
        c.smtp_url = Some(tidelog::config::Secret::new(smtp));
        c.browser.cors_origins = Some(vec![origin]);
        c.browser.cookie_same_site = same_site;
    })
    .await;
    let email = "victim@example.com";
    let post = |path: &str, body: serde_json::Value| {
        app.http
            .post(format!("{}{path}", app.base))
            .header("x-device-id", "browser-1")
            .json(&body)
            .send()
    };
    assert!(post("/api/auth/send_code", json!({"email": email}))
        .await
        .unwrap()
        .status()
        .is_success());
    let code = mail.code_for(email, 0).await;
    assert!(post(
        "/api/auth/register",
        json!({"email": email, "password": "secret-1", "nickname": "Victim", "invite_code": "", "verify_code": code}),
    )
    .await
    .unwrap()
    .status()
    .is_success());
    let coins = app
        .http
        .post(format!("{}/admin/ledger/adjustments", app.base))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .json(
            &json!({"account": email, "currency": "coins", "direction": "credit",
                       "amount": 40, "description": "test coins", "operation_id": "csrf-coins"}),
        )
        .send()
        .await
        .unwrap();
    assert!(coins.status().is_success());
    // an anchor sells a subscription for 20 coins
    let (_, anchor_token) = app.api().user("anchor1").await;
    let anchor = app
        .http
        .get(format!("{}/api/users/is_logged_in", app.base))
        .bearer_auth(&anchor_token)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["data"]["user_info"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let priced = app
        .http
        .post(format!("{}/api/anchor/subscription", app.base))
        .bearer_auth(&anchor_token)
        .json(&json!({"amount": 20}))
        .send()
        .await
        .unwrap();
    assert!(priced.status().is_success());

    let profile = open_tempdir();
    let api = &app.base;
    // the victim signs in on the frontend (the browser keeps the cookie)
    *own_html.lock().unwrap() = format!(
        r#"<!doctype html><html><body><pre id="out">pending</pre><script>
const api = {api:?};
(async () => {{
  const login = await fetch(api + "/api/auth/login", {{
    method: "POST", credentials: "include",
    headers: {{ "content-type": "application/json", "x-device-id": "browser-1" }},
    body: JSON.stringify({{ email: {email:?}, password: "secret-1", device_id: "browser-1", version: "1.0.0" }}),
  }});
  document.getElementById("out").textContent = "login " + login.status;
}})();
</script></body></html>"#
    );
    let seen = run_page_in(browser.clone(), format!("{own}/"), profile.path()).await;
    assert_eq!(seen, "login 200");

    // the other site tries, with the cookie the browser attaches
    *evil_html.lock().unwrap() = format!(
        r#"<!doctype html><html><body><pre id="out">pending</pre>
<iframe name="sink" style="display:none"></iframe>
<form id="f" method="POST" target="sink" action="{api}/api/live/subscribe" enctype="text/plain">
<input name='{{"anchor_id":"{anchor}","x":"' value='"}}'></form>
<iframe name="sink2" style="display:none"></iframe>
<form id="g" method="POST" target="sink2" action="{api}/api/live/subscribe?anchor_id={anchor}"></form>
<script>
const api = {api:?}, body = JSON.stringify({{ anchor_id: {anchor:?} }});
(async () => {{
  const tries = [];
  for (const type of ["text/plain", "application/x-www-form-urlencoded"]) {{
    try {{
      await fetch(api + "/api/live/subscribe", {{ method: "POST", mode: "no-cors", credentials: "include",
        headers: {{ "content-type": type }}, body }});
      tries.push("sent");
    }} catch (e) {{ tries.push("failed"); }}
  }}
  try {{
    const r = await fetch(api + "/api/live/subscribe", {{ method: "POST", credentials: "include",
      headers: {{ "content-type": "application/json" }}, body }});
    tries.push("json " + r.status);
  }} catch (e) {{ tries.push("json blocked"); }}
  document.getElementById("f").submit();
  // no body at all: the parameters in the query, as the seed allows
  document.getElementById("g").submit();
  setTimeout(() => {{ document.getElementById("out").textContent = tries.join(", "); }}, 1500);
}})();
</script></body></html>"#
    );
    let seen = run_page_in(browser.clone(), format!("{evil}/"), profile.path()).await;
    assert!(seen.contains("sent"), "the attempts ran: {seen}");
    let paid = count(
        &app.pool,
        "SELECT count(*) FROM events WHERE event_type = 'SubscriptionPaid'",
    )
    .await;
    assert_eq!(paid, 0, "another site spent the victim's coins ({seen})");

    // the victim's own frontend can (the cookie works: the refusal above was the origin's)
    *own_html.lock().unwrap() = format!(
        r#"<!doctype html><html><body><pre id="out">pending</pre><script>
const api = {api:?};
(async () => {{
  const r = await fetch(api + "/api/live/subscribe", {{ method: "POST", credentials: "include",
    headers: {{ "content-type": "application/json" }}, body: JSON.stringify({{ anchor_id: {anchor:?} }}) }});
  const v = await r.json();
  document.getElementById("out").textContent = "subscribe " + r.status + " " + v.code;
}})();
</script></body></html>"#
    );
    let seen = run_page_in(browser, format!("{own}/"), profile.path()).await;
    assert_eq!(seen, "subscribe 200 0");
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'SubscriptionPaid'"
        )
        .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_page_of_another_site_cannot_spend_coins_with_a_lax_cookie() {
    cross_site_spending_is_refused(tidelog::config::SameSite::Lax).await;
}

#[tokio::test]
async fn a_page_of_another_site_cannot_spend_coins_with_a_samesite_none_cookie() {
    cross_site_spending_is_refused(tidelog::config::SameSite::None).await;
}

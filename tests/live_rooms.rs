//! Seed 000's live rooms over real HTTP and PostgreSQL: anchors' rooms from
//! SillyTavern cards, lists, tag search, tags, ranking, both chats, VIP
//! payments, subscriptions, follows and bad input.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn tidelog(db_url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(args)
        .env("DATABASE_URL", db_url)
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

/// A frontend of the live site: one session (or none).
#[derive(Clone)]
struct Site {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Site {
    fn guest(app: &TestApp) -> Self {
        Self {
            base: app.base.clone(),
            http: app.http.clone(),
            token: None,
        }
    }

    async fn user(app: &TestApp, name: &str) -> (Self, String) {
        let (_, token) = app.api().user(name).await;
        let site = Self {
            token: Some(token),
            ..Self::guest(app)
        };
        let (_, v) = site.get("/api/users/is_logged_in").await;
        let uid = v["data"]["user_info"]["uid"].as_str().unwrap().to_owned();
        (site, uid)
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r
    }

    async fn send(r: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON answer ({status}): {text:?}"));
        (status, v)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        Self::send(self.req(Method::GET, path)).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        Self::send(self.req(Method::POST, path).json(&body)).await
    }
}

fn success(got: &(StatusCode, Value)) -> &Value {
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert_eq!(got.1["code"], 0, "{}", got.1);
    &got.1
}

/// Seed 000's failure: `{"code": 1, "msg"}` with the status.
fn refused(got: &(StatusCode, Value), status: StatusCode) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["code"], 1, "{}", got.1);
    assert!(
        got.1["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

fn v2_card(name: &str, tags: &[&str]) -> Value {
    json!({"spec": "chara_card_v2", "spec_version": "2.0",
           "create_date": "2025-9-16 @21h 19m 03s 522ms",
           "data": {"name": name, "description": "a princess", "first_mes": "Hello!", "tags": tags}})
}

/// A card PNG as SillyTavern exports one: the card as base64 JSON in a
/// `chara` tEXt chunk after the picture.
fn card_png(card: &Value, side: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, side, side);
    enc.set_color(png::ColorType::Rgb);
    let mut w = enc.write_header().unwrap();
    // noise, so a large picture stays large once compressed
    let mut x = 0x2545_f491u32;
    let pixels: Vec<u8> = (0..side * side * 3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    w.write_image_data(&pixels).unwrap();
    let text = base64::engine::general_purpose::STANDARD.encode(card.to_string());
    w.write_text_chunk(&png::text_metadata::TEXtChunk::new("chara", text))
        .unwrap();
    w.finish().unwrap();
    out
}

async fn create_json_room(anchor: &Site, card: Value, extra: Value) -> Value {
    let mut body = extra;
    body["character"] = card;
    let got = anchor.post("/api/anchor/rooms", body).await;
    success(&got)["data"].clone()
}

async fn create_png_room(
    anchor: &Site,
    png: Vec<u8>,
    fields: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new().part(
        "card",
        reqwest::multipart::Part::bytes(png)
            .file_name("card.png")
            .mime_str("image/png")
            .unwrap(),
    );
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    Site::send(
        anchor
            .req(Method::POST, "/api/anchor/rooms")
            .multipart(form),
    )
    .await
}

async fn go_live(anchor: &Site, room: &str, live: bool) {
    success(
        &anchor
            .post(
                &format!("/api/anchor/rooms/{room}/live"),
                json!({"live": live}),
            )
            .await,
    );
}

async fn coins(app: &TestApp, site: &Site, amount: i64, op: &str) {
    let (_, v) = site.get("/api/users/is_logged_in").await;
    let name = v["data"]["user_info"]["uname"].as_str().unwrap().to_owned();
    let resp = app
        .http
        .post(format!("{}/admin/ledger/adjustments", app.base))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .json(
            &json!({"account": name, "currency": "coins", "direction": "credit",
                      "amount": amount, "description": "test coins", "operation_id": op}),
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

async fn balance(site: &Site) -> i64 {
    let (_, v) = site.get("/api/users/is_logged_in").await;
    v["data"]["user_info"]["coin_num"].as_i64().unwrap()
}

fn names(lives: &Value) -> Vec<String> {
    lives["data"]["lives_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["character_name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_anchor_s_rooms_from_cards_go_live_and_viewers_list_search_rank_and_read_them() {
    let app = TestApp::start().await;
    let (anchor, uid) = Site::user(&app, "pride88").await;
    let guest = Site::guest(&app);

    let koto = create_json_room(
        &anchor,
        v2_card("Kotohime", &["Touhou", "Princess", "touhou"]),
        json!({"title": "Tea time", "describe": "a quiet stream", "language": "en"}),
    )
    .await;
    let koto_id = koto["room_id"].as_str().unwrap().to_owned();
    assert_eq!(koto_id.len(), 16);
    assert!(koto_id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(koto["character_date"], "2025-9-16 @21h 19m 03s 522ms");
    assert_eq!(
        koto["room_name"],
        format!("{uid}_Kotohime_2025-9-16 @21h 19m 03s 522ms")
    );
    assert_eq!(koto["image_path"], "");

    let sera_png = card_png(
        &json!({"spec": "chara_card_v2", "data": {"name": "Seraphina", "tags": ["Fantasy", "Magic"]}}),
        16,
    );
    let sera = create_png_room(
        &anchor,
        sera_png.clone(),
        &[("title", "Forest"), ("room_type", "0")],
    )
    .await;
    let sera = success(&sera)["data"].clone();
    let sera_id = sera["room_id"].as_str().unwrap().to_owned();
    let image_path = sera["image_path"].as_str().unwrap().to_owned();
    assert!(
        image_path.starts_with(&format!("{uid}/characters/Seraphina")),
        "{image_path}"
    );
    assert!(image_path.ends_with(".png"));
    // a card without a date gets its creation time as SillyTavern writes it
    let date = sera["character_date"].as_str().unwrap();
    assert!(date.contains(" @") && date.ends_with("ms"), "{date}");
    let picture = app
        .http
        .get(format!("{}/api/live/images/{image_path}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(picture.status(), StatusCode::OK);
    assert_eq!(picture.headers()["content-type"], "image/png");
    assert_eq!(picture.bytes().await.unwrap().to_vec(), sera_png);

    // a V1 card, never live
    let old = create_json_room(
        &anchor,
        json!({"name": "Reimu", "tags": "Touhou, Shrine"}),
        json!({}),
    )
    .await;
    let old_id = old["room_id"].as_str().unwrap().to_owned();

    let lives = success(&guest.get("/api/live/get_all_lives").await).clone();
    assert_eq!(names(&lives), Vec::<String>::new(), "nothing is live yet");
    go_live(&anchor, &koto_id, true).await;
    go_live(&anchor, &sera_id, true).await;
    go_live(&anchor, &koto_id, true).await;

    let lives = success(&guest.get("/api/live/get_all_lives").await).clone();
    let mut got = names(&lives);
    got.sort();
    assert_eq!(got, ["Kotohime", "Seraphina"]);
    let k = lives["data"]["lives_info"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == koto_id.as_str())
        .unwrap();
    assert_eq!(k["uid"], uid.as_str());
    assert_eq!(k["username"], "pride88");
    assert_eq!(k["live_num"], 0);
    assert_eq!(k["tags"], json!(["Touhou", "Princess"]));
    assert_eq!(
        k["room_info"],
        json!({"title": "Tea time", "coin_num": 0, "describe": "a quiet stream", "room_type": 0})
    );
    // tag search, any case, from the query string or a JSON body
    let touhou = success(&guest.get("/api/live/get_all_lives?search_tag=TOUHOU").await).clone();
    assert_eq!(names(&touhou), ["Kotohime"]);
    let body = Site::send(
        guest
            .req(Method::GET, "/api/live/get_all_lives")
            .json(&json!({"search_tag": "magic"})),
    )
    .await;
    assert_eq!(names(success(&body)), ["Seraphina"]);
    let none = success(&guest.get("/api/live/get_all_lives?search_tag=Shrine").await).clone();
    assert_eq!(names(&none), Vec::<String>::new(), "Reimu is not live");

    let tags = success(&guest.get("/api/live/get_all_tags/").await).clone();
    assert_eq!(tags["status"], "success");
    assert_eq!(
        tags["tags"],
        json!(["Fantasy", "Magic", "Princess", "Shrine", "Touhou"])
    );

    // the anchor's chat: two AI replies in Kotohime's room, one in Seraphina's,
    // all in this clock hour (the ranking counts an hour's activity in full)
    let into_hour = chrono::Utc::now().timestamp() % 3600;
    if !(150..3570).contains(&into_hour) {
        let wait = (150 - into_hour).rem_euclid(3600) as u64;
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    let stamp = |m: i64| {
        tidelog::timefmt::sillytavern_send_date(
            (now - chrono::Duration::minutes(m)).with_timezone(&chrono::Utc),
            chrono_tz::Asia::Shanghai,
        )
    };
    let chat = json!([
        {"name": "pride88", "is_user": true, "send_date": stamp(3), "mes": "Good evening"},
        {"name": "Kotohime", "is_user": false, "send_date": stamp(1), "mes": "Welcome to my castle."},
        {"name": "Kotohime", "is_user": false, "send_date": stamp(0), "mes": "Tea?"},
        {"name": "Kotohime", "is_user": false, "is_system": true, "send_date": stamp(0), "mes": "(hidden)"}
    ]);
    let got = anchor
        .post(
            &format!("/api/anchor/rooms/{koto_id}/messages"),
            chat.clone(),
        )
        .await;
    assert_eq!(
        success(&got)["data"],
        json!({"recorded": 3, "skipped": 1, "undated": []})
    );
    let again = anchor
        .post(&format!("/api/anchor/rooms/{koto_id}/messages"), chat)
        .await;
    assert_eq!(
        success(&again)["data"],
        json!({"recorded": 0, "skipped": 4, "undated": []})
    );
    let file = format!(
        "{}\n{}\n",
        json!({"user_name": "pride88", "character_name": "Seraphina", "create_date": "2025-9-21@21h52m00s", "chat_metadata": {}}),
        json!({"name": "Seraphina", "is_user": false, "send_date": stamp(1), "mes": "The forest is calm.", "extra": {}})
    );
    let got = Site::send(
        anchor
            .req(
                Method::POST,
                &format!("/api/anchor/rooms/{sera_id}/messages"),
            )
            .header("content-type", "application/x-ndjson")
            .body(file),
    )
    .await;
    assert_eq!(
        success(&got)["data"],
        json!({"recorded": 1, "skipped": 0, "undated": []})
    );
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'LiveChatRecorded'"
        )
        .await,
        4,
        "a resent chat is recorded once"
    );

    // the ranking: seed 000's example, 2 recent AI replies 3.0, one 1.5
    let ranked = success(&guest.get("/api/live/get_ranked_lives/").await).clone();
    assert_eq!(ranked["status"], "success");
    let list = ranked["data"]["lives_info"].as_array().unwrap();
    assert_eq!(names(&ranked), ["Kotohime", "Seraphina"]);
    assert_eq!(list[0]["score"], 3.0);
    assert_eq!(list[0]["ai_reply_count"], 2);
    assert_eq!(list[0]["last_ai_reply"], stamp(0).as_str());
    assert_eq!(list[0]["language"], "en");
    assert_eq!(list[1]["score"], 1.5);
    assert_eq!(list[1]["ai_reply_count"], 1);
    success(&guest.get("/api/live/get_ranked_lives").await);
    // a browser's gzip gets the same answer compressed
    let zipped = guest
        .req(Method::GET, "/api/live/get_ranked_lives/")
        .header("accept-encoding", "gzip, deflate, br")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let bytes = zipped.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), ranked);

    // the chat as viewers read it, oldest first
    let history = success(
        &guest
            .get(&format!(
                "/api/live/get_live_chat_history?room_id={koto_id}"
            ))
            .await,
    )
    .clone();
    assert_eq!(history["data"]["uid"], uid.as_str());
    assert_eq!(history["data"]["username"], "pride88");
    let lines = history["data"]["chat_info"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0],
        json!({"is_user": true, "live_message": "Good evening", "sender_name": "pride88", "send_date": stamp(3)})
    );
    assert_eq!(lines[2]["sender_name"], "Kotohime");
    assert_eq!(lines[2]["is_user"], false);

    // the analysts' ranking as it stood: before anything went live, and now
    let url = url_of(&app.db);
    let before: Value = serde_json::from_str(&ok(&tidelog(
        &url,
        &["live", "ranking", "--as-of", "2020-01-01T00:00:00Z"],
    )))
    .unwrap();
    assert_eq!(before["data"]["lives_info"], json!([]));
    let later = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let as_of: Value =
        serde_json::from_str(&ok(&tidelog(&url, &["live", "ranking", "--as-of", &later]))).unwrap();
    assert_eq!(names(&as_of), ["Kotohime", "Seraphina"]);
    assert_eq!(as_of["data"]["lives_info"][0]["score"], 3.0);

    // ending the live removes it from the lists; the room stays the anchor's
    go_live(&anchor, &sera_id, false).await;
    let lives = success(&guest.get("/api/live/get_all_lives").await).clone();
    assert_eq!(names(&lives), ["Kotohime"]);
    let mine = success(&anchor.get("/api/anchor/rooms").await).clone();
    assert_eq!(mine["data"]["rooms"].as_array().unwrap().len(), 3);
    let _ = old_id;
    app.stop().await;
}

#[tokio::test]
async fn viewers_chat_as_accounts_or_guests_and_read_the_last_twenty() {
    let app = TestApp::start_with(|c| c.live.chat_per_minute = 3).await;
    let (anchor, anchor_uid) = Site::user(&app, "anchor1").await;
    let (bob, bob_uid) = Site::user(&app, "bob").await;
    let guest = Site::guest(&app);
    let room = create_json_room(&anchor, v2_card("Kotohime", &[]), json!({})).await;
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    go_live(&anchor, &room_id, true).await;

    let say = |site: Site, name: &str, text: &str| {
        let body =
            json!({"room_id": room_id, "room_name": "x", "username": name, "user_message": text});
        async move { site.post("/api/live/save_user_chat_history", body).await }
    };
    success(&say(guest.clone(), "游客1234", "hello").await);
    // a signed-in viewer is the account, whatever the body says
    success(&say(bob.clone(), "alice", "hi all").await);
    // a guest cannot take a registered name, in any case
    refused(
        &say(guest.clone(), "BOB", "it's me").await,
        StatusCode::CONFLICT,
    );
    refused(
        &say(guest.clone(), "anchor1", "it's me").await,
        StatusCode::CONFLICT,
    );
    // nor one that passes for it: full-width letters, a zero-width space,
    // a Cyrillic look-alike, a variation selector (issue 32's attacks)
    for alike in [
        "\u{ff42}\u{ff4f}\u{ff42}",
        "b\u{200b}ob",
        "b\u{043e}b",
        "anchor\u{fe0f}1",
    ] {
        refused(
            &say(guest.clone(), alike, "it's me").await,
            StatusCode::CONFLICT,
        );
    }
    // a chatter's rate: three a minute here
    success(&say(bob.clone(), "", "two").await);
    success(&say(bob.clone(), "", "three").await);
    refused(
        &say(bob.clone(), "", "four").await,
        StatusCode::TOO_MANY_REQUESTS,
    );
    for i in 0..22 {
        success(&say(guest.clone(), &format!("游客{i}"), &format!("m{i}")).await);
    }
    let history = success(
        &guest
            .get(&format!(
                "/api/live/get_user_chat_history?room_id={room_id}"
            ))
            .await,
    )
    .clone();
    let d = &history["data"];
    assert_eq!(d["room_id"], room_id.as_str());
    assert_eq!(d["uid"], anchor_uid.as_str());
    assert_eq!(
        d["username"], "Kotohime",
        "the seed: the anchor's character name"
    );
    assert!(d["room_name"].as_str().unwrap().starts_with(&anchor_uid));
    let msgs = d["chat_info"].as_array().unwrap();
    assert_eq!(msgs.len(), 20);
    assert_eq!(msgs[19]["user_message"], "m21");
    assert_eq!(msgs[19]["username"], "游客21");
    assert_eq!(msgs[19]["uid"], "");
    assert_eq!(msgs[0]["user_message"], "m2");
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT username, uid FROM live_viewer_messages WHERE message = 'hi all'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, vec![("bob".to_string(), bob_uid.clone())]);
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'ViewerMessagePosted'"
        )
        .await,
        26
    );

    // viewers now: a guest and bob read the room
    success(
        &bob.get(&format!(
            "/api/live/get_live_info?room_id={room_id}&uid={bob_uid}"
        ))
        .await,
    );
    let info = success(
        &guest
            .get(&format!("/api/live/get_live_info?room_id={room_id}"))
            .await,
    )
    .clone();
    assert_eq!(info["data"]["live_info"]["live_num"], 2);
    let lives = success(&guest.get("/api/live/get_all_lives").await).clone();
    eventually("the list counts both viewers", || {
        let guest = guest.clone();
        async move {
            let v = guest.get("/api/live/get_all_lives").await.1;
            v["data"]["lives_info"][0]["live_num"] == 2
        }
    })
    .await;
    let _ = lives;
    app.stop().await;
}

/// A paid room at `price` and a viewer with `coins`.
async fn paid_room(app: &TestApp, anchor: &Site, price: i64) -> String {
    let room = create_json_room(
        anchor,
        v2_card("Kotohime", &["VIP"]),
        json!({"room_type": 1, "coin_num": price}),
    )
    .await;
    let id = room["room_id"].as_str().unwrap().to_owned();
    go_live(anchor, &id, true).await;
    let _ = app;
    id
}

/// `get_live_info`'s `vip_info.vip_status` for the caller.
async fn vip_status(site: &Site, room: &str) -> Value {
    let info = success(
        &site
            .get(&format!("/api/live/get_live_info?room_id={room}"))
            .await,
    )
    .clone();
    info["data"]["vip_info"]["vip_status"].clone()
}

fn pay_body(uid: &str, anchor_uid: &str, room: &str, amount: Value) -> Value {
    json!({"uid": uid, "anchor_id": anchor_uid, "room_id": room, "room_name": "x", "amount": amount})
}

#[tokio::test]
async fn vip_payments_move_the_price_once_and_the_anchor_earns_it_less_the_platform_share() {
    let app = TestApp::start().await;
    let (anchor, anchor_uid) = Site::user(&app, "anchor1").await;
    let (viewer, viewer_uid) = Site::user(&app, "viewer1").await;
    let guest = Site::guest(&app);
    let room = paid_room(&app, &anchor, 30).await;
    coins(&app, &viewer, 100, "v1").await;

    // before paying: no access
    let info = success(
        &viewer
            .get(&format!(
                "/api/live/get_live_info?room_id={room}&uid={viewer_uid}"
            ))
            .await,
    )
    .clone();
    assert_eq!(
        info["data"]["vip_info"],
        json!({"room_type": 1, "vip_status": false, "amount": 30})
    );
    refused(
        &viewer
            .get(&format!("/api/live/get_live_chat_history?room_id={room}"))
            .await,
        StatusCode::FORBIDDEN,
    );
    refused(
        &guest
            .get(&format!("/api/live/get_user_chat_history?room_id={room}"))
            .await,
        StatusCode::UNAUTHORIZED,
    );
    let ginfo = success(
        &guest
            .get(&format!("/api/live/get_live_info?room_id={room}"))
            .await,
    )
    .clone();
    assert_eq!(ginfo["data"]["vip_info"]["vip_status"], false);
    assert_eq!(ginfo["data"]["follow_info"]["follow_status"], false);
    assert_eq!(
        ginfo["data"]["subscription_info"]["subscription_status"],
        false
    );

    // refusals move nothing
    let events = || {
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE aggregate_type = 'Wallet'",
        )
    };
    let before = events().await;
    refused(
        &viewer
            .post(
                "/api/live/pay_vip_coin",
                pay_body(&viewer_uid, &anchor_uid, &room, json!(29)),
            )
            .await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &viewer
            .post(
                "/api/live/pay_vip_coin",
                pay_body(&viewer_uid, &viewer_uid, &room, json!(30)),
            )
            .await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &viewer
            .post(
                "/api/live/pay_vip_coin",
                pay_body(&anchor_uid, &anchor_uid, &room, json!(30)),
            )
            .await,
        StatusCode::FORBIDDEN,
    );
    refused(
        &guest
            .post(
                "/api/live/pay_vip_coin",
                pay_body(&viewer_uid, &anchor_uid, &room, json!(30)),
            )
            .await,
        StatusCode::UNAUTHORIZED,
    );
    refused(
        &viewer
            .post(
                "/api/live/pay_vip_coin",
                pay_body(&viewer_uid, &anchor_uid, "0123456789abcdef", json!(30)),
            )
            .await,
        StatusCode::NOT_FOUND,
    );
    refused(
        &viewer
            .post(
                "/api/live/pay_vip_coin",
                pay_body(&viewer_uid, &anchor_uid, &room, json!("thirty")),
            )
            .await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(events().await, before);

    // twenty concurrent repeats by one viewer pay once
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let v = viewer.clone();
            let body = pay_body(&viewer_uid, &anchor_uid, &room, json!(30));
            tokio::spawn(async move { v.post("/api/live/pay_vip_coin", body).await })
        })
        .collect();
    for c in calls {
        success(&c.await.unwrap());
    }
    assert_eq!(balance(&viewer).await, 70);
    eventually("the anchor is credited", || {
        let a = anchor.clone();
        async move { balance(&a).await == 24 }
    })
    .await;
    assert_eq!(vip_status(&viewer, &room).await, true);
    success(
        &viewer
            .get(&format!("/api/live/get_live_chat_history?room_id={room}"))
            .await,
    );
    let again = viewer
        .post(
            "/api/live/pay_vip_coin",
            pay_body(&viewer_uid, &anchor_uid, &room, json!(30)),
        )
        .await;
    assert_eq!(success(&again)["data"]["paid"], false);
    assert_eq!(balance(&viewer).await, 70);

    // fifty viewers at once: the anchor gets exactly their sum less the share
    let mut viewers = Vec::new();
    for i in 0..50 {
        let (v, uid) = Site::user(&app, &format!("fan{i}")).await;
        coins(&app, &v, 30, &format!("fan{i}")).await;
        viewers.push((v, uid));
    }
    let calls: Vec<_> = viewers
        .iter()
        .map(|(v, uid)| {
            let v = v.clone();
            let body = pay_body(uid, &anchor_uid, &room, json!(30));
            tokio::spawn(async move { v.post("/api/live/pay_vip_coin", body).await })
        })
        .collect();
    for c in calls {
        success(&c.await.unwrap());
    }
    for (v, _) in &viewers {
        assert_eq!(balance(v).await, 0);
    }
    eventually("every earning is credited", || {
        let a = anchor.clone();
        async move { balance(&a).await == 24 * 51 }
    })
    .await;
    let revenue: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(amount), 0)::bigint FROM ledger_postings WHERE ledger_account = 'platform:revenue'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(revenue, 6 * 51);
    let clearing: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(amount), 0)::bigint FROM ledger_postings WHERE ledger_account LIKE 'anchor:%'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        clearing, 0,
        "every earning moved from the anchor's account to the anchor's wallet"
    );
    // the read model marks each earning credited, at its credit's position
    let marked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM anchor_earnings e
           JOIN events c ON c.global_position = e.credit_position AND c.event_type = 'WalletCredited'
          WHERE e.credited_at IS NOT NULL",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(marked, 51);

    // not enough coins: a clear refusal, nothing written
    let (poor, poor_uid) = Site::user(&app, "poor").await;
    coins(&app, &poor, 10, "p1").await;
    let before = events().await;
    let got = poor
        .post(
            "/api/live/pay_vip_coin",
            pay_body(&poor_uid, &anchor_uid, &room, json!(30)),
        )
        .await;
    refused(&got, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(events().await, before);

    let report: Value = serde_json::from_str(&ok(&tidelog(
        &url_of(&app.db),
        &["audit", "verify", "--json"],
    )))
    .unwrap();
    assert_eq!(report["discrepancies"], json!([]), "{report}");
    assert_eq!(report["anchor_payments"], 51);
    assert_eq!(report["earnings_pending"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_subscription_opens_the_anchor_s_paid_rooms_until_it_runs_out_and_renewals_extend_it() {
    let app = TestApp::start_with(|c| c.live.subscription_period = Duration::from_secs(3)).await;
    let (anchor, anchor_uid) = Site::user(&app, "anchor1").await;
    let (viewer, viewer_uid) = Site::user(&app, "viewer1").await;
    let room = paid_room(&app, &anchor, 30).await;
    coins(&app, &viewer, 100, "v1").await;
    refused(
        &viewer
            .post("/api/live/subscribe", json!({"anchor_id": anchor_uid}))
            .await,
        StatusCode::BAD_REQUEST,
    );
    success(
        &anchor
            .post("/api/anchor/subscription", json!({"amount": 20}))
            .await,
    );
    refused(
        &anchor
            .post("/api/live/subscribe", json!({"anchor_id": anchor_uid}))
            .await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &viewer
            .post(
                "/api/live/subscribe",
                json!({"anchor_id": "AAAAAAAAAAAAAAAAAAAAAA"}),
            )
            .await,
        StatusCode::NOT_FOUND,
    );
    let first = success(
        &viewer
            .post("/api/live/subscribe", json!({"anchor_id": anchor_uid}))
            .await,
    )
    .clone();
    assert_eq!(first["data"]["amount"], 20);
    let info_path = format!("/api/live/get_live_info?room_id={room}&uid={viewer_uid}");
    let info = success(&viewer.get(&info_path).await).clone();
    assert_eq!(
        info["data"]["subscription_info"],
        json!({"subscription_status": true, "amount": 20})
    );
    assert_eq!(info["data"]["vip_info"]["vip_status"], true);
    success(
        &viewer
            .get(&format!("/api/live/get_live_chat_history?room_id={room}"))
            .await,
    );
    // paying for the room while subscribed moves nothing
    let pay = viewer
        .post(
            "/api/live/pay_vip_coin",
            pay_body(&viewer_uid, &anchor_uid, &room, json!(30)),
        )
        .await;
    assert_eq!(success(&pay)["data"]["paid"], false);
    assert_eq!(balance(&viewer).await, 80);

    // a renewal extends the running period
    let second = success(
        &viewer
            .post("/api/live/subscribe", json!({"anchor_id": anchor_uid}))
            .await,
    )
    .clone();
    let until = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["data"]["until"].as_str().unwrap()).unwrap()
    };
    assert_eq!((until(&second) - until(&first)).num_seconds(), 3);
    assert_eq!(balance(&viewer).await, 60);
    eventually("the anchor earned 2 × 16", || {
        let a = anchor.clone();
        async move { balance(&a).await == 32 }
    })
    .await;

    // and then it runs out
    let wait = (until(&second).with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds();
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64 + 200)).await;
    let info = success(&viewer.get(&info_path).await).clone();
    assert_eq!(
        info["data"]["subscription_info"]["subscription_status"],
        false
    );
    assert_eq!(info["data"]["vip_info"]["vip_status"], false);
    refused(
        &viewer
            .get(&format!("/api/live/get_live_chat_history?room_id={room}"))
            .await,
        StatusCode::FORBIDDEN,
    );
    // the anchor always has access
    success(
        &anchor
            .get(&format!("/api/live/get_live_chat_history?room_id={room}"))
            .await,
    );

    // follows
    let followed = viewer
        .post("/api/live/follow", json!({"room_id": room}))
        .await;
    assert_eq!(success(&followed)["data"]["follow_status"], true);
    success(
        &viewer
            .post("/api/live/follow", json!({"room_id": room}))
            .await,
    );
    let info = success(&viewer.get(&info_path).await).clone();
    assert_eq!(info["data"]["follow_info"]["follow_status"], true);
    refused(
        &anchor
            .post("/api/live/follow", json!({"room_id": room}))
            .await,
        StatusCode::BAD_REQUEST,
    );
    success(
        &viewer
            .post("/api/live/unfollow", json!({"room_id": room}))
            .await,
    );
    let info = success(&viewer.get(&info_path).await).clone();
    assert_eq!(info["data"]["follow_info"]["follow_status"], false);
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE aggregate_type = 'Follow'"
        )
        .await,
        2,
        "following twice is one follow"
    );
    let report: Value = serde_json::from_str(&ok(&tidelog(
        &url_of(&app.db),
        &["audit", "verify", "--json"],
    )))
    .unwrap();
    assert_eq!(report["discrepancies"], json!([]), "{report}");
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_code_1_with_a_fitting_status_and_writes_nothing() {
    let app = TestApp::start_with(|c| c.live.card_max_bytes = 64 * 1024).await;
    let (anchor, anchor_uid) = Site::user(&app, "anchor1").await;
    let (other, other_uid) = Site::user(&app, "other").await;
    let guest = Site::guest(&app);
    let room = create_json_room(&anchor, v2_card("Kotohime", &[]), json!({})).await;
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let events = || count(&app.pool, "SELECT count(*) FROM events");
    let before = events().await;

    // cards
    for body in [
        json!({}),
        json!({"character": "not a card"}),
        json!({"character": {"spec": "chara_card_v2"}}),
        json!({"character": {"spec": "chara_card_v9", "data": {"name": "x"}}}),
        json!({"character": {"name": ""}}),
        json!({"character": v2_card("x", &[]), "room_type": 1}),
        json!({"character": v2_card("x", &[]), "room_type": 2, "coin_num": 5}),
        json!({"character": v2_card("x", &[]), "title": 5}),
        json!({"character": v2_card("x", &[]), "tags": "a"}),
        json!({"character": v2_card("x", &[]), "language": "e n"}),
    ] {
        refused(
            &anchor.post("/api/anchor/rooms", body).await,
            StatusCode::BAD_REQUEST,
        );
    }
    let malformed = Site::send(
        anchor
            .req(Method::POST, "/api/anchor/rooms")
            .header("content-type", "application/json")
            .body("{\"character\":"),
    )
    .await;
    refused(&malformed, StatusCode::BAD_REQUEST);
    refused(
        &guest
            .post("/api/anchor/rooms", json!({"character": v2_card("x", &[])}))
            .await,
        StatusCode::UNAUTHORIZED,
    );
    let forged = Site {
        token: Some("not.a.token".into()),
        ..guest.clone()
    };
    refused(
        &forged
            .post("/api/anchor/rooms", json!({"character": v2_card("x", &[])}))
            .await,
        StatusCode::UNAUTHORIZED,
    );
    // PNGs: no card in it, truncated, not a PNG, too large
    let card = v2_card("Seraphina", &[]);
    let png = card_png(&card, 8);
    let mut plain = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut plain, 2, 2);
        enc.set_color(png::ColorType::Rgb);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0u8; 12]).unwrap();
    }
    refused(
        &create_png_room(&anchor, plain, &[]).await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &create_png_room(&anchor, png[..png.len() - 30].to_vec(), &[]).await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &create_png_room(&anchor, b"MZ\x90\x00 an executable".to_vec(), &[]).await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &create_png_room(&anchor, card_png(&card, 200), &[]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    refused(
        &create_png_room(&anchor, png.clone(), &[("coin_num", "many")]).await,
        StatusCode::BAD_REQUEST,
    );

    // only the anchor changes a room; unknown and malformed rooms are 404
    let path = format!("/api/anchor/rooms/{room_id}");
    refused(
        &other.post(&path, json!({"title": "mine now"})).await,
        StatusCode::FORBIDDEN,
    );
    refused(
        &other
            .post(&format!("{path}/live"), json!({"live": true}))
            .await,
        StatusCode::FORBIDDEN,
    );
    refused(
        &other
            .post(
                &format!("{path}/messages"),
                json!([{"name": "x", "mes": "y"}]),
            )
            .await,
        StatusCode::FORBIDDEN,
    );
    refused(
        &anchor
            .post("/api/anchor/rooms/0123456789abcdef", json!({"title": "t"}))
            .await,
        StatusCode::NOT_FOUND,
    );
    refused(
        &anchor
            .post("/api/anchor/rooms/nope/live", json!({"live": true}))
            .await,
        StatusCode::NOT_FOUND,
    );
    refused(
        &anchor
            .post(&format!("{path}/live"), json!({"live": "yes"}))
            .await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &anchor.post(&path, json!({"room_type": 1})).await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &anchor.post(&path, json!({"coin_num": "3"})).await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &anchor
            .post(&format!("{path}/messages"), json!({"mes": "x"}))
            .await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &anchor
            .post(
                &format!("{path}/messages"),
                json!([{"name": 7, "mes": "x"}]),
            )
            .await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &anchor
            .post(
                &format!("{path}/messages"),
                json!([{"name": "", "mes": "x"}]),
            )
            .await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &anchor
            .post("/api/anchor/subscription", json!({"amount": -1}))
            .await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &anchor
            .post("/api/anchor/subscription", json!({"amount": "1"}))
            .await,
        StatusCode::BAD_REQUEST,
    );

    // viewers' side
    refused(
        &guest
            .get("/api/live/get_live_info?room_id=0123456789abcdef")
            .await,
        StatusCode::NOT_FOUND,
    );
    refused(
        &guest.get("/api/live/get_live_info").await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &guest
            .get("/api/live/get_live_chat_history?room_id=zz")
            .await,
        StatusCode::NOT_FOUND,
    );
    refused(
        &other
            .get(&format!(
                "/api/live/get_live_info?room_id={room_id}&uid={anchor_uid}"
            ))
            .await,
        StatusCode::FORBIDDEN,
    );
    refused(
        &guest
            .get(&format!(
                "/api/live/get_live_info?room_id={room_id}&uid={other_uid}"
            ))
            .await,
        StatusCode::FORBIDDEN,
    );
    let say = |body: Value| guest.post("/api/live/save_user_chat_history", body);
    refused(
        &say(json!({"room_id": room_id, "username": "游客1"})).await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &say(json!({"room_id": room_id, "user_message": "hi"})).await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &say(json!({"room_id": room_id, "username": "游客1", "user_message": "x".repeat(501)}))
            .await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &say(json!({"room_id": room_id, "username": "游客1", "user_message": ["hi"]})).await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &say(json!({"room_id": "0123456789abcdef", "username": "游客1", "user_message": "hi"}))
            .await,
        StatusCode::NOT_FOUND,
    );
    let junk = Site::send(
        guest
            .req(Method::POST, "/api/live/save_user_chat_history")
            .header("content-type", "application/json")
            .body("[1,2"),
    )
    .await;
    refused(&junk, StatusCode::BAD_REQUEST);
    refused(
        &guest
            .post("/api/live/follow", json!({"room_id": room_id}))
            .await,
        StatusCode::UNAUTHORIZED,
    );
    refused(
        &other.post("/api/live/follow", json!({})).await,
        StatusCode::BAD_REQUEST,
    );
    refused(
        &guest.get("/api/live/images/nobody/characters/x.png").await,
        StatusCode::NOT_FOUND,
    );
    refused(
        &guest.get("/api/live/no_such_call").await,
        StatusCode::NOT_FOUND,
    );
    refused(
        &Site::send(guest.req(Method::DELETE, "/api/live/get_all_lives")).await,
        StatusCode::METHOD_NOT_ALLOWED,
    );
    assert_eq!(events().await, before, "nothing was written");
    app.stop().await;
}

#[tokio::test]
async fn a_payment_whose_credit_never_ran_is_credited_once_by_the_earnings_worker() {
    let app = TestApp::start().await;
    let (anchor, anchor_uid) = Site::user(&app, "anchor1").await;
    let (viewer, _) = Site::user(&app, "viewer1").await;
    let room = paid_room(&app, &anchor, 50).await;
    coins(&app, &viewer, 50, "v1").await;
    let anchor_id = tidelog::http::live::account_of_uid(&anchor_uid).unwrap();
    let (_, v) = viewer.get("/api/users/is_logged_in").await;
    let viewer_id =
        tidelog::http::live::account_of_uid(v["data"]["user_info"]["uid"].as_str().unwrap())
            .unwrap();

    // What a process that crashed right after the payer's debit leaves: the
    // payment in the log, and no credit attempted.
    let store = tidelog::store::Store::new(app.pool.clone());
    let meta = tidelog::store::CommandMeta {
        actor: format!("user:{viewer_id}"),
        surface: "live",
        request_id: "crashed-request".into(),
        correlation_id: "crashed-request".into(),
        causation_id: "crashed-request".into(),
        client_ip: "127.0.0.1".into(),
    };
    let payment = aggregates::AnchorPayment {
        operation_id: format!("vip:{room}"),
        amount: aggregates::Amount::new(50).unwrap(),
        anchor: anchor_id,
        platform_share: 10,
        description: "VIP".into(),
        at: tidelog::store::now(),
    };
    tidelog::ledger::operate(
        &store,
        viewer_id,
        aggregates::Currency::Coins,
        &meta,
        || aggregates::WalletCommand::PayVipCoin {
            payment: payment.clone(),
            room_id: room.clone(),
        },
    )
    .await
    .unwrap();
    eventually("the worker credits the anchor", || {
        let a = anchor.clone();
        async move { balance(&a).await == 40 }
    })
    .await;
    // a few more rounds of the worker change nothing
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(balance(&anchor).await, 40);
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'WalletCredited' AND metadata->>'actor' = 'system:anchor-earnings'"
        )
        .await,
        1
    );
    // the viewer's access stands, as for any payment
    assert_eq!(vip_status(&viewer, &room).await, true);
    let report: Value = serde_json::from_str(&ok(&tidelog(
        &url_of(&app.db),
        &["audit", "verify", "--json"],
    )))
    .unwrap();
    assert_eq!(report["discrepancies"], json!([]), "{report}");
    assert_eq!(report["anchor_payments"], 1);
    app.stop().await;
}

/// Real SillyTavern files from public repositories (tests/fixtures/sillytavern,
/// SOURCES.md): every date form SillyTavern has written keeps its time.
fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sillytavern")
            .join(name),
    )
    .unwrap()
}

#[tokio::test]
async fn chats_and_cards_sillytavern_wrote_over_the_years_keep_their_dates() {
    // the files' owners wrote local times in UTC+8, the test server's zone
    let app = TestApp::start().await;
    let (anchor, _) = Site::user(&app, "anchor1").await;
    let guest = Site::guest(&app);

    // cards: Unix milliseconds as digits (TavernAI), humanized, ISO
    let mut dates = Vec::new();
    for card in [
        "card_v1_Aqua_create_date-unixms-string.json",
        "card_v2_Seraphina_create_date-humanized-spaced.json",
        "card_v2_Assistant_create_date-iso.json",
    ] {
        let card: Value = serde_json::from_str(&fixture(card)).unwrap();
        let room = create_json_room(&anchor, card, json!({})).await;
        dates.push(room["character_date"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        dates,
        [
            // 1674407315376 ms = 2023-01-23 01:08:35.376 in UTC+8
            "2023-1-23 @01h 08m 35s 376ms",
            "2023-5-12 @21h 32m 29s 228ms",
            "2025-08-11T16:08:58.051Z",
        ]
    );

    let room = create_json_room(&anchor, v2_card("Aqua", &[]), json!({})).await;
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    go_live(&anchor, &room_id, true).await;
    let upload = |file: &'static str| {
        let anchor = &anchor;
        let room_id = room_id.clone();
        async move {
            let got = Site::send(
                anchor
                    .req(
                        Method::POST,
                        &format!("/api/anchor/rooms/{room_id}/messages"),
                    )
                    .header("content-type", "application/jsonl")
                    .body(fixture(file)),
            )
            .await;
            success(&got)["data"].clone()
        }
    };
    for file in [
        "chat_2023-01_tavernai-default_unixms-numbers.jsonl",
        "chat_2023-07_header-humanized-spaced_send-meridiem.jsonl",
        "groupchat_2023-10_no-header_send-humanized-spaced-and-meridiem.first3lines.jsonl",
        "chat_2025-09_header-humanized-padded-nospace_send-meridiem.jsonl",
        "chat_2026-01_header-without-create_date_send-iso.first2lines.jsonl",
    ] {
        let data = upload(file).await;
        assert_eq!(data["undated"], json!([]), "{file}: {data}");
        assert!(data["recorded"].as_i64().unwrap() >= 1, "{file}: {data}");
    }

    let history = success(
        &guest
            .get(&format!(
                "/api/live/get_live_chat_history?room_id={room_id}"
            ))
            .await,
    )
    .clone();
    let sent: Vec<&str> = history["data"]["chat_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["send_date"].as_str().unwrap())
        .collect();
    // oldest first, each at the time it was written (in the server's zone)
    assert_eq!(
        sent,
        [
            "January 24, 2023 8:29pm",  // 1674563371558 ms
            "July 13, 2023 11:21pm",    // meridiem, local
            "October 25, 2023 10:11pm", // "2023-10-25 @22h 11m 57s 992ms", local
            "October 25, 2023 10:12pm",
            "September 17, 2025 12:43pm",
            "September 17, 2025 12:49pm",
            "January 14, 2026 10:02pm", // "2026-01-14T14:02:18.776Z"
        ]
    );

    // a date that cannot be read is told, with its line, and the line is
    // dated at the upload rather than lost
    let file = format!(
        "{}\n{}\n{}\n",
        json!({"user_name": "u", "character_name": "Aqua", "create_date": "2023-7-13 @23h 21m 45s 920ms"}),
        json!({"name": "Aqua", "is_user": false, "send_date": "2023-4-21 @20h 02m 47s 124ms", "mes": "kept"}),
        json!({"name": "Aqua", "is_user": false, "send_date": "Smarch 3, 2023 1:00pm", "mes": "odd"}),
    );
    let got = Site::send(
        anchor
            .req(
                Method::POST,
                &format!("/api/anchor/rooms/{room_id}/messages"),
            )
            .header("content-type", "application/jsonl")
            .body(file),
    )
    .await;
    let data = success(&got)["data"].clone();
    assert_eq!(data["recorded"], 2);
    assert_eq!(
        data["undated"],
        json!([{"index": 1, "line": 3, "send_date": "Smarch 3, 2023 1:00pm", "reason": "an unknown month name"}])
    );
    let stored: Vec<(String,)> = sqlx::query_as(
        "SELECT payload->'LiveChatRecorded'->>'sent_at' FROM events
          WHERE event_type = 'LiveChatRecorded' AND payload::text LIKE '%\"kept\"%'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 1);
    let kept: chrono::DateTime<chrono::Utc> = stored[0].0.parse().unwrap();
    assert_eq!(kept.to_rfc3339(), "2023-04-21T12:02:47.124+00:00");
    app.stop().await;
}

/// Under load a VIP payment answers once durable, before its read models
/// have it (read-your-writes on the next request): the answer carries the
/// payment's own balance, the payer may chat in the room at once (a
/// refusal of access first waits for answered writes), and the payer's
/// next read shows the access.
#[tokio::test]
async fn a_vip_payment_answers_before_its_projection_and_the_payer_chats_at_once() {
    let app = TestApp::start_with(|c| c.read_your_writes_timeout = Duration::from_secs(30)).await;
    let (anchor, anchor_uid) = Site::user(&app, "anchor1").await;
    let (first, first_uid) = Site::user(&app, "first").await;
    let (payer, payer_uid) = Site::user(&app, "payer").await;
    let room = paid_room(&app, &anchor, 30).await;
    go_live(&anchor, &room, true).await;
    coins(&app, &first, 100, "first").await;
    coins(&app, &payer, 100, "payer").await;
    let paid = "SELECT count(*) FROM events WHERE event_type = 'VipCoinPaid'";
    let held = hold_projector(&app.pool, "live").await;
    // a lone payment waits for its read models, as before
    let lone = {
        let (site, body) = (
            first.clone(),
            pay_body(&first_uid, &anchor_uid, &room, json!(30)),
        );
        tokio::spawn(async move { site.post("/api/live/pay_vip_coin", body).await })
    };
    eventually("the first payment is stored", || async {
        count(&app.pool, paid).await == 1
    })
    .await;
    assert!(!lone.is_finished());
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        payer.post(
            "/api/live/pay_vip_coin",
            pay_body(&payer_uid, &anchor_uid, &room, json!(30)),
        ),
    )
    .await
    .expect("the second payment answered while its projector was held");
    let data = &success(&answer)["data"];
    assert_eq!(
        (data["paid"].as_bool(), data["coin_num"].as_i64()),
        (Some(true), Some(70)),
        "{data}"
    );
    assert_eq!(
        count(&app.pool, "SELECT count(*) FROM live_access").await,
        0,
        "answered before its access was projected"
    );
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        held.rollback().await.unwrap();
    });
    let said = payer
        .post(
            "/api/live/save_user_chat_history",
            json!({"room_id": room, "room_name": "x", "user_message": "paid, and here"}),
        )
        .await;
    success(&said);
    release.await.unwrap();
    assert_eq!(vip_status(&payer, &room).await, true);
    // paying again moves nothing, and answers the balance as it stands
    let again = payer
        .post(
            "/api/live/pay_vip_coin",
            pay_body(&payer_uid, &anchor_uid, &room, json!(30)),
        )
        .await;
    let data = &success(&again)["data"];
    assert_eq!(
        (data["paid"].as_bool(), data["coin_num"].as_i64()),
        (Some(false), Some(70)),
        "{data}"
    );
    success(&lone.await.unwrap());
    assert_eq!(count(&app.pool, paid).await, 2);
    app.stop().await;
}

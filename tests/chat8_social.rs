//! Chat8's friends, direct messages, read marks, deletions, uploads and
//! keys over real HTTP and PostgreSQL (seed 003).

mod common;

use common::chat8::*;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn ids(page: &Value) -> Vec<i64> {
    page["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn three_users_search_befriend_message_read_delete_and_unfriend() {
    let app = TestApp::start().await;
    let alice = User::register(&app, "alice").await;
    let bob = User::register(&app, "bob").await;
    let carol = User::register(&app, "carol").await;

    // search: a name part ignoring case; an email only as a whole address
    let found = success(&alice.get("/friends/search?q=BO").await).clone();
    assert_eq!(
        found["data"],
        json!([{"id": bob.id, "username": "bob", "avatar": "", "is_friend": false}])
    );
    let by_mail = success(&alice.get("/friends/search?q=carol@example.com").await).clone();
    assert_eq!(by_mail["data"][0]["id"], carol.id);
    let partial = success(&alice.get("/friends/search?q=@example.com").await).clone();
    assert_eq!(partial["data"], json!([]), "addresses cannot be enumerated");
    let me = success(&alice.get("/friends/search?q=alice").await).clone();
    assert_eq!(me["data"], json!([]), "never the caller");
    failed(
        &alice.get("/friends/search?q=").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    );

    // requests
    failed(
        &alice
            .post("/friends/request", json!({"user_id": alice.id}))
            .await,
        StatusCode::BAD_REQUEST,
        "FRIEND_002",
    );
    failed(
        &alice
            .post("/friends/request", json!({"user_id": 999_999}))
            .await,
        StatusCode::NOT_FOUND,
        "USER_001",
    );
    let (_, v) = alice
        .post(
            "/friends/request",
            json!({"user_id": bob.id, "message": "hello"}),
        )
        .await;
    assert_eq!(v["data"]["status"], "pending");
    let ab = v["data"]["request_id"].as_i64().unwrap();
    failed(
        &alice
            .post("/friends/request", json!({"user_id": bob.id}))
            .await,
        StatusCode::CONFLICT,
        "FRIEND_003",
    );
    // only bob answers, and once
    failed(
        &alice
            .put(
                &format!("/friends/request/{ab}"),
                json!({"action": "accept"}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    failed(
        &carol
            .put(
                &format!("/friends/request/{ab}"),
                json!({"action": "accept"}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    failed(
        &bob.put(
            &format!("/friends/request/{ab}"),
            json!({"action": "maybe"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    );
    success(
        &bob.put(
            &format!("/friends/request/{ab}"),
            json!({"action": "accept"}),
        )
        .await,
    );
    failed(
        &bob.put(
            &format!("/friends/request/{ab}"),
            json!({"action": "reject"}),
        )
        .await,
        StatusCode::CONFLICT,
        "FRIEND_003",
    );
    failed(
        &bob.put("/friends/request/999999", json!({"action": "accept"}))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    // carol asks bob, bob rejects; carol asks alice, alice asking back accepts
    let (_, v) = carol
        .post("/friends/request", json!({"user_id": bob.id}))
        .await;
    let cb = v["data"]["request_id"].as_i64().unwrap();
    success(
        &bob.put(
            &format!("/friends/request/{cb}"),
            json!({"action": "reject"}),
        )
        .await,
    );
    success(
        &carol
            .post("/friends/request", json!({"user_id": alice.id}))
            .await,
    );
    let back = success(
        &alice
            .post("/friends/request", json!({"user_id": carol.id}))
            .await,
    )
    .clone();
    assert_eq!(back["data"]["status"], "accepted");

    let friends = success(&alice.get("/friends").await).clone();
    let list = friends["data"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["username"], "bob");
    assert_eq!(list[0]["status"], "offline");
    assert!(list[0]["last_seen"].as_str().is_some());
    let found = success(&alice.get("/friends/search?q=bob").await).clone();
    assert_eq!(found["data"][0]["is_friend"], true);

    // messages: only between friends
    failed(
        &carol
            .post("/messages", json!({"receiver_id": bob.id, "content": "hi"}))
            .await,
        StatusCode::FORBIDDEN,
        "FRIEND_001",
    );
    let mut sent = Vec::new();
    for i in 1..=5 {
        sent.push(alice.say(&bob, &format!("a{i}")).await);
    }
    let b1 = bob.say(&alice, "b1").await;
    let b2 = bob.say(&alice, "b2").await;
    let page1 = success(
        &alice
            .get(&format!("/messages/{}?page=1&limit=3", bob.id))
            .await,
    )
    .clone();
    assert_eq!(
        ids(&page1),
        vec![sent[4], b1, b2],
        "page 1 is the newest, oldest first inside"
    );
    assert_eq!(
        page1["data"]["pagination"],
        json!({"page": 1, "limit": 3, "total": 7, "pages": 3})
    );
    let page3 = success(
        &bob.get(&format!("/messages/{}?page=3&limit=3", alice.id))
            .await,
    )
    .clone();
    assert_eq!(ids(&page3), vec![sent[0]]);
    let m = &page1["data"]["messages"][1];
    assert_eq!(m["sender_id"], bob.id);
    assert_eq!(m["content"], "b1");
    assert_eq!(m["message_type"], "text");
    assert_eq!(m["is_encrypted"], false);

    // a read mark covers that message and every earlier one to the reader
    success(
        &bob.put(&format!("/messages/{}/read", sent[2]), json!({}))
            .await,
    );
    let all = success(&alice.get(&format!("/messages/{}?limit=50", bob.id)).await).clone();
    let read: Vec<bool> = all["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["sender_id"] == alice.id)
        .map(|m| m["is_read"].as_bool().unwrap())
        .collect();
    assert_eq!(read, vec![true, true, true, false, false]);
    failed(
        &alice
            .put(&format!("/messages/{}/read", sent[3]), json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "MESSAGE_002",
    );
    failed(
        &carol.put(&format!("/messages/{b1}/read"), json!({})).await,
        StatusCode::FORBIDDEN,
        "MESSAGE_002",
    );
    failed(
        &bob.put("/messages/999999/read", json!({})).await,
        StatusCode::NOT_FOUND,
        "MESSAGE_001",
    );
    failed(
        &bob.put("/messages/abc/read", json!({})).await,
        StatusCode::NOT_FOUND,
        "MESSAGE_001",
    );

    // deletion: the sender removes it for both, the receiver for themself
    success(&alice.delete(&format!("/messages/{}", sent[0])).await);
    success(&bob.delete(&format!("/messages/{}", sent[1])).await);
    failed(
        &carol.delete(&format!("/messages/{}", sent[2])).await,
        StatusCode::FORBIDDEN,
        "MESSAGE_002",
    );
    failed(
        &alice.delete(&format!("/messages/{}", sent[0])).await,
        StatusCode::NOT_FOUND,
        "MESSAGE_001",
    );
    let alice_sees = ids(success(
        &alice.get(&format!("/messages/{}?limit=50", bob.id)).await,
    ));
    let bob_sees = ids(success(
        &bob.get(&format!("/messages/{}?limit=50", alice.id)).await,
    ));
    assert!(!alice_sees.contains(&sent[0]) && alice_sees.contains(&sent[1]));
    assert!(!bob_sees.contains(&sent[0]) && !bob_sees.contains(&sent[1]));
    let content: Option<String> =
        sqlx::query_scalar("SELECT content FROM direct_messages WHERE message_id = $1")
            .bind(sent[0])
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        content, None,
        "the read model forgets a message deleted for both"
    );
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'DirectMessageDeleted'"
        )
        .await,
        2,
        "the log keeps tombstones"
    );

    // unfriending ends messaging, both ways
    success(&alice.delete(&format!("/friends/{}", bob.id)).await);
    failed(
        &alice.delete(&format!("/friends/{}", bob.id)).await,
        StatusCode::NOT_FOUND,
        "FRIEND_001",
    );
    failed(
        &bob.post(
            "/messages",
            json!({"receiver_id": alice.id, "content": "still there?"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "FRIEND_001",
    );
    let friends = success(&alice.get("/friends").await).clone();
    assert_eq!(friends["data"].as_array().unwrap().len(), 1);

    // a rebuild applies the whole log in large batches (messages folded
    // into one insert per run) and must come out the same
    let tables = [
        "SELECT message_id, pair, sender_id, receiver_id, content, deleted, hidden_for_receiver FROM direct_messages",
        "SELECT pair, reader_id, up_to FROM direct_read_marks",
        "SELECT user_id, friend_id FROM friendships",
        "SELECT request_id, status FROM friend_requests",
    ];
    let snapshot = |pool: sqlx::PgPool| async move {
        let mut out = Vec::new();
        for t in tables {
            let rows: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT row_to_json(x)::text FROM ({t}) x ORDER BY 1"
            ))
            .fetch_all(&pool)
            .await
            .unwrap();
            out.push(rows);
        }
        out
    };
    let live = snapshot(app.pool.clone()).await;
    assert!(live[0].len() >= 4, "{live:?}");
    let social = projections::all(chrono_tz::Asia::Shanghai)
        .into_iter()
        .find(|p| p.name() == "social")
        .unwrap();
    tidelog::projector::rebuild(&app.pool, social.as_ref(), 500, false)
        .await
        .unwrap();
    assert_eq!(snapshot(app.pool.clone()).await, live);
    app.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_identical_requests_make_one() {
    let app = TestApp::start().await;
    let alice = User::register(&app, "alice").await;
    let bob = User::register(&app, "bob").await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let a = alice.clone();
            let to = bob.id;
            tokio::spawn(async move { a.post("/friends/request", json!({"user_id": to})).await })
        })
        .collect();
    let mut made = 0;
    for c in calls {
        let got = c.await.unwrap();
        if got.0 == StatusCode::OK {
            made += 1;
        } else {
            failed(&got, StatusCode::CONFLICT, "FRIEND_003");
        }
    }
    assert_eq!(made, 1);
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'FriendRequested'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&app.pool, "SELECT count(*) FROM friend_requests").await,
        1
    );
    app.stop().await;
}

fn png(side: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, side, side);
    enc.set_color(png::ColorType::Rgb);
    let mut w = enc.write_header().unwrap();
    let mut x = 0x9e37_79b9u32;
    let pixels: Vec<u8> = (0..side * side * 3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    w.write_image_data(&pixels).unwrap();
    w.finish().unwrap();
    out
}

async fn upload(
    user: &User,
    path: &str,
    bytes: Vec<u8>,
    name: &str,
    receiver: Option<i64>,
) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
    );
    if let Some(r) = receiver {
        form = form.text("receiver_id", r.to_string());
    }
    send(user.req(Method::POST, path).multipart(form)).await
}

#[tokio::test]
async fn uploads_are_known_by_their_bytes_bounded_and_read_only_by_their_parties() {
    let app = TestApp::start_with(|c| {
        c.chat8_avatar_max_bytes = 64 * 1024;
        c.chat8_file_max_bytes = 64 * 1024;
    })
    .await;
    let alice = User::register(&app, "alice").await;
    let bob = User::register(&app, "bob").await;
    let carol = User::register(&app, "carol").await;
    alice.befriend(&bob).await;

    // a PNG named .exe is a PNG; an executable named .png is refused
    let picture = png(16);
    let got = upload(&alice, "/upload/avatar", picture.clone(), "me.exe", None).await;
    let url = success(&got)["data"]["avatar_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(got.1["data"]["file_type"], "image/png");
    let profile = success(&alice.get("/user/profile").await).clone();
    assert_eq!(profile["data"]["avatar"], url.as_str());
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
    exe.resize(600, 0);
    failed(
        &upload(&alice, "/upload/avatar", exe.clone(), "cat.png", None).await,
        StatusCode::BAD_REQUEST,
        "FILE_001",
    );
    failed(
        &upload(&alice, "/upload/file", exe, "cat.png", Some(bob.id)).await,
        StatusCode::BAD_REQUEST,
        "FILE_001",
    );
    failed(
        &upload(
            &alice,
            "/upload/avatar",
            picture[..picture.len() - 40].to_vec(),
            "cut.png",
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "FILE_001",
    );
    // too large: the file, and a body past the limit
    failed(
        &upload(&alice, "/upload/avatar", png(200), "big.png", None).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "FILE_002",
    );
    failed(
        &upload(
            &alice,
            "/upload/file",
            vec![b'a'; 200 * 1024],
            "big.txt",
            Some(bob.id),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "FILE_002",
    );

    // any signed-in user sees an avatar
    let resp = bob
        .http
        .get(format!("{}{url}", app.base))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), picture);
    let anonymous = send(bob.http.get(format!("{}{url}", app.base))).await;
    failed(&anonymous, StatusCode::UNAUTHORIZED, "AUTH_001");

    // a chat file: to a friend only, read by its two parties only
    failed(
        &upload(
            &alice,
            "/upload/file",
            b"notes".to_vec(),
            "notes.txt",
            Some(carol.id),
        )
        .await,
        StatusCode::FORBIDDEN,
        "FRIEND_001",
    );
    let got = upload(
        &alice,
        "/upload/file",
        "会议纪要\n".as_bytes().to_vec(),
        "../notes.txt",
        Some(bob.id),
    )
    .await;
    let data = success(&got)["data"].clone();
    assert_eq!(data["file_name"], "notes.txt");
    assert_eq!(data["file_size"], "会议纪要\n".len());
    assert!(data["file_type"]
        .as_str()
        .unwrap()
        .starts_with("text/plain"));
    let link = data["file_url"].as_str().unwrap().to_owned();
    let bare = link.split('?').next().unwrap().to_owned();
    let by = |u: &User, path: &str| {
        u.http
            .get(format!("{}{path}", app.base))
            .bearer_auth(&u.token)
            .send()
    };
    assert_eq!(by(&bob, &bare).await.unwrap().status(), StatusCode::OK);
    assert_eq!(by(&alice, &bare).await.unwrap().status(), StatusCode::OK);
    failed(
        &send(
            carol
                .http
                .get(format!("{}{bare}", app.base))
                .bearer_auth(&carol.token),
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    // the signed link works without a token until it expires; a forged one does not
    let resp = app
        .http
        .get(format!("{}{link}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "会议纪要\n");
    let forged = link.replace("sig=", "sig=0");
    failed(
        &send(app.http.get(format!("{}{forged}", app.base))).await,
        StatusCode::UNAUTHORIZED,
        "AUTH_001",
    );
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'FileShared'"
        )
        .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn keys_are_published_validated_and_the_private_one_returned_only_to_its_owner() {
    let app = TestApp::start().await;
    let alice = User::register(&app, "alice").await;
    let bob = User::register(&app, "bob").await;
    let public = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----",
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE".repeat(2)
    );
    failed(
        &bob.get(&format!("/encryption/public-key/{}", alice.id))
            .await,
        StatusCode::NOT_FOUND,
        "ENCRYPT_001",
    );
    failed(
        &alice
            .post(
                "/encryption/keys",
                json!({"public_key": "nope", "private_key_encrypted": "x"}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    );
    success(
        &alice
            .post(
                "/encryption/keys",
                json!({"public_key": public, "private_key_encrypted": "sealed-blob"}),
            )
            .await,
    );
    let got = success(
        &bob.get(&format!("/encryption/public-key/{}", alice.id))
            .await,
    )
    .clone();
    assert_eq!(
        got["data"],
        json!({"user_id": alice.id, "public_key": public})
    );
    let mine = success(&alice.get("/encryption/keys").await).clone();
    assert_eq!(mine["data"]["private_key_encrypted"], "sealed-blob");
    failed(
        &bob.get("/encryption/keys").await,
        StatusCode::NOT_FOUND,
        "ENCRYPT_001",
    );
    // the same pair again is no new event
    success(
        &alice
            .post(
                "/encryption/keys",
                json!({"public_key": public, "private_key_encrypted": "sealed-blob"}),
            )
            .await,
    );
    assert_eq!(
        count(
            &app.pool,
            "SELECT count(*) FROM events WHERE event_type = 'KeysPublished'"
        )
        .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_documented_code_and_writes_nothing() {
    let app = TestApp::start().await;
    let alice = User::register(&app, "alice").await;
    let bob = User::register(&app, "bob").await;
    alice.befriend(&bob).await;
    let before = count(&app.pool, "SELECT count(*) FROM events").await;
    let forged = User {
        token: "forged.token.here".into(),
        ..alice.clone()
    };
    failed(
        &forged.get("/friends").await,
        StatusCode::UNAUTHORIZED,
        "AUTH_001",
    );
    failed(
        &send(app.http.get(format!("{}/api/v1/friends", app.base))).await,
        StatusCode::UNAUTHORIZED,
        "AUTH_001",
    );
    failed(
        &alice
            .post("/friends/request", json!({"user_id": "two"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    );
    failed(
        &alice.post("/friends/request", json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    );
    let junk = send(
        alice
            .req(Method::POST, "/messages")
            .header("content-type", "application/json")
            .body("{\"receiver_id\":"),
    )
    .await;
    failed(&junk, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    failed(
        &alice
            .post("/messages", json!({"receiver_id": bob.id, "content": ""}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    );
    failed(
        &alice
            .post(
                "/messages",
                json!({"receiver_id": bob.id, "content": "x", "message_type": "gif"}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    );
    failed(
        &alice
            .post(
                "/messages",
                json!({"receiver_id": bob.id, "content": "x".repeat(10_001)}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    );
    failed(
        &alice
            .post("/messages", json!({"receiver_id": 424242, "content": "x"}))
            .await,
        StatusCode::NOT_FOUND,
        "USER_001",
    );
    failed(
        &alice.get(&format!("/messages/{}?page=0", bob.id)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    );
    failed(
        &alice.get(&format!("/messages/{}?limit=1000", bob.id)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    );
    failed(
        &alice.get("/messages/424242").await,
        StatusCode::NOT_FOUND,
        "USER_001",
    );
    failed(
        &alice.delete("/friends/nope").await,
        StatusCode::NOT_FOUND,
        "FRIEND_001",
    );
    failed(
        &alice.get("/encryption/public-key/zero").await,
        StatusCode::NOT_FOUND,
        "ENCRYPT_001",
    );
    failed(
        &alice.get("/files/not-a-hash").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    failed(
        &alice.call(Method::PATCH, "/friends", None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    );
    assert_eq!(
        count(&app.pool, "SELECT count(*) FROM events").await,
        before
    );
    app.stop().await;
}

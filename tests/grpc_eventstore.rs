//! The read endpoint with the older Rust client, `eventstore` 4.0 (the
//! design card's): a test binary of its own, as the client installs its
//! TLS provider with an `expect` that fails where `kurrentdb` (in
//! `tests/grpc.rs`) installed one first.

mod common;

use std::time::Duration;

use common::TestApp;

async fn all_numbered(pool: &sqlx::PgPool) -> u64 {
    common::eventually("every event numbered", || async {
        common::count(pool, "SELECT count(*) FROM events").await
            == common::count(pool, "SELECT count(*) FROM log_positions").await
    })
    .await;
    common::count(pool, "SELECT count(*) FROM events").await as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_eventstore_client_reads_and_subscribes_too() {
    let app = TestApp::start_with(|c| c.grpc.bind = Some("127.0.0.1:0".parse().unwrap())).await;
    let api = app.api();
    let (_, alice) = api.user("alice").await;
    let room = api.room(&alice, "analysts").await;
    for i in 0..3 {
        api.say(&alice, room, &format!("m{i}")).await;
    }
    let n = all_numbered(&app.pool).await;
    let want: Vec<(u64, String, u64, String)> = sqlx::query_as::<_, (i64, String, i64, String)>(
        "SELECT p.position, e.aggregate_type || '-' || e.aggregate_id, e.sequence - 1, e.event_type
           FROM log_positions p JOIN events e ON e.global_position = p.global_position
          ORDER BY p.position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(p, s, r, t)| (p as u64, s, r as u64, t))
    .collect();
    let settings: eventstore::ClientSettings =
        format!("esdb://{}?tls=false", app.server.grpc_addr.unwrap())
            .parse()
            .unwrap();
    let client = eventstore::Client::new(settings).unwrap();
    let mut read = client
        .read_all(&eventstore::ReadAllOptions::default())
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(e) = read.next().await.unwrap() {
        let r = e.get_original_event();
        got.push((
            r.position.commit,
            r.stream_id.clone(),
            r.revision,
            r.event_type.clone(),
        ));
    }
    assert_eq!(got, want);
    let stream = format!("ChatRoom-{room}");
    let mut read = client
        .read_stream(stream.as_str(), &eventstore::ReadStreamOptions::default())
        .await
        .unwrap();
    let mut revisions = Vec::new();
    while let Some(e) = read.next().await.unwrap() {
        revisions.push(e.get_original_event().revision);
    }
    let of_room = want.iter().filter(|w| w.1 == stream).count() as u64;
    assert_eq!(revisions, (0..of_room).collect::<Vec<_>>());
    let e = client
        .read_stream("ChatRoom-999999", &eventstore::ReadStreamOptions::default())
        .await
        .unwrap()
        .next()
        .await
        .unwrap_err();
    assert!(matches!(e, eventstore::Error::ResourceNotFound), "{e:?}");
    // a subscription from a saved position (exclusive), read by a task of
    // its own (the client's `next` must not be cancelled)
    let mut sub = client
        .subscribe_to_all(&eventstore::SubscribeToAllOptions::default().position(
            eventstore::StreamPosition::Position(eventstore::Position {
                commit: 2,
                prepare: 2,
            }),
        ))
        .await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let e = sub.next().await.unwrap();
            if tx.send(e.get_original_event().position.commit).is_err() {
                return;
            }
        }
    });
    let mut positions = Vec::new();
    while positions.len() < (n - 2) as usize {
        let p = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("events keep coming")
            .unwrap();
        positions.push(p);
    }
    assert_eq!(positions, (3..=n).collect::<Vec<_>>());
    app.stop().await;
}

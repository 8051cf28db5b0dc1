//! The KurrentDB-protocol read endpoint, proven with stock clients nobody
//! on the team wrote: the Rust `kurrentdb` crate (1.2) and its predecessor
//! `eventstore` (4.0). Every event a client receives is compared with the
//! log (`log_positions` joined with `events`): position, stream, revision,
//! type, data, metadata, id, time — none missing, none twice. Python's and
//! Node's clients run in `scripts/grpc-clients.sh`.

mod common;

use std::time::Duration;

use common::{eventually, Api, TestApp};
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, EventData, Position, ReadAllOptions,
    ReadStreamOptions, ResolvedEvent, StreamPosition, SubscribeToAllOptions,
    SubscribeToStreamOptions, SubscriptionEvent, SubscriptionFilter,
};
use sqlx::PgPool;

/// One event as the log holds it, as a client should see it.
#[derive(Debug, Clone)]
struct Logged {
    position: u64,
    stream: String,
    revision: u64,
    event_type: String,
    data: Vec<u8>,
    metadata: Vec<u8>,
    id: uuid::Uuid,
    created_s: i64,
}

async fn start() -> TestApp {
    TestApp::start_with(|c| {
        c.grpc.bind = Some("127.0.0.1:0".parse().unwrap());
        c.audit_token = Some(tidelog::config::Secret::new(TOKEN.into()));
    })
    .await
}

const TOKEN: &str = "audit-token-for-the-grpc-tests-0123456789";

fn connect(app: &TestApp) -> Client {
    let settings: ClientSettings = format!("esdb://{}?tls=false", app.server.grpc_addr.unwrap())
        .parse()
        .unwrap();
    Client::new(settings).unwrap()
}

/// Waits until the `positions` projection numbered every event; returns
/// how many there are.
async fn all_numbered(pool: &PgPool) -> u64 {
    let counts = || async {
        let (events, numbered): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM log_positions)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        (events as u64, numbered as u64)
    };
    eventually("every event numbered", || async {
        let (events, numbered) = counts().await;
        events == numbered
    })
    .await;
    counts().await.0
}

/// position, stream, sequence, type, payload, metadata, hash, recorded at
type LogRow = (
    i64,
    String,
    i64,
    String,
    String,
    String,
    Vec<u8>,
    chrono::DateTime<chrono::Utc>,
);

async fn log(pool: &PgPool) -> Vec<Logged> {
    let rows: Vec<LogRow> = sqlx::query_as(
        "SELECT p.position, e.aggregate_type || '-' || e.aggregate_id, e.sequence, e.event_type,
                    e.payload::text, e.metadata::text, e.hash, e.recorded_at
               FROM log_positions p JOIN events e ON e.global_position = p.global_position
              ORDER BY p.position",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(
            |(position, stream, sequence, ty, payload, metadata, hash, at)| {
                let data = if tidelog::store::CREDENTIAL_KEYS
                    .iter()
                    .any(|k| payload.contains(k))
                {
                    let mut v: serde_json::Value = serde_json::from_str(&payload).unwrap();
                    tidelog::store::redact_credentials(&mut v);
                    assert!(v.to_string().contains("<redacted>"));
                    v.to_string().into_bytes()
                } else {
                    payload.into_bytes()
                };
                Logged {
                    position: position as u64,
                    stream,
                    revision: sequence as u64 - 1,
                    event_type: ty,
                    data,
                    metadata: metadata.into_bytes(),
                    id: uuid::Builder::from_custom_bytes(hash[..16].try_into().unwrap())
                        .into_uuid(),
                    created_s: at.timestamp(),
                }
            },
        )
        .collect()
}

/// The event as the log holds it, field by field.
fn assert_same(e: &ResolvedEvent, l: &Logged) {
    let r = e.get_original_event();
    assert_eq!(r.position.commit, l.position, "{l:?}");
    assert_eq!(r.position.prepare, l.position);
    assert_eq!(e.commit_position, Some(l.position));
    assert_eq!(r.stream_id(), l.stream);
    assert_eq!(r.revision, l.revision, "{l:?}");
    assert_eq!(r.event_type, l.event_type);
    assert_eq!(r.data.as_ref(), l.data.as_slice(), "{l:?}");
    assert_eq!(r.custom_metadata.as_ref(), l.metadata.as_slice());
    assert!(r.is_json);
    assert_eq!(r.id, l.id);
    // the Rust client keeps whole seconds of `created`
    assert_eq!(r.created.timestamp(), l.created_s);
}

fn assert_all_same(got: &[ResolvedEvent], want: &[&Logged]) {
    assert_eq!(
        got.len(),
        want.len(),
        "got positions {:?}",
        got.iter()
            .map(|e| e.get_original_event().position.commit)
            .collect::<Vec<_>>()
    );
    for (e, l) in got.iter().zip(want) {
        assert_same(e, l);
    }
}

async fn drain(mut s: kurrentdb::ReadStream) -> kurrentdb::Result<Vec<ResolvedEvent>> {
    let mut out = Vec::new();
    while let Some(e) = s.next().await? {
        out.push(e);
    }
    Ok(out)
}

async fn read_all(
    client: &Client,
    options: ReadAllOptions,
) -> kurrentdb::Result<Vec<ResolvedEvent>> {
    drain(client.read_all(&options).await?).await
}

async fn read_stream(
    client: &Client,
    stream: &str,
    options: ReadStreamOptions,
) -> kurrentdb::Result<Vec<ResolvedEvent>> {
    drain(client.read_stream(stream, &options).await?).await
}

/// `$all` filtered on the stream-name prefix of room chat's rooms gives
/// their events as the log holds them; how many.
async fn read_rooms_filtered(client: &Client, log: &[Logged]) -> usize {
    let got = read_all(
        client,
        ReadAllOptions::default()
            .filter(SubscriptionFilter::on_stream_name().add_prefix("ChatRoom-")),
    )
    .await
    .unwrap();
    let rooms: Vec<&Logged> = log
        .iter()
        .filter(|l| l.stream.starts_with("ChatRoom-"))
        .collect();
    assert_all_same(&got, &rooms);
    rooms.len()
}

/// Two accounts, a room, `messages` messages: (api, sender's token, room).
async fn traffic(api: &Api, messages: usize) -> (String, i64) {
    let (_, alice) = api.user("alice").await;
    let _ = api.user("bob").await;
    let room = api.room(&alice, "analysts").await;
    for i in 0..messages {
        api.say(&alice, room, &format!("m{i}")).await;
    }
    (alice, room)
}

fn at(p: u64) -> StreamPosition<Position> {
    StreamPosition::Position(Position {
        commit: p,
        prepare: p,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_rust_client_reads_streams_and_all_both_ways_as_the_log_holds_them() {
    let app = start().await;
    let (_, room) = traffic(&app.api(), 12).await;
    let n = all_numbered(&app.pool).await;
    let log = log(&app.pool).await;
    assert_eq!(log.len() as u64, n);
    assert_eq!(
        log.iter().map(|l| l.position).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    let client = connect(&app);
    let all = |opts: ReadAllOptions| read_all(&client, opts);

    // $all forwards and backwards, whole and from a position
    let got = all(ReadAllOptions::default()
        .forwards()
        .position(StreamPosition::Start))
    .await
    .unwrap();
    assert_all_same(&got, &log.iter().collect::<Vec<_>>());
    let got = all(ReadAllOptions::default()
        .backwards()
        .position(StreamPosition::End))
    .await
    .unwrap();
    assert_all_same(&got, &log.iter().rev().collect::<Vec<_>>());
    let k = n / 2;
    // forwards from a position includes it, backwards excludes it
    let got = all(ReadAllOptions::default()
        .forwards()
        .position(at(k))
        .max_count(5))
    .await
    .unwrap();
    assert_all_same(
        &got,
        &log[(k - 1) as usize..(k + 4) as usize]
            .iter()
            .collect::<Vec<_>>(),
    );
    let got = all(ReadAllOptions::default().backwards().position(at(k)))
        .await
        .unwrap();
    assert_all_same(
        &got,
        &log[..(k - 1) as usize].iter().rev().collect::<Vec<_>>(),
    );
    // a position far past the head, backwards: everything
    let got = all(ReadAllOptions::default().backwards().position(at(n + 5000)))
        .await
        .unwrap();
    assert_all_same(&got, &log.iter().rev().collect::<Vec<_>>());
    // (the client turns End into backwards unless told forwards after it)
    assert!(all(ReadAllOptions::default()
        .position(StreamPosition::End)
        .forwards())
    .await
    .unwrap()
    .is_empty());
    assert!(
        all(ReadAllOptions::default().forwards().position(at(n + 10)))
            .await
            .unwrap()
            .is_empty()
    );

    // filters: a stream-name prefix (a category), an event-type regex
    assert!(read_rooms_filtered(&client, &log).await >= 13);
    let got = all(ReadAllOptions::default()
        .backwards()
        .position(StreamPosition::End)
        .filter(SubscriptionFilter::on_event_type().regex("^Account(Registered)?$")))
    .await
    .unwrap();
    let registered: Vec<&Logged> = log
        .iter()
        .rev()
        .filter(|l| l.event_type == "AccountRegistered")
        .collect();
    assert_eq!(registered.len(), 2);
    assert_all_same(&got, &registered);
    // credentials never leave: the registrations' password hashes are redacted
    for e in &got {
        let data = String::from_utf8_lossy(&e.get_original_event().data).into_owned();
        assert!(data.contains("\"password_hash\":\"<redacted>\""), "{data}");
        assert!(!data.contains("argon2"), "{data}");
    }

    // a stream: forwards, backwards, from a revision, a count
    // room chat's rooms are streams of their number
    let stream = format!("ChatRoom-{room}");
    let of_room: Vec<&Logged> = log.iter().filter(|l| l.stream == stream).collect();
    assert!(
        of_room.len() >= 13,
        "created, joined, 12 messages: {}",
        of_room.len()
    );
    let s = |opts: ReadStreamOptions| read_stream(&client, &stream, opts);
    assert_all_same(&s(ReadStreamOptions::default()).await.unwrap(), &of_room);
    assert_all_same(
        &s(ReadStreamOptions::default()
            .backwards()
            .position(StreamPosition::End)
            .max_count(5))
        .await
        .unwrap(),
        &of_room.iter().rev().take(5).copied().collect::<Vec<_>>(),
    );
    assert_all_same(
        &s(ReadStreamOptions::default()
            .forwards()
            .position(StreamPosition::Position(3))
            .max_count(2))
        .await
        .unwrap(),
        &of_room[3..5],
    );
    assert_all_same(
        &s(ReadStreamOptions::default()
            .backwards()
            .position(StreamPosition::Position(3)))
        .await
        .unwrap(),
        &of_room[..4].iter().rev().copied().collect::<Vec<_>>(),
    );
    assert!(
        s(ReadStreamOptions::default().position(StreamPosition::Position(99)))
            .await
            .unwrap()
            .is_empty()
    );

    // what is not there, what is not allowed: the protocol's errors
    for missing in ["ChatRoom-999999", "$all", "no-such-stream-type", "nodash"] {
        let e = read_stream(&client, missing, ReadStreamOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(e, kurrentdb::Error::ResourceNotFound),
            "{missing}: {e:?}"
        );
    }
    let e = all(
        ReadAllOptions::default().position(StreamPosition::Position(Position {
            commit: 3,
            prepare: 5,
        })),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, kurrentdb::Error::Grpc { code, .. } if *code == tonic::Code::InvalidArgument),
        "{e:?}"
    );
    let e = all(ReadAllOptions::default().filter(SubscriptionFilter::on_event_type().regex("(")))
        .await
        .unwrap_err();
    assert!(matches!(&e, kurrentdb::Error::Grpc { .. }), "{e:?}");
    let write = client
        .append_to_stream(
            stream.as_str(),
            &AppendToStreamOptions::default(),
            EventData::json("MessagePosted", &serde_json::json!({"x": 1})).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(write, kurrentdb::Error::AccessDenied), "{write:?}");
    // still serving after all that, and nothing was written
    assert_eq!(
        all(ReadAllOptions::default()).await.unwrap().len() as u64,
        all_numbered(&app.pool).await
    );
    assert_eq!(all_numbered(&app.pool).await, n);
    app.stop().await;
}

/// Reads longer than a page (1,000 events): the endpoint reads the next
/// pages while it sends one. Every event once, in the log's order, both
/// ways, from positions inside pages, with counts ending inside a later
/// page, filtered, and a subscription catching up over all of them.
#[tokio::test]
async fn reads_over_several_pages_give_every_event_once_in_the_logs_order() {
    let app = start().await;
    let api = app.api();
    let (_, alice) = api.user("alice").await;
    let room = api.room(&alice, "long").await;
    let contents: Vec<String> = (0..2_300).map(|i| format!("m{i}")).collect();
    for batch in contents.chunks(16) {
        futures::future::join_all(batch.iter().map(|c| api.say(&alice, room, c))).await;
    }
    let n = all_numbered(&app.pool).await;
    assert!(n > 2_300, "{n}");
    let log = log(&app.pool).await;
    let client = connect(&app);
    let all = |opts: ReadAllOptions| read_all(&client, opts);
    let forwards: Vec<&Logged> = log.iter().collect();
    let backwards: Vec<&Logged> = log.iter().rev().collect();

    let got = all(ReadAllOptions::default()).await.unwrap();
    assert_all_same(&got, &forwards);
    let got = all(ReadAllOptions::default()
        .backwards()
        .position(StreamPosition::End))
    .await
    .unwrap();
    assert_all_same(&got, &backwards);
    // from inside the second page, to either end
    let got = all(ReadAllOptions::default().forwards().position(at(1_500)))
        .await
        .unwrap();
    assert_all_same(&got, &forwards[1_499..]);
    let got = all(ReadAllOptions::default().backwards().position(at(1_500)))
        .await
        .unwrap();
    assert_all_same(
        &got,
        &forwards[..1_499].iter().rev().copied().collect::<Vec<_>>(),
    );
    // counts that end inside a later page
    let got = all(ReadAllOptions::default()
        .forwards()
        .position(at(700))
        .max_count(1_600))
    .await
    .unwrap();
    assert_all_same(&got, &forwards[699..2_299]);
    let got = all(ReadAllOptions::default()
        .backwards()
        .position(StreamPosition::End)
        .max_count(1_200))
    .await
    .unwrap();
    assert_all_same(&got, &backwards[..1_200]);
    // filtered: every page is scanned, what passes is sent in order
    assert!(read_rooms_filtered(&client, &log).await > 2_300);
    // a subscription from the start catches up over every page
    let mut from_start = listen(
        client
            .subscribe_to_all(&SubscribeToAllOptions::default())
            .await,
        None,
    );
    let heard = hear(&mut from_start, n as usize).await;
    assert_all_same(&heard.events, &forwards);
    assert_eq!(heard.kinds.first(), Some(&"confirmed"));
    assert_eq!(heard.caught_up.last().map(|c| c.1), Some(Some(n)));
    app.stop().await;
}

/// What a subscription sent, in order: the kinds of its messages and its
/// events.
#[derive(Default)]
struct Heard {
    kinds: Vec<&'static str>,
    events: Vec<ResolvedEvent>,
    checkpoints: Vec<u64>,
    caught_up: Vec<(Option<u64>, Option<u64>)>,
}

/// A subscription read by a task of its own: the client's
/// `next_subscription_event` is not cancel-safe (a timeout around it
/// drops the call and the client subscribes again), so waits with a
/// deadline are on this channel instead.
struct Listener {
    rx: tokio::sync::mpsc::UnboundedReceiver<SubscriptionEvent>,
    go: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Reads `sub` from now on; with `pause_after`, reads that many messages,
/// then nothing until [`Listener::resume`].
fn listen(mut sub: kurrentdb::Subscription, pause_after: Option<usize>) -> Listener {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (go, gate) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut gate = Some(gate);
        let mut read = 0;
        loop {
            if pause_after == Some(read) {
                if let Some(g) = gate.take() {
                    let _ = g.await;
                }
            }
            let next = sub.next_subscription_event().await.unwrap();
            read += 1;
            if tx.send(next).is_err() {
                return;
            }
        }
    });
    Listener {
        rx,
        go: pause_after.map(|_| go),
    }
}

impl Listener {
    fn resume(&mut self) {
        let _ = self.go.take().unwrap().send(());
    }
}

/// Takes what `l` heard until it has `events` events (30 s at most), and
/// makes sure nothing more comes for a moment.
async fn hear(l: &mut Listener, events: usize) -> Heard {
    let mut heard = Heard::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut quiet_until = None;
    loop {
        let wait = quiet_until.unwrap_or(deadline);
        let Ok(next) = tokio::time::timeout_at(wait, l.rx.recv()).await else {
            assert!(
                quiet_until.is_some(),
                "timed out with {} of {events} events; heard {:?}",
                heard.events.len(),
                heard
                    .kinds
                    .iter()
                    .filter(|k| **k != "event")
                    .collect::<Vec<_>>()
            );
            return heard;
        };
        match next.expect("the subscription goes on") {
            SubscriptionEvent::Confirmed(_) => heard.kinds.push("confirmed"),
            SubscriptionEvent::EventAppeared(e) => {
                heard.kinds.push("event");
                heard.events.push(e);
            }
            SubscriptionEvent::CaughtUp(c) => {
                heard.kinds.push("caught_up");
                let c = c.expect("caught_up carries its time and place");
                heard
                    .caught_up
                    .push((c.stream_revision, c.position.map(|p| p.commit)));
            }
            SubscriptionEvent::Checkpoint(p) => {
                assert_eq!(p.commit, p.prepare);
                heard.kinds.push("checkpoint");
                heard.checkpoints.push(p.commit);
            }
            other => panic!("unexpected {other:?}"),
        }
        if heard.events.len() == events && quiet_until.is_none() {
            quiet_until = Some(tokio::time::Instant::now() + Duration::from_millis(500));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_catch_up_then_go_live_missing_and_repeating_nothing_while_writes_race() {
    let app = start().await;
    let api = app.api();
    let (alice, room) = traffic(&api, 5).await;
    all_numbered(&app.pool).await;
    let saved = 7u64;
    let client = connect(&app);
    let stream = format!("ChatRoom-{room}");
    // writers race every subscription's hand-over from catch-up to live
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (api, alice) = (api.clone(), alice.clone());
            tokio::spawn(async move {
                for i in 0..40 {
                    api.say(&alice, room, &format!("w{w}-{i}")).await;
                }
            })
        })
        .collect();
    let mut from_start = listen(
        client
            .subscribe_to_all(&SubscribeToAllOptions::default())
            .await,
        None,
    );
    let mut resumed = listen(
        client
            .subscribe_to_all(&SubscribeToAllOptions::default().position(at(saved)))
            .await,
        None,
    );
    let mut filtered = listen(
        client
            .subscribe_to_all(
                &SubscribeToAllOptions::default().filter(
                    SubscriptionFilter::on_stream_name()
                        .add_prefix("ChatRoom-")
                        .max(4),
                ),
            )
            .await,
        None,
    );
    let mut of_room = listen(
        client
            .subscribe_to_stream(
                stream.as_str(),
                &SubscribeToStreamOptions::default().start_from(StreamPosition::Start),
            )
            .await,
        None,
    );
    let mut room_from_3 = listen(
        client
            .subscribe_to_stream(
                stream.as_str(),
                &SubscribeToStreamOptions::default().start_from(StreamPosition::Position(3)),
            )
            .await,
        None,
    );
    let mut nothing_yet = listen(
        client
            .subscribe_to_stream("ChatRoom-424242", &SubscribeToStreamOptions::default())
            .await,
        None,
    );
    for w in writers {
        w.await.unwrap();
    }
    let n = all_numbered(&app.pool).await as usize;
    let log = log(&app.pool).await;
    let room_log: Vec<&Logged> = log.iter().filter(|l| l.stream == stream).collect();
    assert!(room_log.len() > 5 + 120, "{}", room_log.len());

    let heard = hear(&mut from_start, n).await;
    assert_eq!(heard.kinds[0], "confirmed");
    assert_eq!(
        heard.kinds.iter().filter(|k| **k == "caught_up").count(),
        1,
        "{:?}",
        heard.kinds
    );
    assert_all_same(&heard.events, &log.iter().collect::<Vec<_>>());
    let (revision, position) = heard.caught_up[0];
    assert_eq!(revision, None);
    assert!(position.is_some_and(|p| p >= 1 && p <= n as u64));

    // resuming from a saved position: everything after it, nothing before
    let heard = hear(&mut resumed, n - saved as usize).await;
    assert_eq!(heard.kinds[0], "confirmed");
    assert_all_same(
        &heard.events,
        &log[saved as usize..].iter().collect::<Vec<_>>(),
    );

    // filtered: the category's events only, and checkpoints every 4
    // events scanned (matching or not), in order
    let rooms: Vec<&Logged> = log
        .iter()
        .filter(|l| l.stream.starts_with("ChatRoom-"))
        .collect();
    let heard = hear(&mut filtered, rooms.len()).await;
    assert_all_same(&heard.events, &rooms);
    assert!(
        heard.checkpoints.len() >= n / 4 - 1,
        "{:?}",
        heard.checkpoints
    );
    assert!(heard.checkpoints.windows(2).all(|w| w[0] < w[1]));
    assert!(heard
        .checkpoints
        .iter()
        .all(|c| *c % 4 == 0 && *c <= n as u64));

    // a stream from its start, and from a revision (exclusive)
    let heard = hear(&mut of_room, room_log.len()).await;
    assert_eq!(heard.kinds[0], "confirmed");
    assert_all_same(&heard.events, &room_log);
    let (revision, position) = heard.caught_up[0];
    assert!(revision.is_some() && position.is_none());
    let heard = hear(&mut room_from_3, room_log.len() - 4).await;
    assert_all_same(&heard.events, &room_log[4..]);

    // a stream that does not exist (yet): confirmed, caught up, quiet
    let heard = hear(&mut nothing_yet, 0).await;
    assert_eq!(heard.kinds, ["confirmed", "caught_up"]);
    assert_eq!(heard.caught_up[0], (None, None));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_falls_behind_the_live_buffer_and_still_misses_nothing() {
    let app = start().await;
    traffic(&app.api(), 1).await;
    let before = all_numbered(&app.pool).await as usize;
    let client = connect(&app);
    // reads the confirmation and caught_up, then nothing until resumed
    let mut sub = listen(
        client
            .subscribe_to_all(&SubscribeToAllOptions::default().position(StreamPosition::End))
            .await,
        Some(2),
    );
    let heard = hear(&mut sub, 0).await;
    assert_eq!(heard.kinds, ["confirmed", "caught_up"]);
    assert_eq!(heard.caught_up[0].1, Some(before as u64));
    // far more than the live buffer (4096 events) and the client's HTTP/2
    // window (2 MB) hold together, while the client reads nothing: the
    // subscription lags the feed and catches up from the database (seen
    // with --nocapture and a print there: 7,155 events missed live)
    let burst = 3 * 4096;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'Probe', 'lag', n, 'Probed', '1', json_build_object('n', n, 'pad', repeat('x', 2000)), '{}'::json
           FROM generate_series(1, $1) n",
    )
    .bind(burst as i64)
    .execute(&app.pool)
    .await
    .unwrap();
    let n = all_numbered(&app.pool).await as usize;
    assert_eq!(n, before + burst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    sub.resume();
    let heard = hear(&mut sub, burst).await;
    let positions: Vec<u64> = heard
        .events
        .iter()
        .map(|e| e.get_original_event().position.commit)
        .collect();
    assert_eq!(
        positions,
        ((before + 1) as u64..=n as u64).collect::<Vec<_>>()
    );
    let revisions: Vec<u64> = heard
        .events
        .iter()
        .map(|e| e.get_original_event().revision)
        .collect();
    assert_eq!(revisions, (0..burst as u64).collect::<Vec<_>>());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_discover_the_cluster_through_gossip_find_this_one_leader() {
    let app = start().await;
    traffic(&app.api(), 1).await;
    let n = all_numbered(&app.pool).await;
    let settings: ClientSettings = format!(
        "esdb+discover://{}?tls=false",
        app.server.grpc_addr.unwrap()
    )
    .parse()
    .unwrap();
    let client = Client::new(settings).unwrap();
    let got = read_all(&client, ReadAllOptions::default()).await.unwrap();
    assert_eq!(got.len() as u64, n);
    app.stop().await;
}

/// A certificate authority and a certificate for 127.0.0.1 and localhost
/// signed by it, as PEM files in `dir`: (ca, cert, key).
fn certificates(dir: &std::path::Path) -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "tidelog test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    (
        write("ca.pem", ca.pem()),
        write("cert.pem", leaf.pem()),
        write("key.pem", leaf_key.serialize_pem()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_reads_need_the_auditors_token_and_plaintext_stays_on_loopback() {
    // off loopback, without TLS, the server refuses to start
    let dir = common::open_tempdir();
    let db = common::fresh_database().await;
    let mut config = common::test_config(&db, dir.path());
    config.grpc.bind = Some("0.0.0.0:0".parse().unwrap());
    let refused = tidelog::app::Server::start(config).await.err().unwrap();
    assert!(
        format!("{refused:#}").contains("TIDELOG_GRPC_TLS_CERT"),
        "{refused:#}"
    );

    let (ca, cert, key) = certificates(dir.path());
    let app = TestApp::start_with(|c| {
        c.grpc.bind = Some("127.0.0.1:0".parse().unwrap());
        c.grpc.tls_cert = Some(cert.into());
        c.grpc.tls_key = Some(key.into());
        c.audit_token = Some(tidelog::config::Secret::new(TOKEN.into()));
    })
    .await;
    traffic(&app.api(), 2).await;
    let n = all_numbered(&app.pool).await;
    let port = app.server.grpc_addr.unwrap().port();
    let client = |credentials: &str| {
        let settings: ClientSettings =
            format!("esdb://{credentials}127.0.0.1:{port}?tls=true&tlsCaFile={ca}")
                .parse()
                .unwrap();
        Client::new(settings).unwrap()
    };
    let good = client(&format!("analyst:{TOKEN}@"));
    assert_eq!(
        read_all(&good, ReadAllOptions::default())
            .await
            .unwrap()
            .len() as u64,
        n
    );
    let mut sub = listen(
        good.subscribe_to_all(&SubscribeToAllOptions::default())
            .await,
        None,
    );
    assert_eq!(hear(&mut sub, n as usize).await.events.len() as u64, n);
    for bad in ["analyst:wrong-token@", ""] {
        let e = read_all(&client(bad), ReadAllOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(e, kurrentdb::Error::AccessDenied), "{bad}: {e:?}");
        let e = read_stream(&client(bad), "ChatRoom-1", ReadStreamOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(e, kurrentdb::Error::AccessDenied), "{bad}: {e:?}");
    }
    // a plaintext client gets no answer, and the endpoint goes on serving
    let settings: ClientSettings = format!("esdb://127.0.0.1:{port}?tls=false")
        .parse()
        .unwrap();
    let plain = Client::new(settings).unwrap();
    let e = tokio::time::timeout(
        Duration::from_secs(20),
        read_all(&plain, ReadAllOptions::default()),
    )
    .await
    .expect("a plaintext client is answered, not hung")
    .unwrap_err();
    assert!(!matches!(e, kurrentdb::Error::AccessDenied), "{e:?}");
    assert_eq!(
        read_all(&good, ReadAllOptions::default())
            .await
            .unwrap()
            .len() as u64,
        n
    );
    app.stop().await;
}

/// `tidelog grpc serve`: the endpoint alone, in its own process, on the
/// database a server writes to; it hears new events through the
/// projections' notifications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_runs_alone_as_tidelog_grpc_serve_and_follows_another_process_writes() {
    let app = start().await;
    let (alice, room) = traffic(&app.api(), 2).await;
    all_numbered(&app.pool).await;
    let dir = common::open_tempdir();
    let (mut child, addr) = spawn_grpc_serve(
        std::process::Command::new(env!("CARGO_BIN_EXE_tidelog"))
            .args(["grpc", "serve"])
            .env("DATABASE_URL", common::url_of(&app.db))
            .env("TIDELOG_DATA_DIR", dir.path()),
    );
    let settings: ClientSettings = format!("esdb://{addr}?tls=false").parse().unwrap();
    let client = Client::new(settings).unwrap();
    let mut sub = listen(
        client
            .subscribe_to_all(&SubscribeToAllOptions::default())
            .await,
        None,
    );
    for i in 0..10 {
        app.api().say(&alice, room, &format!("later {i}")).await;
    }
    let n = all_numbered(&app.pool).await;
    let log = log(&app.pool).await;
    let heard = hear(&mut sub, n as usize).await;
    assert_all_same(&heard.events, &log.iter().collect::<Vec<_>>());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    app.stop().await;
}

/// Starts `cmd` (a `tidelog grpc serve`) on a free port: the child and
/// the address it listens on; an ERROR line before that fails the test.
fn spawn_grpc_serve(cmd: &mut std::process::Command) -> (std::process::Child, String) {
    let mut child = cmd
        .env("TIDELOG_GRPC_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(i) = line.find("tidelog gRPC listening addr=") {
                let addr = line[i + "tidelog gRPC listening addr=".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_owned();
                let _ = tx.send(Ok(addr));
            } else if line.contains("ERROR") {
                let _ = tx.send(Err(line));
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("tidelog grpc serve listens")
        .unwrap_or_else(|e| panic!("tidelog grpc serve failed: {e}"));
    (child, addr)
}

/// Runs `program` of the PostgreSQL binaries as the cluster's user (the
/// `postgres` system user when the tests run as root).
fn pg_command(program: &str) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    // beside the real initdb: a PATH of links may hold only the three
    // binaries the server needs
    let initdb = tidelog::embedded_pg::find_binaries(None)
        .unwrap()
        .join("initdb");
    let bin = std::fs::canonicalize(initdb).unwrap();
    let mut cmd = std::process::Command::new(bin.with_file_name(program));
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    cmd
}

/// `tidelog grpc serve` on a hot standby of the server's database (a
/// cluster of this test's own and a streaming replica of it): it reads
/// the auditors' token from the replicated secrets (a standby takes no
/// INSERT), serves over TLS, and its subscribers follow the primary's
/// writes by polling (a standby takes no LISTEN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_reads_a_hot_standby_and_follows_the_primary() {
    use tidelog::embedded_pg::{ClusterOptions, EmbeddedPostgres};
    let dir = common::open_tempdir();
    let (primary_root, standby_root) = (dir.path().join("primary"), dir.path().join("standby"));
    let opts = ClusterOptions {
        settings: vec![("fsync".into(), "off".into())],
        bin_dir: None,
        ..Default::default()
    };
    let primary = {
        let (root, opts) = (primary_root.clone(), opts.clone());
        tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&root, &opts))
            .await
            .unwrap()
            .unwrap()
    };
    let mut admin = sqlx::ConnectOptions::connect(&primary.connect_options("postgres"))
        .await
        .unwrap();
    sqlx::query("CREATE DATABASE tidelog")
        .execute(&mut admin)
        .await
        .unwrap();
    // the server keeps its generated audit token in the database
    let app = TestApp::start_on(primary.connect_options("tidelog"), |_| {}).await;
    let (alice, room) = traffic(&app.api(), 2).await;
    all_numbered(&app.pool).await;
    let token: String =
        sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = 'audit_token'")
            .fetch_one(&app.pool)
            .await
            .unwrap();

    // a streaming replica: a base backup of the primary, on its own socket
    std::fs::create_dir_all(&standby_root).unwrap();
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        nix::unistd::chown(&standby_root, Some(user.uid), Some(user.gid)).unwrap();
    }
    let out = pg_command("pg_basebackup")
        .arg("-h")
        .arg(primary.socket_dir())
        .args([
            "-p", "5432", "-U", "postgres", "-R", "-X", "stream", "-c", "fast", "-D",
        ])
        .arg(standby_root.join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(standby_root.join("data/postgresql.conf"))
        .unwrap()
        .write_all(
            format!(
                "\nunix_socket_directories = '{}'\n",
                standby_root.canonicalize().unwrap().join("run").display()
            )
            .as_bytes(),
        )
        .unwrap();
    let standby = {
        let (root, opts) = (standby_root.clone(), opts.clone());
        tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&root, &opts))
            .await
            .unwrap()
            .unwrap()
    };
    let on_standby = standby.connect_options("tidelog");
    let mut check = sqlx::ConnectOptions::connect(&on_standby).await.unwrap();
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut check)
        .await
        .unwrap();
    assert!(in_recovery, "a standby");

    let (ca, cert, key) = certificates(dir.path());
    let (mut child, addr) = spawn_grpc_serve(
        std::process::Command::new(env!("CARGO_BIN_EXE_tidelog"))
            .args([
                "grpc",
                "serve",
                "--database-url",
                &common::url_of(&on_standby),
            ])
            .env_remove("DATABASE_URL")
            .env_remove("TIDELOG_AUDIT_TOKEN")
            .env("TIDELOG_DATA_DIR", dir.path().join("grpc-data"))
            .env("TIDELOG_GRPC_TLS_CERT", &cert)
            .env("TIDELOG_GRPC_TLS_KEY", &key),
    );
    let port = addr.rsplit(':').next().unwrap();
    let settings: ClientSettings =
        format!("esdb://analyst:{token}@127.0.0.1:{port}?tls=true&tlsCaFile={ca}")
            .parse()
            .unwrap();
    let client = Client::new(settings).unwrap();
    let mut sub = listen(
        client
            .subscribe_to_all(&SubscribeToAllOptions::default())
            .await,
        None,
    );
    // written on the primary, read on the standby
    for i in 0..10 {
        app.api()
            .say(&alice, room, &format!("replicated {i}"))
            .await;
    }
    let n = all_numbered(&app.pool).await;
    let log = log(&app.pool).await;
    let heard = hear(&mut sub, n as usize).await;
    assert_all_same(&heard.events, &log.iter().collect::<Vec<_>>());
    let got = read_all(
        &client,
        ReadAllOptions::default()
            .backwards()
            .position(StreamPosition::End),
    )
    .await
    .unwrap();
    assert_all_same(&got, &log.iter().rev().collect::<Vec<_>>());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    drop(check);
    app.stop().await;
    tokio::task::spawn_blocking(move || {
        standby.stop().unwrap();
        primary.stop().unwrap();
    })
    .await
    .unwrap();
}

//! Bulk-loads a store of N events (a third each: room-chat messages, gifts,
//! wallet movements) for the read, rebuild and audit scenarios: real event payloads (serialised from the
//! domain's own types), appended through the same triggers (hash chain,
//! unique keys), in chunks of one multi-row INSERT each.

use aggregates::monitored_room::{GiftObservation, MonitoredRoomEvent};
use aggregates::values::MemberRole;
use aggregates::{ChatRoomEvent, Counterparty, Reason, WalletEvent};
use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::DomainEvent;
use serde_json::Value;
use sqlx::PgPool;

pub const CHAT_ROOMS: i64 = 10;
pub const GIFT_ROOMS: i64 = 10;
/// The month the gifts fall in (a past one, so summaries are historical).
pub const GIFT_MONTH: (i32, u32) = (2026, 8);
pub const FIRST_ROOM: i64 = 900_000;
/// Wallets the movements spread over; the first is the reader's points.
const WALLETS: usize = 100;
const FIRST_MESSAGE: i64 = 1_000_000_000;
const CHUNK: usize = 5000;

struct Row {
    aggregate_type: &'static str,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    payload: Value,
}

fn chat(room: i64, seq: i64, e: ChatRoomEvent) -> Row {
    Row {
        aggregate_type: "ChatRoom",
        aggregate_id: room.to_string(),
        sequence: seq,
        event_type: e.event_type(),
        payload: serde_json::to_value(e).expect("serialisable"),
    }
}

fn gift_row(room: i64, seq: i64, e: MonitoredRoomEvent) -> Row {
    Row {
        aggregate_type: "MonitoredRoom",
        aggregate_id: room.to_string(),
        sequence: seq,
        event_type: e.event_type(),
        payload: serde_json::to_value(e).expect("serialisable"),
    }
}

async fn insert(pool: &PgPool, rows: &[Row]) -> anyhow::Result<()> {
    let meta = serde_json::json!({"actor": "system", "surface": "bench", "request_id": "seed",
        "correlation_id": "seed", "causation_id": "seed", "client_ip": "127.0.0.1"});
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT t, i, s, e, '1', p, $6 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::json[]) AS u(t, i, s, e, p)",
    )
    .bind(rows.iter().map(|r| r.aggregate_type).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.aggregate_id.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.sequence).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event_type.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.payload.clone()).collect::<Vec<_>>())
    .bind(meta)
    .execute(pool)
    .await?;
    Ok(())
}

/// Movements over `WALLETS` fresh wallets (the first may be a given
/// account's): credits of 100 and debits of 30 in turn, never negative.
struct WalletSeeder {
    wallets: Vec<String>,
    seq: Vec<i64>,
    balances: Vec<i64>,
    n: usize,
}

impl WalletSeeder {
    fn new(first: Option<uuid::Uuid>) -> Self {
        let wallets = first
            .into_iter()
            .chain(std::iter::repeat_with(uuid::Uuid::new_v4))
            .take(WALLETS)
            .map(|a| aggregates::wallet::wallet_id(a, aggregates::Currency::Points))
            .collect();
        Self {
            wallets,
            seq: vec![0; WALLETS],
            balances: vec![0; WALLETS],
            n: 0,
        }
    }

    fn next(&mut self, tag: i64, at0: DateTime<Utc>) -> Row {
        let wk = self.n % WALLETS;
        self.n += 1;
        self.seq[wk] += 1;
        let at = at0 + Duration::milliseconds(tag);
        let operation_id = format!("seed-{tag}");
        let event = if self.seq[wk] % 2 == 1 {
            self.balances[wk] += 100;
            WalletEvent::WalletCredited {
                operation_id,
                amount: 100,
                counter: Counterparty::ExternalCards,
                reason: Reason::Redeem,
                reference: None,
                description: "bench card".into(),
                balance_after: self.balances[wk],
                at,
            }
        } else {
            self.balances[wk] -= 30;
            WalletEvent::WalletDebited {
                operation_id,
                amount: 30,
                counter: Counterparty::PlatformRevenue,
                reason: Reason::Consume,
                description: "bench job".into(),
                reference: None,
                balance_after: self.balances[wk],
                at,
            }
        };
        Row {
            aggregate_type: "Wallet",
            aggregate_id: self.wallets[wk].clone(),
            sequence: self.seq[wk],
            event_type: event.event_type(),
            payload: serde_json::to_value(event).expect("serialisable"),
        }
    }
}

/// Appends `count` wallet movements over fresh wallets (for the audit
/// figure at a given ledger size).
pub async fn load_wallet_events(
    pool: &PgPool,
    count: u64,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let at0 = Utc::now() - Duration::days(30);
    let mut seeder = WalletSeeder::new(None);
    let mut written = 0u64;
    let mut tag = 10_000_000_000i64;
    while written < count {
        let n = (count - written).min(CHUNK as u64) as usize;
        let rows: Vec<Row> = (0..n)
            .map(|_| {
                tag += 1;
                seeder.next(tag, at0)
            })
            .collect();
        insert(pool, &rows).await?;
        written += n as u64;
        bar.inc(n as u64);
    }
    Ok(())
}

pub struct Loaded {
    pub events: u64,
    pub seconds: f64,
    pub chat_rooms: Vec<i64>,
    pub gift_rooms: Vec<i64>,
}

/// Appends about `total` events.
pub async fn load(
    pool: &PgPool,
    total: u64,
    reader: uuid::Uuid,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Loaded> {
    let mut wallets = WalletSeeder::new(Some(reader));
    let started = std::time::Instant::now();
    let at0: DateTime<Utc> = chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(GIFT_MONTH.0, GIFT_MONTH.1, 1, 0, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    let chat_rooms: Vec<i64> = (0..CHAT_ROOMS).map(|i| FIRST_ROOM + i).collect();
    let gift_rooms: Vec<i64> = (0..GIFT_ROOMS).map(|i| FIRST_ROOM + 1000 + i).collect();
    let mut head = Vec::new();
    for &room in &chat_rooms {
        head.push(chat(
            room,
            1,
            ChatRoomEvent::ChatRoomCreated {
                room_id: room,
                name: format!("bench {room}"),
                description: String::new(),
                created_by: 1,
                created_at: at0,
            },
        ));
        head.push(chat(
            room,
            2,
            ChatRoomEvent::MemberAdded {
                room_id: room,
                user_id: 1,
                username: "bench".into(),
                role: MemberRole::Owner,
                added_by: 1,
                added_at: at0,
            },
        ));
    }
    for &room in &gift_rooms {
        head.push(gift_row(
            room,
            1,
            MonitoredRoomEvent::RoomMonitored {
                room_id: room,
                anchor_name: format!("anchor {room}"),
                at: at0,
            },
        ));
    }
    insert(pool, &head).await?;
    bar.inc(head.len() as u64);
    let mut written = head.len() as u64;

    let mut chat_seq: Vec<i64> = vec![2; chat_rooms.len()];
    let mut gift_seq: Vec<i64> = vec![1; gift_rooms.len()];
    let mut sessions: Vec<i64> = vec![0; gift_rooms.len()];
    let mut pos: Vec<i64> = vec![0; gift_rooms.len()];
    let per_gift_session = 200i64;
    let mut n = 0i64;
    while written < total {
        let mut rows = Vec::with_capacity(CHUNK);
        while rows.len() < CHUNK && written + (rows.len() as u64) < total {
            let k = (n as usize) % chat_rooms.len();
            n += 1;
            if n % 3 == 2 {
                rows.push(wallets.next(n, at0));
                continue;
            }
            if n % 3 == 0 {
                chat_seq[k] += 1;
                let room = chat_rooms[k];
                rows.push(chat(
                    room,
                    chat_seq[k],
                    ChatRoomEvent::MessagePosted {
                        room_id: room,
                        message_id: FIRST_MESSAGE + n,
                        sender_id: 1,
                        sender_name: "bench".into(),
                        kind: "text".into(),
                        content: format!("message {n} in the benchmark's store"),
                        sent_at: at0 + Duration::milliseconds(n),
                    },
                ));
                continue;
            }
            let room = gift_rooms[k];
            // every `per_gift_session` gifts make one evening's session
            let g = pos[k];
            pos[k] = if g > per_gift_session { 0 } else { g + 1 };
            gift_seq[k] += 1;
            if g == 0 {
                sessions[k] += 1;
            }
            // one evening session every 3 hours of the month, none overlapping
            let start = at0 + Duration::hours(3 * (sessions[k] - 1));
            let at = start + Duration::seconds(g * 40);
            let event = if g == 0 {
                MonitoredRoomEvent::LiveStarted {
                    session_no: sessions[k],
                    at,
                }
            } else if g > per_gift_session {
                MonitoredRoomEvent::LiveEnded {
                    session_no: sessions[k],
                    replay: false,
                    at,
                }
            } else {
                MonitoredRoomEvent::GiftReceived(GiftObservation {
                    key: format!("gift:bench-{room}-{n}"),
                    uid: n % 5000,
                    uname: "viewer".into(),
                    gift_id: 31036,
                    gift_name: "小花花".into(),
                    num: 1 + n % 3,
                    gold: true,
                    price: 100,
                    total_coin: 100 * (1 + n % 3),
                    blind_box: None,
                    at,
                })
            };
            rows.push(gift_row(room, gift_seq[k], event));
        }
        insert(pool, &rows).await?;
        written += rows.len() as u64;
        bar.inc(rows.len() as u64);
    }
    Ok(Loaded {
        events: written,
        seconds: started.elapsed().as_secs_f64(),
        chat_rooms,
        gift_rooms,
    })
}

/// Live rooms for the read figures: `rooms` rooms of one anchor (every
/// `live_every`-th live), then `chat` chat events over them — one in five
/// an AI reply on the room's stream, the rest viewer messages of 50 guests
/// per room — spread over the last hour. Returns the events written.
pub async fn load_live(
    pool: &PgPool,
    anchor: uuid::Uuid,
    rooms: usize,
    live_every: usize,
    chat: u64,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<u64> {
    use aggregates::audience::ViewerChatEvent;
    use aggregates::live_room::LiveRoomId;
    use aggregates::LiveRoomEvent;
    let now = Utc::now();
    let ids: Vec<String> = (0..rooms as u64)
        .map(|i| LiveRoomId::from_bytes((0xbe00_0000_0000_0000u64 + i).to_be_bytes()).to_string())
        .collect();
    let live_row = |id: &str, seq: i64, e: LiveRoomEvent| Row {
        aggregate_type: "LiveRoom",
        aggregate_id: id.to_owned(),
        sequence: seq,
        event_type: e.event_type(),
        payload: serde_json::to_value(e).expect("serialisable"),
    };
    let mut room_seq = vec![0i64; rooms];
    let mut written = 0u64;
    for (c, chunk) in ids.chunks(CHUNK / 2).enumerate() {
        let mut rows = Vec::with_capacity(CHUNK);
        for (j, id) in chunk.iter().enumerate() {
            let i = c * (CHUNK / 2) + j;
            room_seq[i] += 1;
            rows.push(live_row(
                id,
                room_seq[i],
                LiveRoomEvent::LiveRoomCreated {
                    room_id: id.clone(),
                    anchor_id: anchor,
                    character_name: format!("Character {i}"),
                    character_date: "2025-9-16 @21h 19m 03s 522ms".into(),
                    card_spec: "chara_card_v2".into(),
                    card_sha256: String::new(),
                    image: None,
                    title: format!("bench room {i}"),
                    describe: "a benchmark room".into(),
                    room_type: 0,
                    coin_num: 0,
                    language: "en".into(),
                    tags: vec![format!("tag{}", i % 50), "bench".into()],
                    created_at: now - Duration::hours(2),
                },
            ));
            if i.is_multiple_of(live_every) {
                room_seq[i] += 1;
                rows.push(live_row(
                    id,
                    room_seq[i],
                    LiveRoomEvent::LiveStarted {
                        started_at: now - Duration::hours(2),
                    },
                ));
            }
        }
        insert(pool, &rows).await?;
        written += rows.len() as u64;
        bar.inc(rows.len() as u64);
    }
    let mut chatter_seq: std::collections::HashMap<String, i64> = Default::default();
    let mut n = 0u64;
    while n < chat {
        let mut rows = Vec::with_capacity(CHUNK);
        while rows.len() < CHUNK && n < chat {
            let k = (n as usize) % rooms;
            let at = now - Duration::milliseconds(((chat - n) * 3_600_000 / chat.max(1)) as i64);
            if n.is_multiple_of(5) {
                room_seq[k] += 1;
                rows.push(live_row(
                    &ids[k],
                    room_seq[k],
                    LiveRoomEvent::LiveChatRecorded {
                        key: format!("seed-{n}"),
                        is_user: false,
                        sender_name: format!("Character {k}"),
                        message: format!("AI reply {n} in the benchmark's store"),
                        sent_at: at,
                        recorded_at: at,
                    },
                ));
            } else {
                let guest = format!("游客{}", n % 50);
                let stream = format!("{}/guest:{guest}", ids[k]);
                let seq = chatter_seq.entry(stream.clone()).or_insert(0);
                *seq += 1;
                let e = ViewerChatEvent::ViewerMessagePosted {
                    room_id: ids[k].clone(),
                    account_id: None,
                    uid: String::new(),
                    username: guest,
                    message: format!("viewer message {n}"),
                    sent_at: at,
                };
                rows.push(Row {
                    aggregate_type: "ViewerChat",
                    aggregate_id: stream,
                    sequence: *seq,
                    event_type: e.event_type(),
                    payload: serde_json::to_value(e).expect("serialisable"),
                });
            }
            n += 1;
        }
        insert(pool, &rows).await?;
        written += rows.len() as u64;
        bar.inc(rows.len() as u64);
    }
    Ok(written)
}

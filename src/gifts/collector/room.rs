//! One monitored room's live stream, held while this process holds its
//! lease: connect (room → token and hosts → WebSocket → auth), heartbeat
//! every 30 s, decode what comes, record it through the ingestion path, and
//! reconnect — exponential backoff with jitter from 1 s to a minute, reset
//! after a healthy connection; a new token and the next host each time;
//! minutes of rest after a `-352`. The protocol's heartbeat, not WebSocket
//! pings, decides that a connection is dead.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aggregates::values::RoomId;
use futures::{FutureExt, SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::api::{ApiError, BiliApi, Room};
use super::lease::Report;
use super::METRICS;
use crate::bilibili::packet::{self, AuthBody, Incoming};
use crate::core::Core;
use crate::gifts::ingest::{ingest, IngestError};
use crate::store::CommandMeta;

/// Messages recorded at once at most, and how long one waits for others.
const BATCH: usize = 100;
/// Messages recorded at once when a backlog has built up.
const MAX_BATCH: usize = 1000;
const FLUSH_EVERY: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that lasted this long was healthy: the backoff starts over.
const HEALTHY: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the task reports, read by the lease renewal.
#[derive(Default)]
pub struct RoomState {
    pub report: Mutex<Report>,
}

impl RoomState {
    fn update(&self, f: impl FnOnce(&mut Report)) {
        f(&mut self.report.lock().unwrap());
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0}")]
    Connection(String),
}

fn meta(room_id: i64, session: &str) -> CommandMeta {
    let id = format!("collector-{}", uuid::Uuid::now_v7());
    CommandMeta {
        actor: "system:collector".into(),
        surface: "gift",
        request_id: id.clone(),
        correlation_id: format!("collector:{room_id}:{session}"),
        causation_id: id,
        client_ip: "bilibili".into(),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Connects the room again and again until `stop` says so.
pub async fn run(
    core: Core,
    api: Arc<BiliApi>,
    room_id: i64,
    state: Arc<RoomState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut attempt = 0usize;
    loop {
        let started = Instant::now();
        let result = session(&core, &api, room_id, &state, &mut stop, attempt).await;
        state.update(|r| r.connected_since = None);
        if *stop.borrow() {
            return;
        }
        let risk = matches!(result, Err(SessionError::Api(ApiError::RiskControl)));
        if let Err(e) = &result {
            tracing::warn!(room_id, error = %e, "collector: room disconnected; reconnecting");
            state.update(|r| {
                r.last_error = Some(e.to_string());
                r.reconnects += 1;
            });
            METRICS.reconnects.fetch_add(1, Ordering::Relaxed);
            if risk {
                METRICS.refusals_352.fetch_add(1, Ordering::Relaxed);
            }
        }
        if started.elapsed() > HEALTHY {
            backoff = Duration::from_secs(1);
        }
        let wait = if risk {
            core.config.collector.risk_pause
        } else {
            // 0.5× to 1.5× the backoff: rooms dropped together come back apart
            backoff.mul_f64(0.5 + rand::random::<f64>())
        };
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt += 1;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Counts a connection while it lasts.
struct Connected;

impl Connected {
    fn new() -> Self {
        METRICS.connections.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        METRICS.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One connection; `Ok` once stopped (true if it had connected), `Err`
/// when it failed or dropped.
async fn session(
    core: &Core,
    api: &BiliApi,
    room_id: i64,
    state: &RoomState,
    stop: &mut watch::Receiver<bool>,
    attempt: usize,
) -> Result<bool, SessionError> {
    let cfg = &core.config.collector;
    let room = api.room(room_id as u64).await?;
    let info = api.danmu_info(room.room_id).await?;
    let (buvid, uid) = (api.buvid3().await?, api.mid().await?);
    let mut ws = connect(&info.hosts, attempt, &cfg.user_agent, &api.cookie().await?).await?;
    let auth = AuthBody::web(uid, room.room_id, &buvid, &info.token);
    ws.send(Message::Binary(packet::encode_auth(&auth).into()))
        .await
        .map_err(|e| SessionError::Connection(format!("sending the auth packet: {e}")))?;
    let session_id = uuid::Uuid::now_v7().to_string();
    let meta = meta(room_id, &session_id);
    let mut pending: Vec<Value> = Vec::new();
    await_auth(&mut ws, &mut pending).await?;
    tracing::info!(room_id, real_room = room.room_id, "collector: connected");
    let _connected = Connected::new();
    state.update(|r| {
        r.connected_since = Some(chrono::Utc::now());
        r.last_error = None;
    });

    let mut live = room.live;
    if live {
        pending.extend(stats(api, &room, now_ms()).await);
    }
    if let Some(followers) = room.attention {
        pending.push(
            json!({"cmd": "ROOM_REAL_TIME_MESSAGE_UPDATE", "received_at": now_ms(),
                            "data": {"fans": followers}}),
        );
    }
    let mut heartbeat = tokio::time::interval(cfg.heartbeat);
    let mut last_reply = Instant::now();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    let mut stats_every = tokio::time::interval(cfg.stats_every);
    stats_every.reset();
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = ws.close(None).await;
                record(core, &meta, room_id, &mut pending, state).await;
                return Ok(true);
            }
            _ = heartbeat.tick() => {
                // no reply to the last two: the connection is dead, whatever TCP says
                if last_reply.elapsed() > cfg.heartbeat * 2 + Duration::from_secs(10) {
                    record(core, &meta, room_id, &mut pending, state).await;
                    return Err(SessionError::Connection("no heartbeat reply".into()));
                }
                ws.send(Message::Binary(packet::encode_heartbeat().into()))
                    .await
                    .map_err(|e| SessionError::Connection(format!("sending a heartbeat: {e}")))?;
            }
            _ = flush.tick(), if !pending.is_empty() => {
                record(core, &meta, room_id, &mut pending, state).await;
            }
            _ = stats_every.tick(), if live => {
                pending.extend(stats(api, &room, now_ms()).await);
            }
            frame = ws.next() => {
                let bytes = match frame {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) | None => {
                        record(core, &meta, room_id, &mut pending, state).await;
                        return Err(SessionError::Connection("closed by the server".into()));
                    }
                    Some(Err(e)) => {
                        record(core, &meta, room_id, &mut pending, state).await;
                        return Err(SessionError::Connection(format!("reading: {e}")));
                    }
                    Some(Ok(_)) => continue,
                };
                take(api, &room, &mut live, &mut last_reply, &mut pending, &bytes).await;
                if pending.len() >= BATCH {
                    // a backlog: take what has already arrived too, and
                    // record it in one go (one append for up to MAX_BATCH)
                    while pending.len() < MAX_BATCH {
                        let Some(Some(Ok(Message::Binary(more)))) = ws.next().now_or_never() else {
                            break;
                        };
                        take(api, &room, &mut live, &mut last_reply, &mut pending, &more).await;
                    }
                    record(core, &meta, room_id, &mut pending, state).await;
                }
            }
        }
    }
}

/// A frame's messages into `pending`; a session's start and end (LIVE,
/// PREPARING) also bring the guard and fan counts of that moment.
async fn take(
    api: &BiliApi,
    room: &Room,
    live: &mut bool,
    last_reply: &mut Instant,
    pending: &mut Vec<Value>,
    bytes: &[u8],
) {
    for item in read_frame(bytes) {
        match item {
            Incoming::HeartbeatReply { .. } => *last_reply = Instant::now(),
            Incoming::AuthReply { .. } => {}
            Incoming::Message(m) => {
                let turn = match m["cmd"].as_str() {
                    Some("LIVE") if !*live => Some(true),
                    Some("PREPARING") if *live => Some(false),
                    _ => None,
                };
                if let Some(now_live) = turn {
                    // the session copies the room's counts as it starts and
                    // ends: they are recorded just before that message
                    *live = now_live;
                    let at = m["received_at"].as_i64().unwrap_or_else(now_ms) - 1;
                    pending.extend(stats(api, room, at).await);
                }
                pending.push(m);
            }
        }
    }
}

/// The first host that takes the connection, starting at a different one
/// each attempt.
async fn connect(
    hosts: &[String],
    attempt: usize,
    agent: &str,
    cookie: &str,
) -> Result<Ws, SessionError> {
    let mut last = String::from("no host");
    for i in 0..hosts.len() {
        let url = &hosts[(attempt + i) % hosts.len()];
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| SessionError::Connection(format!("{url}: {e}")))?;
        let headers = req.headers_mut();
        for (name, value) in [
            ("user-agent", agent),
            ("origin", "https://live.bilibili.com"),
            ("cookie", cookie),
        ] {
            if let Ok(v) = value.parse() {
                headers.insert(name, v);
            }
        }
        // small buffers: a process holds a thousand of these (the default
        // 128 KiB each was most of its memory); a frame rarely exceeds a few KiB
        let config = WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(0)
            .max_message_size(Some(4 << 20))
            .max_frame_size(Some(4 << 20));
        let connecting = tokio_tungstenite::connect_async_with_config(req, Some(config), true);
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok((ws, _))) => return Ok(ws),
            Ok(Err(e)) => last = format!("{url}: {e}"),
            Err(_) => last = format!("{url}: no answer in {CONNECT_TIMEOUT:?}"),
        }
        tracing::debug!(%last, "collector: a host refused; trying the next");
    }
    Err(SessionError::Connection(last))
}

/// Waits for the auth reply (op 8, code 0); messages before it are kept.
async fn await_auth(ws: &mut Ws, pending: &mut Vec<Value>) -> Result<(), SessionError> {
    let deadline = Instant::now() + AUTH_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| SessionError::Connection("no auth reply".into()))?;
        let bytes = match frame {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(_))) | None => {
                return Err(SessionError::Connection(
                    "closed before the auth reply".into(),
                ))
            }
            Some(Err(e)) => return Err(SessionError::Connection(format!("reading: {e}"))),
            Some(Ok(_)) => continue,
        };
        for item in read_frame(&bytes) {
            match item {
                Incoming::AuthReply { code: Some(0) } => return Ok(()),
                Incoming::AuthReply { code } => {
                    // an expired or foreign token: the next attempt asks for a new one
                    return Err(SessionError::Connection(format!(
                        "auth refused (code {code:?})"
                    )));
                }
                Incoming::Message(m) => pending.push(m),
                Incoming::HeartbeatReply { .. } => {}
            }
        }
    }
}

/// A frame's items, each message stamped with its moment of receipt.
fn read_frame(bytes: &[u8]) -> Vec<Incoming> {
    let decoded = packet::decode_frame(bytes);
    let errors =
        decoded.stats.errors() + decoded.stats.unknown_ops + decoded.stats.unknown_versions;
    if errors > 0 {
        METRICS
            .decode_errors
            .fetch_add(u64::from(errors), Ordering::Relaxed);
    }
    let at = now_ms();
    decoded
        .items
        .into_iter()
        .map(|item| match item {
            Incoming::Message(mut m) => {
                METRICS.count(m["cmd"].as_str().unwrap_or(""));
                if m.get("received_at").is_none() {
                    m["received_at"] = json!(at);
                }
                Incoming::Message(m)
            }
            other => other,
        })
        .collect()
}

/// The room's guard counts and fan-club size, as messages of their own.
async fn stats(api: &BiliApi, room: &Room, at: i64) -> Vec<Value> {
    let mut out = Vec::new();
    match api.guard_counts(room.room_id, room.uid).await {
        // seed 001 names them by rank upward: guard_1 舰长 (Bilibili's level
        // 3), guard_2 提督 (2), guard_3 总督 (1)
        Ok([governors, admirals, captains]) => out
            .push(json!({"cmd": "GUARD_COUNTS", "received_at": at,
            "data": {"guard_1": captains, "guard_2": admirals, "guard_3": governors}})),
        Err(e) => {
            tracing::warn!(room = room.room_id, error = %e, "collector: reading the guard list")
        }
    }
    match api.fans_club(room.uid).await {
        Ok(n) => out.push(
            json!({"cmd": "ROOM_REAL_TIME_MESSAGE_UPDATE", "received_at": now_ms(),
            "data": {"fans_club": n}}),
        ),
        Err(e) => {
            tracing::warn!(room = room.room_id, error = %e, "collector: reading the fan club")
        }
    }
    out
}

/// Records what is pending through the ingestion path (the same keys as
/// `/ingest`: a message seen twice counts once). A message the parser
/// refuses is dropped and counted, not the whole batch; a failure to
/// record keeps the batch for the next try.
async fn record(
    core: &Core,
    meta: &CommandMeta,
    room_id: i64,
    pending: &mut Vec<Value>,
    state: &RoomState,
) {
    if pending.is_empty() {
        return;
    }
    let Ok(room) = RoomId::new(room_id) else {
        pending.clear();
        return;
    };
    for _ in 0..pending.len() + 1 {
        match ingest(core, meta, room, pending, crate::store::now()).await {
            Ok(done) => {
                let n = done.received as i64;
                state.update(|r| {
                    r.messages += n;
                    r.last_message_at = Some(chrono::Utc::now());
                });
                pending.clear();
                return;
            }
            Err(IngestError::Malformed(m)) => {
                tracing::debug!(room_id, reason = %m.reason, "collector: a message it cannot read");
                METRICS.decode_errors.fetch_add(1, Ordering::Relaxed);
                if m.index < pending.len() {
                    pending.remove(m.index);
                }
                if pending.is_empty() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(room_id, error = %e, "collector: recording failed; kept for the next try");
                state.update(|r| r.last_error = Some(format!("recording: {e}")));
                // bounded: a database out of reach must not grow memory
                if pending.len() > 10 * BATCH {
                    let drop = pending.len() - 10 * BATCH;
                    pending.drain(..drop);
                }
                return;
            }
        }
    }
}

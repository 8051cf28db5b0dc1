#![allow(dead_code)]
//! A loopback imitation of Bilibili's live web APIs and danmaku WebSocket,
//! for testing a collector without the network.
//!
//! HTTP (plain, on 127.0.0.1): `nav`, `finger/spi`, `Room/get_info`,
//! `Room/room_init`, `getDanmuInfo` (WBI-checked, buvid3 cookie, User-Agent),
//! `guardTab/topListNew`, `getFansMembersRank`. WebSocket `/sub`: auth within
//! the auth timeout, op-8 reply, heartbeats answered with the echo quirk,
//! batches pushed by the test, and faults injected through [`Control`].
//!
//! What it imitates is described in shared/notes/bilibili-live-protocol.md
//! §6.3; shapes follow the real answers saved there.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Query, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use tidelog::bilibili::packet::{self, op, ver};
use tidelog::bilibili::wbi::WbiKeys;

/// The keys of API-collect's wbi.md example, so its test vectors apply.
pub const IMG_KEY: &str = "7cd084941338484aae1ad9425b84077c";
pub const SUB_KEY: &str = "4932caff0ff746eab6f01bf08b70ac45";
/// A User-Agent the fake accepts (blivedm's since a5d38ab, 2026-04).
pub const MODERN_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/147.0.0.0 Safari/537.36";

/// A guard (舰长 3 / 提督 2 / 总督 1) of a fake room.
#[derive(Debug, Clone)]
pub struct FakeGuard {
    pub uid: u64,
    pub name: String,
    pub level: u8,
}

/// A fake live room.
#[derive(Debug, Clone)]
pub struct FakeRoom {
    pub room_id: u64,
    /// 0 = none.
    pub short_id: u64,
    /// The anchor's uid.
    pub uid: u64,
    /// 0 offline, 1 live, 2 rebroadcast.
    pub live_status: u8,
    pub title: String,
    /// Followers.
    pub attention: u64,
    /// Fan-club members.
    pub fans_club: u64,
    /// In rank order.
    pub guards: Vec<FakeGuard>,
}

impl FakeRoom {
    /// A live room with 1 总督, 2 提督 and 20 舰长, 89 fan-club members.
    pub fn new(room_id: u64, short_id: u64, uid: u64) -> FakeRoom {
        let guards = (0..23u64)
            .map(|i| FakeGuard {
                uid: 1_000_000 + i,
                name: format!("guard{i}"),
                level: match i {
                    0 => 1,
                    1 | 2 => 2,
                    _ => 3,
                },
            })
            .collect();
        FakeRoom {
            room_id,
            short_id,
            uid,
            live_status: 1,
            title: format!("room {room_id}"),
            attention: 12_345,
            fans_club: 89,
            guards,
        }
    }
}

/// What the fake accepts.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub img_key: String,
    pub sub_key: String,
    /// What `finger/spi` hands out; getDanmuInfo needs *a* `buvid3` cookie.
    pub buvid3: String,
    pub buvid4: String,
    /// Logged-in accounts: `SESSDATA` cookie value → mid.
    pub accounts: Vec<(String, u64)>,
    /// getDanmuInfo answers -352 unless the User-Agent names `Chrome/<n>` with n ≥ this.
    pub min_chrome_major: u32,
    /// getDanmuInfo answers -352 when `wts` is further than this from now.
    pub max_wts_skew: Duration,
    /// The auth packet must arrive within this (5 s real).
    pub auth_timeout: Duration,
    /// A connection without a heartbeat for this long is closed (60 s real).
    pub heartbeat_timeout: Duration,
    /// Send `LOG_IN_NOTICE` after authenticating a connection with uid 0.
    pub login_notice: bool,
    pub rooms: Vec<FakeRoom>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            img_key: IMG_KEY.into(),
            sub_key: SUB_KEY.into(),
            buvid3: "C0FFEE00-1111-2222-3333-444455556666infoc".into(),
            buvid4: "DEADBEEF-7777-8888-9999-AAAABBBBCCCC-024120100-abc".into(),
            accounts: vec![("fake-sessdata".into(), 10_000)],
            min_chrome_major: 140,
            max_wts_skew: Duration::from_secs(600),
            auth_timeout: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(60),
            login_notice: true,
            // short id 1 → 5440, as in the real get_info sample
            rooms: vec![FakeRoom::new(5440, 1, 9617619)],
        }
    }
}

/// How a pushed batch is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One ver-0 packet per message, all in one frame.
    Plain,
    /// One op-5 ver-2 packet whose zlib body holds the ver-0 packets.
    Zlib,
    /// One op-5 ver-3 packet whose brotli body holds the ver-0 packets (the web's way).
    Brotli,
}

/// Something to do to a room's open connections.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Close the TCP connection without a close frame (a client sees 1006 / reset).
    Drop,
    /// Start the frame holding these messages, send half of it, then drop the TCP connection.
    CutMidBatch(Vec<Value>),
    /// A binary frame of random bytes (first byte ≥ 0x80, so no packet fits in it).
    Garbage,
    /// A plain batch of these messages whose last packet is cut short by 5 bytes.
    Truncated(Vec<Value>),
    /// An op-5 packet of this compression (Zlib or Brotli) whose body is not a valid stream.
    BadCompressed(Encoding),
}

/// One auth packet the fake received, and its answer.
#[derive(Debug, Clone)]
pub struct AuthAttempt {
    /// The auth body, `Value::Null` if it was not JSON.
    pub body: Value,
    /// 0 accepted, -101 refused.
    pub code: i64,
}

/// The frame a pushed batch travels in.
pub fn frame_for(messages: &[Value], encoding: Encoding) -> Vec<u8> {
    let packets = packet::plain_packets(messages);
    match encoding {
        Encoding::Plain => packets,
        Encoding::Zlib => packet::encode_packet(op::MESSAGE, ver::ZLIB, 0, &packet::zlib(&packets)),
        Encoding::Brotli => {
            packet::encode_packet(op::MESSAGE, ver::BROTLI, 0, &packet::brotli(&packets))
        }
    }
}

#[derive(Debug)]
struct Token {
    room_id: u64,
    mid: u64,
    buvid3: String,
    valid: bool,
}

enum Cmd {
    Frame(Vec<u8>),
    Fault(Fault),
}

struct Conn {
    room_id: u64,
    tx: mpsc::UnboundedSender<Cmd>,
}

#[derive(Default)]
struct Stateful {
    tokens: HashMap<String, Token>,
    issued: u64,
    fail_danmu_info: usize,
    dead_host_first: bool,
    danmu_info_calls: usize,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    accepted: HashMap<u64, usize>,
    heartbeats: HashMap<u64, usize>,
    auths: Vec<AuthAttempt>,
    auth_replies: u64,
}

struct Shared {
    cfg: FakeConfig,
    keys: WbiKeys,
    addr: SocketAddr,
    dead_port: u16,
    state: Mutex<Stateful>,
    changed: Notify,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, Stateful> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn room(&self, id: u64) -> Option<&FakeRoom> {
        self.cfg
            .rooms
            .iter()
            .find(|r| r.room_id == id || (r.short_id != 0 && r.short_id == id))
    }
}

/// The running fake; stops (and drops its sockets) when dropped.
pub struct FakeBilibili {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeBilibili {
    /// Starts on 127.0.0.1 with an OS-chosen port.
    pub async fn start(cfg: FakeConfig) -> std::io::Result<FakeBilibili> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        // a port nothing listens on, for the dead host
        let dead_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let keys = WbiKeys::new(&cfg.img_key, &cfg.sub_key)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let shared = Arc::new(Shared {
            cfg,
            keys,
            addr,
            dead_port,
            state: Mutex::new(Stateful::default()),
            changed: Notify::new(),
            shutdown: watch::channel(false).0,
        });
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeBilibili { shared, server })
    }

    /// `http://127.0.0.1:<port>`: the base of every API (api, api.live, www alike).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// `ws://127.0.0.1:<port>/sub`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/sub", self.shared.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn control(&self) -> Control {
        Control {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for FakeBilibili {
    fn drop(&mut self) {
        let _ = self.shared.shutdown.send(true);
        self.server.abort();
    }
}

/// The test's handle on the fake.
#[derive(Clone)]
pub struct Control {
    shared: Arc<Shared>,
}

impl Control {
    /// Sends one frame with these messages to every authenticated connection of
    /// the room; returns how many got it.
    pub fn push(&self, room_id: u64, messages: &[Value], encoding: Encoding) -> usize {
        self.push_frame(room_id, frame_for(messages, encoding))
    }

    /// Sends these exact bytes as one binary frame (several packets, mixed
    /// compressions: build them with `packet::encode_packet`).
    pub fn push_frame(&self, room_id: u64, frame: Vec<u8>) -> usize {
        self.send(room_id, || Cmd::Frame(frame.clone()))
    }

    /// Applies a fault to every authenticated connection of the room.
    pub fn inject(&self, room_id: u64, fault: Fault) -> usize {
        self.send(room_id, || Cmd::Fault(fault.clone()))
    }

    fn send(&self, room_id: u64, cmd: impl Fn() -> Cmd) -> usize {
        let st = self.shared.state();
        st.conns
            .values()
            .filter(|c| c.room_id == room_id)
            .filter(|c| c.tx.send(cmd()).is_ok())
            .count()
    }

    /// Authenticated connections of the room open now.
    pub fn connections(&self, room_id: u64) -> usize {
        self.shared
            .state()
            .conns
            .values()
            .filter(|c| c.room_id == room_id)
            .count()
    }

    /// Connections of the room ever accepted (successful auths).
    pub fn accepted(&self, room_id: u64) -> usize {
        self.shared
            .state()
            .accepted
            .get(&room_id)
            .copied()
            .unwrap_or(0)
    }

    /// Heartbeats (op 2) received from the room's connections.
    pub fn heartbeats(&self, room_id: u64) -> usize {
        self.shared
            .state()
            .heartbeats
            .get(&room_id)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until the room has exactly `n` open connections; false on timeout.
    pub async fn wait_connections(&self, room_id: u64, n: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.changed.notified();
            if self.connections(room_id) == n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.connections(room_id) == n;
            }
        }
    }

    /// Invalidates every token issued so far: later auths with them get code -101
    /// until the client fetches a new one. Open connections stay.
    pub fn expire_tokens(&self) {
        for t in self.shared.state().tokens.values_mut() {
            t.valid = false;
        }
    }

    /// The next `n` getDanmuInfo calls answer -352, whatever they carry.
    pub fn fail_danmu_info(&self, n: usize) {
        self.shared.state().fail_danmu_info = n;
    }

    /// Puts a host nothing listens on first in getDanmuInfo's host_list.
    pub fn set_dead_host_first(&self, on: bool) {
        self.shared.state().dead_host_first = on;
    }

    /// getDanmuInfo calls so far, refused ones included.
    pub fn danmu_info_calls(&self) -> usize {
        self.shared.state().danmu_info_calls
    }

    /// Every auth packet received, in order.
    pub fn auth_attempts(&self) -> Vec<AuthAttempt> {
        self.shared.state().auths.clone()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/x/web-interface/nav", get(nav))
        .route("/x/frontend/finger/spi", get(spi))
        .route("/room/v1/Room/get_info", get(get_info))
        .route("/room/v1/Room/room_init", get(room_init))
        .route("/xlive/web-room/v1/index/getDanmuInfo", get(danmu_info))
        .route("/xlive/app-room/v2/guardTab/topListNew", get(guard_list))
        .route(
            "/xlive/general-interface/v1/rank/getFansMembersRank",
            get(fans_rank),
        )
        .route("/sub", get(sub))
        .with_state(shared)
}

type Params = Query<HashMap<String, String>>;

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn logged_in(s: &Shared, headers: &HeaderMap) -> Option<u64> {
    let sess = cookie(headers, "SESSDATA")?;
    s.cfg
        .accounts
        .iter()
        .find(|(v, _)| v == sess)
        .map(|(_, mid)| *mid)
}

fn num(p: &HashMap<String, String>, k: &str) -> Option<u64> {
    p.get(k)?.parse().ok()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn nav(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Json<Value> {
    let wbi_img = json!({
        "img_url": format!("https://i0.hdslb.com/bfs/wbi/{}.png", s.cfg.img_key),
        "sub_url": format!("https://i0.hdslb.com/bfs/wbi/{}.png", s.cfg.sub_key),
    });
    Json(match logged_in(&s, &headers) {
        Some(mid) => {
            json!({"code":0,"message":"0","ttl":1,"data":{"isLogin":true,"mid":mid,"uname":format!("user{mid}"),"wbi_img":wbi_img}})
        }
        None => {
            json!({"code":-101,"message":"账号未登录","ttl":1,"data":{"isLogin":false,"wbi_img":wbi_img}})
        }
    })
}

async fn spi(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"code":0,"message":"ok","data":{"b_3":s.cfg.buvid3,"b_4":s.cfg.buvid4}}))
}

async fn get_info(State(s): State<Arc<Shared>>, Query(p): Params) -> Json<Value> {
    Json(match num(&p, "room_id").and_then(|id| s.room(id)) {
        Some(r) => json!({"code":0,"msg":"ok","message":"ok","data":{
            "uid": r.uid, "room_id": r.room_id, "short_id": r.short_id,
            "attention": r.attention, "online": 0, "is_portrait": false, "description": "",
            "live_status": r.live_status, "area_id": 371, "parent_area_id": 9,
            "parent_area_name": "虚拟主播", "area_name": "虚拟日常", "title": r.title,
            "live_time": if r.live_status == 1 { "2026-09-01 20:00:00" } else { "0000-00-00 00:00:00" },
        }}),
        None => json!({"code":1,"msg":"未找到该房间","message":"未找到该房间","data":[]}),
    })
}

async fn room_init(State(s): State<Arc<Shared>>, Query(p): Params) -> Json<Value> {
    Json(match num(&p, "id").and_then(|id| s.room(id)) {
        Some(r) => json!({"code":0,"msg":"ok","message":"ok","data":{
            "room_id": r.room_id, "short_id": r.short_id, "uid": r.uid, "need_p2p": 0,
            "is_hidden": false, "is_locked": false, "is_portrait": false,
            "live_status": r.live_status, "hidden_till": 0, "lock_till": 0,
            "encrypted": false, "pwd_verified": false,
            "live_time": if r.live_status == 1 { 1788264000 } else { 0 },
            "room_shield": 0, "is_sp": 0, "special_type": 0,
        }}),
        None => json!({"code":60004,"msg":"直播间不存在","message":"直播间不存在","data":{}}),
    })
}

fn refused_352() -> Json<Value> {
    Json(json!({"code":-352,"message":"-352","ttl":1}))
}

fn chrome_major(ua: &str) -> Option<u32> {
    let rest = &ua[ua.find("Chrome/")? + "Chrome/".len()..];
    rest.split('.').next()?.parse().ok()
}

async fn danmu_info(
    State(s): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Json<Value> {
    {
        let mut st = s.state();
        st.danmu_info_calls += 1;
        if st.fail_danmu_info > 0 {
            st.fail_danmu_info -= 1;
            return refused_352();
        }
    }
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if chrome_major(ua).is_none_or(|m| m < s.cfg.min_chrome_major) {
        return refused_352();
    }
    let Some(buvid3) = cookie(&headers, "buvid3").filter(|b| !b.is_empty()) else {
        return refused_352();
    };
    let query = query.unwrap_or_default();
    let Ok(wts) = s.keys.verify(&query) else {
        return refused_352();
    };
    if now_secs().abs_diff(wts) > s.cfg.max_wts_skew.as_secs() {
        return refused_352();
    }
    let p: HashMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let Some(room) = num(&p, "id").and_then(|id| s.room(id)) else {
        return Json(json!({"code":1,"message":"房间不存在","ttl":1}));
    };
    let mid = logged_in(&s, &headers).unwrap_or(0);
    let mut st = s.state();
    st.issued += 1;
    let token = format!(
        "fake-token-{}-{}-{:016x}",
        room.room_id,
        st.issued,
        rand::thread_rng().gen::<u64>()
    );
    st.tokens.insert(
        token.clone(),
        Token {
            room_id: room.room_id,
            mid,
            buvid3: buvid3.to_owned(),
            valid: true,
        },
    );
    let port = s.addr.port();
    let live = json!({"host":"127.0.0.1","port":port,"wss_port":port,"ws_port":port});
    let mut host_list = vec![live.clone(), live];
    if st.dead_host_first {
        let d = s.dead_port;
        host_list.insert(
            0,
            json!({"host":"127.0.0.1","port":d,"wss_port":d,"ws_port":d}),
        );
    }
    Json(json!({"code":0,"message":"0","ttl":1,"data":{
        "group":"live","business_id":0,"refresh_row_factor":0.125,"refresh_rate":100,
        "max_delay":5000,"token":token,"host_list":host_list,
    }}))
}

fn guard_entry(rank: usize, g: &FakeGuard, ruid: u64) -> Value {
    json!({
        "rank": rank, "accompany": 30 + rank, "score": 0, "effect_id": 0, "effect_style": 0,
        "uinfo": {
            "uid": g.uid,
            "base": {"name": g.name, "face": "https://i0.hdslb.com/bfs/face/member/noface.jpg", "is_mystery": false},
            "medal": {"name": "fake", "level": 21, "guard_level": g.level, "ruid": ruid, "is_light": 1},
            "guard": {"level": g.level, "expired_str": "2026-12-31"},
        },
    })
}

/// Page n lists ranks 4.. (page 1) or 3 + (n-1)·size + 1.. (later pages), `size`
/// each; top3 comes with every page (a page of 20 holds ranks 1–23, then 24–43).
async fn guard_list(State(s): State<Arc<Shared>>, Query(p): Params) -> Json<Value> {
    let Some(room) = num(&p, "roomid").and_then(|id| s.room(id)) else {
        return Json(json!({"code":1,"message":"参数错误","ttl":1}));
    };
    if num(&p, "ruid").is_some_and(|r| r != room.uid) {
        return Json(json!({"code":1,"message":"参数错误","ttl":1}));
    }
    let page = num(&p, "page").unwrap_or(1).max(1) as usize;
    let size = match num(&p, "page_size").unwrap_or(10) as usize {
        n @ 1..=30 => n,
        _ => 10,
    };
    let n = room.guards.len();
    let top3: Vec<Value> = room
        .guards
        .iter()
        .take(3)
        .enumerate()
        .map(|(i, g)| guard_entry(i + 1, g, room.uid))
        .collect();
    let start = 3 + (page - 1) * size;
    let list: Vec<Value> = room
        .guards
        .iter()
        .enumerate()
        .skip(start)
        .take(size)
        .map(|(i, g)| guard_entry(i + 1, g, room.uid))
        .collect();
    let pages = if n <= 3 { 1 } else { (n - 3).div_ceil(size) };
    Json(json!({"code":0,"message":"0","ttl":1,"data":{
        "info": {"num": n, "page": pages, "now": page, "achievement_level": 1, "anchor_guard_achieve_level": 0},
        "top3": top3, "list": list,
        "guard_warn": {}, "exist_benefit": false, "remind_benefit": "",
    }}))
}

async fn fans_rank(State(s): State<Arc<Shared>>, Query(p): Params) -> Json<Value> {
    let Some(room) = num(&p, "ruid").and_then(|u| s.cfg.rooms.iter().find(|r| r.uid == u)) else {
        return Json(json!({"code":1,"message":"参数错误","ttl":1}));
    };
    let page = num(&p, "page").unwrap_or(1).max(1);
    let size = num(&p, "page_size").unwrap_or(30).clamp(1, 30);
    let items: Vec<Value> = ((page - 1) * size..(page * size).min(room.fans_club))
        .map(|i| json!({"user_rank": i + 1, "uid": 2_000_000 + i, "name": format!("fan{i}"), "score": 1000 - i.min(999), "level": 21, "guard_level": 0}))
        .collect();
    Json(json!({"code":0,"message":"0","ttl":1,"data":{"item": items, "num": room.fans_club}}))
}

/// The WebSocket upgrade by hand (not axum's `WebSocketUpgrade`), so faults
/// can write raw bytes below the WebSocket layer.
async fn sub(State(s): State<Arc<Shared>>, mut req: Request) -> Response {
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| is_ws)
        .cloned()
    else {
        return (StatusCode::BAD_REQUEST, "not a WebSocket request").into_response();
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(io) = upgrade.await {
            let ws = WebSocketStream::from_raw_socket(
                hyper_util::rt::TokioIo::new(io),
                Role::Server,
                None,
            )
            .await;
            connection(s, ws).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .body(Body::empty())
        .unwrap_or_default()
}

type Ws = WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// Removes a connection from the table when its task ends.
struct Registered {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.state().conns.remove(&self.id);
        self.shared.changed.notify_waiters();
    }
}

/// The first binary message, skipping anything else.
async fn next_binary(ws: &mut Ws) -> Option<Vec<u8>> {
    while let Some(Ok(m)) = ws.next().await {
        match m {
            Message::Binary(b) => return Some(b.to_vec()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
    None
}

/// Checks an auth packet; returns (room_id, uid) when accepted.
fn check_auth(s: &Shared, bytes: &[u8]) -> Option<(u64, u64)> {
    let h = packet::Header::read(bytes)?;
    let end = (h.packet_len as usize).min(bytes.len());
    let body: Value =
        serde_json::from_slice(bytes.get(h.header_len as usize..end)?).unwrap_or(Value::Null);
    let room_id = body["roomid"].as_u64().unwrap_or(0);
    let uid = body["uid"].as_u64().unwrap_or(u64::MAX);
    let key = body["key"].as_str().unwrap_or("");
    let buvid = body["buvid"].as_str().unwrap_or("");
    let st = s.state();
    let accepted = h.op == op::AUTH
        && body["protover"].as_u64() == Some(3)
        && st.tokens.get(key).is_some_and(|t| {
            t.valid
                && t.room_id == room_id
                && !buvid.is_empty()
                && t.buvid3 == buvid
                && (uid == 0 || uid == t.mid)
        });
    drop(st);
    let mut st = s.state();
    st.auths.push(AuthAttempt {
        body,
        code: if accepted { 0 } else { -101 },
    });
    accepted.then_some((room_id, uid))
}

async fn connection(s: Arc<Shared>, mut ws: Ws) {
    let mut shutdown = s.shutdown.subscribe();
    let first = tokio::time::timeout(s.cfg.auth_timeout, next_binary(&mut ws)).await;
    let Ok(Some(bytes)) = first else {
        return; // no auth in time: dropped
    };
    let accepted = check_auth(&s, &bytes);
    let reply_ver = {
        let mut st = s.state();
        st.auth_replies += 1;
        // both header versions occur in real captures
        if st.auth_replies % 2 == 1 {
            ver::CONTROL
        } else {
            ver::PLAIN
        }
    };
    let code: i64 = if accepted.is_some() { 0 } else { -101 };
    let reply = packet::encode_packet(
        op::AUTH_REPLY,
        reply_ver,
        1,
        json!({"code": code}).to_string().as_bytes(),
    );
    if ws.send(Message::binary(reply)).await.is_err() {
        return;
    }
    let Some((room_id, uid)) = accepted else {
        return; // "否则强制断开连接"
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _registered = {
        let mut st = s.state();
        st.next_conn += 1;
        let id = st.next_conn;
        st.conns.insert(id, Conn { room_id, tx });
        *st.accepted.entry(room_id).or_default() += 1;
        Registered {
            shared: s.clone(),
            id,
        }
    };
    s.changed.notify_waiters();
    if uid == 0 && s.cfg.login_notice {
        let notice = json!({"cmd":"LOG_IN_NOTICE","data":{"notice_msg":"为保护用户隐私，未登录无法查看他人昵称","image_web":"","image_app":""}});
        if ws
            .send(Message::binary(frame_for(&[notice], Encoding::Plain)))
            .await
            .is_err()
        {
            return;
        }
    }
    let mut deadline = tokio::time::Instant::now() + s.cfg.heartbeat_timeout;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep_until(deadline) => return,
            m = ws.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    let Some(h) = packet::Header::read(&b) else { continue };
                    if h.op != op::HEARTBEAT {
                        continue;
                    }
                    *s.state().heartbeats.entry(room_id).or_default() += 1;
                    deadline = tokio::time::Instant::now() + s.cfg.heartbeat_timeout;
                    // popularity 1, then the client's body beyond the declared length
                    let echo = b.get(HEADER.min(b.len())..).unwrap_or_default();
                    let mut reply = packet::encode_packet(op::HEARTBEAT_REPLY, ver::CONTROL, 0, &1u32.to_be_bytes());
                    reply.extend_from_slice(echo);
                    if ws.send(Message::binary(reply)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            cmd = rx.recv() => match cmd {
                Some(Cmd::Frame(f)) => {
                    if ws.send(Message::binary(f)).await.is_err() {
                        return;
                    }
                }
                Some(Cmd::Fault(f)) => {
                    if !fault(&mut ws, f).await {
                        return;
                    }
                }
                None => return,
            },
        }
    }
}

const HEADER: usize = packet::HEADER_LEN;

/// Applies a fault; false when the connection must end (it is then dropped
/// without a close frame).
async fn fault(ws: &mut Ws, f: Fault) -> bool {
    match f {
        Fault::Drop => false,
        Fault::CutMidBatch(messages) => {
            let payload = frame_for(&messages, Encoding::Plain);
            let _ = ws.flush().await;
            let raw = ws.get_mut();
            let mut head = vec![0x82u8]; // FIN + binary, server frames are unmasked
            match payload.len() {
                n if n < 126 => head.push(n as u8),
                n if n <= u16::MAX as usize => {
                    head.push(126);
                    head.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    head.push(127);
                    head.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            let _ = raw.write_all(&head).await;
            let _ = raw.write_all(&payload[..payload.len() / 2]).await;
            let _ = raw.flush().await;
            false
        }
        Fault::Garbage => {
            let mut junk: Vec<u8> = {
                let mut rng = rand::thread_rng();
                (0..64).map(|_| rng.gen()).collect()
            };
            junk[0] |= 0x80;
            ws.send(Message::binary(junk)).await.is_ok()
        }
        Fault::Truncated(messages) => {
            let mut frame = frame_for(&messages, Encoding::Plain);
            frame.truncate(frame.len().saturating_sub(5));
            ws.send(Message::binary(frame)).await.is_ok()
        }
        Fault::BadCompressed(encoding) => {
            let body: Vec<u8> = match encoding {
                // a zlib header, then nonsense
                Encoding::Zlib => b"\x78\xda\xff\xff\xff\xffnot deflate at all".to_vec(),
                _ => b"\xff\xff\xff\xffnot brotli at all".to_vec(),
            };
            let v = if encoding == Encoding::Zlib {
                ver::ZLIB
            } else {
                ver::BROTLI
            };
            let frame = packet::encode_packet(op::MESSAGE, v, 0, &body);
            ws.send(Message::binary(frame)).await.is_ok()
        }
    }
}

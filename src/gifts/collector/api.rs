//! Bilibili's web API as a collector uses it, the way the maintained
//! clients (blivedm and its ports) call it: the room's real id and anchor
//! (`Room/get_info`, `room_init` as fallback), WBI-signed `getDanmuInfo`
//! for the WebSocket token and hosts, the guard list and the fan club's
//! size. Every call carries a current desktop User-Agent and the `buvid3`
//! / `buvid4` cookies (from `finger/spi` unless configured), and waits its
//! turn under one rate for the whole process. A `-352` (risk control)
//! refreshes the WBI keys and holds every call back for minutes.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::bilibili::wbi::WbiKeys;
use crate::config::CollectorConfig;

/// How long WBI keys are used before they are fetched again.
const KEYS_FOR: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `-352`: risk control refused the call (signature, cookies, agent or rate).
    #[error("-352: refused by Bilibili's risk control")]
    RiskControl,
    /// Bilibili answered with another error code.
    #[error("Bilibili answered code {code}: {message}")]
    Refused { code: i64, message: String },
    #[error("calling Bilibili: {0}")]
    Transport(String),
    #[error("an answer of an unexpected shape: {0}")]
    Shape(String),
}

/// A room as the collector connects to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// the long id (a short id resolves to it)
    pub room_id: u64,
    /// the anchor's uid
    pub uid: u64,
    pub live: bool,
    /// followers
    pub attention: Option<i64>,
}

/// What the WebSocket needs.
#[derive(Debug, Clone)]
pub struct DanmuInfo {
    pub token: String,
    /// WebSocket URLs, in the order given
    pub hosts: Vec<String>,
}

pub struct BiliApi {
    http: reqwest::Client,
    cfg: CollectorConfig,
    keys: Mutex<Option<(WbiKeys, Instant)>>,
    /// `buvid3`, `buvid4`
    buvid: Mutex<Option<(String, String)>>,
    /// the logged-in account's mid (0 when not logged in)
    mid: Mutex<Option<u64>>,
    /// the next moment a call may start
    next_call: Mutex<Instant>,
    risk_until: std::sync::Mutex<Option<Instant>>,
}

fn cookie_value<'a>(cookie: &'a str, name: &str) -> Option<&'a str> {
    cookie
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl BiliApi {
    pub fn new(cfg: CollectorConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(20))
            .build()?;
        Ok(Self {
            http,
            cfg,
            keys: Mutex::default(),
            buvid: Mutex::default(),
            mid: Mutex::default(),
            next_call: Mutex::new(Instant::now()),
            risk_until: std::sync::Mutex::default(),
        })
    }

    /// Until when risk control holds calls back, if it does.
    pub fn held_back_until(&self) -> Option<Instant> {
        self.risk_until
            .lock()
            .unwrap()
            .filter(|t| *t > Instant::now())
    }

    /// Waits for this call's turn: one rate over every room of the process.
    async fn turn(&self) {
        if let Some(until) = self.held_back_until() {
            tokio::time::sleep_until(until).await;
        }
        let gap = Duration::from_secs(1) / self.cfg.http_per_second.max(1);
        let start = {
            let mut next = self.next_call.lock().await;
            let start = (*next).max(Instant::now());
            *next = start + gap;
            start
        };
        tokio::time::sleep_until(start).await;
    }

    /// The cookies every call sends: the configured login cookie, and the
    /// browser ids it lacks.
    pub async fn cookie(&self) -> Result<String, ApiError> {
        let (b3, b4) = self.buvid().await?;
        let mut parts: Vec<String> = Vec::new();
        if let Some(c) = &self.cfg.cookie {
            parts.push(c.expose().trim().trim_end_matches(';').to_owned());
        }
        let have = |name: &str| {
            self.cfg
                .cookie
                .as_ref()
                .is_some_and(|c| cookie_value(c.expose(), name).is_some())
        };
        if !have("buvid3") {
            parts.push(format!("buvid3={b3}"));
        }
        if !have("buvid4") {
            parts.push(format!("buvid4={b4}"));
        }
        Ok(parts.join("; "))
    }

    /// The `buvid3` the auth packet names: the cookie's when configured.
    pub async fn buvid3(&self) -> Result<String, ApiError> {
        if let Some(b) = self
            .cfg
            .cookie
            .as_ref()
            .and_then(|c| cookie_value(c.expose(), "buvid3"))
        {
            return Ok(b.to_owned());
        }
        Ok(self.buvid().await?.0)
    }

    async fn buvid(&self) -> Result<(String, String), ApiError> {
        let mut kept = self.buvid.lock().await;
        if let Some(b) = kept.as_ref() {
            return Ok(b.clone());
        }
        let v = self
            .raw_get(&self.cfg.api_url, "/x/frontend/finger/spi", "", None)
            .await?;
        let b3 = v["data"]["b_3"].as_str().unwrap_or_default().to_owned();
        let b4 = v["data"]["b_4"].as_str().unwrap_or_default().to_owned();
        if b3.is_empty() {
            return Err(ApiError::Shape("finger/spi gave no b_3".into()));
        }
        *kept = Some((b3.clone(), b4.clone()));
        Ok((b3, b4))
    }

    /// The WBI keys, fetched again after an hour or a `-352`; and the
    /// logged-in account's mid, from the same `nav` answer.
    async fn keys(&self) -> Result<WbiKeys, ApiError> {
        let mut kept = self.keys.lock().await;
        if let Some((k, at)) = kept.as_ref() {
            if at.elapsed() < KEYS_FOR {
                return Ok(k.clone());
            }
        }
        let cookie = self.cookie().await?;
        let nav = self
            .raw_get(&self.cfg.api_url, "/x/web-interface/nav", "", Some(&cookie))
            .await?;
        let keys = WbiKeys::from_nav(&nav).map_err(|e| ApiError::Shape(format!("nav: {e}")))?;
        let mid = nav["data"]["mid"].as_u64().unwrap_or(0);
        *self.mid.lock().await = Some(mid);
        *kept = Some((keys.clone(), Instant::now()));
        Ok(keys)
    }

    /// The uid the auth packet names: the cookie's owner, else 0.
    pub async fn mid(&self) -> Result<u64, ApiError> {
        if let Some(m) = *self.mid.lock().await {
            return Ok(m);
        }
        self.keys().await?;
        Ok(self.mid.lock().await.unwrap_or(0))
    }

    async fn raw_get(
        &self,
        base: &str,
        path: &str,
        query: &str,
        cookie: Option<&str>,
    ) -> Result<Value, ApiError> {
        self.turn().await;
        let url = if query.is_empty() {
            format!("{base}{path}")
        } else {
            format!("{base}{path}?{query}")
        };
        let mut req = self
            .http
            .get(&url)
            .header(reqwest::header::USER_AGENT, &self.cfg.user_agent)
            .header(reqwest::header::REFERER, "https://live.bilibili.com/");
        if let Some(c) = cookie {
            req = req.header(reqwest::header::COOKIE, c);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ApiError::Transport(e.without_url().to_string()))?;
        let v: Value = resp
            .json()
            .await
            .map_err(|e| ApiError::Transport(e.without_url().to_string()))?;
        match v["code"].as_i64() {
            Some(0) | Some(-101) => Ok(v),
            Some(-352) => {
                *self.risk_until.lock().unwrap() = Some(Instant::now() + self.cfg.risk_pause);
                // the keys may be what it disliked
                *self.keys.try_lock().map_err(|_| ApiError::RiskControl)? = None;
                Err(ApiError::RiskControl)
            }
            Some(code) => Err(ApiError::Refused {
                code,
                message: v["message"]
                    .as_str()
                    .or(v["msg"].as_str())
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect(),
            }),
            None => Err(ApiError::Shape(format!("{path}: no code"))),
        }
    }

    async fn get(&self, base: &str, path: &str, query: &str) -> Result<Value, ApiError> {
        let cookie = self.cookie().await?;
        self.raw_get(base, path, query, Some(&cookie)).await
    }

    /// A room by any of its ids.
    pub async fn room(&self, id: u64) -> Result<Room, ApiError> {
        let live = &self.cfg.live_api_url;
        match self
            .get(live, "/room/v1/Room/get_info", &format!("room_id={id}"))
            .await
        {
            Ok(v) => {
                let d = &v["data"];
                match (d["room_id"].as_u64(), d["uid"].as_u64()) {
                    (Some(room_id), Some(uid)) => {
                        return Ok(Room {
                            room_id,
                            uid,
                            live: d["live_status"].as_i64() == Some(1),
                            attention: d["attention"].as_i64(),
                        })
                    }
                    _ => tracing::debug!(id, "get_info gave no room; trying room_init"),
                }
            }
            Err(ApiError::RiskControl) => return Err(ApiError::RiskControl),
            Err(e) => tracing::debug!(id, error = %e, "get_info failed; trying room_init"),
        }
        let v = self
            .get(live, "/room/v1/Room/room_init", &format!("id={id}"))
            .await?;
        let d = &v["data"];
        Ok(Room {
            room_id: d["room_id"]
                .as_u64()
                .ok_or_else(|| ApiError::Shape("room_init: no room_id".into()))?,
            uid: d["uid"].as_u64().unwrap_or(0),
            live: d["live_status"].as_i64() == Some(1),
            attention: None,
        })
    }

    /// The WebSocket's token and hosts (a WBI-signed call).
    pub async fn danmu_info(&self, room_id: u64) -> Result<DanmuInfo, ApiError> {
        let keys = self.keys().await?;
        let id = room_id.to_string();
        let wts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let query = keys.sign(
            &[("id", &id), ("type", "0"), ("web_location", "444.8")],
            wts,
        );
        let v = self
            .get(
                &self.cfg.live_api_url,
                "/xlive/web-room/v1/index/getDanmuInfo",
                &query,
            )
            .await?;
        let d = &v["data"];
        let token = d["token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::Shape("getDanmuInfo: no token".into()))?
            .to_owned();
        // an http API (tests, proxies) names plain hosts; the real one wss
        let secure = self.cfg.live_api_url.starts_with("https://");
        let hosts = match &self.cfg.ws_url {
            Some(u) => vec![u.clone()],
            None => d["host_list"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|h| {
                            let host = h["host"].as_str()?;
                            Some(if secure {
                                format!("wss://{host}:{}/sub", h["wss_port"].as_u64()?)
                            } else {
                                format!("ws://{host}:{}/sub", h["ws_port"].as_u64()?)
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        if hosts.is_empty() {
            return Err(ApiError::Shape("getDanmuInfo: no hosts".into()));
        }
        Ok(DanmuInfo { token, hosts })
    }

    /// Guards by Bilibili's level: [总督 (1), 提督 (2), 舰长 (3)], counted over
    /// the whole list.
    pub async fn guard_counts(&self, room_id: u64, uid: u64) -> Result<[i64; 3], ApiError> {
        let mut counts = [0i64; 3];
        let mut seen = std::collections::HashSet::new();
        let mut page = 1u64;
        loop {
            let v = self
                .get(
                    &self.cfg.live_api_url,
                    "/xlive/app-room/v2/guardTab/topListNew",
                    &format!("roomid={room_id}&page={page}&ruid={uid}&page_size=30"),
                )
                .await?;
            let d = &v["data"];
            // top3 comes with every page: each guard counted once, by uid
            for e in d["top3"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(d["list"].as_array().into_iter().flatten())
            {
                let level = e["uinfo"]["guard"]["level"]
                    .as_i64()
                    .or(e["uinfo"]["medal"]["guard_level"].as_i64())
                    .or(e["guard_level"].as_i64());
                let who = e["uinfo"]["uid"].as_u64().or(e["uid"].as_u64());
                if let (Some(level @ 1..=3), Some(who)) = (level, who) {
                    if seen.insert(who) {
                        counts[level as usize - 1] += 1;
                    }
                }
            }
            let pages = d["info"]["page"].as_u64().unwrap_or(1);
            if page >= pages || page >= 100 {
                return Ok(counts);
            }
            page += 1;
        }
    }

    /// The fan club's size.
    pub async fn fans_club(&self, uid: u64) -> Result<i64, ApiError> {
        let v = self
            .get(
                &self.cfg.live_api_url,
                "/xlive/general-interface/v1/rank/getFansMembersRank",
                &format!("ruid={uid}&page=1&page_size=1"),
            )
            .await?;
        v["data"]["num"]
            .as_i64()
            .ok_or_else(|| ApiError::Shape("getFansMembersRank: no num".into()))
    }
}

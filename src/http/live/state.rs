//! The live rooms surface's own state, taken as an axum substate: the
//! narrow core, the token check, and what this surface keeps (presence,
//! kept list answers, per-IP chat counts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::FromRef;
use sqlx::PgPool;

use crate::core::Core;
use crate::identity::{Authenticator, Identity};
use crate::ledger::payments::Provider;
use crate::projector::Progress;
use crate::store::LogPosition;

/// What the surface keeps between requests (one per process).
#[derive(Default)]
pub struct Parts {
    pub presence: Presence,
    pub lists: Lists,
    pub chat_ips: IpWindows,
}

#[derive(Clone, FromRef)]
pub struct LiveSurface {
    pub core: Core,
    pub auth: Authenticator,
    pub identity: Arc<Identity>,
    /// the crypto payment provider of coin recharges
    pub payment_provider: Arc<Provider>,
    pub parts: Arc<Parts>,
}

impl LiveSurface {
    pub fn new(core: Core, identity: Arc<Identity>, payment_provider: Arc<Provider>) -> Self {
        Self {
            auth: Authenticator::new(&core, identity.clone()),
            core,
            identity,
            payment_provider,
            parts: Arc::default(),
        }
    }
}

impl std::ops::Deref for LiveSurface {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

/// Viewers count for `live_num` while seen within this window.
pub const PRESENCE_WINDOW: Duration = Duration::from_secs(60);
/// A viewer seen again within this long is not written again.
const PRESENCE_REWRITE: Duration = Duration::from_secs(20);

/// Who watches which room: each process writes the viewers it serves to
/// `live_presence` (the first time, then at most every 20 s), so every
/// process counts the same viewers.
#[derive(Default)]
pub struct Presence {
    written: Mutex<HashMap<(String, String), Instant>>,
    swept: Mutex<Option<Instant>>,
}

impl Presence {
    pub async fn touch(&self, pool: &PgPool, room_id: &str, viewer: &str) -> sqlx::Result<()> {
        let key = (room_id.to_owned(), viewer.to_owned());
        let due = {
            let mut written = self.written.lock().unwrap();
            if written.len() > 100_000 {
                written.retain(|_, t| t.elapsed() < PRESENCE_WINDOW);
            }
            match written.get(&key) {
                Some(t) if t.elapsed() < PRESENCE_REWRITE => false,
                _ => {
                    written.insert(key, Instant::now());
                    true
                }
            }
        };
        if due {
            sqlx::query(
                "INSERT INTO live_presence (room_id, viewer, seen_at) VALUES ($1, $2, now())
                 ON CONFLICT (room_id, viewer) DO UPDATE SET seen_at = EXCLUDED.seen_at",
            )
            .bind(room_id)
            .bind(viewer)
            .execute(pool)
            .await?;
        }
        let sweep = {
            let mut swept = self.swept.lock().unwrap();
            let sweep = swept.is_none_or(|t| t.elapsed() > Duration::from_secs(30));
            if sweep {
                *swept = Some(Instant::now());
            }
            sweep
        };
        if sweep {
            sqlx::query("DELETE FROM live_presence WHERE seen_at < now() - interval '2 minutes'")
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// The start of the presence window now.
    pub fn since() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() - chrono::Duration::from_std(PRESENCE_WINDOW).unwrap()
    }
}

/// How long a list answer is fresh (its `live_num` and scores move with
/// the clock).
const LIST_TTL: Duration = Duration::from_secs(1);
/// How long an expired answer may still be given while another request
/// reads its successor.
const LIST_STALE: Duration = Duration::from_secs(3);

/// List answers (`get_all_lives` per tag, `get_ranked_lives`,
/// `get_all_tags`), kept while the `live` projection has not moved — on
/// any process, since every process hears every checkpoint — for a second;
/// past that second one request reads the list again while the others are
/// given the answer it replaces (for at most three seconds in all), so a
/// busy list is read once a second, not by every request that arrives
/// when it expires.
#[derive(Default)]
pub struct Lists {
    kept: Mutex<HashMap<String, Kept>>,
}

/// A list answer: its JSON, and the same gzip-compressed (once, when kept).
#[derive(Clone)]
pub struct Answer {
    pub json: Bytes,
    pub gzip: Bytes,
}

impl Answer {
    pub fn new(json: Bytes) -> Self {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(json.len() / 8),
            flate2::Compression::fast(),
        );
        let gzip = enc
            .write_all(&json)
            .and_then(|()| enc.finish())
            .map(Bytes::from)
            .unwrap_or_default();
        Self { json, gzip }
    }

    /// The answer for a request with these headers: gzip when the client
    /// accepts it.
    pub fn respond(&self, headers: &axum::http::HeaderMap) -> axum::response::Response {
        use axum::http::header;
        use axum::response::IntoResponse;
        let gzip = !self.gzip.is_empty()
            && headers
                .get_all(header::ACCEPT_ENCODING)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|e| {
                    let mut parts = e.trim().split(';');
                    parts
                        .next()
                        .is_some_and(|n| n.trim().eq_ignore_ascii_case("gzip"))
                        && !parts.any(|q| q.trim().replace(' ', "") == "q=0")
                });
        let mut resp = if gzip {
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CONTENT_ENCODING, "gzip"),
                ],
                self.gzip.clone(),
            )
                .into_response()
        } else {
            crate::http::reply::json_bytes(self.json.clone())
        };
        resp.headers_mut().insert(
            header::VARY,
            header::HeaderValue::from_static("accept-encoding"),
        );
        resp
    }
}

struct Kept {
    at: LogPosition,
    when: Instant,
    bytes: Answer,
    /// since when a request reads its successor
    refreshing: Option<Instant>,
}

impl Lists {
    pub fn get(&self, progress: &Progress, key: &str) -> Option<Answer> {
        let cp = progress.checkpoint("live");
        let mut kept = self.kept.lock().unwrap();
        let k = kept.get_mut(key)?;
        if k.at != cp {
            return None;
        }
        let age = k.when.elapsed();
        if age < LIST_TTL {
            return Some(k.bytes.clone());
        }
        let someone_reads = k
            .refreshing
            .is_some_and(|since| since.elapsed() < LIST_STALE - LIST_TTL);
        if someone_reads && age < LIST_STALE {
            return Some(k.bytes.clone());
        }
        // this request reads the list again
        k.refreshing = Some(Instant::now());
        None
    }

    /// The checkpoint to keep an answer read now under (taken before the read).
    pub fn stand(&self, progress: &Progress) -> LogPosition {
        progress.checkpoint("live")
    }

    pub fn keep(&self, key: &str, at: LogPosition, bytes: Answer) {
        let mut kept = self.kept.lock().unwrap();
        if kept.len() > 256 {
            kept.clear();
        }
        kept.insert(
            key.to_owned(),
            Kept {
                at,
                when: Instant::now(),
                bytes,
                refreshing: None,
            },
        );
    }
}

/// Viewer messages per client IP per minute, counted by this process.
#[derive(Default)]
pub struct IpWindows {
    windows: Mutex<HashMap<String, (u64, u32)>>,
}

impl IpWindows {
    /// Counts one message; `Err(retry_after_secs)` past `limit` this minute
    /// (0: no limit).
    pub fn hit(&self, ip: &str, limit: u32) -> Result<(), i64> {
        if limit == 0 {
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp();
        let minute = (now / 60) as u64;
        let mut w = self.windows.lock().unwrap();
        if w.len() > 50_000 {
            w.retain(|_, (m, _)| *m == minute);
        }
        let e = w.entry(ip.to_owned()).or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        if e.1 >= limit {
            return Err(60 - now % 60);
        }
        e.1 += 1;
        Ok(())
    }
}

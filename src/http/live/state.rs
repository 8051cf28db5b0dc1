//! The live rooms surface's own state, taken as an axum substate: the
//! narrow core, the token check, and what this surface keeps (presence,
//! kept list answers, per-IP chat counts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::FromRef;
use sqlx::PgPool;

use crate::app::AppState;
use crate::core::Core;
use crate::identity::Authenticator;
use crate::projector::Progress;
use crate::store::LogPosition;

/// What the surface keeps between requests (one per process).
#[derive(Default)]
pub struct Parts {
    pub presence: Presence,
    pub lists: Lists,
    pub chat_ips: IpWindows,
}

#[derive(Clone)]
pub struct LiveSurface {
    pub core: Core,
    pub auth: Authenticator,
    pub parts: Arc<Parts>,
}

impl FromRef<AppState> for LiveSurface {
    fn from_ref(state: &AppState) -> Self {
        Self {
            core: Core::from_ref(state),
            auth: Authenticator::from_ref(state),
            parts: state.live_rooms.clone(),
        }
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

/// How long a list answer is kept at most (its `live_num` and scores move
/// with the clock).
const LIST_TTL: Duration = Duration::from_secs(1);

/// List answers (`get_all_lives` per tag, `get_ranked_lives`,
/// `get_all_tags`), kept for at most a second and only while the `live`
/// projection has not moved — on any process, since every process hears
/// every checkpoint.
#[derive(Default)]
pub struct Lists {
    kept: Mutex<HashMap<String, (LogPosition, Instant, Bytes)>>,
}

impl Lists {
    pub fn get(&self, progress: &Progress, key: &str) -> Option<Bytes> {
        let cp = progress.checkpoint("live");
        let kept = self.kept.lock().unwrap();
        let (at, when, bytes) = kept.get(key)?;
        (*at == cp && when.elapsed() < LIST_TTL).then(|| bytes.clone())
    }

    /// The checkpoint to keep an answer read now under (taken before the read).
    pub fn stand(&self, progress: &Progress) -> LogPosition {
        progress.checkpoint("live")
    }

    pub fn keep(&self, key: &str, at: LogPosition, bytes: Bytes) {
        let mut kept = self.kept.lock().unwrap();
        if kept.len() > 256 {
            kept.clear();
        }
        kept.insert(key.to_owned(), (at, Instant::now(), bytes));
    }
}

/// Viewer messages per client IP per minute, counted by this process.
#[derive(Default)]
pub struct IpWindows {
    windows: Mutex<HashMap<String, (u64, u32)>>,
}

impl IpWindows {
    /// Counts one message; `Err(retry_after_secs)` past `limit` this minute.
    pub fn hit(&self, ip: &str, limit: u32) -> Result<(), i64> {
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

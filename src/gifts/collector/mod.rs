//! The gift monitor's own collector: every monitored room's Bilibili live
//! stream, connected by exactly one of the processes that run it. Each
//! process says every few seconds that it runs the collector, takes the
//! leases of rooms nobody holds (up to its share of the rooms), renews
//! what it holds with each room's state, gives up rooms deleted or beyond
//! its share, and takes over a room whose holder died once its lease
//! lapses. Each held room runs [`room::run`]. `TIDELOG_COLLECTOR=off`
//! keeps a process out of it.

pub mod api;
pub mod lease;
mod room;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::core::Core;
use api::BiliApi;
use room::RoomState;

/// What every process counts, for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub connections: AtomicU64,
    pub reconnects: AtomicU64,
    pub refusals_352: AtomicU64,
    pub decode_errors: AtomicU64,
    pub messages: Mutex<HashMap<String, u64>>,
}

impl Metrics {
    fn count(&self, cmd: &str) {
        // `DANMU_MSG:4:0:2:2:2:0` is a DANMU_MSG; an unknown cmd counts under its name
        let cmd = cmd.split(':').next().unwrap_or_default();
        let cmd = if cmd.len() <= 48
            && cmd
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            cmd
        } else {
            "OTHER"
        };
        *self
            .messages
            .lock()
            .unwrap()
            .entry(cmd.to_owned())
            .or_default() += 1;
    }

    /// Messages decoded, by command.
    pub fn messages(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self
            .messages
            .lock()
            .unwrap()
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        v.sort();
        v
    }
}

pub static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(Metrics::default);

/// A Chrome (or Edge) older than a year or so: Bilibili has refused such
/// agents since 2026-04 (blivedm #84).
fn stale_agent(agent: &str) -> bool {
    const OLDEST_CHROME: u32 = 140;
    match agent.find("Chrome/") {
        Some(i) => agent[i + 7..]
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .is_none_or(|major| major < OLDEST_CHROME),
        // a Firefox or Safari agent: not known to be stale
        None => false,
    }
}

struct Held {
    state: Arc<RoomState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Runs the collector on this process until `shutdown`.
pub async fn run(core: Core, node: String, mut shutdown: watch::Receiver<bool>) {
    let cfg = core.config.collector.clone();
    if !cfg.enabled {
        tracing::info!("collector off on this process (TIDELOG_COLLECTOR=off)");
        return;
    }
    if cfg.cookie.is_none() {
        tracing::warn!(
            "collector: BILIBILI_COOKIE is not set — without a logged-in cookie Bilibili masks \
             viewers' names and may withhold messages (see the README)"
        );
    }
    if stale_agent(&cfg.user_agent) {
        tracing::warn!(
            agent = %cfg.user_agent,
            "collector: BILIBILI_USER_AGENT names an old browser; Bilibili refuses stale agents with -352"
        );
    }
    let api = match BiliApi::new(cfg.clone()) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            tracing::error!(error = %e, "collector cannot start");
            return;
        }
    };
    let every = (cfg.lease / 3).min(Duration::from_secs(2));
    let mut held: HashMap<i64, Held> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = tick(&core, &api, &node, &mut held).await {
            tracing::warn!(error = %e, "collector: a round failed; next round soon");
        }
    }
    for (room_id, h) in held.drain() {
        let _ = h.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), h.task).await;
        let _ = lease::release(&core.pool, room_id, &node).await;
    }
}

async fn tick(
    core: &Core,
    api: &Arc<BiliApi>,
    node: &str,
    held: &mut HashMap<i64, Held>,
) -> sqlx::Result<()> {
    let cfg = &core.config.collector;
    let processes = lease::heartbeat(&core.pool, node, cfg.lease).await?.max(1);
    let rooms: Vec<i64> = projections::gifts::monitored_rooms(&core.pool)
        .await?
        .into_iter()
        .map(|r| r.room_id)
        .collect();
    let monitored: HashSet<i64> = rooms.iter().copied().collect();

    // deleted rooms stop
    let gone: Vec<i64> = held
        .keys()
        .filter(|r| !monitored.contains(r))
        .copied()
        .collect();
    for room_id in gone {
        drop_room(core, node, held, room_id, true).await;
    }
    // renew with each room's state; a lease lost (lapsed and taken) stops its room
    let reports: Vec<lease::Report> = held
        .iter()
        .map(|(id, h)| {
            let mut r = h.state.report.lock().unwrap().clone();
            r.room_id = *id;
            r
        })
        .collect();
    let kept: HashSet<i64> = lease::renew(&core.pool, node, cfg.lease, &reports)
        .await?
        .into_iter()
        .collect();
    let lost: Vec<i64> = held.keys().filter(|r| !kept.contains(r)).copied().collect();
    for room_id in lost {
        tracing::warn!(
            room_id,
            "collector: lost the room's lease to another process"
        );
        drop_room(core, node, held, room_id, false).await;
    }
    // this process's share of the rooms
    let share = rooms.len().div_ceil(processes as usize);
    if held.len() > share {
        // one at a time, so rooms move over gently
        if let Some(&room_id) = held.keys().max() {
            tracing::info!(
                room_id,
                share,
                "collector: giving a room up to share them out"
            );
            drop_room(core, node, held, room_id, true).await;
        }
    }
    // take free rooms while under the share, in an order of this node's own
    let mut free: Vec<i64> = rooms
        .into_iter()
        .filter(|r| !held.contains_key(r))
        .collect();
    free.sort_by_key(|r| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (node, r).hash(&mut h);
        h.finish()
    });
    for room_id in free {
        if held.len() >= share {
            break;
        }
        if lease::acquire(&core.pool, room_id, node, cfg.lease).await? {
            tracing::info!(room_id, "collector: took the room");
            let state = Arc::new(RoomState::default());
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(room::run(
                core.clone(),
                api.clone(),
                room_id,
                state.clone(),
                stopped,
            ));
            held.insert(room_id, Held { state, stop, task });
        }
    }
    Ok(())
}

async fn drop_room(
    core: &Core,
    node: &str,
    held: &mut HashMap<i64, Held>,
    room_id: i64,
    release: bool,
) {
    if let Some(h) = held.remove(&room_id) {
        let _ = h.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), h.task).await;
    }
    if release {
        if let Err(e) = lease::release(&core.pool, room_id, node).await {
            tracing::warn!(room_id, error = %e, "collector: releasing a lease");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn old_chrome_agents_are_told_apart() {
        let ua = |v: &str| {
            format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v} Safari/537.36")
        };
        assert!(super::stale_agent(&ua("120.0.0.0")));
        assert!(!super::stale_agent(&ua("147.0.0.0")));
        assert!(!super::stale_agent(
            "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
        ));
    }
}

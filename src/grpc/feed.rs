//! The live side of subscriptions: one reader per process follows the
//! numbered log and broadcasts each new event once to every live
//! subscriber (never a database connection per subscriber). It reads when
//! the `positions` projection announces progress — its own batches, or
//! another process's through NOTIFY — and, where no announcement can come
//! (a hot standby takes no LISTEN), at a poll interval. With nobody
//! subscribed it reads nothing.
//!
//! The broadcast is bounded: a subscriber that falls behind by more than
//! [`CAPACITY`] events hears that it lagged and catches up from the
//! database on its own, so a slow client costs memory only for its share
//! of one bounded buffer.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{broadcast, watch, Notify};

use super::log::{self, LogEvent};
use crate::projector::Progress;

/// Events kept for the slowest live subscriber.
pub const CAPACITY: usize = 4096;
/// The projection whose checkpoint moves when events get their numbers.
const NUMBERING: &str = "positions";

pub struct Feed {
    tx: broadcast::Sender<Arc<LogEvent>>,
    subscribed: Notify,
}

impl Feed {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            tx: broadcast::channel(CAPACITY).0,
            subscribed: Notify::new(),
        })
    }

    /// Every event numbered from about now on. Call it before reading the
    /// log's past: an event between the two is then in one or both (a
    /// subscriber skips what it has and fills any hole from the database,
    /// the positions being contiguous).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogEvent>> {
        let rx = self.tx.subscribe();
        self.subscribed.notify_one();
        rx
    }

    /// Follows the log until shutdown. `poll` bounds the wait when no
    /// progress is announced.
    pub async fn run(
        self: Arc<Self>,
        pool: PgPool,
        progress: Arc<Progress>,
        poll: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticks = progress.subscribe();
        // where the broadcast stands; unknown while nobody listens
        let mut head: Option<u64> = None;
        let mut announced = progress.checkpoint(NUMBERING);
        loop {
            if *shutdown.borrow() {
                return;
            }
            if self.tx.receiver_count() == 0 {
                head = None;
                tokio::select! {
                    _ = self.subscribed.notified() => continue,
                    _ = shutdown.changed() => return,
                }
            }
            let from = match head {
                Some(h) => h,
                // subscribers read the past themselves: from the head on
                None => match log::head(&pool).await {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::warn!(error = %e, "gRPC feed cannot read the log's head; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            head = Some(from);
            let page = match log::after(&pool, from, log::PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "gRPC feed cannot read the log; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let full = page.len() as i64 == log::PAGE;
            for event in page {
                head = Some(event.position);
                // already encoded, once for every subscriber (`log.rs`)
                // no receiver left: the next turn waits for one
                let _ = self.tx.send(event);
            }
            if full {
                continue;
            }
            let deadline = tokio::time::Instant::now() + poll;
            loop {
                tokio::select! {
                    changed = ticks.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let now = progress.checkpoint(NUMBERING);
                        if now != announced {
                            announced = now;
                            break;
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

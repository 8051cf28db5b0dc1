//! Live side: WebSocket connections of this process, fed from the log after
//! the read model has applied each event, so pushes reach members connected
//! to any server process sharing the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aggregates::ChatRoomEvent;
use chrono_tz::Tz;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};

use crate::projector::Progress;
use crate::store::LogPosition;

/// Pushes a connection may fall behind by before it is dropped: a client
/// that stops reading must not grow the server's memory.
const SOCKET_QUEUE: usize = 1024;

/// Connected sockets of this process, by account number, each fed `T`s
/// (room chat's texts, Chat8's frames).
pub struct Hub<T = String> {
    conns: Mutex<HashMap<i64, HashMap<u64, mpsc::Sender<T>>>>,
    next: AtomicU64,
}

impl<T> Default for Hub<T> {
    fn default() -> Self {
        Self {
            conns: Mutex::default(),
            next: AtomicU64::default(),
        }
    }
}

pub struct Subscription<T = String> {
    hub: Arc<Hub<T>>,
    user: i64,
    id: u64,
    pub rx: mpsc::Receiver<T>,
}

impl<T> Subscription<T> {
    /// This connection among the process's.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        let mut conns = self.hub.conns.lock().unwrap();
        if let Some(m) = conns.get_mut(&self.user) {
            m.remove(&self.id);
            if m.is_empty() {
                conns.remove(&self.user);
            }
        }
    }
}

impl<T: Clone> Hub<T> {
    pub fn subscribe(self: &Arc<Self>, user: i64) -> Subscription<T> {
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns
            .lock()
            .unwrap()
            .entry(user)
            .or_default()
            .insert(id, tx);
        Subscription {
            hub: self.clone(),
            user,
            id,
            rx,
        }
    }

    pub fn send_to(&self, users: &[i64], item: &T) {
        let mut conns = self.conns.lock().unwrap();
        for u in users {
            if let Some(m) = conns.get_mut(u) {
                // A full or closed queue drops the connection: its session ends.
                m.retain(|id, tx| match tx.try_send(item.clone()) {
                    Ok(()) => true,
                    Err(e) => {
                        if matches!(e, mpsc::error::TrySendError::Full(_)) {
                            tracing::warn!(
                                user = u,
                                conn = id,
                                "websocket client too slow; disconnecting"
                            );
                        }
                        false
                    }
                });
            }
        }
    }

    /// Drops every connection's sender: their sessions end and close.
    pub fn close_all(&self) {
        self.conns.lock().unwrap().clear();
    }

    pub fn is_empty(&self) -> bool {
        self.conns.lock().unwrap().is_empty()
    }
}

const PROJECTION: &str = "roomchat";

/// Pushes each posted message to the room's members connected here, once the
/// `roomchat` projection has applied it.
pub async fn run_roomchat_feed(
    pool: PgPool,
    progress: Arc<Progress>,
    hub: Arc<Hub>,
    tz: Tz,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last = match start_position(&pool).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "live feed cannot read its start position");
            LogPosition::default()
        }
    };
    let mut rx = progress.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = rx.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let cp = progress.checkpoint(PROJECTION);
        if hub.is_empty() {
            // nobody connected here: nothing to read
            last = last.max(cp);
            continue;
        }
        while cp > last {
            match push_batch(&pool, &hub, tz, last, cp).await {
                Ok(next) => last = next,
                Err(e) => {
                    tracing::warn!(error = %e, "live feed batch failed; retrying");
                    break;
                }
            }
        }
    }
}

async fn start_position(pool: &PgPool) -> sqlx::Result<LogPosition> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT last_txid::text::bigint, last_position FROM projection_checkpoints WHERE name = $1",
    )
    .bind(PROJECTION)
    .fetch_optional(pool)
    .await?;
    Ok(row
        .map(|(txid, position)| LogPosition { txid, position })
        .unwrap_or_default())
}

const FEED_BATCH: i64 = 1000;

async fn push_batch(
    pool: &PgPool,
    hub: &Hub,
    tz: Tz,
    after: LogPosition,
    upto: LogPosition,
) -> anyhow::Result<LogPosition> {
    let rows: Vec<(i64, i64, serde_json::Value)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position, payload::jsonb FROM events
          WHERE aggregate_type = 'ChatRoom' AND event_type = 'MessagePosted'
            AND (transaction_id, global_position) > ($1::text::xid8, $2)
            AND (transaction_id, global_position) <= ($3::text::xid8, $4)
          ORDER BY transaction_id, global_position LIMIT $5",
    )
    .bind(after.txid.to_string())
    .bind(after.position)
    .bind(upto.txid.to_string())
    .bind(upto.position)
    .bind(FEED_BATCH)
    .fetch_all(pool)
    .await?;
    let mut members: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut last = after;
    for (txid, position, payload) in &rows {
        last = LogPosition {
            txid: *txid,
            position: *position,
        };
        if hub.is_empty() {
            continue;
        }
        let event: ChatRoomEvent = match serde_json::from_value(payload.clone()) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(position, error = %e, "live feed skips an undecodable message");
                continue;
            }
        };
        if let ChatRoomEvent::MessagePosted { room_id, .. } = &event {
            if !members.contains_key(room_id) {
                members.insert(
                    *room_id,
                    projections::roomchat::member_ids(pool, *room_id).await?,
                );
            }
            if let Some(text) = crate::http::roomchat::push_text(&event, tz) {
                hub.send_to(&members[room_id], &text);
            }
        }
    }
    Ok(if (rows.len() as i64) < FEED_BATCH {
        upto
    } else {
        last
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_that_stops_reading_is_dropped_not_buffered_forever() {
        let hub: Arc<Hub> = Arc::new(Hub::default());
        let mut slow = hub.subscribe(1);
        let mut other = hub.subscribe(2);
        for i in 0..SOCKET_QUEUE + 1 {
            hub.send_to(&[1], &format!("m{i}"));
        }
        hub.send_to(&[2], &"hello".to_owned());
        assert_eq!(other.rx.recv().await.as_deref(), Some("hello"));
        let mut got = 0;
        while slow.rx.recv().await.is_some() {
            got += 1;
        }
        assert_eq!(
            got, SOCKET_QUEUE,
            "the queue drains, then the session sees its end"
        );
    }

    #[tokio::test]
    async fn close_all_ends_every_session() {
        let hub: Arc<Hub> = Arc::new(Hub::default());
        let mut a = hub.subscribe(1);
        hub.close_all();
        assert!(a.rx.recv().await.is_none());
    }
}

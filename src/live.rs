//! Live side: the WebSocket connections of this process, by account. The
//! feeds (room chat's, Chat8's) push to them from the log once the read
//! model has applied each event, so pushes reach members connected to any
//! server process sharing the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Pushes a connection may fall behind by before it is dropped: a client
/// that stops reading must not grow the server's memory.
const SOCKET_QUEUE: usize = 1024;

/// Connected sockets of this process, by account number, each fed `T`s
/// (room chat's texts, Chat8's frames) and each of one session, which
/// [`Hub::end_sessions`] ends.
pub struct Hub<T = String> {
    conns: Mutex<HashMap<i64, HashMap<u64, Conn<T>>>>,
    next: AtomicU64,
}

struct Conn<T> {
    tx: mpsc::Sender<T>,
    session: Uuid,
    /// fired when its session ends
    end: Option<oneshot::Sender<()>>,
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
    /// resolves when the connection's session has ended (signed out,
    /// displaced, its password changed): close the socket
    pub ended: oneshot::Receiver<()>,
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
    pub fn subscribe(self: &Arc<Self>, user: i64, session: Uuid) -> Subscription<T> {
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let (end, ended) = oneshot::channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().unwrap().entry(user).or_default().insert(
            id,
            Conn {
                tx,
                session,
                end: Some(end),
            },
        );
        Subscription {
            hub: self.clone(),
            user,
            id,
            rx,
            ended,
        }
    }

    pub fn send_to(&self, users: &[i64], item: &T) {
        let mut conns = self.conns.lock().unwrap();
        for u in users {
            if let Some(m) = conns.get_mut(u) {
                // A full or closed queue drops the connection: its session ends.
                m.retain(|id, c| match c.tx.try_send(item.clone()) {
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

    /// Ends the connections of these sessions: each is told (`ended`) and
    /// gets nothing more.
    pub fn end_sessions(&self, sessions: &[Uuid]) {
        if sessions.is_empty() {
            return;
        }
        let mut conns = self.conns.lock().unwrap();
        for m in conns.values_mut() {
            m.retain(|_, c| {
                if sessions.contains(&c.session) {
                    if let Some(end) = c.end.take() {
                        let _ = end.send(());
                    }
                    false
                } else {
                    true
                }
            });
        }
        conns.retain(|_, m| !m.is_empty());
    }

    /// Drops every connection's sender: their sessions end and close.
    pub fn close_all(&self) {
        self.conns.lock().unwrap().clear();
    }

    pub fn is_empty(&self) -> bool {
        self.conns.lock().unwrap().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_that_stops_reading_is_dropped_not_buffered_forever() {
        let hub: Arc<Hub> = Arc::new(Hub::default());
        let mut slow = hub.subscribe(1, Uuid::nil());
        let mut other = hub.subscribe(2, Uuid::nil());
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
        let mut a = hub.subscribe(1, Uuid::nil());
        hub.close_all();
        assert!(a.rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn ending_a_session_ends_its_connections_only() {
        let hub: Arc<Hub> = Arc::new(Hub::default());
        let (s1, s2) = (Uuid::new_v4(), Uuid::new_v4());
        let mut a = hub.subscribe(1, s1);
        let mut b = hub.subscribe(1, s2);
        hub.end_sessions(&[s1]);
        assert!((&mut a.ended).await.is_ok(), "told");
        hub.send_to(&[1], &"after".to_owned());
        assert!(a.rx.recv().await.is_none(), "nothing after the end");
        assert_eq!(b.rx.recv().await.as_deref(), Some("after"));
    }
}

//! A socket's session, kept as honest as a REST request's: it ends when the
//! log says it ended (the feed fires the hub's `ended`), when its expiry
//! passes unrefreshed, or when a frame arrives after its end — and then the
//! socket closes with 4001 and takes and gets nothing more.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use tokio::time::Instant;
use uuid::Uuid;

use crate::auth::Caller;
use crate::identity::Authenticator;

/// The close code of a socket whose session is missing, forged or ended.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;

pub struct SessionWatch {
    auth: Authenticator,
    session: Uuid,
    expires: Instant,
}

fn instant_of(t: chrono::DateTime<chrono::Utc>) -> Instant {
    let left = (t - chrono::Utc::now()).to_std().unwrap_or_default();
    Instant::now() + left
}

impl SessionWatch {
    pub fn new(auth: Authenticator, caller: &Caller) -> Self {
        Self {
            auth,
            session: caller.session_id,
            expires: instant_of(caller.expires_at),
        }
    }

    /// Resolves once the session has expired without a refresh (looked up
    /// again at each expiry: a refresh moves it).
    pub async fn expired(&mut self) {
        loop {
            tokio::time::sleep_until(self.expires).await;
            match self.auth.still_open(self.session).await {
                Ok(Some(until)) => self.expires = instant_of(until),
                Ok(None) => return,
                // cannot tell now: ask again soon
                Err(_) => self.expires = Instant::now() + Duration::from_secs(2),
            }
        }
    }

    /// Whether the session is still open (before a frame is taken). When
    /// the database cannot say, the frame's own command will fail anyway.
    pub async fn open(&self) -> bool {
        !matches!(self.auth.still_open(self.session).await, Ok(None))
    }
}

/// Closes a socket whose session has ended.
pub async fn close_ended(socket: &mut WebSocket) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: CLOSE_UNAUTHORIZED,
            reason: "session ended".into(),
        })))
        .await;
}

//! Chat8's real-time socket, fed from the log: once the `social` projection
//! has applied an event, the frames it makes go to the sockets of this
//! process that it concerns — whichever process took the command. Every
//! frame carries its cursor `seq` (`<transaction id>.<position>`), so a
//! client that reconnects with `?since=<seq>` is sent what it missed first,
//! in order.
//!
//! Frames (`{type, data, timestamp, seq}`): `new_message` (to the receiver
//! and the sender), `messages_read` (to both), `message_deleted` (to both,
//! or to the receiver alone when they hid it), `friend_request` (to the addressee),
//! `friend_request_accepted` (to the requester), `user_status` and
//! `key_changed` (to the user's friends), `voice_call_invite` /
//! `video_call_invite` and `call_accepted` / `call_rejected` / `call_ended`
//! (to the other party).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aggregates::social::{
    CallAction, CallEvent, CallKind, ConversationEvent, FriendshipEvent, KeysEvent,
};
use aggregates::AccountEvent;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::core::Core;
use crate::identity::ends;
use crate::live::Hub;
use crate::store::LogPosition;

/// The projection the feed follows.
pub const PROJECTION: &str = "social";
/// Frames replayed to a reconnecting socket at most (beyond: refetch).
pub const REPLAY_MAX: usize = 1000;
/// Events read per replay or feed batch.
pub const BATCH: i64 = 1000;

/// A frame for one socket: its place in the log, and its text.
#[derive(Debug, Clone)]
pub struct Frame {
    pub at: LogPosition,
    pub text: Arc<String>,
}

/// The sockets of this process, by account number.
pub struct SocialHub {
    pub sockets: Arc<Hub<Frame>>,
    /// this process among others (presence rows)
    pub node: String,
}

impl SocialHub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            sockets: Arc::default(),
            node: uuid::Uuid::new_v4().to_string(),
        })
    }
}

/// The cursor of a position: `<transaction id>.<position>`.
pub fn cursor(at: LogPosition) -> String {
    format!("{}.{}", at.txid, at.position)
}

pub fn parse_cursor(raw: &str) -> Option<LogPosition> {
    let (txid, position) = raw.trim().split_once('.')?;
    Some(LogPosition {
        txid: txid.parse().ok().filter(|t: &i64| *t >= 0)?,
        position: position.parse().ok().filter(|p: &i64| *p >= 0)?,
    })
}

fn frame_text(
    kind: &str,
    data: Value,
    at: LogPosition,
    when: chrono::DateTime<chrono::Utc>,
) -> String {
    json!({
        "type": kind,
        "data": data,
        "timestamp": crate::timefmt::rfc3339_utc(when),
        "seq": cursor(at),
    })
    .to_string()
}

#[derive(sqlx::FromRow)]
struct Row {
    txid: i64,
    global_position: i64,
    aggregate_type: String,
    aggregate_id: String,
    payload: String,
    recorded_at: chrono::DateTime<chrono::Utc>,
}

/// One type's next rows in `(after, upto]`, in log order, at most a batch
/// (`$5`): the type is a literal, so every plan keeps to
/// `events_type_log_order` and stops after the batch.
macro_rules! rows_of {
    ($ty:literal, $also:literal) => {
        concat!(
            "(SELECT transaction_id::text::bigint AS txid, global_position, aggregate_type, aggregate_id,
        payload::text AS payload, recorded_at
   FROM events
  WHERE aggregate_type = '", $ty, "'", $also, "
    AND (transaction_id, global_position) > ($1::text::xid8, $2)
    AND (transaction_id, global_position) <= ($3::text::xid8, $4)
  ORDER BY aggregate_type, transaction_id, global_position
  LIMIT $5)"
        )
    };
}

/// The feed's next batch (parameters: the two positions `$1`-`$4`, the
/// batch, the [`ACCOUNT_EVENTS`]): each type the feed reads (Friendship,
/// Conversation, EncryptionKeys, Account, Call) in its own arm, merged in
/// log order. One scan of `aggregate_type = ANY(..)` instead read every row
/// of those types in the range, then sorted and kept a batch: behind by
/// 270,000 messages on the bench's store it took 0.37 s a batch (over 1 s
/// under load, so the feed fell further behind), against 2-12 ms here (the
/// test `a_feed_far_behind_reads_one_batch_not_its_whole_backlog` counts
/// the rows each scan reads, with statistics from before the backlog).
pub const READ: &str = concat!(
    "SELECT b.* FROM (\n",
    rows_of!("Friendship", ""),
    "\nUNION ALL\n",
    rows_of!("Conversation", ""),
    "\nUNION ALL\n",
    rows_of!("EncryptionKeys", ""),
    "\nUNION ALL\n",
    rows_of!("Account", "\n    AND event_type = ANY($6)"),
    "\nUNION ALL\n",
    rows_of!("Call", ""),
    "\n) b ORDER BY b.txid, b.global_position LIMIT $5"
);

async fn read(pool: &PgPool, after: LogPosition, upto: LogPosition) -> sqlx::Result<Vec<Row>> {
    sqlx::query_as(READ)
        .bind(after.txid.to_string())
        .bind(after.position)
        .bind(upto.txid.to_string())
        .bind(upto.position)
        .bind(BATCH)
        .bind(ACCOUNT_EVENTS)
        .fetch_all(pool)
        .await
}

/// Names and friend lists, read once per batch.
#[derive(Default)]
struct Lookups {
    names: HashMap<i64, String>,
    friends: HashMap<i64, Vec<i64>>,
    numbers: HashMap<String, i64>,
}

impl Lookups {
    async fn name(&mut self, pool: &PgPool, n: i64) -> sqlx::Result<String> {
        if let Some(v) = self.names.get(&n) {
            return Ok(v.clone());
        }
        let v = projections::accounts::by_number(pool, n)
            .await?
            .map(|a| a.display_name())
            .unwrap_or_default();
        self.names.insert(n, v.clone());
        Ok(v)
    }
    async fn friends(&mut self, pool: &PgPool, n: i64) -> sqlx::Result<Vec<i64>> {
        if let Some(v) = self.friends.get(&n) {
            return Ok(v.clone());
        }
        let v = projections::social::friend_ids(pool, n).await?;
        self.friends.insert(n, v.clone());
        Ok(v)
    }
    async fn number(&mut self, pool: &PgPool, account: &str) -> sqlx::Result<Option<i64>> {
        if let Some(v) = self.numbers.get(account) {
            return Ok(Some(*v));
        }
        let Ok(id) = account.parse() else {
            return Ok(None);
        };
        let row = projections::accounts::by_id(pool, id).await?;
        if let Some(a) = &row {
            self.numbers.insert(account.to_owned(), a.number);
            self.names.insert(a.number, a.display_name());
        }
        Ok(row.map(|a| a.number))
    }
}

/// The two account numbers of a conversation's stream id (`a:b`).
fn parties(stream: &str) -> Vec<i64> {
    stream.split(':').filter_map(|n| n.parse().ok()).collect()
}

/// The frames an event makes: (recipient, frame). `only` limits them to
/// one recipient (a replay).
async fn frames_of(
    pool: &PgPool,
    look: &mut Lookups,
    row: &Row,
    only: Option<i64>,
) -> sqlx::Result<Vec<(i64, Frame)>> {
    let at = LogPosition {
        txid: row.txid,
        position: row.global_position,
    };
    let when = row.recorded_at;
    let mut out: Vec<(i64, String)> = Vec::new();
    let wanted = |u: i64| only.is_none_or(|o| o == u);
    match row.aggregate_type.as_str() {
        "Conversation" => match serde_json::from_str(&row.payload) {
            Ok(ConversationEvent::DirectMessageSent {
                message_id,
                sender_id,
                receiver_id,
                message_type,
                content,
                is_encrypted,
                sent_at,
            }) => {
                let data = json!({
                    "id": message_id,
                    "sender_id": sender_id,
                    "sender_username": look.name(pool, sender_id).await?,
                    "receiver_id": receiver_id,
                    "content": content,
                    "message_type": message_type.as_str(),
                    "is_encrypted": is_encrypted,
                    "event_id": cursor(at),
                });
                let text = frame_text("new_message", data, at, sent_at);
                for u in [receiver_id, sender_id] {
                    out.push((u, text.clone()));
                }
            }
            Ok(ConversationEvent::DirectMessagesRead {
                reader_id, up_to, ..
            }) => {
                // the sender sees the read mark; the reader's other devices too
                let data = json!({ "reader_id": reader_id, "up_to": up_to });
                let text = frame_text("messages_read", data, at, when);
                for u in parties(&row.aggregate_id) {
                    out.push((u, text.clone()));
                }
            }
            Ok(ConversationEvent::DirectMessageDeleted {
                message_id,
                by_id,
                for_both,
                ..
            }) => {
                let data = json!({ "id": message_id, "by_id": by_id, "for_both": for_both });
                let text = frame_text("message_deleted", data, at, when);
                if for_both {
                    for u in parties(&row.aggregate_id) {
                        out.push((u, text.clone()));
                    }
                } else {
                    out.push((by_id, text));
                }
            }
            _ => {}
        },
        "Friendship" => match serde_json::from_str(&row.payload) {
            Ok(FriendshipEvent::FriendRequested {
                request_id,
                from_id,
                to_id,
                message,
                ..
            }) => {
                let data = json!({
                    "request_id": request_id,
                    "from_user_id": from_id,
                    "from_username": look.name(pool, from_id).await?,
                    "message": message,
                });
                out.push((to_id, frame_text("friend_request", data, at, when)));
            }
            Ok(FriendshipEvent::FriendRequestAccepted {
                request_id,
                from_id,
                to_id,
                ..
            }) => {
                let data = json!({
                    "request_id": request_id,
                    "user_id": to_id,
                    "username": look.name(pool, to_id).await?,
                });
                out.push((
                    from_id,
                    frame_text("friend_request_accepted", data, at, when),
                ));
            }
            _ => {}
        },
        "Account" => {
            if let Ok(AccountEvent::PresenceChanged { status, .. }) =
                serde_json::from_str(&row.payload)
            {
                if let Some(n) = look.number(pool, &row.aggregate_id).await? {
                    let data = json!({
                        "user_id": n,
                        "username": look.name(pool, n).await?,
                        "status": status.as_str(),
                    });
                    let text = frame_text("user_status", data, at, when);
                    for f in look.friends(pool, n).await? {
                        out.push((f, text.clone()));
                    }
                }
            }
        }
        "EncryptionKeys" => {
            if let Ok(KeysEvent::KeysPublished {
                user_id,
                public_key,
                ..
            }) = serde_json::from_str(&row.payload)
            {
                let data = json!({ "user_id": user_id, "public_key": public_key });
                let text = frame_text("key_changed", data, at, when);
                for f in look.friends(pool, user_id).await? {
                    out.push((f, text.clone()));
                }
            }
        }
        "Call" => match serde_json::from_str(&row.payload) {
            Ok(CallEvent::CallInvited {
                kind,
                from_id,
                to_id,
                ..
            }) => {
                let kind = match kind {
                    CallKind::Voice => "voice_call_invite",
                    CallKind::Video => "video_call_invite",
                };
                let data = json!({
                    "call_id": row.aggregate_id,
                    "from_user_id": from_id,
                    "from_username": look.name(pool, from_id).await?,
                });
                out.push((to_id, frame_text(kind, data, at, when)));
            }
            Ok(CallEvent::CallAnswered {
                action,
                by_id,
                other_id,
                ..
            }) => {
                let kind = match action {
                    CallAction::Accept => "call_accepted",
                    CallAction::Reject => "call_rejected",
                    CallAction::End => "call_ended",
                };
                let data = json!({
                    "call_id": row.aggregate_id,
                    "from_user_id": by_id,
                    "from_username": look.name(pool, by_id).await?,
                });
                out.push((other_id, frame_text(kind, data, at, when)));
            }
            Err(_) => {}
        },
        _ => {}
    }
    Ok(out
        .into_iter()
        .filter(|(u, _)| wanted(*u))
        .map(|(u, text)| {
            (
                u,
                Frame {
                    at,
                    text: Arc::new(text),
                },
            )
        })
        .collect())
}

/// What a reconnecting socket missed after `since`, up to `upto`, in order;
/// `None` when it is more than [`REPLAY_MAX`] frames (refetch over REST).
pub async fn replay(
    pool: &PgPool,
    user: i64,
    since: LogPosition,
    upto: LogPosition,
) -> sqlx::Result<Option<Vec<Frame>>> {
    let mut out = Vec::new();
    let mut after = since;
    let mut look = Lookups::default();
    while after < upto {
        let rows = read(pool, after, upto).await?;
        for row in &rows {
            for (_, f) in frames_of(pool, &mut look, row, Some(user)).await? {
                out.push(f);
            }
            if out.len() > REPLAY_MAX {
                return Ok(None);
            }
        }
        match rows.last() {
            Some(r) if rows.len() as i64 == BATCH => {
                after = LogPosition {
                    txid: r.txid,
                    position: r.global_position,
                }
            }
            _ => break,
        }
        // a long scan is a long way behind
        if out.is_empty() && after.position - since.position > 100 * BATCH {
            return Ok(None);
        }
    }
    Ok(Some(out))
}

/// The `Account` events the feed reads: presence changes (`user_status`
/// frames, whose status `/friends` reads from `accounts`) and those that
/// end sessions (their sockets close).
pub const ACCOUNT_EVENTS: &[&str] = &[
    "PresenceChanged",
    "SignedOut",
    "SignedIn",
    "PasswordChanged",
];

/// How far frames may go now: the `social` projection's checkpoint, but
/// short of the first of [`ACCOUNT_EVENTS`] the `accounts` projection has
/// not applied yet — a client that reads `/friends` when a `user_status`
/// frame arrives must see that status, and a socket that opens after a
/// session's end must find it ended.
pub async fn limit(core: &Core) -> sqlx::Result<LogPosition> {
    let upto = core.progress.checkpoint(PROJECTION);
    ends::feed_limit(core, upto, ACCOUNT_EVENTS).await
}

/// Pushes frames to this process's sockets as the `social` projection moves
/// (and, for presence, `accounts`: see [`limit`]).
pub async fn run(core: Core, hub: Arc<SocialHub>, mut shutdown: watch::Receiver<bool>) {
    let mut last = core.progress.checkpoint(PROJECTION);
    let mut tick = core.progress.subscribe();
    // where the feed may go, noted while nobody was connected here
    let mut idle: Option<ends::Deferred> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if hub.sockets.is_empty() {
            idle = Some(ends::Deferred::now(
                &core,
                core.progress.checkpoint(PROJECTION),
            ));
            continue;
        }
        if let Err(e) = ends::leave_idle(&core, &mut idle, &mut last, ACCOUNT_EVENTS).await {
            tracing::warn!(error = %e, "chat8 feed cannot read the log; retrying");
            continue;
        }
        let cp = match limit(&core).await {
            Ok(cp) => cp,
            Err(e) => {
                tracing::warn!(error = %e, "chat8 feed cannot read the log; retrying");
                continue;
            }
        };
        let mut look = Lookups::default();
        while cp > last {
            let rows = match read(&core.pool, last, cp).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "chat8 feed cannot read the log; retrying");
                    break;
                }
            };
            for row in &rows {
                last = LogPosition {
                    txid: row.txid,
                    position: row.global_position,
                };
                if row.aggregate_type == "Account" {
                    // in log order: no frame of a later event reaches them
                    hub.sockets.end_sessions(&ends::ended_by(&row.payload));
                }
                match frames_of(&core.pool, &mut look, row, None).await {
                    Ok(frames) => {
                        for (u, f) in frames {
                            hub.sockets.send_to(&[u], &f);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "chat8 feed skips an event it cannot read")
                    }
                }
            }
            if (rows.len() as i64) < BATCH {
                last = cp;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let at = LogPosition {
            txid: 812,
            position: 99,
        };
        assert_eq!(parse_cursor(&cursor(at)), Some(at));
        for bad in ["", "12", "a.b", "-1.3", "1.2.3"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}

//! Sessions that end, as the log tells it: a sign-out, a sign-in that
//! displaced other devices' sessions, a password change or reset. The
//! socket feeds (room chat's, Chat8's) read these events among theirs and
//! close the sessions' sockets in log order — so no frame of a later event
//! reaches them — and only once the `accounts` projection has applied the
//! end, so that a socket opened after it finds its session ended when it
//! checks (see [`feed_limit`]). Expiry is each socket's own timer.

use aggregates::AccountEvent;
use uuid::Uuid;

use crate::core::Core;
use crate::store::LogPosition;

/// The `Account` events that end sessions.
pub const ENDING: &[&str] = &["SignedOut", "SignedIn", "PasswordChanged"];

/// The sessions an `Account` event (its payload) ends.
pub fn ended_by(payload: &str) -> Vec<Uuid> {
    match serde_json::from_str(payload) {
        Ok(AccountEvent::SignedOut { session_id, .. }) => vec![session_id],
        Ok(AccountEvent::SignedIn { displaced, .. }) => displaced,
        Ok(AccountEvent::PasswordChanged { ended_sessions, .. }) => ended_sessions,
        _ => vec![],
    }
}

/// How far a feed whose own projection stands at `upto` may push: short of
/// the first `Account` event of `types` the `accounts` projection has not
/// applied yet. (`accounts` applies every `Account` event, so its
/// checkpoint reaches them; events of other types never hold a feed back.)
pub async fn feed_limit(
    core: &Core,
    upto: LogPosition,
    types: &[&str],
) -> sqlx::Result<LogPosition> {
    Deferred::now(core, upto).limit(core, types).await
}

/// [`feed_limit`] as it stands now, worked out later: a feed with nobody
/// connected notes where it may go at each step and asks the log only once
/// someone connects (a query for every step of its projection otherwise,
/// for no socket). The answer is the one it would have had: both positions
/// are checkpoints, so the log between them no longer changes.
#[derive(Debug, Clone, Copy)]
pub struct Deferred {
    applied: LogPosition,
    upto: LogPosition,
}

impl Deferred {
    pub fn now(core: &Core, upto: LogPosition) -> Self {
        Self {
            applied: core.progress.checkpoint(crate::identity::READ_MODELS[0]),
            upto,
        }
    }

    pub async fn limit(self, core: &Core, types: &[&str]) -> sqlx::Result<LogPosition> {
        let Self { applied, upto } = self;
        if applied >= upto {
            return Ok(upto);
        }
        let first: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id::text::bigint, global_position FROM events
              WHERE aggregate_type = 'Account' AND event_type = ANY($5)
                AND (transaction_id, global_position) > ($1::text::xid8, $2)
                AND (transaction_id, global_position) <= ($3::text::xid8, $4)
              ORDER BY events.transaction_id, events.global_position LIMIT 1",
        )
        .bind(applied.txid.to_string())
        .bind(applied.position)
        .bind(upto.txid.to_string())
        .bind(upto.position)
        .bind(types)
        .fetch_optional(&core.pool)
        .await?;
        Ok(match first {
            // just before it: positions are compared as pairs
            Some((txid, position)) => LogPosition {
                txid,
                position: position - 1,
            },
            None => upto,
        })
    }
}

/// Moves a feed's `last` to where it could have gone while nobody was
/// connected (`idle`, noted then), once someone is.
pub async fn leave_idle(
    core: &Core,
    idle: &mut Option<Deferred>,
    last: &mut LogPosition,
    types: &[&str],
) -> sqlx::Result<()> {
    if let Some(noted) = *idle {
        *last = (*last).max(noted.limit(core, types).await?);
        *idle = None;
    }
    Ok(())
}

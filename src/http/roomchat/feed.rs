//! Room chat's push feed: each posted message goes to the room's members
//! connected to this process, once the `roomchat` projection has applied
//! it (whichever process took the send); a session that ends (sign-out,
//! password change, displacement) has its sockets closed in log order, so
//! no message posted after the end reaches them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aggregates::ChatRoomEvent;
use chrono_tz::Tz;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::core::Core;
use crate::identity::ends;
use crate::live::Hub;
use crate::store::LogPosition;

const PROJECTION: &str = "roomchat";

/// Pushes each posted message to the room's members connected here, once the
/// `roomchat` projection has applied it.
pub async fn run(core: Core, hub: Arc<Hub>, tz: Tz, mut shutdown: watch::Receiver<bool>) {
    let pool = core.pool.clone();
    let mut last = match start_position(&pool).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "live feed cannot read its start position");
            LogPosition::default()
        }
    };
    let mut rx = core.progress.subscribe();
    // where the feed may go, noted while nobody was connected here
    let mut idle: Option<ends::Deferred> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = rx.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let own = core.progress.checkpoint(PROJECTION);
        if hub.is_empty() {
            // nobody connected here: nothing to read
            idle = Some(ends::Deferred::now(&core, own));
            continue;
        }
        if let Err(e) = ends::leave_idle(&core, &mut idle, &mut last, ends::ENDING).await {
            tracing::warn!(error = %e, "live feed cannot read the log; retrying");
            continue;
        }
        let cp = match ends::feed_limit(&core, own, ends::ENDING).await {
            Ok(cp) => cp,
            Err(e) => {
                tracing::warn!(error = %e, "live feed cannot read the log; retrying");
                continue;
            }
        };
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
          ORDER BY events.transaction_id, events.global_position LIMIT $5",
    )
    .bind(after.txid.to_string())
    .bind(after.position)
    .bind(upto.txid.to_string())
    .bind(upto.position)
    .bind(FEED_BATCH)
    .fetch_all(pool)
    .await?;
    // the sessions that ended up to where this batch reaches, in order
    // among its messages
    let reach = match rows.last() {
        Some((txid, position, _)) if rows.len() as i64 == FEED_BATCH => LogPosition {
            txid: *txid,
            position: *position,
        },
        _ => upto,
    };
    let ended: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position, payload::text FROM events
          WHERE aggregate_type = 'Account' AND event_type = ANY($5)
            AND (transaction_id, global_position) > ($1::text::xid8, $2)
            AND (transaction_id, global_position) <= ($3::text::xid8, $4)
          ORDER BY events.transaction_id, events.global_position",
    )
    .bind(after.txid.to_string())
    .bind(after.position)
    .bind(reach.txid.to_string())
    .bind(reach.position)
    .bind(ends::ENDING)
    .fetch_all(pool)
    .await?;
    let mut ended = ended.into_iter().peekable();
    let mut members: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut last = after;
    for (txid, position, payload) in &rows {
        while let Some((_, _, end)) = ended.next_if(|(t, p, _)| (*t, *p) < (*txid, *position)) {
            hub.end_sessions(&ends::ended_by(&end));
        }
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
            if let Some(text) = super::push_text(&event, tz) {
                hub.send_to(&members[room_id], &text);
            }
        }
    }
    for (_, _, end) in ended {
        hub.end_sessions(&ends::ended_by(&end));
    }
    Ok(if (rows.len() as i64) < FEED_BATCH {
        upto
    } else {
        last
    })
}

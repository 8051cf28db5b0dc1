//! Room chat's push feed: each posted message goes to the room's members
//! connected to this process, once the `roomchat` projection has applied
//! it (whichever process took the send).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aggregates::ChatRoomEvent;
use chrono_tz::Tz;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::live::Hub;
use crate::projector::Progress;
use crate::store::LogPosition;

const PROJECTION: &str = "roomchat";

/// Pushes each posted message to the room's members connected here, once the
/// `roomchat` projection has applied it.
pub async fn run(
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
            if let Some(text) = super::push_text(&event, tz) {
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

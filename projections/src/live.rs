//! Projections "live" (rooms, the anchors' chats, VIP access, follows,
//! subscriptions, prices) and "livechat" (viewers' chat and its activity),
//! and the ranking of live rooms (seed 000).
//!
//! Ranking. Activity counts by the clock hour it falls in (hours of the
//! Unix epoch): in full during its own hour, and halving every six hours
//! after (`2^(-hours since / 6)`). Each room keeps two such "heats", over
//! its AI replies and over its viewer messages, folded event by event in
//! log order (so a rebuild gives the same bits whatever its batches),
//! stored with the hour they are valid at, and decayed to the hour of
//! reading:
//!
//! `score = 1.5 × AI heat + 0.5 × viewer-message heat + 1.0 × viewers now`
//!
//! rounded to two decimals: two AI replies of this hour and nothing else
//! score 3.0, one scores 1.5 (seed 000's example).

use aggregates::{AnchorEvent, FollowEvent, LiveRoomEvent, ViewerChatEvent, WalletEvent};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{ProjectionError, Projector, StoredEvent};

/// Heats halve after this many hours without activity.
pub const HEAT_HALF_LIFE_HOURS: f64 = 6.0;
pub const AI_REPLY_WEIGHT: f64 = 1.5;
pub const VIEWER_MESSAGE_WEIGHT: f64 = 0.5;
pub const VIEWER_WEIGHT: f64 = 1.0;

/// The start of `t`'s clock hour.
fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp().div_euclid(3600) * 3600, 0).unwrap_or(t)
}

/// What activity is worth after `from` -> `to` (both hour starts): exactly
/// 1 within the same hour.
fn decay(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let hours = ((to - from).num_seconds() / 3600).max(0);
    if hours == 0 {
        return 1.0;
    }
    (-(hours as f64) / HEAT_HALF_LIFE_HOURS).exp2()
}

/// A heat after one more event at `t`; the result is valid at the later
/// of `at` and `t`'s hour.
pub fn heat_add(heat: f64, at: Option<DateTime<Utc>>, t: DateTime<Utc>) -> (f64, DateTime<Utc>) {
    let hour = hour_of(t);
    match at {
        None => (1.0, hour),
        Some(at) if hour >= at => (heat * decay(at, hour) + 1.0, hour),
        Some(at) => (heat + decay(hour, at), at),
    }
}

/// A heat as it stands at `now`.
pub fn heat_at(heat: f64, at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> f64 {
    at.map_or(0.0, |at| heat * decay(at, hour_of(now)))
}

/// The ranking score (unrounded; shown rounded to two decimals).
pub fn score(row: &LiveRow, now: DateTime<Utc>) -> f64 {
    AI_REPLY_WEIGHT * heat_at(row.ai_heat, row.ai_heat_at, now)
        + VIEWER_MESSAGE_WEIGHT * heat_at(row.chat_heat, row.chat_heat_at, now)
        + VIEWER_WEIGHT * row.viewers as f64
}

pub fn rounded(score: f64) -> f64 {
    (score * 100.0).round() / 100.0
}

/// Live rooms best first (ties: the latest AI reply, then the room id).
pub fn rank(mut rows: Vec<LiveRow>, now: DateTime<Utc>) -> Vec<(LiveRow, f64)> {
    let mut scored: Vec<(LiveRow, f64)> = rows
        .drain(..)
        .map(|r| {
            let s = score(&r, now);
            (r, s)
        })
        .collect();
    scored.sort_by(|(a, sa), (b, sb)| {
        sb.total_cmp(sa)
            .then(b.last_ai_reply_at.cmp(&a.last_ai_reply_at))
            .then(a.room_id.cmp(&b.room_id))
    });
    scored
}

pub struct LiveProjector;

#[async_trait]
impl Projector for LiveProjector {
    fn name(&self) -> &'static str {
        "live"
    }
    fn tables(&self) -> &'static [&'static str] {
        &[
            "live_rooms",
            "live_chat",
            "live_access",
            "live_subscriptions",
            "live_follows",
            "live_anchors",
        ]
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &["LiveRoom", "Follow", "Anchor", "Wallet"]
    }
    fn insert_only_tables(&self) -> &'static [&'static str] {
        &["live_chat"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    fn folds_batches(&self) -> bool {
        true
    }

    /// A wallet's events but its VIP and subscription payments.
    fn ignores(&self, event: &StoredEvent) -> bool {
        event.aggregate_type == "Wallet" && !is_payment(event)
    }

    /// Everything but chat lines and VIP payments one by one in log order,
    /// then the batch's chat lines in one insert and one fold per room, and
    /// its VIP payments' access in one insert (a room's creation comes
    /// before its lines and payments in the log, and nothing else reads or
    /// writes what they change).
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut lines = Vec::new();
        let mut access = Vec::new();
        for event in events {
            match event.aggregate_type.as_str() {
                "LiveRoom" => match event.decode::<LiveRoomEvent>()? {
                    LiveRoomEvent::LiveChatRecorded {
                        is_user,
                        sender_name,
                        message,
                        sent_at,
                        ..
                    } => lines.push(ChatLineRow {
                        room_id: event.aggregate_id.clone(),
                        position: event.global_position,
                        is_user,
                        sender_name,
                        message,
                        sent_at,
                    }),
                    other => apply_room(conn, &event.aggregate_id, other).await?,
                },
                "Follow" => apply_follow(conn, event.decode()?).await?,
                "Anchor" => apply_anchor(conn, event.decode()?).await?,
                "Wallet" if is_payment(event) => {
                    if let Some(row) = apply_payment(conn, event).await? {
                        access.push(row);
                    }
                }
                _ => {}
            }
        }
        write_chat_lines(conn, &lines).await?;
        write_access(conn, &access).await
    }
}

/// A wallet's event that buys access to a room.
fn is_payment(event: &StoredEvent) -> bool {
    matches!(
        event.event_type.as_str(),
        "VipCoinPaid" | "SubscriptionPaid"
    )
}

async fn apply_room(
    conn: &mut PgConnection,
    room_id: &str,
    event: LiveRoomEvent,
) -> Result<(), ProjectionError> {
    match event {
        LiveRoomEvent::LiveRoomCreated {
            room_id: _,
            anchor_id,
            character_name,
            character_date,
            card_spec,
            card_sha256,
            image,
            title,
            describe,
            room_type,
            coin_num,
            language,
            tags,
            created_at,
        } => {
            let (image_name, image_path, image_sha256) = match image {
                Some(i) => (i.name, i.path, Some(i.sha256)),
                None => (String::new(), String::new(), None),
            };
            sqlx::query(
                "INSERT INTO live_rooms (room_id, anchor_id, character_name, character_date, card_spec, card_sha256,
                                         image_name, image_path, image_sha256, title, describe, room_type, coin_num,
                                         language, tags, tag_keys, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)",
            )
            .bind(room_id)
            .bind(anchor_id)
            .bind(character_name)
            .bind(character_date)
            .bind(card_spec)
            .bind(card_sha256)
            .bind(image_name)
            .bind(image_path)
            .bind(image_sha256)
            .bind(title)
            .bind(describe)
            .bind(room_type)
            .bind(coin_num)
            .bind(language)
            .bind(&tags)
            .bind(tag_keys(&tags))
            .bind(created_at)
            .execute(conn)
            .await?;
        }
        LiveRoomEvent::LiveRoomSettingsChanged {
            title,
            describe,
            room_type,
            coin_num,
            language,
            tags,
            changed_at,
        } => {
            sqlx::query(
                "UPDATE live_rooms SET title = $2, describe = $3, room_type = $4, coin_num = $5, language = $6,
                        tags = $7, tag_keys = $8, updated_at = $9
                  WHERE room_id = $1",
            )
            .bind(room_id)
            .bind(title)
            .bind(describe)
            .bind(room_type)
            .bind(coin_num)
            .bind(language)
            .bind(&tags)
            .bind(tag_keys(&tags))
            .bind(changed_at)
            .execute(conn)
            .await?;
        }
        LiveRoomEvent::LiveStarted { started_at } => {
            sqlx::query(
                "UPDATE live_rooms SET live = true, live_since = $2, updated_at = $2 WHERE room_id = $1",
            )
            .bind(room_id)
            .bind(started_at)
            .execute(conn)
            .await?;
        }
        LiveRoomEvent::LiveEnded { ended_at } => {
            sqlx::query(
                "UPDATE live_rooms SET live = false, live_since = NULL, updated_at = $2 WHERE room_id = $1",
            )
            .bind(room_id)
            .bind(ended_at)
            .execute(conn)
            .await?;
        }
        LiveRoomEvent::LiveChatRecorded { .. } => unreachable!("chat lines are folded"),
    }
    Ok(())
}

fn tag_keys(tags: &[String]) -> Vec<String> {
    tags.iter().map(|t| t.to_lowercase()).collect()
}

struct ChatLineRow {
    room_id: String,
    position: i64,
    is_user: bool,
    sender_name: String,
    message: String,
    sent_at: DateTime<Utc>,
}

async fn write_chat_lines(
    conn: &mut PgConnection,
    lines: &[ChatLineRow],
) -> Result<(), ProjectionError> {
    if lines.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO live_chat (room_id, position, is_user, sender_name, message, sent_at)
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bool[], $4::text[], $5::text[], $6::timestamptz[])",
    )
    .bind(lines.iter().map(|l| l.room_id.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.position).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.is_user).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.sender_name.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.message.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.sent_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    let rooms: Vec<String> = {
        let mut r: Vec<String> = lines.iter().map(|l| l.room_id.clone()).collect();
        r.sort();
        r.dedup();
        r
    };
    let current: Vec<RoomFold> = sqlx::query_as(
        "SELECT room_id, chat_count AS chat, ai_reply_count AS ai, last_ai_reply_at AS last,
                ai_heat AS heat, ai_heat_at AS heat_at
           FROM live_rooms WHERE room_id = ANY($1)",
    )
    .bind(&rooms)
    .fetch_all(&mut *conn)
    .await?;
    let mut folds: std::collections::BTreeMap<String, RoomFold> = current
        .into_iter()
        .map(|f| (f.room_id.clone(), f))
        .collect();
    for l in lines {
        let Some(f) = folds.get_mut(&l.room_id) else {
            continue;
        };
        f.chat += 1;
        if !l.is_user {
            f.ai += 1;
            f.last = f.last.max(Some(l.sent_at));
            let (heat, at) = heat_add(f.heat, f.heat_at, l.sent_at);
            (f.heat, f.heat_at) = (heat, Some(at));
        }
    }
    sqlx::query(
        "UPDATE live_rooms r SET chat_count = f.chat, ai_reply_count = f.ai, last_ai_reply_at = f.last,
                ai_heat = f.heat, ai_heat_at = f.heat_at
           FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[], $5::float8[], $6::timestamptz[])
                AS f(room_id, chat, ai, last, heat, heat_at)
          WHERE r.room_id = f.room_id",
    )
    .bind(folds.keys().cloned().collect::<Vec<_>>())
    .bind(folds.values().map(|f| f.chat).collect::<Vec<_>>())
    .bind(folds.values().map(|f| f.ai).collect::<Vec<_>>())
    .bind(folds.values().map(|f| f.last).collect::<Vec<_>>())
    .bind(folds.values().map(|f| f.heat).collect::<Vec<_>>())
    .bind(folds.values().map(|f| f.heat_at).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct RoomFold {
    room_id: String,
    chat: i64,
    ai: i64,
    last: Option<DateTime<Utc>>,
    heat: f64,
    heat_at: Option<DateTime<Utc>>,
}

async fn apply_follow(conn: &mut PgConnection, event: FollowEvent) -> Result<(), ProjectionError> {
    match event {
        FollowEvent::AnchorFollowed {
            viewer_id,
            anchor_id,
            room_id,
            at,
        } => {
            sqlx::query(
                "INSERT INTO live_follows (account_id, anchor_id, room_id, since) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (account_id, anchor_id) DO UPDATE SET room_id = EXCLUDED.room_id, since = EXCLUDED.since",
            )
            .bind(viewer_id)
            .bind(anchor_id)
            .bind(room_id)
            .bind(at)
            .execute(conn)
            .await?;
        }
        FollowEvent::AnchorUnfollowed {
            viewer_id,
            anchor_id,
            ..
        } => {
            sqlx::query("DELETE FROM live_follows WHERE account_id = $1 AND anchor_id = $2")
                .bind(viewer_id)
                .bind(anchor_id)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

async fn apply_anchor(conn: &mut PgConnection, event: AnchorEvent) -> Result<(), ProjectionError> {
    let AnchorEvent::SubscriptionPriceSet {
        anchor_id,
        amount,
        period_secs,
        at,
    } = event;
    sqlx::query(
        "INSERT INTO live_anchors (anchor_id, subscription_price, subscription_secs, updated_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (anchor_id) DO UPDATE
            SET subscription_price = EXCLUDED.subscription_price,
                subscription_secs = EXCLUDED.subscription_secs, updated_at = EXCLUDED.updated_at",
    )
    .bind(anchor_id)
    .bind(amount)
    .bind(period_secs)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A room's access bought by a VIP payment.
struct AccessRow {
    room_id: String,
    payer: Uuid,
    amount: i64,
    at: DateTime<Utc>,
    position: i64,
}

/// Applies a subscription; a VIP payment's access is returned, for the
/// batch's one insert ([`write_access`]).
async fn apply_payment(
    conn: &mut PgConnection,
    event: &StoredEvent,
) -> Result<Option<AccessRow>, ProjectionError> {
    let (payer, _) = aggregates::wallet::parse_wallet_id(&event.aggregate_id)
        .ok_or_else(|| ProjectionError::Payload(format!("wallet id {}", event.aggregate_id)))?;
    match event.decode::<WalletEvent>()? {
        WalletEvent::VipCoinPaid {
            room_id,
            amount,
            at,
            ..
        } => {
            return Ok(Some(AccessRow {
                room_id,
                payer,
                amount,
                at,
                position: event.global_position,
            }))
        }
        WalletEvent::SubscriptionPaid {
            anchor_id,
            period_secs,
            at,
            ..
        } => {
            sqlx::query(
                "INSERT INTO live_subscriptions (account_id, anchor_id, until, periods)
                 VALUES ($1, $2, $3 + make_interval(secs => $4), 1)
                 ON CONFLICT (account_id, anchor_id) DO UPDATE
                    SET until = greatest(live_subscriptions.until, $3) + make_interval(secs => $4),
                        periods = live_subscriptions.periods + 1",
            )
            .bind(payer)
            .bind(anchor_id)
            .bind(at)
            .bind(period_secs as f64)
            .execute(conn)
            .await?;
        }
        _ => {}
    }
    Ok(None)
}

/// The batch's VIP access in log order: a room paid twice keeps its
/// first payment, as paying one by one did.
async fn write_access(conn: &mut PgConnection, rows: &[AccessRow]) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO live_access (room_id, account_id, amount, paid_at, position)
         SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::bigint[], $4::timestamptz[], $5::bigint[])
         ON CONFLICT (room_id, account_id) DO NOTHING",
    )
    .bind(rows.iter().map(|r| r.room_id.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.payer).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.amount).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.position).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

pub struct LiveChatProjector;

#[async_trait]
impl Projector for LiveChatProjector {
    fn name(&self) -> &'static str {
        "livechat"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["live_viewer_messages", "live_room_activity"]
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &["ViewerChat"]
    }
    fn insert_only_tables(&self) -> &'static [&'static str] {
        &["live_viewer_messages"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    fn folds_batches(&self) -> bool {
        true
    }

    /// The batch's messages in one insert; each room's activity folded in
    /// log order from its stored state and written in one upsert.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut rows = Vec::with_capacity(events.len());
        for event in events {
            let ViewerChatEvent::ViewerMessagePosted {
                room_id,
                account_id,
                uid,
                username,
                message,
                sent_at,
            } = event.decode()?;
            rows.push((
                room_id,
                event.global_position,
                account_id,
                uid,
                username,
                message,
                sent_at,
            ));
        }
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO live_viewer_messages (room_id, position, account_id, uid, username, message, sent_at)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                                  $7::timestamptz[])",
        )
        .bind(rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.3.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.4.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.5.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.6).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
        let mut rooms: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        rooms.sort();
        rooms.dedup();
        let current: Vec<(String, i64, DateTime<Utc>, f64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT room_id, viewer_messages, last_viewer_message_at, chat_heat, chat_heat_at
               FROM live_room_activity WHERE room_id = ANY($1)",
        )
        .bind(&rooms)
        .fetch_all(&mut *conn)
        .await?;
        type Fold = (i64, Option<DateTime<Utc>>, f64, Option<DateTime<Utc>>);
        let mut folds: std::collections::BTreeMap<String, Fold> = current
            .into_iter()
            .map(|(id, n, last, heat, at)| (id, (n, Some(last), heat, Some(at))))
            .collect();
        for r in &rows {
            let f = folds.entry(r.0.clone()).or_insert((0, None, 0.0, None));
            let (heat, at) = heat_add(f.2, f.3, r.6);
            *f = (f.0 + 1, f.1.max(Some(r.6)), heat, Some(at));
        }
        sqlx::query(
            "INSERT INTO live_room_activity (room_id, viewer_messages, last_viewer_message_at, chat_heat, chat_heat_at)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::timestamptz[], $4::float8[], $5::timestamptz[])
             ON CONFLICT (room_id) DO UPDATE
                SET viewer_messages = EXCLUDED.viewer_messages,
                    last_viewer_message_at = EXCLUDED.last_viewer_message_at,
                    chat_heat = EXCLUDED.chat_heat, chat_heat_at = EXCLUDED.chat_heat_at",
        )
        .bind(folds.keys().cloned().collect::<Vec<_>>())
        .bind(folds.values().map(|f| f.0).collect::<Vec<_>>())
        .bind(folds.values().map(|f| f.1).collect::<Vec<_>>())
        .bind(folds.values().map(|f| f.2).collect::<Vec<_>>())
        .bind(folds.values().map(|f| f.3).collect::<Vec<_>>())
        .execute(conn)
        .await?;
        Ok(())
    }
}

// ---- reads ----

/// A room as the lists and the live info show it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveRow {
    pub room_id: String,
    pub anchor_id: Uuid,
    pub anchor_name: String,
    pub character_name: String,
    pub character_date: String,
    pub image_name: String,
    pub image_path: String,
    pub tags: Vec<String>,
    pub language: String,
    pub title: String,
    pub describe: String,
    pub room_type: i64,
    pub coin_num: i64,
    pub live: bool,
    pub ai_reply_count: i64,
    pub last_ai_reply_at: Option<DateTime<Utc>>,
    pub ai_heat: f64,
    pub ai_heat_at: Option<DateTime<Utc>>,
    pub chat_heat: f64,
    pub chat_heat_at: Option<DateTime<Utc>>,
    /// viewers seen since the presence window's start (0 when not asked)
    pub viewers: i64,
}

/// The select list of [`LiveRow`]; `$1` is the presence window's start
/// (NULL: no viewers counted).
const LIVE_ROW: &str = "
    SELECT r.room_id, r.anchor_id,
           coalesce(a.username, a.nickname, split_part(a.email, '@', 1), '') AS anchor_name,
           r.character_name, r.character_date, r.image_name, r.image_path, r.tags, r.language,
           r.title, r.describe, r.room_type, r.coin_num, r.live, r.ai_reply_count, r.last_ai_reply_at,
           r.ai_heat, r.ai_heat_at, coalesce(c.chat_heat, 0) AS chat_heat, c.chat_heat_at,
           CASE WHEN $1::timestamptz IS NULL THEN 0
                ELSE (SELECT count(*) FROM live_presence p WHERE p.room_id = r.room_id AND p.seen_at > $1)
           END AS viewers
      FROM live_rooms r
      LEFT JOIN accounts a ON a.account_id = r.anchor_id
      LEFT JOIN live_room_activity c ON c.room_id = r.room_id";

/// The rooms live now (with the tag, folded to lower case, if given), by
/// room id.
pub async fn lives(
    pool: &PgPool,
    tag_key: Option<&str>,
    viewers_since: Option<DateTime<Utc>>,
) -> sqlx::Result<Vec<LiveRow>> {
    sqlx::query_as(&format!(
        "{LIVE_ROW} WHERE r.live AND ($2::text IS NULL OR $2 = ANY (r.tag_keys)) ORDER BY r.room_id"
    ))
    .bind(viewers_since)
    .bind(tag_key)
    .fetch_all(pool)
    .await
}

pub async fn room(
    pool: &PgPool,
    room_id: &str,
    viewers_since: Option<DateTime<Utc>>,
) -> sqlx::Result<Option<LiveRow>> {
    sqlx::query_as(&format!("{LIVE_ROW} WHERE r.room_id = $2"))
        .bind(viewers_since)
        .bind(room_id)
        .fetch_optional(pool)
        .await
}

/// What a room needs to decide a viewer's access.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoomAccessRow {
    pub room_id: String,
    pub anchor_id: Uuid,
    pub character_name: String,
    pub character_date: String,
    pub room_type: i64,
    pub coin_num: i64,
    pub live: bool,
}

pub async fn room_access(pool: &PgPool, room_id: &str) -> sqlx::Result<Option<RoomAccessRow>> {
    sqlx::query_as(
        "SELECT room_id, anchor_id, character_name, character_date, room_type, coin_num, live
           FROM live_rooms WHERE room_id = $1",
    )
    .bind(room_id)
    .fetch_optional(pool)
    .await
}

/// One viewer's standing in one room and with its anchor.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct ViewerStanding {
    pub paid: bool,
    pub subscribed_until: Option<DateTime<Utc>>,
    pub subscription_periods: i32,
    pub following: bool,
}

/// The columns of [`ViewerStanding`] for the room, anchor and account
/// named by these SQL expressions.
macro_rules! standing_columns {
    ($room:literal, $anchor:literal, $account:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM live_access a WHERE a.room_id = ",
            $room,
            " AND a.account_id = ",
            $account,
            ") AS paid,
             (SELECT until FROM live_subscriptions s WHERE s.account_id = ",
            $account,
            " AND s.anchor_id = ",
            $anchor,
            ")
                 AS subscribed_until,
             coalesce((SELECT periods FROM live_subscriptions s
                        WHERE s.account_id = ",
            $account,
            " AND s.anchor_id = ",
            $anchor,
            "), 0) AS subscription_periods,
             EXISTS (SELECT 1 FROM live_follows f WHERE f.account_id = ",
            $account,
            " AND f.anchor_id = ",
            $anchor,
            ")
                 AS following"
        )
    };
}

pub async fn standing(
    pool: &PgPool,
    room_id: &str,
    anchor_id: Uuid,
    account_id: Uuid,
) -> sqlx::Result<ViewerStanding> {
    sqlx::query_as(concat!("SELECT ", standing_columns!("$1", "$2", "$3")))
        .bind(room_id)
        .bind(anchor_id)
        .bind(account_id)
        .fetch_one(pool)
        .await
}

/// A room and one viewer's standing in it and with its anchor.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoomStanding {
    #[sqlx(flatten)]
    pub room: RoomAccessRow,
    #[sqlx(flatten)]
    pub standing: ViewerStanding,
}

/// [`room_access`] and [`standing`] in one statement (a payment reads
/// both: one round trip less).
pub async fn room_and_standing(
    pool: &PgPool,
    room_id: &str,
    account_id: Uuid,
) -> sqlx::Result<Option<RoomStanding>> {
    sqlx::query_as(concat!(
        "SELECT r.room_id, r.anchor_id, r.character_name, r.character_date, r.room_type, r.coin_num, r.live, ",
        standing_columns!("r.room_id", "r.anchor_id", "$2"),
        " FROM live_rooms r WHERE r.room_id = $1"
    ))
    .bind(room_id)
    .bind(account_id)
    .fetch_optional(pool)
    .await
}

/// An anchor's subscription price and period (seconds), if set.
pub async fn subscription_price(
    pool: &PgPool,
    anchor_id: Uuid,
) -> sqlx::Result<Option<(i64, i64)>> {
    sqlx::query_as(
        "SELECT subscription_price, subscription_secs FROM live_anchors WHERE anchor_id = $1",
    )
    .bind(anchor_id)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChatRow {
    pub is_user: bool,
    pub sender_name: String,
    pub message: String,
    pub sent_at: DateTime<Utc>,
}

/// The newest `limit` lines of the anchor's chat, oldest first.
pub async fn anchor_chat(pool: &PgPool, room_id: &str, limit: i64) -> sqlx::Result<Vec<ChatRow>> {
    let mut rows: Vec<ChatRow> = sqlx::query_as(
        "SELECT is_user, sender_name, message, sent_at FROM live_chat
          WHERE room_id = $1 ORDER BY position DESC LIMIT $2",
    )
    .bind(room_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.reverse();
    Ok(rows)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ViewerMessageRow {
    pub uid: String,
    pub username: String,
    pub message: String,
    pub sent_at: DateTime<Utc>,
}

/// The newest `limit` viewer messages, oldest first.
pub async fn viewer_messages(
    pool: &PgPool,
    room_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<ViewerMessageRow>> {
    let mut rows: Vec<ViewerMessageRow> = sqlx::query_as(
        "SELECT uid, username, message, sent_at FROM live_viewer_messages
          WHERE room_id = $1 ORDER BY position DESC LIMIT $2",
    )
    .bind(room_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.reverse();
    Ok(rows)
}

/// The distinct tags of all rooms, in byte order.
pub async fn all_tags(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT t COLLATE \"C\" AS t FROM live_rooms, unnest(tags) AS t ORDER BY 1",
    )
    .fetch_all(pool)
    .await
}

/// The room whose picture is at `image_path`: its picture's hash.
pub async fn image(pool: &PgPool, image_path: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT image_sha256 FROM live_rooms WHERE image_path = $1 AND image_path <> ''",
    )
    .bind(image_path)
    .fetch_optional(pool)
    .await
    .map(Option::flatten)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn heat_counts_in_full_within_its_hour_and_halves_every_six_hours() {
        let (h, at) = heat_add(0.0, None, t(10));
        assert_eq!((h, at), (1.0, hour_of(t(10))));
        let (h, at) = heat_add(h, Some(at), t(20));
        assert_eq!(h, 2.0);
        assert_eq!(heat_at(h, Some(at), t(30)), 2.0);
        let six_hours = 6 * 3600;
        assert!((heat_at(h, Some(at), t(six_hours)) - 1.0).abs() < 1e-12);
        // an event older than the heat's hour adds its decayed weight
        let later = hour_of(t(six_hours));
        let (late, at2) = heat_add(1.0, Some(later), t(0));
        assert_eq!(at2, later);
        assert!((late - 1.5).abs() < 1e-12);
    }

    #[test]
    fn the_seeds_example_scores_three_and_one_and_a_half() {
        let row = |ai: f64| LiveRow {
            room_id: "r".into(),
            anchor_id: Uuid::nil(),
            anchor_name: String::new(),
            character_name: String::new(),
            character_date: String::new(),
            image_name: String::new(),
            image_path: String::new(),
            tags: vec![],
            language: "en".into(),
            title: String::new(),
            describe: String::new(),
            room_type: 0,
            coin_num: 0,
            live: true,
            ai_reply_count: ai as i64,
            last_ai_reply_at: Some(t(0)),
            ai_heat: ai,
            ai_heat_at: Some(t(0)),
            chat_heat: 0.0,
            chat_heat_at: None,
            viewers: 0,
        };
        let at = |secs| {
            let mut r = row(0.0);
            r.ai_heat_at = Some(hour_of(t(secs)));
            r
        };
        let two = LiveRow {
            ai_heat: 2.0,
            ..at(0)
        };
        let one = LiveRow {
            ai_heat: 1.0,
            ..at(0)
        };
        assert_eq!(rounded(score(&two, t(5))), 3.0);
        assert_eq!(rounded(score(&one, t(5))), 1.5);
        let ranked = rank(vec![one.clone(), two.clone()], t(5));
        assert_eq!(ranked[0].0.ai_heat, 2.0);
    }
}

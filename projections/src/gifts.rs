//! Projection "gifts" (seed 001): monitored rooms, live sessions, per-day
//! money and live time, super chats. Days are local days in the configured
//! time zone (changing the zone needs `tidelog projections rebuild gifts`).
//! A gift, guard or super chat belongs to the session whose time span holds
//! its time, so out-of-order deliveries land where they happened.

use aggregates::monitored_room::MonitoredRoomEvent;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use sqlx::{PgConnection, PgPool};

use crate::{ProjectionError, Projector, StoredEvent};

pub struct GiftsProjector {
    pub tz: Tz,
}

/// Splits `[start, end)` into seconds per local day.
pub fn split_by_day(start: DateTime<Utc>, end: DateTime<Utc>, tz: Tz) -> Vec<(NaiveDate, i64)> {
    let mut out = Vec::new();
    let mut cur = start;
    while cur < end {
        let day = cur.with_timezone(&tz).date_naive();
        let next_midnight = day
            .succ_opt()
            .and_then(|d| tz.from_local_datetime(&d.and_hms_opt(0, 0, 0)?).earliest())
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or(end);
        let stop = next_midnight.min(end);
        out.push((day, (stop - cur).num_seconds()));
        cur = stop;
    }
    out
}

pub fn local_day(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// The session of room `$1` live at instant `$2`: the latest one started by
/// then, if it had not ended (one index probe, however many sessions the
/// room has had — a plain range condition scanned them all).
const SESSION_AT: &str = "(room_id, session_no) = (
        SELECT room_id, session_no FROM bili_sessions
         WHERE room_id = $1 AND started_at <= $2 ORDER BY started_at DESC LIMIT 1)
    AND (ended_at IS NULL OR ended_at > $2)";

#[derive(Default)]
struct Money {
    gift_gold: i64,
    guard_gold: i64,
    sc_yuan: i64,
    blind_box_count: i64,
    blind_profit_gold: i64,
}

async fn add_money(
    conn: &mut PgConnection,
    room_id: i64,
    at: DateTime<Utc>,
    tz: Tz,
    m: &Money,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO bili_days (room_id, day, gift_gold, guard_gold, sc_yuan, blind_box_count, blind_profit_gold)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (room_id, day) DO UPDATE SET
            gift_gold = bili_days.gift_gold + EXCLUDED.gift_gold,
            guard_gold = bili_days.guard_gold + EXCLUDED.guard_gold,
            sc_yuan = bili_days.sc_yuan + EXCLUDED.sc_yuan,
            blind_box_count = bili_days.blind_box_count + EXCLUDED.blind_box_count,
            blind_profit_gold = bili_days.blind_profit_gold + EXCLUDED.blind_profit_gold",
    )
    .bind(room_id)
    .bind(local_day(at, tz))
    .bind(m.gift_gold)
    .bind(m.guard_gold)
    .bind(m.sc_yuan)
    .bind(m.blind_box_count)
    .bind(m.blind_profit_gold)
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "UPDATE bili_sessions SET
            gift_gold = gift_gold + $3, guard_gold = guard_gold + $4, sc_yuan = sc_yuan + $5,
            blind_box_count = blind_box_count + $6, blind_profit_gold = blind_profit_gold + $7
          WHERE {SESSION_AT}"
    ))
    .bind(room_id)
    .bind(at)
    .bind(m.gift_gold)
    .bind(m.guard_gold)
    .bind(m.sc_yuan)
    .bind(m.blind_box_count)
    .bind(m.blind_profit_gold)
    .execute(conn)
    .await?;
    Ok(())
}

/// Money and danmaku of consecutive events, applied in two statements: per
/// local day, and per session found by time (as `add_money` and the
/// danmaku update do one event at a time). Super chats first go into
/// their table in one statement; those it did not already hold count as
/// money (as one at a time). Flushed before any event that changes
/// sessions or rooms, so attribution is what it would be event by event.
#[derive(Default)]
struct PendingMoney {
    rooms: Vec<i64>,
    ats: Vec<DateTime<Utc>>,
    money: Vec<[i64; 6]>,
    days: std::collections::BTreeMap<(i64, NaiveDate), [i64; 5]>,
    super_chats: Vec<(i64, aggregates::monitored_room::SuperChatObservation)>,
}

impl PendingMoney {
    /// `m` with `with_day`: counts for the day too (danmaku does not).
    fn push(
        &mut self,
        room: i64,
        at: DateTime<Utc>,
        m: &Money,
        danmaku: i64,
        with_day: bool,
        tz: Tz,
    ) {
        let v = [
            m.gift_gold,
            m.guard_gold,
            m.sc_yuan,
            m.blind_box_count,
            m.blind_profit_gold,
            danmaku,
        ];
        self.rooms.push(room);
        self.ats.push(at);
        self.money.push(v);
        if with_day {
            let d = self.days.entry((room, local_day(at, tz))).or_default();
            for (acc, x) in d.iter_mut().zip(v) {
                *acc += x;
            }
        }
    }

    async fn flush(&mut self, conn: &mut PgConnection, tz: Tz) -> Result<(), ProjectionError> {
        if !self.super_chats.is_empty() {
            let scs = std::mem::take(&mut self.super_chats);
            // a super chat repeated within the batch is skipped like one
            // already stored: ON CONFLICT DO NOTHING sees the statement's
            // own rows
            let recorded: Vec<(i64, DateTime<Utc>, i64)> = sqlx::query_as(
                "INSERT INTO bili_super_chats (room_id, sc_id, sent_at, uid, uname, price, message)
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::timestamptz[], $4::bigint[],
                                      $5::text[], $6::bigint[], $7::text[])
                 ON CONFLICT DO NOTHING
                 RETURNING room_id, sent_at, price",
            )
            .bind(scs.iter().map(|(r, _)| *r).collect::<Vec<_>>())
            .bind(scs.iter().map(|(_, s)| s.id).collect::<Vec<_>>())
            .bind(scs.iter().map(|(_, s)| s.at).collect::<Vec<_>>())
            .bind(scs.iter().map(|(_, s)| s.uid).collect::<Vec<_>>())
            .bind(
                scs.iter()
                    .map(|(_, s)| s.uname.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(scs.iter().map(|(_, s)| s.price).collect::<Vec<_>>())
            .bind(
                scs.iter()
                    .map(|(_, s)| s.message.as_str())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *conn)
            .await?;
            for (room, at, price) in recorded {
                let m = Money {
                    sc_yuan: price,
                    ..Money::default()
                };
                self.push(room, at, &m, 0, true, tz);
            }
        }
        if self.rooms.is_empty() {
            return Ok(());
        }
        let col = |i: usize| self.money.iter().map(|m| m[i]).collect::<Vec<i64>>();
        sqlx::query(
            "UPDATE bili_sessions s SET
                gift_gold = s.gift_gold + c.g, guard_gold = s.guard_gold + c.gd, sc_yuan = s.sc_yuan + c.sc,
                blind_box_count = s.blind_box_count + c.bc, blind_profit_gold = s.blind_profit_gold + c.bp,
                danmaku_count = s.danmaku_count + c.dm
               FROM (WITH u AS (
                        SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::bigint[], $4::bigint[],
                                             $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
                                 AS u(room_id, at, g, gd, sc, bc, bp, dm)),
                     -- per room, the sessions that can hold its events: the
                     -- latest started by the earliest, and any started since
                     x AS (
                        SELECT b.*, lead(b.started_at) OVER (PARTITION BY b.room_id ORDER BY b.started_at) AS next_start
                          FROM (SELECT room_id, min(at) AS lo, max(at) AS hi FROM u GROUP BY room_id) r
                          CROSS JOIN LATERAL (
                               (SELECT room_id, session_no, started_at, ended_at FROM bili_sessions
                                 WHERE room_id = r.room_id AND started_at <= r.lo ORDER BY started_at DESC LIMIT 1)
                               UNION ALL
                               SELECT room_id, session_no, started_at, ended_at FROM bili_sessions
                                WHERE room_id = r.room_id AND started_at > r.lo AND started_at <= r.hi) b)
                     SELECT x.room_id, x.session_no, sum(u.g) AS g, sum(u.gd) AS gd, sum(u.sc) AS sc,
                            sum(u.bc) AS bc, sum(u.bp) AS bp, sum(u.dm) AS dm
                       FROM u JOIN x ON x.room_id = u.room_id AND x.started_at <= u.at
                                    AND (x.next_start IS NULL OR u.at < x.next_start)
                      WHERE x.ended_at IS NULL OR x.ended_at > u.at
                      GROUP BY x.room_id, x.session_no) c
              WHERE s.room_id = c.room_id AND s.session_no = c.session_no",
        )
        .bind(&self.rooms)
        .bind(&self.ats)
        .bind(col(0))
        .bind(col(1))
        .bind(col(2))
        .bind(col(3))
        .bind(col(4))
        .bind(col(5))
        .execute(&mut *conn)
        .await?;
        if !self.days.is_empty() {
            let dcol = |i: usize| self.days.values().map(|d| d[i]).collect::<Vec<i64>>();
            sqlx::query(
                "INSERT INTO bili_days (room_id, day, gift_gold, guard_gold, sc_yuan, blind_box_count, blind_profit_gold)
                 SELECT * FROM UNNEST($1::bigint[], $2::date[], $3::bigint[], $4::bigint[], $5::bigint[],
                                      $6::bigint[], $7::bigint[])
                 ON CONFLICT (room_id, day) DO UPDATE SET
                    gift_gold = bili_days.gift_gold + EXCLUDED.gift_gold,
                    guard_gold = bili_days.guard_gold + EXCLUDED.guard_gold,
                    sc_yuan = bili_days.sc_yuan + EXCLUDED.sc_yuan,
                    blind_box_count = bili_days.blind_box_count + EXCLUDED.blind_box_count,
                    blind_profit_gold = bili_days.blind_profit_gold + EXCLUDED.blind_profit_gold",
            )
            .bind(self.days.keys().map(|k| k.0).collect::<Vec<_>>())
            .bind(self.days.keys().map(|k| k.1).collect::<Vec<_>>())
            .bind(dcol(0))
            .bind(dcol(1))
            .bind(dcol(2))
            .bind(dcol(3))
            .bind(dcol(4))
            .execute(&mut *conn)
            .await?;
        }
        *self = Self::default();
        Ok(())
    }
}

fn gift_money(g: &aggregates::monitored_room::GiftObservation) -> Money {
    Money {
        gift_gold: g.income_gold(),
        blind_box_count: if g.blind_box.is_some() && g.gold {
            g.num
        } else {
            0
        },
        blind_profit_gold: g.blind_box_profit_gold(),
        ..Money::default()
    }
}

#[async_trait]
impl Projector for GiftsProjector {
    fn name(&self) -> &'static str {
        "gifts"
    }
    fn tables(&self) -> &'static [&'static str] {
        &[
            "bili_rooms",
            "bili_sessions",
            "bili_days",
            "bili_super_chats",
        ]
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &["MonitoredRoom"]
    }

    fn insert_only_tables(&self) -> &'static [&'static str] {
        &["bili_super_chats"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let room_id: i64 = event
            .aggregate_id
            .parse()
            .map_err(|e| ProjectionError::Payload(format!("room id: {e}")))?;
        let tz = self.tz;
        match event.decode::<MonitoredRoomEvent>()? {
            MonitoredRoomEvent::RoomMonitored {
                anchor_name, at, ..
            } => {
                sqlx::query(
                    "INSERT INTO bili_rooms (room_id, anchor_name, monitored, added_at) VALUES ($1, $2, true, $3)
                     ON CONFLICT (room_id) DO UPDATE SET anchor_name = EXCLUDED.anchor_name, monitored = true",
                )
                .bind(room_id)
                .bind(&anchor_name)
                .bind(at)
                .execute(conn)
                .await?;
            }
            MonitoredRoomEvent::RoomUnmonitored { .. } => {
                sqlx::query("UPDATE bili_rooms SET monitored = false WHERE room_id = $1")
                    .bind(room_id)
                    .execute(conn)
                    .await?;
            }
            MonitoredRoomEvent::LiveStarted { session_no, at } => {
                sqlx::query(
                    "INSERT INTO bili_sessions (room_id, session_no, started_at, title,
                                                start_guard_1, start_guard_2, start_guard_3, start_fans_count)
                     SELECT room_id, $2, $3, title, guard_1, guard_2, guard_3, fans_count FROM bili_rooms WHERE room_id = $1",
                )
                .bind(room_id)
                .bind(session_no)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "UPDATE bili_rooms SET live = true, live_started_at = $2, current_concurrency = NULL WHERE room_id = $1",
                )
                .bind(room_id)
                .bind(at)
                .execute(conn)
                .await?;
            }
            MonitoredRoomEvent::LiveEnded { session_no, at, .. } => {
                let started: Option<DateTime<Utc>> = sqlx::query_scalar(
                    "UPDATE bili_sessions s SET ended_at = $3, current_concurrency = NULL,
                            end_guard_1 = r.guard_1, end_guard_2 = r.guard_2, end_guard_3 = r.guard_3,
                            end_fans_count = r.fans_count
                       FROM bili_rooms r
                      WHERE s.room_id = $1 AND s.session_no = $2 AND r.room_id = s.room_id
                      RETURNING s.started_at",
                )
                .bind(room_id)
                .bind(session_no)
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?;
                sqlx::query("UPDATE bili_rooms SET live = false, current_concurrency = NULL WHERE room_id = $1")
                    .bind(room_id)
                    .execute(&mut *conn)
                    .await?;
                if let Some(started) = started {
                    for (day, secs) in split_by_day(started, at, tz) {
                        sqlx::query(
                            "INSERT INTO bili_days (room_id, day, live_seconds) VALUES ($1, $2, $3)
                             ON CONFLICT (room_id, day) DO UPDATE SET live_seconds = bili_days.live_seconds + EXCLUDED.live_seconds",
                        )
                        .bind(room_id)
                        .bind(day)
                        .bind(secs)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
            }
            MonitoredRoomEvent::GiftReceived(g) => {
                let m = gift_money(&g);
                if m.gift_gold != 0 || m.blind_box_count != 0 {
                    add_money(conn, room_id, g.at, tz, &m).await?;
                }
            }
            MonitoredRoomEvent::GuardBought(g) => {
                let m = Money {
                    guard_gold: g.price * g.num,
                    ..Money::default()
                };
                add_money(conn, room_id, g.at, tz, &m).await?;
            }
            MonitoredRoomEvent::SuperChatReceived(s) => {
                let inserted = sqlx::query(
                    "INSERT INTO bili_super_chats (room_id, sc_id, sent_at, uid, uname, price, message)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                )
                .bind(room_id)
                .bind(s.id)
                .bind(s.at)
                .bind(s.uid)
                .bind(&s.uname)
                .bind(s.price)
                .bind(&s.message)
                .execute(&mut *conn)
                .await?;
                if inserted.rows_affected() == 1 {
                    let m = Money {
                        sc_yuan: s.price,
                        ..Money::default()
                    };
                    add_money(conn, room_id, s.at, tz, &m).await?;
                }
            }
            MonitoredRoomEvent::DanmakuReceived { at, .. } => {
                sqlx::query(&format!(
                    "UPDATE bili_sessions SET danmaku_count = danmaku_count + 1 WHERE {SESSION_AT}"
                ))
                .bind(room_id)
                .bind(at)
                .execute(conn)
                .await?;
            }
            MonitoredRoomEvent::ConcurrencySampled { online, at, .. } => {
                let open: Option<bool> = sqlx::query_scalar(&format!(
                    "UPDATE bili_sessions SET concurrency_sum = concurrency_sum + $3,
                            concurrency_samples = concurrency_samples + 1,
                            concurrency_max = GREATEST(concurrency_max, $3),
                            current_concurrency = CASE WHEN ended_at IS NULL THEN $3 ELSE current_concurrency END
                      WHERE {SESSION_AT}
                      RETURNING ended_at IS NULL"
                ))
                .bind(room_id)
                .bind(at)
                .bind(online)
                .fetch_optional(&mut *conn)
                .await?;
                if open == Some(true) {
                    sqlx::query("UPDATE bili_rooms SET current_concurrency = $2 WHERE room_id = $1 AND live")
                        .bind(room_id)
                        .bind(online)
                        .execute(conn)
                        .await?;
                }
            }
            MonitoredRoomEvent::RoomStatsObserved {
                attention,
                fans_count,
                ..
            } => {
                sqlx::query(
                    "UPDATE bili_rooms SET attention = COALESCE($2, attention), fans_count = COALESCE($3, fans_count)
                      WHERE room_id = $1",
                )
                .bind(room_id)
                .bind(attention)
                .bind(fans_count)
                .execute(conn)
                .await?;
            }
            MonitoredRoomEvent::GuardCountsObserved {
                guard_1,
                guard_2,
                guard_3,
                ..
            } => {
                sqlx::query("UPDATE bili_rooms SET guard_1 = $2, guard_2 = $3, guard_3 = $4 WHERE room_id = $1")
                    .bind(room_id)
                    .bind(guard_1)
                    .bind(guard_2)
                    .bind(guard_3)
                    .execute(conn)
                    .await?;
            }
            MonitoredRoomEvent::TitleChanged { title, .. } => {
                sqlx::query("UPDATE bili_rooms SET title = $2 WHERE room_id = $1")
                    .bind(room_id)
                    .bind(&title)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(
                    "UPDATE bili_sessions SET title = $2 WHERE room_id = $1 AND ended_at IS NULL",
                )
                .bind(room_id)
                .bind(&title)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }

    fn folds_batches(&self) -> bool {
        true
    }

    /// Gifts, guards and danmaku fold into two statements per run of them;
    /// everything else applies one by one, after the run before it.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut pending = PendingMoney::default();
        for event in events {
            let foldable = matches!(
                event.event_type.as_str(),
                "GiftReceived" | "GuardBought" | "DanmakuReceived" | "SuperChatReceived"
            );
            if !foldable {
                pending.flush(conn, self.tz).await?;
                self.apply(conn, event).await?;
                continue;
            }
            let room_id: i64 = event
                .aggregate_id
                .parse()
                .map_err(|e| ProjectionError::Payload(format!("room id: {e}")))?;
            match event.decode::<MonitoredRoomEvent>()? {
                MonitoredRoomEvent::GiftReceived(g) => {
                    let m = gift_money(&g);
                    if m.gift_gold != 0 || m.blind_box_count != 0 {
                        pending.push(room_id, g.at, &m, 0, true, self.tz);
                    }
                }
                MonitoredRoomEvent::GuardBought(g) => {
                    let m = Money {
                        guard_gold: g.price * g.num,
                        ..Money::default()
                    };
                    pending.push(room_id, g.at, &m, 0, true, self.tz);
                }
                MonitoredRoomEvent::DanmakuReceived { at, .. } => {
                    pending.push(room_id, at, &Money::default(), 1, false, self.tz);
                }
                MonitoredRoomEvent::SuperChatReceived(s) => pending.super_chats.push((room_id, s)),
                _ => {
                    pending.flush(conn, self.tz).await?;
                    self.apply(conn, event).await?;
                }
            }
        }
        pending.flush(conn, self.tz).await
    }
}

// ------------------------------------------------------------------ reads

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoomRow {
    pub room_id: i64,
    pub anchor_name: String,
    pub monitored: bool,
    pub attention: Option<i64>,
    pub fans_count: Option<i64>,
    pub guard_1: Option<i64>,
    pub guard_2: Option<i64>,
    pub guard_3: Option<i64>,
    pub title: String,
    pub live: bool,
    pub live_started_at: Option<DateTime<Utc>>,
    pub current_concurrency: Option<i64>,
}

const ROOM_COLUMNS: &str =
    "room_id, anchor_name, monitored, attention, fans_count, guard_1, guard_2, guard_3,
                            title, live, live_started_at, current_concurrency";

pub async fn monitored_rooms(pool: &PgPool) -> sqlx::Result<Vec<RoomRow>> {
    sqlx::query_as(&format!(
        "SELECT {ROOM_COLUMNS} FROM bili_rooms WHERE monitored ORDER BY room_id"
    ))
    .fetch_all(pool)
    .await
}

pub async fn room(pool: &PgPool, room_id: i64) -> sqlx::Result<Option<RoomRow>> {
    sqlx::query_as(&format!(
        "SELECT {ROOM_COLUMNS} FROM bili_rooms WHERE room_id = $1"
    ))
    .bind(room_id)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct DayRow {
    pub room_id: i64,
    pub day: NaiveDate,
    pub gift_gold: i64,
    pub guard_gold: i64,
    pub sc_yuan: i64,
    pub blind_box_count: i64,
    pub blind_profit_gold: i64,
    pub live_seconds: i64,
}

/// Day rows of every room in `[from, to)`.
pub async fn days(pool: &PgPool, from: NaiveDate, to: NaiveDate) -> sqlx::Result<Vec<DayRow>> {
    sqlx::query_as(
        "SELECT room_id, day, gift_gold, guard_gold, sc_yuan, blind_box_count, blind_profit_gold, live_seconds
           FROM bili_days WHERE day >= $1 AND day < $2 ORDER BY room_id, day",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub room_id: i64,
    pub session_no: i64,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub title: String,
    pub gift_gold: i64,
    pub guard_gold: i64,
    pub sc_yuan: i64,
    pub blind_box_count: i64,
    pub blind_profit_gold: i64,
    pub danmaku_count: i64,
    pub start_guard_1: Option<i64>,
    pub start_guard_2: Option<i64>,
    pub start_guard_3: Option<i64>,
    pub start_fans_count: Option<i64>,
    pub end_guard_1: Option<i64>,
    pub end_guard_2: Option<i64>,
    pub end_guard_3: Option<i64>,
    pub end_fans_count: Option<i64>,
    pub concurrency_sum: i64,
    pub concurrency_samples: i64,
    pub concurrency_max: Option<i64>,
    pub current_concurrency: Option<i64>,
}

/// Sessions overlapping `[from, to)` (of one room, or of all), oldest first.
pub async fn sessions(
    pool: &PgPool,
    room_id: Option<i64>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<SessionRow>> {
    sqlx::query_as(
        "SELECT * FROM bili_sessions
          WHERE ($1::bigint IS NULL OR room_id = $1) AND started_at < $3 AND (ended_at IS NULL OR ended_at > $2)
          ORDER BY room_id, started_at",
    )
    .bind(room_id)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SuperChatRow {
    pub sc_id: i64,
    pub sent_at: DateTime<Utc>,
    pub uid: i64,
    pub uname: String,
    pub price: i64,
    pub message: String,
}

pub async fn super_chats(
    pool: &PgPool,
    room_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<SuperChatRow>> {
    sqlx::query_as(
        "SELECT sc_id, sent_at, uid, uname, price, message FROM bili_super_chats
          WHERE room_id = $1 AND sent_at >= $2 AND sent_at < $3 ORDER BY sent_at, sc_id",
    )
    .bind(room_id)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}

/// The latest session start per room within `[from, to)`.
pub async fn latest_starts(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<(i64, DateTime<Utc>)>> {
    sqlx::query_as(
        "SELECT room_id, max(started_at) FROM bili_sessions
          WHERE started_at >= $1 AND started_at < $2 GROUP BY room_id",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_over_midnight_splits_between_days() {
        let tz: Tz = chrono_tz::Asia::Shanghai;
        let start = tz
            .with_ymd_and_hms(2026, 10, 31, 23, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        let end = tz
            .with_ymd_and_hms(2026, 11, 1, 1, 30, 0)
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            split_by_day(start, end, tz),
            vec![
                (NaiveDate::from_ymd_opt(2026, 10, 31).unwrap(), 3600),
                (NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(), 5400)
            ]
        );
        assert!(split_by_day(end, start, tz).is_empty());
    }
}

//! Monthly summaries (`/gift`, `/gift/by_month`, and the analysts' as-of
//! replay): money and blind boxes per local day, live time per local day
//! (closed sessions from the projection, the open one up to `now`).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use projections::gifts::{self, DayRow};
use serde::Serialize;
use sqlx::PgPool;

use super::month::Month;
use crate::timefmt::local_seconds;

pub const NO_TIME: &str = "0000-00-00 00:00:00";

/// Gold coins (1000 = 1 yuan) as the JSON number the seed shows.
pub fn yuan_of_gold(gold: i64) -> f64 {
    gold as f64 / 1000.0
}

/// Blind-box profit in yuan at 0.1 precision (half away from zero).
pub fn profit_yuan(gold: i64) -> f64 {
    (gold as f64 / 100.0).round() / 10.0
}

/// `HH:MM:SS`; hours may exceed 24.
pub fn hms(seconds: i64) -> String {
    let s = seconds.max(0);
    format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoomSummary {
    pub room_id: i64,
    pub anchor_name: String,
    pub attention: i64,
    pub status: i32,
    pub gift: f64,
    pub guard: f64,
    pub super_chat: f64,
    pub blind_box_count: i64,
    pub blind_box_profit: f64,
    pub live_duration: String,
    pub effective_days: i64,
    pub live_time: String,
    pub title: String,
    pub month: String,
    pub guard_1: Option<i64>,
    pub guard_2: Option<i64>,
    pub guard_3: Option<i64>,
    pub fans_count: Option<i64>,
    /// Present only on `/gift` (`Some(None)` serialises as `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub current_concurrency: Option<Option<i64>>,
}

pub struct SummaryRequest {
    pub month: Month,
    pub now: DateTime<Utc>,
    pub tz: Tz,
    pub effective_day_secs: i64,
    /// `/gift` shows `current_concurrency`; `/gift/by_month` does not.
    pub with_concurrency: bool,
}

pub async fn month_summary(pool: &PgPool, req: &SummaryRequest) -> sqlx::Result<Vec<RoomSummary>> {
    let tz = req.tz;
    let current = Month::of(req.now, tz) == req.month;
    let (from, to) = req.month.span(tz);
    let rooms = gifts::monitored_rooms(pool).await?;
    let days = gifts::days(pool, req.month.first_day(), req.month.next().first_day()).await?;
    let latest: HashMap<i64, DateTime<Utc>> = gifts::latest_starts(pool, from, to)
        .await?
        .into_iter()
        .collect();

    let mut per_room: HashMap<i64, Vec<DayRow>> = HashMap::new();
    for d in days {
        per_room.entry(d.room_id).or_default().push(d);
    }
    let mut out = Vec::with_capacity(rooms.len());
    for r in rooms {
        let rows = per_room.remove(&r.room_id).unwrap_or_default();
        let mut live: BTreeMap<NaiveDate, i64> = BTreeMap::new();
        let mut total = DayRow::default();
        for d in &rows {
            *live.entry(d.day).or_default() += d.live_seconds;
            total.gift_gold += d.gift_gold;
            total.guard_gold += d.guard_gold;
            total.sc_yuan += d.sc_yuan;
            total.blind_box_count += d.blind_box_count;
            total.blind_profit_gold += d.blind_profit_gold;
        }
        if let (true, Some(started)) = (r.live, r.live_started_at) {
            let (a, b) = (started.max(from), req.now.min(to));
            for (day, secs) in gifts::split_by_day(a, b, tz) {
                *live.entry(day).or_default() += secs;
            }
        }
        let seconds: i64 = live.values().sum();
        let effective = live
            .values()
            .filter(|s| **s >= req.effective_day_secs)
            .count() as i64;
        let live_time = match (current, r.live, r.live_started_at, latest.get(&r.room_id)) {
            (true, true, Some(t), _) => local_seconds(t, tz),
            (true, _, _, Some(t)) => local_seconds(*t, tz),
            _ => NO_TIME.to_owned(),
        };
        let now_or_none = |v: Option<i64>| if current { Some(v.unwrap_or(0)) } else { None };
        out.push(RoomSummary {
            room_id: r.room_id,
            anchor_name: r.anchor_name,
            attention: r.attention.unwrap_or(0),
            status: i32::from(current && r.live),
            gift: yuan_of_gold(total.gift_gold),
            guard: yuan_of_gold(total.guard_gold),
            super_chat: total.sc_yuan as f64,
            blind_box_count: total.blind_box_count,
            blind_box_profit: profit_yuan(total.blind_profit_gold),
            live_duration: hms(seconds),
            effective_days: effective,
            live_time,
            title: if current { r.title } else { String::new() },
            month: req.month.label(),
            guard_1: now_or_none(r.guard_1),
            guard_2: now_or_none(r.guard_2),
            guard_3: now_or_none(r.guard_3),
            fans_count: now_or_none(r.fans_count),
            current_concurrency: req.with_concurrency.then_some(if current && r.live {
                r.current_concurrency
            } else {
                None
            }),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_durations_format_as_the_seed_shows() {
        assert_eq!(yuan_of_gold(12_345), 12.345);
        assert_eq!(profit_yuan(-3_000), -3.0);
        assert_eq!(profit_yuan(1_150), 1.2);
        assert_eq!(profit_yuan(-1_150), -1.2);
        assert_eq!(profit_yuan(1_149), 1.1);
        assert_eq!(hms(90_061), "25:01:01");
        assert_eq!(hms(0), "00:00:00");
    }
}

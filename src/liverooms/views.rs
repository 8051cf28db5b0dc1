//! The live rooms as seed 000 lists them: a room's item (`get_all_lives`)
//! and a ranked item (`get_ranked_lives`, and `tidelog live ranking` as of
//! an instant), made from the read model's rows.

use projections::live::{self as read, LiveRow};
use serde::Serialize;

use super::uid_of;
use crate::timefmt::sillytavern_send_date;

#[derive(Serialize)]
pub struct RoomInfo<'a> {
    pub title: &'a str,
    pub coin_num: i64,
    pub describe: &'a str,
    pub room_type: i64,
}

#[derive(Serialize)]
pub struct LiveItem<'a> {
    pub room_id: &'a str,
    pub room_name: String,
    pub uid: String,
    pub username: &'a str,
    pub live_num: i64,
    pub character_name: &'a str,
    pub character_date: &'a str,
    pub image_name: &'a str,
    pub image_path: &'a str,
    pub tags: &'a [String],
    pub room_info: RoomInfo<'a>,
}

/// `<uid>_<character_name>_<character_date>`, as the seed shows.
pub fn room_name(uid: &str, character_name: &str, character_date: &str) -> String {
    format!("{uid}_{character_name}_{character_date}")
}

impl<'a> LiveItem<'a> {
    pub fn of(r: &'a LiveRow) -> Self {
        let uid = uid_of(r.anchor_id);
        Self {
            room_id: &r.room_id,
            room_name: room_name(&uid, &r.character_name, &r.character_date),
            uid,
            username: &r.anchor_name,
            live_num: r.viewers,
            character_name: &r.character_name,
            character_date: &r.character_date,
            image_name: &r.image_name,
            image_path: &r.image_path,
            tags: &r.tags,
            room_info: RoomInfo {
                title: &r.title,
                coin_num: r.coin_num,
                describe: &r.describe,
                room_type: r.room_type,
            },
        }
    }
}

#[derive(Serialize)]
pub struct RankedItem<'a> {
    #[serde(flatten)]
    pub room: LiveItem<'a>,
    pub language: &'a str,
    pub last_ai_reply: String,
    pub ai_reply_count: i64,
    pub score: f64,
}

/// Ranked rows' items, in their order (rows from `projections::live::rank`,
/// whose formula the README gives).
pub fn ranked(rows: &[(LiveRow, f64)], tz: chrono_tz::Tz) -> Vec<RankedItem<'_>> {
    rows.iter()
        .map(|(r, score)| RankedItem {
            room: LiveItem::of(r),
            language: &r.language,
            last_ai_reply: r
                .last_ai_reply_at
                .map(|t| sillytavern_send_date(t, tz))
                .unwrap_or_default(),
            ai_reply_count: r.ai_reply_count,
            score: read::rounded(*score),
        })
        .collect()
}

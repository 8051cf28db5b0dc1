//! The document's shapes of the gift monitor's bodies. Its handlers read
//! loosely (numbers as strings, the key in a header or the body), so these
//! describe what a client sends and gets; the fuzzing in `scripts/fuzz.sh`
//! checks the answers against them.
#![allow(dead_code)]

use utoipa::{IntoParams, ToSchema};

/// `/add/room` and `/delete/room`.
#[derive(ToSchema)]
pub struct RoomRequest {
    /// A positive integer (a numeric string is read too).
    #[schema(example = 1234567)]
    room_id: i64,
    /// The anchor's name: a string, or `{"<room_id>": "name"}`.
    #[schema(value_type = Object, example = json!({"1234567": "主播"}))]
    room_anchors: serde_json::Value,
    /// The key, when no `x-api-key` header is sent.
    api_key: Option<String>,
}

#[derive(ToSchema)]
pub struct RoomAnswer {
    #[schema(example = true)]
    ok: bool,
    room_id: i64,
    #[schema(example = "添加成功")]
    message: String,
}

/// One batch of Bilibili live messages (`DANMU_MSG`, `SEND_GIFT`,
/// `GUARD_BUY`, `SUPER_CHAT_MESSAGE`, `LIVE`, `PREPARING`, …) as the
/// collector received them; at most 1,000.
#[derive(ToSchema)]
#[schema(value_type = Vec<Object>, example = json!([{"cmd": "DANMU_MSG", "info": [[0, 1, 25, 16777215, 1700000000000i64, 0, 0, "", 0, 0, 0, "", 0, "{}", "{}", {"extra": "{}"}], "hello", [1, "viewer"]]}]))]
pub struct IngestBatch(Vec<serde_json::Value>);

#[derive(ToSchema)]
pub struct IngestAnswer {
    ok: bool,
    room_id: i64,
    /// Messages in the batch.
    received: i64,
    /// Observations recorded by this batch (a resent one is not recorded twice).
    recorded: i64,
    /// Observations already recorded, dropped.
    duplicates: i64,
    /// Messages of kinds the monitor does not count.
    ignored: i64,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MonthQuery {
    /// `YYYYMM` or `YYYY-MM`; absent: the current month.
    #[param(example = "2026-11")]
    month: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoomMonthQuery {
    /// A monitored room.
    room_id: i64,
    /// `YYYYMM` or `YYYY-MM`; absent: the current month.
    month: Option<String>,
}

#[derive(ToSchema)]
pub struct Sessions {
    room_id: i64,
    month: String,
    #[schema(value_type = Vec<super::handlers::SessionDto>)]
    sessions: Vec<()>,
}

#[derive(ToSchema)]
pub struct SuperChat {
    #[schema(example = "2026-11-01 20:15:00")]
    send_time: String,
    uname: String,
    uid: i64,
    price: i64,
    message: String,
}

#[derive(ToSchema)]
pub struct SuperChats {
    room_id: i64,
    month: String,
    list: Vec<SuperChat>,
}

/// Failures: `{"error": "..."}`.
#[derive(ToSchema)]
pub struct Failure {
    #[schema(example = "room_id 必须为正整数")]
    error: String,
}

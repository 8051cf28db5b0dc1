//! Thin handlers: contract request -> MonitoredRoom command or read query ->
//! contract response.

use std::collections::HashMap;

use aggregates::values::{AnchorName, RoomId};
use aggregates::MonitoredRoomCommand;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use projections::gifts;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::cache::AnswerBuilder;
use super::error::{from_command, GiftError};
use super::schema::*;
use super::GiftState;
use super::{READ_MODELS, SURFACE};
use crate::gifts::ingest::ingest as record_batch;
use crate::gifts::ingest::IngestError;
use crate::gifts::summary::RoomSummary;
use crate::gifts::summary::{self, hms, month_summary, profit_yuan, yuan_of_gold, SummaryRequest};
use crate::gifts::Month;
use crate::http::body;
use crate::http::context::RequestContext;
use crate::timefmt::local_seconds;

type Result<T> = std::result::Result<T, GiftError>;

/// At most this many messages per ingestion batch.
pub const MAX_BATCH: usize = 1000;

fn key_from_headers(headers: &HeaderMap) -> Option<String> {
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim().to_owned());
    }
    let auth = headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, rest) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_owned())
}

fn check_key(state: &GiftState, given: Option<&str>) -> Result<()> {
    let expected = state.api_secret.expose().as_bytes();
    match given {
        Some(g) if bool::from(g.as_bytes().ct_eq(expected)) => Ok(()),
        _ => Err(GiftError::unauthorized()),
    }
}

/// The actor recorded for API-key commands: which key, never the key.
fn actor() -> String {
    "apikey:API_SECRET".into()
}

fn positive_room_id(v: &Value) -> Result<RoomId> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let bad = || GiftError::bad_request("room_id 必须为正整数");
    RoomId::new(n.ok_or_else(bad)?).map_err(|_| bad())
}

/// `"主播名"` or `{"<room_id>": "主播名"}`.
fn anchor_of(v: &Value, room_id: RoomId) -> Result<AnchorName> {
    let name = match v {
        Value::String(s) => s.as_str(),
        Value::Object(m) => m
            .get(&room_id.get().to_string())
            .and_then(Value::as_str)
            .ok_or_else(|| {
                GiftError::bad_request(format!("room_anchors 中没有房间 {room_id} 的主播名"))
            })?,
        Value::Null => return Err(GiftError::bad_request("room_anchors 不能为空")),
        _ => return Err(GiftError::bad_request("room_anchors 必须是字符串或对象")),
    };
    Ok(AnchorName::parse(name)?)
}

/// Body of `/add/room` and `/delete/room`, authenticated by a header key or
/// the body's `api_key`.
async fn room_request(state: &GiftState, req: Request) -> Result<(RoomId, AnchorName)> {
    let header_key = key_from_headers(req.headers());
    if let Some(k) = &header_key {
        check_key(state, Some(k))?;
    }
    let body: Value = match body::json(req, &()).await {
        Ok(v) => v,
        // without a header key, an unreadable body cannot authenticate
        Err(_) if header_key.is_none() => return Err(GiftError::unauthorized()),
        Err(e) => return Err(e.into()),
    };
    if header_key.is_none() {
        check_key(state, body["api_key"].as_str())?;
    }
    if !body.is_object() {
        return Err(GiftError::bad_request("请求体必须是 JSON 对象"));
    }
    let room_id = positive_room_id(&body["room_id"])?;
    let anchor = anchor_of(&body["room_anchors"], room_id)?;
    Ok((room_id, anchor))
}

/// Runs a room command with this request's metadata and answers once the
/// listings have it.
async fn room_command(
    state: &GiftState,
    ctx: &RequestContext,
    room_id: RoomId,
    make: impl FnMut() -> MonitoredRoomCommand,
    message: &str,
) -> Result<axum::Json<Value>> {
    let meta = ctx.meta(SURFACE, actor());
    let pos = state
        .store
        .execute(
            &state.store.monitored_rooms,
            &room_id.to_string(),
            &meta,
            make,
        )
        .await
        .map_err(|e| from_command(room_id.get(), e))?;
    state.settle(READ_MODELS, pos).await;
    Ok(axum::Json(
        json!({"ok": true, "room_id": room_id.get(), "message": message}),
    ))
}

#[utoipa::path(post, path = "/add/room", tag = "gift", request_body = RoomRequest,
    security(("giftApiKey" = []), ()),
    responses((status = 200, description = "添加成功 (again: the same answer)", body = RoomAnswer), (status = "4XX", description = "Rejected: bad key, bad input, unknown room", body = Failure)))]
pub async fn add_room(
    State(state): State<GiftState>,
    ctx: RequestContext,
    req: Request,
) -> Result<impl IntoResponse> {
    let (room_id, anchor_name) = room_request(&state, req).await?;
    let at = crate::store::now();
    let monitor = || MonitoredRoomCommand::Monitor {
        room_id,
        anchor_name: anchor_name.clone(),
        at,
    };
    room_command(&state, &ctx, room_id, monitor, "添加成功").await
}

#[utoipa::path(post, path = "/delete/room", tag = "gift", request_body = RoomRequest,
    security(("giftApiKey" = []), ()),
    responses((status = 200, description = "删除成功", body = RoomAnswer), (status = "4XX", description = "Rejected: bad key, bad input, unknown room", body = Failure)))]
pub async fn delete_room(
    State(state): State<GiftState>,
    ctx: RequestContext,
    req: Request,
) -> Result<impl IntoResponse> {
    let (room_id, _anchor) = room_request(&state, req).await?;
    let at = crate::store::now();
    let stop = || MonitoredRoomCommand::StopMonitoring { room_id, at };
    room_command(&state, &ctx, room_id, stop, "删除成功").await
}

#[utoipa::path(post, path = "/ingest/bilibili/{room_id}", tag = "gift", request_body = IngestBatch,
    params(("room_id" = i64, Path, description = "A monitored room")),
    security(("giftApiKey" = [])),
    responses((status = 200, description = "The batch, recorded once however often it is sent", body = IngestAnswer), (status = "4XX", description = "Rejected: bad key, bad input, unknown room", body = Failure)))]
pub async fn ingest(
    State(state): State<GiftState>,
    ctx: RequestContext,
    Path(raw_room): Path<String>,
    req: Request,
) -> Result<impl IntoResponse> {
    check_key(&state, key_from_headers(req.headers()).as_deref())?;
    let room_id = positive_room_id(&Value::String(raw_room))?;
    let raw = body::bytes(req, &()).await?;
    // read first: a slow client holds no slot
    let _slot = state.ingest_slots.acquire().await.expect("never closed");
    let items: Value = body::parse(raw)?;
    let Value::Array(items) = items else {
        return Err(GiftError::bad_request("请求体必须是消息数组"));
    };
    if items.len() > MAX_BATCH {
        return Err(GiftError::bad_request(format!(
            "一批最多 {MAX_BATCH} 条消息"
        )));
    }
    let meta = ctx.meta(SURFACE, actor());
    let done = record_batch(&state.core, &meta, room_id, &items, crate::store::now())
        .await
        .map_err(|e| match e {
            IngestError::Malformed(m) => {
                GiftError::bad_request(format!("第 {} 条消息格式错误: {}", m.index, m.reason))
            }
            IngestError::Command(e) => from_command(room_id.get(), e),
            IngestError::Database(e) => GiftError::internal(e),
        })?;
    Ok(axum::Json(json!({
        "ok": true,
        "room_id": room_id.get(),
        "received": done.received,
        "recorded": done.recorded,
        "duplicates": done.duplicates,
        "ignored": done.ignored,
    })))
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

async fn summaries(
    state: &GiftState,
    month: Month,
    now: chrono::DateTime<chrono::Utc>,
    with_concurrency: bool,
) -> Result<Vec<summary::RoomSummary>> {
    let req = SummaryRequest {
        month,
        now,
        tz: state.config.timezone,
        effective_day_secs: state.config.effective_day_minutes * 60,
        with_concurrency,
    };
    Ok(month_summary(&state.pool, &req).await?)
}

#[utoipa::path(get, path = "/gift", tag = "gift",
    responses((status = 200, description = "This month's summary of every monitored room, with live concurrency", body = Vec<RoomSummary>), (status = "4XX", description = "Rejected: bad key, bad input, unknown room", body = Failure)))]
pub async fn current_month(State(state): State<GiftState>) -> Result<impl IntoResponse> {
    let now = chrono::Utc::now();
    let month = Month::of(now, state.config.timezone);
    Ok(axum::Json(summaries(&state, month, now, true).await?))
}

#[utoipa::path(get, path = "/gift/by_month", tag = "gift", params(MonthQuery),
    responses((status = 200, description = "A month's summary of every room", body = Vec<RoomSummary>), (status = "4XX", description = "Rejected: bad key, bad input, unknown room", body = Failure)))]
pub async fn by_month(State(state): State<GiftState>, uri: Uri) -> Result<Response> {
    let q = query_map(&uri);
    let tz = state.config.timezone;
    let now = chrono::Utc::now();
    let month = Month::parse_or_current(q.get("month").map(String::as_str), now, tz)?;
    // an ended month's live durations no longer depend on the clock
    let closed = month.span(tz).1 <= now;
    let key = format!("by_month:{}", month.label());
    let at = state.gift_months.stand(&state.progress);
    if let Some(kept) = state.gift_months.get(&key, at) {
        return Ok(kept);
    }
    let rows = summaries(&state, month, now, false).await?;
    state
        .gift_months
        .keep(key, at, closed, &rows)
        .map_err(GiftError::internal)
}

/// `room_id` (required, positive) and `month`.
fn room_and_month(state: &GiftState, uri: &Uri) -> Result<(i64, Month)> {
    let q = query_map(uri);
    let raw = q
        .get("room_id")
        .ok_or_else(|| GiftError::bad_request("缺少 room_id"))?;
    let room_id = positive_room_id(&Value::String(raw.clone()))?.get();
    let month = Month::parse_or_current(
        q.get("month").map(String::as_str),
        chrono::Utc::now(),
        state.config.timezone,
    )?;
    Ok((room_id, month))
}

async fn require_room(state: &GiftState, room_id: i64) -> Result<()> {
    if gifts::room(&state.pool, room_id).await?.is_none() {
        return Err(GiftError::no_room(room_id));
    }
    Ok(())
}

#[utoipa::path(get, path = "/gift/live_sessions", tag = "gift", params(RoomMonthQuery),
    responses((status = 200, description = "A room's live sessions in a month", body = Sessions), (status = "4XX", description = "Rejected: bad key, bad input, unknown room", body = Failure)))]
pub async fn live_sessions(State(state): State<GiftState>, uri: Uri) -> Result<Response> {
    let (room_id, month) = room_and_month(&state, &uri)?;
    let key = format!("live_sessions:{room_id}:{}", month.label());
    // kept while no batch touched this room, whatever other rooms receive
    let since = state.gift_months.room_stand(&state.progress);
    if let Some(kept) = state.gift_months.room_get(&state.progress, &key) {
        return Ok(kept);
    }
    require_room(&state, room_id).await?;
    let tz = state.config.timezone;
    let (from, to) = month.span(tz);
    let rows = gifts::sessions(&state.pool, Some(room_id), from, to).await?;
    let now = chrono::Utc::now();
    // Kept with a hole where a running session's duration goes: it grows
    // with the clock, everything else only with the projection.
    let mut answer = AnswerBuilder::default();
    answer.text(
        format!(
            r#"{{"room_id":{room_id},"month":"{}","sessions":["#,
            month.label()
        )
        .as_bytes(),
    );
    for (i, s) in rows.into_iter().enumerate() {
        if i > 0 {
            answer.text(b",");
        }
        let running = s.ended_at.is_none().then_some(s.started_at);
        let dto = SessionDto {
            start_time: local_seconds(s.started_at, tz),
            end_time: s.ended_at.map(|t| local_seconds(t, tz)),
            gift: yuan_of_gold(s.gift_gold),
            guard: yuan_of_gold(s.guard_gold),
            super_chat: s.sc_yuan as f64,
            blind_box_count: s.blind_box_count,
            blind_box_profit: profit_yuan(s.blind_profit_gold),
            danmaku_count: s.danmaku_count,
            start_guard_1: s.start_guard_1,
            start_guard_2: s.start_guard_2,
            start_guard_3: s.start_guard_3,
            start_fans_count: s.start_fans_count,
            end_guard_1: s.end_guard_1,
            end_guard_2: s.end_guard_2,
            end_guard_3: s.end_guard_3,
            end_fans_count: s.end_fans_count,
            avg_concurrency: (s.concurrency_samples > 0).then(|| {
                let avg = s.concurrency_sum as f64 / s.concurrency_samples as f64;
                (avg * 10.0).round() / 10.0
            }),
            max_concurrency: s.concurrency_max,
            current_concurrency: if s.ended_at.is_none() {
                s.current_concurrency
            } else {
                None
            },
            live_duration: s
                .ended_at
                .map_or_else(String::new, |end| hms((end - s.started_at).num_seconds())),
            title: s.title,
        };
        let bytes = serde_json::to_vec(&dto).map_err(GiftError::internal)?;
        match running {
            // `live_duration` is the last field: `…"live_duration":""}`
            Some(start) => {
                debug_assert!(bytes.ends_with(br#""live_duration":""}"#));
                let (head, tail) = bytes.split_at(bytes.len() - 2);
                answer.text(head);
                answer.running_since(start);
                answer.text(tail);
            }
            None => answer.text(&bytes),
        }
    }
    answer.text(b"]}");
    Ok(state
        .gift_months
        .keep_room_answer(key, room_id, since, answer.finish(), now))
}

/// One `/gift/live_sessions` row (serialised directly: building a
/// `serde_json::Value` per field dominated this read's profile).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct SessionDto {
    start_time: String,
    end_time: Option<String>,
    title: String,
    gift: f64,
    guard: f64,
    super_chat: f64,
    blind_box_count: i64,
    blind_box_profit: f64,
    danmaku_count: i64,
    start_guard_1: Option<i64>,
    start_guard_2: Option<i64>,
    start_guard_3: Option<i64>,
    start_fans_count: Option<i64>,
    end_guard_1: Option<i64>,
    end_guard_2: Option<i64>,
    end_guard_3: Option<i64>,
    end_fans_count: Option<i64>,
    avg_concurrency: Option<f64>,
    max_concurrency: Option<i64>,
    current_concurrency: Option<i64>,
    /// last: a running session's is cut out and filled when sent
    live_duration: String,
}

#[utoipa::path(get, path = "/gift/sc", tag = "gift", params(RoomMonthQuery),
    responses((status = 200, description = "A room's super chats in a month", body = SuperChats), (status = "4XX", description = "Rejected: bad key, bad input, unknown room", body = Failure)))]
pub async fn super_chats(State(state): State<GiftState>, uri: Uri) -> Result<impl IntoResponse> {
    let (room_id, month) = room_and_month(&state, &uri)?;
    require_room(&state, room_id).await?;
    let tz = state.config.timezone;
    let (from, to) = month.span(tz);
    let list: Vec<Value> = gifts::super_chats(&state.pool, room_id, from, to)
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "send_time": local_seconds(s.sent_at, tz),
                "uname": s.uname,
                "uid": s.uid,
                "price": s.price,
                "message": s.message,
            })
        })
        .collect();
    Ok(axum::Json(
        json!({"room_id": room_id, "month": month.label(), "list": list}),
    ))
}

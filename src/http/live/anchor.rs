//! The anchors' side of the live rooms (`/api/anchor/*`, beyond seed 000,
//! in its envelope): rooms from SillyTavern cards, their settings, going
//! live, the chat with the character, the subscription price. Every call
//! needs the anchor's session; only a room's anchor may change it.

use super::schema::*;
use aggregates::live_room::{
    Language, LiveRoomId, RoomAccess, RoomDescribe, RoomSettings, RoomTitle, SettingsChange, Tags,
};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{json, Map, Value};

use super::error::LiveError;
use super::payment::LJson;
use super::rooms::{bad, room_name, signed_in};
use super::state::LiveSurface;
use super::{uid_of, SURFACE};
use crate::http::body;
use crate::http::context::RequestContext;
use crate::identity;
use crate::liverooms::card::{self, CardError};
use crate::liverooms::{self, sillytavern, UploadedCard};

type Result<T> = std::result::Result<T, LiveError>;

impl From<CardError> for LiveError {
    fn from(e: CardError) -> Self {
        let status = match e {
            CardError::TooManyPixels(..) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, format!("角色卡无效: {e}"))
    }
}

fn path_room(raw: &str) -> Result<LiveRoomId> {
    LiveRoomId::parse(raw).map_err(|_| LiveError::new(StatusCode::NOT_FOUND, "房间不存在"))
}

/// Settings as sent (JSON fields, or multipart text fields).
#[derive(Default)]
struct SettingsInput {
    title: Option<String>,
    describe: Option<String>,
    room_type: Option<i64>,
    coin_num: Option<i64>,
    language: Option<String>,
    tags: Option<Vec<String>>,
}

impl SettingsInput {
    fn from_json(obj: &Map<String, Value>) -> Result<Self> {
        let text = |k: &str| match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("{k} 必须是字符串"))),
        };
        let int = |k: &str| match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| bad(format!("{k} 必须是整数"))),
            Some(_) => Err(bad(format!("{k} 必须是整数"))),
        };
        let tags = match obj.get("tags") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|t| {
                        t.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| bad("tags 必须是字符串列表"))
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some(_) => return Err(bad("tags 必须是字符串列表")),
        };
        Ok(Self {
            title: text("title")?,
            describe: text("describe")?,
            room_type: int("room_type")?,
            coin_num: int("coin_num")?,
            language: text("language")?,
            tags,
        })
    }

    /// A multipart text field.
    fn set(&mut self, name: &str, value: String) -> Result<()> {
        let int = |v: &str| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| bad(format!("{name} 必须是整数")))
        };
        match name {
            "title" => self.title = Some(value),
            "describe" => self.describe = Some(value),
            "room_type" => self.room_type = Some(int(&value)?),
            "coin_num" => self.coin_num = Some(int(&value)?),
            "language" => self.language = Some(value),
            "tags" => {
                // a JSON list, or comma-separated; repeated fields add up
                let more: Vec<String> = match serde_json::from_str::<Vec<String>>(&value) {
                    Ok(list) => list,
                    Err(_) => value.split(',').map(|t| t.trim().to_owned()).collect(),
                };
                self.tags.get_or_insert_with(Vec::new).extend(more);
            }
            _ => {}
        }
        Ok(())
    }

    fn change(self) -> Result<SettingsChange> {
        let v = |e: aggregates::values::InvalidValue| bad(e.0);
        Ok(SettingsChange {
            title: self
                .title
                .as_deref()
                .map(RoomTitle::parse)
                .transpose()
                .map_err(v)?,
            describe: self
                .describe
                .as_deref()
                .map(RoomDescribe::parse)
                .transpose()
                .map_err(v)?,
            room_type: self.room_type,
            coin_num: self.coin_num,
            language: self
                .language
                .as_deref()
                .map(Language::parse)
                .transpose()
                .map_err(v)?,
            tags: self
                .tags
                .as_deref()
                .map(Tags::parse)
                .transpose()
                .map_err(v)?,
        })
    }

    /// A new room's settings; tags default to the card's (the first 30
    /// that are valid).
    fn settings(self, card: &card::Card) -> Result<RoomSettings> {
        let v = |e: aggregates::values::InvalidValue| bad(e.0);
        let tags = match &self.tags {
            Some(t) => Tags::parse(t).map_err(v)?,
            None => {
                let ok: Vec<&String> = card
                    .tags
                    .iter()
                    .filter(|t| Tags::parse(&[t.as_str()]).is_ok())
                    .take(Tags::MAX_TAGS)
                    .collect();
                Tags::parse(&ok).map_err(v)?
            }
        };
        Ok(RoomSettings {
            title: RoomTitle::parse(self.title.as_deref().unwrap_or("")).map_err(v)?,
            describe: RoomDescribe::parse(self.describe.as_deref().unwrap_or("")).map_err(v)?,
            access: RoomAccess::parse(self.room_type.unwrap_or(0), self.coin_num.unwrap_or(0))
                .map_err(v)?,
            language: match &self.language {
                Some(l) => Language::parse(l).map_err(v)?,
                None => Language::default(),
            },
            tags,
        })
    }
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> LiveError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        LiveError::new(status, "请求体过大")
    } else {
        LiveError::new(
            StatusCode::BAD_REQUEST,
            format!("参数错误: {}", e.body_text()),
        )
    }
}

/// The card and settings of a create request, JSON or multipart.
async fn create_request(req: Request) -> Result<(UploadedCard, SettingsInput)> {
    if is_multipart(req.headers()) {
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|e| LiveError::new(e.status(), format!("参数错误: {}", e.body_text())))?;
        let mut settings = SettingsInput::default();
        let mut upload = None;
        while let Some(field) = form.next_field().await.map_err(multipart_error)? {
            let name = field.name().unwrap_or("").to_owned();
            match name.as_str() {
                "card" => {
                    let bytes = field.bytes().await.map_err(multipart_error)?.to_vec();
                    let (card, _) = card::from_png(&bytes)?;
                    upload = Some(UploadedCard {
                        card,
                        bytes,
                        png: true,
                    });
                }
                "character" => {
                    let text = field.text().await.map_err(multipart_error)?;
                    let value: Value =
                        serde_json::from_str(&text).map_err(|_| bad("character 不是 JSON"))?;
                    upload = Some(UploadedCard {
                        card: card::from_json(&value)?,
                        bytes: text.into_bytes(),
                        png: false,
                    });
                }
                _ => {
                    let text = field.text().await.map_err(multipart_error)?;
                    settings.set(&name, text)?;
                }
            }
        }
        let upload = upload.ok_or_else(|| bad("缺少 card（角色卡 PNG）"))?;
        return Ok((upload, settings));
    }
    let LJson(body) = LJson::<Value>::from_request(req, &()).await?;
    let obj = body
        .as_object()
        .ok_or_else(|| bad("请求体必须是 JSON 对象"))?;
    let character = obj
        .get("character")
        .ok_or_else(|| bad("缺少 character（角色卡）"))?;
    let card = card::from_json(character)?;
    let upload = UploadedCard {
        card,
        bytes: serde_json::to_vec(character).map_err(LiveError::internal)?,
        png: false,
    };
    Ok((upload, SettingsInput::from_json(obj)?))
}

/// `POST /api/anchor/rooms`: a room for a SillyTavern character card (JSON,
/// or multipart with the card PNG as `card`).
#[utoipa::path(post, path = "/api/anchor/rooms", tag = "live", request_body(content((CreateRoom = "application/json"), (CreateRoomForm = "multipart/form-data"))), security(("session" = []), ("sessionCookie" = [])), responses((status = 200, description = "The room, for the card's character", body = Envelope<CreatedRoom>), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn create_room(
    State(s): State<LiveSurface>,
    ctx: RequestContext,
    req: Request,
) -> Result<impl IntoResponse> {
    let caller = signed_in(&s, req.headers()).await?;
    let (upload, settings) = create_request(req).await?;
    let settings = settings.settings(&upload.card)?;
    let uid = uid_of(caller.account_id);
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let room =
        liverooms::create_room(&s.core, &meta, caller.account_id, &uid, upload, settings).await?;
    Ok(axum::Json(json!({
        "code": 0,
        "data": {
            "room_id": room.room_id.as_str(),
            "room_name": room_name(&uid, &room.character_name, &room.character_date),
            "character_name": room.character_name,
            "character_date": room.character_date,
            "image_name": room.image_name,
            "image_path": room.image_path,
        }
    })))
}

/// `GET /api/anchor/rooms`: the caller's rooms, live or not.
#[utoipa::path(get, path = "/api/anchor/rooms", tag = "live", security(("session" = []), ("sessionCookie" = [])), responses((status = 200, description = "The caller's rooms, live or not", body = Envelope<MyRooms>), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn my_rooms(
    State(s): State<LiveSurface>,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    let caller = signed_in(&s, &headers).await?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT room_id FROM live_rooms WHERE anchor_id = $1 ORDER BY created_at, room_id",
    )
    .bind(caller.account_id)
    .fetch_all(&s.core.pool)
    .await?;
    let uid = uid_of(caller.account_id);
    let mut rooms = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = projections::live::room(&s.core.pool, &id, None).await? {
            rooms.push(json!({
                "room_id": r.room_id,
                "room_name": room_name(&uid, &r.character_name, &r.character_date),
                "character_name": r.character_name,
                "character_date": r.character_date,
                "image_name": r.image_name,
                "image_path": r.image_path,
                "tags": r.tags,
                "language": r.language,
                "live_status": r.live,
                "ai_reply_count": r.ai_reply_count,
                "room_info": {
                    "title": r.title, "describe": r.describe,
                    "coin_num": r.coin_num, "room_type": r.room_type,
                },
            }));
        }
    }
    Ok(axum::Json(json!({ "code": 0, "data": { "rooms": rooms } })))
}

/// `POST /api/anchor/rooms/{room_id}`: changes some settings.
#[utoipa::path(post, path = "/api/anchor/rooms/{room_id}", tag = "live", request_body = ChangeRoom, params(("room_id" = String, Path, description = "One of the caller's rooms")), security(("session" = []), ("sessionCookie" = [])), responses((status = 200, description = "Changed", body = Done), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn change_room(
    State(s): State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
    Path(room_id): Path<String>,
    LJson(body): LJson<Value>,
) -> Result<impl IntoResponse> {
    let caller = signed_in(&s, &headers).await?;
    let room_id = path_room(&room_id)?;
    let obj = body
        .as_object()
        .ok_or_else(|| bad("请求体必须是 JSON 对象"))?;
    let change = SettingsInput::from_json(obj)?.change()?;
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    liverooms::change_settings(&s.core, &meta, caller.account_id, &room_id, change).await?;
    Ok(axum::Json(json!({ "code": 0 })))
}

/// `POST /api/anchor/rooms/{room_id}/live {"live": true|false}`.
#[utoipa::path(post, path = "/api/anchor/rooms/{room_id}/live", tag = "live", request_body = SetLive, params(("room_id" = String, Path, description = "One of the caller's rooms")), security(("session" = []), ("sessionCookie" = [])), responses((status = 200, description = "On or off the air", body = Envelope<LiveStatus>), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn set_live(
    State(s): State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
    Path(room_id): Path<String>,
    LJson(body): LJson<Value>,
) -> Result<impl IntoResponse> {
    let caller = signed_in(&s, &headers).await?;
    let room_id = path_room(&room_id)?;
    let live = body
        .get("live")
        .and_then(Value::as_bool)
        .ok_or_else(|| bad("live 必须是 true 或 false"))?;
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    liverooms::set_live(&s.core, &meta, caller.account_id, &room_id, live).await?;
    Ok(axum::Json(
        json!({ "code": 0, "data": { "live_status": live } }),
    ))
}

fn is_jsonl(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.to_ascii_lowercase())
        .is_some_and(|v| {
            [
                "application/x-ndjson",
                "application/jsonl",
                "application/x-jsonlines",
                "text/plain",
            ]
            .iter()
            .any(|t| v.starts_with(t))
        })
}

/// `POST /api/anchor/rooms/{room_id}/messages`: the anchor's SillyTavern
/// chat (a JSON array of messages, or the `.jsonl` chat file); messages
/// recorded before are skipped.
#[utoipa::path(post, path = "/api/anchor/rooms/{room_id}/messages", tag = "live", params(("room_id" = String, Path, description = "One of the caller's rooms")), request_body(content((ChatMessages = "application/json"), (String = "application/jsonl"))), security(("session" = []), ("sessionCookie" = [])), responses((status = 200, description = "Messages recorded; those recorded before skipped", body = Envelope<Recorded>), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn record_messages(
    State(s): State<LiveSurface>,
    ctx: RequestContext,
    Path(room_id): Path<String>,
    req: Request,
) -> Result<impl IntoResponse> {
    let caller = signed_in(&s, req.headers()).await?;
    let room_id = path_room(&room_id)?;
    let raw = if is_jsonl(req.headers()) {
        let bytes = body::bytes(req, &()).await?;
        let text = std::str::from_utf8(&bytes).map_err(|_| bad("聊天文件必须是 UTF-8"))?;
        sillytavern::from_jsonl(text).map_err(bad)?
    } else {
        let LJson(v) = LJson::<Value>::from_request(req, &()).await?;
        sillytavern::from_array(&v).map_err(bad)?
    };
    let chat = liverooms::chat_lines(raw, s.core.config.timezone, crate::store::now())?;
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let done = liverooms::record_chat(
        &s.core,
        &meta,
        caller.account_id,
        &room_id,
        chat.lines,
        chat.skipped,
    )
    .await?;
    Ok(axum::Json(json!({
        "code": 0,
        "data": { "recorded": done.recorded, "skipped": done.skipped, "undated": chat.undated }
    })))
}

/// `POST /api/anchor/subscription {"amount"}`: the price of a subscription
/// period (0: none offered).
#[utoipa::path(post, path = "/api/anchor/subscription", tag = "live", request_body = SubscriptionPrice, security(("session" = []), ("sessionCookie" = [])), responses((status = 200, description = "The price of a subscription period", body = Envelope<SubscriptionSet>), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn set_subscription(
    State(s): State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
    LJson(body): LJson<Value>,
) -> Result<impl IntoResponse> {
    let caller = signed_in(&s, &headers).await?;
    let amount = body
        .get("amount")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("amount 必须是整数"))?;
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    liverooms::set_subscription_price(&s.core, &meta, caller.account_id, amount).await?;
    Ok(axum::Json(json!({
        "code": 0,
        "data": {
            "amount": amount,
            "period_secs": s.core.config.live.subscription_period.as_secs(),
        }
    })))
}

//! The viewers' side of the live rooms (seed 000 `/api/live/*`): lists,
//! ranking, live info, both chats, viewer messages, VIP payments, follows
//! and subscriptions. Thin: parse the contract, call `liverooms`, answer in
//! the surface's envelope `{code: 0, …}` / `{code: 1, msg}`.

use super::schema::*;
use std::collections::HashMap;

use crate::timefmt::sillytavern_send_date;
use aggregates::audience::{Chatter, ChatterName, ViewerText};
use aggregates::live_room::LiveRoomId;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use projections::live::{self as read, LiveRow};
use serde::Serialize;
use serde_json::{json, Value};

use super::error::LiveError;
use super::state::{Answer, LiveSurface, Presence};
use super::SURFACE;
use crate::auth::Caller;
use crate::http::body;
use crate::http::context::RequestContext;
use crate::identity::{self, AuthFailure};
use crate::liverooms::uid_of;
use crate::liverooms::views;
pub(super) use crate::liverooms::views::room_name;
use crate::liverooms::{self, Access, LiveRoomsError, Paid};

type Result<T> = std::result::Result<T, LiveError>;

/// The account behind a seed-000 `uid` (unpadded base64url of its UUID).
pub use crate::liverooms::account_of_uid;

// ------------------------------------------------------------- extractors

/// A request's parameters: the query string, and the fields of a JSON
/// object body where the query does not name them (the seed writes GET
/// parameters as a body).
pub struct Params(HashMap<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = LiveError;

    async fn from_request(req: Request, state: &S) -> std::result::Result<Self, LiveError> {
        let query = Query::<HashMap<String, String>>::try_from_uri(req.uri())
            .map_err(|_| LiveError::new(StatusCode::BAD_REQUEST, "参数错误: 查询字符串无效"))?;
        let mut map: HashMap<String, Value> = query
            .0
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let bytes = body::json_bytes(req, state).await?;
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|_| LiveError::from(body::BodyError::Syntax))?;
            let Value::Object(fields) = v else {
                return Err(LiveError::new(
                    StatusCode::BAD_REQUEST,
                    "参数错误: 请求体必须是 JSON 对象",
                ));
            };
            for (k, v) in fields {
                map.entry(k).or_insert(v);
            }
        }
        Ok(Self(map))
    }
}

impl Params {
    /// A text parameter (a number is taken as its digits); absent or null
    /// is `None`.
    pub fn text(&self, name: &str) -> Result<Option<String>> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(bad(format!("{name} 必须是字符串"))),
        }
    }

    pub fn room_id(&self) -> Result<LiveRoomId> {
        let raw = self
            .text("room_id")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("缺少 room_id"))?;
        // a malformed id names no room
        LiveRoomId::parse(raw.trim())
            .map_err(|_| LiveError::new(StatusCode::NOT_FOUND, "房间不存在"))
    }
}

pub(super) fn bad(msg: impl std::fmt::Display) -> LiveError {
    LiveError::new(StatusCode::BAD_REQUEST, format!("参数错误: {msg}"))
}

/// The session, if the request carries a good one (any surface's cookie or
/// bearer); a bad or ended token is a guest, as `is_logged_in` answers.
pub(super) async fn viewer(s: &LiveSurface, headers: &HeaderMap) -> Result<Option<Caller>> {
    let token = match crate::http::session::token_of(headers, true) {
        Ok(Some(t)) => t,
        Ok(None) | Err(_) => return Ok(None),
    };
    match s.auth.authenticate(&token).await {
        Ok(c) => Ok(Some(c)),
        Err(AuthFailure::Unavailable(e)) => Err(LiveError::internal(e)),
        Err(_) => Ok(None),
    }
}

/// The session, required.
pub(super) async fn signed_in(s: &LiveSurface, headers: &HeaderMap) -> Result<Caller> {
    let token = crate::http::session::token_of(headers, true)?.ok_or(AuthFailure::Missing)?;
    Ok(s.auth.authenticate(&token).await?)
}

/// Who counts as one viewer: the session, else the guest's address and
/// browser.
fn viewer_key(caller: Option<&Caller>, ctx: &RequestContext, headers: &HeaderMap) -> String {
    match caller {
        Some(c) => format!("s:{}", c.session_id),
        None => {
            let ua = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let h = crate::files::sha256_hex(format!("{}\0{ua}", ctx.client_ip).as_bytes());
            format!("g:{}", &h[..16])
        }
    }
}

async fn seen(
    s: &LiveSurface,
    room_id: &str,
    caller: Option<&Caller>,
    ctx: &RequestContext,
    headers: &HeaderMap,
) {
    let key = viewer_key(caller, ctx, headers);
    if let Err(e) = s.parts.presence.touch(&s.core.pool, room_id, &key).await {
        // presence is best effort: the answer does not depend on it
        tracing::warn!(error = %e, "recording a viewer failed");
    }
}

// ------------------------------------------------------------------ views

fn json_body(v: &impl Serialize) -> Result<Bytes> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(LiveError::internal)
}

// ------------------------------------------------------------------ lists

/// A list answer kept (see `Lists`), or read by `read` and kept.
async fn kept<Fut>(
    s: &LiveSurface,
    headers: &HeaderMap,
    key: &str,
    read: impl FnOnce() -> Fut,
) -> Result<Response>
where
    Fut: std::future::Future<Output = Result<Bytes>>,
{
    if let Some(kept) = s.parts.lists.get(&s.core.progress, key) {
        return Ok(kept.respond(headers));
    }
    let at = s.parts.lists.stand(&s.core.progress);
    let answer = Answer::new(read().await?);
    s.parts.lists.keep(key, at, answer.clone());
    Ok(answer.respond(headers))
}

/// `GET /api/live/get_all_lives[?search_tag=]`: the rooms live now.
#[utoipa::path(get, path = "/api/live/get_all_lives", tag = "live", params(TagQuery), responses((status = 200, description = "The rooms live now (also at the path with a trailing slash)", body = AllLives), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn get_all_lives(
    State(s): State<LiveSurface>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response> {
    let tag = params
        .text("search_tag")?
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty());
    let key = format!("all:{}", tag.as_deref().unwrap_or(""));
    kept(&s, &headers, &key, || async {
        let rows = read::lives(&s.core.pool, tag.as_deref(), Some(Presence::since())).await?;
        let items: Vec<views::LiveItem> = rows.iter().map(views::LiveItem::of).collect();
        json_body(&json!({ "code": 0, "data": { "lives_info": items } }))
    })
    .await
}

/// `GET /api/live/get_ranked_lives/`: the rooms live now, best first (see
/// `projections::live` for the formula).
#[utoipa::path(get, path = "/api/live/get_ranked_lives", tag = "live", responses((status = 200, description = "The rooms live now, best first (also with a trailing slash)", body = RankedLives), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn get_ranked_lives(
    State(s): State<LiveSurface>,
    headers: HeaderMap,
    _params: Params,
) -> Result<Response> {
    kept(&s, &headers, "ranked", || async {
        let rows = read::lives(&s.core.pool, None, Some(Presence::since())).await?;
        json_body(&ranked_answer(
            rows,
            chrono::Utc::now(),
            s.core.config.timezone,
        ))
    })
    .await
}

/// The ranked list's answer as of `now` (`tidelog live ranking` prints
/// the same).
pub fn ranked_answer(
    rows: Vec<LiveRow>,
    now: chrono::DateTime<chrono::Utc>,
    tz: chrono_tz::Tz,
) -> Value {
    let ranked = read::rank(rows, now);
    let items = views::ranked(&ranked, tz);
    json!({ "code": 0, "status": "success", "data": { "lives_info": items } })
}

/// `GET /api/live/get_all_tags/`: every room's tags, distinct, byte order.
#[utoipa::path(get, path = "/api/live/get_all_tags", tag = "live", responses((status = 200, description = "Every room's tags, distinct (also with a trailing slash)", body = Tags), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn get_all_tags(State(s): State<LiveSurface>, headers: HeaderMap) -> Result<Response> {
    kept(&s, &headers, "tags", || async {
        let tags = read::all_tags(&s.core.pool).await?;
        json_body(&json!({ "code": 0, "status": "success", "tags": tags }))
    })
    .await
}

// ------------------------------------------------------------- one room

/// `GET /api/live/get_live_info?room_id=&uid=`: the room and the caller's
/// standing in it (a guest's is all false).
#[utoipa::path(get, path = "/api/live/get_live_info", tag = "live", params(RoomUidQuery), security(("session" = []), ("sessionCookie" = []), ()), responses((status = 200, description = "The room and the caller's standing in it (a guest's all false)", body = Envelope<LiveInfo>), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn get_live_info(
    State(s): State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
    params: Params,
) -> Result<impl IntoResponse> {
    let room_id = params.room_id()?;
    let caller = viewer(&s, &headers).await?;
    if let Some(uid) = params.text("uid")?.filter(|u| !u.trim().is_empty()) {
        let mine = caller.as_ref().map(|c| uid_of(c.account_id));
        if mine.as_deref() != Some(uid.trim()) {
            return Err(LiveError::new(
                StatusCode::FORBIDDEN,
                "uid 与登录用户不一致",
            ));
        }
    }
    seen(&s, room_id.as_str(), caller.as_ref(), &ctx, &headers).await;
    let r = read::room(&s.core.pool, room_id.as_str(), Some(Presence::since()))
        .await?
        .ok_or_else(|| LiveError::new(StatusCode::NOT_FOUND, "房间不存在"))?;
    let access_row = read::RoomAccessRow {
        room_id: r.room_id.clone(),
        anchor_id: r.anchor_id,
        character_name: r.character_name.clone(),
        character_date: r.character_date.clone(),
        room_type: r.room_type,
        coin_num: r.coin_num,
        live: r.live,
    };
    let access = match &caller {
        Some(c) => liverooms::access(&s.core, &access_row, Some(c.account_id)).await?,
        None => Access::default(),
    };
    let subscription_price = read::subscription_price(&s.core.pool, r.anchor_id)
        .await?
        .map_or(0, |(p, _)| p);
    let uid = uid_of(r.anchor_id);
    Ok(axum::Json(json!({
        "code": 0,
        "data": {
            "live_info": {
                "room_id": r.room_id,
                "room_name": room_name(&uid, &r.character_name, &r.character_date),
                "uid": uid,
                "username": r.anchor_name,
                "live_num": r.viewers,
                "character_name": r.character_name,
                "live_status": r.live,
                "title": r.title,
                "describe": r.describe,
            },
            "vip_info": {
                "room_type": r.room_type,
                "vip_status": caller.is_some() && access.allowed,
                "amount": r.coin_num,
            },
            "follow_info": { "follow_status": access.following },
            "subscription_info": {
                "subscription_status": access.subscribed,
                "amount": subscription_price,
            },
        }
    })))
}

/// The room and the caller, once the caller may see the room's chats.
async fn open_room(
    s: &LiveSurface,
    ctx: &RequestContext,
    headers: &HeaderMap,
    room_id: &LiveRoomId,
) -> Result<(read::RoomAccessRow, Option<Caller>)> {
    let caller = viewer(s, headers).await?;
    let room = liverooms::room(&s.core, room_id).await?;
    let allowed =
        liverooms::may_watch(&s.core, &room, caller.as_ref().map(|c| c.account_id)).await?;
    if !allowed {
        return Err(match caller {
            None => LiveError::new(StatusCode::UNAUTHORIZED, "付费房间，请先登录"),
            Some(_) => LiveRoomsError::NoAccess.into(),
        });
    }
    seen(s, room_id.as_str(), caller.as_ref(), ctx, headers).await;
    Ok((room, caller))
}

/// Lines of the anchor's chat answered at most.
pub const CHAT_HISTORY: i64 = 500;

/// `GET /api/live/get_live_chat_history?room_id=`: the anchor's chat with
/// the character, the newest 500 lines, oldest first.
#[utoipa::path(get, path = "/api/live/get_live_chat_history", tag = "live", params(RoomQuery), security(("session" = []), ("sessionCookie" = []), ()), responses((status = 200, description = "The anchor's chat with the character: the newest 500 lines, oldest first", body = Envelope<AnchorChat>), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn get_live_chat_history(
    State(s): State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
    params: Params,
) -> Result<impl IntoResponse> {
    let room_id = params.room_id()?;
    let (room, _) = open_room(&s, &ctx, &headers, &room_id).await?;
    let anchor = read::room(&s.core.pool, room_id.as_str(), None)
        .await?
        .map(|r| r.anchor_name)
        .unwrap_or_default();
    let tz = s.core.config.timezone;
    let lines = read::anchor_chat(&s.core.pool, room_id.as_str(), CHAT_HISTORY).await?;
    let chat_info: Vec<Value> = lines
        .into_iter()
        .map(|l| {
            json!({
                "is_user": l.is_user,
                "live_message": l.message,
                "sender_name": l.sender_name,
                "send_date": sillytavern_send_date(l.sent_at, tz),
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "code": 0,
        "data": { "uid": uid_of(room.anchor_id), "username": anchor, "chat_info": chat_info }
    })))
}

/// Viewer messages answered: the last 20, as the seed says.
pub const VIEWER_HISTORY: i64 = 20;

/// `GET /api/live/get_user_chat_history?room_id=`: the last 20 viewer
/// messages, oldest first.
#[utoipa::path(get, path = "/api/live/get_user_chat_history", tag = "live", params(RoomQuery), security(("session" = []), ("sessionCookie" = []), ()), responses((status = 200, description = "The last 20 viewer messages, oldest first", body = Envelope<ViewerChat>), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn get_user_chat_history(
    State(s): State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
    params: Params,
) -> Result<impl IntoResponse> {
    let room_id = params.room_id()?;
    let (room, _) = open_room(&s, &ctx, &headers, &room_id).await?;
    let tz = s.core.config.timezone;
    let rows = read::viewer_messages(&s.core.pool, room_id.as_str(), VIEWER_HISTORY).await?;
    let chat_info: Vec<Value> = rows
        .into_iter()
        .map(|m| {
            json!({
                "uid": m.uid,
                "username": m.username,
                "send_date": sillytavern_send_date(m.sent_at, tz),
                "user_message": m.message,
            })
        })
        .collect();
    let uid = uid_of(room.anchor_id);
    Ok(axum::Json(json!({
        "code": 0,
        "data": {
            "room_id": room.room_id,
            "room_name": room_name(&uid, &room.character_name, &room.character_date),
            "uid": uid,
            "username": room.character_name,
            "chat_info": chat_info,
        }
    })))
}

/// `POST /api/live/save_user_chat_history {room_id, room_name, username,
/// user_message}`: a signed-in viewer posts under the account's name; a
/// guest under a name of its own that no account has.
#[utoipa::path(post, path = "/api/live/save_user_chat_history", tag = "live", request_body = SaveChat, security(("session" = []), ("sessionCookie" = []), ()), responses((status = 200, description = "Posted (a guest under a name no account has)", body = Done), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn save_user_chat_history(
    State(s): State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
    params: Params,
) -> Result<impl IntoResponse> {
    let room_id = params.room_id()?;
    let text = params
        .text("user_message")?
        .ok_or_else(|| bad("缺少 user_message"))?;
    let text = ViewerText::parse(&text).map_err(|e| bad(e.0))?;
    let (room, caller) = open_room(&s, &ctx, &headers, &room_id).await?;
    let chatter = match &caller {
        Some(c) => Chatter {
            account_id: Some(c.account_id),
            uid: uid_of(c.account_id),
            name: ChatterName::parse(&c.username).map_err(|e| bad(e.0))?,
        },
        None => {
            let name = params
                .text("username")?
                .ok_or_else(|| bad("游客发言需要 username"))?;
            let name = ChatterName::parse(&name).map_err(|e| bad(e.0))?;
            if liverooms::name_is_registered(&s.core, name.as_str()).await? {
                return Err(LiveRoomsError::NameTaken.into());
            }
            Chatter {
                account_id: None,
                uid: String::new(),
                name,
            }
        }
    };
    if let Err(retry) = s
        .parts
        .chat_ips
        .hit(&ctx.client_ip, s.core.config.live.chat_per_ip_per_minute)
    {
        return Err(LiveRoomsError::RateLimited(retry).into());
    }
    let actor = match chatter.account_id {
        Some(id) => identity::actor_of(id),
        None => format!("guest:{}", chatter.name.as_str()),
    };
    let meta = ctx.meta(SURFACE, actor);
    liverooms::post_viewer_message(&s.core, &meta, &room, chatter, text).await?;
    Ok(axum::Json(json!({ "code": 0 })))
}

// --------------------------------------------------------------- payments

/// `POST /api/live/pay_vip_coin {uid, anchor_id, room_id, room_name,
/// amount}`: the caller pays the room's price once.
#[utoipa::path(post, path = "/api/live/pay_vip_coin", tag = "live", request_body = PayVip, security(("session" = []), ("sessionCookie" = [])), responses((status = 200, description = "The room's price paid once", body = Envelope<VipPaid>), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn pay_vip_coin(
    State(s): State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
    params: Params,
) -> Result<impl IntoResponse> {
    let caller = signed_in(&s, &headers).await?;
    let uid = params.text("uid")?.unwrap_or_default();
    if uid.trim() != uid_of(caller.account_id) {
        return Err(LiveError::new(
            StatusCode::FORBIDDEN,
            "uid 与登录用户不一致",
        ));
    }
    let room_id = params.room_id()?;
    let amount = match params.0.get("amount") {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| bad("amount 必须是整数"))?,
        Some(Value::String(t)) => t.trim().parse().map_err(|_| bad("amount 必须是整数"))?,
        _ => return Err(bad("缺少 amount")),
    };
    let (room, had) = liverooms::room_seen_by(&s.core, &room_id, caller.account_id).await?;
    if let Some(anchor) = params.text("anchor_id")?.filter(|a| !a.trim().is_empty()) {
        if anchor.trim() != uid_of(room.anchor_id) {
            return Err(bad("anchor_id 与房间的主播不一致"));
        }
    }
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let paid = liverooms::pay_vip(&s.core, &meta, caller.account_id, (&room, had), amount).await?;
    let coins = match paid {
        // the payment's own balance: its read model may trail the answer
        Paid::Now { balance } => balance,
        Paid::Before => {
            // this route does not wait for answered writes before it runs
            s.core.answered_writes().await;
            projections::ledger::balance(&s.core.pool, caller.account_id, "coins").await?
        }
    };
    Ok(axum::Json(json!({
        "code": 0,
        "data": { "vip_status": true, "paid": matches!(paid, Paid::Now { .. }), "coin_num": coins }
    })))
}

/// `POST /api/live/follow {room_id}` (and `unfollow`): follows the room's
/// anchor.
#[utoipa::path(post, path = "/api/live/follow", tag = "live", request_body = RoomRef, security(("session" = []), ("sessionCookie" = [])), responses((status = 200, description = "Following the room's anchor", body = Envelope<FollowStatus>), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn follow(
    s: State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
    params: Params,
) -> Result<impl IntoResponse> {
    set_follow(s, ctx, headers, params, true).await
}

#[utoipa::path(post, path = "/api/live/unfollow", tag = "live", request_body = RoomRef, security(("session" = []), ("sessionCookie" = [])), responses((status = 200, description = "No longer following", body = Envelope<FollowStatus>), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn unfollow(
    s: State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
    params: Params,
) -> Result<impl IntoResponse> {
    set_follow(s, ctx, headers, params, false).await
}

async fn set_follow(
    State(s): State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
    params: Params,
    on: bool,
) -> Result<impl IntoResponse> {
    let caller = signed_in(&s, &headers).await?;
    let room_id = params.room_id()?;
    let room = liverooms::room(&s.core, &room_id).await?;
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    liverooms::follow(&s.core, &meta, caller.account_id, &room, on).await?;
    Ok(axum::Json(
        json!({ "code": 0, "data": { "follow_status": on } }),
    ))
}

/// `POST /api/live/subscribe {anchor_id}`: one period of the anchor's
/// subscription (a renewal extends it).
#[utoipa::path(post, path = "/api/live/subscribe", tag = "live", request_body = Subscribe, security(("session" = []), ("sessionCookie" = [])), responses((status = 200, description = "One period of the anchor's subscription (a renewal extends it)", body = Envelope<Subscribed>), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn subscribe(
    State(s): State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
    params: Params,
) -> Result<impl IntoResponse> {
    let caller = signed_in(&s, &headers).await?;
    let anchor = params
        .text("anchor_id")?
        .ok_or_else(|| bad("缺少 anchor_id"))?;
    let anchor = account_of_uid(&anchor).ok_or(LiveRoomsError::UnknownAnchor)?;
    if projections::accounts::by_id(&s.core.pool, anchor)
        .await?
        .is_none()
    {
        return Err(LiveRoomsError::UnknownAnchor.into());
    }
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let until = liverooms::subscribe(&s.core, &meta, caller.account_id, anchor).await?;
    let price = read::subscription_price(&s.core.pool, anchor)
        .await?
        .map_or(0, |(p, _)| p);
    Ok(axum::Json(json!({
        "code": 0,
        "data": {
            "subscription_status": true,
            "amount": price,
            "until": crate::timefmt::go_rfc3339(until, s.core.config.timezone),
        }
    })))
}

// ---------------------------------------------------------------- images

/// `GET /api/live/images/{image_path}`: a room's picture (its card PNG).
#[utoipa::path(get, path = "/api/live/images/{*path}", tag = "live", params(("path" = String, Path, description = "A room's `image_path`")), responses((status = 200, description = "The room's picture", content_type = "image/png", body = Vec<u8>), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn image(State(s): State<LiveSurface>, Path(path): Path<String>) -> Result<Response> {
    let not_found = || LiveError::new(StatusCode::NOT_FOUND, "图片不存在");
    let sha = read::image(&s.core.pool, &path)
        .await?
        .ok_or_else(not_found)?;
    let (content_type, bytes) = crate::files::get(&s.core.pool, &sha)
        .await?
        .ok_or_else(not_found)?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400".into()),
            (header::ETAG, format!("\"{sha}\"")),
        ],
        bytes,
    )
        .into_response())
}

//! Chat8's friends, messages and keys (`/api/v1/friends*`,
//! `/api/v1/messages*`, `/api/v1/encryption/*`). Thin: parse the contract,
//! call `social`, answer in the envelope.

use aggregates::social::{DirectContent, DirectKind, PublicKey, RequestNote, SealedKey};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use projections::social as read;
use serde::Deserialize;
use serde_json::{json, Value};

use super::dto::{done, ok};
use super::error::{field, Chat8Error};
use super::extract::{Bearer, C8Json};
use super::{format_time, SURFACE};
use crate::core::Core;
use crate::http::context::RequestContext;
use crate::identity;
use crate::social::{self, Requested, SocialError};

use super::schema::{
    self as doc, Answer, Done, Envelope, Failure, Found, Friend, FriendRequest, History, Keys,
    OwnKeys, SendMessage, Sent,
};

type Result<T> = std::result::Result<T, Chat8Error>;

impl From<SocialError> for Chat8Error {
    fn from(e: SocialError) -> Self {
        use StatusCode as S;
        match e {
            SocialError::UnknownUser => Self::new(S::NOT_FOUND, "USER_001", "用户不存在"),
            SocialError::SelfRequest => {
                Self::new(S::BAD_REQUEST, "FRIEND_002", "不能添加自己为好友")
            }
            SocialError::AlreadyRequested => Self::new(S::CONFLICT, "FRIEND_003", "好友请求已存在"),
            SocialError::UnknownRequest => Self::new(S::NOT_FOUND, "NOT_FOUND", "好友请求不存在"),
            SocialError::NotAddressee => {
                Self::new(S::FORBIDDEN, "FORBIDDEN", "只有被请求者可以处理好友请求")
            }
            SocialError::AlreadyHandled => Self::new(S::CONFLICT, "FRIEND_003", "好友请求已处理"),
            SocialError::NotFriends => Self::new(S::FORBIDDEN, "FRIEND_001", "好友关系不存在"),
            SocialError::UnknownMessage => Self::new(S::NOT_FOUND, "MESSAGE_001", "消息不存在"),
            SocialError::NotYourMessage => Self::new(S::FORBIDDEN, "MESSAGE_002", "无权限访问消息"),
            SocialError::UnknownCall => Self::new(S::NOT_FOUND, "CALL_001", "通话不存在"),
            SocialError::NotYourCall => Self::new(S::FORBIDDEN, "CALL_002", "无权操作此通话"),
            SocialError::CallEnded => Self::new(S::CONFLICT, "CALL_003", "通话已结束"),
            SocialError::Contended => Self::new(S::SERVICE_UNAVAILABLE, "BUSY", "系统繁忙，请重试"),
            SocialError::Internal(err) => Self::internal(err),
        }
    }
}

/// An id from the path: a positive integer, else the thing is not found.
fn path_id(raw: &str, code: &'static str, what: &str) -> Result<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Chat8Error::new(StatusCode::NOT_FOUND, code, format!("{what}不存在")))
}

fn meta(ctx: &RequestContext, caller: &crate::auth::Caller) -> crate::store::CommandMeta {
    ctx.meta(SURFACE, identity::actor_of(caller.account_id))
}

// ---------------------------------------------------------------- friends

/// `GET /friends`.
#[utoipa::path(get, path = "/api/v1/friends", tag = "chat8", security(("session" = [])), responses((status = 200, description = "The caller's friends", body = Envelope<Vec<Friend>>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn friends(
    State(core): State<Core>,
    Bearer(caller): Bearer,
) -> Result<impl IntoResponse> {
    let rows = read::friends(&core.pool, caller.number).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|f| {
            json!({
                "id": f.id,
                "username": f.name(),
                "avatar": f.avatar.clone().unwrap_or_default(),
                "status": f.presence.clone().unwrap_or_else(|| "offline".into()),
                "last_seen": f.last_seen.map(format_time),
            })
        })
        .collect();
    Ok(ok("获取成功", data))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

/// Users found at most per search.
pub const SEARCH_LIMIT: i64 = 20;

/// `GET /friends/search?q=`: names holding `q`; an email only when `q` is
/// the whole address (addresses cannot be enumerated); never the caller.
#[utoipa::path(get, path = "/api/v1/friends/search", tag = "chat8", params(doc::SearchQuery), security(("session" = [])), responses((status = 200, description = "Users found (at most 20)", body = Envelope<Vec<Found>>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn search(
    State(core): State<Core>,
    Bearer(caller): Bearer,
    q: std::result::Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse> {
    let q = q
        .ok()
        .and_then(|Query(q)| q.q)
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty())
        .ok_or_else(|| Chat8Error::validation("q", "搜索关键词不能为空"))?;
    if q.chars().count() > 64 {
        return Err(Chat8Error::validation("q", "搜索关键词最多 64 个字符"));
    }
    let rows = read::search(&core.pool, caller.number, &q, SEARCH_LIMIT).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "username": projections::accounts::display_name(
                    r.username.as_deref(), r.nickname.as_deref(), r.email.as_deref()),
                "avatar": r.avatar.clone().unwrap_or_default(),
                "is_friend": r.is_friend,
            })
        })
        .collect();
    Ok(ok("获取成功", data))
}

#[derive(Deserialize)]
pub struct FriendRequestBody {
    user_id: i64,
    #[serde(default)]
    message: Option<String>,
}

/// `POST /friends/request {user_id, message}`.
#[utoipa::path(post, path = "/api/v1/friends/request", tag = "chat8", request_body = FriendRequest, security(("session" = [])), responses((status = 200, description = "好友请求已发送", body = Envelope<doc::Requested>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn request(
    State(core): State<Core>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
    C8Json(body): C8Json<FriendRequestBody>,
) -> Result<impl IntoResponse> {
    let note =
        RequestNote::parse(body.message.as_deref().unwrap_or("")).map_err(field("message"))?;
    if body.user_id <= 0 {
        return Err(SocialError::UnknownUser.into());
    }
    let done_ = social::request_friend(
        &core,
        &meta(&ctx, &caller),
        caller.number,
        body.user_id,
        note,
    )
    .await?;
    let (request_id, status, message) = match done_ {
        Requested::Pending(id) => (id, "pending", "好友请求已发送"),
        Requested::Accepted(id) => (id, "accepted", "对方已向你发送过请求，现在你们是好友了"),
    };
    Ok(ok(
        message,
        json!({ "request_id": request_id, "status": status }),
    ))
}

#[derive(Deserialize)]
pub struct AnswerBody {
    action: String,
}

/// `PUT /friends/request/{request_id} {action: accept|reject}`.
#[utoipa::path(put, path = "/api/v1/friends/request/{request_id}", tag = "chat8", request_body = Answer, params(("request_id" = i64, Path, description = "A request to the caller")), security(("session" = [])), responses((status = 200, description = "好友请求已处理", body = Done), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn answer(
    State(core): State<Core>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
    Path(request_id): Path<String>,
    C8Json(body): C8Json<AnswerBody>,
) -> Result<impl IntoResponse> {
    let request_id = path_id(&request_id, "NOT_FOUND", "好友请求")?;
    let accept = match body.action.as_str() {
        "accept" => true,
        "reject" => false,
        _ => {
            return Err(Chat8Error::validation(
                "action",
                "action 必须是 accept 或 reject",
            ))
        }
    };
    social::answer_request(
        &core,
        &meta(&ctx, &caller),
        caller.number,
        request_id,
        accept,
    )
    .await?;
    Ok(done("好友请求已处理"))
}

/// `DELETE /friends/{friend_id}`.
#[utoipa::path(delete, path = "/api/v1/friends/{friend_id}", tag = "chat8", params(("friend_id" = i64, Path, description = "A friend's user id")), security(("session" = [])), responses((status = 200, description = "好友已删除", body = Done), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn unfriend(
    State(core): State<Core>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
    Path(friend_id): Path<String>,
) -> Result<impl IntoResponse> {
    let friend = path_id(&friend_id, "FRIEND_001", "好友关系")?;
    social::remove_friend(&core, &meta(&ctx, &caller), caller.number, friend)
        .await
        .map_err(|e| match e {
            // nothing to delete: not found, rather than forbidden
            SocialError::NotFriends => {
                Chat8Error::new(StatusCode::NOT_FOUND, "FRIEND_001", "好友关系不存在")
            }
            other => other.into(),
        })?;
    Ok(done("好友已删除"))
}

// --------------------------------------------------------------- messages

#[derive(Deserialize)]
pub struct SendBody {
    receiver_id: i64,
    content: String,
    #[serde(default)]
    message_type: Option<String>,
    #[serde(default)]
    is_encrypted: Option<bool>,
}

/// `POST /messages`: 201 with the message.
#[utoipa::path(post, path = "/api/v1/messages", tag = "chat8", request_body = SendMessage, security(("session" = [])), responses((status = 201, description = "消息已发送", body = Envelope<Sent>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn send(
    State(core): State<Core>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
    C8Json(body): C8Json<SendBody>,
) -> Result<impl IntoResponse> {
    let kind = DirectKind::parse(body.message_type.as_deref().unwrap_or("text"))
        .map_err(field("message_type"))?;
    let content = DirectContent::parse(&body.content).map_err(field("content"))?;
    if body.receiver_id <= 0 {
        return Err(SocialError::UnknownUser.into());
    }
    let encrypted = body.is_encrypted.unwrap_or(false);
    let sent = social::send_message(
        &core,
        &meta(&ctx, &caller),
        caller.number,
        body.receiver_id,
        kind,
        content.clone(),
        encrypted,
    )
    .await?;
    let data = json!({
        "id": sent.message_id,
        "sender_id": caller.number,
        "receiver_id": body.receiver_id,
        "content": content.as_str(),
        "message_type": kind.as_str(),
        "timestamp": format_time(sent.at),
        "is_encrypted": encrypted,
    });
    Ok((StatusCode::CREATED, ok("消息已发送", data)))
}

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<String>,
    limit: Option<String>,
}

/// Messages per page at most.
pub const PAGE_MAX: i64 = 100;

/// `GET /messages/{friend_id}?page=&limit=`: page 1 is the newest; within a
/// page, oldest first.
#[utoipa::path(get, path = "/api/v1/messages/{id}", tag = "chat8", params(("id" = i64, Path, description = "The friend's user id"), doc::PageQuery), security(("session" = [])), responses((status = 200, description = "The conversation with a friend, newest first", body = Envelope<History>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn history(
    State(core): State<Core>,
    Bearer(caller): Bearer,
    Path(other): Path<String>,
    q: std::result::Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse> {
    let other = path_id(&other, "USER_001", "用户")?;
    let q = q.map(|Query(q)| q).unwrap_or(PageQuery {
        page: None,
        limit: None,
    });
    let number =
        |raw: &Option<String>, name: &'static str, default: i64, max: i64| -> Result<i64> {
            match raw {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        Chat8Error::validation(name, format!("{name} 必须是 1 到 {max} 的整数"))
                    }),
            }
        };
    let page = number(&q.page, "page", 1, 1_000_000)?;
    let limit = number(&q.limit, "limit", 50, PAGE_MAX)?;
    if projections::accounts::by_number(&core.pool, other)
        .await?
        .is_none()
    {
        return Err(SocialError::UnknownUser.into());
    }
    let pair = aggregates::social::pair_id(caller.number, other);
    let (rows, total) = read::page(&core.pool, &pair, caller.number, page, limit).await?;
    let messages: Vec<Value> = rows
        .iter()
        .map(|m| {
            json!({
                "id": m.message_id,
                "sender_id": m.sender_id,
                "receiver_id": m.receiver_id,
                "content": m.content.clone().unwrap_or_default(),
                "message_type": m.message_type,
                "timestamp": format_time(m.sent_at),
                "is_read": m.is_read,
                "is_encrypted": m.is_encrypted,
            })
        })
        .collect();
    let pages = (total + limit - 1) / limit;
    Ok(ok(
        "获取成功",
        json!({
            "messages": messages,
            "pagination": { "page": page, "limit": limit, "total": total, "pages": pages },
        }),
    ))
}

/// `PUT /messages/{message_id}/read`.
#[utoipa::path(put, path = "/api/v1/messages/{message_id}/read", tag = "chat8", params(("message_id" = i64, Path, description = "A message to the caller")), security(("session" = [])), responses((status = 200, description = "消息已标记为已读", body = Done), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn mark_read(
    State(core): State<Core>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
    Path(message_id): Path<String>,
) -> Result<impl IntoResponse> {
    let id = path_id(&message_id, "MESSAGE_001", "消息")?;
    social::mark_read(&core, &meta(&ctx, &caller), caller.number, id).await?;
    Ok(done("消息已标记为已读"))
}

/// `DELETE /messages/{message_id}`.
#[utoipa::path(delete, path = "/api/v1/messages/{id}", tag = "chat8", params(("id" = i64, Path, description = "A message the caller sent")), security(("session" = [])), responses((status = 200, description = "消息已删除", body = Done), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn delete(
    State(core): State<Core>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
    Path(message_id): Path<String>,
) -> Result<impl IntoResponse> {
    let id = path_id(&message_id, "MESSAGE_001", "消息")?;
    social::delete_message(&core, &meta(&ctx, &caller), caller.number, id).await?;
    Ok(done("消息已删除"))
}

// ------------------------------------------------------------------- keys

#[derive(Deserialize)]
pub struct KeysBody {
    public_key: String,
    private_key_encrypted: String,
}

/// `POST /encryption/keys`: the private key arrives encrypted by the client
/// and is kept opaque (never logged; only its owner reads it back).
#[utoipa::path(post, path = "/api/v1/encryption/keys", tag = "chat8", request_body = Keys, security(("session" = [])), responses((status = 200, description = "密钥对已更新", body = Done), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn publish_keys(
    State(core): State<Core>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
    C8Json(body): C8Json<KeysBody>,
) -> Result<impl IntoResponse> {
    let public = PublicKey::parse(&body.public_key).map_err(field("public_key"))?;
    let sealed =
        SealedKey::parse(&body.private_key_encrypted).map_err(field("private_key_encrypted"))?;
    social::publish_keys(&core, &meta(&ctx, &caller), caller.number, public, sealed).await?;
    Ok(done("密钥对已更新"))
}

/// `GET /encryption/keys` (beyond the seed): the caller's own pair.
#[utoipa::path(get, path = "/api/v1/encryption/keys", tag = "chat8", security(("session" = [])), responses((status = 200, description = "The caller's key pair", body = Envelope<OwnKeys>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn my_keys(
    State(core): State<Core>,
    Bearer(caller): Bearer,
) -> Result<impl IntoResponse> {
    let k = read::keys(&core.pool, caller.number)
        .await?
        .ok_or_else(|| Chat8Error::new(StatusCode::NOT_FOUND, "ENCRYPT_001", "加密密钥不存在"))?;
    Ok(ok(
        "获取成功",
        json!({
            "user_id": k.user_id,
            "public_key": k.public_key,
            "private_key_encrypted": k.private_key_encrypted,
            "updated_at": format_time(k.updated_at),
        }),
    ))
}

/// `GET /encryption/public-key/{user_id}`.
#[utoipa::path(get, path = "/api/v1/encryption/public-key/{user_id}", tag = "chat8", params(("user_id" = i64, Path, description = "A user id")), security(("session" = [])), responses((status = 200, description = "A user's public key", body = Envelope<doc::PublicKey>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn public_key(
    State(core): State<Core>,
    Bearer(_caller): Bearer,
    Path(user): Path<String>,
) -> Result<impl IntoResponse> {
    let user = path_id(&user, "ENCRYPT_001", "加密密钥")?;
    let k = read::keys(&core.pool, user)
        .await?
        .ok_or_else(|| Chat8Error::new(StatusCode::NOT_FOUND, "ENCRYPT_001", "加密密钥不存在"))?;
    Ok(ok(
        "获取成功",
        json!({ "user_id": k.user_id, "public_key": k.public_key }),
    ))
}

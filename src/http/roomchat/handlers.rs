//! Thin handlers: contract request -> domain command -> contract response.

use aggregates::values::{AccountNumber, DisplayName, MessageId, RoomId};
use aggregates::{ChatRoomCommand, Member};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use projections::{accounts, roomchat};
use uuid::Uuid;

use super::dto::*;
use super::error::{Failure, RoomChatError};
use super::extract::{AuthUser, RcJson, RcQuery};
use super::RoomChatState;
use super::{READ_MODELS, SURFACE};
use crate::auth::Caller;
use crate::http::context::RequestContext;
use crate::identity::{self, NewAccount};
use crate::store::{CommandMeta, LogPosition};

type Result<T> = std::result::Result<T, RoomChatError>;

/// The metadata actor for an account: `user:<uuid>`.
pub(super) fn actor_of(account_id: Uuid) -> String {
    format!("user:{account_id}")
}

fn actor(caller: &Caller) -> String {
    actor_of(caller.account_id)
}

pub(super) fn member_of(caller: &Caller) -> Result<Member> {
    Ok(Member {
        number: AccountNumber::new(caller.number)?,
        username: DisplayName::parse(&caller.username)?,
    })
}

async fn next_id(state: &RoomChatState, sequence: &'static str) -> Result<i64> {
    Ok(state.sequences.next(&state.pool, sequence).await?)
}

#[utoipa::path(post, path = "/register", tag = "roomchat", request_body = CredentialsRequest,
    responses((status = 200, description = "注册成功", body = Envelope<UserDto>), (status = "4XX", description = "Rejected: bad input, no session, not a member, unknown room", body = Failure)))]
pub async fn register(
    State(state): State<RoomChatState>,
    ctx: RequestContext,
    RcJson(body): RcJson<CredentialsRequest>,
) -> Result<impl IntoResponse> {
    let new = NewAccount::try_from(body)?;
    let username = new
        .username
        .clone()
        .expect("room chat registers by username");
    let registered =
        identity::register(&state.core, &ctx.meta(SURFACE, "anonymous".into()), new).await?;
    Ok(ok(
        "注册成功",
        UserDto {
            id: registered.number,
            username: username.as_str().to_owned(),
        },
    ))
}

#[utoipa::path(post, path = "/login", tag = "roomchat", request_body = CredentialsRequest,
    responses((status = 200, description = "登录成功: the session token", body = Envelope<LoginDto>), (status = "4XX", description = "Rejected: bad input, no session, not a member, unknown room", body = Failure)))]
pub async fn login(
    State(state): State<RoomChatState>,
    ctx: RequestContext,
    RcJson(body): RcJson<CredentialsRequest>,
) -> Result<impl IntoResponse> {
    let ttl = state.config.jwt_ttl;
    let (account, session) = identity::sign_in(
        &state.core,
        &state.identity,
        &ctx.meta(SURFACE, "anonymous".into()),
        &body.username,
        &body.password,
        ttl,
    )
    .await?;
    Ok(ok(
        "登录成功",
        LoginDto {
            token: session.token,
            user: UserDto {
                id: account.number,
                username: account.display_name(),
            },
        },
    ))
}

#[utoipa::path(post, path = "/api/room/create", tag = "roomchat", request_body = CreateRoomRequest,
    security(("session" = [])),
    responses((status = 200, description = "创建成功", body = Envelope<RoomDto>), (status = "4XX", description = "Rejected: bad input, no session, not a member, unknown room", body = Failure)))]
pub async fn create_room(
    State(state): State<RoomChatState>,
    ctx: RequestContext,
    AuthUser(caller): AuthUser,
    RcJson(body): RcJson<CreateRoomRequest>,
) -> Result<impl IntoResponse> {
    let room = NewRoom::try_from(body)?;
    let creator = member_of(&caller)?;
    let room_id = RoomId::new(next_id(&state, "chat_room_ids").await?)?;
    let at = crate::store::now();
    let meta = ctx.meta(SURFACE, actor(&caller));
    let pos = state
        .store
        .execute(&state.store.rooms, &room_id.to_string(), &meta, || {
            ChatRoomCommand::CreateRoom {
                room_id,
                name: room.name.clone(),
                description: room.description.clone(),
                creator: creator.clone(),
                at,
            }
        })
        .await?;
    state.settle(READ_MODELS, pos).await;
    let tz = state.config.timezone;
    Ok(ok(
        "创建成功",
        RoomDto::new(
            room_id.get(),
            room.name.as_str(),
            room.description.as_str(),
            at,
            at,
            tz,
        ),
    ))
}

#[utoipa::path(get, path = "/api/room/list", tag = "roomchat", security(("session" = [])),
    responses((status = 200, description = "The caller's rooms", body = Envelope<Vec<RoomDto>>), (status = "4XX", description = "Rejected: bad input, no session, not a member, unknown room", body = Failure)))]
pub async fn list_rooms(
    State(state): State<RoomChatState>,
    AuthUser(caller): AuthUser,
) -> Result<impl IntoResponse> {
    let tz = state.config.timezone;
    let rooms = roomchat::rooms_of(&state.pool, caller.number).await?;
    Ok(ok(
        "获取成功",
        rooms
            .iter()
            .map(|r| RoomDto::from_row(r, tz))
            .collect::<Vec<_>>(),
    ))
}

/// Rooms are visible to their members only; others learn whether it exists.
async fn require_member(state: &RoomChatState, room_id: RoomId, caller: &Caller) -> Result<()> {
    if !roomchat::is_member(&state.pool, room_id.get(), caller.number).await? {
        return Err(match roomchat::room(&state.pool, room_id.get()).await? {
            None => RoomChatError::not_found("房间不存在"),
            Some(_) => RoomChatError::forbidden("你不是该房间的成员"),
        });
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/room/members", tag = "roomchat", params(RoomQuery),
    security(("session" = [])),
    responses((status = 200, description = "The room's members", body = Envelope<Vec<MemberDto>>), (status = "4XX", description = "Rejected: bad input, no session, not a member, unknown room", body = Failure)))]
pub async fn members(
    State(state): State<RoomChatState>,
    AuthUser(caller): AuthUser,
    RcQuery(q): RcQuery<RoomQuery>,
) -> Result<impl IntoResponse> {
    let room_id = RoomId::new(q.room_id)?;
    require_member(&state, room_id, &caller).await?;
    let tz = state.config.timezone;
    let rows = roomchat::members(&state.pool, room_id.get()).await?;
    Ok(ok(
        "获取成功",
        rows.iter()
            .map(|r| MemberDto::from_row(r, tz))
            .collect::<Vec<_>>(),
    ))
}

#[utoipa::path(post, path = "/api/room/add_user", tag = "roomchat", request_body = AddUserRequest,
    security(("session" = [])),
    responses((status = 200, description = "添加用户到聊天室成功 (`data` null)", body = Envelope<Option<String>>), (status = "4XX", description = "Rejected: bad input, no session, not a member, unknown room", body = Failure)))]
pub async fn add_user(
    State(state): State<RoomChatState>,
    ctx: RequestContext,
    AuthUser(caller): AuthUser,
    RcJson(body): RcJson<AddUserRequest>,
) -> Result<impl IntoResponse> {
    let req = AddUser::try_from(body)?;
    let account = accounts::by_number(&state.pool, req.user_id.get())
        .await?
        .ok_or_else(|| RoomChatError::not_found("用户不存在"))?;
    let member = Member {
        number: req.user_id,
        username: DisplayName::parse(&account.display_name())?,
    };
    let actor_number = AccountNumber::new(caller.number)?;
    let at = crate::store::now();
    let meta = ctx.meta(SURFACE, actor(&caller));
    let pos = state
        .store
        .execute(&state.store.rooms, &req.room_id.to_string(), &meta, || {
            ChatRoomCommand::AddMember {
                actor: actor_number,
                member: member.clone(),
                role: req.role,
                at,
            }
        })
        .await?;
    state.settle(READ_MODELS, pos).await;
    Ok(ok("添加用户到聊天室成功", ()))
}

/// Posts a message; shared by `POST /api/message/send` and the WebSocket.
pub(super) async fn post_message(
    state: &RoomChatState,
    meta: &CommandMeta,
    caller: &Caller,
    msg: NewMessage,
) -> Result<(MessageDto, Option<LogPosition>)> {
    let sender = member_of(caller)?;
    let message_id = MessageId::new(next_id(state, "chat_message_ids").await?)?;
    let at = crate::store::now();
    let pos = state
        .store
        .execute(&state.store.rooms, &msg.room_id.to_string(), meta, || {
            ChatRoomCommand::PostMessage {
                message_id,
                sender: sender.clone(),
                kind: msg.kind.clone(),
                content: msg.content.clone(),
                at,
            }
        })
        .await?;
    let row = roomchat::MessageRow {
        message_id: message_id.get(),
        room_id: msg.room_id.get(),
        sender_id: caller.number,
        sender_name: caller.username.clone(),
        kind: msg.kind.as_str().to_owned(),
        content: msg.content.as_str().to_owned(),
        sent_at: at,
    };
    let dto = MessageDto::from_row(row, state.config.timezone);
    Ok((dto, pos))
}

#[utoipa::path(post, path = "/api/message/send", tag = "roomchat", request_body = SendRequest,
    security(("session" = [])),
    responses((status = 200, description = "发送成功", body = Envelope<MessageDto>), (status = "4XX", description = "Rejected: bad input, no session, not a member, unknown room", body = Failure)))]
pub async fn send_message(
    State(state): State<RoomChatState>,
    ctx: RequestContext,
    AuthUser(caller): AuthUser,
    RcJson(body): RcJson<SendRequest>,
) -> Result<impl IntoResponse> {
    let msg = NewMessage::try_from(body)?;
    let meta = ctx.meta(SURFACE, actor(&caller));
    let (dto, pos) = post_message(&state, &meta, &caller, msg).await?;
    state.settle_on_read(READ_MODELS, pos).await;
    Ok(ok("发送成功", dto))
}

#[utoipa::path(get, path = "/api/message/list", tag = "roomchat", params(ListMessagesQuery),
    security(("session" = [])),
    responses((status = 200, description = "A page of history before `last_message_id`", body = Envelope<Vec<MessageDto>>), (status = "4XX", description = "Rejected: bad input, no session, not a member, unknown room", body = Failure)))]
pub async fn list_messages(
    State(state): State<RoomChatState>,
    AuthUser(caller): AuthUser,
    RcQuery(q): RcQuery<ListMessagesQuery>,
) -> Result<Response> {
    let page = MessagePage::try_from(q)?;
    let cache = &state.room_pages;
    if let Some(kept) = cache.get(&state.progress, &page, caller.number) {
        return Ok(kept);
    }
    let since = cache.stand(&state.progress);
    let rows = roomchat::messages_before(
        &state.pool,
        page.room_id.get(),
        caller.number,
        page.before,
        page.limit,
    )
    .await?;
    if rows.is_empty() {
        // an empty page, or not the caller's room to read
        require_member(&state, page.room_id, &caller).await?;
    }
    let tz = state.config.timezone;
    let body = serde_json::to_vec(&Envelope {
        code: 0,
        msg: "历史消息获取成功",
        data: rows
            .into_iter()
            .map(|r| MessageDto::from_row(r, tz))
            .collect::<Vec<_>>(),
    })
    .map_err(RoomChatError::internal)?;
    Ok(cache.keep(&page, caller.number, since, body))
}

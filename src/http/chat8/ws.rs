//! Chat8's socket, `GET /ws/{user_id}?token=<access token>[&since=<seq>]`.
//!
//! A token that is missing, forged or ended closes the socket with 4001, a
//! `user_id` that is not the token's account with 4003 — before anything
//! is sent. Then, with `since`, the frames the client missed after that
//! cursor come first, in order (at most [`feed::REPLAY_MAX`]; beyond, or
//! for a cursor that is not one, a `resync` frame tells it to refetch over
//! REST); then what happens, as it happens. Frames from the log carry their
//! cursor `seq` (and `new_message` also `data.event_id`).
//!
//! Client frames: `ping` → `pong`; `voice_call_invite` / `video_call_invite`
//! `{to_user_id}` (a friend) → `call_created {call_id, to_user_id, type}`
//! to the caller and the invite to the friend's sockets; `call_accept` /
//! `call_reject` / `call_end` `{call_id}` → `call_accepted` /
//! `call_rejected` / `call_ended` to the other party. A frame that is
//! refused answers `error {code, message}` with the REST codes.

use super::schema::{Failure, SocketQuery};
use std::collections::HashMap;
use std::sync::Arc;

use aggregates::social::{CallAction, CallKind};
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::Chat8Error;
use super::Chat8State;
use super::{timestamp, SURFACE};
use crate::auth::Caller;
use crate::core::Core;
use crate::http::context::RequestContext;
use crate::http::socket::{close_ended, SessionWatch};
use crate::identity::{self, Authenticator};
use crate::social::feed::{self, Frame, SocialHub};
use crate::social::{self, presence, SocialError};
use crate::store::LogPosition;

const MAX_FRAME: usize = 16 * 1024;
/// The token was missing, forged or ended (or the session ended since).
pub use crate::http::socket::CLOSE_UNAUTHORIZED;
/// The path's user id is not the token's account.
pub const CLOSE_FORBIDDEN: u16 = 4003;

/// What the socket takes from the application.
#[derive(Clone)]
pub struct Sockets {
    core: Core,
    hub: Arc<SocialHub>,
    auth: Authenticator,
}

impl FromRef<Chat8State> for Sockets {
    fn from_ref(state: &Chat8State) -> Self {
        Self {
            core: state.core.clone(),
            hub: state.hub.clone(),
            auth: state.auth.clone(),
        }
    }
}

/// Why a socket is refused, told by its close code.
enum Refusal {
    Unauthorized,
    Forbidden,
}

#[utoipa::path(get, path = "/ws/{user_id}", tag = "chat8", params(("user_id" = i64, Path, description = "The caller's own user id"), SocketQuery), responses((status = 101, description = "The socket: frames `{type, data, seq}` (`new_message`, `friend_request`, `user_status`, …); closes 4001 for a bad token, 4003 for another user's id"), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn upgrade(
    State(s): State<Sockets>,
    ctx: RequestContext,
    Path(user_id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws.max_message_size(MAX_FRAME),
        Err(_) => {
            return Chat8Error::new(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "需要 WebSocket 升级请求",
            )
            .into_response()
        }
    };
    let query = query.map(|q| q.0).unwrap_or_default();
    let caller = match query.get("token") {
        None => Err(Refusal::Unauthorized),
        Some(token) => match s.auth.authenticate(token).await {
            Ok(c) if user_id.parse::<i64>().ok() == Some(c.number) => Ok(c),
            Ok(_) => Err(Refusal::Forbidden),
            Err(_) => Err(Refusal::Unauthorized),
        },
    };
    let since = query.get("since").map(|raw| feed::parse_cursor(raw));
    ws.on_upgrade(move |socket| async move {
        match caller {
            Ok(caller) => session(socket, s, ctx, caller, since).await,
            Err(r) => refuse(socket, r).await,
        }
    })
}

async fn refuse(mut socket: WebSocket, why: Refusal) {
    let (code, reason) = match why {
        Refusal::Unauthorized => (CLOSE_UNAUTHORIZED, "unauthorized"),
        Refusal::Forbidden => (CLOSE_FORBIDDEN, "forbidden"),
    };
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

fn frame(kind: &str, data: Value) -> String {
    json!({ "type": kind, "data": data, "timestamp": timestamp() }).to_string()
}

fn error_frame(e: Chat8Error) -> String {
    frame("error", json!({ "code": e.code, "message": e.message }))
}

async fn session(
    mut socket: WebSocket,
    s: Sockets,
    ctx: RequestContext,
    caller: Caller,
    since: Option<Option<LogPosition>>,
) {
    // subscribed before the replay's end is read: nothing falls between
    let mut sub = s.hub.sockets.subscribe(caller.number, caller.session_id);
    let conn = sub.id();
    // an end the feed passed before the subscription shows in the table
    let mut watch = SessionWatch::new(s.auth.clone(), &caller);
    if !watch.open().await {
        close_ended(&mut socket).await;
        return;
    }
    if let Err(e) =
        presence::opened(&s.core, &s.hub.node, conn, caller.account_id, caller.number).await
    {
        tracing::warn!(error = %e, "recording a socket failed");
    }
    let (upto, first) = catch_up(&s, caller.number, since).await;
    for text in first {
        if send(&mut socket, text).await.is_err() {
            return end(s, conn, caller);
        }
    }
    tracing::debug!(user = caller.number, "chat8 socket connected");
    loop {
        tokio::select! {
            // an ended session is told as such, before its queue's end
            biased;
            _ = &mut sub.ended => {
                close_ended(&mut socket).await;
                break;
            }
            _ = watch.expired() => {
                close_ended(&mut socket).await;
                break;
            }
            pushed = sub.rx.recv() => {
                let Some(Frame { at, text }) = pushed else {
                    // dropped for falling behind, or the server stops
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                };
                if upto.is_some_and(|u| at <= u) {
                    continue; // replayed already
                }
                if send(&mut socket, text.to_string()).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                if !watch.open().await {
                    close_ended(&mut socket).await;
                    break;
                }
                let answer = match handle(&s.core, &ctx, &caller, &text).await {
                    Ok(a) => a,
                    Err(e) => Some(error_frame(e)),
                };
                if let Some(a) = answer {
                    if send(&mut socket, a).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    drop(sub);
    end(s, conn, caller)
}

/// What a socket is sent before it goes live, and the position live frames
/// start after: with `since`, the frames it missed up to the feed's limit,
/// or a `resync` when that cannot be had; without, nothing (its REST reads
/// show what came before).
async fn catch_up(
    s: &Sockets,
    user: i64,
    since: Option<Option<LogPosition>>,
) -> (Option<LogPosition>, Vec<String>) {
    let resync = |data: Value| vec![frame("resync", data)];
    let since = match since {
        // a new session starts from what its REST reads already show:
        // frames of earlier changes are not pushed to it
        None => return (feed::limit(&s.core).await.ok(), vec![]),
        Some(None) => return (None, resync(json!({ "reason": "invalid_cursor" }))),
        Some(Some(since)) => since,
    };
    let cp = match feed::limit(&s.core).await {
        Ok(cp) => cp,
        Err(e) => {
            tracing::warn!(error = %e, "replaying a socket's missed frames failed");
            return (None, resync(json!({ "reason": "unavailable" })));
        }
    };
    let first = match feed::replay(&s.core.pool, user, since, cp).await {
        Ok(Some(frames)) => frames.into_iter().map(|f| f.text.to_string()).collect(),
        Ok(None) => resync(json!({ "reason": "too_far_behind", "max": feed::REPLAY_MAX })),
        Err(e) => {
            tracing::warn!(error = %e, "replaying a socket's missed frames failed");
            resync(json!({ "reason": "unavailable" }))
        }
    };
    (Some(cp), first)
}

async fn send(socket: &mut WebSocket, text: String) -> Result<(), axum::Error> {
    socket.send(Message::Text(text.into())).await
}

fn end(s: Sockets, conn: u64, caller: Caller) {
    tokio::spawn(presence::closed(
        s.core,
        s.hub.node.clone(),
        conn,
        caller.account_id,
        caller.number,
    ));
}

#[derive(Deserialize)]
struct ClientFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
}

fn bad(message: impl Into<String>) -> Chat8Error {
    Chat8Error::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
}

async fn handle(
    core: &Core,
    ctx: &RequestContext,
    caller: &Caller,
    text: &str,
) -> Result<Option<String>, Chat8Error> {
    let f: ClientFrame = serde_json::from_str(text).map_err(|e| bad(format!("无效的消息: {e}")))?;
    // each frame is its own request: a fresh request id, same correlation
    let mut fctx = ctx.clone();
    fctx.request_id = uuid::Uuid::now_v7().to_string();
    let meta = fctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let kind = match f.kind.as_str() {
        "ping" => {
            return Ok(Some(
                json!({ "type": "pong", "timestamp": timestamp() }).to_string(),
            ));
        }
        "voice_call_invite" => Some(CallKind::Voice),
        "video_call_invite" => Some(CallKind::Video),
        _ => None,
    };
    if let Some(kind) = kind {
        let to = f
            .data
            .get("to_user_id")
            .and_then(Value::as_i64)
            .filter(|n| *n > 0)
            .ok_or_else(|| Chat8Error::validation("to_user_id", "to_user_id 必须是用户 ID"))?;
        let call_id = social::invite_call(core, &meta, kind, caller.number, to)
            .await
            .map_err(Chat8Error::from)?;
        let data = json!({ "call_id": call_id, "to_user_id": to, "type": f.kind });
        return Ok(Some(frame("call_created", data)));
    }
    let action = match f.kind.as_str() {
        "call_accept" => CallAction::Accept,
        "call_reject" => CallAction::Reject,
        "call_end" => CallAction::End,
        other => return Err(bad(format!("未知的消息类型: {other}"))),
    };
    let call_id = f
        .data
        .get("call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| Chat8Error::validation("call_id", "call_id 必须是字符串"))?;
    social::answer_call(core, &meta, call_id, caller.number, action)
        .await
        .map_err(|e: SocialError| Chat8Error::from(e))?;
    Ok(None)
}

//! `GET /api/message/ws`: greeting, sends, and pushes from the live feed.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;

use super::dto::{Envelope, NewMessage, SendRequest};
use super::error::{Failure, RoomChatError};
use super::extract::AuthUser;
use super::handlers::{actor_of, post_message};
use super::RoomChatState;
use super::SURFACE;
use crate::auth::Caller;
use crate::http::context::RequestContext;
use crate::http::socket::{close_ended, SessionWatch};

const MAX_FRAME: usize = 64 * 1024;

/// The room socket: frames `{code, msg, data}` both ways; see the seed.
#[utoipa::path(get, path = "/api/message/ws", tag = "roomchat",
    params(("token" = Option<String>, Query, description = "The session token, for browsers that cannot set headers")),
    security(("session" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket: `连接成功` first, then `新消息` pushes"),
        (status = "4XX", description = "No session, or not a WebSocket handshake", body = Failure),
    ))]
pub async fn upgrade(
    State(state): State<RoomChatState>,
    ctx: RequestContext,
    AuthUser(caller): AuthUser,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, RoomChatError> {
    let ws = ws.map_err(|e| RoomChatError::new(e.status(), e.body_text()))?;
    Ok(ws
        .max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| session(socket, state, ctx, caller)))
}

fn envelope(msg: &'static str) -> String {
    serde_json::to_string(&Envelope {
        code: 0,
        msg,
        data: (),
    })
    .expect("static envelope")
}

async fn session(mut socket: WebSocket, state: RoomChatState, ctx: RequestContext, caller: Caller) {
    let mut sub = state.hub.subscribe(caller.number, caller.session_id);
    // an end the feed passed before the subscription shows in the table
    let mut watch = SessionWatch::new(state.auth.clone(), &caller);
    if !watch.open().await {
        close_ended(&mut socket).await;
        return;
    }
    if socket
        .send(Message::Text(envelope("连接成功").into()))
        .await
        .is_err()
    {
        return;
    }
    tracing::debug!(user = caller.number, "websocket connected");
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
                let Some(text) = pushed else {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
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
                if let Err(e) = handle_frame(&state, &ctx, &caller, &text).await {
                    if socket.send(Message::Text(e.body().into())).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

/// A frame is a send request; its push comes back through the live feed.
async fn handle_frame(
    state: &RoomChatState,
    ctx: &RequestContext,
    caller: &Caller,
    text: &str,
) -> Result<(), RoomChatError> {
    let req: SendRequest = serde_json::from_str(text)
        .map_err(|e| RoomChatError::bad_request(format!("参数错误: {e}")))?;
    let msg = NewMessage::try_from(req)?;
    // Each frame is its own request: a fresh request id, same correlation.
    let mut frame_ctx = ctx.clone();
    frame_ctx.request_id = uuid::Uuid::now_v7().to_string();
    let meta = frame_ctx.meta(SURFACE, actor_of(caller.account_id));
    post_message(state, &meta, caller, msg).await.map(|_| ())
}

//! Room chat (seed 004): `/register`, `/login`, `/api/room/*`,
//! `/api/message/*`, envelope `{code, msg, data}`.

mod cache;
mod dto;
mod error;
mod extract;
pub mod feed;
mod handlers;
mod state;
mod ws;

use aggregates::ChatRoomEvent;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono_tz::Tz;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use cache::PageCache;
pub use error::RoomChatError;
pub use state::RoomChatState;

use crate::config::Config;

pub const SURFACE: &str = "roomchat";
/// Projections a room-chat command waits for before answering.
pub(crate) const READ_MODELS: &[&str] = &["roomchat"];

/// The surface's routes with their documentation.
pub fn routes(_: &Config) -> OpenApiRouter<RoomChatState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::register))
        .routes(routes!(handlers::login))
        .routes(routes!(handlers::create_room))
        .routes(routes!(handlers::list_rooms))
        .routes(routes!(handlers::members))
        .routes(routes!(handlers::add_user))
        .routes(routes!(handlers::send_message))
        .routes(routes!(handlers::list_messages))
        .routes(routes!(ws::upgrade))
}

pub fn router(config: &Config) -> Router<RoomChatState> {
    routes(config)
        .split_for_parts()
        .0
        .method_not_allowed_fallback(method_not_allowed)
}

async fn method_not_allowed() -> RoomChatError {
    RoomChatError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "请求方法不允许")
}

pub async fn not_found(uri: Uri) -> Response {
    RoomChatError::not_found(format!("接口不存在: {}", uri.path())).into_response()
}

/// The `新消息` push for a posted message, as the seed shows it.
pub fn push_text(event: &ChatRoomEvent, tz: Tz) -> Option<String> {
    let ChatRoomEvent::MessagePosted {
        room_id,
        message_id,
        sender_id,
        sender_name,
        kind,
        content,
        sent_at,
    } = event
    else {
        return None;
    };
    let row = projections::roomchat::MessageRow {
        message_id: *message_id,
        room_id: *room_id,
        sender_id: *sender_id,
        sender_name: sender_name.clone(),
        kind: kind.clone(),
        content: content.clone(),
        sent_at: *sent_at,
    };
    let data = dto::MessageDto::from_row(row, tz);
    serde_json::to_string(&dto::Envelope {
        code: 0,
        msg: "新消息",
        data,
    })
    .ok()
}

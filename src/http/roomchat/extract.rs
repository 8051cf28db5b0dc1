//! Extractors that answer bad input with the room-chat envelope.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::RoomChatError;
use super::RoomChatState;
use crate::auth::Caller;
use crate::http::body::{self, BodyError};
use crate::identity::AuthFailure;

/// A JSON body. The content type is not insisted on (the frontend's own
/// client decides it); size, syntax and shape are.
pub struct RcJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for RcJson<T> {
    type Rejection = RoomChatError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        body::json(req, state).await.map(RcJson).map_err(|e| {
            let msg = match &e {
                BodyError::TooLarge => "请求体过大".to_owned(),
                BodyError::Unreadable(_) => "无法读取请求体".to_owned(),
                BodyError::Empty => "参数错误: 请求体为空".to_owned(),
                BodyError::Syntax => "参数错误: JSON 格式不正确".to_owned(),
                BodyError::NotJson => "参数错误: 请求体必须是 JSON".to_owned(),
                BodyError::Shape(detail) => format!("参数错误: {detail}"),
            };
            RoomChatError::new(e.status(), msg)
        })
    }
}

/// Query-string parameters.
pub struct RcQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for RcQuery<T> {
    type Rejection = RoomChatError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        query_of(&parts.uri).map(RcQuery)
    }
}

fn query_of<T: DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, RoomChatError> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|axum::extract::Query(v)| v)
        .map_err(|e| RoomChatError::bad_request(format!("参数错误: {}", e.body_text())))
}

/// The signed-in caller: `Authorization: <token>` / `Bearer <token>`, or
/// `?token=` (browsers cannot set headers on a WebSocket).
pub struct AuthUser(pub Caller);

impl FromRequestParts<RoomChatState> for AuthUser {
    type Rejection = RoomChatError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &RoomChatState,
    ) -> Result<Self, Self::Rejection> {
        let token = match crate::http::session::token_of(&parts.headers, false)? {
            Some(t) => t,
            None => query_token(&parts.uri).ok_or(AuthFailure::Missing)?,
        };
        Ok(AuthUser(state.auth.authenticate(&token).await?))
    }
}

fn query_token(uri: &axum::http::Uri) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct T {
        token: Option<String>,
    }
    query_of::<T>(uri).ok()?.token.filter(|t| !t.is_empty())
}

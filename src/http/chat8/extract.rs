//! Extractors answering bad input with Chat8's envelope.

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::Chat8Error;
use crate::auth::Caller;
use crate::http::body;
use crate::identity::{AuthFailure, Authenticator};

pub struct C8Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for C8Json<T> {
    type Rejection = Chat8Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(C8Json(body::json(req, state).await?))
    }
}

/// `Authorization: Bearer <token>` of a session that is still open.
pub struct Bearer(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Bearer
where
    Authenticator: FromRef<S>,
{
    type Rejection = Chat8Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Chat8Error> {
        let token =
            crate::http::session::token_of(&parts.headers, false)?.ok_or(AuthFailure::Missing)?;
        Ok(Bearer(
            Authenticator::from_ref(state).authenticate(&token).await?,
        ))
    }
}

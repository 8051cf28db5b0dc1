//! Thin handlers over the identity service.

use super::schema::{Done, Envelope, Failure, LoggedIn};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use serde_json::json;

use super::error::LiveError;
use super::LiveSurface;
use super::{uid_of, SURFACE};
use crate::http::context::RequestContext;
use crate::identity::{self, AuthFailure};

type Result<T> = std::result::Result<T, LiveError>;

pub(super) async fn session(
    state: &LiveSurface,
    headers: &HeaderMap,
) -> std::result::Result<crate::auth::Caller, AuthFailure> {
    let token = crate::http::session::token_of(headers, true)?.ok_or(AuthFailure::Missing)?;
    state.auth.authenticate(&token).await
}

/// Signed in: the account's uid, name and coins; otherwise the guest
/// answer (`游客`, status false) — both with code 0, as the seed shows.
#[utoipa::path(get, path = "/api/users/is_logged_in", tag = "live", security(("session" = []), ("sessionCookie" = []), ()), responses((status = 200, description = "The account's uid, name and coins; a guest's answer without a session", body = Envelope<LoggedIn>), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn is_logged_in(
    State(state): State<LiveSurface>,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    let info = match session(&state, &headers).await {
        Ok(caller) => json!({
            "uid": uid_of(caller.account_id),
            "status": true,
            "uname": caller.username,
            "coin_num": projections::ledger::balance(&state.pool, caller.account_id, "coins")
                .await
                .map_err(LiveError::internal)?,
        }),
        Err(AuthFailure::Unavailable(err)) => return Err(LiveError::internal(err)),
        Err(_) => json!({ "uid": "", "status": false, "uname": "游客", "coin_num": 0 }),
    };
    Ok(axum::Json(
        json!({ "code": 0, "data": { "user_info": info } }),
    ))
}

/// Ends the session and clears the cookie.
#[utoipa::path(get, path = "/api/users/login_out", tag = "live", security(("session" = []), ("sessionCookie" = [])), responses((status = 200, description = "Signed out; the cookie cleared", body = Done), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn login_out(
    State(state): State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    let caller = session(&state, &headers).await?;
    identity::sign_out(&state.core, &ctx.meta(SURFACE, "anonymous".into()), &caller).await?;
    Ok((
        [(
            header::SET_COOKIE,
            crate::http::session::clear_cookie(&state.config.browser),
        )],
        axum::Json(json!({ "code": 0 })),
    ))
}

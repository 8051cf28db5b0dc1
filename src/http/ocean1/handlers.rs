//! Thin handlers: contract request -> identity commands -> contract response.

use aggregates::values::{DeviceId, Email};
use aggregates::{AccountCommand, DeviceCheck};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use projections::accounts::{self, AccountRow};
use serde_json::json;

use super::dto::*;
use super::error::OceanError;
use super::extract::{check_headers, header as header_of, session_of, OJson};
use super::Ocean1State;
use super::SURFACE;
use crate::http::context::RequestContext;
use crate::identity::{self, AuthFailure, IdentityError, LoginName, NewAccount, PURPOSE_EMAIL};

use super::schema::{Beat, Done, Failure, SignedIn};

type Result<T> = std::result::Result<T, OceanError>;

fn success_msg(msg: &str) -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "success", "msg": msg }))
}

/// Opens a single-device session and answers like a successful login, with
/// the session token in the body and as an HttpOnly cookie.
async fn signed_in(
    state: &Ocean1State,
    ctx: &RequestContext,
    account: &AccountRow,
    device: DeviceCheck,
) -> std::result::Result<Response, IdentityError> {
    let session = identity::open_session(
        &state.core,
        &state.identity,
        &ctx.meta(SURFACE, "anonymous".into()),
        account.account_id,
        device,
        true,
        state.config.jwt_ttl,
    )
    .await?;
    let points = projections::ledger::balance(&state.pool, account.account_id, "points")
        .await
        .map_err(|e| IdentityError::Internal(e.into()))?;
    let body = json!({
        "status": "success",
        "data": {
            "nickname": account.display_name(),
            "email": account.email,
            "points": points,
            "token": session.token,
            "invite_code": identity::invite_code_of(account.number),
        }
    });
    Ok((
        [(
            header::SET_COOKIE,
            crate::http::session::cookie(&session, &state.config.browser),
        )],
        axum::Json(body),
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/auth/send_code", tag = "ocean1", request_body = SendCodeRequest,
    responses((status = 200, description = "邮件已发送 (the same whether or not the address has an account)", body = Done), (status = "4XX", description = "Rejected: bad input, no session, wrong code or password, rate limited", body = Failure)))]
pub async fn send_code(
    State(state): State<Ocean1State>,
    ctx: RequestContext,
    OJson(body): OJson<SendCodeRequest>,
) -> Result<impl IntoResponse> {
    let email = Email::parse(&body.email)?;
    identity::limit(&state.core, "send_code", &email.key(), &ctx.client_ip).await?;
    // The same answer whether or not the address has an account.
    identity::send_code(
        &state.core,
        &state.identity,
        &ctx.meta(SURFACE, "anonymous".into()),
        &email,
        PURPOSE_EMAIL,
        "注册 / 重置密码",
    )
    .await?;
    Ok(success_msg("邮件已发送"))
}

#[utoipa::path(post, path = "/api/auth/register", tag = "ocean1", request_body = RegisterRequest,
    responses((status = 200, description = "Registered and signed in on this device", body = SignedIn), (status = "4XX", description = "Rejected: bad input, no session, wrong code or password, rate limited", body = Failure)))]
pub async fn register(
    State(state): State<Ocean1State>,
    ctx: RequestContext,
    headers: HeaderMap,
    OJson(body): OJson<RegisterRequest>,
) -> Result<impl IntoResponse> {
    let reg = Registration::try_from(body)?;
    let invited_by = match &reg.invite_code {
        None if state.config.invite_required => {
            return Err(OceanError::bad_request("需要邀请码"));
        }
        None => None,
        Some(code) => {
            let inviter = match identity::number_of_invite_code(code) {
                Some(n) => accounts::by_number(&state.pool, n).await?,
                None => None,
            };
            Some(inviter.ok_or(IdentityError::BadInvite)?.account_id)
        }
    };
    identity::limit(&state.core, "verify", &reg.email.key(), &ctx.client_ip).await?;
    // The code first: only the address's owner learns whether it is taken.
    identity::redeem_code(
        &state.core,
        &state.identity,
        &ctx.meta(SURFACE, "anonymous".into()),
        &reg.email,
        PURPOSE_EMAIL,
        &reg.verify_code,
    )
    .await?;
    let device = header_of(&headers, "x-device-id").and_then(|d| DeviceId::parse(d).ok());
    let new = NewAccount {
        username: None,
        email: Some(reg.email),
        nickname: Some(reg.nickname),
        password: reg.password,
        invited_by,
        device,
    };
    identity::register(&state.core, &ctx.meta(SURFACE, "anonymous".into()), new).await?;
    Ok(success_msg("注册成功"))
}

#[utoipa::path(post, path = "/api/auth/login", tag = "ocean1", request_body = LoginRequest,
    params(("x-device-id" = Option<String>, Header, description = "The device, when the body has no `device_id`")),
    responses((status = 200, description = "Signed in, or `NEED_VERIFY` on a new device", body = SignedIn), (status = "4XX", description = "Rejected: bad input, no session, wrong code or password, rate limited", body = Failure)))]
pub async fn login(
    State(state): State<Ocean1State>,
    ctx: RequestContext,
    headers: HeaderMap,
    OJson(body): OJson<LoginRequest>,
) -> Result<Response> {
    let device = device_of(
        body.device_id.as_deref(),
        header_of(&headers, "x-device-id"),
    )?;
    let name = LoginName::Email(&body.email);
    let account = identity::check_password(
        &state.core,
        &ctx.meta(SURFACE, "anonymous".into()),
        name,
        &body.password,
    )
    .await?;
    match signed_in(
        &state,
        &ctx,
        &account,
        DeviceCheck::MustBeBound(device.clone()),
    )
    .await
    {
        Err(IdentityError::UnknownDevice) => {}
        other => return Ok(other?),
    }
    // Right password, new device: prove the mailbox first.
    identity::account_command(
        &state.core,
        &ctx.meta(SURFACE, "anonymous".into()),
        account.account_id,
        || AccountCommand::ChallengeDevice {
            surface: SURFACE.into(),
            device: device.clone(),
            at: crate::store::now(),
        },
    )
    .await?;
    let email = Email::parse(account.email.as_deref().unwrap_or_default())?;
    let purpose = identity::device_purpose(&device);
    match identity::send_code(
        &state.core,
        &state.identity,
        &ctx.meta(SURFACE, "anonymous".into()),
        &email,
        &purpose,
        "新设备登录验证",
    )
    .await
    {
        // a code for this device is already on its way
        Ok(()) | Err(IdentityError::CodeTooSoon { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(axum::Json(json!({ "status": "NEED_VERIFY" })).into_response())
}

#[utoipa::path(post, path = "/api/auth/login_verify", tag = "ocean1", request_body = LoginVerifyRequest,
    params(("x-device-id" = Option<String>, Header, description = "The device, when the body has no `device_id`")),
    responses((status = 200, description = "Signed in on the new device", body = SignedIn), (status = "4XX", description = "Rejected: bad input, no session, wrong code or password, rate limited", body = Failure)))]
pub async fn login_verify(
    State(state): State<Ocean1State>,
    ctx: RequestContext,
    headers: HeaderMap,
    OJson(body): OJson<LoginVerifyRequest>,
) -> Result<Response> {
    let device = device_of(
        body.device_id.as_deref(),
        header_of(&headers, "x-device-id"),
    )?;
    let email = Email::parse(&body.email)?;
    identity::limit(&state.core, "verify", &email.key(), &ctx.client_ip).await?;
    let account = accounts::by_email_key(&state.pool, &email.key())
        .await?
        .ok_or(IdentityError::WrongCode)?;
    let purpose = identity::device_purpose(&device);
    identity::redeem_code(
        &state.core,
        &state.identity,
        &ctx.meta(SURFACE, "anonymous".into()),
        &email,
        &purpose,
        &body.code,
    )
    .await?;
    Ok(signed_in(&state, &ctx, &account, DeviceCheck::BindNow(device)).await?)
}

#[utoipa::path(post, path = "/api/auth/reset_password", tag = "ocean1", request_body = ResetRequest,
    responses((status = 200, description = "密码重置成功", body = Done), (status = "4XX", description = "Rejected: bad input, no session, wrong code or password, rate limited", body = Failure)))]
pub async fn reset_password(
    State(state): State<Ocean1State>,
    ctx: RequestContext,
    OJson(body): OJson<ResetRequest>,
) -> Result<impl IntoResponse> {
    let reset = Reset::try_from(body)?;
    identity::limit(&state.core, "verify", &reset.email.key(), &ctx.client_ip).await?;
    identity::redeem_code(
        &state.core,
        &state.identity,
        &ctx.meta(SURFACE, "anonymous".into()),
        &reset.email,
        PURPOSE_EMAIL,
        &reset.verify_code,
    )
    .await?;
    let account = accounts::by_email_key(&state.pool, &reset.email.key())
        .await?
        .ok_or(IdentityError::NoAccount)?;
    identity::set_password(
        &state.core,
        &ctx.meta(SURFACE, "anonymous".into()),
        account.account_id,
        &reset.password,
        None,
        true,
    )
    .await?;
    Ok(success_msg("密码重置成功"))
}

#[utoipa::path(post, path = "/api/user/heartbeat", tag = "ocean1", request_body = HeartbeatRequest,
    params(("x-user-email" = Option<String>, Header), ("x-device-id" = Option<String>, Header)),
    security(("session" = []), ("sessionCookie" = [])),
    responses((status = 200, description = "The session is alive (the day's login points paid once), or `rejected`", body = Beat), (status = "4XX", description = "Rejected: bad input, no session, wrong code or password, rate limited", body = Failure)))]
pub async fn heartbeat(
    State(state): State<Ocean1State>,
    ctx: RequestContext,
    headers: HeaderMap,
    OJson(body): OJson<HeartbeatRequest>,
) -> Result<impl IntoResponse> {
    let caller = match session_of(&headers, &state).await {
        Ok(caller) => caller,
        // displaced by another device, signed out, or ended by a password
        // reset: the frontend's cue to leave
        Err(AuthFailure::Ended { .. }) => return Ok(axum::Json(json!({ "status": "rejected" }))),
        Err(other) => return Err(other.into()),
    };
    check_headers(&headers, &caller)?;
    if let Some(claimed) = body.email.as_deref().filter(|e| !e.is_empty()) {
        if Email::key_of(claimed) != Email::key_of(caller.email.as_deref().unwrap_or_default()) {
            return Err(OceanError::new(
                axum::http::StatusCode::FORBIDDEN,
                "身份信息与登录会话不一致",
            ));
        }
    }
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let core = state.core.clone();
    let has_reward = crate::ledger::rewards::daily(&core, &meta, caller.account_id)
        .await
        .map_err(|e| match e {
            crate::ledger::LedgerError::Contended => OceanError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "系统繁忙，请重试",
            ),
            other => OceanError::internal(anyhow::anyhow!("daily reward: {other}")),
        })?;
    Ok(axum::Json(
        json!({ "status": "ok", "has_reward": has_reward }),
    ))
}

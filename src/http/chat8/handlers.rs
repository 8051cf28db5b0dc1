//! Thin handlers: contract request -> identity command -> contract response.

use aggregates::values::{Email, Presence};
use aggregates::AccountCommand;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use projections::accounts::{self, AccountRow};
use serde_json::json;

use super::dto::*;
use super::error::Chat8Error;
use super::extract::{Bearer, C8Json};
use super::Chat8State;
use super::SURFACE;
use crate::auth::Caller;
use crate::http::context::RequestContext;
use crate::identity::{self, IdentityError, NewAccount};

use super::schema::*;

type Result<T> = std::result::Result<T, Chat8Error>;

async fn account_of(state: &Chat8State, caller: &Caller) -> Result<AccountRow> {
    accounts::by_id(&state.pool, caller.account_id)
        .await?
        .ok_or_else(|| Chat8Error::new(StatusCode::NOT_FOUND, "USER_001", "用户不存在"))
}

#[utoipa::path(post, path = "/api/v1/auth/register", tag = "chat8", request_body = RegisterRequest, responses((status = 201, description = "注册成功, signed in", body = Envelope<Registered>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn register(
    State(state): State<Chat8State>,
    ctx: RequestContext,
    C8Json(body): C8Json<RegisterRequest>,
) -> Result<impl IntoResponse> {
    let new = NewAccount::try_from(body)?;
    let (username, email) = (new.username.clone(), new.email.clone());
    let registered =
        identity::register(&state.core, &ctx.meta(SURFACE, "anonymous".into()), new).await?;
    let ttl = state.config.access_token_ttl;
    let session = identity::open_plain_session(
        &state.core,
        &state.identity,
        &ctx.meta(SURFACE, "anonymous".into()),
        registered.account_id,
        ttl,
    )
    .await?;
    let data = json!({
        "user_id": registered.number,
        "username": username.map(|u| u.as_str().to_owned()),
        "email": email.map(|e| e.as_str().to_owned()),
        "access_token": session.token,
        "token_type": "bearer",
    });
    Ok((StatusCode::CREATED, ok("注册成功", data)))
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "chat8", request_body = LoginRequest, responses((status = 200, description = "登录成功", body = Envelope<LoggedIn>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn login(
    State(state): State<Chat8State>,
    ctx: RequestContext,
    C8Json(body): C8Json<LoginRequest>,
) -> Result<impl IntoResponse> {
    let ttl = state.config.access_token_ttl;
    let (account, session) = identity::sign_in(
        &state.core,
        &state.identity,
        &ctx.meta(SURFACE, "anonymous".into()),
        &body.username,
        &body.password,
        ttl,
    )
    .await?;
    let data = json!({
        "access_token": session.token,
        "token_type": "bearer",
        "expires_in": ttl.as_secs(),
        "user": UserDto::from(&account),
    });
    Ok(ok("登录成功", data))
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "chat8", security(("session" = [])), responses((status = 200, description = "A new token for the same session", body = Envelope<Refreshed>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn refresh(
    State(state): State<Chat8State>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
) -> Result<impl IntoResponse> {
    let ttl = state.config.access_token_ttl;
    let session = identity::refresh_session(
        &state.core,
        &state.identity,
        &ctx.meta(SURFACE, "anonymous".into()),
        &caller,
        ttl,
    )
    .await?;
    let data = json!({
        "access_token": session.token,
        "token_type": "bearer",
        "expires_in": ttl.as_secs(),
    });
    Ok(ok("令牌已刷新", data))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "chat8", security(("session" = [])), responses((status = 200, description = "登出成功: the token no longer works", body = Done), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn logout(
    State(state): State<Chat8State>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
) -> Result<impl IntoResponse> {
    identity::sign_out(&state.core, &ctx.meta(SURFACE, "anonymous".into()), &caller).await?;
    Ok(done("登出成功"))
}

#[utoipa::path(get, path = "/api/v1/user/profile", tag = "chat8", security(("session" = [])), responses((status = 200, description = "The caller's profile", body = Envelope<ProfileDto>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn profile(
    State(state): State<Chat8State>,
    Bearer(caller): Bearer,
) -> Result<impl IntoResponse> {
    let account = account_of(&state, &caller).await?;
    Ok(ok("获取成功", ProfileDto::from(&account)))
}

#[utoipa::path(put, path = "/api/v1/user/profile", tag = "chat8", request_body = ProfileRequest, security(("session" = [])), responses((status = 200, description = "资料已更新", body = Envelope<UserDto>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn update_profile(
    State(state): State<Chat8State>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
    C8Json(body): C8Json<ProfileRequest>,
) -> Result<impl IntoResponse> {
    let change = ProfileChange::try_from(body)?;
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let before = account_of(&state, &caller).await?;
    // a new address counts once its owner proves it with the code mailed
    // there (`POST /user/email/verify`): unproven, it would sign in on
    // Ocean1 and hold the address against its owner
    let new_email = change
        .email
        .clone()
        .filter(|e| before.email.as_deref().map(Email::key_of) != Some(e.key()));
    if let Some(email) = &new_email {
        identity::limit(&state.core, "send_code", &email.key(), &ctx.client_ip).await?;
        if accounts::by_email_key(&state.pool, &email.key())
            .await?
            .is_some()
        {
            return Err(IdentityError::EmailTaken.into());
        }
        identity::send_code(
            &state.core,
            &state.identity,
            &meta,
            email,
            &email_change_purpose(caller.account_id),
            "确认新邮箱 / Confirm your new email address",
        )
        .await?;
    }
    identity::account_command(&state.core, &meta, caller.account_id, || {
        AccountCommand::UpdateProfile {
            username: change.username.clone(),
            email: None,
            avatar: change.avatar.clone(),
            at: crate::store::now(),
        }
    })
    .await?;
    let account = account_of(&state, &caller).await?;
    let message = if new_email.is_some() {
        "资料已更新; 验证码已发送至新邮箱, 验证后生效"
    } else {
        "资料已更新"
    };
    Ok(ok(message, UserDto::from(&account)))
}

/// The code of an email change is for this account only.
fn email_change_purpose(account: uuid::Uuid) -> String {
    format!("email-change:{account}")
}

/// `POST /user/email/verify {email, code}`: the code mailed to a new
/// address proves it; the address then becomes the account's.
#[utoipa::path(post, path = "/api/v1/user/email/verify", tag = "chat8", request_body = EmailVerifyRequest, security(("session" = [])), responses((status = 200, description = "邮箱已更新", body = Envelope<UserDto>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn verify_email(
    State(state): State<Chat8State>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
    C8Json(body): C8Json<EmailVerifyRequest>,
) -> Result<impl IntoResponse> {
    let email = Email::parse(&body.email).map_err(|e| Chat8Error::validation("email", e.0))?;
    identity::limit(&state.core, "verify", &email.key(), &ctx.client_ip).await?;
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    identity::redeem_code(
        &state.core,
        &state.identity,
        &meta,
        &email,
        &email_change_purpose(caller.account_id),
        &body.code,
    )
    .await?;
    identity::account_command(&state.core, &meta, caller.account_id, || {
        AccountCommand::UpdateProfile {
            username: None,
            email: Some(email.clone()),
            avatar: None,
            at: crate::store::now(),
        }
    })
    .await?;
    let account = account_of(&state, &caller).await?;
    Ok(ok("邮箱已更新", UserDto::from(&account)))
}

#[utoipa::path(put, path = "/api/v1/user/password", tag = "chat8", request_body = PasswordRequest, security(("session" = [])), responses((status = 200, description = "密码修改成功", body = Done), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn change_password(
    State(state): State<Chat8State>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
    C8Json(body): C8Json<PasswordRequest>,
) -> Result<impl IntoResponse> {
    let change = PasswordChange::try_from(body)?;
    // the current password is a guess at it like a sign-in's: same budget
    identity::limit(
        &state.core,
        "login",
        &identity::password_budget(caller.account_id),
        &ctx.client_ip,
    )
    .await?;
    let account = account_of(&state, &caller).await?;
    if !crate::auth::verify_password(Some(account.password_hash), change.current).await {
        return Err(Chat8Error::new(
            StatusCode::BAD_REQUEST,
            "AUTH_003",
            "当前密码错误",
        ));
    }
    identity::set_password(
        &state.core,
        &ctx.meta(SURFACE, "anonymous".into()),
        caller.account_id,
        &change.new,
        Some(caller.session_id),
        false,
    )
    .await?;
    Ok(done("密码修改成功"))
}

#[utoipa::path(put, path = "/api/v1/user/status", tag = "chat8", request_body = StatusRequest, security(("session" = [])), responses((status = 200, description = "状态已更新", body = Envelope<StatusSet>), (status = "4XX", description = "Rejected (see the error codes of the seed)", body = Failure)))]
pub async fn set_status(
    State(state): State<Chat8State>,
    ctx: RequestContext,
    Bearer(caller): Bearer,
    C8Json(body): C8Json<StatusRequest>,
) -> Result<impl IntoResponse> {
    let status = Presence::try_from(body)?;
    identity::account_command(
        &state.core,
        &ctx.meta(SURFACE, "anonymous".into()),
        caller.account_id,
        || AccountCommand::SetPresence {
            status,
            at: crate::store::now(),
        },
    )
    .await?;
    Ok(ok("状态已更新", json!({ "status": status.as_str() })))
}

//! Seed 003's request and response bodies, and their parsing into domain values.

use aggregates::values::{Avatar, Email, Password, Presence, Username};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{field, Chat8Error};
use super::{format_time, timestamp};
use crate::identity::NewAccount;

/// `{success: true, data, message, timestamp}`.
pub fn ok<T: Serialize>(message: &str, data: T) -> axum::Json<Value> {
    axum::Json(serde_json::json!({
        "success": true, "data": data, "message": message, "timestamp": timestamp(),
    }))
}

/// `{success: true, message, timestamp}` for answers without data.
pub fn done(message: &str) -> axum::Json<Value> {
    axum::Json(serde_json::json!({ "success": true, "message": message, "timestamp": timestamp() }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RegisterRequest {
    #[schema(pattern = r"^\S{1,32}$", example = "alice")]
    pub username: String,
    #[schema(format = Email, max_length = 254, example = "alice@example.com")]
    pub email: String,
    #[schema(min_length = 6, max_length = 128, example = "secret123")]
    pub password: String,
    /// The same as `password`.
    #[schema(min_length = 6, max_length = 128, example = "secret123")]
    pub confirm_password: String,
}

fn same_password(password: &str, confirm: &str) -> Result<(), Chat8Error> {
    if password != confirm {
        return Err(Chat8Error::validation(
            "confirm_password",
            "两次输入的密码不一致",
        ));
    }
    Ok(())
}

impl TryFrom<RegisterRequest> for NewAccount {
    type Error = Chat8Error;
    fn try_from(r: RegisterRequest) -> Result<Self, Chat8Error> {
        let new = Self {
            username: Some(Username::parse(&r.username).map_err(field("username"))?),
            email: Some(Email::parse(&r.email).map_err(field("email"))?),
            nickname: None,
            password: Password::parse(&r.password).map_err(field("password"))?,
            invited_by: None,
            device: None,
        };
        same_password(&r.password, &r.confirm_password)?;
        Ok(new)
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    /// The username or the email.
    pub username: String,
    #[schema(min_length = 6, max_length = 128, example = "secret123")]
    pub password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ProfileRequest {
    pub username: Option<String>,
    pub email: Option<String>,
    pub avatar: Option<String>,
}

/// `POST /user/email/verify`: the new address and the code mailed to it.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct EmailVerifyRequest {
    #[schema(format = "email")]
    pub email: String,
    /// The six digits mailed to the new address
    #[schema(pattern = "^[0-9]{6}$")]
    pub code: String,
}

pub struct ProfileChange {
    pub username: Option<Username>,
    pub email: Option<Email>,
    pub avatar: Option<Avatar>,
}

impl TryFrom<ProfileRequest> for ProfileChange {
    type Error = Chat8Error;
    fn try_from(r: ProfileRequest) -> Result<Self, Chat8Error> {
        Ok(Self {
            username: r
                .username
                .as_deref()
                .map(Username::parse)
                .transpose()
                .map_err(field("username"))?,
            email: r
                .email
                .as_deref()
                .map(Email::parse)
                .transpose()
                .map_err(field("email"))?,
            avatar: r
                .avatar
                .as_deref()
                .map(Avatar::parse)
                .transpose()
                .map_err(field("avatar"))?,
        })
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordRequest {
    pub current_password: String,
    pub new_password: String,
    pub confirm_password: String,
}

pub struct PasswordChange {
    pub current: String,
    pub new: Password,
}

impl TryFrom<PasswordRequest> for PasswordChange {
    type Error = Chat8Error;
    fn try_from(r: PasswordRequest) -> Result<Self, Chat8Error> {
        let new = Password::parse(&r.new_password).map_err(field("new_password"))?;
        same_password(&r.new_password, &r.confirm_password)?;
        Ok(Self {
            current: r.current_password,
            new,
        })
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct StatusRequest {
    /// `online`, `away`, `busy` or `offline`
    #[schema(example = "online")]
    pub status: String,
}

impl TryFrom<StatusRequest> for Presence {
    type Error = Chat8Error;
    fn try_from(r: StatusRequest) -> Result<Self, Chat8Error> {
        Presence::parse(&r.status).map_err(field("status"))
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserDto {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub avatar: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProfileDto {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub avatar: String,
    pub status: String,
    pub created_at: String,
    pub last_login: Option<String>,
}

impl From<&projections::accounts::AccountRow> for UserDto {
    fn from(a: &projections::accounts::AccountRow) -> Self {
        Self {
            id: a.number,
            username: a.display_name(),
            email: a.email.clone(),
            avatar: a.avatar.clone(),
        }
    }
}

impl From<&projections::accounts::AccountRow> for ProfileDto {
    fn from(a: &projections::accounts::AccountRow) -> Self {
        Self {
            id: a.number,
            username: a.display_name(),
            email: a.email.clone(),
            avatar: a.avatar.clone(),
            status: a.presence.clone(),
            created_at: format_time(a.created_at),
            last_login: a.last_login_at.map(format_time),
        }
    }
}

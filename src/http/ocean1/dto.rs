//! Seed 002's request bodies and their parsing into domain values.

use aggregates::values::{DeviceId, DisplayName, Email, Password};
use serde::Deserialize;

use super::error::OceanError;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SendCodeRequest {
    #[schema(format = Email, max_length = 254, example = "alice@example.com")]
    pub email: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RegisterRequest {
    #[schema(format = Email, max_length = 254, example = "alice@example.com")]
    pub email: String,
    #[schema(min_length = 6, max_length = 128, example = "secret123")]
    pub password: String,
    #[schema(min_length = 1, max_length = 64)]
    pub nickname: String,
    #[serde(default)]
    pub invite_code: Option<String>,
    pub verify_code: String,
}

pub struct Registration {
    pub email: Email,
    pub password: Password,
    pub nickname: DisplayName,
    pub invite_code: Option<String>,
    pub verify_code: String,
}

impl TryFrom<RegisterRequest> for Registration {
    type Error = OceanError;
    fn try_from(r: RegisterRequest) -> Result<Self, OceanError> {
        Ok(Self {
            email: Email::parse(&r.email)?,
            password: Password::parse(&r.password)?,
            nickname: DisplayName::parse(&r.nickname)?,
            invite_code: r.invite_code.filter(|c| !c.trim().is_empty()),
            verify_code: r.verify_code,
        })
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    #[schema(format = Email, max_length = 254, example = "alice@example.com")]
    pub email: String,
    #[schema(min_length = 6, max_length = 128, example = "secret123")]
    pub password: String,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // the client's version: accepted, not used
    pub version: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginVerifyRequest {
    pub email: String,
    pub code: String,
    #[serde(default)]
    pub device_id: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ResetRequest {
    #[schema(format = Email, max_length = 254, example = "alice@example.com")]
    pub email: String,
    #[schema(min_length = 6, max_length = 128, example = "secret123")]
    pub password: String,
    pub verify_code: String,
}

pub struct Reset {
    pub email: Email,
    pub password: Password,
    pub verify_code: String,
}

impl TryFrom<ResetRequest> for Reset {
    type Error = OceanError;
    fn try_from(r: ResetRequest) -> Result<Self, OceanError> {
        Ok(Self {
            email: Email::parse(&r.email)?,
            password: Password::parse(&r.password)?,
            verify_code: r.verify_code,
        })
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct HeartbeatRequest {
    #[serde(default)]
    pub email: Option<String>,
}

/// The device a request comes from: the body's `device_id`, else the
/// `x-device-id` header every Ocean1 call carries.
pub fn device_of(body: Option<&str>, header: Option<&str>) -> Result<DeviceId, OceanError> {
    match body.filter(|d| !d.is_empty()).or(header) {
        Some(d) => Ok(DeviceId::parse(d)?),
        None => Err(OceanError::bad_request("参数错误: 缺少 device_id")),
    }
}

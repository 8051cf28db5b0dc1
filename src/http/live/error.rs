//! Seed 000's failure shape: `{"code": 1, "msg": "..."}` with a fitting status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::identity::{AuthFailure, IdentityError};

#[derive(Debug)]
pub struct LiveError {
    pub status: StatusCode,
    pub msg: String,
}

impl LiveError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self {
            status,
            msg: msg.into(),
        }
    }
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        let status = crate::http::reply::failure_status(super::SURFACE, &err.into());
        Self::new(status, crate::http::reply::failure_message(status))
    }
}

impl IntoResponse for LiveError {
    fn into_response(self) -> Response {
        crate::http::reply::retry_after(
            (
                self.status,
                axum::Json(json!({ "code": 1, "msg": self.msg })),
            )
                .into_response(),
        )
    }
}

impl From<AuthFailure> for LiveError {
    fn from(e: AuthFailure) -> Self {
        match e {
            AuthFailure::Unavailable(err) => Self::internal(err),
            _ => Self::new(StatusCode::UNAUTHORIZED, "未登录"),
        }
    }
}

impl From<IdentityError> for LiveError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::SessionEnded => Self::new(StatusCode::UNAUTHORIZED, "未登录"),
            IdentityError::Contended => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "系统繁忙，请重试")
            }
            other => Self::internal(anyhow::Error::from(other)),
        }
    }
}

impl From<crate::liverooms::LiveRoomsError> for LiveError {
    fn from(e: crate::liverooms::LiveRoomsError) -> Self {
        use crate::liverooms::LiveRoomsError as E;
        use StatusCode as S;
        match e {
            E::Invalid(m) => Self::new(S::BAD_REQUEST, format!("参数错误: {m}")),
            E::UnknownRoom => Self::new(S::NOT_FOUND, "房间不存在"),
            E::UnknownAnchor => Self::new(S::NOT_FOUND, "主播不存在"),
            E::NotTheAnchor => Self::new(S::FORBIDDEN, "只有房间的主播可以这样做"),
            E::NoAccess => Self::new(S::FORBIDDEN, "付费房间，请先购买或订阅"),
            E::WrongAmount { price } => Self::new(
                S::BAD_REQUEST,
                format!("金额与房间价格不符：该房间价格为 {price} 钻石"),
            ),
            E::Insufficient { balance, price } => Self::new(
                S::PAYMENT_REQUIRED,
                format!("钻石不足：需要 {price}，余额 {balance}"),
            ),
            E::NotForSale => Self::new(S::BAD_REQUEST, "该主播未开放订阅"),
            E::NameTaken => Self::new(S::CONFLICT, "该用户名已被注册，请登录后发言"),
            E::RateLimited(secs) => Self::new(
                S::TOO_MANY_REQUESTS,
                format!("发送太频繁，请 {secs} 秒后再试"),
            ),
            E::Contended => Self::new(S::SERVICE_UNAVAILABLE, "系统繁忙，请重试"),
            E::Internal(err) => Self::internal(err),
        }
    }
}

impl From<sqlx::Error> for LiveError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

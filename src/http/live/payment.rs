//! Crypto recharge (seed 000): `POST /api/payment/process_recharge/`,
//! `GET /api/payment/check_payment_status/{order_id}`, and the provider's
//! signed status callback `POST /api/payment/ipn`.

use super::schema::{self, Failure, Ipn, IpnApplied, Recharge, RechargeOpened};
use aggregates::{PaymentStatus, ReportSource};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::LiveError;
use super::handlers::session;
use super::LiveSurface;
use super::SURFACE;
use crate::http::body::{self, BodyError};
use crate::http::context::RequestContext;
use crate::identity;
use crate::ledger::payments::{self, PaymentError, Price};
use crate::ledger::LedgerError;

type Result<T> = std::result::Result<T, LiveError>;

/// JSON bodies in seed 000's failure shape.
pub struct LJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for LJson<T> {
    type Rejection = LiveError;

    async fn from_request(req: Request, state: &S) -> std::result::Result<Self, Self::Rejection> {
        Ok(LJson(body::json_only(req, state).await?))
    }
}

impl From<BodyError> for LiveError {
    fn from(e: BodyError) -> Self {
        Self::new(e.status(), e.zh_message("参数错误: ", "参数错误: "))
    }
}

impl From<PaymentError> for LiveError {
    fn from(e: PaymentError) -> Self {
        use StatusCode as S;
        match e {
            PaymentError::Invalid(m) => Self::new(S::BAD_REQUEST, format!("参数错误: {m}")),
            PaymentError::NotConfigured => Self::new(S::SERVICE_UNAVAILABLE, "充值暂不可用"),
            PaymentError::Provider(_) => Self::new(S::BAD_GATEWAY, "支付服务暂不可用，请稍后再试"),
            PaymentError::UnknownOrder => Self::new(S::NOT_FOUND, "订单不存在"),
            PaymentError::NotYours => Self::new(S::FORBIDDEN, "无权查看该订单"),
            PaymentError::NotReady => Self::new(S::CONFLICT, "订单尚未创建完成，请稍后重试"),
            PaymentError::BadSignature => Self::new(S::UNAUTHORIZED, "签名无效"),
            PaymentError::Ledger(LedgerError::Contended) => {
                Self::new(S::SERVICE_UNAVAILABLE, "系统繁忙，请重试")
            }
            other => Self::internal(anyhow::Error::from(other)),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RechargeRequest {
    pub user_id: i64,
    pub crypto_amount: Value,
}

#[utoipa::path(post, path = "/api/payment/process_recharge", tag = "live", request_body = Recharge, security(("session" = []), ("sessionCookie" = [])), responses((status = 200, description = "A crypto payment opened with the provider (also with a trailing slash)", body = RechargeOpened), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn process_recharge(
    State(state): State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
    LJson(body): LJson<RechargeRequest>,
) -> Result<impl IntoResponse> {
    let caller = session(&state, &headers).await?;
    if body.user_id != caller.number {
        return Err(LiveError::new(
            StatusCode::FORBIDDEN,
            "user_id 与登录用户不一致",
        ));
    }
    let price = Price::parse(&body.crypto_amount, &state.config.payments)?;
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let r = payments::open_recharge(
        &state.core,
        &state.payment_provider,
        &meta,
        caller.account_id,
        caller.number,
        price,
    )
    .await?;
    let pay_amount: Value = r
        .payment
        .pay_amount
        .parse::<serde_json::Number>()
        .map(Value::Number)
        .unwrap_or_else(|_| Value::String(r.payment.pay_amount.clone()));
    Ok(axum::Json(json!({
        "code": 0,
        "message": "Recharge initiated, waiting for confirmation",
        "order_id": r.order_id.to_string(),
        "payment_id": r.payment.payment_id,
        "pay_address": r.payment.pay_address,
        "pay_amount": pay_amount,
        "pay_currency": r.payment.pay_currency,
        "coins": r.coins,
        "qr_code": payments::qr_code(&r.payment.pay_currency, &r.payment.pay_address, &r.payment.pay_amount),
    })))
}

fn order_id(raw: &str) -> Result<Uuid> {
    raw.trim_end_matches('/')
        .parse()
        .map_err(|_| LiveError::new(StatusCode::NOT_FOUND, "订单不存在"))
}

/// The order's status for its owner (`waiting` while the provider has not
/// answered the creation yet).
#[utoipa::path(get, path = "/api/payment/check_payment_status/{order_id}", tag = "live", params(("order_id" = String, Path, description = "The caller's order")), security(("session" = []), ("sessionCookie" = [])), responses((status = 200, description = "The order's status, asked of the provider", body = schema::PaymentStatus), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn check_payment_status(
    State(state): State<LiveSurface>,
    ctx: RequestContext,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<impl IntoResponse> {
    let caller = session(&state, &headers).await?;
    let order_id = order_id(&raw)?;
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let status = payments::check(
        &state.core,
        &state.payment_provider,
        &meta,
        caller.account_id,
        order_id,
    )
    .await?;
    let shown = match status {
        PaymentStatus::Created => PaymentStatus::Waiting,
        s => s,
    };
    Ok(axum::Json(json!({
        "code": 0,
        "status": shown.as_str(),
        "message": "Status retrieved",
    })))
}

/// The provider's callback. A bad or missing signature changes nothing
/// (401); an unknown order 404; a known status of an order is applied
/// forward only and credits a finished payment once.
#[utoipa::path(post, path = "/api/payment/ipn", tag = "live", request_body = Ipn, params(("x-nowpayments-sig" = String, Header, description = "HMAC-SHA512 of the sorted body with the IPN secret")), responses((status = 200, description = "Applied forward only; a finished payment credited once", body = IpnApplied), (status = "4XX", description = "Rejected: bad input, no session, no access, unknown room", body = Failure)))]
pub async fn ipn(
    State(state): State<LiveSurface>,
    ctx: RequestContext,
    req: Request,
) -> Result<impl IntoResponse> {
    let signature = req
        .headers()
        .get("x-nowpayments-sig")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = body::bytes(req, &state).await?;
    let Some(secret) = state.config.payments.ipn_secret.as_ref() else {
        tracing::warn!("IPN received but PAYMENT_IPN_SECRET is not set; refused");
        return Err(PaymentError::BadSignature.into());
    };
    let value =
        payments::verify_ipn(secret.expose(), &bytes, signature.as_deref()).map_err(|e| {
            tracing::warn!(error = %e, client_ip = ctx.client_ip, "IPN refused");
            LiveError::from(e)
        })?;
    let text = |name: &str| match value.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let bad = |m: &str| LiveError::new(StatusCode::BAD_REQUEST, format!("参数错误: {m}"));
    let order_id = text("order_id")
        .ok_or_else(|| bad("order_id"))?
        .parse::<Uuid>()
        .map_err(|_| LiveError::new(StatusCode::NOT_FOUND, "订单不存在"))?;
    let payment_id = text("payment_id").ok_or_else(|| bad("payment_id"))?;
    let status = text("payment_status")
        .as_deref()
        .and_then(PaymentStatus::parse)
        .ok_or_else(|| bad("payment_status"))?;
    let meta = ctx.meta("payment_ipn", "provider:payments".into());
    let now = payments::report(
        &state.core,
        &meta,
        order_id,
        &payment_id,
        status,
        text("actually_paid"),
        ReportSource::Callback,
    )
    .await?;
    Ok(axum::Json(json!({ "code": 0, "status": now.as_str() })))
}

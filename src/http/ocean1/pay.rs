//! Points: `POST /api/pay/redeem` (card keys) and `GET /api/user/history`.

use aggregates::values::Email;
use aggregates::Currency;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::OceanError;
use super::extract::{check_headers, session_of, OJson};
use super::Ocean1State;
use super::SURFACE;
use crate::auth::Caller;
use crate::http::context::RequestContext;
use crate::identity;
use crate::ledger::cards::{self, RedeemError, RedeemLimits};
use crate::ledger::{self, LedgerError};
use crate::timefmt;

use super::schema::{Failure, Redeemed};

type Result<T> = std::result::Result<T, OceanError>;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RedeemRequest {
    #[serde(default)]
    pub email: Option<String>,
    pub card_key: String,
}

async fn caller(state: &Ocean1State, headers: &HeaderMap) -> Result<Caller> {
    let caller = session_of(headers, state).await?;
    check_headers(headers, &caller)?;
    Ok(caller)
}

impl From<RedeemError> for OceanError {
    fn from(e: RedeemError) -> Self {
        match e {
            RedeemError::Malformed => Self::bad_request("卡密格式错误"),
            RedeemError::Unknown => Self::new(StatusCode::NOT_FOUND, "卡密无效或已过期"),
            RedeemError::Used => Self::new(StatusCode::CONFLICT, "卡密已被使用"),
            RedeemError::RateLimited(secs) => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("失败次数过多，请 {secs} 秒后再试"),
            ),
            RedeemError::Ledger(e) => e.into(),
            RedeemError::Limits(e) => Self::internal(e),
        }
    }
}

impl From<LedgerError> for OceanError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Insufficient { .. } => Self::new(StatusCode::PAYMENT_REQUIRED, "积分不足"),
            LedgerError::Contended => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "系统繁忙，请重试")
            }
            LedgerError::Invalid(m) => Self::bad_request(format!("参数错误: {m}")),
            LedgerError::OperationConflict | LedgerError::ReferenceUsed(_) => {
                Self::new(StatusCode::CONFLICT, "重复的操作")
            }
            other => Self::internal(anyhow::Error::from(other)),
        }
    }
}

#[utoipa::path(post, path = "/api/pay/redeem", tag = "ocean1", request_body = RedeemRequest,
    params(("x-user-email" = Option<String>, Header), ("x-device-id" = Option<String>, Header)),
    security(("session" = []), ("sessionCookie" = [])),
    responses((status = 200, description = "充值成功: the card's points credited once", body = Redeemed), (status = "4XX", description = "Rejected: bad input, no session, wrong code or password, rate limited", body = Failure)))]
pub async fn redeem(
    State(state): State<Ocean1State>,
    ctx: RequestContext,
    headers: HeaderMap,
    OJson(body): OJson<RedeemRequest>,
) -> Result<impl IntoResponse> {
    let caller = caller(&state, &headers).await?;
    if let Some(claimed) = body.email.as_deref().filter(|e| !e.is_empty()) {
        if Email::key_of(claimed) != Email::key_of(caller.email.as_deref().unwrap_or_default()) {
            return Err(OceanError::new(
                StatusCode::FORBIDDEN,
                "身份信息与登录会话不一致",
            ));
        }
    }
    let l = &state.config.rate_limits;
    let limits = RedeemLimits {
        per_account: l.redeem_failures_per_account,
        per_ip: l.redeem_failures_per_ip,
        window: l.redeem_window,
    };
    let meta = ctx.meta(SURFACE, identity::actor_of(caller.account_id));
    let moved = cards::redeem(
        &state.store,
        &state.card_secret,
        &limits,
        &meta,
        caller.account_id,
        &body.card_key,
    )
    .await?;
    ledger::settle_on_read(&state.core, moved.position).await;
    Ok(axum::Json(json!({
        "status": "success",
        "msg": "充值成功",
        "new_points": moved.balance_after,
    })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// 1 to 1,000 (100)
    pub limit: Option<i64>,
}

/// Newest first; `data[0].balance_after` is the balance.
#[utoipa::path(get, path = "/api/user/history", tag = "ocean1", params(HistoryQuery,
        ("x-user-email" = Option<String>, Header), ("x-device-id" = Option<String>, Header)),
    security(("session" = []), ("sessionCookie" = [])),
    responses((status = 200, description = "Point movements, newest first", body = History), (status = "4XX", description = "Rejected: bad input, no session, wrong code or password, rate limited", body = Failure)))]
pub async fn history(
    State(state): State<Ocean1State>,
    headers: HeaderMap,
    query: std::result::Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let caller = caller(&state, &headers).await?;
    let Query(q) = query.map_err(|_| OceanError::bad_request("参数错误: limit"))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let cache = &state.point_histories;
    if let Some(kept) = cache.get(&state.progress, caller.account_id, limit) {
        return Ok(kept);
    }
    let since = cache.stand(&state.progress);
    let rows = projections::ledger::history(
        &state.pool,
        caller.account_id,
        Currency::Points.as_str(),
        limit,
    )
    .await?;
    let data: Vec<HistoryEntry> = rows
        .into_iter()
        .map(|r| HistoryEntry {
            id: r.position,
            kind: r.reason,
            amount: r.amount,
            balance_after: r.balance_after,
            description: r.description,
            created_at: timefmt::rfc3339_utc(r.created_at),
        })
        .collect();
    let body = serde_json::to_vec(&History {
        status: "success",
        data,
    })
    .map_err(OceanError::internal)?;
    Ok(cache.keep(caller.account_id, limit, since, body))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct HistoryEntry {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    amount: i64,
    balance_after: i64,
    description: String,
    created_at: String,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct History {
    #[schema(value_type = String, example = "success")]
    status: &'static str,
    data: Vec<HistoryEntry>,
}

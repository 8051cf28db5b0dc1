//! The auditors' and operators' view of the ledger: entries with running
//! balances, positions, actors, request ids, surfaces, client IPs and event
//! hashes; wallets; payment orders; and (operators only) adjustments.

use aggregates::{Amount, Counterparty, Currency, Movement, Reason, WalletCommand};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::AdminState;
use super::{Admin, AdminError, Auditor};
use crate::http::body::{self, BodyError};
use crate::http::context::RequestContext;
use crate::ledger::{self, LedgerError};
use crate::store::now;

pub fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(entries))
        .routes(routes!(wallet))
        .routes(routes!(payment))
        .routes(routes!(adjust))
}

/// The document's shapes of these answers (built with `json!` below).
#[allow(dead_code)]
mod schema {
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    pub struct Entries {
        /// Ledger entries oldest first: position, account, currency,
        /// operation id, reason, amount, balances before and after,
        /// counterparty, reference, actor, surface, request id, client IP,
        /// event hash.
        pub entries: Vec<serde_json::Map<String, serde_json::Value>>,
        /// The `after` of the next page; `null` at the end.
        pub next_after: Option<i64>,
    }

    #[derive(ToSchema)]
    pub struct Wallet {
        pub currency: String,
        pub balance: i64,
        pub held: i64,
        pub entries: i64,
    }

    #[derive(ToSchema)]
    pub struct Wallets {
        pub account_id: uuid::Uuid,
        pub wallets: Vec<Wallet>,
    }

    #[derive(ToSchema)]
    pub struct Adjusted {
        pub position: i64,
        pub balance_after: i64,
        pub operation_id: String,
    }
}
use schema::*;

/// A failed query: 503 while the database is out of reach, 400 for a value
/// it cannot store (a NUL), else 500; logged by `failure_status`.
fn unavailable(e: impl Into<anyhow::Error>) -> AdminError {
    match crate::http::reply::failure_status("admin", &e.into()) {
        StatusCode::SERVICE_UNAVAILABLE => {
            AdminError::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
        StatusCode::BAD_REQUEST => {
            AdminError::new(StatusCode::BAD_REQUEST, "a value the database cannot store")
        }
        status => AdminError::new(status, "internal error"),
    }
}

async fn account_id(state: &AdminState, who: &str) -> Result<Uuid, AdminError> {
    let who = who.trim();
    if let Some(id) = state.account_ids.get(who) {
        return Ok(id);
    }
    let id = projections::accounts::by_any(&state.pool, who)
        .await
        .map_err(unavailable)?
        .map(|a| a.account_id)
        .ok_or(AdminError::new(StatusCode::NOT_FOUND, "no such account"))?;
    state.account_ids.keep(who, id);
    Ok(id)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EntriesQuery {
    /// An account: id, number, username or email
    account: Option<String>,
    /// `coins` or `points`
    currency: Option<String>,
    /// RFC 3339
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// The last `position` seen
    after: Option<i64>,
    /// 1 to 1,000 (100)
    limit: Option<i64>,
}

/// Entries oldest first; page with `after` = the last `position` seen.
#[utoipa::path(get, path = "/admin/ledger/entries", tag = "admin", params(EntriesQuery),
    security(("adminToken" = []), ("auditToken" = [])),
    responses((status = 200, description = "A page of entries", body = Entries), (status = "4XX", description = "No or wrong token, bad input, unknown account", body = super::Failure)))]
async fn entries(
    _: Auditor,
    State(state): State<AdminState>,
    query: Result<Query<EntriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(q) = query.map_err(|_| {
        AdminError::new(
            StatusCode::BAD_REQUEST,
            "bad query: account, currency, from/to (RFC 3339), after, limit",
        )
    })?;
    let currency = match q.currency.as_deref() {
        None => None,
        Some(c) => Some(
            c.parse::<Currency>()
                .map_err(|_| {
                    AdminError::new(StatusCode::BAD_REQUEST, "currency is coins or points")
                })?
                .as_str()
                .to_owned(),
        ),
    };
    let account_id = match q.account.as_deref() {
        Some(who) => Some(account_id(&state, who).await?),
        None => None,
    };
    let filter = projections::ledger::AuditFilter {
        account_id,
        currency,
        from: q.from,
        to: q.to,
        after: q.after,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let rows = projections::ledger::audit_entries(&state.pool, &filter)
        .await
        .map_err(unavailable)?;
    let next_after = rows.last().map(|r| r.entry.position);
    Ok(Json(json!({ "entries": rows, "next_after": next_after })).into_response())
}

#[utoipa::path(get, path = "/admin/ledger/wallets/{who}", tag = "admin",
    params(("who" = String, Path, description = "An account: id, number, username or email")),
    security(("adminToken" = []), ("auditToken" = [])),
    responses((status = 200, description = "The account's wallets", body = Wallets), (status = "4XX", description = "No or wrong token, bad input, unknown account", body = super::Failure)))]
async fn wallet(
    _: Auditor,
    State(state): State<AdminState>,
    Path(who): Path<String>,
) -> Result<Response, AdminError> {
    let id = account_id(&state, &who).await?;
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT currency, balance, held, entries FROM wallets WHERE account_id = $1 ORDER BY currency",
    )
    .bind(id)
    .fetch_all(&state.pool)
    .await
    .map_err(unavailable)?;
    let wallets: Vec<_> = rows
        .into_iter()
        .map(|(currency, balance, held, entries)| {
            json!({ "currency": currency, "balance": balance, "held": held, "entries": entries })
        })
        .collect();
    Ok(Json(json!({ "account_id": id, "wallets": wallets })).into_response())
}

#[utoipa::path(get, path = "/admin/ledger/payments/{order_id}", tag = "admin",
    params(("order_id" = String, Path, description = "A payment order's id (UUID)")),
    security(("adminToken" = []), ("auditToken" = [])),
    responses((status = 200, description = "The order, its provider's notifications and its credit", body = Object), (status = "4XX", description = "No or wrong token, bad input, unknown account", body = super::Failure)))]
async fn payment(
    _: Auditor,
    State(state): State<AdminState>,
    Path(order_id): Path<String>,
) -> Result<Response, AdminError> {
    let no_order = || AdminError::new(StatusCode::NOT_FOUND, "no such payment order");
    let id: Uuid = order_id.parse().map_err(|_| no_order())?;
    let row = projections::ledger::payment_order(&state.pool, id)
        .await
        .map_err(unavailable)?
        .ok_or_else(no_order)?;
    Ok(Json(row).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AdjustmentRequest {
    account: String,
    currency: String,
    /// "credit" or "debit"
    direction: String,
    amount: i64,
    description: String,
    /// the caller's idempotency key: a retry with it has one effect
    operation_id: String,
}

fn body_error(e: BodyError) -> AdminError {
    let msg = match e {
        BodyError::TooLarge => "body too large",
        BodyError::Unreadable(_) => "unreadable body",
        BodyError::Empty => "empty body",
        BodyError::Syntax => "malformed JSON",
        BodyError::NotJson => "the body must be JSON",
        BodyError::Shape(_) => {
            "expected {account, currency, direction, amount (positive integer), description, operation_id}"
        }
    };
    AdminError::new(e.status(), msg)
}

/// A manual correction against `platform:adjustments`, recorded with the
/// operator's request like every other movement.
#[utoipa::path(post, path = "/admin/ledger/adjustments", tag = "admin", request_body = AdjustmentRequest,
    security(("adminToken" = [])),
    responses((status = 200, description = "The correction, recorded once per operation id", body = Adjusted), (status = "4XX", description = "No or wrong token, bad input, unknown account", body = super::Failure)))]
async fn adjust(
    _: Admin,
    State(state): State<AdminState>,
    ctx: RequestContext,
    req: Request,
) -> Result<Response, AdminError> {
    let body: AdjustmentRequest = body::json(req, &state).await.map_err(body_error)?;
    let bad = |m: &'static str| AdminError::new(StatusCode::BAD_REQUEST, m);
    let currency: Currency = body
        .currency
        .parse()
        .map_err(|_| bad("currency is coins or points"))?;
    let amount = Amount::new(body.amount).map_err(|_| bad("amount must be a positive integer"))?;
    let credit = match body.direction.as_str() {
        "credit" => true,
        "debit" => false,
        _ => return Err(bad("direction is credit or debit")),
    };
    if body.operation_id.is_empty() || body.operation_id.len() > 192 {
        return Err(bad("operation_id has 1 to 192 characters"));
    }
    if body.description.trim().is_empty() || body.description.len() > 500 {
        return Err(bad("a description of 1 to 500 bytes is required"));
    }
    let account_id = account_id(&state, &body.account).await?;
    let meta = ctx.meta("admin", "admin".into());
    let at = now();
    let movement = || Movement {
        operation_id: format!("adjust:{}", body.operation_id),
        amount,
        counter: Counterparty::PlatformAdjustments,
        reason: Reason::Adjustment,
        reference: None,
        description: body.description.clone(),
        at,
    };
    let moved = ledger::operate(&state.store, account_id, currency, &meta, || {
        if credit {
            WalletCommand::Credit(movement())
        } else {
            WalletCommand::Debit(movement())
        }
    })
    .await
    .map_err(|e| match e {
        LedgerError::Insufficient { .. } => {
            AdminError::new(StatusCode::CONFLICT, "insufficient balance")
        }
        LedgerError::OperationConflict => AdminError::new(
            StatusCode::CONFLICT,
            "operation_id was used for a different movement",
        ),
        LedgerError::Invalid(_) => bad("invalid operation_id (1 to 192 characters)"),
        LedgerError::Contended => AdminError::new(StatusCode::SERVICE_UNAVAILABLE, "busy, retry"),
        other => unavailable(anyhow::anyhow!("{other}")),
    })?;
    ledger::settle_on_read(&state.core, moved.position).await;
    Ok(Json(json!({
        "position": moved.position.position,
        "balance_after": moved.balance_after,
        "operation_id": body.operation_id,
    }))
    .into_response())
}

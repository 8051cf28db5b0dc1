//! Operators' API under `/admin`: bare JSON, errors as `{"error": "..."}`,
//! `Authorization: Bearer <TIDELOG_ADMIN_TOKEN>`. The ledger's read routes
//! and the transparency log's (`/admin/tlog/*`) also take the auditors'
//! read-only `TIDELOG_AUDIT_TOKEN`.

mod ledger;
mod tlog;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use subtle::ConstantTimeEq;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::token_from_header;
use crate::config::{Config, Secret};
use crate::core::Core;

/// The operators' surface's own state: the core, the two tokens, the
/// transparency log and the account ids looked up.
#[derive(Clone)]
pub struct AdminState {
    pub core: Core,
    pub admin_token: Secret,
    /// the auditors' read-only token
    pub audit_token: Secret,
    /// the transparency log (its key, witnesses and quorum)
    pub tlog: std::sync::Arc<crate::tlog::Log>,
    pub account_ids: std::sync::Arc<AccountIds>,
}

/// Account ids by the account number or id an operator named them with:
/// neither ever changes and no account is removed, so an answer is kept
/// (one statement less per adjustment); usernames and emails can change
/// and are looked up each time.
#[derive(Default)]
pub struct AccountIds(std::sync::Mutex<std::collections::HashMap<String, uuid::Uuid>>);

impl AccountIds {
    /// Kept answers at most (then forgotten at once).
    const MAX: usize = 100_000;

    /// Whether `who` names an account for good: a number or an id.
    fn fixed(who: &str) -> bool {
        who.parse::<i64>().is_ok() || who.parse::<uuid::Uuid>().is_ok()
    }

    fn get(&self, who: &str) -> Option<uuid::Uuid> {
        self.0.lock().unwrap().get(who).copied()
    }

    fn keep(&self, who: &str, id: uuid::Uuid) {
        if !Self::fixed(who) {
            return;
        }
        let mut kept = self.0.lock().unwrap();
        if kept.len() >= Self::MAX {
            kept.clear();
        }
        kept.insert(who.to_owned(), id);
    }
}

impl std::ops::Deref for AdminState {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

/// The surface's routes with their documentation.
pub fn routes(_: &Config) -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(projections))
        .routes(routes!(collector))
        .merge(ledger::routes())
        .merge(tlog::routes())
}

pub fn router(config: &Config) -> Router<AdminState> {
    routes(config).split_for_parts().0
}

/// `{"error": "..."}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Failure {
    #[schema(example = "invalid admin token")]
    error: String,
}

#[derive(Debug)]
pub struct AdminError(StatusCode, std::borrow::Cow<'static, str>);

impl AdminError {
    pub fn new(status: StatusCode, msg: &'static str) -> Self {
        Self(status, msg.into())
    }

    /// With a message made for this answer.
    pub fn text(status: StatusCode, msg: String) -> Self {
        Self(status, msg.into())
    }
}

impl AdminError {
    /// No route under `/admin` has this path.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "no such route")
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        crate::http::reply::retry_after(
            (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response(),
        )
    }
}

/// Proof that the caller holds the admin token.
pub struct Admin;

/// The token's role: operators may write, auditors only read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Auditor,
}

fn role_of(parts: &Parts, state: &AdminState) -> Result<Role, AdminError> {
    let given = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_from_header)
        .ok_or(AdminError::new(
            StatusCode::UNAUTHORIZED,
            "admin token required",
        ))?;
    // both compared in full, in constant time
    let admin = bool::from(
        given
            .as_bytes()
            .ct_eq(state.admin_token.expose().as_bytes()),
    );
    let auditor = bool::from(
        given
            .as_bytes()
            .ct_eq(state.audit_token.expose().as_bytes()),
    );
    match (admin, auditor) {
        (true, _) => Ok(Role::Admin),
        (false, true) => Ok(Role::Auditor),
        _ => Err(AdminError::new(
            StatusCode::UNAUTHORIZED,
            "invalid admin token",
        )),
    }
}

impl FromRequestParts<AdminState> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        match role_of(parts, state)? {
            Role::Admin => Ok(Admin),
            Role::Auditor => Err(AdminError::new(
                StatusCode::FORBIDDEN,
                "the audit token is read-only",
            )),
        }
    }
}

/// Proof that the caller may read the ledger (admin or audit token).
pub struct Auditor(pub Role);

impl FromRequestParts<AdminState> for Auditor {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        role_of(parts, state).map(Auditor)
    }
}

/// Every projection's checkpoint, lag, owner and last error.
#[utoipa::path(get, path = "/admin/projections", tag = "admin", security(("adminToken" = [])),
    responses(
        (status = 200, description = "One row per projection", body = Vec<Object>),
        (status = "4XX", description = "No or wrong token", body = Failure),
    ))]
async fn projections(_: Admin, State(state): State<AdminState>) -> Result<Response, AdminError> {
    match crate::projector::status(&state.pool).await {
        Ok(rows) => Ok(Json(rows).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "admin: reading projection status");
            Err(AdminError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database unavailable",
            ))
        }
    }
}

/// Every monitored room's collector: the process holding it, connected
/// since, last message, messages, reconnects, last error.
#[utoipa::path(get, path = "/admin/collector", tag = "admin", security(("adminToken" = []), ("auditToken" = [])),
    responses(
        (status = 200, description = "One row per monitored room", body = Vec<Object>),
        (status = "4XX", description = "No or wrong token", body = Failure),
    ))]
async fn collector(_: Auditor, State(state): State<AdminState>) -> Result<Response, AdminError> {
    match crate::gifts::collector::lease::status(&state.pool).await {
        Ok(rows) => Ok(Json(rows).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "admin: reading the collectors");
            Err(AdminError(
                StatusCode::SERVICE_UNAVAILABLE,
                "database unavailable".into(),
            ))
        }
    }
}

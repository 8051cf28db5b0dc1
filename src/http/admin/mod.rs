//! Operators' API under `/admin`: bare JSON, errors as `{"error": "..."}`,
//! `Authorization: Bearer <TIDELOG_ADMIN_TOKEN>`.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::auth::token_from_header;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/projections", get(projections))
}

#[derive(Debug)]
pub struct AdminError(StatusCode, &'static str);

impl AdminError {
    pub fn not_found() -> Self {
        Self(StatusCode::NOT_FOUND, "not found")
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// Proof that the caller holds the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let given = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(token_from_header)
            .ok_or(AdminError(StatusCode::UNAUTHORIZED, "admin token required"))?;
        let expected = state.admin_token.expose().as_bytes();
        if bool::from(given.as_bytes().ct_eq(expected)) {
            Ok(Admin)
        } else {
            Err(AdminError(StatusCode::UNAUTHORIZED, "invalid admin token"))
        }
    }
}

/// Every projection's checkpoint, lag, owner and last error.
async fn projections(_: Admin, State(state): State<AppState>) -> Result<Response, AdminError> {
    match crate::projector::status(&state.pool).await {
        Ok(rows) => Ok(Json(rows).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "admin: reading projection status");
            Err(AdminError(
                StatusCode::SERVICE_UNAVAILABLE,
                "database unavailable",
            ))
        }
    }
}

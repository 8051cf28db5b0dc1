//! `GET /healthz`: database reachability and projection lag.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

async fn healthz(State(state): State<AppState>) -> Response {
    match crate::projector::status(&state.pool).await {
        Ok(projections) => {
            let failing = projections.iter().any(|p| p.last_error.is_some());
            let body = json!({
                "status": if failing { "degraded" } else { "ok" },
                "database": "ok",
                "projections": projections,
            });
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "database": "unreachable"})),
            )
                .into_response()
        }
    }
}

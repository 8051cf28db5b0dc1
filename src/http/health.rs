//! `GET /healthz`: database reachability and projection lag.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::core::Core;

pub fn routes() -> OpenApiRouter<Core> {
    OpenApiRouter::new().routes(routes!(healthz))
}

/// `/healthz`'s answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // the document's shape of the `json!` below
struct Health {
    /// `ok`, `degraded` (a projection is failing) or `unavailable`.
    #[schema(example = "ok")]
    status: String,
    /// `ok` or `unreachable`.
    database: String,
    /// Each projection's checkpoint, lag and last error (absent when the
    /// database is unreachable).
    projections: Option<Vec<serde_json::Value>>,
}

#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses(
        (status = 200, description = "The database answers", body = Health),
        (status = 503, description = "The database is unreachable", body = Health),
    ))]
async fn healthz(State(state): State<Core>) -> Response {
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
            crate::http::reply::retry_after(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({"status": "unavailable", "database": "unreachable"})),
                )
                    .into_response(),
            )
        }
    }
}

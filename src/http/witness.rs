//! The one route of `tidelog witness serve`, a small C2SP tlog-witness an
//! auditor runs: `POST /add-checkpoint`. It is its own process, not part
//! of the server's router (so not in its OpenAPI documents); the state and
//! the decisions are `tlog::witness_store`'s.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::tlog::witness_store::{WitnessError, WitnessStore};

#[derive(Clone)]
pub struct WitnessState {
    pub store: Arc<WitnessStore>,
}

pub fn routes() -> OpenApiRouter<WitnessState> {
    OpenApiRouter::new().routes(routes!(add_checkpoint))
}

/// tlog-witness `add-checkpoint`: `old <size>`, the consistency proof's
/// base64 lines, a blank line, the signed checkpoint. 200 with the
/// cosignature lines; 400, 403, 404, 409 (body: the size it holds, as
/// `text/x.tlog.size`) or 422 as the specification says.
#[utoipa::path(post, path = "/add-checkpoint", tag = "witness", request_body(content = String, content_type = "text/plain"),
    responses((status = 200, description = "Cosignature lines", body = String, content_type = "text/plain"),
        (status = "4XX", description = "Refused", body = String, content_type = "text/plain")))]
async fn add_checkpoint(State(state): State<WitnessState>, body: Bytes) -> Response {
    match state.store.add_checkpoint(&body).await {
        Ok(lines) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], lines).into_response(),
        Err(WitnessError::Refused(r)) => {
            tracing::info!(refused = %r, "add-checkpoint refused");
            let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
            match r.body() {
                Some((text, content_type)) => {
                    (status, [(header::CONTENT_TYPE, content_type)], text).into_response()
                }
                None => (status, format!("{r}\n")).into_response(),
            }
        }
        Err(e @ WitnessError::Storage(_)) => {
            tracing::error!(error = %e, "witness storage failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "witness storage failed\n",
            )
                .into_response()
        }
    }
}

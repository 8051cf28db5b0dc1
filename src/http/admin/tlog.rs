//! The auditors' view of the transparency log, under `/admin/tlog`: the
//! latest cosigned checkpoint and the C2SP tlog-tiles layout
//! (`/admin/tlog/checkpoint`, `/admin/tlog/tile/<L>/<N>`,
//! `/admin/tlog/tile/entries/<N>`), a tlog-proof for any event, an event's
//! leaf bytes, consistency proofs and the log's status. Admin or audit
//! token.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AdminError, AdminState, Auditor};
use crate::tlog::checkpoint::hash_b64;
use crate::tlog::reads::{self, ReadError};

pub fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(checkpoint))
        .routes(routes!(tile2))
        .routes(routes!(tile3))
        .routes(routes!(tile4))
        .routes(routes!(tile5))
        .routes(routes!(proof))
        .routes(routes!(entry))
        .routes(routes!(consistency))
        .routes(routes!(status))
}

fn failed(e: ReadError) -> AdminError {
    match e {
        ReadError::Invalid(m) => AdminError::text(StatusCode::BAD_REQUEST, m),
        ReadError::NotFound(m) => AdminError::text(StatusCode::NOT_FOUND, m),
        ReadError::Broken(m) => {
            tracing::error!(error = %m, "the transparency log is damaged");
            AdminError::text(StatusCode::INTERNAL_SERVER_ERROR, m)
        }
        ReadError::Db(e) => unavailable(e),
    }
}

fn unavailable(e: impl Into<anyhow::Error>) -> AdminError {
    match crate::http::reply::failure_status("admin", &e.into()) {
        StatusCode::SERVICE_UNAVAILABLE => {
            AdminError::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
        status => AdminError::new(status, "internal error"),
    }
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn bytes(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response()
}

/// The newest checkpoint with its witnesses' cosignatures (a C2SP signed
/// note); `<prefix>/checkpoint` of tlog-tiles.
#[utoipa::path(get, path = "/admin/tlog/checkpoint", tag = "admin",
    security(("adminToken" = []), ("auditToken" = [])),
    responses((status = 200, description = "The signed note: origin, size, base64 root, a blank line, the log's signature and the cosignatures", body = String, content_type = "text/plain"),
        (status = "4XX", description = "No or wrong token; no checkpoint yet (404)", body = super::Failure)))]
async fn checkpoint(_: Auditor, State(state): State<AdminState>) -> Result<Response, AdminError> {
    let mut conn = state.pool.acquire().await.map_err(unavailable)?;
    let note = reads::latest_note(&mut conn, &state.tlog.cosigners())
        .await
        .map_err(failed)?;
    Ok(text(note))
}

async fn serve_tile(state: &AdminState, segments: &[&str]) -> Result<Response, AdminError> {
    let path = format!("tile/{}", segments.join("/"));
    let mut conn = state.pool.acquire().await.map_err(unavailable)?;
    let data = reads::tile(&mut conn, &path).await.map_err(failed)?;
    Ok(bytes(data))
}

/// A hash tile `tile/<L>/<N>` (N below 1,000) or entry bundle
/// `tile/entries/<N>`, as C2SP tlog-tiles. The tile routes below take the
/// longer indexes (`x001/234`) and partial tiles (`.p/<W>`).
#[utoipa::path(get, path = "/admin/tlog/tile/{l}/{n}", tag = "admin",
    params(("l" = String, Path, description = "Tile level (0-7), or `entries`"),
        ("n" = String, Path, description = "Tile index, three digits")),
    security(("adminToken" = []), ("auditToken" = [])),
    responses((status = 200, description = "Hash tile (32-byte hashes) or entry bundle (uint16-length-prefixed leaves)", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = "4XX", description = "No or wrong token; bad tile path (400); beyond the tree (404)", body = super::Failure)))]
async fn tile2(
    _: Auditor,
    State(state): State<AdminState>,
    Path((l, n)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    serve_tile(&state, &[&l, &n]).await
}

/// A tile with a two-part index, or a partial one (`<N>.p/<W>`).
#[utoipa::path(get, path = "/admin/tlog/tile/{l}/{n1}/{n2}", tag = "admin",
    params(("l" = String, Path, description = "Tile level (0-7), or `entries`"),
        ("n1" = String, Path, description = "`x<3 digits>`, or `<3 digits>.p`"),
        ("n2" = String, Path, description = "Three digits, or a partial tile's width")),
    security(("adminToken" = []), ("auditToken" = [])),
    responses((status = 200, description = "Hash tile or entry bundle", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = "4XX", description = "No or wrong token; bad tile path (400); beyond the tree (404)", body = super::Failure)))]
async fn tile3(
    _: Auditor,
    State(state): State<AdminState>,
    Path((l, a, b)): Path<(String, String, String)>,
) -> Result<Response, AdminError> {
    serve_tile(&state, &[&l, &a, &b]).await
}

/// A tile with a three-part index, or a two-part partial one.
#[utoipa::path(get, path = "/admin/tlog/tile/{l}/{n1}/{n2}/{n3}", tag = "admin",
    params(("l" = String, Path, description = "Tile level (0-7), or `entries`"),
        ("n1" = String, Path, description = "`x<3 digits>`"),
        ("n2" = String, Path, description = "`x<3 digits>`, or `<3 digits>.p`"),
        ("n3" = String, Path, description = "Three digits, or a partial tile's width")),
    security(("adminToken" = []), ("auditToken" = [])),
    responses((status = 200, description = "Hash tile or entry bundle", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = "4XX", description = "No or wrong token; bad tile path (400); beyond the tree (404)", body = super::Failure)))]
async fn tile4(
    _: Auditor,
    State(state): State<AdminState>,
    Path((l, a, b, c)): Path<(String, String, String, String)>,
) -> Result<Response, AdminError> {
    serve_tile(&state, &[&l, &a, &b, &c]).await
}

/// A tile with a four-part index (logs beyond 256 billion leaves need more).
#[utoipa::path(get, path = "/admin/tlog/tile/{l}/{n1}/{n2}/{n3}/{n4}", tag = "admin",
    params(("l" = String, Path, description = "Tile level (0-7), or `entries`"),
        ("n1" = String, Path, description = "`x<3 digits>`"),
        ("n2" = String, Path, description = "`x<3 digits>`"),
        ("n3" = String, Path, description = "`x<3 digits>`, or `<3 digits>.p`"),
        ("n4" = String, Path, description = "Three digits, or a partial tile's width")),
    security(("adminToken" = []), ("auditToken" = [])),
    responses((status = 200, description = "Hash tile or entry bundle", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = "4XX", description = "No or wrong token; bad tile path (400); beyond the tree (404)", body = super::Failure)))]
async fn tile5(
    _: Auditor,
    State(state): State<AdminState>,
    Path((l, a, b, c, d)): Path<(String, String, String, String, String)>,
) -> Result<Response, AdminError> {
    serve_tile(&state, &[&l, &a, &b, &c, &d]).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LeafQuery {
    /// The event: `<aggregate_type>/<aggregate_id>/<sequence>`
    event: Option<String>,
    /// Or its leaf index (its log position − 1)
    index: Option<u64>,
    /// The size of the signed checkpoint to prove against (default: the
    /// latest cosigned one)
    size: Option<u64>,
}

async fn leaf_index(
    conn: &mut sqlx::PgConnection,
    q: &Result<Query<LeafQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<u64, AdminError> {
    let bad = || {
        AdminError::new(
            StatusCode::BAD_REQUEST,
            "give event=<aggregate_type>/<aggregate_id>/<sequence> or index=<n> (and optionally size=<n>)",
        )
    };
    let Ok(Query(q)) = q else { return Err(bad()) };
    match (&q.event, q.index) {
        (Some(name), None) => reads::index_of_event(conn, name).await.map_err(failed),
        (None, Some(i)) if i < 1 << 62 => Ok(i),
        _ => Err(bad()),
    }
}

/// A `c2sp.org/tlog-proof@v1` file: the event's leaf index, its inclusion
/// proof and the cosigned checkpoint (the event named in `extra`). Check it
/// with the event's leaf bytes (`/admin/tlog/entry`).
#[utoipa::path(get, path = "/admin/tlog/proof", tag = "admin", params(LeafQuery),
    security(("adminToken" = []), ("auditToken" = [])),
    responses((status = 200, description = "The tlog-proof file", body = String, content_type = "text/plain"),
        (status = "4XX", description = "No or wrong token; bad query (400); no such event, or not under a checkpoint yet (404)", body = super::Failure)))]
async fn proof(
    _: Auditor,
    State(state): State<AdminState>,
    q: Result<Query<LeafQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    let mut conn = state.pool.acquire().await.map_err(unavailable)?;
    let index = leaf_index(&mut conn, &q).await?;
    let size = q.ok().and_then(|Query(q)| q.size);
    let (proof, _) = reads::proof(
        &mut conn,
        &state.tlog.cosigners(),
        Some(&state.tlog.kept),
        index,
        size,
    )
    .await
    .map_err(failed)?;
    Ok(text(proof.encode()))
}

/// The leaf bytes of an event (its tlog-tiles entry), what a proof is
/// checked with: leaf hash = SHA-256(0x00 ‖ these bytes).
#[utoipa::path(get, path = "/admin/tlog/entry", tag = "admin", params(LeafQuery),
    security(("adminToken" = []), ("auditToken" = [])),
    responses((status = 200, description = "The leaf bytes (tidelog-event/v1)", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = "4XX", description = "No or wrong token; bad query (400); no such event (404)", body = super::Failure)))]
async fn entry(
    _: Auditor,
    State(state): State<AdminState>,
    q: Result<Query<LeafQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    let mut conn = state.pool.acquire().await.map_err(unavailable)?;
    let index = leaf_index(&mut conn, &q).await?;
    let mut leaves = reads::leaves(&mut conn, index, index + 1)
        .await
        .map_err(|e| match e {
            ReadError::Broken(_) => AdminError::new(StatusCode::NOT_FOUND, "no such leaf"),
            e => failed(e),
        })?;
    Ok(bytes(leaves.pop().unwrap_or_default()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ConsistencyQuery {
    /// The older tree's size
    old: u64,
    /// The newer tree's size (default: the latest cosigned checkpoint's)
    new: Option<u64>,
}

/// The RFC 6962 consistency proof between two tree sizes: one base64 hash
/// a line (as in a tlog-witness `add-checkpoint` body), after the line
/// `new <size>`.
#[utoipa::path(get, path = "/admin/tlog/consistency", tag = "admin", params(ConsistencyQuery),
    security(("adminToken" = []), ("auditToken" = [])),
    responses((status = 200, description = "`new <size>` then the proof's hashes, one base64 line each", body = String, content_type = "text/plain"),
        (status = "4XX", description = "No or wrong token; bad sizes (400); a size beyond the tree (404)", body = super::Failure)))]
async fn consistency(
    _: Auditor,
    State(state): State<AdminState>,
    q: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    let Ok(Query(q)) = q else {
        return Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            "give old=<size> and optionally new=<size>",
        ));
    };
    if q.old >= i64::MAX as u64 || q.new.is_some_and(|n| n >= i64::MAX as u64) {
        return Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            "size out of range",
        ));
    }
    let mut conn = state.pool.acquire().await.map_err(unavailable)?;
    let (new, hashes) = reads::consistency(&mut conn, &state.tlog.cosigners(), q.old, q.new)
        .await
        .map_err(failed)?;
    let mut body = format!("new {new}\n");
    for h in hashes {
        body.push_str(&hash_b64(&h));
        body.push('\n');
    }
    Ok(text(body))
}

/// The log's state: origin and verifier key, leaves integrated and events
/// numbered, the newest checkpoints, the witnesses and the last failures.
#[utoipa::path(get, path = "/admin/tlog/status", tag = "admin",
    security(("adminToken" = []), ("auditToken" = [])),
    responses((status = 200, description = "The transparency log's state", body = Object),
        (status = "4XX", description = "No or wrong token", body = super::Failure)))]
async fn status(_: Auditor, State(state): State<AdminState>) -> Result<Response, AdminError> {
    let log = &state.tlog;
    let mut conn = state.pool.acquire().await.map_err(unavailable)?;
    let head = crate::tlog::stored::head(&mut conn)
        .await
        .map_err(unavailable)?;
    let numbered: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM log_positions")
        .fetch_one(&mut *conn)
        .await
        .map_err(unavailable)?;
    let labels = log.witness_labels();
    let newest = crate::tlog::stored::latest_checkpoint(&mut conn, &labels, 0)
        .await
        .map_err(unavailable)?;
    let cosigned = reads::latest(&mut conn, &log.cosigners())
        .await
        .map_err(failed)?;
    let summary = |c: &crate::tlog::stored::StoredCheckpoint| {
        json!({
            "size": c.size,
            "signed_at": c.signed_at,
            "cosigned_by": c.cosignatures.iter().map(|(w, _)| w).collect::<Vec<_>>(),
        })
    };
    let errors = log.status();
    Ok(Json(json!({
        "origin": log.origin(),
        "vkey": log.vkey(),
        "tree_size": head.size,
        "root": hash_b64(&head.root),
        "numbered_events": numbered,
        "not_integrated": (numbered as u64).saturating_sub(head.size),
        "newest_checkpoint": newest.as_ref().map(summary),
        "latest_cosigned_checkpoint": cosigned.as_ref().map(summary),
        "witnesses": log.witnesses.iter().map(|w| json!({
            "vkey": w.verifier.vkey(),
            "url": w.url,
            "last_error": errors.witness_errors.get(&w.label()),
        })).collect::<Vec<_>>(),
        "quorum": log.quorum,
        "integrator_error": errors.integrator_error,
        "signer_error": errors.signer_error,
    }))
    .into_response())
}

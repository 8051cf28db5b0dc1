//! What every surface answers with when a request fails on the server's
//! side: the status (503 when the database is out of reach, with
//! `Retry-After`), the words for it, and a kept answer's bytes.

/// Seconds a 503 asks the client to wait before retrying.
pub const RETRY_AFTER_SECS: u32 = 2;

/// The status of a request that failed on the server's side, its cause
/// chain logged: 503 when the database was out of reach (during a failover:
/// safe to retry), 400 when it refused a value of the request (a NUL),
/// else 500.
pub fn failure_status(surface: &str, err: &anyhow::Error) -> axum::http::StatusCode {
    if crate::db::unavailable_in(err) {
        tracing::warn!(surface, error = format!("{err:#}"), "database unavailable");
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    } else if crate::db::bad_text_in(err) {
        // a value no check stopped, refused by PostgreSQL: the request's fault
        tracing::warn!(
            surface,
            error = format!("{err:#}"),
            "a value the database cannot store"
        );
        axum::http::StatusCode::BAD_REQUEST
    } else {
        tracing::error!(surface, error = format!("{err:#}"), "request failed");
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// What a Chinese-language surface says for a [`failure_status`].
pub fn failure_message(status: axum::http::StatusCode) -> &'static str {
    match status {
        axum::http::StatusCode::BAD_REQUEST => "参数错误: 含有无法保存的字符",
        axum::http::StatusCode::SERVICE_UNAVAILABLE => "服务暂时不可用，请稍后重试",
        _ => "服务器内部错误",
    }
}

/// A 503 says when to come back (`Retry-After`).
pub fn retry_after(mut resp: axum::response::Response) -> axum::response::Response {
    if resp.status() == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(RETRY_AFTER_SECS),
        );
    }
    resp
}

/// A JSON answer already serialised (a kept answer's bytes).
pub fn json_bytes(bytes: axum::body::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

//! Answers of closed months, kept as the bytes sent: a month that has ended
//! (and has no session still running) changes only when the `gifts`
//! projection applies something, so its answer is reused while that
//! checkpoint stands — and only while this process works the projection,
//! so the checkpoint it knows is the one in the tables (the same rule as
//! the session cache). Measured: building the ~75 KB live-sessions answer
//! was most of a read's cost at a million events.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::READ_MODELS;
use crate::app::AppState;
use crate::store::LogPosition;

/// Answers kept; past it the cache starts again.
const CAPACITY: usize = 512;

#[derive(Default)]
pub struct MonthCache {
    map: Mutex<HashMap<String, (LogPosition, Bytes)>>,
}

/// Where the projection stood before a read began, if answers may be kept.
pub(super) fn stand(state: &AppState) -> Option<LogPosition> {
    let name = READ_MODELS[0];
    state
        .progress
        .works(name)
        .then(|| state.progress.checkpoint(name))
}

impl MonthCache {
    pub(super) fn get(&self, key: &str, at: Option<LogPosition>) -> Option<Response> {
        let at = at?;
        let map = self.map.lock().unwrap();
        let (stood, bytes) = map.get(key)?;
        (*stood == at).then(|| json(bytes.clone()))
    }

    /// Serialises `answer`, keeps it when `closed` (it does not depend on
    /// the clock) and the projection's stand is known, and returns it.
    pub(super) fn keep<T: serde::Serialize>(
        &self,
        key: String,
        at: Option<LogPosition>,
        closed: bool,
        answer: &T,
    ) -> serde_json::Result<Response> {
        let bytes = Bytes::from(serde_json::to_vec(answer)?);
        if let (Some(at), true) = (at, closed) {
            let mut map = self.map.lock().unwrap();
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(key, (at, bytes.clone()));
        }
        Ok(json(bytes))
    }
}

fn json(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

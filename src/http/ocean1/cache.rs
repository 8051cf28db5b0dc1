//! Point histories kept as the bytes sent while no `ledger` batch touched
//! the wallet (`StreamCache`: only on the process that works the
//! projection): a history changes only when its wallet moves, and is read
//! far more often than that.

use aggregates::wallet::wallet_id;
use aggregates::Currency;
use axum::body::Bytes;
use axum::response::Response;
use uuid::Uuid;

use crate::http::reply::json_bytes;
use crate::ledger::PROJECTION;
use crate::projector::{Progress, Stand, StreamCache};

/// Histories kept; past it the cache starts again.
const CAPACITY: usize = 4096;

/// Keyed by account and page size.
pub struct HistoryCache(StreamCache<(Uuid, i64), Bytes>);

impl Default for HistoryCache {
    fn default() -> Self {
        Self(StreamCache::new(PROJECTION, CAPACITY))
    }
}

impl HistoryCache {
    /// Where the projection stood before a read began, if histories may be kept.
    pub(super) fn stand(&self, progress: &Progress) -> Option<Stand> {
        self.0.stand(progress)
    }

    pub(super) fn get(&self, progress: &Progress, account: Uuid, limit: i64) -> Option<Response> {
        self.0.get(progress, &(account, limit)).map(json_bytes)
    }

    /// Keeps a history read after `stand` returned `since`, and returns it.
    pub(super) fn keep(
        &self,
        account: Uuid,
        limit: i64,
        since: Option<Stand>,
        body: Vec<u8>,
    ) -> Response {
        let body = Bytes::from(body);
        let stream = wallet_id(account, Currency::Points);
        self.0.put((account, limit), stream, since, body.clone());
        json_bytes(body)
    }
}

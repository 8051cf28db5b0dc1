//! Message pages kept as the bytes sent while no `roomchat` batch touched
//! their room (`StreamCache`: only on the process that works the
//! projection). A room's pages change only when the room does, and most
//! reads are of a room's latest page, read again and again by its members.

use axum::body::Bytes;
use axum::response::Response;

use super::dto::MessagePage;
use crate::http::reply::json_bytes;
use crate::projector::{Progress, Stand, StreamCache};

/// Pages (and readers) kept; past it the cache starts again.
const CAPACITY: usize = 4096;

pub struct PageCache {
    pages: StreamCache<(i64, Option<i64>, i64), Bytes>,
    /// readers whose membership a read proved
    members: StreamCache<(i64, i64), ()>,
}

impl Default for PageCache {
    fn default() -> Self {
        Self {
            pages: StreamCache::new(super::READ_MODELS[0], CAPACITY),
            members: StreamCache::new(super::READ_MODELS[0], CAPACITY),
        }
    }
}

fn page_key(page: &MessagePage) -> (i64, Option<i64>, i64) {
    (page.room_id.get(), page.before, page.limit)
}

/// A room's stream, as the room's commands name it.
fn stream(page: &MessagePage) -> String {
    page.room_id.get().to_string()
}

impl PageCache {
    /// Where the projection stood before a read began, if pages may be kept.
    pub(super) fn stand(&self, progress: &Progress) -> Option<Stand> {
        self.pages.stand(progress)
    }

    /// The page as last sent, if `reader` is known to be a member and the
    /// room is unchanged since.
    pub(super) fn get(
        &self,
        progress: &Progress,
        page: &MessagePage,
        reader: i64,
    ) -> Option<Response> {
        self.members.get(progress, &(page.room_id.get(), reader))?;
        self.pages.get(progress, &page_key(page)).map(json_bytes)
    }

    /// Keeps a page that `reader`, a member, read after `stand` returned
    /// `since`, and returns it.
    pub(super) fn keep(
        &self,
        page: &MessagePage,
        reader: i64,
        since: Option<Stand>,
        body: Vec<u8>,
    ) -> Response {
        let body = Bytes::from(body);
        self.members
            .put((page.room_id.get(), reader), stream(page), since, ());
        self.pages
            .put(page_key(page), stream(page), since, body.clone());
        json_bytes(body)
    }
}

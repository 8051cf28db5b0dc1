//! `Streams.Read`: finite reads of a stream or of `$all` (both
//! directions, from the start, the end, a revision or a position, a count,
//! `$all` filtered), and catch-up subscriptions (`subscribe.rs`). Each call
//! runs as its own task that sends into a bounded channel: a slow client
//! holds at most [`out::BUFFER`] answers and its task waits.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request as Call, Response, Status};

use super::feed::Feed;
use super::filter::Filter;
use super::log::{self, LogEvent};
use super::out::{Gone, Out};

/// Answers a read holds for its client before its task waits: finite reads
/// stream pages (a page's worth keeps the pipe full); a live subscriber
/// holds few, its backlog is read again from the database.
const READ_BUFFER: usize = 512;
const SUBSCRIPTION_BUFFER: usize = 64;
use super::proto::streams::streams_server;
use super::proto::streams::{ReadReq, ReadResp};
use super::request::{AllFrom, Request, RevisionFrom, Target};
use super::subscribe;

/// Why a call's task stopped early.
pub enum Stop {
    /// The client went away.
    Gone,
    /// The call fails with this status.
    Fail(Status),
}

impl From<Gone> for Stop {
    fn from(_: Gone) -> Self {
        Stop::Gone
    }
}

impl From<Status> for Stop {
    fn from(s: Status) -> Self {
        Stop::Fail(s)
    }
}

impl From<sqlx::Error> for Stop {
    /// The database is out of reach or failing: the client may retry (the
    /// clients reconnect on `Unavailable`; a retry is what is wanted).
    fn from(e: sqlx::Error) -> Self {
        tracing::warn!(error = %e, "gRPC read failed on the database");
        Stop::Fail(Status::unavailable(format!(
            "the event log could not be read: {e}"
        )))
    }
}

pub struct Streams {
    pub pool: PgPool,
    pub feed: Arc<Feed>,
    pub shutdown: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl streams_server::Streams for Streams {
    type ReadStream = ReceiverStream<Result<ReadResp, Status>>;

    async fn read(&self, call: Call<ReadReq>) -> Result<Response<Self::ReadStream>, Status> {
        let request = Request::parse(call.into_inner())?;
        let buffer = match request.count {
            Some(_) => READ_BUFFER,
            None => SUBSCRIPTION_BUFFER,
        };
        let (out, rx) = Out::new(request.uuid_string, buffer);
        let pool = self.pool.clone();
        let feed = self.feed.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let result = match request.count {
                Some(count) => read(&pool, &out, request, count).await,
                None => subscribe::run(&pool, &feed, &out, request, shutdown).await,
            };
            if let Err(Stop::Fail(status)) = result {
                out.fail(status).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn read(pool: &PgPool, out: &Out, request: Request, count: u64) -> Result<(), Stop> {
    match request.target {
        Target::All(from) => {
            read_all(
                pool,
                out,
                from,
                request.backwards,
                count,
                request.filter.as_ref(),
            )
            .await
        }
        Target::Stream { name, from } => {
            read_stream(
                pool,
                out,
                &name,
                from,
                request.backwards,
                count,
                request.compatibility,
            )
            .await
        }
    }
}

/// Pages of the log from `cursor` (exclusive) in one direction, each read
/// and encoded (ids as strings or not) while the one before is being sent;
/// ends after a short page.
pub fn prefetch(
    pool: PgPool,
    mut cursor: u64,
    backwards: bool,
    limit: i64,
    uuid_string: bool,
) -> mpsc::Receiver<sqlx::Result<Vec<Arc<LogEvent>>>> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            let page = if backwards {
                log::before(&pool, cursor, limit).await
            } else {
                log::after(&pool, cursor, limit).await
            };
            if let Ok(page) = &page {
                for e in page {
                    e.encoded(uuid_string);
                }
            }
            let next = match &page {
                Ok(p) if p.len() as i64 == limit => p.last().map(|e| e.position),
                _ => None,
            };
            if tx.send(page).await.is_err() {
                return;
            }
            match next {
                Some(at) => cursor = at,
                None => return,
            }
        }
    });
    rx
}

/// `$all`: forwards from a position includes it, backwards excludes it;
/// forwards from the end and backwards from the start read nothing. A
/// position between events reads from the next one (positions are
/// contiguous here, so only past the head is there nothing).
async fn read_all(
    pool: &PgPool,
    out: &Out,
    from: AllFrom,
    backwards: bool,
    count: u64,
    filter: Option<&Filter>,
) -> Result<(), Stop> {
    if count == 0 {
        return Ok(());
    }
    let cursor = match (from, backwards) {
        (AllFrom::Start, false) => 0,
        (AllFrom::Position(at), false) => at.saturating_sub(1),
        // pages are ranges of positions: backwards starts at the head
        (AllFrom::End, true) => log::head(pool).await? + 1,
        (AllFrom::Position(at), true) => at.min(log::head(pool).await? + 1),
        (AllFrom::End, false) | (AllFrom::Start, true) => return Ok(()),
    };
    let limit = match filter {
        Some(_) => log::PAGE,
        None => count.min(log::PAGE as u64) as i64,
    };
    let mut pages = prefetch(pool.clone(), cursor, backwards, limit, out.uuid_string());
    let mut sent = 0u64;
    while let Some(page) = pages.recv().await {
        for e in page? {
            if let Some(f) = filter {
                if !f.matches(&e)? {
                    continue;
                }
            }
            out.event(&e).await?;
            sent += 1;
            if sent == count {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A revision as a sequence (revision + 1), saturating.
pub fn sequence_of(revision: u64) -> i64 {
    i64::try_from(revision)
        .ok()
        .and_then(|r| r.checked_add(1))
        .unwrap_or(i64::MAX)
}

/// A stream, up to its last numbered event: a stream with none is not
/// found. Both directions include the revision they start from; with
/// `compatibility` ≥ 1 (the Rust and Node clients) the stream's last
/// revision follows the events, as the server sends it.
async fn read_stream(
    pool: &PgPool,
    out: &Out,
    name: &str,
    from: RevisionFrom,
    backwards: bool,
    count: u64,
    compatibility: u32,
) -> Result<(), Stop> {
    let stream = log::parse_stream(name);
    let last = match stream {
        Some(s) => log::stream_last(pool, s).await?,
        None => None,
    };
    let (Some(stream), Some(last)) = (stream, last) else {
        out.stream_not_found(name).await?;
        return Ok(());
    };
    let mut sequence = match (from, backwards) {
        (RevisionFrom::Start, _) => 1,
        (RevisionFrom::Revision(r), false) => sequence_of(r),
        (RevisionFrom::Revision(r), true) => sequence_of(r).min(last),
        (RevisionFrom::End, false) => last + 1,
        (RevisionFrom::End, true) => last,
    };
    let mut sent = 0u64;
    'pages: while sent < count && (1..=last).contains(&sequence) {
        let limit = (count - sent).min(log::PAGE as u64) as i64;
        let page = log::stream_page(pool, stream, sequence, backwards, limit).await?;
        let short = (page.len() as i64) < limit;
        for row in page {
            // a hole in the numbers (not yet numbered): the stream ends there
            let Some(e) = row.filter(|e| e.sequence <= last) else {
                break 'pages;
            };
            out.event(&e).await?;
            sent += 1;
            sequence = if backwards {
                e.sequence - 1
            } else {
                e.sequence + 1
            };
        }
        if short {
            break;
        }
    }
    if compatibility >= 1 {
        out.last_stream_position((last - 1) as u64).await?;
    }
    Ok(())
}

//! `Streams.Read`: finite reads of a stream or of `$all` (both
//! directions, from the start, the end, a revision or a position, a count,
//! `$all` filtered), and catch-up subscriptions (`subscribe.rs`). Each call
//! runs as its own task that sends into a bounded channel: a slow client
//! holds at most a few chunks of answers (`READ_BUFFER`,
//! `SUBSCRIPTION_BUFFER`) and its task waits.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request as Call, Response, Status};

use super::feed::Feed;
use super::filter::Filter;
use super::log::{self, LogEvent};
use super::out::{Gone, Out};

/// Chunks a read holds for its client before its task waits: finite reads
/// stream pages in chunks of `out::CHUNK` (8 of them, 512 answers, keep the
/// pipe full); a live subscriber's chunks are single answers and it holds
/// few, its backlog is read again from the database.
const READ_BUFFER: usize = 8;
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
    type ReadStream = Answers;

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
        Ok(Response::new(Box::pin(
            ReceiverStream::new(rx).flat_map(futures::stream::iter),
        )))
    }
}

/// A call's answers as the connection takes them, one at a time from the
/// chunks its task sends.
pub type Answers = std::pin::Pin<Box<dyn Stream<Item = Result<ReadResp, Status>> + Send>>;

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

/// Pages read at once by [`prefetch`]: the next one is read by PostgreSQL
/// while this one is decoded and encoded here.
const PAGES_AHEAD: usize = 2;

/// Pages of the log from `cursor` (exclusive) in one direction, each read
/// and encoded (ids as strings or not) while the one before is being sent;
/// ends after a short page. Positions are contiguous, so where each page
/// starts is known before the page before it arrives: [`PAGES_AHEAD`] are
/// read at once (a read that took turns left a core idle).
pub fn prefetch(
    pool: PgPool,
    cursor: u64,
    backwards: bool,
    limit: i64,
    uuid_string: bool,
) -> mpsc::Receiver<sqlx::Result<Vec<Arc<LogEvent>>>> {
    let (tx, rx) = mpsc::channel(1);
    let step = limit.max(1) as u64;
    tokio::spawn(async move {
        let pages = futures::stream::iter(0u64..)
            .map(|k| {
                let pool = pool.clone();
                async move {
                    let page = if backwards {
                        let at = cursor.saturating_sub(k.saturating_mul(step));
                        log::before(&pool, at, limit).await
                    } else {
                        let at = cursor.saturating_add(k.saturating_mul(step));
                        log::after(&pool, at, limit).await
                    };
                    if let Ok(page) = &page {
                        for e in page {
                            e.encoded(uuid_string);
                        }
                    }
                    page
                }
            })
            .buffered(PAGES_AHEAD);
        let mut pages = std::pin::pin!(pages);
        while let Some(page) = pages.next().await {
            let full = matches!(&page, Ok(p) if p.len() as i64 == limit);
            if tx.send(page).await.is_err() || !full {
                return;
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
    let mut left = count;
    while let Some(page) = pages.recv().await {
        let mut page = page?;
        // what passed before an expression failed is still sent
        let mut failed = None;
        if let Some(f) = filter {
            let mut kept = Vec::with_capacity(page.len());
            for e in page {
                match f.matches(&e) {
                    Ok(true) => kept.push(e),
                    Ok(false) => {}
                    Err(status) => {
                        failed = Some(status);
                        break;
                    }
                }
            }
            page = kept;
        }
        page.truncate(usize::try_from(left).unwrap_or(usize::MAX));
        out.events(&page).await?;
        left -= page.len() as u64;
        if let Some(status) = failed {
            return Err(status.into());
        }
        if left == 0 {
            return Ok(());
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

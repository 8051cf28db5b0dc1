//! Catch-up subscriptions, to a stream or to `$all`: the confirmation
//! first, then the events after the starting point read from the
//! database, `caught_up`, then live events from the process's [`Feed`].
//!
//! No event is missed or sent twice across the hand-over: the feed is
//! joined before the past is read, and from then on the subscription
//! follows the log's positions one by one — contiguous from 1 — so an
//! event it already has is skipped and any hole (events numbered while it
//! was reading, events it lagged behind on) is read from the database
//! before the next live one. A subscriber slower than the feed's buffer
//! catches up from the database the same way. Starting points are
//! exclusive, as KurrentDB's; the end is the head when confirmed.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{broadcast, watch};
use tonic::Status;

use super::feed::Feed;
use super::filter::Filter;
use super::log::{self, LogEvent};
use super::out::{Gone, Out};
use super::read::{prefetch, sequence_of, Stop};
use super::request::{AllFrom, Request, RevisionFrom, Target};

enum Selector {
    All(Option<Filter>),
    /// A stream's events, by name; `last` is the sequence of the last one
    /// sent (or skipped: the starting revision).
    Stream {
        name: String,
        last: i64,
    },
}

struct Subscription<'a> {
    pool: &'a PgPool,
    out: &'a Out,
    /// The log position of the last event taken (sent or filtered out).
    after: u64,
    selector: Selector,
    /// Events scanned by a filtered `$all` subscription, for its checkpoints.
    scanned: u64,
}

pub async fn run(
    pool: &PgPool,
    feed: &Feed,
    out: &Out,
    request: Request,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Stop> {
    let mut live = feed.subscribe();
    out.confirmation().await?;
    let mut sub = match request.target {
        Target::All(from) => {
            let after = match from {
                AllFrom::Start => 0,
                AllFrom::Position(at) => at,
                AllFrom::End => log::head(pool).await?,
            };
            let mut sub = Subscription {
                pool,
                out,
                after,
                selector: Selector::All(request.filter),
                scanned: 0,
            };
            sub.catch_up().await?;
            out.caught_up_all(sub.after).await?;
            sub
        }
        Target::Stream { name, from } => {
            // everything numbered by now is in what the stream's read finds
            let head = log::head(pool).await?;
            let last = match from {
                RevisionFrom::Start => 0,
                RevisionFrom::Revision(r) => sequence_of(r),
                RevisionFrom::End => match log::parse_stream(&name) {
                    Some(s) => log::stream_last(pool, s).await?.unwrap_or(0),
                    None => 0,
                },
            };
            let mut sub = Subscription {
                pool,
                out,
                after: head,
                selector: Selector::Stream { name, last },
                scanned: 0,
            };
            sub.catch_up_stream().await?;
            let last = match &sub.selector {
                Selector::Stream { last, .. } => *last,
                Selector::All(_) => 0,
            };
            out.caught_up_stream((last > 0).then(|| (last - 1) as u64))
                .await?;
            sub
        }
    };
    loop {
        let next = tokio::select! {
            next = live.recv() => next,
            _ = out.closed() => return Err(Stop::Gone),
            _ = shutdown.changed() => return Err(shutting_down()),
        };
        match next {
            Ok(e) if e.position <= sub.after => {}
            Ok(e) => {
                if e.position > sub.after + 1 {
                    sub.catch_up().await?;
                }
                if e.position == sub.after + 1 {
                    sub.take(&e).await?;
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(
                    missed,
                    "a gRPC subscriber fell behind the live feed; catching up from the database"
                );
                sub.catch_up().await?
            }
            Err(broadcast::error::RecvError::Closed) => return Err(shutting_down()),
        }
    }
}

fn shutting_down() -> Stop {
    Stop::Fail(Status::unavailable("the server is shutting down"))
}

impl Subscription<'_> {
    /// Takes the event after `after` in the log: sends it if it is
    /// selected; a filtered `$all` subscription sends a checkpoint every
    /// so many events scanned.
    async fn take(&mut self, e: &Arc<LogEvent>) -> Result<(), Stop> {
        debug_assert_eq!(e.position, self.after + 1);
        self.after = e.position;
        match &mut self.selector {
            Selector::All(None) => self.out.event(e).await?,
            Selector::All(Some(filter)) => {
                if filter.matches(e)? {
                    self.out.event(e).await?;
                }
                self.scanned += 1;
                if self.scanned.is_multiple_of(filter.checkpoint_every) {
                    self.out.checkpoint(self.after).await?;
                }
            }
            Selector::Stream { name, last } => {
                if e.stream != *name || e.sequence <= *last {
                    return Ok(());
                }
                if e.sequence > *last + 1 {
                    // earlier events of the stream with later numbers
                    self.catch_up_stream().await?;
                }
                let Selector::Stream { last, .. } = &mut self.selector else {
                    unreachable!()
                };
                if e.sequence > *last {
                    *last = e.sequence;
                    self.out.event(e).await?;
                }
            }
        }
        Ok(())
    }

    /// Everything numbered after `after`, up to the head, from the database.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        let mut pages = prefetch(
            self.pool.clone(),
            self.after,
            false,
            log::PAGE,
            self.out.uuid_string(),
        );
        while let Some(page) = pages.recv().await {
            for e in page? {
                if e.position == self.after + 1 {
                    self.take(&e).await?;
                }
            }
        }
        Ok(())
    }

    /// The stream's numbered events after the last one sent.
    async fn catch_up_stream(&mut self) -> Result<(), Stop> {
        let Selector::Stream { name, last } = &mut self.selector else {
            return Ok(());
        };
        let Some(stream) = log::parse_stream(name) else {
            return Ok(());
        };
        loop {
            let page = log::stream_page(self.pool, stream, *last + 1, false, log::PAGE).await?;
            let short = (page.len() as i64) < log::PAGE;
            for row in page {
                let Some(e) = row else { return Ok(()) };
                *last = e.sequence;
                self.out.event(&e).await.map_err(|Gone| Stop::Gone)?;
            }
            if short {
                return Ok(());
            }
        }
    }
}

//! What a `Read` call sends, in the shapes every stock client accepts:
//! each `ReadResp` has its content set (the Rust client unwraps it);
//! events as `wire.rs` encodes them.

use tokio::sync::mpsc;
use tonic::Status;

use super::log::LogEvent;
use super::proto::streams::read_resp::{self, Content};
use super::proto::streams::ReadResp;
use super::wire::stream_identifier;

/// The client went away: its call's task ends.
#[derive(Debug)]
pub struct Gone;

/// What a call's task hands the connection at once: one answer, or a
/// page's events in a row (one channel send and one wake-up for up to
/// [`CHUNK`] answers instead of one each).
pub type Chunk = Vec<Result<ReadResp, Status>>;

/// Answers per chunk at most.
pub const CHUNK: usize = 64;

pub struct Out {
    tx: mpsc::Sender<Chunk>,
    /// ids as strings (`UUIDOption.string`) or as two signed halves
    uuid_string: bool,
}

fn resp(content: Content) -> ReadResp {
    ReadResp {
        content: Some(content),
    }
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(std::time::SystemTime::now())
}

pub fn position(at: u64) -> read_resp::Position {
    read_resp::Position {
        commit_position: at,
        prepare_position: at,
    }
}

impl Out {
    /// `buffer`: chunks held for a slow client before the call's task
    /// waits for it.
    pub fn new(uuid_string: bool, buffer: usize) -> (Self, mpsc::Receiver<Chunk>) {
        let (tx, rx) = mpsc::channel(buffer);
        (Self { tx, uuid_string }, rx)
    }

    /// Whether the client wants ids as strings.
    pub fn uuid_string(&self) -> bool {
        self.uuid_string
    }

    async fn send(&self, content: Content) -> Result<(), Gone> {
        self.tx
            .send(vec![Ok(resp(content))])
            .await
            .map_err(|_| Gone)
    }

    /// Ends the call with an error status.
    pub async fn fail(&self, status: Status) {
        let _ = self.tx.send(vec![Err(status)]).await;
    }

    /// Resolves when the client has gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    pub async fn event(&self, e: &LogEvent) -> Result<(), Gone> {
        self.send(Content::Event(e.encoded(self.uuid_string))).await
    }

    /// Events in a row, [`CHUNK`] to a send.
    pub async fn events(&self, events: &[impl AsRef<LogEvent>]) -> Result<(), Gone> {
        for chunk in events.chunks(CHUNK) {
            let answers = chunk
                .iter()
                .map(|e| Ok(resp(Content::Event(e.as_ref().encoded(self.uuid_string)))))
                .collect();
            self.tx.send(answers).await.map_err(|_| Gone)?;
        }
        Ok(())
    }

    pub async fn confirmation(&self) -> Result<(), Gone> {
        self.send(Content::Confirmation(read_resp::SubscriptionConfirmation {
            subscription_id: ::uuid::Uuid::new_v4().to_string(),
        }))
        .await
    }

    pub async fn stream_not_found(&self, name: &str) -> Result<(), Gone> {
        self.send(Content::StreamNotFound(read_resp::StreamNotFound {
            stream_identifier: Some(stream_identifier(name)),
        }))
        .await
    }

    pub async fn last_stream_position(&self, revision: u64) -> Result<(), Gone> {
        self.send(Content::LastStreamPosition(revision)).await
    }

    /// A `$all` subscription is live, having sent everything up to `at`
    /// (0: the log is empty; no position then).
    pub async fn caught_up_all(&self, at: u64) -> Result<(), Gone> {
        self.send(Content::CaughtUp(read_resp::CaughtUp {
            timestamp: Some(now()),
            stream_revision: None,
            position: (at > 0).then(|| position(at)),
        }))
        .await
    }

    /// A stream subscription is live, at `revision` (`None`: the stream is
    /// empty).
    pub async fn caught_up_stream(&self, revision: Option<u64>) -> Result<(), Gone> {
        self.send(Content::CaughtUp(read_resp::CaughtUp {
            timestamp: Some(now()),
            stream_revision: revision.map(|r| r as i64),
            position: None,
        }))
        .await
    }

    pub async fn checkpoint(&self, at: u64) -> Result<(), Gone> {
        self.send(Content::Checkpoint(read_resp::Checkpoint {
            commit_position: at,
            prepare_position: at,
            timestamp: Some(now()),
        }))
        .await
    }
}

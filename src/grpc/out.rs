//! What a `Read` call sends, in the shapes every stock client accepts:
//! each `ReadResp` has its content set (the Rust client unwraps it); an
//! event carries its id in the form asked for (Python drops an event whose
//! string id is empty), its stream, `commit_position = prepare_position =`
//! its log position and `ReadEvent.position` set to it (Python asserts
//! it), and the metadata `type`, `content-type` and `created`.

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::sync::mpsc;
use tonic::Status;

use super::log::LogEvent;
use super::proto::event_store::client::uuid;
use super::proto::streams::read_resp::{self, read_event, Content};
use super::proto::streams::ReadResp;
use super::proto::{StreamIdentifier, Uuid};

/// Responses buffered per call before the call's task waits for the client.
pub const BUFFER: usize = 64;

/// The client went away: its call's task ends.
#[derive(Debug)]
pub struct Gone;

pub struct Out {
    tx: mpsc::Sender<Result<ReadResp, Status>>,
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
    pub fn new(uuid_string: bool) -> (Self, mpsc::Receiver<Result<ReadResp, Status>>) {
        let (tx, rx) = mpsc::channel(BUFFER);
        (Self { tx, uuid_string }, rx)
    }

    async fn send(&self, content: Content) -> Result<(), Gone> {
        self.tx.send(Ok(resp(content))).await.map_err(|_| Gone)
    }

    /// Ends the call with an error status.
    pub async fn fail(&self, status: Status) {
        let _ = self.tx.send(Err(status)).await;
    }

    /// Resolves when the client has gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    pub async fn event(&self, e: &LogEvent) -> Result<(), Gone> {
        self.send(Content::Event(self.read_event(e))).await
    }

    pub fn read_event(&self, e: &LogEvent) -> read_resp::ReadEvent {
        let id = if self.uuid_string {
            uuid::Value::String(e.id.to_string())
        } else {
            let (msb, lsb) = e.id.as_u64_pair();
            uuid::Value::Structured(uuid::Structured {
                most_significant_bits: msb as i64,
                least_significant_bits: lsb as i64,
            })
        };
        let metadata = BTreeMap::from([
            ("type".to_owned(), e.event_type.clone()),
            ("content-type".to_owned(), "application/json".to_owned()),
            ("created".to_owned(), e.created_ticks.to_string()),
        ]);
        read_resp::ReadEvent {
            event: Some(read_event::RecordedEvent {
                id: Some(Uuid { value: Some(id) }),
                stream_identifier: Some(stream_identifier(&e.stream)),
                stream_revision: e.revision(),
                prepare_position: e.position,
                commit_position: e.position,
                metadata,
                custom_metadata: e.metadata.clone(),
                data: e.data.clone(),
            }),
            link: None,
            position: Some(read_event::Position::CommitPosition(e.position)),
        }
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

fn stream_identifier(name: &str) -> StreamIdentifier {
    StreamIdentifier {
        stream_name: Bytes::copy_from_slice(name.as_bytes()),
    }
}

//! Events on the wire: each event's `ReadResp.ReadEvent` is encoded once
//! per id form (the protocol lets a client ask for string or structured
//! ids) and kept with the event, so a page read is encoded beside its
//! sending and a live event once for every subscriber, not once each.
//! `EncodedEvent` stands for the message in `ReadResp` (build.rs maps the
//! type): it writes its bytes as they are.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{skip_field, DecodeContext, WireType};
use prost::{DecodeError, Message};

use super::log::LogEvent;
use super::proto::event_store::client::uuid;
use super::proto::tidelog::wire::read_event::{self, RecordedEvent};
use super::proto::tidelog::wire::ReadEvent;
use super::proto::{StreamIdentifier, Uuid};

/// A `ReadResp.ReadEvent`, encoded.
#[derive(Clone, PartialEq, Default)]
pub struct EncodedEvent(pub Bytes);

impl std::fmt::Debug for EncodedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncodedEvent({} bytes)", self.0.len())
    }
}

impl Message for EncodedEvent {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    /// The server never decodes one (it only sends them).
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// The event as every stock client takes it: its id in the form asked for
/// (Python drops an event whose string id is empty), its stream,
/// `commit_position = prepare_position =` its log position and
/// `ReadEvent.position` set to it (Python asserts it), the metadata `type`,
/// `content-type` and `created`.
pub fn encode(e: &LogEvent, uuid_string: bool) -> Bytes {
    let id = if uuid_string {
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
    ReadEvent {
        event: Some(RecordedEvent {
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
    .encode_to_vec()
    .into()
}

pub fn stream_identifier(name: &str) -> StreamIdentifier {
    StreamIdentifier {
        stream_name: Bytes::copy_from_slice(name.as_bytes()),
    }
}

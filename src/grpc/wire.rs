//! Events on the wire: each event's `ReadResp.ReadEvent` is encoded once
//! per id form (the protocol lets a client ask for string or structured
//! ids) and kept with the event, so a page read is encoded beside its
//! sending and a live event once for every subscriber, not once each.
//! `EncodedEvent` stands for the message in `ReadResp` (build.rs maps the
//! type): it writes its bytes as they are.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    encode_key, encode_varint, encoded_len_varint, key_len, skip_field, DecodeContext, WireType,
};
use prost::{DecodeError, Message};

use super::log::LogEvent;
use super::proto::StreamIdentifier;

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
///
/// Written field by field into one buffer of its exact size, byte for
/// byte what prost writes for the generated `ReadEvent` (the test below
/// compares them): building that message took a map, three keys and a
/// copy of every string per event, about a tenth of a `$all` read's
/// server time.
pub fn encode(e: &LogEvent, uuid_string: bool) -> Bytes {
    encode_with(e, &e.metadata, &e.data, uuid_string)
        .bytes
        .into()
}

/// An event encoded with the metadata and data given (not the event's
/// own), and where they lie in its bytes: an event read from a row is
/// encoded straight from the row's values, and its `metadata` and `data`
/// are then these slices of its bytes rather than copies of their own.
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub metadata: std::ops::Range<usize>,
    pub data: std::ops::Range<usize>,
}

pub fn encode_with(
    e: &LogEvent,
    custom_metadata: &[u8],
    data: &[u8],
    uuid_string: bool,
) -> Encoded {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let (msb, lsb) = e.id.as_u64_pair();
    let id: &[u8] = if uuid_string {
        e.id.hyphenated().encode_lower(&mut text).as_bytes()
    } else {
        &[]
    };
    let mut ticks = itoa::Buffer::new();
    // the map's entries in key order, as a BTreeMap gives them
    let metadata: [(&[u8], &[u8]); 3] = [
        (b"content-type", b"application/json"),
        (b"created", ticks.format(e.created_ticks).as_bytes()),
        (b"type", e.event_type.as_bytes()),
    ];

    let uuid_len = if uuid_string {
        delimited_len(2, id.len())
    } else {
        delimited_len(1, varint_len(1, msb) + varint_len(2, lsb))
    };
    let stream = e.stream.as_bytes();
    let stream_len = bytes_len(3, stream.len());
    let recorded_len = delimited_len(1, uuid_len)
        + delimited_len(2, stream_len)
        + varint_len(3, e.revision())
        + varint_len(4, e.position)
        + varint_len(5, e.position)
        + metadata
            .iter()
            .map(|(k, v)| delimited_len(6, delimited_len(1, k.len()) + delimited_len(2, v.len())))
            .sum::<usize>()
        + bytes_len(7, custom_metadata.len())
        + bytes_len(8, data.len());
    let len = delimited_len(1, recorded_len) + key_len(3) + encoded_len_varint(e.position);

    let mut buf = Vec::with_capacity(len);
    let b = &mut buf;
    delimited(1, recorded_len, b);
    delimited(1, uuid_len, b);
    if uuid_string {
        delimited(2, id.len(), b);
        b.put_slice(id);
    } else {
        delimited(1, varint_len(1, msb) + varint_len(2, lsb), b);
        varint(1, msb, b);
        varint(2, lsb, b);
    }
    delimited(2, stream_len, b);
    let _ = bytes(3, stream, b);
    varint(3, e.revision(), b);
    varint(4, e.position, b);
    varint(5, e.position, b);
    for (k, v) in metadata {
        delimited(6, delimited_len(1, k.len()) + delimited_len(2, v.len()), b);
        delimited(1, k.len(), b);
        b.put_slice(k);
        delimited(2, v.len(), b);
        b.put_slice(v);
    }
    let metadata = bytes(7, custom_metadata, b);
    let data = bytes(8, data, b);
    // `ReadEvent.position`: a oneof, written even when 0
    encode_key(3, WireType::Varint, b);
    encode_varint(e.position, b);
    debug_assert_eq!(buf.len(), len);
    Encoded {
        bytes: buf,
        metadata,
        data,
    }
}

/// A length-delimited field's key and length (its `len` bytes follow).
fn delimited(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// A proto3 scalar: nothing when 0.
fn varint(tag: u32, value: u64, buf: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(value, buf);
    }
}

fn varint_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

/// A proto3 `bytes` field: nothing when empty. Answers where its value
/// lies in `buf`.
fn bytes(tag: u32, value: &[u8], buf: &mut Vec<u8>) -> std::ops::Range<usize> {
    if !value.is_empty() {
        delimited(tag, value.len(), buf);
        buf.put_slice(value);
    }
    buf.len() - value.len()..buf.len()
}

fn bytes_len(tag: u32, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        delimited_len(tag, len)
    }
}

pub fn stream_identifier(name: &str) -> StreamIdentifier {
    StreamIdentifier {
        stream_name: Bytes::copy_from_slice(name.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::grpc::proto::event_store::client::uuid as pb_uuid;
    use crate::grpc::proto::tidelog::wire::read_event::{self, RecordedEvent};
    use crate::grpc::proto::tidelog::wire::ReadEvent;
    use crate::grpc::proto::Uuid;

    /// The generated message, as the endpoint built it before.
    fn by_prost(e: &LogEvent, uuid_string: bool) -> Vec<u8> {
        let id = if uuid_string {
            pb_uuid::Value::String(e.id.to_string())
        } else {
            let (msb, lsb) = e.id.as_u64_pair();
            pb_uuid::Value::Structured(pb_uuid::Structured {
                most_significant_bits: msb as i64,
                least_significant_bits: lsb as i64,
            })
        };
        ReadEvent {
            event: Some(RecordedEvent {
                id: Some(Uuid { value: Some(id) }),
                stream_identifier: Some(stream_identifier(&e.stream)),
                stream_revision: e.revision(),
                prepare_position: e.position,
                commit_position: e.position,
                metadata: BTreeMap::from([
                    ("type".to_owned(), e.event_type.clone()),
                    ("content-type".to_owned(), "application/json".to_owned()),
                    ("created".to_owned(), e.created_ticks.to_string()),
                ]),
                custom_metadata: e.metadata.clone(),
                data: e.data.clone(),
            }),
            link: None,
            position: Some(read_event::Position::CommitPosition(e.position)),
        }
        .encode_to_vec()
    }

    fn event(position: u64, sequence: i64, id: uuid::Uuid, data: &str, ticks: i64) -> LogEvent {
        LogEvent {
            position,
            stream: format!("ChatRoom-{position}"),
            sequence,
            event_type: "MessagePosted".into(),
            data: Bytes::from(data.to_owned()),
            metadata: Bytes::from_static(br#"{"actor":"a"}"#),
            created_ticks: ticks,
            id,
            encoded: Default::default(),
        }
    }

    #[test]
    fn events_are_encoded_byte_for_byte_as_the_generated_message() {
        let ids = [
            uuid::Uuid::nil(),
            uuid::Uuid::from_u64_pair(0, 7),
            uuid::Uuid::from_u64_pair(7, 0),
            uuid::Uuid::from_u64_pair(u64::MAX, u64::MAX / 3),
            uuid::Uuid::from_u128(0x0123_4567_89ab_8def_8123_4567_89ab_cdef),
        ];
        let long = "x".repeat(300);
        let mut cases = 0;
        for id in ids {
            for (position, sequence) in [(1, 1), (2, 2), (300, 1), (1 << 40, 1 << 33)] {
                for data in ["", "{}", long.as_str()] {
                    for ticks in [0, 17_650_000_000_000_000] {
                        let e = event(position, sequence, id, data, ticks);
                        for uuid_string in [false, true] {
                            assert_eq!(
                                encode(&e, uuid_string).as_ref(),
                                by_prost(&e, uuid_string).as_slice(),
                                "{id} at {position}/{sequence}, data {} bytes, ids as strings: {uuid_string}",
                                data.len()
                            );
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 240);
    }
}

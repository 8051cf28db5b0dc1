//! The Bilibili live danmaku WebSocket packet format: a 16-byte big-endian
//! header (packet length u32, header length u16, protocol version u16,
//! operation u32, sequence u32) and a body; one binary WebSocket frame may
//! carry several packets, and an op-5 packet with version 2 (zlib) or 3
//! (brotli) carries further packets inside its compressed body.
//!
//! Sources: xfgryujk/blivedm `blivedm/clients/ws_base.py` (`HEADER_STRUCT =
//! '>I2H2I'`, `_make_packet`, `_parse_ws_message`, `_parse_business_message`);
//! bilibili-API-collect `docs/live/message_stream.md` (数据包格式).
//!
//! [`decode_frame`] never panics: every length is bounded by the bytes that
//! arrived, decompression is capped per frame, nesting is limited, and
//! anything it cannot use is skipped and counted in [`DecodeStats`].

use std::io::Read;

use serde::Serialize;
use serde_json::Value;

/// Length of the header the server and every client use.
pub const HEADER_LEN: usize = 16;

/// Operation codes (blivedm `Operation`; the server's go-common `operation.go`).
pub mod op {
    pub const HEARTBEAT: u32 = 2;
    pub const HEARTBEAT_REPLY: u32 = 3;
    pub const MESSAGE: u32 = 5;
    pub const AUTH: u32 = 7;
    pub const AUTH_REPLY: u32 = 8;
}

/// Protocol versions of a packet's body (blivedm `ProtoVer`).
pub mod ver {
    /// Plain JSON.
    pub const PLAIN: u16 = 0;
    /// Heartbeat / auth: plain, what clients send.
    pub const CONTROL: u16 = 1;
    /// zlib (RFC 1950) stream holding further packets.
    pub const ZLIB: u16 = 2;
    /// brotli stream holding further packets (what the web client gets with `protover: 3`).
    pub const BROTLI: u16 = 3;
}

/// A packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub packet_len: u32,
    pub header_len: u16,
    pub ver: u16,
    pub op: u32,
    pub seq: u32,
}

impl Header {
    /// Reads a header from the first 16 bytes, if there are 16.
    pub fn read(bytes: &[u8]) -> Option<Header> {
        let b = bytes.get(..HEADER_LEN)?;
        Some(Header {
            packet_len: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            header_len: u16::from_be_bytes([b[4], b[5]]),
            ver: u16::from_be_bytes([b[6], b[7]]),
            op: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            seq: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
        })
    }

    /// The 16 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.packet_len.to_be_bytes());
        out[4..6].copy_from_slice(&self.header_len.to_be_bytes());
        out[6..8].copy_from_slice(&self.ver.to_be_bytes());
        out[8..12].copy_from_slice(&self.op.to_be_bytes());
        out[12..16].copy_from_slice(&self.seq.to_be_bytes());
        out
    }
}

/// One packet: header (with `packet_len` = 16 + body) and body.
pub fn encode_packet(op: u32, ver: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let header = Header {
        packet_len: (HEADER_LEN + body.len()) as u32,
        header_len: HEADER_LEN as u16,
        ver,
        op,
        seq,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(body);
    out
}

/// The auth (op 7) body, as blivedm `_send_auth` and the current web page
/// send it (`support_ack`/`queue_uuid`/`scene` since 2026-04, Danmuji f70febb).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AuthBody {
    /// The logged-in account's mid, or 0; must own the cookie used for getDanmuInfo.
    pub uid: u64,
    /// The long room id (never the short one).
    pub roomid: u64,
    /// 3 = brotli batches.
    pub protover: u32,
    /// The `buvid3` cookie value.
    pub buvid: String,
    pub platform: String,
    #[serde(rename = "type")]
    pub kind: u32,
    /// getDanmuInfo's `data.token`.
    pub key: String,
    #[serde(default)]
    pub support_ack: bool,
    #[serde(default)]
    pub queue_uuid: String,
    #[serde(default)]
    pub scene: String,
}

impl AuthBody {
    /// The body the web client sends for a room.
    pub fn web(uid: u64, roomid: u64, buvid: &str, key: &str) -> AuthBody {
        AuthBody {
            uid,
            roomid,
            protover: 3,
            buvid: buvid.to_owned(),
            platform: "web".into(),
            kind: 2,
            key: key.to_owned(),
            support_ack: true,
            queue_uuid: String::new(),
            scene: "room".into(),
        }
    }
}

/// The auth packet (op 7, ver 1, seq 1), to send first, within 5 s of connecting.
pub fn encode_auth(body: &AuthBody) -> Vec<u8> {
    let json = serde_json::to_vec(body).unwrap_or_default();
    encode_packet(op::AUTH, ver::CONTROL, 1, &json)
}

/// The heartbeat packet (op 2, ver 1, seq 1), every 30 s; the body is what
/// the web page sends (`[object Object]`), which the server echoes back.
pub fn encode_heartbeat() -> Vec<u8> {
    encode_packet(op::HEARTBEAT, ver::CONTROL, 1, b"[object Object]")
}

/// Something a received frame carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// Op 8. `code` is the body's `code` (0 = accepted, -101 = token error);
    /// `None` when the body was not JSON with an integer `code`: treat as refused.
    AuthReply { code: Option<i64> },
    /// Op 3; `popularity` has been a constant 1 since 2023.
    HeartbeatReply { popularity: u32 },
    /// Op 5: one JSON message (`{"cmd": …}`).
    Message(Value),
}

/// What a frame held besides its items: every skipped or broken piece is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Headers read (nested ones included).
    pub packets: u32,
    /// Packets with an operation other than 3, 5, 8.
    pub unknown_ops: u32,
    /// Op-5 packets with a body version other than 0–3.
    pub unknown_versions: u32,
    /// Headers whose lengths make no sense (header_len < 16 or > packet_len).
    pub bad_headers: u32,
    /// Packets (or trailing bytes) cut short by the end of their frame or stream.
    pub truncated: u32,
    /// Bodies that should be JSON and were not (op 5 plain, op 8).
    pub bad_json: u32,
    /// Compressed bodies that failed to decompress (corrupt or cut short).
    pub decompress_errors: u32,
    /// Compressed bodies dropped because the frame's decompression budget ran out.
    pub oversize: u32,
    /// Compressed bodies nested deeper than allowed.
    pub too_deep: u32,
    /// Bytes after an op-3 packet's declared length (the server echoes the heartbeat body there).
    pub heartbeat_echo_bytes: u32,
}

impl DecodeStats {
    /// Pieces that were lost to errors (not the expected heartbeat echo or unknown-but-valid packets).
    pub fn errors(&self) -> u32 {
        self.bad_headers
            + self.truncated
            + self.bad_json
            + self.decompress_errors
            + self.oversize
            + self.too_deep
    }

    fn add(&mut self, o: &DecodeStats) {
        self.packets += o.packets;
        self.unknown_ops += o.unknown_ops;
        self.unknown_versions += o.unknown_versions;
        self.bad_headers += o.bad_headers;
        self.truncated += o.truncated;
        self.bad_json += o.bad_json;
        self.decompress_errors += o.decompress_errors;
        self.oversize += o.oversize;
        self.too_deep += o.too_deep;
        self.heartbeat_echo_bytes += o.heartbeat_echo_bytes;
    }
}

/// A decoded frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub items: Vec<Incoming>,
    pub stats: DecodeStats,
}

/// Bounds on the work one frame may cause.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total decompressed bytes per frame, all nesting levels together.
    pub max_decompressed: usize,
    /// Compressed bodies inside compressed bodies; the server uses 1 level.
    pub max_depth: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decompressed: 8 << 20,
            max_depth: 2,
        }
    }
}

/// Decodes one binary WebSocket frame with the default [`Limits`].
pub fn decode_frame(frame: &[u8]) -> Decoded {
    decode_frame_with(frame, Limits::default())
}

/// Decodes one binary WebSocket frame.
pub fn decode_frame_with(frame: &[u8], limits: Limits) -> Decoded {
    let mut out = Decoded::default();
    let mut budget = limits.max_decompressed;
    walk(frame, 0, &limits, &mut budget, &mut out);
    out
}

fn walk(buf: &[u8], depth: u8, limits: &Limits, budget: &mut usize, out: &mut Decoded) {
    let mut at = 0usize;
    while at < buf.len() {
        let rest = &buf[at..];
        let Some(h) = Header::read(rest) else {
            out.stats.truncated += 1;
            return;
        };
        out.stats.packets += 1;
        let packet_len = h.packet_len as usize;
        let header_len = h.header_len as usize;
        if header_len < HEADER_LEN || header_len > packet_len {
            // nothing tells where the next packet starts
            out.stats.bad_headers += 1;
            return;
        }
        if h.op == op::HEARTBEAT_REPLY {
            // The reply's packet_len covers the 4-byte popularity only; the
            // server appends the client's heartbeat body after it ("pack_len不包括
            // 客户端发的心跳包内容", blivedm). Read 4 bytes and end the frame.
            match rest.get(header_len..header_len + 4) {
                Some(p) => out.items.push(Incoming::HeartbeatReply {
                    popularity: u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
                }),
                None => out.stats.truncated += 1,
            }
            let declared_end = packet_len.max(header_len + 4);
            out.stats.heartbeat_echo_bytes += rest.len().saturating_sub(declared_end) as u32;
            return;
        }
        if packet_len > rest.len() {
            out.stats.truncated += 1;
            return;
        }
        let body = &rest[header_len..packet_len];
        at += packet_len;
        match h.op {
            op::MESSAGE => match h.ver {
                ver::PLAIN | ver::CONTROL => {
                    if body.is_empty() {
                        continue;
                    }
                    match serde_json::from_slice::<Value>(body) {
                        Ok(v) => out.items.push(Incoming::Message(v)),
                        Err(_) => out.stats.bad_json += 1,
                    }
                }
                ver::ZLIB | ver::BROTLI => {
                    if depth >= limits.max_depth {
                        out.stats.too_deep += 1;
                        continue;
                    }
                    let inflated = if h.ver == ver::ZLIB {
                        inflate_zlib(body, *budget)
                    } else {
                        inflate_brotli(body, *budget)
                    };
                    match inflated {
                        Ok(inner) => {
                            *budget -= inner.len();
                            let mut nested = Decoded::default();
                            walk(&inner, depth + 1, limits, budget, &mut nested);
                            out.items.append(&mut nested.items);
                            out.stats.add(&nested.stats);
                        }
                        Err(Inflate::Corrupt) => out.stats.decompress_errors += 1,
                        Err(Inflate::OverBudget) => out.stats.oversize += 1,
                    }
                }
                _ => out.stats.unknown_versions += 1,
            },
            op::AUTH_REPLY => {
                // the header's ver varies (0 or 1) between captures: not checked
                let code = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("code").and_then(Value::as_i64));
                if code.is_none() {
                    out.stats.bad_json += 1;
                }
                out.items.push(Incoming::AuthReply { code });
            }
            _ => out.stats.unknown_ops += 1,
        }
    }
}

enum Inflate {
    Corrupt,
    OverBudget,
}

/// Reads a whole stream, failing past `budget` bytes.
fn read_capped(reader: impl Read, budget: usize) -> Result<Vec<u8>, Inflate> {
    let mut out = Vec::new();
    let mut limited = reader.take((budget as u64).saturating_add(1));
    match limited.read_to_end(&mut out) {
        Ok(_) if out.len() > budget => Err(Inflate::OverBudget),
        Ok(_) => Ok(out),
        Err(_) => Err(Inflate::Corrupt),
    }
}

fn inflate_zlib(body: &[u8], budget: usize) -> Result<Vec<u8>, Inflate> {
    // The low-level API, because flate2's readers end quietly on a stream cut
    // short; this one must reach the zlib trailer or fail.
    let mut d = flate2::Decompress::new(true);
    let mut out: Vec<u8> = Vec::new();
    loop {
        if out.len() == out.capacity() {
            if out.len() > budget {
                return Err(Inflate::OverBudget);
            }
            let room = (budget - out.len())
                .saturating_add(1)
                .min(out.capacity().max(16 * 1024));
            out.reserve_exact(room);
        }
        let (in_before, out_before) = (d.total_in(), d.total_out());
        let input = body.get(in_before as usize..).unwrap_or_default();
        match d.decompress_vec(input, &mut out, flate2::FlushDecompress::None) {
            Ok(flate2::Status::StreamEnd) => break,
            Ok(_) if d.total_in() == in_before && d.total_out() == out_before => {
                return Err(Inflate::Corrupt)
            }
            Ok(_) => {}
            Err(_) => return Err(Inflate::Corrupt),
        }
    }
    if out.len() > budget {
        return Err(Inflate::OverBudget);
    }
    Ok(out)
}

fn inflate_brotli(body: &[u8], budget: usize) -> Result<Vec<u8>, Inflate> {
    read_capped(brotli::Decompressor::new(body, 4096), budget)
}

/// Compresses packets for a ver-2 body (used by the fake server and tests).
pub fn zlib(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = e.write_all(bytes);
    e.finish().unwrap_or_default()
}

/// Compresses packets for a ver-3 body (used by the fake server and tests).
pub fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = ::brotli::enc::BrotliEncoderParams {
        quality: 5,
        ..Default::default()
    };
    let _ = ::brotli::BrotliCompress(&mut &bytes[..], &mut out, &params);
    out
}

/// One op-5 ver-0 packet per message, concatenated: the inside of a batch.
pub fn plain_packets(messages: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        let body = serde_json::to_vec(m).unwrap_or_default();
        out.extend(encode_packet(op::MESSAGE, ver::PLAIN, 0, &body));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/bilibili/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn header_round_trips() {
        let p = encode_packet(op::MESSAGE, ver::ZLIB, 7, b"abc");
        let h = Header::read(&p).unwrap();
        assert_eq!(
            h,
            Header {
                packet_len: 19,
                header_len: 16,
                ver: 2,
                op: 5,
                seq: 7
            }
        );
        assert_eq!(&h.to_bytes()[..], &p[..16]);
    }

    #[test]
    fn auth_and_heartbeat_match_the_captured_web_packets() {
        assert_eq!(
            encode_heartbeat(),
            fixture("apicollect_heartbeat_request.bin")
        );
        // the captured auth packet: same header layout (ver 1, op 7, seq 1)
        let captured = fixture("apicollect_auth_request.bin");
        let h = Header::read(&captured).unwrap();
        assert_eq!(
            (h.packet_len as usize, h.header_len, h.ver, h.op, h.seq),
            (captured.len(), 16, 1, 7, 1)
        );
        let body: Value = serde_json::from_slice(&captured[16..]).unwrap();
        assert_eq!(body["roomid"], 22608112);
        let mine = encode_auth(&AuthBody::web(160148624, 22608112, "b3", "k"));
        let mh = Header::read(&mine).unwrap();
        assert_eq!((mh.header_len, mh.ver, mh.op, mh.seq), (16, 1, 7, 1));
        let mb: Value = serde_json::from_slice(&mine[16..]).unwrap();
        for k in ["uid", "roomid", "protover", "platform", "type"] {
            assert_eq!(mb[k], body[k], "{k}");
        }
        assert_eq!(mb["key"], "k");
        assert_eq!(mb["buvid"], "b3");
    }

    #[test]
    fn real_auth_replies_both_versions() {
        for f in [
            "apicollect_auth_reply_ver1.bin",
            "bililive_auth_reply_ver0.bin",
        ] {
            let d = decode_frame(&fixture(f));
            assert_eq!(d.items, vec![Incoming::AuthReply { code: Some(0) }], "{f}");
            assert_eq!(d.stats.errors(), 0);
        }
        let refused = encode_packet(op::AUTH_REPLY, 0, 1, br#"{"code":-101}"#);
        assert_eq!(
            decode_frame(&refused).items,
            vec![Incoming::AuthReply { code: Some(-101) }]
        );
        let junk = encode_packet(op::AUTH_REPLY, 0, 1, b"nope");
        let d = decode_frame(&junk);
        assert_eq!(d.items, vec![Incoming::AuthReply { code: None }]);
        assert_eq!(d.stats.bad_json, 1);
    }

    #[test]
    fn real_heartbeat_reply_with_the_echo_quirk() {
        let f = fixture("apicollect_heartbeat_reply_echo.bin");
        assert_eq!(Header::read(&f).unwrap().packet_len, 20);
        assert_eq!(f.len(), 35);
        let d = decode_frame(&f);
        assert_eq!(d.items, vec![Incoming::HeartbeatReply { popularity: 2466 }]);
        assert_eq!(d.stats.heartbeat_echo_bytes, 15);
        assert_eq!(d.stats.errors(), 0);
        // without the echo (bililive-rs capture, ver 0)
        let d = decode_frame(&fixture("bililive_heartbeat_reply.bin"));
        assert_eq!(
            d.items,
            vec![Incoming::HeartbeatReply { popularity: 358069 }]
        );
        assert_eq!(
            d.stats,
            DecodeStats {
                packets: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn real_brotli_batch() {
        let d = decode_frame(&fixture("apicollect_brotli_watched_change.bin"));
        assert_eq!(d.stats.errors(), 0, "{:?}", d.stats);
        assert_eq!(d.stats.packets, 2);
        assert_eq!(
            d.items,
            vec![Incoming::Message(
                json!({"cmd":"WATCHED_CHANGE","data":{"num":22097,"text_small":"2.2万","text_large":"2.2万人看过"}})
            )]
        );
    }

    #[test]
    fn real_zlib_batch_of_two() {
        let f = fixture("bililive_zlib_interact_word_x2.bin");
        let d = decode_frame(&f);
        assert_eq!(d.stats.errors(), 0, "{:?}", d.stats);
        assert_eq!(d.stats.packets, 3);
        assert_eq!(d.items.len(), 2);
        let Incoming::Message(m) = &d.items[0] else {
            panic!()
        };
        assert_eq!(m["cmd"], "INTERACT_WORD");
        assert_eq!(m["data"]["uname"], "vioIet・伊芙加登");
        assert_eq!(m["data"]["roomid"], 23090051);
    }

    #[test]
    fn several_packets_per_frame_and_nesting() {
        let msgs: Vec<Value> = (0..5).map(|i| json!({"cmd": "X", "i": i})).collect();
        let mut frame = encode_packet(
            op::MESSAGE,
            ver::PLAIN,
            0,
            &serde_json::to_vec(&msgs[0]).unwrap(),
        );
        frame.extend(encode_packet(
            op::MESSAGE,
            ver::ZLIB,
            0,
            &zlib(&plain_packets(&msgs[1..3])),
        ));
        frame.extend(encode_packet(
            op::MESSAGE,
            ver::BROTLI,
            0,
            &brotli(&plain_packets(&msgs[3..])),
        ));
        frame.extend(encode_packet(
            op::AUTH_REPLY,
            ver::PLAIN,
            0,
            br#"{"code":0}"#,
        ));
        frame.extend(encode_packet(99, 0, 0, b"whatever"));
        frame.extend(encode_packet(op::MESSAGE, 9, 0, b"??"));
        frame.extend(encode_packet(op::MESSAGE, ver::PLAIN, 0, b""));
        let d = decode_frame(&frame);
        let got: Vec<_> = d
            .items
            .iter()
            .filter_map(|i| match i {
                Incoming::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(got, msgs);
        assert_eq!(d.items.last(), Some(&Incoming::AuthReply { code: Some(0) }));
        assert_eq!(
            (
                d.stats.unknown_ops,
                d.stats.unknown_versions,
                d.stats.errors()
            ),
            (1, 1, 0)
        );

        // a compressed body inside a compressed body inside a compressed body
        let inner = encode_packet(op::MESSAGE, ver::ZLIB, 0, &zlib(&plain_packets(&msgs[..1])));
        let mid = encode_packet(op::MESSAGE, ver::BROTLI, 0, &brotli(&inner));
        let outer = encode_packet(op::MESSAGE, ver::ZLIB, 0, &zlib(&mid));
        let d = decode_frame(&outer);
        assert!(d.items.is_empty());
        assert_eq!(d.stats.too_deep, 1);
        assert_eq!(decode_frame(&mid).items.len(), 1);
    }

    #[test]
    fn broken_pieces_are_counted_not_fatal() {
        let good = encode_packet(op::MESSAGE, 0, 0, br#"{"cmd":"A"}"#);
        // truncated second packet
        let mut f = good.clone();
        f.extend_from_slice(&good[..good.len() - 3]);
        let d = decode_frame(&f);
        assert_eq!((d.items.len(), d.stats.truncated), (1, 1));
        // short tail (< header)
        let mut f = good.clone();
        f.extend_from_slice(&[0, 0, 0]);
        assert_eq!(decode_frame(&f).stats.truncated, 1);
        // header_len too small / larger than the packet
        let mut bad = good.clone();
        bad[5] = 4;
        assert_eq!(decode_frame(&bad).stats.bad_headers, 1);
        let mut bad = good.clone();
        bad[4..6].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(decode_frame(&bad).stats.bad_headers, 1);
        // packet_len 0 cannot loop forever
        let mut zero = good.clone();
        zero[..4].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(decode_frame(&zero).stats.bad_headers, 1);
        // not JSON
        assert_eq!(
            decode_frame(&encode_packet(op::MESSAGE, 0, 0, b"{nope"))
                .stats
                .bad_json,
            1
        );
        // corrupt and cut compressed bodies
        let z = zlib(&plain_packets(&[json!({"cmd":"A"})]));
        for body in [
            b"garbage!".to_vec(),
            z[..z.len() - 4].to_vec(),
            z[..z.len() / 2].to_vec(),
        ] {
            let d = decode_frame(&encode_packet(op::MESSAGE, ver::ZLIB, 0, &body));
            assert_eq!(
                (d.items.len(), d.stats.decompress_errors),
                (0, 1),
                "{body:?}"
            );
        }
        let b = brotli(&plain_packets(&[json!({"cmd":"A"})]));
        for body in [b"\xff\xff\xffgarbage".to_vec(), b[..b.len() / 2].to_vec()] {
            let d = decode_frame(&encode_packet(op::MESSAGE, ver::BROTLI, 0, &body));
            assert_eq!(
                (d.items.len(), d.stats.decompress_errors),
                (0, 1),
                "{body:?}"
            );
        }
        // a heartbeat reply too short to hold its number
        let d = decode_frame(&encode_packet(op::HEARTBEAT_REPLY, 1, 0, b"\x00\x01"));
        assert_eq!((d.items.len(), d.stats.truncated), (0, 1));
    }

    #[test]
    fn decompression_is_capped_per_frame() {
        // 20 MiB of one JSON string compresses to a few KiB
        let big = json!({"cmd": "BIG", "pad": "a".repeat(20 << 20)});
        let packets = plain_packets(&[big]);
        for body in [zlib(&packets), brotli(&packets)] {
            let ver = if body[0] == 0x78 {
                ver::ZLIB
            } else {
                ver::BROTLI
            };
            assert!(body.len() < 1 << 20);
            let d = decode_frame(&encode_packet(op::MESSAGE, ver, 0, &body));
            assert_eq!((d.items.len(), d.stats.oversize), (0, 1));
        }
        // the budget is shared across the frame
        let small = plain_packets(&[json!({"cmd": "S", "pad": "b".repeat(3 << 20)})]);
        let one = encode_packet(op::MESSAGE, ver::ZLIB, 0, &zlib(&small));
        let mut three = one.clone();
        three.extend_from_slice(&one);
        three.extend_from_slice(&one);
        let d = decode_frame(&three);
        assert_eq!((d.items.len(), d.stats.oversize), (2, 1));
    }

    fn mutate(rng: &mut rand::rngs::StdRng, mut f: Vec<u8>) -> Vec<u8> {
        for _ in 0..rng.gen_range(1..4) {
            if f.is_empty() {
                break;
            }
            match rng.gen_range(0..4) {
                0 => {
                    let i = rng.gen_range(0..f.len());
                    f[i] ^= 1 << rng.gen_range(0..8);
                }
                1 => {
                    let n = rng.gen_range(0..f.len());
                    f.truncate(n);
                }
                2 => {
                    let i = rng.gen_range(0..f.len());
                    f[i] = rng.gen();
                }
                _ => {
                    // a header field set to an extreme
                    let i = rng.gen_range(0..f.len().min(16));
                    f[i] = if rng.gen() { 0xff } else { 0 };
                }
            }
        }
        f
    }

    #[test]
    fn fuzz_random_truncated_and_mutated_frames_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0xb111);
        let msgs: Vec<Value> = (0..4)
            .map(|i| json!({"cmd":"DANMU_MSG","info":[[i],"x",[i,"n"]]}))
            .collect();
        let mut seeds = vec![
            fixture("apicollect_brotli_watched_change.bin"),
            fixture("bililive_zlib_interact_word_x2.bin"),
            fixture("apicollect_heartbeat_reply_echo.bin"),
            fixture("apicollect_auth_reply_ver1.bin"),
            encode_packet(op::MESSAGE, ver::BROTLI, 0, &brotli(&plain_packets(&msgs))),
            encode_packet(op::MESSAGE, ver::ZLIB, 0, &zlib(&plain_packets(&msgs))),
            plain_packets(&msgs),
        ];
        // every prefix of every seed
        for s in seeds.clone() {
            for n in 0..=s.len() {
                let d = decode_frame(&s[..n]);
                assert!(d.items.len() <= 8);
            }
        }
        // mutations, and frames of random bytes (some with a plausible header)
        for _ in 0..20_000 {
            let f = if rng.gen_bool(0.7) {
                let s = seeds[rng.gen_range(0..seeds.len())].clone();
                mutate(&mut rng, s)
            } else {
                let n = rng.gen_range(0..200);
                let mut f: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                if n >= 16 && rng.gen() {
                    let h = Header {
                        packet_len: rng.gen_range(0..n as u32 + 8),
                        header_len: 16,
                        ver: rng.gen_range(0..4),
                        op: [3, 5, 8][rng.gen_range(0..3)],
                        seq: 0,
                    };
                    f[..16].copy_from_slice(&h.to_bytes());
                }
                f
            };
            let limits = Limits {
                max_decompressed: 1 << 16,
                max_depth: 2,
            };
            let _ = decode_frame_with(&f, limits);
            if rng.gen_ratio(1, 50) {
                seeds.push(f);
            }
        }
    }
}

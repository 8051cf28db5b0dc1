//! A leaf per event: its canonical bytes, read from the events table in
//! the log's numbering (`log_positions`; leaf index = position − 1).
//!
//! Leaf v1 is `tidelog-event/v1\n` followed by nine fields, each a
//! big-endian u32 length and its bytes: aggregate type, aggregate id,
//! sequence (ASCII decimal), event type, event version, payload and
//! metadata (the `json` columns' text exactly as stored), recorded time
//! (ASCII decimal microseconds since the Unix epoch) and the event's chain
//! hash (the 32 bytes of the `hash` column). A leaf is also a C2SP
//! tlog-tiles entry, which holds at most 65,535 bytes: an event whose v1
//! leaf would be longer gets the `tidelog-event-digest/v1\n` leaf instead,
//! the same fields with payload and metadata replaced by the SHA-256 of
//! their text.

use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Row};

use super::merkle::Hash;
use super::stored::{checkpoints_seen_columns, leaf_tile_column, CheckpointsSeen};
use super::tiles::MAX_ENTRY_SIZE;

pub const LEAF_V1: &[u8] = b"tidelog-event/v1\n";
pub const LEAF_V1_DIGEST: &[u8] = b"tidelog-event-digest/v1\n";

/// One event, as its leaf needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub global_position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: String,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    pub hash: Vec<u8>,
    /// the chain's link (not in the leaf: the hash covers it)
    pub prev_hash: Option<Vec<u8>>,
}

impl Event {
    /// `Wallet/<id>/<sequence>`: how reports and `audit prove` name it.
    pub fn name(&self) -> String {
        format!(
            "{}/{}/{}",
            self.aggregate_type, self.aggregate_id, self.sequence
        )
    }

    /// The leaf bytes (the tlog-tiles entry).
    pub fn leaf(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.payload.len() + self.metadata.len());
        self.write_leaf(|b| out.extend_from_slice(b));
        out
    }

    /// Its leaf hash, `SHA-256(0x00 ‖ leaf)`, without building the bytes.
    pub fn leaf_hash(&self) -> Hash {
        let mut h = Sha256::new();
        h.update([0x00]);
        self.write_leaf(|b| h.update(b));
        h.finalize().into()
    }

    /// Feeds the leaf's bytes to `out`, piece by piece.
    fn write_leaf(&self, mut out: impl FnMut(&[u8])) {
        let sequence = self.sequence.to_string();
        let micros = self.recorded_at.timestamp_micros().to_string();
        let mut fields: [&[u8]; 9] = [
            self.aggregate_type.as_bytes(),
            self.aggregate_id.as_bytes(),
            sequence.as_bytes(),
            self.event_type.as_bytes(),
            self.event_version.as_bytes(),
            self.payload.as_bytes(),
            self.metadata.as_bytes(),
            micros.as_bytes(),
            &self.hash,
        ];
        let len = |header: &[u8], fields: &[&[u8]]| {
            header.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>()
        };
        let mut header = LEAF_V1;
        let digests: [Hash; 2];
        if len(header, &fields) > MAX_ENTRY_SIZE {
            header = LEAF_V1_DIGEST;
            digests = [
                Sha256::digest(self.payload.as_bytes()).into(),
                Sha256::digest(self.metadata.as_bytes()).into(),
            ];
            fields[5] = &digests[0];
            fields[6] = &digests[1];
        }
        out(header);
        for f in fields {
            out(&(f.len() as u32).to_be_bytes());
            out(f);
        }
    }

    /// The chain hash as the database's `event_hash` computes it:
    /// SHA-256 of the previous hash and the fields joined by U+001F.
    pub fn chain_hash(&self) -> Hash {
        let mut h = Sha256::new();
        if let Some(p) = &self.prev_hash {
            h.update(p);
        }
        let sequence = self.sequence.to_string();
        let micros = self.recorded_at.timestamp_micros().to_string();
        let fields = [
            self.aggregate_type.as_str(),
            &self.aggregate_id,
            &sequence,
            &self.event_type,
            &self.event_version,
            &self.payload,
            &self.metadata,
            &micros,
        ];
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                h.update([0x1f]);
            }
            h.update(f.as_bytes());
        }
        h.finalize().into()
    }
}

/// A position of the log and its event (`None`: the numbered event is not
/// in the events table).
#[derive(Clone, Debug)]
pub struct Numbered {
    pub position: i64,
    pub global_position: i64,
    pub event: Option<Event>,
}

const COLUMNS: &str = "e.global_position AS found, e.aggregate_type, e.aggregate_id, e.sequence,
       e.event_type, e.event_version, e.payload::text AS payload, e.metadata::text AS metadata,
       e.recorded_at, e.hash, e.prev_hash";

/// Every event with its log position (`NULL`: not numbered yet), in no
/// particular order: one scan of the events table joined to the numbers.
pub const SELECT_ALL: &str =
    "SELECT p.position, e.global_position AS found, e.aggregate_type, e.aggregate_id, e.sequence,
       e.event_type, e.event_version, e.payload::text AS payload, e.metadata::text AS metadata,
       e.recorded_at, e.hash, e.prev_hash
  FROM events e LEFT JOIN log_positions p ON p.global_position = e.global_position";

fn event_row(r: &sqlx::postgres::PgRow) -> sqlx::Result<Option<Event>> {
    let found: Option<i64> = r.try_get("found")?;
    let Some(global_position) = found else {
        return Ok(None);
    };
    Ok(Some(Event {
        global_position,
        aggregate_type: r.try_get("aggregate_type")?,
        aggregate_id: r.try_get("aggregate_id")?,
        sequence: r.try_get("sequence")?,
        event_type: r.try_get("event_type")?,
        event_version: r.try_get("event_version")?,
        payload: r.try_get("payload")?,
        metadata: r.try_get("metadata")?,
        recorded_at: r.try_get("recorded_at")?,
        hash: r.try_get("hash")?,
        prev_hash: r.try_get("prev_hash")?,
    }))
}

/// A row of [`SELECT_ALL`]: its position and event.
pub fn event_of(r: &sqlx::postgres::PgRow) -> sqlx::Result<(Option<i64>, Event)> {
    let event = event_row(r)?.ok_or_else(|| sqlx::Error::Decode("no event".into()))?;
    Ok((r.try_get("position")?, event))
}

/// The event numbered `position`, if the numbering has got that far.
pub async fn at(conn: &mut PgConnection, position: i64) -> sqlx::Result<Option<Numbered>> {
    // an equality, not a one-position range: PostgreSQL keeps one plan for
    // it, where it plans a range of parameters anew at every call
    let row = sqlx::query(&format!(
        "SELECT p.position, p.global_position, {COLUMNS}
           FROM log_positions p LEFT JOIN events e ON e.global_position = p.global_position
          WHERE p.position = $1"
    ))
    .bind(position)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(numbered_row).transpose()
}

/// [`at`], with what the same statement saw of the checkpoint tables from
/// the checkpoint of `size` on (is a kept latest checkpoint still the
/// latest: [`super::stored::LatestCheckpoint`]) and, if asked, the stored
/// hashes of leaf tile `tile` (concatenated): all a proof reads, in one
/// statement.
pub async fn at_seeing(
    conn: &mut PgConnection,
    position: i64,
    size: u64,
    tile: Option<u64>,
) -> sqlx::Result<(Option<Numbered>, CheckpointsSeen, Option<Vec<u8>>)> {
    let row = sqlx::query(&format!(
        "SELECT {}, {}, p.position, p.global_position, {COLUMNS}
           FROM (SELECT) one
           LEFT JOIN (log_positions p LEFT JOIN events e ON e.global_position = p.global_position)
                  ON p.position = $1",
        checkpoints_seen_columns("$2"),
        leaf_tile_column("$3::bigint"),
    ))
    .bind(position)
    .bind(size as i64)
    .bind(tile.map(|t| t as i64))
    .fetch_one(conn)
    .await?;
    let seen = CheckpointsSeen::of(&row)?;
    let numbered = match row.try_get::<Option<i64>, _>("position")? {
        Some(_) => Some(numbered_row(&row)?),
        None => None,
    };
    Ok((numbered, seen, row.try_get("leaf_tile")?))
}

fn numbered_row(r: &sqlx::postgres::PgRow) -> sqlx::Result<Numbered> {
    Ok(Numbered {
        position: r.try_get("position")?,
        global_position: r.try_get("global_position")?,
        event: event_row(r)?,
    })
}

/// The numbered events of positions `[from, to)`, in order (fewer if the
/// numbering has not got that far).
pub async fn numbered(conn: &mut PgConnection, from: i64, to: i64) -> sqlx::Result<Vec<Numbered>> {
    let rows = sqlx::query(&format!(
        "SELECT p.position, p.global_position, {COLUMNS}
           FROM log_positions p LEFT JOIN events e ON e.global_position = p.global_position
          WHERE p.position >= $1 AND p.position < $2
          ORDER BY p.position"
    ))
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    rows.iter().map(numbered_row).collect()
}

/// The events not in the log's numbering (an anti-join over every event).
pub async fn not_numbered(conn: &mut PgConnection) -> sqlx::Result<Vec<Event>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM events e
          WHERE NOT EXISTS (SELECT 1 FROM log_positions p WHERE p.global_position = e.global_position)
          ORDER BY e.global_position"
    ))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .filter_map(|r| event_row(r).transpose())
        .collect()
}

/// The leaf index of an event (`None`: no such event, or not numbered yet).
pub async fn index_of(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
) -> sqlx::Result<Option<u64>> {
    let position: Option<i64> = sqlx::query_scalar(
        "SELECT p.position FROM events e JOIN log_positions p ON p.global_position = e.global_position
          WHERE e.aggregate_type = $1 AND e.aggregate_id = $2 AND e.sequence = $3",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .fetch_optional(conn)
    .await?;
    Ok(position.map(|p| (p - 1) as u64))
}

/// Parses `<aggregate_type>/<aggregate_id>/<sequence>` (the id may hold `/`).
pub fn parse_event_name(name: &str) -> Option<(&str, &str, i64)> {
    let (aggregate_type, rest) = name.split_once('/')?;
    let (aggregate_id, sequence) = rest.rsplit_once('/')?;
    let sequence = sequence.parse().ok().filter(|s| *s >= 1)?;
    (!aggregate_type.is_empty() && !aggregate_id.is_empty()).then_some((
        aggregate_type,
        aggregate_id,
        sequence,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: &str) -> Event {
        Event {
            global_position: 7,
            aggregate_type: "Wallet".into(),
            aggregate_id: "a:coins".into(),
            sequence: 12,
            event_type: "WalletCredited".into(),
            event_version: "1".into(),
            payload: payload.into(),
            metadata: r#"{"actor": "admin"}"#.into(),
            recorded_at: chrono::DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap(),
            hash: vec![0xab; 32],
            prev_hash: None,
        }
    }

    #[test]
    fn leaf_v1_is_length_prefixed_and_exact() {
        let leaf = event(r#"{"a": 1}"#).leaf();
        let mut want = b"tidelog-event/v1\n".to_vec();
        for f in [
            &b"Wallet"[..],
            b"a:coins",
            b"12",
            b"WalletCredited",
            b"1",
            br#"{"a": 1}"#,
            br#"{"actor": "admin"}"#,
            b"1780000000123456",
            &[0xab; 32],
        ] {
            want.extend_from_slice(&(f.len() as u32).to_be_bytes());
            want.extend_from_slice(f);
        }
        assert_eq!(leaf, want);
        assert_eq!(
            event(r#"{"a": 1}"#).leaf_hash(),
            super::super::merkle::leaf_hash(&want)
        );
        // a space more in the stored text is another leaf
        assert_ne!(
            event(r#"{"a":  1}"#).leaf_hash(),
            event(r#"{"a": 1}"#).leaf_hash()
        );
    }

    #[test]
    fn an_event_too_large_for_an_entry_bundle_gets_the_digest_leaf() {
        let big = format!("{{\"x\": \"{}\"}}", "y".repeat(70_000));
        let leaf = event(&big).leaf();
        assert!(leaf.starts_with(LEAF_V1_DIGEST));
        assert!(leaf.len() < 400);
        let digest: Hash = Sha256::digest(big.as_bytes()).into();
        assert!(leaf.windows(32).any(|w| w == digest));
        let fits = "z".repeat(MAX_ENTRY_SIZE - 400);
        assert!(event(&fits).leaf().starts_with(LEAF_V1));
    }

    #[test]
    fn event_names() {
        assert_eq!(
            parse_event_name("Wallet/u:coins/3"),
            Some(("Wallet", "u:coins", 3))
        );
        assert_eq!(parse_event_name("T/a/b/4"), Some(("T", "a/b", 4)));
        for bad in ["Wallet/3", "Wallet//3", "/x/3", "W/x/0", "W/x/y"] {
            assert_eq!(parse_event_name(bad), None, "{bad}");
        }
    }
}

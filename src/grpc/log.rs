//! The numbered log as the endpoint reads it: every event that the
//! `positions` projection numbered (`log_positions`, contiguous from 1 in
//! the horizon-safe order), with its stream, revision, body and metadata.
//! An event not numbered yet is not served: neither on `$all` nor on its
//! stream (a stream is read up to its first event without a number).

use std::sync::{Arc, LazyLock, OnceLock};

use bytes::Bytes;
use sqlx::postgres::{PgRow, PgValueFormat};
use sqlx::{PgPool, Row};

use super::wire::EncodedEvent;
use crate::store::{redact_credentials, CREDENTIAL_KEYS};

/// Rows per query.
pub const PAGE: i64 = 1000;

/// One event as clients get it.
#[derive(Debug)]
pub struct LogEvent {
    /// Its log position (`log_positions.position`): commit and prepare
    /// position alike, never 0.
    pub position: u64,
    /// `<AggregateType>-<aggregate id>`
    pub stream: String,
    /// The stream's sequence (from 1): revision + 1.
    pub sequence: i64,
    pub event_type: String,
    /// The payload JSON (credentials redacted).
    pub data: Bytes,
    /// The event's metadata JSON (actor, surface, request, correlation,
    /// causation, client IP).
    pub metadata: Bytes,
    /// `recorded_at` in 100 ns ticks since the Unix epoch, as the protocol
    /// writes `created`.
    pub created_ticks: i64,
    /// The first 122 bits of the event's chain hash, as a version-8 UUID:
    /// the same event has the same id on every read and every standby.
    pub id: uuid::Uuid,
    /// Its `ReadEvent` encoded, with a structured id and with a string id
    /// (`wire.rs`), once each, when first wanted.
    pub encoded: [OnceLock<Bytes>; 2],
}

impl LogEvent {
    pub fn revision(&self) -> u64 {
        (self.sequence - 1).max(0) as u64
    }

    /// The event on the wire, ids as strings or structured.
    pub fn encoded(&self, uuid_string: bool) -> EncodedEvent {
        EncodedEvent(
            self.encoded[usize::from(uuid_string)]
                .get_or_init(|| super::wire::encode(self, uuid_string))
                .clone(),
        )
    }
}

/// The columns [`event_of`] reads, in its order (by index: no name lookups
/// per row), after the position or global position that leads each row.
const COLUMNS: &str = "e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
    e.payload::text, e.metadata::text, e.recorded_at, substring(e.hash FROM 1 FOR 16)";

fn event_of(row: &PgRow, position: u64) -> sqlx::Result<LogEvent> {
    let aggregate_type = text(row, 1)?;
    let aggregate_id = text(row, 2)?;
    let hash = raw(row, 8)?;
    let mut id = [0u8; 16];
    let n = hash.len().min(16);
    id[..n].copy_from_slice(&hash[..n]);
    let mut stream = String::with_capacity(aggregate_type.len() + 1 + aggregate_id.len());
    stream.push_str(aggregate_type);
    stream.push('-');
    stream.push_str(aggregate_id);
    let mut e = LogEvent {
        position,
        stream,
        sequence: int8(row, 3)?,
        event_type: text(row, 4)?.to_owned(),
        data: Bytes::new(),
        metadata: Bytes::new(),
        created_ticks: unix_micros(row, 7)? * 10,
        id: uuid::Builder::from_custom_bytes(id).into_uuid(),
        encoded: Default::default(),
    };
    // PostgreSQL sends text in the connection's encoding, UTF-8: the JSON
    // goes out as the bytes it came in
    let payload = raw(row, 5)?;
    let redacted = redacted(payload);
    let payload = redacted.as_deref().map_or(payload, str::as_bytes);
    // encoded at once with string ids (every stock client's choice), and
    // the data and metadata kept as slices of it
    let encoded = super::wire::encode_with(&e, raw(row, 6)?, payload, true);
    let bytes = Bytes::from(encoded.bytes);
    e.metadata = bytes.slice(encoded.metadata);
    e.data = bytes.slice(encoded.data);
    let _ = e.encoded[1].set(bytes);
    Ok(e)
}

fn decode_error(index: usize, source: sqlx::error::BoxDynError) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: index.to_string(),
        source,
    }
}

/// A column's bytes as PostgreSQL sent them, without the type check and
/// the copy of a typed decode (a `$all` read decodes millions of rows).
fn raw(row: &PgRow, index: usize) -> sqlx::Result<&[u8]> {
    row.try_get_raw(index)?
        .as_bytes()
        .map_err(|e| decode_error(index, e))
}

/// A `text` column (the same bytes in either wire format).
fn text(row: &PgRow, index: usize) -> sqlx::Result<&str> {
    std::str::from_utf8(raw(row, index)?).map_err(|e| decode_error(index, e.into()))
}

/// A binary 8-byte big-endian value (`bigint`, or `timestamptz` as
/// microseconds since 2000-01-01).
fn binary8(row: &PgRow, index: usize) -> sqlx::Result<Option<i64>> {
    let value = row.try_get_raw(index)?;
    Ok(match (value.format(), value.as_bytes()) {
        (PgValueFormat::Binary, Ok(&[a, b, c, d, e, f, g, h])) => {
            Some(i64::from_be_bytes([a, b, c, d, e, f, g, h]))
        }
        _ => None,
    })
}

fn int8(row: &PgRow, index: usize) -> sqlx::Result<i64> {
    match binary8(row, index)? {
        Some(v) => Ok(v),
        None => row.try_get(index),
    }
}

/// Microseconds from 2000-01-01 (PostgreSQL's epoch) to 1970-01-01's.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` column as microseconds since the Unix epoch.
fn unix_micros(row: &PgRow, index: usize) -> sqlx::Result<i64> {
    match binary8(row, index)? {
        Some(v) => Ok(v.saturating_add(POSTGRES_EPOCH_MICROS)),
        None => Ok(row
            .try_get::<chrono::DateTime<chrono::Utc>, _>(index)?
            .timestamp_micros()),
    }
}

/// The payload with its credentials replaced, when it names one of their
/// keys (only then is it parsed); `None`: it goes out as it is.
fn redacted(payload: &[u8]) -> Option<String> {
    // searchers built once (building one per event showed in profiles)
    static KEYS: LazyLock<Vec<memchr::memmem::Finder<'static>>> = LazyLock::new(|| {
        CREDENTIAL_KEYS
            .iter()
            .map(|k| memchr::memmem::Finder::new(k.as_bytes()))
            .collect()
    });
    if !KEYS.iter().any(|k| k.find(payload).is_some()) {
        return None;
    }
    let mut v = serde_json::from_slice::<serde_json::Value>(payload).ok()?;
    redact_credentials(&mut v);
    Some(v.to_string())
}

fn numbered(rows: Vec<PgRow>) -> sqlx::Result<Vec<Arc<LogEvent>>> {
    rows.iter()
        .map(|r| {
            let position = int8(r, 0)?;
            event_of(r, position as u64).map(Arc::new)
        })
        .collect()
}

/// The last position given (0: none yet).
pub async fn head(pool: &PgPool) -> sqlx::Result<u64> {
    let head: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM log_positions")
        .fetch_one(pool)
        .await?;
    Ok(head as u64)
}

/// Up to `limit` events after position `after`, in log order.
///
/// Read in the log's own order, without the numbers: the numbered events
/// are the first ones of the `(transaction_id, global_position)` order
/// (numbered below the horizon, no later commit sorts before them) and are
/// numbered contiguously in it, so the i-th event after the one numbered
/// `after` is numbered `after + i` — and no more of them than the head
/// allows are read. The index walk of the projectors' catch-up, half the
/// time of a join with `log_positions` per row. Each page's last number is
/// checked against `log_positions`; were it ever off, the page is read
/// again through the join (and the mismatch logged).
pub async fn after(pool: &PgPool, after: u64, limit: i64) -> sqlx::Result<Vec<Arc<LogEvent>>> {
    let after_i = clamp(after);
    // from the start, or after the event numbered `after` (two statements:
    // an OR of the two would not walk the index from where it starts)
    let bound = if after_i == 0 {
        ""
    } else {
        "WHERE (e.transaction_id, e.global_position) >
               (SELECT transaction_id, global_position FROM log_positions WHERE position = $1)"
    };
    let rows = sqlx::query(&format!(
        "SELECT e.global_position, {COLUMNS}
           FROM events e {bound}
          ORDER BY e.transaction_id, e.global_position
          LIMIT greatest(0, least($2, (SELECT coalesce(max(position), 0) FROM log_positions) - $1))"
    ))
    .bind(after_i)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let Some(last) = rows.last() else {
        return Ok(Vec::new());
    };
    let last_global = int8(last, 0)?;
    let last_position = after_i + rows.len() as i64;
    let numbered: Option<i64> =
        sqlx::query_scalar("SELECT global_position FROM log_positions WHERE position = $1")
            .bind(last_position)
            .fetch_optional(pool)
            .await?;
    if numbered != Some(last_global) {
        tracing::error!(
            position = last_position,
            global_position = last_global,
            numbered = ?numbered,
            "the log's numbers are not the log's order here; reading through log_positions"
        );
        return after_joined(pool, after, limit).await;
    }
    rows.iter()
        .enumerate()
        .map(|(i, r)| event_of(r, after + 1 + i as u64).map(Arc::new))
        .collect()
}

/// [`after`] through the numbers themselves. Positions are contiguous, so
/// a page is a range of them: bounded on both sides, the statement keeps
/// its index plan when PostgreSQL plans it once for every value (a bare
/// `position > $1 … LIMIT $2` went parallel: 30 ms a page instead of 4).
async fn after_joined(pool: &PgPool, after: u64, limit: i64) -> sqlx::Result<Vec<Arc<LogEvent>>> {
    let rows = sqlx::query(&format!(
        "SELECT p.position, {COLUMNS}
           FROM log_positions p JOIN events e ON e.global_position = p.global_position
          WHERE p.position > $1 AND p.position <= $1 + $2 ORDER BY p.position"
    ))
    .bind(clamp(after))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    numbered(rows)
}

/// Up to `limit` events before position `before` (at most the head + 1),
/// newest first.
pub async fn before(pool: &PgPool, before: u64, limit: i64) -> sqlx::Result<Vec<Arc<LogEvent>>> {
    let rows = sqlx::query(&format!(
        "SELECT p.position, {COLUMNS}
           FROM log_positions p JOIN events e ON e.global_position = p.global_position
          WHERE p.position < $1 AND p.position >= $1 - $2 ORDER BY p.position DESC"
    ))
    .bind(clamp(before))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    numbered(rows)
}

/// A position as a bigint, with room for the page arithmetic.
fn clamp(position: u64) -> i64 {
    position.min(i64::MAX as u64 / 2) as i64
}

/// A stream of the log: `<AggregateType>-<id>`. The type is what comes
/// before the first `-` (aggregate types have none); names of no tidelog
/// stream (`$all`, `$`-streams, no `-`) are `None`.
pub fn parse_stream(name: &str) -> Option<(&str, &str)> {
    if name.starts_with('$') {
        return None;
    }
    let (ty, id) = name.split_once('-')?;
    (!ty.is_empty() && !id.is_empty()).then_some((ty, id))
}

/// Up to `limit` rows of a stream from `sequence` (inclusive) on, in the
/// direction asked; `None` for a row not numbered yet.
pub async fn stream_page(
    pool: &PgPool,
    (ty, id): (&str, &str),
    sequence: i64,
    backwards: bool,
    limit: i64,
) -> sqlx::Result<Vec<Option<Arc<LogEvent>>>> {
    let (cmp, order) = if backwards {
        ("<=", "DESC")
    } else {
        (">=", "ASC")
    };
    let rows = sqlx::query(&format!(
        "SELECT p.position, {COLUMNS}
           FROM events e LEFT JOIN log_positions p ON p.global_position = e.global_position
          WHERE e.aggregate_type = $1 AND e.aggregate_id = $2 AND e.sequence {cmp} $3
          ORDER BY e.sequence {order} LIMIT $4"
    ))
    .bind(ty)
    .bind(id)
    .bind(sequence)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let position: Option<i64> = r.try_get(0)?;
            position
                .map(|p| event_of(r, p as u64).map(Arc::new))
                .transpose()
        })
        .collect()
}

/// The sequence of a stream's last numbered event (`None`: no event of it
/// is numbered, or it has none). Events not numbered yet are the newest
/// ones of a stream; they are skipped.
pub async fn stream_last(pool: &PgPool, (ty, id): (&str, &str)) -> sqlx::Result<Option<i64>> {
    let mut below = i64::MAX;
    loop {
        let rows: Vec<(i64, bool)> = sqlx::query_as(
            "SELECT e.sequence, p.position IS NOT NULL
               FROM events e LEFT JOIN log_positions p ON p.global_position = e.global_position
              WHERE e.aggregate_type = $1 AND e.aggregate_id = $2 AND e.sequence < $3
              ORDER BY e.sequence DESC LIMIT 64",
        )
        .bind(ty)
        .bind(id)
        .bind(below)
        .fetch_all(pool)
        .await?;
        if let Some((sequence, _)) = rows.iter().find(|(_, numbered)| *numbered) {
            return Ok(Some(*sequence));
        }
        match rows.last() {
            Some((sequence, _)) if rows.len() == 64 => below = *sequence,
            _ => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_split_at_the_first_dash() {
        assert_eq!(
            parse_stream("Account-0b6f-11"),
            Some(("Account", "0b6f-11"))
        );
        assert_eq!(parse_stream("ChatRoom-7"), Some(("ChatRoom", "7")));
        for none in ["$all", "$ce-Account", "Account", "-7", "Account-", ""] {
            assert_eq!(parse_stream(none), None, "{none}");
        }
    }

    #[test]
    fn credentials_are_redacted_and_other_payloads_pass_untouched() {
        let p = r#"{"AccountRegistered":{"number":1,"password_hash":"$argon2id$x"}}"#;
        assert_eq!(
            redacted(p.as_bytes()).as_deref(),
            Some(r#"{"AccountRegistered":{"number":1,"password_hash":"<redacted>"}}"#)
        );
        let q = r#"{"MessagePosted": {"content": "hi"}}"#;
        assert_eq!(redacted(q.as_bytes()), None);
    }
}

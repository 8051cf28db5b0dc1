//! A projection's next batch from the log: the statements that read it and
//! their reads. Two shapes: the replay's (rebuilds, as-of replays), planned
//! for each call's bounds, and the live worker's, planned once per session.

use std::borrow::Cow;
use std::sync::OnceLock;

use projections::{Projector, StoredEvent};
use sqlx::{PgConnection, Row};

use super::Positioned;
use crate::store::LogPosition;

/// The lower bound of a batch's next rows, and the horizon above them.
macro_rules! after_checkpoint {
    () => {
        "(transaction_id, global_position) > ($1::text::xid8, $2)
   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
    };
}

/// The lower bound of the one row past the checkpoint that the horizon
/// still hides: one row comparison (the later of the checkpoint and the
/// horizon), as with two separate bounds PostgreSQL walked the index from
/// the checkpoint (measured 0.9 ms -> 0.04 ms).
macro_rules! past_horizon {
    () => {
        "(transaction_id, global_position) >
       (greatest(pg_snapshot_xmin(pg_current_snapshot()), $1::text::xid8),
        CASE WHEN pg_snapshot_xmin(pg_current_snapshot()) > $1::text::xid8 THEN -1 ELSE $2 END)"
    };
}

/// The replay's batch: the next rows in log order below the horizon, plus
/// at most one row (`hidden`) that is past the checkpoint but still hidden
/// by it — the projector then knows it is held back without asking again.
/// `$3` holds the aggregate types. The arguments: how a part picks them,
/// what its order leads with, the `hidden` flag, the lower bound, the
/// limit, and the as-of filter (`until!()`) or nothing.
macro_rules! in_log_order {
    ($types:literal, $lead:literal, $hidden:literal, $after:expr, $limit:literal, $until:expr) => {
        concat!(
            "
SELECT global_position, transaction_id::text::bigint AS txid, aggregate_type, aggregate_id, sequence,
       event_type, event_version, payload, metadata, recorded_at, ", $hidden, " AS hidden
  FROM events
 WHERE aggregate_type = ", $types, "
   AND ", $after, $until, "
 ORDER BY ", $lead, "events.transaction_id, events.global_position
 LIMIT ", $limit
        )
    };
}

/// As of a time: only the events recorded up to `$5` (if given).
macro_rules! until {
    () => {
        "\n   AND ($5::timestamptz IS NULL OR recorded_at <= $5)"
    };
}

/// Every type ([`projections::EVERY_TYPE`]): the log's own order, every
/// row (`$3` unused but bound), and the hidden row.
macro_rules! every_type {
    ($until:expr) => {
        concat!(
            "(",
            in_log_order!(
                "aggregate_type AND cardinality($3::text[]) = 0",
                "",
                "false",
                after_checkpoint!(),
                "$4",
                $until
            ),
            ")\nUNION ALL\n(",
            in_log_order!(
                "aggregate_type AND cardinality($3::text[]) = 0",
                "",
                "true",
                past_horizon!(),
                "1",
                $until
            ),
            ")"
        )
    };
}

/// The live worker's part for one type: the positions from
/// `events_type_log_order` alone (an index-only scan), then each event by
/// its position. Its session keeps one generic plan
/// (`plan_cache_mode = force_generic_plan`, see [`live_options`]): with the
/// type unknown to the planner, only this shape keeps to the type's index —
/// the replay's shape, planned generically, walks the whole log's order
/// and filters (measured on a 1M-event log: 1.5 s for an empty batch of a
/// quiet type), and planned for each call it costs 0.3–1 ms a plan
/// against 0.05–0.15 ms executing (`pg_stat_statements`, most calls
/// planned).
macro_rules! by_type_index {
    ($types:literal, $hidden:literal, $after:expr, $limit:literal) => {
        concat!(
            "
SELECT e.global_position, e.transaction_id::text::bigint AS txid, e.aggregate_type, e.aggregate_id,
       e.sequence, e.event_type, e.event_version, e.payload, e.metadata, e.recorded_at, ", $hidden, " AS hidden
  FROM (SELECT transaction_id, global_position FROM events
         WHERE aggregate_type = ", $types, "
           AND ", $after, "
         ORDER BY aggregate_type, transaction_id, global_position
         LIMIT ", $limit, ") n
  JOIN events e ON e.global_position = n.global_position
 ORDER BY n.transaction_id, n.global_position"
        )
    };
}

/// A statement's texts per number of aggregate types.
struct Texts {
    /// every type
    every: &'static str,
    /// one type: its next rows and its hidden row, the type `($3)[1]`
    next_of_one: &'static str,
    hidden_of_one: &'static str,
    /// one or several types, each text made once (~3.5 KB for three)
    several: [OnceLock<String>; 8],
    /// reads `$5`: only the events recorded up to it (if given)
    as_of: bool,
}

impl Texts {
    fn of(&self, types: usize) -> Cow<'_, str> {
        match types {
            0 => Cow::Borrowed(self.every),
            n if n <= self.several.len() => {
                Cow::Borrowed(self.several[n - 1].get_or_init(|| self.merged(n)))
            }
            n => Cow::Owned(self.merged(n)),
        }
    }

    /// One type's parts, side by side: each part in its own arm (the type
    /// an element of `$3`) merged in log order. Filtering the log's own
    /// order by `aggregate_type = ANY($3)` walked every later event of the
    /// other types and fetched each from the heap to test its type: an
    /// empty batch of a quiet projection (the ledger's while only chat is
    /// sent) took 0.35-0.45 s on the bench's 5.6M-event log, at every poll.
    /// A `LATERAL` scan per type (`aggregate_type = t.ty`) was as fast in
    /// `EXPLAIN` but under load PostgreSQL planned some of them as that
    /// same walk (up to 10 s for an empty batch): an arm per type keeps the
    /// one-type query's plan. With one type the merge is the part itself.
    fn merged(&self, types: usize) -> String {
        let merged = |part: &str, limit: &str| {
            if types == 1 {
                return format!("({part})");
            }
            let arms: Vec<String> = (1..=types)
                .map(|k| {
                    format!(
                        "({})",
                        part.replace("($3::text[])[1]", &format!("($3::text[])[{k}]"))
                    )
                })
                .collect();
            format!(
                "(SELECT b.* FROM (\n{}\n) b ORDER BY b.txid, b.global_position LIMIT {limit})",
                arms.join("\nUNION ALL\n")
            )
        };
        format!(
            "{}\nUNION ALL\n{}",
            merged(self.next_of_one, "$4"),
            merged(self.hidden_of_one, "1")
        )
    }
}

/// The replay's one-type parts: an equality lets PostgreSQL walk
/// `events_type_log_order` instead of filtering the whole log's order
/// (measured: 20 ms -> 0.5 ms per batch of 500 with other types
/// interleaved). The order names the type first — the same order under the
/// equality, but only that index gives it without a sort: ordered by the
/// log alone, the planner still walked the log's order and filtered
/// whenever it guessed the type dense enough (seen in rebuilds: two rows of
/// three thrown away).
static REPLAY: Texts = Texts {
    every: every_type!(until!()),
    next_of_one: in_log_order!(
        "($3::text[])[1]",
        "events.aggregate_type, ",
        "false",
        after_checkpoint!(),
        "$4",
        until!()
    ),
    hidden_of_one: in_log_order!(
        "($3::text[])[1]",
        "events.aggregate_type, ",
        "true",
        past_horizon!(),
        "1",
        until!()
    ),
    several: [const { OnceLock::new() }; 8],
    as_of: true,
};

/// The live worker's: every type as the replay reads it (its generic plan
/// is the same walk of the log's order), one or several by type index.
static LIVE: Texts = Texts {
    every: every_type!(""),
    next_of_one: by_type_index!("($3::text[])[1]", "false", after_checkpoint!(), "$4"),
    hidden_of_one: by_type_index!("($3::text[])[1]", "true", past_horizon!(), "1"),
    several: [const { OnceLock::new() }; 8],
    as_of: false,
};

/// What a live worker's session (its lock's, where it reads its batches)
/// is set to: one generic plan per statement (see [`by_type_index!`]), no
/// JIT ([`crate::db::NO_JIT`]: a generic plan's estimates pass its
/// thresholds), and commits that do not wait for their WAL flush — the
/// batches it applies without a transaction of their own, as a batch's
/// transaction does not (`BEGIN_BATCH`).
pub(crate) fn live_options() -> [(&'static str, &'static str); 3] {
    [
        ("plan_cache_mode", "force_generic_plan"),
        crate::db::NO_JIT,
        ("synchronous_commit", "off"),
    ]
}

/// The next events of a projection after a checkpoint.
pub(crate) struct Batch {
    pub events: Vec<StoredEvent>,
    /// events past these are committed but still hidden by the horizon
    pub held_back: bool,
}

impl Batch {
    pub fn end(&self) -> Option<LogPosition> {
        self.events.last().map(Positioned::position)
    }
}

/// Reads up to `limit` events of the projection's types after `cp`, in log
/// order below the horizon (only those recorded up to `until`, for an as-of
/// replay: what the system knew then).
pub(crate) async fn read_batch(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    cp: LogPosition,
    limit: i64,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> sqlx::Result<Batch> {
    read_batch_of(conn, projector.aggregate_types(), cp, limit, until).await
}

pub(super) async fn read_batch_of(
    conn: &mut PgConnection,
    types: &[&str],
    cp: LogPosition,
    limit: i64,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> sqlx::Result<Batch> {
    read_with(conn, &REPLAY, types, cp, limit, until).await
}

/// The same for a live worker, on a session set to [`live_options`].
pub(super) async fn read_live_batch(
    conn: &mut PgConnection,
    types: &[&str],
    cp: LogPosition,
    limit: i64,
) -> sqlx::Result<Batch> {
    read_with(conn, &LIVE, types, cp, limit, None).await
}

async fn read_with(
    conn: &mut PgConnection,
    texts: &Texts,
    types: &[&str],
    cp: LogPosition,
    limit: i64,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> sqlx::Result<Batch> {
    let sql = texts.of(types.len());
    let mut query = sqlx::query(&sql)
        .bind(cp.txid.to_string())
        .bind(cp.position)
        .bind(types)
        .bind(limit);
    if texts.as_of {
        query = query.bind(until);
    }
    batch_of(&query.fetch_all(conn).await?)
}

fn batch_of(rows: &[sqlx::postgres::PgRow]) -> sqlx::Result<Batch> {
    let mut batch = Batch {
        events: Vec::with_capacity(rows.len()),
        held_back: false,
    };
    for row in rows {
        if row.try_get::<bool, _>("hidden")? {
            batch.held_back = true;
        } else {
            batch.events.push(row_to_event(row)?);
        }
    }
    Ok(batch)
}

fn row_to_event(row: &sqlx::postgres::PgRow) -> sqlx::Result<StoredEvent> {
    Ok(StoredEvent {
        global_position: row.try_get("global_position")?,
        transaction_id: row.try_get("txid")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row
            .try_get::<&serde_json::value::RawValue, _>("payload")?
            .to_owned(),
        metadata: row
            .try_get::<&serde_json::value::RawValue, _>("metadata")?
            .to_owned(),
        recorded_at: row.try_get("recorded_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_several_types_reads_each_type_as_the_one_type_query_does() {
        for (texts, order) in [
            (&REPLAY, "ORDER BY events.aggregate_type,"),
            (&LIVE, "ORDER BY aggregate_type,"),
        ] {
            let sql = texts.of(3);
            for k in 1..=3 {
                let arm = format!("aggregate_type = ($3::text[])[{k}]");
                assert_eq!(sql.matches(&arm).count(), 2, "{arm}: {sql}");
            }
            assert!(!sql.contains("[4]") && !sql.contains("ANY("));
            assert_eq!(sql.matches('(').count(), sql.matches(')').count());
            assert_eq!(sql.matches(order).count(), 6, "{sql}");
            let one = texts.of(1);
            assert_eq!(one.matches("($3::text[])[1]").count(), 2, "{one}");
            assert!(!one.contains("b.*"), "{one}");
        }
        for texts in [&REPLAY, &LIVE] {
            for n in 0..=3 {
                // every parameter a text reads is bound, and only those
                assert_eq!(texts.of(n).contains("$5"), texts.as_of);
            }
        }
    }
}

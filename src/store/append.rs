//! Group commit: the appends that commands of this process make at the same
//! time go into the event store as one multi-row INSERT — one statement,
//! one transaction, one WAL flush for all of them — instead of one each.
//! Each append is still all or nothing on its own: when a group's INSERT
//! fails (a lost optimistic race, a unique key taken, a duplicate wallet
//! operation), nothing of it was written and every append of the group is
//! tried again alone, so each gets its own answer. Appends of one stream
//! never meet in a group: `Store` runs one command per stream at a time.
//!
//! A few flushers at most run at once; an append that finds them all busy
//! waits in the queue and goes with the next group, so groups grow with
//! the load by themselves. Flushes run as their own tasks: a request that
//! is dropped halfway cannot cancel another command's append.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{oneshot, Semaphore};

use super::LogPosition;

/// Flushes in flight at once.
const FLUSHERS: usize = 2;

/// Inserts the rows in order and answers, per stream, where its last row
/// landed.
pub(super) const INSERT_EVENTS: &str = "
WITH ins AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    SELECT t, i, s, e, v, p, m
      FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::json[], $7::json[])
           WITH ORDINALITY AS u(t, i, s, e, v, p, m, n)
     ORDER BY n
    RETURNING aggregate_type, aggregate_id, transaction_id::text::bigint AS txid, global_position)
SELECT aggregate_type, aggregate_id, max(txid), max(global_position)
  FROM ins GROUP BY aggregate_type, aggregate_id";

/// The rows of one or more appends, column by column.
#[derive(Default)]
pub(super) struct Rows {
    pub aggregate_types: Vec<String>,
    pub aggregate_ids: Vec<String>,
    pub sequences: Vec<i64>,
    pub event_types: Vec<String>,
    pub event_versions: Vec<String>,
    pub payloads: Vec<Value>,
    pub metadata: Vec<Value>,
}

type Heads = HashMap<(String, String), LogPosition>;

impl Rows {
    fn extend(&mut self, other: &Rows) {
        self.aggregate_types
            .extend_from_slice(&other.aggregate_types);
        self.aggregate_ids.extend_from_slice(&other.aggregate_ids);
        self.sequences.extend_from_slice(&other.sequences);
        self.event_types.extend_from_slice(&other.event_types);
        self.event_versions.extend_from_slice(&other.event_versions);
        self.payloads.extend_from_slice(&other.payloads);
        self.metadata.extend_from_slice(&other.metadata);
    }

    /// The stream these rows belong to (one append is one stream).
    fn stream(&self) -> (String, String) {
        (
            self.aggregate_types.first().cloned().unwrap_or_default(),
            self.aggregate_ids.first().cloned().unwrap_or_default(),
        )
    }

    /// Runs the INSERT on `conn` (a pool or an open transaction).
    pub async fn insert<'e, E>(&self, conn: E) -> sqlx::Result<Heads>
    where
        E: sqlx::PgExecutor<'e>,
    {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(INSERT_EVENTS)
            .bind(&self.aggregate_types)
            .bind(&self.aggregate_ids)
            .bind(&self.sequences)
            .bind(&self.event_types)
            .bind(&self.event_versions)
            .bind(&self.payloads)
            .bind(&self.metadata)
            .fetch_all(conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(t, i, txid, position)| ((t, i), LogPosition { txid, position }))
            .collect())
    }
}

struct Pending {
    rows: Rows,
    reply: oneshot::Sender<sqlx::Result<LogPosition>>,
}

pub struct Appender {
    pool: PgPool,
    queue: Mutex<Vec<Pending>>,
    flushers: Arc<Semaphore>,
}

impl Appender {
    pub fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            queue: Mutex::default(),
            flushers: Arc::new(Semaphore::new(FLUSHERS)),
        })
    }

    /// Appends one stream's rows (with whatever else is waiting) and
    /// answers where the last one landed.
    pub(super) async fn append(self: &Arc<Self>, rows: Rows) -> sqlx::Result<LogPosition> {
        let (reply, answer) = oneshot::channel();
        self.queue.lock().unwrap().push(Pending { rows, reply });
        self.start_flusher();
        answer
            .await
            .map_err(|_| sqlx::Error::Protocol("the append was lost with its flusher".into()))?
    }

    fn start_flusher(self: &Arc<Self>) {
        if let Ok(permit) = self.flushers.clone().try_acquire_owned() {
            let me = self.clone();
            tokio::spawn(async move {
                let mut permit = Some(permit);
                loop {
                    let group = std::mem::take(&mut *me.queue.lock().unwrap());
                    if group.is_empty() {
                        // an append queued after the take and before the
                        // release found no free flusher: look once more
                        drop(permit.take());
                        if me.queue.lock().unwrap().is_empty() {
                            return;
                        }
                        match me.flushers.clone().try_acquire_owned() {
                            Ok(p) => permit = Some(p),
                            Err(_) => return,
                        }
                        continue;
                    }
                    me.flush(group).await;
                }
            });
        }
    }

    async fn flush(&self, group: Vec<Pending>) {
        if group.len() > 1 {
            let mut all = Rows::default();
            for p in &group {
                all.extend(&p.rows);
            }
            if let Ok(heads) = all.insert(&self.pool).await {
                for p in group {
                    let head = heads.get(&p.rows.stream()).copied();
                    let _ = p.reply.send(head.ok_or_else(missing_head));
                }
                return;
            }
            // nothing of the group was written: each alone, for its own answer
        }
        let alone = group.into_iter().map(|p| async move {
            let result = p.rows.insert(&self.pool).await.and_then(|heads| {
                heads
                    .get(&p.rows.stream())
                    .copied()
                    .ok_or_else(missing_head)
            });
            let _ = p.reply.send(result);
        });
        futures::future::join_all(alone).await;
    }
}

fn missing_head() -> sqlx::Error {
    sqlx::Error::Protocol("the append returned no position for its stream".into())
}

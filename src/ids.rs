//! Numbers from a PostgreSQL sequence, drawn a block at a time.
//!
//! A room-chat send needs a message id before its event exists; one
//! `nextval` per send was a round trip of its own, one of about three
//! statements per send. Drawing a block and handing it out in order keeps
//! the ids unique and, within this process, increasing in the order they
//! are handed out (as `nextval` per call was). Blocks grow while they are
//! used up quickly and shrink to a single number when it is quiet, so a
//! quiet server leaves no gaps. A block is dropped once it is older than
//! `MAX_AGE`, so with several server processes an id drawn by one is never
//! more than that behind the others' in time; the numbers left in a
//! dropped block (or at a restart) are gaps, as a rolled-back `nextval`
//! leaves.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The most numbers drawn at once.
const MAX_BLOCK: i64 = 64;
/// A block used up sooner than this is followed by one twice its size (and
/// one used up later by one half its size).
const QUICK: Duration = Duration::from_millis(100);
/// A block older than this is dropped, and the next draw is of one number.
const MAX_AGE: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct SequenceBlocks {
    blocks: Mutex<HashMap<&'static str, Block>>,
}

struct Block {
    drawn: Instant,
    size: i64,
    /// ascending, the next first
    left: VecDeque<i64>,
}

impl SequenceBlocks {
    /// The next number of `sequence` (a sequence's name).
    pub async fn next(&self, pool: &PgPool, sequence: &'static str) -> sqlx::Result<i64> {
        // held through a draw, so concurrent callers share one block
        let mut blocks = self.blocks.lock().await;
        let block = blocks.entry(sequence).or_insert_with(|| Block {
            drawn: Instant::now(),
            size: 0,
            left: Default::default(),
        });
        let age = block.drawn.elapsed();
        if age > MAX_AGE {
            block.left.clear();
            block.size = 0;
        }
        if block.left.is_empty() {
            // one number while it is quiet (no gaps), more while it is busy
            block.size = if age < QUICK {
                (block.size * 2).clamp(1, MAX_BLOCK)
            } else {
                (block.size / 2).max(1)
            };
            let mut numbers: Vec<i64> =
                sqlx::query_scalar("SELECT nextval($1::regclass) FROM generate_series(1, $2)")
                    .bind(sequence)
                    .bind(block.size)
                    .fetch_all(pool)
                    .await?;
            numbers.sort_unstable();
            block.left = numbers.into();
            block.drawn = Instant::now();
        }
        Ok(block
            .left
            .pop_front()
            .expect("a block of at least one number"))
    }
}

//! The narrow core every service takes: configuration, the pool, the event
//! store and the projections' progress. Services take it and their own
//! state, never the application's; surfaces hold it in their states.

use std::sync::Arc;

use sqlx::PgPool;

use crate::config::Config;
use crate::projector::fence::Fences;
use crate::projector::Progress;
use crate::store::{LogPosition, Store};

#[derive(Clone)]
pub struct Core {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub store: Arc<Store>,
    pub progress: Arc<Progress>,
    /// read-your-writes left for callers' next requests
    pub fences: Arc<Fences>,
}

impl Core {
    /// A core over `pool` (the CLI's, or a server's): the event store on
    /// it and a progress that reads the checkpoints from the table.
    /// Waits until the read models include every write answered so far
    /// (`projector::fence`): what a request does before it reads.
    pub async fn answered_writes(&self) -> bool {
        self.fences.wait(&self.pool, &self.progress).await
    }

    pub fn new(config: Arc<Config>, pool: PgPool) -> Self {
        Self {
            config,
            store: Arc::new(Store::new(pool.clone())),
            pool,
            progress: Progress::new(),
            fences: Fences::off(),
        }
    }

    /// Read-your-writes for a command's write, on the next request instead
    /// of now where this server may defer it (`projector::fence`: alone on
    /// the database, under load; every HTTP request waits there), else
    /// now, as `settle`.
    pub async fn settle_on_read(&self, names: &[&'static str], pos: Option<LogPosition>) -> bool {
        let Some(at) = pos else { return true };
        if self.fences.defer(&self.progress, names, at) {
            return true;
        }
        let _counted = self.fences.settling();
        self.settle(names, pos).await
    }

    /// Read-your-writes: returns once the named read models include the
    /// write at `pos` (true), or after the configured timeout (false,
    /// logged: the projectors are held back or out of reach, as during a
    /// failover; a read of the write may then not find it).
    pub async fn settle(&self, names: &[&str], pos: Option<LogPosition>) -> bool {
        let Some(pos) = pos else { return true };
        let timeout = self.config.read_your_writes_timeout;
        let caught_up = self
            .progress
            .wait_for(&self.pool, names, pos, timeout)
            .await;
        if !caught_up {
            tracing::warn!(
                ?names,
                ?pos,
                "read models did not catch up in time; answering anyway"
            );
        }
        caught_up
    }
}

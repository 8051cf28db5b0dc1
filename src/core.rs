//! The narrow core that services take instead of the whole `AppState`:
//! configuration, the pool, the event store and the projections' progress.
//! Surfaces take it (and their own state) as axum substates (`FromRef`).

use std::sync::Arc;

use axum::extract::FromRef;
use sqlx::PgPool;

use crate::app::AppState;
use crate::config::Config;
use crate::projector::Progress;
use crate::store::{LogPosition, Store};

#[derive(Clone)]
pub struct Core {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub store: Arc<Store>,
    pub progress: Arc<Progress>,
}

impl Core {
    /// Read-your-writes: returns once the named read models include the
    /// write at `pos` (or after the configured timeout, logged).
    pub async fn settle(&self, names: &[&str], pos: Option<LogPosition>) {
        let Some(pos) = pos else { return };
        let timeout = self.config.read_your_writes_timeout;
        if !self
            .progress
            .wait_for(&self.pool, names, pos, timeout)
            .await
        {
            tracing::warn!(
                ?names,
                ?pos,
                "read models did not catch up in time; answering anyway"
            );
        }
    }
}

impl FromRef<AppState> for Core {
    fn from_ref(state: &AppState) -> Self {
        Self {
            config: state.config.clone(),
            pool: state.pool.clone(),
            store: state.store.clone(),
            progress: state.progress.clone(),
        }
    }
}

//! The gift monitor's own state, taken by its handlers as the router's
//! state: the core, its API key and the ended months' answers kept.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use tokio::sync::Semaphore;

use super::cache::MonthCache;
use crate::config::Secret;
use crate::core::Core;

#[derive(Clone, FromRef)]
pub struct GiftState {
    pub core: Core,
    /// the monitor's API key
    pub api_secret: Secret,
    /// answers of ended months (`/gift/by_month`, `/gift/live_sessions`)
    pub gift_months: Arc<MonthCache>,
    /// batches being recorded at once (see `INGEST_AT_ONCE`)
    pub ingest_slots: Arc<Semaphore>,
}

/// Ingestion batches parsed and recorded at once; later ones wait, read
/// but not parsed, for a slot. A batch's messages take memory from parsing to
/// commit, and batches of one room are recorded one after another anyway:
/// at 64 clients sending batches of 100, the server's RSS rose by 60 MB
/// and throughput fell below that of 16 clients.
pub const INGEST_AT_ONCE: usize = 16;

impl GiftState {
    pub fn new(core: Core, api_secret: Secret) -> Self {
        Self {
            core,
            api_secret,
            gift_months: Arc::default(),
            ingest_slots: Arc::new(Semaphore::new(INGEST_AT_ONCE)),
        }
    }
}

impl Deref for GiftState {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

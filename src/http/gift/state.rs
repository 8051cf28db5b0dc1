//! The gift monitor's own state, taken by its handlers as the router's
//! state: the core, its API key and the ended months' answers kept.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;

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
}

impl GiftState {
    pub fn new(core: Core, api_secret: Secret) -> Self {
        Self {
            core,
            api_secret,
            gift_months: Arc::default(),
        }
    }
}

impl Deref for GiftState {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

//! Ocean1's own state, taken by its handlers as the router's state: the
//! core, the token check, identity, the card-key secret, the point
//! histories kept and the upstream HTTP client of the generation proxy.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use tokio::sync::Semaphore;

use super::cache::HistoryCache;
use crate::config::Secret;
use crate::core::Core;
use crate::identity::{Authenticator, Identity};

#[derive(Clone, FromRef)]
pub struct Ocean1State {
    pub core: Core,
    pub auth: Authenticator,
    pub identity: Arc<Identity>,
    /// keys card-key hashes
    pub card_secret: Secret,
    /// point histories, kept while their wallet is unchanged
    pub point_histories: Arc<HistoryCache>,
    /// pooled client for the generation gateways
    pub upstream_http: reqwest::Client,
    /// generation jobs being started at once (see `STARTS_AT_ONCE`)
    pub job_starts: Arc<Semaphore>,
}

/// Generation jobs being started (points held, job recorded, submitted) at
/// once; later requests wait for a slot, holding only their parsed body.
/// A start's future is ~13 KB, taken when its request arrives: 1,000 Sora
/// streams opened at once held 13 MB of them at the same moment, besides
/// hyper's ~24 KB per open connection. Wide enough that a slow gateway's
/// submits (up to 30 s each) still leave room for the others.
pub const STARTS_AT_ONCE: usize = 64;

impl Ocean1State {
    pub fn new(
        core: Core,
        identity: Arc<Identity>,
        card_secret: Secret,
        upstream_http: reqwest::Client,
    ) -> Self {
        Self {
            auth: Authenticator::new(&core, identity.clone()),
            core,
            identity,
            card_secret,
            point_histories: Arc::default(),
            upstream_http,
            job_starts: Arc::new(Semaphore::new(STARTS_AT_ONCE)),
        }
    }
}

impl Deref for Ocean1State {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

//! Ocean1's own state, taken by its handlers as the router's state: the
//! core, the token check, identity, the card-key secret, the point
//! histories kept and the upstream HTTP client of the generation proxy.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;

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
}

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
        }
    }
}

impl Deref for Ocean1State {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

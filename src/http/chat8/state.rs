//! Chat8's own state, taken by its handlers as the router's state: the
//! core, the token check, identity and this process's sockets.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;

use crate::core::Core;
use crate::identity::{Authenticator, Identity};
use crate::social::feed::SocialHub;

#[derive(Clone, FromRef)]
pub struct Chat8State {
    pub core: Core,
    pub auth: Authenticator,
    pub identity: Arc<Identity>,
    /// this process's Chat8 sockets (the feed pushes to them)
    pub hub: Arc<SocialHub>,
}

impl Chat8State {
    pub fn new(core: Core, identity: Arc<Identity>, hub: Arc<SocialHub>) -> Self {
        Self {
            auth: Authenticator::new(&core, identity.clone()),
            core,
            identity,
            hub,
        }
    }
}

impl Deref for Chat8State {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

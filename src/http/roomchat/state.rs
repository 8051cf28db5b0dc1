//! Room chat's own state, taken by its handlers as the router's state:
//! the core, the token check, identity, this process's sockets, the id
//! blocks and the pages kept.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;

use super::cache::PageCache;
use crate::core::Core;
use crate::identity::{Authenticator, Identity};
use crate::ids::SequenceBlocks;
use crate::live::Hub;

#[derive(Clone, FromRef)]
pub struct RoomChatState {
    pub core: Core,
    pub auth: Authenticator,
    pub identity: Arc<Identity>,
    /// this process's room sockets (the feed pushes to them)
    pub hub: Arc<Hub>,
    /// room and message ids, drawn a block at a time
    pub sequences: Arc<SequenceBlocks>,
    /// message pages, kept while their room is unchanged
    pub room_pages: Arc<PageCache>,
}

impl RoomChatState {
    pub fn new(
        core: Core,
        identity: Arc<Identity>,
        hub: Arc<Hub>,
        sequences: Arc<SequenceBlocks>,
    ) -> Self {
        Self {
            auth: Authenticator::new(&core, identity.clone()),
            core,
            identity,
            hub,
            sequences,
            room_pages: Arc::default(),
        }
    }
}

/// The handlers reach the core's parts (`pool`, `store`, `config`,
/// `settle`) directly.
impl Deref for RoomChatState {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

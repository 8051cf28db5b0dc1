//! tidelog's domain: aggregates, their commands and events, and the value
//! types that commands are built from. Knows nothing of HTTP or SQL.

pub mod account;
pub mod chat_room;
pub mod values;

pub use account::{Account, AccountCommand, AccountError, AccountEvent};
pub use chat_room::{ChatRoom, ChatRoomCommand, ChatRoomError, ChatRoomEvent, Member};

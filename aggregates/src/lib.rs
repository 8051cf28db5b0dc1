//! tidelog's domain: aggregates, their commands and events, and the value
//! types that commands are built from. Knows nothing of HTTP or SQL.

pub mod account;
pub mod audience;
pub mod card_key;
pub mod chat_room;
pub mod email_code;
pub mod generation;
pub mod live_room;
pub mod monitored_room;
pub mod payment_order;
pub mod social;
pub mod values;
pub mod wallet;

pub use account::{Account, AccountCommand, AccountError, AccountEvent, DeviceCheck};
pub use audience::{
    Anchor, AnchorCommand, AnchorError, AnchorEvent, Follow, FollowCommand, FollowError,
    FollowEvent, ViewerChat, ViewerChatCommand, ViewerChatError, ViewerChatEvent,
};
pub use card_key::{CardKey, CardKeyCommand, CardKeyError, CardKeyEvent, NotRedeemable};
pub use chat_room::{ChatRoom, ChatRoomCommand, ChatRoomError, ChatRoomEvent, Member};
pub use email_code::{EmailCode, EmailCodeCommand, EmailCodeError, EmailCodeEvent};
pub use live_room::{LiveRoom, LiveRoomCommand, LiveRoomError, LiveRoomEvent};
pub use monitored_room::{
    MonitoredRoom, MonitoredRoomCommand, MonitoredRoomError, MonitoredRoomEvent, Observation,
};
pub use payment_order::{
    PaymentOrder, PaymentOrderCommand, PaymentOrderError, PaymentOrderEvent, PaymentStatus,
    ReportSource,
};
pub use wallet::{
    Amount, AnchorPayment, Counterparty, Currency, Movement, Reason, Reference, Wallet,
    WalletCommand, WalletError, WalletEvent,
};

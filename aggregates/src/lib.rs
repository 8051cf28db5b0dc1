//! tidelog's domain: aggregates, their commands and events, and the value
//! types that commands are built from. Knows nothing of HTTP or SQL.

pub mod account;
pub mod card_key;
pub mod chat_room;
pub mod email_code;
pub mod monitored_room;
pub mod payment_order;
pub mod values;
pub mod wallet;

pub use account::{Account, AccountCommand, AccountError, AccountEvent, DeviceCheck};
pub use card_key::{CardKey, CardKeyCommand, CardKeyError, CardKeyEvent, NotRedeemable};
pub use chat_room::{ChatRoom, ChatRoomCommand, ChatRoomError, ChatRoomEvent, Member};
pub use email_code::{EmailCode, EmailCodeCommand, EmailCodeError, EmailCodeEvent};
pub use monitored_room::{
    MonitoredRoom, MonitoredRoomCommand, MonitoredRoomError, MonitoredRoomEvent, Observation,
};
pub use payment_order::{
    PaymentOrder, PaymentOrderCommand, PaymentOrderError, PaymentOrderEvent, PaymentStatus,
    ReportSource,
};
pub use wallet::{
    Amount, Counterparty, Currency, Movement, Reason, Reference, Wallet, WalletCommand,
    WalletError, WalletEvent,
};

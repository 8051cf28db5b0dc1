//! Wallet: one account's balance in one currency (stream id
//! `<account uuid>:<currency>`). Every movement is double entry: it posts
//! to the wallet and to a counter-account with opposite signs, so per
//! currency all postings sum to zero. A wallet never goes negative.
//!
//! Every command carries an operation id; a retry with the same id has one
//! effect. The aggregate remembers the last `RECENT_OPERATIONS` ids (a
//! same-id retry is a no-op, a same-id different movement a conflict); the
//! event store holds every id ever used as a unique key, so an older retry
//! is caught there and answered by the adapter from the original event.
//!
//! Holds (two-phase, for generation jobs): `Hold` moves points from the
//! wallet to its hold account; `SettleHold` pays (part of) it to the
//! counter-account and returns the rest; `ReleaseHold` returns it all; a
//! hold past its expiry is returned by `ExpireHolds` and can no longer be
//! settled.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How many recent operation ids a wallet keeps in its state.
pub const RECENT_OPERATIONS: usize = 100;

/// Largest single movement: far above any real price, far below overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Currency {
    /// seed 000's 钻石
    Coins,
    /// seed 002's points
    Points,
}

impl Currency {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coins => "coins",
            Self::Points => "points",
        }
    }
}

impl FromStr for Currency {
    type Err = WalletError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "coins" => Ok(Self::Coins),
            "points" => Ok(Self::Points),
            _ => Err(WalletError::Invalid(format!("unknown currency {s:?}"))),
        }
    }
}

/// A wallet's stream id.
pub fn wallet_id(account_id: Uuid, currency: Currency) -> String {
    format!("{account_id}:{}", currency.as_str())
}

/// Parses a wallet stream id back into its account and currency.
pub fn parse_wallet_id(id: &str) -> Option<(Uuid, Currency)> {
    let (account, currency) = id.split_once(':')?;
    Some((account.parse().ok()?, currency.parse().ok()?))
}

/// A positive number of minor units (coins or points), at most `MAX_AMOUNT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Amount(i64);

impl Amount {
    pub fn new(units: i64) -> Result<Self, WalletError> {
        if units <= 0 {
            return Err(WalletError::Invalid("amount must be positive".into()));
        }
        if units > MAX_AMOUNT {
            return Err(WalletError::Invalid("amount is too large".into()));
        }
        Ok(Self(units))
    }
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for Amount {
    type Error = WalletError;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<Amount> for i64 {
    fn from(a: Amount) -> i64 {
        a.0
    }
}

/// The other side of a movement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Counterparty {
    /// money that came in through the crypto payment provider
    ExternalCrypto,
    /// points sold as card keys
    ExternalCards,
    /// what users spent on the platform
    PlatformRevenue,
    /// manual corrections by an operator
    PlatformAdjustments,
    /// what the platform gives away (seed 002's daily reward)
    PlatformRewards,
    /// an anchor's earnings account (seed 000's VIP rooms)
    Anchor(Uuid),
}

impl fmt::Display for Counterparty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ExternalCrypto => f.write_str("external:crypto"),
            Self::ExternalCards => f.write_str("external:cards"),
            Self::PlatformRevenue => f.write_str("platform:revenue"),
            Self::PlatformAdjustments => f.write_str("platform:adjustments"),
            Self::PlatformRewards => f.write_str("platform:rewards"),
            Self::Anchor(id) => write!(f, "anchor:{id}"),
        }
    }
}

impl FromStr for Counterparty {
    type Err = WalletError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "external:crypto" => Self::ExternalCrypto,
            "external:cards" => Self::ExternalCards,
            "platform:revenue" => Self::PlatformRevenue,
            "platform:adjustments" => Self::PlatformAdjustments,
            "platform:rewards" => Self::PlatformRewards,
            other => match other.strip_prefix("anchor:").map(Uuid::parse_str) {
                Some(Ok(id)) => Self::Anchor(id),
                _ => {
                    return Err(WalletError::Invalid(format!(
                        "unknown counter-account {s:?}"
                    )))
                }
            },
        })
    }
}

impl TryFrom<String> for Counterparty {
    type Error = WalletError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Counterparty> for String {
    fn from(c: Counterparty) -> String {
        c.to_string()
    }
}

/// Why a movement happened; seed 002's history shows it as `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Recharge,
    Redeem,
    Consume,
    Refund,
    Adjustment,
    VipPayment,
    /// an anchor's subscription (seed 000)
    Subscription,
    /// what an anchor earned from a VIP room or a subscription
    Earning,
    /// seed 002's daily reward on the first heartbeat of a day
    Reward,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recharge => "recharge",
            Self::Redeem => "redeem",
            Self::Consume => "consume",
            Self::Refund => "refund",
            Self::Adjustment => "adjustment",
            Self::VipPayment => "vip_payment",
            Self::Subscription => "subscription",
            Self::Earning => "earning",
            Self::Reward => "reward",
        }
    }
}

/// What a movement is about (`card:<id>`, `payment:<order id>`, …). An
/// exclusive reference can be used by one movement in the whole store: the
/// event store claims it as a unique key with the event, so a card key or a
/// payment is credited once even across wallets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub kind: String,
    pub id: String,
    pub exclusive: bool,
}

impl Reference {
    pub fn exclusive(kind: &str, id: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
            exclusive: true,
        }
    }
    pub fn shared(kind: &str, id: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
            exclusive: false,
        }
    }
}

/// Every command's common part.
#[derive(Debug, Clone)]
pub struct Movement {
    pub operation_id: String,
    pub amount: Amount,
    pub counter: Counterparty,
    pub reason: Reason,
    pub reference: Option<Reference>,
    pub description: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug)]
pub enum WalletCommand {
    Credit(Movement),
    Debit(Movement),
    /// Moves `amount` to the hold account until `expires_at`.
    Hold {
        movement: Movement,
        hold_id: String,
        expires_at: DateTime<Utc>,
    },
    /// Pays `amount` (≤ held) of a hold to the movement's counter-account
    /// and returns the rest to the wallet.
    SettleHold {
        movement: Movement,
        hold_id: String,
    },
    ReleaseHold {
        operation_id: String,
        hold_id: String,
        at: DateTime<Utc>,
    },
    /// Returns every hold whose expiry has passed at `at`.
    ExpireHolds {
        at: DateTime<Utc>,
    },
    /// Pays a VIP room's price to its anchor (seed 000).
    PayVipCoin {
        payment: AnchorPayment,
        room_id: String,
    },
    /// Pays an anchor's subscription for a period of `period_secs`.
    PaySubscription {
        payment: AnchorPayment,
        period_secs: i64,
    },
}

/// A payment to an anchor: the payer's coins go to the anchor's earnings
/// account `anchor:<id>` (from which the anchor's wallet is credited) less
/// the platform's share, which goes to `platform:revenue`.
#[derive(Debug, Clone)]
pub struct AnchorPayment {
    pub operation_id: String,
    pub amount: Amount,
    pub anchor: Uuid,
    /// the platform's part of `amount` (0 ..= amount)
    pub platform_share: i64,
    pub description: String,
    pub at: DateTime<Utc>,
}

impl AnchorPayment {
    /// The platform keeps `percent` % of `amount`, rounded up to whole
    /// coins; the anchor earns the rest.
    pub fn share_of(amount: Amount, percent: u8) -> i64 {
        let percent = i64::from(percent.min(100));
        (amount.get() * percent + 99) / 100
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WalletEvent {
    WalletCredited {
        operation_id: String,
        amount: i64,
        counter: Counterparty,
        reason: Reason,
        reference: Option<Reference>,
        description: String,
        balance_after: i64,
        at: DateTime<Utc>,
    },
    WalletDebited {
        operation_id: String,
        amount: i64,
        counter: Counterparty,
        reason: Reason,
        reference: Option<Reference>,
        description: String,
        balance_after: i64,
        at: DateTime<Utc>,
    },
    HoldPlaced {
        operation_id: String,
        hold_id: String,
        amount: i64,
        expires_at: DateTime<Utc>,
        description: String,
        balance_after: i64,
        at: DateTime<Utc>,
    },
    HoldSettled {
        operation_id: String,
        hold_id: String,
        /// paid to `counter`
        amount: i64,
        /// returned to the wallet
        returned: i64,
        counter: Counterparty,
        reason: Reason,
        description: String,
        balance_after: i64,
        at: DateTime<Utc>,
    },
    /// Returned to the wallet, by request or (`expired`) by expiry.
    HoldReleased {
        operation_id: String,
        hold_id: String,
        amount: i64,
        expired: bool,
        balance_after: i64,
        at: DateTime<Utc>,
    },
    /// Access to a VIP room bought: `anchor_amount` to `anchor:<anchor_id>`,
    /// `platform_amount` to `platform:revenue`.
    VipCoinPaid {
        operation_id: String,
        room_id: String,
        anchor_id: Uuid,
        amount: i64,
        anchor_amount: i64,
        platform_amount: i64,
        description: String,
        balance_after: i64,
        at: DateTime<Utc>,
    },
    /// A subscription period of `period_secs` bought from an anchor.
    SubscriptionPaid {
        operation_id: String,
        anchor_id: Uuid,
        period_secs: i64,
        amount: i64,
        anchor_amount: i64,
        platform_amount: i64,
        description: String,
        balance_after: i64,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for WalletEvent {
    fn event_type(&self) -> String {
        match self {
            Self::WalletCredited { .. } => "WalletCredited",
            Self::WalletDebited { .. } => "WalletDebited",
            Self::HoldPlaced { .. } => "HoldPlaced",
            Self::HoldSettled { .. } => "HoldSettled",
            Self::HoldReleased { .. } => "HoldReleased",
            Self::VipCoinPaid { .. } => "VipCoinPaid",
            Self::SubscriptionPaid { .. } => "SubscriptionPaid",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

/// A posting: one leg of a movement. Ledger accounts are `wallet:<id>`,
/// `hold:<id>` (both `<account>:<currency>`) or a counter-account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub ledger_account: String,
    pub amount: i64,
}

impl WalletEvent {
    pub fn operation_id(&self) -> &str {
        match self {
            Self::WalletCredited { operation_id, .. }
            | Self::WalletDebited { operation_id, .. }
            | Self::HoldPlaced { operation_id, .. }
            | Self::HoldSettled { operation_id, .. }
            | Self::HoldReleased { operation_id, .. }
            | Self::VipCoinPaid { operation_id, .. }
            | Self::SubscriptionPaid { operation_id, .. } => operation_id,
        }
    }

    pub fn balance_after(&self) -> i64 {
        match self {
            Self::WalletCredited { balance_after, .. }
            | Self::WalletDebited { balance_after, .. }
            | Self::HoldPlaced { balance_after, .. }
            | Self::HoldSettled { balance_after, .. }
            | Self::HoldReleased { balance_after, .. }
            | Self::VipCoinPaid { balance_after, .. }
            | Self::SubscriptionPaid { balance_after, .. } => *balance_after,
        }
    }

    /// The change of the wallet's (spendable) balance.
    pub fn wallet_change(&self) -> i64 {
        match self {
            Self::WalletCredited { amount, .. } => *amount,
            Self::WalletDebited { amount, .. }
            | Self::HoldPlaced { amount, .. }
            | Self::VipCoinPaid { amount, .. }
            | Self::SubscriptionPaid { amount, .. } => -amount,
            Self::HoldSettled { returned, .. } => *returned,
            Self::HoldReleased { amount, .. } => *amount,
        }
    }

    /// The double-entry legs of this event on wallet `wallet` (its stream
    /// id); they sum to zero.
    pub fn postings(&self, wallet: &str) -> Vec<Posting> {
        let leg = |ledger_account: String, amount: i64| Posting {
            ledger_account,
            amount,
        };
        let w = format!("wallet:{wallet}");
        let h = format!("hold:{wallet}");
        match self {
            Self::WalletCredited {
                amount, counter, ..
            } => vec![leg(w, *amount), leg(counter.to_string(), -amount)],
            Self::WalletDebited {
                amount, counter, ..
            } => vec![leg(w, -amount), leg(counter.to_string(), *amount)],
            Self::HoldPlaced { amount, .. } => vec![leg(w, -amount), leg(h, *amount)],
            Self::HoldSettled {
                amount,
                returned,
                counter,
                ..
            } => {
                let mut legs = vec![leg(h.clone(), -amount), leg(counter.to_string(), *amount)];
                if *returned > 0 {
                    legs.push(leg(h, -returned));
                    legs.push(leg(w, *returned));
                }
                legs
            }
            Self::HoldReleased { amount, .. } => vec![leg(h, -amount), leg(w, *amount)],
            Self::VipCoinPaid {
                amount,
                anchor_id,
                anchor_amount,
                platform_amount,
                ..
            }
            | Self::SubscriptionPaid {
                amount,
                anchor_id,
                anchor_amount,
                platform_amount,
                ..
            } => {
                let mut legs = vec![leg(w, -amount)];
                if *anchor_amount > 0 {
                    legs.push(leg(
                        Counterparty::Anchor(*anchor_id).to_string(),
                        *anchor_amount,
                    ));
                }
                if *platform_amount > 0 {
                    legs.push(leg(
                        Counterparty::PlatformRevenue.to_string(),
                        *platform_amount,
                    ));
                }
                legs
            }
        }
    }

    /// A payment to an anchor: (anchor, what the anchor earns).
    pub fn anchor_earning(&self) -> Option<(Uuid, i64)> {
        match self {
            Self::VipCoinPaid {
                anchor_id,
                anchor_amount,
                ..
            }
            | Self::SubscriptionPaid {
                anchor_id,
                anchor_amount,
                ..
            } => Some((*anchor_id, *anchor_amount)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("{0}")]
    Invalid(String),
    #[error("insufficient balance: {balance} available, {requested} requested")]
    InsufficientBalance { balance: i64, requested: i64 },
    /// The operation id was used before for a different movement.
    #[error("operation {0} was already used for a different movement")]
    OperationConflict(String),
    #[error("no open hold {0}")]
    UnknownHold(String),
    #[error("hold {0} has expired")]
    HoldExpired(String),
    #[error("cannot settle {requested} of a hold of {held}")]
    SettleExceedsHold { held: i64, requested: i64 },
    #[error("the balance would exceed its limit")]
    Overflow,
}

/// What identifies an operation's effect, to tell a retry from a reuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub kind: String,
    pub amount: i64,
}

impl Fingerprint {
    pub fn of_event(event: &WalletEvent) -> Self {
        let (kind, amount) = match event {
            WalletEvent::WalletCredited { amount, .. } => ("credit", *amount),
            WalletEvent::WalletDebited { amount, .. } => ("debit", *amount),
            WalletEvent::HoldPlaced { amount, .. } => ("hold", *amount),
            WalletEvent::HoldSettled { amount, .. } => ("settle", *amount),
            WalletEvent::VipCoinPaid { amount, .. } => ("vip", *amount),
            WalletEvent::SubscriptionPaid { amount, .. } => ("subscription", *amount),
            WalletEvent::HoldReleased { hold_id, .. } => {
                return Self {
                    kind: format!("release:{hold_id}"),
                    amount: 0,
                }
            }
        };
        Self {
            kind: kind.into(),
            amount,
        }
    }

    /// The fingerprint a command would leave, if it is an operation.
    pub fn of_command(command: &WalletCommand) -> Option<(String, Self)> {
        let (op, kind, amount) = match command {
            WalletCommand::Credit(m) => (&m.operation_id, "credit".to_string(), m.amount.get()),
            WalletCommand::Debit(m) => (&m.operation_id, "debit".to_string(), m.amount.get()),
            WalletCommand::Hold { movement, .. } => (
                &movement.operation_id,
                "hold".to_string(),
                movement.amount.get(),
            ),
            WalletCommand::SettleHold { movement, .. } => (
                &movement.operation_id,
                "settle".to_string(),
                movement.amount.get(),
            ),
            WalletCommand::ReleaseHold {
                operation_id,
                hold_id,
                ..
            } => (operation_id, format!("release:{hold_id}"), 0),
            WalletCommand::PayVipCoin { payment, .. } => (
                &payment.operation_id,
                "vip".to_string(),
                payment.amount.get(),
            ),
            WalletCommand::PaySubscription { payment, .. } => (
                &payment.operation_id,
                "subscription".to_string(),
                payment.amount.get(),
            ),
            WalletCommand::ExpireHolds { .. } => return None,
        };
        Some((op.clone(), Self { kind, amount }))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OpenHold {
    amount: i64,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Wallet {
    balance: i64,
    holds: BTreeMap<String, OpenHold>,
    recent: VecDeque<(String, Fingerprint)>,
}

impl Wallet {
    pub fn balance(&self) -> i64 {
        self.balance
    }
    pub fn held(&self) -> i64 {
        self.holds.values().map(|h| h.amount).sum()
    }

    fn remember(&mut self, event: &WalletEvent) {
        if event.operation_id().is_empty() {
            return;
        }
        if self.recent.len() == RECENT_OPERATIONS {
            self.recent.pop_front();
        }
        self.recent.push_back((
            event.operation_id().to_owned(),
            Fingerprint::of_event(event),
        ));
    }

    fn check_operation(id: &str) -> Result<(), WalletError> {
        if id.is_empty() || id.len() > 200 {
            return Err(WalletError::Invalid(
                "an operation id has 1 to 200 characters".into(),
            ));
        }
        Ok(())
    }

    fn credited(&self, amount: i64) -> Result<i64, WalletError> {
        self.balance
            .checked_add(amount)
            .filter(|b| *b <= i64::MAX / 4)
            .ok_or(WalletError::Overflow)
    }

    fn debited(&self, amount: i64) -> Result<i64, WalletError> {
        if amount > self.balance {
            return Err(WalletError::InsufficientBalance {
                balance: self.balance,
                requested: amount,
            });
        }
        Ok(self.balance - amount)
    }

    /// (anchor's part, platform's part) of a payment to an anchor.
    fn split(p: &AnchorPayment) -> Result<(i64, i64), WalletError> {
        if !(0..=p.amount.get()).contains(&p.platform_share) {
            return Err(WalletError::Invalid(
                "the platform's share must be within the amount".into(),
            ));
        }
        Ok((p.amount.get() - p.platform_share, p.platform_share))
    }

    fn open_hold(&self, hold_id: &str, at: DateTime<Utc>) -> Result<&OpenHold, WalletError> {
        let hold = self
            .holds
            .get(hold_id)
            .ok_or_else(|| WalletError::UnknownHold(hold_id.into()))?;
        if hold.expires_at <= at {
            return Err(WalletError::HoldExpired(hold_id.into()));
        }
        Ok(hold)
    }

    fn decide(&self, command: WalletCommand) -> Result<Vec<WalletEvent>, WalletError> {
        if let Some((op, fingerprint)) = Fingerprint::of_command(&command) {
            Self::check_operation(&op)?;
            if let Some((_, seen)) = self.recent.iter().find(|(id, _)| *id == op) {
                return if *seen == fingerprint {
                    Ok(vec![])
                } else {
                    Err(WalletError::OperationConflict(op))
                };
            }
        }
        let event = match command {
            WalletCommand::Credit(m) => WalletEvent::WalletCredited {
                balance_after: self.credited(m.amount.get())?,
                operation_id: m.operation_id,
                amount: m.amount.get(),
                counter: m.counter,
                reason: m.reason,
                reference: m.reference,
                description: m.description,
                at: m.at,
            },
            WalletCommand::Debit(m) => WalletEvent::WalletDebited {
                balance_after: self.debited(m.amount.get())?,
                operation_id: m.operation_id,
                amount: m.amount.get(),
                counter: m.counter,
                reason: m.reason,
                reference: m.reference,
                description: m.description,
                at: m.at,
            },
            WalletCommand::Hold {
                movement: m,
                hold_id,
                expires_at,
            } => {
                if hold_id.is_empty() || self.holds.contains_key(&hold_id) {
                    return Err(WalletError::Invalid(format!("hold {hold_id:?} exists")));
                }
                if expires_at <= m.at {
                    return Err(WalletError::Invalid("a hold must expire later".into()));
                }
                WalletEvent::HoldPlaced {
                    balance_after: self.debited(m.amount.get())?,
                    operation_id: m.operation_id,
                    hold_id,
                    amount: m.amount.get(),
                    expires_at,
                    description: m.description,
                    at: m.at,
                }
            }
            WalletCommand::SettleHold {
                movement: m,
                hold_id,
            } => {
                let held = self.open_hold(&hold_id, m.at)?.amount;
                if m.amount.get() > held {
                    return Err(WalletError::SettleExceedsHold {
                        held,
                        requested: m.amount.get(),
                    });
                }
                let returned = held - m.amount.get();
                WalletEvent::HoldSettled {
                    balance_after: self.credited(returned)?,
                    operation_id: m.operation_id,
                    hold_id,
                    amount: m.amount.get(),
                    returned,
                    counter: m.counter,
                    reason: m.reason,
                    description: m.description,
                    at: m.at,
                }
            }
            WalletCommand::ReleaseHold {
                operation_id,
                hold_id,
                at,
            } => {
                let held = self
                    .holds
                    .get(&hold_id)
                    .ok_or_else(|| WalletError::UnknownHold(hold_id.clone()))?
                    .amount;
                WalletEvent::HoldReleased {
                    balance_after: self.credited(held)?,
                    operation_id,
                    hold_id,
                    amount: held,
                    expired: false,
                    at,
                }
            }
            WalletCommand::ExpireHolds { at } => {
                let mut balance = self.balance;
                let mut events = vec![];
                for (hold_id, hold) in &self.holds {
                    if hold.expires_at <= at {
                        balance += hold.amount;
                        events.push(WalletEvent::HoldReleased {
                            operation_id: format!("expire:{hold_id}"),
                            hold_id: hold_id.clone(),
                            amount: hold.amount,
                            expired: true,
                            balance_after: balance,
                            at,
                        });
                    }
                }
                return Ok(events);
            }
            WalletCommand::PayVipCoin {
                payment: p,
                room_id,
            } => {
                let (anchor_amount, platform_amount) = Self::split(&p)?;
                WalletEvent::VipCoinPaid {
                    balance_after: self.debited(p.amount.get())?,
                    operation_id: p.operation_id,
                    room_id,
                    anchor_id: p.anchor,
                    amount: p.amount.get(),
                    anchor_amount,
                    platform_amount,
                    description: p.description,
                    at: p.at,
                }
            }
            WalletCommand::PaySubscription {
                payment: p,
                period_secs,
            } => {
                if period_secs <= 0 {
                    return Err(WalletError::Invalid(
                        "a subscription period must be positive".into(),
                    ));
                }
                let (anchor_amount, platform_amount) = Self::split(&p)?;
                WalletEvent::SubscriptionPaid {
                    balance_after: self.debited(p.amount.get())?,
                    operation_id: p.operation_id,
                    anchor_id: p.anchor,
                    period_secs,
                    amount: p.amount.get(),
                    anchor_amount,
                    platform_amount,
                    description: p.description,
                    at: p.at,
                }
            }
        };
        Ok(vec![event])
    }
}

impl Aggregate for Wallet {
    const TYPE: &'static str = "Wallet";
    type Command = WalletCommand;
    type Event = WalletEvent;
    type Error = WalletError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.remember(&event);
        self.balance = event.balance_after();
        match event {
            WalletEvent::HoldPlaced {
                hold_id,
                amount,
                expires_at,
                ..
            } => {
                self.holds.insert(hold_id, OpenHold { amount, expires_at });
            }
            WalletEvent::HoldSettled { hold_id, .. }
            | WalletEvent::HoldReleased { hold_id, .. } => {
                self.holds.remove(&hold_id);
            }
            WalletEvent::WalletCredited { .. }
            | WalletEvent::WalletDebited { .. }
            | WalletEvent::VipCoinPaid { .. }
            | WalletEvent::SubscriptionPaid { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use cqrs_es::test::TestFramework;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).unwrap()
    }

    fn movement(op: &str, amount: i64) -> Movement {
        Movement {
            operation_id: op.into(),
            amount: Amount::new(amount).unwrap(),
            counter: Counterparty::ExternalCards,
            reason: Reason::Redeem,
            reference: None,
            description: "card".into(),
            at: at(),
        }
    }

    fn credited(op: &str, amount: i64, balance_after: i64) -> WalletEvent {
        WalletEvent::WalletCredited {
            operation_id: op.into(),
            amount,
            counter: Counterparty::ExternalCards,
            reason: Reason::Redeem,
            reference: None,
            description: "card".into(),
            balance_after,
            at: at(),
        }
    }

    fn debited(op: &str, amount: i64, balance_after: i64) -> WalletEvent {
        WalletEvent::WalletDebited {
            operation_id: op.into(),
            amount,
            counter: Counterparty::ExternalCards,
            reason: Reason::Redeem,
            reference: None,
            description: "card".into(),
            balance_after,
            at: at(),
        }
    }

    fn hold(op: &str, id: &str, amount: i64, balance_after: i64) -> WalletEvent {
        WalletEvent::HoldPlaced {
            operation_id: op.into(),
            hold_id: id.into(),
            amount,
            expires_at: at() + Duration::minutes(10),
            description: "card".into(),
            balance_after,
            at: at(),
        }
    }

    #[test]
    fn a_credit_raises_the_balance_and_records_it() {
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 50, 50)])
            .when(WalletCommand::Credit(movement("b", 30)))
            .then_expect_events(vec![credited("b", 30, 80)]);
    }

    #[test]
    fn a_debit_past_the_balance_is_refused() {
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 50, 50)])
            .when(WalletCommand::Debit(movement("b", 51)))
            .then_expect_error(WalletError::InsufficientBalance {
                balance: 50,
                requested: 51,
            });
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 50, 50)])
            .when(WalletCommand::Debit(movement("b", 50)))
            .then_expect_events(vec![debited("b", 50, 0)]);
    }

    #[test]
    fn a_retry_has_one_effect_and_a_reused_id_conflicts() {
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 50, 50)])
            .when(WalletCommand::Credit(movement("a", 50)))
            .then_expect_events(vec![]);
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 50, 50)])
            .when(WalletCommand::Credit(movement("a", 51)))
            .then_expect_error(WalletError::OperationConflict("a".into()));
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 50, 50)])
            .when(WalletCommand::Debit(movement("a", 50)))
            .then_expect_error(WalletError::OperationConflict("a".into()));
    }

    #[test]
    fn amounts_must_be_positive_and_bounded() {
        assert!(Amount::new(0).is_err());
        assert!(Amount::new(-5).is_err());
        assert!(Amount::new(MAX_AMOUNT + 1).is_err());
        assert!(serde_json::from_str::<Amount>("-1").is_err());
        assert_eq!(Amount::new(7).unwrap().get(), 7);
    }

    #[test]
    fn a_hold_moves_points_aside_until_settled_with_the_rest_returned() {
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 100, 100)])
            .when(WalletCommand::Hold {
                movement: movement("h", 30),
                hold_id: "job1".into(),
                expires_at: at() + Duration::minutes(10),
            })
            .then_expect_events(vec![hold("h", "job1", 30, 70)]);
        let settled = WalletEvent::HoldSettled {
            operation_id: "s".into(),
            hold_id: "job1".into(),
            amount: 20,
            returned: 10,
            counter: Counterparty::ExternalCards,
            reason: Reason::Redeem,
            description: "card".into(),
            balance_after: 80,
            at: at(),
        };
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 100, 100), hold("h", "job1", 30, 70)])
            .when(WalletCommand::SettleHold {
                movement: movement("s", 20),
                hold_id: "job1".into(),
            })
            .then_expect_events(vec![settled.clone()]);
        // settled holds are gone
        TestFramework::<Wallet>::with(())
            .given(vec![
                credited("a", 100, 100),
                hold("h", "job1", 30, 70),
                settled,
            ])
            .when(WalletCommand::SettleHold {
                movement: movement("s2", 5),
                hold_id: "job1".into(),
            })
            .then_expect_error(WalletError::UnknownHold("job1".into()));
    }

    #[test]
    fn a_hold_cannot_exceed_the_balance_nor_settle_more_than_it_holds() {
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 10, 10)])
            .when(WalletCommand::Hold {
                movement: movement("h", 11),
                hold_id: "job1".into(),
                expires_at: at() + Duration::minutes(10),
            })
            .then_expect_error(WalletError::InsufficientBalance {
                balance: 10,
                requested: 11,
            });
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 100, 100), hold("h", "job1", 30, 70)])
            .when(WalletCommand::SettleHold {
                movement: movement("s", 31),
                hold_id: "job1".into(),
            })
            .then_expect_error(WalletError::SettleExceedsHold {
                held: 30,
                requested: 31,
            });
    }

    #[test]
    fn a_released_hold_returns_everything() {
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 100, 100), hold("h", "job1", 30, 70)])
            .when(WalletCommand::ReleaseHold {
                operation_id: "r".into(),
                hold_id: "job1".into(),
                at: at(),
            })
            .then_expect_events(vec![WalletEvent::HoldReleased {
                operation_id: "r".into(),
                hold_id: "job1".into(),
                amount: 30,
                expired: false,
                balance_after: 100,
                at: at(),
            }]);
    }

    #[test]
    fn an_expired_hold_cannot_be_settled_and_is_returned_by_expiry() {
        let later = at() + Duration::minutes(11);
        let mut late = movement("s", 30);
        late.at = later;
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 100, 100), hold("h", "job1", 30, 70)])
            .when(WalletCommand::SettleHold {
                movement: late,
                hold_id: "job1".into(),
            })
            .then_expect_error(WalletError::HoldExpired("job1".into()));
        TestFramework::<Wallet>::with(())
            .given(vec![
                credited("a", 100, 100),
                hold("h", "job1", 30, 70),
                hold("h2", "job2", 20, 50),
            ])
            .when(WalletCommand::ExpireHolds { at: later })
            .then_expect_events(vec![
                WalletEvent::HoldReleased {
                    operation_id: "expire:job1".into(),
                    hold_id: "job1".into(),
                    amount: 30,
                    expired: true,
                    balance_after: 80,
                    at: later,
                },
                WalletEvent::HoldReleased {
                    operation_id: "expire:job2".into(),
                    hold_id: "job2".into(),
                    amount: 20,
                    expired: true,
                    balance_after: 100,
                    at: later,
                },
            ]);
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 100, 100), hold("h", "job1", 30, 70)])
            .when(WalletCommand::ExpireHolds { at: at() })
            .then_expect_events(vec![]);
    }

    #[test]
    fn every_movement_posts_legs_that_sum_to_zero() {
        let events = vec![
            credited("a", 100, 100),
            debited("b", 40, 60),
            hold("h", "job1", 30, 30),
            WalletEvent::HoldSettled {
                operation_id: "s".into(),
                hold_id: "job1".into(),
                amount: 25,
                returned: 5,
                counter: Counterparty::PlatformRevenue,
                reason: Reason::Consume,
                description: "job".into(),
                balance_after: 35,
                at: at(),
            },
        ];
        let mut wallet_total = 0;
        for e in &events {
            let legs = e.postings("w");
            assert_eq!(legs.iter().map(|l| l.amount).sum::<i64>(), 0, "{e:?}");
            wallet_total += legs
                .iter()
                .filter(|l| l.ledger_account == "wallet:w")
                .map(|l| l.amount)
                .sum::<i64>();
            assert_eq!(
                legs.iter()
                    .filter(|l| l.ledger_account == "wallet:w")
                    .map(|l| l.amount)
                    .sum::<i64>(),
                e.wallet_change()
            );
        }
        assert_eq!(wallet_total, 35);
    }

    #[test]
    fn counterparties_and_wallet_ids_round_trip() {
        let anchor = Counterparty::Anchor(Uuid::nil());
        for c in [
            Counterparty::ExternalCrypto,
            Counterparty::ExternalCards,
            Counterparty::PlatformRevenue,
            Counterparty::PlatformAdjustments,
            anchor,
        ] {
            assert_eq!(c.to_string().parse::<Counterparty>().unwrap(), c);
        }
        assert!("bank:x".parse::<Counterparty>().is_err());
        let id = Uuid::new_v4();
        assert_eq!(
            parse_wallet_id(&wallet_id(id, Currency::Points)),
            Some((id, Currency::Points))
        );
        assert_eq!(parse_wallet_id("x:points"), None);
    }

    fn vip(op: &str, amount: i64, share: i64) -> WalletCommand {
        WalletCommand::PayVipCoin {
            payment: AnchorPayment {
                operation_id: op.into(),
                amount: Amount::new(amount).unwrap(),
                anchor: Uuid::nil(),
                platform_share: share,
                description: "VIP room r1".into(),
                at: at(),
            },
            room_id: "r1".into(),
        }
    }

    fn vip_paid(op: &str, amount: i64, share: i64, balance_after: i64) -> WalletEvent {
        WalletEvent::VipCoinPaid {
            operation_id: op.into(),
            room_id: "r1".into(),
            anchor_id: Uuid::nil(),
            amount,
            anchor_amount: amount - share,
            platform_amount: share,
            description: "VIP room r1".into(),
            balance_after,
            at: at(),
        }
    }

    #[test]
    fn a_vip_payment_debits_the_payer_and_splits_between_anchor_and_platform() {
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 100, 100)])
            .when(vip("vip:r1", 30, 6))
            .then_expect_events(vec![vip_paid("vip:r1", 30, 6, 70)]);
        let legs = vip_paid("vip:r1", 30, 6, 70).postings("p:coins");
        let amounts: Vec<_> = legs
            .iter()
            .map(|l| (l.ledger_account.as_str(), l.amount))
            .collect();
        assert_eq!(
            amounts,
            vec![
                ("wallet:p:coins", -30),
                ("anchor:00000000-0000-0000-0000-000000000000", 24),
                ("platform:revenue", 6)
            ]
        );
    }

    #[test]
    fn a_vip_payment_is_refused_past_the_balance_and_paid_once_per_operation() {
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 20, 20)])
            .when(vip("vip:r1", 30, 6))
            .then_expect_error(WalletError::InsufficientBalance {
                balance: 20,
                requested: 30,
            });
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 100, 100), vip_paid("vip:r1", 30, 6, 70)])
            .when(vip("vip:r1", 30, 6))
            .then_expect_events(vec![]);
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 100, 100)])
            .when(vip("vip:r1", 30, 31))
            .then_expect_error(WalletError::Invalid(
                "the platform's share must be within the amount".into(),
            ));
    }

    #[test]
    fn the_platform_share_rounds_up_to_whole_coins() {
        let a = |n| Amount::new(n).unwrap();
        assert_eq!(AnchorPayment::share_of(a(100), 20), 20);
        assert_eq!(AnchorPayment::share_of(a(7), 20), 2);
        assert_eq!(AnchorPayment::share_of(a(7), 0), 0);
        assert_eq!(AnchorPayment::share_of(a(7), 100), 7);
    }

    #[test]
    fn a_subscription_needs_a_period() {
        let payment = AnchorPayment {
            operation_id: "sub:1".into(),
            amount: Amount::new(10).unwrap(),
            anchor: Uuid::nil(),
            platform_share: 2,
            description: "subscription".into(),
            at: at(),
        };
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 100, 100)])
            .when(WalletCommand::PaySubscription {
                payment: payment.clone(),
                period_secs: 0,
            })
            .then_expect_error(WalletError::Invalid(
                "a subscription period must be positive".into(),
            ));
        TestFramework::<Wallet>::with(())
            .given(vec![credited("a", 100, 100)])
            .when(WalletCommand::PaySubscription {
                payment,
                period_secs: 30,
            })
            .then_expect_events(vec![WalletEvent::SubscriptionPaid {
                operation_id: "sub:1".into(),
                anchor_id: Uuid::nil(),
                period_secs: 30,
                amount: 10,
                anchor_amount: 8,
                platform_amount: 2,
                description: "subscription".into(),
                balance_after: 90,
                at: at(),
            }]);
    }
}

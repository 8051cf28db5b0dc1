//! The ledger service: moves coins and points through `Wallet` commands and
//! answers each operation from the event it produced, so a retry — seconds
//! or months later, in any process — gets the original answer. Card keys
//! and crypto payments (`payments`) end in wallet credits that name them as
//! exclusive references: the store credits each once.

pub mod audit;
pub mod cards;
pub mod payments;
pub mod rewards;

use aggregates::wallet::{wallet_id, Fingerprint};
use aggregates::{Currency, WalletCommand, WalletError, WalletEvent};
use uuid::Uuid;

use crate::core::Core;
use crate::store::{CommandError, CommandMeta, LogPosition, Store};

/// The read model every ledger answer waits for.
pub const PROJECTION: &str = "ledger";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{0}")]
    Invalid(String),
    #[error("insufficient balance: {balance} available, {requested} requested")]
    Insufficient { balance: i64, requested: i64 },
    /// The operation id was used for a different movement.
    #[error("operation id already used for a different movement")]
    OperationConflict,
    /// An exclusive reference (a card, a payment) was credited already.
    #[error("{0} was used already")]
    ReferenceUsed(String),
    #[error("{0}")]
    Hold(String),
    #[error("too much contention on one wallet, try again")]
    Contended,
    #[error("event store: {0}")]
    Store(String),
}

impl From<CommandError<WalletError>> for LedgerError {
    fn from(e: CommandError<WalletError>) -> Self {
        match e {
            CommandError::Domain(WalletError::InsufficientBalance { balance, requested }) => {
                Self::Insufficient { balance, requested }
            }
            CommandError::Domain(WalletError::OperationConflict(_)) => Self::OperationConflict,
            CommandError::Domain(WalletError::Invalid(m)) => Self::Invalid(m),
            CommandError::Domain(WalletError::Overflow) => Self::Invalid(e.to_string()),
            CommandError::Domain(
                e @ (WalletError::UnknownHold(_)
                | WalletError::HoldExpired(_)
                | WalletError::SettleExceedsHold { .. }),
            ) => Self::Hold(e.to_string()),
            CommandError::UniqueKeyTaken(kind) => Self::ReferenceUsed(kind),
            CommandError::Contended => Self::Contended,
            CommandError::Store(m) => Self::Store(m),
        }
    }
}

/// What an operation did (the first time it ran).
#[derive(Debug, Clone)]
pub struct Moved {
    pub position: LogPosition,
    pub balance_after: i64,
    pub event: WalletEvent,
    /// done by this call (not a repeat answered from the log)
    pub now: bool,
}

/// Runs one wallet operation with exactly-once effect per operation id and
/// returns the event it produced, whether now or by an earlier attempt.
pub async fn operate(
    store: &Store,
    account_id: Uuid,
    currency: Currency,
    meta: &CommandMeta,
    make: impl Fn() -> WalletCommand,
) -> Result<Moved, LedgerError> {
    let wallet = wallet_id(account_id, currency);
    let Some((operation_id, fingerprint)) = Fingerprint::of_command(&make()) else {
        return Err(LedgerError::Invalid("not an operation".into()));
    };
    match store
        .execute_events(&store.wallets, &wallet, meta, &make)
        .await
    {
        Ok(Some((position, events))) => {
            // done now: its event is at hand (the read-back below is for
            // repeats and refusals)
            if let Some(event) = events
                .into_iter()
                .find(|e| e.operation_id() == operation_id)
            {
                if Fingerprint::of_event(&event) != fingerprint {
                    return Err(LedgerError::OperationConflict);
                }
                return Ok(Moved {
                    position,
                    balance_after: event.balance_after(),
                    event,
                    now: true,
                });
            }
        }
        Ok(None) => {}
        // claimed long ago, beyond the wallet's memory: answer from the event
        Err(CommandError::UniqueKeyTaken(kind)) if kind == "wallet_op" => {}
        Err(CommandError::UniqueKeyTaken(_)) => {
            return Err(LedgerError::ReferenceUsed(reference_of(&make())));
        }
        // a retry the wallet no longer remembers may fail on today's state
        // (a debit the balance no longer covers): the original answers it
        Err(e @ CommandError::Domain(_)) => {
            let original = find_operation(store, &wallet, &operation_id)
                .await
                .map_err(|e| {
                    LedgerError::Store(format!("reading operation {operation_id}: {e}"))
                })?;
            return match original {
                Some(moved) if Fingerprint::of_event(&moved.event) == fingerprint => Ok(moved),
                Some(_) => Err(LedgerError::OperationConflict),
                None => Err(e.into()),
            };
        }
        Err(e) => return Err(e.into()),
    }
    let moved = find_operation(store, &wallet, &operation_id)
        .await
        .map_err(|e| LedgerError::Store(format!("reading operation {operation_id}: {e}")))?
        .ok_or_else(|| LedgerError::Store(format!("operation {operation_id} left no event")))?;
    if Fingerprint::of_event(&moved.event) != fingerprint {
        return Err(LedgerError::OperationConflict);
    }
    Ok(moved)
}

fn reference_of(command: &WalletCommand) -> String {
    match command {
        WalletCommand::Credit(m) | WalletCommand::Debit(m) => m
            .reference
            .as_ref()
            .map(|r| format!("{}:{}", r.kind, r.id))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// The event an operation id produced on a wallet (one index probe).
pub async fn find_operation(
    store: &Store,
    wallet: &str,
    operation_id: &str,
) -> anyhow::Result<Option<Moved>> {
    let row: Option<(i64, i64, serde_json::Value)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position, payload::jsonb FROM events
          WHERE aggregate_type = 'Wallet' AND aggregate_id = $1
            AND (payload -> event_type ->> 'operation_id') = $2",
    )
    .bind(wallet)
    .bind(operation_id)
    .fetch_optional(&store.pool)
    .await?;
    let Some((txid, position, payload)) = row else {
        return Ok(None);
    };
    let event: WalletEvent = serde_json::from_value(payload)?;
    Ok(Some(Moved {
        position: LogPosition { txid, position },
        balance_after: event.balance_after(),
        event,
        now: false,
    }))
}

/// Waits until the ledger read model includes `pos` (read-your-writes).
pub async fn settle(core: &Core, pos: LogPosition) {
    core.settle(&[PROJECTION], Some(pos)).await;
}

/// Read-your-writes for an operation answered from its own event (the
/// balance after it): on the caller's next request where this server may
/// defer it, else now (`Core::settle_on_read`).
pub async fn settle_on_read(core: &Core, pos: LogPosition) {
    core.settle_on_read(&[PROJECTION], Some(pos)).await;
}

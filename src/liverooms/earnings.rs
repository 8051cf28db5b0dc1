//! The process manager that pays anchors. A payment to an anchor
//! (`VipCoinPaid`, `SubscriptionPaid`) debits the payer's wallet and names
//! the anchor; the credit of the anchor's coins wallet follows it, as a
//! second command on a second stream. The request that paid starts it at
//! once beside its answer (the payer does not wait for it: with one anchor
//! paid by many, every payer queued behind the anchor's stream and its
//! projection), and a worker fed by the log (the ledger projection lists
//! every payment whose credit it has not seen) covers a crash between the
//! two. The credit's exclusive reference
//! `earning:<payer wallet>/<operation id>` makes it happen once, whoever
//! gets there first.

use std::time::Duration;

use tracing::Instrument;

use aggregates::{Counterparty, Currency, Movement, Reason, Reference, WalletCommand, WalletEvent};
use projections::ledger::{due_earnings, earning_key};
use uuid::Uuid;

use crate::core::Core;
use crate::ledger::{self, LedgerError, Moved};
use crate::store::CommandMeta;

/// Credits the anchor's earnings of a payment (once, whoever asks).
pub async fn credit(
    core: &Core,
    meta: &CommandMeta,
    key: &str,
    anchor: Uuid,
    amount: i64,
    kind: &str,
) -> Result<Option<Moved>, LedgerError> {
    let amount =
        aggregates::Amount::new(amount).map_err(|e| LedgerError::Invalid(e.to_string()))?;
    let at = crate::store::now();
    let description = match kind {
        "subscription" => "subscription earnings",
        _ => "VIP room earnings",
    };
    let movement = || Movement {
        operation_id: format!("earning:{key}"),
        amount,
        counter: Counterparty::Anchor(anchor),
        reason: Reason::Earning,
        reference: Some(Reference::exclusive("earning", key)),
        description: description.into(),
        at,
    };
    match ledger::operate(&core.store, anchor, Currency::Coins, meta, || {
        WalletCommand::Credit(movement())
    })
    .await
    {
        Ok(moved) => Ok(Some(moved)),
        Err(LedgerError::ReferenceUsed(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Starts the credit that follows a payment just made, beside the payer's
/// answer; a failure (or a crash before it) is left to the worker.
pub fn credit_soon(
    core: &Core,
    meta: &CommandMeta,
    payer: Uuid,
    operation_id: &str,
    paid: &WalletEvent,
) {
    let Some((anchor, amount)) = paid.anchor_earning().filter(|(_, a)| *a > 0) else {
        return;
    };
    let kind = match paid {
        WalletEvent::SubscriptionPaid { .. } => "subscription",
        _ => "vip_payment",
    };
    let key = earning_key(&super::coins_wallet(payer), operation_id);
    let (core, meta) = (core.clone(), meta.clone());
    let credit_it = async move {
        if let Err(e) = credit(&core, &meta, &key, anchor, amount, kind).await {
            tracing::warn!(%key, error = %e, "crediting an anchor failed; the earnings worker retries");
        }
    };
    tokio::spawn(credit_it.instrument(tracing::Span::current()));
}

/// Credits every payment to an anchor whose credit is not projected, every
/// `every`, until shutdown.
pub async fn run(core: Core, every: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        match due_earnings(&core.pool, 100).await {
            Ok(due) => {
                for d in due {
                    let meta = system_meta(&d.earning_key);
                    match credit(&core, &meta, &d.earning_key, d.anchor_id, d.amount, &d.kind).await
                    {
                        Ok(Some(_)) => {
                            tracing::info!(
                                key = d.earning_key,
                                "anchor earnings credited by the worker"
                            )
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(key = d.earning_key, error = %e, "crediting an anchor failed")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "the earnings worker cannot read its work list"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn system_meta(key: &str) -> CommandMeta {
    let id = format!("earning-{key}");
    CommandMeta {
        actor: "system:anchor-earnings".into(),
        surface: "system",
        request_id: id.clone(),
        correlation_id: key.to_owned(),
        causation_id: id,
        client_ip: "local".into(),
    }
}

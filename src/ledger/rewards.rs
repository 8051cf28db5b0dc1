//! Seed 002's daily reward: on an account's first heartbeat of a local day
//! (`TIDELOG_TIMEZONE`), `TIDELOG_DAILY_REWARD_POINTS` points are credited
//! (operation id `daily-reward:<day>` on its points wallet, counter-account
//! `platform:rewards`), and that heartbeat — only that one, whatever the
//! concurrency or the process — answers `has_reward: true`.

use aggregates::wallet::{wallet_id, Counterparty, Movement, Reason};
use aggregates::{Amount, Currency, WalletCommand};
use uuid::Uuid;

use super::{LedgerError, PROJECTION};
use crate::core::Core;
use crate::store::{CommandError, CommandMeta};

/// Whether this call credited today's reward.
pub async fn daily(core: &Core, meta: &CommandMeta, account: Uuid) -> Result<bool, LedgerError> {
    let points = core.config.daily_reward_points;
    if points <= 0 {
        return Ok(false);
    }
    let amount = Amount::new(points).map_err(|e| LedgerError::Invalid(e.to_string()))?;
    let now = crate::store::now();
    let day = now.with_timezone(&core.config.timezone).format("%Y-%m-%d");
    let operation_id = format!("daily-reward:{day}");
    let appended = core
        .store
        .execute_appended(
            &core.store.wallets,
            &wallet_id(account, Currency::Points),
            meta,
            || {
                WalletCommand::Credit(Movement {
                    operation_id: operation_id.clone(),
                    amount,
                    counter: Counterparty::PlatformRewards,
                    reason: Reason::Reward,
                    reference: None,
                    description: "每日奖励".into(),
                    at: now,
                })
            },
        )
        .await;
    match appended {
        Ok(Some(pos)) => {
            core.settle(&[PROJECTION], Some(pos)).await;
            Ok(true)
        }
        // credited before (by another heartbeat, here or elsewhere)
        Ok(None) => Ok(false),
        Err(CommandError::UniqueKeyTaken(kind)) if kind == "wallet_op" => Ok(false),
        Err(e) => Err(e.into()),
    }
}

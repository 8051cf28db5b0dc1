//! The peer: a wallet-style workload through stock cqrs-es + postgres-es
//! with a synchronous `GenericQuery` view — what a user of those crates
//! gets out of the box — on the same `events` table (same triggers).

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::GenericQuery;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope, Query, View};
use postgres_es::{postgres_cqrs, PostgresViewRepository};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::stats::{closed_loop, Figure};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BenchWallet {
    balance: i64,
}

#[derive(Debug)]
pub enum WalletCommand {
    Credit(i64),
    Debit(i64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WalletEvent {
    Credited { amount: i64 },
    Debited { amount: i64 },
}

impl DomainEvent for WalletEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Credited { .. } => "Credited".into(),
            Self::Debited { .. } => "Debited".into(),
        }
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("insufficient funds")]
pub struct Insufficient;

impl Aggregate for BenchWallet {
    const TYPE: &'static str = "BenchWallet";
    type Command = WalletCommand;
    type Event = WalletEvent;
    type Error = Insufficient;
    type Services = ();

    async fn handle(
        &mut self,
        c: WalletCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Insufficient> {
        let e = match c {
            WalletCommand::Credit(amount) => WalletEvent::Credited { amount },
            WalletCommand::Debit(amount) if amount <= self.balance => {
                WalletEvent::Debited { amount }
            }
            WalletCommand::Debit(_) => return Err(Insufficient),
        };
        sink.write(e, self).await;
        Ok(())
    }

    fn apply(&mut self, e: WalletEvent) {
        match e {
            WalletEvent::Credited { amount } => self.balance += amount,
            WalletEvent::Debited { amount } => self.balance -= amount,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WalletView {
    balance: i64,
    entries: u64,
}

impl View<BenchWallet> for WalletView {
    fn update(&mut self, event: &EventEnvelope<BenchWallet>) {
        self.entries += 1;
        match event.payload {
            WalletEvent::Credited { amount } => self.balance += amount,
            WalletEvent::Debited { amount } => self.balance -= amount,
        }
    }
}

/// Each worker credits and debits its own wallet, alternately.
pub async fn run(
    pool: &PgPool,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    tag: String,
) -> anyhow::Result<Figure> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_wallet_view (view_id text PRIMARY KEY, version bigint NOT NULL, payload json NOT NULL)",
    )
    .execute(pool)
    .await?;
    let repo = Arc::new(PostgresViewRepository::<WalletView, BenchWallet>::new(
        "bench_wallet_view",
        pool.clone(),
    ));
    let query: Box<dyn Query<BenchWallet>> = Box::new(GenericQuery::new(repo));
    let cqrs = Arc::new(postgres_cqrs(pool.clone(), vec![query], ()));
    Ok(closed_loop(concurrency, warmup, duration, 1, move |w, i| {
        let cqrs = cqrs.clone();
        let id = format!("{tag}-{w}");
        async move {
            let cmd = if i % 2 == 0 {
                WalletCommand::Credit(10)
            } else {
                WalletCommand::Debit(5)
            };
            cqrs.execute(&id, cmd)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
    })
    .await)
}

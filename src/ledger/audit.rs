//! The auditors' checks (`tidelog audit verify`) and export. Verification
//! trusts nothing projected: it re-reads the events, recomputes every hash
//! and balance, and compares the read models against them — all in one
//! repeatable-read snapshot, so a running server does not move the ground.

use std::collections::{BTreeMap, HashMap};

use aggregates::wallet::parse_wallet_id;
use aggregates::{CardKeyEvent, PaymentOrderEvent, PaymentStatus, WalletEvent};
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::{PgPool, Row};

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub events: i64,
    pub wallet_events: i64,
    pub wallets: usize,
    pub payments_finished: usize,
    pub cards_redeemed: usize,
    /// VIP payments and subscriptions (each owes its anchor one credit)
    pub anchor_payments: usize,
    /// anchor payments of the last minute whose credit is still to come
    pub earnings_pending: usize,
    /// wallet events the ledger projection has not applied yet (compared
    /// only up to its checkpoint)
    pub projection_behind: i64,
    pub seconds: f64,
    /// empty when everything holds; the first one is the headline
    pub discrepancies: Vec<String>,
}

impl VerifyReport {
    fn fail(&mut self, what: String) {
        if self.discrepancies.len() < 100 {
            self.discrepancies.push(what);
        }
    }
}

#[derive(Default)]
struct WalletFold {
    balance: i64,
    held: i64,
    events: i64,
}

/// Runs every check; `tick` is called with the number of events read.
pub async fn verify(pool: &PgPool, tick: impl FnMut(u64)) -> anyhow::Result<VerifyReport> {
    verify_with(pool, true, tick).await
}

/// Every check but the hash chains, which the transparency log's full pass
/// (`tlog::audit::verify`) checks on its way over every event.
pub async fn verify_without_chains(
    pool: &PgPool,
    tick: impl FnMut(u64),
) -> anyhow::Result<VerifyReport> {
    verify_with(pool, false, tick).await
}

async fn verify_with(
    pool: &PgPool,
    with_chains: bool,
    mut tick: impl FnMut(u64),
) -> anyhow::Result<VerifyReport> {
    let started = std::time::Instant::now();
    let mut report = VerifyReport::default();
    let mut tx = crate::db::begin_snapshot(pool, None).await?;
    // the hash chains are checked on a second connection in the same
    // snapshot, while this one recomputes the ledger (two cores, half the time)
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *tx)
        .await?;
    let (imported_tx, imported) = tokio::sync::oneshot::channel();
    let chains =
        with_chains.then(|| tokio::spawn(check_chains(pool.clone(), snapshot, imported_tx)));

    // 2. balances and postings recomputed from the wallet events
    let (ck_txid, ck_pos): (i64, i64) = sqlx::query_as(
        "SELECT last_txid::text::bigint, last_position FROM projection_checkpoints WHERE name = 'ledger'
         UNION ALL SELECT 0, 0 LIMIT 1",
    )
    .fetch_one(&mut *tx)
    .await?;
    let mut folds: BTreeMap<String, WalletFold> = BTreeMap::new();
    let mut projected_folds: BTreeMap<String, WalletFold> = BTreeMap::new();
    let mut accounts: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    // exclusive references credited: "payment:<id>" -> (wallet, amount, count)
    let mut credited: HashMap<String, (String, i64, u32)> = HashMap::new();
    // payments to anchors: earning key -> (anchor's wallet, what they earn, recorded at)
    let mut earnings: HashMap<String, (String, i64, chrono::DateTime<chrono::Utc>)> =
        HashMap::new();
    let snapshot_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *tx)
        .await?;
    let mut rows = sqlx::query(
        "SELECT aggregate_id, sequence, global_position, transaction_id::text::bigint AS txid,
                payload::text AS payload, recorded_at
           FROM events WHERE aggregate_type = 'Wallet' ORDER BY aggregate_id, sequence",
    )
    .fetch(&mut *tx);
    let mut seen = 0u64;
    while let Some(row) = rows.try_next().await? {
        let wallet: String = row.get("aggregate_id");
        let sequence: i64 = row.get("sequence");
        let position: i64 = row.get("global_position");
        let txid: i64 = row.get("txid");
        let payload: &str = row.get("payload");
        report.wallet_events += 1;
        seen += 1;
        if seen.is_multiple_of(50_000) {
            tick(50_000 / 2);
        }
        let Some((_, currency)) = parse_wallet_id(&wallet) else {
            report.fail(format!(
                "wallet stream {wallet:?} has no account/currency id"
            ));
            continue;
        };
        let event: WalletEvent = match serde_json::from_str(payload) {
            Ok(e) => e,
            Err(e) => {
                report.fail(format!(
                    "wallet {wallet} #{sequence} (position {position}) does not decode: {e}"
                ));
                continue;
            }
        };
        let fold = folds.entry(wallet.clone()).or_default();
        let expected = fold.balance + event.wallet_change();
        if expected != event.balance_after() || expected < 0 {
            report.fail(format!(
                "wallet {wallet} #{sequence} (position {position}): balance after should be {expected}, the event says {}",
                event.balance_after()
            ));
        }
        fold.balance = expected;
        fold.held += match &event {
            WalletEvent::HoldPlaced { amount, .. } => *amount,
            WalletEvent::HoldSettled {
                amount, returned, ..
            } => -(amount + returned),
            WalletEvent::HoldReleased { amount, .. } => -amount,
            _ => 0,
        };
        fold.events += 1;
        let in_projection = (txid, position) <= (ck_txid, ck_pos);
        if in_projection {
            let p = projected_folds.entry(wallet.clone()).or_default();
            p.balance = fold.balance;
            p.held = fold.held;
            p.events = fold.events;
        } else {
            report.projection_behind += 1;
        }
        for leg in event.postings(&wallet) {
            *totals.entry(currency.as_str().to_owned()).or_default() += leg.amount;
            if in_projection {
                *accounts
                    .entry((leg.ledger_account, currency.as_str().to_owned()))
                    .or_default() += leg.amount;
            }
        }
        if let Some((anchor, amount)) = event.anchor_earning().filter(|(_, a)| *a > 0) {
            earnings.insert(
                projections::ledger::earning_key(&wallet, event.operation_id()),
                (format!("{anchor}:coins"), amount, row.get("recorded_at")),
            );
        }
        if let WalletEvent::WalletCredited {
            reference: Some(r),
            amount,
            ..
        } = &event
        {
            if r.exclusive {
                let e = credited.entry(format!("{}:{}", r.kind, r.id)).or_insert((
                    wallet.clone(),
                    *amount,
                    0,
                ));
                e.2 += 1;
            }
        }
    }
    drop(rows);
    report.wallets = folds.len();
    for (currency, sum) in &totals {
        if *sum != 0 {
            report.fail(format!("postings in {currency} sum to {sum}, not zero"));
        }
    }

    // 3. the projected balances, postings and entry counts equal the recomputed ones
    let projected: Vec<(String, String, i64, i64, i64)> =
        sqlx::query_as("SELECT account_id::text, currency, balance, held, entries FROM wallets")
            .fetch_all(&mut *tx)
            .await?;
    let mut projected_ids = std::collections::HashSet::new();
    for (account, currency, balance, held, entries) in projected {
        let wallet = format!("{account}:{currency}");
        let fold = projected_folds.get(&wallet);
        let (b, h, n) = fold.map_or((0, 0, 0), |f| (f.balance, f.held, f.events));
        if (b, h, n) != (balance, held, entries) {
            report.fail(format!(
                "wallet {wallet}: projected balance {balance} / held {held} / {entries} entries, the events give {b} / {h} / {n}"
            ));
        }
        projected_ids.insert(wallet);
    }
    for (wallet, fold) in &projected_folds {
        if !projected_ids.contains(wallet) {
            report.fail(format!(
                "wallet {wallet}: {} events but no projected balance",
                fold.events
            ));
        }
    }
    let projected_accounts: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT ledger_account, currency, sum(amount)::bigint FROM ledger_postings GROUP BY 1, 2",
    )
    .fetch_all(&mut *tx)
    .await?;
    let projected_accounts: BTreeMap<(String, String), i64> = projected_accounts
        .into_iter()
        .map(|(a, c, s)| ((a, c), s))
        .collect();
    for (key, sum) in accounts.iter().filter(|(_, s)| **s != 0) {
        if projected_accounts.get(key) != Some(sum) {
            report.fail(format!(
                "ledger account {} ({}): projected postings {:?}, the events give {sum}",
                key.0,
                key.1,
                projected_accounts.get(key)
            ));
        }
    }
    for (key, sum) in projected_accounts.iter().filter(|(_, s)| **s != 0) {
        if !accounts.contains_key(key) {
            report.fail(format!(
                "ledger account {} ({}): projected postings {sum} without events",
                key.0, key.1
            ));
        }
    }

    // 4. payments: every finished one credited exactly once, with its coins,
    //    to its owner; no credit for an order that never finished
    let mut orders: HashMap<String, (String, i64, bool)> = HashMap::new();
    let mut rows = sqlx::query(
        "SELECT aggregate_id, payload::jsonb AS payload FROM events
          WHERE aggregate_type = 'PaymentOrder' ORDER BY aggregate_id, sequence",
    )
    .fetch(&mut *tx);
    while let Some(row) = rows.try_next().await? {
        let id: String = row.get("aggregate_id");
        let payload: serde_json::Value = row.get("payload");
        match serde_json::from_value::<PaymentOrderEvent>(payload) {
            Ok(PaymentOrderEvent::PaymentOrderOpened {
                account_id, coins, ..
            }) => {
                orders.insert(id, (format!("{account_id}:coins"), coins, false));
            }
            Ok(PaymentOrderEvent::PaymentStatusReported {
                status: PaymentStatus::Finished,
                ..
            }) => {
                if let Some(o) = orders.get_mut(&id) {
                    o.2 = true;
                }
            }
            Ok(_) => {}
            Err(e) => report.fail(format!("payment order {id} has an undecodable event: {e}")),
        }
    }
    drop(rows);
    for (id, (wallet, coins, finished)) in &orders {
        let credit = credited.get(&format!("payment:{id}"));
        match (finished, credit) {
            (true, None) => report.fail(format!("payment {id} finished but was never credited")),
            (true, Some((w, amount, n))) if *n != 1 || w != wallet || amount != coins => {
                report.fail(format!(
                    "payment {id}: credited {n} time(s), {amount} coins to {w}; expected once, {coins} to {wallet}"
                ))
            }
            (false, Some(_)) => report.fail(format!("payment {id} was credited but never finished")),
            _ => {}
        }
        if *finished {
            report.payments_finished += 1;
        }
    }

    // 5. cards: every redeemed card was issued and credited once with its points
    let mut cards: HashMap<String, i64> = HashMap::new();
    let mut rows = sqlx::query(
        "SELECT aggregate_id, payload::jsonb AS payload FROM events WHERE aggregate_type = 'CardKey'",
    )
    .fetch(&mut *tx);
    while let Some(row) = rows.try_next().await? {
        let id: String = row.get("aggregate_id");
        let payload: serde_json::Value = row.get("payload");
        if let Ok(CardKeyEvent::CardIssued { points, .. }) = serde_json::from_value(payload) {
            cards.insert(id, points);
        }
    }
    drop(rows);
    for (reference, (wallet, amount, n)) in &credited {
        if let Some(card) = reference.strip_prefix("card:") {
            report.cards_redeemed += 1;
            match cards.get(card) {
                None => report.fail(format!(
                    "card {card} was credited to {wallet} but never issued"
                )),
                Some(points) if points != amount || *n != 1 => report.fail(format!(
                    "card {card}: credited {n} time(s) with {amount}; expected once with {points}"
                )),
                _ => {}
            }
        } else if let Some(order) = reference.strip_prefix("payment:") {
            if !orders.contains_key(order) {
                report.fail(format!(
                    "credit for unknown payment order {order} to {wallet}"
                ));
            }
        } else if let Some(key) = reference.strip_prefix("earning:") {
            if !earnings.contains_key(key) {
                report.fail(format!(
                    "anchor earnings {key} credited to {wallet} without a payment"
                ));
            }
        }
    }

    // 6. anchors: every VIP payment and subscription credited once to its
    //    anchor with what the anchor earns (the last minute's may be on the way)
    for (key, (anchor_wallet, amount, at)) in &earnings {
        report.anchor_payments += 1;
        match credited.get(&format!("earning:{key}")) {
            None if snapshot_at - *at < chrono::Duration::seconds(60) => {
                report.earnings_pending += 1
            }
            None => report.fail(format!(
                "payment {key} to an anchor was never credited to {anchor_wallet}"
            )),
            Some((w, got, n)) if *n != 1 || w != anchor_wallet || got != amount => {
                report.fail(format!(
                    "payment {key}: credited {n} time(s), {got} to {w}; expected once, {amount} to {anchor_wallet}"
                ))
            }
            Some(_) => {}
        }
    }
    // an exported snapshot lives as long as its transaction
    if with_chains {
        let _ = imported.await;
    }
    tx.commit().await?;
    // 1. hash chains: every event's hash from its content and predecessor
    let (events, broken) = match chains {
        Some(c) => c.await??,
        None => (0, None),
    };
    report.events = events;
    if let Some((t, id, seq, pos, why)) = broken {
        // the headline: a broken chain explains everything after it
        report.discrepancies.insert(
            0,
            format!("hash chain: event {t}/{id} #{seq} at position {pos}: {why}"),
        );
    }
    tick(report.events as u64 / 2);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

type Broken = (String, String, i64, i64, String);

/// The first event (in log order) whose hash, link or sequence is wrong,
/// read in the exported snapshot `snapshot`.
async fn check_chains(
    pool: PgPool,
    snapshot: String,
    imported: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<(i64, Option<Broken>)> {
    let mut tx = crate::db::begin_snapshot(&pool, Some(&snapshot)).await?;
    let _ = imported.send(());
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *tx)
        .await?;
    let broken: Option<Broken> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, global_position,
                CASE WHEN prev_hash IS DISTINCT FROM expected_prev THEN 'its link to the previous event is broken'
                     WHEN sequence <> coalesce(prev_seq, 0) + 1 THEN 'the stream has a gap before it'
                     ELSE 'its content does not match its hash' END
           FROM (SELECT e.*, lag(hash) OVER w AS expected_prev, lag(sequence) OVER w AS prev_seq
                   FROM events e
                 WINDOW w AS (PARTITION BY aggregate_type, aggregate_id ORDER BY sequence)) x
          WHERE prev_hash IS DISTINCT FROM expected_prev
             OR sequence <> coalesce(prev_seq, 0) + 1
             OR hash <> event_hash(prev_hash, aggregate_type, aggregate_id, sequence, event_type,
                                   event_version, payload, metadata, recorded_at)
          ORDER BY global_position LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((events, broken))
}

/// One exported row: a ledger entry with its event's hash.
pub type ExportRow = projections::ledger::AuditEntryRow;

pub const CSV_HEADER: [&str; 19] = [
    "position",
    "created_at",
    "account_id",
    "currency",
    "event_type",
    "reason",
    "amount",
    "balance_before",
    "balance_after",
    "counter",
    "reference",
    "operation_id",
    "description",
    "actor",
    "surface",
    "request_id",
    "client_ip",
    "sequence",
    "event_hash",
];

pub fn csv_record(r: &ExportRow) -> [String; 19] {
    let e = &r.entry;
    [
        e.position.to_string(),
        e.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        e.account_id.to_string(),
        e.currency.clone(),
        e.event_type.clone(),
        e.reason.clone(),
        e.amount.to_string(),
        e.balance_before.to_string(),
        e.balance_after.to_string(),
        e.counter.clone().unwrap_or_default(),
        e.reference.clone().unwrap_or_default(),
        e.operation_id.clone(),
        e.description.clone(),
        e.actor.clone(),
        e.surface.clone(),
        e.request_id.clone(),
        e.client_ip.clone(),
        e.sequence.to_string(),
        r.event_hash.clone(),
    ]
}

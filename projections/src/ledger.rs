//! Projection "ledger": wallet balances, one entry per movement (the users'
//! histories and the auditors' view, with who/where from the event's
//! metadata), the double-entry postings, card keys and payment orders.

use aggregates::wallet::parse_wallet_id;
use aggregates::{
    CardKeyEvent, Counterparty, PaymentOrderEvent, PaymentStatus, Reason, WalletEvent,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{ProjectionError, Projector, StoredEvent};

pub struct LedgerProjector;

/// Who and where from, out of the event's metadata ("" where it names
/// nothing, or something other than text).
#[derive(Default, serde::Deserialize)]
struct Origin {
    #[serde(default, deserialize_with = "text")]
    actor: String,
    #[serde(default, deserialize_with = "text")]
    surface: String,
    #[serde(default, deserialize_with = "text")]
    request_id: String,
    #[serde(default, deserialize_with = "text")]
    client_ip: String,
}

fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::Deserialize;
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        _ => String::new(),
    })
}

fn origin(event: &StoredEvent) -> Origin {
    serde_json::from_str(event.metadata.get()).unwrap_or_default()
}

/// What a wallet event looks like as an entry (type, description, counter).
fn entry_parts(event: &WalletEvent) -> (&'static str, String, Option<String>) {
    match event {
        WalletEvent::WalletCredited {
            reason,
            description,
            counter,
            ..
        }
        | WalletEvent::WalletDebited {
            reason,
            description,
            counter,
            ..
        } => (
            reason.as_str(),
            description.clone(),
            Some(counter.to_string()),
        ),
        WalletEvent::HoldPlaced { description, .. } => ("consume", description.clone(), None),
        WalletEvent::HoldSettled {
            reason,
            description,
            counter,
            returned,
            ..
        } => {
            let kind = if *returned > 0 {
                "refund"
            } else {
                reason.as_str()
            };
            (kind, description.clone(), Some(counter.to_string()))
        }
        WalletEvent::HoldReleased {
            hold_id, expired, ..
        } => {
            let text = if *expired {
                format!("hold {hold_id} expired")
            } else {
                format!("hold {hold_id} released")
            };
            ("refund", text, None)
        }
        WalletEvent::VipCoinPaid {
            description,
            anchor_id,
            ..
        } => (
            Reason::VipPayment.as_str(),
            description.clone(),
            Some(Counterparty::Anchor(*anchor_id).to_string()),
        ),
        WalletEvent::SubscriptionPaid {
            description,
            anchor_id,
            ..
        } => (
            Reason::Subscription.as_str(),
            description.clone(),
            Some(Counterparty::Anchor(*anchor_id).to_string()),
        ),
    }
}

/// Change of the points set aside in holds.
fn held_change(event: &WalletEvent) -> i64 {
    match event {
        WalletEvent::HoldPlaced { amount, .. } => *amount,
        WalletEvent::HoldSettled {
            amount, returned, ..
        } => -(amount + returned),
        WalletEvent::HoldReleased { amount, .. } => -amount,
        WalletEvent::WalletCredited { .. }
        | WalletEvent::WalletDebited { .. }
        | WalletEvent::VipCoinPaid { .. }
        | WalletEvent::SubscriptionPaid { .. } => 0,
    }
}

/// Everything one wallet event writes.
struct WalletRow {
    position: i64,
    account_id: Uuid,
    currency: &'static str,
    sequence: i64,
    operation_id: String,
    event_type: String,
    kind: &'static str,
    change: i64,
    balance_after: i64,
    counter: Option<String>,
    reference: Option<aggregates::Reference>,
    credit: bool,
    description: String,
    at: DateTime<Utc>,
    actor: String,
    surface: String,
    request_id: String,
    client_ip: String,
    held_change: i64,
    legs: Vec<aggregates::wallet::Posting>,
    /// a payment to an anchor: (anchor, what the anchor earns)
    earning: Option<(Uuid, i64)>,
}

/// The key that ties a payment to an anchor to the credit that pays the
/// anchor: `<payer wallet>/<operation id>` (the credit's exclusive
/// reference `earning:<key>`).
pub fn earning_key(payer_wallet: &str, operation_id: &str) -> String {
    format!("{payer_wallet}/{operation_id}")
}

fn wallet_row(event: &StoredEvent) -> Result<WalletRow, ProjectionError> {
    let (account_id, currency) = parse_wallet_id(&event.aggregate_id)
        .ok_or_else(|| ProjectionError::Payload(format!("wallet id {}", event.aggregate_id)))?;
    let wallet_event: WalletEvent = event.decode()?;
    let origin = origin(event);
    let (kind, description, counter) = entry_parts(&wallet_event);
    let (reference, at) = match &wallet_event {
        WalletEvent::WalletCredited { reference, at, .. }
        | WalletEvent::WalletDebited { reference, at, .. } => (reference.clone(), *at),
        WalletEvent::HoldPlaced { at, .. }
        | WalletEvent::HoldSettled { at, .. }
        | WalletEvent::HoldReleased { at, .. }
        | WalletEvent::VipCoinPaid { at, .. }
        | WalletEvent::SubscriptionPaid { at, .. } => (None, *at),
    };
    Ok(WalletRow {
        position: event.global_position,
        account_id,
        currency: currency.as_str(),
        sequence: event.sequence,
        operation_id: wallet_event.operation_id().to_owned(),
        event_type: event.event_type.clone(),
        kind,
        change: wallet_event.wallet_change(),
        balance_after: wallet_event.balance_after(),
        counter,
        reference,
        credit: matches!(wallet_event, WalletEvent::WalletCredited { .. }),
        description,
        at,
        actor: origin.actor,
        surface: origin.surface,
        request_id: origin.request_id,
        client_ip: origin.client_ip,
        held_change: held_change(&wallet_event),
        legs: wallet_event.postings(&event.aggregate_id),
        earning: wallet_event.anchor_earning().filter(|(_, a)| *a > 0),
    })
}

/// Writes wallet events (in log order) in at most two statements, whatever
/// their count: entries, postings, anchors' earnings and one upsert per
/// wallet; then the cards, payments and earnings they credit.
async fn write_wallet_rows(
    conn: &mut PgConnection,
    rows: &[WalletRow],
) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&WalletRow) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let (mut positions, mut legs, mut accounts, mut currencies, mut amounts) =
        (vec![], vec![], vec![], vec![], vec![]);
    for r in rows {
        for (i, leg) in r.legs.iter().enumerate() {
            positions.push(r.position);
            legs.push(i as i16);
            accounts.push(leg.ledger_account.clone());
            currencies.push(r.currency);
            amounts.push(leg.amount);
        }
    }
    // per wallet: the last balance, the sum of hold changes, the count, the time
    type Fold = (i64, i64, i64, DateTime<Utc>);
    let mut wallets: std::collections::BTreeMap<(Uuid, &str), Fold> =
        std::collections::BTreeMap::new();
    for r in rows {
        let w = wallets
            .entry((r.account_id, r.currency))
            .or_insert((0, 0, 0, r.at));
        *w = (r.balance_after, w.1 + r.held_change, w.2 + 1, r.at);
    }
    // payments to anchors, whose credits follow (their update below)
    let earnings: Vec<&WalletRow> = rows.iter().filter(|r| r.earning.is_some()).collect();
    // One statement, one round trip: the tables are distinct and nothing
    // in it reads what another part writes.
    sqlx::query(
        "WITH entries AS (
           INSERT INTO ledger_entries (position, account_id, currency, sequence, operation_id, event_type,
                                       reason, amount, balance_before, balance_after, counter, reference,
                                       description, created_at, actor, surface, request_id, client_ip)
           SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[],
                                $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[], $12::text[],
                                $13::text[], $14::timestamptz[], $15::text[], $16::text[], $17::text[], $18::text[])
         ), postings AS (
           INSERT INTO ledger_postings (position, leg, ledger_account, currency, amount)
           SELECT * FROM UNNEST($19::bigint[], $20::smallint[], $21::text[], $22::text[], $23::bigint[])
         ), earnings AS (
           INSERT INTO anchor_earnings (earning_key, anchor_id, payer_id, kind, amount, paid_position, paid_at)
           SELECT * FROM UNNEST($24::text[], $25::uuid[], $26::uuid[], $27::text[], $28::bigint[], $29::bigint[],
                                $30::timestamptz[])
         )
         INSERT INTO wallets (account_id, currency, balance, held, entries, updated_at)
         SELECT * FROM UNNEST($31::uuid[], $32::text[], $33::bigint[], $34::bigint[], $35::bigint[],
                              $36::timestamptz[])
         ON CONFLICT (account_id, currency) DO UPDATE
            SET balance = EXCLUDED.balance, held = wallets.held + EXCLUDED.held,
                entries = wallets.entries + EXCLUDED.entries, updated_at = EXCLUDED.updated_at",
    )
    .bind(rows.iter().map(|r| r.position).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.account_id).collect::<Vec<_>>())
    .bind(col(&|r| r.currency.to_owned()))
    .bind(rows.iter().map(|r| r.sequence).collect::<Vec<_>>())
    .bind(col(&|r| r.operation_id.clone()))
    .bind(col(&|r| r.event_type.clone()))
    .bind(col(&|r| r.kind.to_owned()))
    .bind(rows.iter().map(|r| r.change).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.balance_after - r.change).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.balance_after).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.counter.clone()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.reference.as_ref().map(|x| format!("{}:{}", x.kind, x.id)))
            .collect::<Vec<_>>(),
    )
    .bind(col(&|r| r.description.clone()))
    .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
    .bind(col(&|r| r.actor.clone()))
    .bind(col(&|r| r.surface.clone()))
    .bind(col(&|r| r.request_id.clone()))
    .bind(col(&|r| r.client_ip.clone()))
    .bind(&positions)
    .bind(&legs)
    .bind(&accounts)
    .bind(&currencies)
    .bind(&amounts)
    .bind(
        earnings
            .iter()
            .map(|r| earning_key(&format!("{}:{}", r.account_id, r.currency), &r.operation_id))
            .collect::<Vec<_>>(),
    )
    .bind(earnings.iter().map(|r| r.earning.unwrap().0).collect::<Vec<_>>())
    .bind(earnings.iter().map(|r| r.account_id).collect::<Vec<_>>())
    .bind(earnings.iter().map(|r| r.kind).collect::<Vec<_>>())
    .bind(earnings.iter().map(|r| r.earning.unwrap().1).collect::<Vec<_>>())
    .bind(earnings.iter().map(|r| r.position).collect::<Vec<_>>())
    .bind(earnings.iter().map(|r| r.at).collect::<Vec<_>>())
    .bind(wallets.keys().map(|k| k.0).collect::<Vec<_>>())
    .bind(wallets.keys().map(|k| k.1).collect::<Vec<_>>())
    .bind(wallets.values().map(|v| v.0).collect::<Vec<_>>())
    .bind(wallets.values().map(|v| v.1).collect::<Vec<_>>())
    .bind(wallets.values().map(|v| v.2).collect::<Vec<_>>())
    .bind(wallets.values().map(|v| v.3).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;

    // what credited cards, payments and anchors' earnings: one statement
    // for the batch (a reference is credited once: its claim is exclusive)
    let (mut cards, mut orders, mut earned) = (
        Credits::<String>::default(),
        Credits::<Uuid>::default(),
        Credits::<String>::default(),
    );
    for r in rows.iter().filter(|r| r.credit) {
        let Some(reference) = &r.reference else {
            continue;
        };
        match reference.kind.as_str() {
            "card" => cards.push(reference.id.clone(), r),
            "payment" => {
                if let Ok(order) = reference.id.parse::<Uuid>() {
                    orders.push(order, r)
                }
            }
            "earning" => earned.push(reference.id.clone(), r),
            _ => {}
        }
    }
    if cards.keys.is_empty() && orders.keys.is_empty() && earned.keys.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH cards AS (
           UPDATE card_keys c SET redeemed_by = u.account, redeemed_at = u.at, redeem_position = u.position
             FROM UNNEST($1::text[], $2::uuid[], $3::timestamptz[], $4::bigint[]) u(id, account, at, position)
            WHERE c.card_id = u.id
         ), orders AS (
           UPDATE payment_orders o SET credited_at = u.at, credit_position = u.position
             FROM UNNEST($5::uuid[], $6::timestamptz[], $7::bigint[]) u(id, at, position)
            WHERE o.order_id = u.id
         )
         UPDATE anchor_earnings e SET credited_at = u.at, credit_position = u.position
           FROM UNNEST($8::text[], $9::timestamptz[], $10::bigint[]) u(id, at, position)
          WHERE e.earning_key = u.id",
    )
    .bind(&cards.keys)
    .bind(&cards.accounts)
    .bind(&cards.at)
    .bind(&cards.positions)
    .bind(&orders.keys)
    .bind(&orders.at)
    .bind(&orders.positions)
    .bind(&earned.keys)
    .bind(&earned.at)
    .bind(&earned.positions)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The rows one kind of reference credits, as columns (`K`: the kind's key).
#[derive(Default)]
struct Credits<K> {
    keys: Vec<K>,
    accounts: Vec<Uuid>,
    at: Vec<DateTime<Utc>>,
    positions: Vec<i64>,
}

impl<K> Credits<K> {
    fn push(&mut self, key: K, r: &WalletRow) {
        self.keys.push(key);
        self.accounts.push(r.account_id);
        self.at.push(r.at);
        self.positions.push(r.position);
    }
}

async fn apply_card(conn: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
    match event.decode::<CardKeyEvent>()? {
        CardKeyEvent::CardIssued {
            batch_id,
            points,
            expires_at,
            at,
        } => {
            sqlx::query(
                "INSERT INTO card_keys (card_id, batch_id, points, expires_at, issued_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&event.aggregate_id)
            .bind(batch_id)
            .bind(points)
            .bind(expires_at)
            .bind(at)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

async fn apply_order(conn: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
    let order_id: Uuid = event
        .aggregate_id
        .parse()
        .map_err(|e| ProjectionError::Payload(format!("order id: {e}")))?;
    let query = match event.decode::<PaymentOrderEvent>()? {
        PaymentOrderEvent::PaymentOrderOpened {
            account_id,
            account_number,
            price_minor,
            price_currency,
            pay_currency,
            coins,
            at,
        } => sqlx::query(
            "INSERT INTO payment_orders (order_id, account_id, account_number, price_minor, price_currency,
                                         pay_currency, coins, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'created', $8, $8)",
        )
        .bind(order_id)
        .bind(account_id)
        .bind(account_number)
        .bind(price_minor)
        .bind(price_currency)
        .bind(pay_currency)
        .bind(coins)
        .bind(at),
        PaymentOrderEvent::ProviderPaymentCreated {
            payment_id,
            pay_address,
            pay_amount,
            pay_currency,
            at,
        } => sqlx::query(
            "UPDATE payment_orders SET payment_id = $2, pay_address = $3, pay_amount = $4,
                    pay_currency = $5, status = 'waiting', updated_at = $6
              WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(payment_id)
        .bind(pay_address)
        .bind(pay_amount)
        .bind(pay_currency)
        .bind(at),
        PaymentOrderEvent::ProviderPaymentFailed { reason, at } => sqlx::query(
            "UPDATE payment_orders SET status = 'failed', failure = $2, updated_at = $3 WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(reason)
        .bind(at),
        PaymentOrderEvent::PaymentStatusReported {
            status,
            actually_paid,
            at,
            ..
        } => sqlx::query(
            "UPDATE payment_orders
                SET status = $2, actually_paid = coalesce($3, actually_paid), updated_at = $4,
                    finished_at = CASE WHEN $5 THEN $4 ELSE finished_at END
              WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(status.as_str())
        .bind(actually_paid)
        .bind(at)
        .bind(status == PaymentStatus::Finished),
    };
    query.execute(conn).await?;
    Ok(())
}

#[async_trait]
impl Projector for LedgerProjector {
    fn name(&self) -> &'static str {
        "ledger"
    }
    fn tables(&self) -> &'static [&'static str] {
        &[
            "wallets",
            "ledger_entries",
            "ledger_postings",
            "card_keys",
            "payment_orders",
            "anchor_earnings",
        ]
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &["Wallet", "CardKey", "PaymentOrder"]
    }

    fn insert_only_tables(&self) -> &'static [&'static str] {
        &["ledger_entries", "ledger_postings"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        match event.aggregate_type.as_str() {
            "Wallet" => write_wallet_rows(conn, &[wallet_row(event)?]).await,
            "CardKey" => apply_card(conn, event).await,
            "PaymentOrder" => apply_order(conn, event).await,
            _ => Ok(()),
        }
    }

    fn folds_batches(&self) -> bool {
        true
    }

    /// Cards and orders one by one in log order, then every wallet event of
    /// the batch in a few multi-row statements (their card and payment
    /// updates last, after the rows they update exist).
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut wallet_rows = Vec::new();
        for event in events {
            match event.aggregate_type.as_str() {
                "Wallet" => wallet_rows.push(wallet_row(event)?),
                _ => self.apply(conn, event).await?,
            }
        }
        write_wallet_rows(conn, &wallet_rows).await
    }
}

// ---- reads ----

/// The spendable balance (0 for a wallet that never moved).
pub async fn balance(pool: &PgPool, account_id: Uuid, currency: &str) -> sqlx::Result<i64> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT balance FROM wallets WHERE account_id = $1 AND currency = $2")
            .bind(account_id)
            .bind(currency)
            .fetch_optional(pool)
            .await?;
    Ok(row.map_or(0, |r| r.0))
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct EntryRow {
    pub position: i64,
    pub account_id: Uuid,
    pub currency: String,
    pub sequence: i64,
    pub operation_id: String,
    pub event_type: String,
    pub reason: String,
    pub amount: i64,
    pub balance_before: i64,
    pub balance_after: i64,
    pub counter: Option<String>,
    pub reference: Option<String>,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub actor: String,
    pub surface: String,
    pub request_id: String,
    pub client_ip: String,
}

const ENTRY_COLUMNS: &str =
    "position, account_id, currency, sequence, operation_id, event_type, reason,
     amount, balance_before, balance_after, counter, reference, description, created_at, actor,
     surface, request_id, client_ip";

/// A user's movements that changed the balance, newest first.
pub async fn history(
    pool: &PgPool,
    account_id: Uuid,
    currency: &str,
    limit: i64,
) -> sqlx::Result<Vec<EntryRow>> {
    sqlx::query_as(&format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger_entries
          WHERE account_id = $1 AND currency = $2 AND amount <> 0
          ORDER BY position DESC LIMIT $3"
    ))
    .bind(account_id)
    .bind(currency)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// An entry as the auditors see it: with the event's hash.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditEntryRow {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub entry: EntryRow,
    pub event_hash: String,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub account_id: Option<Uuid>,
    pub currency: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// entries after this position (paging forward)
    pub after: Option<i64>,
    pub limit: i64,
}

/// Entries in log order (oldest first), every movement including holds.
pub async fn audit_entries(pool: &PgPool, f: &AuditFilter) -> sqlx::Result<Vec<AuditEntryRow>> {
    let cols = ENTRY_COLUMNS
        .split(',')
        .map(|c| format!("l.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query_as(&format!(
        "SELECT {cols}, encode(e.hash, 'hex') AS event_hash
           FROM ledger_entries l JOIN events e ON e.global_position = l.position
          WHERE ($1::uuid IS NULL OR l.account_id = $1)
            AND ($2::text IS NULL OR l.currency = $2)
            AND ($3::timestamptz IS NULL OR l.created_at >= $3)
            AND ($4::timestamptz IS NULL OR l.created_at < $4)
            AND l.position > coalesce($5, 0)
          ORDER BY l.position LIMIT $6"
    ))
    .bind(f.account_id)
    .bind(&f.currency)
    .bind(f.from)
    .bind(f.to)
    .bind(f.after)
    .bind(f.limit)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct PaymentOrderRow {
    pub order_id: Uuid,
    pub account_id: Uuid,
    pub account_number: i64,
    pub price_minor: i64,
    pub price_currency: String,
    pub pay_currency: String,
    pub coins: i64,
    pub payment_id: Option<String>,
    pub pay_address: Option<String>,
    pub pay_amount: Option<String>,
    pub actually_paid: Option<String>,
    pub status: String,
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub credited_at: Option<DateTime<Utc>>,
}

pub async fn payment_order(pool: &PgPool, order_id: Uuid) -> sqlx::Result<Option<PaymentOrderRow>> {
    sqlx::query_as("SELECT * FROM payment_orders WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(pool)
        .await
}

/// Orders that reached `finished` but whose credit is not (yet) projected.
pub async fn uncredited_orders(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<Uuid>> {
    let rows: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT order_id FROM payment_orders
          WHERE finished_at IS NOT NULL AND credited_at IS NULL ORDER BY finished_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// A payment to an anchor whose credit is not (yet) projected.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueEarning {
    pub earning_key: String,
    pub anchor_id: Uuid,
    pub kind: String,
    pub amount: i64,
    pub paid_at: DateTime<Utc>,
}

/// The anchors' earnings not credited yet, oldest first.
pub async fn due_earnings(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<DueEarning>> {
    sqlx::query_as(
        "SELECT earning_key, anchor_id, kind, amount, paid_at FROM anchor_earnings
          WHERE credited_at IS NULL ORDER BY paid_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

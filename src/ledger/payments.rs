//! Crypto recharge (seed 000) through a NOWPayments-compatible provider:
//! create the payment over HTTP, follow its status by signed callbacks
//! (IPN) or, when they stop, by asking the provider, and credit the coins
//! once the payment is `finished` — once per order, whatever the order or
//! repetition of reports, and again on restart if a crash came between the
//! status and the credit (the reconciler).

use std::time::Duration;

use aggregates::{
    Amount, Counterparty, Currency, Movement, PaymentOrder, PaymentOrderCommand, PaymentOrderError,
    PaymentStatus, Reason, Reference, ReportSource, WalletCommand,
};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha512;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{operate, LedgerError, Moved};
use crate::config::PaymentConfig;
use crate::core::Core;
use crate::store::{now, CommandError, CommandMeta};

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("{0}")]
    Invalid(String),
    #[error("payments are not configured")]
    NotConfigured,
    #[error("the payment provider failed: {0}")]
    Provider(String),
    #[error("no such order")]
    UnknownOrder,
    #[error("the order belongs to another account")]
    NotYours,
    #[error("the order has no provider payment yet")]
    NotReady,
    #[error("bad signature")]
    BadSignature,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("event store: {0}")]
    Store(String),
}

impl From<CommandError<PaymentOrderError>> for PaymentError {
    fn from(e: CommandError<PaymentOrderError>) -> Self {
        match e {
            CommandError::Domain(PaymentOrderError::Unknown) => Self::UnknownOrder,
            CommandError::Domain(e @ PaymentOrderError::WrongPayment { .. }) => {
                Self::Invalid(e.to_string())
            }
            CommandError::Domain(e) => Self::Invalid(e.to_string()),
            CommandError::Contended => Self::Ledger(LedgerError::Contended),
            other => Self::Store(other.to_string()),
        }
    }
}

/// The price the customer asked for, in hundredths of the price currency.
#[derive(Debug, Clone, Copy)]
pub struct Price(Amount);

impl Price {
    /// From the JSON number of `crypto_amount`: positive, at most two
    /// decimals, within the configured bounds.
    pub fn parse(v: &Value, cfg: &PaymentConfig) -> Result<Self, PaymentError> {
        let bad = || PaymentError::Invalid("crypto_amount must be a positive amount".into());
        let n = v.as_number().ok_or_else(bad)?;
        let minor = if let Some(i) = n.as_i64() {
            i.checked_mul(100).ok_or_else(bad)?
        } else {
            let f = n.as_f64().ok_or_else(bad)?;
            let minor = (f * 100.0).round();
            if !f.is_finite() || (f * 100.0 - minor).abs() > 1e-6 || minor.abs() > 1e15 {
                return Err(PaymentError::Invalid(
                    "crypto_amount has at most two decimals".into(),
                ));
            }
            minor as i64
        };
        if minor < cfg.min_amount * 100 || minor > cfg.max_amount * 100 {
            return Err(PaymentError::Invalid(format!(
                "crypto_amount must be between {} and {}",
                cfg.min_amount, cfg.max_amount
            )));
        }
        Ok(Self(Amount::new(minor).map_err(|_| bad())?))
    }

    pub fn minor(self) -> i64 {
        self.0.get()
    }

    fn coins(self, cfg: &PaymentConfig) -> Result<Amount, PaymentError> {
        Amount::new(self.minor() * cfg.coins_per_unit / 100)
            .map_err(|_| PaymentError::Invalid("crypto_amount buys no coins".into()))
    }
}

/// The provider's side of a payment.
#[derive(Debug, Clone)]
pub struct ProviderPayment {
    pub payment_id: String,
    pub pay_address: String,
    pub pay_amount: String,
    pub pay_currency: String,
}

fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A small client of the provider's REST API.
pub struct Provider {
    http: reqwest::Client,
    cfg: PaymentConfig,
}

impl Provider {
    pub fn new(cfg: &PaymentConfig) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder().timeout(cfg.timeout).build()?,
            cfg: cfg.clone(),
        })
    }

    fn key(&self) -> Result<&str, PaymentError> {
        self.cfg
            .api_key
            .as_ref()
            .map(|k| k.expose())
            .ok_or(PaymentError::NotConfigured)
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Value, PaymentError> {
        let resp = req
            .header("x-api-key", self.key()?)
            .send()
            .await
            .map_err(|e| PaymentError::Provider(format!("{e:#}")))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| PaymentError::Provider(format!("answer is not JSON ({status}): {e}")))?;
        if !status.is_success() {
            let msg = body.get("message").and_then(Value::as_str).unwrap_or("");
            return Err(PaymentError::Provider(format!("{status}: {msg}")));
        }
        Ok(body)
    }

    /// `POST /v1/payment`.
    pub async fn create(
        &self,
        order_id: Uuid,
        price: Price,
    ) -> Result<ProviderPayment, PaymentError> {
        let price_amount = serde_json::Number::from_f64(price.minor() as f64 / 100.0)
            .ok_or_else(|| PaymentError::Invalid("price".into()))?;
        let mut body = serde_json::json!({
            "price_amount": price_amount,
            "price_currency": self.cfg.price_currency,
            "pay_currency": self.cfg.pay_currency,
            "order_id": order_id.to_string(),
            "order_description": "coins recharge",
        });
        if let Some(url) = &self.cfg.ipn_callback_url {
            body["ipn_callback_url"] = Value::String(url.clone());
        }
        let answer = self
            .call(
                self.http
                    .post(format!("{}/v1/payment", self.cfg.api_url))
                    .json(&body),
            )
            .await?;
        let field = |name: &str| {
            text_of(answer.get(name))
                .ok_or_else(|| PaymentError::Provider(format!("answer lacks {name}")))
        };
        Ok(ProviderPayment {
            payment_id: field("payment_id")?,
            pay_address: field("pay_address")?,
            pay_amount: field("pay_amount")?,
            pay_currency: text_of(answer.get("pay_currency"))
                .unwrap_or_else(|| self.cfg.pay_currency.clone()),
        })
    }

    /// `GET /v1/payment/{id}`: the status and what was actually paid.
    pub async fn status(&self, payment_id: &str) -> Result<(String, Option<String>), PaymentError> {
        let answer = self
            .call(
                self.http
                    .get(format!("{}/v1/payment/{payment_id}", self.cfg.api_url)),
            )
            .await?;
        let status = text_of(answer.get("payment_status"))
            .ok_or_else(|| PaymentError::Provider("answer lacks payment_status".into()))?;
        Ok((status, text_of(answer.get("actually_paid"))))
    }
}

/// Checks `x-nowpayments-sig`: HMAC-SHA512 (hex) with the IPN secret over
/// the body re-serialised with keys sorted at every level, compared in
/// constant time. Returns the parsed body.
pub fn verify_ipn(
    secret: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Result<Value, PaymentError> {
    let signature = signature.ok_or(PaymentError::BadSignature)?;
    let value: Value =
        serde_json::from_slice(body).map_err(|_| PaymentError::Invalid("malformed JSON".into()))?;
    // serde_json's maps are ordered by key: this is the sorted form
    let canonical = serde_json::to_string(&value).expect("a Value serialises");
    let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(canonical.as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());
    let given = signature.trim().to_ascii_lowercase();
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(value)
    } else {
        Err(PaymentError::BadSignature)
    }
}

/// A payment URI for wallets (`tron:ADDR?amount=…`) and its QR code as an
/// SVG data URI.
pub fn qr_code(pay_currency: &str, address: &str, amount: &str) -> String {
    use base64::Engine;
    let c = pay_currency.to_ascii_lowercase();
    let scheme = if c.ends_with("trc20") || c == "trx" {
        "tron"
    } else if c == "btc" {
        "bitcoin"
    } else if c == "eth" || c.ends_with("erc20") {
        "ethereum"
    } else if c == "ltc" {
        "litecoin"
    } else {
        c.as_str()
    };
    let uri = format!("{scheme}:{address}?amount={amount}");
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color>()
                .min_dimensions(200, 200)
                .build();
            format!(
                "data:image/svg+xml;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(svg)
            )
        }
        Err(_) => uri,
    }
}

/// What `process_recharge` answers.
#[derive(Debug)]
pub struct Recharge {
    pub order_id: Uuid,
    pub payment: ProviderPayment,
    pub coins: i64,
}

pub async fn open_recharge(
    core: &Core,
    provider: &Provider,
    meta: &CommandMeta,
    account_id: Uuid,
    account_number: i64,
    price: Price,
) -> Result<Recharge, PaymentError> {
    let cfg = &core.config.payments;
    provider.key()?;
    let coins = price.coins(cfg)?;
    let order_id = Uuid::new_v4();
    let id = order_id.to_string();
    let store = &core.store;
    let at = now();
    store
        .execute_only(&store.payment_orders, &id, meta, || {
            PaymentOrderCommand::Open {
                account_id,
                account_number,
                price_minor: Amount::new(price.minor()).expect("a price is positive"),
                price_currency: cfg.price_currency.clone(),
                pay_currency: cfg.pay_currency.clone(),
                coins,
                at,
            }
        })
        .await?;
    let payment = match provider.create(order_id, price).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(%order_id, error = %e, "payment provider refused or failed");
            let reason = e.to_string();
            let at = now();
            let pos = store
                .execute(&store.payment_orders, &id, meta, || {
                    PaymentOrderCommand::RecordProviderFailure {
                        reason: reason.clone(),
                        at,
                    }
                })
                .await?;
            core.settle(&[super::PROJECTION], pos).await;
            return Err(e);
        }
    };
    let at = now();
    let pos = store
        .execute(&store.payment_orders, &id, meta, || {
            PaymentOrderCommand::RecordProviderPayment {
                payment_id: payment.payment_id.clone(),
                pay_address: payment.pay_address.clone(),
                pay_amount: payment.pay_amount.clone(),
                pay_currency: payment.pay_currency.clone(),
                at,
            }
        })
        .await?;
    core.settle(&[super::PROJECTION], pos).await;
    Ok(Recharge {
        order_id,
        payment,
        coins: coins.get(),
    })
}

/// Records a status report and credits the coins if the order is finished.
/// Returns the order's status afterwards.
pub async fn report(
    core: &Core,
    meta: &CommandMeta,
    order_id: Uuid,
    payment_id: &str,
    status: PaymentStatus,
    actually_paid: Option<String>,
    source: ReportSource,
) -> Result<PaymentStatus, PaymentError> {
    let id = order_id.to_string();
    let store = &core.store;
    let order: PaymentOrder = store.load(&id).await?;
    match order.status() {
        None => return Err(PaymentError::UnknownOrder),
        Some(PaymentStatus::Created) => return Err(PaymentError::NotReady),
        Some(_) => {}
    }
    let at = now();
    let pos = store
        .execute(&store.payment_orders, &id, meta, || {
            PaymentOrderCommand::ReportStatus {
                payment_id: payment_id.to_owned(),
                status,
                actually_paid: actually_paid.clone(),
                source,
                at,
            }
        })
        .await?;
    let credit = ensure_credited(core, meta, order_id).await?;
    let last = credit.map(|m| m.position).max(pos);
    core.settle(&[super::PROJECTION], last).await;
    let order: PaymentOrder = store.load(&id).await?;
    Ok(order.status().unwrap_or(status))
}

/// Credits a finished order's coins unless that happened already (the
/// order's exclusive reference makes a second credit impossible).
pub async fn ensure_credited(
    core: &Core,
    meta: &CommandMeta,
    order_id: Uuid,
) -> Result<Option<Moved>, PaymentError> {
    let id = order_id.to_string();
    let order: PaymentOrder = core.store.load(&id).await?;
    let Some((account_id, coins)) = order.creditable() else {
        return Ok(None);
    };
    let at = now();
    let movement = || Movement {
        operation_id: format!("payment:{order_id}"),
        amount: coins,
        counter: Counterparty::ExternalCrypto,
        reason: Reason::Recharge,
        reference: Some(Reference::exclusive("payment", id.clone())),
        description: "crypto recharge".into(),
        at,
    };
    match operate(&core.store, account_id, Currency::Coins, meta, || {
        WalletCommand::Credit(movement())
    })
    .await
    {
        Ok(moved) => {
            tracing::info!(%order_id, coins = coins.get(), "payment credited");
            Ok(Some(moved))
        }
        Err(LedgerError::ReferenceUsed(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `check_payment_status`: the order's status for its owner. When the order
/// is still open and heard nothing for `poll_after`, asks the provider.
pub async fn check(
    core: &Core,
    provider: &Provider,
    meta: &CommandMeta,
    account_id: Uuid,
    order_id: Uuid,
) -> Result<PaymentStatus, PaymentError> {
    let id = order_id.to_string();
    let order: PaymentOrder = core.store.load(&id).await?;
    let status = order.status().ok_or(PaymentError::UnknownOrder)?;
    if order.owner() != Some(account_id) {
        return Err(PaymentError::NotYours);
    }
    let quiet = order
        .last_heard()
        .map(|t| {
            now() - t
                >= chrono::Duration::from_std(core.config.payments.poll_after).unwrap_or_default()
        })
        .unwrap_or(false);
    if status.is_final() {
        // a crash between status and credit is mended here too
        if let Some(moved) = ensure_credited(core, meta, order_id).await? {
            super::settle(core, moved.position).await;
        }
        return Ok(status);
    }
    let Some(payment_id) = order.payment_id().map(str::to_owned) else {
        return Ok(status);
    };
    if !quiet || provider.key().is_err() {
        return Ok(status);
    }
    match provider.status(&payment_id).await {
        Ok((reported, actually_paid)) => match PaymentStatus::parse(&reported) {
            Some(s) => {
                report(
                    core,
                    meta,
                    order_id,
                    &payment_id,
                    s,
                    actually_paid,
                    ReportSource::Poll,
                )
                .await
            }
            None => {
                tracing::warn!(%order_id, status = reported, "provider reported an unknown status");
                Ok(status)
            }
        },
        Err(e) => {
            // the last known status is still the truth we have
            tracing::warn!(%order_id, error = %e, "asking the provider failed");
            Ok(status)
        }
    }
}

/// Credits finished orders whose credit did not happen (a crash between the
/// status and the credit), every `every`, until shutdown.
pub async fn run_reconciler(
    core: Core,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match projections::ledger::uncredited_orders(&core.pool, 100).await {
            Ok(orders) => {
                for order_id in orders {
                    let meta = system_meta(order_id);
                    if let Err(e) = ensure_credited(&core, &meta, order_id).await {
                        tracing::warn!(%order_id, error = %e, "reconciling a finished payment failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "payment reconciler cannot read orders"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn system_meta(order_id: Uuid) -> CommandMeta {
    let id = format!("reconcile-{order_id}");
    CommandMeta {
        actor: "system:payment-reconciler".into(),
        surface: "system",
        request_id: id.clone(),
        correlation_id: order_id.to_string(),
        causation_id: id,
        client_ip: "local".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, canonical: &str) -> String {
        let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(canonical.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn the_ipn_signature_covers_the_body_with_sorted_keys() {
        let body = br#"{"payment_status":"finished","order_id":"o1","payment_id":5,"nested":{"b":1,"a":2}}"#;
        let canonical = r#"{"nested":{"a":2,"b":1},"order_id":"o1","payment_id":5,"payment_status":"finished"}"#;
        let sig = sign("s3cret", canonical);
        assert!(verify_ipn("s3cret", body, Some(&sig)).is_ok());
        assert!(verify_ipn("s3cret", body, Some(&sig.to_uppercase())).is_ok());
        assert!(matches!(
            verify_ipn("other", body, Some(&sig)),
            Err(PaymentError::BadSignature)
        ));
        assert!(matches!(
            verify_ipn("s3cret", body, None),
            Err(PaymentError::BadSignature)
        ));
        let tampered = br#"{"payment_status":"finished","order_id":"o1","payment_id":6,"nested":{"b":1,"a":2}}"#;
        assert!(matches!(
            verify_ipn("s3cret", tampered, Some(&sig)),
            Err(PaymentError::BadSignature)
        ));
    }

    #[test]
    fn prices_are_positive_with_two_decimals_within_bounds() {
        let cfg = PaymentConfig::default();
        let p = |v: Value| Price::parse(&v, &cfg).map(|p| p.minor());
        assert_eq!(p(serde_json::json!(20)).unwrap(), 2000);
        assert_eq!(p(serde_json::json!(19.99)).unwrap(), 1999);
        for bad in [
            serde_json::json!(0),
            serde_json::json!(-5),
            serde_json::json!(1.001),
            serde_json::json!("20"),
            serde_json::json!(1e300),
            serde_json::json!(null),
            serde_json::json!(10_001),
        ] {
            assert!(p(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_qr_code_is_an_svg_data_uri() {
        let qr = qr_code(
            "usdttrc20",
            "TVPw1vYm71owVoB6NXfV4AUxRcrHPbNB86",
            "19.916393",
        );
        assert!(qr.starts_with("data:image/svg+xml;base64,"), "{qr}");
    }
}

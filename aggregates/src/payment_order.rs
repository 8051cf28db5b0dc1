//! PaymentOrder: one crypto recharge (seed 000), stream id = order id.
//! Opened with the coins it will give; the provider's payment is recorded;
//! status reports (signed callbacks or polls) move it along the provider's
//! lifecycle, never backwards, whatever order they arrive in. The coins are
//! credited by the wallet command that names the order as an exclusive
//! reference, so a payment is credited once however often it is reported.
//!
//! Policy for `partially_paid`: nothing is credited (the order shows it);
//! if the provider later reports `finished` the full coins are credited.
//! A `refunded` after `finished` is recorded; the coins stay credited (an
//! operator reverses them with an adjustment, visible to auditors).

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::wallet::Amount;

/// The provider's payment statuses (NOWPayments' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// opened here; the provider has not answered yet
    Created,
    Waiting,
    Confirming,
    Confirmed,
    Sending,
    PartiallyPaid,
    Finished,
    Failed,
    Refunded,
    Expired,
}

impl PaymentStatus {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .ok()
            .filter(|s| *s != Self::Created)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Waiting => "waiting",
            Self::Confirming => "confirming",
            Self::Confirmed => "confirmed",
            Self::Sending => "sending",
            Self::PartiallyPaid => "partially_paid",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Refunded => "refunded",
            Self::Expired => "expired",
        }
    }

    /// How far along the lifecycle: a report never moves an order back.
    fn rank(self) -> u8 {
        match self {
            Self::Created => 0,
            Self::Waiting => 1,
            Self::Confirming => 2,
            Self::Confirmed => 3,
            Self::Sending => 4,
            Self::PartiallyPaid => 5,
            Self::Finished | Self::Failed | Self::Expired => 6,
            Self::Refunded => 7,
        }
    }

    /// No further report changes it (except a refund after the end).
    pub fn is_final(self) -> bool {
        self.rank() >= 6
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportSource {
    /// the provider's signed callback
    Callback,
    /// asked the provider because callbacks stopped
    Poll,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct PaymentOrder {
    opened: Option<Opened>,
    payment_id: Option<String>,
    status: Option<PaymentStatus>,
    /// reached `finished` (a refund reported later does not undo it)
    #[serde(default)]
    finished: bool,
    /// when the order last changed
    last_heard: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Opened {
    account_id: Uuid,
    coins: i64,
}

impl PaymentOrder {
    pub fn status(&self) -> Option<PaymentStatus> {
        self.status
    }
    pub fn owner(&self) -> Option<Uuid> {
        self.opened.as_ref().map(|o| o.account_id)
    }
    pub fn last_heard(&self) -> Option<DateTime<Utc>> {
        self.last_heard
    }
    pub fn payment_id(&self) -> Option<&str> {
        self.payment_id.as_deref()
    }
    /// Whose wallet and how many coins, once the order may be credited.
    pub fn creditable(&self) -> Option<(Uuid, Amount)> {
        let opened = self.opened.as_ref()?;
        self.finished
            .then(|| Amount::new(opened.coins).ok())
            .flatten()
            .map(|coins| (opened.account_id, coins))
    }
}

#[derive(Debug)]
pub enum PaymentOrderCommand {
    Open {
        account_id: Uuid,
        account_number: i64,
        /// the price in minor units of `price_currency` (cents)
        price_minor: Amount,
        price_currency: String,
        pay_currency: String,
        coins: Amount,
        at: DateTime<Utc>,
    },
    RecordProviderPayment {
        payment_id: String,
        pay_address: String,
        pay_amount: String,
        pay_currency: String,
        at: DateTime<Utc>,
    },
    RecordProviderFailure {
        reason: String,
        at: DateTime<Utc>,
    },
    ReportStatus {
        payment_id: String,
        status: PaymentStatus,
        actually_paid: Option<String>,
        source: ReportSource,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PaymentOrderEvent {
    PaymentOrderOpened {
        account_id: Uuid,
        account_number: i64,
        price_minor: i64,
        price_currency: String,
        pay_currency: String,
        coins: i64,
        at: DateTime<Utc>,
    },
    ProviderPaymentCreated {
        payment_id: String,
        pay_address: String,
        pay_amount: String,
        pay_currency: String,
        at: DateTime<Utc>,
    },
    ProviderPaymentFailed {
        reason: String,
        at: DateTime<Utc>,
    },
    PaymentStatusReported {
        status: PaymentStatus,
        previous: PaymentStatus,
        actually_paid: Option<String>,
        source: ReportSource,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for PaymentOrderEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PaymentOrderOpened { .. } => "PaymentOrderOpened",
            Self::ProviderPaymentCreated { .. } => "ProviderPaymentCreated",
            Self::ProviderPaymentFailed { .. } => "ProviderPaymentFailed",
            Self::PaymentStatusReported { .. } => "PaymentStatusReported",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentOrderError {
    #[error("this order exists already")]
    AlreadyOpened,
    #[error("no such order")]
    Unknown,
    #[error("the provider's payment is already recorded")]
    AlreadyCreated,
    #[error("the report is for payment {got}, the order's is {expected}")]
    WrongPayment { expected: String, got: String },
}

impl Aggregate for PaymentOrder {
    const TYPE: &'static str = "PaymentOrder";
    type Command = PaymentOrderCommand;
    type Event = PaymentOrderEvent;
    type Error = PaymentOrderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            PaymentOrderCommand::Open {
                account_id,
                account_number,
                price_minor,
                price_currency,
                pay_currency,
                coins,
                at,
            } => {
                if self.opened.is_some() {
                    return Err(PaymentOrderError::AlreadyOpened);
                }
                PaymentOrderEvent::PaymentOrderOpened {
                    account_id,
                    account_number,
                    price_minor: price_minor.get(),
                    price_currency,
                    pay_currency,
                    coins: coins.get(),
                    at,
                }
            }
            PaymentOrderCommand::RecordProviderPayment {
                payment_id,
                pay_address,
                pay_amount,
                pay_currency,
                at,
            } => {
                if self.opened.is_none() {
                    return Err(PaymentOrderError::Unknown);
                }
                if self.status != Some(PaymentStatus::Created) {
                    return Err(PaymentOrderError::AlreadyCreated);
                }
                PaymentOrderEvent::ProviderPaymentCreated {
                    payment_id,
                    pay_address,
                    pay_amount,
                    pay_currency,
                    at,
                }
            }
            PaymentOrderCommand::RecordProviderFailure { reason, at } => {
                if self.status != Some(PaymentStatus::Created) {
                    return Err(PaymentOrderError::AlreadyCreated);
                }
                PaymentOrderEvent::ProviderPaymentFailed { reason, at }
            }
            PaymentOrderCommand::ReportStatus {
                payment_id,
                status,
                actually_paid,
                source,
                at,
            } => {
                let current = self.status.ok_or(PaymentOrderError::Unknown)?;
                let expected = self.payment_id.clone().ok_or(PaymentOrderError::Unknown)?;
                if expected != payment_id {
                    return Err(PaymentOrderError::WrongPayment {
                        expected,
                        got: payment_id,
                    });
                }
                // late, repeated or backwards reports change nothing
                let forward = status.rank() > current.rank()
                    && (!current.is_final() || status == PaymentStatus::Refunded);
                if !forward {
                    return Ok(());
                }
                PaymentOrderEvent::PaymentStatusReported {
                    status,
                    previous: current,
                    actually_paid,
                    source,
                    at,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.last_heard = Some(match &event {
            PaymentOrderEvent::PaymentOrderOpened { at, .. }
            | PaymentOrderEvent::ProviderPaymentCreated { at, .. }
            | PaymentOrderEvent::ProviderPaymentFailed { at, .. }
            | PaymentOrderEvent::PaymentStatusReported { at, .. } => *at,
        });
        match event {
            PaymentOrderEvent::PaymentOrderOpened {
                account_id, coins, ..
            } => {
                self.opened = Some(Opened { account_id, coins });
                self.status = Some(PaymentStatus::Created);
            }
            PaymentOrderEvent::ProviderPaymentCreated { payment_id, .. } => {
                self.payment_id = Some(payment_id);
                self.status = Some(PaymentStatus::Waiting);
            }
            PaymentOrderEvent::ProviderPaymentFailed { .. } => {
                self.status = Some(PaymentStatus::Failed);
            }
            PaymentOrderEvent::PaymentStatusReported { status, .. } => {
                self.finished |= status == PaymentStatus::Finished;
                self.status = Some(status);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).unwrap()
    }

    fn opened() -> Vec<PaymentOrderEvent> {
        vec![
            PaymentOrderEvent::PaymentOrderOpened {
                account_id: Uuid::nil(),
                account_number: 6,
                price_minor: 2000,
                price_currency: "usd".into(),
                pay_currency: "usdttrc20".into(),
                coins: 200,
                at: at(),
            },
            PaymentOrderEvent::ProviderPaymentCreated {
                payment_id: "642".into(),
                pay_address: "T123".into(),
                pay_amount: "19.9".into(),
                pay_currency: "usdttrc20".into(),
                at: at(),
            },
        ]
    }

    fn report(status: PaymentStatus) -> PaymentOrderCommand {
        PaymentOrderCommand::ReportStatus {
            payment_id: "642".into(),
            status,
            actually_paid: None,
            source: ReportSource::Callback,
            at: at(),
        }
    }

    fn reported(status: PaymentStatus, previous: PaymentStatus) -> PaymentOrderEvent {
        PaymentOrderEvent::PaymentStatusReported {
            status,
            previous,
            actually_paid: None,
            source: ReportSource::Callback,
            at: at(),
        }
    }

    #[test]
    fn reports_move_the_order_forward() {
        TestFramework::<PaymentOrder>::with(())
            .given(opened())
            .when(report(PaymentStatus::Confirming))
            .then_expect_events(vec![reported(
                PaymentStatus::Confirming,
                PaymentStatus::Waiting,
            )]);
        let mut given = opened();
        given.push(reported(PaymentStatus::Confirming, PaymentStatus::Waiting));
        TestFramework::<PaymentOrder>::with(())
            .given(given)
            .when(report(PaymentStatus::Finished))
            .then_expect_events(vec![reported(
                PaymentStatus::Finished,
                PaymentStatus::Confirming,
            )]);
    }

    #[test]
    fn late_repeated_and_backward_reports_change_nothing() {
        let mut given = opened();
        given.push(reported(PaymentStatus::Finished, PaymentStatus::Waiting));
        for status in [
            PaymentStatus::Waiting,
            PaymentStatus::Confirming,
            PaymentStatus::Finished,
            PaymentStatus::Failed,
            PaymentStatus::PartiallyPaid,
        ] {
            TestFramework::<PaymentOrder>::with(())
                .given(given.clone())
                .when(report(status))
                .then_expect_events(vec![]);
        }
        // a refund is still recorded after the end
        TestFramework::<PaymentOrder>::with(())
            .given(given)
            .when(report(PaymentStatus::Refunded))
            .then_expect_events(vec![reported(
                PaymentStatus::Refunded,
                PaymentStatus::Finished,
            )]);
    }

    #[test]
    fn a_partial_payment_can_still_finish_and_only_finished_is_creditable() {
        let mut given = opened();
        given.push(reported(
            PaymentStatus::PartiallyPaid,
            PaymentStatus::Waiting,
        ));
        TestFramework::<PaymentOrder>::with(())
            .given(given.clone())
            .when(report(PaymentStatus::Finished))
            .then_expect_events(vec![reported(
                PaymentStatus::Finished,
                PaymentStatus::PartiallyPaid,
            )]);
        let mut order = PaymentOrder::default();
        for e in given {
            order.apply(e);
        }
        assert_eq!(order.creditable(), None);
        order.apply(reported(
            PaymentStatus::Finished,
            PaymentStatus::PartiallyPaid,
        ));
        assert_eq!(order.creditable().map(|(_, c)| c.get()), Some(200));
    }

    #[test]
    fn a_report_for_another_payment_or_an_unknown_order_is_refused() {
        TestFramework::<PaymentOrder>::with(())
            .given(opened())
            .when(PaymentOrderCommand::ReportStatus {
                payment_id: "999".into(),
                status: PaymentStatus::Finished,
                actually_paid: None,
                source: ReportSource::Callback,
                at: at(),
            })
            .then_expect_error(PaymentOrderError::WrongPayment {
                expected: "642".into(),
                got: "999".into(),
            });
        TestFramework::<PaymentOrder>::with(())
            .given_no_previous_events()
            .when(report(PaymentStatus::Finished))
            .then_expect_error(PaymentOrderError::Unknown);
    }

    #[test]
    fn statuses_parse_by_the_providers_names() {
        assert_eq!(
            PaymentStatus::parse("partially_paid"),
            Some(PaymentStatus::PartiallyPaid)
        );
        assert_eq!(PaymentStatus::parse("created"), None);
        assert_eq!(PaymentStatus::parse("bogus"), None);
        assert_eq!(PaymentStatus::Finished.as_str(), "finished");
    }
}

//! CardKey: a prepaid card for points (seed 002), stream id = the keyed
//! hash of its code (the code itself is never stored). Redemption is the
//! wallet credit that names the card as an exclusive reference, so the
//! credit and the card's use commit as one event and a card is used once.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::wallet::Amount;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct CardKey {
    issued: Option<Issued>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Issued {
    batch_id: String,
    points: i64,
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub enum CardKeyCommand {
    Issue {
        batch_id: String,
        points: Amount,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CardKeyEvent {
    CardIssued {
        batch_id: String,
        points: i64,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for CardKeyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CardIssued { .. } => "CardIssued",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardKeyError {
    #[error("this card was issued already")]
    AlreadyIssued,
}

/// Why a card cannot be redeemed (its use itself is checked by the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRedeemable {
    Unknown,
    Expired,
}

impl CardKey {
    /// The points this card gives at `at`.
    pub fn redeemable(&self, at: DateTime<Utc>) -> Result<(String, Amount), NotRedeemable> {
        let issued = self.issued.as_ref().ok_or(NotRedeemable::Unknown)?;
        if issued.expires_at.is_some_and(|e| e <= at) {
            return Err(NotRedeemable::Expired);
        }
        let points = Amount::new(issued.points).map_err(|_| NotRedeemable::Unknown)?;
        Ok((issued.batch_id.clone(), points))
    }
}

impl Aggregate for CardKey {
    const TYPE: &'static str = "CardKey";
    type Command = CardKeyCommand;
    type Event = CardKeyEvent;
    type Error = CardKeyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            CardKeyCommand::Issue {
                batch_id,
                points,
                expires_at,
                at,
            } => {
                if self.issued.is_some() {
                    return Err(CardKeyError::AlreadyIssued);
                }
                let event = CardKeyEvent::CardIssued {
                    batch_id,
                    points: points.get(),
                    expires_at,
                    at,
                };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CardKeyEvent::CardIssued {
                batch_id,
                points,
                expires_at,
                ..
            } => {
                self.issued = Some(Issued {
                    batch_id,
                    points,
                    expires_at,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use cqrs_es::test::TestFramework;

    fn issued(at: DateTime<Utc>, expires_at: Option<DateTime<Utc>>) -> CardKeyEvent {
        CardKeyEvent::CardIssued {
            batch_id: "b1".into(),
            points: 200,
            expires_at,
            at,
        }
    }

    #[test]
    fn a_card_is_issued_once() {
        let at = Utc::now();
        let issue = || CardKeyCommand::Issue {
            batch_id: "b1".into(),
            points: Amount::new(200).unwrap(),
            expires_at: None,
            at,
        };
        TestFramework::<CardKey>::with(())
            .given_no_previous_events()
            .when(issue())
            .then_expect_events(vec![issued(at, None)]);
        TestFramework::<CardKey>::with(())
            .given(vec![issued(at, None)])
            .when(issue())
            .then_expect_error(CardKeyError::AlreadyIssued);
    }

    #[test]
    fn only_an_issued_unexpired_card_is_redeemable() {
        let at = Utc::now();
        let mut card = CardKey::default();
        assert_eq!(card.redeemable(at), Err(NotRedeemable::Unknown));
        card.apply(issued(at, Some(at + Duration::days(1))));
        assert_eq!(card.redeemable(at).unwrap().1.get(), 200);
        assert_eq!(
            card.redeemable(at + Duration::days(2)),
            Err(NotRedeemable::Expired)
        );
    }
}

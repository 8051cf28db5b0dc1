//! EmailCode: the one-time codes sent to one email address (stream id: the
//! address's case-folded form). A code is kept only as a keyed hash made by
//! the adapter; it expires, is used at most once, and a new one for the same
//! purpose cannot be sent again before the resend interval.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// What a code is for: seed 002's `send_code` serves registration and
/// password reset alike (`email`); a new-device login gets `device:<id>`.
pub type CodePurpose = String;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    code_hash: String,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    used: bool,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct EmailCode {
    pending: BTreeMap<CodePurpose, Pending>,
}

#[derive(Debug)]
pub enum EmailCodeCommand {
    Issue {
        purpose: CodePurpose,
        code_hash: String,
        ttl: Duration,
        resend_after: Duration,
        at: DateTime<Utc>,
    },
    Redeem {
        purpose: CodePurpose,
        code_hash: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EmailCodeEvent {
    CodeIssued {
        purpose: CodePurpose,
        code_hash: String,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    CodeRedeemed {
        purpose: CodePurpose,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for EmailCodeEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CodeIssued { .. } => "CodeIssued",
            Self::CodeRedeemed { .. } => "CodeRedeemed",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailCodeError {
    #[error("a code was sent recently; retry in {retry_after_secs} s")]
    TooSoon { retry_after_secs: i64 },
    /// No code, a wrong one, a used one: one answer, so a guesser learns nothing.
    #[error("wrong or used code")]
    Wrong,
    #[error("the code has expired")]
    Expired,
}

impl Aggregate for EmailCode {
    const TYPE: &'static str = "EmailCode";
    type Command = EmailCodeCommand;
    type Event = EmailCodeEvent;
    type Error = EmailCodeError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            EmailCodeCommand::Issue {
                purpose,
                code_hash,
                ttl,
                resend_after,
                at,
            } => {
                if let Some(p) = self.pending.get(&purpose) {
                    let next = p.issued_at + resend_after;
                    if next > at {
                        let wait = (next - at).num_milliseconds();
                        return Err(EmailCodeError::TooSoon {
                            retry_after_secs: (wait + 999) / 1000,
                        });
                    }
                }
                let event = EmailCodeEvent::CodeIssued {
                    purpose,
                    code_hash,
                    expires_at: at + ttl,
                    at,
                };
                sink.write(event, self).await;
            }
            EmailCodeCommand::Redeem {
                purpose,
                code_hash,
                at,
            } => {
                let Some(p) = self.pending.get(&purpose) else {
                    return Err(EmailCodeError::Wrong);
                };
                if p.used || p.code_hash != code_hash {
                    return Err(EmailCodeError::Wrong);
                }
                if p.expires_at <= at {
                    return Err(EmailCodeError::Expired);
                }
                sink.write(EmailCodeEvent::CodeRedeemed { purpose, at }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            EmailCodeEvent::CodeIssued {
                purpose,
                code_hash,
                expires_at,
                at,
            } => {
                self.pending.insert(
                    purpose,
                    Pending {
                        code_hash,
                        issued_at: at,
                        expires_at,
                        used: false,
                    },
                );
            }
            EmailCodeEvent::CodeRedeemed { purpose, .. } => {
                if let Some(p) = self.pending.get_mut(&purpose) {
                    p.used = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn issued(hash: &str, at: DateTime<Utc>) -> EmailCodeEvent {
        EmailCodeEvent::CodeIssued {
            purpose: "email".into(),
            code_hash: hash.into(),
            expires_at: at + Duration::minutes(10),
            at,
        }
    }

    fn redeem(hash: &str, at: DateTime<Utc>) -> EmailCodeCommand {
        EmailCodeCommand::Redeem {
            purpose: "email".into(),
            code_hash: hash.into(),
            at,
        }
    }

    #[test]
    fn a_code_cannot_be_resent_before_the_interval() {
        let at = Utc::now();
        TestFramework::<EmailCode>::with(())
            .given(vec![issued("h1", at)])
            .when(EmailCodeCommand::Issue {
                purpose: "email".into(),
                code_hash: "h2".into(),
                ttl: Duration::minutes(10),
                resend_after: Duration::seconds(60),
                at: at + Duration::seconds(20),
            })
            .then_expect_error(EmailCodeError::TooSoon {
                retry_after_secs: 40,
            });
    }

    #[test]
    fn the_right_code_redeems_once() {
        let at = Utc::now();
        TestFramework::<EmailCode>::with(())
            .given(vec![issued("h1", at)])
            .when(redeem("h1", at))
            .then_expect_events(vec![EmailCodeEvent::CodeRedeemed {
                purpose: "email".into(),
                at,
            }]);
        TestFramework::<EmailCode>::with(())
            .given(vec![
                issued("h1", at),
                EmailCodeEvent::CodeRedeemed {
                    purpose: "email".into(),
                    at,
                },
            ])
            .when(redeem("h1", at))
            .then_expect_error(EmailCodeError::Wrong);
    }

    #[test]
    fn wrong_expired_and_superseded_codes_are_refused() {
        let at = Utc::now();
        TestFramework::<EmailCode>::with(())
            .given(vec![issued("h1", at)])
            .when(redeem("nope", at))
            .then_expect_error(EmailCodeError::Wrong);
        TestFramework::<EmailCode>::with(())
            .given(vec![issued("h1", at)])
            .when(redeem("h1", at + Duration::minutes(11)))
            .then_expect_error(EmailCodeError::Expired);
        TestFramework::<EmailCode>::with(())
            .given(vec![
                issued("h1", at),
                issued("h2", at + Duration::minutes(2)),
            ])
            .when(redeem("h1", at + Duration::minutes(3)))
            .then_expect_error(EmailCodeError::Wrong);
        TestFramework::<EmailCode>::with(())
            .given_no_previous_events()
            .when(redeem("h1", at))
            .then_expect_error(EmailCodeError::Wrong);
    }
}

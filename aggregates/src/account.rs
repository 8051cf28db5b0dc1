//! Account: one identity for every surface.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{AccountNumber, PasswordHash, Username};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Account {
    registered: bool,
    number: i64,
    username: String,
}

#[derive(Debug)]
pub enum AccountCommand {
    Register {
        account_id: Uuid,
        number: AccountNumber,
        username: Username,
        password_hash: PasswordHash,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    AccountRegistered {
        account_id: Uuid,
        number: i64,
        username: String,
        /// The case-folded form under which `username` is unique; the event
        /// store claims it in the same transaction as this event.
        username_key: String,
        password_hash: String,
        registered_at: DateTime<Utc>,
    },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AccountRegistered { .. } => "AccountRegistered".into(),
        }
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("account already registered")]
    AlreadyRegistered,
}

impl Aggregate for Account {
    const TYPE: &'static str = "Account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            AccountCommand::Register {
                account_id,
                number,
                username,
                password_hash,
                at,
            } => {
                if self.registered {
                    return Err(AccountError::AlreadyRegistered);
                }
                let event = AccountEvent::AccountRegistered {
                    account_id,
                    number: number.get(),
                    username: username.as_str().to_owned(),
                    username_key: username.key(),
                    password_hash: password_hash.as_str().to_owned(),
                    registered_at: at,
                };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AccountEvent::AccountRegistered {
                number, username, ..
            } => {
                self.registered = true;
                self.number = number;
                self.username = username;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn register(id: Uuid, at: DateTime<Utc>) -> AccountCommand {
        AccountCommand::Register {
            account_id: id,
            number: AccountNumber::new(4).unwrap(),
            username: Username::parse("user12345").unwrap(),
            password_hash: PasswordHash::new("$argon2id$stub".into()),
            at,
        }
    }

    #[test]
    fn registering_a_new_account_records_it() {
        let id = Uuid::new_v4();
        let at = Utc::now();
        TestFramework::<Account>::with(())
            .given_no_previous_events()
            .when(register(id, at))
            .then_expect_events(vec![AccountEvent::AccountRegistered {
                account_id: id,
                number: 4,
                username: "user12345".into(),
                username_key: "user12345".into(),
                password_hash: "$argon2id$stub".into(),
                registered_at: at,
            }]);
    }

    #[test]
    fn registering_twice_is_refused() {
        let id = Uuid::new_v4();
        let at = Utc::now();
        let first = AccountEvent::AccountRegistered {
            account_id: id,
            number: 4,
            username: "user12345".into(),
            username_key: "user12345".into(),
            password_hash: "h".into(),
            registered_at: at,
        };
        TestFramework::<Account>::with(())
            .given(vec![first])
            .when(register(id, at))
            .then_expect_error(AccountError::AlreadyRegistered);
    }
}

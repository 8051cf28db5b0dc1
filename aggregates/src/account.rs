//! Account: one identity for every surface — credentials, profile, bound
//! devices and sign-in sessions. Every security-relevant step (sign-in,
//! failed sign-in, device binding, password change, sign-out) is an event,
//! so an account's stream is its security history.
//!
//! Passwords are checked by the adapter (argon2 is not domain logic); the
//! aggregate decides what a sign-in means: which device may sign in, which
//! sessions it displaces, which sessions a password change ends.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{
    AccountNumber, Avatar, DeviceId, DisplayName, Email, PasswordHash, Presence, Username,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ActiveSession {
    surface: String,
    device_id: Option<String>,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Account {
    registered: bool,
    number: i64,
    username: Option<String>,
    username_key: Option<String>,
    email: Option<String>,
    email_key: Option<String>,
    avatar: String,
    /// the files this account uploaded as its avatar (their paths)
    uploaded_avatars: BTreeSet<String>,
    presence: Option<Presence>,
    devices: BTreeSet<String>,
    sessions: BTreeMap<Uuid, ActiveSession>,
}

/// What a sign-in requires of the device it comes from.
#[derive(Debug, Clone)]
pub enum DeviceCheck {
    /// The surface has no device binding (003, 004, 000).
    NotUsed,
    /// The device must already be bound to the account (002's login).
    MustBeBound(DeviceId),
    /// The caller proved the email (a code), so the device is bound now.
    BindNow(DeviceId),
}

#[derive(Debug)]
pub enum AccountCommand {
    Register {
        account_id: Uuid,
        number: AccountNumber,
        username: Option<Username>,
        email: Option<Email>,
        nickname: Option<DisplayName>,
        invited_by: Option<Uuid>,
        /// A device whose owner just proved the email (002's register).
        device: Option<DeviceId>,
        password_hash: PasswordHash,
        at: DateTime<Utc>,
    },
    SignIn {
        session_id: Uuid,
        surface: String,
        device: DeviceCheck,
        /// One signed-in device per surface: other devices' sessions on the
        /// same surface end ("displaced").
        single_device: bool,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    RecordFailedSignIn {
        surface: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// A correct password from an unknown device: a code went to the email.
    ChallengeDevice {
        surface: String,
        device: DeviceId,
        at: DateTime<Utc>,
    },
    RefreshSession {
        session_id: Uuid,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    SignOut {
        session_id: Uuid,
        at: DateTime<Utc>,
    },
    ChangePassword {
        password_hash: PasswordHash,
        /// The session that asked (kept); every other session ends.
        keep_session: Option<Uuid>,
        /// A reset by email code rather than a change by the signed-in user.
        reset: bool,
        at: DateTime<Utc>,
    },
    UpdateProfile {
        username: Option<Username>,
        email: Option<Email>,
        avatar: Option<Avatar>,
        at: DateTime<Utc>,
    },
    SetPresence {
        status: Presence,
        at: DateTime<Utc>,
    },
    /// An image the account uploaded becomes its avatar: only such a file
    /// of tidelog's may ever be an avatar (served to everyone signed in).
    UploadAvatar {
        avatar: Avatar,
        at: DateTime<Utc>,
    },
}

/// Events of the Account stream. Version 1 throughout; fields added after
/// the first release are optional (`serde(default)`), so older events read
/// unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    AccountRegistered {
        account_id: Uuid,
        number: i64,
        username: Option<String>,
        /// The case-folded forms under which `username`/`email` are unique;
        /// the event store claims them in the same transaction as this event.
        username_key: Option<String>,
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        email_key: Option<String>,
        #[serde(default)]
        nickname: Option<String>,
        #[serde(default)]
        invited_by: Option<Uuid>,
        password_hash: String,
        registered_at: DateTime<Utc>,
    },
    DeviceBound {
        device_id: String,
        at: DateTime<Utc>,
    },
    SignedIn {
        session_id: Uuid,
        surface: String,
        device_id: Option<String>,
        expires_at: DateTime<Utc>,
        /// Sessions of other devices this sign-in ended.
        displaced: Vec<Uuid>,
        at: DateTime<Utc>,
    },
    SignInFailed {
        surface: String,
        reason: String,
        at: DateTime<Utc>,
    },
    SignInChallenged {
        surface: String,
        device_id: String,
        at: DateTime<Utc>,
    },
    SessionRefreshed {
        session_id: Uuid,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    SignedOut {
        session_id: Uuid,
        at: DateTime<Utc>,
    },
    PasswordChanged {
        password_hash: String,
        ended_sessions: Vec<Uuid>,
        reset: bool,
        at: DateTime<Utc>,
    },
    /// Only the changed fields are present. A username or email change
    /// claims the new key and releases the previous one in the event store.
    /// The account uploaded `avatar` (a file of tidelog's) and made it its
    /// avatar.
    AvatarUploaded {
        avatar: String,
        at: DateTime<Utc>,
    },
    ProfileUpdated {
        username: Option<String>,
        username_key: Option<String>,
        previous_username_key: Option<String>,
        email: Option<String>,
        email_key: Option<String>,
        previous_email_key: Option<String>,
        avatar: Option<String>,
        at: DateTime<Utc>,
    },
    PresenceChanged {
        status: Presence,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AccountRegistered { .. } => "AccountRegistered",
            Self::DeviceBound { .. } => "DeviceBound",
            Self::SignedIn { .. } => "SignedIn",
            Self::SignInFailed { .. } => "SignInFailed",
            Self::SignInChallenged { .. } => "SignInChallenged",
            Self::SessionRefreshed { .. } => "SessionRefreshed",
            Self::SignedOut { .. } => "SignedOut",
            Self::PasswordChanged { .. } => "PasswordChanged",
            Self::ProfileUpdated { .. } => "ProfileUpdated",
            Self::AvatarUploaded { .. } => "AvatarUploaded",
            Self::PresenceChanged { .. } => "PresenceChanged",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("account already registered")]
    AlreadyRegistered,
    #[error("an account needs a username or an email")]
    NoIdentifier,
    #[error("no such account")]
    NotRegistered,
    #[error("this device is not bound to the account")]
    UnknownDevice,
    #[error("the session has ended")]
    SessionNotActive,
    /// An avatar naming one of tidelog's files the account did not upload
    /// as its avatar (it could be a private chat file).
    #[error("avatar: one of tidelog's files may be an avatar only once its account uploaded it as one (else an outside URL)")]
    AvatarNotUploaded,
}

impl Account {
    fn active_sessions(&self, at: DateTime<Utc>) -> impl Iterator<Item = (&Uuid, &ActiveSession)> {
        self.sessions.iter().filter(move |(_, s)| s.expires_at > at)
    }

    fn is_active(&self, session_id: &Uuid, at: DateTime<Utc>) -> bool {
        self.sessions
            .get(session_id)
            .is_some_and(|s| s.expires_at > at)
    }
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
        if let AccountCommand::Register {
            account_id,
            number,
            username,
            email,
            nickname,
            invited_by,
            device,
            password_hash,
            at,
        } = command
        {
            if self.registered {
                return Err(AccountError::AlreadyRegistered);
            }
            if username.is_none() && email.is_none() {
                return Err(AccountError::NoIdentifier);
            }
            let event = AccountEvent::AccountRegistered {
                account_id,
                number: number.get(),
                username_key: username.as_ref().map(Username::key),
                username: username.map(|u| u.as_str().to_owned()),
                email_key: email.as_ref().map(Email::key),
                email: email.map(|e| e.as_str().to_owned()),
                nickname: nickname.map(|n| n.as_str().to_owned()),
                invited_by,
                password_hash: password_hash.as_str().to_owned(),
                registered_at: at,
            };
            sink.write(event, self).await;
            if let Some(device) = device {
                let bound = AccountEvent::DeviceBound {
                    device_id: device.as_str().to_owned(),
                    at,
                };
                sink.write(bound, self).await;
            }
            return Ok(());
        }
        if !self.registered {
            return Err(AccountError::NotRegistered);
        }
        match command {
            AccountCommand::Register { .. } => unreachable!("handled above"),
            AccountCommand::SignIn {
                session_id,
                surface,
                device,
                single_device,
                expires_at,
                at,
            } => {
                let device_id = match device {
                    DeviceCheck::NotUsed => None,
                    DeviceCheck::MustBeBound(d) => {
                        if !self.devices.contains(d.as_str()) {
                            return Err(AccountError::UnknownDevice);
                        }
                        Some(d.as_str().to_owned())
                    }
                    DeviceCheck::BindNow(d) => {
                        if !self.devices.contains(d.as_str()) {
                            let bound = AccountEvent::DeviceBound {
                                device_id: d.as_str().to_owned(),
                                at,
                            };
                            sink.write(bound, self).await;
                        }
                        Some(d.as_str().to_owned())
                    }
                };
                let displaced = if single_device {
                    self.active_sessions(at)
                        .filter(|(_, s)| s.surface == surface && s.device_id != device_id)
                        .map(|(id, _)| *id)
                        .collect()
                } else {
                    Vec::new()
                };
                let event = AccountEvent::SignedIn {
                    session_id,
                    surface,
                    device_id,
                    expires_at,
                    displaced,
                    at,
                };
                sink.write(event, self).await;
            }
            AccountCommand::RecordFailedSignIn {
                surface,
                reason,
                at,
            } => {
                let event = AccountEvent::SignInFailed {
                    surface,
                    reason,
                    at,
                };
                sink.write(event, self).await;
            }
            AccountCommand::ChallengeDevice {
                surface,
                device,
                at,
            } => {
                let event = AccountEvent::SignInChallenged {
                    surface,
                    device_id: device.as_str().to_owned(),
                    at,
                };
                sink.write(event, self).await;
            }
            AccountCommand::RefreshSession {
                session_id,
                expires_at,
                at,
            } => {
                if !self.is_active(&session_id, at) {
                    return Err(AccountError::SessionNotActive);
                }
                let event = AccountEvent::SessionRefreshed {
                    session_id,
                    expires_at,
                    at,
                };
                sink.write(event, self).await;
            }
            AccountCommand::SignOut { session_id, at } => {
                if !self.is_active(&session_id, at) {
                    return Err(AccountError::SessionNotActive);
                }
                sink.write(AccountEvent::SignedOut { session_id, at }, self)
                    .await;
            }
            AccountCommand::ChangePassword {
                password_hash,
                keep_session,
                reset,
                at,
            } => {
                let ended_sessions = self
                    .active_sessions(at)
                    .map(|(id, _)| *id)
                    .filter(|id| Some(*id) != keep_session)
                    .collect();
                let event = AccountEvent::PasswordChanged {
                    password_hash: password_hash.as_str().to_owned(),
                    ended_sessions,
                    reset,
                    at,
                };
                sink.write(event, self).await;
            }
            AccountCommand::UpdateProfile {
                username,
                email,
                avatar,
                at,
            } => {
                let username = username.filter(|u| Some(u.as_str()) != self.username.as_deref());
                let email = email.filter(|e| Some(e.as_str()) != self.email.as_deref());
                let avatar = avatar.filter(|a| a.as_str() != self.avatar);
                if let Some(a) = &avatar {
                    if a.is_tidelog_file() && !self.uploaded_avatars.contains(a.as_str()) {
                        return Err(AccountError::AvatarNotUploaded);
                    }
                }
                if username.is_none() && email.is_none() && avatar.is_none() {
                    return Ok(());
                }
                let event = AccountEvent::ProfileUpdated {
                    username_key: username.as_ref().map(Username::key),
                    previous_username_key: username.as_ref().and(self.username_key.clone()),
                    username: username.map(|u| u.as_str().to_owned()),
                    email_key: email.as_ref().map(Email::key),
                    previous_email_key: email.as_ref().and(self.email_key.clone()),
                    email: email.map(|e| e.as_str().to_owned()),
                    avatar: avatar.map(|a| a.as_str().to_owned()),
                    at,
                };
                sink.write(event, self).await;
            }
            AccountCommand::UploadAvatar { avatar, at } => {
                sink.write(
                    AccountEvent::AvatarUploaded {
                        avatar: avatar.as_str().to_owned(),
                        at,
                    },
                    self,
                )
                .await;
            }
            AccountCommand::SetPresence { status, at } => {
                if self.presence != Some(status) {
                    sink.write(AccountEvent::PresenceChanged { status, at }, self)
                        .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AccountEvent::AccountRegistered {
                number,
                username,
                username_key,
                email,
                email_key,
                ..
            } => {
                self.registered = true;
                self.number = number;
                self.username = username;
                self.username_key = username_key;
                self.email = email;
                self.email_key = email_key;
            }
            AccountEvent::DeviceBound { device_id, .. } => {
                self.devices.insert(device_id);
            }
            AccountEvent::SignedIn {
                session_id,
                surface,
                device_id,
                expires_at,
                displaced,
                at,
            } => {
                // expired sessions need not be remembered
                self.sessions.retain(|_, s| s.expires_at > at);
                for id in displaced {
                    self.sessions.remove(&id);
                }
                self.sessions.insert(
                    session_id,
                    ActiveSession {
                        surface,
                        device_id,
                        expires_at,
                    },
                );
            }
            AccountEvent::SessionRefreshed {
                session_id,
                expires_at,
                ..
            } => {
                if let Some(s) = self.sessions.get_mut(&session_id) {
                    s.expires_at = expires_at;
                }
            }
            AccountEvent::SignedOut { session_id, .. } => {
                self.sessions.remove(&session_id);
            }
            AccountEvent::PasswordChanged { ended_sessions, .. } => {
                for id in ended_sessions {
                    self.sessions.remove(&id);
                }
            }
            AccountEvent::ProfileUpdated {
                username,
                username_key,
                email,
                email_key,
                avatar,
                ..
            } => {
                if username.is_some() {
                    self.username = username;
                    self.username_key = username_key;
                }
                if email.is_some() {
                    self.email = email;
                    self.email_key = email_key;
                }
                if let Some(a) = avatar {
                    self.avatar = a;
                }
            }
            AccountEvent::PresenceChanged { status, .. } => self.presence = Some(status),
            AccountEvent::AvatarUploaded { avatar, .. } => {
                self.uploaded_avatars.insert(avatar.clone());
                self.avatar = avatar;
            }
            AccountEvent::SignInFailed { .. } | AccountEvent::SignInChallenged { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use cqrs_es::test::TestFramework;

    fn registered(id: Uuid, at: DateTime<Utc>) -> AccountEvent {
        AccountEvent::AccountRegistered {
            account_id: id,
            number: 4,
            username: Some("user12345".into()),
            username_key: Some("user12345".into()),
            email: Some("User@Example.com".into()),
            email_key: Some("user@example.com".into()),
            nickname: None,
            invited_by: None,
            password_hash: "h".into(),
            registered_at: at,
        }
    }

    fn signed_in(
        session: Uuid,
        surface: &str,
        device: Option<&str>,
        at: DateTime<Utc>,
    ) -> AccountEvent {
        AccountEvent::SignedIn {
            session_id: session,
            surface: surface.into(),
            device_id: device.map(str::to_owned),
            expires_at: at + Duration::hours(1),
            displaced: vec![],
            at,
        }
    }

    fn framework() -> TestFramework<Account> {
        TestFramework::<Account>::with(())
    }

    #[test]
    fn registering_records_the_identity_and_binds_the_proving_device() {
        let id = Uuid::new_v4();
        let at = Utc::now();
        framework()
            .given_no_previous_events()
            .when(AccountCommand::Register {
                account_id: id,
                number: AccountNumber::new(4).unwrap(),
                username: None,
                email: Some(Email::parse("Billy@Example.com").unwrap()),
                nickname: Some(DisplayName::parse("Billy").unwrap()),
                invited_by: None,
                device: Some(DeviceId::parse("dev-1").unwrap()),
                password_hash: PasswordHash::new("$argon2id$stub".into()),
                at,
            })
            .then_expect_events(vec![
                AccountEvent::AccountRegistered {
                    account_id: id,
                    number: 4,
                    username: None,
                    username_key: None,
                    email: Some("Billy@Example.com".into()),
                    email_key: Some("billy@example.com".into()),
                    nickname: Some("Billy".into()),
                    invited_by: None,
                    password_hash: "$argon2id$stub".into(),
                    registered_at: at,
                },
                AccountEvent::DeviceBound {
                    device_id: "dev-1".into(),
                    at,
                },
            ]);
    }

    #[test]
    fn registering_twice_or_without_identifier_is_refused() {
        let id = Uuid::new_v4();
        let at = Utc::now();
        let cmd = |username: Option<&str>| AccountCommand::Register {
            account_id: id,
            number: AccountNumber::new(4).unwrap(),
            username: username.map(|u| Username::parse(u).unwrap()),
            email: None,
            nickname: None,
            invited_by: None,
            device: None,
            password_hash: PasswordHash::new("h".into()),
            at,
        };
        framework()
            .given(vec![registered(id, at)])
            .when(cmd(Some("user12345")))
            .then_expect_error(AccountError::AlreadyRegistered);
        framework()
            .given_no_previous_events()
            .when(cmd(None))
            .then_expect_error(AccountError::NoIdentifier);
    }

    #[test]
    fn an_unknown_device_cannot_sign_in_until_bound() {
        let at = Utc::now();
        let sid = Uuid::new_v4();
        let sign_in = |device| AccountCommand::SignIn {
            session_id: sid,
            surface: "ocean1".into(),
            device,
            single_device: true,
            expires_at: at + Duration::hours(1),
            at,
        };
        framework()
            .given(vec![registered(Uuid::new_v4(), at)])
            .when(sign_in(DeviceCheck::MustBeBound(
                DeviceId::parse("new").unwrap(),
            )))
            .then_expect_error(AccountError::UnknownDevice);
        framework()
            .given(vec![registered(Uuid::new_v4(), at)])
            .when(sign_in(DeviceCheck::BindNow(
                DeviceId::parse("new").unwrap(),
            )))
            .then_expect_events(vec![
                AccountEvent::DeviceBound {
                    device_id: "new".into(),
                    at,
                },
                AccountEvent::SignedIn {
                    session_id: sid,
                    surface: "ocean1".into(),
                    device_id: Some("new".into()),
                    expires_at: at + Duration::hours(1),
                    displaced: vec![],
                    at,
                },
            ]);
    }

    #[test]
    fn a_sign_in_from_another_device_displaces_the_first_on_that_surface_only() {
        let at = Utc::now();
        let (a, other_surface, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        framework()
            .given(vec![
                registered(Uuid::new_v4(), at),
                AccountEvent::DeviceBound {
                    device_id: "phone".into(),
                    at,
                },
                AccountEvent::DeviceBound {
                    device_id: "laptop".into(),
                    at,
                },
                signed_in(a, "ocean1", Some("phone"), at),
                signed_in(other_surface, "chat8", None, at),
            ])
            .when(AccountCommand::SignIn {
                session_id: b,
                surface: "ocean1".into(),
                device: DeviceCheck::MustBeBound(DeviceId::parse("laptop").unwrap()),
                single_device: true,
                expires_at: at + Duration::hours(1),
                at,
            })
            .then_expect_events(vec![AccountEvent::SignedIn {
                session_id: b,
                surface: "ocean1".into(),
                device_id: Some("laptop".into()),
                expires_at: at + Duration::hours(1),
                displaced: vec![a],
                at,
            }]);
    }

    #[test]
    fn signing_out_ends_a_session_once() {
        let at = Utc::now();
        let s = Uuid::new_v4();
        framework()
            .given(vec![
                registered(Uuid::new_v4(), at),
                signed_in(s, "chat8", None, at),
                AccountEvent::SignedOut { session_id: s, at },
            ])
            .when(AccountCommand::SignOut { session_id: s, at })
            .then_expect_error(AccountError::SessionNotActive);
        framework()
            .given(vec![
                registered(Uuid::new_v4(), at),
                signed_in(s, "chat8", None, at),
            ])
            .when(AccountCommand::RefreshSession {
                session_id: s,
                expires_at: at + Duration::hours(2),
                at: at + Duration::hours(2),
            })
            .then_expect_error(AccountError::SessionNotActive);
    }

    #[test]
    fn a_password_change_ends_every_other_session() {
        let at = Utc::now();
        let (mine, other, expired) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        framework()
            .given(vec![
                registered(Uuid::new_v4(), at),
                signed_in(expired, "roomchat", None, at - Duration::hours(5)),
                signed_in(mine, "chat8", None, at),
                signed_in(other, "ocean1", Some("d"), at),
            ])
            .when(AccountCommand::ChangePassword {
                password_hash: PasswordHash::new("h2".into()),
                keep_session: Some(mine),
                reset: false,
                at,
            })
            .then_expect_events(vec![AccountEvent::PasswordChanged {
                password_hash: "h2".into(),
                ended_sessions: vec![other],
                reset: false,
                at,
            }]);
    }

    #[test]
    fn a_profile_update_records_only_changes_with_the_keys_to_release() {
        let at = Utc::now();
        framework()
            .given(vec![registered(Uuid::new_v4(), at)])
            .when(AccountCommand::UpdateProfile {
                username: Some(Username::parse("user12345").unwrap()),
                email: Some(Email::parse("new@example.com").unwrap()),
                avatar: None,
                at,
            })
            .then_expect_events(vec![AccountEvent::ProfileUpdated {
                username: None,
                username_key: None,
                previous_username_key: None,
                email: Some("new@example.com".into()),
                email_key: Some("new@example.com".into()),
                previous_email_key: Some("user@example.com".into()),
                avatar: None,
                at,
            }]);
        framework()
            .given(vec![registered(Uuid::new_v4(), at)])
            .when(AccountCommand::UpdateProfile {
                username: None,
                email: None,
                avatar: None,
                at,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn only_an_uploaded_file_of_tidelog_s_may_be_an_avatar() {
        let at = Utc::now();
        let file = "/api/v1/files/aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999";
        let naming = |avatar: &str| AccountCommand::UpdateProfile {
            username: None,
            email: None,
            avatar: Some(Avatar::parse(avatar).unwrap()),
            at,
        };
        // someone else's (or a private chat) file, named by hand
        framework()
            .given(vec![registered(Uuid::new_v4(), at)])
            .when(naming(file))
            .then_expect_error(AccountError::AvatarNotUploaded);
        // an outside URL or a path tidelog never serves as its own is free text
        framework()
            .given(vec![registered(Uuid::new_v4(), at)])
            .when(naming("https://cdn.example.com/a.png"))
            .then_expect_events(vec![AccountEvent::ProfileUpdated {
                username: None,
                username_key: None,
                previous_username_key: None,
                email: None,
                email_key: None,
                previous_email_key: None,
                avatar: Some("https://cdn.example.com/a.png".into()),
                at,
            }]);
        // uploaded, it may be chosen again later
        framework()
            .given(vec![
                registered(Uuid::new_v4(), at),
                AccountEvent::AvatarUploaded {
                    avatar: file.into(),
                    at,
                },
                AccountEvent::ProfileUpdated {
                    username: None,
                    username_key: None,
                    previous_username_key: None,
                    email: None,
                    email_key: None,
                    previous_email_key: None,
                    avatar: Some("https://cdn.example.com/a.png".into()),
                    at,
                },
            ])
            .when(naming(file))
            .then_expect_events(vec![AccountEvent::ProfileUpdated {
                username: None,
                username_key: None,
                previous_username_key: None,
                email: None,
                email_key: None,
                previous_email_key: None,
                avatar: Some(file.into()),
                at,
            }]);
    }

    #[test]
    fn commands_on_an_unregistered_account_are_refused() {
        framework()
            .given_no_previous_events()
            .when(AccountCommand::SetPresence {
                status: Presence::Away,
                at: Utc::now(),
            })
            .then_expect_error(AccountError::NotRegistered);
    }

    #[test]
    fn version_one_registrations_without_email_still_read() {
        let old = serde_json::json!({"AccountRegistered": {
            "account_id": Uuid::nil(), "number": 1, "username": "a", "username_key": "a",
            "password_hash": "h", "registered_at": "2026-01-01T00:00:00Z"}});
        let e: AccountEvent = serde_json::from_value(old).unwrap();
        assert!(matches!(
            e,
            AccountEvent::AccountRegistered { email: None, .. }
        ));
    }
}

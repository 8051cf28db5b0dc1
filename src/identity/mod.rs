//! The identity service every surface shares: registration, password
//! sign-in, sessions, email codes and rate limits. Surfaces parse their own
//! contract, call these, and map [`IdentityError`] to their own envelope.

pub mod ends;
pub mod limits;
pub mod mail;

use std::time::Duration;

use aggregates::values::{
    AccountNumber, DeviceId, DisplayName, Email, InvalidValue, Password, Username,
};
use aggregates::{AccountCommand, AccountError, DeviceCheck, EmailCodeCommand, EmailCodeError};
use hmac::{Hmac, Mac};
use projections::accounts::{self, AccountRow};
use sha2::Sha256;
use uuid::Uuid;

use crate::auth::{hash_password, verify_password, Caller, TokenError, TokenSubject, Tokens};
use crate::config::Secret;
use crate::core::Core;
use crate::projector::StandingCache;
use crate::store::{CommandError, CommandMeta};

pub use mail::Mailer;

/// The read models a sign-in or profile change must reach before answering.
pub const READ_MODELS: &[&str] = &["accounts"];
pub const SESSION_COOKIE: &str = "tidelog_session";

/// Identity's own state: the mailer, the key of codes and tokens, and the
/// sessions kept.
pub struct Identity {
    pub mailer: Mailer,
    code_key: Secret,
    tokens: Tokens,
    sessions: SessionCache,
}

/// Sessions as last read from the table, kept while the `accounts`
/// checkpoint stands (anything that ends a session or changes the
/// account's names moves it); elsewhere than on the process that works
/// `accounts`, every request reads the table (measured: the read was one of
/// about five statements per send).
type SessionCache = StandingCache<Uuid, accounts::SessionRow>;

/// Sessions kept; past it the cache starts again.
const SESSION_CACHE_CAPACITY: usize = 16_384;

impl Identity {
    /// `secret` signs tokens and keys code hashes (domain-separated by the
    /// HMAC input).
    pub fn new(mailer: Mailer, secret: Secret) -> Self {
        Self {
            mailer,
            tokens: Tokens::new(&secret),
            code_key: secret,
            sessions: SessionCache::new(READ_MODELS[0], SESSION_CACHE_CAPACITY),
        }
    }

    /// Codes are stored only as HMAC-SHA256(server key, email, purpose, code).
    fn code_hash(&self, email_key: &str, purpose: &str, code: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.code_key.expose().as_bytes())
            .expect("HMAC takes any key length");
        for part in ["email-code", email_key, purpose, code] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        hex(&mac.finalize().into_bytes())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    #[error("wrong credentials")]
    BadCredentials,
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("username taken")]
    UsernameTaken,
    #[error("email taken")]
    EmailTaken,
    #[error("device not bound")]
    UnknownDevice,
    #[error("wrong or used code")]
    WrongCode,
    #[error("expired code")]
    ExpiredCode,
    #[error("a code was sent recently; retry in {retry_after_secs} s")]
    CodeTooSoon { retry_after_secs: i64 },
    #[error("no such account")]
    NoAccount,
    #[error("unknown invite code")]
    BadInvite,
    #[error("the session has ended")]
    SessionEnded,
    #[error("the mail could not be sent")]
    MailFailed,
    #[error("busy, retry")]
    Contended,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for IdentityError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

impl From<CommandError<AccountError>> for IdentityError {
    fn from(e: CommandError<AccountError>) -> Self {
        match e {
            CommandError::UniqueKeyTaken(kind) if kind == "email" => Self::EmailTaken,
            CommandError::UniqueKeyTaken(kind) if kind == "username" => Self::UsernameTaken,
            CommandError::Domain(AccountError::UnknownDevice) => Self::UnknownDevice,
            CommandError::Domain(AccountError::SessionNotActive) => Self::SessionEnded,
            CommandError::Domain(AccountError::NotRegistered) => Self::NoAccount,
            CommandError::Domain(e @ AccountError::AvatarNotUploaded) => {
                Self::Invalid(InvalidValue(e.to_string()))
            }
            CommandError::Contended => Self::Contended,
            other => Self::Internal(anyhow::anyhow!("{other}")),
        }
    }
}

impl From<CommandError<EmailCodeError>> for IdentityError {
    fn from(e: CommandError<EmailCodeError>) -> Self {
        match e {
            CommandError::Domain(EmailCodeError::Wrong) => Self::WrongCode,
            CommandError::Domain(EmailCodeError::Expired) => Self::ExpiredCode,
            CommandError::Domain(EmailCodeError::TooSoon { retry_after_secs }) => {
                Self::CodeTooSoon { retry_after_secs }
            }
            CommandError::Contended => Self::Contended,
            other => Self::Internal(anyhow::anyhow!("{other}")),
        }
    }
}

pub type Result<T> = std::result::Result<T, IdentityError>;

pub fn actor_of(account_id: Uuid) -> String {
    format!("user:{account_id}")
}

/// An invite code is the inviter's account number in base 36, upper case,
/// at least six characters (`00000A`); any account's code is valid.
pub fn invite_code_of(number: i64) -> String {
    let mut n = number.max(0) as u64;
    let mut out = Vec::new();
    loop {
        out.push(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    while out.len() < 6 {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

pub fn number_of_invite_code(code: &str) -> Option<i64> {
    let code = code.trim();
    if code.is_empty() || code.len() > 12 {
        return None;
    }
    i64::from_str_radix(code, 36).ok().filter(|n| *n > 0)
}

// ---------------------------------------------------------------- register

pub struct NewAccount {
    pub username: Option<Username>,
    pub email: Option<Email>,
    pub nickname: Option<DisplayName>,
    pub password: Password,
    pub invited_by: Option<Uuid>,
    pub device: Option<DeviceId>,
}

pub struct Registered {
    pub account_id: Uuid,
    pub number: i64,
}

/// Registers an account. Uniqueness is decided by the event store's key
/// claim (atomic with the event); the read-model check before it only saves
/// an argon2 hash for the common duplicate.
pub async fn register(core: &Core, meta: &CommandMeta, new: NewAccount) -> Result<Registered> {
    if let Some(u) = &new.username {
        if accounts::by_username_key(&core.pool, &u.key())
            .await?
            .is_some()
        {
            return Err(IdentityError::UsernameTaken);
        }
    }
    if let Some(e) = &new.email {
        if accounts::by_email_key(&core.pool, &e.key())
            .await?
            .is_some()
        {
            return Err(IdentityError::EmailTaken);
        }
    }
    let hash = hash_password(&new.password).await?;
    let number: i64 = sqlx::query_scalar("SELECT nextval('account_numbers')")
        .fetch_one(&core.pool)
        .await?;
    let number = AccountNumber::new(number)?;
    let account_id = Uuid::now_v7();
    let meta = meta.with_actor(actor_of(account_id));
    let at = crate::store::now();
    let pos = core
        .store
        .execute(&core.store.accounts, &account_id.to_string(), &meta, || {
            AccountCommand::Register {
                account_id,
                number,
                username: new.username.clone(),
                email: new.email.clone(),
                nickname: new.nickname.clone(),
                invited_by: new.invited_by,
                device: new.device.clone(),
                password_hash: hash.clone(),
                at,
            }
        })
        .await?;
    core.settle(READ_MODELS, pos).await;
    Ok(Registered {
        account_id,
        number: number.get(),
    })
}

// ----------------------------------------------------------------- sign-in

/// Counts an attempt against the account's and the client's budgets.
pub async fn limit(core: &Core, what: &str, account_key: &str, client_ip: &str) -> Result<()> {
    let l = &core.config.rate_limits;
    let (per_account, per_ip, window) = match what {
        "login" => (l.login_per_account, l.login_per_ip, l.login_window),
        "send_code" => (
            l.send_code_per_email,
            l.send_code_per_ip,
            l.send_code_window,
        ),
        _ => (l.verify_per_account, l.verify_per_ip, l.verify_window),
    };
    for (bucket, max) in [
        (format!("{what}:account:{account_key}"), per_account),
        (format!("{what}:ip:{client_ip}"), per_ip),
    ] {
        if let Err(retry_after_secs) = limits::hit(&core.pool, &bucket, max, window).await? {
            tracing::warn!(
                what,
                bucket = bucket.split(':').nth(1),
                "rate limit reached"
            );
            return Err(IdentityError::RateLimited { retry_after_secs });
        }
    }
    Ok(())
}

/// The `login` budget's key for an account: every guess at its password
/// counts there (sign-ins by any of its names, a password change's current
/// password).
pub fn password_budget(account_id: Uuid) -> String {
    format!("id:{account_id}")
}

/// How the sign-in names the account.
pub enum LoginName<'a> {
    /// Seeds 003/004: a username, or an email in the same field.
    UsernameOrEmail(&'a str),
    Email(&'a str),
}

/// Checks a password (rate-limited; a failure on a known account is
/// recorded as `SignInFailed`). Unknown account and wrong password answer
/// alike and cost the same time.
pub async fn check_password(
    core: &Core,
    meta: &CommandMeta,
    name: LoginName<'_>,
    password: &str,
) -> Result<AccountRow> {
    let raw = match name {
        LoginName::UsernameOrEmail(n) | LoginName::Email(n) => n,
    };
    // no name has control characters (nor can PostgreSQL store a NUL)
    if raw.trim().is_empty()
        || raw.len() > 256
        || raw.chars().any(char::is_control)
        || password.is_empty()
        || password.len() > 1024
    {
        return Err(IdentityError::BadCredentials);
    }
    let key = Username::key_of(raw.trim());
    let account = match name {
        LoginName::UsernameOrEmail(_) => accounts::by_login(&core.pool, &key).await?,
        LoginName::Email(_) => accounts::by_email_key(&core.pool, &Email::key_of(raw)).await?,
    };
    // one budget per account, whichever of its names is typed (username or
    // email, on any surface); per typed name where no account has it
    let bucket = match &account {
        Some(a) => password_budget(a.account_id),
        None => format!("name:{key}"),
    };
    limit(core, "login", &bucket, &meta.client_ip).await?;
    let ok = verify_password(
        account.as_ref().map(|a| a.password_hash.clone()),
        password.to_owned(),
    )
    .await;
    match (account, ok) {
        (Some(a), true) => Ok(a),
        (Some(a), false) => {
            record(core, meta, a.account_id, || {
                AccountCommand::RecordFailedSignIn {
                    surface: meta.surface.into(),
                    reason: "wrong_password".into(),
                    at: crate::store::now(),
                }
            })
            .await?;
            Err(IdentityError::BadCredentials)
        }
        (None, _) => {
            tracing::info!(surface = meta.surface, "sign-in for an unknown account");
            Err(IdentityError::BadCredentials)
        }
    }
}

/// Runs an Account command with this request's metadata, without waiting
/// for read models (for history-only events).
async fn record(
    core: &Core,
    meta: &CommandMeta,
    account_id: Uuid,
    make: impl FnMut() -> AccountCommand,
) -> Result<Option<crate::store::LogPosition>> {
    let meta = meta.with_actor(actor_of(account_id));
    Ok(core
        .store
        .execute(&core.store.accounts, &account_id.to_string(), &meta, make)
        .await?)
}

/// Runs an Account command and answers once the accounts read model has it.
/// (The actor is the account, whoever `meta` names.)
pub async fn account_command(
    core: &Core,
    meta: &CommandMeta,
    account_id: Uuid,
    make: impl FnMut() -> AccountCommand,
) -> Result<()> {
    let pos = record(core, meta, account_id, make).await?;
    core.settle(READ_MODELS, pos).await;
    Ok(())
}

pub struct OpenedSession {
    pub session_id: Uuid,
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub ttl: Duration,
}

/// Opens a session (`SignedIn`) and issues its token once every process
/// can see the session.
pub async fn open_session(
    core: &Core,
    id: &Identity,
    meta: &CommandMeta,
    account_id: Uuid,
    device: DeviceCheck,
    single_device: bool,
    ttl: Duration,
) -> Result<OpenedSession> {
    let session_id = Uuid::now_v7();
    let at = crate::store::now();
    let expires_at = at + chrono::Duration::from_std(ttl).map_err(anyhow::Error::from)?;
    account_command(core, meta, account_id, || AccountCommand::SignIn {
        session_id,
        surface: meta.surface.into(),
        device: device.clone(),
        single_device,
        expires_at,
        at,
    })
    .await?;
    let token = id.tokens.issue(
        TokenSubject {
            account_id,
            session_id,
        },
        expires_at,
    );
    Ok(OpenedSession {
        session_id,
        token,
        expires_at,
        ttl,
    })
}

/// A session on a surface without device binding (room chat, Chat8).
pub async fn open_plain_session(
    core: &Core,
    id: &Identity,
    meta: &CommandMeta,
    account_id: Uuid,
    ttl: Duration,
) -> Result<OpenedSession> {
    open_session(core, id, meta, account_id, DeviceCheck::NotUsed, false, ttl).await
}

/// Username-or-email and password, then a plain session.
pub async fn sign_in(
    core: &Core,
    id: &Identity,
    meta: &CommandMeta,
    login: &str,
    password: &str,
    ttl: Duration,
) -> Result<(AccountRow, OpenedSession)> {
    let account = check_password(core, meta, LoginName::UsernameOrEmail(login), password).await?;
    let session = open_plain_session(core, id, meta, account.account_id, ttl).await?;
    Ok((account, session))
}

pub async fn refresh_session(
    core: &Core,
    id: &Identity,
    meta: &CommandMeta,
    caller: &Caller,
    ttl: Duration,
) -> Result<OpenedSession> {
    let at = crate::store::now();
    let expires_at = at + chrono::Duration::from_std(ttl).map_err(anyhow::Error::from)?;
    account_command(core, meta, caller.account_id, || {
        AccountCommand::RefreshSession {
            session_id: caller.session_id,
            expires_at,
            at,
        }
    })
    .await?;
    let subject = TokenSubject {
        account_id: caller.account_id,
        session_id: caller.session_id,
    };
    Ok(OpenedSession {
        session_id: caller.session_id,
        token: id.tokens.issue(subject, expires_at),
        expires_at,
        ttl,
    })
}

pub async fn sign_out(core: &Core, meta: &CommandMeta, caller: &Caller) -> Result<()> {
    account_command(core, meta, caller.account_id, || AccountCommand::SignOut {
        session_id: caller.session_id,
        at: crate::store::now(),
    })
    .await
}

/// Sets a new password; every session but `keep_session` ends.
pub async fn set_password(
    core: &Core,
    meta: &CommandMeta,
    account_id: Uuid,
    password: &Password,
    keep_session: Option<Uuid>,
    reset: bool,
) -> Result<()> {
    let hash = hash_password(password).await?;
    account_command(core, meta, account_id, || AccountCommand::ChangePassword {
        password_hash: hash.clone(),
        keep_session,
        reset,
        at: crate::store::now(),
    })
    .await
}

// ---------------------------------------------------------- authentication

#[derive(Debug)]
pub enum AuthFailure {
    Missing,
    Invalid,
    Expired,
    /// The session existed and was ended: signed out, displaced by another
    /// device, or by a password change.
    Ended {
        reason: String,
    },
    Unavailable(anyhow::Error),
}

/// What checks a token: the signature key, the sessions kept, and the
/// session table. A narrow part of the state for surfaces that take
/// substates (`FromRef`).
#[derive(Clone)]
pub struct Authenticator {
    identity: std::sync::Arc<Identity>,
    pool: sqlx::PgPool,
    progress: std::sync::Arc<crate::projector::Progress>,
}

impl Authenticator {
    pub fn new(core: &Core, identity: std::sync::Arc<Identity>) -> Self {
        Self {
            identity,
            pool: core.pool.clone(),
            progress: core.progress.clone(),
        }
    }

    /// A keyed signature of `text` (for links that carry their own
    /// authority, such as a chat file's expiring URL).
    pub fn sign(&self, text: &str) -> String {
        self.identity.code_hash("link", "signed", text)
    }

    /// A session's row: from the cache while it is known current (see
    /// `SessionCache`), else from the table.
    async fn session(&self, session_id: Uuid) -> sqlx::Result<Option<accounts::SessionRow>> {
        let cache = &self.identity.sessions;
        let at = cache.stand(&self.progress);
        if let Some(row) = cache.get(&session_id, at) {
            return Ok(Some(row));
        }
        let row = accounts::session(&self.pool, session_id).await?;
        if let Some(row) = &row {
            cache.put(session_id, at, row.clone());
        }
        Ok(row)
    }

    /// Verifies the token's signature, then asks the session table (written by
    /// the accounts projection, read-your-writes settled) whether the session
    /// is still open — so a sign-out on one process holds on every process.
    pub async fn authenticate(&self, token: &str) -> std::result::Result<Caller, AuthFailure> {
        let subject = self.identity.tokens.verify(token).map_err(|e| match e {
            TokenError::Expired => AuthFailure::Expired,
            TokenError::Invalid => AuthFailure::Invalid,
        })?;
        let row = match self
            .session(subject.session_id)
            .await
            .map_err(|e| AuthFailure::Unavailable(e.into()))?
        {
            Some(row) if row.account_id == subject.account_id => row,
            Some(_) => return Err(AuthFailure::Invalid),
            // signed by us but not in the table: opened moments ago and not
            // projected yet (the projector held back or out of reach, as in
            // a failover) — come back, rather than "signed out"
            None if opened_recently(subject.session_id) => {
                return Err(AuthFailure::Unavailable(anyhow::anyhow!(
                    "{}: the session is not projected yet",
                    crate::db::UNAVAILABLE
                )))
            }
            None => return Err(AuthFailure::Invalid),
        };
        if let Some(reason) = &row.end_reason {
            return Err(AuthFailure::Ended {
                reason: reason.clone(),
            });
        }
        if row.ended_at.is_some() {
            return Err(AuthFailure::Ended {
                reason: "ended".into(),
            });
        }
        if row.expires_at <= chrono::Utc::now() {
            return Err(AuthFailure::Expired);
        }
        Ok(Caller {
            account_id: row.account_id,
            number: row.number,
            username: row.display_name(),
            email: row.email.clone(),
            session_id: row.session_id,
            surface: row.surface.clone(),
            device_id: row.device_id.clone(),
            expires_at: row.expires_at,
        })
    }

    /// Whether a session is still open, and until when (a socket asks when
    /// its session should have expired, and before each frame it takes).
    pub async fn still_open(
        &self,
        session_id: Uuid,
    ) -> std::result::Result<Option<chrono::DateTime<chrono::Utc>>, AuthFailure> {
        let row = self
            .session(session_id)
            .await
            .map_err(|e| AuthFailure::Unavailable(e.into()))?;
        Ok(row
            .filter(|r| r.end_reason.is_none() && r.ended_at.is_none())
            .map(|r| r.expires_at)
            .filter(|t| *t > chrono::Utc::now()))
    }
}

/// Session ids are UUIDv7: their time tells when the session was opened.
fn opened_recently(session_id: Uuid) -> bool {
    const RECENT: Duration = Duration::from_secs(60);
    session_id.get_timestamp().is_some_and(|t| {
        let (secs, nanos) = t.to_unix();
        let opened = std::time::UNIX_EPOCH + Duration::new(secs, nanos);
        std::time::SystemTime::now()
            .duration_since(opened)
            .is_ok_and(|age| age < RECENT)
    })
}

// ------------------------------------------------------------- email codes

pub const PURPOSE_EMAIL: &str = "email";

pub fn device_purpose(device: &DeviceId) -> String {
    format!("device:{}", device.as_str())
}

fn new_code() -> String {
    use rand::Rng;
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

/// Issues a fresh code for `purpose` and mails it.
pub async fn send_code(
    core: &Core,
    id: &Identity,
    meta: &CommandMeta,
    email: &Email,
    purpose: &str,
    purpose_text: &str,
) -> Result<()> {
    let code = new_code();
    let key = email.key();
    let code_hash = id.code_hash(&key, purpose, &code);
    let cfg = &core.config;
    let ttl = chrono::Duration::from_std(cfg.code_ttl).map_err(anyhow::Error::from)?;
    let resend_after =
        chrono::Duration::from_std(cfg.code_resend_interval).map_err(anyhow::Error::from)?;
    core.store
        .execute(&core.store.email_codes, &key, meta, || {
            EmailCodeCommand::Issue {
                purpose: purpose.to_owned(),
                code_hash: code_hash.clone(),
                ttl,
                resend_after,
                at: crate::store::now(),
            }
        })
        .await?;
    id.mailer
        .send_code(email.as_str(), &code, purpose_text)
        .await
        .map_err(|e| {
            tracing::error!(error = format!("{e:#}"), "sending a code failed");
            IdentityError::MailFailed
        })
}

/// Uses up a code: wrong, used, superseded and expired codes are refused.
pub async fn redeem_code(
    core: &Core,
    id: &Identity,
    meta: &CommandMeta,
    email: &Email,
    purpose: &str,
    code: &str,
) -> Result<()> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdentityError::WrongCode);
    }
    let key = email.key();
    let code_hash = id.code_hash(&key, purpose, code);
    core.store
        .execute(&core.store.email_codes, &key, meta, || {
            EmailCodeCommand::Redeem {
                purpose: purpose.to_owned(),
                code_hash: code_hash.clone(),
                at: crate::store::now(),
            }
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_codes_round_trip() {
        assert_eq!(invite_code_of(1), "000001");
        assert_eq!(invite_code_of(36), "000010");
        for n in [1, 35, 36, 123_456, 9_999_999_999] {
            assert_eq!(number_of_invite_code(&invite_code_of(n)), Some(n));
        }
        assert_eq!(
            number_of_invite_code("abc123"),
            number_of_invite_code("ABC123")
        );
        assert_eq!(number_of_invite_code("!!"), None);
        assert_eq!(number_of_invite_code("000000"), None);
    }
}

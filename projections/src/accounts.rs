//! Projection "accounts": who can sign in (by name, email and number), their
//! profile, bound devices and sessions.

use aggregates::values::name_skeleton;
use aggregates::AccountEvent;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{ProjectionError, Projector, StoredEvent};

pub struct AccountsProjector;

async fn end_sessions(
    conn: &mut PgConnection,
    ids: &[Uuid],
    at: DateTime<Utc>,
    reason: &str,
) -> Result<(), ProjectionError> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE account_sessions SET ended_at = $2, end_reason = $3
          WHERE session_id = ANY($1) AND ended_at IS NULL",
    )
    .bind(ids)
    .bind(at)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Projector for AccountsProjector {
    fn name(&self) -> &'static str {
        "accounts"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["accounts", "account_sessions", "account_devices"]
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &["Account"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let account_id: Uuid = event
            .aggregate_id
            .parse()
            .map_err(|e| ProjectionError::Payload(format!("account id: {e}")))?;
        match event.decode::<AccountEvent>()? {
            AccountEvent::AccountRegistered {
                account_id,
                number,
                username,
                username_key,
                email,
                email_key,
                nickname,
                invited_by,
                password_hash,
                registered_at,
            } => {
                sqlx::query(
                    "INSERT INTO accounts (account_id, number, username, username_lower, email, email_lower,
                                           nickname, invited_by, password_hash, created_at, updated_at,
                                           username_skeleton, nickname_skeleton)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12)",
                )
                .bind(account_id)
                .bind(number)
                .bind(&username)
                .bind(&username_key)
                .bind(&email)
                .bind(&email_key)
                .bind(&nickname)
                .bind(invited_by)
                .bind(&password_hash)
                .bind(registered_at)
                .bind(username.as_deref().map(name_skeleton))
                .bind(nickname.as_deref().map(name_skeleton))
                .execute(conn)
                .await?;
            }
            AccountEvent::DeviceBound { device_id, at } => {
                sqlx::query(
                    "INSERT INTO account_devices (account_id, device_id, bound_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(account_id)
                .bind(&device_id)
                .bind(at)
                .execute(conn)
                .await?;
            }
            AccountEvent::SignedIn {
                session_id,
                surface,
                device_id,
                expires_at,
                displaced,
                at,
            } => {
                end_sessions(conn, &displaced, at, "displaced").await?;
                sqlx::query(
                    "INSERT INTO account_sessions (session_id, account_id, surface, device_id, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(session_id)
                .bind(account_id)
                .bind(&surface)
                .bind(&device_id)
                .bind(at)
                .bind(expires_at)
                .execute(&mut *conn)
                .await?;
                sqlx::query("UPDATE accounts SET last_login_at = $2 WHERE account_id = $1")
                    .bind(account_id)
                    .bind(at)
                    .execute(conn)
                    .await?;
            }
            AccountEvent::SessionRefreshed {
                session_id,
                expires_at,
                ..
            } => {
                sqlx::query("UPDATE account_sessions SET expires_at = $2 WHERE session_id = $1")
                    .bind(session_id)
                    .bind(expires_at)
                    .execute(conn)
                    .await?;
            }
            AccountEvent::SignedOut { session_id, at } => {
                end_sessions(conn, &[session_id], at, "signed_out").await?;
            }
            AccountEvent::PasswordChanged {
                password_hash,
                ended_sessions,
                reset,
                at,
            } => {
                let reason = if reset {
                    "password_reset"
                } else {
                    "password_changed"
                };
                end_sessions(conn, &ended_sessions, at, reason).await?;
                sqlx::query(
                    "UPDATE accounts SET password_hash = $2, updated_at = $3 WHERE account_id = $1",
                )
                .bind(account_id)
                .bind(&password_hash)
                .bind(at)
                .execute(conn)
                .await?;
            }
            AccountEvent::AvatarUploaded { avatar, at } => {
                sqlx::query(
                    "UPDATE accounts SET avatar = $2, updated_at = $3 WHERE account_id = $1",
                )
                .bind(account_id)
                .bind(&avatar)
                .bind(at)
                .execute(conn)
                .await?;
            }
            AccountEvent::ProfileUpdated {
                username,
                username_key,
                email,
                email_key,
                avatar,
                at,
                ..
            } => {
                sqlx::query(
                    "UPDATE accounts SET
                        username = COALESCE($2, username), username_lower = COALESCE($3, username_lower),
                        username_skeleton = COALESCE($8, username_skeleton),
                        email = COALESCE($4, email), email_lower = COALESCE($5, email_lower),
                        avatar = COALESCE($6, avatar), updated_at = $7
                      WHERE account_id = $1",
                )
                .bind(account_id)
                .bind(&username)
                .bind(&username_key)
                .bind(&email)
                .bind(&email_key)
                .bind(&avatar)
                .bind(at)
                .bind(username.as_deref().map(name_skeleton))
                .execute(conn)
                .await?;
            }
            AccountEvent::PresenceChanged { status, at } => {
                sqlx::query(
                    "UPDATE accounts SET presence = $2, updated_at = $3 WHERE account_id = $1",
                )
                .bind(account_id)
                .bind(status.as_str())
                .bind(at)
                .execute(conn)
                .await?;
            }
            AccountEvent::SignInFailed { .. } | AccountEvent::SignInChallenged { .. } => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub account_id: Uuid,
    pub number: i64,
    pub username: Option<String>,
    pub email: Option<String>,
    pub nickname: Option<String>,
    pub avatar: String,
    pub presence: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl AccountRow {
    /// The name shown to others: username, else nickname, else the email's
    /// local part.
    pub fn display_name(&self) -> String {
        display_name(
            self.username.as_deref(),
            self.nickname.as_deref(),
            self.email.as_deref(),
        )
    }
}

pub fn display_name(username: Option<&str>, nickname: Option<&str>, email: Option<&str>) -> String {
    username
        .or(nickname)
        .map(str::to_owned)
        .or_else(|| email.map(|e| e.split('@').next().unwrap_or(e).to_owned()))
        .unwrap_or_default()
}

const SELECT: &str =
    "SELECT account_id, number, username, email, nickname, avatar, presence, password_hash,
                             created_at, updated_at, last_login_at FROM accounts";

/// `key` is the name's case-folded form (`Username::key_of`).
pub async fn by_username_key(pool: &PgPool, key: &str) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as(&format!("{SELECT} WHERE username_lower = $1"))
        .bind(key)
        .fetch_optional(pool)
        .await
}

/// `key` is the address's case-folded form (`Email::key_of`).
pub async fn by_email_key(pool: &PgPool, key: &str) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as(&format!("{SELECT} WHERE email_lower = $1"))
        .bind(key)
        .fetch_optional(pool)
        .await
}

/// Sign-in by username or, failing that, by email (both folded the same way).
pub async fn by_login(pool: &PgPool, key: &str) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE username_lower = $1 OR email_lower = $1 ORDER BY username_lower = $1 DESC LIMIT 1"
    ))
    .bind(key)
    .fetch_optional(pool)
    .await
}

/// An account by UUID, number, or username/email (as `by_login`) — how
/// operators and auditors name one.
pub async fn by_any(pool: &PgPool, who: &str) -> sqlx::Result<Option<AccountRow>> {
    let who = who.trim();
    if let Ok(id) = who.parse::<Uuid>() {
        return by_id(pool, id).await;
    }
    if let Ok(n) = who.parse::<i64>() {
        return by_number(pool, n).await;
    }
    by_login(pool, &aggregates::values::Username::key_of(who)).await
}

pub async fn by_number(pool: &PgPool, number: i64) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as(&format!("{SELECT} WHERE number = $1"))
        .bind(number)
        .fetch_optional(pool)
        .await
}

pub async fn by_id(pool: &PgPool, account_id: Uuid) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as(&format!("{SELECT} WHERE account_id = $1"))
        .bind(account_id)
        .fetch_optional(pool)
        .await
}

/// A session with its account's current identity (one query per request).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub session_id: Uuid,
    pub account_id: Uuid,
    pub surface: String,
    pub device_id: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
    pub number: i64,
    pub username: Option<String>,
    pub email: Option<String>,
    pub nickname: Option<String>,
}

impl SessionRow {
    pub fn display_name(&self) -> String {
        display_name(
            self.username.as_deref(),
            self.nickname.as_deref(),
            self.email.as_deref(),
        )
    }
}

pub async fn session(pool: &PgPool, session_id: Uuid) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as(
        "SELECT s.session_id, s.account_id, s.surface, s.device_id, s.expires_at, s.ended_at, s.end_reason,
                a.number, a.username, a.email, a.nickname
           FROM account_sessions s JOIN accounts a USING (account_id)
          WHERE s.session_id = $1",
    )
    .bind(session_id)
    .fetch_optional(pool)
    .await
}

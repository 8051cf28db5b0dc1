//! Projection "accounts": who can sign in, by name and by number.

use aggregates::AccountEvent;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{ProjectionError, Projector, StoredEvent};

pub struct AccountsProjector;

#[async_trait]
impl Projector for AccountsProjector {
    fn name(&self) -> &'static str {
        "accounts"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["accounts"]
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &["Account"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        match event.decode::<AccountEvent>()? {
            AccountEvent::AccountRegistered {
                account_id,
                number,
                username,
                username_key,
                password_hash,
                registered_at,
            } => {
                sqlx::query(
                    "INSERT INTO accounts (account_id, number, username, username_lower, password_hash, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $6)",
                )
                .bind(account_id)
                .bind(number)
                .bind(&username)
                .bind(&username_key)
                .bind(&password_hash)
                .bind(registered_at)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub account_id: Uuid,
    pub number: i64,
    pub username: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str =
    "SELECT account_id, number, username, password_hash, created_at, updated_at FROM accounts";

/// `key` is the name's case-folded form (`Username::key_of`).
pub async fn by_username_key(pool: &PgPool, key: &str) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as(&format!("{SELECT} WHERE username_lower = $1"))
        .bind(key)
        .fetch_optional(pool)
        .await
}

pub async fn by_number(pool: &PgPool, number: i64) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as(&format!("{SELECT} WHERE number = $1"))
        .bind(number)
        .fetch_optional(pool)
        .await
}

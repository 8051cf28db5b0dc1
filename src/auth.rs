//! Tokens and passwords: HS256 JWTs and argon2id hashes.

use std::path::Path;

use aggregates::values::{Password, PasswordHash};
use anyhow::Context;
use argon2::password_hash::{rand_core::OsRng, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Secret;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// account id (UUID)
    pub sub: String,
    /// session id (UUID): the token is good only while this session is
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// What a valid signature proves: which session of which account. Whether
/// the session is still open is the session table's answer, not the token's.
#[derive(Debug, Clone, Copy)]
pub struct TokenSubject {
    pub account_id: Uuid,
    pub session_id: Uuid,
}

/// The signed-in caller: a live session and its account's current identity.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: Uuid,
    pub number: i64,
    /// The display name (username, else nickname, else the email's local part).
    pub username: String,
    pub email: Option<String>,
    pub session_id: Uuid,
    pub surface: String,
    pub device_id: Option<String>,
    /// when the session ends unless refreshed
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
}

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Tokens {
    pub fn new(secret: &Secret) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
        }
    }

    pub fn issue(
        &self,
        subject: TokenSubject,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> String {
        let claims = Claims {
            sub: subject.account_id.to_string(),
            sid: subject.session_id.to_string(),
            iat: chrono::Utc::now().timestamp(),
            exp: expires_at.timestamp(),
            jti: Uuid::new_v4().to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<TokenSubject, TokenError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                }
            })?;
        Ok(TokenSubject {
            account_id: data.claims.sub.parse().map_err(|_| TokenError::Invalid)?,
            session_id: data.claims.sid.parse().map_err(|_| TokenError::Invalid)?,
        })
    }
}

/// `Authorization: <token>` or `Authorization: Bearer <token>`.
pub fn token_from_header(value: &str) -> Option<&str> {
    let v = value.trim();
    let t = match v.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None => v,
    };
    (!t.is_empty()).then_some(t)
}

pub async fn hash_password(password: &Password) -> anyhow::Result<PasswordHash> {
    let plain = password.expose().to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(plain.as_bytes(), &salt)
            .map(|h| PasswordHash::new(h.to_string()))
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    })
    .await?
}

/// Verifies against `hash`, or against a fixed dummy hash when there is no
/// account, so both cases cost the same time.
pub async fn verify_password(hash: Option<String>, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let dummy = DUMMY.get_or_init(|| {
            let salt = SaltString::encode_b64(b"tidelog-dummy-salt").unwrap();
            Argon2::default()
                .hash_password(b"not a password", &salt)
                .unwrap()
                .to_string()
        });
        let known = hash.is_some();
        let phc = hash.unwrap_or_else(|| dummy.clone());
        let Ok(parsed) = argon2::password_hash::PasswordHash::new(&phc) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && known
    })
    .await
    .unwrap_or(false)
}

/// Reads the secret kept in the data directory, creating it on first use.
/// A secret the environment did not give. On a database of the operator's
/// (`DATABASE_URL`) it is kept in that database, so that every server
/// process of it shares it: the first generates it (or takes the one an
/// earlier version kept in its data directory, so tokens already issued
/// stay good), the others read it. On the embedded default it is a file in
/// the data directory, which the processes of that cluster share.
pub async fn shared_secret(
    pool: &sqlx::PgPool,
    config: &crate::config::Config,
    name: &str,
) -> anyhow::Result<Secret> {
    if config.database_url.is_none() {
        return load_or_create_secret(&config.data_dir, name);
    }
    // kept already: read only (a hot standby takes no INSERT)
    let kept: Option<String> =
        sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await
            .with_context(|| format!("reading {name} from the database"))?;
    if let Some(value) = kept {
        write_secret_file(&config.data_dir, name, &value)?;
        return Ok(Secret::new(value));
    }
    let earlier = std::fs::read_to_string(config.data_dir.join("secrets").join(name))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| s.len() >= 32);
    let candidate = earlier.unwrap_or_else(random_secret);
    let inserted = sqlx::query(
        "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(&candidate)
    .execute(pool)
    .await
    .with_context(|| format!("keeping {name} in the database"))?
    .rows_affected();
    if inserted == 1 {
        tracing::info!("kept a new {name} in the database, for every server process of it");
    }
    let value: String = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .with_context(|| format!("reading {name} from the database"))?;
    // the operator finds it where they always did (the token to call
    // /admin with, for one)
    write_secret_file(&config.data_dir, name, &value)?;
    Ok(Secret::new(value))
}

fn write_secret_file(data_dir: &Path, name: &str, value: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = data_dir.join("secrets");
    let path = dir.join(name);
    if std::fs::read_to_string(&path).is_ok_and(|s| s.trim() == value) {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut f, value.as_bytes())?;
    Ok(())
}

pub fn random_secret() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 48];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn load_or_create_secret(data_dir: &Path, name: &str) -> anyhow::Result<Secret> {
    let path = data_dir.join("secrets").join(name);
    if let Ok(s) = std::fs::read_to_string(&path) {
        if s.trim().len() >= 32 {
            return Ok(Secret::new(s.trim().to_owned()));
        }
    }
    let secret = random_secret();
    write_secret_file(data_dir, name, &secret)?;
    tracing::info!(path = %path.display(), "generated a new {name}");
    Ok(Secret::new(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_bearer_tokens_are_accepted() {
        assert_eq!(token_from_header("abc.def"), Some("abc.def"));
        assert_eq!(token_from_header("Bearer abc.def"), Some("abc.def"));
        assert_eq!(token_from_header("bearer  abc"), Some("abc"));
        assert_eq!(token_from_header("Basic abc"), None);
        assert_eq!(token_from_header(""), None);
    }

    #[test]
    fn tokens_verify_and_forgeries_do_not() {
        let t = Tokens::new(&Secret::new("x".repeat(40)));
        let subject = TokenSubject {
            account_id: Uuid::new_v4(),
            session_id: Uuid::new_v4(),
        };
        let exp = chrono::Utc::now() + chrono::Duration::seconds(60);
        let tok = t.issue(subject, exp);
        assert_eq!(t.verify(&tok).unwrap().session_id, subject.session_id);
        let other = Tokens::new(&Secret::new("y".repeat(40)));
        assert!(matches!(other.verify(&tok), Err(TokenError::Invalid)));
        assert!(t.verify("not-a-token").is_err());
    }
}

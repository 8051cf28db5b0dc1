//! Uploaded bytes (character cards and their pictures): not events. Events
//! carry a file's SHA-256; the bytes are kept in PostgreSQL (`blobs`), where
//! every server process reads them, under that hash.

use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Keeps `bytes` (once per content) and returns their hash.
pub async fn put(pool: &PgPool, bytes: &[u8], content_type: &str) -> sqlx::Result<String> {
    let sha = sha256_hex(bytes);
    sqlx::query(
        "INSERT INTO blobs (sha256, content_type, size, bytes) VALUES ($1, $2, $3, $4)
         ON CONFLICT (sha256) DO NOTHING",
    )
    .bind(&sha)
    .bind(content_type)
    .bind(bytes.len() as i64)
    .bind(bytes)
    .execute(pool)
    .await?;
    Ok(sha)
}

/// A kept file: its content type and bytes.
pub async fn get(pool: &PgPool, sha256: &str) -> sqlx::Result<Option<(String, Vec<u8>)>> {
    sqlx::query_as("SELECT content_type, bytes FROM blobs WHERE sha256 = $1")
        .bind(sha256)
        .fetch_optional(pool)
        .await
}

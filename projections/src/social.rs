//! Projection "social" (Chat8, seed 003): friendships, friend requests,
//! direct messages with their read marks and deletions, and published keys.

use aggregates::social::KeysEvent;
use aggregates::social::{ConversationEvent, FriendshipEvent};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::{ProjectionError, Projector, StoredEvent};

pub struct SocialProjector;

#[async_trait]
impl Projector for SocialProjector {
    fn name(&self) -> &'static str {
        "social"
    }
    fn tables(&self) -> &'static [&'static str] {
        &[
            "friendships",
            "friend_requests",
            "direct_messages",
            "direct_read_marks",
            "shared_files",
            "encryption_keys",
        ]
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        // accounts' presence and calls are not projected here, but the
        // socket feed follows this projection's checkpoint over them too
        &[
            "Friendship",
            "Conversation",
            "EncryptionKeys",
            "Account",
            "Call",
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        match event.aggregate_type.as_str() {
            "Friendship" => apply_friendship(conn, event.decode()?).await,
            "Conversation" => apply_conversation(conn, &event.aggregate_id, event.decode()?).await,
            "EncryptionKeys" => apply_keys(conn, event.decode()?).await,
            _ => Ok(()),
        }
    }

    fn folds_batches(&self) -> bool {
        true
    }

    /// Runs of direct messages in one insert each; every other event in
    /// its place (after the messages before it: a read mark or deletion
    /// may name them).
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut run: Vec<Direct> = Vec::new();
        for event in events {
            if event.event_type == "DirectMessageSent" {
                if let ConversationEvent::DirectMessageSent {
                    message_id,
                    sender_id,
                    receiver_id,
                    message_type,
                    content,
                    is_encrypted,
                    sent_at,
                } = event.decode()?
                {
                    run.push(Direct {
                        message_id,
                        pair: event.aggregate_id.clone(),
                        sender_id,
                        receiver_id,
                        kind: message_type.as_str(),
                        content,
                        is_encrypted,
                        sent_at,
                    });
                    continue;
                }
            }
            insert_messages(conn, &std::mem::take(&mut run)).await?;
            self.apply(conn, event).await?;
        }
        insert_messages(conn, &run).await
    }
}

struct Direct {
    message_id: i64,
    pair: String,
    sender_id: i64,
    receiver_id: i64,
    kind: &'static str,
    content: String,
    is_encrypted: bool,
    sent_at: DateTime<Utc>,
}

async fn insert_messages(conn: &mut PgConnection, run: &[Direct]) -> Result<(), ProjectionError> {
    if run.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO direct_messages (message_id, pair, sender_id, receiver_id, message_type, content,
                                      is_encrypted, sent_at)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
                              $7::bool[], $8::timestamptz[])",
    )
    .bind(run.iter().map(|m| m.message_id).collect::<Vec<_>>())
    .bind(run.iter().map(|m| m.pair.clone()).collect::<Vec<_>>())
    .bind(run.iter().map(|m| m.sender_id).collect::<Vec<_>>())
    .bind(run.iter().map(|m| m.receiver_id).collect::<Vec<_>>())
    .bind(run.iter().map(|m| m.kind).collect::<Vec<_>>())
    .bind(run.iter().map(|m| m.content.clone()).collect::<Vec<_>>())
    .bind(run.iter().map(|m| m.is_encrypted).collect::<Vec<_>>())
    .bind(run.iter().map(|m| m.sent_at).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn apply_friendship(
    conn: &mut PgConnection,
    event: FriendshipEvent,
) -> Result<(), ProjectionError> {
    match event {
        FriendshipEvent::FriendRequested {
            request_id,
            from_id,
            to_id,
            message,
            at,
        } => {
            sqlx::query(
                "INSERT INTO friend_requests (request_id, from_id, to_id, message, status, created_at)
                 VALUES ($1, $2, $3, $4, 'pending', $5)",
            )
            .bind(request_id)
            .bind(from_id)
            .bind(to_id)
            .bind(message)
            .bind(at)
            .execute(conn)
            .await?;
        }
        FriendshipEvent::FriendRequestAccepted {
            request_id,
            from_id,
            to_id,
            at,
        } => {
            sqlx::query(
                "UPDATE friend_requests SET status = 'accepted', handled_at = $2 WHERE request_id = $1",
            )
            .bind(request_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO friendships (user_id, friend_id, since) VALUES ($1, $2, $3), ($2, $1, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(from_id)
            .bind(to_id)
            .bind(at)
            .execute(conn)
            .await?;
        }
        FriendshipEvent::FriendRequestRejected { request_id, at, .. } => {
            sqlx::query(
                "UPDATE friend_requests SET status = 'rejected', handled_at = $2 WHERE request_id = $1",
            )
            .bind(request_id)
            .bind(at)
            .execute(conn)
            .await?;
        }
        FriendshipEvent::FriendRemoved {
            by_id, other_id, ..
        } => {
            sqlx::query(
                "DELETE FROM friendships WHERE (user_id = $1 AND friend_id = $2) OR (user_id = $2 AND friend_id = $1)",
            )
            .bind(by_id)
            .bind(other_id)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

async fn apply_conversation(
    conn: &mut PgConnection,
    pair: &str,
    event: ConversationEvent,
) -> Result<(), ProjectionError> {
    match event {
        ConversationEvent::DirectMessageSent {
            message_id,
            sender_id,
            receiver_id,
            message_type,
            content,
            is_encrypted,
            sent_at,
        } => {
            sqlx::query(
                "INSERT INTO direct_messages (message_id, pair, sender_id, receiver_id, message_type, content,
                                              is_encrypted, sent_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(message_id)
            .bind(pair)
            .bind(sender_id)
            .bind(receiver_id)
            .bind(message_type.as_str())
            .bind(content)
            .bind(is_encrypted)
            .bind(sent_at)
            .execute(conn)
            .await?;
        }
        ConversationEvent::FileShared {
            sender_id,
            receiver_id,
            file,
            at,
        } => {
            sqlx::query(
                "INSERT INTO shared_files (sha256, sender_id, receiver_id, name, size, content_type, shared_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(file.sha256)
            .bind(sender_id)
            .bind(receiver_id)
            .bind(file.name)
            .bind(file.size)
            .bind(file.content_type)
            .bind(at)
            .execute(conn)
            .await?;
        }
        ConversationEvent::DirectMessagesRead {
            reader_id, up_to, ..
        } => {
            sqlx::query(
                "INSERT INTO direct_read_marks (pair, reader_id, up_to) VALUES ($1, $2, $3)
                 ON CONFLICT (pair, reader_id) DO UPDATE SET up_to = greatest(direct_read_marks.up_to, EXCLUDED.up_to)",
            )
            .bind(pair)
            .bind(reader_id)
            .bind(up_to)
            .execute(conn)
            .await?;
        }
        ConversationEvent::DirectMessageDeleted {
            message_id,
            by_id,
            for_both,
            ..
        } => {
            // for both: the content is forgotten (the log keeps the tombstone)
            sqlx::query(
                "UPDATE direct_messages
                    SET deleted = deleted OR $3,
                        content = CASE WHEN $3 THEN NULL ELSE content END,
                        hidden_for_receiver = hidden_for_receiver OR (NOT $3 AND receiver_id = $2)
                  WHERE message_id = $1",
            )
            .bind(message_id)
            .bind(by_id)
            .bind(for_both)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

async fn apply_keys(conn: &mut PgConnection, event: KeysEvent) -> Result<(), ProjectionError> {
    let KeysEvent::KeysPublished {
        user_id,
        public_key,
        private_key_encrypted,
        at,
    } = event;
    sqlx::query(
        "INSERT INTO encryption_keys (user_id, public_key, private_key_encrypted, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id) DO UPDATE SET public_key = EXCLUDED.public_key,
            private_key_encrypted = EXCLUDED.private_key_encrypted, updated_at = EXCLUDED.updated_at",
    )
    .bind(user_id)
    .bind(public_key)
    .bind(private_key_encrypted)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

// ---- reads ----

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FriendRow {
    pub id: i64,
    pub username: Option<String>,
    pub nickname: Option<String>,
    pub email: Option<String>,
    pub avatar: Option<String>,
    pub presence: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
}

impl FriendRow {
    pub fn name(&self) -> String {
        crate::accounts::display_name(
            self.username.as_deref(),
            self.nickname.as_deref(),
            self.email.as_deref(),
        )
    }
}

/// The user's friends, by name.
pub async fn friends(pool: &PgPool, user: i64) -> sqlx::Result<Vec<FriendRow>> {
    sqlx::query_as(
        "SELECT a.number AS id, a.username, a.nickname, a.email, a.avatar, a.presence,
                coalesce(a.last_login_at, a.updated_at) AS last_seen
           FROM friendships f JOIN accounts a ON a.number = f.friend_id
          WHERE f.user_id = $1
          ORDER BY lower(coalesce(a.username, a.nickname, a.email)), a.number",
    )
    .bind(user)
    .fetch_all(pool)
    .await
}

pub async fn friend_ids(pool: &PgPool, user: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar("SELECT friend_id FROM friendships WHERE user_id = $1")
        .bind(user)
        .fetch_all(pool)
        .await
}

pub async fn are_friends(pool: &PgPool, a: i64, b: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM friendships WHERE user_id = $1 AND friend_id = $2)",
    )
    .bind(a)
    .bind(b)
    .fetch_one(pool)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SearchRow {
    pub id: i64,
    pub username: Option<String>,
    pub nickname: Option<String>,
    pub email: Option<String>,
    pub avatar: Option<String>,
    pub is_friend: bool,
}

/// Users whose name holds `q` (ignoring case), or whose email is `q`
/// exactly (ignoring case); never `me`; at most `limit`.
pub async fn search(pool: &PgPool, me: i64, q: &str, limit: i64) -> sqlx::Result<Vec<SearchRow>> {
    let pattern = format!(
        "%{}%",
        q.to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    sqlx::query_as(
        "SELECT a.number AS id, a.username, a.nickname, a.email, a.avatar,
                EXISTS (SELECT 1 FROM friendships f WHERE f.user_id = $1 AND f.friend_id = a.number) AS is_friend
           FROM accounts a
          WHERE a.number <> $1
            AND (a.username_lower LIKE $2 OR lower(a.nickname) LIKE $2 OR a.email_lower = $3)
          ORDER BY (a.email_lower = $3) DESC, length(coalesce(a.username, a.nickname, '')), a.number
          LIMIT $4",
    )
    .bind(me)
    .bind(pattern)
    .bind(q.trim().to_lowercase())
    .bind(limit)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestRow {
    pub request_id: i64,
    pub from_id: i64,
    pub to_id: i64,
    pub message: String,
    pub status: String,
}

pub async fn request(pool: &PgPool, request_id: i64) -> sqlx::Result<Option<RequestRow>> {
    sqlx::query_as(
        "SELECT request_id, from_id, to_id, message, status FROM friend_requests WHERE request_id = $1",
    )
    .bind(request_id)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DirectRow {
    pub message_id: i64,
    pub sender_id: i64,
    pub receiver_id: i64,
    pub message_type: String,
    pub content: Option<String>,
    pub is_encrypted: bool,
    pub sent_at: DateTime<Utc>,
    pub deleted: bool,
    pub hidden_for_receiver: bool,
    pub is_read: bool,
}

const DIRECT_COLUMNS: &str = "m.message_id, m.sender_id, m.receiver_id, m.message_type, m.content, m.is_encrypted,
    m.sent_at, m.deleted, m.hidden_for_receiver,
    m.message_id <= coalesce((SELECT up_to FROM direct_read_marks r
                                WHERE r.pair = m.pair AND r.reader_id = m.receiver_id), 0) AS is_read";

/// What `viewer` sees of the pair's messages: page `page` (1 = newest) of
/// `limit`, oldest first within the page, and how many there are in all.
pub async fn page(
    pool: &PgPool,
    pair: &str,
    viewer: i64,
    page: i64,
    limit: i64,
) -> sqlx::Result<(Vec<DirectRow>, i64)> {
    let visible =
        "m.pair = $1 AND NOT m.deleted AND NOT (m.hidden_for_receiver AND m.receiver_id = $2)";
    let total: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM direct_messages m WHERE {visible}"
    ))
    .bind(pair)
    .bind(viewer)
    .fetch_one(pool)
    .await?;
    let mut rows: Vec<DirectRow> = sqlx::query_as(&format!(
        "SELECT {DIRECT_COLUMNS} FROM direct_messages m WHERE {visible}
          ORDER BY m.message_id DESC LIMIT $3 OFFSET $4"
    ))
    .bind(pair)
    .bind(viewer)
    .bind(limit)
    .bind((page - 1) * limit)
    .fetch_all(pool)
    .await?;
    rows.reverse();
    Ok((rows, total))
}

pub async fn message(pool: &PgPool, message_id: i64) -> sqlx::Result<Option<DirectRow>> {
    sqlx::query_as(&format!(
        "SELECT {DIRECT_COLUMNS} FROM direct_messages m WHERE m.message_id = $1"
    ))
    .bind(message_id)
    .fetch_optional(pool)
    .await
}

/// Whether `user` may read the shared file `sha256` (its sender or a
/// receiver), and its name and type.
pub async fn shared_file(
    pool: &PgPool,
    sha256: &str,
    user: i64,
) -> sqlx::Result<Option<(String, String)>> {
    sqlx::query_as(
        "SELECT name, content_type FROM shared_files
          WHERE sha256 = $1 AND (sender_id = $2 OR receiver_id = $2) LIMIT 1",
    )
    .bind(sha256)
    .bind(user)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeysRow {
    pub user_id: i64,
    pub public_key: String,
    pub private_key_encrypted: String,
    pub updated_at: DateTime<Utc>,
}

pub async fn keys(pool: &PgPool, user: i64) -> sqlx::Result<Option<KeysRow>> {
    sqlx::query_as(
        "SELECT user_id, public_key, private_key_encrypted, updated_at FROM encryption_keys WHERE user_id = $1",
    )
    .bind(user)
    .fetch_optional(pool)
    .await
}

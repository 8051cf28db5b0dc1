//! Event store glue: the cqrs-es frameworks over postgres-es, command
//! metadata, conflict retries and the log position a command produced.

use std::collections::HashMap;
use std::time::Duration;

use aggregates::generation::GenerationJob;
use aggregates::social::{Call, Conversation, EncryptionKeys, Friendship};
use aggregates::{
    Account, Anchor, CardKey, ChatRoom, EmailCode, Follow, LiveRoom, MonitoredRoom, PaymentOrder,
    ViewerChat, Wallet,
};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::CqrsFramework;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore};
use postgres_es::PostgresEventRepository;

use sqlx::PgPool;

mod append;
mod cache;
mod repo;
mod turn;
use append::Appender;
pub use cache::CachingEventStore;
use cache::Freshness;
use std::sync::Arc;
use turn::{Turn, TURN};

/// A command framework over the caching event store.
pub struct Cqrs<A: Aggregate + Clone + 'static> {
    framework: CqrsFramework<A, CachingEventStore<A>>,
    freshness: Freshness<A>,
}

fn cqrs<A: Aggregate<Services = ()> + Clone + 'static>(
    pool: &PgPool,
    snapshot_size: usize,
    appender: &Arc<Appender>,
) -> Cqrs<A> {
    let store = CachingEventStore::new(pool.clone(), snapshot_size, appender.clone());
    Cqrs {
        freshness: store.freshness(),
        framework: CqrsFramework::new(store, vec![], ()),
    }
}

/// The time a command happens, at the precision PostgreSQL stores, so an
/// answer built from the command equals what later reads return.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6)
}

/// The payload keys that hold credentials (argon2id password hashes, sealed
/// private keys): they stay in the store and go to no reader outside it —
/// terminals (`events tail`), analysts' clients (the gRPC endpoint), BI
/// tools (the analytics views, whose SQL names the same keys).
pub const CREDENTIAL_KEYS: [&str; 2] = ["password_hash", "private_key_encrypted"];

/// Replaces the value of every [`CREDENTIAL_KEYS`] key, at any depth, with
/// `"<redacted>"`.
pub fn redact_credentials(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if CREDENTIAL_KEYS.contains(&k.as_str()) {
                    *val = serde_json::Value::String("<redacted>".into());
                } else {
                    redact_credentials(val);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_credentials),
        _ => {}
    }
}

/// Snapshot long streams (chat rooms) every this many events.
const SNAPSHOT_EVERY: usize = 100;
const MAX_CONFLICT_RETRIES: usize = 20;

/// Position of an event in the projectors' order: compared as a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
pub struct LogPosition {
    pub txid: i64,
    pub position: i64,
}

/// Who did what, from where: recorded on every event.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    /// `user:<uuid>`, `apikey:<id>` or `system`
    pub actor: String,
    pub surface: &'static str,
    pub request_id: String,
    pub correlation_id: String,
    pub causation_id: String,
    pub client_ip: String,
}

impl CommandMeta {
    /// The same request's metadata, acting as `actor` (a command that
    /// acts for an account the request only names, such as a new one).
    pub fn with_actor(&self, actor: String) -> Self {
        Self {
            actor,
            ..self.clone()
        }
    }

    fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            ("actor".into(), self.actor.clone()),
            ("surface".into(), self.surface.into()),
            ("request_id".into(), self.request_id.clone()),
            ("correlation_id".into(), self.correlation_id.clone()),
            ("causation_id".into(), self.causation_id.clone()),
            ("client_ip".into(), self.client_ip.clone()),
        ])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    #[error(transparent)]
    Domain(E),
    /// A write-side unique key (e.g. `username`) is already claimed.
    #[error("{0} is already taken")]
    UniqueKeyTaken(String),
    #[error("too much contention on one stream, try again")]
    Contended,
    #[error("event store: {0}")]
    Store(String),
}

/// One async mutex per stream, held while a command on it decides in this
/// process and until its rows are queued for the append (the next command
/// then decides on the state it left, while its rows are written: see
/// `append`): concurrent commands on a hot stream queue here instead of
/// failing on the optimistic lock and replaying the stream again (measured:
/// 64 concurrent sends to one room cost ~620 conflicting attempts without
/// it). Other processes are still kept honest by the optimistic lock.
#[derive(Default)]
struct StreamLocks {
    map: std::sync::Mutex<HashMap<StreamKey, std::sync::Weak<tokio::sync::Mutex<()>>>>,
}

/// (aggregate type, aggregate id)
type StreamKey = (&'static str, String);

impl StreamLocks {
    fn get(
        &self,
        aggregate_type: &'static str,
        id: &str,
    ) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut map = self.map.lock().unwrap();
        if map.len() > 4096 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let key = (aggregate_type, id.to_owned());
        if let Some(lock) = map.get(&key).and_then(|w| w.upgrade()) {
            return lock;
        }
        let lock = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key, std::sync::Arc::downgrade(&lock));
        lock
    }
}

/// The aggregate types appended since the announcer last looked.
#[derive(Default)]
pub struct Appended {
    types: std::sync::Mutex<Vec<&'static str>>,
    bell: tokio::sync::Notify,
}

impl Appended {
    fn push(&self, aggregate_type: &'static str) {
        let mut types = self.types.lock().unwrap();
        if !types.contains(&aggregate_type) {
            types.push(aggregate_type);
        }
        drop(types);
        self.bell.notify_one();
    }

    /// Waits for appends and takes their types (each once).
    pub async fn next(&self) -> Vec<&'static str> {
        loop {
            self.bell.notified().await;
            let types = std::mem::take(&mut *self.types.lock().unwrap());
            if !types.is_empty() {
                return types;
            }
        }
    }
}

pub struct Store {
    pub pool: PgPool,
    locks: StreamLocks,
    appender: Arc<Appender>,
    /// What this process appended (see `projector::run_announcer`).
    appended: std::sync::Arc<Appended>,
    pub accounts: Cqrs<Account>,
    pub rooms: Cqrs<ChatRoom>,
    pub email_codes: Cqrs<EmailCode>,
    pub monitored_rooms: Cqrs<MonitoredRoom>,
    pub wallets: Cqrs<Wallet>,
    pub card_keys: Cqrs<CardKey>,
    pub payment_orders: Cqrs<PaymentOrder>,
    pub live_rooms: Cqrs<LiveRoom>,
    pub viewer_chats: Cqrs<ViewerChat>,
    pub follows: Cqrs<Follow>,
    pub anchors: Cqrs<Anchor>,
    pub friendships: Cqrs<Friendship>,
    pub conversations: Cqrs<Conversation>,
    pub encryption_keys: Cqrs<EncryptionKeys>,
    pub calls: Cqrs<Call>,
    pub generation_jobs: Cqrs<GenerationJob>,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        let appender = Appender::new(pool.clone());
        Self {
            accounts: cqrs(&pool, SNAPSHOT_EVERY, &appender),
            rooms: cqrs(&pool, SNAPSHOT_EVERY, &appender),
            email_codes: cqrs(&pool, 0, &appender),
            monitored_rooms: cqrs(&pool, SNAPSHOT_EVERY, &appender),
            wallets: cqrs(&pool, SNAPSHOT_EVERY, &appender),
            card_keys: cqrs(&pool, 0, &appender),
            payment_orders: cqrs(&pool, 0, &appender),
            live_rooms: cqrs(&pool, SNAPSHOT_EVERY, &appender),
            viewer_chats: cqrs(&pool, SNAPSHOT_EVERY, &appender),
            follows: cqrs(&pool, 0, &appender),
            anchors: cqrs(&pool, 0, &appender),
            friendships: cqrs(&pool, 0, &appender),
            conversations: cqrs(&pool, SNAPSHOT_EVERY, &appender),
            encryption_keys: cqrs(&pool, 0, &appender),
            calls: cqrs(&pool, 0, &appender),
            generation_jobs: cqrs(&pool, 0, &appender),
            pool,
            locks: StreamLocks::default(),
            appender,
            appended: std::sync::Arc::default(),
        }
    }

    /// The aggregate types of this process's appends, as they happen.
    pub fn appended(&self) -> std::sync::Arc<Appended> {
        self.appended.clone()
    }

    /// Runs a command, retrying on optimistic-lock conflicts (the command is
    /// rebuilt each time by `make`), and returns the log position of the
    /// stream's newest event afterwards.
    pub async fn execute<A: Aggregate + Clone + 'static>(
        &self,
        cqrs: &Cqrs<A>,
        aggregate_id: &str,
        meta: &CommandMeta,
        make: impl FnMut() -> A::Command,
    ) -> Result<Option<LogPosition>, CommandError<A::Error>> {
        match self.run(cqrs, aggregate_id, meta, make).await? {
            Some((appended, _)) => Ok(Some(appended)),
            // the command appended nothing: the stream's head is its answer
            None => self.stream_head(A::TYPE, aggregate_id).await.map_err(|e| {
                CommandError::Store(format!(
                    "reading the stream head: {}",
                    crate::db::describe(&e)
                ))
            }),
        }
    }

    /// `execute` without learning the position (for callers that find their
    /// event another way).
    pub async fn execute_only<A: Aggregate + Clone + 'static>(
        &self,
        cqrs: &Cqrs<A>,
        aggregate_id: &str,
        meta: &CommandMeta,
        make: impl FnMut() -> A::Command,
    ) -> Result<(), CommandError<A::Error>> {
        self.run(cqrs, aggregate_id, meta, make).await.map(|_| ())
    }

    /// Where the command's events landed, `None` when it appended nothing
    /// (refused, or done before: an idempotent command tells first from
    /// repeat so).
    pub async fn execute_appended<A: Aggregate + Clone + 'static>(
        &self,
        cqrs: &Cqrs<A>,
        aggregate_id: &str,
        meta: &CommandMeta,
        make: impl FnMut() -> A::Command,
    ) -> Result<Option<LogPosition>, CommandError<A::Error>> {
        Ok(self
            .run(cqrs, aggregate_id, meta, make)
            .await?
            .map(|(at, _)| at))
    }

    /// Where the command's events landed (the last of them), and the
    /// events; `None` when it appended nothing.
    pub async fn execute_events<A: Aggregate + Clone + 'static>(
        &self,
        cqrs: &Cqrs<A>,
        aggregate_id: &str,
        meta: &CommandMeta,
        make: impl FnMut() -> A::Command,
    ) -> Result<Option<(LogPosition, Vec<A::Event>)>, CommandError<A::Error>> {
        self.run(cqrs, aggregate_id, meta, make).await
    }

    /// In the stream's turn: the command, and where its events landed
    /// (`None` when it appended nothing). A command that appends answers
    /// once its rows are written; one that appends nothing (refused, or
    /// done before) answers once the appends its decision rested on were
    /// written and the state proved the stream's newest.
    async fn run<A: Aggregate + Clone + 'static>(
        &self,
        cqrs: &Cqrs<A>,
        aggregate_id: &str,
        meta: &CommandMeta,
        mut make: impl FnMut() -> A::Command,
    ) -> Result<Option<(LogPosition, Vec<A::Event>)>, CommandError<A::Error>> {
        let metadata = meta.to_map();
        let turn = Turn::take(self.locks.get(A::TYPE, aggregate_id)).await;
        let mut attempt = 0;
        loop {
            turn.hold().await;
            let outcome = TURN
                .scope(
                    turn.clone(),
                    cqrs.framework
                        .execute_with_metadata(aggregate_id, make(), metadata.clone()),
                )
                .await;
            let appended = turn.take_landed::<A::Event>();
            if appended.is_none() && matches!(outcome, Ok(()) | Err(AggregateError::UserError(_))) {
                // decided without appending, perhaps on rows not written
                // yet, or on a cached state that another process has moved
                // past: then decide again
                let stream = (A::TYPE.to_owned(), aggregate_id.to_owned());
                self.appender.drained(&stream).await;
                let fresh = cqrs
                    .freshness
                    .confirm(aggregate_id, turn.decided())
                    .await
                    .map_err(|e| {
                        CommandError::Store(format!(
                            "checking the stream head: {}",
                            crate::db::describe(&e)
                        ))
                    })?;
                if !fresh {
                    continue;
                }
            }
            match outcome {
                Ok(()) => {
                    if appended.is_some() {
                        self.appended.push(A::TYPE);
                    }
                    return Ok(appended);
                }
                Err(AggregateError::AggregateConflict) if attempt < MAX_CONFLICT_RETRIES => {
                    attempt += 1;
                    let jitter = rand::random::<u64>() % (2 * attempt as u64 + 1);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(AggregateError::AggregateConflict) => return Err(CommandError::Contended),
                Err(AggregateError::UserError(e)) => return Err(CommandError::Domain(e)),
                Err(other) => return Err(classify_store_error(other)),
            }
        }
    }

    /// An aggregate's current state, for decisions that span aggregates
    /// (a short stream without snapshots: card keys, payment orders).
    pub async fn load<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<A, CommandError<A::Error>> {
        let store: PersistedEventStore<PostgresEventRepository, A> =
            PersistedEventStore::new_event_store(PostgresEventRepository::new(self.pool.clone()));
        let mut context = store
            .load_aggregate(aggregate_id)
            .await
            .map_err(classify_store_error)?;
        Ok(std::mem::take(context.aggregate()))
    }

    pub async fn stream_head(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> sqlx::Result<Option<LogPosition>> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id::text::bigint, global_position FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(txid, position)| LogPosition { txid, position }))
    }
}

/// The write-side unique key an insert found taken, if that is why it
/// failed: a key claimed by a trigger (`claim_unique_key`, error `TL001`,
/// its kind in the detail), or a wallet's operation id, unique by the
/// index `events_wallet_operation`.
fn taken_key(db: &dyn sqlx::error::DatabaseError) -> Option<String> {
    match db.code().as_deref() {
        Some("TL001") => Some(
            db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|e| e.detail().map(str::to_owned))
                .unwrap_or_else(|| "key".into()),
        ),
        Some("23505") if db.constraint() == Some("events_wallet_operation") => {
            Some("wallet_op".into())
        }
        _ => None,
    }
}

fn classify_store_error<E: std::error::Error>(err: AggregateError<E>) -> CommandError<E> {
    if let AggregateError::UnexpectedError(boxed) = &err {
        if let Some(sqlx::Error::Database(db)) = boxed.downcast_ref::<sqlx::Error>() {
            if let Some(kind) = taken_key(db.as_ref()) {
                return CommandError::UniqueKeyTaken(kind);
            }
        }
    }
    match &err {
        AggregateError::DatabaseConnectionError(e) | AggregateError::UnexpectedError(e) => {
            let inner: &(dyn std::error::Error + 'static) = e.as_ref();
            match crate::db::describe(inner) {
                text if text.starts_with(crate::db::UNAVAILABLE) => CommandError::Store(text),
                _ => CommandError::Store(err.to_string()),
            }
        }
        _ => CommandError::Store(err.to_string()),
    }
}

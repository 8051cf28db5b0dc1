//! The live rooms service (seed 000): anchors' rooms from SillyTavern
//! cards, their chats, viewers' chat, VIP payments, subscriptions and
//! follows. Takes the narrow [`Core`]; the HTTP surface parses the contract
//! and maps [`LiveRoomsError`] to its envelope.

pub mod card;
pub mod earnings;
pub mod sillytavern;
pub mod views;

use aggregates::audience::{follow_id, viewer_chat_id, ChatRate, Chatter, ViewerText};
use aggregates::live_room::{
    Character, CharacterName, ChatLine, ChatText, LiveRoomId, RoomImage, RoomSettings, SenderName,
    SettingsChange,
};
use aggregates::values::InvalidValue;
use aggregates::wallet::wallet_id;
use aggregates::{
    Amount, AnchorCommand, AnchorError, AnchorPayment, Currency, FollowCommand, FollowError,
    LiveRoomCommand, LiveRoomError, ViewerChatCommand, ViewerChatError, WalletCommand,
};
use chrono::{DateTime, Utc};
use projections::live::{self as read, RoomAccessRow};
use uuid::Uuid;

use crate::core::Core;
use crate::ledger::{self, LedgerError};
use crate::store::{CommandError, CommandMeta};

/// The read models a room command waits for.
pub const READ_MODELS: &[&str] = &["live"];
/// … a viewer message.
pub const CHAT_READ_MODELS: &[&str] = &["livechat"];
/// … a payment (the wallet and the access it buys).
pub const PAYMENT_READ_MODELS: &[&str] = &["ledger", "live"];

#[derive(Debug, thiserror::Error)]
pub enum LiveRoomsError {
    #[error("{0}")]
    Invalid(String),
    #[error("room not found")]
    UnknownRoom,
    #[error("unknown anchor")]
    UnknownAnchor,
    #[error("only the room's anchor may do that")]
    NotTheAnchor,
    #[error("this room is paid: pay for it or subscribe to its anchor")]
    NoAccess,
    #[error("the room's price is {price} coins")]
    WrongAmount { price: i64 },
    #[error("not enough coins: {balance} available, {price} needed")]
    Insufficient { balance: i64, price: i64 },
    #[error("this anchor offers no subscription")]
    NotForSale,
    #[error("that name belongs to a registered user")]
    NameTaken,
    #[error("too many messages; retry in {0} s")]
    RateLimited(i64),
    #[error("busy, retry")]
    Contended,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T> = std::result::Result<T, LiveRoomsError>;

impl From<InvalidValue> for LiveRoomsError {
    fn from(e: InvalidValue) -> Self {
        Self::Invalid(e.0)
    }
}

impl From<sqlx::Error> for LiveRoomsError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

fn store_error<E: std::error::Error>(e: CommandError<E>) -> LiveRoomsError {
    match e {
        CommandError::Contended => LiveRoomsError::Contended,
        other => LiveRoomsError::Internal(anyhow::anyhow!("{other}")),
    }
}

impl From<CommandError<LiveRoomError>> for LiveRoomsError {
    fn from(e: CommandError<LiveRoomError>) -> Self {
        match e {
            CommandError::Domain(LiveRoomError::NotFound) => Self::UnknownRoom,
            CommandError::Domain(LiveRoomError::NotTheAnchor) => Self::NotTheAnchor,
            CommandError::Domain(LiveRoomError::Invalid(v)) => Self::Invalid(v.0),
            CommandError::Domain(LiveRoomError::AlreadyExists) => {
                Self::Internal(anyhow::anyhow!("a fresh room id was taken"))
            }
            other => store_error(other),
        }
    }
}

impl From<CommandError<ViewerChatError>> for LiveRoomsError {
    fn from(e: CommandError<ViewerChatError>) -> Self {
        match e {
            CommandError::Domain(ViewerChatError::RateLimited { retry_after_secs }) => {
                Self::RateLimited(retry_after_secs)
            }
            other => store_error(other),
        }
    }
}

impl From<CommandError<FollowError>> for LiveRoomsError {
    fn from(e: CommandError<FollowError>) -> Self {
        match e {
            CommandError::Domain(FollowError::SelfFollow) => {
                Self::Invalid("an anchor cannot follow themself".into())
            }
            other => store_error(other),
        }
    }
}

impl From<CommandError<AnchorError>> for LiveRoomsError {
    fn from(e: CommandError<AnchorError>) -> Self {
        match e {
            CommandError::Domain(AnchorError::Invalid(v)) => Self::Invalid(v.0),
            other => store_error(other),
        }
    }
}

impl From<LedgerError> for LiveRoomsError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Invalid(m) => Self::Invalid(m),
            LedgerError::Contended => Self::Contended,
            other => Self::Internal(anyhow::anyhow!("{other}")),
        }
    }
}

// ------------------------------------------------------------------ rooms

/// A card as uploaded: what it says and its bytes.
pub struct UploadedCard {
    pub card: card::Card,
    pub bytes: Vec<u8>,
    /// a PNG card is also the room's picture
    pub png: bool,
}

pub struct CreatedRoom {
    pub room_id: LiveRoomId,
    pub character_name: String,
    pub character_date: String,
    pub image_name: String,
    pub image_path: String,
}

/// A picture's file name: the character's name in safe characters and the
/// room id (unique).
fn image_name(character: &str, room_id: &LiveRoomId) -> String {
    let mut safe: String = character
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if safe.trim_matches('_').is_empty() {
        safe = "character".into();
    }
    format!("{safe}_{room_id}")
}

/// A card's `create_date` as it was written when SillyTavern can read it
/// (Unix milliseconds are shown in its humanized form), else `now` in
/// SillyTavern's format.
fn character_date(card: &card::Card, now: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    let Some(raw) = card.create_date.as_deref().map(str::trim) else {
        return crate::timefmt::sillytavern_create_date(now, tz);
    };
    match crate::timefmt::parse_sillytavern_date(&serde_json::Value::from(raw), tz) {
        Ok(t) if raw.bytes().all(|b| b.is_ascii_digit()) => {
            crate::timefmt::sillytavern_create_date(t, tz)
        }
        Ok(_) if raw.chars().count() <= 64 => raw.to_owned(),
        _ => crate::timefmt::sillytavern_create_date(now, tz),
    }
}

/// Creates a room for `anchor` (whose seed-000 uid is `anchor_uid`).
pub async fn create_room(
    core: &Core,
    meta: &CommandMeta,
    anchor: Uuid,
    anchor_uid: &str,
    upload: UploadedCard,
    settings: RoomSettings,
) -> Result<CreatedRoom> {
    let name = CharacterName::parse(upload.card.name.trim())?;
    let content_type = if upload.png {
        "image/png"
    } else {
        "application/json"
    };
    let card_sha256 = crate::files::put(&core.pool, &upload.bytes, content_type).await?;
    let room_id = LiveRoomId::from_bytes(rand::random());
    let at = crate::store::now();
    let character = Character {
        name: name.clone(),
        date: character_date(&upload.card, at, core.config.timezone),
        spec: upload.card.spec.clone(),
        card_sha256: card_sha256.clone(),
    };
    let image = upload.png.then(|| {
        let file = image_name(name.as_str(), &room_id);
        RoomImage {
            path: format!("{anchor_uid}/characters/{file}.png"),
            name: file,
            sha256: card_sha256.clone(),
            size: upload.bytes.len() as i64,
        }
    });
    let pos = core
        .store
        .execute(&core.store.live_rooms, room_id.as_str(), meta, || {
            LiveRoomCommand::CreateLiveRoom {
                room_id: room_id.clone(),
                anchor,
                character: character.clone(),
                settings: settings.clone(),
                image: image.clone(),
                at,
            }
        })
        .await?;
    core.settle(READ_MODELS, pos).await;
    Ok(CreatedRoom {
        room_id,
        character_name: character.name.as_str().to_owned(),
        character_date: character.date,
        image_name: image.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
        image_path: image.map(|i| i.path).unwrap_or_default(),
    })
}

pub async fn change_settings(
    core: &Core,
    meta: &CommandMeta,
    actor: Uuid,
    room_id: &LiveRoomId,
    change: SettingsChange,
) -> Result<()> {
    let at = crate::store::now();
    let pos = core
        .store
        .execute(&core.store.live_rooms, room_id.as_str(), meta, || {
            LiveRoomCommand::ChangeSettings {
                actor,
                change: change.clone(),
                at,
            }
        })
        .await?;
    core.settle(READ_MODELS, pos).await;
    Ok(())
}

pub async fn set_live(
    core: &Core,
    meta: &CommandMeta,
    actor: Uuid,
    room_id: &LiveRoomId,
    live: bool,
) -> Result<()> {
    let at = crate::store::now();
    let pos = core
        .store
        .execute(&core.store.live_rooms, room_id.as_str(), meta, || {
            LiveRoomCommand::SetLive { actor, live, at }
        })
        .await?;
    core.settle(READ_MODELS, pos).await;
    Ok(())
}

/// A seed-000 `uid`: the account's UUID in unpadded base64url.
pub fn uid_of(account_id: Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(account_id.as_bytes())
}

/// The account behind a seed-000 `uid`.
pub fn account_of_uid(uid: &str) -> Option<Uuid> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(uid.trim())
        .ok()?;
    Uuid::from_slice(&bytes).ok()
}

/// What a chat upload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatRecorded {
    pub recorded: usize,
    /// already recorded, repeated in the request, hidden or empty
    pub skipped: usize,
}

/// A message's identity: its name, its send date as sent, and its text.
fn chat_key(name: &str, send_date: &str, mes: &str) -> String {
    let mut input = Vec::with_capacity(name.len() + send_date.len() + mes.len() + 2);
    for part in [name, send_date, mes] {
        input.extend_from_slice(part.as_bytes());
        input.push(0);
    }
    crate::files::sha256_hex(&input)[..32].to_owned()
}

/// A message whose `send_date` could not be read: it is dated at the
/// upload, and the upload's answer says so.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Undated {
    /// its place among the uploaded messages (from 0)
    pub index: usize,
    /// its line in a `.jsonl` file (from 1)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub send_date: String,
    pub reason: String,
}

/// The chat lines of an upload, and what was left out or re-dated.
#[derive(Debug, Default)]
pub struct ChatLines {
    pub lines: Vec<ChatLine>,
    /// hidden and empty messages
    pub skipped: usize,
    pub undated: Vec<Undated>,
}

/// A date this far ahead of the server's clock is not taken as it is.
const FUTURE_SLACK: chrono::Duration = chrono::Duration::minutes(5);

/// Checks SillyTavern messages and makes chat lines of them (hidden and
/// empty ones are skipped, and counted). Each message keeps the date it
/// was sent, in any form SillyTavern wrote ([`parse_sillytavern_date`],
/// local forms in `tz`); one without a date, or with one that cannot be
/// read or lies in the future, is dated `now` — reported in `undated`
/// unless it had none.
///
/// [`parse_sillytavern_date`]: crate::timefmt::parse_sillytavern_date
pub fn chat_lines(
    raw: Vec<sillytavern::RawMessage>,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Result<ChatLines> {
    let mut out = ChatLines {
        lines: Vec::with_capacity(raw.len()),
        ..ChatLines::default()
    };
    for (i, m) in raw.into_iter().enumerate() {
        if m.is_system || m.mes.trim().is_empty() {
            out.skipped += 1;
            continue;
        }
        let at = |e: InvalidValue| LiveRoomsError::Invalid(format!("message {i}: {}", e.0));
        let sender_name = SenderName::parse(m.name.trim()).map_err(at)?;
        let text = ChatText::parse(&m.mes).map_err(at)?;
        let (sent_at, date_text) = match &m.send_date {
            Some(d) => {
                let text = match d {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let parsed = crate::timefmt::parse_sillytavern_date(d, tz)
                    .map_err(str::to_owned)
                    .and_then(|t| {
                        if t > now + FUTURE_SLACK {
                            Err("in the future".to_owned())
                        } else {
                            Ok(t.min(now))
                        }
                    });
                let sent_at = match parsed {
                    Ok(t) => t,
                    Err(reason) => {
                        out.undated.push(Undated {
                            index: i,
                            line: m.line,
                            send_date: text.chars().take(100).collect(),
                            reason,
                        });
                        now
                    }
                };
                (sent_at, text)
            }
            None => (now, now.to_rfc3339()),
        };
        out.lines.push(ChatLine {
            key: chat_key(sender_name.as_str(), &date_text, text.as_str()),
            is_user: m.is_user,
            sender_name,
            text,
            sent_at,
        });
    }
    Ok(out)
}

/// Appends the lines not recorded before (by key), in order.
pub async fn record_chat(
    core: &Core,
    meta: &CommandMeta,
    actor: Uuid,
    room_id: &LiveRoomId,
    lines: Vec<ChatLine>,
    skipped: usize,
) -> Result<ChatRecorded> {
    let mut seen = std::collections::HashSet::new();
    let mut lines: Vec<ChatLine> = lines;
    let before = lines.len();
    lines.retain(|l| seen.insert(l.key.clone()));
    let mut skipped = skipped + (before - lines.len());
    let at = crate::store::now();
    // a concurrent upload of the same lines fails the append (the keys are
    // claimed with the events); then the keys are read again
    for _ in 0..5 {
        let keys: Vec<String> = lines
            .iter()
            .map(|l| format!("{room_id}:{}", l.key))
            .collect();
        let taken: std::collections::HashSet<String> = sqlx::query_scalar(
            "SELECT key FROM event_store_unique_keys WHERE kind = 'live_chat' AND key = ANY($1)",
        )
        .bind(&keys)
        .fetch_all(&core.pool)
        .await?
        .into_iter()
        .collect();
        let fresh: Vec<ChatLine> = lines
            .iter()
            .zip(&keys)
            .filter(|(_, k)| !taken.contains(*k))
            .map(|(l, _)| l.clone())
            .collect();
        let dropped = lines.len() - fresh.len();
        let result = core
            .store
            .execute(&core.store.live_rooms, room_id.as_str(), meta, || {
                LiveRoomCommand::RecordChat {
                    actor,
                    lines: fresh.clone(),
                    at,
                }
            })
            .await;
        match result {
            Ok(pos) => {
                core.settle(READ_MODELS, pos).await;
                skipped += dropped;
                return Ok(ChatRecorded {
                    recorded: fresh.len(),
                    skipped,
                });
            }
            Err(CommandError::UniqueKeyTaken(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(LiveRoomsError::Contended)
}

// ----------------------------------------------------------------- access

/// What a viewer may do in a room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    /// may watch the chats and chat
    pub allowed: bool,
    pub paid: bool,
    pub subscribed: bool,
    pub following: bool,
    pub is_anchor: bool,
}

/// A viewer's access: a free room is open to anyone (guests too); a paid
/// one to who paid for it, who subscribes to its anchor, and its anchor.
pub async fn access(core: &Core, room: &RoomAccessRow, viewer: Option<Uuid>) -> Result<Access> {
    let free = room.room_type == 0;
    let Some(viewer) = viewer else {
        return Ok(Access {
            allowed: free,
            ..Access::default()
        });
    };
    let s = read::standing(&core.pool, &room.room_id, room.anchor_id, viewer).await?;
    Ok(access_of(room, viewer, &s))
}

fn access_of(room: &RoomAccessRow, viewer: Uuid, s: &read::ViewerStanding) -> Access {
    let subscribed = s.subscribed_until.is_some_and(|u| u > Utc::now());
    let is_anchor = viewer == room.anchor_id;
    Access {
        allowed: room.room_type == 0 || s.paid || subscribed || is_anchor,
        paid: s.paid,
        subscribed,
        following: s.following,
        is_anchor,
    }
}

/// A room and a signed-in viewer's [`access`] to it, read at once.
pub async fn room_seen_by(
    core: &Core,
    room_id: &LiveRoomId,
    viewer: Uuid,
) -> Result<(RoomAccessRow, Access)> {
    let r = read::room_and_standing(&core.pool, room_id.as_str(), viewer)
        .await?
        .ok_or(LiveRoomsError::UnknownRoom)?;
    let access = access_of(&r.room, viewer, &r.standing);
    Ok((r.room, access))
}

/// Whether a viewer may watch (and chat in) a room: [`access`]'s
/// `allowed`, without reading the viewer's standing for a free room.
pub async fn may_watch(core: &Core, room: &RoomAccessRow, viewer: Option<Uuid>) -> Result<bool> {
    if room.room_type == 0 {
        return Ok(true);
    }
    if access(core, room, viewer).await?.allowed {
        return Ok(true);
    }
    // Refused only on read models that include every answered write: the
    // viewer's payment of a moment ago may have been answered before its
    // projection, and a request that sends chat does not wait for that
    // before it runs (an in-memory compare for the others).
    core.answered_writes().await;
    Ok(access(core, room, viewer).await?.allowed)
}

pub async fn room(core: &Core, room_id: &LiveRoomId) -> Result<RoomAccessRow> {
    read::room_access(&core.pool, room_id.as_str())
        .await?
        .ok_or(LiveRoomsError::UnknownRoom)
}

// ------------------------------------------------------------ viewer chat

/// Whether a guest's name is, or could pass for, a registered user's
/// (username or nickname): compared by their confusable skeletons
/// (`aggregates::values::name_skeleton`), so full-width letters, invisible
/// characters, case and look-alike letters do not make another name.
pub async fn name_is_registered(core: &Core, name: &str) -> Result<bool> {
    let key = name.to_lowercase();
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM accounts
                         WHERE username_lower = $1 OR lower(nickname) = $1
                            OR username_skeleton = $2 OR nickname_skeleton = $2)",
    )
    .bind(key)
    .bind(aggregates::values::name_skeleton(name))
    .fetch_one(&core.pool)
    .await?)
}

pub async fn post_viewer_message(
    core: &Core,
    meta: &CommandMeta,
    room: &RoomAccessRow,
    chatter: Chatter,
    text: ViewerText,
) -> Result<()> {
    let max = core.config.live.chat_per_minute;
    let rate = (max > 0).then(|| ChatRate {
        max,
        per: chrono::Duration::seconds(60),
    });
    let at = crate::store::now();
    let stream = viewer_chat_id(&room.room_id, &chatter);
    let pos = core
        .store
        .execute(&core.store.viewer_chats, &stream, meta, || {
            ViewerChatCommand::PostViewerMessage {
                room_id: room.room_id.clone(),
                chatter: chatter.clone(),
                text: text.clone(),
                rate,
                at,
            }
        })
        .await?;
    core.settle_on_read(CHAT_READ_MODELS, pos).await;
    Ok(())
}

// --------------------------------------------------------------- payments

/// How a payment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paid {
    /// coins moved now, leaving the payer's wallet at `balance`
    Now { balance: i64 },
    /// access was had already: nothing moved
    Before,
}

fn payment(
    core: &Core,
    payer_op: String,
    amount: Amount,
    anchor: Uuid,
    description: String,
) -> AnchorPayment {
    AnchorPayment {
        operation_id: payer_op,
        amount,
        anchor,
        platform_share: AnchorPayment::share_of(amount, core.config.live.platform_share_percent),
        description,
        at: crate::store::now(),
    }
}

/// Pays a VIP room's price: once per viewer and room, whatever the retries.
/// Under load the payment's read models may trail the answer (read-your-
/// writes on the next request, `Core::settle_on_read`): the payer's access
/// (`had`, read with the room: [`room_seen_by`]) may then miss their own
/// payment of a moment ago, which the wallet's once-per-operation check
/// answers as a repeat.
pub async fn pay_vip(
    core: &Core,
    meta: &CommandMeta,
    payer: Uuid,
    (room, had): (&RoomAccessRow, Access),
    amount: i64,
) -> Result<Paid> {
    let price = if room.room_type == 0 {
        0
    } else {
        room.coin_num
    };
    if amount != price {
        return Err(LiveRoomsError::WrongAmount { price });
    }
    if price == 0 || had.paid || had.subscribed || had.is_anchor {
        return Ok(Paid::Before);
    }
    let amount = Amount::new(price).map_err(|e| LiveRoomsError::Invalid(e.to_string()))?;
    let operation_id = format!("vip:{}", room.room_id);
    let p = payment(
        core,
        operation_id.clone(),
        amount,
        room.anchor_id,
        format!("VIP {} ({})", room.character_name, room.room_id),
    );
    let moved = ledger::operate(&core.store, payer, Currency::Coins, meta, || {
        WalletCommand::PayVipCoin {
            payment: p.clone(),
            room_id: room.room_id.clone(),
        }
    })
    .await;
    let moved = match moved {
        Ok(m) => m,
        // paid earlier at another price: the access stands
        Err(LedgerError::OperationConflict) => return Ok(Paid::Before),
        Err(LedgerError::Insufficient { balance, .. }) => {
            return Err(LiveRoomsError::Insufficient { balance, price })
        }
        Err(e) => return Err(e.into()),
    };
    earnings::credit_soon(core, meta, payer, &operation_id, &moved.event);
    if !moved.now {
        return Ok(Paid::Before);
    }
    core.settle_on_read(PAYMENT_READ_MODELS, Some(moved.position))
        .await;
    Ok(Paid::Now {
        balance: moved.balance_after,
    })
}

/// A subscription: the anchor's price for a period, which starts when the
/// running one ends (or now). Returns when it runs until.
pub async fn subscribe(
    core: &Core,
    meta: &CommandMeta,
    payer: Uuid,
    anchor: Uuid,
) -> Result<DateTime<Utc>> {
    if payer == anchor {
        return Err(LiveRoomsError::Invalid(
            "an anchor cannot subscribe to themself".into(),
        ));
    }
    let (price, period_secs) = match read::subscription_price(&core.pool, anchor).await? {
        Some((price, period)) if price > 0 => (price, period),
        _ => return Err(LiveRoomsError::NotForSale),
    };
    let standing = read::standing(&core.pool, "", anchor, payer).await?;
    // a double click pays once: both clicks name the same next period
    let operation_id = format!(
        "subscription:{anchor}:{}",
        standing.subscription_periods + 1
    );
    let amount = Amount::new(price).map_err(|e| LiveRoomsError::Invalid(e.to_string()))?;
    let p = payment(
        core,
        operation_id.clone(),
        amount,
        anchor,
        "subscription".into(),
    );
    let moved = ledger::operate(&core.store, payer, Currency::Coins, meta, || {
        WalletCommand::PaySubscription {
            payment: p.clone(),
            period_secs,
        }
    })
    .await
    .map_err(|e| match e {
        LedgerError::Insufficient { balance, .. } => {
            LiveRoomsError::Insufficient { balance, price }
        }
        other => other.into(),
    })?;
    earnings::credit_soon(core, meta, payer, &operation_id, &moved.event);
    core.settle(PAYMENT_READ_MODELS, Some(moved.position)).await;
    let after = read::standing(&core.pool, "", anchor, payer).await?;
    // paid, but the read model is behind (its projector out of reach, as in
    // a failover): a retry with the same payment is safe
    after.subscribed_until.ok_or_else(|| {
        LiveRoomsError::Internal(anyhow::anyhow!(
            "{}: the subscription is paid but not yet projected",
            crate::db::UNAVAILABLE
        ))
    })
}

pub async fn set_subscription_price(
    core: &Core,
    meta: &CommandMeta,
    anchor: Uuid,
    amount: i64,
) -> Result<()> {
    let period_secs = core.config.live.subscription_period.as_secs() as i64;
    let at = crate::store::now();
    let pos = core
        .store
        .execute(&core.store.anchors, &anchor.to_string(), meta, || {
            AnchorCommand::SetSubscriptionPrice {
                anchor,
                amount,
                period_secs,
                at,
            }
        })
        .await?;
    core.settle(READ_MODELS, pos).await;
    Ok(())
}

/// Follows (or unfollows) the room's anchor.
pub async fn follow(
    core: &Core,
    meta: &CommandMeta,
    viewer: Uuid,
    room: &RoomAccessRow,
    follow: bool,
) -> Result<()> {
    let anchor = room.anchor_id;
    let at = crate::store::now();
    let pos = core
        .store
        .execute(
            &core.store.follows,
            &follow_id(viewer, anchor),
            meta,
            || {
                if follow {
                    FollowCommand::FollowAnchor {
                        viewer,
                        anchor,
                        room_id: room.room_id.clone(),
                        at,
                    }
                } else {
                    FollowCommand::UnfollowAnchor { viewer, anchor, at }
                }
            },
        )
        .await?;
    core.settle(READ_MODELS, pos).await;
    Ok(())
}

/// The payer's coins wallet (the earnings' key names it).
pub fn coins_wallet(account: Uuid) -> String {
    wallet_id(account, Currency::Coins)
}

//! The document's shapes of the live site's bodies. Its handlers read
//! parameters from the query or a JSON body alike and build answers with
//! `json!`; these describe what a client sends and gets, and
//! `scripts/fuzz.sh` checks real answers against them.
#![allow(dead_code)]

use utoipa::{IntoParams, ToSchema};

type Object = serde_json::Map<String, serde_json::Value>;

/// `{code: 0, data}`.
#[derive(ToSchema)]
pub struct Envelope<T> {
    #[schema(example = 0)]
    code: i32,
    data: T,
}

/// `{code: 0}`.
#[derive(ToSchema)]
pub struct Done {
    #[schema(example = 0)]
    code: i32,
}

/// Failures: `{code: 1, msg}`.
#[derive(ToSchema)]
pub struct Failure {
    #[schema(example = 1)]
    code: i32,
    msg: String,
}

#[derive(ToSchema)]
pub struct RoomInfo {
    title: String,
    coin_num: i64,
    describe: String,
    /// 0: free; 1: paid once (VIP coins); 2: subscribers
    room_type: i64,
}

#[derive(ToSchema)]
pub struct LiveItem {
    room_id: String,
    /// `<uid>_<character_name>_<character_date>`
    room_name: String,
    uid: String,
    username: String,
    live_num: i64,
    character_name: String,
    character_date: String,
    image_name: String,
    image_path: String,
    tags: Vec<String>,
    room_info: RoomInfo,
}

#[derive(ToSchema)]
pub struct RankedItem {
    room_id: String,
    room_name: String,
    uid: String,
    username: String,
    live_num: i64,
    character_name: String,
    character_date: String,
    image_name: String,
    image_path: String,
    tags: Vec<String>,
    room_info: RoomInfo,
    language: String,
    last_ai_reply: String,
    ai_reply_count: i64,
    score: f64,
}

#[derive(ToSchema)]
pub struct Lives<T> {
    lives_info: Vec<T>,
}

#[derive(ToSchema)]
pub struct AllLives {
    code: i32,
    data: Lives<LiveItem>,
}

#[derive(ToSchema)]
pub struct RankedLives {
    code: i32,
    #[schema(example = "success")]
    status: String,
    data: Lives<RankedItem>,
}

#[derive(ToSchema)]
pub struct Tags {
    code: i32,
    status: String,
    tags: Vec<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TagQuery {
    /// Only rooms with this tag (any case).
    search_tag: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoomQuery {
    /// A room (`room_id` in a JSON body is read too).
    room_id: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoomUidQuery {
    room_id: String,
    /// The caller's uid, when given it must be the session's.
    uid: Option<String>,
}

#[derive(ToSchema)]
pub struct LiveInfo {
    /// `live_info`, `vip_info`, `follow_info`, `subscription_info`
    live_info: Object,
    vip_info: Object,
    follow_info: Object,
    subscription_info: Object,
}

#[derive(ToSchema)]
pub struct AnchorLine {
    is_user: bool,
    live_message: String,
    sender_name: String,
    /// SillyTavern's `send_date`
    send_date: String,
}

#[derive(ToSchema)]
pub struct AnchorChat {
    uid: String,
    username: String,
    chat_info: Vec<AnchorLine>,
}

#[derive(ToSchema)]
pub struct ViewerLine {
    uid: String,
    username: String,
    send_date: String,
    user_message: String,
}

#[derive(ToSchema)]
pub struct ViewerChat {
    room_id: String,
    room_name: String,
    uid: String,
    username: String,
    chat_info: Vec<ViewerLine>,
}

#[derive(ToSchema)]
pub struct SaveChat {
    room_id: String,
    room_name: Option<String>,
    /// A guest's name (a signed-in viewer posts under the account's).
    username: Option<String>,
    user_message: String,
}

#[derive(ToSchema)]
pub struct PayVip {
    /// The caller's uid.
    uid: String,
    /// The room's anchor (checked when given).
    anchor_id: Option<String>,
    room_id: String,
    room_name: Option<String>,
    /// The room's price, as the caller saw it.
    amount: i64,
}

#[derive(ToSchema)]
pub struct VipPaid {
    vip_status: bool,
    /// false: paid before, nothing charged now
    paid: bool,
    coin_num: i64,
}

#[derive(ToSchema)]
pub struct RoomRef {
    room_id: String,
}

#[derive(ToSchema)]
pub struct FollowStatus {
    follow_status: bool,
}

#[derive(ToSchema)]
pub struct Subscribe {
    /// The anchor's uid.
    anchor_id: String,
}

#[derive(ToSchema)]
pub struct Subscribed {
    subscription_status: bool,
    amount: i64,
    until: String,
}

#[derive(ToSchema)]
pub struct UserInfo {
    /// Empty for a guest.
    uid: String,
    status: bool,
    /// `游客` for a guest.
    uname: String,
    coin_num: i64,
}

#[derive(ToSchema)]
pub struct LoggedIn {
    user_info: UserInfo,
}

#[derive(ToSchema)]
pub struct Recharge {
    /// The caller's user number.
    user_id: i64,
    /// The price in the pay currency (a number or its text).
    #[schema(value_type = f64)]
    crypto_amount: serde_json::Value,
}

#[derive(ToSchema)]
pub struct RechargeOpened {
    code: i32,
    message: String,
    order_id: String,
    payment_id: String,
    pay_address: String,
    #[schema(value_type = f64)]
    pay_amount: serde_json::Value,
    pay_currency: String,
    coins: i64,
    /// An SVG data URI.
    qr_code: String,
}

#[derive(ToSchema)]
pub struct PaymentStatus {
    code: i32,
    /// `waiting`, `confirming`, `confirmed`, `sending`, `partially_paid`,
    /// `finished`, `failed`, `refunded`, `expired`
    status: String,
    message: String,
}

/// NOWPayments' callback body (signed with `x-nowpayments-sig`).
#[derive(ToSchema)]
pub struct Ipn {
    order_id: String,
    payment_id: i64,
    payment_status: String,
    actually_paid: Option<f64>,
}

#[derive(ToSchema)]
pub struct IpnApplied {
    code: i32,
    status: String,
}

/// A SillyTavern character card (JSON `character`, V2/V3) with the room's
/// settings; or multipart with the card PNG as `card`.
#[derive(ToSchema)]
pub struct CreateRoom {
    character: Object,
    title: Option<String>,
    describe: Option<String>,
    room_type: Option<i64>,
    coin_num: Option<i64>,
    language: Option<String>,
    tags: Option<Vec<String>>,
}

#[derive(ToSchema)]
pub struct CreateRoomForm {
    #[schema(value_type = String, format = Binary)]
    card: Vec<u8>,
    title: Option<String>,
    describe: Option<String>,
    room_type: Option<i64>,
    coin_num: Option<i64>,
}

#[derive(ToSchema)]
pub struct CreatedRoom {
    room_id: String,
    room_name: String,
    character_name: String,
    character_date: String,
    image_name: String,
    image_path: String,
}

#[derive(ToSchema)]
pub struct MyRooms {
    rooms: Vec<Object>,
}

#[derive(ToSchema)]
pub struct ChangeRoom {
    title: Option<String>,
    describe: Option<String>,
    room_type: Option<i64>,
    coin_num: Option<i64>,
    language: Option<String>,
    tags: Option<Vec<String>>,
}

#[derive(ToSchema)]
pub struct SetLive {
    live: bool,
}

#[derive(ToSchema)]
pub struct LiveStatus {
    live_status: bool,
}

/// SillyTavern chat messages (a JSON array), or the `.jsonl` chat file.
#[derive(ToSchema)]
#[schema(value_type = Vec<Object>)]
pub struct ChatMessages(Vec<Object>);

#[derive(ToSchema)]
pub struct Recorded {
    recorded: i64,
    /// Messages recorded before.
    skipped: i64,
    /// Messages whose `send_date` could not be read (or lay in the
    /// future): dated at the upload.
    undated: Vec<UndatedMessage>,
}

#[derive(ToSchema)]
pub struct UndatedMessage {
    /// Its place among the uploaded messages (from 0).
    index: i64,
    /// Its line in a `.jsonl` file (from 1).
    line: Option<i64>,
    send_date: String,
    /// Why it could not be read.
    reason: String,
}

#[derive(ToSchema)]
pub struct SubscriptionPrice {
    /// Coins per period; 0: none offered.
    amount: i64,
}

#[derive(ToSchema)]
pub struct SubscriptionSet {
    amount: i64,
    period_secs: i64,
}

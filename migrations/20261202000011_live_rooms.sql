-- Live rooms of AI role-play characters (seed 000).

-- The anchor's chat is recorded once per message: each message's key
-- (name, send date and text) is claimed with its event, so a resent chat
-- file records only what is new, on any process.
CREATE FUNCTION events_claim_live_chat_keys() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM claim_unique_key('live_chat',
        NEW.aggregate_id || ':' || (NEW.payload -> 'LiveChatRecorded' ->> 'key'), NEW.aggregate_id);
    RETURN NEW;
END
$$;

CREATE TRIGGER events_claim_live_chat_keys
    BEFORE INSERT ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'LiveRoom' AND NEW.event_type = 'LiveChatRecorded')
    EXECUTE FUNCTION events_claim_live_chat_keys();

-- Uploaded bytes (character cards and their pictures) are not events: the
-- events carry their SHA-256, and the bytes are kept here, where every
-- server process reads them. Content-addressed, written before the event
-- that names them (an upload whose event failed leaves an unnamed row).
CREATE TABLE blobs
(
    sha256       text PRIMARY KEY,
    content_type text        NOT NULL,
    size         bigint      NOT NULL,
    bytes        bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- projection "ledger": payments to anchors and the credits that follow them
CREATE TABLE anchor_earnings
(
    -- '<payer wallet>/<operation id>'; the credit's reference is 'earning:<key>'
    earning_key     text PRIMARY KEY,
    anchor_id       uuid        NOT NULL,
    payer_id        uuid        NOT NULL,
    kind            text        NOT NULL,
    -- what the anchor earns (the price less the platform's share)
    amount          bigint      NOT NULL,
    paid_position   bigint      NOT NULL,
    paid_at         timestamptz NOT NULL,
    credited_at     timestamptz,
    credit_position bigint
);
-- the process manager's work list
CREATE INDEX anchor_earnings_due ON anchor_earnings (paid_at) WHERE credited_at IS NULL;

-- projection "live": rooms, the anchors' chats, access, follows, prices
CREATE TABLE live_rooms
(
    room_id          text PRIMARY KEY,
    anchor_id        uuid        NOT NULL,
    character_name   text        NOT NULL,
    character_date   text        NOT NULL,
    card_spec        text        NOT NULL,
    card_sha256      text        NOT NULL,
    image_name       text        NOT NULL,
    image_path       text        NOT NULL,
    image_sha256     text,
    title            text        NOT NULL,
    describe         text        NOT NULL,
    room_type        bigint      NOT NULL,
    coin_num         bigint      NOT NULL,
    language         text        NOT NULL,
    tags             text[]      NOT NULL,
    -- the tags folded to lower case, for the tag search
    tag_keys         text[]      NOT NULL,
    live             boolean     NOT NULL DEFAULT false,
    live_since       timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    chat_count       bigint      NOT NULL DEFAULT 0,
    ai_reply_count   bigint      NOT NULL DEFAULT 0,
    last_ai_reply_at timestamptz,
    -- sum over AI replies of 2^(-age/half-life), as of ai_heat_at
    ai_heat          float8      NOT NULL DEFAULT 0,
    ai_heat_at       timestamptz
);
CREATE INDEX live_rooms_live ON live_rooms (room_id) WHERE live;
CREATE INDEX live_rooms_anchor ON live_rooms (anchor_id);
CREATE UNIQUE INDEX live_rooms_image ON live_rooms (image_path) WHERE image_path <> '';

CREATE TABLE live_chat
(
    room_id     text        NOT NULL,
    position    bigint      NOT NULL,
    is_user     boolean     NOT NULL,
    sender_name text        NOT NULL,
    message     text        NOT NULL,
    sent_at     timestamptz NOT NULL,
    PRIMARY KEY (room_id, position)
);

CREATE TABLE live_access
(
    room_id    text        NOT NULL,
    account_id uuid        NOT NULL,
    amount     bigint      NOT NULL,
    paid_at    timestamptz NOT NULL,
    position   bigint      NOT NULL,
    PRIMARY KEY (room_id, account_id)
);

CREATE TABLE live_subscriptions
(
    account_id uuid        NOT NULL,
    anchor_id  uuid        NOT NULL,
    -- each paid period starts when the one before ends (or at payment)
    until      timestamptz NOT NULL,
    periods    integer     NOT NULL,
    PRIMARY KEY (account_id, anchor_id)
);

CREATE TABLE live_follows
(
    account_id uuid        NOT NULL,
    anchor_id  uuid        NOT NULL,
    room_id    text        NOT NULL,
    since      timestamptz NOT NULL,
    PRIMARY KEY (account_id, anchor_id)
);

CREATE TABLE live_anchors
(
    anchor_id          uuid PRIMARY KEY,
    subscription_price bigint      NOT NULL,
    subscription_secs  bigint      NOT NULL,
    updated_at         timestamptz NOT NULL
);

-- projection "livechat": viewers' chat and its activity per room
CREATE TABLE live_viewer_messages
(
    room_id    text        NOT NULL,
    position   bigint      NOT NULL,
    account_id uuid,
    uid        text        NOT NULL,
    username   text        NOT NULL,
    message    text        NOT NULL,
    sent_at    timestamptz NOT NULL,
    PRIMARY KEY (room_id, position)
);

CREATE TABLE live_room_activity
(
    room_id                text PRIMARY KEY,
    viewer_messages        bigint      NOT NULL,
    last_viewer_message_at timestamptz NOT NULL,
    chat_heat              float8      NOT NULL,
    chat_heat_at           timestamptz NOT NULL
);

-- Who watches a room now (seed 000's live_num). Presence is not an event:
-- each process records the viewers it serves here, and rows older than two
-- minutes are removed. Unlogged: lost in a PostgreSQL crash, rebuilt by
-- the next minute of viewing.
CREATE UNLOGGED TABLE live_presence
(
    room_id text        NOT NULL,
    viewer  text        NOT NULL,
    seen_at timestamptz NOT NULL,
    PRIMARY KEY (room_id, viewer)
);

-- A guest may not chat under a registered name: looked up by username
-- (unique, indexed) and by nickname (seed 002's display names).
CREATE INDEX accounts_nickname_lower ON accounts (lower(nickname));

-- Bilibili gift monitor (seed 001).

-- Ingestion is idempotent: every message with an identity (gift tid/rnd,
-- guard purchase, super chat id, danmaku, timed samples) claims its key in
-- the same transaction as its event, so a resend is recognised whatever the
-- order or the process it arrives at.
CREATE FUNCTION events_claim_ingest_keys() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    k text := NEW.payload -> NEW.event_type ->> 'key';
BEGIN
    IF k IS NOT NULL THEN
        PERFORM claim_unique_key('ingest', NEW.aggregate_id || ':' || k, NEW.aggregate_id);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER events_claim_ingest_keys
    BEFORE INSERT ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'MonitoredRoom')
    EXECUTE FUNCTION events_claim_ingest_keys();

-- projection "gifts" (days and months in the configured time zone)
CREATE TABLE bili_rooms
(
    room_id             bigint PRIMARY KEY,
    anchor_name         text        NOT NULL,
    monitored           boolean     NOT NULL,
    added_at            timestamptz NOT NULL,
    attention           bigint,
    fans_count          bigint,
    guard_1             bigint,
    guard_2             bigint,
    guard_3             bigint,
    title               text        NOT NULL DEFAULT '',
    live                boolean     NOT NULL DEFAULT false,
    live_started_at     timestamptz,
    current_concurrency bigint
);

CREATE TABLE bili_sessions
(
    room_id             bigint      NOT NULL,
    session_no          bigint      NOT NULL,
    started_at          timestamptz NOT NULL,
    ended_at            timestamptz,
    title               text        NOT NULL DEFAULT '',
    gift_gold           bigint      NOT NULL DEFAULT 0,
    guard_gold          bigint      NOT NULL DEFAULT 0,
    sc_yuan             bigint      NOT NULL DEFAULT 0,
    blind_box_count     bigint      NOT NULL DEFAULT 0,
    blind_profit_gold   bigint      NOT NULL DEFAULT 0,
    danmaku_count       bigint      NOT NULL DEFAULT 0,
    start_guard_1       bigint,
    start_guard_2       bigint,
    start_guard_3       bigint,
    start_fans_count    bigint,
    end_guard_1         bigint,
    end_guard_2         bigint,
    end_guard_3         bigint,
    end_fans_count      bigint,
    concurrency_sum     bigint      NOT NULL DEFAULT 0,
    concurrency_samples bigint      NOT NULL DEFAULT 0,
    concurrency_max     bigint,
    current_concurrency bigint,
    PRIMARY KEY (room_id, session_no)
);
CREATE INDEX bili_sessions_by_time ON bili_sessions (room_id, started_at);

-- Per room and local day: money, blind boxes and closed sessions' live time.
CREATE TABLE bili_days
(
    room_id           bigint NOT NULL,
    day               date   NOT NULL,
    gift_gold         bigint NOT NULL DEFAULT 0,
    guard_gold        bigint NOT NULL DEFAULT 0,
    sc_yuan           bigint NOT NULL DEFAULT 0,
    blind_box_count   bigint NOT NULL DEFAULT 0,
    blind_profit_gold bigint NOT NULL DEFAULT 0,
    live_seconds      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, day)
);

CREATE TABLE bili_super_chats
(
    room_id bigint      NOT NULL,
    sc_id   bigint      NOT NULL,
    sent_at timestamptz NOT NULL,
    uid     bigint      NOT NULL,
    uname   text        NOT NULL,
    price   bigint      NOT NULL,
    message text        NOT NULL,
    PRIMARY KEY (room_id, sc_id)
);
CREATE INDEX bili_super_chats_by_time ON bili_super_chats (room_id, sent_at);

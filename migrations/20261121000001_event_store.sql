-- The event store: the postgres-es `events` and `snapshots` tables, plus the
-- columns postgres-es does not know about and fills by default.

CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    -- unique and monotonic, but NOT gap-free and NOT commit-ordered
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- tamper evidence: hash chained to the previous event of the same stream
    prev_hash       bytea,
    hash            bytea       NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_global_position_key ON events (global_position);
-- the projectors' read order
CREATE INDEX events_log_order ON events (transaction_id, global_position);
CREATE INDEX events_type_log_order ON events (aggregate_type, transaction_id, global_position);

CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- One definition of an event's hash, used by the insert trigger and by
-- `tidelog audit verify`. Times enter as integer microseconds so the text
-- does not depend on the session's TimeZone.
CREATE FUNCTION event_hash(prev bytea, aggregate_type text, aggregate_id text, sequence bigint,
                           event_type text, event_version text, payload json, metadata json,
                           recorded_at timestamptz)
    RETURNS bytea
    LANGUAGE sql IMMUTABLE
AS $$
SELECT sha256(coalesce(prev, '\x'::bytea) || convert_to(concat_ws(chr(31),
    aggregate_type, aggregate_id, sequence::text, event_type, event_version,
    payload::text, metadata::text,
    floor(extract(epoch FROM recorded_at) * 1000000)::bigint::text), 'UTF8'))
$$;

CREATE FUNCTION events_chain_hash() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    prev bytea;
BEGIN
    IF NEW.sequence > 1 THEN
        SELECT e.hash INTO prev FROM events e
         WHERE e.aggregate_type = NEW.aggregate_type
           AND e.aggregate_id = NEW.aggregate_id
           AND e.sequence = NEW.sequence - 1;
        IF prev IS NULL THEN
            RAISE EXCEPTION 'stream %/% has no event %: appends must be contiguous',
                NEW.aggregate_type, NEW.aggregate_id, NEW.sequence - 1;
        END IF;
    END IF;
    NEW.prev_hash := prev;
    NEW.hash := event_hash(prev, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence,
                           NEW.event_type, NEW.event_version, NEW.payload, NEW.metadata,
                           NEW.recorded_at);
    RETURN NEW;
END
$$;

CREATE TRIGGER events_chain_hash
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_chain_hash();

CREATE FUNCTION events_reject_change() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'the event store is append-only: % on events is not allowed', TG_OP
        USING ERRCODE = 'TL003';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_reject_change();

-- Wakes projectors and live feeds; delivered at commit, one per transaction.
CREATE FUNCTION events_notify() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('tidelog_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();

-- Write-side unique keys (username, account number), claimed by the insert
-- of the event that introduces them, in the same transaction: two concurrent
-- registrations of one name cannot both commit. Not a read model: rebuilds
-- never touch it.
CREATE TABLE event_store_unique_keys
(
    kind         text NOT NULL,
    key          text NOT NULL,
    aggregate_id text NOT NULL,
    PRIMARY KEY (kind, key)
);

CREATE FUNCTION claim_unique_key(p_kind text, p_key text, p_aggregate_id text) RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO event_store_unique_keys (kind, key, aggregate_id) VALUES (p_kind, p_key, p_aggregate_id);
EXCEPTION WHEN unique_violation THEN
    -- not 23505: postgres-es reads every 23505 as an optimistic-lock conflict
    RAISE EXCEPTION 'unique key taken: %', p_kind USING ERRCODE = 'TL001', DETAIL = p_kind;
END
$$;

CREATE FUNCTION events_claim_unique_keys() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.aggregate_type = 'Account' AND NEW.event_type = 'AccountRegistered' THEN
        -- the key is folded by the domain (Username::key), not by the
        -- database's locale
        PERFORM claim_unique_key('username',
            NEW.payload -> 'AccountRegistered' ->> 'username_key', NEW.aggregate_id);
        PERFORM claim_unique_key('account_number',
            NEW.payload -> 'AccountRegistered' ->> 'number', NEW.aggregate_id);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER events_claim_unique_keys
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_claim_unique_keys();

-- Numeric identifiers for surfaces that show integers (allocated by the
-- command side before the command runs; gaps are harmless).
CREATE SEQUENCE account_numbers;
CREATE SEQUENCE chat_room_ids;
CREATE SEQUENCE chat_message_ids;

-- Projector checkpoints: the pair (transaction_id, global_position) of the
-- last applied event, compared as a tuple.
CREATE TABLE projection_checkpoints
(
    name            text PRIMARY KEY,
    last_txid       xid8        NOT NULL DEFAULT '0',
    last_position   bigint      NOT NULL DEFAULT 0,
    events_applied  bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    owner           text,
    failed_position bigint,
    last_error      text,
    failed_at       timestamptz,
    retries         integer     NOT NULL DEFAULT 0
);

-- Identity (issue 3): email, nickname, avatar, presence, sessions, devices,
-- email codes' unique keys and rate-limit counters.

-- Write-side unique keys: usernames and emails, case-folded by the domain.
-- A profile change claims the new key and releases the previous one in the
-- same transaction as its event.
CREATE OR REPLACE FUNCTION events_claim_unique_keys() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    body jsonb;
BEGIN
    IF NEW.aggregate_type <> 'Account' THEN
        RETURN NEW;
    END IF;
    IF NEW.event_type = 'AccountRegistered' THEN
        body := NEW.payload -> 'AccountRegistered';
        IF body ->> 'username_key' IS NOT NULL THEN
            PERFORM claim_unique_key('username', body ->> 'username_key', NEW.aggregate_id);
        END IF;
        IF body ->> 'email_key' IS NOT NULL THEN
            PERFORM claim_unique_key('email', body ->> 'email_key', NEW.aggregate_id);
        END IF;
        PERFORM claim_unique_key('account_number', body ->> 'number', NEW.aggregate_id);
    ELSIF NEW.event_type = 'ProfileUpdated' THEN
        body := NEW.payload -> 'ProfileUpdated';
        IF body ->> 'username_key' IS NOT NULL
           AND body ->> 'username_key' IS DISTINCT FROM body ->> 'previous_username_key' THEN
            DELETE FROM event_store_unique_keys
             WHERE kind = 'username' AND key = body ->> 'previous_username_key'
               AND aggregate_id = NEW.aggregate_id;
            PERFORM claim_unique_key('username', body ->> 'username_key', NEW.aggregate_id);
        END IF;
        IF body ->> 'email_key' IS NOT NULL
           AND body ->> 'email_key' IS DISTINCT FROM body ->> 'previous_email_key' THEN
            DELETE FROM event_store_unique_keys
             WHERE kind = 'email' AND key = body ->> 'previous_email_key'
               AND aggregate_id = NEW.aggregate_id;
            PERFORM claim_unique_key('email', body ->> 'email_key', NEW.aggregate_id);
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- Fixed-window counters for rate limits (login, send_code, login_verify,
-- reset_password; per account and per IP). Operational state shared by all
-- server processes, not a read model: nothing is derived from it.
CREATE TABLE rate_limit_hits
(
    bucket       text        NOT NULL,
    window_start timestamptz NOT NULL,
    hits         integer     NOT NULL,
    PRIMARY KEY (bucket, window_start)
);

-- projection "accounts" (continued)
ALTER TABLE accounts
    ALTER COLUMN username DROP NOT NULL,
    ALTER COLUMN username_lower DROP NOT NULL,
    ADD COLUMN email         text,
    ADD COLUMN email_lower   text UNIQUE,
    ADD COLUMN nickname      text,
    ADD COLUMN avatar        text NOT NULL DEFAULT '',
    ADD COLUMN presence      text NOT NULL DEFAULT 'offline',
    ADD COLUMN invited_by    uuid,
    ADD COLUMN last_login_at timestamptz;

CREATE TABLE account_sessions
(
    session_id uuid PRIMARY KEY,
    account_id uuid        NOT NULL,
    surface    text        NOT NULL,
    device_id  text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    ended_at   timestamptz,
    -- signed_out | displaced | password_changed | password_reset
    end_reason text
);
CREATE INDEX account_sessions_by_account ON account_sessions (account_id);

CREATE TABLE account_devices
(
    account_id uuid        NOT NULL,
    device_id  text        NOT NULL,
    bound_at   timestamptz NOT NULL,
    PRIMARY KEY (account_id, device_id)
);

-- Coin and point ledger (seeds 000 and 002).

-- Every wallet operation id is claimed forever with its event, so a retry
-- long after the wallet forgot it is still caught; an exclusive reference
-- (a card key, a payment) is claimed across all wallets, so it is credited
-- once whoever asks.
CREATE FUNCTION events_claim_wallet_keys() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    body json := NEW.payload -> NEW.event_type;
    ref json := body -> 'reference';
BEGIN
    PERFORM claim_unique_key('wallet_op', NEW.aggregate_id || ':' || (body ->> 'operation_id'),
                             NEW.aggregate_id);
    IF ref IS NOT NULL AND json_typeof(ref) = 'object' AND (ref ->> 'exclusive')::boolean THEN
        PERFORM claim_unique_key('reference', (ref ->> 'kind') || ':' || (ref ->> 'id'),
                                 NEW.aggregate_id);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER events_claim_wallet_keys
    BEFORE INSERT ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'Wallet')
    EXECUTE FUNCTION events_claim_wallet_keys();

-- finds the event an operation id produced (idempotent answers to retries)
CREATE INDEX events_wallet_operation ON events (aggregate_id, ((payload -> event_type ->> 'operation_id')))
    WHERE aggregate_type = 'Wallet';

-- projection "ledger"
CREATE TABLE wallets
(
    account_id uuid        NOT NULL,
    currency   text        NOT NULL,
    balance    bigint      NOT NULL,
    held       bigint      NOT NULL DEFAULT 0,
    entries    bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (account_id, currency)
);

-- one row per wallet event: what the user's history and the auditors see
CREATE TABLE ledger_entries
(
    position       bigint PRIMARY KEY,
    account_id     uuid        NOT NULL,
    currency       text        NOT NULL,
    sequence       bigint      NOT NULL,
    operation_id   text        NOT NULL,
    event_type     text        NOT NULL,
    reason         text        NOT NULL,
    -- signed change of the spendable balance
    amount         bigint      NOT NULL,
    balance_before bigint      NOT NULL,
    balance_after  bigint      NOT NULL,
    counter        text,
    reference      text,
    description    text        NOT NULL,
    created_at     timestamptz NOT NULL,
    actor          text        NOT NULL,
    surface        text        NOT NULL,
    request_id     text        NOT NULL,
    client_ip      text        NOT NULL
);
CREATE INDEX ledger_entries_wallet ON ledger_entries (account_id, currency, position DESC);
CREATE INDEX ledger_entries_time ON ledger_entries (created_at, position);

-- the double-entry legs; per currency they sum to zero
CREATE TABLE ledger_postings
(
    position       bigint   NOT NULL,
    leg            smallint NOT NULL,
    ledger_account text     NOT NULL,
    currency       text     NOT NULL,
    amount         bigint   NOT NULL,
    PRIMARY KEY (position, leg)
);

CREATE TABLE card_keys
(
    card_id         text PRIMARY KEY,
    batch_id        text        NOT NULL,
    points          bigint      NOT NULL,
    expires_at      timestamptz,
    issued_at       timestamptz NOT NULL,
    redeemed_by     uuid,
    redeemed_at     timestamptz,
    redeem_position bigint
);
CREATE INDEX card_keys_batch ON card_keys (batch_id);

CREATE TABLE payment_orders
(
    order_id        uuid PRIMARY KEY,
    account_id      uuid        NOT NULL,
    account_number  bigint      NOT NULL,
    price_minor     bigint      NOT NULL,
    price_currency  text        NOT NULL,
    pay_currency    text        NOT NULL,
    coins           bigint      NOT NULL,
    payment_id      text,
    pay_address     text,
    pay_amount      text,
    actually_paid   text,
    status          text        NOT NULL,
    failure         text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    credited_at     timestamptz,
    credit_position bigint
);
CREATE INDEX payment_orders_account ON payment_orders (account_id, created_at DESC);
-- finished orders not credited yet (the reconciler's work list)
CREATE INDEX payment_orders_uncredited ON payment_orders (finished_at)
    WHERE finished_at IS NOT NULL AND credited_at IS NULL;

-- Chat8's social half (seed 003): friends, direct messages, files, keys.

-- integer ids the seed shows (drawn before the command; gaps are harmless)
CREATE SEQUENCE friend_request_ids;
CREATE SEQUENCE direct_message_ids;

-- projection "social"
CREATE TABLE friendships
(
    user_id   bigint      NOT NULL,
    friend_id bigint      NOT NULL,
    since     timestamptz NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);

CREATE TABLE friend_requests
(
    request_id bigint PRIMARY KEY,
    from_id    bigint      NOT NULL,
    to_id      bigint      NOT NULL,
    message    text        NOT NULL,
    status     text        NOT NULL,
    created_at timestamptz NOT NULL,
    handled_at timestamptz
);
CREATE INDEX friend_requests_to ON friend_requests (to_id, status);

CREATE TABLE direct_messages
(
    message_id          bigint PRIMARY KEY,
    -- '<lower number>:<higher number>'
    pair                text        NOT NULL,
    sender_id           bigint      NOT NULL,
    receiver_id         bigint      NOT NULL,
    message_type        text        NOT NULL,
    -- NULL once deleted for both (the log keeps the tombstone event)
    content             text,
    is_encrypted        boolean     NOT NULL,
    sent_at             timestamptz NOT NULL,
    deleted             boolean     NOT NULL DEFAULT false,
    hidden_for_receiver boolean     NOT NULL DEFAULT false
);
CREATE INDEX direct_messages_pair ON direct_messages (pair, message_id);

-- a read mark covers every message up to `up_to` sent to the reader
CREATE TABLE direct_read_marks
(
    pair      text   NOT NULL,
    reader_id bigint NOT NULL,
    up_to     bigint NOT NULL,
    PRIMARY KEY (pair, reader_id)
);

-- who may read a chat file (its bytes are in `blobs`)
CREATE TABLE shared_files
(
    sha256       text        NOT NULL,
    sender_id    bigint      NOT NULL,
    receiver_id  bigint      NOT NULL,
    name         text        NOT NULL,
    size         bigint      NOT NULL,
    content_type text        NOT NULL,
    shared_at    timestamptz NOT NULL,
    PRIMARY KEY (sha256, sender_id, receiver_id)
);

CREATE TABLE encryption_keys
(
    user_id               bigint PRIMARY KEY,
    public_key            text        NOT NULL,
    private_key_encrypted text        NOT NULL,
    updated_at            timestamptz NOT NULL
);

-- Chat8's open sockets, per server process, beaten every 10 s (not events:
-- what they decide is, as `PresenceChanged`). Unlogged: after a crash of
-- PostgreSQL the sockets reconnect.
CREATE UNLOGGED TABLE chat8_sockets
(
    node       text        NOT NULL,
    conn_id    bigint      NOT NULL,
    user_id    bigint      NOT NULL,
    account_id uuid        NOT NULL,
    seen_at    timestamptz NOT NULL,
    PRIMARY KEY (node, conn_id)
);
CREATE INDEX chat8_sockets_user ON chat8_sockets (user_id);

-- Read models. Written only by projectors (see projections/), each table owned
-- by one projection; `tidelog projections rebuild` recreates them LIKE these.

-- projection "accounts"
CREATE TABLE accounts
(
    account_id     uuid PRIMARY KEY,
    number         bigint      NOT NULL UNIQUE,
    username       text        NOT NULL,
    username_lower text        NOT NULL UNIQUE,
    password_hash  text        NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

-- projection "roomchat"
CREATE TABLE chat_rooms
(
    room_id       bigint PRIMARY KEY,
    name          text        NOT NULL,
    description   text        NOT NULL,
    created_by    bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    -- incremented per applied message: double application would show here
    message_count bigint      NOT NULL DEFAULT 0
);

CREATE TABLE chat_members
(
    room_id   bigint      NOT NULL,
    user_id   bigint      NOT NULL,
    role      text        NOT NULL,
    joined_at timestamptz NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX chat_members_by_user ON chat_members (user_id, room_id);

CREATE TABLE chat_messages
(
    message_id  bigint PRIMARY KEY,
    room_id     bigint      NOT NULL,
    sender_id   bigint      NOT NULL,
    sender_name text        NOT NULL,
    type        text        NOT NULL,
    content     text        NOT NULL,
    sent_at     timestamptz NOT NULL
);
CREATE INDEX chat_messages_by_room ON chat_messages (room_id, message_id DESC);

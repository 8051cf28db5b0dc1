-- The gift monitor's own collector (issue 28): which process connects
-- which monitored room. Operational state, not history: what was collected
-- is in the events; these rows only say who holds a room's live stream now.
CREATE TABLE bili_collectors
(
    node    text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);

CREATE TABLE bili_collector_leases
(
    room_id         bigint PRIMARY KEY,
    holder          text        NOT NULL,
    expires_at      timestamptz NOT NULL,
    acquired_at     timestamptz NOT NULL,
    connected_since timestamptz,
    last_message_at timestamptz,
    reconnects      bigint      NOT NULL DEFAULT 0,
    messages        bigint      NOT NULL DEFAULT 0,
    last_error      text
);

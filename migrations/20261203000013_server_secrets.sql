-- Secrets the servers of one database share when the environment does not
-- give them (the token key, the card key, the admin, audit and gift-monitor
-- tokens): the first process generates each, the others read it. Not an
-- event, never exposed by any API.
CREATE TABLE server_secrets
(
    name       text PRIMARY KEY,
    value      text        NOT NULL CHECK (length(value) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON server_secrets FROM PUBLIC;

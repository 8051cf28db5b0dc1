-- `event_hash` was declared IMMUTABLE, but `concat_ws`, `convert_to` and
-- `extract(… FROM timestamptz)` are only STABLE, so PostgreSQL would not
-- inline it: every append ran it as a separate SQL-function call, whose
-- body the hash-chain trigger had parsed and planned again in each
-- transaction (`fmgr_sql`: about a tenth of PostgreSQL's time in a profile
-- of room-chat sends). Declared STABLE — what it is — it is inlined into
-- the trigger's cached expression and into `audit verify`'s query. The hash
-- itself is unchanged.
ALTER FUNCTION event_hash(bytea, text, text, bigint, text, text, json, json, timestamptz) STABLE;

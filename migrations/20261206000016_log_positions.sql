-- One number per event, contiguous from 1, in the horizon-safe
-- (transaction_id, global_position) order that every reader uses: the
-- position analysts' KurrentDB-protocol clients see ($all, catch-up
-- subscriptions) and, less one, the event's leaf index in the transparency
-- log. Assigned by the `positions` projection once an event is below the
-- horizon, so no late commit is ever numbered before an earlier one; the
-- order is final then, so a number never changes. Append-only, like the
-- events it numbers.
CREATE TABLE log_positions
(
    position        bigint PRIMARY KEY CHECK (position > 0),
    global_position bigint NOT NULL UNIQUE,
    transaction_id  xid8   NOT NULL
);

CREATE FUNCTION log_positions_reject_change() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'log positions are assigned once: % on log_positions is not allowed', TG_OP
        USING ERRCODE = 'TL003';
END
$$;

CREATE TRIGGER log_positions_append_only
    BEFORE UPDATE OR DELETE ON log_positions
    FOR EACH ROW EXECUTE FUNCTION log_positions_reject_change();

CREATE TRIGGER log_positions_no_truncate
    BEFORE TRUNCATE ON log_positions
    FOR EACH STATEMENT EXECUTE FUNCTION log_positions_reject_change();

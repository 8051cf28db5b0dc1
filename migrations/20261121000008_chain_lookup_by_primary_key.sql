-- The hash-chain trigger looked up the previous event with equalities on
-- (aggregate_type, aggregate_id, sequence). While the table is small (or
-- its statistics are), the plan cached in each session ties the primary
-- key with `events_type_log_order` and may take the latter, which filters
-- every event of the type: measured 20..66 rows removed per append after a
-- few thousand events, and the whole type's events at a million. Asking
-- for the newest earlier event of the stream in primary-key order leaves
-- the primary key the only index that can answer without a sort; the
-- contiguity check stays.
CREATE OR REPLACE FUNCTION events_chain_hash() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    prev bytea;
    prev_sequence bigint;
BEGIN
    IF NEW.sequence > 1 THEN
        SELECT e.hash, e.sequence INTO prev, prev_sequence FROM events e
         WHERE e.aggregate_type = NEW.aggregate_type
           AND e.aggregate_id = NEW.aggregate_id
           AND e.sequence < NEW.sequence
         ORDER BY e.aggregate_type DESC, e.aggregate_id DESC, e.sequence DESC
         LIMIT 1;
        IF prev IS NULL OR prev_sequence <> NEW.sequence - 1 THEN
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

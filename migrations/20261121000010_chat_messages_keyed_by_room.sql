-- Messages are only ever read by room, newest first (a page, or the page
-- before a message id). With `message_id` as the primary key and a
-- separate `(room_id, message_id)` index, PostgreSQL sometimes chose to walk
-- the primary key backwards and filter the room for an older page — on the
-- benchmark's database (many small rooms beside one big one) that read
-- about one row per room for every message returned. Keyed by
-- `(room_id, message_id)` there is one index to choose and one fewer to keep
-- up on every insert. Message ids stay unique: they come from one sequence.
ALTER TABLE chat_messages DROP CONSTRAINT chat_messages_pkey,
                          ADD PRIMARY KEY (room_id, message_id);

-- The room index is named `chat_messages_by_room` from migration 2, but a
-- rebuild's swap recreates it under PostgreSQL's generated name; drop
-- whichever non-unique index the table has.
DO $$
DECLARE
    ix regclass;
BEGIN
    FOR ix IN SELECT indexrelid::regclass
                FROM pg_index
               WHERE indrelid = 'chat_messages'::regclass AND NOT indisunique
    LOOP
        EXECUTE format('DROP INDEX %s', ix);
    END LOOP;
END
$$;

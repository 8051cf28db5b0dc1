-- No NOTIFY inside append transactions. A transaction that has NOTIFYed
-- takes one cluster-wide lock at commit and holds it through its WAL flush,
-- so every command's commit queued behind the previous one's fsync — no
-- group commit (measured: room-chat sends at 64 clients fell to ~100/s,
-- sessions waiting on `Lock:object`). The server now wakes its own
-- projectors in-process and tells other processes with a coalesced NOTIFY
-- sent after the append commits; other writers are picked up by the
-- projectors' 500 ms poll.
DROP TRIGGER events_notify ON events;
DROP FUNCTION events_notify();

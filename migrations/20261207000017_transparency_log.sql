-- The transparency log (src/tlog): an RFC 6962 Merkle tree over every
-- event, leaf i being the event numbered i + 1 in log_positions.
--
-- tlog_hashes holds complete-subtree hashes at the levels C2SP tlog-tiles
-- serves (0, 8, 16, ...: level 0 = the leaf hashes), as runs: a run is the
-- hashes of nodes first, first + 1, ... of one level, concatenated (32 bytes
-- each), appended by one integration batch, within one tile. Every other complete subtree is
-- computed from the level below it that is a multiple of 8 (at most 128
-- hashes). Append-only: a run must start where the level's last run ends,
-- and nothing is ever updated or deleted.
CREATE TABLE tlog_hashes
(
    level  smallint NOT NULL CHECK (level >= 0 AND level % 8 = 0 AND level < 64),
    first  bigint   NOT NULL CHECK (first >= 0),
    hashes bytea    NOT NULL CHECK (length(hashes) > 0 AND length(hashes) % 32 = 0),
    PRIMARY KEY (level, first),
    -- a run never crosses a tile boundary: at most 256 hashes, one tile
    CHECK (first % 256 + length(hashes) / 32 <= 256)
);

CREATE FUNCTION tlog_hashes_contiguous() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    next_first bigint;
BEGIN
    SELECT h.first + length(h.hashes) / 32 INTO next_first
      FROM tlog_hashes h WHERE h.level = NEW.level
     ORDER BY h.first DESC LIMIT 1;
    IF coalesce(next_first, 0) <> NEW.first THEN
        RAISE EXCEPTION 'tlog_hashes level %: a run must start at %, not %',
            NEW.level, coalesce(next_first, 0), NEW.first USING ERRCODE = 'TL003';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER tlog_hashes_contiguous
    BEFORE INSERT ON tlog_hashes
    FOR EACH ROW EXECUTE FUNCTION tlog_hashes_contiguous();

-- The integrator's own checkpoint: the tree's size and root, moved in the
-- same transaction as the hashes it appends (compare-and-set on size). It
-- only grows.
CREATE TABLE tlog_head
(
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    size       bigint      NOT NULL CHECK (size >= 0),
    root       bytea       NOT NULL CHECK (length(root) = 32),
    updated_at timestamptz NOT NULL DEFAULT now(),
    owner      text
);
INSERT INTO tlog_head (size, root) VALUES (0, sha256(''::bytea));

CREATE FUNCTION tlog_head_only_grows() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.size < OLD.size OR (NEW.size = OLD.size AND NEW.root <> OLD.root) THEN
        RAISE EXCEPTION 'the transparency log only grows: size % -> %', OLD.size, NEW.size
            USING ERRCODE = 'TL003';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER tlog_head_only_grows
    BEFORE UPDATE ON tlog_head
    FOR EACH ROW EXECUTE FUNCTION tlog_head_only_grows();

-- Every checkpoint the log signed (a C2SP signed note), and the witnesses'
-- cosignature lines as they came back. Copies for serving: what proves
-- anything is the copies outside (auditors' archives, witnesses).
CREATE TABLE tlog_checkpoints
(
    size      bigint PRIMARY KEY CHECK (size >= 0),
    note      text        NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tlog_cosignatures
(
    size        bigint      NOT NULL REFERENCES tlog_checkpoints (size),
    -- the witness's key name and key id, as in its note signature
    witness     text        NOT NULL,
    line        text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (size, witness)
);

CREATE FUNCTION tlog_reject_change() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'the transparency log is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'TL003';
END
$$;

CREATE TRIGGER tlog_hashes_append_only BEFORE UPDATE OR DELETE ON tlog_hashes
    FOR EACH ROW EXECUTE FUNCTION tlog_reject_change();
CREATE TRIGGER tlog_hashes_no_truncate BEFORE TRUNCATE ON tlog_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION tlog_reject_change();
CREATE TRIGGER tlog_head_no_delete BEFORE DELETE ON tlog_head
    FOR EACH ROW EXECUTE FUNCTION tlog_reject_change();
CREATE TRIGGER tlog_head_no_truncate BEFORE TRUNCATE ON tlog_head
    FOR EACH STATEMENT EXECUTE FUNCTION tlog_reject_change();
CREATE TRIGGER tlog_checkpoints_append_only BEFORE UPDATE OR DELETE ON tlog_checkpoints
    FOR EACH ROW EXECUTE FUNCTION tlog_reject_change();
CREATE TRIGGER tlog_checkpoints_no_truncate BEFORE TRUNCATE ON tlog_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION tlog_reject_change();
CREATE TRIGGER tlog_cosignatures_append_only BEFORE UPDATE OR DELETE ON tlog_cosignatures
    FOR EACH ROW EXECUTE FUNCTION tlog_reject_change();
CREATE TRIGGER tlog_cosignatures_no_truncate BEFORE TRUNCATE ON tlog_cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION tlog_reject_change();

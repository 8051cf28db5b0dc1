-- Names that pass for each other (issue 32): the accounts read model keeps
-- each account's username and nickname as their confusable skeleton
-- (aggregates::values::name_skeleton: NFKC, invisible characters dropped,
-- case folded, Unicode TR 39 confusables mapped), so a guest cannot chat
-- under `ｃａｔｓｅｃ` or `cat<U+200B>sec` when `catsec` is registered.
ALTER TABLE accounts
    ADD COLUMN username_skeleton text,
    ADD COLUMN nickname_skeleton text;
CREATE INDEX accounts_username_skeleton ON accounts (username_skeleton);
CREATE INDEX accounts_nickname_skeleton ON accounts (nickname_skeleton);

-- Existing rows get theirs by replaying the log: the `accounts` projection
-- starts again from the beginning (its tables emptied with its checkpoint,
-- in this transaction); sessions and devices come back with it.
TRUNCATE accounts, account_sessions, account_devices;
UPDATE projection_checkpoints
   SET last_txid = '0', last_position = 0, events_applied = 0
 WHERE name = 'accounts';

-- A card sale's writes cut to what some query needs (issue #16). The approval's update
-- changes status, rrn and updated_at_ms, which indexes hold, so it is never HOT: PostgreSQL
-- writes a new row version and a new entry in every index that holds it. Per sale the store
-- wrote 2 heap rows and 16 index entries on transactions (the insert 8: primary key, card
-- identity, by batch, by merchant, pending, by time, daily, by update; the update the same
-- but pending, plus rrn), the entry (row, primary key, by reference), three postings (row,
-- primary key, by account each), and ran six foreign-key triggers (each a look-up that locks
-- the entry's or the account's row: a WAL record of its own). After this migration: 14 index
-- entries on transactions, and no trigger.
--
-- 1. The index by (terminal, batch) repeated the card identity's first two columns: the
--    identity now covers every row that names a terminal (a NULL STAN never collides, as
--    before), so "a terminal's transactions", "a batch's transactions" and "a terminal's
--    latest STAN" read it instead.
DROP INDEX transactions_card_identity;
DROP INDEX transactions_by_batch;
CREATE UNIQUE INDEX transactions_card_identity ON transactions (terminal_id, batch_no, stan, mti_class)
    WHERE terminal_id IS NOT NULL;
-- 2. The dashboard reads the roll-up (0017), not a covering index of every payment's status.
--    Reconciliation's day pages (business_date = $1 AND id > $2 ORDER BY id) and a search by
--    dates read the day and id.
DROP INDEX transactions_daily;
CREATE INDEX transactions_by_day ON transactions (business_date, id);
-- 3. No foreign-key triggers on postings: the committer writes a posting only in the
--    transaction that writes its entry and, before it, its account's balance
--    (kassa_store::commit::apply_units asserts it; the store's tests check that no posting
--    lacks either).
ALTER TABLE ledger_postings DROP CONSTRAINT ledger_postings_entry_id_fkey,
    DROP CONSTRAINT ledger_postings_account_key_fkey;

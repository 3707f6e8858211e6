-- A card sale's writes cut to what some query needs (issue #16). Per sale the store wrote, on
-- SQLite, 26 B-tree entries: the pending insert 8 (the row, card identity, by batch, by
-- merchant, pending, by time, daily, by update), the approval 7 (the row; rrn; daily and by
-- update each deleted and re-inserted, since the update changes status and updated_at_ms;
-- pending deleted), the entry 2 (row, by reference) and three postings 3 each (row, primary
-- key, by account), plus two foreign-key look-ups per posting. After this migration: 20 —
-- the insert 7, the approval 5, the entry 2, the postings 2 each — and no look-ups.
--
-- 1. The index by (terminal, batch) repeated the card identity's first two columns: the
--    identity now covers every row that names a terminal (a NULL STAN never collides, as
--    before), so "a terminal's transactions", "a batch's transactions" and "a terminal's
--    latest STAN" read it instead.
DROP INDEX transactions_card_identity;
DROP INDEX transactions_by_batch;
CREATE UNIQUE INDEX transactions_card_identity ON transactions (terminal_id, batch_no, stan, mti_class)
    WHERE terminal_id IS NOT NULL;
-- 2. The dashboard reads the roll-up (0017), not a covering index of every payment's status:
--    that index was deleted and re-inserted by every approval. Reconciliation's day pages
--    (business_date = ? AND id > ? ORDER BY id) and a search by dates read the day alone
--    (SQLite appends the rowid to each entry), which an update never changes.
DROP INDEX transactions_daily;
CREATE INDEX transactions_by_day ON transactions (business_date);
-- 3. Postings keyed by (entry, line) without a rowid beside the key, and without foreign keys:
--    the committer writes a posting only in the transaction that writes its entry and, before
--    it, its account's balance (kassa_store::commit::apply_units asserts it; the store's tests
--    check that no posting lacks either). The append-only trigger and the index by account
--    (payouts read an account's postings) stay.
CREATE TABLE ledger_postings_lean (
    entry_id     INTEGER NOT NULL,
    line         INTEGER NOT NULL,
    account_key  TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor <> 0),
    PRIMARY KEY (entry_id, line)
) STRICT, WITHOUT ROWID;
INSERT INTO ledger_postings_lean (entry_id, line, account_key, amount_minor)
    SELECT entry_id, line, account_key, amount_minor FROM ledger_postings;
DROP TABLE ledger_postings;
ALTER TABLE ledger_postings_lean RENAME TO ledger_postings;
CREATE INDEX ledger_postings_by_account ON ledger_postings (account_key);
CREATE TRIGGER ledger_postings_no_update BEFORE UPDATE ON ledger_postings
BEGIN SELECT RAISE(ABORT, 'ledger postings are never edited'); END;

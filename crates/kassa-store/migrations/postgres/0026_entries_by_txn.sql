-- A journal entry knows the transaction it accounts for (issue #16). The index by reference
-- held every entry, and a card capture's reference starts with its terminal
-- ('card:<terminal>:<batch>:<stan>:<class>'), so each group commit of sales from many
-- terminals dirtied one leaf of it per terminal, as many page writes as the sales' rows
-- themselves. A capture's entry is now posted with its transaction's id, which the gateway
-- reserved before asking the issuer and which grows with time: found by that id, in an index
-- that is appended to. Entries without a transaction (QR trades, refunds, voids, reversals,
-- corrections, payouts, and every entry written before this migration) keep the index by
-- reference. No foreign key: the committer writes the entry in the unit that records its
-- transaction (as for postings, 0020).
ALTER TABLE ledger_entries ADD COLUMN txn_id BIGINT;
DROP INDEX ledger_entries_by_reference;
CREATE INDEX ledger_entries_by_reference ON ledger_entries (reference) WHERE txn_id IS NULL;
CREATE INDEX ledger_entries_by_txn ON ledger_entries (txn_id) WHERE txn_id IS NOT NULL;

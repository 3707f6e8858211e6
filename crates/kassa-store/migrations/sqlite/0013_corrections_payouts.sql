-- Corrections (补登) under maker-checker, and merchant payouts.
--
-- A correction is proposed (by batch upload, by reconciliation or by hand with its evidence)
-- and reviewed once by a second person: its row changes only at the version its reviewer read,
-- so of two reviewers racing exactly one wins. An approval posts one new journal entry whose
-- reference is `correction:<id>`; nothing old is edited.
ALTER TABLE corrections ADD COLUMN channel TEXT;          -- 'card', 'alipay', 'wechat'
ALTER TABLE corrections ADD COLUMN reference TEXT;        -- out_trade_no (QR) or RRN (card)
ALTER TABLE corrections ADD COLUMN amount_minor INTEGER;  -- what the approval credits
ALTER TABLE corrections ADD COLUMN evidence TEXT NOT NULL DEFAULT '';
ALTER TABLE corrections ADD COLUMN proposed_by TEXT NOT NULL DEFAULT 'system';
ALTER TABLE corrections ADD COLUMN reviewed_by TEXT;
ALTER TABLE corrections ADD COLUMN review_reason TEXT;
ALTER TABLE corrections ADD COLUMN reviewed_at_ms INTEGER;
ALTER TABLE corrections ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
CREATE INDEX corrections_by_merchant ON corrections (merchant_id, status);
-- A payment is credited by at most one approved correction, whoever proposed them.
CREATE UNIQUE INDEX corrections_one_approved ON corrections (merchant_id, channel, reference)
    WHERE status = 'approved' AND channel IS NOT NULL AND reference IS NOT NULL;
-- And a host transaction by at most one (batch upload and reconciliation name it by id).
CREATE UNIQUE INDEX corrections_one_approved_per_txn ON corrections (txn_id)
    WHERE status = 'approved' AND txn_id IS NOT NULL;

-- One payout per merchant account (merchant, currency) and business day. A payout first claims
-- its items (the merchant's ledger entries not yet paid out, made before its cut-off) in the
-- same write that creates it, then is posted with the totals the database summed over them.
CREATE TABLE payouts (
    id                 INTEGER PRIMARY KEY,
    merchant_id        TEXT NOT NULL,
    currency           TEXT NOT NULL,
    business_date      TEXT NOT NULL,                 -- YYYY-MM-DD
    schedule           TEXT NOT NULL,                 -- 't1' or 'd0'
    status             TEXT NOT NULL DEFAULT 'open',  -- 'open' (items claimed), 'posted'
    cutoff_ms          INTEGER NOT NULL,              -- items made before this are in it
    gross_minor        INTEGER NOT NULL DEFAULT 0,
    refunds_minor      INTEGER NOT NULL DEFAULT 0,
    fees_minor         INTEGER NOT NULL DEFAULT 0,
    corrections_minor  INTEGER NOT NULL DEFAULT 0,
    net_minor          INTEGER NOT NULL DEFAULT 0,
    item_count         INTEGER NOT NULL DEFAULT 0,
    created_at_ms      INTEGER NOT NULL,
    posted_at_ms       INTEGER,
    UNIQUE (merchant_id, currency, business_date)
) STRICT;

-- Which payout took each ledger entry of a merchant's payable account: at most one, ever.
CREATE TABLE payout_items (
    entry_id     INTEGER NOT NULL REFERENCES ledger_entries (id),
    account_key  TEXT NOT NULL,
    payout_id    INTEGER NOT NULL REFERENCES payouts (id),
    PRIMARY KEY (entry_id, account_key)
) STRICT;
CREATE INDEX payout_items_by_payout ON payout_items (payout_id, entry_id);

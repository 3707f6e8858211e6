-- Reconciliation (对账) runs: one row per import of a channel's statement for a business day,
-- with its counts, and one row per difference found, with its evidence (the statement's line
-- and Kassa's record). A rerun is a new run; what makes a proposal exactly once is the
-- correction's unique key (corrections table), not the run.

CREATE TABLE recon_runs (
    id                    INTEGER PRIMARY KEY,
    channel               TEXT NOT NULL CHECK (channel IN ('alipay', 'wechat', 'card')),
    business_date         TEXT NOT NULL,        -- YYYY-MM-DD
    source                TEXT NOT NULL CHECK (source IN ('download', 'file')),
    status                TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished')),
    lines                 INTEGER NOT NULL DEFAULT 0,
    matched               INTEGER NOT NULL DEFAULT 0,
    amount_mismatch       INTEGER NOT NULL DEFAULT 0,
    paid_not_credited     INTEGER NOT NULL DEFAULT 0,
    missing_at_channel    INTEGER NOT NULL DEFAULT 0,
    status_mismatch       INTEGER NOT NULL DEFAULT 0,
    corrections_proposed  INTEGER NOT NULL DEFAULT 0,
    started_by            TEXT NOT NULL,        -- 'cli', 'schedule', or 'user:<name>'
    started_at_ms         INTEGER NOT NULL,
    finished_at_ms        INTEGER
) STRICT;
CREATE INDEX recon_runs_by_day ON recon_runs (channel, business_date, id);

CREATE TABLE recon_differences (
    run_id                INTEGER NOT NULL REFERENCES recon_runs (id),
    difference_key        TEXT NOT NULL,        -- channel:date:kind:reference[:refund reference]
    class                 TEXT NOT NULL CHECK (class IN ('amount_mismatch', 'paid_not_credited',
                                                         'missing_at_channel', 'status_mismatch')),
    kind                  TEXT NOT NULL CHECK (kind IN ('trade', 'refund')),
    reference             TEXT NOT NULL,        -- Kassa's reference at the channel
    refund_reference      TEXT,
    merchant_id           TEXT,
    out_trade_no          TEXT,                 -- the merchant's number, when Kassa has the trade
    channel_amount_minor  INTEGER,
    kassa_amount_minor    INTEGER,
    currency              TEXT NOT NULL,
    reason                TEXT NOT NULL,
    statement_line_no     INTEGER,
    statement_line        TEXT,                 -- the record as the channel printed it
    kassa_record          TEXT,                 -- JSON: Kassa's record as read, never a secret
    correction_key        TEXT,                 -- the correction proposed for it, if any
    PRIMARY KEY (run_id, difference_key)
) STRICT;

-- Kassa's trades of a business day in reference order: the merge join's other side.
CREATE INDEX qr_trades_by_day_reference ON qr_trades (business_date, reference);
-- Kassa's refunds of a day.
CREATE INDEX qr_refunds_by_created ON qr_refunds (created_at_ms);

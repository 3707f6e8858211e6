-- The web back office: terminal fleet facts and activation deposits (reserved slot).
SELECT 1;

-- terminal fleet and deposits
-- What a terminal last told the host, one row per terminal, upserted when it downloads its
-- parameters from TMS (下载参数) and, batched in the background, when the gateway hears it
-- (sign-in 0800, echo test 0820): never an extra commit on the card path.
CREATE TABLE terminal_contacts (
    terminal_id         TEXT PRIMARY KEY REFERENCES terminals (terminal_id),
    last_contact_ms     INTEGER NOT NULL,
    last_contact_kind   TEXT NOT NULL,      -- 'parameters', 'sign_in', 'echo', 'test'
    software_version    TEXT,               -- as the terminal reports it
    parameters_version  TEXT,               -- the parameters_version it was last given
    parameters_at_ms    INTEGER,
    last_echo_ms        INTEGER,            -- the last echo test (0820 301) heard
    unsent_offline      INTEGER,            -- offline sales waiting on the terminal, as reported
    unsent_reversals    INTEGER             -- reversals waiting on the terminal, as reported
) STRICT;

-- Activation deposits (押金与流水达标): one per terminal, taken through the ledger when set
-- (entry `deposit:<terminal>`) and returned once (entry `deposit-return:<terminal>`) when the
-- merchant's card and QR volume within [starts_at_ms, ends_at_ms) reaches target_minor.
CREATE TABLE terminal_deposits (
    terminal_id     TEXT PRIMARY KEY REFERENCES terminals (terminal_id),
    merchant_id     TEXT NOT NULL REFERENCES merchants (merchant_id),
    currency        TEXT NOT NULL,
    amount_minor    INTEGER NOT NULL CHECK (amount_minor > 0),
    target_minor    INTEGER NOT NULL CHECK (target_minor > 0),
    starts_at_ms    INTEGER NOT NULL,
    ends_at_ms      INTEGER NOT NULL CHECK (ends_at_ms > starts_at_ms),
    status          TEXT NOT NULL DEFAULT 'held' CHECK (status IN ('held', 'returned')),
    created_by      TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    returned_by     TEXT,
    returned_at_ms  INTEGER
) STRICT;
CREATE INDEX terminal_deposits_by_merchant ON terminal_deposits (merchant_id);

-- transactions and dashboard
-- The institution's search across merchants, newest first (the merchant's own search walks
-- the (merchant_id, created_at_ms) indexes of 0001 and 0006).
CREATE INDEX transactions_by_time ON transactions (created_at_ms);
CREATE INDEX qr_trades_by_time ON qr_trades (created_at_ms);
-- A reference typed into the search without a merchant: the merchant's order number and the
-- wallet's trade number (an RRN has its unique index already).
CREATE INDEX qr_trades_by_out_trade_no ON qr_trades (out_trade_no);
CREATE INDEX qr_trades_by_trade_no ON qr_trades (trade_no) WHERE trade_no IS NOT NULL;
-- A card transaction's voids and refunds, on its detail page.
CREATE INDEX transactions_by_original ON transactions (original_id) WHERE original_id IS NOT NULL;
-- The audit trail of one transaction.
CREATE INDEX audit_log_by_target ON audit_log (target);
-- The dashboard's payments per day, channel and outcome: index-only scans of a date range.
CREATE INDEX transactions_daily ON transactions (business_date, merchant_id, kind, channel, status, currency, amount_minor);
CREATE INDEX qr_trades_daily ON qr_trades (business_date, merchant_id, wallet, status, currency, amount_minor,
    created_at_ms, paid_at_ms);
-- QR trades whose outcome is not known yet (a handful among millions).
CREATE INDEX qr_trades_open ON qr_trades (merchant_id) WHERE status IN ('pending', 'waiting');

-- QR trades (扫码支付) and their refunds. A trade is journaled before any wallet is called and
-- moves only through updates at its expected version. Exactly-once lives in the unique indexes:
-- the merchant's out_trade_no per merchant, Kassa's wallet reference, the aggregated code's
-- token, and a refund's out_request_no per trade and its own wallet reference.
-- Per-wallet order states ('none', 'open', 'closing', 'cancelling', 'paid', 'closed',
-- 'reversed') say what Kassa asked of each wallet; the resolver picks rows whose
-- next_check_at_ms has come.

CREATE TABLE qr_trades (
    id                INTEGER PRIMARY KEY,
    merchant_id       TEXT NOT NULL,
    out_trade_no      TEXT NOT NULL,        -- the merchant's number, unique per merchant
    reference         TEXT NOT NULL UNIQUE, -- Kassa's out_trade_no at the wallets
    kind              TEXT NOT NULL CHECK (kind IN ('customer_code', 'merchant_qr')),
    wallet            TEXT CHECK (wallet IN ('alipay', 'wechat')), -- set once a wallet is chosen or has paid
    status            TEXT NOT NULL CHECK (status IN ('pending', 'waiting', 'paid', 'closed', 'failed')),
    amount_minor      INTEGER NOT NULL CHECK (amount_minor > 0),
    currency          TEXT NOT NULL,
    refunded_minor    INTEGER NOT NULL DEFAULT 0,
    refunding_minor   INTEGER NOT NULL DEFAULT 0, -- held by refunds still pending
    fee_minor         INTEGER NOT NULL DEFAULT 0,
    subject           TEXT NOT NULL,
    origin            TEXT NOT NULL CHECK (origin IN ('terminal', 'api', 'gateway')),
    origin_id         TEXT,                 -- the terminal id or the gateway app id
    terminal_id       TEXT,
    operator          TEXT,
    code_digest       TEXT,                 -- SHA-256 of the customer's payment code (never the code)
    qr_token          TEXT UNIQUE,          -- the aggregated code's token (merchant QR)
    alipay_order      TEXT NOT NULL DEFAULT 'none',
    alipay_code       TEXT,                 -- the wallet's own QR content, once precreated
    wechat_order      TEXT NOT NULL DEFAULT 'none',
    wechat_code       TEXT,
    trade_no          TEXT,                 -- the paying wallet's trade number
    paid_at_ms        INTEGER,
    expires_at_ms     INTEGER NOT NULL,     -- the wait deadline (customer code) or the validity end
    next_check_at_ms  INTEGER,              -- when the resolver looks again; NULL when nothing is owed
    checks            INTEGER NOT NULL DEFAULT 0,
    attention         INTEGER NOT NULL DEFAULT 0, -- left to reconciliation after too many checks
    business_date     TEXT NOT NULL,
    version           INTEGER NOT NULL DEFAULT 1,
    created_at_ms     INTEGER NOT NULL,
    updated_at_ms     INTEGER NOT NULL,
    CHECK (refunded_minor >= 0 AND refunding_minor >= 0 AND refunded_minor + refunding_minor <= amount_minor),
    UNIQUE (merchant_id, out_trade_no)
) STRICT;
CREATE INDEX qr_trades_due ON qr_trades (next_check_at_ms) WHERE next_check_at_ms IS NOT NULL;
CREATE INDEX qr_trades_by_merchant ON qr_trades (merchant_id, created_at_ms);

CREATE TABLE qr_refunds (
    id                  INTEGER PRIMARY KEY,
    trade_id            INTEGER NOT NULL REFERENCES qr_trades (id),
    out_request_no      TEXT NOT NULL,        -- the merchant's refund number, unique per trade
    refund_reference    TEXT NOT NULL UNIQUE, -- Kassa's refund number at the wallet
    amount_minor        INTEGER NOT NULL CHECK (amount_minor > 0),
    currency            TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    reason              TEXT NOT NULL,
    fee_returned_minor  INTEGER NOT NULL DEFAULT 0,
    failure             TEXT,                 -- the wallet's refusal, when it failed
    next_check_at_ms    INTEGER,
    checks              INTEGER NOT NULL DEFAULT 0,
    version             INTEGER NOT NULL DEFAULT 1,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    UNIQUE (trade_id, out_request_no)
) STRICT;
CREATE INDEX qr_refunds_due ON qr_refunds (next_check_at_ms) WHERE next_check_at_ms IS NOT NULL;

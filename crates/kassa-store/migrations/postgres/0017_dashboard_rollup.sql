-- The dashboard's roll-up (kassa_store::rollup): what the back office's dashboard counts, folded
-- in the background from the card payments and QR trades changed since a watermark, so that a
-- view reads a few hundred summary rows plus the rows changed since (the tail) instead of
-- 14 days of records. No payment's commit writes here, and no trigger does: the roll-up reads
-- the records by their updated_at_ms.

-- Payments per business day, merchant, channel, currency and outcome, as the roll-up last
-- counted them. merchant_id '*' holds every merchant's together (the institution's view).
CREATE TABLE dashboard_days (
    business_date  TEXT NOT NULL,           -- YYYY-MM-DD
    merchant_id    TEXT NOT NULL,           -- a merchant, or '*' for all
    channel        TEXT NOT NULL,           -- 'card', 'alipay', 'wechat'; '' a merchant QR no wallet was chosen for
    currency       TEXT NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'pending')),
    payments       BIGINT NOT NULL,
    amount_minor   BIGINT NOT NULL,
    PRIMARY KEY (business_date, merchant_id, channel, currency, outcome)
);

-- QR payments per business day, merchant and latency bucket (web::LATENCY_BUCKETS_MS: the
-- time from the trade's creation until the wallet confirmed payment).
CREATE TABLE dashboard_latency (
    business_date  TEXT NOT NULL,
    merchant_id    TEXT NOT NULL,           -- a merchant, or '*' for all
    bucket         BIGINT NOT NULL,
    payments       BIGINT NOT NULL,
    PRIMARY KEY (business_date, merchant_id, bucket)
);

-- How the roll-up counted each payment (its parts that can change after insert), so that a
-- change is folded as the difference between what was counted and what is.
CREATE TABLE dashboard_folded_cards (
    id             BIGINT PRIMARY KEY,      -- transactions.id
    outcome        TEXT NOT NULL
);
CREATE TABLE dashboard_folded_trades (
    id             BIGINT PRIMARY KEY,      -- qr_trades.id
    channel        TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    latency_bucket BIGINT                   -- NULL unless paid
);

-- The watermark of each source: every row whose updated_at_ms is at most folded_to_ms is
-- counted above as it is now; the rows after it are the tail a view adds itself.
CREATE TABLE dashboard_rollup (
    source         TEXT PRIMARY KEY CHECK (source IN ('cards', 'trades')),
    folded_to_ms   BIGINT NOT NULL,
    version        BIGINT NOT NULL,         -- the roll-up moves it only at the version it read
    rolled_at_ms   BIGINT NOT NULL          -- when it last moved (0: never)
);
INSERT INTO dashboard_rollup (source, folded_to_ms, version, rolled_at_ms) VALUES
    ('cards', -9223372036854775808, 0, 0),
    ('trades', -9223372036854775808, 0, 0);

-- The rows changed since a watermark (the roll-up's chunks, in this order; a view's tail).
CREATE INDEX transactions_by_update ON transactions (updated_at_ms, id);
CREATE INDEX qr_trades_by_update ON qr_trades (updated_at_ms, id);

-- The dashboard's pending counts, each an index-only count: QR trades whose outcome is not
-- known yet, of all merchants too (0015's index, on merchant_id alone, served only a merchant's
-- count: the platform's read every trade), refund requests by state (the platform's queue, and a
-- merchant's), and the open differences of a reconciliation run.
DROP INDEX qr_trades_open;
CREATE INDEX qr_trades_open ON qr_trades (status, merchant_id) WHERE status IN ('pending', 'waiting');
CREATE INDEX refund_requests_by_state ON refund_requests (state, merchant_id);
CREATE INDEX recon_differences_open ON recon_differences (run_id, merchant_id) WHERE correction_key IS NULL;

-- Refund requests of the back office and /api/v1 (退款审核 / 退款进度): request, merchant review,
-- institution review above the threshold the request was created under, sent to the channel,
-- succeeded or failed. A request moves only through updates at its expected version (two
-- reviewers racing: one wins). Exactly-once lives in the unique index of the merchant's
-- request_no; a request's channel refund number (`RR` and its id) is unique at the channel.
--
-- refund_holds: per refunded payment (a QR trade or a card sale), what open requests that have
-- not reached the channel yet hold. A new request raises the hold only while the hold plus its
-- amount stays within what the payment still has (captured, minus refunded, minus refunds
-- pending at the channel), in one guarded statement on the hold's row: concurrent requests
-- serialise on that row and can never together exceed the capture.

CREATE TABLE refund_requests (
    id                  INTEGER PRIMARY KEY,
    merchant_id         TEXT NOT NULL,
    request_no          TEXT NOT NULL,       -- the merchant's number, unique per merchant
    target_kind         TEXT NOT NULL CHECK (target_kind IN ('qr', 'card')),
    target_ref          TEXT NOT NULL,       -- out_trade_no (qr) or RRN (card)
    target_id           INTEGER NOT NULL,     -- qr_trades.id or transactions.id
    amount_minor        INTEGER NOT NULL CHECK (amount_minor > 0),
    currency            TEXT NOT NULL,
    reason              TEXT NOT NULL,
    note                TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('requested', 'awaiting_institution_review', 'approved',
                            'sent_to_channel', 'succeeded', 'failed', 'rejected_by_merchant',
                            'rejected_by_institution')),
    review_above_minor  INTEGER NOT NULL,     -- the institution-review threshold it was created under
    requested_by        TEXT NOT NULL,       -- user:<name> or api_key:<id>
    channel_refund_no   TEXT UNIQUE,         -- the refund's number at the channel, once sent
    channel_status      TEXT CHECK (channel_status IN ('pending', 'succeeded', 'failed')),
    channel_failure     TEXT,
    fee_returned_minor  INTEGER,
    next_check_at_ms    INTEGER,              -- when the resolver looks again; NULL when nothing is owed
    checks              INTEGER NOT NULL DEFAULT 0,
    version             INTEGER NOT NULL DEFAULT 1,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    UNIQUE (merchant_id, request_no)
);
CREATE INDEX refund_requests_by_merchant ON refund_requests (merchant_id, created_at_ms, id);
CREATE INDEX refund_requests_by_time ON refund_requests (created_at_ms, id);
CREATE INDEX refund_requests_by_target ON refund_requests (target_kind, target_id);
CREATE INDEX refund_requests_due ON refund_requests (next_check_at_ms) WHERE next_check_at_ms IS NOT NULL;

CREATE TABLE refund_request_steps (
    request_id  INTEGER NOT NULL,                -- refund_requests.id, written in the same unit
    seq         INTEGER NOT NULL,             -- 1 for the request, then one per step
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,               -- the state the step left the request in
    actor       TEXT NOT NULL,               -- user:<name>, api_key:<id>, system
    at_ms       INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
);

CREATE TABLE refund_holds (
    target_kind  TEXT NOT NULL CHECK (target_kind IN ('qr', 'card')),
    target_id    INTEGER NOT NULL,
    held_minor   INTEGER NOT NULL DEFAULT 0 CHECK (held_minor >= 0),
    PRIMARY KEY (target_kind, target_id)
);

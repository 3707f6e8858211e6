-- Merchant notifications of the Alipay-compatible gateway (trade_status_sync): a durable
-- outbox with one row per (trade, status) announced. The trigger below writes the row in the
-- same transaction as the update that turns a gateway trade paid, or closed (closed unpaid, or
-- paid and now refunded in full: Alipay's TRADE_CLOSED), whatever path made that update (a
-- collection, a wallet's notification, the resolver, a cancel, a close or a refund), so a
-- change cannot commit without its notification, and the primary key makes any second insert
-- for the same (trade, status) a no-op. The sender claims a due row by updating it at its
-- version (next_attempt_at_ms becomes its lease), sends, then records what came of it.
-- Only trades whose gateway_trades row (migration 8, written before any wallet is called)
-- names a notify_url get a row: the others cost nothing.
-- States: 'pending' (due at next_attempt_at_ms), 'delivered' (the merchant answered
-- `success`), 'failed' (given up after the last attempt, or a URL the policy refuses: kept for
-- the back office), 'not_requested' (the sender found no notify_url after all).
-- Only UPDATE fires it: a restore's COPY (inserts) brings the outbox rows back as they were.

CREATE TABLE merchant_notifications (
    trade_id            BIGINT NOT NULL REFERENCES qr_trades (id),
    trade_status        TEXT NOT NULL CHECK (trade_status IN ('paid', 'closed')),
    state               TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'not_requested')),
    notify_url          TEXT,                -- copied from the gateway trade when first sent
    attempts            BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at_ms  BIGINT,              -- due time, or a sender's lease; NULL once final
    last_error          TEXT,
    delivered_at_ms     BIGINT,
    version             BIGINT NOT NULL DEFAULT 1,
    created_at_ms       BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    PRIMARY KEY (trade_id, trade_status),
    CHECK ((state = 'pending') = (next_attempt_at_ms IS NOT NULL)),
    CHECK ((state = 'delivered') = (delivered_at_ms IS NOT NULL))
);
CREATE INDEX merchant_notifications_due ON merchant_notifications (next_attempt_at_ms)
    WHERE next_attempt_at_ms IS NOT NULL;
CREATE INDEX merchant_notifications_failed ON merchant_notifications (updated_at_ms) WHERE state = 'failed';

CREATE FUNCTION merchant_notifications_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- (A trigger's WHEN cannot hold a subquery: the notify_url is looked up here.)
    IF EXISTS (SELECT 1 FROM gateway_trades g WHERE g.merchant_id = NEW.merchant_id
            AND g.out_trade_no = NEW.out_trade_no AND g.notify_url IS NOT NULL) THEN
        INSERT INTO merchant_notifications (trade_id, trade_status, state, next_attempt_at_ms, created_at_ms,
            updated_at_ms)
        VALUES (NEW.id,
            CASE WHEN NEW.status = 'paid' AND NEW.refunded_minor >= NEW.amount_minor THEN 'closed' ELSE NEW.status END,
            'pending', NEW.updated_at_ms, NEW.updated_at_ms, NEW.updated_at_ms)
        ON CONFLICT (trade_id, trade_status) DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER merchant_notifications_enqueue AFTER UPDATE OF status, refunded_minor ON qr_trades
    FOR EACH ROW
    WHEN (NEW.origin = 'gateway'
        AND ((NEW.status IN ('paid', 'closed') AND OLD.status IS DISTINCT FROM NEW.status)
            OR (NEW.status = 'paid' AND NEW.refunded_minor >= NEW.amount_minor
                AND OLD.refunded_minor < OLD.amount_minor)))
    EXECUTE FUNCTION merchant_notifications_enqueue();

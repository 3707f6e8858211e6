-- Trades made through the Alipay-compatible gateway (/gateway.do): which app asked for each one
-- and where it wants its notifications. Written before the wallet is called, so the outbox of
-- merchant notifications knows whom to tell even when the process stops right after. One row
-- per merchant trade; the first request that names an out_trade_no sets it, repeats never
-- change it.

CREATE TABLE gateway_trades (
    merchant_id    TEXT NOT NULL,
    out_trade_no   TEXT NOT NULL,
    app_id         TEXT NOT NULL,
    notify_url     TEXT,                 -- the request's top-level notify_url; NULL: none
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, out_trade_no)
);

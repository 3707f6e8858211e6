-- The ISO 8583 gateway's own state. Working keys survive a restart and are shared by every host
-- process on the database (sealed under the master key; the gateway re-imports them into its
-- security module). Issuer reversals owed are journaled before they are attempted, so a crash
-- or a failed attempt is retried.

CREATE TABLE gateway_working_keys (
    terminal_id      TEXT PRIMARY KEY REFERENCES terminals (terminal_id),
    generation       INTEGER NOT NULL,     -- bumped by every sign-in
    keys_sealed      BLOB NOT NULL,        -- field 62 of the 0810, sealed under the master key
    signed_in_at_ms  INTEGER NOT NULL
) STRICT;

CREATE TABLE gateway_issuer_reversals (
    request_id     TEXT PRIMARY KEY,
    txn_id         INTEGER REFERENCES transactions (id),
    reason         TEXT NOT NULL,          -- 'timeout', 'reversal', 'void'
    created_at_ms  INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    done_at_ms     INTEGER
) STRICT;
CREATE INDEX gateway_issuer_reversals_owed ON gateway_issuer_reversals (created_at_ms) WHERE done_at_ms IS NULL;

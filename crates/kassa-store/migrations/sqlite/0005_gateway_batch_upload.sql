-- Batch upload (批上送) and the corrections it proposes. Each 0320 item is stored once per
-- (terminal, batch, STAN): a retransmission finds its row and is replayed. The end message
-- closes the batch once (one row per terminal batch), and every difference between the
-- uploaded set and the host's records becomes a proposed correction (补登) for the back
-- office's maker-checker: a record of what differs, never a change to a transaction or the
-- ledger (an approved correction posts its own new entry later).

CREATE TABLE gateway_batch_items (
    terminal_id      TEXT NOT NULL REFERENCES terminals (terminal_id),
    batch_no         INTEGER NOT NULL,
    stan             INTEGER NOT NULL,     -- field 11: the uploaded transaction's own STAN
    type_code        TEXT NOT NULL,        -- 60.1: the uploaded transaction's kind
    processing_code  TEXT NOT NULL,        -- field 3
    amount_minor     INTEGER NOT NULL CHECK (amount_minor >= 0),
    rrn              TEXT,                 -- field 37
    auth_code        TEXT,                 -- field 38
    pan_masked       TEXT,                 -- field 2, masked; never in clear
    content_digest   TEXT NOT NULL,        -- what a retransmission must match
    received_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (terminal_id, batch_no, stan)
) STRICT;

CREATE TABLE gateway_batch_uploads (
    terminal_id       TEXT NOT NULL REFERENCES terminals (terminal_id),
    batch_no          INTEGER NOT NULL,
    end_stan          INTEGER NOT NULL,    -- field 11 of the end message
    uploaded_count    INTEGER NOT NULL,    -- field 48 of the end message
    stored_count      INTEGER NOT NULL,    -- items the host holds for the batch
    debit_minor       INTEGER NOT NULL,    -- the uploaded set the batch was settled against
    debit_count       INTEGER NOT NULL,
    credit_minor      INTEGER NOT NULL,
    credit_count      INTEGER NOT NULL,
    differences       INTEGER NOT NULL,    -- corrections proposed
    next_batch        INTEGER NOT NULL,    -- 60.2 of the 0330
    closed_at_ms      INTEGER NOT NULL,
    PRIMARY KEY (terminal_id, batch_no)
) STRICT;

CREATE TABLE corrections (
    id                     INTEGER PRIMARY KEY,
    correction_key         TEXT NOT NULL UNIQUE, -- what makes it exactly once
    source                 TEXT NOT NULL,        -- 'batch_upload', 'void_reversal'
    kind                   TEXT NOT NULL,        -- 'on_terminal_only', 'on_host_only', 'amount_differs', …
    status                 TEXT NOT NULL DEFAULT 'proposed', -- maker-checker: 'proposed' until reviewed
    merchant_id            TEXT NOT NULL,
    terminal_id            TEXT,
    batch_no               INTEGER,
    stan                   INTEGER,
    txn_id                 INTEGER REFERENCES transactions (id),
    terminal_amount_minor  INTEGER,
    host_amount_minor      INTEGER,
    currency               TEXT NOT NULL,
    details                TEXT NOT NULL,        -- JSON, never a secret
    created_at_ms          INTEGER NOT NULL
) STRICT;
CREATE INDEX corrections_by_status ON corrections (status, created_at_ms);
CREATE INDEX corrections_by_batch ON corrections (terminal_id, batch_no);

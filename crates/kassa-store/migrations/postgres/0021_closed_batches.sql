-- A settled transaction is derived, not stored (issue #16). Closing a batch updated every
-- decided row of it (settled, version, updated_at_ms, and so the by-update index): 64 terminals
-- settling batches of 7,000 sales at once outlasted the gateway's 5 s database deadline and
-- filled the writer's page cache. A close now writes one row here. A transaction is settled
-- when its column says so (rows closed before this migration) or when its batch is closed,
-- it was created before that close and it is no longer pending. A batch number used again
-- after the six-digit wrap moves closed_at_ms forward at its next close.
CREATE TABLE closed_batches (
    terminal_id   TEXT NOT NULL,
    batch_no      BIGINT NOT NULL,
    closed_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (terminal_id, batch_no)
);

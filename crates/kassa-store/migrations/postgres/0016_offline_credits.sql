-- Offline sales (离线消费) credited to their merchant, one row per terminal identity: the
-- gateway claims it when the terminal uploads the sale (0220), an approved correction (补登)
-- when it credits a sale the terminal never uploaded. Whichever comes second finds the row and
-- credits nothing, so an offline sale is credited exactly once however the two race.
CREATE TABLE offline_credits (
    terminal_id  TEXT NOT NULL,
    batch_no     BIGINT NOT NULL,
    stan         BIGINT NOT NULL,
    credited_by  TEXT NOT NULL,     -- 'upload:<transaction id>' or 'correction:<correction id>'
    at_ms        BIGINT NOT NULL,
    PRIMARY KEY (terminal_id, batch_no, stan)
);

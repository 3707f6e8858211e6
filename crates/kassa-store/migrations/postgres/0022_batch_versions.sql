-- A batch's version (issue #16): bumped in the commit of every insert or update of one of its
-- transactions, and by its close. A close checked that its batch was still as its totals were
-- read by counting the batch's rows and summing their versions inside the writer's
-- transaction: a batch's rows are spread over the whole table, so 64 terminals settling
-- batches of 26,000 sales at once read most of it one close after another, and 54 of the 64
-- outlasted the 5 s database deadline. A close now compares this one number. A batch written
-- before this migration has no row: version 0 until its next write.
CREATE TABLE batch_versions (
    terminal_id  TEXT NOT NULL,
    batch_no     BIGINT NOT NULL,
    version      BIGINT NOT NULL CHECK (version >= 0),
    PRIMARY KEY (terminal_id, batch_no)
);

-- Transaction ids reserved for issuer requests, a block at a time (issue #16): the journal a
-- card capture writes before it asks the issuer. A capture wrote a pending transaction before
-- asking, then changed it to its decision: two commits and two writes of the hot row per sale.
-- Now the gateway takes an id from a block reserved (one commit per block) before it asks,
-- and records the decided transaction under that id in one commit. The block is closed when
-- its last request is decided (or, for a host that stopped, once nothing of it can still be
-- in flight): every id of it handed out without a transaction is owed a reversal at the issuer
-- in the same commit, so an approval the host never recorded is never kept by the issuer.
-- A transaction is inserted under a reserved id only while its block is open (PostgreSQL holds
-- the block's row FOR SHARE until the insert commits; the close waits for it).
CREATE TABLE gateway_id_blocks (
    block_id        BIGINT PRIMARY KEY,     -- its first id
    ranges          TEXT NOT NULL,          -- its ids: 'first-last' ranges, comma separated
    last_id         BIGINT NOT NULL,        -- its highest id
    reserved_at_ms  BIGINT NOT NULL,
    closed_at_ms    BIGINT
);
CREATE INDEX gateway_id_blocks_open ON gateway_id_blocks (reserved_at_ms) WHERE closed_at_ms IS NULL;

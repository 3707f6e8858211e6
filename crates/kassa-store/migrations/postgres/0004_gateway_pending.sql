-- The gateway's crash recovery looks for card requests left pending (journaled, issuer asked,
-- never decided because the host stopped). Few rows are ever pending, so a partial index makes
-- that look-up cheap however large the transactions table grows.
CREATE INDEX gateway_pending_card_txns ON transactions (created_at_ms) WHERE status = 'pending' AND channel = 'card';

-- The integrators' JSON API (/api/v1).
--
-- API keys: stored only as the SHA-256 of the key (0001); here they gain what their owner sees
-- in a list (the key's first characters, when it was last used) and a revocation time: a revoked
-- key is refused from the moment its revocation commits. A key's public id is the first 16 hex
-- digits of its digest (computed, not stored).
ALTER TABLE api_keys ADD COLUMN prefix TEXT;           -- e.g. 'kassa_live_3f9a'; NULL for keys registered before
ALTER TABLE api_keys ADD COLUMN revoked_at_ms BIGINT;
ALTER TABLE api_keys ADD COLUMN last_used_at_ms BIGINT;
CREATE INDEX api_keys_by_merchant ON api_keys (merchant_id, created_at_ms);

-- Idempotency-Key records with Stripe's semantics, one per (merchant scope, client key): claimed
-- 'in_flight' by the request that inserted it (exactly one wins: the primary key), then 'done'
-- with the answer to replay. An in-flight record whose lease passed (its holder crashed) is
-- taken over by a guarded update naming the holder it saw. Records live 24 hours.
CREATE TABLE api_idempotency (
    scope          TEXT NOT NULL,          -- 'merchant:<merchant id>'
    idem_key       TEXT NOT NULL,          -- the client's Idempotency-Key
    request_digest TEXT NOT NULL,          -- SHA-256 of the method, route and canonical JSON body
    holder         TEXT NOT NULL,          -- random token of the request that holds the claim
    state          TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    lease_until_ms BIGINT NOT NULL,       -- in flight: taken over after this
    status         BIGINT,                -- done: the HTTP status answered
    response       TEXT,                   -- done: the JSON body answered
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,       -- forgotten (and purged) after this
    PRIMARY KEY (scope, idem_key),
    CHECK ((state = 'done') = (status IS NOT NULL AND response IS NOT NULL))
);
CREATE INDEX api_idempotency_expiry ON api_idempotency (expires_at_ms);

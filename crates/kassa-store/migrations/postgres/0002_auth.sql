-- Authentication state beside the directory: sessions, one-time codes, refund approvals, the
-- TMS request nonces (replay protection) and rate-limit counters. Tokens, codes and approvals
-- are stored only as digests or Argon2id hashes, never in clear.

CREATE TABLE auth_sessions (
    token_digest  TEXT PRIMARY KEY,       -- hex SHA-256 of the random session token
    subject       TEXT NOT NULL,          -- operator:<merchant>/<code> or user:<name>
    merchant_id   TEXT,
    terminal_id   TEXT,                   -- the terminal an operator session is bound to
    created_at_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL,
    ended_at_ms   BIGINT,
    end_reason    TEXT
);
CREATE INDEX auth_sessions_by_subject ON auth_sessions (subject, ended_at_ms);

CREATE TABLE one_time_codes (
    code_id        TEXT PRIMARY KEY,      -- random public id, names the code in the reset form
    purpose        TEXT NOT NULL,         -- reset_supervisor_password, reset_refund_password, ...
    subject        TEXT NOT NULL,         -- what the code may reset
    code_hash      TEXT NOT NULL,         -- Argon2id of the peppered code
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    attempts       BIGINT NOT NULL DEFAULT 0,
    consumed_at_ms BIGINT
);
CREATE INDEX one_time_codes_by_subject ON one_time_codes (subject, created_at_ms);

CREATE TABLE refund_approvals (
    approval_digest TEXT PRIMARY KEY,     -- hex SHA-256 of the approval the terminal sends in 63
    merchant_id     TEXT NOT NULL,
    terminal_id     TEXT NOT NULL,
    operator_code   TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('void', 'refund')),
    original_rrn    TEXT NOT NULL,
    amount_minor    BIGINT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL,
    consumed_at_ms  BIGINT
);

CREATE TABLE tms_nonces (
    terminal_id TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    seen_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (terminal_id, nonce)
);
CREATE INDEX tms_nonces_by_age ON tms_nonces (terminal_id, seen_at_ms);

CREATE TABLE rate_limits (
    bucket        TEXT PRIMARY KEY,       -- what is limited and its fixed window, e.g. otc:<subject>:<window>
    hits          BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

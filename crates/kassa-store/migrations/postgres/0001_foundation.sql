-- Foundation schema. Money is BIGINT minor units plus a currency code; times are Unix
-- milliseconds; secrets are stored only as hashes or sealed (encrypted) blobs.

CREATE TABLE merchants (
    merchant_id    TEXT PRIMARY KEY CHECK (length(merchant_id) = 15),
    name           TEXT NOT NULL,
    mcc            TEXT NOT NULL,
    currency       TEXT NOT NULL,
    fee_rates      TEXT NOT NULL,          -- JSON {"card": ppm, "alipay": ppm, "wechat": ppm}
    created_at_ms  BIGINT NOT NULL
);

CREATE TABLE terminals (
    terminal_id          TEXT PRIMARY KEY CHECK (length(terminal_id) = 8),
    merchant_id          TEXT NOT NULL REFERENCES merchants (merchant_id),
    refund_password_mode TEXT NOT NULL CHECK (refund_password_mode IN ('device', 'host')),
    mac_algorithm        TEXT NOT NULL CHECK (mac_algorithm IN ('x919', 'unionpay_ecb')),
    tmk_sealed           BYTEA NOT NULL,    -- the terminal master key, sealed under the master key
    tms_secret_sealed    BYTEA NOT NULL,    -- the TMS request-signing credential, sealed
    open_batch           BIGINT NOT NULL DEFAULT 1,
    status               TEXT NOT NULL DEFAULT 'active',
    created_at_ms        BIGINT NOT NULL
);
CREATE INDEX terminals_by_merchant ON terminals (merchant_id);

CREATE TABLE operators (
    merchant_id          TEXT NOT NULL REFERENCES merchants (merchant_id),
    operator_code        TEXT NOT NULL CHECK (length(operator_code) = 2),
    role                 TEXT NOT NULL,
    password_hash        TEXT NOT NULL,    -- Argon2id PHC string of the peppered code
    password_history     TEXT NOT NULL DEFAULT '[]',
    must_change_password BOOLEAN NOT NULL,
    failures             BIGINT NOT NULL DEFAULT 0,
    locked_until_ms      BIGINT,
    password_changed_ms  BIGINT NOT NULL,
    enabled              BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (merchant_id, operator_code)
);

CREATE TABLE merchant_secrets (
    merchant_id   TEXT NOT NULL REFERENCES merchants (merchant_id),
    kind          TEXT NOT NULL CHECK (kind IN ('refund_password', 'paycode_password')),
    secret_hash   TEXT NOT NULL,
    is_default    BOOLEAN NOT NULL,
    history       TEXT NOT NULL DEFAULT '[]',
    changed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, kind)
);

CREATE TABLE backoffice_users (
    username             TEXT PRIMARY KEY,
    role                 TEXT NOT NULL,
    merchant_id          TEXT REFERENCES merchants (merchant_id),
    password_hash        TEXT NOT NULL,
    password_history     TEXT NOT NULL DEFAULT '[]',
    must_change_password BOOLEAN NOT NULL,
    failures             BIGINT NOT NULL DEFAULT 0,
    locked_until_ms      BIGINT,
    password_changed_ms  BIGINT NOT NULL,
    enabled              BOOLEAN NOT NULL DEFAULT TRUE
);

CREATE TABLE api_keys (
    key_digest    TEXT PRIMARY KEY,        -- hex SHA-256 of the random key
    merchant_id   TEXT NOT NULL REFERENCES merchants (merchant_id),
    label         TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE gateway_apps (
    app_id         TEXT PRIMARY KEY,
    merchant_id    TEXT NOT NULL REFERENCES merchants (merchant_id),
    public_key_pem TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL
);

-- Card and QR transactions. Exactly-once lives in the unique indexes: a card request is
-- identified by (terminal, batch, STAN, MTI class); a QR trade by (merchant, out_trade_no).
CREATE TABLE transactions (
    id              BIGINT PRIMARY KEY,
    kind            TEXT NOT NULL,
    status          TEXT NOT NULL,
    channel         TEXT NOT NULL,
    merchant_id     TEXT NOT NULL,
    terminal_id     TEXT,
    batch_no        BIGINT,
    stan            BIGINT,
    mti_class       TEXT,
    out_trade_no    TEXT,
    rrn             TEXT,
    auth_code       TEXT,
    amount_minor    BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency        TEXT NOT NULL,
    refunded_minor  BIGINT NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
    fee_minor       BIGINT NOT NULL DEFAULT 0,
    settled         BOOLEAN NOT NULL DEFAULT FALSE,
    pan_masked      TEXT,
    content_digest  TEXT NOT NULL,         -- what a retransmission must match
    original_id     BIGINT REFERENCES transactions (id),
    response        TEXT NOT NULL DEFAULT '{}', -- the stored answer, replayed to retransmissions
    business_date   TEXT NOT NULL,
    version         BIGINT NOT NULL DEFAULT 1,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL
);
CREATE UNIQUE INDEX transactions_card_identity ON transactions (terminal_id, batch_no, stan, mti_class)
    WHERE terminal_id IS NOT NULL AND stan IS NOT NULL;
CREATE UNIQUE INDEX transactions_trade_identity ON transactions (merchant_id, out_trade_no)
    WHERE out_trade_no IS NOT NULL;
CREATE UNIQUE INDEX transactions_rrn ON transactions (rrn) WHERE rrn IS NOT NULL;
CREATE INDEX transactions_by_batch ON transactions (terminal_id, batch_no);
CREATE INDEX transactions_by_merchant ON transactions (merchant_id, created_at_ms);

CREATE TABLE idempotency_keys (
    scope          TEXT NOT NULL,
    idem_key       TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    response       TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);

CREATE TABLE ledger_accounts (
    account_key   TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    owner         TEXT NOT NULL,
    currency      TEXT NOT NULL,
    balance_minor BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE ledger_entries (
    id            BIGINT PRIMARY KEY,
    kind          TEXT NOT NULL,
    reference     TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX ledger_entries_by_reference ON ledger_entries (reference);

CREATE TABLE ledger_postings (
    entry_id     BIGINT NOT NULL REFERENCES ledger_entries (id),
    line         BIGINT NOT NULL,
    account_key  TEXT NOT NULL REFERENCES ledger_accounts (account_key),
    amount_minor BIGINT NOT NULL CHECK (amount_minor <> 0),
    PRIMARY KEY (entry_id, line)
);
CREATE INDEX ledger_postings_by_account ON ledger_postings (account_key);

-- Append-only, hash-chained: each row's hash covers its content and the previous row's hash.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    source     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);

CREATE TABLE settings (
    scope         TEXT NOT NULL,
    name          TEXT NOT NULL,
    value         TEXT NOT NULL,           -- JSON
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, name)
);

CREATE FUNCTION kassa_refuse_edit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION kassa_refuse_edit();
CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE ON ledger_postings
    FOR EACH ROW EXECUTE FUNCTION kassa_refuse_edit();
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION kassa_refuse_edit();
CREATE SEQUENCE transactions_id_seq;
CREATE SEQUENCE ledger_entries_id_seq;

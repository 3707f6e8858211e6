//! Every read, written once for both backends: the SQL uses `$n` placeholders, which SQLite
//! and PostgreSQL both accept, and rows come back as [`Row`]s converted here by hand.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use kassa_domain::{Channel, Currency, TxnKind, TxnStatus};

use crate::core::records::*;
use crate::core::value::{params, Row, Value};
use crate::{AuditStore, DirectoryStore, LedgerStore, SettingsStore, StoreError, TxnStore};

/// A backend's read side: run a query on some pooled connection.
#[async_trait]
pub(crate) trait Reader: Send + Sync {
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError>;
}

/// The aggregate stores over any [`Reader`].
#[derive(Clone)]
pub(crate) struct SqlReads {
    pub(crate) reader: Arc<dyn Reader>,
}

fn corrupt(what: &str) -> impl Fn(serde_json::Error) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

fn string_list(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(corrupt("password history"))
}

fn json(text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(corrupt("json column"))
}

fn small(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} out of range")))
}

pub(crate) const MERCHANT_COLUMNS: &str = "merchant_id, name, mcc, currency, fee_rates, created_at_ms";

pub(crate) fn merchant(row: &Row) -> Result<MerchantRecord, StoreError> {
    Ok(MerchantRecord {
        merchant_id: row.text(0)?,
        name: row.text(1)?,
        mcc: row.text(2)?,
        currency: row.text(3)?,
        fee_rates: serde_json::from_str(&row.text(4)?).map_err(corrupt("fee rates"))?,
        created_at_ms: row.int(5)?,
    })
}

pub(crate) const TERMINAL_COLUMNS: &str =
    "terminal_id, merchant_id, refund_password_mode, mac_algorithm, tmk_sealed, tms_secret_sealed, open_batch, status, created_at_ms";

pub(crate) fn terminal(row: &Row) -> Result<TerminalRecord, StoreError> {
    let mode = row.text(2)?;
    Ok(TerminalRecord {
        terminal_id: row.text(0)?,
        merchant_id: row.text(1)?,
        refund_password_mode: RefundPasswordMode::parse(&mode)
            .ok_or_else(|| StoreError::Corrupt(format!("refund password mode {mode}")))?,
        mac_algorithm: row.text(3)?,
        tmk_sealed: row.bytes(4)?,
        tms_secret_sealed: row.bytes(5)?,
        open_batch: small(row.int(6)?, "open batch")?,
        status: row.text(7)?,
        created_at_ms: row.int(8)?,
    })
}

pub(crate) const CREDENTIAL_COLUMNS: &str =
    "password_hash, password_history, must_change_password, failures, locked_until_ms, password_changed_ms, enabled";

fn credential(row: &Row, at: usize) -> Result<CredentialRecord, StoreError> {
    Ok(CredentialRecord {
        password_hash: row.text(at)?,
        password_history: string_list(&row.text(at + 1)?)?,
        must_change_password: row.boolean(at + 2)?,
        failures: small(row.int(at + 3)?, "failures")?,
        locked_until_ms: row.opt_int(at + 4)?,
        password_changed_ms: row.int(at + 5)?,
        enabled: row.boolean(at + 6)?,
    })
}

pub(crate) fn operator(row: &Row) -> Result<OperatorRecord, StoreError> {
    Ok(OperatorRecord {
        merchant_id: row.text(0)?,
        operator_code: row.text(1)?,
        role: row.text(2)?,
        credential: credential(row, 3)?,
    })
}

/// A transaction's columns, `settled` derived: its own flag (batches closed before migration
/// 0021 set it), or its batch was closed (`closed_batches`) after it was created and it is no
/// longer pending. So a transaction still pending at the close counts as settled once it is
/// decided: its batch is closed, so it can no longer be voided, only refunded.
const TXN_COLUMNS: &str =
    "id, kind, status, channel, merchant_id, terminal_id, batch_no, stan, mti_class, out_trade_no, rrn, \
     auth_code, amount_minor, currency, refunded_minor, fee_minor, \
     (transactions.settled OR (transactions.status <> 'pending' AND EXISTS (SELECT 1 FROM closed_batches c \
      WHERE c.terminal_id = transactions.terminal_id AND c.batch_no = transactions.batch_no \
      AND c.closed_at_ms >= transactions.created_at_ms))), \
     pan_masked, content_digest, original_id, response, business_date, version, created_at_ms, updated_at_ms";

/// A stored kind; a name the domain does not know is a corrupt row, never a panic.
pub(crate) fn txn_kind(name: &str) -> Result<TxnKind, StoreError> {
    TxnKind::parse(name).ok_or_else(|| StoreError::Corrupt(format!("transaction kind {:?}", clipped(name))))
}

/// A stored status, as [`txn_kind`].
pub(crate) fn txn_status(name: &str) -> Result<TxnStatus, StoreError> {
    TxnStatus::parse(name).ok_or_else(|| StoreError::Corrupt(format!("transaction status {:?}", clipped(name))))
}

/// A stored channel, as [`txn_kind`].
pub(crate) fn channel(name: &str) -> Result<Channel, StoreError> {
    Channel::parse(name).ok_or_else(|| StoreError::Corrupt(format!("channel {:?}", clipped(name))))
}

/// A stored ISO 4217 code, as [`txn_kind`].
pub(crate) fn currency(code: &str) -> Result<Currency, StoreError> {
    Currency::from_code(code).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// At most a few characters of a damaged value, for an error message.
fn clipped(text: &str) -> String {
    text.chars().take(24).collect()
}

fn txn(row: &Row) -> Result<TxnRecord, StoreError> {
    let card_identity = match (row.opt_text(5)?, row.opt_int(6)?, row.opt_int(7)?, row.opt_text(8)?) {
        (Some(terminal_id), Some(batch_no), Some(stan), Some(mti_class)) => Some(
            CardIdentity::new(&terminal_id, small(batch_no, "batch")?, small(stan, "stan")?, &mti_class)
                .map_err(|e| StoreError::Corrupt(format!("card identity: {e}")))?,
        ),
        _ => None,
    };
    let id = row.int(0)?;
    Ok(TxnRecord {
        id,
        kind: txn_kind(&row.text(1)?)?,
        status: txn_status(&row.text(2)?)?,
        channel: channel(&row.text(3)?)?,
        merchant_id: row.text(4)?,
        card_identity,
        out_trade_no: row.opt_text(9)?,
        rrn: row.opt_text(10)?,
        auth_code: row.opt_text(11)?,
        amount_minor: row.int(12)?,
        currency: currency(&row.text(13)?)?,
        refunded_minor: row.int(14)?,
        fee_minor: row.int(15)?,
        settled: row.boolean(16)?,
        pan_masked: row.opt_text(17)?,
        content_digest: row.text(18)?,
        original_id: row.opt_int(19)?,
        response: serde_json::from_str(&row.text(20)?).map_err(corrupt("stored answer"))?,
        business_date: row.text(21)?,
        version: row.int(22)?,
        created_at_ms: row.int(23)?,
        updated_at_ms: row.int(24)?,
    })
}

impl SqlReads {
    pub(crate) async fn one<T>(
        &self,
        sql: &str,
        params: &[Value],
        convert: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let rows = self.reader.query(sql, params).await?;
        rows.first().map(convert).transpose()
    }

    pub(crate) async fn all<T>(
        &self,
        sql: &str,
        params: &[Value],
        convert: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.reader.query(sql, params).await?.iter().map(convert).collect()
    }

    async fn txn_where(&self, condition: &str, params: &[Value]) -> Result<Option<TxnRecord>, StoreError> {
        self.one(&format!("SELECT {TXN_COLUMNS} FROM transactions WHERE {condition}"), params, txn).await
    }

    /// The entries matching `condition` (on `e`, the entry), with their postings, oldest first.
    async fn entries_where(&self, condition: &str, params: &[Value]) -> Result<Vec<StoredEntry>, StoreError> {
        let sql = format!(
            "SELECT e.id, e.kind, e.reference, e.created_at_ms, e.txn_id, p.account_key, p.amount_minor \
             FROM ledger_entries e JOIN ledger_postings p ON p.entry_id = e.id \
             WHERE {condition} ORDER BY e.id, p.line"
        );
        let rows = self.reader.query(&sql, params).await?;
        let mut entries: Vec<StoredEntry> = Vec::new();
        for row in &rows {
            let id = row.int(0)?;
            if entries.last().is_none_or(|e| e.id != id) {
                entries.push(StoredEntry {
                    id,
                    kind: row.text(1)?,
                    reference: row.text(2)?,
                    created_at_ms: row.int(3)?,
                    txn_id: row.opt_int(4)?,
                    postings: Vec::new(),
                });
            }
            if let Some(entry) = entries.last_mut() {
                entry.postings.push((row.text(5)?, row.int(6)?));
            }
        }
        Ok(entries)
    }

    async fn count(&self, table: &str) -> Result<i64, StoreError> {
        let rows = self.reader.query(&format!("SELECT COUNT(*) FROM {table}"), &[]).await?;
        rows.first().map(|r| r.int(0)).transpose().map(|c| c.unwrap_or(0))
    }
}

#[async_trait]
impl DirectoryStore for SqlReads {
    async fn merchant(&self, merchant_id: &str) -> Result<Option<MerchantRecord>, StoreError> {
        self.one(
            &format!("SELECT {MERCHANT_COLUMNS} FROM merchants WHERE merchant_id = $1"),
            &params![merchant_id],
            merchant,
        )
        .await
    }

    async fn terminal(&self, terminal_id: &str) -> Result<Option<TerminalRecord>, StoreError> {
        self.one(
            &format!("SELECT {TERMINAL_COLUMNS} FROM terminals WHERE terminal_id = $1"),
            &params![terminal_id],
            terminal,
        )
        .await
    }

    async fn terminals_of(&self, merchant_id: &str) -> Result<Vec<TerminalRecord>, StoreError> {
        let sql = format!("SELECT {TERMINAL_COLUMNS} FROM terminals WHERE merchant_id = $1 ORDER BY terminal_id");
        self.all(&sql, &params![merchant_id], terminal).await
    }

    async fn operator(&self, merchant_id: &str, operator_code: &str) -> Result<Option<OperatorRecord>, StoreError> {
        let sql = format!("SELECT merchant_id, operator_code, role, {CREDENTIAL_COLUMNS} FROM operators WHERE merchant_id = $1 AND operator_code = $2");
        self.one(&sql, &params![merchant_id, operator_code], operator).await
    }

    async fn operators_of(&self, merchant_id: &str) -> Result<Vec<OperatorRecord>, StoreError> {
        let sql = format!("SELECT merchant_id, operator_code, role, {CREDENTIAL_COLUMNS} FROM operators WHERE merchant_id = $1 ORDER BY operator_code");
        self.all(&sql, &params![merchant_id], operator).await
    }

    async fn backoffice_user(&self, username: &str) -> Result<Option<BackofficeUserRecord>, StoreError> {
        let sql = format!(
            "SELECT username, role, merchant_id, {CREDENTIAL_COLUMNS} FROM backoffice_users WHERE username = $1"
        );
        self.one(&sql, &params![username], |row| {
            Ok(BackofficeUserRecord {
                username: row.text(0)?,
                role: row.text(1)?,
                merchant_id: row.opt_text(2)?,
                credential: credential(row, 3)?,
            })
        })
        .await
    }

    async fn merchant_secret(
        &self,
        merchant_id: &str,
        kind: MerchantSecretKind,
    ) -> Result<Option<MerchantSecretRecord>, StoreError> {
        let sql = "SELECT merchant_id, secret_hash, is_default, history, changed_at_ms FROM merchant_secrets WHERE merchant_id = $1 AND kind = $2";
        let rows = self.reader.query(sql, &params![merchant_id, kind.as_str()]).await?;
        rows.first()
            .map(|row| {
                Ok(MerchantSecretRecord {
                    merchant_id: row.text(0)?,
                    kind,
                    secret_hash: row.text(1)?,
                    is_default: row.boolean(2)?,
                    history: string_list(&row.text(3)?)?,
                    changed_at_ms: row.int(4)?,
                })
            })
            .transpose()
    }

    async fn api_key(&self, key_digest: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let sql = "SELECT key_digest, merchant_id, label, created_at_ms FROM api_keys WHERE key_digest = $1";
        self.one(sql, &params![key_digest], |row| {
            Ok(ApiKeyRecord {
                key_digest: row.text(0)?,
                merchant_id: row.text(1)?,
                label: row.text(2)?,
                created_at_ms: row.int(3)?,
            })
        })
        .await
    }

    async fn gateway_app(&self, app_id: &str) -> Result<Option<GatewayAppRecord>, StoreError> {
        let sql = "SELECT app_id, merchant_id, public_key_pem, created_at_ms FROM gateway_apps WHERE app_id = $1";
        self.one(sql, &params![app_id], |row| {
            Ok(GatewayAppRecord {
                app_id: row.text(0)?,
                merchant_id: row.text(1)?,
                public_key_pem: row.text(2)?,
                created_at_ms: row.int(3)?,
            })
        })
        .await
    }

    async fn counts(&self) -> Result<DirectoryCounts, StoreError> {
        Ok(DirectoryCounts {
            merchants: self.count("merchants").await?,
            terminals: self.count("terminals").await?,
            operators: self.count("operators").await?,
            users: self.count("backoffice_users").await?,
        })
    }
}

#[async_trait]
impl TxnStore for SqlReads {
    async fn txn(&self, id: i64) -> Result<Option<TxnRecord>, StoreError> {
        self.txn_where("id = $1", &params![id]).await
    }

    async fn txn_by_card_identity(&self, identity: &CardIdentity) -> Result<Option<TxnRecord>, StoreError> {
        self.txn_where(
            "terminal_id = $1 AND batch_no = $2 AND stan = $3 AND mti_class = $4",
            &params![
                identity.terminal_id.as_str(),
                identity.batch_no.value(),
                identity.stan.value(),
                identity.mti_class.as_str()
            ],
        )
        .await
    }

    async fn txn_by_trade(&self, merchant_id: &str, out_trade_no: &str) -> Result<Option<TxnRecord>, StoreError> {
        self.txn_where("merchant_id = $1 AND out_trade_no = $2", &params![merchant_id, out_trade_no]).await
    }

    async fn txn_by_rrn(&self, rrn: &str) -> Result<Option<TxnRecord>, StoreError> {
        self.txn_where("rrn = $1", &params![rrn]).await
    }

    async fn txns_in_batch(&self, terminal_id: &str, batch_no: u32) -> Result<Vec<TxnRecord>, StoreError> {
        let sql =
            format!("SELECT {TXN_COLUMNS} FROM transactions WHERE terminal_id = $1 AND batch_no = $2 ORDER BY id");
        self.all(&sql, &params![terminal_id, batch_no], txn).await
    }

    async fn idempotency(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let sql = "SELECT scope, idem_key, request_digest, response, created_at_ms FROM idempotency_keys WHERE scope = $1 AND idem_key = $2";
        self.one(sql, &params![scope, key], |row| {
            Ok(IdempotencyRecord {
                scope: row.text(0)?,
                key: row.text(1)?,
                request_digest: row.text(2)?,
                response: json(&row.text(3)?)?,
                created_at_ms: row.int(4)?,
            })
        })
        .await
    }
}

#[async_trait]
impl LedgerStore for SqlReads {
    async fn balance(&self, account_key: &str) -> Result<i64, StoreError> {
        let rows = self
            .reader
            .query("SELECT balance_minor FROM ledger_accounts WHERE account_key = $1", &params![account_key])
            .await?;
        rows.first().map(|r| r.int(0)).transpose().map(|b| b.unwrap_or(0))
    }

    async fn balances(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.all("SELECT account_key, balance_minor FROM ledger_accounts ORDER BY account_key", &[], |row| {
            Ok((row.text(0)?, row.int(1)?))
        })
        .await
    }

    async fn entries_for(&self, reference: &str) -> Result<Vec<StoredEntry>, StoreError> {
        self.entries_where("e.reference = $1 AND e.txn_id IS NULL", &params![reference]).await
    }

    async fn entries_of_txn(&self, txn_id: i64) -> Result<Vec<StoredEntry>, StoreError> {
        self.entries_where("e.txn_id = $1", &params![txn_id]).await
    }

    async fn check(&self) -> Result<LedgerCheck, StoreError> {
        let entries = self.count("ledger_entries").await?;
        let unbalanced_entries = self
            .all(
                "SELECT p.entry_id FROM ledger_postings p JOIN ledger_accounts a ON a.account_key = p.account_key \
                 GROUP BY p.entry_id, a.currency HAVING SUM(p.amount_minor) <> 0 ORDER BY p.entry_id",
                &[],
                |row| row.int(0),
            )
            .await?;
        let balance_mismatches = self
            .all(
                "SELECT a.account_key FROM ledger_accounts a LEFT JOIN \
                 (SELECT account_key, SUM(amount_minor) AS total FROM ledger_postings GROUP BY account_key) s \
                 ON s.account_key = a.account_key WHERE a.balance_minor <> COALESCE(s.total, 0) ORDER BY a.account_key",
                &[],
                |row| row.text(0),
            )
            .await?;
        let mut trial_balance = BTreeMap::new();
        // Summed in Rust with checked arithmetic: the database's SUM type differs per backend.
        for (currency, balance) in self
            .all("SELECT currency, balance_minor FROM ledger_accounts", &[], |r| Ok((r.text(0)?, r.int(1)?)))
            .await?
        {
            let sum: &mut i64 = trial_balance.entry(currency).or_default();
            *sum = sum.checked_add(balance).ok_or_else(|| StoreError::Corrupt("trial balance overflows".into()))?;
        }
        Ok(LedgerCheck { entries, unbalanced_entries, balance_mismatches, trial_balance })
    }
}

#[async_trait]
impl AuditStore for SqlReads {
    async fn audit_records(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        self.all(
            "SELECT seq, at_ms, actor, action, target, source, reason, details, prev_hash, hash FROM audit_log \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
            &params![after_seq, limit],
            |row| {
                Ok(AuditRecord {
                    seq: row.int(0)?,
                    event: AuditEvent {
                        at_ms: row.int(1)?,
                        actor: row.text(2)?,
                        action: row.text(3)?,
                        target: row.text(4)?,
                        source: row.text(5)?,
                        reason: row.text(6)?,
                        details: json(&row.text(7)?)?,
                    },
                    prev_hash: row.text(8)?,
                    hash: row.text(9)?,
                })
            },
        )
        .await
    }
}

#[async_trait]
impl SettingsStore for SqlReads {
    async fn setting(&self, scope: &str, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let rows = self
            .reader
            .query("SELECT value FROM settings WHERE scope = $1 AND name = $2", &params![scope, name])
            .await?;
        rows.first().map(|r| json(&r.text(0)?)).transpose()
    }
}

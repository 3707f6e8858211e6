//! The terminal fleet and activation deposits (押金与流水达标) of the back office. Reads through
//! [`FleetStore`] (`store.fleet()`), writes through the constructors below, which build
//! [`Guard`]s and [`WriteOp`]s for the one write path.
//!
//! A terminal's contact facts (`terminal_contacts`) are upserted by the services that hear it —
//! TMS when it downloads its parameters, the ISO 8583 gateway its sign-ins and echo tests (kept
//! in memory and written every few seconds in one unit), the test transaction — never as an
//! extra commit on the card path. What the fleet page shows besides them is read from what the
//! host records anyway: the sign-in's working keys (`gateway_working_keys`), the last
//! transaction, the open batch and the card requests still pending.
//!
//! A deposit is one row per terminal; [`take_deposit`] (a guard: only if the terminal has none)
//! goes with its journal entry, [`return_deposit`] (a guard: only from `held`) with the entry
//! that gives it back, so each entry is posted exactly once whoever presses the button.
//! Every statement uses its `$n` placeholders in ascending order of first appearance.

use async_trait::async_trait;

use crate::core::queries::SqlReads;
use crate::core::unit::{Guard, Statement, WriteOp};
use crate::core::value::{params, Row};
use crate::{MerchantRecord, StoreError};

/// The most terminals one fleet page lists.
pub const FLEET_ROWS_MAX: i64 = 1_000;

/// What the host knows of one terminal's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRow {
    /// The terminal.
    pub terminal_id: String,
    /// Its merchant.
    pub merchant_id: String,
    /// `active` or `disabled`.
    pub status: String,
    /// The batch the host considers open.
    pub open_batch: u32,
    /// The latest of every contact below, Unix milliseconds.
    pub last_contact_ms: Option<i64>,
    /// What that latest contact was: `parameters`, `sign_in`, `echo`, `test` (from
    /// `terminal_contacts`), or `transaction`.
    pub last_contact_kind: Option<String>,
    /// The software version it reported.
    pub software_version: Option<String>,
    /// The parameters version it was last given.
    pub parameters_version: Option<String>,
    /// When it last downloaded its parameters, Unix milliseconds.
    pub parameters_at_ms: Option<i64>,
    /// The last echo test heard, Unix milliseconds.
    pub last_echo_ms: Option<i64>,
    /// Offline sales waiting on the terminal, as it reported.
    pub unsent_offline: Option<i64>,
    /// Reversals waiting on the terminal, as it reported.
    pub unsent_reversals: Option<i64>,
    /// Its last ISO 8583 sign-in (0800), Unix milliseconds.
    pub signed_in_at_ms: Option<i64>,
    /// Its last transaction, Unix milliseconds.
    pub last_txn_ms: Option<i64>,
    /// Its card requests the host still holds undecided.
    pub pending_txns: i64,
}

/// A back-office user as the users' list shows it (no password material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserListRow {
    /// Login name.
    pub username: String,
    /// `institution_admin`, `institution_reviewer`, `merchant_owner` or `merchant_staff`.
    pub role: String,
    /// The merchant of a merchant role.
    pub merchant_id: Option<String>,
    /// Whether the account may sign in at all.
    pub enabled: bool,
    /// Whether the password must be changed at the next sign-in.
    pub must_change_password: bool,
    /// Consecutive failed sign-ins.
    pub failures: i64,
    /// Locked until, Unix milliseconds.
    pub locked_until_ms: Option<i64>,
    /// Its last sign-in (the start of its latest session), Unix milliseconds.
    pub last_sign_in_ms: Option<i64>,
}

/// A contact heard from a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The terminal.
    pub terminal_id: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// `parameters`, `sign_in`, `echo` or `test`.
    pub kind: &'static str,
    /// The software version it reported, if it did.
    pub software_version: Option<String>,
    /// The parameters version it was given (a parameters download).
    pub parameters_version: Option<String>,
    /// Offline sales it still holds, if it said.
    pub unsent_offline: Option<i64>,
    /// Reversals it still holds, if it said.
    pub unsent_reversals: Option<i64>,
}

/// Where a deposit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepositStatus {
    /// Taken; not given back yet.
    Held,
    /// Given back (its entry is posted).
    Returned,
}

impl DepositStatus {
    /// `held` or `returned`.
    pub fn as_str(self) -> &'static str {
        match self {
            DepositStatus::Held => "held",
            DepositStatus::Returned => "returned",
        }
    }

    /// The status of a stored name.
    pub fn parse(text: &str) -> Option<DepositStatus> {
        match text {
            "held" => Some(DepositStatus::Held),
            "returned" => Some(DepositStatus::Returned),
            _ => None,
        }
    }
}

/// A terminal's activation deposit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositRecord {
    /// The terminal.
    pub terminal_id: String,
    /// Its merchant.
    pub merchant_id: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The deposit, minor units.
    pub amount_minor: i64,
    /// The volume that earns it back, minor units.
    pub target_minor: i64,
    /// The period's start, Unix milliseconds.
    pub starts_at_ms: i64,
    /// The period's end (exclusive), Unix milliseconds.
    pub ends_at_ms: i64,
    /// Held or returned.
    pub status: DepositStatus,
    /// Who set it (`user:<name>`).
    pub created_by: String,
    /// When, Unix milliseconds.
    pub created_at_ms: i64,
    /// Who returned it.
    pub returned_by: Option<String>,
    /// When, Unix milliseconds.
    pub returned_at_ms: Option<i64>,
}

/// The reference of the journal entry that takes a terminal's deposit.
pub fn deposit_reference(terminal_id: &str) -> String {
    format!("deposit:{terminal_id}")
}

/// The reference of the journal entry that returns it.
pub fn deposit_return_reference(terminal_id: &str) -> String {
    format!("deposit-return:{terminal_id}")
}

/// The prefix of the `out_trade_no` of a test transaction (模拟交易): kept out of deposit
/// volumes.
pub const TEST_TRADE_PREFIX: &str = "TEST";

/// Reads of the fleet and deposits.
#[async_trait]
pub trait FleetStore: Send + Sync {
    /// The merchants by id, at most `limit`.
    async fn merchants(&self, limit: i64) -> Result<Vec<MerchantRecord>, StoreError>;
    /// The fleet: every terminal (of `merchant_id`, when given) by id, at most `limit`.
    async fn fleet(&self, merchant_id: Option<&str>, limit: i64) -> Result<Vec<FleetRow>, StoreError>;
    /// A terminal's deposit.
    async fn deposit(&self, terminal_id: &str) -> Result<Option<DepositRecord>, StoreError>;
    /// The deposits (of `merchant_id`, when given) by terminal, at most `limit`.
    async fn deposits(&self, merchant_id: Option<&str>, limit: i64) -> Result<Vec<DepositRecord>, StoreError>;
    /// A merchant's captured card and QR volume in `currency` within `[from_ms, to_ms)`, minor
    /// units: approved sales, completions, offline sales and QR payments less what was refunded
    /// of them; test transactions excluded.
    async fn volume(&self, merchant_id: &str, currency: &str, from_ms: i64, to_ms: i64) -> Result<i64, StoreError>;
    /// The back-office users of a merchant `(username, role)`, by name, at most `limit`.
    async fn users_of(&self, merchant_id: &str, limit: i64) -> Result<Vec<(String, String)>, StoreError>;
    /// The back-office users (of `merchant_id`, when given) whose name sorts after `after`, by
    /// name, at most `limit`: one keyset page of the users' list.
    async fn user_list(
        &self,
        merchant_id: Option<&str>,
        after: &str,
        limit: i64,
    ) -> Result<Vec<UserListRow>, StoreError>;
    /// When a setting a terminal downloads with its parameters last changed for a merchant
    /// (its terminal parameters, payment-code settings or terminal password policy), Unix
    /// milliseconds: a terminal that downloaded before then gets the change at its next contact.
    async fn parameters_changed_ms(&self, merchant_id: &str) -> Result<Option<i64>, StoreError>;
}

/// The settings a terminal downloads with its parameters (下载参数).
pub const PARAMETER_SETTINGS: [&str; 3] = ["terminal_parameters", "paycode_settings", "terminal_password_policy"];

const DEPOSIT_COLUMNS: &str = "terminal_id, merchant_id, currency, amount_minor, target_minor, starts_at_ms, \
     ends_at_ms, status, created_by, created_at_ms, returned_by, returned_at_ms";

fn deposit(row: &Row) -> Result<DepositRecord, StoreError> {
    let status = row.text(7)?;
    Ok(DepositRecord {
        terminal_id: row.text(0)?,
        merchant_id: row.text(1)?,
        currency: row.text(2)?,
        amount_minor: row.int(3)?,
        target_minor: row.int(4)?,
        starts_at_ms: row.int(5)?,
        ends_at_ms: row.int(6)?,
        status: DepositStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("deposit status: {status:?}")))?,
        created_by: row.text(8)?,
        created_at_ms: row.int(9)?,
        returned_by: row.opt_text(10)?,
        returned_at_ms: row.opt_int(11)?,
    })
}

fn merchant(row: &Row) -> Result<MerchantRecord, StoreError> {
    let fee_rates = row.text(4)?;
    Ok(MerchantRecord {
        merchant_id: row.text(0)?,
        name: row.text(1)?,
        mcc: row.text(2)?,
        currency: row.text(3)?,
        fee_rates: serde_json::from_str(&fee_rates).map_err(|e| StoreError::Corrupt(format!("fee rates: {e}")))?,
        created_at_ms: row.int(5)?,
    })
}

fn fleet_row(row: &Row) -> Result<FleetRow, StoreError> {
    let open_batch = row.int(3)?;
    let contact = row.opt_int(4)?;
    let signed_in = row.opt_int(12)?;
    let last_txn = row.opt_int(13)?;
    let last_contact_ms = [contact, signed_in, last_txn].into_iter().flatten().max();
    // The kind of the latest: a recorded contact when none is later (a sign-in's contact and
    // its working keys carry the same time), else the sign-in or the transaction.
    let last_contact_kind = match last_contact_ms {
        None => None,
        Some(at) if contact == Some(at) => row.opt_text(5)?,
        Some(at) if signed_in == Some(at) => Some("sign_in".to_owned()),
        Some(_) => Some("transaction".to_owned()),
    };
    Ok(FleetRow {
        terminal_id: row.text(0)?,
        merchant_id: row.text(1)?,
        status: row.text(2)?,
        open_batch: u32::try_from(open_batch).map_err(|_| StoreError::Corrupt(format!("open batch {open_batch}")))?,
        last_contact_ms,
        last_contact_kind,
        software_version: row.opt_text(6)?,
        parameters_version: row.opt_text(7)?,
        parameters_at_ms: row.opt_int(8)?,
        last_echo_ms: row.opt_int(9)?,
        unsent_offline: row.opt_int(10)?,
        unsent_reversals: row.opt_int(11)?,
        signed_in_at_ms: signed_in,
        last_txn_ms: last_txn,
        pending_txns: row.int(14)?,
    })
}

#[async_trait]
impl FleetStore for SqlReads {
    async fn merchants(&self, limit: i64) -> Result<Vec<MerchantRecord>, StoreError> {
        self.all(
            "SELECT merchant_id, name, mcc, currency, fee_rates, created_at_ms FROM merchants ORDER BY merchant_id LIMIT $1",
            &params![limit],
            merchant,
        )
        .await
    }

    async fn fleet(&self, merchant_id: Option<&str>, limit: i64) -> Result<Vec<FleetRow>, StoreError> {
        let sql = "SELECT t.terminal_id, t.merchant_id, t.status, t.open_batch, c.last_contact_ms, \
                   c.last_contact_kind, c.software_version, c.parameters_version, c.parameters_at_ms, \
                   c.last_echo_ms, c.unsent_offline, c.unsent_reversals, k.signed_in_at_ms, \
                   (SELECT MAX(x.created_at_ms) FROM transactions x WHERE x.terminal_id = t.terminal_id), \
                   (SELECT COUNT(*) FROM transactions x WHERE x.terminal_id = t.terminal_id AND x.status = 'pending') \
                   FROM terminals t LEFT JOIN terminal_contacts c ON c.terminal_id = t.terminal_id \
                   LEFT JOIN gateway_working_keys k ON k.terminal_id = t.terminal_id \
                   WHERE ($1 = '' OR t.merchant_id = $2) ORDER BY t.terminal_id LIMIT $3";
        let merchant = merchant_id.unwrap_or("");
        self.all(sql, &params![merchant, merchant, limit], fleet_row).await
    }

    async fn deposit(&self, terminal_id: &str) -> Result<Option<DepositRecord>, StoreError> {
        let sql = format!("SELECT {DEPOSIT_COLUMNS} FROM terminal_deposits WHERE terminal_id = $1");
        self.one(&sql, &params![terminal_id], deposit).await
    }

    async fn deposits(&self, merchant_id: Option<&str>, limit: i64) -> Result<Vec<DepositRecord>, StoreError> {
        let sql = format!(
            "SELECT {DEPOSIT_COLUMNS} FROM terminal_deposits WHERE ($1 = '' OR merchant_id = $2) \
             ORDER BY terminal_id LIMIT $3"
        );
        let merchant = merchant_id.unwrap_or("");
        self.all(&sql, &params![merchant, merchant, limit], deposit).await
    }

    async fn volume(&self, merchant_id: &str, currency: &str, from_ms: i64, to_ms: i64) -> Result<i64, StoreError> {
        let sql = "SELECT CAST(COALESCE(SUM(amount_minor - refunded_minor), 0) AS BIGINT) FROM transactions \
                   WHERE merchant_id = $1 AND currency = $2 AND created_at_ms >= $3 AND created_at_ms < $4 \
                   AND kind IN ('sale', 'completion', 'offline_sale', 'qr_payment') \
                   AND status IN ('approved', 'partially_refunded') \
                   AND (out_trade_no IS NULL OR out_trade_no NOT LIKE $5)";
        let test = format!("{TEST_TRADE_PREFIX}%");
        Ok(self.one(sql, &params![merchant_id, currency, from_ms, to_ms, test], |row| row.int(0)).await?.unwrap_or(0))
    }

    async fn users_of(&self, merchant_id: &str, limit: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.all(
            "SELECT username, role FROM backoffice_users WHERE merchant_id = $1 ORDER BY username LIMIT $2",
            &params![merchant_id, limit],
            |row| Ok((row.text(0)?, row.text(1)?)),
        )
        .await
    }

    async fn user_list(
        &self,
        merchant_id: Option<&str>,
        after: &str,
        limit: i64,
    ) -> Result<Vec<UserListRow>, StoreError> {
        // A session is created at each sign-in and never deleted (its end is recorded), so the
        // latest one's start is the last sign-in; `auth_sessions_by_subject` finds them.
        let sql = "SELECT u.username, u.role, u.merchant_id, u.enabled, u.must_change_password, u.failures, \
                   u.locked_until_ms, (SELECT MAX(s.created_at_ms) FROM auth_sessions s \
                   WHERE s.subject = 'user:' || u.username) \
                   FROM backoffice_users u WHERE ($1 = '' OR u.merchant_id = $2) AND u.username > $3 \
                   ORDER BY u.username LIMIT $4";
        let merchant = merchant_id.unwrap_or("");
        self.all(sql, &params![merchant, merchant, after, limit], |row| {
            Ok(UserListRow {
                username: row.text(0)?,
                role: row.text(1)?,
                merchant_id: row.opt_text(2)?,
                enabled: row.boolean(3)?,
                must_change_password: row.boolean(4)?,
                failures: row.int(5)?,
                locked_until_ms: row.opt_int(6)?,
                last_sign_in_ms: row.opt_int(7)?,
            })
        })
        .await
    }

    async fn parameters_changed_ms(&self, merchant_id: &str) -> Result<Option<i64>, StoreError> {
        let [a, b, c] = PARAMETER_SETTINGS;
        let sql = "SELECT MAX(updated_at_ms) FROM settings WHERE scope = $1 AND name IN ($2, $3, $4)";
        Ok(self.one(sql, &params![merchant_id, a, b, c], |row| row.opt_int(0)).await?.flatten())
    }
}

/// Records a contact. The newer contact gives the latest time and kind, and each fact it
/// reported (an echo does not forget the software version TMS heard); an older one, written
/// late (the gateway writes its contacts every few seconds), only fills in what is still
/// unknown and a later echo time.
pub fn record_contact(contact: &Contact) -> WriteOp {
    let echo_ms = (contact.kind == "echo").then_some(contact.at_ms);
    let parameters_at_ms = contact.parameters_version.as_ref().map(|_| contact.at_ms);
    WriteOp::Statement {
        statement: Statement {
            sql: "INSERT INTO terminal_contacts (terminal_id, last_contact_ms, last_contact_kind, software_version, \
                  parameters_version, parameters_at_ms, last_echo_ms, unsent_offline, unsent_reversals) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (terminal_id) DO UPDATE SET \
                  last_contact_ms = CASE WHEN excluded.last_contact_ms >= terminal_contacts.last_contact_ms \
                  THEN excluded.last_contact_ms ELSE terminal_contacts.last_contact_ms END, \
                  last_contact_kind = CASE WHEN excluded.last_contact_ms >= terminal_contacts.last_contact_ms \
                  THEN excluded.last_contact_kind ELSE terminal_contacts.last_contact_kind END, \
                  software_version = CASE WHEN excluded.last_contact_ms >= terminal_contacts.last_contact_ms \
                  THEN COALESCE(excluded.software_version, terminal_contacts.software_version) \
                  ELSE COALESCE(terminal_contacts.software_version, excluded.software_version) END, \
                  parameters_version = CASE WHEN excluded.last_contact_ms >= terminal_contacts.last_contact_ms \
                  THEN COALESCE(excluded.parameters_version, terminal_contacts.parameters_version) \
                  ELSE COALESCE(terminal_contacts.parameters_version, excluded.parameters_version) END, \
                  parameters_at_ms = CASE WHEN excluded.last_contact_ms >= terminal_contacts.last_contact_ms \
                  THEN COALESCE(excluded.parameters_at_ms, terminal_contacts.parameters_at_ms) \
                  ELSE COALESCE(terminal_contacts.parameters_at_ms, excluded.parameters_at_ms) END, \
                  last_echo_ms = CASE WHEN terminal_contacts.last_echo_ms IS NULL \
                  OR excluded.last_echo_ms > terminal_contacts.last_echo_ms \
                  THEN COALESCE(excluded.last_echo_ms, terminal_contacts.last_echo_ms) \
                  ELSE terminal_contacts.last_echo_ms END, \
                  unsent_offline = CASE WHEN excluded.last_contact_ms >= terminal_contacts.last_contact_ms \
                  THEN COALESCE(excluded.unsent_offline, terminal_contacts.unsent_offline) \
                  ELSE COALESCE(terminal_contacts.unsent_offline, excluded.unsent_offline) END, \
                  unsent_reversals = CASE WHEN excluded.last_contact_ms >= terminal_contacts.last_contact_ms \
                  THEN COALESCE(excluded.unsent_reversals, terminal_contacts.unsent_reversals) \
                  ELSE COALESCE(terminal_contacts.unsent_reversals, excluded.unsent_reversals) END",
            params: params![
                contact.terminal_id.as_str(),
                contact.at_ms,
                contact.kind,
                contact.software_version.clone(),
                contact.parameters_version.clone(),
                parameters_at_ms,
                echo_ms,
                contact.unsent_offline,
                contact.unsent_reversals
            ]
            .to_vec(),
        },
        may_change_nothing: true,
    }
}

/// The guard that records a terminal's deposit unless it has one (`Duplicate`: nothing
/// written). Pair it with the entry that takes the deposit.
pub fn take_deposit(d: &DepositRecord) -> Guard {
    Guard::Statement(Statement {
        sql: "INSERT INTO terminal_deposits (terminal_id, merchant_id, currency, amount_minor, target_minor, \
              starts_at_ms, ends_at_ms, status, created_by, created_at_ms) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, 'held', $8, $9) ON CONFLICT (terminal_id) DO NOTHING",
        params: params![
            d.terminal_id.as_str(),
            d.merchant_id.as_str(),
            d.currency.as_str(),
            d.amount_minor,
            d.target_minor,
            d.starts_at_ms,
            d.ends_at_ms,
            d.created_by.as_str(),
            d.created_at_ms
        ]
        .to_vec(),
    })
}

/// The guard that marks a held deposit returned: passes once, from `held`. Pair it with the
/// entry that returns the deposit.
pub fn return_deposit(terminal_id: &str, by: &str, at_ms: i64) -> Guard {
    Guard::Statement(Statement {
        sql: "UPDATE terminal_deposits SET status = 'returned', returned_by = $1, returned_at_ms = $2 \
              WHERE terminal_id = $3 AND status = 'held'",
        params: params![by, at_ms, terminal_id].to_vec(),
    })
}

/// The guard that inserts a new merchant unless its id is taken (`Duplicate`: nothing
/// written). Pair it with [`WriteOp::PutMerchant`] of the same record and its settings.
pub fn onboard_merchant(m: &MerchantRecord) -> Result<Guard, StoreError> {
    let fee_rates = serde_json::to_string(&m.fee_rates).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Guard::Statement(Statement {
        sql: "INSERT INTO merchants (merchant_id, name, mcc, currency, fee_rates, created_at_ms) \
              VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (merchant_id) DO NOTHING",
        params: params![
            m.merchant_id.as_str(),
            m.name.as_str(),
            m.mcc.as_str(),
            m.currency.as_str(),
            fee_rates,
            m.created_at_ms
        ]
        .to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for status in [DepositStatus::Held, DepositStatus::Returned] {
            assert_eq!(DepositStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(deposit_reference("10000003"), "deposit:10000003");
        assert_eq!(deposit_return_reference("10000003"), "deposit-return:10000003");
    }
}

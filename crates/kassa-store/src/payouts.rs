//! Merchant payouts (结算给商户): one per merchant account (merchant and currency) and business
//! day, and the ledger entries each one took. Reads through [`PayoutStore`] (`store.payouts()`),
//! writes through the constructors below, which build [`Guard`]s and [`WriteOp`]s for the one
//! write path.
//!
//! A payout is made in steps. [`open_payout`] inserts the payout (unique per merchant, currency
//! and day: a rerun finds it); while it is open, pages of [`claim_item`] (guarded by
//! [`payout_is_open`]) claim the entries of the merchant's payable account made before its
//! cut-off that no payout took yet ([`PayoutStore::unclaimed_entries`], a page of ids at a
//! time). The database then sums the claimed entries ([`PayoutStore::payout_sums`]), and
//! [`post_payout`] writes the totals with the payout's journal entry, once (only from `open`).
//! Every statement uses its `$n` placeholders in ascending order of first appearance (SQLite
//! numbers them so). Write statements never read the ledger tables (the PostgreSQL writer writes ledger rows last
//! in a batch), so the claims name their entries.
//!
//! **Invariant**: a ledger entry is in at most one payout (`payout_items`' primary key), and a
//! payout's totals are the sums of exactly the entries it claimed, so nothing is paid twice and
//! nothing made before a cut-off is skipped by the next payout. Totals are computed by the
//! database, never by loading a day into memory.

use async_trait::async_trait;
use kassa_domain::{Currency, Money};

use crate::core::queries::SqlReads;
use crate::core::unit::{Guard, Statement, WriteOp};
use crate::core::value::{params, Row};
use crate::StoreError;

/// How soon a merchant is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayoutSchedule {
    /// The day after the business day (the default).
    T1,
    /// The same day, while it is still open; what comes after goes into the next payout.
    D0,
}

impl PayoutSchedule {
    /// `t1` or `d0`.
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutSchedule::T1 => "t1",
            PayoutSchedule::D0 => "d0",
        }
    }

    /// The schedule of a stored name.
    pub fn parse(text: &str) -> Option<PayoutSchedule> {
        match text {
            "t1" => Some(PayoutSchedule::T1),
            "d0" => Some(PayoutSchedule::D0),
            _ => None,
        }
    }
}

/// The settings scope is the merchant id; this is the setting's name (value `"t1"` or `"d0"`).
pub const SCHEDULE_SETTING: &str = "payout_schedule";

/// Where a payout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayoutStatus {
    /// Its items are claimed; its totals and entry are not written yet.
    Open,
    /// Its totals and its journal entry are written.
    Posted,
}

impl PayoutStatus {
    /// `open` or `posted`.
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::Open => "open",
            PayoutStatus::Posted => "posted",
        }
    }

    /// The status of a stored name.
    pub fn parse(text: &str) -> Option<PayoutStatus> {
        match text {
            "open" => Some(PayoutStatus::Open),
            "posted" => Some(PayoutStatus::Posted),
            _ => None,
        }
    }
}

/// What a payout pays, in minor units of its currency. `net = gross + corrections - refunds - fees`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PayoutTotals {
    /// Captures (card sales and completions, QR payments) less voids and reversals.
    pub gross_minor: i64,
    /// Refunds.
    pub refunds_minor: i64,
    /// Fees kept (charged less returned).
    pub fees_minor: i64,
    /// Approved corrections (补登), before their fees.
    pub corrections_minor: i64,
    /// What the merchant receives (negative: what the merchant owes).
    pub net_minor: i64,
    /// How many ledger entries.
    pub item_count: i64,
}

/// A payout as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRecord {
    /// Its id.
    pub id: i64,
    /// The merchant.
    pub merchant_id: String,
    /// The currency of the merchant account paid.
    pub currency: Currency,
    /// The business day `YYYY-MM-DD`.
    pub business_date: String,
    /// T+1 or D0.
    pub schedule: PayoutSchedule,
    /// Open or posted.
    pub status: PayoutStatus,
    /// Entries made before this instant (Unix milliseconds) could be taken.
    pub cutoff_ms: i64,
    /// Its totals (zero while open).
    pub totals: PayoutTotals,
    /// Created, Unix milliseconds.
    pub created_at_ms: i64,
    /// Posted, Unix milliseconds.
    pub posted_at_ms: Option<i64>,
}

/// The database's sums over the entries of one kind a payout took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSums {
    /// The entries' kind (`sale`, `refund`, `correction`, …).
    pub kind: String,
    /// Sum of their postings to the merchant's payable account (credits negative).
    pub merchant_minor: i64,
    /// Sum of their postings to fee income (credits negative).
    pub fee_minor: i64,
    /// How many entries.
    pub entries: i64,
}

/// One line of a settlement report: one ledger entry a payout took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutItem {
    /// The ledger entry.
    pub entry_id: i64,
    /// Its kind.
    pub kind: String,
    /// Its reference (a trade's reference, a card RRN, `correction:<id>`, …).
    pub reference: String,
    /// When it was posted, Unix milliseconds.
    pub at_ms: i64,
    /// Its posting to the merchant's payable account (credit negative).
    pub merchant_minor: i64,
    /// Its posting to fee income (credit negative).
    pub fee_minor: i64,
}

/// Reads of payouts.
#[async_trait]
pub trait PayoutStore: Send + Sync {
    /// The payout of a merchant account and day.
    async fn payout(
        &self,
        merchant_id: &str,
        currency: &str,
        business_date: &str,
    ) -> Result<Option<PayoutRecord>, StoreError>;
    /// A payout by id.
    async fn payout_by_id(&self, id: i64) -> Result<Option<PayoutRecord>, StoreError>;
    /// The payouts of a day, by merchant, at most `limit`.
    async fn payouts_of_day(&self, business_date: &str, limit: i64) -> Result<Vec<PayoutRecord>, StoreError>;
    /// The merchant payable accounts `(merchant, currency)` that have an entry made before
    /// `cutoff_ms` no payout took, at most `limit`.
    async fn accounts_owed(&self, cutoff_ms: i64, limit: i64) -> Result<Vec<(String, String)>, StoreError>;
    /// The entries of the merchant payable account `account_key` (none for an account of
    /// another kind) made before `cutoff_ms` that no payout took (payouts' own
    /// entries excepted), by id after `after_entry_id`, at most `limit`.
    async fn unclaimed_entries(
        &self,
        account_key: &str,
        cutoff_ms: i64,
        after_entry_id: i64,
        limit: i64,
    ) -> Result<Vec<i64>, StoreError>;
    /// The sums per entry kind over what a payout took.
    async fn payout_sums(&self, payout_id: i64, account_key: &str) -> Result<Vec<KindSums>, StoreError>;
    /// The entries a payout took, by entry id after `after_entry_id`, at most `limit`.
    async fn payout_items(
        &self,
        payout_id: i64,
        account_key: &str,
        after_entry_id: i64,
        limit: i64,
    ) -> Result<Vec<PayoutItem>, StoreError>;
    /// The sum of the postings to `account_key` of the entries a payout took, straight from the
    /// ledger (what its report must add up to).
    async fn payout_ledger_sum(&self, payout_id: i64, account_key: &str) -> Result<i64, StoreError>;
}

const COLUMNS: &str = "id, merchant_id, currency, business_date, schedule, status, cutoff_ms, gross_minor, \
     refunds_minor, fees_minor, corrections_minor, net_minor, item_count, created_at_ms, posted_at_ms";

fn corrupt(what: &str, text: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: {text:?}"))
}

fn payout(row: &Row) -> Result<PayoutRecord, StoreError> {
    let currency = row.text(2)?;
    let schedule = row.text(4)?;
    let status = row.text(5)?;
    Ok(PayoutRecord {
        id: row.int(0)?,
        merchant_id: row.text(1)?,
        currency: Currency::from_code(&currency).map_err(|_| corrupt("currency", &currency))?,
        business_date: row.text(3)?,
        schedule: PayoutSchedule::parse(&schedule).ok_or_else(|| corrupt("payout schedule", &schedule))?,
        status: PayoutStatus::parse(&status).ok_or_else(|| corrupt("payout status", &status))?,
        cutoff_ms: row.int(6)?,
        totals: PayoutTotals {
            gross_minor: row.int(7)?,
            refunds_minor: row.int(8)?,
            fees_minor: row.int(9)?,
            corrections_minor: row.int(10)?,
            net_minor: row.int(11)?,
            item_count: row.int(12)?,
        },
        created_at_ms: row.int(13)?,
        posted_at_ms: row.opt_int(14)?,
    })
}

impl PayoutRecord {
    /// The key of the ledger account it pays from.
    pub fn account_key(&self) -> String {
        account_key(&self.merchant_id, self.currency.code())
    }

    /// Its net as money.
    pub fn net(&self) -> Money {
        Money::from_minor(self.totals.net_minor, self.currency)
    }
}

/// The key of a merchant's payable account (as kassa-ledger names it).
pub fn account_key(merchant_id: &str, currency: &str) -> String {
    format!("merchant_payable:{merchant_id}:{currency}")
}

/// The reference of a payout's journal entry.
pub fn entry_reference(payout_id: i64) -> String {
    format!("payout:{payout_id}")
}

#[async_trait]
impl PayoutStore for SqlReads {
    async fn payout(
        &self,
        merchant_id: &str,
        currency: &str,
        business_date: &str,
    ) -> Result<Option<PayoutRecord>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM payouts WHERE merchant_id = $1 AND currency = $2 AND business_date = $3");
        self.one(&sql, &params![merchant_id, currency, business_date], payout).await
    }

    async fn payout_by_id(&self, id: i64) -> Result<Option<PayoutRecord>, StoreError> {
        self.one(&format!("SELECT {COLUMNS} FROM payouts WHERE id = $1"), &params![id], payout).await
    }

    async fn payouts_of_day(&self, business_date: &str, limit: i64) -> Result<Vec<PayoutRecord>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM payouts WHERE business_date = $1 ORDER BY merchant_id, currency LIMIT $2");
        self.all(&sql, &params![business_date, limit], payout).await
    }

    async fn accounts_owed(&self, cutoff_ms: i64, limit: i64) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "SELECT a.owner, a.currency FROM ledger_accounts a WHERE a.kind = 'merchant_payable' \
                   AND EXISTS (SELECT 1 FROM ledger_postings p JOIN ledger_entries e ON e.id = p.entry_id \
                   WHERE p.account_key = a.account_key AND p.account_key LIKE 'merchant_payable:%' \
                   AND e.kind <> 'payout' AND e.created_at_ms < $1 \
                   AND NOT EXISTS (SELECT 1 FROM payout_items i WHERE i.entry_id = p.entry_id \
                   AND i.account_key = p.account_key)) \
                   ORDER BY a.owner, a.currency LIMIT $2";
        self.all(sql, &params![cutoff_ms, limit], |row| Ok((row.text(0)?, row.text(1)?))).await
    }

    async fn unclaimed_entries(
        &self,
        account_key: &str,
        cutoff_ms: i64,
        after_entry_id: i64,
        limit: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let sql = "SELECT DISTINCT p.entry_id FROM ledger_postings p JOIN ledger_entries e ON e.id = p.entry_id \
                   WHERE p.account_key = $1 AND p.account_key LIKE 'merchant_payable:%' AND e.kind <> 'payout' \
                   AND e.created_at_ms < $2 AND p.entry_id > $3 \
                   AND NOT EXISTS (SELECT 1 FROM payout_items i WHERE i.entry_id = p.entry_id \
                   AND i.account_key = p.account_key) ORDER BY p.entry_id LIMIT $4";
        self.all(sql, &params![account_key, cutoff_ms, after_entry_id, limit], |row| row.int(0)).await
    }

    async fn payout_sums(&self, payout_id: i64, account_key: &str) -> Result<Vec<KindSums>, StoreError> {
        let sql = "SELECT e.kind, \
                   CAST(COALESCE(SUM(CASE WHEN p.account_key = $1 THEN p.amount_minor ELSE 0 END), 0) AS BIGINT), \
                   CAST(COALESCE(SUM(CASE WHEN a.kind = 'fee_income' THEN p.amount_minor ELSE 0 END), 0) AS BIGINT), \
                   COUNT(DISTINCT e.id) \
                   FROM payout_items i JOIN ledger_entries e ON e.id = i.entry_id \
                   JOIN ledger_postings p ON p.entry_id = e.id \
                   JOIN ledger_accounts a ON a.account_key = p.account_key \
                   WHERE i.account_key = $1 AND i.payout_id = $2 GROUP BY e.kind ORDER BY e.kind";
        self.all(sql, &params![account_key, payout_id], |row| {
            Ok(KindSums {
                kind: row.text(0)?,
                merchant_minor: row.int(1)?,
                fee_minor: row.int(2)?,
                entries: row.int(3)?,
            })
        })
        .await
    }

    async fn payout_items(
        &self,
        payout_id: i64,
        account_key: &str,
        after_entry_id: i64,
        limit: i64,
    ) -> Result<Vec<PayoutItem>, StoreError> {
        let sql = "SELECT e.id, e.kind, e.reference, e.created_at_ms, \
                   CAST(COALESCE(SUM(CASE WHEN p.account_key = $1 THEN p.amount_minor ELSE 0 END), 0) AS BIGINT), \
                   CAST(COALESCE(SUM(CASE WHEN a.kind = 'fee_income' THEN p.amount_minor ELSE 0 END), 0) AS BIGINT) \
                   FROM payout_items i JOIN ledger_entries e ON e.id = i.entry_id \
                   JOIN ledger_postings p ON p.entry_id = e.id \
                   JOIN ledger_accounts a ON a.account_key = p.account_key \
                   WHERE i.account_key = $1 AND i.payout_id = $2 AND e.id > $3 \
                   GROUP BY e.id, e.kind, e.reference, e.created_at_ms ORDER BY e.id LIMIT $4";
        self.all(sql, &params![account_key, payout_id, after_entry_id, limit], |row| {
            Ok(PayoutItem {
                entry_id: row.int(0)?,
                kind: row.text(1)?,
                reference: row.text(2)?,
                at_ms: row.int(3)?,
                merchant_minor: row.int(4)?,
                fee_minor: row.int(5)?,
            })
        })
        .await
    }

    async fn payout_ledger_sum(&self, payout_id: i64, account_key: &str) -> Result<i64, StoreError> {
        let sql = "SELECT CAST(COALESCE(SUM(p.amount_minor), 0) AS BIGINT) FROM ledger_postings p \
                   WHERE p.account_key = $1 AND p.entry_id IN \
                   (SELECT i.entry_id FROM payout_items i WHERE i.account_key = $1 AND i.payout_id = $2)";
        Ok(self.one(sql, &params![account_key, payout_id], |row| row.int(0)).await?.unwrap_or(0))
    }
}

/// A payout about to be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayout {
    /// The merchant.
    pub merchant_id: String,
    /// The currency of its payable account.
    pub currency: String,
    /// The business day `YYYY-MM-DD`.
    pub business_date: String,
    /// T+1 or D0.
    pub schedule: PayoutSchedule,
    /// Entries made before this instant (Unix milliseconds) are taken.
    pub cutoff_ms: i64,
    /// Now, Unix milliseconds.
    pub at_ms: i64,
}

/// The guard that opens a payout unless the merchant account has one for the day (`Duplicate`:
/// a rerun, nothing written; read it and finish it if it is still open).
pub fn open_payout(p: &NewPayout) -> Guard {
    Guard::Statement(Statement {
        sql: "INSERT INTO payouts (merchant_id, currency, business_date, schedule, status, cutoff_ms, created_at_ms) \
              VALUES ($1, $2, $3, $4, 'open', $5, $6) ON CONFLICT DO NOTHING",
        params: params![
            p.merchant_id.as_str(),
            p.currency.as_str(),
            p.business_date.as_str(),
            p.schedule.as_str(),
            p.cutoff_ms,
            p.at_ms
        ]
        .to_vec(),
    })
}

/// Claims ledger entry `entry_id` of `account_key` for payout `payout_id` unless a payout took
/// it already (the primary key keeps every entry in one payout). Pair a page of these with
/// [`payout_is_open`] as the unit's guard.
pub fn claim_item(payout_id: i64, account_key: &str, entry_id: i64) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            sql: "INSERT INTO payout_items (entry_id, account_key, payout_id) VALUES ($1, $2, $3) \
                  ON CONFLICT DO NOTHING",
            params: params![entry_id, account_key, payout_id].to_vec(),
        },
        may_change_nothing: true,
    }
}

/// The guard that passes while payout `payout_id` is still open (its items may still be
/// claimed); a `Duplicate` outcome means it was posted meanwhile.
pub fn payout_is_open(payout_id: i64) -> Guard {
    Guard::Statement(Statement {
        sql: "UPDATE payouts SET status = 'open' WHERE id = $1 AND status = 'open'",
        params: params![payout_id].to_vec(),
    })
}

/// The guard that writes an open payout's totals (the database's sums over its items): passes
/// once, from `open`. Pair it with the payout's journal entry (when its net is not zero).
pub fn post_payout(payout_id: i64, totals: &PayoutTotals, at_ms: i64) -> Guard {
    Guard::Statement(Statement {
        sql: "UPDATE payouts SET status = 'posted', gross_minor = $1, refunds_minor = $2, fees_minor = $3, \
              corrections_minor = $4, net_minor = $5, item_count = $6, posted_at_ms = $7 \
              WHERE id = $8 AND status = 'open'",
        params: params![
            totals.gross_minor,
            totals.refunds_minor,
            totals.fees_minor,
            totals.corrections_minor,
            totals.net_minor,
            totals.item_count,
            at_ms,
            payout_id
        ]
        .to_vec(),
    })
}

/// Sets a merchant's payout schedule (a setting of the merchant's scope).
pub fn set_schedule(merchant_id: &str, schedule: PayoutSchedule, at_ms: i64) -> WriteOp {
    WriteOp::PutSetting {
        scope: merchant_id.to_owned(),
        name: SCHEDULE_SETTING.to_owned(),
        value: serde_json::Value::from(schedule.as_str()),
        at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for schedule in [PayoutSchedule::T1, PayoutSchedule::D0] {
            assert_eq!(PayoutSchedule::parse(schedule.as_str()), Some(schedule));
        }
        for status in [PayoutStatus::Open, PayoutStatus::Posted] {
            assert_eq!(PayoutStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(account_key("898100000000001", "CNY"), "merchant_payable:898100000000001:CNY");
    }
}

//! Reads of the web back office across merchants (`store.web()`): the transaction search of one
//! merchant or of all (the query of [`crate::api`], not a second one), the facts around one
//! transaction (its refunds, its audit trail), and the dashboard's aggregates (volume and
//! outcome per channel per day, QR payment latency, pending items).
//!
//! **Invariant**: every read is bounded (a `limit`, or an aggregate over a bounded date range);
//! `merchant_id` `Some` confines a read to that merchant, `None` is for the institution's staff.
//! **Boundary**: the aggregates are computed on demand from the records (index-only scans of
//! the indexes of migration 0015), never stored: a correction or a refund shows at once.

use async_trait::async_trait;

use crate::api::{SearchCursor, SearchFilter, SearchRow};
use crate::queries::SqlReads;
use crate::records::{AuditEvent, AuditRecord};
use crate::value::{params, Row, Value};
use crate::StoreError;

/// The most audit targets one [`WebStore::audit_naming`] read takes.
pub const AUDIT_TARGETS_MAX: usize = 16;

/// How a payment ended, as the dashboard counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Approved or paid (whatever happened after: a refund is not a failed payment).
    Succeeded,
    /// Declined, reversed, failed or closed unpaid.
    Failed,
    /// Not decided yet.
    Pending,
}

impl Outcome {
    fn parse(text: &str) -> Option<Outcome> {
        match text {
            "succeeded" => Some(Outcome::Succeeded),
            "failed" => Some(Outcome::Failed),
            "pending" => Some(Outcome::Pending),
            _ => None,
        }
    }
}

/// Payments of one business day, channel, currency and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayVolume {
    /// `YYYY-MM-DD`.
    pub business_date: String,
    /// `card`, `alipay`, `wechat`; `None` for a merchant QR no wallet was chosen for.
    pub channel: Option<String>,
    /// Currency code.
    pub currency: String,
    /// How they ended.
    pub outcome: Outcome,
    /// How many.
    pub count: i64,
    /// Their amounts added up, minor units.
    pub amount_minor: i64,
}

/// Upper bounds of the latency buckets, milliseconds; the last bucket is open.
pub const LATENCY_BUCKETS_MS: [i64; 9] = [500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000];

/// How long QR payments took from the trade's creation until the wallet confirmed payment:
/// counts per bucket of [`LATENCY_BUCKETS_MS`] (`counts[i]` below `LATENCY_BUCKETS_MS[i]`, the
/// last one at or above the last bound).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LatencyHistogram {
    /// Counts, one more than there are bounds.
    pub counts: Vec<i64>,
}

impl LatencyHistogram {
    /// The upper bound (ms) of the bucket holding the `per_mille`-th quantile; `None` without
    /// data, `Some(None)` when it falls in the open bucket.
    pub fn quantile_bound_ms(&self, per_mille: i64) -> Option<Option<i64>> {
        let total: i64 = self.counts.iter().sum();
        if total == 0 {
            return None;
        }
        // The rank of the quantile, 1-based, rounded up: p95 of 20 is the 19th.
        let rank = (total * per_mille + 999) / 1000;
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank.max(1) {
                return Some(LATENCY_BUCKETS_MS.get(index).copied());
            }
        }
        Some(None)
    }

    /// How many payments it counts.
    pub fn total(&self) -> i64 {
        self.counts.iter().sum()
    }
}

/// What waits for someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PendingCounts {
    /// QR trades whose outcome is not known yet (waiting for the payer or the wallet).
    pub qr_unknown: i64,
    /// Refund requests waiting for the merchant's approval.
    pub refunds_awaiting_merchant: i64,
    /// Refund requests waiting for the institution's review.
    pub refunds_awaiting_institution: i64,
    /// Corrections (补登) proposed, not reviewed.
    pub corrections_proposed: i64,
    /// Differences of the latest run of each channel's day with no correction proposed.
    pub recon_open: i64,
}

/// The web back office's reads.
#[async_trait]
pub trait WebStore: Send + Sync {
    /// The search of `/api/v1/transactions` for one merchant or (`None`) for all: card
    /// transactions and QR trades that pass `filter`, newest first, after `after`, at most
    /// `limit`.
    async fn search(
        &self,
        merchant_id: Option<&str>,
        filter: &SearchFilter,
        after: Option<SearchCursor>,
        limit: i64,
    ) -> Result<Vec<SearchRow>, StoreError>;

    /// Ids of the card transactions that void or refund `original_id`, oldest first, at most
    /// `limit`.
    async fn follow_ups(&self, original_id: i64, limit: i64) -> Result<Vec<i64>, StoreError>;

    /// Audit records whose target is one of `targets` (at most [`AUDIT_TARGETS_MAX`]), oldest
    /// first, at most `limit`.
    async fn audit_naming(&self, targets: &[String], limit: i64) -> Result<Vec<AuditRecord>, StoreError>;

    /// Payments per business day (`date_from..=date_to`, `YYYY-MM-DD`), channel, currency and
    /// outcome: card sales, completions and offline sales, and QR trades.
    async fn day_volumes(
        &self,
        merchant_id: Option<&str>,
        date_from: &str,
        date_to: &str,
    ) -> Result<Vec<DayVolume>, StoreError>;

    /// The latency of the QR trades paid on the business days `date_from..=date_to`.
    async fn qr_latency(
        &self,
        merchant_id: Option<&str>,
        date_from: &str,
        date_to: &str,
    ) -> Result<LatencyHistogram, StoreError>;

    /// What waits for someone.
    async fn pending(&self, merchant_id: Option<&str>) -> Result<PendingCounts, StoreError>;
}

/// `AND merchant_id = $n` (numbered after `values`) when a merchant is named.
fn merchant_condition(merchant_id: Option<&str>, values: &mut Vec<Value>) -> String {
    match merchant_id {
        Some(merchant_id) => {
            values.push(merchant_id.into());
            format!(" AND merchant_id = ${}", values.len())
        }
        None => String::new(),
    }
}

/// Card payments in the dashboard's outcome vocabulary. Voids and refunds are not payments;
/// a voided or refunded sale was approved.
const CARD_VOLUME: &str = "SELECT business_date, channel, currency, \
       CASE WHEN status IN ('declined', 'reversed') THEN 'failed' WHEN status = 'pending' THEN 'pending' \
            ELSE 'succeeded' END AS outcome, amount_minor \
     FROM transactions WHERE business_date >= $1 AND business_date <= $2 \
       AND kind IN ('sale', 'completion', 'offline_sale')";

/// QR trades in the dashboard's outcome vocabulary.
const QR_VOLUME: &str = "SELECT business_date, wallet AS channel, currency, \
       CASE WHEN status = 'paid' THEN 'succeeded' WHEN status IN ('pending', 'waiting') THEN 'pending' \
            ELSE 'failed' END AS outcome, amount_minor \
     FROM qr_trades WHERE business_date >= $1 AND business_date <= $2";

fn day_volume(row: &Row) -> Result<DayVolume, StoreError> {
    let outcome = row.text(3)?;
    Ok(DayVolume {
        business_date: row.text(0)?,
        channel: row.opt_text(1)?,
        currency: row.text(2)?,
        outcome: Outcome::parse(&outcome).ok_or_else(|| StoreError::Corrupt(format!("outcome {outcome}")))?,
        count: row.int(4)?,
        amount_minor: row.int(5)?,
    })
}

fn audit_record(row: &Row) -> Result<AuditRecord, StoreError> {
    let details = row.text(7)?;
    Ok(AuditRecord {
        seq: row.int(0)?,
        event: AuditEvent {
            at_ms: row.int(1)?,
            actor: row.text(2)?,
            action: row.text(3)?,
            target: row.text(4)?,
            source: row.text(5)?,
            reason: row.text(6)?,
            details: serde_json::from_str(&details)
                .map_err(|error| StoreError::Corrupt(format!("audit details: {error}")))?,
        },
        prev_hash: row.text(8)?,
        hash: row.text(9)?,
    })
}

async fn count(reads: &SqlReads, sql: &str, values: &[Value]) -> Result<i64, StoreError> {
    let rows = reads.reader.query(sql, values).await?;
    rows.first().map_or(Ok(0), |row| row.int(0))
}

#[async_trait]
impl WebStore for SqlReads {
    async fn search(
        &self,
        merchant_id: Option<&str>,
        filter: &SearchFilter,
        after: Option<SearchCursor>,
        limit: i64,
    ) -> Result<Vec<SearchRow>, StoreError> {
        self.search_rows(merchant_id, filter, after, limit).await
    }

    async fn follow_ups(&self, original_id: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        let sql = "SELECT id FROM transactions WHERE original_id = $1 ORDER BY id LIMIT $2";
        self.all(sql, &params![original_id, limit], |row| row.int(0)).await
    }

    async fn audit_naming(&self, targets: &[String], limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let targets = &targets[..targets.len().min(AUDIT_TARGETS_MAX)];
        let mut values: Vec<Value> = targets.iter().map(|t| t.as_str().into()).collect();
        let slots: Vec<String> = (1..=values.len()).map(|n| format!("${n}")).collect();
        values.push(limit.into());
        let sql = format!(
            "SELECT seq, at_ms, actor, action, target, source, reason, details, prev_hash, hash FROM audit_log \
             WHERE target IN ({}) ORDER BY seq LIMIT ${}",
            slots.join(", "),
            values.len()
        );
        self.all(&sql, &values, audit_record).await
    }

    async fn day_volumes(
        &self,
        merchant_id: Option<&str>,
        date_from: &str,
        date_to: &str,
    ) -> Result<Vec<DayVolume>, StoreError> {
        let mut values: Vec<Value> = params![date_from, date_to].to_vec();
        let merchant = merchant_condition(merchant_id, &mut values);
        // Grouped per table, then merged: each side is an index-only scan of its index on
        // (business_date, merchant_id, …) (migration 0015).
        let grouped = |base: &str| {
            format!(
                "SELECT business_date, channel, currency, outcome, COUNT(*) AS payments, \
                 CAST(SUM(amount_minor) AS BIGINT) AS amount FROM ({base}{merchant}) AS payments \
                 GROUP BY business_date, channel, currency, outcome"
            )
        };
        let sql = format!(
            "SELECT business_date, channel, currency, outcome, payments, amount FROM ({} UNION ALL {}) AS days \
             ORDER BY business_date, channel, currency, outcome",
            grouped(CARD_VOLUME),
            grouped(QR_VOLUME)
        );
        self.all(&sql, &values, day_volume).await
    }

    async fn qr_latency(
        &self,
        merchant_id: Option<&str>,
        date_from: &str,
        date_to: &str,
    ) -> Result<LatencyHistogram, StoreError> {
        let mut values: Vec<Value> = params![date_from, date_to].to_vec();
        let merchant = merchant_condition(merchant_id, &mut values);
        let mut bucket = String::from("CASE");
        for (index, bound) in LATENCY_BUCKETS_MS.iter().enumerate() {
            bucket.push_str(&format!(" WHEN paid_at_ms - created_at_ms < {bound} THEN {index}"));
        }
        bucket.push_str(&format!(" ELSE {} END", LATENCY_BUCKETS_MS.len()));
        let sql = format!(
            "SELECT bucket, COUNT(*) FROM (SELECT {bucket} AS bucket FROM qr_trades \
             WHERE business_date >= $1 AND business_date <= $2 AND status = 'paid' AND paid_at_ms IS NOT NULL{merchant}) \
             AS paid GROUP BY bucket"
        );
        let rows = self.all(&sql, &values, |row| Ok((row.int(0)?, row.int(1)?))).await?;
        let mut counts = vec![0; LATENCY_BUCKETS_MS.len() + 1];
        for (bucket, n) in rows {
            let slot = usize::try_from(bucket).ok().and_then(|index| counts.get_mut(index));
            let slot = slot.ok_or_else(|| StoreError::Corrupt(format!("latency bucket {bucket}")))?;
            *slot = n;
        }
        Ok(LatencyHistogram { counts })
    }

    async fn pending(&self, merchant_id: Option<&str>) -> Result<PendingCounts, StoreError> {
        let mut values = Vec::new();
        let merchant = merchant_condition(merchant_id, &mut values);
        let qr_unknown = count(
            self,
            &format!("SELECT COUNT(*) FROM qr_trades WHERE status IN ('pending', 'waiting'){merchant}"),
            &values,
        )
        .await?;
        let refunds = |state: &str| format!("SELECT COUNT(*) FROM refund_requests WHERE state = '{state}'{merchant}");
        let refunds_awaiting_merchant = count(self, &refunds("requested"), &values).await?;
        let refunds_awaiting_institution = count(self, &refunds("awaiting_institution_review"), &values).await?;
        let corrections_proposed =
            count(self, &format!("SELECT COUNT(*) FROM corrections WHERE status = 'proposed'{merchant}"), &values)
                .await?;
        // A day may be run again: only its latest run's differences are open.
        let recon_open = count(
            self,
            &format!(
                "SELECT COUNT(*) FROM recon_differences JOIN recon_runs ON recon_runs.id = recon_differences.run_id \
                 WHERE recon_differences.correction_key IS NULL AND recon_runs.status = 'finished' \
                 AND recon_runs.id = (SELECT MAX(latest.id) FROM recon_runs AS latest \
                     WHERE latest.channel = recon_runs.channel AND latest.business_date = recon_runs.business_date){}",
                merchant.replace("merchant_id", "recon_differences.merchant_id")
            ),
            &values,
        )
        .await?;
        Ok(PendingCounts {
            qr_unknown,
            refunds_awaiting_merchant,
            refunds_awaiting_institution,
            corrections_proposed,
            recon_open,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_name_the_bucket_that_holds_them() {
        let mut counts = vec![0; LATENCY_BUCKETS_MS.len() + 1];
        counts[0] = 50;
        counts[2] = 45;
        counts[4] = 5;
        let histogram = LatencyHistogram { counts };
        assert_eq!(histogram.quantile_bound_ms(500), Some(Some(500)));
        assert_eq!(histogram.quantile_bound_ms(950), Some(Some(2_000)));
        assert_eq!(histogram.quantile_bound_ms(1000), Some(Some(10_000)));
        assert_eq!(LatencyHistogram::default().quantile_bound_ms(950), None);
        let mut open = vec![0; LATENCY_BUCKETS_MS.len() + 1];
        open[LATENCY_BUCKETS_MS.len()] = 1;
        assert_eq!(LatencyHistogram { counts: open }.quantile_bound_ms(500), Some(None));
    }

    #[test]
    fn the_merchant_condition_numbers_after_the_others() {
        let mut values: Vec<Value> = params!["2026-12-01"].to_vec();
        assert_eq!(merchant_condition(Some("M"), &mut values), " AND merchant_id = $2");
        assert_eq!(merchant_condition(None, &mut values), "");
        assert_eq!(values.len(), 2);
    }
}

/// Set-based seeding for benchmarks: a whole business day of rows per statement (a recursive
/// row generator inside `INSERT … SELECT`, the same SQL on both backends), not a round trip
/// per row.
#[cfg(feature = "testing")]
pub mod bench_seed {
    use crate::commit::Statement;
    use crate::value::params;
    use crate::WriteOp;

    /// The parameters as named columns (`p`; SQLite numbers `$n` parameters in the order they
    /// first appear, so each appears once, here) and the rows `i` = 0 .. rows (`n`).
    macro_rules! numbers {
        () => {
            "WITH RECURSIVE p(first_id, row_count, day, day_start, merchants) AS (SELECT CAST($1 AS BIGINT), \
             CAST($2 AS BIGINT), CAST($3 AS TEXT), CAST($4 AS BIGINT), CAST($5 AS BIGINT)), \
             n(i) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT i + 1 FROM n, p WHERE i + 1 < p.row_count) "
        };
    }

    const CARD_DAY: &str = concat!(
        numbers!(),
        "INSERT INTO transactions (id, kind, status, channel, merchant_id, terminal_id, batch_no, stan, mti_class, \
         rrn, auth_code, amount_minor, currency, pan_masked, content_digest, business_date, created_at_ms, updated_at_ms) \
         SELECT first_id + i, 'sale', CASE WHEN i % 20 = 7 THEN 'declined' ELSE 'approved' END, 'card', \
         CAST(898100000000001 + (i % merchants) AS TEXT), CAST(20000000 + (i % 40) AS TEXT), (first_id + i) / 1000000 + 1, \
         (first_id + i) % 1000000, '0200', CAST(100000000000 + first_id + i AS TEXT), '123456', 100 + (i * 7919) % 100000, 'CNY', \
         '622202******0128', 'bench', day, day_start + i * 86000000 / row_count, day_start + i * 86000000 / row_count FROM n, p"
    );

    const QR_DAY: &str = concat!(
        numbers!(),
        "INSERT INTO qr_trades (id, merchant_id, out_trade_no, reference, kind, wallet, status, amount_minor, currency, \
         subject, origin, trade_no, paid_at_ms, expires_at_ms, business_date, created_at_ms, updated_at_ms) \
         SELECT first_id + i, CAST(898100000000001 + (i % merchants) AS TEXT), 'B' || CAST(first_id + i AS TEXT), \
         'KB' || CAST(first_id + i AS TEXT), 'customer_code', CASE WHEN i % 2 = 0 THEN 'alipay' ELSE 'wechat' END, \
         CASE WHEN i % 25 = 3 THEN 'failed' WHEN i % 50 = 11 THEN 'closed' WHEN i % 500 = 17 THEN 'waiting' ELSE 'paid' END, \
         100 + (i * 7919) % 100000, 'CNY', 'coffee', 'api', '2026' || CAST(first_id + i AS TEXT), \
         CASE WHEN i % 25 = 3 OR i % 50 = 11 OR i % 500 = 17 THEN NULL ELSE day_start + i * 86000000 / row_count + 300 + (i % 97) * 97 END, \
         day_start + i * 86000000 / row_count + 60000, day, day_start + i * 86000000 / row_count, day_start + i * 86000000 / row_count FROM n, p"
    );

    /// `rows` card sales (1 in 20 declined) of `business_date`, ids from `first_id`, spread
    /// over the day that starts at `day_start_ms` and over `merchants` merchants from
    /// 898100000000001.
    pub fn card_day(first_id: i64, rows: i64, business_date: &str, day_start_ms: i64, merchants: i64) -> WriteOp {
        let params = params![first_id, rows, business_date, day_start_ms, merchants].to_vec();
        WriteOp::Statement { statement: Statement { sql: CARD_DAY, params }, may_change_nothing: false }
    }

    /// `rows` QR trades of `business_date` (mostly paid, alternating wallets), like
    /// [`card_day`].
    pub fn qr_day(first_id: i64, rows: i64, business_date: &str, day_start_ms: i64, merchants: i64) -> WriteOp {
        let params = params![first_id, rows, business_date, day_start_ms, merchants].to_vec();
        WriteOp::Statement { statement: Statement { sql: QR_DAY, params }, may_change_nothing: false }
    }
}

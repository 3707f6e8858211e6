//! Reads of the web back office across merchants (`store.web()`): the transaction search of one
//! merchant or of all (the query of [`crate::api`], not a second one), the facts around one
//! transaction (its refunds, its audit trail), and the dashboard's aggregates (volume and
//! outcome per channel per day, QR payment latency, pending items).
//!
//! **Invariant**: every read is bounded (a `limit`, or an aggregate over a bounded date range);
//! `merchant_id` `Some` confines a read to that merchant, `None` is for the institution's staff.
//! The dashboard's aggregates equal those computed from the records
//! ([`WebStore::day_volumes_from_records`], [`WebStore::qr_latency_from_records`]) at every
//! moment, whenever the roll-up last ran.
//! **Boundary**: the aggregates are read from the roll-up's summary ([`crate::rollup`]) plus the
//! records changed since its watermark, each added as it is and taken away as it was counted,
//! in one statement: a correction or a refund shows at once. The pending counts are index-only
//! counts (migrations 0015, 0017).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use async_trait::async_trait;

use crate::api::{SearchCursor, SearchFilter, SearchRow};
use crate::core::queries::SqlReads;
use crate::core::records::{AuditEvent, AuditRecord};
use crate::core::value::{params, Row, Value};
use crate::rollup::{
    trade_latency_bucket, Source, ALL_MERCHANTS, CARD_OUTCOME, CARD_PAYMENT, TRADE_CHANNEL, TRADE_OUTCOME,
};
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
    pub(crate) fn parse(text: &str) -> Option<Outcome> {
        match text {
            "succeeded" => Some(Outcome::Succeeded),
            "failed" => Some(Outcome::Failed),
            "pending" => Some(Outcome::Pending),
            _ => None,
        }
    }

    /// Its name in SQL and in the summary tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Pending => "pending",
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
    /// outcome: card sales, completions and offline sales, and QR trades; in order of day,
    /// channel (none first), currency and outcome. Read from the roll-up's summary and the
    /// records changed since it, equal to [`WebStore::day_volumes_from_records`].
    async fn day_volumes(
        &self,
        merchant_id: Option<&str>,
        date_from: &str,
        date_to: &str,
    ) -> Result<Vec<DayVolume>, StoreError>;

    /// The latency of the QR trades paid on the business days `date_from..=date_to`, from the
    /// roll-up's summary and the records changed since it, equal to
    /// [`WebStore::qr_latency_from_records`].
    async fn qr_latency(
        &self,
        merchant_id: Option<&str>,
        date_from: &str,
        date_to: &str,
    ) -> Result<LatencyHistogram, StoreError>;

    /// [`WebStore::day_volumes`] aggregated from the records themselves, every row of the days:
    /// the definition the roll-up is checked against (its tests), too slow for a page at a
    /// million transactions.
    async fn day_volumes_from_records(
        &self,
        merchant_id: Option<&str>,
        date_from: &str,
        date_to: &str,
    ) -> Result<Vec<DayVolume>, StoreError>;

    /// [`WebStore::qr_latency`] aggregated from the records themselves.
    async fn qr_latency_from_records(
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

/// The dashboard's days in one statement (one snapshot): the summary's rows of one scope (part
/// 0: `$3` a merchant or [`ALL_MERCHANTS`]), then the tail (part 1): the records stamped after
/// the roll-up's watermarks (`$4` cards, `$5` trades) as they count now, less as they were
/// folded, per day, merchant, channel, currency and outcome. The caller keeps the tail's rows
/// of the scope and days: a condition on them here would draw the planner away from the index
/// on `updated_at_ms` to one that reads the days' every row.
fn day_volumes_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT 0 AS part, business_date, merchant_id, channel, currency, outcome, payments, amount_minor \
             FROM dashboard_days WHERE business_date >= $1 AND business_date <= $2 AND merchant_id = $3 \
             UNION ALL \
             SELECT 1, business_date, merchant_id, channel, currency, outcome, CAST(SUM(payments) AS BIGINT), \
                    CAST(SUM(amount_minor) AS BIGINT) FROM ( \
               SELECT r.business_date, r.merchant_id, r.channel, r.currency, {CARD_OUTCOME} AS outcome, \
                      1 AS payments, r.amount_minor \
                 FROM transactions AS r WHERE r.updated_at_ms > $4 AND {CARD_PAYMENT} \
               UNION ALL \
               SELECT r.business_date, r.merchant_id, r.channel, r.currency, f.outcome, -1, -r.amount_minor \
                 FROM transactions AS r JOIN dashboard_folded_cards AS f ON f.id = r.id WHERE r.updated_at_ms > $4 \
               UNION ALL \
               SELECT r.business_date, r.merchant_id, {TRADE_CHANNEL}, r.currency, {TRADE_OUTCOME}, 1, r.amount_minor \
                 FROM qr_trades AS r WHERE r.updated_at_ms > $5 \
               UNION ALL \
               SELECT r.business_date, r.merchant_id, f.channel, r.currency, f.outcome, -1, -r.amount_minor \
                 FROM qr_trades AS r JOIN dashboard_folded_trades AS f ON f.id = r.id WHERE r.updated_at_ms > $5 \
             ) AS tail GROUP BY business_date, merchant_id, channel, currency, outcome"
        )
    })
}

/// The latency buckets like [`day_volumes_sql`]: the summary's rows of a scope, then the tail
/// after the trades' watermark (`$4`).
fn latency_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT 0 AS part, business_date, merchant_id, bucket, payments FROM dashboard_latency \
             WHERE business_date >= $1 AND business_date <= $2 AND merchant_id = $3 \
             UNION ALL \
             SELECT 1, business_date, merchant_id, bucket, CAST(SUM(payments) AS BIGINT) FROM ( \
               SELECT r.business_date, r.merchant_id, {} AS bucket, 1 AS payments \
                 FROM qr_trades AS r WHERE r.updated_at_ms > $4 \
               UNION ALL \
               SELECT r.business_date, r.merchant_id, f.latency_bucket, -1 \
                 FROM qr_trades AS r JOIN dashboard_folded_trades AS f ON f.id = r.id WHERE r.updated_at_ms > $4 \
             ) AS tail WHERE bucket IS NOT NULL GROUP BY business_date, merchant_id, bucket",
            trade_latency_bucket()
        )
    })
}

impl SqlReads {
    /// The roll-up's watermarks (cards, trades), read before the summary: a watermark only
    /// moves forward, and a tail from an older one is merely longer (each of its rows is added
    /// as it is and taken away as it was folded, whether or not it was folded since), never
    /// wrong; a newer one would miss rows.
    async fn watermarks(&self) -> Result<(i64, i64), StoreError> {
        let rows = self.reader.query("SELECT source, folded_to_ms FROM dashboard_rollup", &[]).await?;
        let mark = |source: Source| -> Result<i64, StoreError> {
            for row in &rows {
                if row.text(0)? == source.as_str() {
                    return row.int(1);
                }
            }
            Err(StoreError::Schema(format!("dashboard_rollup has no {}", source.as_str())))
        };
        Ok((mark(Source::Cards)?, mark(Source::Trades)?))
    }
}

/// The definitions [`WebStore::day_volumes_from_records`] aggregates, written apart from the
/// roll-up's (`crate::rollup`) on purpose: the tests hold the two equal.
///
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
        let marks = self.watermarks().await?;
        let scope = merchant_id.unwrap_or(ALL_MERCHANTS);
        let sql = day_volumes_sql();
        let rows = self.reader.query(sql, &params![date_from, date_to, scope, marks.0, marks.1]).await?;
        let mut days: BTreeMap<(String, String, String, Outcome), (i64, i64)> = BTreeMap::new();
        for row in &rows {
            let (date, merchant) = (row.text(1)?, row.text(2)?);
            // The summary's rows are this scope's already; the tail's are every merchant's.
            let in_scope = row.int(0)? == 0 || merchant_id.is_none_or(|wanted| wanted == merchant);
            if !in_scope || date.as_str() < date_from || date.as_str() > date_to {
                continue;
            }
            let outcome = row.text(5)?;
            let outcome = Outcome::parse(&outcome).ok_or_else(|| StoreError::Corrupt(format!("outcome {outcome}")))?;
            let day = days.entry((date, row.text(3)?, row.text(4)?, outcome)).or_default();
            let overflow = || StoreError::Corrupt("dashboard amounts overflow".into());
            day.0 = day.0.checked_add(row.int(6)?).ok_or_else(overflow)?;
            day.1 = day.1.checked_add(row.int(7)?).ok_or_else(overflow)?;
        }
        // The summary and the tail add up to the records' own counts: never below zero.
        if let Some((key, count)) = days.iter().find(|(_, (count, _))| *count < 0) {
            return Err(StoreError::Corrupt(format!("dashboard count {count:?} for {key:?}")));
        }
        Ok(days
            .into_iter()
            .filter(|(_, (count, _))| *count != 0)
            .map(|((business_date, channel, currency, outcome), (count, amount_minor))| DayVolume {
                business_date,
                channel: (!channel.is_empty()).then_some(channel),
                currency,
                outcome,
                count,
                amount_minor,
            })
            .collect())
    }

    async fn qr_latency(
        &self,
        merchant_id: Option<&str>,
        date_from: &str,
        date_to: &str,
    ) -> Result<LatencyHistogram, StoreError> {
        let (_, trades_mark) = self.watermarks().await?;
        let scope = merchant_id.unwrap_or(ALL_MERCHANTS);
        let rows = self.reader.query(latency_sql(), &params![date_from, date_to, scope, trades_mark]).await?;
        let mut counts = vec![0; LATENCY_BUCKETS_MS.len() + 1];
        for row in &rows {
            let (date, merchant) = (row.text(1)?, row.text(2)?);
            let in_scope = row.int(0)? == 0 || merchant_id.is_none_or(|wanted| wanted == merchant);
            if !in_scope || date.as_str() < date_from || date.as_str() > date_to {
                continue;
            }
            let bucket = row.int(3)?;
            let slot = usize::try_from(bucket).ok().and_then(|index| counts.get_mut(index));
            let slot = slot.ok_or_else(|| StoreError::Corrupt(format!("latency bucket {bucket}")))?;
            *slot += row.int(4)?;
        }
        if let Some(negative) = counts.iter().find(|n| **n < 0) {
            return Err(StoreError::Corrupt(format!("dashboard latency count {negative}")));
        }
        Ok(LatencyHistogram { counts })
    }

    async fn day_volumes_from_records(
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

    async fn qr_latency_from_records(
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
    use crate::core::unit::Statement;
    use crate::core::value::params;
    use crate::WriteOp;

    /// The parameters as named columns (`p`; SQLite numbers `$n` parameters in the order they
    /// first appear, so each appears once, here) and the rows `i` = 0 .. rows (`n`).
    macro_rules! numbers {
        () => {
            "WITH RECURSIVE p(first_id, row_count, day, day_start, span, merchants) AS (SELECT CAST($1 AS BIGINT), \
             CAST($2 AS BIGINT), CAST($3 AS TEXT), CAST($4 AS BIGINT), CAST($5 AS BIGINT), CAST($6 AS BIGINT)), \
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
         '622202******0128', 'bench', day, day_start + i * span / row_count, day_start + i * span / row_count FROM n, p"
    );

    const QR_DAY: &str = concat!(
        numbers!(),
        "INSERT INTO qr_trades (id, merchant_id, out_trade_no, reference, kind, wallet, status, amount_minor, currency, \
         subject, origin, trade_no, paid_at_ms, expires_at_ms, business_date, created_at_ms, updated_at_ms) \
         SELECT first_id + i, CAST(898100000000001 + (i % merchants) AS TEXT), 'B' || CAST(first_id + i AS TEXT), \
         'KB' || CAST(first_id + i AS TEXT), 'customer_code', CASE WHEN i % 2 = 0 THEN 'alipay' ELSE 'wechat' END, \
         CASE WHEN i % 25 = 3 THEN 'failed' WHEN i % 50 = 11 THEN 'closed' WHEN i % 500 = 17 THEN 'waiting' ELSE 'paid' END, \
         100 + (i * 7919) % 100000, 'CNY', 'coffee', 'api', '2026' || CAST(first_id + i AS TEXT), \
         CASE WHEN i % 25 = 3 OR i % 50 = 11 OR i % 500 = 17 THEN NULL ELSE day_start + i * span / row_count + 300 + (i % 97) * 97 END, \
         day_start + i * span / row_count + 60000, day, day_start + i * span / row_count, day_start + i * span / row_count FROM n, p"
    );

    /// Where a day's rows go: its date, the start of the day and how much of it they spread
    /// over (all of a past day; of today, only what has passed: a record is never stamped in
    /// the future).
    #[derive(Debug, Clone, Copy)]
    pub struct Day<'a> {
        /// `YYYY-MM-DD`.
        pub business_date: &'a str,
        /// When the business day starts, Unix ms.
        pub start_ms: i64,
        /// The rows' times spread over `start_ms .. start_ms + span_ms`.
        pub span_ms: i64,
    }

    /// `rows` card sales (1 in 20 declined) of `day`, ids from `first_id`, over `merchants`
    /// merchants from 898100000000001.
    pub fn card_day(first_id: i64, rows: i64, day: Day<'_>, merchants: i64) -> WriteOp {
        let params = params![first_id, rows, day.business_date, day.start_ms, day.span_ms.max(1), merchants].to_vec();
        WriteOp::Statement { statement: Statement { sql: CARD_DAY, params }, may_change_nothing: false }
    }

    /// `rows` QR trades of `day` (mostly paid, alternating wallets), like [`card_day`].
    pub fn qr_day(first_id: i64, rows: i64, day: Day<'_>, merchants: i64) -> WriteOp {
        let params = params![first_id, rows, day.business_date, day.start_ms, day.span_ms.max(1), merchants].to_vec();
        WriteOp::Statement { statement: Statement { sql: QR_DAY, params }, may_change_nothing: false }
    }
}

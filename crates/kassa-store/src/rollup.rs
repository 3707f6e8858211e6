//! The dashboard's roll-up: what the back office's dashboard counts (payments per business day,
//! merchant, channel, currency and outcome; QR payment latency per day, merchant and bucket),
//! kept in summary tables by a background task instead of aggregated from 14 days of records at
//! every view (migration 0017).
//!
//! A card transaction's status and a QR trade's status, wallet and payment time change after
//! insert (a pending trade is paid, an approved sale reversed, a corrected one approved), so a
//! roll-up cannot just add new rows. Every change stamps the row's `updated_at_ms`; the roll-up
//! reads the rows stamped after its watermark (`dashboard_rollup.folded_to_ms`, per source) in
//! chunks, and folds each as the difference between how it counted the row last time
//! (`dashboard_folded_*`, one narrow row per payment) and how the row counts now. Folding a row
//! twice changes nothing, so a chunk may overlap the next one.
//!
//! The watermark stays [`SETTLE_MS`] behind the clock: a change stamped at `t` has committed by
//! `t + SETTLE_MS` (the committer's queue and deadlines bound it; host clocks are kept within
//! it), so every row stamped at or before the watermark was read by the chunk that moved it. A view
//! then reads the summary plus the tail — the rows stamped after the watermark, each added as it
//! is now and subtracted as it was folded — and is exact, not as of the last roll-up
//! ([`crate::web::WebStore::day_volumes`]).
//!
//! **Invariant**: the summary is the sum of what `dashboard_folded_*` says each payment counted
//! as, and every row whose present state differs from its folded one is stamped after the
//! watermark. Both hold because a chunk's summary changes, folded rows and new watermark are one
//! unit, written only at the watermark's version it read (two hosts: one wins, the other reads
//! again).
//! **Boundary**: no payment's commit writes here; the roll-up reads the records through the
//! indexes on `updated_at_ms` and writes through the committer like any other unit.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::core::unit::Statement;
use crate::core::value::{params, Row, Value};
use crate::web::{Outcome, LATENCY_BUCKETS_MS};
use crate::{Guard, Store, StoreError, UnitOutcome, WriteOp, WriteUnit};

/// How long after its `updated_at_ms` a change may still commit, clocks of different hosts
/// included; the watermark stays this far behind the roll-up's clock. A change commits within
/// milliseconds of its stamp; a full committer queue of batches that each time out (16 batches
/// of 1,024 units, 5 s each on PostgreSQL) delays one by about 85 s. A change that commits later
/// still (a writer stalled for minutes) is missed by the dashboard until its row changes again.
pub const SETTLE_MS: i64 = 120_000;

/// Rows one chunk reads and folds in one unit (a chunk ends on a whole millisecond, so it may
/// take the few more rows stamped in its last one): small enough that the unit shares a commit
/// with payments without holding them up.
pub const CHUNK_ROWS: usize = 4_000;

/// The `merchant_id` of the summary rows that count every merchant together.
pub const ALL_MERCHANTS: &str = "*";

/// Card transactions the dashboard counts as payments; voids and refunds are not payments.
pub(crate) const CARD_PAYMENT: &str = "r.kind IN ('sale', 'completion', 'offline_sale')";

/// A card payment's outcome: a voided or refunded sale was approved.
pub(crate) const CARD_OUTCOME: &str = "CASE WHEN r.status IN ('declined', 'reversed') THEN 'failed' \
     WHEN r.status = 'pending' THEN 'pending' ELSE 'succeeded' END";

/// A QR trade's channel: its wallet, `''` for a merchant QR no wallet was chosen for.
pub(crate) const TRADE_CHANNEL: &str = "COALESCE(r.wallet, '')";

/// A QR trade's outcome.
pub(crate) const TRADE_OUTCOME: &str = "CASE WHEN r.status = 'paid' THEN 'succeeded' \
     WHEN r.status IN ('pending', 'waiting') THEN 'pending' ELSE 'failed' END";

/// A QR trade's latency bucket (index into [`LATENCY_BUCKETS_MS`], the last one open); NULL
/// unless it was paid.
pub(crate) fn trade_latency_bucket() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let mut sql = String::from("CASE WHEN r.status = 'paid' AND r.paid_at_ms IS NOT NULL THEN CASE");
        for (index, bound) in LATENCY_BUCKETS_MS.iter().enumerate() {
            sql.push_str(&format!(" WHEN r.paid_at_ms - r.created_at_ms < {bound} THEN {index}"));
        }
        sql.push_str(&format!(" ELSE {} END END", LATENCY_BUCKETS_MS.len()));
        sql
    })
}

/// A table the roll-up folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `transactions`: card payments.
    Cards,
    /// `qr_trades`.
    Trades,
}

impl Source {
    /// Its row in `dashboard_rollup`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Cards => "cards",
            Source::Trades => "trades",
        }
    }

    /// The columns a chunk reads, in [`Changed::from_row`]'s order, from the record `r` and its
    /// folded row `f`.
    fn columns(self) -> String {
        let fixed = "r.id, r.updated_at_ms, r.business_date, r.merchant_id, r.currency, r.amount_minor";
        match self {
            Source::Cards => format!(
                "{fixed}, r.channel, {CARD_OUTCOME}, CAST(NULL AS BIGINT), r.channel, f.outcome, CAST(NULL AS BIGINT) \
                 FROM transactions AS r LEFT JOIN dashboard_folded_cards AS f ON f.id = r.id \
                 WHERE {CARD_PAYMENT} AND"
            ),
            Source::Trades => format!(
                "{fixed}, {TRADE_CHANNEL}, {TRADE_OUTCOME}, {}, f.channel, f.outcome, f.latency_bucket \
                 FROM qr_trades AS r LEFT JOIN dashboard_folded_trades AS f ON f.id = r.id WHERE",
                trade_latency_bucket()
            ),
        }
    }
}

/// What a payment counts as, in the parts that can change after it was recorded (its day,
/// merchant, currency and amount never do).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counted {
    channel: String,
    outcome: Outcome,
    /// The latency bucket of a paid QR trade.
    bucket: Option<i64>,
}

/// A payment as a chunk reads it: how it counts now, and how the roll-up counted it last.
#[derive(Debug)]
struct Changed {
    id: i64,
    updated_at_ms: i64,
    business_date: String,
    merchant_id: String,
    currency: String,
    amount_minor: i64,
    now: Counted,
    folded: Option<Counted>,
}

fn outcome(text: &str) -> Result<Outcome, StoreError> {
    Outcome::parse(text).ok_or_else(|| StoreError::Corrupt(format!("outcome {text}")))
}

impl Changed {
    fn from_row(row: &Row) -> Result<Changed, StoreError> {
        let folded = match row.opt_text(10)? {
            Some(folded_outcome) => {
                Some(Counted { channel: row.text(9)?, outcome: outcome(&folded_outcome)?, bucket: row.opt_int(11)? })
            }
            None => None,
        };
        Ok(Changed {
            id: row.int(0)?,
            updated_at_ms: row.int(1)?,
            business_date: row.text(2)?,
            merchant_id: row.text(3)?,
            currency: row.text(4)?,
            amount_minor: row.int(5)?,
            now: Counted { channel: row.text(6)?, outcome: outcome(&row.text(7)?)?, bucket: row.opt_int(8)? },
            folded,
        })
    }
}

/// A summary row's key: business date, merchant (or [`ALL_MERCHANTS`]), channel, currency,
/// outcome.
type DayKey = (String, String, String, String, Outcome);

/// What a chunk changes in the summary: payments and amount per day key, payments per (day,
/// merchant, latency bucket).
#[derive(Debug, Default)]
struct Deltas {
    days: BTreeMap<DayKey, (i64, i64)>,
    latency: BTreeMap<(String, String, i64), i64>,
}

impl Deltas {
    /// Adds (`sign` 1) or takes away (`sign` -1) `payment` counted as `counted`, for its merchant
    /// and for all merchants.
    fn count(&mut self, payment: &Changed, counted: &Counted, sign: i64) -> Result<(), StoreError> {
        let overflow = || StoreError::Corrupt(format!("dashboard amounts overflow at {}", payment.business_date));
        let amount = payment.amount_minor.checked_mul(sign).ok_or_else(overflow)?;
        for merchant in [payment.merchant_id.as_str(), ALL_MERCHANTS] {
            let key = (
                payment.business_date.clone(),
                merchant.to_owned(),
                counted.channel.clone(),
                payment.currency.clone(),
                counted.outcome,
            );
            let day = self.days.entry(key).or_default();
            day.0 += sign;
            day.1 = day.1.checked_add(amount).ok_or_else(overflow)?;
            if let Some(bucket) = counted.bucket {
                *self.latency.entry((payment.business_date.clone(), merchant.to_owned(), bucket)).or_default() += sign;
            }
        }
        Ok(())
    }
}

/// A multi-row `INSERT … ON CONFLICT` whose statements are built once per size (the committer
/// takes `'static` SQL): a chunk's rows go in statements of [`Upsert::SIZES`] rows.
struct Upsert {
    head: &'static str,
    width: usize,
    tail: &'static str,
    sql: [OnceLock<String>; 3],
}

impl Upsert {
    const SIZES: [usize; 3] = [200, 20, 1];

    const fn new(head: &'static str, width: usize, tail: &'static str) -> Upsert {
        Upsert { head, width, tail, sql: [OnceLock::new(), OnceLock::new(), OnceLock::new()] }
    }

    fn sql(&'static self, size: usize) -> &'static str {
        self.sql[size].get_or_init(|| {
            let rows: Vec<String> = (0..Upsert::SIZES[size])
                .map(|row| {
                    let slots: Vec<String> = (1..=self.width).map(|n| format!("${}", row * self.width + n)).collect();
                    format!("({})", slots.join(", "))
                })
                .collect();
            format!("{} VALUES {} {}", self.head, rows.join(", "), self.tail)
        })
    }

    /// The statements that write `rows` (each `width` values).
    fn statements(&'static self, rows: Vec<Vec<Value>>, ops: &mut Vec<WriteOp>) {
        let mut rest = rows.as_slice();
        for (size, rows_per_statement) in Upsert::SIZES.iter().enumerate() {
            while rest.len() >= *rows_per_statement {
                let (these, others) = rest.split_at(*rows_per_statement);
                let statement = Statement { sql: self.sql(size), params: these.concat() };
                ops.push(WriteOp::Statement { statement, may_change_nothing: false });
                rest = others;
            }
        }
    }
}

static DAYS: Upsert = Upsert::new(
    "INSERT INTO dashboard_days (business_date, merchant_id, channel, currency, outcome, payments, amount_minor)",
    7,
    "ON CONFLICT (business_date, merchant_id, channel, currency, outcome) DO UPDATE SET \
     payments = dashboard_days.payments + excluded.payments, \
     amount_minor = dashboard_days.amount_minor + excluded.amount_minor",
);

static LATENCY: Upsert = Upsert::new(
    "INSERT INTO dashboard_latency (business_date, merchant_id, bucket, payments)",
    4,
    "ON CONFLICT (business_date, merchant_id, bucket) DO UPDATE SET \
     payments = dashboard_latency.payments + excluded.payments",
);

static FOLDED_CARDS: Upsert = Upsert::new(
    "INSERT INTO dashboard_folded_cards (id, outcome)",
    2,
    "ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome",
);

static FOLDED_TRADES: Upsert = Upsert::new(
    "INSERT INTO dashboard_folded_trades (id, channel, outcome, latency_bucket)",
    4,
    "ON CONFLICT (id) DO UPDATE SET channel = excluded.channel, outcome = excluded.outcome, \
     latency_bucket = excluded.latency_bucket",
);

/// The watermark moves only at the version read: of two roll-ups, one wins.
fn advance(source: Source, folded_to_ms: i64, now_ms: i64, version: i64) -> Guard {
    Guard::Statement(Statement {
        sql: "UPDATE dashboard_rollup SET folded_to_ms = $1, rolled_at_ms = $2, version = version + 1 \
              WHERE source = $3 AND version = $4",
        params: params![folded_to_ms, now_ms, source.as_str(), version].to_vec(),
    })
}

/// A source's watermark and its version.
pub(crate) async fn watermark(store: &Store, source: Source) -> Result<(i64, i64), StoreError> {
    let rows = store
        .reads
        .reader
        .query("SELECT folded_to_ms, version FROM dashboard_rollup WHERE source = $1", &params![source.as_str()])
        .await?;
    let row = rows.first().ok_or_else(|| StoreError::Schema(format!("dashboard_rollup has no {}", source.as_str())))?;
    Ok((row.int(0)?, row.int(1)?))
}

/// What [`roll_up`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupReport {
    /// Records read by the chunks written (changed since the watermark, up to the settled
    /// time).
    pub rows_read: u64,
    /// Of those, the ones that count differently than last folded (or were never folded).
    pub rows_folded: u64,
    /// Chunks written, each one unit.
    pub chunks: u64,
    /// Chunks another roll-up wrote first (this one stopped; the next round goes on).
    pub lost_races: u64,
}

/// One chunk of `source`, folded up to at most `settled_ms`. Returns whether more rows wait.
async fn fold_chunk(
    store: &Store,
    source: Source,
    settled_ms: i64,
    now_ms: i64,
    chunk_rows: usize,
    report: &mut RollupReport,
) -> Result<bool, StoreError> {
    let (folded_to_ms, version) = watermark(store, source).await?;
    if folded_to_ms >= settled_ms {
        return Ok(false);
    }
    let limit = i64::try_from(chunk_rows).unwrap_or(i64::MAX);
    let columns = source.columns();
    let sql = format!(
        "SELECT {columns} r.updated_at_ms > $1 AND r.updated_at_ms <= $2 ORDER BY r.updated_at_ms, r.id LIMIT $3"
    );
    let rows = store.reads.reader.query(&sql, &params![folded_to_ms, settled_ms, limit]).await?;
    let mut changed = rows.iter().map(Changed::from_row).collect::<Result<Vec<_>, _>>()?;
    if changed.is_empty() {
        return Ok(false);
    }
    let full = changed.len() >= chunk_rows;
    let new_mark = match changed.last() {
        // The rest of the last millisecond too, so the watermark can end on it.
        Some(last) if full => {
            let sql = format!("SELECT {columns} r.updated_at_ms = $1 AND r.id > $2 ORDER BY r.id");
            let (at_ms, id) = (last.updated_at_ms, last.id);
            let rest = store.reads.reader.query(&sql, &params![at_ms, id]).await?;
            for row in &rest {
                changed.push(Changed::from_row(row)?);
            }
            at_ms
        }
        _ => settled_ms,
    };
    assert!(new_mark > folded_to_ms, "a chunk moves the watermark forward");

    let mut deltas = Deltas::default();
    let mut folded_rows = Vec::new();
    for payment in &changed {
        if payment.folded.as_ref() == Some(&payment.now) {
            continue;
        }
        if let Some(before) = &payment.folded {
            deltas.count(payment, before, -1)?;
        }
        deltas.count(payment, &payment.now, 1)?;
        folded_rows.push(match source {
            Source::Cards => params![payment.id, payment.now.outcome.as_str()].to_vec(),
            Source::Trades => {
                params![payment.id, payment.now.channel.as_str(), payment.now.outcome.as_str(), payment.now.bucket]
                    .to_vec()
            }
        });
    }
    let (rows_read, rows_folded) = (changed.len() as u64, folded_rows.len() as u64);

    let mut ops = Vec::new();
    let days = deltas.days.into_iter().filter(|(_, (payments, amount))| *payments != 0 || *amount != 0);
    let days = days.map(|((date, merchant, channel, currency, outcome), (payments, amount))| {
        params![date, merchant, channel, currency, outcome.as_str(), payments, amount].to_vec()
    });
    DAYS.statements(days.collect(), &mut ops);
    let latency = deltas.latency.into_iter().filter(|(_, payments)| *payments != 0);
    let latency =
        latency.map(|((date, merchant, bucket), payments)| params![date, merchant, bucket, payments].to_vec());
    LATENCY.statements(latency.collect(), &mut ops);
    match source {
        Source::Cards => FOLDED_CARDS.statements(folded_rows, &mut ops),
        Source::Trades => FOLDED_TRADES.statements(folded_rows, &mut ops),
    }
    match store.commit(WriteUnit::guarded(advance(source, new_mark, now_ms, version), ops)).await? {
        UnitOutcome::Committed { .. } => {
            report.rows_read += rows_read;
            report.rows_folded += rows_folded;
            report.chunks += 1;
            Ok(full)
        }
        UnitOutcome::Duplicate { .. } => {
            report.lost_races += 1;
            Ok(false)
        }
        other => Err(StoreError::Corrupt(format!("dashboard roll-up: unexpected outcome {other:?}"))),
    }
}

/// Folds every card payment and QR trade changed since the watermarks, up to `now_ms` minus
/// [`SETTLE_MS`], in chunks of [`CHUNK_ROWS`]. Safe to run from several hosts at once.
pub async fn roll_up(store: &Store, now_ms: i64) -> Result<RollupReport, StoreError> {
    roll_up_in_chunks(store, now_ms, CHUNK_ROWS).await
}

/// [`roll_up`] in chunks of `chunk_rows` (at least one).
pub async fn roll_up_in_chunks(store: &Store, now_ms: i64, chunk_rows: usize) -> Result<RollupReport, StoreError> {
    let settled_ms = now_ms.saturating_sub(SETTLE_MS);
    let mut report = RollupReport::default();
    for source in [Source::Cards, Source::Trades] {
        // Each full chunk moves the watermark forward, towards a fixed `settled_ms`: this ends.
        while fold_chunk(store, source, settled_ms, now_ms, chunk_rows.max(1), &mut report).await? {}
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_number_their_rows_in_order() {
        static PAIRS: Upsert = Upsert::new("INSERT INTO t (a, b)", 2, "ON CONFLICT (a) DO NOTHING");
        assert_eq!(PAIRS.sql(2), "INSERT INTO t (a, b) VALUES ($1, $2) ON CONFLICT (a) DO NOTHING");
        assert!(PAIRS.sql(1).contains("($39, $40) ON CONFLICT"));
        let mut ops = Vec::new();
        PAIRS.statements((0..243_i64).map(|n| params![n, n].to_vec()).collect(), &mut ops);
        // 243 = 200 + 2 × 20 + 3 × 1.
        assert_eq!(ops.len(), 6);
        let WriteOp::Statement { statement, .. } = &ops[5] else { panic!("a statement") };
        assert_eq!(statement.params, params![242_i64, 242_i64].to_vec());
    }

    #[test]
    fn a_payment_counts_for_its_merchant_and_for_all() {
        let payment = Changed {
            id: 1,
            updated_at_ms: 5,
            business_date: "2026-12-01".into(),
            merchant_id: "M".into(),
            currency: "CNY".into(),
            amount_minor: 300,
            now: Counted { channel: "alipay".into(), outcome: Outcome::Succeeded, bucket: Some(2) },
            folded: Some(Counted { channel: "alipay".into(), outcome: Outcome::Pending, bucket: None }),
        };
        let mut deltas = Deltas::default();
        deltas.count(&payment, payment.folded.as_ref().unwrap(), -1).unwrap();
        deltas.count(&payment, &payment.now, 1).unwrap();
        let key =
            |merchant: &str, outcome| ("2026-12-01".into(), merchant.into(), "alipay".into(), "CNY".into(), outcome);
        for merchant in ["M", ALL_MERCHANTS] {
            assert_eq!(deltas.days[&key(merchant, Outcome::Pending)], (-1, -300));
            assert_eq!(deltas.days[&key(merchant, Outcome::Succeeded)], (1, 300));
            assert_eq!(deltas.latency[&("2026-12-01".into(), merchant.into(), 2)], 1);
        }
        let huge = Changed { amount_minor: i64::MAX, ..payment };
        deltas.count(&huge, &huge.now, 1).unwrap_err();
    }

    #[test]
    fn the_latency_bucket_names_every_bound() {
        let sql = trade_latency_bucket();
        assert!(sql.contains("< 500 THEN 0") && sql.contains("< 120000 THEN 8") && sql.ends_with("ELSE 9 END END"));
    }
}

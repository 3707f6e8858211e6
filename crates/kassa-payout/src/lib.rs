//! Merchant payouts and settlement reports (结算 / 清算).
//!
//! [`Payouts::run`] settles every merchant for one business day: T+1 once the day is over, or D0
//! (a per-merchant setting) while it is still open. Each merchant account (merchant and currency)
//! gets at most one payout per day; it takes every entry of the merchant's payable account made
//! before its cut-off that no earlier payout took — captures, voids, refunds, approved corrections
//! — so what arrives after a D0 payout, or late, goes into the next one. Its totals are the
//! database's sums over exactly those entries, and its journal entry (`payout:<id>`) moves the net
//! from the merchant's payable account to payouts. A rerun answers the same payouts and creates
//! none. [`Payouts::report`] is the settlement report of one payout, with the corrections still
//! open for the merchant (listed, never paid) and the ledger's own sum it must equal.
//!
//! **Invariant**: a ledger entry is paid out at most once (the store's unique key) and every
//! entry before a cut-off is in the first payout after it; `net = gross + corrections − refunds −
//! fees` equals minus the sum of the merchant postings it took and the amount of its entry.
//! **Boundary**: no HTTP, no SQL; JSON and CSV renderings are here because they are the report.

use std::sync::Arc;

use kassa_domain::clock::Clock;
use kassa_domain::{BusinessDay, CivilDate, MerchantId};
use kassa_ledger::payout_entry;
use kassa_store::corrections::{CorrectionQuery, CorrectionStatus, CorrectionView};
use kassa_store::payouts::{
    account_key, claim_item, entry_reference, open_payout, payout_is_open, post_payout, set_schedule, KindSums,
    NewPayout, PayoutItem, PayoutRecord, PayoutSchedule, PayoutStatus, PayoutTotals, SCHEDULE_SETTING,
};
use kassa_store::{AuditEvent, Store, StoreError, UnitOutcome, WriteOp, WriteUnit};

/// Merchant accounts settled in one run at most.
pub const ACCOUNTS_PER_RUN_MAX: i64 = 10_000;
/// Lines of a settlement report per page at most.
pub const REPORT_ITEMS_MAX: i64 = 1_000;
/// Entries claimed per write unit at most.
pub const CLAIMS_PER_UNIT_MAX: i64 = 500;
/// Open corrections listed in a report at most.
pub const OPEN_CORRECTIONS_MAX: i64 = 100;
const MS_PER_MINUTE: i64 = 60_000;
const MINUTES_PER_DAY: i64 = 1_440;

/// Why a payout operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    /// The request is wrong (a day in the future, a bad date).
    #[error("invalid: {0}")]
    Invalid(String),
    /// No such payout.
    #[error("no such payout")]
    NotFound,
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Stored data or a computation that must not fail did.
    #[error("internal: {0}")]
    Internal(String),
}

fn internal(error: impl std::fmt::Display) -> PayoutError {
    PayoutError::Internal(error.to_string())
}

/// The first instant (Unix ms) after business day `date`: its cut-off on its local day, or the
/// local midnight that ends it when the cut-off is at midnight.
pub fn day_end_ms(business_day: &BusinessDay, date: CivilDate) -> i64 {
    let cut_off = i64::from(business_day.cut_off_minutes);
    let end_minute = if cut_off > 0 && cut_off < MINUTES_PER_DAY {
        date.days_since_epoch() * MINUTES_PER_DAY + cut_off
    } else {
        (date.days_since_epoch() + 1) * MINUTES_PER_DAY
    };
    (end_minute - i64::from(business_day.utc_offset_minutes)) * MS_PER_MINUTE
}

/// The totals of what a payout took, from the database's sums per entry kind.
pub fn totals_of(sums: &[KindSums]) -> Result<PayoutTotals, PayoutError> {
    let overflow = || PayoutError::Internal("payout totals overflow".into());
    let mut totals = PayoutTotals::default();
    for sum in sums {
        // An entry credits the merchant `-merchant` and the platform `-fee`; what was paid is
        // the sum of both, what the fee kept is `-fee`.
        let amount = sum.merchant_minor.checked_add(sum.fee_minor).and_then(i64::checked_neg).ok_or_else(overflow)?;
        let fee = sum.fee_minor.checked_neg().ok_or_else(overflow)?;
        let bucket = match sum.kind.as_str() {
            "refund" => &mut totals.refunds_minor,
            "correction" => &mut totals.corrections_minor,
            _ => &mut totals.gross_minor,
        };
        *bucket = if sum.kind == "refund" { bucket.checked_sub(amount) } else { bucket.checked_add(amount) }
            .ok_or_else(overflow)?;
        totals.fees_minor = totals.fees_minor.checked_add(fee).ok_or_else(overflow)?;
        totals.net_minor = totals.net_minor.checked_sub(sum.merchant_minor).ok_or_else(overflow)?;
        totals.item_count = totals.item_count.checked_add(sum.entries).ok_or_else(overflow)?;
    }
    let check = totals
        .gross_minor
        .checked_add(totals.corrections_minor)
        .and_then(|v| v.checked_sub(totals.refunds_minor))
        .and_then(|v| v.checked_sub(totals.fees_minor))
        .ok_or_else(overflow)?;
    assert_eq!(check, totals.net_minor, "net = gross + corrections - refunds - fees");
    Ok(totals)
}

/// The settlement report of one payout: a page of its lines, the corrections still open for
/// the merchant, and the ledger's own sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementReport {
    /// The payout.
    pub payout: PayoutRecord,
    /// Its lines (ledger entries), by entry id, after the requested one.
    pub items: Vec<PayoutItem>,
    /// The entry id to ask the next page after, when there may be more.
    pub next_after: Option<i64>,
    /// Corrections of the merchant still proposed: differences not paid.
    pub open_corrections: Vec<CorrectionView>,
    /// Minus the sum of the merchant postings of the entries the payout took, read from the
    /// ledger: equals the payout's net.
    pub ledger_net_minor: i64,
    /// The amount its own journal entry moved to payouts (0 when its net is zero).
    pub entry_minor: i64,
}

impl SettlementReport {
    /// The report as JSON (integer minor units).
    pub fn to_json(&self) -> serde_json::Value {
        let p = &self.payout;
        serde_json::json!({
            "payout": payout_json(p),
            "items": self.items.iter().map(|i| serde_json::json!({
                "entry": i.entry_id,
                "kind": i.kind,
                "reference": i.reference,
                "at_ms": i.at_ms,
                "amount": -(i.merchant_minor + i.fee_minor),
                "fee": -i.fee_minor,
                "net": -i.merchant_minor,
            })).collect::<Vec<_>>(),
            "next_after": self.next_after,
            "open_corrections": self.open_corrections.iter().map(|c| serde_json::json!({
                "id": c.id,
                "kind": c.correction.kind,
                "channel": c.proposal.channel.map(|ch| ch.as_str()),
                "reference": c.proposal.reference,
                "amount": c.proposal.amount_minor,
            })).collect::<Vec<_>>(),
            "ledger": { "net": self.ledger_net_minor, "payout_entry": self.entry_minor },
        })
    }

    /// The report as CSV: one line per entry, then the totals and the ledger's sum.
    pub fn to_csv(&self) -> String {
        let p = &self.payout;
        let mut csv = String::from("entry,kind,reference,at_ms,amount,fee,net\n");
        for i in &self.items {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{}\n",
                i.entry_id,
                csv_field(&i.kind),
                csv_field(&i.reference),
                i.at_ms,
                -(i.merchant_minor + i.fee_minor),
                -i.fee_minor,
                -i.merchant_minor
            ));
        }
        let t = &p.totals;
        csv.push_str(&format!(
            "total,payout {},{} {} {},,{},{},{}\n",
            p.id,
            p.merchant_id,
            p.business_date,
            p.currency.code(),
            t.gross_minor + t.corrections_minor - t.refunds_minor,
            t.fees_minor,
            t.net_minor
        ));
        csv.push_str(&format!("ledger,,,,,,{}\n", self.ledger_net_minor));
        for c in &self.open_corrections {
            csv.push_str(&format!(
                "open_correction,{},{},,{},,\n",
                csv_field(&c.correction.kind),
                csv_field(c.proposal.reference.as_deref().unwrap_or("")),
                c.proposal.amount_minor.map(|a| a.to_string()).unwrap_or_default()
            ));
        }
        csv
    }
}

/// A CSV field: quoted when it holds a separator, quote or line break; a leading formula
/// character is defused for spreadsheets.
fn csv_field(text: &str) -> String {
    let defused = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_owned() };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

/// A payout as the `kassa payouts` JSON and the back office show it.
pub fn payout_json(p: &PayoutRecord) -> serde_json::Value {
    serde_json::json!({
        "merchant": p.merchant_id,
        "payout": p.id,
        "date": p.business_date,
        "schedule": p.schedule.as_str(),
        "gross": p.totals.gross_minor,
        "refunds": p.totals.refunds_minor,
        "fees": p.totals.fees_minor,
        "corrections": p.totals.corrections_minor,
        "net": p.totals.net_minor,
        "items": p.totals.item_count,
        "currency": p.currency.code(),
    })
}

/// The payouts service.
#[derive(Clone)]
pub struct Payouts {
    store: Store,
    clock: Arc<dyn Clock>,
    business_day: BusinessDay,
}

impl std::fmt::Debug for Payouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payouts").field("business_day", &self.business_day).finish_non_exhaustive()
    }
}

impl Payouts {
    /// A service over `store`, dating by `business_day`.
    pub fn new(store: Store, clock: Arc<dyn Clock>, business_day: BusinessDay) -> Payouts {
        Payouts { store, clock, business_day }
    }

    /// A merchant's schedule (T+1 unless set to D0).
    pub async fn schedule(&self, merchant_id: &str) -> Result<PayoutSchedule, PayoutError> {
        let value = self.store.settings.setting(merchant_id, SCHEDULE_SETTING).await?;
        Ok(value
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .and_then(PayoutSchedule::parse)
            .unwrap_or(PayoutSchedule::T1))
    }

    /// Sets a merchant's schedule (the acquirer's decision), audited as `actor`'s with `reason`.
    pub async fn set_schedule(
        &self,
        merchant_id: &str,
        schedule: PayoutSchedule,
        actor: &str,
        reason: &str,
    ) -> Result<(), PayoutError> {
        if self.store.directory.merchant(merchant_id).await?.is_none() {
            return Err(PayoutError::NotFound);
        }
        let now = self.clock.now_ms();
        let ops = vec![
            set_schedule(merchant_id, schedule, now),
            WriteOp::Audit(AuditEvent {
                at_ms: now,
                actor: actor.to_owned(),
                action: "payout_schedule_set".into(),
                target: merchant_id.to_owned(),
                source: "payouts".into(),
                reason: reason.to_owned(),
                details: serde_json::json!({ "schedule": schedule.as_str() }),
            }),
        ];
        self.store.commit(WriteUnit::ops(ops)).await?;
        Ok(())
    }

    /// Settles every merchant for business day `date` once (T+1 when the day is over, D0
    /// merchants while it is open) and answers the day's payouts; `actor` is audited.
    pub async fn run(&self, date: CivilDate, actor: &str) -> Result<Vec<PayoutRecord>, PayoutError> {
        let now = self.clock.now_ms();
        let today = self.business_day.date_of(now);
        if date > today {
            return Err(PayoutError::Invalid(format!("{date} has not started")));
        }
        let day_over = date < today;
        let cutoff_ms = if day_over { day_end_ms(&self.business_day, date) } else { now };
        let business_date = date.to_string();
        for (merchant_id, currency) in self.store.payouts().accounts_owed(cutoff_ms, ACCOUNTS_PER_RUN_MAX).await? {
            let schedule = self.schedule(&merchant_id).await?;
            if !day_over && schedule == PayoutSchedule::T1 {
                continue;
            }
            let new = NewPayout {
                merchant_id,
                currency,
                business_date: business_date.clone(),
                schedule,
                cutoff_ms,
                at_ms: now,
            };
            // A Duplicate is a payout made earlier for the day: it keeps what it took (an open
            // one, left by an interrupted run, claims on below).
            self.store.commit(WriteUnit::guarded(open_payout(&new), vec![])).await?;
            let payout = self
                .store
                .payouts()
                .payout(&new.merchant_id, &new.currency, &new.business_date)
                .await?
                .ok_or(PayoutError::NotFound)?;
            if payout.status == PayoutStatus::Open {
                self.claim(&payout).await?;
            }
        }
        let payouts = self.store.payouts().payouts_of_day(&business_date, ACCOUNTS_PER_RUN_MAX).await?;
        let mut answered = Vec::with_capacity(payouts.len());
        for payout in payouts {
            answered.push(match payout.status {
                PayoutStatus::Open => self.post(payout, actor).await?,
                PayoutStatus::Posted => payout,
            });
        }
        Ok(answered)
    }

    /// Claims for an open payout, a page at a time, the entries made before its cut-off that no
    /// payout took.
    async fn claim(&self, payout: &PayoutRecord) -> Result<(), PayoutError> {
        let key = payout.account_key();
        let mut after = 0;
        loop {
            let ids =
                self.store.payouts().unclaimed_entries(&key, payout.cutoff_ms, after, CLAIMS_PER_UNIT_MAX).await?;
            let Some(&last) = ids.last() else { return Ok(()) };
            let ops = ids.iter().map(|&entry_id| claim_item(payout.id, &key, entry_id)).collect();
            match self.store.commit(WriteUnit::guarded(payout_is_open(payout.id), ops)).await? {
                UnitOutcome::Committed { .. } => after = last,
                // Posted by a concurrent run: what is left goes into the next payout.
                _ => return Ok(()),
            }
        }
    }

    /// The payouts of business day `date`, by merchant, at most `limit`.
    pub async fn of_day(&self, date: CivilDate, limit: i64) -> Result<Vec<PayoutRecord>, PayoutError> {
        Ok(self.store.payouts().payouts_of_day(&date.to_string(), limit.clamp(1, ACCOUNTS_PER_RUN_MAX)).await?)
    }

    /// Writes an open payout's totals and its journal entry, once.
    async fn post(&self, payout: PayoutRecord, actor: &str) -> Result<PayoutRecord, PayoutError> {
        let key = payout.account_key();
        let sums = self.store.payouts().payout_sums(payout.id, &key).await?;
        let totals = totals_of(&sums)?;
        let now = self.clock.now_ms();
        let mut ops = Vec::new();
        if totals.net_minor != 0 {
            let merchant = MerchantId::parse(&payout.merchant_id).map_err(internal)?;
            let net = kassa_domain::Money::from_minor(totals.net_minor, payout.currency);
            let entry = payout_entry(&entry_reference(payout.id), &merchant, net).map_err(internal)?;
            ops.push(WriteOp::PostEntry { entry, at_ms: now });
        }
        ops.push(WriteOp::Audit(AuditEvent {
            at_ms: now,
            actor: actor.to_owned(),
            action: "payout_posted".into(),
            target: entry_reference(payout.id),
            source: "payouts".into(),
            reason: String::new(),
            details: payout_json(&PayoutRecord { totals, ..payout.clone() }),
        }));
        // Anything but Committed: a concurrent run posted it; read what it wrote.
        let outcome = self.store.commit(WriteUnit::guarded(post_payout(payout.id, &totals, now), ops)).await?;
        if matches!(outcome, UnitOutcome::Committed { .. }) {
            tracing::info!(payout = payout.id, merchant = %payout.merchant_id, net = totals.net_minor, "payout posted");
        }
        self.store.payouts().payout_by_id(payout.id).await?.ok_or(PayoutError::NotFound)
    }

    /// The settlement report of payout `id`: its lines after entry `after_entry_id`, at most
    /// `limit` (capped at [`REPORT_ITEMS_MAX`]).
    pub async fn report(&self, id: i64, after_entry_id: i64, limit: i64) -> Result<SettlementReport, PayoutError> {
        let payout = self.store.payouts().payout_by_id(id).await?.ok_or(PayoutError::NotFound)?;
        let key = account_key(&payout.merchant_id, payout.currency.code());
        let limit = limit.clamp(1, REPORT_ITEMS_MAX);
        let items = self.store.payouts().payout_items(id, &key, after_entry_id, limit).await?;
        let next_after = if i64::try_from(items.len()).unwrap_or(i64::MAX) == limit {
            items.last().map(|i| i.entry_id)
        } else {
            None
        };
        let open_corrections = self
            .store
            .corrections()
            .corrections(&CorrectionQuery {
                status: Some(CorrectionStatus::Proposed),
                merchant_id: Some(payout.merchant_id.clone()),
                before_id: None,
                limit: OPEN_CORRECTIONS_MAX,
            })
            .await?;
        let ledger_net_minor = self
            .store
            .payouts()
            .payout_ledger_sum(id, &key)
            .await?
            .checked_neg()
            .ok_or_else(|| internal("overflow"))?;
        let entry_minor = self
            .store
            .ledger
            .entries_for(&entry_reference(id))
            .await?
            .iter()
            .flat_map(|e| e.postings.iter())
            .filter(|(account, _)| *account == key)
            .map(|(_, minor)| *minor)
            .sum();
        Ok(SettlementReport { payout, items, next_after, open_corrections, ledger_net_minor, entry_minor })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn a_day_ends_at_its_cut_off_or_at_midnight() {
        let date = CivilDate::parse("2026-12-06").unwrap();
        for business_day in [BusinessDay::default(), BusinessDay::calendar_day(480), BusinessDay::calendar_day(0)] {
            let end = day_end_ms(&business_day, date);
            assert_eq!(business_day.date_of(end - 1), date, "{business_day:?}");
            assert_eq!(business_day.date_of(end), date.next_day(), "{business_day:?}");
        }
    }

    #[test]
    fn totals_add_up_per_kind() {
        let sums = vec![
            // Two sales of 100.00 at 0.60 %: the merchant gets 198.80, the fee 1.20.
            KindSums { kind: "sale".into(), merchant_minor: -19_880, fee_minor: -120, entries: 2 },
            // A refund of 50.00 returning 0.30 of fee.
            KindSums { kind: "refund".into(), merchant_minor: 4_970, fee_minor: 30, entries: 1 },
            // A correction of 10.00 at 0.38 %.
            KindSums { kind: "correction".into(), merchant_minor: -996, fee_minor: -4, entries: 1 },
        ];
        let totals = totals_of(&sums).unwrap();
        assert_eq!(totals.gross_minor, 20_000);
        assert_eq!(totals.refunds_minor, 5_000);
        assert_eq!(totals.corrections_minor, 1_000);
        assert_eq!(totals.fees_minor, 94);
        assert_eq!(totals.net_minor, 19_880 - 4_970 + 996);
        assert_eq!(totals.item_count, 4);
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("KQ1"), "KQ1");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}

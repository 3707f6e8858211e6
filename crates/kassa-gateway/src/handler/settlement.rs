//! Settlement (结算, 0500) with the totals of field 48, batch upload (批上送, 0320) after an
//! unbalanced one, and the batch close that hands the terminal its next batch in 60.2.

use std::collections::BTreeMap;

use kassa_domain::{Currency, Pan, TxnKind, TxnStatus};
use kassa_iso8583::fields::{BatchUploadCount, Field60, Field61, SettlementTotals, Totals};
use kassa_iso8583::Message;
use kassa_store::batch_upload::{
    insert_batch_item, insert_batch_upload, propose_correction, BatchItemRecord, BatchUploadRecord, NewCorrection,
};
use kassa_store::settlement::{close_batch, BatchGroup, BatchLine, BatchTotals, BATCH_LINES_PAGE_MAX};
use kassa_store::{AuditEvent, CardIdentity, UnitOutcome, WriteOp, WriteUnit};
use serde_json::json;

use super::common::{respond, two_digits};
use super::{Ctx, Handler};
use crate::codes::ResponseCode;
use crate::GatewayError;

const AMOUNT_MODULUS: u64 = 1_000_000_000_000;
const COUNT_MODULUS: u64 = 1_000;
const SETTLE_BALANCED: u8 = 1;
const SETTLE_UNBALANCED: u8 = 2;
const BATCH_NO_MAX: u32 = 999_999;

/// The host's totals of a batch, from the database's groups: debits are captures still
/// standing (not voided or reversed), credits are approved refunds.
fn host_totals(groups: &[BatchGroup]) -> Totals {
    let (mut debit, mut debit_count, mut credit, mut credit_count) = (0u64, 0u64, 0u64, 0u64);
    for group in groups {
        let Some(signed) = counted_sign(group.kind, group.status) else { continue };
        let amount = u64::try_from(group.amount_minor).unwrap_or(0) % AMOUNT_MODULUS;
        let count = u64::try_from(group.count).unwrap_or(0) % COUNT_MODULUS;
        if signed > 0 {
            debit = (debit + amount) % AMOUNT_MODULUS;
            debit_count = (debit_count + count) % COUNT_MODULUS;
        } else {
            credit = (credit + amount) % AMOUNT_MODULUS;
            credit_count = (credit_count + count) % COUNT_MODULUS;
        }
    }
    Totals {
        debit_amount_minor: debit,
        debit_count: debit_count as u16,
        credit_amount_minor: credit,
        credit_count: credit_count as u16,
        settle_code: 0,
    }
}

/// How a host transaction of this kind and status counts in the totals: `1` a debit, `-1` a
/// credit, `None` not at all.
fn counted_sign(kind: TxnKind, status: TxnStatus) -> Option<i64> {
    if kind.is_capture() && matches!(status, TxnStatus::Approved | TxnStatus::PartiallyRefunded | TxnStatus::Refunded) {
        Some(1)
    } else if kind.is_refund() && status == TxnStatus::Approved {
        Some(-1)
    } else {
        None
    }
}

fn same_totals(left: &Totals, right: &Totals) -> bool {
    (left.debit_amount_minor, left.debit_count, left.credit_amount_minor, left.credit_count)
        == (right.debit_amount_minor, right.debit_count, right.credit_amount_minor, right.credit_count)
}

fn next_batch(batch: u32) -> u32 {
    if batch >= BATCH_NO_MAX {
        1
    } else {
        batch + 1
    }
}

impl Handler {
    /// One settlement at a time per terminal batch in this process.
    /// Its key: the batch's identity under the settlement class `050`, which no request has;
    /// `None` for a batch number out of range (answered `30`).
    fn batch_identity(ctx: &Ctx<'_>) -> Option<CardIdentity> {
        CardIdentity::new(&ctx.terminal.terminal_id, ctx.field60.batch_number, kassa_domain::Stan::MIN, "050").ok()
    }

    /// The host's totals of the batch the request names, summed by the database.
    async fn batch_totals(&self, ctx: &Ctx<'_>) -> Result<BatchTotals, GatewayError> {
        Ok(self.store.settlement().batch_totals(&ctx.terminal.terminal_id, ctx.field60.batch_number).await?)
    }

    /// Closes the open batch in one unit, if it is still the batch `totals` were read from (a
    /// conflict otherwise: answered `96`, the terminal settles again). Returns the next batch.
    async fn close_batch(&self, ctx: &Ctx<'_>, totals: &BatchTotals) -> Result<u32, GatewayError> {
        let batch = ctx.field60.batch_number;
        let next = next_batch(batch);
        let ops = close_batch(&ctx.terminal.terminal_id, batch, next, totals.fingerprint, ctx.now_ms);
        let committed = self.store.commit(WriteUnit::ops(ops)).await;
        self.directory.forget_terminal(&ctx.terminal.terminal_id);
        committed?;
        tracing::info!(terminal = %ctx.terminal.terminal_id, batch, next, "batch closed");
        Ok(next)
    }

    fn with_batch(response: &mut Message, field60: Field60, batch: u32) {
        response.set_typed(&Field60 { batch_number: batch, ..field60 });
    }

    pub(super) async fn settlement(&self, ctx: &Ctx<'_>) -> Result<Message, GatewayError> {
        let request = ctx.request;
        if &ctx.field60.network_management_code != b"201" {
            return Ok(respond(request, ResponseCode::FORMAT_ERROR));
        }
        let Ok(Some(theirs)) = request.typed::<SettlementTotals>() else {
            return Ok(respond(request, ResponseCode::FORMAT_ERROR));
        };
        let Some(batch_identity) = Self::batch_identity(ctx) else {
            return Ok(respond(request, ResponseCode::FORMAT_ERROR));
        };
        let _held = self.locks.lock(&batch_identity).await;
        let totals = self.batch_totals(ctx).await?;
        let mut ours = host_totals(&totals.groups);
        let balanced = same_totals(&ours, &theirs.domestic) && same_totals(&Totals::default(), &theirs.foreign);
        ours.settle_code = if balanced { SETTLE_BALANCED } else { SETTLE_UNBALANCED };
        let mut response = respond(request, ResponseCode::APPROVED);
        let batch = if balanced { self.close_batch(ctx, &totals).await? } else { ctx.field60.batch_number };
        response
            .set_typed(&SettlementTotals {
                domestic: ours,
                foreign: Totals { settle_code: ours.settle_code, ..Totals::default() },
            })
            .set(12, &ctx.stamp.time_hhmmss)
            .set(13, &ctx.stamp.date_mmdd)
            .set(15, &ctx.stamp.settlement_mmdd);
        Self::with_batch(&mut response, ctx.field60, batch);
        Ok(response)
    }

    /// 0320 (批上送): one item per transaction of the batch, stored once, then the end message
    /// (48 = count), which settles the batch against the uploaded set and closes it.
    pub(super) async fn batch_upload(&self, ctx: &Ctx<'_>) -> Result<Message, GatewayError> {
        match &ctx.field60.network_management_code {
            b"201" => self.batch_item(ctx).await,
            b"202" => self.batch_end(ctx).await,
            _ => Ok(respond(ctx.request, ResponseCode::FORMAT_ERROR)),
        }
    }

    fn batch_answer(ctx: &Ctx<'_>, code: ResponseCode) -> Message {
        let mut response = respond(ctx.request, code);
        response.set(12, &ctx.stamp.time_hhmmss).set(13, &ctx.stamp.date_mmdd);
        response
    }

    /// One uploaded item, stored once per (terminal, batch, its STAN): a retransmission with
    /// the same content is answered as before, with other content `94`. Items of a closed
    /// batch are `77`; items beyond the limit are refused with `61`.
    async fn batch_item(&self, ctx: &Ctx<'_>) -> Result<Message, GatewayError> {
        let request = ctx.request;
        let Some(item) = Self::batch_item_of(ctx) else {
            return Ok(respond(request, ResponseCode::FORMAT_ERROR));
        };
        let reads = self.store.batch_upload();
        let replay = |stored: &BatchItemRecord| {
            let code = if stored.content_digest == item.content_digest {
                ResponseCode::APPROVED
            } else {
                ResponseCode::DUPLICATE
            };
            Self::batch_answer(ctx, code)
        };
        let Some(batch_identity) = Self::batch_identity(ctx) else {
            return Ok(Self::batch_answer(ctx, ResponseCode::FORMAT_ERROR));
        };
        let _held = self.locks.lock(&batch_identity).await;
        if let Some(stored) = reads.batch_item(&item.terminal_id, item.batch_no, item.stan).await? {
            return Ok(replay(&stored));
        }
        if item.batch_no != ctx.terminal.open_batch {
            return Ok(respond(request, ResponseCode::SIGN_IN_AGAIN));
        }
        let stored_count = reads.batch_item_count(&item.terminal_id, item.batch_no).await?;
        if stored_count >= i64::try_from(self.batch_upload_items_max).unwrap_or(i64::MAX) {
            tracing::warn!(terminal = %item.terminal_id, batch = item.batch_no, "batch upload over its item limit refused");
            return Ok(Self::batch_answer(ctx, ResponseCode::AMOUNT_LIMIT));
        }
        match self.store.commit(WriteUnit::guarded(insert_batch_item(&item), vec![])).await? {
            UnitOutcome::Committed { .. } => Ok(Self::batch_answer(ctx, ResponseCode::APPROVED)),
            _ => {
                // Stored by another process meanwhile.
                let stored = reads.batch_item(&item.terminal_id, item.batch_no, item.stan).await?;
                let stored = stored.ok_or_else(|| GatewayError::Corrupt("batch item".into()))?;
                Ok(replay(&stored))
            }
        }
    }

    /// The item a 0320 describes (2, 3, 4, 11, 37, 38, 60.1, 61); `None` when it is malformed.
    /// Its identity is the STAN of the transaction it describes: 61.2 (61 names the uploaded
    /// transaction, while 11 may be the upload message's own STAN), else field 11.
    fn batch_item_of(ctx: &Ctx<'_>) -> Option<BatchItemRecord> {
        let request = ctx.request;
        let type_code = ctx.field60.message_type_code;
        TxnKind::from_type_code(two_digits(&type_code))?;
        let stan = match request.typed::<Field61>() {
            Ok(Some(field61)) => field61.original_stan,
            Ok(None) => u32::try_from(request.number(11).ok()??).ok()?,
            Err(_) => return None,
        };
        let amount_minor = i64::try_from(request.number(4).ok()??).ok()?;
        let pan = request.field_str(2).unwrap_or("");
        Some(BatchItemRecord {
            terminal_id: ctx.terminal.terminal_id.clone(),
            batch_no: ctx.field60.batch_number,
            stan,
            type_code: String::from_utf8_lossy(&type_code).into_owned(),
            processing_code: request.field_str(3).unwrap_or("").to_owned(),
            amount_minor,
            rrn: request.field_str(37).map(str::to_owned),
            auth_code: request.field_str(38).map(str::to_owned),
            pan_masked: Pan::parse(pan).ok().map(|pan| pan.masked()),
            content_digest: Self::digest(request, pan),
            received_at_ms: ctx.now_ms,
        })
    }

    /// The end of a batch upload: the uploaded set compared with the host's batch, each
    /// difference proposed as a correction, the batch settled against the uploaded set and
    /// closed — once; a retransmission gets the same next batch.
    async fn batch_end(&self, ctx: &Ctx<'_>) -> Result<Message, GatewayError> {
        let request = ctx.request;
        let Ok(Some(BatchUploadCount(uploaded_count))) = request.typed::<BatchUploadCount>() else {
            return Ok(respond(request, ResponseCode::FORMAT_ERROR));
        };
        let terminal_id = &ctx.terminal.terminal_id;
        let batch = ctx.field60.batch_number;
        let reads = self.store.batch_upload();
        let closed = |next: u32| {
            let mut response = Self::batch_answer(ctx, ResponseCode::APPROVED);
            response.set(15, &ctx.stamp.settlement_mmdd);
            Self::with_batch(&mut response, ctx.field60, next);
            response
        };
        let Some(batch_identity) = Self::batch_identity(ctx) else {
            return Ok(Self::batch_answer(ctx, ResponseCode::FORMAT_ERROR));
        };
        let _held = self.locks.lock(&batch_identity).await;
        if let Some(done) = reads.batch_upload(terminal_id, batch).await? {
            return Ok(closed(done.next_batch));
        }
        if batch != ctx.terminal.open_batch {
            return Ok(respond(request, ResponseCode::SIGN_IN_AGAIN));
        }
        let items_max = i64::try_from(self.batch_upload_items_max).unwrap_or(i64::MAX);
        let items = reads.batch_items(terminal_id, batch, items_max).await?;
        if i64::from(uploaded_count) > items_max {
            tracing::warn!(terminal = %terminal_id, batch, uploaded_count, "batch upload over its item limit refused");
            return Ok(Self::batch_answer(ctx, ResponseCode::AMOUNT_LIMIT));
        }
        let totals = self.batch_totals(ctx).await?;
        let lines = self.host_lines(ctx).await?;
        let differences = differences(&items, &lines);
        let next = next_batch(batch);
        let upload = BatchUploadRecord {
            terminal_id: terminal_id.clone(),
            batch_no: batch,
            end_stan: u32::try_from(request.number(11).ok().flatten().unwrap_or(0)).unwrap_or(0),
            uploaded_count: i64::from(uploaded_count),
            stored_count: i64::try_from(items.len()).unwrap_or(i64::MAX),
            differences: i64::try_from(differences.len()).unwrap_or(i64::MAX),
            next_batch: next,
            closed_at_ms: ctx.now_ms,
            ..uploaded_totals(&items)
        };
        let mut ops = close_batch(terminal_id, batch, next, totals.fingerprint, ctx.now_ms);
        // A batch is in the merchant's one currency; the gateway takes CNY (field 49 is `156`).
        let currency = lines.currency.unwrap_or(Currency::CNY);
        ops.extend(differences.iter().map(|d| propose_correction(&d.correction(ctx, currency))));
        ops.push(upload_audit(ctx, &upload, &host_totals(&totals.groups), &differences));
        let outcome = self.store.commit(WriteUnit::guarded(insert_batch_upload(&upload), ops)).await;
        self.directory.forget_terminal(terminal_id);
        match outcome? {
            UnitOutcome::Committed { .. } => {
                tracing::info!(terminal = %terminal_id, batch, next, differences = differences.len(), "batch closed by its upload");
                Ok(closed(next))
            }
            _ => {
                // Closed by another process meanwhile.
                let done = reads.batch_upload(terminal_id, batch).await?;
                Ok(closed(done.ok_or_else(|| GatewayError::Corrupt("batch upload".into()))?.next_batch))
            }
        }
    }

    /// The host's lines of the batch, read page by page into what the comparison keeps.
    async fn host_lines(&self, ctx: &Ctx<'_>) -> Result<HostLines, GatewayError> {
        let (terminal_id, batch) = (&ctx.terminal.terminal_id, ctx.field60.batch_number);
        let mut lines = HostLines::default();
        let mut after_id = 0;
        loop {
            let page = self.store.settlement().batch_lines(terminal_id, batch, after_id, BATCH_LINES_PAGE_MAX).await?;
            for line in &page {
                lines.add(line);
            }
            match page.last() {
                Some(last) if page.len() >= usize::try_from(BATCH_LINES_PAGE_MAX).unwrap_or(usize::MAX) => {
                    after_id = last.id;
                }
                _ => return Ok(lines),
            }
        }
    }
}

/// The audit record of a batch closed by its upload.
fn upload_audit(ctx: &Ctx<'_>, upload: &BatchUploadRecord, ours: &Totals, differences: &[Difference]) -> WriteOp {
    let terminal_id = &upload.terminal_id;
    WriteOp::Audit(AuditEvent {
        at_ms: ctx.now_ms,
        actor: "system".into(),
        action: "batch_upload_settled".into(),
        target: format!("{terminal_id}/{:06}", upload.batch_no),
        source: terminal_id.clone(),
        reason: if differences.is_empty() && upload.uploaded_count == upload.stored_count {
            String::new()
        } else {
            "the uploaded set differs from the host's batch; corrections proposed for review".into()
        },
        details: json!({
            "uploaded_count": upload.uploaded_count,
            "stored_count": upload.stored_count,
            "settled_against": {
                "debit_minor": upload.debit_minor, "debit_count": upload.debit_count,
                "credit_minor": upload.credit_minor, "credit_count": upload.credit_count,
            },
            "host": {
                "debit_minor": ours.debit_amount_minor, "debit_count": ours.debit_count,
                "credit_minor": ours.credit_amount_minor, "credit_count": ours.credit_count,
            },
            "differences": differences.iter().map(|d| json!({ "kind": d.kind, "stan": d.stan })).collect::<Vec<_>>(),
            "next_batch": upload.next_batch,
        }),
    })
}

/// The host's side of a batch as the comparison with an upload needs it: a few numbers per
/// transaction, never its record.
#[derive(Debug, Default)]
struct HostLines {
    /// The transactions that count in the totals, by STAN: id and signed amount (the last by
    /// id when a STAN repeats).
    counted: BTreeMap<u32, (i64, i64)>,
    /// The first transaction of each STAN, by id.
    first_id: BTreeMap<u32, i64>,
    /// The currency of the batch's first transaction.
    currency: Option<Currency>,
}

impl HostLines {
    fn add(&mut self, line: &BatchLine) {
        self.currency.get_or_insert(line.currency);
        self.first_id.entry(line.stan).or_insert(line.id);
        if let Some(sign) = counted_sign(line.kind, line.status) {
            self.counted.insert(line.stan, (line.id, sign * line.amount_minor));
        }
    }
}

/// An uploaded item's effect on the totals: debit positive, credit negative; `None` for kinds
/// the totals leave out (voids, the pre-authorisation family's holds).
fn item_signed_minor(item: &BatchItemRecord) -> Option<i64> {
    let kind = TxnKind::from_type_code(two_digits(item.type_code.as_bytes().try_into().ok()?))?;
    if kind.is_capture() {
        Some(item.amount_minor)
    } else if kind.is_refund() {
        Some(-item.amount_minor)
    } else {
        None
    }
}

/// The totals of the uploaded set (captures are debits, refunds credits, as in settlement), in
/// a batch upload record that has nothing else yet.
fn uploaded_totals(items: &[BatchItemRecord]) -> BatchUploadRecord {
    let mut totals = BatchUploadRecord {
        terminal_id: String::new(),
        batch_no: 0,
        end_stan: 0,
        uploaded_count: 0,
        stored_count: 0,
        debit_minor: 0,
        debit_count: 0,
        credit_minor: 0,
        credit_count: 0,
        differences: 0,
        next_batch: 0,
        closed_at_ms: 0,
    };
    for signed in items.iter().filter_map(item_signed_minor) {
        if signed >= 0 {
            totals.debit_minor = totals.debit_minor.saturating_add(signed);
            totals.debit_count += 1;
        } else {
            totals.credit_minor = totals.credit_minor.saturating_add(-signed);
            totals.credit_count += 1;
        }
    }
    totals
}

/// One way the uploaded set and the host's batch differ.
#[derive(Debug, PartialEq, Eq)]
struct Difference {
    /// `on_terminal_only`, `on_host_only` or `amount_differs`.
    kind: &'static str,
    stan: u32,
    txn_id: Option<i64>,
    terminal_signed_minor: Option<i64>,
    host_signed_minor: Option<i64>,
}

impl Difference {
    fn correction(&self, ctx: &Ctx<'_>, currency: Currency) -> NewCorrection {
        let batch = ctx.field60.batch_number;
        NewCorrection {
            correction_key: format!(
                "batch_upload:{}:{batch:06}:{:06}:{}",
                ctx.terminal.terminal_id, self.stan, self.kind
            ),
            source: "batch_upload".into(),
            kind: self.kind.into(),
            merchant_id: ctx.terminal.merchant_id.clone(),
            terminal_id: Some(ctx.terminal.terminal_id.clone()),
            batch_no: Some(batch),
            stan: Some(self.stan),
            txn_id: self.txn_id,
            terminal_amount_minor: self.terminal_signed_minor.map(i64::abs),
            host_amount_minor: self.host_signed_minor.map(i64::abs),
            currency: currency.code().to_owned(),
            details: json!({
                "terminal_signed_minor": self.terminal_signed_minor,
                "host_signed_minor": self.host_signed_minor,
                "sign": "debit positive, credit negative",
            }),
            created_at_ms: ctx.now_ms,
        }
    }
}

/// Compares, by STAN, the uploaded items that count in the totals with the host's
/// transactions that do: the same set settlement compared as sums, now item by item.
fn differences(items: &[BatchItemRecord], lines: &HostLines) -> Vec<Difference> {
    let theirs: BTreeMap<u32, i64> =
        items.iter().filter_map(|item| Some((item.stan, item_signed_minor(item)?))).collect();
    let mut found = Vec::new();
    for (&stan, &terminal) in &theirs {
        match lines.counted.get(&stan) {
            None => found.push(Difference {
                kind: "on_terminal_only",
                stan,
                txn_id: lines.first_id.get(&stan).copied(),
                terminal_signed_minor: Some(terminal),
                host_signed_minor: None,
            }),
            Some(&(txn_id, host)) if host != terminal => found.push(Difference {
                kind: "amount_differs",
                stan,
                txn_id: Some(txn_id),
                terminal_signed_minor: Some(terminal),
                host_signed_minor: Some(host),
            }),
            Some(_) => {}
        }
    }
    for (&stan, &(txn_id, host)) in &lines.counted {
        if !theirs.contains_key(&stan) {
            found.push(Difference {
                kind: "on_host_only",
                stan,
                txn_id: Some(txn_id),
                terminal_signed_minor: None,
                host_signed_minor: Some(host),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The totals as the gateway computed them before the database summed them: record by
    /// record, in memory (kind, status, amount of each).
    fn record_by_record(records: &[(&str, &str, i64)]) -> Totals {
        let (mut debit, mut debit_count, mut credit, mut credit_count) = (0u64, 0u64, 0u64, 0u64);
        for &(kind, status, amount_minor) in records {
            let (Some(kind), Some(status)) = (TxnKind::parse(kind), TxnStatus::parse(status)) else { continue };
            let amount = u64::try_from(amount_minor).unwrap_or(0);
            if kind.is_capture()
                && matches!(status, TxnStatus::Approved | TxnStatus::PartiallyRefunded | TxnStatus::Refunded)
            {
                debit = (debit + amount) % AMOUNT_MODULUS;
                debit_count += 1;
            } else if kind.is_refund() && status == TxnStatus::Approved {
                credit = (credit + amount) % AMOUNT_MODULUS;
                credit_count += 1;
            }
        }
        Totals {
            debit_amount_minor: debit,
            debit_count: (debit_count % COUNT_MODULUS) as u16,
            credit_amount_minor: credit,
            credit_count: (credit_count % COUNT_MODULUS) as u16,
            settle_code: 0,
        }
    }

    /// What the database's GROUP BY returns for these records (a row of a name the domain
    /// does not know never gets this far: the store reads it as corrupt).
    fn grouped(records: &[(&str, &str, i64)]) -> Vec<BatchGroup> {
        let mut groups: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
        for &(kind, status, amount) in records {
            let sums = groups.entry((kind, status)).or_default();
            *sums = (sums.0 + 1, sums.1 + amount);
        }
        groups
            .into_iter()
            .filter_map(|((kind, status), (count, amount_minor))| {
                Some(BatchGroup {
                    kind: TxnKind::parse(kind)?,
                    status: TxnStatus::parse(status)?,
                    currency: Currency::CNY,
                    count,
                    amount_minor,
                })
            })
            .collect()
    }

    #[test]
    fn totals_from_the_databases_groups_equal_the_record_by_record_totals() {
        let kinds = ["sale", "void", "refund", "pre_auth", "pre_auth_void", "completion", "completion_void"];
        let kinds = [&kinds[..], &["offline_sale", "balance_inquiry", "not_a_kind"]].concat();
        let statuses =
            ["pending", "approved", "declined", "reversed", "voided", "partially_refunded", "refunded", "completed"];
        let mut records = Vec::new();
        for (k, kind) in kinds.iter().enumerate() {
            for (s, status) in statuses.iter().enumerate() {
                for n in 0..=(k + s) as i64 {
                    records.push((*kind, *status, 1 + n * 101 + (k * 13 + s) as i64));
                }
            }
        }
        assert_eq!(host_totals(&grouped(&records)), record_by_record(&records));
        // Past the field's digits the totals wrap the same way: amounts modulo 10^12, counts
        // modulo 1000.
        let mut large = vec![("sale", "approved", 999_999_999_999); 3];
        large.extend(std::iter::repeat_n(("refund", "approved", 7), 1_234));
        large.extend(std::iter::repeat_n(("offline_sale", "approved", 500_000_000_001), 999));
        let totals = host_totals(&grouped(&large));
        assert_eq!(totals, record_by_record(&large));
        assert_eq!((totals.debit_count, totals.credit_count, totals.credit_amount_minor), (2, 234, 8_638));
        assert_eq!(host_totals(&[]), Totals::default());
    }
}

//! Settlement (结算, 0500) with the totals of field 48, batch upload (批上送, 0320) after an
//! unbalanced one, and the batch close that hands the terminal its next batch in 60.2.

use kassa_domain::{TxnEvent, TxnStatus};
use kassa_iso8583::fields::{BatchUploadCount, Field60, SettlementTotals, Totals};
use kassa_iso8583::Message;
use kassa_store::{AuditEvent, CardIdentity, TxnRecord, TxnUpdate, WriteOp, WriteUnit};
use serde_json::json;

use super::{parse_kind, parse_status, respond, status_name, Ctx, Handler};
use crate::codes::ResponseCode;
use crate::GatewayError;

const AMOUNT_MODULUS: u64 = 1_000_000_000_000;
const COUNT_MODULUS: u64 = 1_000;
const SETTLE_BALANCED: u8 = 1;
const SETTLE_UNBALANCED: u8 = 2;
const BATCH_NO_MAX: u32 = 999_999;

/// The host's totals of a batch: debits are captures still standing (not voided or reversed),
/// credits are approved refunds.
fn host_totals(txns: &[TxnRecord]) -> Totals {
    let (mut debit, mut debit_count, mut credit, mut credit_count) = (0u64, 0u64, 0u64, 0u64);
    for txn in txns {
        let (Some(kind), Some(status)) = (parse_kind(&txn.kind), parse_status(&txn.status)) else { continue };
        let amount = u64::try_from(txn.amount_minor).unwrap_or(0);
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
    fn batch_identity(ctx: &Ctx<'_>) -> CardIdentity {
        CardIdentity {
            terminal_id: ctx.terminal.terminal_id.clone(),
            batch_no: ctx.field60.batch_number,
            stan: 0,
            mti_class: "050".into(),
        }
    }

    async fn batch_txns(&self, ctx: &Ctx<'_>) -> Result<Vec<TxnRecord>, GatewayError> {
        Ok(self.store.txns.txns_in_batch(&ctx.terminal.terminal_id, ctx.field60.batch_number).await?)
    }

    /// Closes the open batch: every decided transaction of it settled, the next batch opened,
    /// in one unit. Returns the next batch.
    async fn close_batch(
        &self,
        ctx: &Ctx<'_>,
        txns: &[TxnRecord],
        audit: Option<AuditEvent>,
    ) -> Result<u32, GatewayError> {
        let batch = ctx.field60.batch_number;
        let next = next_batch(batch);
        let mut ops = vec![WriteOp::SetOpenBatch { terminal_id: ctx.terminal.terminal_id.clone(), batch_no: next }];
        for txn in txns {
            let Ok(state) = Self::state_of_record(txn) else { continue };
            let Ok(settled) = state.apply(TxnEvent::Settle) else { continue };
            ops.push(WriteOp::UpdateTxn(TxnUpdate {
                id: txn.id,
                expected_version: txn.version,
                status: status_name(settled.status()),
                refunded_minor: txn.refunded_minor,
                settled: true,
                response: None,
                rrn: None,
                auth_code: None,
                updated_at_ms: ctx.now_ms,
            }));
        }
        ops.extend(audit.map(WriteOp::Audit));
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
        let _held = self.locks.lock(&Self::batch_identity(ctx)).await;
        let txns = self.batch_txns(ctx).await?;
        let mut ours = host_totals(&txns);
        let balanced = same_totals(&ours, &theirs.domestic) && same_totals(&Totals::default(), &theirs.foreign);
        ours.settle_code = if balanced { SETTLE_BALANCED } else { SETTLE_UNBALANCED };
        let mut response = respond(request, ResponseCode::APPROVED);
        let batch = if balanced { self.close_batch(ctx, &txns, None).await? } else { ctx.field60.batch_number };
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

    /// 0320: one item per transaction (acknowledged), then the end message (48 = count),
    /// which closes the batch and records how the upload differed from the host's batch in the
    /// audit log for review.
    pub(super) async fn batch_upload(&self, ctx: &Ctx<'_>) -> Result<Message, GatewayError> {
        let request = ctx.request;
        match &ctx.field60.network_management_code {
            b"201" => {
                let mut response = respond(request, ResponseCode::APPROVED);
                response.set(12, &ctx.stamp.time_hhmmss).set(13, &ctx.stamp.date_mmdd);
                Ok(response)
            }
            b"202" => {
                let Ok(Some(BatchUploadCount(uploaded))) = request.typed::<BatchUploadCount>() else {
                    return Ok(respond(request, ResponseCode::FORMAT_ERROR));
                };
                let _held = self.locks.lock(&Self::batch_identity(ctx)).await;
                let txns = self.batch_txns(ctx).await?;
                let ours = host_totals(&txns);
                let host_count = u64::from(ours.debit_count) + u64::from(ours.credit_count);
                let audit = AuditEvent {
                    at_ms: ctx.now_ms,
                    actor: "system".into(),
                    action: "batch_upload_settled".into(),
                    target: format!("{}/{:06}", ctx.terminal.terminal_id, ctx.field60.batch_number),
                    source: ctx.terminal.terminal_id.clone(),
                    reason: if u64::from(uploaded) == host_count {
                        String::new()
                    } else {
                        "uploaded count differs from the host's batch; review".into()
                    },
                    details: json!({
                        "uploaded_count": uploaded,
                        "host_debit_count": ours.debit_count,
                        "host_debit_minor": ours.debit_amount_minor,
                        "host_credit_count": ours.credit_count,
                        "host_credit_minor": ours.credit_amount_minor,
                    }),
                };
                let next = self.close_batch(ctx, &txns, Some(audit)).await?;
                let mut response = respond(request, ResponseCode::APPROVED);
                response
                    .set(12, &ctx.stamp.time_hhmmss)
                    .set(13, &ctx.stamp.date_mmdd)
                    .set(15, &ctx.stamp.settlement_mmdd);
                Self::with_batch(&mut response, ctx.field60, next);
                Ok(response)
            }
            _ => Ok(respond(request, ResponseCode::FORMAT_ERROR)),
        }
    }
}

//! The resolver: requests owed a send (approved, the send not done) or an outcome (sent, the
//! channel's answer unknown) are looked at again, in bounded passes with a growing wait.

use std::time::Duration;

use kassa_domain::{MerchantId, RefundRequestState};
use kassa_store::refund_requests::{update_request, RefundRequestRecord};
use kassa_store::{UnitOutcome, WriteUnit};

use crate::error::{internal, RefundError};
use crate::service::channel_answer;
use crate::types::ResolveReport;
use crate::RefundService;

impl RefundService {
    /// Runs [`RefundService::resolve_due`] every `resolve_interval_ms` until `shutdown`
    /// completes. Errors are logged and the next pass tries again.
    pub async fn run_resolver(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let interval = Duration::from_millis(self.inner.config.resolve_interval_ms);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(interval) => {}
            }
            match self.resolve_due().await {
                Ok(report) if report.checked > 0 => tracing::debug!(?report, "refund resolver pass"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "refund resolver pass failed"),
            }
        }
    }

    /// One pass: at most `resolve_batch_max` requests whose next check has come.
    pub async fn resolve_due(&self) -> Result<ResolveReport, RefundError> {
        let now = self.now_ms();
        let due =
            self.inner.store.refund_requests().refund_requests_due(now, self.inner.config.resolve_batch_max).await?;
        let mut report = ResolveReport::default();
        for record in due {
            report.checked += 1;
            let id = record.id;
            match self.resolve_one(record).await {
                Ok(state) if state.is_final() => report.finished += 1,
                Ok(_) => report.still_pending += 1,
                Err(error) => {
                    report.still_pending += 1;
                    tracing::warn!(request = id, %error, "refund request not resolved in this pass");
                }
            }
        }
        Ok(report)
    }

    async fn resolve_one(&self, record: RefundRequestRecord) -> Result<RefundRequestState, RefundError> {
        match record.state {
            RefundRequestState::Approved => Ok(self.send(record).await?.state),
            RefundRequestState::SentToChannel => self.check_channel(record).await,
            state => {
                // Nothing is owed for any other state: stop looking.
                let mut next = record.clone();
                next.next_check_at_ms = None;
                self.inner.store.commit(WriteUnit::guarded(update_request(&next), vec![])).await?;
                Ok(state)
            }
        }
    }

    /// Reads what the channel's refund came to (the QR service's resolver asks the wallet) and
    /// moves the request on, or looks again later.
    async fn check_channel(&self, record: RefundRequestRecord) -> Result<RefundRequestState, RefundError> {
        let Some(qr) = &self.inner.qr else {
            return Ok(record.state);
        };
        let number =
            record.channel_refund_no.clone().ok_or_else(|| internal("sent without a channel refund number"))?;
        let merchant = MerchantId::parse(&record.merchant_id).map_err(internal)?;
        let refund = qr
            .refund_get(&merchant, &record.target_ref, &number)
            .await
            .map_err(|e| RefundError::Unavailable(format!("the channel's refund {number} could not be read: {e}")))?;
        let now = self.now_ms();
        let mut next = record.clone();
        let ops = match channel_answer(&refund) {
            Some((status, failure, fee)) => {
                let seq = self.next_seq(record.id).await?;
                self.finish(&mut next, status, failure, fee, seq, now)?
            }
            None => {
                next.checks += 1;
                next.next_check_at_ms = Some(now.saturating_add(self.recheck_after_ms(next.checks)));
                next.updated_at_ms = now;
                if next.checks == self.inner.config.checks_before_attention {
                    tracing::error!(
                        request = record.id,
                        checks = next.checks,
                        "refund still unknown at the channel; left to reconciliation"
                    );
                }
                Vec::new()
            }
        };
        match self.inner.store.commit(WriteUnit::guarded(update_request(&next), ops)).await? {
            UnitOutcome::Committed { .. } => Ok(next.state),
            _ => Ok(record.state),
        }
    }
}

//! The resolver: a background task that finishes what answers left open. Each round it takes
//! the trades and refunds whose next check has come (a bounded batch), and works on them
//! concurrently (a bounded number at once, so one slow wallet does not hold up the others; each
//! call's own timeout is the connector's). For a trade: an open one is queried at every wallet
//! it has an order at; one past its deadline is wound down (a customer code is queried once
//! more, then cancelled; a merchant QR's orders are closed); every close or cancel owed is
//! sent. For a refund: the wallet's refund query, and the refund sent again (same reference)
//! when the wallet never got it. Every check backs off; after `checks_before_attention` checks
//! the trade or refund is flagged for reconciliation, logged and counted, and still checked at
//! the longest interval: nothing is given up silently.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use kassa_store::qr::{QrKind, QrOrderState, QrRefundStatus, QrStatus};
use kassa_wallet::{Decline, Wallet, WalletError};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::QrError;
use crate::service::QrService;
use crate::state::{self, WindDown};
use crate::types::wallet_of;

/// What one round of the resolver did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolveReport {
    /// Trades checked.
    pub trades: usize,
    /// Refunds checked.
    pub refunds: usize,
    /// Checks that failed (the store, a wallet misconfigured); retried next round.
    pub errors: usize,
}

impl QrService {
    /// Runs the resolver until `shutdown` completes: a round every `resolve_interval_ms`.
    pub async fn run_resolver(&self, shutdown: impl std::future::Future<Output = ()>) {
        let interval = Duration::from_millis(self.config().resolve_interval_ms.max(1));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(interval) => {}
            }
            match self.resolve_due().await {
                Ok(report) if report.errors > 0 => tracing::warn!(?report, "qr resolver round with errors"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "qr resolver round failed"),
            }
        }
    }

    /// One round: every due trade and refund (at most `resolve_batch_max` of each), at most
    /// `resolve_concurrency_max` at once.
    pub async fn resolve_due(&self) -> Result<ResolveReport, QrError> {
        let now = self.now_ms();
        let limit = self.config().resolve_batch_max;
        let qr = self.inner.store.qr();
        let trades = qr.trades_due(now, limit).await?;
        let refunds = qr.refunds_due(now, limit).await?;
        let permits = Arc::new(Semaphore::new(self.config().resolve_concurrency_max.max(1)));
        let mut tasks = JoinSet::new();
        let report = ResolveReport { trades: trades.len(), refunds: refunds.len(), errors: 0 };
        for trade in trades {
            let service = self.clone();
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                service.check_trade(trade.id, true).await
            });
        }
        for refund in refunds {
            let service = self.clone();
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                service.check_refund(refund.id).await
            });
        }
        let mut errors = 0;
        while let Some(result) = tasks.join_next().await {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "qr check failed");
                    errors += 1;
                }
                Err(error) => {
                    tracing::error!(%error, "qr check panicked");
                    errors += 1;
                }
            }
        }
        Ok(ResolveReport { errors, ..report })
    }

    /// Checks one trade with its wallets; `count` when it is the resolver's (backs off).
    pub(crate) async fn check_trade(&self, trade_id: i64, count: bool) -> Result<(), QrError> {
        let qr = self.inner.store.qr();
        let mut trade = qr.trade(trade_id).await?.ok_or(QrError::NotFound)?;
        let open = matches!(trade.status, QrStatus::Pending | QrStatus::Waiting);
        let mut wound_down = false;
        if open {
            // Ask every wallet holding an order: a dropped notification is found here.
            for wallet in Wallet::ALL {
                if trade.order(wallet.channel()) == QrOrderState::Open {
                    if let Some(found) = self.query_and_apply(&trade, wallet).await? {
                        trade = found;
                    }
                }
            }
            let still_open = matches!(trade.status, QrStatus::Pending | QrStatus::Waiting);
            if still_open && self.now_ms() >= trade.expires_at_ms {
                let how = if trade.kind == QrKind::CustomerCode { WindDown::Cancel } else { WindDown::Close };
                // Sends the closes or cancels it makes owed.
                self.wind_down(trade.id, how).await?;
                wound_down = true;
            }
        }
        if !wound_down {
            // What is owed (closes, cancels), including what the queries above made owed.
            let trade = qr.trade(trade_id).await?.ok_or(QrError::NotFound)?;
            self.send_owed(&trade).await?;
        }
        if count {
            self.trade_checked(trade_id).await?;
        }
        Ok(())
    }

    /// Records a check: back-off, and the reconciliation flag after too many.
    async fn trade_checked(&self, trade_id: i64) -> Result<(), QrError> {
        let now = self.now_ms();
        let config = self.config().clone();
        let mut flagged = false;
        let trade = self
            .change_trade(trade_id, |trade| {
                if !state::has_work(trade) {
                    if trade.next_check_at_ms.is_none() {
                        return Ok(None);
                    }
                    trade.next_check_at_ms = None;
                    return Ok(Some(vec![]));
                }
                // Every check backs off; only those that are not a normal wait count.
                trade.checks += 1;
                if state::check_counts(trade, now) && trade.checks >= config.checks_before_attention && !trade.attention
                {
                    trade.attention = true;
                    flagged = true;
                }
                state::schedule(trade, &config, now);
                Ok(Some(vec![]))
            })
            .await?;
        if flagged {
            self.inner.metrics.attention.fetch_add(1, Relaxed);
            tracing::error!(
                reference = %trade.reference,
                checks = trade.checks,
                status = %trade.status,
                "qr trade still unresolved; left to reconciliation (still checked)"
            );
        }
        Ok(())
    }

    /// Checks one pending refund with its wallet.
    pub(crate) async fn check_refund(&self, refund_id: i64) -> Result<(), QrError> {
        let qr = self.inner.store.qr();
        let refund = qr.refund(refund_id).await?.ok_or(QrError::NotFound)?;
        if refund.status != QrRefundStatus::Pending {
            return Ok(());
        }
        let trade = qr.trade(refund.trade_id).await?.ok_or(QrError::NotFound)?;
        let wallet =
            trade.wallet.and_then(wallet_of).ok_or_else(|| QrError::Internal("paid trade without wallet".into()))?;
        match self.connector(wallet)?.refund_query(&trade.reference, &refund.refund_reference).await {
            Ok(answer) => {
                self.refund_succeeded(refund.id, &answer).await?;
            }
            Err(WalletError::Declined(Decline::TradeNotFound)) => {
                // The wallet never got it: send it again (it refunds once per reference).
                let sent = self.send_refund(&trade, refund.clone()).await?;
                if sent.status == QrRefundStatus::Pending {
                    self.refund_checked(&sent).await?;
                }
            }
            Err(error) => {
                tracing::debug!(refund = %refund.refund_reference, %error, "refund query without answer");
                self.refund_checked(&refund).await?;
            }
        }
        Ok(())
    }
}

//! The QR service: the merchant's operations, the wallet calls behind them, and the one way a
//! trade changes ([`QrService::change_trade`]: read, decide, write at the read version).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use kassa_domain::clock::Clock;
use kassa_domain::{fee_returned_by_refund, FeeRate, MerchantId, Money};
use kassa_ledger::{refund_entry, sale_entry};
use kassa_store::qr::{
    insert_refund, insert_trade, update_refund, update_refund_op, update_trade, QrKind, QrOrderState, QrOriginKind,
    QrRefundRecord, QrRefundStatus, QrStatus, QrTradeRecord,
};
use kassa_store::{AuditEvent, Guard, Store, StoreError, UnitOutcome, WriteOp, WriteUnit};
use kassa_wallet::{
    CancelOutcome, Decline, PayOutcome, PayRequest, PrecreateRequest, TradeState, Wallet, WalletConnector, WalletError,
    WalletRefund, WalletTrade,
};
use sha2::{Digest, Sha256};

use crate::error::{internal, QrError};
use crate::state::{self, Evidence, Refused, WindDown};
use crate::types::{
    notify_url, wallet_of, CollectRequest, MerchantQrRequest, QrConfig, QrOrigin, QrRefund, QrTrade, RefundRequest,
    ScanAnswer, Wallets, OUT_NO_CHARS_MAX, REASON_CHARS_MAX, SUBJECT_CHARS_MAX,
};

/// Writes of one trade retried after a concurrent writer won, before giving up.
const CHANGE_ATTEMPTS_MAX: usize = 8;
/// Refunds of one trade listed at most.
pub(crate) const REFUNDS_PER_TRADE_MAX: i64 = 100;
/// Characters of an aggregated code's token (URL-safe, random).
const TOKEN_CHARS: usize = 32;
/// Ids are 18 decimal digits: wallet references are `KQ`/`KR` and the id.
const ID_MIN: u64 = 100_000_000_000_000_000;
const ID_SPAN: u64 = 900_000_000_000_000_000;
/// A trade's id is its creation time in milliseconds times this, plus a random part below it:
/// ids grow with time, so new trades land on the last pages of their table and indexes (a
/// commit writes a few pages, not one per trade). A clash is drawn again ([`QrService::journal`]).
const IDS_PER_MS: u64 = 100_000;

/// What a new trade is about.
struct TradeFacts<'a> {
    kind: QrKind,
    out_trade_no: &'a str,
    amount: Money,
    subject: &'a str,
    expires_at_ms: i64,
}

/// Counters for metrics and logs.
#[derive(Debug, Default)]
pub struct QrMetrics {
    /// Payments credited.
    pub credits: AtomicU64,
    /// Payments reversed (a second wallet, a payment after a close or cancel).
    pub reversals: AtomicU64,
    /// Notifications refused (bad signature, unknown trade, other amount).
    pub notifications_refused: AtomicU64,
    /// Trades flagged for reconciliation after too many checks.
    pub attention: AtomicU64,
    /// Refunds succeeded.
    pub refunds: AtomicU64,
}

/// What journaling a new trade found.
enum Journaled {
    /// Journaled: the trade as stored.
    New(Box<QrTradeRecord>),
    /// Its `out_trade_no` exists: nothing was stored.
    Exists,
    /// Its admission did not pass: nothing was stored.
    Refused,
}

/// The host's QR payment service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct QrService {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) wallets: Wallets,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: QrConfig,
    pub(crate) metrics: QrMetrics,
}

fn store_error(error: StoreError) -> QrError {
    QrError::Store(error)
}

fn digest_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn new_trade_id(now_ms: i64) -> i64 {
    let at = u64::try_from(now_ms).unwrap_or(0).saturating_mul(IDS_PER_MS) % ID_SPAN;
    let id = ID_MIN + (at + rand::random::<u64>() % IDS_PER_MS) % ID_SPAN;
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// A refund's id: random over the whole span (refunds are few; a clash is out of reach).
fn new_refund_id() -> i64 {
    let id = ID_MIN + rand::random::<u64>() % ID_SPAN;
    i64::try_from(id).unwrap_or(i64::MAX)
}

fn new_token() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), TOKEN_CHARS)
}

fn check_text(what: &str, text: &str, chars_max: usize, may_be_empty: bool) -> Result<(), QrError> {
    let count = text.chars().count();
    if (!may_be_empty && count == 0) || count > chars_max || text.chars().any(char::is_control) {
        return Err(QrError::Invalid(format!("{what}: 1 to {chars_max} characters without control characters")));
    }
    Ok(())
}

fn check_out_no(what: &str, text: &str) -> Result<(), QrError> {
    if text.is_empty() || text.len() > OUT_NO_CHARS_MAX || !text.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(QrError::Invalid(format!("{what}: 1 to {OUT_NO_CHARS_MAX} printable ASCII characters")));
    }
    Ok(())
}

/// The longest wallet code kept in a failure's `other:<code>`.
const DECLINE_CODE_CHARS_MAX: usize = 64;

/// A wallet's definite refusal as a stable, readable name, stored as a trade's or a refund's
/// failure: `balance_not_enough`, `code_invalid`, `trade_not_found`, `trade_already_paid`,
/// `trade_status`, `refund_too_large`, or `other:<the wallet's code>` (its code kept to
/// letters, digits, `.`, `_` and `-`, at most 64 characters).
pub(crate) fn decline_reason(decline: &Decline) -> String {
    match decline {
        Decline::BalanceNotEnough => "balance_not_enough".into(),
        Decline::CodeInvalid => "code_invalid".into(),
        Decline::TradeNotFound => "trade_not_found".into(),
        Decline::TradeAlreadyPaid => "trade_already_paid".into(),
        Decline::TradeStatus => "trade_status".into(),
        Decline::RefundTooLarge => "refund_too_large".into(),
        Decline::Other { code, .. } => {
            let code: String = code
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                .take(DECLINE_CODE_CHARS_MAX)
                .collect();
            format!("other:{code}")
        }
    }
}

/// The failure of a payment that never reached the wallet.
const NOT_SENT: &str = "not_sent";

/// Whether a merchant QR can still be paid at `now_ms`: `Gone` when it is paid, closed or
/// past its validity.
fn payable(trade: &QrTradeRecord, now_ms: i64) -> Result<(), QrError> {
    match trade.status {
        QrStatus::Paid => Err(QrError::Gone("paid")),
        QrStatus::Closed | QrStatus::Failed => Err(QrError::Gone("closed")),
        QrStatus::Pending | QrStatus::Waiting if now_ms >= trade.expires_at_ms => Err(QrError::Gone("expired")),
        QrStatus::Pending | QrStatus::Waiting => Ok(()),
    }
}

/// What the wallet's answer about a trade says.
pub(crate) fn evidence_of(trade: WalletTrade) -> Evidence {
    match trade.state {
        TradeState::Waiting => Evidence::Waiting,
        TradeState::Closed => Evidence::Closed,
        TradeState::Paid => {
            Evidence::Paid { trade_no: trade.trade_no, amount: trade.amount, paid_at_ms: trade.paid_at_ms }
        }
    }
}

fn actor(merchant: &str, origin: &QrOrigin) -> (String, String) {
    match origin {
        QrOrigin::Terminal { terminal_id, operator } => {
            (format!("operator:{merchant}/{}", operator.as_str()), terminal_id.as_str().to_owned())
        }
        QrOrigin::Api => (format!("api:{merchant}"), "api".into()),
        QrOrigin::Gateway { app_id } => (format!("gateway:{app_id}"), "gateway".into()),
    }
}

/// What a caller already read about a trade it applies evidence to, so it is not read again.
struct Known {
    trade_id: i64,
    /// The trade as last read or written; a stale copy costs one more attempt.
    trade: Option<QrTradeRecord>,
    /// The merchant's fee rates by channel.
    fee_rates: Option<BTreeMap<String, u32>>,
}

impl Known {
    fn trade_id(trade_id: i64) -> Known {
        Known { trade_id, trade: None, fee_rates: None }
    }
}

impl QrService {
    /// A service over `store`, calling the wallets of `wallets`, with time from `clock`.
    pub fn new(store: Store, wallets: Wallets, clock: Arc<dyn Clock>, config: QrConfig) -> QrService {
        QrService { inner: Arc::new(Inner { store, wallets, clock, config, metrics: QrMetrics::default() }) }
    }

    /// Its settings.
    pub fn config(&self) -> &QrConfig {
        &self.inner.config
    }

    /// Its counters.
    pub fn metrics(&self) -> &QrMetrics {
        &self.inner.metrics
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    pub(crate) fn connector(&self, wallet: Wallet) -> Result<&Arc<dyn WalletConnector>, QrError> {
        self.inner.wallets.get(wallet).ok_or(QrError::WalletNotConfigured(wallet))
    }

    fn view(&self, record: &QrTradeRecord) -> QrTrade {
        QrTrade::from_record(record, &self.inner.config.public_base_url)
    }

    async fn merchant_fee_rates(&self, merchant_id: &str) -> Result<(String, BTreeMap<String, u32>), QrError> {
        let merchant = self.inner.store.directory.merchant(merchant_id).await?.ok_or(QrError::MerchantNotFound)?;
        Ok((merchant.currency, merchant.fee_rates))
    }

    pub(crate) async fn trade_of(&self, merchant: &MerchantId, out_trade_no: &str) -> Result<QrTradeRecord, QrError> {
        self.inner.store.qr().trade_by_out_trade_no(merchant.as_str(), out_trade_no).await?.ok_or(QrError::NotFound)
    }

    fn check_amount(&self, amount: Money, currency: &str) -> Result<(), QrError> {
        if !amount.is_positive() || amount.minor() > self.inner.config.amount_minor_max {
            return Err(QrError::Invalid(format!(
                "amount: more than zero and at most {}",
                Money::from_minor(self.inner.config.amount_minor_max, amount.currency()).to_decimal_string()
            )));
        }
        if amount.currency().code() != currency {
            return Err(QrError::Invalid(format!("currency: the merchant's is {currency}")));
        }
        Ok(())
    }

    fn new_trade(&self, merchant: &MerchantId, origin: &QrOrigin, facts: TradeFacts<'_>) -> QrTradeRecord {
        let TradeFacts { kind, out_trade_no, amount, subject, expires_at_ms } = facts;
        let now = self.now_ms();
        let id = new_trade_id(now);
        let (origin_kind, origin_id, terminal_id, operator) = match origin {
            QrOrigin::Terminal { terminal_id, operator } => (
                QrOriginKind::Terminal,
                Some(terminal_id.as_str().to_owned()),
                Some(terminal_id.as_str().to_owned()),
                Some(operator.as_str().to_owned()),
            ),
            QrOrigin::Api => (QrOriginKind::Api, None, None, None),
            QrOrigin::Gateway { app_id } => (QrOriginKind::Gateway, Some(app_id.clone()), None, None),
        };
        QrTradeRecord {
            id,
            merchant_id: merchant.as_str().to_owned(),
            out_trade_no: out_trade_no.to_owned(),
            reference: format!("KQ{id}"),
            kind,
            wallet: None,
            status: QrStatus::Pending,
            amount,
            refunded_minor: 0,
            refunding_minor: 0,
            fee_minor: 0,
            subject: subject.to_owned(),
            origin: origin_kind,
            origin_id,
            terminal_id,
            operator,
            code_digest: None,
            qr_token: None,
            alipay_order: QrOrderState::None,
            alipay_code: None,
            wechat_order: QrOrderState::None,
            wechat_code: None,
            trade_no: None,
            paid_at_ms: None,
            expires_at_ms,
            next_check_at_ms: Some(expires_at_ms),
            checks: 0,
            attention: false,
            failure: None,
            business_date: self.inner.config.business_day.date_of(now).to_string(),
            version: 1,
            created_at_ms: now,
            updated_at_ms: now,
        }
    }

    /// Journals `trade` (committed before any wallet is called), admitted by `admission` when
    /// there is one (written with the trade, in the same commit). `Exists` when its
    /// `out_trade_no` exists: the caller answers from the stored trade.
    async fn journal(&self, mut trade: QrTradeRecord, mut admission: Option<Guard>) -> Result<Journaled, QrError> {
        for _ in 0..CHANGE_ATTEMPTS_MAX {
            let unit = WriteUnit::guarded(insert_trade(&trade), vec![]);
            // An admission that passed stays written whatever the trade's insert found, so it
            // goes with the first attempt only.
            let unit = match admission.take() {
                Some(admission) => unit.admitted_by(admission),
                None => unit,
            };
            match self.inner.store.commit(unit).await? {
                UnitOutcome::Committed { .. } => return Ok(Journaled::New(Box::new(trade))),
                UnitOutcome::Refused => return Ok(Journaled::Refused),
                _ => {
                    let qr = self.inner.store.qr();
                    if qr.trade_by_out_trade_no(&trade.merchant_id, &trade.out_trade_no).await?.is_some() {
                        return Ok(Journaled::Exists);
                    }
                    // Another trade's id, reference or token: draw again.
                    let id = new_trade_id(self.now_ms());
                    trade.id = id;
                    trade.reference = format!("KQ{id}");
                    if trade.qr_token.is_some() {
                        trade.qr_token = Some(new_token());
                    }
                }
            }
        }
        Err(QrError::Internal("no free trade id".into()))
    }

    /// The one way a trade changes: read it, let `decide` change a copy (returning the ops to
    /// write with it, `None` when nothing changes), write it at the version read, and start
    /// over when another writer won. Returns the trade as stored afterwards.
    pub(crate) async fn change_trade<F>(&self, id: i64, decide: F) -> Result<QrTradeRecord, QrError>
    where
        F: FnMut(&mut QrTradeRecord) -> Result<Option<Vec<WriteOp>>, QrError>,
    {
        self.change_trade_from(id, None, decide).await
    }

    /// [`QrService::change_trade`] starting from a copy the caller read (a stale one costs one
    /// more attempt, never a wrong write: the write is made at the copy's version).
    async fn change_trade_from<F>(
        &self,
        id: i64,
        mut read: Option<QrTradeRecord>,
        mut decide: F,
    ) -> Result<QrTradeRecord, QrError>
    where
        F: FnMut(&mut QrTradeRecord) -> Result<Option<Vec<WriteOp>>, QrError>,
    {
        for _ in 0..CHANGE_ATTEMPTS_MAX {
            let stored = match read.take().filter(|trade| trade.id == id) {
                Some(trade) => trade,
                None => self.inner.store.qr().trade(id).await?.ok_or(QrError::NotFound)?,
            };
            let mut next = stored.clone();
            let Some(ops) = decide(&mut next)? else { return Ok(stored) };
            next.version = stored.version;
            match self.inner.store.commit(WriteUnit::guarded(update_trade(&next), ops)).await {
                Ok(UnitOutcome::Committed { .. }) => {
                    next.version = stored.version + 1;
                    return Ok(next);
                }
                Ok(_) | Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(store_error(error)),
            }
        }
        Err(QrError::Store(StoreError::Conflict(format!("trade {id} kept changing"))))
    }

    /// Applies what `wallet` said about `trade_id`: credits the payment with its sale entry in
    /// the same write, or reverses it, or closes, per [`state::apply`].
    pub(crate) async fn apply_evidence(
        &self,
        trade_id: i64,
        wallet: Wallet,
        evidence: &Evidence,
    ) -> Result<Result<QrTradeRecord, Refused>, QrError> {
        self.apply_evidence_to(Known::trade_id(trade_id), wallet, evidence).await
    }

    /// [`QrService::apply_evidence`] with what the caller already read.
    async fn apply_evidence_to(
        &self,
        known: Known,
        wallet: Wallet,
        evidence: &Evidence,
    ) -> Result<Result<QrTradeRecord, Refused>, QrError> {
        let Known { trade_id, trade, fee_rates } = known;
        let trade = match trade {
            Some(trade) => trade,
            None => self.inner.store.qr().trade(trade_id).await?.ok_or(QrError::NotFound)?,
        };
        let rates = match fee_rates {
            Some(rates) => rates,
            None => self.merchant_fee_rates(&trade.merchant_id).await?.1,
        };
        let merchant = MerchantId::parse(&trade.merchant_id).map_err(internal)?;
        let channel = wallet.channel();
        let config = self.inner.config.clone();
        let now = self.now_ms();
        let mut refused = None;
        let mut credited = false;
        let mut reversing = false;
        let mut reversed = false;
        let stored = self
            .change_trade_from(trade_id, Some(trade), |trade| {
                let was_cancelling = trade.order(channel) == QrOrderState::Cancelling;
                let applied = match state::apply(trade, channel, evidence, now) {
                    Ok(applied) => applied,
                    Err(why) => {
                        refused = Some(why);
                        return Ok(None);
                    }
                };
                if !applied.changed {
                    return Ok(None);
                }
                reversing = !was_cancelling && trade.order(channel) == QrOrderState::Cancelling;
                state::schedule(trade, &config, now);
                let mut ops = Vec::new();
                credited = applied.credit;
                reversed = applied.reversed;
                if applied.credit {
                    let rate =
                        FeeRate::from_ppm(rates.get(channel.as_str()).copied().unwrap_or(0)).map_err(internal)?;
                    let fee = rate.fee_for(trade.amount).map_err(internal)?;
                    trade.fee_minor = fee.minor();
                    let entry =
                        sale_entry(&trade.reference, &merchant, channel, trade.amount, fee).map_err(internal)?;
                    ops.push(WriteOp::PostEntry { entry, at_ms: now });
                }
                Ok(Some(ops))
            })
            .await?;
        if let Some(why) = refused {
            return Ok(Err(why));
        }
        if credited {
            self.inner.metrics.credits.fetch_add(1, Relaxed);
            tracing::info!(reference = %stored.reference, %wallet, "qr payment credited");
        }
        if reversing {
            tracing::warn!(reference = %stored.reference, %wallet, "a payment Kassa cannot take is reversed at the wallet");
        }
        if reversed {
            // Counted when the wallet confirms the reversal, whichever way Kassa came to cancel:
            // a second wallet, a payment after a close, a payment at the end of a customer's wait.
            self.inner.metrics.reversals.fetch_add(1, Relaxed);
            tracing::info!(reference = %stored.reference, %wallet, "qr payment reversed at the wallet, not credited");
        }
        Ok(Ok(stored))
    }

    /// Applies evidence from a query, a pay or a close; a refusal flags the trade for
    /// reconciliation (the wallet and Kassa disagree on what was charged).
    pub(crate) async fn apply_or_flag(
        &self,
        trade_id: i64,
        wallet: Wallet,
        evidence: &Evidence,
    ) -> Result<QrTradeRecord, QrError> {
        self.apply_or_flag_to(Known::trade_id(trade_id), wallet, evidence).await
    }

    /// [`QrService::apply_or_flag`] with what the caller already read.
    async fn apply_or_flag_to(
        &self,
        known: Known,
        wallet: Wallet,
        evidence: &Evidence,
    ) -> Result<QrTradeRecord, QrError> {
        let trade_id = known.trade_id;
        match self.apply_evidence_to(known, wallet, evidence).await? {
            Ok(trade) => Ok(trade),
            Err(why) => {
                tracing::error!(trade = trade_id, %wallet, ?why, "the wallet's answer contradicts the trade; left to reconciliation");
                self.flag_attention(trade_id).await
            }
        }
    }

    pub(crate) async fn flag_attention(&self, trade_id: i64) -> Result<QrTradeRecord, QrError> {
        let now = self.now_ms();
        self.change_trade(trade_id, |trade| {
            if trade.attention {
                return Ok(None);
            }
            trade.attention = true;
            trade.updated_at_ms = now;
            Ok(Some(vec![]))
        })
        .await
    }

    /// Queries `wallet` about the trade and applies the answer; `None` when the outcome is unknown.
    pub(crate) async fn query_and_apply(
        &self,
        trade: &QrTradeRecord,
        wallet: Wallet,
    ) -> Result<Option<QrTradeRecord>, QrError> {
        let evidence = match self.connector(wallet)?.query(&trade.reference).await {
            Ok(found) => evidence_of(found),
            Err(WalletError::Declined(Decline::TradeNotFound)) => Evidence::NotFound,
            Err(error) => {
                tracing::debug!(reference = %trade.reference, %wallet, %error, "query without answer");
                return Ok(None);
            }
        };
        self.apply_or_flag(trade.id, wallet, &evidence).await.map(Some)
    }

    /// Closes `wallet`'s order: a payment the close finds is applied (credited if the trade is
    /// still open).
    pub(crate) async fn close_order(&self, trade: &QrTradeRecord, wallet: Wallet) -> Result<(), QrError> {
        match self.connector(wallet)?.close(&trade.reference).await {
            Ok(()) | Err(WalletError::Declined(Decline::TradeNotFound)) => {
                self.apply_or_flag(trade.id, wallet, &Evidence::Closed).await?;
            }
            Err(WalletError::Declined(_)) => {
                // Paid meanwhile, or closed already: the query says which.
                self.query_and_apply(trade, wallet).await?;
            }
            Err(error) => tracing::debug!(reference = %trade.reference, %wallet, %error, "close without answer"),
        }
        Ok(())
    }

    /// Cancels `wallet`'s order: a payment is refunded by the wallet and never credited.
    pub(crate) async fn cancel_order(&self, trade: &QrTradeRecord, wallet: Wallet) -> Result<(), QrError> {
        let evidence = match self.connector(wallet)?.cancel(&trade.reference).await {
            Ok(CancelOutcome::Closed) | Err(WalletError::Declined(Decline::TradeNotFound)) => Evidence::Closed,
            Ok(CancelOutcome::Refunded) => Evidence::Reversed,
            Err(WalletError::Declined(decline)) => {
                // A cancel refused: closed already is the end of it; anything else waits for
                // the next check (and reconciliation after too many).
                match self.connector(wallet)?.query(&trade.reference).await {
                    Ok(found) if found.state == TradeState::Closed => Evidence::Closed,
                    _ => {
                        tracing::warn!(reference = %trade.reference, %wallet, ?decline, "cancel refused by the wallet");
                        return Ok(());
                    }
                }
            }
            Err(error) => {
                tracing::debug!(reference = %trade.reference, %wallet, %error, "cancel without answer");
                return Ok(());
            }
        };
        self.apply_or_flag(trade.id, wallet, &evidence).await?;
        Ok(())
    }

    /// Sends every close and cancel the trade owes.
    pub(crate) async fn send_owed(&self, trade: &QrTradeRecord) -> Result<(), QrError> {
        for wallet in Wallet::ALL {
            match trade.order(wallet.channel()) {
                QrOrderState::Closing => self.close_order(trade, wallet).await?,
                QrOrderState::Cancelling => self.cancel_order(trade, wallet).await?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Winds the trade down now (`how`) and sends what that owes the wallets.
    pub(crate) async fn wind_down(&self, trade_id: i64, how: WindDown) -> Result<QrTradeRecord, QrError> {
        let now = self.now_ms();
        let config = self.inner.config.clone();
        let trade = self
            .change_trade(trade_id, |trade| {
                if !state::wind_down(trade, how, now) {
                    return Ok(None);
                }
                trade.checks = 0;
                state::schedule(trade, &config, now);
                Ok(Some(vec![]))
            })
            .await?;
        self.send_owed(&trade).await?;
        Ok(self.inner.store.qr().trade(trade_id).await?.unwrap_or(trade))
    }

    /// Collects a customer-presented payment code: routes it by its prefix (an unknown prefix
    /// is refused and nothing is stored), journals the trade, charges it, and waits for the
    /// payer up to the configured wait, querying with back-off; then cancels it (see the
    /// module `state` for what a cancel that refunds means). The same `out_trade_no` again with
    /// the same code and amount answers the same trade; with anything else it is a conflict.
    pub async fn collect(
        &self,
        merchant: &MerchantId,
        origin: &QrOrigin,
        request: CollectRequest,
    ) -> Result<QrTrade, QrError> {
        let collected = self.collect_admitted(merchant, origin, request, None).await?;
        collected.ok_or_else(|| QrError::Internal("a collection without an admission was refused".into()))
    }

    /// [`QrService::collect`], with the trade journaled only if `admission` passes in the same
    /// commit (e.g. the request's nonce: one commit where the check and the journal would be
    /// two). `Ok(None)` when it did not pass: nothing was stored and no wallet was called.
    pub async fn collect_admitted(
        &self,
        merchant: &MerchantId,
        origin: &QrOrigin,
        request: CollectRequest,
        admission: Option<Guard>,
    ) -> Result<Option<QrTrade>, QrError> {
        check_out_no("out_trade_no", &request.out_trade_no)?;
        check_text("subject", &request.subject, SUBJECT_CHARS_MAX, false)?;
        let wallet = Wallet::for_payment_code(request.code.expose()).ok_or(QrError::UnknownCode)?;
        let connector = self.connector(wallet)?.clone();
        let (currency, fee_rates) = self.merchant_fee_rates(merchant.as_str()).await?;
        self.check_amount(request.amount, &currency)?;
        let code_digest = digest_hex(request.code.expose());
        let wait_ms = i64::try_from(self.inner.config.customer_wait_ms).unwrap_or(i64::MAX);
        let facts = TradeFacts {
            kind: QrKind::CustomerCode,
            out_trade_no: &request.out_trade_no,
            amount: request.amount,
            subject: &request.subject,
            expires_at_ms: self.now_ms().saturating_add(wait_ms),
        };
        let mut trade = self.new_trade(merchant, origin, facts);
        trade.wallet = Some(wallet.channel());
        trade.code_digest = Some(code_digest.clone());
        trade.set_order(wallet.channel(), QrOrderState::Open);
        let trade = match self.journal(trade, admission).await? {
            Journaled::New(trade) => *trade,
            Journaled::Refused => return Ok(None),
            Journaled::Exists => {
                let existing = self.trade_of(merchant, &request.out_trade_no).await?;
                if existing.kind != QrKind::CustomerCode
                    || existing.code_digest.as_deref() != Some(code_digest.as_str())
                    || existing.amount != request.amount
                {
                    return Err(QrError::Conflict("out_trade_no was used for another payment".into()));
                }
                let existing = self.wait_for_payer(existing, wallet).await?;
                return Ok(Some(self.view(&existing)));
            }
        };
        let pay = PayRequest {
            reference: trade.reference.clone(),
            code: request.code,
            amount: request.amount,
            subject: request.subject,
        };
        let evidence = match connector.pay(&pay).await {
            Ok(PayOutcome::Paid(answer)) => Some(evidence_of(answer)),
            Ok(PayOutcome::Waiting(_)) => Some(Evidence::Waiting),
            Err(WalletError::Declined(decline)) => {
                tracing::info!(reference = %trade.reference, %wallet, ?decline, "qr payment declined");
                Some(Evidence::Declined(decline_reason(&decline)))
            }
            Err(WalletError::NotSent(why)) => {
                // Nothing reached the wallet: a definite failure, nothing to resolve.
                tracing::warn!(reference = %trade.reference, %wallet, why, "qr payment not sent");
                Some(Evidence::Declined(NOT_SENT.into()))
            }
            Err(WalletError::Unknown(why)) => {
                tracing::warn!(reference = %trade.reference, %wallet, why, "qr payment outcome unknown; querying");
                None
            }
        };
        let trade = match evidence {
            Some(evidence) => {
                let known = Known { trade_id: trade.id, trade: Some(trade), fee_rates: Some(fee_rates) };
                self.apply_or_flag_to(known, wallet, &evidence).await?
            }
            None => trade,
        };
        let trade = self.wait_for_payer(trade, wallet).await?;
        Ok(Some(self.view(&trade)))
    }

    /// [`QrService::collect_admitted`] on a task of its own, answered within `answer_wait`: its
    /// outcome when it ends by then, else the trade as stored (`waiting` or `pending`). An early
    /// answer never cuts the collection short: a payer still confirming is polled, then
    /// cancelled at the end of the service's own wait, whoever stopped listening.
    pub async fn collect_within(
        &self,
        merchant: &MerchantId,
        origin: &QrOrigin,
        request: CollectRequest,
        admission: Option<Guard>,
        answer_wait: Duration,
    ) -> Result<Option<QrTrade>, QrError> {
        let out_trade_no = request.out_trade_no.clone();
        let (service, task_merchant, task_origin) = (self.clone(), merchant.clone(), origin.clone());
        let task =
            tokio::spawn(
                async move { service.collect_admitted(&task_merchant, &task_origin, request, admission).await },
            );
        match tokio::time::timeout(answer_wait, task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(QrError::Internal("the collection stopped".into())),
            Err(_) => self.get(merchant, &out_trade_no).await.map(Some),
        }
    }

    /// Queries an open customer-code trade with back-off until it is decided or its wait
    /// deadline passes, then cancels it.
    async fn wait_for_payer(&self, mut trade: QrTradeRecord, wallet: Wallet) -> Result<QrTradeRecord, QrError> {
        let mut polls = 0_i64;
        while matches!(trade.status, QrStatus::Pending | QrStatus::Waiting) && !trade.attention {
            let remaining_ms = trade.expires_at_ms.saturating_sub(self.now_ms());
            if remaining_ms <= 0 {
                break;
            }
            let pause_ms = state::backoff_ms(&self.inner.config, polls).min(remaining_ms);
            tokio::time::sleep(Duration::from_millis(u64::try_from(pause_ms).unwrap_or(0))).await;
            polls += 1;
            if let Some(found) = self.query_and_apply(&trade, wallet).await? {
                trade = found;
            } else {
                trade = self.inner.store.qr().trade(trade.id).await?.ok_or(QrError::NotFound)?;
            }
        }
        if matches!(trade.status, QrStatus::Pending | QrStatus::Waiting) && !trade.attention {
            trade = self.wind_down(trade.id, WindDown::Cancel).await?;
        }
        Ok(trade)
    }

    /// Creates a merchant-presented QR: one aggregated code (`<base>/qr/v1/<token>`) that either
    /// wallet can pay for `validity_minutes` (the configured default when `None`). The same
    /// `out_trade_no` again with the same amount answers the same trade.
    pub async fn create_merchant_qr(
        &self,
        merchant: &MerchantId,
        origin: &QrOrigin,
        request: MerchantQrRequest,
    ) -> Result<QrTrade, QrError> {
        check_out_no("out_trade_no", &request.out_trade_no)?;
        check_text("subject", &request.subject, SUBJECT_CHARS_MAX, false)?;
        let config = &self.inner.config;
        let minutes = request.validity_minutes.unwrap_or(config.merchant_qr_validity_default_minutes);
        if minutes == 0 || minutes > config.merchant_qr_validity_max_minutes {
            return Err(QrError::Invalid(format!(
                "validity: 1 to {} minutes",
                config.merchant_qr_validity_max_minutes
            )));
        }
        let (currency, _) = self.merchant_fee_rates(merchant.as_str()).await?;
        self.check_amount(request.amount, &currency)?;
        let expires = self.now_ms().saturating_add(i64::from(minutes) * 60_000);
        let facts = TradeFacts {
            kind: QrKind::MerchantQr,
            out_trade_no: &request.out_trade_no,
            amount: request.amount,
            subject: &request.subject,
            expires_at_ms: expires,
        };
        let mut trade = self.new_trade(merchant, origin, facts);
        trade.status = QrStatus::Waiting;
        trade.qr_token = Some(new_token());
        match self.journal(trade, None).await? {
            Journaled::New(trade) => Ok(self.view(&trade)),
            Journaled::Refused => Err(QrError::Internal("a trade without an admission was refused".into())),
            Journaled::Exists => {
                let existing = self.trade_of(merchant, &request.out_trade_no).await?;
                if existing.kind != QrKind::MerchantQr || existing.amount != request.amount {
                    return Err(QrError::Conflict("out_trade_no was used for another payment".into()));
                }
                Ok(self.view(&existing))
            }
        }
    }

    /// A payer's wallet opened the aggregated code: creates the order at that wallet (once;
    /// later scans answer the same code) and answers the wallet's own code. Refused when the
    /// trade is paid, closed or expired.
    pub async fn scan(&self, token: &str, wallet: Wallet) -> Result<ScanAnswer, QrError> {
        let found = self.inner.store.qr().trade_by_token(token).await?.ok_or(QrError::NotFound)?;
        let connector = self.connector(wallet)?.clone();
        let channel = wallet.channel();
        let now = self.now_ms();
        let config = self.inner.config.clone();
        let trade = self
            .change_trade(found.id, |trade| {
                payable(trade, now)?;
                match trade.order(channel) {
                    QrOrderState::Open => Ok(None),
                    QrOrderState::None => {
                        // Journaled before the wallet is asked, so the resolver watches it.
                        trade.set_order(channel, QrOrderState::Open);
                        trade.updated_at_ms = now;
                        state::schedule(trade, &config, now);
                        Ok(Some(vec![]))
                    }
                    _ => Err(QrError::Gone("closed")),
                }
            })
            .await?;
        if let Some(code) = trade.wallet_code(channel) {
            return Ok(ScanAnswer { wallet, wallet_qr_code: code.to_owned(), amount: trade.amount });
        }
        let remaining_minutes = ((trade.expires_at_ms - now).max(0) + 59_999) / 60_000;
        let remaining_minutes = remaining_minutes.max(1);
        let request = PrecreateRequest {
            reference: trade.reference.clone(),
            amount: trade.amount,
            subject: trade.subject.clone(),
            validity_minutes: u32::try_from(remaining_minutes).unwrap_or(1),
            notify_url: notify_url(&config.public_base_url, wallet),
        };
        match connector.precreate(&request).await {
            Ok(code) => {
                let stored = code.clone();
                self.change_trade(trade.id, |trade| {
                    if trade.wallet_code(channel).is_some() {
                        return Ok(None);
                    }
                    trade.set_wallet_code(channel, Some(stored.clone()));
                    trade.updated_at_ms = now;
                    Ok(Some(vec![]))
                })
                .await?;
                Ok(ScanAnswer { wallet, wallet_qr_code: code, amount: trade.amount })
            }
            Err(WalletError::Declined(decline)) => {
                tracing::warn!(reference = %trade.reference, %wallet, ?decline, "precreate refused");
                self.apply_or_flag(trade.id, wallet, &Evidence::Closed).await?;
                Err(QrError::WalletRefused(decline_reason(&decline)))
            }
            Err(error) => Err(QrError::WalletUnavailable(error.to_string())),
        }
    }

    /// The merchant QR of an aggregated code's token, while it can be paid (what a browser
    /// that is no wallet app is shown): `NotFound` for an unknown token, `Gone` when it is
    /// paid, closed or expired. Creates nothing at any wallet.
    pub async fn lookup(&self, token: &str) -> Result<QrTrade, QrError> {
        let trade = self.inner.store.qr().trade_by_token(token).await?.ok_or(QrError::NotFound)?;
        payable(&trade, self.now_ms())?;
        Ok(self.view(&trade))
    }

    /// The trade as Kassa knows it now.
    pub async fn get(&self, merchant: &MerchantId, out_trade_no: &str) -> Result<QrTrade, QrError> {
        Ok(self.view(&self.trade_of(merchant, out_trade_no).await?))
    }

    /// Asks the wallets about the trade now (what the resolver does when it is due) and answers
    /// the result.
    pub async fn refresh(&self, merchant: &MerchantId, out_trade_no: &str) -> Result<QrTrade, QrError> {
        let trade = self.trade_of(merchant, out_trade_no).await?;
        self.check_trade(trade.id, false).await?;
        self.get(merchant, out_trade_no).await
    }

    /// The merchant gives up on an unpaid trade: every order is cancelled (a payment made
    /// meanwhile is refunded by the wallet, never credited). A paid trade is refunded instead.
    pub async fn cancel(
        &self,
        merchant: &MerchantId,
        origin: &QrOrigin,
        out_trade_no: &str,
    ) -> Result<QrTrade, QrError> {
        self.end(merchant, origin, out_trade_no, WindDown::Cancel).await
    }

    /// Closes an unpaid trade: every order is closed (a payment the close finds is credited).
    pub async fn close(
        &self,
        merchant: &MerchantId,
        origin: &QrOrigin,
        out_trade_no: &str,
    ) -> Result<QrTrade, QrError> {
        self.end(merchant, origin, out_trade_no, WindDown::Close).await
    }

    async fn end(
        &self,
        merchant: &MerchantId,
        origin: &QrOrigin,
        out_trade_no: &str,
        how: WindDown,
    ) -> Result<QrTrade, QrError> {
        let trade = self.trade_of(merchant, out_trade_no).await?;
        if trade.status == QrStatus::Paid {
            return Err(QrError::AlreadyPaid);
        }
        if matches!(trade.status, QrStatus::Pending | QrStatus::Waiting) {
            let (actor, source) = actor(merchant.as_str(), origin);
            let action = if how == WindDown::Cancel { "qr_cancelled" } else { "qr_closed" };
            self.inner
                .store
                .commit(WriteUnit::ops(vec![WriteOp::Audit(AuditEvent {
                    at_ms: self.now_ms(),
                    actor,
                    action: action.into(),
                    target: format!("qr:{}", trade.reference),
                    source,
                    reason: String::new(),
                    details: serde_json::json!({ "out_trade_no": out_trade_no }),
                })]))
                .await?;
        }
        let trade = self.wind_down(trade.id, how).await?;
        Ok(self.view(&trade))
    }

    /// Refunds (part of) a paid trade, once per `out_request_no`: journaled pending (holding the
    /// amount, never above paid minus refunded, in the same guarded write) before the wallet is
    /// asked; success posts the refund entry returning the fee in proportion. The same
    /// `out_request_no` with the same amount answers the same refund; another amount is a
    /// conflict. An unknown outcome stays pending and the resolver asks the wallet.
    pub async fn refund(
        &self,
        merchant: &MerchantId,
        origin: &QrOrigin,
        out_trade_no: &str,
        request: RefundRequest,
    ) -> Result<QrRefund, QrError> {
        check_out_no("out_request_no", &request.out_request_no)?;
        check_text("reason", &request.reason, REASON_CHARS_MAX, true)?;
        let trade = self.trade_of(merchant, out_trade_no).await?;
        let qr = self.inner.store.qr();
        if let Some(existing) = qr.refund_by_request(trade.id, &request.out_request_no).await? {
            return self.same_refund(existing, &request, out_trade_no);
        }
        if !request.amount.is_positive() || request.amount.currency() != trade.amount.currency() {
            return Err(QrError::Invalid("amount: more than zero, in the trade's currency".into()));
        }
        let now = self.now_ms();
        let id = new_refund_id();
        let refund = QrRefundRecord {
            id,
            trade_id: trade.id,
            out_request_no: request.out_request_no.clone(),
            refund_reference: format!("KR{id}"),
            amount: request.amount,
            status: QrRefundStatus::Pending,
            reason: request.reason.clone(),
            fee_returned_minor: 0,
            failure: None,
            next_check_at_ms: Some(now.saturating_add(state::backoff_ms(&self.inner.config, 0))),
            checks: 0,
            version: 1,
            created_at_ms: now,
            updated_at_ms: now,
        };
        let (actor, source) = actor(merchant.as_str(), origin);
        let audit = WriteOp::Audit(AuditEvent {
            at_ms: now,
            actor,
            action: "qr_refund_requested".into(),
            target: format!("qr:{}", trade.reference),
            source,
            reason: request.reason.clone(),
            details: serde_json::json!({
                "out_trade_no": out_trade_no,
                "out_request_no": request.out_request_no,
                "amount": request.amount.to_decimal_string(),
            }),
        });
        let mut journaled = false;
        let result = self
            .change_trade(trade.id, |trade| {
                if trade.status != QrStatus::Paid {
                    return Err(QrError::NotRefundable);
                }
                let refundable = trade.refundable_minor();
                if request.amount.minor() > refundable {
                    return Err(QrError::RefundExceeds {
                        refundable: Money::from_minor(refundable, trade.amount.currency()),
                    });
                }
                trade.refunding_minor += request.amount.minor();
                trade.updated_at_ms = now;
                journaled = true;
                Ok(Some(vec![insert_refund(&refund), audit.clone()]))
            })
            .await;
        if let Err(error) = result {
            // Lost the race for this out_request_no to a concurrent request?
            return match qr.refund_by_request(trade.id, &request.out_request_no).await? {
                Some(existing) => self.same_refund(existing, &request, out_trade_no),
                None => Err(error),
            };
        }
        debug_assert!(journaled);
        let refund = self.send_refund(&trade, refund).await?;
        Ok(QrRefund::from_record(&refund, out_trade_no))
    }

    fn same_refund(
        &self,
        existing: QrRefundRecord,
        request: &RefundRequest,
        out_trade_no: &str,
    ) -> Result<QrRefund, QrError> {
        if existing.amount != request.amount {
            return Err(QrError::Conflict("out_request_no was used for another amount".into()));
        }
        Ok(QrRefund::from_record(&existing, out_trade_no))
    }

    /// Asks the wallet for a journaled refund and applies the answer.
    pub(crate) async fn send_refund(
        &self,
        trade: &QrTradeRecord,
        refund: QrRefundRecord,
    ) -> Result<QrRefundRecord, QrError> {
        let wallet =
            trade.wallet.and_then(wallet_of).ok_or_else(|| QrError::Internal("paid trade without wallet".into()))?;
        let request = kassa_wallet::RefundRequest {
            reference: trade.reference.clone(),
            refund_reference: refund.refund_reference.clone(),
            amount: refund.amount,
            total: trade.amount,
            reason: refund.reason.clone(),
        };
        match self.connector(wallet)?.refund(&request).await {
            Ok(answer) => self.refund_succeeded(refund.id, &answer).await,
            Err(WalletError::Declined(decline)) => self.refund_failed(refund.id, &decline_reason(&decline)).await,
            Err(error) => {
                tracing::warn!(refund = %refund.refund_reference, %error, "refund outcome unknown; the resolver asks");
                Ok(self.inner.store.qr().refund(refund.id).await?.unwrap_or(refund))
            }
        }
    }

    /// The wallet refunded: the refund succeeds, the trade's refunded total grows, and the
    /// refund entry (with the fee returned in proportion) is posted, in one write.
    pub(crate) async fn refund_succeeded(
        &self,
        refund_id: i64,
        answer: &WalletRefund,
    ) -> Result<QrRefundRecord, QrError> {
        let qr = self.inner.store.qr();
        for _ in 0..CHANGE_ATTEMPTS_MAX {
            let refund = qr.refund(refund_id).await?.ok_or(QrError::NotFound)?;
            if refund.status != QrRefundStatus::Pending {
                return Ok(refund);
            }
            if answer.amount != refund.amount {
                tracing::error!(refund = %refund.refund_reference, "the wallet refunded another amount; left to reconciliation");
                return Ok(refund);
            }
            let mut trade = qr.trade(refund.trade_id).await?.ok_or(QrError::NotFound)?;
            let channel = trade.wallet.ok_or_else(|| QrError::Internal("paid trade without wallet".into()))?;
            let merchant = MerchantId::parse(&trade.merchant_id).map_err(internal)?;
            let currency = trade.amount.currency();
            let fee_returned = fee_returned_by_refund(
                Money::from_minor(trade.fee_minor, currency),
                trade.amount,
                Money::from_minor(trade.refunded_minor, currency),
                refund.amount,
            )
            .map_err(internal)?;
            let now = self.now_ms();
            trade.refunded_minor += refund.amount.minor();
            trade.refunding_minor -= refund.amount.minor();
            trade.updated_at_ms = now;
            let mut done = refund.clone();
            done.status = QrRefundStatus::Succeeded;
            done.fee_returned_minor = fee_returned.minor();
            done.next_check_at_ms = None;
            done.updated_at_ms = now;
            let entry = refund_entry(&refund.refund_reference, &merchant, channel, refund.amount, fee_returned)
                .map_err(internal)?;
            let unit = WriteUnit::guarded(
                update_trade(&trade),
                vec![update_refund_op(&done), WriteOp::PostEntry { entry, at_ms: now }],
            );
            match self.inner.store.commit(unit).await {
                Ok(UnitOutcome::Committed { .. }) => {
                    self.inner.metrics.refunds.fetch_add(1, Relaxed);
                    tracing::info!(refund = %refund.refund_reference, "qr refund succeeded");
                    done.version += 1;
                    return Ok(done);
                }
                Ok(_) | Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(store_error(error)),
            }
        }
        Err(QrError::Store(StoreError::Conflict(format!("refund {refund_id} kept changing"))))
    }

    /// The wallet refused the refund: it fails and its hold on the trade is released.
    pub(crate) async fn refund_failed(&self, refund_id: i64, why: &str) -> Result<QrRefundRecord, QrError> {
        let qr = self.inner.store.qr();
        for _ in 0..CHANGE_ATTEMPTS_MAX {
            let refund = qr.refund(refund_id).await?.ok_or(QrError::NotFound)?;
            if refund.status != QrRefundStatus::Pending {
                return Ok(refund);
            }
            let mut trade = qr.trade(refund.trade_id).await?.ok_or(QrError::NotFound)?;
            let now = self.now_ms();
            trade.refunding_minor -= refund.amount.minor();
            trade.updated_at_ms = now;
            let mut failed = refund.clone();
            failed.status = QrRefundStatus::Failed;
            failed.failure = Some(why.chars().take(REASON_CHARS_MAX).collect());
            failed.next_check_at_ms = None;
            failed.updated_at_ms = now;
            let unit = WriteUnit::guarded(update_trade(&trade), vec![update_refund_op(&failed)]);
            match self.inner.store.commit(unit).await {
                Ok(UnitOutcome::Committed { .. }) => {
                    tracing::info!(refund = %refund.refund_reference, why, "qr refund refused by the wallet");
                    failed.version += 1;
                    return Ok(failed);
                }
                Ok(_) | Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(store_error(error)),
            }
        }
        Err(QrError::Store(StoreError::Conflict(format!("refund {refund_id} kept changing"))))
    }

    /// Records one more check of a pending refund and when to look again.
    pub(crate) async fn refund_checked(&self, refund: &QrRefundRecord) -> Result<(), QrError> {
        let now = self.now_ms();
        let mut next = refund.clone();
        next.checks += 1;
        next.next_check_at_ms = Some(now.saturating_add(state::backoff_ms(&self.inner.config, next.checks)));
        next.updated_at_ms = now;
        if next.checks == self.inner.config.checks_before_attention {
            self.inner.metrics.attention.fetch_add(1, Relaxed);
            tracing::error!(refund = %refund.refund_reference, checks = next.checks, "qr refund still unknown; left to reconciliation");
        }
        self.inner.store.commit(WriteUnit::guarded(update_refund(&next), vec![])).await?;
        Ok(())
    }

    /// A refund as Kassa knows it now.
    pub async fn refund_get(
        &self,
        merchant: &MerchantId,
        out_trade_no: &str,
        out_request_no: &str,
    ) -> Result<QrRefund, QrError> {
        let trade = self.trade_of(merchant, out_trade_no).await?;
        let refund =
            self.inner.store.qr().refund_by_request(trade.id, out_request_no).await?.ok_or(QrError::NotFound)?;
        Ok(QrRefund::from_record(&refund, out_trade_no))
    }

    /// The refunds of a trade, oldest first.
    pub async fn refunds(&self, merchant: &MerchantId, out_trade_no: &str) -> Result<Vec<QrRefund>, QrError> {
        let trade = self.trade_of(merchant, out_trade_no).await?;
        let refunds = self.inner.store.qr().refunds_of(trade.id, REFUNDS_PER_TRADE_MAX).await?;
        Ok(refunds.iter().map(|r| QrRefund::from_record(r, out_trade_no)).collect())
    }

    /// A wallet's asynchronous notification as received on `/notify/v1/<wallet>`: verified by the
    /// wallet's connector, matched to the trade by reference and amount, applied; answers what
    /// the wallet expects (accepted or not). Refused (answered "fail", nothing credited): a bad
    /// signature, an unknown trade, another amount. A replay of an applied notification is
    /// accepted and changes nothing.
    pub async fn notification(&self, wallet: Wallet, content_type: &str, body: &[u8]) -> (&'static str, Vec<u8>) {
        let Ok(connector) = self.connector(wallet) else {
            return ("text/plain; charset=utf-8", b"fail".to_vec());
        };
        let accepted = self.take_notification(connector.as_ref(), wallet, content_type, body).await;
        if !accepted {
            self.inner.metrics.notifications_refused.fetch_add(1, Relaxed);
        }
        connector.notification_answer(accepted)
    }

    async fn take_notification(
        &self,
        connector: &dyn WalletConnector,
        wallet: Wallet,
        content_type: &str,
        body: &[u8],
    ) -> bool {
        let notification = match connector.verify_notification(content_type, body) {
            Ok(notification) => notification,
            Err(error) => {
                tracing::warn!(%wallet, %error, "notification refused");
                return false;
            }
        };
        let reference = notification.trade.reference.clone();
        let trade = match self.inner.store.qr().trade_by_reference(&reference).await {
            Ok(Some(trade)) => trade,
            Ok(None) => {
                tracing::warn!(%wallet, reference, "notification for an unknown trade refused");
                return false;
            }
            Err(error) => {
                tracing::warn!(%wallet, %error, "notification not taken: the store failed");
                return false;
            }
        };
        match self.apply_evidence(trade.id, wallet, &evidence_of(notification.trade)).await {
            Ok(Ok(_)) => true,
            Ok(Err(why)) => {
                tracing::warn!(%wallet, reference, ?why, "notification refused: it contradicts the trade");
                false
            }
            Err(error) => {
                tracing::warn!(%wallet, reference, %error, "notification not taken");
                false
            }
        }
    }
}

//! How what a wallet says moves a trade: pure functions over the stored record, so that every
//! path (the pay answer, a query, a notification, a close or cancel answer) applies evidence
//! the same way.
//!
//! The rule of the one credit: a trade credits at most one payment, from the first wallet whose
//! payment Kassa learns of while the trade is open and that wallet's order is open or being
//! closed. Every other payment Kassa learns of — a second wallet paying the same merchant QR, a
//! payment after Kassa closed or cancelled the trade — is reversed with the wallet's cancel and
//! never credited. A cancel that finds the order paid refunds it (the wallet's own rule): the
//! order ends `reversed`, the trade `closed`, and the ledger holds nothing for it, so the
//! wallet's books (paid, then refunded in full) and Kassa's (nothing) agree on the net.

use kassa_domain::{Channel, Money};
use kassa_store::qr::{QrKind, QrOrderState, QrStatus, QrTradeRecord};

use crate::types::{order_is_live, QrConfig};

const WALLET_CHANNELS: [Channel; 2] = [Channel::Alipay, Channel::Wechat];

/// What a wallet said about its order of a trade (signed and verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Evidence {
    /// Paid, for this amount.
    Paid {
        /// The wallet's trade number.
        trade_no: Option<String>,
        /// What the wallet charged.
        amount: Money,
        /// When, Unix milliseconds.
        paid_at_ms: Option<i64>,
    },
    /// Waiting for the payer.
    Waiting,
    /// Closed unpaid (a query, a close, a cancel that found nothing paid).
    Closed,
    /// Paid and refunded in full by a cancel.
    Reversed,
    /// The payment was refused definitely, for this reason (a stable name, see
    /// `service::decline_reason`).
    Declined(String),
    /// The wallet has no such trade (a query): not evidence of anything final by itself.
    NotFound,
}

/// What applying evidence did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Applied {
    /// The trade changed (write it).
    pub changed: bool,
    /// The payment is the trade's: post its sale entry with this write.
    pub credit: bool,
    /// A payment at this wallet was reversed (refunded in full by a cancel), never credited.
    pub reversed: bool,
}

/// Evidence that must not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A payment of another amount than the trade's.
    AmountDiffers {
        /// The trade's amount.
        expected: Money,
        /// The wallet's.
        reported: Money,
    },
    /// The wallet says the credited payment is closed or reversed: left to reconciliation.
    Contradiction,
}

/// How an open trade is wound down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindDown {
    /// Close every open order: a payment the close finds is still the trade's.
    Close,
    /// Cancel every open order: a payment is reversed by the wallet, never credited.
    Cancel,
}

/// Applies `evidence` from `wallet` to `trade` at `now_ms`.
pub(crate) fn apply(
    trade: &mut QrTradeRecord,
    wallet: Channel,
    evidence: &Evidence,
    now_ms: i64,
) -> Result<Applied, Refused> {
    let order = trade.order(wallet);
    let before = trade.clone();
    let was_open = is_open(trade);
    let mut credit = false;
    match evidence {
        Evidence::Paid { trade_no, amount, paid_at_ms } => {
            if *amount != trade.amount {
                return Err(Refused::AmountDiffers { expected: trade.amount, reported: *amount });
            }
            match order {
                // Known already: credited, being reversed, or reversed (the wallet refunded
                // the one payment of this order; a "paid" now is a replay or a lagging query).
                QrOrderState::Paid | QrOrderState::Cancelling | QrOrderState::Reversed => {}
                QrOrderState::None | QrOrderState::Open | QrOrderState::Closing
                    if matches!(trade.status, QrStatus::Pending | QrStatus::Waiting) =>
                {
                    trade.status = QrStatus::Paid;
                    trade.wallet = Some(wallet);
                    trade.trade_no = trade_no.clone();
                    trade.paid_at_ms = Some(paid_at_ms.unwrap_or(now_ms));
                    trade.set_order(wallet, QrOrderState::Paid);
                    trade.attention = false;
                    for other in WALLET_CHANNELS.into_iter().filter(|c| *c != wallet) {
                        if trade.order(other) == QrOrderState::Open {
                            trade.set_order(other, QrOrderState::Closing);
                        }
                    }
                    credit = true;
                }
                // Paid where Kassa cannot take it: the trade is paid by the other wallet, or
                // closed, or this order was closed already. Reverse it.
                _ => trade.set_order(wallet, QrOrderState::Cancelling),
            }
        }
        Evidence::Waiting => {
            if trade.status == QrStatus::Pending {
                trade.status = QrStatus::Waiting;
            }
        }
        Evidence::Closed | Evidence::Reversed => {
            let end = if *evidence == Evidence::Closed { QrOrderState::Closed } else { QrOrderState::Reversed };
            match order {
                QrOrderState::Paid => return Err(Refused::Contradiction),
                QrOrderState::Open | QrOrderState::Closing | QrOrderState::Cancelling | QrOrderState::None => {
                    trade.set_order(wallet, end)
                }
                QrOrderState::Closed | QrOrderState::Reversed => {}
            }
        }
        Evidence::Declined(reason) => {
            if is_open(trade) && trade.kind == QrKind::CustomerCode {
                trade.status = QrStatus::Failed;
                trade.failure = Some(reason.clone());
                trade.set_order(wallet, QrOrderState::Closed);
            }
        }
        // Nothing paid there (yet): a precreated order the payer has not scanned is unknown to
        // Alipay until then. The order stays open until the validity ends and it is closed.
        Evidence::NotFound => {}
    }
    settle(trade, now_ms);
    new_phase(trade, was_open);
    let changed = *trade != before;
    if changed {
        trade.updated_at_ms = now_ms;
    }
    let reversed = order != QrOrderState::Reversed && trade.order(wallet) == QrOrderState::Reversed;
    Ok(Applied { changed, credit, reversed })
}

/// Whether the trade is still open (not paid, closed or failed).
pub(crate) fn is_open(trade: &QrTradeRecord) -> bool {
    matches!(trade.status, QrStatus::Pending | QrStatus::Waiting)
}

/// A trade that leaves its open phase (paid, failed, closed) counts the resolver's checks of
/// what it still owes (a close, a cancel) from zero: checks while it waited are not those.
fn new_phase(trade: &mut QrTradeRecord, was_open: bool) {
    if was_open && !is_open(trade) {
        trade.checks = 0;
    }
}

/// Whether a resolver check of the trade counts towards `checks_before_attention`: a trade
/// waiting for its payer within its validity (or wait) is normal, however long that is; a
/// check of an unknown outcome (pending), of a trade past its deadline or of a close or cancel
/// owed counts.
pub(crate) fn check_counts(trade: &QrTradeRecord, now_ms: i64) -> bool {
    !(trade.status == QrStatus::Waiting && now_ms < trade.expires_at_ms)
}

/// Winds an open trade down (its deadline passed, or the merchant gave up): every open order
/// is to be closed or cancelled. A trade that is not open is left alone.
pub(crate) fn wind_down(trade: &mut QrTradeRecord, how: WindDown, now_ms: i64) -> bool {
    if !is_open(trade) {
        return false;
    }
    let before = trade.clone();
    let owed = match how {
        WindDown::Close => QrOrderState::Closing,
        WindDown::Cancel => QrOrderState::Cancelling,
    };
    for wallet in WALLET_CHANNELS {
        let order = trade.order(wallet);
        if order == QrOrderState::Open || (how == WindDown::Cancel && order == QrOrderState::Closing) {
            trade.set_order(wallet, owed);
        }
    }
    trade.expires_at_ms = trade.expires_at_ms.min(now_ms);
    settle(trade, now_ms);
    let changed = *trade != before;
    if changed {
        trade.updated_at_ms = now_ms;
    }
    changed
}

/// An open trade whose orders are all over is closed: a customer code once its one order is
/// closed or reversed, a merchant QR once its validity ended and no order is open or owed.
fn settle(trade: &mut QrTradeRecord, now_ms: i64) {
    if !matches!(trade.status, QrStatus::Pending | QrStatus::Waiting) {
        return;
    }
    let live = WALLET_CHANNELS.into_iter().any(|w| order_is_live(trade.order(w)));
    let over = match trade.kind {
        QrKind::CustomerCode => !live,
        QrKind::MerchantQr => !live && now_ms >= trade.expires_at_ms,
    };
    if over {
        trade.status = QrStatus::Closed;
    }
}

/// Whether the resolver owes the trade anything: an open trade to watch, or a close or cancel
/// to send.
pub(crate) fn has_work(trade: &QrTradeRecord) -> bool {
    matches!(trade.status, QrStatus::Pending | QrStatus::Waiting)
        || WALLET_CHANNELS.into_iter().any(|w| trade.order(w).is_owed())
}

/// The interval before check number `checks + 1`: the poll interval doubled per check, capped.
pub(crate) fn backoff_ms(config: &QrConfig, checks: i64) -> i64 {
    let doubling = u32::try_from(checks.clamp(0, 16)).unwrap_or(16);
    let interval = config.poll_interval_ms.saturating_mul(1_u64 << doubling).min(config.poll_interval_max_ms);
    i64::try_from(interval).unwrap_or(i64::MAX)
}

/// Sets when the resolver looks again: after the back-off of its checks so far, no later than
/// an open trade's deadline; never for a trade that owes nothing.
pub(crate) fn schedule(trade: &mut QrTradeRecord, config: &QrConfig, now_ms: i64) {
    if !has_work(trade) {
        trade.next_check_at_ms = None;
        return;
    }
    let mut next = now_ms.saturating_add(backoff_ms(config, trade.checks));
    if matches!(trade.status, QrStatus::Pending | QrStatus::Waiting) && trade.expires_at_ms > now_ms {
        // A merchant QR nobody scanned yet has nothing to poll: its deadline is the next event.
        let unscanned = trade.kind == QrKind::MerchantQr
            && WALLET_CHANNELS.into_iter().all(|w| trade.order(w) == QrOrderState::None);
        next = if unscanned { trade.expires_at_ms } else { next.min(trade.expires_at_ms) };
    }
    trade.next_check_at_ms = Some(next);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use kassa_domain::Currency;
    use kassa_store::qr::QrOriginKind;

    fn cny(minor: i64) -> Money {
        Money::from_minor(minor, Currency::CNY)
    }

    fn trade(kind: QrKind) -> QrTradeRecord {
        QrTradeRecord {
            id: 1,
            merchant_id: "898100000000001".into(),
            out_trade_no: "T1".into(),
            reference: "KQ1".into(),
            kind,
            wallet: None,
            status: if kind == QrKind::CustomerCode { QrStatus::Pending } else { QrStatus::Waiting },
            amount: cny(1000),
            refunded_minor: 0,
            refunding_minor: 0,
            fee_minor: 0,
            subject: "s".into(),
            origin: QrOriginKind::Api,
            origin_id: None,
            terminal_id: None,
            operator: None,
            code_digest: None,
            qr_token: None,
            alipay_order: if kind == QrKind::CustomerCode { QrOrderState::Open } else { QrOrderState::None },
            alipay_code: None,
            wechat_order: QrOrderState::None,
            wechat_code: None,
            trade_no: None,
            paid_at_ms: None,
            expires_at_ms: 100,
            next_check_at_ms: Some(100),
            checks: 0,
            attention: false,
            failure: None,
            business_date: "2026-01-01".into(),
            version: 1,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn paid(minor: i64) -> Evidence {
        Evidence::Paid { trade_no: Some("W1".into()), amount: cny(minor), paid_at_ms: Some(5) }
    }

    #[test]
    fn the_first_payment_is_credited_once_and_a_replay_changes_nothing() {
        let mut t = trade(QrKind::CustomerCode);
        assert_eq!(
            apply(&mut t, Channel::Alipay, &paid(1000), 10),
            Ok(Applied { changed: true, credit: true, reversed: false })
        );
        assert_eq!((t.status, t.alipay_order, t.wallet), (QrStatus::Paid, QrOrderState::Paid, Some(Channel::Alipay)));
        assert_eq!(apply(&mut t, Channel::Alipay, &paid(1000), 11), Ok(Applied::default()));
        assert!(!has_work(&t));
    }

    #[test]
    fn a_payment_of_another_amount_is_refused() {
        let mut t = trade(QrKind::CustomerCode);
        assert!(matches!(apply(&mut t, Channel::Alipay, &paid(999), 10), Err(Refused::AmountDiffers { .. })));
        assert_eq!(t.status, QrStatus::Pending);
    }

    #[test]
    fn a_second_wallet_paying_a_merchant_qr_is_reversed_not_credited() {
        let mut t = trade(QrKind::MerchantQr);
        t.alipay_order = QrOrderState::Open;
        t.wechat_order = QrOrderState::Open;
        assert!(apply(&mut t, Channel::Wechat, &paid(1000), 10).unwrap().credit);
        assert_eq!(t.alipay_order, QrOrderState::Closing, "the other order is closed at once");
        let second = apply(&mut t, Channel::Alipay, &paid(1000), 11).unwrap();
        assert!(!second.credit && second.changed);
        assert_eq!(t.alipay_order, QrOrderState::Cancelling);
        assert_eq!(t.wallet, Some(Channel::Wechat));
        let reversal = apply(&mut t, Channel::Alipay, &Evidence::Reversed, 12).unwrap();
        assert!(!reversal.credit && reversal.reversed);
        assert_eq!((t.status, t.alipay_order), (QrStatus::Paid, QrOrderState::Reversed));
        assert!(!apply(&mut t, Channel::Alipay, &Evidence::Reversed, 13).unwrap().reversed, "counted once");
        assert!(!has_work(&t));
    }

    #[test]
    fn a_cancelled_customer_code_ends_closed_even_when_the_cancel_refunded() {
        let mut t = trade(QrKind::CustomerCode);
        assert!(wind_down(&mut t, WindDown::Cancel, 50));
        assert_eq!(t.alipay_order, QrOrderState::Cancelling);
        // A payment learnt of while cancelling is not credited.
        assert_eq!(apply(&mut t, Channel::Alipay, &paid(1000), 51), Ok(Applied::default()));
        assert!(apply(&mut t, Channel::Alipay, &Evidence::Reversed, 52).unwrap().reversed);
        assert_eq!((t.status, t.alipay_order), (QrStatus::Closed, QrOrderState::Reversed));
        // A late stale "paid" (a replayed notification) changes nothing: that payment is reversed.
        assert_eq!(apply(&mut t, Channel::Alipay, &paid(1000), 53), Ok(Applied::default()));
        // A payment learnt of after a close is reversed.
        let mut t = trade(QrKind::MerchantQr);
        t.alipay_order = QrOrderState::Closed;
        t.status = QrStatus::Closed;
        let late = apply(&mut t, Channel::Alipay, &paid(1000), 54).unwrap();
        assert!(late.changed && !late.credit);
        assert_eq!(t.alipay_order, QrOrderState::Cancelling);
    }

    #[test]
    fn a_close_that_finds_the_payment_credits_it() {
        let mut t = trade(QrKind::MerchantQr);
        t.alipay_order = QrOrderState::Open;
        assert!(wind_down(&mut t, WindDown::Close, 200));
        assert_eq!((t.status, t.alipay_order), (QrStatus::Waiting, QrOrderState::Closing));
        assert!(apply(&mut t, Channel::Alipay, &paid(1000), 201).unwrap().credit);
        assert_eq!(t.status, QrStatus::Paid);
    }

    #[test]
    fn an_expired_merchant_qr_closes_when_its_orders_are_closed() {
        let mut t = trade(QrKind::MerchantQr);
        assert!(wind_down(&mut t, WindDown::Close, 200), "never scanned: closed at once");
        assert_eq!(t.status, QrStatus::Closed);
        let mut t = trade(QrKind::MerchantQr);
        t.wechat_order = QrOrderState::Open;
        wind_down(&mut t, WindDown::Close, 200);
        apply(&mut t, Channel::Wechat, &Evidence::Closed, 201).unwrap();
        assert_eq!((t.status, t.wechat_order), (QrStatus::Closed, QrOrderState::Closed));
    }

    #[test]
    fn declines_and_waits() {
        let mut t = trade(QrKind::CustomerCode);
        apply(&mut t, Channel::Alipay, &Evidence::Waiting, 1).unwrap();
        assert_eq!(t.status, QrStatus::Waiting);
        apply(&mut t, Channel::Alipay, &Evidence::NotFound, 2).unwrap();
        assert_eq!(t.status, QrStatus::Waiting);
        apply(&mut t, Channel::Alipay, &Evidence::Declined("balance_not_enough".into()), 3).unwrap();
        assert_eq!(t.status, QrStatus::Failed);
        assert_eq!(t.failure.as_deref(), Some("balance_not_enough"));
        assert!(!has_work(&t));
    }

    #[test]
    fn waiting_within_the_validity_is_not_counted_towards_attention() {
        let mut t = trade(QrKind::MerchantQr);
        t.alipay_order = QrOrderState::Open;
        assert!(!check_counts(&t, 99), "waiting for the payer within its validity is normal");
        assert!(check_counts(&t, 100), "past its validity it counts");
        t.status = QrStatus::Pending;
        assert!(check_counts(&t, 50), "an unknown outcome counts");
        // A trade that leaves its open phase counts what it still owes from zero.
        let mut t = trade(QrKind::MerchantQr);
        t.alipay_order = QrOrderState::Open;
        t.wechat_order = QrOrderState::Open;
        t.checks = 90;
        apply(&mut t, Channel::Alipay, &paid(1000), 50).unwrap();
        assert_eq!((t.status, t.wechat_order, t.checks), (QrStatus::Paid, QrOrderState::Closing, 0));
        assert!(check_counts(&t, 50));
    }

    #[test]
    fn the_schedule_backs_off_and_stops_when_nothing_is_owed() {
        let config = QrConfig { poll_interval_ms: 100, poll_interval_max_ms: 1_000, ..QrConfig::default() };
        assert_eq!(backoff_ms(&config, 0), 100);
        assert_eq!(backoff_ms(&config, 3), 800);
        assert_eq!(backoff_ms(&config, 40), 1_000);
        let mut t = trade(QrKind::CustomerCode);
        t.expires_at_ms = 10_000;
        schedule(&mut t, &config, 0);
        assert_eq!(t.next_check_at_ms, Some(100));
        t.expires_at_ms = 50;
        schedule(&mut t, &config, 0);
        assert_eq!(t.next_check_at_ms, Some(50), "no later than the deadline");
        t.status = QrStatus::Failed;
        t.alipay_order = QrOrderState::Closed;
        schedule(&mut t, &config, 0);
        assert_eq!(t.next_check_at_ms, None);
    }
}

//! The rules: what a statement line and Kassa's record of the same reference say together.
//! Pure functions; [`crate::run`] feeds them the pairs of its merge join.
//!
//! No guessing (tieout): a line and a record are a pair only when their references are equal,
//! and a reference seen twice on the statement is a difference, never a second match.
//!
//! A payment's amount is Kassa's as corrected (`compared_amount`): the recorded amount plus the
//! approved correction of it (补登 `amount_mismatch`), if any. A pair that agrees only once
//! corrected is matched; the approved correction, with its entry, is the evidence.

use kassa_domain::TxnStatus;
use kassa_domain::{Channel, Money};
use kassa_store::qr::{QrOrderState, QrRefundStatus, QrStatus};
use kassa_store::recon::{AmountCorrection, DifferenceClass, ReconCardRecord, ReconRefundRecord, ReconTradeRecord};

/// What a pair (or a lone side) comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Both sides agree.
    Matched,
    /// A difference, with its reason.
    Differs(DifferenceClass, String),
    /// Kassa does not know yet where the trade stands: ask the channel, then judge again.
    Resolve,
    /// Nothing to say (e.g. a trade unpaid on both sides, or one of another day).
    Nothing,
}

fn differs(class: DifferenceClass, reason: impl Into<String>) -> Verdict {
    Verdict::Differs(class, reason.into())
}

/// A trade line (its amount at the channel) and/or Kassa's trade of the same reference. `in_day` says whether Kassa's
/// payment time falls in the statement's day (a trade paid on another day is on that day's
/// statement). `resolved` is true once the channel was asked about it.
pub fn judge_trade(
    channel: Channel,
    line: Option<Money>,
    kassa: Option<&ReconTradeRecord>,
    in_day: bool,
    resolved: bool,
) -> Verdict {
    match (line, kassa) {
        (None, None) => Verdict::Nothing,
        (Some(_), None) => differs(DifferenceClass::PaidNotCredited, "paid at the channel; Kassa has no such trade"),
        (None, Some(trade)) => {
            let here = trade.status == QrStatus::Paid && trade.wallet == Some(channel);
            if here && in_day {
                differs(DifferenceClass::MissingAtChannel, "paid here; not on the channel's statement")
            } else {
                Verdict::Nothing
            }
        }
        (Some(line), Some(trade)) => match trade.status {
            QrStatus::Paid if trade.wallet.is_some_and(|wallet| wallet != channel) => differs(
                DifferenceClass::StatusMismatch,
                format!("paid at {}; credited here as paid through {}", channel.as_str(), trade.wallet_name()),
            ),
            QrStatus::Paid if trade.compared_amount() == line => Verdict::Matched,
            QrStatus::Paid => differs(
                DifferenceClass::AmountMismatch,
                format!(
                    "paid {} at the channel, {} here",
                    line.to_decimal_string(),
                    here(trade.amount, trade.amount_correction)
                ),
            ),
            // A payment a cancel reversed: the channel lists the payment and its refund.
            QrStatus::Closed | QrStatus::Failed if trade.order == QrOrderState::Reversed => Verdict::Matched,
            QrStatus::Closed | QrStatus::Failed => differs(
                DifferenceClass::PaidNotCredited,
                format!("paid at the channel; {} here", trade.status.as_str()),
            ),
            QrStatus::Pending | QrStatus::Waiting if !resolved => Verdict::Resolve,
            QrStatus::Pending | QrStatus::Waiting => differs(
                DifferenceClass::StatusMismatch,
                format!("paid at the channel; still {} here after asking the channel", trade.status.as_str()),
            ),
        },
    }
}

/// A refund line (its amount at the channel) and/or Kassa's refund of the same refund reference. `trade` is Kassa's trade
/// of the line, for a line Kassa has no refund for (a cancel's reversal has none).
pub fn judge_refund(
    line: Option<Money>,
    kassa: Option<&ReconRefundRecord>,
    trade: Option<&ReconTradeRecord>,
) -> Verdict {
    match (line, kassa) {
        (None, None) => Verdict::Nothing,
        (None, Some(refund)) if refund.status == QrRefundStatus::Succeeded => {
            differs(DifferenceClass::MissingAtChannel, "refunded here; not on the channel's statement")
        }
        (None, Some(_)) => Verdict::Nothing,
        (Some(_), None) => match trade {
            Some(trade) if trade.order == QrOrderState::Reversed => Verdict::Matched,
            Some(_) => differs(DifferenceClass::StatusMismatch, "refunded at the channel; Kassa has no such refund"),
            None => differs(DifferenceClass::StatusMismatch, "refunded at the channel; Kassa has no such trade"),
        },
        (Some(line), Some(refund)) => match refund.status {
            QrRefundStatus::Succeeded if refund.amount == line => Verdict::Matched,
            QrRefundStatus::Succeeded => differs(
                DifferenceClass::AmountMismatch,
                format!(
                    "refunded {} at the channel, {} here",
                    line.to_decimal_string(),
                    refund.amount.to_decimal_string()
                ),
            ),
            status => {
                differs(DifferenceClass::StatusMismatch, format!("refunded at the channel; {} here", status.as_str()))
            }
        },
    }
}

/// What the card issuer's clearing file says of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerState {
    /// Approved, and not reversed.
    Approved,
    /// Approved, then reversed (the card got its money back).
    Reversed,
}

/// Whether Kassa holds the request as money taken from the card (captured).
fn captured(status: TxnStatus) -> bool {
    matches!(status, TxnStatus::Approved | TxnStatus::PartiallyRefunded | TxnStatus::Refunded | TxnStatus::Completed)
}

/// Whether Kassa credited the merchant for the request: captured, or, recorded as failed, credited
/// by an approved correction (补登).
fn credited(txn: &ReconCardRecord) -> bool {
    captured(txn.status) || txn.credit_correction.is_some()
}

/// A card request as the issuer cleared it (`issuer`, with the amount it approved) and/or as
/// Kassa has it. `in_day` says whether Kassa received it within the clearing file's day.
pub fn judge_card(issuer: Option<(IssuerState, Money)>, kassa: Option<&ReconCardRecord>, in_day: bool) -> Verdict {
    match (issuer, kassa) {
        (None, None) => Verdict::Nothing,
        (None, Some(txn)) if credited(txn) && in_day => {
            differs(DifferenceClass::MissingAtChannel, "approved here; not in the issuer's clearing file")
        }
        (None, Some(_)) => Verdict::Nothing,
        (Some((IssuerState::Approved, _)), None) => {
            differs(DifferenceClass::PaidNotCredited, "approved at the issuer; Kassa has no such request")
        }
        (Some((IssuerState::Approved, amount)), Some(txn)) if credited(txn) => {
            if amount == txn.compared_amount() {
                Verdict::Matched
            } else {
                differs(
                    DifferenceClass::AmountMismatch,
                    format!(
                        "approved {} at the issuer, {} here",
                        amount.to_decimal_string(),
                        here(txn.credit_correction.map_or(txn.amount, |credit| credit.amount), txn.amount_correction)
                    ),
                )
            }
        }
        (Some((IssuerState::Approved, _)), Some(txn)) => differs(
            DifferenceClass::PaidNotCredited,
            format!("approved at the issuer and never reversed; {} here", status_name(txn.status)),
        ),
        (Some((IssuerState::Reversed, _)), Some(txn)) if credited(txn) => differs(
            DifferenceClass::StatusMismatch,
            match txn.credit_correction {
                Some(credit) => format!("reversed at the issuer; credited here by correction {}", credit.id),
                None => format!("reversed at the issuer; {} here", status_name(txn.status)),
            },
        ),
        // Undone on both sides (or never taken here): the card has its money.
        (Some((IssuerState::Reversed, _)), _) => Verdict::Matched,
    }
}

/// Kassa's amount in a reason: as recorded, or as corrected with its correction named.
fn here(recorded: Money, correction: Option<AmountCorrection>) -> String {
    match correction {
        None => recorded.to_decimal_string(),
        Some(correction) => format!(
            "{} as corrected (recorded {}, correction {})",
            correction.corrected.to_decimal_string(),
            recorded.to_decimal_string(),
            correction.id
        ),
    }
}

fn status_name(status: TxnStatus) -> String {
    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

trait WalletName {
    fn wallet_name(&self) -> &'static str;
}

impl WalletName for ReconTradeRecord {
    fn wallet_name(&self) -> &'static str {
        self.wallet.map_or("no wallet", Channel::as_str)
    }
}

#[cfg(test)]
mod tests {
    use kassa_domain::Currency;
    use kassa_store::recon::CreditCorrection;

    use super::*;

    fn cny(minor: i64) -> Money {
        Money::from_minor(minor, Currency::from_code("CNY").unwrap())
    }

    fn line(amount: i64) -> Money {
        cny(amount)
    }

    fn trade(status: QrStatus, wallet: Option<Channel>, amount: i64) -> ReconTradeRecord {
        ReconTradeRecord {
            id: 1,
            merchant_id: "898100000000001".into(),
            out_trade_no: "o1".into(),
            reference: "K1".into(),
            wallet,
            status,
            amount: cny(amount),
            refunded_minor: 0,
            fee_minor: 0,
            order: QrOrderState::Open,
            trade_no: None,
            paid_at_ms: None,
            business_date: "2026-12-06".into(),
            amount_correction: None,
        }
    }

    fn class(verdict: Verdict) -> Option<DifferenceClass> {
        match verdict {
            Verdict::Differs(class, _) => Some(class),
            _ => None,
        }
    }

    #[test]
    fn every_trade_class() {
        let alipay = Channel::Alipay;
        let paid = trade(QrStatus::Paid, Some(alipay), 100);
        assert_eq!(judge_trade(alipay, Some(line(100)), Some(&paid), true, false), Verdict::Matched);
        assert_eq!(
            class(judge_trade(alipay, Some(line(101)), Some(&paid), true, false)),
            Some(DifferenceClass::AmountMismatch)
        );
        let closed = trade(QrStatus::Closed, Some(alipay), 100);
        assert_eq!(
            class(judge_trade(alipay, Some(line(100)), Some(&closed), true, false)),
            Some(DifferenceClass::PaidNotCredited)
        );
        assert_eq!(
            class(judge_trade(alipay, Some(line(100)), None, true, false)),
            Some(DifferenceClass::PaidNotCredited)
        );
        assert_eq!(class(judge_trade(alipay, None, Some(&paid), true, false)), Some(DifferenceClass::MissingAtChannel));
        // Paid on another day: on that day's statement, not this one's.
        assert_eq!(judge_trade(alipay, None, Some(&paid), false, false), Verdict::Nothing);
        // Unpaid on both sides.
        assert_eq!(judge_trade(alipay, None, Some(&closed), true, false), Verdict::Nothing);
        let waiting = trade(QrStatus::Waiting, Some(alipay), 100);
        assert_eq!(judge_trade(alipay, Some(line(100)), Some(&waiting), true, false), Verdict::Resolve);
        assert_eq!(
            class(judge_trade(alipay, Some(line(100)), Some(&waiting), true, true)),
            Some(DifferenceClass::StatusMismatch)
        );
        let other_wallet = trade(QrStatus::Paid, Some(Channel::Wechat), 100);
        assert_eq!(
            class(judge_trade(alipay, Some(line(100)), Some(&other_wallet), true, false)),
            Some(DifferenceClass::StatusMismatch)
        );
        let mut reversed = closed.clone();
        reversed.order = QrOrderState::Reversed;
        assert_eq!(judge_trade(alipay, Some(line(100)), Some(&reversed), true, false), Verdict::Matched);
    }

    fn card(status: TxnStatus, amount: i64) -> ReconCardRecord {
        ReconCardRecord {
            id: 12,
            kind: kassa_domain::TxnKind::Sale,
            status,
            merchant_id: "898100000000001".into(),
            terminal_id: Some("10000001".into()),
            rrn: Some("000000000012".into()),
            amount: cny(amount),
            business_date: "2026-12-06".into(),
            created_at_ms: 0,
            amount_correction: None,
            credit_correction: None,
        }
    }

    #[test]
    fn every_card_class() {
        let approved = Some((IssuerState::Approved, cny(100)));
        let reversed = Some((IssuerState::Reversed, cny(100)));
        assert_eq!(judge_card(approved, Some(&card(TxnStatus::Approved, 100)), true), Verdict::Matched);
        assert_eq!(judge_card(approved, Some(&card(TxnStatus::Refunded, 100)), true), Verdict::Matched);
        assert_eq!(
            class(judge_card(approved, Some(&card(TxnStatus::Approved, 90)), true)),
            Some(DifferenceClass::AmountMismatch)
        );
        for status in [TxnStatus::Declined, TxnStatus::Pending, TxnStatus::Reversed, TxnStatus::Voided] {
            assert_eq!(
                class(judge_card(approved, Some(&card(status, 100)), true)),
                Some(DifferenceClass::PaidNotCredited),
                "{status:?}"
            );
        }
        assert_eq!(class(judge_card(approved, None, true)), Some(DifferenceClass::PaidNotCredited));
        assert_eq!(
            class(judge_card(reversed, Some(&card(TxnStatus::Approved, 100)), true)),
            Some(DifferenceClass::StatusMismatch)
        );
        assert_eq!(judge_card(reversed, Some(&card(TxnStatus::Reversed, 100)), true), Verdict::Matched);
        assert_eq!(judge_card(reversed, None, true), Verdict::Matched);
        assert_eq!(
            class(judge_card(None, Some(&card(TxnStatus::Approved, 100)), true)),
            Some(DifferenceClass::MissingAtChannel)
        );
        assert_eq!(judge_card(None, Some(&card(TxnStatus::Approved, 100)), false), Verdict::Nothing);
        assert_eq!(judge_card(None, Some(&card(TxnStatus::Declined, 100)), true), Verdict::Nothing);
    }

    fn corrected(delta: i64, recorded: i64) -> Option<AmountCorrection> {
        Some(AmountCorrection { id: 7, delta: cny(delta), corrected: cny(recorded + delta) })
    }

    #[test]
    fn a_failed_sale_a_correction_credited_is_compared_as_captured() {
        let mut sale = card(TxnStatus::Declined, 750);
        let approved = |minor| Some((IssuerState::Approved, cny(minor)));
        assert_eq!(class(judge_card(approved(700), Some(&sale), true)), Some(DifferenceClass::PaidNotCredited));
        sale.credit_correction = Some(CreditCorrection { id: 9, amount: cny(700) });
        assert_eq!(judge_card(approved(700), Some(&sale), true), Verdict::Matched);
        assert_eq!(class(judge_card(approved(720), Some(&sale), true)), Some(DifferenceClass::AmountMismatch));
        assert_eq!(class(judge_card(None, Some(&sale), true)), Some(DifferenceClass::MissingAtChannel));
        let reversed = Some((IssuerState::Reversed, cny(700)));
        assert_eq!(
            judge_card(reversed, Some(&sale), true),
            Verdict::Differs(
                DifferenceClass::StatusMismatch,
                "reversed at the issuer; credited here by correction 9".into()
            )
        );
        // Credited, then its amount corrected: compared at the credit moved by the correction.
        sale.amount_correction = Some(AmountCorrection { id: 10, delta: cny(20), corrected: cny(720) });
        assert_eq!(judge_card(approved(720), Some(&sale), true), Verdict::Matched);
    }

    #[test]
    fn a_corrected_amount_is_compared_as_corrected() {
        let alipay = Channel::Alipay;
        let mut paid = trade(QrStatus::Paid, Some(alipay), 1000);
        paid.amount_correction = corrected(50, 1000);
        assert_eq!(judge_trade(alipay, Some(line(1050)), Some(&paid), true, false), Verdict::Matched);
        let verdict = judge_trade(alipay, Some(line(1000)), Some(&paid), true, false);
        let Verdict::Differs(DifferenceClass::AmountMismatch, reason) = verdict else {
            panic!("the recorded amount is no longer Kassa's: {verdict:?}");
        };
        assert_eq!(reason, "paid 10.00 at the channel, 10.50 as corrected (recorded 10.00, correction 7) here");
        let mut sale = card(TxnStatus::Approved, 750);
        sale.amount_correction = corrected(-50, 750);
        let approved = |minor| Some((IssuerState::Approved, cny(minor)));
        assert_eq!(judge_card(approved(700), Some(&sale), true), Verdict::Matched);
        assert_eq!(class(judge_card(approved(750), Some(&sale), true)), Some(DifferenceClass::AmountMismatch));
    }

    fn refund(status: QrRefundStatus, amount: i64) -> ReconRefundRecord {
        ReconRefundRecord {
            id: 1,
            refund_reference: "R1".into(),
            trade_reference: "K1".into(),
            merchant_id: "898100000000001".into(),
            out_trade_no: "o1".into(),
            wallet: Some(Channel::Alipay),
            amount: cny(amount),
            status,
            created_at_ms: 0,
        }
    }

    #[test]
    fn every_refund_class() {
        let refund_line = line(40);
        let succeeded = refund(QrRefundStatus::Succeeded, 40);
        assert_eq!(judge_refund(Some(refund_line), Some(&succeeded), None), Verdict::Matched);
        assert_eq!(
            class(judge_refund(Some(refund_line), Some(&refund(QrRefundStatus::Succeeded, 41)), None)),
            Some(DifferenceClass::AmountMismatch)
        );
        assert_eq!(
            class(judge_refund(Some(refund_line), Some(&refund(QrRefundStatus::Failed, 40)), None)),
            Some(DifferenceClass::StatusMismatch)
        );
        assert_eq!(class(judge_refund(None, Some(&succeeded), None)), Some(DifferenceClass::MissingAtChannel));
        assert_eq!(judge_refund(None, Some(&refund(QrRefundStatus::Failed, 40)), None), Verdict::Nothing);
        let mut reversed = trade(QrStatus::Closed, Some(Channel::Alipay), 100);
        reversed.order = QrOrderState::Reversed;
        assert_eq!(judge_refund(Some(refund_line), None, Some(&reversed)), Verdict::Matched);
        assert_eq!(class(judge_refund(Some(refund_line), None, None)), Some(DifferenceClass::StatusMismatch));
    }
}

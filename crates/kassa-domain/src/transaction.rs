//! The transaction model and its state machine.
//!
//! A transaction's life is a sequence of [`TxnEvent`]s applied to a [`TxnState`]. [`TxnState::apply`]
//! is the only way to move a transaction, and it refuses every illegal transition with a
//! [`TransitionError`] — so the gateway, the QR channels and the back office cannot disagree on
//! whether a settled sale may still be voided (it may not) or a partly refunded sale refunded
//! beyond its amount (never). The state machine is pure; storage persists its result.

use serde::{Deserialize, Serialize};

use crate::money::{Money, MoneyError};

/// Every kind of transaction the platform records: the rows of docs/reference/iso8583.md's table that move or
/// reserve money or query a balance, plus QR payments and their refunds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnKind {
    /// 余额查询: balance inquiry (moves no money).
    BalanceInquiry,
    /// 消费: sale.
    Sale,
    /// 消费撤销: void of a sale of the open batch.
    Void,
    /// 退货: refund of an earlier sale (possibly settled).
    Refund,
    /// 预授权: pre-authorisation (a hold, no capture).
    PreAuth,
    /// 预授权撤销: void of a pre-authorisation.
    PreAuthVoid,
    /// 预授权完成: completion (the capture of a pre-authorisation).
    Completion,
    /// 预授权完成撤销: void of a completion.
    CompletionVoid,
    /// 离线上送: a sale approved offline by the terminal, uploaded later.
    OfflineSale,
    /// QR payment (customer- or merchant-presented code).
    QrPayment,
    /// Refund of a QR payment.
    QrRefund,
}

impl TxnKind {
    /// All kinds, for exhaustive tests and listings.
    pub const ALL: [TxnKind; 11] = [
        TxnKind::BalanceInquiry,
        TxnKind::Sale,
        TxnKind::Void,
        TxnKind::Refund,
        TxnKind::PreAuth,
        TxnKind::PreAuthVoid,
        TxnKind::Completion,
        TxnKind::CompletionVoid,
        TxnKind::OfflineSale,
        TxnKind::QrPayment,
        TxnKind::QrRefund,
    ];

    /// The UnionPay message type code of field 60.1, for card kinds.
    pub fn type_code(self) -> Option<u8> {
        Some(match self {
            TxnKind::BalanceInquiry => 1,
            TxnKind::Sale => 22,
            TxnKind::Void => 23,
            TxnKind::Refund => 25,
            TxnKind::PreAuth => 10,
            TxnKind::PreAuthVoid => 11,
            TxnKind::Completion => 20,
            TxnKind::CompletionVoid => 21,
            TxnKind::OfflineSale => 30,
            TxnKind::QrPayment | TxnKind::QrRefund => return None,
        })
    }

    /// The kind for a field 60.1 type code.
    pub fn from_type_code(code: u8) -> Option<TxnKind> {
        TxnKind::ALL.into_iter().find(|kind| kind.type_code() == Some(code))
    }

    /// Whether a reversal (冲正) may undo it: docs/reference/iso8583.md's "reversible" column.
    pub fn is_reversible(self) -> bool {
        matches!(
            self,
            TxnKind::Sale
                | TxnKind::Void
                | TxnKind::PreAuth
                | TxnKind::PreAuthVoid
                | TxnKind::Completion
                | TxnKind::CompletionVoid
        )
    }

    /// Whether a void (same batch) may cancel it, and which kind of void does.
    pub fn void_kind(self) -> Option<TxnKind> {
        match self {
            TxnKind::Sale | TxnKind::OfflineSale => Some(TxnKind::Void),
            TxnKind::PreAuth => Some(TxnKind::PreAuthVoid),
            TxnKind::Completion => Some(TxnKind::CompletionVoid),
            _ => None,
        }
    }

    /// Whether money captured by it may be refunded.
    pub fn is_refundable(self) -> bool {
        matches!(self, TxnKind::Sale | TxnKind::Completion | TxnKind::OfflineSale | TxnKind::QrPayment)
    }

    /// Whether it captures money from the cardholder/payer (a debit in settlement totals).
    pub fn is_capture(self) -> bool {
        matches!(self, TxnKind::Sale | TxnKind::Completion | TxnKind::OfflineSale | TxnKind::QrPayment)
    }

    /// Whether it is a void that cancels another transaction.
    pub fn is_void(self) -> bool {
        matches!(self, TxnKind::Void | TxnKind::PreAuthVoid | TxnKind::CompletionVoid)
    }

    /// Whether it returns money (a credit in settlement totals).
    pub fn is_refund(self) -> bool {
        matches!(self, TxnKind::Refund | TxnKind::QrRefund)
    }

    /// Stable snake-case name used in storage and APIs (as serde writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            TxnKind::BalanceInquiry => "balance_inquiry",
            TxnKind::Sale => "sale",
            TxnKind::Void => "void",
            TxnKind::Refund => "refund",
            TxnKind::PreAuth => "pre_auth",
            TxnKind::PreAuthVoid => "pre_auth_void",
            TxnKind::Completion => "completion",
            TxnKind::CompletionVoid => "completion_void",
            TxnKind::OfflineSale => "offline_sale",
            TxnKind::QrPayment => "qr_payment",
            TxnKind::QrRefund => "qr_refund",
        }
    }

    /// The kind for a stable name.
    pub fn parse(name: &str) -> Option<TxnKind> {
        TxnKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnStatus {
    /// Received and journaled; the issuer or wallet has not decided (or the payer has not paid).
    Pending,
    /// Approved / paid.
    Approved,
    /// Declined by the host, issuer or wallet. Final.
    Declined,
    /// Undone by a reversal (冲正) before settlement. Final.
    Reversed,
    /// Cancelled by a void of the same batch.
    Voided,
    /// Part of the captured amount was refunded.
    PartiallyRefunded,
    /// The whole captured amount was refunded. Final.
    Refunded,
    /// A pre-authorisation whose hold was captured by a completion.
    Completed,
    /// A QR trade closed unpaid (cancelled, or its validity ended). Final.
    Closed,
}

impl TxnStatus {
    /// Whether no event can move it on any more (settlement aside).
    pub fn is_final(self) -> bool {
        matches!(self, TxnStatus::Declined | TxnStatus::Reversed | TxnStatus::Refunded | TxnStatus::Closed)
    }

    /// All statuses, for exhaustive tests and listings.
    pub const ALL: [TxnStatus; 9] = [
        TxnStatus::Pending,
        TxnStatus::Approved,
        TxnStatus::Declined,
        TxnStatus::Reversed,
        TxnStatus::Voided,
        TxnStatus::PartiallyRefunded,
        TxnStatus::Refunded,
        TxnStatus::Completed,
        TxnStatus::Closed,
    ];

    /// Stable snake-case name used in storage and APIs (as serde writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            TxnStatus::Pending => "pending",
            TxnStatus::Approved => "approved",
            TxnStatus::Declined => "declined",
            TxnStatus::Reversed => "reversed",
            TxnStatus::Voided => "voided",
            TxnStatus::PartiallyRefunded => "partially_refunded",
            TxnStatus::Refunded => "refunded",
            TxnStatus::Completed => "completed",
            TxnStatus::Closed => "closed",
        }
    }

    /// The status for a stable name.
    pub fn parse(name: &str) -> Option<TxnStatus> {
        TxnStatus::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Whether some event of the state machine ([`TxnState::apply`]) moves a transaction of
    /// `kind` from this status to `next` (or keeps it, as settling does). Writers check it before
    /// they store a status change.
    pub fn may_become(self, kind: TxnKind, next: TxnStatus) -> bool {
        use TxnStatus as S;
        if self == next {
            return true;
        }
        match (self, next) {
            (S::Pending, S::Approved | S::Declined) => true,
            (S::Pending, S::Closed) => kind == TxnKind::QrPayment,
            (S::Pending | S::Approved, S::Reversed) => kind.is_reversible(),
            (S::Approved, S::Voided) | (S::Voided, S::Approved) => kind.void_kind().is_some(),
            (S::Approved, S::Completed) | (S::Completed, S::Approved) => kind == TxnKind::PreAuth,
            (S::Approved | S::PartiallyRefunded, S::PartiallyRefunded | S::Refunded) => kind.is_refundable(),
            _ => false,
        }
    }
}

impl std::fmt::Display for TxnKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for TxnStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happens to a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event", content = "amount")]
pub enum TxnEvent {
    /// The issuer/wallet approved (or the payer paid).
    Approve,
    /// The issuer/wallet or the host declined.
    Decline,
    /// A reversal undid it.
    Reverse,
    /// A void of the same batch cancelled it.
    Void,
    /// The void that cancelled it was itself reversed: it stands again.
    Unvoid,
    /// A completion captured this pre-authorisation.
    Complete,
    /// The completion of this pre-authorisation was voided or reversed: the hold stands again.
    Uncomplete,
    /// A refund of this amount succeeded.
    Refund(Money),
    /// Its batch was settled (closed).
    Settle,
    /// A QR trade closed unpaid.
    Close,
}

/// Why an event was refused. Each maps to one ISO 8583 response code in the gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The event does not apply to this kind or status (ISO `12`).
    #[error("{event:?} is not allowed for a {kind:?} in status {status:?}")]
    NotAllowed {
        /// The transaction's kind.
        kind: TxnKind,
        /// Its status when the event arrived.
        status: TxnStatus,
        /// The refused event.
        event: TxnEvent,
    },
    /// Voids and reversals are only possible before settlement (ISO `12`).
    #[error("the transaction's batch is already settled")]
    AlreadySettled,
    /// The refund would exceed what was captured (ISO `61`).
    #[error("refund of {requested} exceeds the refundable {refundable}")]
    RefundExceedsCaptured {
        /// The refund asked for.
        requested: Money,
        /// What may still be refunded.
        refundable: Money,
    },
    /// A refund amount must be positive and in the transaction's currency (ISO `13`).
    #[error("invalid refund amount: {0}")]
    InvalidAmount(String),
}

impl From<MoneyError> for TransitionError {
    fn from(error: MoneyError) -> Self {
        TransitionError::InvalidAmount(error.to_string())
    }
}

/// The state of one transaction: what the state machine needs, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnState {
    kind: TxnKind,
    status: TxnStatus,
    amount: Money,
    refunded: Money,
    settled: bool,
}

impl TxnState {
    /// A new transaction, pending its issuer's or wallet's answer.
    pub fn new(kind: TxnKind, amount: Money) -> TxnState {
        TxnState { kind, status: TxnStatus::Pending, amount, refunded: Money::zero(amount.currency()), settled: false }
    }

    /// Rebuilds a state read back from storage, checking that it is one the machine can reach.
    pub fn restore(
        kind: TxnKind,
        status: TxnStatus,
        amount: Money,
        refunded: Money,
        settled: bool,
    ) -> Result<TxnState, String> {
        let state = TxnState { kind, status, amount, refunded, settled };
        state.check_invariants()?;
        Ok(state)
    }

    /// The kind.
    pub fn kind(&self) -> TxnKind {
        self.kind
    }

    /// The status.
    pub fn status(&self) -> TxnStatus {
        self.status
    }

    /// The amount approved (captured, held or returned).
    pub fn amount(&self) -> Money {
        self.amount
    }

    /// How much of it has been refunded.
    pub fn refunded(&self) -> Money {
        self.refunded
    }

    /// Whether its batch has been settled.
    pub fn is_settled(&self) -> bool {
        self.settled
    }

    /// What may still be refunded (zero when the kind is not refundable or not captured).
    pub fn refundable(&self) -> Money {
        let open = matches!(self.status, TxnStatus::Approved | TxnStatus::PartiallyRefunded);
        if self.kind.is_refundable() && open {
            // `refunded <= amount` is an invariant, so this cannot underflow.
            Money::from_minor(self.amount.minor() - self.refunded.minor(), self.amount.currency())
        } else {
            Money::zero(self.amount.currency())
        }
    }

    /// Applies `event`, returning the new state, or why the event is not allowed.
    pub fn apply(&self, event: TxnEvent) -> Result<TxnState, TransitionError> {
        use TxnStatus as S;
        let refuse = || TransitionError::NotAllowed { kind: self.kind, status: self.status, event };
        let mut next = *self;
        match (event, self.status) {
            (TxnEvent::Approve, S::Pending) => next.status = S::Approved,
            (TxnEvent::Decline, S::Pending) => next.status = S::Declined,
            (TxnEvent::Reverse, S::Pending | S::Approved) if self.kind.is_reversible() => {
                self.refuse_if_settled()?;
                next.status = S::Reversed;
            }
            (TxnEvent::Void, S::Approved) if self.kind.void_kind().is_some() => {
                self.refuse_if_settled()?;
                next.status = S::Voided;
            }
            (TxnEvent::Unvoid, S::Voided) => {
                self.refuse_if_settled()?;
                next.status = S::Approved;
            }
            (TxnEvent::Complete, S::Approved) if self.kind == TxnKind::PreAuth => next.status = S::Completed,
            (TxnEvent::Uncomplete, S::Completed) => next.status = S::Approved,
            (TxnEvent::Refund(amount), S::Approved | S::PartiallyRefunded) if self.kind.is_refundable() => {
                next.refunded = self.checked_refund(amount)?;
                next.status = if next.refunded == self.amount { S::Refunded } else { S::PartiallyRefunded };
            }
            (TxnEvent::Settle, status) if status != S::Pending && !self.settled => next.settled = true,
            (TxnEvent::Settle, _) if self.settled => return Err(TransitionError::AlreadySettled),
            (TxnEvent::Close, S::Pending) if self.kind == TxnKind::QrPayment => next.status = S::Closed,
            _ => return Err(refuse()),
        }
        debug_assert!(next.check_invariants().is_ok(), "{next:?} breaks an invariant");
        Ok(next)
    }

    fn refuse_if_settled(&self) -> Result<(), TransitionError> {
        if self.settled {
            Err(TransitionError::AlreadySettled)
        } else {
            Ok(())
        }
    }

    fn checked_refund(&self, amount: Money) -> Result<Money, TransitionError> {
        if !amount.is_positive() {
            return Err(TransitionError::InvalidAmount(format!("{amount} is not positive")));
        }
        let refundable = self.refundable();
        let total = self.refunded.checked_add(amount)?;
        if total.minor() > self.amount.minor() {
            return Err(TransitionError::RefundExceedsCaptured { requested: amount, refundable });
        }
        Ok(total)
    }

    /// Checks every invariant of the machine; `Err` names the broken one.
    pub fn check_invariants(&self) -> Result<(), String> {
        use TxnStatus as S;
        let fail = |why: &str| Err(format!("{why}: {self:?}"));
        if self.refunded.currency() != self.amount.currency() {
            return fail("refunded in another currency");
        }
        if self.amount.minor() < 0 || self.refunded.minor() < 0 || self.refunded.minor() > self.amount.minor() {
            return fail("refunded outside 0..=amount");
        }
        let refund_status = matches!(self.status, S::PartiallyRefunded | S::Refunded);
        if refund_status != (self.refunded.minor() > 0) {
            return fail("refunded amount and status disagree");
        }
        if (self.status == S::Refunded) != (self.refunded == self.amount && self.refunded.minor() > 0) {
            return fail("fully refunded status and amount disagree");
        }
        if refund_status && !self.kind.is_refundable() {
            return fail("refund of a kind that cannot be refunded");
        }
        if self.status == S::Voided && self.kind.void_kind().is_none() {
            return fail("void of a kind that cannot be voided");
        }
        if self.status == S::Reversed && !self.kind.is_reversible() {
            return fail("reversal of a kind that cannot be reversed");
        }
        if self.status == S::Completed && self.kind != TxnKind::PreAuth {
            return fail("completed status on a kind other than pre-authorisation");
        }
        if self.status == S::Closed && self.kind != TxnKind::QrPayment {
            return fail("closed status on a kind other than a QR payment");
        }
        if self.settled && self.status == S::Pending {
            return fail("a pending transaction cannot be settled");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use proptest::prelude::*;

    fn cny(minor: i64) -> Money {
        Money::from_minor(minor, Currency::CNY)
    }

    fn approved(kind: TxnKind, minor: i64) -> TxnState {
        TxnState::new(kind, cny(minor)).apply(TxnEvent::Approve).unwrap()
    }

    #[test]
    fn names_are_serde_names() {
        for kind in TxnKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::json!(kind.as_str()));
            assert_eq!(TxnKind::parse(kind.as_str()), Some(kind));
        }
        for status in TxnStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), serde_json::json!(status.as_str()));
            assert_eq!(TxnStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(TxnKind::parse("Sale"), None);
        assert_eq!(TxnStatus::parse(""), None);
    }

    proptest! {
        /// `may_become` admits every status change the machine can make.
        #[test]
        fn may_become_admits_every_transition(
            kind in any_kind(),
            amount in 0_i64..1000,
            events in proptest::collection::vec(any_event(), 0..30),
        ) {
            let mut state = TxnState::new(kind, cny(amount));
            for event in events {
                if let Ok(next) = state.apply(event) {
                    prop_assert!(state.status().may_become(kind, next.status()), "{:?} -> {:?}", state, next);
                    state = next;
                }
            }
        }
    }

    #[test]
    fn type_codes_round_trip() {
        for kind in TxnKind::ALL {
            if let Some(code) = kind.type_code() {
                assert_eq!(TxnKind::from_type_code(code), Some(kind));
            }
        }
        assert_eq!(TxnKind::from_type_code(22), Some(TxnKind::Sale));
        assert_eq!(TxnKind::from_type_code(99), None);
    }

    #[test]
    fn sale_void_and_unvoid() {
        let sale = approved(TxnKind::Sale, 1000);
        let voided = sale.apply(TxnEvent::Void).unwrap();
        assert_eq!(voided.status(), TxnStatus::Voided);
        assert!(matches!(voided.apply(TxnEvent::Void), Err(TransitionError::NotAllowed { .. })));
        assert!(voided.apply(TxnEvent::Refund(cny(1))).is_err());
        assert_eq!(voided.apply(TxnEvent::Unvoid).unwrap().status(), TxnStatus::Approved);
    }

    #[test]
    fn settled_sales_cannot_be_voided_or_reversed_but_can_be_refunded() {
        let settled = approved(TxnKind::Sale, 1000).apply(TxnEvent::Settle).unwrap();
        assert_eq!(settled.apply(TxnEvent::Void), Err(TransitionError::AlreadySettled));
        assert_eq!(settled.apply(TxnEvent::Reverse), Err(TransitionError::AlreadySettled));
        assert_eq!(settled.apply(TxnEvent::Settle), Err(TransitionError::AlreadySettled));
        let refunded = settled.apply(TxnEvent::Refund(cny(400))).unwrap();
        assert_eq!(refunded.status(), TxnStatus::PartiallyRefunded);
        assert_eq!(refunded.refundable(), cny(600));
    }

    #[test]
    fn refunds_never_exceed_the_captured_amount() {
        let sale = approved(TxnKind::Sale, 1000);
        let part = sale.apply(TxnEvent::Refund(cny(600))).unwrap();
        assert_eq!(
            part.apply(TxnEvent::Refund(cny(401))),
            Err(TransitionError::RefundExceedsCaptured { requested: cny(401), refundable: cny(400) })
        );
        let full = part.apply(TxnEvent::Refund(cny(400))).unwrap();
        assert_eq!(full.status(), TxnStatus::Refunded);
        assert!(full.apply(TxnEvent::Refund(cny(1))).is_err());
        assert!(sale.apply(TxnEvent::Refund(cny(0))).is_err());
        assert!(sale.apply(TxnEvent::Refund(cny(-5))).is_err());
        let usd = Money::from_minor(5, Currency::from_code("USD").unwrap());
        assert!(matches!(sale.apply(TxnEvent::Refund(usd)), Err(TransitionError::InvalidAmount(_))));
        // A partly refunded sale can no longer be voided: the refund already moved money.
        assert!(part.apply(TxnEvent::Void).is_err());
    }

    #[test]
    fn refunds_and_balance_inquiries_are_not_reversible() {
        let refund = approved(TxnKind::Refund, 100);
        assert!(refund.apply(TxnEvent::Reverse).is_err());
        let balance = approved(TxnKind::BalanceInquiry, 0);
        assert!(balance.apply(TxnEvent::Reverse).is_err());
        // A sale may be reversed while pending (no answer reached the terminal) or approved.
        assert_eq!(
            TxnState::new(TxnKind::Sale, cny(5)).apply(TxnEvent::Reverse).unwrap().status(),
            TxnStatus::Reversed
        );
    }

    #[test]
    fn reversing_a_void_reinstates_its_original_unless_settled() {
        // The void itself is reversible (docs/reference/iso8583.md's table): its reversal moves it to
        // reversed, once; its original stands again, and a completion's hold is captured again.
        for (kind, void_kind) in [
            (TxnKind::Sale, TxnKind::Void),
            (TxnKind::PreAuth, TxnKind::PreAuthVoid),
            (TxnKind::Completion, TxnKind::CompletionVoid),
        ] {
            let void = approved(void_kind, 700);
            let reversed = void.apply(TxnEvent::Reverse).unwrap();
            assert_eq!(reversed.status(), TxnStatus::Reversed);
            assert!(reversed.apply(TxnEvent::Reverse).is_err(), "reversing twice changes nothing");
            assert_eq!(
                void.apply(TxnEvent::Settle).unwrap().apply(TxnEvent::Reverse),
                Err(TransitionError::AlreadySettled)
            );
            let original = approved(kind, 700);
            let voided = original.apply(TxnEvent::Void).unwrap();
            assert_eq!(voided.apply(TxnEvent::Unvoid).unwrap(), original);
            assert_eq!(
                voided.apply(TxnEvent::Settle).unwrap().apply(TxnEvent::Unvoid),
                Err(TransitionError::AlreadySettled)
            );
            assert!(original.apply(TxnEvent::Unvoid).is_err(), "only a voided transaction is unvoided");
        }
        let hold = approved(TxnKind::PreAuth, 700);
        let reopened = hold.apply(TxnEvent::Complete).unwrap().apply(TxnEvent::Uncomplete).unwrap();
        assert_eq!(reopened.apply(TxnEvent::Complete).unwrap().status(), TxnStatus::Completed);
    }

    #[test]
    fn pre_authorisation_family() {
        let hold = approved(TxnKind::PreAuth, 5000);
        let completed = hold.apply(TxnEvent::Complete).unwrap();
        assert_eq!(completed.status(), TxnStatus::Completed);
        assert!(completed.apply(TxnEvent::Void).is_err());
        assert_eq!(completed.apply(TxnEvent::Uncomplete).unwrap(), hold);
        assert!(hold.apply(TxnEvent::Refund(cny(1))).is_err(), "a hold captures nothing to refund");
        assert_eq!(hold.apply(TxnEvent::Void).unwrap().status(), TxnStatus::Voided);
        let capture = approved(TxnKind::Completion, 4000);
        assert_eq!(capture.apply(TxnEvent::Refund(cny(4000))).unwrap().status(), TxnStatus::Refunded);
    }

    #[test]
    fn qr_payments_close_when_unpaid() {
        let trade = TxnState::new(TxnKind::QrPayment, cny(100));
        assert_eq!(trade.apply(TxnEvent::Close).unwrap().status(), TxnStatus::Closed);
        assert!(approved(TxnKind::QrPayment, 100).apply(TxnEvent::Close).is_err());
        assert!(trade.apply(TxnEvent::Reverse).is_err());
    }

    #[test]
    fn restore_refuses_unreachable_states() {
        assert!(TxnState::restore(TxnKind::Sale, TxnStatus::Refunded, cny(100), cny(50), false).is_err());
        assert!(TxnState::restore(TxnKind::Sale, TxnStatus::Pending, cny(100), cny(0), true).is_err());
        assert!(TxnState::restore(TxnKind::Refund, TxnStatus::Voided, cny(100), cny(0), false).is_err());
        assert!(TxnState::restore(TxnKind::Sale, TxnStatus::PartiallyRefunded, cny(100), cny(50), true).is_ok());
    }

    fn any_kind() -> impl Strategy<Value = TxnKind> {
        proptest::sample::select(TxnKind::ALL.to_vec())
    }

    fn any_event() -> impl Strategy<Value = TxnEvent> {
        prop_oneof![
            Just(TxnEvent::Approve),
            Just(TxnEvent::Decline),
            Just(TxnEvent::Reverse),
            Just(TxnEvent::Void),
            Just(TxnEvent::Unvoid),
            Just(TxnEvent::Complete),
            Just(TxnEvent::Uncomplete),
            Just(TxnEvent::Settle),
            Just(TxnEvent::Close),
            (-10_i64..1500).prop_map(|minor| TxnEvent::Refund(cny(minor))),
        ]
    }

    proptest! {
        /// A void followed by its reversal's `Unvoid` gives back exactly the state before the
        /// void, whatever happened to the transaction before.
        #[test]
        fn unvoid_undoes_void_exactly(
            kind in any_kind(),
            amount in 0_i64..1000,
            events in proptest::collection::vec(any_event(), 0..20),
        ) {
            let mut state = TxnState::new(kind, cny(amount));
            for event in events {
                if let Ok(voided) = state.apply(TxnEvent::Void) {
                    prop_assert_eq!(voided.apply(TxnEvent::Unvoid), Ok(state));
                }
                state = state.apply(event).unwrap_or(state);
            }
        }

        /// Random event sequences never reach an illegal state, a refused event changes nothing,
        /// and the refunds that were accepted never add up to more than the amount.
        #[test]
        fn random_events_keep_every_invariant(
            kind in any_kind(),
            amount in 0_i64..1000,
            events in proptest::collection::vec(any_event(), 0..40),
        ) {
            let mut state = TxnState::new(kind, cny(amount));
            let mut accepted_refunds = 0_i64;
            for event in events {
                match state.apply(event) {
                    Ok(next) => {
                        prop_assert!(next.check_invariants().is_ok(), "{:?}", next.check_invariants());
                        if let TxnEvent::Refund(refund) = event {
                            accepted_refunds += refund.minor();
                        }
                        if state.is_settled() {
                            prop_assert!(next.is_settled(), "settlement is never undone");
                        }
                        if state.status().is_final() {
                            prop_assert_eq!(next.status(), state.status(), "a final status never changes");
                        }
                        state = next;
                    }
                    Err(_) => prop_assert!(state.check_invariants().is_ok()),
                }
                prop_assert!(accepted_refunds <= amount);
                prop_assert_eq!(accepted_refunds, state.refunded().minor());
            }
        }
    }
}

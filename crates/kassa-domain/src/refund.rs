//! The refund workflow of the back office and the JSON API (docs/handbook/en.md): request → merchant
//! review (商户审核) → payment institution review (支付机构审核, above a threshold) → sent to the
//! channel → succeeded / failed. Terminal voids and refunds and the Alipay-compatible gateway's
//! refunds are immediate and do not pass through it.

use serde::{Deserialize, Serialize};

use crate::money::Money;

/// Why the merchant or payer wants money back. Recorded with every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    /// The goods were returned.
    ReturnOfGoods,
    /// The wrong amount was charged.
    WrongAmount,
    /// The customer complained.
    Complaint,
    /// The payer was charged but the purchase failed (支付成功但业务失败).
    ChargedButFailed,
    /// Anything else; the request's note says what.
    Other,
}

impl RefundReason {
    /// Every reason.
    pub const ALL: [RefundReason; 5] = [
        RefundReason::ReturnOfGoods,
        RefundReason::WrongAmount,
        RefundReason::Complaint,
        RefundReason::ChargedButFailed,
        RefundReason::Other,
    ];

    /// The stable snake_case name (stored, and the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            RefundReason::ReturnOfGoods => "return_of_goods",
            RefundReason::WrongAmount => "wrong_amount",
            RefundReason::Complaint => "complaint",
            RefundReason::ChargedButFailed => "charged_but_failed",
            RefundReason::Other => "other",
        }
    }

    /// The reason of a stored name.
    pub fn parse(text: &str) -> Option<RefundReason> {
        RefundReason::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

/// Where a refund request stands (退款进度).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundRequestState {
    /// Asked for; waits for the merchant's review.
    Requested,
    /// The merchant approved; the amount is above the threshold, so it waits for the institution.
    AwaitingInstitutionReview,
    /// Approved by everyone who had to; waits to be sent to the channel.
    Approved,
    /// Sent to the card scheme or wallet; waits for its answer.
    SentToChannel,
    /// The channel refunded the payer. Final.
    Succeeded,
    /// The channel refused or failed. Final; a new request may be made.
    Failed,
    /// The merchant refused it. Final.
    RejectedByMerchant,
    /// The institution refused it. Final.
    RejectedByInstitution,
}

impl RefundRequestState {
    /// Every state.
    pub const ALL: [RefundRequestState; 8] = [
        RefundRequestState::Requested,
        RefundRequestState::AwaitingInstitutionReview,
        RefundRequestState::Approved,
        RefundRequestState::SentToChannel,
        RefundRequestState::Succeeded,
        RefundRequestState::Failed,
        RefundRequestState::RejectedByMerchant,
        RefundRequestState::RejectedByInstitution,
    ];

    /// The stable snake_case name (stored, and the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            RefundRequestState::Requested => "requested",
            RefundRequestState::AwaitingInstitutionReview => "awaiting_institution_review",
            RefundRequestState::Approved => "approved",
            RefundRequestState::SentToChannel => "sent_to_channel",
            RefundRequestState::Succeeded => "succeeded",
            RefundRequestState::Failed => "failed",
            RefundRequestState::RejectedByMerchant => "rejected_by_merchant",
            RefundRequestState::RejectedByInstitution => "rejected_by_institution",
        }
    }

    /// The state of a stored name.
    pub fn parse(text: &str) -> Option<RefundRequestState> {
        RefundRequestState::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// Whether the amount is held by the request itself, before the channel holds it: from the
    /// request until it is sent (a request sent to the channel is held there, as the channel's
    /// own pending refund).
    pub fn holds_before_channel(self) -> bool {
        matches!(
            self,
            RefundRequestState::Requested
                | RefundRequestState::AwaitingInstitutionReview
                | RefundRequestState::Approved
        )
    }

    /// Whether the request can no longer move.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RefundRequestState::Succeeded
                | RefundRequestState::Failed
                | RefundRequestState::RejectedByMerchant
                | RefundRequestState::RejectedByInstitution
        )
    }

    /// Whether the amount is reserved against the original payment (so that concurrent requests
    /// can never add up to more than was captured).
    pub fn reserves_amount(self) -> bool {
        !matches!(
            self,
            RefundRequestState::Failed
                | RefundRequestState::RejectedByMerchant
                | RefundRequestState::RejectedByInstitution
        )
    }
}

/// A step of the workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundAction {
    /// The merchant (owner) approves.
    MerchantApprove,
    /// The merchant rejects.
    MerchantReject,
    /// An institution reviewer approves.
    InstitutionApprove,
    /// An institution reviewer rejects.
    InstitutionReject,
    /// The platform sends it to the channel.
    Send,
    /// The channel confirmed the refund.
    ChannelSucceeded,
    /// The channel refused it.
    ChannelFailed,
}

/// The refused step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{action:?} is not allowed while the refund is {state:?}")]
pub struct RefundWorkflowError {
    /// The state the request was in.
    pub state: RefundRequestState,
    /// The step that was refused.
    pub action: RefundAction,
}

/// Computes the next state of a refund request.
///
/// `amount` is the refund asked for and `institution_review_above` the threshold of
/// docs/reference/demo-data.md (refunds strictly above it need an institution reviewer).
pub fn next_refund_state(
    state: RefundRequestState,
    action: RefundAction,
    amount: Money,
    institution_review_above: Money,
) -> Result<RefundRequestState, RefundWorkflowError> {
    use RefundAction as A;
    use RefundRequestState as S;
    let needs_institution = amount.minor() > institution_review_above.minor();
    let next = match (state, action) {
        (S::Requested, A::MerchantApprove) if needs_institution => S::AwaitingInstitutionReview,
        (S::Requested, A::MerchantApprove) => S::Approved,
        (S::Requested, A::MerchantReject) => S::RejectedByMerchant,
        (S::AwaitingInstitutionReview, A::InstitutionApprove) => S::Approved,
        (S::AwaitingInstitutionReview, A::InstitutionReject) => S::RejectedByInstitution,
        (S::Approved, A::Send) => S::SentToChannel,
        (S::SentToChannel, A::ChannelSucceeded) => S::Succeeded,
        (S::SentToChannel, A::ChannelFailed) => S::Failed,
        _ => return Err(RefundWorkflowError { state, action }),
    };
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use proptest::prelude::*;

    fn cny(minor: i64) -> Money {
        Money::from_minor(minor, Currency::CNY)
    }

    #[test]
    fn small_refund_skips_institution_review() {
        let threshold = cny(50_000);
        let s = next_refund_state(RefundRequestState::Requested, RefundAction::MerchantApprove, cny(50_000), threshold)
            .unwrap();
        assert_eq!(s, RefundRequestState::Approved);
        let s = next_refund_state(s, RefundAction::Send, cny(50_000), threshold).unwrap();
        assert_eq!(
            next_refund_state(s, RefundAction::ChannelSucceeded, cny(50_000), threshold),
            Ok(RefundRequestState::Succeeded)
        );
    }

    #[test]
    fn large_refund_needs_the_institution() {
        let threshold = cny(50_000);
        let s = next_refund_state(RefundRequestState::Requested, RefundAction::MerchantApprove, cny(50_001), threshold)
            .unwrap();
        assert_eq!(s, RefundRequestState::AwaitingInstitutionReview);
        assert!(next_refund_state(s, RefundAction::Send, cny(50_001), threshold).is_err());
        assert_eq!(
            next_refund_state(s, RefundAction::InstitutionReject, cny(50_001), threshold),
            Ok(RefundRequestState::RejectedByInstitution)
        );
    }

    #[test]
    fn stored_names_are_the_serde_names_and_round_trip() {
        for state in RefundRequestState::ALL {
            assert_eq!(RefundRequestState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), serde_json::json!(state.as_str()));
            assert_eq!(
                state.holds_before_channel(),
                state.reserves_amount() && state != RefundRequestState::SentToChannel && !state.is_final()
            );
        }
        for reason in RefundReason::ALL {
            assert_eq!(RefundReason::parse(reason.as_str()), Some(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), serde_json::json!(reason.as_str()));
        }
        assert_eq!(RefundRequestState::parse("Requested"), None);
        assert_eq!(RefundReason::parse(""), None);
    }

    proptest! {
        #[test]
        fn final_states_never_move_and_sending_needs_approval(
            actions in proptest::collection::vec(0_u8..7, 0..12),
            amount in 1_i64..100_000,
        ) {
            let all = [
                RefundAction::MerchantApprove, RefundAction::MerchantReject, RefundAction::InstitutionApprove,
                RefundAction::InstitutionReject, RefundAction::Send, RefundAction::ChannelSucceeded, RefundAction::ChannelFailed,
            ];
            let mut state = RefundRequestState::Requested;
            let mut approvals = Vec::new();
            for index in actions {
                let action = all[usize::from(index)];
                if let Ok(next) = next_refund_state(state, action, cny(amount), cny(50_000)) {
                    prop_assert!(!state.is_final());
                    if matches!(action, RefundAction::MerchantApprove | RefundAction::InstitutionApprove) {
                        approvals.push(action);
                    }
                    if next == RefundRequestState::SentToChannel {
                        prop_assert!(approvals.contains(&RefundAction::MerchantApprove));
                        prop_assert_eq!(amount > 50_000, approvals.contains(&RefundAction::InstitutionApprove));
                    }
                    state = next;
                }
            }
        }
    }
}

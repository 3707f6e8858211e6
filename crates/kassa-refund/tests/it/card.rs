//! Card refunds: a card sale in the store (as the gateway records one), refunded through the
//! workflow and recorded by the host like a terminal's refund, once.

use kassa_domain::RefundRequestState as S;
use kassa_domain::{Channel, TxnKind, TxnStatus};
use kassa_refund::{ChannelStatus, Decision, NewRefund, RefundError, RefundTarget, StepKind};
use kassa_store::refund_requests::RefundTargetKind;
use kassa_store::testing::TestDb;
use kassa_store::{CardIdentity, Guard, NewTxn, StoredAnswer, TxnUpdate, UnitOutcome};

use super::*;

/// A card sale of `merchant_id` approved by the issuer, with its RRN and fee, as the gateway
/// stores one; answers its id.
async fn card_sale(db: &TestDb, merchant_id: &str, stan: u32, rrn: Option<&str>, minor: i64, status: &str) -> i64 {
    let sale = NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::parse(status).unwrap(),
        channel: Channel::Card,
        merchant_id: merchant_id.into(),
        card_identity: Some(CardIdentity::new("10000001", 1, stan, "020").unwrap()),
        out_trade_no: None,
        rrn: rrn.map(Into::into),
        auth_code: Some("123456".into()),
        amount_minor: minor,
        currency: Currency::CNY,
        fee_minor: minor * 6 / 1_000,
        pan_masked: Some("622202*********0128".into()),
        content_digest: format!("sale-{stan}"),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: "2026-12-06".into(),
        created_at_ms: 1,
    };
    match db.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(sale)), vec![])).await.unwrap() {
        UnitOutcome::Committed { txn_id: Some(id), .. } => id,
        other => panic!("{other:?}"),
    }
}

fn card_refund(request_no: &str, rrn: &str, minor: i64) -> NewRefund {
    NewRefund { target: RefundTarget::Card { rrn: rrn.into() }, ..new_refund(request_no, "-", minor) }
}

pub async fn card_refunds_are_reviewed_then_recorded_once(db: &TestDb) {
    let platform = Platform::start(db).await;
    let sale_id = card_sale(db, MERCHANT, 1, Some("000000000101"), 800_00, "approved").await;
    let asked = platform.refunds.request(&api_key(), card_refund("C1", "000000000101", 600_00), "api").await.unwrap();
    assert!(asked.needs_institution_review);
    // 600.00 held: 200.00 left.
    let over = platform.refunds.request(&api_key(), card_refund("C2", "000000000101", 200_01), "api").await;
    assert!(matches!(over, Err(RefundError::Exceeds { refundable }) if refundable == cny(200_00)), "{over:?}");

    platform.refunds.review(&owner(), &merchant(), "C1", Decision::Approve, "", "ip").await.unwrap();
    let sale = db.store.txns.txn(sale_id).await.unwrap().unwrap();
    assert_eq!(sale.refunded_minor, 0, "nothing recorded before the institution");
    let done = platform.refunds.review(&reviewer(), &merchant(), "C1", Decision::Approve, "", "ip").await.unwrap();
    assert_eq!(done.state, S::Succeeded, "{done:?}");
    assert_eq!(
        done.steps.iter().map(|s| s.kind).collect::<Vec<_>>(),
        [
            StepKind::Requested,
            StepKind::MerchantApproved,
            StepKind::InstitutionApproved,
            StepKind::SentToChannel,
            StepKind::ChannelSucceeded
        ]
    );
    let channel = done.channel.clone().unwrap();
    assert_eq!(channel.status, ChannelStatus::Succeeded);
    // The fee returns in proportion: 4.80 on 800.00, so 3.60 on 600.00.
    assert_eq!(channel.fee_returned, Some(cny(3_60)));

    // The sale shows the refund; the refund is a transaction of its own with its journal entry.
    let sale = db.store.txns.txn(sale_id).await.unwrap().unwrap();
    assert_eq!((sale.refunded_minor, sale.status.as_str()), (600_00, "partially_refunded"));
    let refund = db.store.txns.txn_by_trade(MERCHANT, &channel.channel_refund_no).await.unwrap().unwrap();
    assert_eq!((refund.kind.as_str(), refund.status.as_str()), ("refund", "approved"));
    assert_eq!((refund.amount_minor, refund.fee_minor, refund.original_id), (600_00, 3_60, Some(sale_id)));
    assert_eq!(refund.pan_masked.as_deref(), Some("622202*********0128"));
    let entries = db.store.ledger.entries_for(&channel.channel_refund_no).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert!(db.store.ledger.check().await.unwrap().is_sound());
    assert_eq!(db.store.refund_requests().refund_hold(RefundTargetKind::Card, sale_id).await.unwrap(), 0);

    // The rest, then nothing.
    platform.refunds.request(&api_key(), card_refund("C3", "000000000101", 200_00), "api").await.unwrap();
    let last = platform.refunds.review(&owner(), &merchant(), "C3", Decision::Approve, "", "ip").await.unwrap();
    assert_eq!(last.state, S::Succeeded);
    let sale = db.store.txns.txn(sale_id).await.unwrap().unwrap();
    assert_eq!((sale.refunded_minor, sale.status.as_str()), (800_00, "refunded"));
    let none = platform.refunds.request(&api_key(), card_refund("C4", "000000000101", 1), "api").await;
    assert!(matches!(none, Err(RefundError::NotRefundable(_))), "{none:?}");
    assert_eq!(platform.refunds.resolve_due().await.unwrap().checked, 0);
    platform.stop();
}

pub async fn card_sales_are_found_by_rrn_of_their_merchant_only(db: &TestDb) {
    let platform = Platform::start(db).await;
    // A sale answered with its id as RRN (the gateway's way when no RRN is stored).
    let id = card_sale(db, MERCHANT, 2, None, 50_00, "approved").await;
    let rrn = format!("{id:012}");
    let asked = platform.refunds.request(&api_key(), card_refund("C1", &rrn, 10_00), "api").await.unwrap();
    assert_eq!(asked.target, RefundTarget::Card { rrn: rrn.clone() });
    // Another merchant's sale, a declined one, an unknown RRN.
    card_sale(db, OTHER_MERCHANT, 3, Some("000000000303"), 50_00, "approved").await;
    card_sale(db, MERCHANT, 4, Some("000000000404"), 50_00, "declined").await;
    let theirs = platform.refunds.request(&api_key(), card_refund("C2", "000000000303", 1_00), "api").await;
    assert!(matches!(theirs, Err(RefundError::NotFound)), "{theirs:?}");
    let declined = platform.refunds.request(&api_key(), card_refund("C3", "000000000404", 1_00), "api").await;
    assert!(matches!(declined, Err(RefundError::NotRefundable(_))), "{declined:?}");
    let unknown = platform.refunds.request(&api_key(), card_refund("C4", "999999999999", 1_00), "api").await;
    assert!(matches!(unknown, Err(RefundError::NotFound)), "{unknown:?}");
    platform.stop();
}

pub async fn a_card_sale_refunded_at_the_terminal_meanwhile_fails_the_request(db: &TestDb) {
    let platform = Platform::start(db).await;
    let sale_id = card_sale(db, MERCHANT, 5, Some("000000000505"), 100_00, "approved").await;
    platform.refunds.request(&api_key(), card_refund("C1", "000000000505", 80_00), "api").await.unwrap();
    // A terminal refunds 50.00 of the sale (退货) while the request waits for its review.
    let sale = db.store.txns.txn(sale_id).await.unwrap().unwrap();
    let update = TxnUpdate { refunded_minor: 50_00, ..TxnUpdate::of(&sale, TxnStatus::PartiallyRefunded, 2) };
    db.store.commit(WriteUnit::guarded(Guard::UpdateTxn(update), vec![])).await.unwrap();
    let failed = platform.refunds.review(&owner(), &merchant(), "C1", Decision::Approve, "", "ip").await.unwrap();
    assert_eq!(failed.state, S::Failed, "{failed:?}");
    assert_eq!(failed.channel.unwrap().failure.as_deref(), Some("nothing_left_to_refund"));
    let sale = db.store.txns.txn(sale_id).await.unwrap().unwrap();
    assert_eq!(sale.refunded_minor, 50_00, "never above the sale");
    // What is left can still be asked for.
    let asked = platform.refunds.request(&api_key(), card_refund("C2", "000000000505", 50_00), "api").await.unwrap();
    assert_eq!(
        platform
            .refunds
            .review(&owner(), &merchant(), &asked.request_no, Decision::Approve, "", "ip")
            .await
            .unwrap()
            .state,
        S::Succeeded
    );
    platform.stop();
}

//! The workflow's steps, roles and idempotency over the wallet simulator.

use kassa_domain::{RefundAction, RefundReason, RefundRequestState as S};
use kassa_refund::{Actor, ChannelStatus, Decision, NewRefund, RefundError, RefundFilter, StepKind};
use kassa_store::testing::TestDb;

use super::*;

fn kinds(progress: &RefundProgress) -> Vec<StepKind> {
    progress.steps.iter().map(|s| s.kind).collect()
}

async fn audit_actions(db: &TestDb) -> Vec<(String, String, String)> {
    let records = db.store.audit.audit_records(0, 1_000).await.unwrap();
    records
        .into_iter()
        .filter(|r| r.event.action.starts_with("refund_"))
        .map(|r| (r.event.action, r.event.actor, r.event.reason))
        .collect()
}

pub async fn a_small_refund_goes_through_the_merchant_to_the_wallet(db: &TestDb) {
    let platform = Platform::start(db).await;
    platform.paid_trade("T1", 100_00).await;

    let asked = platform.refunds.request(&api_key(), new_refund("R1", "T1", 30_00), "api").await.unwrap();
    assert_eq!(asked.state, S::Requested);
    assert!(!asked.needs_institution_review);
    assert_eq!(asked.requested_by, "api_key:key1");
    assert_eq!(kinds(&asked), [StepKind::Requested]);
    assert!(asked.channel.is_none());

    let done = platform.refunds.review(&owner(), &merchant(), "R1", Decision::Approve, "", "10.0.0.1").await.unwrap();
    assert_eq!(done.state, S::Succeeded, "{done:?}");
    assert_eq!(
        kinds(&done),
        [StepKind::Requested, StepKind::MerchantApproved, StepKind::SentToChannel, StepKind::ChannelSucceeded]
    );
    assert_eq!(done.steps[1].actor, "user:owner");
    assert_eq!(done.steps[1].state, S::Approved);
    assert_eq!(done.steps[2].actor, "system");
    let channel = done.channel.clone().unwrap();
    assert_eq!(channel.status, ChannelStatus::Succeeded);
    assert_eq!(channel.channel_refund_no, format!("RR{}", done.id));

    // The wallet refunded exactly once, under the request's number, and the QR trade shows it.
    let refunds = platform.qr.refunds(&merchant(), "T1").await.unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].out_request_no, channel.channel_refund_no);
    assert_eq!(refunds[0].amount, cny(30_00));
    // The fee returns in proportion: 0.38 % of 100.00 is 0.38; 30 % of it is 0.114 → 0.11.
    assert_eq!(channel.fee_returned, Some(cny(11)));
    assert_eq!(refunds[0].fee_returned, cny(11));
    let trade = db.store.qr().trade_by_out_trade_no(MERCHANT, "T1").await.unwrap().unwrap();
    assert_eq!((trade.refunded_minor, trade.refunding_minor), (30_00, 0));
    assert!(db.store.ledger.check().await.unwrap().is_sound());

    // The same progress is read back, and the resolver has nothing more to do.
    assert_eq!(platform.refunds.get(&staff(), &merchant(), "R1").await.unwrap(), done);
    assert_eq!(platform.refunds.resolve_due().await.unwrap().checked, 0);

    // Every step is in the audit log, chained.
    let actions = audit_actions(db).await;
    let names: Vec<&str> = actions.iter().map(|(action, _, _)| action.as_str()).collect();
    assert_eq!(
        names,
        ["refund_requested", "refund_merchant_approved", "refund_sent_to_channel", "refund_channel_succeeded"]
    );
    assert_eq!(actions[0].1, "api_key:key1");
    assert_eq!(actions[1].1, "user:owner");
    assert!(kassa_store::verify_audit_chain(&*db.store.audit).await.unwrap().is_ok());
    platform.stop();
}

pub async fn a_large_refund_needs_the_institution_too(db: &TestDb) {
    let platform = Platform::start(db).await;
    platform.paid_trade("T1", 800_00).await;
    // 500.00 exactly does not need the institution; 500.01 does.
    let at_threshold = platform.refunds.request(&api_key(), new_refund("R0", "T1", 500_00), "api").await.unwrap();
    assert!(!at_threshold.needs_institution_review);
    let rejected =
        platform.refunds.review(&owner(), &merchant(), "R0", Decision::Reject, "asked twice", "ip").await.unwrap();
    assert_eq!(rejected.state, S::RejectedByMerchant);

    let asked = platform.refunds.request(&api_key(), new_refund("R1", "T1", 500_01), "api").await.unwrap();
    assert!(asked.needs_institution_review);
    let merchant_ok =
        platform.refunds.review(&owner(), &merchant(), "R1", Decision::Approve, "ok", "ip").await.unwrap();
    assert_eq!(merchant_ok.state, S::AwaitingInstitutionReview);
    assert!(merchant_ok.channel.is_none());
    assert!(platform.qr.refunds(&merchant(), "T1").await.unwrap().is_empty(), "nothing sent before the institution");

    // The merchant's queue no longer holds it; the institution's does.
    assert!(platform.refunds.review_queue(&owner(), None, 0).await.unwrap().items.is_empty());
    let queue = platform.refunds.review_queue(&reviewer(), None, 0).await.unwrap();
    assert_eq!(queue.items.iter().map(|p| p.request_no.as_str()).collect::<Vec<_>>(), ["R1"]);
    // The merchant cannot take the institution's step.
    let again = platform.refunds.review(&second_owner(), &merchant(), "R1", Decision::Approve, "", "ip").await;
    assert!(matches!(
        again,
        Err(RefundError::WrongState { state: S::AwaitingInstitutionReview, action: RefundAction::MerchantApprove })
    ));

    let done =
        platform.refunds.review(&reviewer(), &merchant(), "R1", Decision::Approve, "checked", "ip").await.unwrap();
    assert_eq!(done.state, S::Succeeded);
    assert_eq!(
        kinds(&done),
        [
            StepKind::Requested,
            StepKind::MerchantApproved,
            StepKind::InstitutionApproved,
            StepKind::SentToChannel,
            StepKind::ChannelSucceeded
        ]
    );
    assert_eq!(done.steps[2].actor, "user:reviewer");
    assert_eq!(done.steps[2].reason, "checked");
    let trade = db.store.qr().trade_by_out_trade_no(MERCHANT, "T1").await.unwrap().unwrap();
    assert_eq!(trade.refunded_minor, 500_01);
    platform.stop();
}

pub async fn rejections_are_final_and_release_the_hold(db: &TestDb) {
    let platform = Platform::start(db).await;
    platform.paid_trade("T1", 900_00).await;
    platform.refunds.request(&api_key(), new_refund("R1", "T1", 900_00), "api").await.unwrap();
    // Everything is held: nothing more can be asked for.
    let more = platform.refunds.request(&api_key(), new_refund("R2", "T1", 1), "api").await;
    assert!(matches!(more, Err(RefundError::Exceeds { refundable }) if refundable == cny(0)), "{more:?}");
    // A rejection needs a reason.
    let bare = platform.refunds.review(&owner(), &merchant(), "R1", Decision::Reject, " ", "ip").await;
    assert!(matches!(bare, Err(RefundError::Invalid(_))));
    platform.refunds.review(&owner(), &merchant(), "R1", Decision::Approve, "", "ip").await.unwrap();
    let rejected = platform
        .refunds
        .review(&reviewer(), &merchant(), "R1", Decision::Reject, "no proof of return", "ip")
        .await
        .unwrap();
    assert_eq!(rejected.state, S::RejectedByInstitution);
    assert_eq!(rejected.steps.last().unwrap().reason, "no proof of return");
    // Final: nobody moves it again.
    let after = platform.refunds.review(&reviewer(), &merchant(), "R1", Decision::Approve, "", "ip").await;
    assert!(matches!(after, Err(RefundError::WrongState { state: S::RejectedByInstitution, .. })));
    assert!(platform.qr.refunds(&merchant(), "T1").await.unwrap().is_empty());
    // The hold is gone: the whole amount can be asked for again.
    let again = platform.refunds.request(&api_key(), new_refund("R3", "T1", 900_00), "api").await.unwrap();
    assert_eq!(again.state, S::Requested);
    platform.stop();
}

pub async fn request_numbers_are_idempotent(db: &TestDb) {
    let platform = Platform::start(db).await;
    platform.paid_trade("T1", 100_00).await;
    let first = platform.refunds.request(&api_key(), new_refund("R1", "T1", 10_00), "api").await.unwrap();
    let again = platform.refunds.request(&api_key(), new_refund("R1", "T1", 10_00), "api").await.unwrap();
    assert_eq!(first, again);
    // Another amount, reason or note under the same number is refused.
    let other_amount = platform.refunds.request(&api_key(), new_refund("R1", "T1", 11_00), "api").await;
    assert!(matches!(other_amount, Err(RefundError::Conflict(_))));
    let other_reason = NewRefund { reason: RefundReason::Complaint, ..new_refund("R1", "T1", 10_00) };
    assert!(matches!(platform.refunds.request(&api_key(), other_reason, "api").await, Err(RefundError::Conflict(_))));

    // Concurrent duplicates: one request, held once.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let refunds = platform.refunds.clone();
        tasks
            .push(tokio::spawn(async move { refunds.request(&api_key(), new_refund("R2", "T1", 20_00), "api").await }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let held = db.store.refund_requests().refund_hold(kassa_store::refund_requests::RefundTargetKind::Qr, {
        db.store.qr().trade_by_out_trade_no(MERCHANT, "T1").await.unwrap().unwrap().id
    });
    assert_eq!(held.await.unwrap(), 30_00);

    // Bad input is refused before anything is stored.
    for bad in [
        new_refund("", "T1", 1),
        new_refund("R 3", "T1", 1),
        new_refund("R3", "T1", 0),
        NewRefund { reason: RefundReason::Other, note: String::new(), ..new_refund("R3", "T1", 1) },
        NewRefund { note: "x".repeat(257), ..new_refund("R3", "T1", 1) },
    ] {
        let answer = platform.refunds.request(&api_key(), bad.clone(), "api").await;
        assert!(matches!(answer, Err(RefundError::Invalid(_))), "{bad:?}: {answer:?}");
    }
    let unknown = platform.refunds.request(&api_key(), new_refund("R3", "NOPE", 1), "api").await;
    assert!(matches!(unknown, Err(RefundError::NotFound)));
    platform.stop();
}

pub async fn the_requester_never_reviews_and_roles_are_enforced(db: &TestDb) {
    let platform = Platform::start(db).await;
    platform.paid_trade("T1", 900_00).await;
    // Staff and institution staff do not ask for refunds.
    for actor in [staff(), reviewer(), Actor::InstitutionAdmin { username: "admin".into() }] {
        let answer = platform.refunds.request(&actor, new_refund("R0", "T1", 1_00), "ip").await;
        assert!(matches!(answer, Err(RefundError::Forbidden(_))), "{actor:?}");
    }
    platform.refunds.request(&owner(), new_refund("R1", "T1", 600_00), "ip").await.unwrap();
    // The owner who asked cannot approve; staff cannot review at all.
    let own = platform.refunds.review(&owner(), &merchant(), "R1", Decision::Approve, "", "ip").await;
    assert!(matches!(own, Err(RefundError::SelfReview)));
    let by_staff = platform.refunds.review(&staff(), &merchant(), "R1", Decision::Approve, "", "ip").await;
    assert!(matches!(by_staff, Err(RefundError::Forbidden(_))));
    let by_admin = platform
        .refunds
        .review(&Actor::InstitutionAdmin { username: "admin".into() }, &merchant(), "R1", Decision::Approve, "", "ip")
        .await;
    assert!(matches!(by_admin, Err(RefundError::Forbidden(_))));
    // The institution cannot skip the merchant's review.
    let early = platform.refunds.review(&reviewer(), &merchant(), "R1", Decision::Approve, "", "ip").await;
    assert!(matches!(early, Err(RefundError::WrongState { state: S::Requested, .. })));
    // Another owner of the merchant approves; then a reviewer who is also the requester could not.
    let merchant_ok =
        platform.refunds.review(&second_owner(), &merchant(), "R1", Decision::Approve, "", "ip").await.unwrap();
    assert_eq!(merchant_ok.state, S::AwaitingInstitutionReview);
    let done = platform.refunds.review(&reviewer(), &merchant(), "R1", Decision::Approve, "", "ip").await.unwrap();
    assert_eq!(done.state, S::Succeeded);
    // Nothing the refused calls tried was recorded.
    assert_eq!(done.steps.len(), 5);
    platform.stop();
}

pub async fn two_reviewers_racing_one_wins(db: &TestDb) {
    let platform = Platform::start(db).await;
    platform.paid_trade("T1", 100_00).await;
    for round in 0..4 {
        let no = format!("R{round}");
        platform.refunds.request(&api_key(), new_refund(&no, "T1", 1_00), "api").await.unwrap();
        let (first, second, ours) = (owner(), second_owner(), merchant());
        let (a, b) = tokio::join!(
            platform.refunds.review(&first, &ours, &no, Decision::Approve, "", "ip"),
            platform.refunds.review(&second, &ours, &no, Decision::Reject, "duplicate", "ip"),
        );
        let wins = [a.is_ok(), b.is_ok()];
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{a:?} {b:?}");
        let lost = if a.is_ok() { b } else { a };
        assert!(matches!(lost, Err(RefundError::WrongState { .. })), "{lost:?}");
        let progress = platform.refunds.get(&owner(), &merchant(), &no).await.unwrap();
        let reviews = progress
            .steps
            .iter()
            .filter(|s| matches!(s.kind, StepKind::MerchantApproved | StepKind::MerchantRejected))
            .count();
        assert_eq!(reviews, 1, "{progress:?}");
    }
    platform.stop();
}

pub async fn each_merchant_sees_only_its_own(db: &TestDb) {
    let platform = Platform::start(db).await;
    platform.paid_trade("T1", 100_00).await;
    platform.paid_trade_of(&other_merchant(), "T1", 100_00).await;
    platform.refunds.request(&api_key(), new_refund("R1", "T1", 1_00), "api").await.unwrap();
    platform.refunds.request(&api_key(), new_refund("R2", "T1", 2_00), "api").await.unwrap();
    let other_key = Actor::ApiKey { merchant_id: other_merchant(), key_id: "key2".into() };
    let other_owner = Actor::MerchantOwner { merchant_id: other_merchant(), username: "owner-b".into() };
    let theirs = NewRefund { merchant_id: other_merchant(), ..new_refund("R1", "T1", 3_00) };
    platform.refunds.request(&other_key, theirs, "api").await.unwrap();
    // Asking for another merchant's refund is refused.
    let foreign = NewRefund { merchant_id: other_merchant(), ..new_refund("R9", "T1", 1_00) };
    assert!(matches!(platform.refunds.request(&api_key(), foreign, "api").await, Err(RefundError::Forbidden(_))));

    // The other merchant neither reads nor reviews ours (it looks like nothing is there).
    assert!(matches!(platform.refunds.get(&other_owner, &merchant(), "R2").await, Err(RefundError::NotFound)));
    let review = platform.refunds.review(&other_owner, &merchant(), "R2", Decision::Approve, "", "ip").await;
    assert!(matches!(review, Err(RefundError::NotFound)));
    // Lists are bound to the merchant, whatever the filter says.
    let ours = platform.refunds.list(&staff(), RefundFilter::default()).await.unwrap();
    assert_eq!(ours.items.iter().map(|p| p.request_no.as_str()).collect::<Vec<_>>(), ["R2", "R1"]);
    // A list item is the whole progress, steps included (read for the page at once).
    for item in &ours.items {
        assert_eq!(item, &platform.refunds.get(&staff(), &merchant(), &item.request_no).await.unwrap());
        assert_eq!(item.steps.len(), 1);
    }
    let asked_for_theirs = RefundFilter { merchant_id: Some(other_merchant()), ..RefundFilter::default() };
    assert!(platform.refunds.list(&staff(), asked_for_theirs.clone()).await.unwrap().items.is_empty());
    // The institution sees every merchant's, and can filter.
    let all = platform.refunds.list(&reviewer(), RefundFilter::default()).await.unwrap();
    assert_eq!(all.items.len(), 3);
    let theirs = platform.refunds.list(&reviewer(), asked_for_theirs).await.unwrap();
    assert_eq!(theirs.items.iter().map(|p| p.merchant_id.as_str()).collect::<Vec<_>>(), [OTHER_MERCHANT]);
    // Pages follow the cursor, newest first, without repeats.
    let first = platform.refunds.list(&reviewer(), RefundFilter { limit: 2, ..RefundFilter::default() }).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let next = RefundFilter { limit: 2, after: first.next, ..RefundFilter::default() };
    let second = platform.refunds.list(&reviewer(), next).await.unwrap();
    assert_eq!(second.items.len(), 1);
    assert!(second.next.is_none());
    let mut ids: Vec<i64> = first.items.iter().chain(&second.items).map(|p| p.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    // State filters.
    let by_state = RefundFilter { states: vec![S::Succeeded], ..RefundFilter::default() };
    assert!(platform.refunds.list(&reviewer(), by_state).await.unwrap().items.is_empty());
    platform.stop();
}

pub async fn the_threshold_is_a_platform_setting_kept_per_request(db: &TestDb) {
    let platform = Platform::start(db).await;
    platform.paid_trade("T1", 900_00).await;
    platform.refunds.request(&api_key(), new_refund("R1", "T1", 150_00), "api").await.unwrap();
    let setting = WriteOp::PutSetting {
        scope: "platform".into(),
        name: "refund_review_above".into(),
        value: serde_json::json!("100.00"),
        at_ms: 1,
    };
    db.store.commit(WriteUnit::ops(vec![setting])).await.unwrap();
    // Asked under 500.00: the merchant alone decides, whatever the setting says now.
    let before = platform.refunds.review(&owner(), &merchant(), "R1", Decision::Approve, "", "ip").await.unwrap();
    assert_eq!(before.state, S::Succeeded);
    // Asked under 100.00: 100.00 stays with the merchant, 100.01 goes to the institution.
    let at = platform.refunds.request(&api_key(), new_refund("R2", "T1", 100_00), "api").await.unwrap();
    assert!(!at.needs_institution_review);
    let above = platform.refunds.request(&api_key(), new_refund("R3", "T1", 100_01), "api").await.unwrap();
    assert!(above.needs_institution_review);
    let merchant_ok = platform.refunds.review(&owner(), &merchant(), "R3", Decision::Approve, "", "ip").await.unwrap();
    assert_eq!(merchant_ok.state, S::AwaitingInstitutionReview);
    platform.stop();
}

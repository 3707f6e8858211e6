//! Reconciliation pages: the runs with their counts per class, a run's differences with their
//! evidence and the links to the transaction and the proposed correction, institution staff only.

use kassa_domain::Channel;
use kassa_store::batch_upload::NewCorrection;
use kassa_store::corrections::{propose, Proposal};
use kassa_store::recon::{
    finish_run, insert_difference, insert_run, DifferenceClass, NewReconRun, ReconCounts, ReconDifferenceRecord,
    ReconSource,
};
use kassa_store::testing::TestDb;
use kassa_store::WriteUnit;

use crate::harness::{Site, MID};

/// A finished alipay run of 2026-12-05 with one paid-but-not-credited trade (its correction
/// proposed) and one amount mismatch.
pub async fn seed_run(site: &Site) -> i64 {
    let run = NewReconRun {
        id: 7,
        channel: Channel::Alipay,
        business_date: "2026-12-05".into(),
        source: ReconSource::Download,
        started_by: "user:admin".into(),
        started_at_ms: 1_765_000_000_000,
    };
    let missed = ReconDifferenceRecord {
        run_id: 7,
        difference_key: "a:T-MISSED-1".into(),
        class: DifferenceClass::PaidNotCredited,
        kind: "trade".into(),
        reference: "QR-REF-1".into(),
        refund_reference: None,
        merchant_id: Some(MID.into()),
        out_trade_no: Some("T-MISSED-1".into()),
        channel_amount_minor: Some(1_234),
        kassa_amount_minor: None,
        currency: "CNY".into(),
        reason: "the wallet has it paid; Kassa has it closed".into(),
        statement_line_no: Some(3),
        statement_line: Some("2026-12-05 10:02:00,T-MISSED-1,12.34,SUCCESS".into()),
        kassa_record: Some(serde_json::json!({"status": "closed"})),
        correction_key: Some("recon:alipay:QR-REF-1".into()),
    };
    let mismatch = ReconDifferenceRecord {
        difference_key: "b:T-AMOUNT-2".into(),
        class: DifferenceClass::AmountMismatch,
        reference: "QR-REF-2".into(),
        out_trade_no: Some("T-AMOUNT-2".into()),
        channel_amount_minor: Some(500),
        kassa_amount_minor: Some(400),
        reason: "the amounts differ".into(),
        statement_line_no: Some(4),
        statement_line: Some("2026-12-05 11:00:00,T-AMOUNT-2,5.00,SUCCESS".into()),
        correction_key: None,
        ..missed.clone()
    };
    let counts = ReconCounts {
        lines: 5,
        matched: 3,
        amount_mismatch: 1,
        paid_not_credited: 1,
        missing_at_channel: 0,
        status_mismatch: 0,
        corrections_proposed: 1,
    };
    let correction = NewCorrection {
        correction_key: "recon:alipay:QR-REF-1".into(),
        source: "reconciliation".into(),
        kind: "paid_not_credited".into(),
        merchant_id: MID.into(),
        terminal_id: None,
        batch_no: None,
        stan: None,
        txn_id: None,
        terminal_amount_minor: None,
        host_amount_minor: Some(1_234),
        currency: "CNY".into(),
        details: serde_json::json!({"channel": "alipay", "reference": "QR-REF-1"}),
        created_at_ms: 1_765_000_000_500,
    };
    site.store.commit(WriteUnit::guarded(insert_run(&run), vec![])).await.unwrap();
    site.store
        .commit(WriteUnit::ops(vec![
            insert_difference(&missed),
            insert_difference(&mismatch),
            finish_run(7, &counts, 1_765_000_001_000),
        ]))
        .await
        .unwrap();
    let proposal = Proposal {
        channel: Some(Channel::Alipay),
        reference: Some("T-MISSED-1".into()),
        amount_minor: Some(1_234),
        evidence: "2026-12-05 10:02:00,T-MISSED-1,12.34,SUCCESS".into(),
        proposed_by: "reconciliation".into(),
    };
    site.store.commit(WriteUnit::guarded(propose(&correction, &proposal), vec![])).await.unwrap();
    7
}

async fn runs_and_their_differences(db: &TestDb) {
    let site = Site::start(db).await;
    let id = seed_run(&site).await;
    let admin = site.sign_in("admin").await;
    let runs = site.get(Some(&admin), "/recon").await;
    assert_eq!(runs.status, 200, "{}", runs.body);
    assert!(
        runs.body.contains("2026-12-05") && runs.body.contains("<td>Alipay</td>") && runs.body.contains("user:admin")
    );
    let zh = site.get(Some(&admin), "/recon?lang=zh").await;
    assert!(zh.body.contains("<td>支付宝</td>"), "the channel in words: {}", zh.body);
    assert!(runs.body.contains(&format!("/recon/runs/{id}")), "{}", runs.body);
    assert!(runs.body.contains("Paid at the channel, not credited"));

    let reviewer = site.sign_in("reviewer").await;
    let run = site.get(Some(&reviewer), &format!("/recon/runs/{id}")).await;
    assert_eq!(run.status, 200, "{}", run.body);
    assert!(run.body.contains("T-MISSED-1") && run.body.contains("12.34 CNY"), "{}", run.body);
    assert!(run.body.contains("2026-12-05 10:02:00,T-MISSED-1,12.34,SUCCESS"), "the statement line is the evidence");
    assert!(
        run.body.contains("/transactions?reference=T-MISSED-1&amp;merchant_id=898100000000001")
            || run.body.contains("/transactions?reference=T-MISSED-1&#38;merchant_id=898100000000001"),
        "a link to the transaction"
    );
    let correction = site.store.corrections().correction_by_key("recon:alipay:QR-REF-1").await.unwrap().unwrap();
    assert!(run.body.contains(&format!("/corrections/{}", correction.id)), "a link to the proposed correction");
    assert!(run.body.contains("5.00 CNY") && run.body.contains("4.00 CNY"), "both amounts of the mismatch");

    // One class at a time.
    let only = site.get(Some(&reviewer), &format!("/recon/runs/{id}?class=amount_mismatch")).await;
    assert!(only.body.contains("T-AMOUNT-2") && !only.body.contains("T-MISSED-1"));
    assert_eq!(site.get(Some(&reviewer), &format!("/recon/runs/{id}?class=nonsense")).await.status, 400);
    assert_eq!(site.get(Some(&reviewer), "/recon/runs/999").await.status, 404);
    assert_eq!(site.get(Some(&reviewer), "/recon/runs/x").await.status, 404);

    // In Chinese.
    let zh = site.get(Some(&admin), &format!("/recon/runs/{id}?lang=zh")).await;
    assert!(zh.body.contains("渠道已付、本系统未入账") && zh.body.contains("差错明细"), "{}", zh.body);

    // Merchant users may not see reconciliation at all.
    let owner = site.sign_in("owner").await;
    assert_eq!(site.get(Some(&owner), "/recon").await.status, 403);
    assert_eq!(site.get(Some(&owner), &format!("/recon/runs/{id}")).await.status, 403);
    let start = site.post(Some(&owner), "/recon/runs", &[("date", "2026-12-05"), ("channel", "alipay")]).await;
    assert_eq!(start.status, 403);
}

async fn a_run_that_cannot_be_made_is_refused_on_the_page(db: &TestDb) {
    let site = Site::start(db).await;
    let admin = site.sign_in("admin").await;
    // No channel connector on this site: the run is refused with a reason, nothing is stored.
    let bad = site.post(Some(&admin), "/recon/runs", &[("date", "2026-13-45"), ("channel", "alipay")]).await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Enter the business day as YYYY-MM-DD."), "{}", bad.body);
    let refused = site.post(Some(&admin), "/recon/runs", &[("date", "2026-12-05"), ("channel", "alipay")]).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(site.store.recon().runs(i64::MAX, 10).await.unwrap().is_empty());
}

kassa_store::both_backends!(runs_and_their_differences, a_run_that_cannot_be_made_is_refused_on_the_page);

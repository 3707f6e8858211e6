//! Trades made through the Alipay-compatible gateway (`store.aggregator()`): recorded once per
//! merchant trade, the first request's app and notify URL kept.

use kassa_store::aggregator::{admit_gateway_trade, insert_gateway_trade, GatewayTradeRecord};
use kassa_store::testing::TestDb;
use kassa_store::{UnitOutcome, WriteOp, WriteUnit};

fn record(merchant_id: &str, out_trade_no: &str, app_id: &str, notify_url: Option<&str>) -> GatewayTradeRecord {
    GatewayTradeRecord {
        merchant_id: merchant_id.into(),
        out_trade_no: out_trade_no.into(),
        app_id: app_id.into(),
        notify_url: notify_url.map(str::to_owned),
        created_at_ms: 1_000,
    }
}

async fn gateway_trades_are_recorded_once_and_never_redirected(db: &TestDb) {
    let reads = db.store.aggregator();
    assert_eq!(reads.gateway_trade("898100000000001", "G1").await.unwrap(), None);
    let first = record("898100000000001", "G1", "2026000000000001", Some("http://127.0.0.1:9/notify"));
    let outcome = db.store.commit(WriteUnit::guarded(insert_gateway_trade(&first), vec![])).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }), "{outcome:?}");

    // The same trade again, from another app with another notify URL: nothing changes.
    let again = record("898100000000001", "G1", "2026000000000002", Some("http://attacker.example/"));
    let outcome = db.store.commit(WriteUnit::guarded(insert_gateway_trade(&again), vec![])).await.unwrap();
    assert_eq!(outcome, UnitOutcome::Duplicate { existing_txn_id: None });
    assert_eq!(reads.gateway_trade("898100000000001", "G1").await.unwrap(), Some(first.clone()));

    // Another merchant may use the same number; no notify URL is stored as none.
    let other = record("898100000000002", "G1", "2026000000000002", None);
    let outcome = db.store.commit(WriteUnit::guarded(insert_gateway_trade(&other), vec![])).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }), "{outcome:?}");
    assert_eq!(reads.gateway_trade("898100000000002", "G1").await.unwrap(), Some(other));
    assert_eq!(reads.gateway_trade("898100000000001", "G1").await.unwrap(), Some(first));
}

async fn as_an_admission_the_record_always_passes_and_is_never_rewritten(db: &TestDb) {
    let reads = db.store.aggregator();
    let audit = |action: &str| {
        WriteOp::Audit(kassa_store::AuditEvent {
            at_ms: 1,
            actor: "test".into(),
            action: action.into(),
            target: "gateway".into(),
            source: "test".into(),
            reason: String::new(),
            details: serde_json::json!({}),
        })
    };
    let first = record("898100000000001", "G2", "2026000000000001", Some("http://127.0.0.1:9/n"));
    let unit = WriteUnit::ops(vec![audit("first")]).admitted_by(admit_gateway_trade(&first));
    let outcome = db.store.commit(unit).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }), "{outcome:?}");
    assert_eq!(reads.gateway_trade("898100000000001", "G2").await.unwrap(), Some(first.clone()));

    // Again, from another app with another URL: admitted (the unit is written), the row unchanged.
    let again =
        GatewayTradeRecord { created_at_ms: 9_999, ..record("898100000000001", "G2", "2026000000000002", None) };
    let unit = WriteUnit::ops(vec![audit("again")]).admitted_by(admit_gateway_trade(&again));
    let outcome = db.store.commit(unit).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }), "{outcome:?}");
    assert_eq!(reads.gateway_trade("898100000000001", "G2").await.unwrap(), Some(first));
    let actions: Vec<String> =
        db.store.audit.audit_records(0, 10).await.unwrap().into_iter().map(|r| r.event.action).collect();
    assert_eq!(actions, ["first", "again"]);
}

kassa_store::both_backends!(
    gateway_trades_are_recorded_once_and_never_redirected,
    as_an_admission_the_record_always_passes_and_is_never_rewritten
);

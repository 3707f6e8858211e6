//! Merchant notifications of trades made through `/gateway.do`, end to end: real requests,
//! the real wallet simulator, the outbox the store's trigger fills, the sender delivering to a
//! receiver on port 0 — one notification per trade and status, whichever path changed the
//! trade (the payment's answer, a payer who confirms later, a merchant QR paid, a cancel).

use std::sync::Mutex;

use axum::routing::post;
use kassa_aggregator::{Notifier, NotifyConfig, NotifyUrlPolicy};

use super::*;

type Received = Arc<Mutex<Vec<Vec<(String, String)>>>>;

async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/notify",
        post(move |body: axum::body::Bytes| async move {
            sink.lock().unwrap().push(wire::parse_form(&body).unwrap());
            "success"
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// (out_trade_no, trade_status) of what the receiver got, sorted.
fn announced(received: &Received) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = received
        .lock()
        .unwrap()
        .iter()
        .map(|p| {
            (wire::param(p, "out_trade_no").unwrap().to_owned(), wire::param(p, "trade_status").unwrap().to_owned())
        })
        .collect();
    seen.sort();
    seen
}

async fn every_path_to_paid_or_closed_is_announced_once(db: &TestDb) {
    let kassa = Kassa::start(db).await;
    let (url, received) = receiver().await;
    let notify = [("notify_url", url.as_str())];
    // Paid in the answer; a payer who confirms later; a code the wallet refuses (never
    // announced); a waiting payment cancelled; a paid one cancelled (refunded: closed after paid).
    let paid = kassa.call_with("alipay.trade.pay", pay("N1", ALIPAY_PAID, "12.34"), &notify).await;
    assert_eq!(code(&paid).0, "10000", "{paid:?}");
    kassa.call_with("alipay.trade.pay", pay("N2", ALIPAY_CONFIRMS, "1.00"), &notify).await;
    query_until(&kassa, "N2", "TRADE_SUCCESS").await;
    let refused = kassa.call_with("alipay.trade.pay", pay("N3", ALIPAY_BROKE, "1.00"), &notify).await;
    assert_eq!(code(&refused).0, "40004", "{refused:?}");
    kassa.call_with("alipay.trade.pay", pay("N4", ALIPAY_NEVER, "1.00"), &notify).await;
    let cancelled = kassa.call("alipay.trade.cancel", json!({"out_trade_no": "N4"})).await;
    assert_eq!(code(&cancelled).0, "10000", "{cancelled:?}");
    kassa.call_with("alipay.trade.pay", pay("N5", ALIPAY_PAID, "3.00"), &notify).await;
    let reversed = kassa.call("alipay.trade.cancel", json!({"out_trade_no": "N5"})).await;
    assert_eq!(code(&reversed).0, "10000", "{reversed:?}");
    // A merchant QR the payer pays in the wallet: Kassa learns it from the wallet's notification.
    let order = json!({"out_trade_no": "N6", "subject": "tea", "total_amount": "2.00"});
    let created = kassa.call_with("alipay.trade.precreate", order, &notify).await;
    kassa.payer_pays(created["qr_code"].as_str().unwrap(), "alipay").await;
    query_until(&kassa, "N6", "TRADE_SUCCESS").await;
    // No notify_url: nothing is sent.
    kassa.call("alipay.trade.pay", pay("N7", ALIPAY_PAID, "1.00")).await;

    let key = Arc::new(RsaKeyPair::generate().unwrap());
    let policy = NotifyUrlPolicy::new(true, &[]).unwrap();
    let sender =
        Notifier::new(kassa.db_store.clone(), key.clone(), policy, Arc::new(SystemClock), NotifyConfig::default())
            .unwrap();
    let expected: Vec<(String, String)> = [
        ("N1", "TRADE_SUCCESS"),
        ("N2", "TRADE_SUCCESS"),
        ("N4", "TRADE_CLOSED"),
        ("N5", "TRADE_CLOSED"),
        ("N5", "TRADE_SUCCESS"),
        ("N6", "TRADE_SUCCESS"),
    ]
    .iter()
    .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
    .collect();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while announced(&received) != expected {
        assert!(tokio::time::Instant::now() < deadline, "announced {:?}", announced(&received));
        sender.send_due().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // More rounds send nothing more.
    for _ in 0..3 {
        sender.send_due().await.unwrap();
    }
    assert_eq!(announced(&received), expected);
    for params in received.lock().unwrap().iter() {
        let sign = wire::param(params, "sign").unwrap();
        assert!(wire::verify(params, sign, &key.public_key(), true), "{params:?}");
        assert_eq!(wire::param(params, "app_id"), Some(APP_ID));
    }
    let delivered = kassa.db_store.merchant_notify().notifications_failed(10).await.unwrap();
    assert!(delivered.is_empty(), "{delivered:?}");
    let n1 = received.lock().unwrap().iter().find(|p| wire::param(p, "out_trade_no") == Some("N1")).cloned().unwrap();
    assert_eq!(wire::param(&n1, "trade_no"), paid["trade_no"].as_str(), "the trade_no the answer gave");
    assert_eq!(wire::param(&n1, "total_amount"), Some("12.34"));
    let n7 = kassa.db_store.qr().trade_by_out_trade_no(MID, "N7").await.unwrap().unwrap();
    assert!(kassa.db_store.merchant_notify().notifications_of(n7.id).await.unwrap().is_empty(), "nothing owed");
    // Every notification owed was acknowledged.
    let backlog = kassa.db_store.merchant_notify().notification_backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.failed), (0, 0));
    kassa.stop().await;
}

kassa_store::both_backends!(every_path_to_paid_or_closed_is_announced_once);

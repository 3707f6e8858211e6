//! A model test: random interleavings of payments, notifications (delivered or dropped),
//! resolver rounds, expiry, cancels, closes and refunds over a few trades. After each run the
//! ledger balances, and per trade the wallets' books (paid minus refunded) and Kassa's ledger
//! agree, with at most one sale entry: nothing charged, credited or refunded twice. Runs on
//! SQLite and, with `KASSA_TEST_DATABASE_URL`, on PostgreSQL (fewer cases: a database each).

use std::sync::Arc;

use kassa_domain::clock::ManualClock;
use kassa_qr::{MerchantQrRequest, QrTradeStatus, RefundRequest};
use kassa_store::testing::TestDb;
use kassa_wallet::Wallet;
use proptest::prelude::*;

use crate::{cny, collect_request, config, host_with, ledger_net, merchant, origin, sound, wallet_net, Host};

const TRADES: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Collect { trade: usize, pays: bool },
    CreateQr { trade: usize },
    Scan { trade: usize, wallet: Wallet },
    PayerPays { trade: usize, wallet: Wallet, deliver: bool },
    Tick,
    Expire,
    Cancel { trade: usize },
    Close { trade: usize },
    Refund { trade: usize, request: usize, minor: i64 },
    LoseNextAnswer { wallet: Wallet },
}

fn wallet() -> impl Strategy<Value = Wallet> {
    prop_oneof![Just(Wallet::Alipay), Just(Wallet::Wechat)]
}

fn op() -> impl Strategy<Value = Op> {
    let trade = 0..TRADES;
    prop_oneof![
        (trade.clone(), any::<bool>()).prop_map(|(trade, pays)| Op::Collect { trade, pays }),
        trade.clone().prop_map(|trade| Op::CreateQr { trade }),
        (trade.clone(), wallet()).prop_map(|(trade, wallet)| Op::Scan { trade, wallet }),
        (trade.clone(), wallet(), any::<bool>()).prop_map(|(trade, wallet, deliver)| Op::PayerPays {
            trade,
            wallet,
            deliver
        }),
        Just(Op::Tick),
        Just(Op::Expire),
        trade.clone().prop_map(|trade| Op::Cancel { trade }),
        trade.clone().prop_map(|trade| Op::Close { trade }),
        (trade, 0..3_usize, 1..700_i64).prop_map(|(trade, request, minor)| Op::Refund { trade, request, minor }),
        wallet().prop_map(|wallet| Op::LoseNextAnswer { wallet }),
    ]
}

fn out_trade_no(trade: usize) -> String {
    format!("M{trade}")
}

fn fake(host: &Host, wallet: Wallet) -> &crate::fake::FakeWallet {
    if wallet == Wallet::Alipay {
        &host.alipay
    } else {
        &host.wechat
    }
}

async fn run(db: &TestDb, ops: Vec<Op>) {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let host = host_with(db, clock.clone(), config()).await;
    let m = merchant();
    for op in ops {
        // Every operation may be refused (a conflict, a closed code, a refund too large):
        // what matters is what the books say afterwards.
        match op {
            Op::Collect { trade, pays } => {
                let code = if pays { "281234567890123401" } else { "131234567890123403" };
                let _ = host.service.collect(&m, &origin(), collect_request(&out_trade_no(trade), code, 1000)).await;
            }
            Op::CreateQr { trade } => {
                let request = MerchantQrRequest {
                    out_trade_no: out_trade_no(trade),
                    amount: cny(1000),
                    subject: "x".into(),
                    validity_minutes: Some(1),
                };
                let _ = host.service.create_merchant_qr(&m, &origin(), request).await;
            }
            Op::Scan { trade, wallet } => {
                if let Ok(found) = host.service.get(&m, &out_trade_no(trade)).await {
                    if let Some(code) = found.qr_code {
                        let token = code.rsplit('/').next().unwrap_or_default().to_owned();
                        let _ = host.service.scan(&token, wallet).await;
                    }
                }
            }
            Op::PayerPays { trade, wallet, deliver } => {
                if let Ok(found) = host.service.get(&m, &out_trade_no(trade)).await {
                    if let Some(body) = fake(&host, wallet).payer_pays(&found.reference) {
                        if deliver {
                            host.service.notification(wallet, "application/json", &body).await;
                        }
                    }
                }
            }
            Op::Tick => {
                let _ = host.service.resolve_due().await;
            }
            Op::Expire => clock.advance_ms(61_000),
            Op::Cancel { trade } => {
                let _ = host.service.cancel(&m, &origin(), &out_trade_no(trade)).await;
            }
            Op::Close { trade } => {
                let _ = host.service.close(&m, &origin(), &out_trade_no(trade)).await;
            }
            Op::Refund { trade, request, minor } => {
                let refund =
                    RefundRequest { out_request_no: format!("r{request}"), amount: cny(minor), reason: String::new() };
                let _ = host.service.refund(&m, &origin(), &out_trade_no(trade), refund).await;
            }
            Op::LoseNextAnswer { wallet } => fake(&host, wallet).faults(|f| f.lose_answer = 1),
        }
    }
    // Let everything owed finish: the validity ends, the resolver runs until nothing is due.
    host.alipay.faults(|f| f.lose_answer = 0);
    host.wechat.faults(|f| f.lose_answer = 0);
    for _ in 0..40 {
        clock.advance_ms(120_000);
        let report = host.service.resolve_due().await.unwrap();
        if report.trades == 0 && report.refunds == 0 {
            break;
        }
    }
    sound(db).await;
    for trade in 0..TRADES {
        let Ok(found) = host.service.get(&m, &out_trade_no(trade)).await else { continue };
        let refunds = host.service.refunds(&m, &out_trade_no(trade)).await.unwrap();
        let references: Vec<String> = refunds.iter().map(|r| r.refund_reference.clone()).collect();
        let sales = db.store.ledger.entries_for(&found.reference).await.unwrap();
        assert!(sales.len() <= 1, "credited twice: {found:?}");
        assert!(!matches!(found.status, QrTradeStatus::Pending | QrTradeStatus::Waiting), "unresolved: {found:?}");
        assert_eq!(
            ledger_net(db, &found, &references).await,
            wallet_net(&host, &found.reference),
            "books differ for {found:?} {refunds:?}"
        );
        for wallet in [&host.alipay, &host.wechat] {
            if let Some(books) = wallet.trade(&found.reference) {
                assert!(books.refunded_minor <= books.paid_minor, "refunded more than paid: {books:?}");
            }
        }
    }
}

/// Runs `ops` on `db`, then drops the database whether the run passed or not (a failing case
/// is shrunk into many runs, each with a PostgreSQL database of its own).
async fn run_on(db: TestDb, ops: Vec<Op>) {
    let db = Arc::new(db);
    let shared = Arc::clone(&db);
    let outcome = tokio::spawn(async move { run(&shared, ops).await }).await;
    if let Ok(db) = Arc::try_unwrap(db) {
        db.finish().await;
    }
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

fn block_on(run: impl std::future::Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run);
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..14)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_wallets_books_and_the_ledger_agree(ops in ops()) {
        block_on(async { run_on(TestDb::sqlite().await, ops).await });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn the_wallets_books_and_the_ledger_agree_on_postgres(ops in ops()) {
        block_on(async {
            if let Some(db) = TestDb::postgres().await {
                run_on(db, ops).await;
            }
        });
    }
}

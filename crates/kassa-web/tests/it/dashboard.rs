//! The dashboard: its numbers are the seeded ones, per role's scope; tiles link to their pages;
//! the charts are SVG with a title and a table of the same numbers. Its figures, read from the
//! roll-up's summary and the records changed since, equal the records' own aggregates before,
//! during and after roll-ups, through status changes.

use kassa_domain::calendar::BusinessDay;
use kassa_domain::{Channel, Currency, TxnKind, TxnStatus};
use kassa_store::qr::{update_trade, QrKind, QrStatus, QrTradeRecord};
use kassa_store::rollup::{roll_up, roll_up_in_chunks, RollupReport, SETTLE_MS};
use kassa_store::testing::TestDb;
use kassa_store::web::DayVolume;
use kassa_store::{Guard, NewTxn, Store, StoredAnswer, TxnUpdate, UnitOutcome, WriteUnit};

use crate::harness::{Site, MID, OTHER_MID};
use crate::transactions::{card_sale_on, store_trades, trade, AT_MS};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn numbers_are_the_seeded_ones(db: &TestDb) {
    let site = Site::start(db).await;
    let now = now_ms();
    let today = BusinessDay::default().date_of(now).to_string();
    let with_day = |mut t: kassa_store::qr::QrTradeRecord| {
        t.business_date = today.clone();
        t
    };
    for sale in [
        (11, 10_000, "approved", "D00000000011"),
        (12, 5_000, "approved", "D00000000012"),
        (13, 700, "declined", "D00000000013"),
    ] {
        card_sale_on(&site.store, MID, sale, &today, now).await;
    }
    card_sale_on(&site.store, OTHER_MID, (14, 1_000_000, "approved", "D00000000014"), &today, now).await;
    store_trades(
        &site.store,
        &[
            with_day(trade(1, MID, Channel::Alipay, QrStatus::Paid, 3_000, now)),
            with_day(trade(2, MID, Channel::Wechat, QrStatus::Waiting, 900, now)),
            with_day(trade(3, OTHER_MID, Channel::Wechat, QrStatus::Waiting, 900, now)),
        ],
    )
    .await;
    // An old sale outside the 14 days does not count.
    card_sale_on(&site.store, MID, (15, 123_400, "approved", "D00000000015"), "2020-01-01", 1_577_836_800_000).await;

    let owner = site.sign_in("owner").await;
    let page = site.get(Some(&owner), "/").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let tile = |label: &str| {
        let at = page.body.find(&format!("<span class=\"label\">{label}</span>")).unwrap_or_else(|| panic!("{label}"));
        page.body[at..].split("</a>").next().unwrap().to_owned()
    };
    // Today: 2 card sales and 1 QR payment succeeded, 180.00 CNY; 1 declined: 3 of 4.
    let paid_today = tile("Paid today");
    assert!(paid_today.contains(">3<") && paid_today.contains("180.00 CNY"), "{paid_today}");
    assert!(tile("Success rate").contains("75.0%"));
    assert!(tile("QR payments with an unknown outcome").contains(">1<"));
    assert!(page.body.contains("href=\"/transactions?status=pending\""));
    assert!(page.body.contains("Refunds waiting for approval"));
    assert!(!page.body.contains("Corrections proposed"), "a merchant has no corrections page");
    assert!(tile("QR payment time, median").contains("≤ 2.0 s"));
    assert!(!page.body.contains("10,180.00"), "no other merchant's amounts");
    // Charts: SVG with a title, and the numbers as a table.
    assert!(page.body.contains("<svg") && page.body.contains("<title>Successful payments per day</title>"));
    assert!(page.body.contains("The numbers as a table"));
    assert!(!page.body.contains("style="));

    let admin = site.sign_in("admin").await;
    let platform = site.get(Some(&admin), "/").await;
    let at = platform.body.find("<span class=\"label\">Paid today</span>").unwrap();
    let paid = platform.body[at..].split("</a>").next().unwrap();
    assert!(paid.contains(">4<") && paid.contains("10,180.00 CNY"), "{paid}");
    assert!(
        platform.body.contains("Corrections proposed") && platform.body.contains("Open reconciliation differences")
    );
    let at = platform.body.find("QR payments with an unknown outcome").unwrap();
    assert!(platform.body[at..].split("</a>").next().unwrap().contains(">2<"));
    let zh = site.get(Some(&admin), "/?lang=zh").await;
    assert!(zh.body.contains("今日收款") && zh.body.contains("待处理事项"));

    // Folded into the summary, the page says the same.
    let report = roll_up(&site.store, now + SETTLE_MS + 60_000).await.unwrap();
    assert_eq!(report.rows_folded, 8, "{report:?}");
    let again = site.get(Some(&admin), "/").await;
    let at = again.body.find("<span class=\"label\">Paid today</span>").unwrap();
    assert_eq!(again.body[at..].split("</a>").next().unwrap(), paid);
}

const EARLY: &str = "2026-12-05";
const LATE: &str = "2026-12-06";
/// Outside every range asked.
const BEFORE: &str = "2026-11-01";
const HOUR_MS: i64 = 3_600_000;

/// A card transaction of any kind, without its journal entry (the dashboard reads none).
async fn card(store: &Store, merchant: &str, stan: u32, (kind, status, amount): (&str, &str, i64), day: &str) -> i64 {
    let txn = NewTxn {
        kind: TxnKind::parse(kind).unwrap(),
        status: TxnStatus::parse(status).unwrap(),
        channel: Channel::Card,
        merchant_id: merchant.into(),
        card_identity: Some(kassa_store::CardIdentity::new("10000003", 1, stan, "020").unwrap()),
        out_trade_no: None,
        rrn: Some(format!("E{stan:011}")),
        auth_code: None,
        amount_minor: amount,
        currency: Currency::CNY,
        fee_minor: 0,
        pan_masked: None,
        content_digest: format!("d-{stan}"),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: day.into(),
        created_at_ms: AT_MS + i64::from(stan) * 1_000,
    };
    match store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(txn)), vec![])).await.unwrap() {
        UnitOutcome::Committed { txn_id: Some(id), .. } => id,
        other => panic!("not inserted: {other:?}"),
    }
}

/// Moves card transaction `id` (at `version`) to `status`, stamped `at_ms`.
async fn card_becomes(store: &Store, id: i64, version: i64, status: &str, at_ms: i64) {
    let stored = store.txns.txn(id).await.unwrap().unwrap();
    let update = TxnUpdate {
        expected_version: version,
        refunded_minor: 0,
        settled: false,
        ..TxnUpdate::of(&stored, TxnStatus::parse(status).unwrap(), at_ms)
    };
    let outcome = store.commit(WriteUnit::guarded(Guard::UpdateTxn(update), vec![])).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }), "{outcome:?}");
}

/// Writes `trade`'s new state (read at `trade.version`), stamped `at_ms`; returns it as stored.
async fn trade_becomes(store: &Store, mut trade: QrTradeRecord, at_ms: i64) -> QrTradeRecord {
    trade.updated_at_ms = at_ms;
    let outcome = store.commit(WriteUnit::guarded(update_trade(&trade), vec![])).await.unwrap();
    assert!(matches!(outcome, UnitOutcome::Committed { .. }), "{outcome:?}");
    trade.version += 1;
    trade
}

fn on(day: &str, mut trade: QrTradeRecord) -> QrTradeRecord {
    trade.business_date = day.into();
    trade
}

fn sorted(mut volumes: Vec<DayVolume>) -> Vec<DayVolume> {
    volumes.sort_by_key(|v| (v.business_date.clone(), v.channel.clone(), v.currency.clone(), v.outcome));
    volumes
}

/// The dashboard's reads equal the records' aggregates for the platform and each merchant,
/// over both days and over the later one; returns the platform's volumes of both days.
async fn assert_exact(store: &Store, when: &str) -> Vec<DayVolume> {
    let web = store.web();
    for merchant in [None, Some(MID), Some(OTHER_MID)] {
        for (from, to) in [(EARLY, LATE), (LATE, LATE)] {
            let rolled = sorted(web.day_volumes(merchant, from, to).await.unwrap());
            let records = sorted(web.day_volumes_from_records(merchant, from, to).await.unwrap());
            assert_eq!(rolled, records, "{when}: volumes of {merchant:?}, {from}..{to}");
            let rolled = web.qr_latency(merchant, from, to).await.unwrap();
            let records = web.qr_latency_from_records(merchant, from, to).await.unwrap();
            assert_eq!(rolled, records, "{when}: latency of {merchant:?}, {from}..{to}");
        }
    }
    sorted(web.day_volumes(None, EARLY, LATE).await.unwrap())
}

/// How many payments of the platform's volumes have `channel` and `outcome`.
fn payments(volumes: &[DayVolume], channel: Option<&str>, outcome: kassa_store::web::Outcome) -> i64 {
    volumes.iter().filter(|v| v.channel.as_deref() == channel && v.outcome == outcome).map(|v| v.count).sum()
}

async fn the_rollup_equals_the_records(db: &TestDb) {
    use kassa_store::web::Outcome::{Failed, Pending, Succeeded};
    let site = Site::start(db).await;
    let store = &site.store;
    let pending_sale = card(store, MID, 1, ("sale", "pending", 1_234), LATE).await;
    card(store, MID, 2, ("sale", "approved", 10_000), EARLY).await;
    card(store, MID, 3, ("sale", "declined", 700), LATE).await;
    let reversed_later = card(store, OTHER_MID, 4, ("sale", "approved", 99_999), LATE).await;
    card(store, MID, 5, ("offline_sale", "approved", 5_000), LATE).await;
    card(store, MID, 6, ("refund", "approved", 2_000), LATE).await;
    card(store, MID, 7, ("sale", "approved", 5), BEFORE).await;
    let waiting = on(LATE, trade(21, MID, Channel::Wechat, QrStatus::Waiting, 900, AT_MS));
    let paid = on(LATE, trade(22, MID, Channel::Alipay, QrStatus::Paid, 3_000, AT_MS));
    let mut unchosen = on(LATE, trade(23, MID, Channel::Wechat, QrStatus::Pending, 500, AT_MS));
    unchosen.kind = QrKind::MerchantQr;
    unchosen.wallet = None;
    let mut slow = on(EARLY, trade(24, OTHER_MID, Channel::Wechat, QrStatus::Paid, 4_242, AT_MS));
    slow.paid_at_ms = Some(AT_MS + 45_000);
    let failed = on(LATE, trade(25, MID, Channel::Alipay, QrStatus::Failed, 100, AT_MS));
    let old = on(BEFORE, trade(26, OTHER_MID, Channel::Alipay, QrStatus::Paid, 77, AT_MS));
    store_trades(store, &[waiting.clone(), paid.clone(), unchosen.clone(), slow, failed.clone(), old]).await;

    // Nothing folded yet: the tail is every record.
    let volumes = assert_exact(store, "before any roll-up").await;
    assert_eq!(payments(&volumes, Some("card"), Succeeded), 3);
    assert_eq!(payments(&volumes, None, Pending), 1, "the merchant QR no wallet was chosen for");

    // Folded in chunks of two: the tail is empty.
    let report = roll_up_in_chunks(store, AT_MS + HOUR_MS, 2).await.unwrap();
    // Cards stamped a second apart: three chunks; the six trades share a millisecond: one.
    assert_eq!((report.rows_folded, report.chunks, report.lost_races), (12, 4, 0), "{report:?}");
    assert_eq!(assert_exact(store, "all folded").await, volumes);
    let again = roll_up(store, AT_MS + HOUR_MS).await.unwrap();
    assert_eq!(again, RollupReport::default(), "nothing changed since: no write");

    // Changes the summary has not seen: a view is exact anyway.
    let changed_at = AT_MS + 2 * HOUR_MS;
    card_becomes(store, pending_sale, 1, "approved", changed_at).await;
    card_becomes(store, reversed_later, 1, "reversed", changed_at).await;
    let mut now_paid = waiting.clone();
    now_paid.status = QrStatus::Paid;
    now_paid.paid_at_ms = Some(changed_at - 7_000);
    trade_becomes(store, now_paid, changed_at).await;
    let mut chosen = unchosen.clone();
    chosen.wallet = Some(Channel::Wechat);
    chosen.status = QrStatus::Paid;
    chosen.paid_at_ms = Some(changed_at);
    trade_becomes(store, chosen, changed_at).await;
    let mut touched = paid.clone();
    touched.checks = 1;
    trade_becomes(store, touched, changed_at).await;
    let volumes = assert_exact(store, "changed, not folded").await;
    assert_eq!(payments(&volumes, Some("card"), Failed), 2, "declined and reversed");
    assert_eq!(payments(&volumes, None, Pending), 0);

    // A round whose settled time is before the changes folds none of them.
    let report = roll_up(store, changed_at + SETTLE_MS - 1).await.unwrap();
    assert_eq!(report.rows_folded, 0, "{report:?}");
    assert_exact(store, "changes not settled").await;

    // Another change after the next round's settled time: folded, the earlier ones; not it.
    let corrected = trade_becomes(
        store,
        QrTradeRecord { status: QrStatus::Paid, paid_at_ms: Some(changed_at + HOUR_MS), ..failed.clone() },
        changed_at + HOUR_MS,
    )
    .await;
    let report = roll_up(store, changed_at + SETTLE_MS).await.unwrap();
    assert_eq!((report.rows_read, report.rows_folded), (5, 4), "the touched trade counts as before: {report:?}");
    assert_exact(store, "folded up to the watermark, one change after it").await;

    // Rows sharing a millisecond are folded in one chunk, however small the chunks.
    let same_ms = changed_at + 2 * HOUR_MS;
    trade_becomes(store, QrTradeRecord { status: QrStatus::Failed, ..corrected }, same_ms).await;
    let mut burst = Vec::new();
    for id in 30..35 {
        let mut t = on(LATE, trade(id, MID, Channel::Alipay, QrStatus::Paid, 1_000 + id, same_ms - 2_000));
        t.updated_at_ms = same_ms;
        burst.push(t);
    }
    store_trades(store, &burst).await;
    let report = roll_up_in_chunks(store, same_ms + SETTLE_MS, 2).await.unwrap();
    assert_eq!((report.rows_read, report.chunks), (6, 1), "{report:?}");
    assert_exact(store, "a millisecond of six rows").await;

    // Two hosts rolling up at once: each chunk is written once.
    let last = same_ms + HOUR_MS;
    card_becomes(store, pending_sale, 2, "reversed", last).await;
    let (one, other) =
        tokio::join!(roll_up_in_chunks(store, last + SETTLE_MS, 1), roll_up_in_chunks(store, last + SETTLE_MS, 1));
    let (one, other) = (one.unwrap(), other.unwrap());
    assert_eq!(one.rows_folded.max(other.rows_folded), 1, "{one:?} {other:?}");
    roll_up(store, last + SETTLE_MS).await.unwrap();
    let volumes = assert_exact(store, "after two roll-ups at once").await;
    assert_eq!(payments(&volumes, Some("card"), Failed), 3);
    assert_eq!(payments(&volumes, Some("alipay"), Succeeded), 6);
}

kassa_store::both_backends!(numbers_are_the_seeded_ones, the_rollup_equals_the_records);

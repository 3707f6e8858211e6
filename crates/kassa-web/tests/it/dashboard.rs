//! The dashboard: its numbers are the seeded ones, per role's scope; tiles link to their pages;
//! the charts are SVG with a title and a table of the same numbers.

use kassa_domain::calendar::BusinessDay;
use kassa_domain::Channel;
use kassa_store::qr::QrStatus;
use kassa_store::testing::TestDb;

use crate::harness::{Site, MID, OTHER_MID};
use crate::transactions::{card_sale_on, store_trades, trade};

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
}

kassa_store::both_backends!(numbers_are_the_seeded_ones);

//! Transactions: the search (filters, pages, scoping), a transaction's detail (facts, balanced
//! entries, refunds, audit trail; another merchant's is 404) and the CSV export (content,
//! scoping, streamed in pages).

use kassa_domain::{Channel, Currency, MerchantId, Money, TxnKind, TxnStatus};
use kassa_store::qr::{insert_trade, QrKind, QrOrderState, QrOriginKind, QrStatus, QrTradeRecord};
use kassa_store::testing::TestDb;
use kassa_store::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Browser, Site, MID, OTHER_MID, TID};

/// 2026-12-06 10:00 Beijing time.
pub const AT_MS: i64 = 1_765_000_000_000;
pub const DAY: &str = "2026-12-06";

/// A card sale of `merchant` on [`DAY`]; its journal entry when approved.
pub async fn card_sale(
    store: &Store,
    merchant: &str,
    stan: u32,
    amount: i64,
    status: &str,
    rrn: &str,
    at_ms: i64,
) -> i64 {
    card_sale_on(store, merchant, (stan, amount, status, rrn), DAY, at_ms).await
}

/// A card sale `(stan, amount, status, rrn)` of `merchant` on business day `day`.
pub async fn card_sale_on(store: &Store, merchant: &str, sale: (u32, i64, &str, &str), day: &str, at_ms: i64) -> i64 {
    let (stan, amount, status, rrn) = sale;
    let identity = CardIdentity::new(TID, 1, stan, "020").unwrap();
    let txn = NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::parse(status).unwrap(),
        channel: Channel::Card,
        merchant_id: merchant.into(),
        card_identity: Some(identity.clone()),
        out_trade_no: None,
        rrn: Some(rrn.into()),
        auth_code: Some("654321".into()),
        amount_minor: amount,
        currency: Currency::CNY,
        fee_minor: 0,
        pan_masked: Some("622202******0128".into()),
        content_digest: format!("d-{rrn}"),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: day.into(),
        created_at_ms: at_ms,
    };
    let mut ops = Vec::new();
    if status == "approved" {
        let reference = format!("card:{TID}:000001:{stan:06}:020");
        let entry = kassa_ledger::sale_entry(
            &reference,
            &MerchantId::parse(merchant).unwrap(),
            Channel::Card,
            Money::from_minor(amount, Currency::CNY),
            Money::from_minor(amount / 100, Currency::CNY),
        )
        .unwrap();
        ops.push(WriteOp::PostEntry { entry, at_ms });
    }
    match store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(txn)), ops)).await.unwrap() {
        UnitOutcome::Committed { txn_id: Some(id), .. } => id,
        other => panic!("not inserted: {other:?}"),
    }
}

/// A QR trade record (not yet stored).
pub fn trade(id: i64, merchant: &str, wallet: Channel, status: QrStatus, amount: i64, at_ms: i64) -> QrTradeRecord {
    QrTradeRecord {
        id,
        merchant_id: merchant.into(),
        out_trade_no: format!("ORDER-{id}"),
        reference: format!("KQ{id}"),
        kind: QrKind::CustomerCode,
        wallet: Some(wallet),
        status,
        amount: Money::from_minor(amount, Currency::CNY),
        refunded_minor: 0,
        refunding_minor: 0,
        fee_minor: 0,
        subject: "coffee".into(),
        origin: QrOriginKind::Api,
        origin_id: None,
        terminal_id: None,
        operator: None,
        code_digest: None,
        qr_token: None,
        alipay_order: QrOrderState::None,
        alipay_code: None,
        wechat_order: QrOrderState::None,
        wechat_code: None,
        trade_no: Some(format!("2026120622{id:012}")),
        paid_at_ms: (status == QrStatus::Paid).then_some(at_ms + 1_500),
        expires_at_ms: at_ms + 60_000,
        next_check_at_ms: None,
        checks: 0,
        attention: false,
        failure: None,
        business_date: DAY.into(),
        version: 1,
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
    }
}

/// Stores trades in one unit.
pub async fn store_trades(store: &Store, trades: &[QrTradeRecord]) {
    let ops = trades
        .iter()
        .map(|t| match insert_trade(t) {
            Guard::Statement(statement) => WriteOp::Statement { statement, may_change_nothing: false },
            _ => unreachable!("insert_trade is a statement"),
        })
        .collect();
    store.commit(WriteUnit::ops(ops)).await.unwrap();
}

/// The shape every test here starts from: ids of (approved sale, declined sale, other
/// merchant's sale); QR trades 1 (alipay, paid, MID), 2 (wechat, waiting, MID), 3 (alipay, paid,
/// OTHER_MID).
async fn seed(store: &Store) -> (i64, i64, i64) {
    let approved = card_sale(store, MID, 1, 12_345, "approved", "R00000000001", AT_MS).await;
    let declined = card_sale(store, MID, 2, 777, "declined", "R00000000002", AT_MS + 1_000).await;
    let other = card_sale(store, OTHER_MID, 3, 999_999, "approved", "R00000000003", AT_MS + 2_000).await;
    store_trades(
        store,
        &[
            trade(1, MID, Channel::Alipay, QrStatus::Paid, 5_000, AT_MS + 3_000),
            trade(2, MID, Channel::Wechat, QrStatus::Waiting, 8_800, AT_MS + 4_000),
            trade(3, OTHER_MID, Channel::Alipay, QrStatus::Paid, 4_242, AT_MS + 5_000),
        ],
    )
    .await;
    let note = AuditEvent {
        at_ms: AT_MS + 10_000,
        actor: "user:admin".into(),
        action: "looked_into".into(),
        target: format!("txn:{approved}"),
        source: "test".into(),
        reason: "customer called".into(),
        details: json!({}),
    };
    store.commit(WriteUnit::ops(vec![WriteOp::Audit(note)])).await.unwrap();
    (approved, declined, other)
}

fn has(page: &crate::harness::Page, text: &str) -> bool {
    page.body.contains(text)
}

async fn search_filters_and_scoping(db: &TestDb) {
    let site = Site::start(db).await;
    let (approved, declined, other) = seed(&site.store).await;
    let owner = site.sign_in("owner").await;

    let all = site.get(Some(&owner), "/transactions").await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(has(&all, "123.45 CNY") && has(&all, "7.77 CNY") && has(&all, "50.00 CNY") && has(&all, "88.00 CNY"));
    assert!(!has(&all, "9,999.99 CNY") && !has(&all, "42.42 CNY"), "another merchant's rows");
    assert!(has(&all, &format!("/transactions/card/{approved}")) && has(&all, "622202******0128"));
    // Newest first: the waiting trade (newest) before the approved sale (oldest).
    assert!(all.body.find("88.00 CNY").unwrap() < all.body.find("123.45 CNY").unwrap());

    // A merchant user's merchant filter is ignored: still only their rows.
    let sneaky = site.get(Some(&owner), &format!("/transactions?merchant_id={OTHER_MID}")).await;
    assert!(!has(&sneaky, "9,999.99 CNY") && has(&sneaky, "123.45 CNY"));

    let alipay = site.get(Some(&owner), "/transactions?channel=alipay").await;
    assert!(has(&alipay, "50.00 CNY") && !has(&alipay, "123.45 CNY") && !has(&alipay, "88.00 CNY"));
    let failed = site.get(Some(&owner), "/transactions?status=failed").await;
    assert!(has(&failed, "7.77 CNY") && !has(&failed, "123.45 CNY"));
    assert!(has(&failed, &format!("/transactions/card/{declined}")));
    let pending = site.get(Some(&owner), "/transactions?status=pending").await;
    assert!(has(&pending, "88.00 CNY") && !has(&pending, "50.00 CNY"));
    let amounts = site.get(Some(&owner), "/transactions?amount_min=60.00&amount_max=200").await;
    assert!(has(&amounts, "123.45 CNY") && has(&amounts, "88.00 CNY") && !has(&amounts, "50.00 CNY"));
    let by_rrn = site.get(Some(&owner), "/transactions?reference=R00000000001").await;
    assert!(has(&by_rrn, "123.45 CNY") && !has(&by_rrn, "7.77 CNY"));
    let by_order = site.get(Some(&owner), "/transactions?reference=ORDER-1").await;
    assert!(has(&by_order, "50.00 CNY") && !has(&by_order, "123.45 CNY"));
    let by_trade_no = site.get(Some(&owner), "/transactions?reference=2026120622000000000002").await;
    assert!(has(&by_trade_no, "88.00 CNY") && !has(&by_trade_no, "50.00 CNY"));
    let by_terminal = site.get(Some(&owner), &format!("/transactions?terminal_id={TID}")).await;
    assert!(has(&by_terminal, "123.45 CNY") && !has(&by_terminal, "50.00 CNY"));
    let dates = site.get(Some(&owner), "/transactions?date_from=2026-12-07").await;
    assert!(has(&dates, "No transaction matches."));
    let chinese = site.get(Some(&owner), "/transactions?lang=zh&channel=card").await;
    assert!(chinese.body.contains("交易查询") && chinese.body.contains("银行卡"));

    // Wrong filters are refused with words, never a panic.
    for bad in [
        "/transactions?date_from=2026-13-01",
        "/transactions?amount_min=abc",
        "/transactions?channel=cash",
        "/transactions?terminal_id=1",
        "/transactions?cursor=zz",
    ] {
        let page = site.get(Some(&owner), bad).await;
        assert_eq!(page.status, 400, "{bad}");
    }

    // The institution sees every merchant, or one.
    let admin = site.sign_in("admin").await;
    let everyone = site.get(Some(&admin), "/transactions").await;
    assert!(has(&everyone, "9,999.99 CNY") && has(&everyone, "123.45 CNY") && has(&everyone, OTHER_MID));
    let one = site.get(Some(&admin), &format!("/transactions?merchant_id={OTHER_MID}")).await;
    assert!(has(&one, "9,999.99 CNY") && has(&one, "42.42 CNY") && !has(&one, "123.45 CNY"));
    assert!(has(&one, &format!("/transactions/card/{other}")));
}

async fn pages_follow_the_cursor(db: &TestDb) {
    let site = Site::start(db).await;
    let trades: Vec<QrTradeRecord> =
        (1..=120).map(|n| trade(n, MID, Channel::Alipay, QrStatus::Paid, 100 + n, AT_MS + n * 1_000)).collect();
    store_trades(&site.store, &trades).await;
    let owner = site.sign_in("owner").await;
    let mut path = "/transactions?channel=alipay".to_owned();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let page = site.get(Some(&owner), &path).await;
        assert_eq!(page.status, 200, "{path}");
        for piece in page.body.split("/transactions/qr/").skip(1) {
            seen.push(piece.split('"').next().unwrap().parse::<i64>().unwrap());
        }
        match page.body.split("rel=\"next\"").next().and_then(|head| head.rsplit("href=\"").next()) {
            Some(href) if page.body.contains("rel=\"next\"") => {
                path = href.split('"').next().unwrap().replace("&#38;", "&").replace("&amp;", "&")
            }
            _ => break,
        }
    }
    let expected: Vec<i64> = (1..=120).rev().collect();
    assert_eq!(seen, expected, "every row once, newest first, across pages");
}

/// A capture as the gateway records it: under an id reserved before the issuer was asked, its
/// entry posted with that transaction's id (found by it, not by its reference).
async fn detail_shows_a_capture_entry_found_by_its_transaction(db: &TestDb) {
    let site = Site::start(db).await;
    seed(&site.store).await;
    let reserve = WriteUnit::ops(vec![WriteOp::ReserveTxnIds { count: 1, at_ms: AT_MS }]);
    let UnitOutcome::Committed { reserved_ids, .. } = site.store.commit(reserve).await.unwrap() else { panic!() };
    let id = reserved_ids[0];
    let reference = format!("card:{TID}:000001:000077:020");
    let txn = NewTxn {
        kind: TxnKind::Sale,
        status: TxnStatus::Approved,
        channel: Channel::Card,
        merchant_id: MID.into(),
        card_identity: Some(CardIdentity::new(TID, 1, 77, "020").unwrap()),
        out_trade_no: None,
        rrn: Some(format!("{id:012}")),
        auth_code: Some("777777".into()),
        amount_minor: 7_700,
        currency: Currency::CNY,
        fee_minor: 77,
        pan_masked: Some("622202******0128".into()),
        content_digest: "d-77".into(),
        original_id: None,
        response: StoredAnswer::default(),
        business_date: DAY.into(),
        created_at_ms: AT_MS,
    };
    let entry = kassa_ledger::sale_entry(
        &reference,
        &MerchantId::parse(MID).unwrap(),
        Channel::Card,
        Money::from_minor(7_700, Currency::CNY),
        Money::from_minor(77, Currency::CNY),
    )
    .unwrap();
    let unit = WriteUnit::guarded(
        Guard::InsertReservedTxn(Box::new(txn), ReservedId { id, block_id: id }),
        vec![WriteOp::PostTxnEntry { entry, txn_id: id, at_ms: AT_MS }],
    );
    assert!(matches!(site.store.commit(unit).await.unwrap(), UnitOutcome::Committed { .. }));
    assert!(site.store.ledger.entries_for(&reference).await.unwrap().is_empty(), "not by its reference");

    let owner = site.sign_in("owner").await;
    let page = site.get(Some(&owner), &format!("/transactions/card/{id}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for text in ["77.00 CNY", "Journal entries", "Balanced", reference.as_str(), "0.77"] {
        assert!(has(&page, text), "{text}: {}", page.body);
    }
    assert!(!has(&page, "Not balanced"));
}

async fn detail_shows_facts_entries_and_audit(db: &TestDb) {
    let site = Site::start(db).await;
    let (approved, _declined, other) = seed(&site.store).await;
    let owner = site.sign_in("owner").await;
    let page = site.get(Some(&owner), &format!("/transactions/card/{approved}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for text in [
        "123.45 CNY",
        "622202******0128",
        "R00000000001",
        "654321",
        "Balanced",
        "Journal entries",
        "looked_into",
        "customer called",
    ] {
        assert!(has(&page, text), "{text}: {}", page.body);
    }
    assert!(!has(&page, "Not balanced"));
    // The postings add up to zero: the debits equal the credits.
    let entries = site.store.ledger.entries_for(&format!("card:{TID}:000001:000001:020")).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].postings.iter().map(|(_, minor)| minor).sum::<i64>(), 0);
    for (account, _) in &entries[0].postings {
        assert!(has(&page, account), "{account}");
    }
    let qr = site.get(Some(&owner), "/transactions/qr/1").await;
    assert_eq!(qr.status, 200);
    assert!(has(&qr, "ORDER-1") && has(&qr, "KQ1") && has(&qr, "50.00 CNY"));
    // Credits are positive amounts in the credit column, never negative.
    for (_, minor) in &entries[0].postings {
        assert!(has(&page, &kassa_web::format::money(minor.abs(), "CNY")));
        assert!(!has(&page, &format!("-{}", kassa_web::format::money(minor.abs(), "CNY"))));
    }
    assert!(has(&page, "Approved") && has(&page, "Sale"), "the status and kinds in words: {}", page.body);
    let zh = site.get(Some(&owner), &format!("/transactions/card/{approved}?lang=zh")).await;
    assert!(zh.body.contains("会计分录") && zh.body.contains("借贷平衡"));
    assert!(zh.body.contains("已批准") && zh.body.contains("消费"), "{}", zh.body);
    for stored in ["approved", "sale", "card"] {
        assert!(!zh.body.contains(&format!(">{stored}<")) && !zh.body.contains(&format!(" {stored} ")), "{stored}");
    }
    let qr_zh = site.get(Some(&owner), "/transactions/qr/1?lang=zh").await;
    assert!(qr_zh.body.contains("已支付") && !qr_zh.body.contains(">paid<"), "{}", qr_zh.body);

    // Another merchant's transaction does not exist for the owner; it does for the institution.
    assert_eq!(site.get(Some(&owner), &format!("/transactions/card/{other}")).await.status, 404);
    assert_eq!(site.get(Some(&owner), "/transactions/qr/3").await.status, 404);
    assert_eq!(site.get(Some(&owner), "/transactions/card/999999").await.status, 404);
    assert_eq!(site.get(Some(&owner), "/transactions/card/x").await.status, 404);
    let admin = site.sign_in("admin").await;
    assert_eq!(site.get(Some(&admin), &format!("/transactions/card/{other}")).await.status, 200);
    assert_eq!(site.get(Some(&admin), "/transactions/qr/3").await.status, 200);
}

async fn export_is_csv_of_the_search(db: &TestDb) {
    let site = Site::start(db).await;
    let (approved, _, _) = seed(&site.store).await;
    let owner = site.sign_in("owner").await;
    let csv = site.get(Some(&owner), "/transactions.csv").await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv.header("content-disposition").unwrap().contains("attachment"));
    let lines: Vec<&str> = csv.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(format!("{}\r\n", lines[0]), kassa_web::pages::transactions::CSV_HEADER);
    assert_eq!(lines.len(), 1 + 4, "{}", csv.body);
    let sale = lines.iter().find(|l| l.contains(&format!(",card,{approved},"))).unwrap();
    assert!(sale.contains(",123.45,0.00,CNY,") && sale.contains("622202******0128") && sale.contains(MID), "{sale}");
    assert!(!csv.body.contains(OTHER_MID));
    let filtered = site.get(Some(&owner), "/transactions.csv?channel=wechat").await;
    assert_eq!(filtered.body.split("\r\n").filter(|l| !l.is_empty()).count(), 2);
    assert!(filtered.body.contains(",88.00,"));
    let admin = site.sign_in("admin").await;
    let everyone = site.get(Some(&admin), "/transactions.csv").await;
    assert_eq!(everyone.body.split("\r\n").filter(|l| !l.is_empty()).count(), 1 + 6);
}

/// Reads an answer's raw chunks (HTTP/1.1 chunked transfer encoding): their sizes.
async fn chunk_sizes(site: &Site, browser: &Browser, path: &str) -> Vec<usize> {
    let mut stream = tokio::net::TcpStream::connect(site.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nCookie: {}\r\nSec-Fetch-Site: same-origin\r\n\r\n",
        site.addr, browser.cookie
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let mut rest = &response[split..];
    let mut sizes = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        sizes.push(size);
        rest = &rest[line_end + 2 + size + 2..];
    }
    sizes
}

async fn export_streams_page_by_page(db: &TestDb) {
    let site = Site::start(db).await;
    let rows = 2 * kassa_web::pages::transactions::EXPORT_PAGE_ROWS + 37;
    let trades: Vec<QrTradeRecord> =
        (1..=rows).map(|n| trade(n, MID, Channel::Wechat, QrStatus::Paid, 100, AT_MS + n)).collect();
    store_trades(&site.store, &trades).await;
    let owner = site.sign_in("owner").await;
    let sizes = chunk_sizes(&site, &owner, "/transactions.csv").await;
    // The header, then one chunk per page of the store: never the whole file at once.
    assert!(sizes.len() >= 4, "{sizes:?}");
    let largest = *sizes.iter().max().unwrap();
    assert!(largest < sizes.iter().sum::<usize>() / 2, "{sizes:?}");
    let csv = site.get(Some(&owner), "/transactions.csv").await;
    assert_eq!(csv.body.split("\r\n").filter(|l| !l.is_empty()).count() as i64, rows + 1);
}

kassa_store::both_backends!(
    search_filters_and_scoping,
    pages_follow_the_cursor,
    detail_shows_facts_entries_and_audit,
    detail_shows_a_capture_entry_found_by_its_transaction,
    export_is_csv_of_the_search,
    export_streams_page_by_page,
);

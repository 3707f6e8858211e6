//! The screen preview: the same slip as text, no line wider than the paper (CJK counted twice),
//! the copies and markers where they belong.

use kassa_receipt::{preview, Copy, Lang, Width};
use proptest::prelude::*;
use unicode_width::UnicodeWidthStr;

use crate::fixtures;

fn assert_fits(lines: &[String], columns: usize) {
    for line in lines {
        assert!(line.width() <= columns, "{} columns > {columns}: `{line}`", line.width());
        assert!(!line.chars().any(char::is_control), "control character in `{line}`");
    }
}

#[test]
fn every_slip_fits_its_paper_in_both_languages() {
    for receipt in fixtures::all() {
        for copy in [Copy::Merchant, Copy::Customer] {
            for lang in [Lang::En, Lang::Zh] {
                let lines = preview(&receipt, copy, lang);
                assert!(lines.len() > 10, "{:?} is too short: {lines:?}", receipt.kind);
                assert_fits(&lines, receipt.width.columns());
            }
        }
    }
}

#[test]
fn the_paper_widths_are_32_and_48_columns() {
    assert_eq!(Width::default(), Width::Narrow58mm);
    assert_eq!(Width::Narrow58mm.columns(), 32);
    assert_eq!(Width::Wide80mm.columns(), 48);
    for width in [Width::Narrow58mm, Width::Wide80mm] {
        let mut receipt = fixtures::card_sale();
        receipt.width = width;
        let lines = preview(&receipt, Copy::Merchant, Lang::En);
        let rule = "-".repeat(width.columns());
        assert!(lines.contains(&rule), "no full-width rule in {lines:?}");
    }
}

#[test]
fn only_the_merchant_copy_of_a_card_sale_has_the_signature_line() {
    let sale = fixtures::card_sale();
    let merchant = preview(&sale, Copy::Merchant, Lang::Zh).join("\n");
    assert!(merchant.contains("持卡人签名/Cardholder signature"), "{merchant}");
    assert!(merchant.contains("商户存根/Merchant copy"), "{merchant}");
    let customer = preview(&sale, Copy::Customer, Lang::Zh).join("\n");
    assert!(!customer.contains("持卡人签名"), "{customer}");
    assert!(customer.contains("持卡人存根/Customer copy"), "{customer}");
    let wallet = preview(&fixtures::qr_payment(), Copy::Merchant, Lang::En).join("\n");
    assert!(!wallet.contains("Cardholder signature"), "{wallet}");
    let english = preview(&sale, Copy::Customer, Lang::En).join("\n");
    assert!(english.contains("Customer copy"), "{english}");
    assert!(!english.contains("持卡人"), "{english}");
}

#[test]
fn voids_refunds_reprints_and_offline_sales_say_so() {
    let mut void = fixtures::card_sale();
    void.kind = kassa_receipt::ReceiptKind::Void;
    void.original = Some("612345678900".into());
    void.reprint = true;
    void.offline = true;
    let text = preview(&void, Copy::Customer, Lang::Zh).join("\n");
    for expected in ["消费撤销/Void", "-￥12.34", "612345678900", "重打印凭证/Reprint", "离线交易/Offline"]
    {
        assert!(text.contains(expected), "{expected} missing in\n{text}");
    }
}

#[test]
fn a_settlement_slip_lists_each_kind_and_the_verdict() {
    let text = preview(&fixtures::settlement(), Copy::Merchant, Lang::En).join("\n");
    for expected in [
        "SETTLEMENT REPORT",
        "Sale",
        "3  RMB 37.02",
        "Void",
        "1  RMB -12.34",
        "12  RMB 10560.00",
        "Count  Amount",
        "Balanced",
    ] {
        assert!(text.contains(expected), "{expected} missing in\n{text}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any merchant name, trade number and operator, Latin or CJK, wraps within the paper.
    #[test]
    fn any_field_wraps_within_the_paper(
        name in "[a-zA-Z0-9 卡萨咖啡店北京上海有限公司（）]{0,120}",
        trade in "[A-Z0-9]{0,100}",
        wide in any::<bool>(),
        zh in any::<bool>(),
    ) {
        let mut receipt = fixtures::qr_payment();
        receipt.merchant_name = name.clone();
        receipt.operator = name;
        receipt.payment = kassa_receipt::PaymentMeans::wallet("wechat", Some(&trade));
        receipt.width = if wide { Width::Wide80mm } else { Width::Narrow58mm };
        let lang = if zh { Lang::Zh } else { Lang::En };
        for copy in [Copy::Merchant, Copy::Customer] {
            let lines = preview(&receipt, copy, lang);
            for line in &lines {
                prop_assert!(line.width() <= receipt.width.columns(), "`{}`", line);
            }
            let joined: String = lines.concat().split_whitespace().collect();
            prop_assert!(joined.contains(&trade), "the trade number was lost");
        }
    }
}

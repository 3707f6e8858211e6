//! Golden slips: the preview of a few receipts compared exactly with the files under
//! `tests/snapshots/`. Each line is framed by `|` so trailing spaces (the QR code's quiet zone)
//! survive editors. `UPDATE_SNAPSHOTS=1 cargo test -p kassa-receipt` rewrites the files; review
//! the diff before committing it.

use std::path::PathBuf;

use kassa_receipt::{preview, Copy, Lang, Receipt};

use crate::fixtures;

fn check(name: &str, receipt: &Receipt, copy: Copy, lang: Lang) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.txt"));
    let actual: String = preview(receipt, copy, lang).iter().map(|line| format!("|{line}|\n")).collect();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|value| value == "1") {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_SNAPSHOTS=1 writes it)", path.display()));
    if actual != expected {
        panic!("{name} differs from {}:\n{actual}\n(UPDATE_SNAPSHOTS=1 rewrites it)", path.display());
    }
}

#[test]
fn sale_merchant_copy_en() {
    check("sale_merchant_en", &fixtures::card_sale(), Copy::Merchant, Lang::En);
}

#[test]
fn sale_merchant_copy_zh() {
    check("sale_merchant_zh", &fixtures::card_sale(), Copy::Merchant, Lang::Zh);
}

#[test]
fn qr_payment_customer_copy_zh() {
    check("qr_payment_customer_zh", &fixtures::qr_payment(), Copy::Customer, Lang::Zh);
}

#[test]
fn qr_payment_customer_copy_en() {
    check("qr_payment_customer_en", &fixtures::qr_payment(), Copy::Customer, Lang::En);
}

#[test]
fn settlement_zh_80mm() {
    let mut receipt = fixtures::settlement();
    receipt.width = kassa_receipt::Width::Wide80mm;
    check("settlement_zh_80mm", &receipt, Copy::Merchant, Lang::Zh);
}

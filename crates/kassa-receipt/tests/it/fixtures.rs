//! Receipts the tests share: a card sale, a QR payment, a settlement.

use kassa_receipt::{EntryMode, KindTotal, PaymentMeans, Receipt, ReceiptKind, SettlementSummary, Width};

pub const MASKED_PAN: &str = "622202*********0128";

pub fn card_sale() -> Receipt {
    let card = PaymentMeans::card(MASKED_PAN, EntryMode::Chip).unwrap();
    let mut receipt = Receipt::new(ReceiptKind::Sale, 1234, "CNY", card).unwrap();
    receipt.merchant_name = "Kassa Demo Coffee 卡萨咖啡".into();
    receipt.merchant_id = "898310048160001".into();
    receipt.terminal_id = "10000001".into();
    receipt.operator = "01".into();
    receipt.date_time = "2026-12-06 14:03:22".into();
    receipt.rrn = Some("612345678901".into());
    receipt.auth_code = Some("A1B2C3".into());
    receipt.stan = Some("000123".into());
    receipt.batch = Some("000001".into());
    receipt.reference = "612345678901".into();
    receipt.validate().unwrap();
    receipt
}

pub fn qr_payment() -> Receipt {
    let wallet = PaymentMeans::wallet("alipay", Some("2026120622001400001234567890"));
    let mut receipt = Receipt::new(ReceiptKind::QrPayment, 8800, "CNY", wallet).unwrap();
    receipt.merchant_name = "Kassa Demo Coffee 卡萨咖啡".into();
    receipt.merchant_id = "898310048160001".into();
    receipt.terminal_id = "10000001".into();
    receipt.operator = "02".into();
    receipt.date_time = "2026-12-06 14:05:09".into();
    receipt.batch = Some("000001".into());
    receipt.stan = Some("000124".into());
    receipt.reference = "KQ20261206140509000124".into();
    receipt.validate().unwrap();
    receipt
}

pub fn settlement() -> Receipt {
    let wallet = PaymentMeans::wallet("alipay", None);
    let mut receipt = Receipt::new(ReceiptKind::Settlement, 0, "CNY", wallet).unwrap();
    receipt.merchant_name = "Kassa Demo Coffee 卡萨咖啡".into();
    receipt.merchant_id = "898310048160001".into();
    receipt.terminal_id = "10000001".into();
    receipt.operator = "00".into();
    receipt.date_time = "2026-12-06 23:00:00".into();
    receipt.batch = Some("000001".into());
    receipt.settlement = Some(SettlementSummary {
        totals: vec![
            KindTotal { kind: ReceiptKind::Sale, count: 3, amount_minor: 3702 },
            KindTotal { kind: ReceiptKind::Void, count: 1, amount_minor: 1234 },
            KindTotal { kind: ReceiptKind::QrPayment, count: 12, amount_minor: 1_056_000 },
            KindTotal { kind: ReceiptKind::QrRefund, count: 1, amount_minor: 8800 },
        ],
        balanced: true,
    });
    receipt.validate().unwrap();
    receipt
}

/// Every kind of slip the tests walk through, on both papers.
pub fn all() -> Vec<Receipt> {
    let mut all = Vec::new();
    for width in [Width::Narrow58mm, Width::Wide80mm] {
        for mut receipt in [card_sale(), qr_payment(), settlement()] {
            receipt.width = width;
            all.push(receipt);
        }
        for kind in [ReceiptKind::Void, ReceiptKind::Refund, ReceiptKind::PreAuth, ReceiptKind::Balance] {
            let mut receipt = card_sale();
            receipt.kind = kind;
            receipt.original = (kind == ReceiptKind::Void).then(|| "612345678900".into());
            receipt.reprint = kind == ReceiptKind::Refund;
            receipt.offline = kind == ReceiptKind::PreAuth;
            receipt.width = width;
            all.push(receipt);
        }
        let mut refund = qr_payment();
        refund.kind = ReceiptKind::QrRefund;
        refund.original = Some("KQ20261206140509000124".into());
        refund.width = width;
        all.push(refund);
    }
    all
}

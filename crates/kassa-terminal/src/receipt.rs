//! What a receipt needs, taken from a journal row and the terminal's parameters: the journal
//! keeps every fact of the open batch's transactions, so the last receipt or any other can be
//! printed again.
//!
//! INTEGRATION POINT (kassa-receipt): the receipt crate renders a `kassa_receipt::Receipt` as
//! ESC/POS bytes and a text preview and prints to a file or a TCP printer. When it lands, map
//! [`ReceiptFacts`] to its `Receipt` here (one `From` impl) and call it from the driver after an
//! approval when `--printer` is given; `reprint [STAN]` reads [`crate::Terminal::reprint`].

use crate::journal::{Entry, Kind};
use crate::terminal::Parameters;

/// Every fact a receipt prints, masked where it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFacts {
    /// The merchant's name (the receipt header).
    pub merchant_name: String,
    /// Field 42.
    pub merchant_id: String,
    /// Field 41.
    pub terminal_id: String,
    /// The operator who made it.
    pub operator: String,
    /// `sale`, `void`, `refund`, `offline_sale`, `qr_pay`, `qr_show`, `qr_refund`.
    pub kind: &'static str,
    /// Minor units.
    pub amount_minor: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// `622202***0128` for cards, empty for QR.
    pub masked_pan: String,
    /// `alipay` / `wechat` for QR.
    pub wallet: String,
    /// Unix ms the journal wrote it.
    pub created_at_ms: i64,
    /// Field 13 of the approval (`MMDD`).
    pub date_mmdd: String,
    /// The RRN (cards) or the wallet's trade number (QR).
    pub rrn_or_trade_no: String,
    /// Field 38.
    pub auth_code: String,
    /// Its STAN (0 for QR).
    pub stan: u32,
    /// Its batch.
    pub batch: u32,
    /// What the receipt's QR code carries: the RRN of a card transaction, the `out_trade_no` of
    /// a QR payment.
    pub reference: String,
}

impl ReceiptFacts {
    /// The facts of `entry` on terminal `terminal_id` with `parameters` (when downloaded).
    pub fn of(entry: &Entry, terminal_id: &str, parameters: Option<&Parameters>) -> ReceiptFacts {
        let qr = matches!(entry.kind, Kind::QrPay | Kind::QrShow | Kind::QrRefund);
        ReceiptFacts {
            merchant_name: parameters.map(|p| p.merchant_name.clone()).unwrap_or_default(),
            merchant_id: parameters.map(|p| p.merchant_id.clone()).unwrap_or_default(),
            terminal_id: terminal_id.to_owned(),
            operator: entry.operator.clone(),
            kind: entry.kind.as_str(),
            amount_minor: entry.amount_minor,
            currency: parameters
                .and_then(|p| p.raw["currency"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "CNY".to_owned()),
            masked_pan: entry.pan_masked.clone(),
            wallet: entry.wallet.clone(),
            created_at_ms: entry.created_at_ms,
            date_mmdd: entry.date.clone(),
            rrn_or_trade_no: if qr { entry.trade_no.clone() } else { entry.rrn.clone() },
            auth_code: entry.auth_code.clone(),
            stan: entry.stan,
            batch: entry.batch,
            reference: if qr { entry.out_trade_no.clone() } else { entry.rrn.clone() },
        }
    }
}

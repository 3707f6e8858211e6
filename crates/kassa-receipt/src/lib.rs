//! Receipts of the POS terminal (签购单): the merchant and customer copies of a card or QR
//! transaction, a settlement slip, or a balance inquiry.
//!
//! A [`Receipt`] is laid out once as a slip (lines wrapped to 32 or 48 columns, CJK characters
//! counted twice) and rendered two ways from that one layout: [`escpos`], the bytes for a thermal
//! printer (GB18030 text, the printer's own QR code, a partial cut), and [`preview`], text lines
//! for the screen with the QR code in half blocks ([`qr_lines`]). [`Printer`] sends the bytes to a
//! file or to a TCP printer on port 9100.
//!
//! A full card number never reaches paper or screen: [`PaymentMeans::card`] and
//! [`Receipt::validate`] refuse one, and the renderers re-mask whatever they are given
//! ([`mask_pan`]). Control characters in fields are replaced, so a field cannot smuggle printer
//! commands.

mod escpos;
mod layout;
mod preview;
mod printer;
mod receipt;
#[cfg(feature = "testing")]
pub mod testing;

pub use escpos::{
    escpos, escpos_text, qr_code, EscPosError, CHINESE_OFF, CHINESE_ON, ESCPOS_TEXT_BYTES_MAX, INIT, LF, PARTIAL_CUT,
};
pub use preview::{preview, qr_lines, try_qr_lines, QrError, QUIET_ZONE_MODULES};
pub use printer::{PrintError, PrintLimits, Printer, RAW_PORT};
pub use receipt::{
    is_masked_pan, mask_pan, Copy, EntryMode, KindTotal, Lang, PaymentMeans, Receipt, ReceiptError, ReceiptKind,
    SettlementSummary, Width, FIELD_CHARS_MAX, REFERENCE_BYTES_MAX, SETTLEMENT_LINES_MAX,
};

//! The ESC/POS stream: initialisation, GB18030 text, the QR commands, the cut; no full PAN and no
//! smuggled printer command, whatever the fields hold.

use kassa_receipt::{
    escpos, escpos_text, preview, Copy, EntryMode, EscPosError, Lang, PaymentMeans, CHINESE_OFF, CHINESE_ON, INIT,
    PARTIAL_CUT,
};
use proptest::prelude::*;

use crate::fixtures::{self, MASKED_PAN};

const GS_K: [u8; 3] = [0x1d, b'(', b'k'];

fn position(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|window| *window == needle).count()
}

fn gb18030(text: &str) -> Vec<u8> {
    encoding_rs::GB18030.encode(text).0.into_owned()
}

#[test]
fn the_stream_starts_with_init_and_ends_with_a_partial_cut() {
    for receipt in fixtures::all() {
        for copy in [Copy::Merchant, Copy::Customer] {
            for lang in [Lang::En, Lang::Zh] {
                let bytes = escpos(&receipt, copy, lang);
                assert!(bytes.starts_with(&INIT), "{:?}", receipt.kind);
                assert!(bytes.ends_with(&PARTIAL_CUT), "{:?}", receipt.kind);
                assert_eq!(count(&bytes, &INIT), 1);
                assert_eq!(count(&bytes, &[0x1d, b'V']), 1);
            }
        }
    }
}

#[test]
fn the_qr_code_is_model_2_level_m_with_the_exact_reference() {
    let receipt = fixtures::qr_payment();
    let bytes = escpos(&receipt, Copy::Customer, Lang::Zh);
    let reference = receipt.reference.as_bytes();
    let model = [GS_K.as_slice(), &[4, 0, 49, 65, 50, 0]].concat();
    let size = [GS_K.as_slice(), &[3, 0, 49, 67]].concat();
    let level_m = [GS_K.as_slice(), &[3, 0, 49, 69, 49]].concat();
    let stored_len = u16::try_from(reference.len() + 3).unwrap().to_le_bytes();
    let store = [GS_K.as_slice(), &stored_len, &[49, 80, 48], reference].concat();
    let print = [GS_K.as_slice(), &[3, 0, 49, 81, 48]].concat();
    let at = |needle: &[u8]| position(&bytes, needle).unwrap_or_else(|| panic!("missing {needle:02x?}"));
    let (model, size, level, store, print) = (at(&model), at(&size), at(&level_m), at(&store), at(&print));
    assert!(model < size && size < level && level < store && store < print, "commands out of order");
    // The module size follows the paper: 5 dots on 58 mm.
    assert_eq!(bytes[size + 7], 5);
    assert_eq!(count(&bytes, &[GS_K.as_slice(), &[3, 0, 49, 81, 48]].concat()), 1);
}

#[test]
fn a_receipt_without_a_reference_prints_no_qr_code() {
    let mut receipt = fixtures::card_sale();
    receipt.reference.clear();
    let bytes = escpos(&receipt, Copy::Customer, Lang::En);
    assert_eq!(position(&bytes, &GS_K), None);
}

#[test]
fn chinese_labels_are_gb18030_in_chinese_mode() {
    let receipt = fixtures::card_sale();
    let bytes = escpos(&receipt, Copy::Merchant, Lang::Zh);
    assert_eq!(&bytes[2..4], &CHINESE_ON);
    for label in ["商户名称/Merchant name", "持卡人签名/Cardholder signature", "消费/Sale", "卡萨咖啡", "￥12.34"]
    {
        assert!(position(&bytes, &gb18030(label)).is_some(), "{label} is not in GB18030");
        assert_eq!(position(&bytes, label.as_bytes()), None, "{label} went out as UTF-8");
    }
    let (text, had_errors) = encoding_rs::GB18030.decode_without_bom_handling(&bytes);
    assert!(!had_errors);
    assert!(text.contains("商户存根/Merchant copy"), "{text}");
    assert!(text.contains("本人确认以上交易"), "{text}");
    let customer = escpos(&receipt, Copy::Customer, Lang::Zh);
    let (text, _) = encoding_rs::GB18030.decode_without_bom_handling(&customer);
    assert!(text.contains("持卡人存根/Customer copy"), "{text}");
    assert!(!text.contains("持卡人签名"), "{text}");
}

#[test]
fn an_ascii_slip_leaves_chinese_mode() {
    let mut receipt = fixtures::card_sale();
    receipt.merchant_name = "Kassa Demo Coffee".into();
    let bytes = escpos(&receipt, Copy::Merchant, Lang::En);
    assert_eq!(&bytes[2..4], &CHINESE_OFF);
    assert!(bytes.iter().all(u8::is_ascii));
    assert!(position(&bytes, b"RMB 12.34").is_some());
    assert!(position(&bytes, b"Cardholder signature").is_some());
}

#[test]
fn the_masked_pan_is_printed_as_given() {
    let bytes = escpos(&fixtures::card_sale(), Copy::Customer, Lang::En);
    assert!(position(&bytes, MASKED_PAN.as_bytes()).is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A full card number put straight into the field (bypassing `PaymentMeans::card`, which
    /// refuses it) comes out masked on paper and screen, in both languages and copies.
    #[test]
    fn a_full_pan_never_reaches_paper_or_screen(pan in "[1-9][0-9]{15,18}", entry in 0..4usize) {
        prop_assert!(PaymentMeans::card(&pan, EntryMode::Chip).is_err());
        let entry = [EntryMode::Swipe, EntryMode::Chip, EntryMode::Contactless, EntryMode::Keyed][entry];
        let mut receipt = fixtures::card_sale();
        receipt.payment = PaymentMeans::Card { masked_pan: pan.clone(), entry };
        let masked = format!("{}{}{}", &pan[..6], "*".repeat(pan.len() - 10), &pan[pan.len() - 4..]);
        let hidden = &pan[..pan.len() - 4];
        for copy in [Copy::Merchant, Copy::Customer] {
            for lang in [Lang::En, Lang::Zh] {
                let bytes = escpos(&receipt, copy, lang);
                prop_assert!(position(&bytes, pan.as_bytes()).is_none());
                prop_assert!(position(&bytes, hidden.as_bytes()).is_none());
                prop_assert!(position(&bytes, masked.as_bytes()).is_some());
                let screen = preview(&receipt, copy, lang).join("\n");
                prop_assert!(!screen.contains(hidden));
                prop_assert!(screen.contains(&masked));
            }
        }
        let debug = format!("{receipt:?}");
        prop_assert!(!debug.contains(hidden));
    }

    /// Whatever a text field holds, the stream has one `ESC @` at its start and one cut at its
    /// end: control characters never pass through as printer commands.
    #[test]
    fn fields_cannot_smuggle_printer_commands(name in "\\PC{0,40}", controls in proptest::collection::vec(0u8..0x20, 0..8)) {
        let mut receipt = fixtures::card_sale();
        let mut hostile = name;
        for control in controls {
            hostile.push(char::from(control));
            hostile.push_str("@V");
        }
        receipt.merchant_name = hostile.clone();
        receipt.operator = hostile;
        for lang in [Lang::En, Lang::Zh] {
            let bytes = escpos(&receipt, Copy::Merchant, lang);
            prop_assert!(bytes.starts_with(&INIT));
            prop_assert_eq!(count(&bytes, &INIT), 1);
            prop_assert_eq!(count(&bytes, &[0x1d, b'V']), 1);
            prop_assert!(bytes.ends_with(&PARTIAL_CUT));
        }
    }
}

/// The preview's lines as paper shows them without styles: alignment padding trimmed, the
/// half-block code (and its blank quiet-zone lines) as `[QR code: DATA]`.
fn as_paper(preview: &[String], reference: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut in_code = false;
    for line in preview {
        let is_code = line.contains(['█', '▀', '▄']);
        if !line.is_empty() && line.trim().is_empty() {
            continue;
        }
        if is_code && !in_code {
            lines.push(format!("[QR code: {reference}]"));
        }
        in_code = is_code;
        if !is_code {
            lines.push(line.trim().to_owned());
        }
    }
    lines
}

#[test]
fn paper_and_screen_show_the_same_slip() {
    for receipt in fixtures::all() {
        for copy in [Copy::Merchant, Copy::Customer] {
            for lang in [Lang::En, Lang::Zh] {
                let mut paper = escpos_text(&escpos(&receipt, copy, lang)).unwrap();
                assert_eq!(paper.pop().as_deref(), Some("[cut]"));
                let paper: Vec<String> = paper.iter().map(|line| line.trim().to_owned()).collect();
                let screen = as_paper(&preview(&receipt, copy, lang), &receipt.reference);
                assert_eq!(paper, screen, "{:?} {copy:?} {lang:?}", receipt.kind);
            }
        }
    }
}

#[test]
fn the_reader_refuses_unknown_commands_and_cut_streams() {
    assert!(matches!(escpos_text(&[0x1b, b'@', 0x1b, b'Z', 1]), Err(EscPosError::UnknownCommand { offset: 2, .. })));
    assert!(matches!(escpos_text(&[0x1d, b'(', b'k', 9, 0, 49]), Err(EscPosError::Truncated { offset: 0 })));
    assert_eq!(escpos_text(b"a\nb").unwrap(), ["a", "b"]);
}

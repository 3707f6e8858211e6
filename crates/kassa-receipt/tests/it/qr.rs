//! QR codes in half blocks: read back module by module and compared with the `qrcode` crate's own
//! matrix, quiet zone included.

use kassa_receipt::{preview, qr_lines, try_qr_lines, Copy, Lang, Width, QUIET_ZONE_MODULES};
use qrcode::{Color, EcLevel, QrCode};

use crate::fixtures;

/// The module rows of half-block lines: two per line, `true` for dark.
fn modules(lines: &[String]) -> Vec<Vec<bool>> {
    let mut rows = Vec::new();
    for line in lines {
        let (top, bottom): (Vec<bool>, Vec<bool>) = line
            .chars()
            .map(|c| match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                ' ' => (false, false),
                other => panic!("unexpected character {other:?} in a QR line"),
            })
            .unzip();
        rows.push(top);
        rows.push(bottom);
    }
    rows
}

/// `rows` without the light rows and columns around the code.
fn trimmed(rows: &[Vec<bool>]) -> Vec<Vec<bool>> {
    let dark_rows: Vec<usize> = (0..rows.len()).filter(|&y| rows[y].contains(&true)).collect();
    let dark_columns: Vec<usize> = (0..rows.iter().map(Vec::len).max().unwrap_or(0))
        .filter(|&x| rows.iter().any(|row| row.get(x) == Some(&true)))
        .collect();
    let (Some(&top), Some(&bottom)) = (dark_rows.first(), dark_rows.last()) else { return Vec::new() };
    let (Some(&left), Some(&right)) = (dark_columns.first(), dark_columns.last()) else { return Vec::new() };
    rows[top..=bottom].iter().map(|row| (left..=right).map(|x| row.get(x) == Some(&true)).collect()).collect()
}

/// The `qrcode` crate's own module matrix of `text` at level M.
fn matrix(text: &str) -> Vec<Vec<bool>> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).unwrap();
    code.to_colors().chunks(code.width()).map(|row| row.iter().map(|c| *c == Color::Dark).collect()).collect()
}

#[test]
fn half_blocks_are_the_qrcode_crates_modules_with_a_quiet_zone() {
    for text in ["612345678901", "KQ20261206140509000124", "https://pay.example/qr/v1/7f3a9c2e1b", "卡萨 ✓"] {
        let lines = qr_lines(text);
        let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).unwrap();
        let size = code.width();
        let side = size + 2 * QUIET_ZONE_MODULES;
        assert_eq!(lines.len(), side.div_ceil(2), "{text}");
        let mut rows = modules(&lines);
        if rows.len() > side {
            assert!(rows.pop().is_some_and(|row| row.iter().all(|dark| !dark)), "the padding row is dark");
        }
        assert_eq!(rows.len(), side);
        let expected = code.to_colors();
        for (y, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), side, "{text}: row {y}");
            for (x, &dark) in row.iter().enumerate() {
                let inside = (QUIET_ZONE_MODULES..QUIET_ZONE_MODULES + size).contains(&x)
                    && (QUIET_ZONE_MODULES..QUIET_ZONE_MODULES + size).contains(&y);
                let want =
                    inside && expected[(y - QUIET_ZONE_MODULES) * size + (x - QUIET_ZONE_MODULES)] == Color::Dark;
                assert_eq!(dark, want, "{text}: module ({x}, {y})");
            }
        }
    }
}

#[test]
fn the_preview_qr_code_is_the_reference_on_both_papers() {
    for width in [Width::Narrow58mm, Width::Wide80mm] {
        for mut receipt in [fixtures::card_sale(), fixtures::qr_payment()] {
            receipt.width = width;
            let lines = preview(&receipt, Copy::Customer, Lang::Zh);
            // The code's lines, from the first with a module to the last; at least one light
            // module around it (the quiet zone) on every side.
            let first = lines.iter().position(|line| line.contains(['█', '▀', '▄'])).expect("no QR code");
            let last = lines.iter().rposition(|line| line.contains(['█', '▀', '▄'])).expect("no QR code");
            let rows = modules(&lines[first..=last]);
            let code = matrix(&receipt.reference);
            assert_eq!(trimmed(&rows), code, "{:?} on {width:?}", receipt.kind);
            let left = rows.iter().filter_map(|row| row.iter().position(|&dark| dark)).min().unwrap();
            assert!(left >= 1 && left + code.len() < width.columns(), "no quiet zone on {width:?}");
        }
    }
}

#[test]
fn a_text_too_long_for_any_qr_code_draws_nothing() {
    let text = "x".repeat(4000);
    assert!(try_qr_lines(&text).is_err());
    assert!(qr_lines(&text).is_empty());
}

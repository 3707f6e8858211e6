//! The slip as text lines for the screen, and QR codes drawn with half blocks.
//!
//! One text line holds two rows of QR modules: `█` both dark, `▀` the upper, `▄` the lower, a
//! space neither. Terminal cells are about twice as tall as wide, so modules come out square.
//! Dark modules are the glyphs: draw the lines dark on light (black on white), as on paper.

use qrcode::{Color, EcLevel, QrCode};
use unicode_width::UnicodeWidthStr;

use crate::layout::{slip, Align, Line, Slip};
use crate::receipt::{Copy, Lang, Receipt};

/// The quiet zone of [`qr_lines`], in modules: the 4 the QR standard asks for.
pub const QUIET_ZONE_MODULES: usize = 4;
/// The smallest quiet zone the preview shrinks to on narrow paper before it leaves the code out.
const PREVIEW_QUIET_ZONE_MIN: usize = 1;

/// Why a QR code could not be drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    /// The text does not fit in the largest QR code (version 40 holds 2331 bytes at level M).
    #[error("the text is too long for a QR code")]
    TooLong,
}

/// A QR code of `text` (error correction M) as half-block lines with a quiet zone of 4 modules,
/// for the screen. Empty when the text does not fit in a QR code (see [`try_qr_lines`]).
pub fn qr_lines(text: &str) -> Vec<String> {
    try_qr_lines(text).unwrap_or_default()
}

/// [`qr_lines`], saying why when the text does not fit in a QR code.
pub fn try_qr_lines(text: &str) -> Result<Vec<String>, QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|_| QrError::TooLong)?;
    Ok(half_blocks(&code, QUIET_ZONE_MODULES))
}

fn half_blocks(code: &QrCode, quiet: usize) -> Vec<String> {
    let modules = code.width();
    let colors = code.to_colors();
    let side = modules + 2 * quiet;
    let dark = |x: usize, y: usize| -> bool {
        if x < quiet || y < quiet || x >= quiet + modules || y >= quiet + modules {
            return false;
        }
        colors.get((y - quiet) * modules + (x - quiet)) == Some(&Color::Dark)
    };
    (0..side.div_ceil(2))
        .map(|row| {
            (0..side)
                .map(|x| match (dark(x, 2 * row), dark(x, 2 * row + 1)) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                })
                .collect()
        })
        .collect()
}

/// The slip as screen lines, no wider than the paper's columns (CJK counted twice). Text lines
/// carry no trailing spaces; QR lines keep theirs (the quiet zone). On 58 mm paper the QR code's
/// quiet zone shrinks to fit; a code that still does not fit is replaced by a note.
pub fn preview(receipt: &Receipt, copy: Copy, lang: Lang) -> Vec<String> {
    render(&slip(receipt, copy, lang), lang)
}

fn render(slip: &Slip, lang: Lang) -> Vec<String> {
    let columns = slip.columns;
    let mut lines = Vec::with_capacity(slip.lines.len() + 20);
    for line in &slip.lines {
        match line {
            Line::Text { text, align, .. } => {
                let pad = match align {
                    Align::Left => 0,
                    Align::Center => columns.saturating_sub(text.width()) / 2,
                };
                lines.push(format!("{}{text}", " ".repeat(pad)).trim_end().to_owned());
            }
            Line::Rule => lines.push("-".repeat(columns)),
            Line::Blank => lines.push(String::new()),
            Line::Qr(data) => match fitted_qr(data, columns) {
                Some(qr) => lines.extend(qr),
                None => lines.push(match lang {
                    Lang::Zh => "[二维码见纸质凭证]".to_owned(),
                    Lang::En => "[QR code on paper]".to_owned(),
                }),
            },
        }
    }
    lines
}

/// The QR code with the largest quiet zone (up to the standard's 4 modules) that fits in
/// `columns`, centred; `None` when even the smallest does not fit.
fn fitted_qr(data: &str, columns: usize) -> Option<Vec<String>> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).ok()?;
    let quiet =
        (PREVIEW_QUIET_ZONE_MIN..=QUIET_ZONE_MODULES).rev().find(|quiet| code.width() + 2 * quiet <= columns)?;
    let pad = " ".repeat((columns - code.width() - 2 * quiet) / 2);
    Some(half_blocks(&code, quiet).into_iter().map(|line| format!("{pad}{line}")).collect())
}

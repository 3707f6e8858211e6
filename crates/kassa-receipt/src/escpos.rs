//! The slip as ESC/POS commands, the language of thermal receipt printers (Epson's, and the
//! Chinese printers that copy it: Xprinter, GPrinter, Sunmi, …).
//!
//! Text is encoded in GB18030 with the printer in Chinese character mode (`FS &`), which leaves
//! ASCII as it is; a slip without any non-ASCII character cancels Chinese mode (`FS .`) instead,
//! so it also prints on printers without Chinese fonts. The QR code is the printer's own (`GS ( k`,
//! model 2, error correction M), so it is sharp at any module size.

use crate::layout::{slip, Align, Line, Slip, Style};
use crate::receipt::{Copy, Lang, Receipt};

/// `ESC @`: initialise the printer (clears styles, alignment and the QR buffer).
pub const INIT: [u8; 2] = [0x1b, b'@'];
/// `FS &`: Chinese character mode; bytes 0x81–0xFE start a GB18030/GBK character.
pub const CHINESE_ON: [u8; 2] = [0x1c, b'&'];
/// `FS .`: cancel Chinese character mode (single-byte code page).
pub const CHINESE_OFF: [u8; 2] = [0x1c, b'.'];
/// `LF`: print the line and feed one.
pub const LF: u8 = 0x0a;
/// `GS V 66 0`: feed to the cutter and cut, leaving one point uncut (a partial cut).
pub const PARTIAL_CUT: [u8; 4] = [0x1d, b'V', 66, 0];

/// `ESC a n`: alignment (0 left, 1 centre).
fn align(bytes: &mut Vec<u8>, align: Align) {
    let n = match align {
        Align::Left => 0,
        Align::Center => 1,
    };
    bytes.extend_from_slice(&[0x1b, b'a', n]);
}

/// `ESC E n` (emphasis), `GS ! n` (character size: 0x01 double height) and `FS ! n` (the same
/// for Chinese characters: 0x08 double height).
fn style(bytes: &mut Vec<u8>, style: Style) {
    let (bold, size, chinese_size) = match style {
        Style::Normal => (0, 0x00, 0x00),
        Style::Bold => (1, 0x00, 0x00),
        Style::Large => (1, 0x01, 0x08),
    };
    bytes.extend_from_slice(&[0x1b, b'E', bold, 0x1d, b'!', size, 0x1c, b'!', chinese_size]);
}

/// `GS ( k`: a QR code of `data` (at most 7089 bytes, far above what a slip passes) with modules of
/// `module_dots` dots: select model 2, set the module size, error correction M, store the data,
/// print it.
pub fn qr_code(data: &[u8], module_dots: u8) -> Vec<u8> {
    const GS_K: [u8; 3] = [0x1d, b'(', b'k'];
    let mut bytes = Vec::with_capacity(data.len() + 40);
    // fn 165: model 2.
    bytes.extend_from_slice(&GS_K);
    bytes.extend_from_slice(&[4, 0, 49, 65, 50, 0]);
    // fn 167: module size in dots (1–16).
    bytes.extend_from_slice(&GS_K);
    bytes.extend_from_slice(&[3, 0, 49, 67, module_dots.clamp(1, 16)]);
    // fn 169: error correction level M (48 L, 49 M, 50 Q, 51 H).
    bytes.extend_from_slice(&GS_K);
    bytes.extend_from_slice(&[3, 0, 49, 69, 49]);
    // fn 180: store the data; pL pH count the bytes after them (cn, fn, m and the data).
    let stored = data.len().saturating_add(3);
    let [low, high] = u16::try_from(stored).unwrap_or(u16::MAX).to_le_bytes();
    bytes.extend_from_slice(&GS_K);
    bytes.extend_from_slice(&[low, high, 49, 80, 48]);
    bytes.extend_from_slice(&data[..usize::from(u16::MAX - 3).min(data.len())]);
    // fn 181: print the stored symbol.
    bytes.extend_from_slice(&GS_K);
    bytes.extend_from_slice(&[3, 0, 49, 81, 48]);
    bytes
}

/// The slip as ESC/POS bytes: `ESC @`, the text in GB18030, the QR code of the reference, a
/// partial cut at the end.
pub fn escpos(receipt: &Receipt, copy: Copy, lang: Lang) -> Vec<u8> {
    render(&slip(receipt, copy, lang), receipt.width.qr_module_dots())
}

fn render(slip: &Slip, module_dots: u8) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(2048);
    bytes.extend_from_slice(&INIT);
    let chinese = slip.lines.iter().any(|line| matches!(line, Line::Text { text, .. } if !text.is_ascii()));
    bytes.extend_from_slice(if chinese { &CHINESE_ON } else { &CHINESE_OFF });
    for line in &slip.lines {
        match line {
            Line::Text { text, align: line_align, style: line_style } => {
                align(&mut bytes, *line_align);
                style(&mut bytes, *line_style);
                let (encoded, _, _) = encoding_rs::GB18030.encode(text);
                bytes.extend_from_slice(&encoded);
                bytes.push(LF);
            }
            Line::Rule => {
                align(&mut bytes, Align::Left);
                style(&mut bytes, Style::Normal);
                bytes.extend(std::iter::repeat_n(b'-', slip.columns));
                bytes.push(LF);
            }
            Line::Blank => bytes.push(LF),
            Line::Qr(data) => {
                align(&mut bytes, Align::Center);
                bytes.extend_from_slice(&qr_code(data.as_bytes(), module_dots));
                bytes.push(LF);
            }
        }
    }
    align(&mut bytes, Align::Left);
    style(&mut bytes, Style::Normal);
    bytes.extend_from_slice(&PARTIAL_CUT);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_code_commands_carry_the_data_length() {
        let bytes = qr_code(b"123456789012", 5);
        let store = [0x1d, b'(', b'k', 15, 0, 49, 80, 48];
        let at = bytes.windows(store.len()).position(|w| w == store);
        assert_eq!(at.map(|at| &bytes[at + store.len()..at + store.len() + 12]), Some(&b"123456789012"[..]));
        assert!(bytes.ends_with(&[0x1d, b'(', b'k', 3, 0, 49, 81, 48]));
        let long = vec![b'A'; 300];
        let bytes = qr_code(&long, 5);
        assert!(bytes.windows(8).any(|w| w == [0x1d, b'(', b'k', 0x2f, 0x01, 49, 80, 48]));
    }
}

/// Why [`escpos_text`] could not read a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscPosError {
    /// A command this reader does not know (it knows the ones [`escpos`] writes).
    #[error("unknown ESC/POS command {command:02x?} at byte {offset}")]
    UnknownCommand {
        /// Where the command starts.
        offset: usize,
        /// Its first bytes.
        command: Vec<u8>,
    },
    /// The stream ends inside a command.
    #[error("the stream ends inside the command at byte {offset}")]
    Truncated {
        /// Where the command starts.
        offset: usize,
    },
}

/// The longest stream [`escpos_text`] reads.
pub const ESCPOS_TEXT_BYTES_MAX: usize = 1 << 20;

/// Reads an ESC/POS stream back as text lines, the way the paper shows them without styles:
/// GB18030 decoded, one line per `LF`, a QR code as `[QR code: DATA]`, a cut as `[cut]`. For
/// tests and for looking at a captured print file; it knows the commands [`escpos`] writes and
/// refuses others. Streams beyond [`ESCPOS_TEXT_BYTES_MAX`] are read up to that size.
pub fn escpos_text(bytes: &[u8]) -> Result<Vec<String>, EscPosError> {
    let bytes = &bytes[..bytes.len().min(ESCPOS_TEXT_BYTES_MAX)];
    let mut lines = Vec::new();
    let mut text = Vec::new();
    let mut qr_data: Vec<u8> = Vec::new();
    let mut at = 0;
    let flush = |text: &mut Vec<u8>, lines: &mut Vec<String>| {
        let (decoded, _) = encoding_rs::GB18030.decode_without_bom_handling(text);
        lines.push(decoded.into_owned());
        text.clear();
    };
    while at < bytes.len() {
        let need = |len: usize| bytes.get(at..at + len).ok_or(EscPosError::Truncated { offset: at });
        let unknown =
            || EscPosError::UnknownCommand { offset: at, command: bytes[at..(at + 3).min(bytes.len())].to_vec() };
        match bytes[at] {
            LF => {
                flush(&mut text, &mut lines);
                at += 1;
            }
            0x1b => match need(2)?[1] {
                b'@' => at += 2,
                b'a' | b'E' | b'd' | b't' => {
                    if need(3)?[1] == b'd' && !text.is_empty() {
                        flush(&mut text, &mut lines);
                    }
                    at += 3;
                }
                _ => return Err(unknown()),
            },
            0x1c => match need(2)?[1] {
                b'&' | b'.' => at += 2,
                b'!' => at += need(3).map(|_| 3)?,
                _ => return Err(unknown()),
            },
            0x1d => match need(2)?[1] {
                b'!' => at += need(3).map(|_| 3)?,
                b'V' => {
                    let command = need(3)?;
                    at += if command[2] == 65 || command[2] == 66 { need(4).map(|_| 4)? } else { 3 };
                    if !text.is_empty() {
                        flush(&mut text, &mut lines);
                    }
                    lines.push("[cut]".to_owned());
                }
                b'(' => {
                    let head = need(5)?;
                    if head[2] != b'k' {
                        return Err(unknown());
                    }
                    let len = usize::from(u16::from_le_bytes([head[3], head[4]]));
                    let body = bytes.get(at + 5..at + 5 + len).ok_or(EscPosError::Truncated { offset: at })?;
                    match body {
                        [49, 80, 48, data @ ..] => qr_data = data.to_vec(),
                        [49, 81, 48] => text
                            .extend_from_slice(format!("[QR code: {}]", String::from_utf8_lossy(&qr_data)).as_bytes()),
                        _ => {}
                    }
                    at += 5 + len;
                }
                _ => return Err(unknown()),
            },
            byte if byte < 0x20 || byte == 0x7f => return Err(unknown()),
            byte => {
                text.push(byte);
                at += 1;
            }
        }
    }
    if !text.is_empty() {
        flush(&mut text, &mut lines);
    }
    Ok(lines)
}

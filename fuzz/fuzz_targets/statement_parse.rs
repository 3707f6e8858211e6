//! The statement parsers (the Alipay-style bill, the WeChat-style bill, the card issuer's
//! clearing file): reading arbitrary bytes never panics, every line read keeps what the reader
//! promises, and the first error ends the statement. The first byte picks the format and whether
//! the right header row is put first (so the rows' parsers are reached, not only the header's).
#![no_main]

use kassa_recon::statement::{StatementFormat, StatementReader, RECORD_BYTES_MAX};
use libfuzzer_sys::fuzz_target;

/// Records read at most per input (the reader streams; a bound keeps each run short).
const LINES_MAX: usize = 10_000;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let format = match selector % 3 {
        0 => StatementFormat::Alipay,
        1 => StatementFormat::Wechat,
        _ => StatementFormat::IssuerClearing,
    };
    let mut input = Vec::with_capacity(rest.len() + 512);
    if selector & 0x80 == 0 {
        input.extend_from_slice(format.header().as_bytes());
        input.extend_from_slice(if selector & 0x40 == 0 { b"\n" } else { b"\r\n" });
    }
    input.extend_from_slice(rest);
    let mut reader = StatementReader::new(std::io::Cursor::new(input), format);
    let mut last_line = 1;
    for _ in 0..LINES_MAX {
        match reader.next() {
            None => break,
            Some(Ok(line)) => {
                assert!(line.line_no > last_line, "lines come in order, after the header");
                last_line = line.line_no;
                assert!(line.line_no <= reader.lines_read());
                // The bound counts the line break; a last record without one may use its byte.
                assert!(line.raw.len() <= RECORD_BYTES_MAX + 1, "a record is bounded");
                assert!(line.amount.minor() > 0, "an amount read is positive: {line:?}");
                assert!(line.fee.minor() >= 0, "a fee read is not negative: {line:?}");
                assert!(!line.reference.is_empty(), "a line names its reference");
            }
            Some(Err(error)) => {
                assert!(error.line() >= 1);
                assert!(reader.next().is_none(), "the first error ends the statement");
                break;
            }
        }
    }
});

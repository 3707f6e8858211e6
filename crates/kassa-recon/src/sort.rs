//! Statement lines in reference order, in bounded memory: an external merge sort. Lines are
//! gathered [`SORT_CHUNK_LINES`] at a time, each chunk sorted and (when there is more than one)
//! written to a temporary file, then the sorted runs are merged. Memory holds one chunk while
//! sorting and one line per run while merging, whatever the statement's size.
//!
//! Order: trades before refunds; trades by reference, refunds by refund reference (the keys
//! Kassa's records are read in); then by line.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, Write};

use kassa_domain::{Currency, Money};

use crate::statement::{LineKind, StatementError, StatementLine, RECORD_BYTES_MAX};

/// Lines sorted in memory before a run is written out (about 20 MB of lines).
pub const SORT_CHUNK_LINES: usize = 50_000;

/// The most sorted runs one merge reads at once (a statement of up to 50 million lines).
pub const SORT_RUNS_MAX: usize = 1_000;

/// Why sorting failed.
#[derive(Debug, thiserror::Error)]
pub enum SortError {
    /// The statement was refused.
    #[error(transparent)]
    Statement(#[from] StatementError),
    /// A temporary file could not be written or read back.
    #[error("sorting the statement: {0}")]
    Spill(String),
    /// More runs than [`SORT_RUNS_MAX`].
    #[error("statement too large: more than {} lines", SORT_RUNS_MAX * SORT_CHUNK_LINES)]
    TooLarge,
}

fn spill_error(error: std::io::Error) -> SortError {
    SortError::Spill(error.to_string())
}

type Key = (u8, String, u64);

/// Trades and card requests (approvals and reversals, interleaved by reference) first, then
/// refunds.
fn phase(kind: LineKind) -> u8 {
    match kind {
        LineKind::Trade | LineKind::Reversal => 0,
        LineKind::Refund => 1,
    }
}

/// The reference a line is merged on: a trade's reference, a refund's refund reference.
pub fn merge_reference(line: &StatementLine) -> &str {
    match (line.kind, &line.refund_reference) {
        (LineKind::Refund, Some(refund_reference)) => refund_reference,
        _ => &line.reference,
    }
}

fn key(line: &StatementLine) -> Key {
    (phase(line.kind), merge_reference(line).to_owned(), line.line_no)
}

fn compare(a: &StatementLine, b: &StatementLine) -> std::cmp::Ordering {
    (phase(a.kind), merge_reference(a), a.line_no).cmp(&(phase(b.kind), merge_reference(b), b.line_no))
}

/// The statement's lines in order, with how many were read.
pub struct SortedLines {
    /// Lines read from the statement.
    pub lines: u64,
    source: Source,
}

enum Source {
    Memory(std::vec::IntoIter<StatementLine>),
    Runs {
        readers: Vec<BufReader<std::fs::File>>,
        heap: BinaryHeap<Reverse<(Key, usize)>>,
        heads: Vec<Option<StatementLine>>,
    },
}

impl std::fmt::Debug for SortedLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortedLines").field("lines", &self.lines).finish_non_exhaustive()
    }
}

/// Reads every line of `lines` (refusing the statement at its first bad line) and answers them
/// in order.
pub fn sort_lines(
    lines: impl Iterator<Item = Result<StatementLine, StatementError>>,
    chunk_lines: usize,
) -> Result<SortedLines, SortError> {
    let chunk_lines = chunk_lines.max(1);
    let mut chunk: Vec<StatementLine> = Vec::with_capacity(chunk_lines.min(SORT_CHUNK_LINES));
    let mut runs: Vec<std::fs::File> = Vec::new();
    let mut count = 0u64;
    for line in lines {
        chunk.push(line?);
        count += 1;
        if chunk.len() == chunk_lines {
            if runs.len() == SORT_RUNS_MAX {
                return Err(SortError::TooLarge);
            }
            runs.push(spill(&mut chunk)?);
        }
    }
    if runs.is_empty() {
        chunk.sort_unstable_by(compare);
        return Ok(SortedLines { lines: count, source: Source::Memory(chunk.into_iter()) });
    }
    if !chunk.is_empty() {
        runs.push(spill(&mut chunk)?);
    }
    let mut readers: Vec<BufReader<std::fs::File>> = runs.into_iter().map(BufReader::new).collect();
    let mut heap = BinaryHeap::with_capacity(readers.len());
    let mut heads = Vec::with_capacity(readers.len());
    for (index, reader) in readers.iter_mut().enumerate() {
        let head = read_line(reader)?;
        if let Some(line) = &head {
            heap.push(Reverse((key(line), index)));
        }
        heads.push(head);
    }
    Ok(SortedLines { lines: count, source: Source::Runs { readers, heap, heads } })
}

impl Iterator for SortedLines {
    type Item = Result<StatementLine, SortError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.source {
            Source::Memory(lines) => lines.next().map(Ok),
            Source::Runs { readers, heap, heads } => {
                let Reverse((_, index)) = heap.pop()?;
                let line = heads.get_mut(index)?.take()?;
                let next = match readers.get_mut(index).map(read_line) {
                    Some(Ok(next)) => next,
                    Some(Err(error)) => return Some(Err(error)),
                    None => None,
                };
                if let Some(next_line) = &next {
                    heap.push(Reverse((key(next_line), index)));
                }
                heads[index] = next;
                Some(Ok(line))
            }
        }
    }
}

/// Sorts the chunk and writes it to an anonymous temporary file (deleted when closed).
fn spill(chunk: &mut Vec<StatementLine>) -> Result<std::fs::File, SortError> {
    chunk.sort_unstable_by(compare);
    let file = tempfile::tempfile().map_err(spill_error)?;
    let mut writer = BufWriter::new(file);
    for line in chunk.drain(..) {
        write_line(&mut writer, &line).map_err(spill_error)?;
    }
    let mut file = writer.into_inner().map_err(|e| spill_error(e.into_error()))?;
    file.rewind().map_err(spill_error)?;
    Ok(file)
}

fn write_text(writer: &mut impl Write, text: &str) -> std::io::Result<()> {
    let length = u32::try_from(text.len()).map_err(|_| std::io::Error::other("field too long"))?;
    writer.write_all(&length.to_le_bytes())?;
    writer.write_all(text.as_bytes())
}

fn write_line(writer: &mut impl Write, line: &StatementLine) -> std::io::Result<()> {
    writer.write_all(&line.line_no.to_le_bytes())?;
    writer.write_all(&[match line.kind {
        LineKind::Trade => 0,
        LineKind::Refund => 1,
        LineKind::Reversal => 2,
    }])?;
    write_text(writer, &line.reference)?;
    write_text(writer, &line.channel_trade_no)?;
    match &line.refund_reference {
        Some(reference) => {
            writer.write_all(&[1])?;
            write_text(writer, reference)?;
        }
        None => writer.write_all(&[0])?,
    }
    write_text(writer, line.amount.currency().code())?;
    writer.write_all(&line.amount.minor().to_le_bytes())?;
    writer.write_all(&line.fee.minor().to_le_bytes())?;
    write_text(writer, &line.at)?;
    write_text(writer, &line.raw)
}

fn corrupt() -> SortError {
    SortError::Spill("a temporary run reads back damaged".into())
}

fn read_exact<const N: usize>(reader: &mut impl Read) -> Result<[u8; N], SortError> {
    let mut bytes = [0u8; N];
    reader.read_exact(&mut bytes).map_err(spill_error)?;
    Ok(bytes)
}

fn read_text(reader: &mut impl Read) -> Result<String, SortError> {
    let length = usize::try_from(u32::from_le_bytes(read_exact::<4>(reader)?)).map_err(|_| corrupt())?;
    if length > RECORD_BYTES_MAX {
        return Err(corrupt());
    }
    let mut bytes = vec![0u8; length];
    reader.read_exact(&mut bytes).map_err(spill_error)?;
    String::from_utf8(bytes).map_err(|_| corrupt())
}

/// The next line of a run, `None` at its end.
fn read_line(reader: &mut BufReader<std::fs::File>) -> Result<Option<StatementLine>, SortError> {
    if reader.fill_buf().map_err(spill_error)?.is_empty() {
        return Ok(None);
    }
    let line_no = u64::from_le_bytes(read_exact::<8>(reader)?);
    let kind = match read_exact::<1>(reader)? {
        [0] => LineKind::Trade,
        [1] => LineKind::Refund,
        [2] => LineKind::Reversal,
        _ => return Err(corrupt()),
    };
    let reference = read_text(reader)?;
    let channel_trade_no = read_text(reader)?;
    let refund_reference = match read_exact::<1>(reader)? {
        [0] => None,
        [1] => Some(read_text(reader)?),
        _ => return Err(corrupt()),
    };
    let currency = Currency::from_code(&read_text(reader)?).map_err(|_| corrupt())?;
    let amount = Money::from_minor(i64::from_le_bytes(read_exact::<8>(reader)?), currency);
    let fee = Money::from_minor(i64::from_le_bytes(read_exact::<8>(reader)?), currency);
    let at = read_text(reader)?;
    let raw = read_text(reader)?;
    Ok(Some(StatementLine { line_no, kind, reference, channel_trade_no, refund_reference, amount, fee, at, raw }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(line_no: u64, kind: LineKind, reference: &str, refund: Option<&str>) -> StatementLine {
        let cny = Currency::from_code("CNY").unwrap();
        StatementLine {
            line_no,
            kind,
            reference: reference.into(),
            channel_trade_no: format!("T{line_no}"),
            refund_reference: refund.map(Into::into),
            amount: Money::from_minor(100 + line_no as i64, cny),
            fee: Money::from_minor(line_no as i64, cny),
            at: "2026-12-06 10:00:00".into(),
            raw: format!("raw, \"{line_no}\"\nsecond line"),
        }
    }

    fn lines(count: u64) -> Vec<StatementLine> {
        // A scrambled order: references by a multiplicative permutation, refunds sprinkled in.
        (0..count)
            .map(|n| {
                let reference = format!("K{:08}", (n * 7919) % count);
                if n % 5 == 0 {
                    line(n + 2, LineKind::Refund, &reference, Some(&format!("R{n}")))
                } else {
                    line(n + 2, LineKind::Trade, &reference, None)
                }
            })
            .collect()
    }

    fn sorted(input: Vec<StatementLine>, chunk: usize) -> Vec<StatementLine> {
        sort_lines(input.into_iter().map(Ok), chunk).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn spilled_runs_merge_into_the_same_order_as_an_in_memory_sort() {
        let input = lines(1_000);
        let mut expected = input.clone();
        expected.sort_by(compare);
        assert_eq!(sorted(input.clone(), SORT_CHUNK_LINES), expected);
        // 1,000 lines in runs of 64: 16 temporary files, every field read back as written.
        assert_eq!(sorted(input, 64), expected);
    }

    #[test]
    fn trades_come_before_refunds_and_the_count_is_kept() {
        let sorted_lines = sort_lines(lines(20).into_iter().map(Ok), 3).unwrap();
        assert_eq!(sorted_lines.lines, 20);
        let kinds: Vec<LineKind> = sorted_lines.map(|l| l.unwrap().kind).collect();
        assert_eq!(kinds.iter().filter(|k| **k == LineKind::Refund).count(), 4);
        assert!(kinds.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_bad_line_refuses_the_whole_statement() {
        let mut input: Vec<Result<StatementLine, StatementError>> = lines(10).into_iter().map(Ok).collect();
        input.insert(4, Err(StatementError::Malformed { line: 6, reason: "bad".into() }));
        match sort_lines(input.into_iter(), 2) {
            Err(SortError::Statement(error)) => assert_eq!(error.line(), 6),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

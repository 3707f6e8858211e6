//! Statement lines in merge order, in bounded memory: an external merge sort of compact records.
//!
//! Each line is parsed once. What the merge needs of it (its kind, merge key, line number and
//! amount) is kept as a fixed-size [`SortedLine`], with no allocation per line; the record's text
//! goes to a [`Spool`] (a temporary file) and is read back only for a difference's evidence.
//! Lines are gathered [`SORT_CHUNK_LINES`] at a time, each chunk sorted and (when there is more
//! than one) written to a temporary file by a second thread while the next chunk is read, then
//! the sorted runs are merged. Memory holds at most three chunks while sorting and one line per
//! run while merging, whatever the statement's size.
//!
//! Order: trades (and card reversals) before refunds; trades by reference, refunds by refund
//! reference (the keys Kassa's records are read in); then by line.

use std::cmp::Ordering;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use kassa_domain::{Currency, Money};

use crate::statement::{LineKind, StatementError, StatementLine, RECORD_BYTES_MAX};

/// Lines sorted in memory before a run is written out (about 10 MB of [`SortedLine`]s; one chunk
/// is read while the one before is sorted, and one may wait between them: about 30 MB).
pub const SORT_CHUNK_LINES: usize = 100_000;

/// The most sorted runs one merge reads at once (a statement of up to 100 million lines).
pub const SORT_RUNS_MAX: usize = 1_000;

/// The longest merge key (a reference or a refund reference: at most 64 printable ASCII
/// characters, as the statement reader checks), in bytes.
pub const KEY_BYTES_MAX: usize = 64;

/// Bytes buffered for each temporary file (the spool and every sorted run).
const FILE_BUFFER_BYTES: usize = 64 * 1024;

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

fn corrupt() -> SortError {
    SortError::Spill("a temporary file reads back damaged".into())
}

/// A merge key held inline (no allocation): a reference of at most [`KEY_BYTES_MAX`] bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MergeKey {
    len: u8,
    bytes: [u8; KEY_BYTES_MAX],
}

impl MergeKey {
    /// The key of `text`; `None` when it is longer than [`KEY_BYTES_MAX`].
    pub fn new(text: &str) -> Option<MergeKey> {
        MergeKey::from_bytes(text.as_bytes())
    }

    fn from_bytes(text: &[u8]) -> Option<MergeKey> {
        let len = u8::try_from(text.len()).ok().filter(|&len| usize::from(len) <= KEY_BYTES_MAX)?;
        let mut bytes = [0u8; KEY_BYTES_MAX];
        bytes.get_mut(..text.len())?.copy_from_slice(text);
        Some(MergeKey { len, bytes })
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The key as text (built from text, so always UTF-8).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl std::fmt::Debug for MergeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Where a line's record text lies in the [`Spool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawSpan {
    offset: u64,
    len: u32,
}

/// A statement line as the merge sees it: fixed-size, copied rather than allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortedLine {
    /// The line the record starts on.
    pub line_no: u64,
    /// Trade, refund or reversal.
    pub kind: LineKind,
    /// The reference it is merged on ([`merge_reference`]).
    pub key: MergeKey,
    /// The line's amount.
    pub amount: Money,
    /// Its record's text in the spool.
    pub raw: RawSpan,
}

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

fn compare(a: &SortedLine, b: &SortedLine) -> Ordering {
    phase(a.kind)
        .cmp(&phase(b.kind))
        .then_with(|| a.key.as_bytes().cmp(b.key.as_bytes()))
        .then_with(|| a.line_no.cmp(&b.line_no))
}

/// The statement's record texts, written once while it is read, read back by span (a
/// difference's evidence). An anonymous temporary file, deleted when dropped.
pub struct Spool {
    writer: Option<BufWriter<std::fs::File>>,
    reader: Option<std::fs::File>,
    written: u64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("written", &self.written).finish_non_exhaustive()
    }
}

impl Spool {
    fn new() -> Result<Spool, SortError> {
        let file = tempfile::tempfile().map_err(spill_error)?;
        Ok(Spool { writer: Some(BufWriter::with_capacity(FILE_BUFFER_BYTES, file)), reader: None, written: 0 })
    }

    fn push(&mut self, text: &str) -> Result<RawSpan, SortError> {
        let writer = self.writer.as_mut().ok_or_else(corrupt)?;
        let len = u32::try_from(text.len()).map_err(|_| corrupt())?;
        writer.write_all(text.as_bytes()).map_err(spill_error)?;
        let span = RawSpan { offset: self.written, len };
        self.written += u64::from(len);
        Ok(span)
    }

    /// Ends writing: the spool is read from now on.
    fn finish(&mut self) -> Result<(), SortError> {
        if let Some(writer) = self.writer.take() {
            self.reader = Some(writer.into_inner().map_err(|e| spill_error(e.into_error()))?);
        }
        Ok(())
    }

    /// The record text of `span`.
    pub fn read(&mut self, span: RawSpan) -> Result<String, SortError> {
        self.finish()?;
        let file = self.reader.as_mut().ok_or_else(corrupt)?;
        let len = usize::try_from(span.len).map_err(|_| corrupt())?;
        if len > RECORD_BYTES_MAX || span.offset.saturating_add(u64::from(span.len)) > self.written {
            return Err(corrupt());
        }
        file.seek(SeekFrom::Start(span.offset)).map_err(spill_error)?;
        let mut bytes = vec![0u8; len];
        file.read_exact(&mut bytes).map_err(spill_error)?;
        String::from_utf8(bytes).map_err(|_| corrupt())
    }
}

/// The statement's lines in order, with how many were read, and the spool of their texts.
pub struct SortedLines {
    /// Lines read from the statement.
    pub lines: u64,
    spool: Option<Spool>,
    source: Source,
}

impl SortedLines {
    /// The spool of the lines' record texts (once: the merge takes it).
    pub fn take_spool(&mut self) -> Option<Spool> {
        self.spool.take()
    }
}

enum Source {
    Memory(std::vec::IntoIter<SortedLine>),
    Runs(RunMerge),
}

impl std::fmt::Debug for SortedLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortedLines").field("lines", &self.lines).finish_non_exhaustive()
    }
}

/// Reads every line of `lines` (refusing the statement at its first bad line) and answers them
/// in order. A full chunk is sorted and written out by a thread of its own while the next one is
/// read (at most one chunk waits for it), so parsing and sorting overlap.
pub fn sort_lines(
    lines: impl Iterator<Item = Result<StatementLine, StatementError>>,
    chunk_lines: usize,
) -> Result<SortedLines, SortError> {
    let chunk_lines = chunk_lines.max(1);
    let mut spool = Spool::new()?;
    let mut count = 0u64;
    let (chunks, sorter_chunks) = std::sync::mpsc::sync_channel::<Vec<SortedLine>>(1);
    let (read, runs) = std::thread::scope(|scope| {
        let sorter = scope.spawn(move || -> Result<Vec<std::fs::File>, SortError> {
            let mut runs = Vec::new();
            for mut chunk in sorter_chunks {
                if runs.len() == SORT_RUNS_MAX {
                    return Err(SortError::TooLarge);
                }
                runs.push(spill(&mut chunk)?);
            }
            Ok(runs)
        });
        let read = read_chunks(lines, chunk_lines, &mut spool, &mut count, &chunks);
        drop(chunks);
        let runs = sorter.join().unwrap_or_else(|_| Err(SortError::Spill("the sorting thread stopped".into())));
        (read, runs)
    });
    // A refused line is the answer, whatever the sorter did meanwhile.
    let mut chunk = read?;
    let mut runs = runs?;
    spool.finish()?;
    if runs.is_empty() {
        chunk.sort_unstable_by(compare);
        return Ok(SortedLines { lines: count, spool: Some(spool), source: Source::Memory(chunk.into_iter()) });
    }
    if !chunk.is_empty() {
        if runs.len() == SORT_RUNS_MAX {
            return Err(SortError::TooLarge);
        }
        runs.push(spill(&mut chunk)?);
    }
    drop(chunk);
    Ok(SortedLines { lines: count, spool: Some(spool), source: Source::Runs(RunMerge::new(runs)?) })
}

/// Reads the lines into chunks of `chunk_lines`, each full one handed to the sorter; answers
/// the last, partial chunk. Stops early when the sorter has stopped (its error is the answer).
fn read_chunks(
    lines: impl Iterator<Item = Result<StatementLine, StatementError>>,
    chunk_lines: usize,
    spool: &mut Spool,
    count: &mut u64,
    chunks: &std::sync::mpsc::SyncSender<Vec<SortedLine>>,
) -> Result<Vec<SortedLine>, SortError> {
    let capacity = chunk_lines.min(SORT_CHUNK_LINES);
    let mut chunk: Vec<SortedLine> = Vec::with_capacity(capacity);
    for line in lines {
        let line = line?;
        let key = MergeKey::new(merge_reference(&line)).ok_or_else(|| StatementError::Malformed {
            line: line.line_no,
            reason: format!("a reference longer than {KEY_BYTES_MAX} bytes"),
        })?;
        let raw = spool.push(&line.raw)?;
        chunk.push(SortedLine { line_no: line.line_no, kind: line.kind, key, amount: line.amount, raw });
        *count += 1;
        if chunk.len() == chunk_lines {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(capacity));
            if chunks.send(full).is_err() {
                // The sorter stopped: its error says why.
                return Ok(Vec::new());
            }
        }
    }
    Ok(chunk)
}

impl Iterator for SortedLines {
    type Item = Result<SortedLine, SortError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.source {
            Source::Memory(lines) => lines.next().map(Ok),
            Source::Runs(merge) => merge.next().transpose(),
        }
    }
}

/// The k-way merge of sorted runs: a binary heap of run indices ordered by each run's head.
struct RunMerge {
    readers: Vec<BufReader<std::fs::File>>,
    heads: Vec<Option<SortedLine>>,
    /// Indices of the runs that still have a head, a min-heap by [`compare`].
    heap: Vec<usize>,
}

impl RunMerge {
    fn new(runs: Vec<std::fs::File>) -> Result<RunMerge, SortError> {
        let mut readers: Vec<BufReader<std::fs::File>> =
            runs.into_iter().map(|file| BufReader::with_capacity(FILE_BUFFER_BYTES, file)).collect();
        let mut heads = Vec::with_capacity(readers.len());
        for reader in &mut readers {
            heads.push(read_line(reader)?);
        }
        let mut merge = RunMerge { readers, heads, heap: Vec::new() };
        for index in 0..merge.heads.len() {
            if merge.heads[index].is_some() {
                merge.heap.push(index);
                merge.sift_up(merge.heap.len() - 1);
            }
        }
        Ok(merge)
    }

    fn less(&self, a: usize, b: usize) -> bool {
        match (&self.heads[self.heap[a]], &self.heads[self.heap[b]]) {
            (Some(x), Some(y)) => compare(x, y) == Ordering::Less,
            (Some(_), None) => true,
            _ => false,
        }
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if !self.less(at, parent) {
                break;
            }
            self.heap.swap(at, parent);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        loop {
            let left = 2 * at + 1;
            let right = left + 1;
            let mut smallest = at;
            if left < self.heap.len() && self.less(left, smallest) {
                smallest = left;
            }
            if right < self.heap.len() && self.less(right, smallest) {
                smallest = right;
            }
            if smallest == at {
                return;
            }
            self.heap.swap(at, smallest);
            at = smallest;
        }
    }

    fn next(&mut self) -> Result<Option<SortedLine>, SortError> {
        let Some(&run) = self.heap.first() else { return Ok(None) };
        let line = self.heads[run].take().ok_or_else(corrupt)?;
        let next = read_line(&mut self.readers[run])?;
        self.heads[run] = next;
        if next.is_none() {
            let last = self.heap.len() - 1;
            self.heap.swap(0, last);
            self.heap.pop();
        }
        self.sift_down(0);
        Ok(Some(line))
    }
}

/// Sorts the chunk and writes it to an anonymous temporary file (deleted when closed).
fn spill(chunk: &mut Vec<SortedLine>) -> Result<std::fs::File, SortError> {
    chunk.sort_unstable_by(compare);
    let file = tempfile::tempfile().map_err(spill_error)?;
    let mut writer = BufWriter::with_capacity(FILE_BUFFER_BYTES, file);
    for line in chunk.drain(..) {
        write_line(&mut writer, &line).map_err(spill_error)?;
    }
    let mut file = writer.into_inner().map_err(|e| spill_error(e.into_error()))?;
    file.rewind().map_err(spill_error)?;
    Ok(file)
}

fn kind_byte(kind: LineKind) -> u8 {
    match kind {
        LineKind::Trade => 0,
        LineKind::Refund => 1,
        LineKind::Reversal => 2,
    }
}

/// The fixed part of a spilled line: line number, kind, key length, amount, currency (ISO
/// numeric), span offset, span length; the key's bytes follow.
const FIXED_BYTES: usize = 8 + 1 + 1 + 8 + 2 + 8 + 4;

fn write_line(writer: &mut impl Write, line: &SortedLine) -> std::io::Result<()> {
    let mut fixed = [0u8; FIXED_BYTES];
    fixed[0..8].copy_from_slice(&line.line_no.to_le_bytes());
    fixed[8] = kind_byte(line.kind);
    fixed[9] = line.key.len;
    fixed[10..18].copy_from_slice(&line.amount.minor().to_le_bytes());
    fixed[18..20].copy_from_slice(&line.amount.currency().numeric().to_le_bytes());
    fixed[20..28].copy_from_slice(&line.raw.offset.to_le_bytes());
    fixed[28..32].copy_from_slice(&line.raw.len.to_le_bytes());
    writer.write_all(&fixed)?;
    writer.write_all(line.key.as_bytes())
}

fn le_u64(bytes: &[u8]) -> Result<u64, SortError> {
    Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| corrupt())?))
}

/// The next line of a run, `None` at its end.
fn read_line(reader: &mut BufReader<std::fs::File>) -> Result<Option<SortedLine>, SortError> {
    if reader.fill_buf().map_err(spill_error)?.is_empty() {
        return Ok(None);
    }
    let mut fixed = [0u8; FIXED_BYTES];
    reader.read_exact(&mut fixed).map_err(spill_error)?;
    let kind = match fixed[8] {
        0 => LineKind::Trade,
        1 => LineKind::Refund,
        2 => LineKind::Reversal,
        _ => return Err(corrupt()),
    };
    let key_len = usize::from(fixed[9]);
    if key_len > KEY_BYTES_MAX {
        return Err(corrupt());
    }
    let mut key = MergeKey { len: fixed[9], bytes: [0u8; KEY_BYTES_MAX] };
    reader.read_exact(&mut key.bytes[..key_len]).map_err(spill_error)?;
    let minor = i64::from_le_bytes(fixed[10..18].try_into().map_err(|_| corrupt())?);
    let numeric = u16::from_le_bytes(fixed[18..20].try_into().map_err(|_| corrupt())?);
    let currency = Currency::from_numeric(numeric).map_err(|_| corrupt())?;
    let offset = le_u64(&fixed[20..28])?;
    let len = u32::from_le_bytes(fixed[28..32].try_into().map_err(|_| corrupt())?);
    Ok(Some(SortedLine {
        line_no: le_u64(&fixed[0..8])?,
        kind,
        key,
        amount: Money::from_minor(minor, currency),
        raw: RawSpan { offset, len },
    }))
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

    /// The lines in order, each with its text read back from the spool.
    fn sorted(input: Vec<StatementLine>, chunk: usize) -> Vec<(SortedLine, String)> {
        let mut sorted = sort_lines(input.into_iter().map(Ok), chunk).unwrap();
        let mut spool = sorted.take_spool().unwrap();
        let lines: Vec<SortedLine> = sorted.map(Result::unwrap).collect();
        lines.into_iter().map(|line| (line, spool.read(line.raw).unwrap())).collect()
    }

    fn expected(input: &[StatementLine]) -> Vec<(u64, LineKind, String, Money, String)> {
        let mut expected: Vec<_> =
            input.iter().map(|l| (l.line_no, l.kind, merge_reference(l).to_owned(), l.amount, l.raw.clone())).collect();
        expected.sort_by(|a, b| (phase(a.1), &a.2, a.0).cmp(&(phase(b.1), &b.2, b.0)));
        expected
    }

    fn plain(sorted: Vec<(SortedLine, String)>) -> Vec<(u64, LineKind, String, Money, String)> {
        sorted.into_iter().map(|(l, raw)| (l.line_no, l.kind, l.key.as_str().to_owned(), l.amount, raw)).collect()
    }

    #[test]
    fn spilled_runs_merge_into_the_same_order_as_an_in_memory_sort() {
        let input = lines(1_000);
        let expected = expected(&input);
        assert_eq!(plain(sorted(input.clone(), SORT_CHUNK_LINES)), expected);
        // 1,000 lines in runs of 64: 16 temporary files, every field read back as written.
        assert_eq!(plain(sorted(input.clone(), 64)), expected);
        // Uneven runs, and a run of one line.
        assert_eq!(plain(sorted(input.clone(), 333)), expected);
        assert_eq!(plain(sorted(input, 1)), expected);
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

    #[test]
    fn a_key_holds_up_to_its_limit_and_no_more() {
        let longest = "K".repeat(KEY_BYTES_MAX);
        assert_eq!(MergeKey::new(&longest).unwrap().as_str(), longest);
        assert!(MergeKey::new(&format!("{longest}1")).is_none());
        assert_eq!(MergeKey::new("").unwrap().as_str(), "");
        // Order is the references' byte order, a shorter prefix first.
        assert!(MergeKey::new("K1").unwrap().as_bytes() < MergeKey::new("K10").unwrap().as_bytes());
    }

    #[test]
    fn a_damaged_run_or_span_is_an_error_not_a_panic() {
        let mut spool = sort_lines(lines(10).into_iter().map(Ok), 100).unwrap().take_spool().unwrap();
        assert!(spool.read(RawSpan { offset: 5, len: u32::MAX }).is_err());
        assert!(spool.read(RawSpan { offset: u64::MAX, len: 1 }).is_err());
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
        file.rewind().unwrap();
        assert!(read_line(&mut BufReader::new(file)).is_err());
    }
}

//! A reconciliation run: a channel's statement for one day, sorted by reference in bounded
//! memory, merged with Kassa's trades and refunds of the day read from the store in the same
//! order a page at a time, judged pair by pair ([`crate::matching`]), stored with its counts and
//! differences, and the corrections its differences call for proposed once.
//!
//! Kassa's payments are compared at their amount as corrected: the day's approved corrections of
//! amounts are read in the merge's order, apart from the day's pages (driven by the few
//! corrections, not a probe per row), and given to each payment as the merge takes it. A payment
//! whose amount difference was corrected matches its statement line at the corrected amount, and
//! a payment is proposed one amount correction at most (a difference left after an approved one
//! stays open for a person, with no proposal).

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use kassa_domain::calendar::SHANGHAI_UTC_OFFSET_MINUTES;
use kassa_domain::clock::Clock;
use kassa_domain::{BusinessDay, Channel, CivilDate, MerchantId};
use kassa_qr::QrService;
use kassa_store::batch_upload::{propose_correction, NewCorrection};
use kassa_store::corrections::AMOUNT_MISMATCH_KIND;
use kassa_store::recon::{
    finish_run, insert_difference, insert_run, AmountCorrection, CardCorrections, DifferenceClass, NewReconRun,
    ReconCardRecord, ReconCounts, ReconDifferenceRecord, ReconRefundRecord, ReconSource, ReconTradeRecord,
};
use kassa_store::{Store, StoreError, UnitOutcome, WriteOp, WriteUnit};
use kassa_wallet::WalletConnector;
use serde_json::json;

use crate::matching::{judge_card, judge_refund, judge_trade, IssuerState, Verdict};
use crate::sort::{sort_lines, SortError, SortedLine, SortedLines, Spool, SORT_CHUNK_LINES};
use crate::statement::{
    card_reference, parse_record, LineKind, StatementError, StatementFormat, StatementLine, StatementReader,
};

/// Kassa's records read per page of the merge.
pub const PAGE_ROWS: i64 = 5_000;

/// Pages of Kassa's records read ahead of the merge, per side.
const PREFETCH_PAGES: usize = 1;

/// Differences (and their corrections) written per commit.
pub const WRITE_BATCH_OPS: usize = 500;

/// Trades a run asks the channel about (Kassa did not know where they stood); past this, the
/// rest are reported as status mismatches without asking.
pub const RESOLVE_CALLS_MAX: usize = 1_000;

/// The largest statement downloaded through a connector, in bytes: a limit on the temporary
/// file it is downloaded to, not on memory (it is read from there as a stream).
pub const STATEMENT_BYTES_MAX: u64 = 512 * 1024 * 1024;

/// Bytes read from a statement at a time.
const STATEMENT_READ_BUFFER_BYTES: usize = 64 * 1024;

/// Clearing-file rows of one card request read at most (an approval and its reversal; a file
/// repeating a request more is read on, its extra rows counted but not kept).
const CARD_ROWS_PER_REQUEST_MAX: usize = 8;

/// The correction kind of a card request the issuer approved that Kassa has as failed.
pub const CARD_CORRECTION_KIND: &str = "issuer_approved_host_failed";

/// Where the card issuer's clearing file of a day comes from (the issuer's side of the link).
#[async_trait::async_trait]
pub trait ClearingSource: Send + Sync + std::fmt::Debug {
    /// The clearing file of `date` (CSV, [`crate::statement::CLEARING_HEADER`]) written to `file`
    /// as it arrives, never held whole in memory: at most `bytes_max` bytes, a limit on the file;
    /// `file` is empty and at its start. Answers the bytes written.
    async fn clearing_to_file(&self, date: CivilDate, bytes_max: u64, file: &std::fs::File) -> Result<u64, String>;
}

/// Attempts at taking a run id when concurrent runs race for it.
const RUN_ID_ATTEMPTS_MAX: usize = 5;

/// The `source` of the corrections a run proposes.
pub const CORRECTION_SOURCE: &str = "reconciliation";

/// The providers' statement day: the calendar day in Asia/Shanghai.
pub(crate) const PROVIDER_DAY: BusinessDay = BusinessDay::calendar_day(SHANGHAI_UTC_OFFSET_MINUTES);

const MS_PER_DAY: i64 = 86_400_000;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconError {
    /// The statement was refused (its line is named); nothing was stored.
    #[error(transparent)]
    Statement(#[from] StatementError),
    /// The statement could not be downloaded or read, or sorted on disk.
    #[error("statement unavailable: {0}")]
    Unavailable(String),
    /// The channel cannot be reconciled this way.
    #[error("{0}")]
    Unsupported(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SortError> for ReconError {
    fn from(error: SortError) -> ReconError {
        match error {
            SortError::Statement(error) => ReconError::Statement(error),
            other => ReconError::Unavailable(other.to_string()),
        }
    }
}

/// What a run found: the JSON of `kassa recon`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconReport {
    /// The run's id.
    pub run_id: i64,
    /// The channel.
    pub channel: Channel,
    /// The day, `YYYY-MM-DD`.
    pub date: String,
    /// Its counts.
    pub counts: ReconCounts,
}

impl ReconReport {
    /// `{"run", "channel", "date", "lines", "matched", …, "corrections_proposed"}`.
    pub fn to_json(&self) -> serde_json::Value {
        let counts = &self.counts;
        json!({
            "run": self.run_id,
            "channel": self.channel.as_str(),
            "date": self.date,
            "lines": counts.lines,
            "matched": counts.matched,
            "amount_mismatch": counts.amount_mismatch,
            "paid_not_credited": counts.paid_not_credited,
            "missing_at_channel": counts.missing_at_channel,
            "status_mismatch": counts.status_mismatch,
            "corrections_proposed": counts.corrections_proposed,
        })
    }
}

/// Runs reconciliations over a store (and the QR service that asks the wallets about trades
/// Kassa does not know the state of). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reconciler {
    store: Store,
    qr: Option<QrService>,
    clock: Arc<dyn Clock>,
    chunk_lines: usize,
    connectors: Vec<Arc<dyn WalletConnector>>,
    clearing: Option<Arc<dyn ClearingSource>>,
}

impl Reconciler {
    /// A reconciler over `store`; `qr` resolves unknown trades (without it they are reported as
    /// status mismatches).
    pub fn new(store: Store, qr: Option<QrService>, clock: Arc<dyn Clock>) -> Reconciler {
        Reconciler { store, qr, clock, chunk_lines: SORT_CHUNK_LINES, connectors: Vec::new(), clearing: None }
    }

    /// Adds the connector [`Reconciler::reconcile_day`] downloads its wallet's statements with.
    pub fn with_connector(mut self, connector: Arc<dyn WalletConnector>) -> Reconciler {
        self.connectors.retain(|known| known.wallet() != connector.wallet());
        self.connectors.push(connector);
        self
    }

    /// Sets where [`Reconciler::reconcile_day`] fetches the card issuer's clearing files.
    pub fn with_clearing(mut self, clearing: Arc<dyn ClearingSource>) -> Reconciler {
        self.clearing = Some(clearing);
        self
    }

    /// The channels this reconciler can download statements of.
    pub fn channels(&self) -> Vec<Channel> {
        let mut channels: Vec<Channel> =
            self.connectors.iter().map(|connector| wallet_channel(connector.wallet())).collect();
        if self.clearing.is_some() {
            channels.push(Channel::Card);
        }
        channels
    }

    /// Downloads the day's statement of `channel` through its connector and reconciles it.
    pub async fn reconcile_day(
        &self,
        channel: Channel,
        date: CivilDate,
        started_by: &str,
    ) -> Result<ReconReport, ReconError> {
        if channel == Channel::Card {
            let source = self
                .clearing
                .clone()
                .ok_or_else(|| ReconError::Unsupported("no clearing file source for card".into()))?;
            let file = download_file()?;
            source.clearing_to_file(date, STATEMENT_BYTES_MAX, &file).await.map_err(ReconError::Unavailable)?;
            let input = read_from_start(file)?;
            return self.reconcile(channel, date, ReconSource::Download, started_by, input).await;
        }
        let connector = self
            .connectors
            .iter()
            .find(|connector| wallet_channel(connector.wallet()) == channel)
            .cloned()
            .ok_or_else(|| ReconError::Unsupported(format!("no statement source for {}", channel.as_str())))?;
        self.reconcile_download(channel, date, started_by, connector.as_ref()).await
    }

    /// Lines sorted in memory before spilling a run to disk (tests use small chunks).
    pub fn with_chunk_lines(mut self, chunk_lines: usize) -> Reconciler {
        self.chunk_lines = chunk_lines.clamp(1, SORT_CHUNK_LINES);
        self
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Downloads the day's statement through the wallet's connector and reconciles it.
    pub async fn reconcile_download(
        &self,
        channel: Channel,
        date: CivilDate,
        started_by: &str,
        connector: &dyn WalletConnector,
    ) -> Result<ReconReport, ReconError> {
        let file = download_file()?;
        connector
            .statement_to_file(&date.to_string(), STATEMENT_BYTES_MAX, &file)
            .await
            .map_err(|error| ReconError::Unavailable(error.to_string()))?;
        let input = read_from_start(file)?;
        self.reconcile(channel, date, ReconSource::Download, started_by, input).await
    }

    /// Reconciles the statement in `path`.
    pub async fn reconcile_file(
        &self,
        channel: Channel,
        date: CivilDate,
        started_by: &str,
        path: &Path,
    ) -> Result<ReconReport, ReconError> {
        let file = std::fs::File::open(path)
            .map_err(|error| ReconError::Unavailable(format!("{}: {error}", path.display())))?;
        let input: Box<dyn BufRead + Send> =
            Box::new(std::io::BufReader::with_capacity(STATEMENT_READ_BUFFER_BYTES, file));
        self.reconcile(channel, date, ReconSource::File, started_by, input).await
    }

    /// Reads, sorts and checks the whole statement (refusing it at its first bad line, before
    /// anything is stored), then runs the merge and stores the run.
    pub async fn reconcile(
        &self,
        channel: Channel,
        date: CivilDate,
        source: ReconSource,
        started_by: &str,
        input: Box<dyn BufRead + Send>,
    ) -> Result<ReconReport, ReconError> {
        let format = StatementFormat::of(channel)
            .ok_or_else(|| ReconError::Unsupported(format!("no statement format for {}", channel.as_str())))?;
        let chunk_lines = self.chunk_lines;
        let mut sorted =
            tokio::task::spawn_blocking(move || sort_lines(StatementReader::new(input, format), chunk_lines))
                .await
                .map_err(|error| ReconError::Unavailable(format!("sorting stopped: {error}")))??;
        let spool = sorted.take_spool().ok_or_else(|| ReconError::Unavailable("the statement's spool".into()))?;
        let started_at_ms = self.clock.now_ms();
        let run_id = self.start_run(channel, date, source, started_by, started_at_ms).await?;
        let mut merge = Merge::new(self, run_id, channel, date, format, spool);
        merge.counts.lines = i64::try_from(sorted.lines).unwrap_or(i64::MAX);
        merge.run(sorted).await?;
        let counts = merge.counts;
        self.store.commit(WriteUnit::ops(vec![finish_run(run_id, &counts, self.clock.now_ms())])).await?;
        tracing::info!(
            run = run_id,
            channel = channel.as_str(),
            date = %date,
            lines = counts.lines,
            matched = counts.matched,
            differences = counts.amount_mismatch + counts.paid_not_credited + counts.missing_at_channel + counts.status_mismatch,
            corrections_proposed = counts.corrections_proposed,
            "reconciliation run finished"
        );
        Ok(ReconReport { run_id, channel, date: date.to_string(), counts })
    }

    async fn start_run(
        &self,
        channel: Channel,
        date: CivilDate,
        source: ReconSource,
        started_by: &str,
        started_at_ms: i64,
    ) -> Result<i64, ReconError> {
        for _ in 0..RUN_ID_ATTEMPTS_MAX {
            let id = self.store.recon().next_run_id().await?;
            let run = NewReconRun {
                id,
                channel,
                business_date: date.to_string(),
                source,
                started_by: started_by.to_owned(),
                started_at_ms,
            };
            if let UnitOutcome::Committed { .. } =
                self.store.commit(WriteUnit::guarded(insert_run(&run), vec![])).await?
            {
                return Ok(id);
            }
        }
        Err(ReconError::Store(StoreError::Conflict("no run id after several attempts".into())))
    }
}

/// The anonymous temporary file a statement is downloaded to (deleted when the run drops it).
fn download_file() -> Result<std::fs::File, ReconError> {
    tempfile::tempfile().map_err(|error| ReconError::Unavailable(format!("a file for the statement: {error}")))
}

/// The downloaded statement, read as a stream from its start.
fn read_from_start(mut file: std::fs::File) -> Result<Box<dyn BufRead + Send>, ReconError> {
    use std::io::Seek;
    file.rewind().map_err(|error| ReconError::Unavailable(format!("the statement's file: {error}")))?;
    Ok(Box::new(std::io::BufReader::with_capacity(STATEMENT_READ_BUFFER_BYTES, file)))
}

fn wallet_channel(wallet: kassa_wallet::Wallet) -> Channel {
    match wallet {
        kassa_wallet::Wallet::Alipay => Channel::Alipay,
        kassa_wallet::Wallet::Wechat => Channel::Wechat,
    }
}

/// One side of Kassa's records in merge order, read ahead by a task of its own: the next page is
/// read from the store while this one is merged. At most [`PREFETCH_PAGES`] pages wait, so
/// memory holds a few pages whatever the day's size.
struct Prefetch<T> {
    page: VecDeque<T>,
    pages: tokio::sync::mpsc::Receiver<Result<Vec<T>, StoreError>>,
    task: tokio::task::JoinHandle<()>,
    done: bool,
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        // A merge that stops early (an error) stops its reads too.
        self.task.abort();
    }
}

impl<T: Send + 'static> Prefetch<T> {
    /// Reads `fetch(after)` page by page, each page after the key (`key`) of the previous one's
    /// last record, until a page comes back short.
    fn spawn<K, F, Fut>(mut after: K, key: fn(&T) -> K, fetch: F) -> Prefetch<T>
    where
        K: Clone + Send + 'static,
        F: Fn(K) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Vec<T>, StoreError>> + Send + 'static,
    {
        let (sender, pages) = tokio::sync::mpsc::channel(PREFETCH_PAGES);
        let task = tokio::spawn(async move {
            loop {
                let page = fetch(after.clone()).await;
                let next = match &page {
                    Ok(rows) if rows.len() >= PAGE_ROWS as usize => rows.last().map(key),
                    _ => None,
                };
                if sender.send(page).await.is_err() {
                    return;
                }
                match next {
                    Some(next) => after = next,
                    None => return,
                }
            }
        });
        Prefetch { page: VecDeque::new(), pages, task, done: false }
    }

    /// Makes sure the front record is here, unless the side is read to its end.
    async fn fill(&mut self) -> Result<(), ReconError> {
        while self.page.is_empty() && !self.done {
            match self.pages.recv().await {
                Some(Ok(rows)) => self.page = VecDeque::from(rows),
                Some(Err(error)) => return Err(error.into()),
                None => self.done = true,
            }
        }
        Ok(())
    }
}

/// The approved correction of the amount of the payment `key`, from `corrections` read in the
/// order the merge takes payments (ascending keys): those of payments before `key`, which the
/// merge passed without taking (a trade of the next day paid after midnight), are passed over.
async fn correction_of<K: Ord + Send + 'static, C: Copy + Send + 'static>(
    corrections: &mut Prefetch<(K, C)>,
    key: &K,
) -> Result<Option<C>, ReconError> {
    loop {
        if corrections.page.is_empty() {
            if corrections.done {
                // Read to its end (most days have no correction at all): nothing to wait for.
                return Ok(None);
            }
            corrections.fill().await?;
        }
        match corrections.page.front() {
            Some((front, _)) if front < key => {
                corrections.page.pop_front();
            }
            Some((front, correction)) if front == key => {
                let correction = *correction;
                corrections.page.pop_front();
                return Ok(Some(correction));
            }
            _ => return Ok(None),
        }
    }
}

/// A card transaction's RRN: the stored one, else the one the gateway gives it (its id, 12
/// digits), which a request that never got an answer may not have stored.
fn rrn_of(txn: &ReconCardRecord) -> String {
    txn.rrn.clone().unwrap_or_else(|| format!("{:012}", txn.id.rem_euclid(1_000_000_000_000)))
}

fn card_json(txn: &ReconCardRecord) -> serde_json::Value {
    json!({
        "txn_id": txn.id,
        "kind": txn.kind,
        "status": txn.status,
        "merchant_id": txn.merchant_id,
        "terminal_id": txn.terminal_id,
        "rrn": txn.rrn,
        "amount_minor": txn.amount.minor(),
        "currency": txn.amount.currency().code(),
        "business_date": txn.business_date,
        "created_at_ms": txn.created_at_ms,
        "amount_correction": amount_correction_json(txn.amount_correction.as_ref()),
        "credit_correction": txn.credit_correction.map(|credit| json!({
            "correction_id": credit.id,
            "credited_minor": credit.amount.minor(),
        })),
    })
}

/// The approved correction of a payment's amount, in Kassa's record of a difference.
fn amount_correction_json(correction: Option<&AmountCorrection>) -> serde_json::Value {
    match correction {
        Some(correction) => json!({
            "correction_id": correction.id,
            "delta_minor": correction.delta.minor(),
            "corrected_minor": correction.corrected.minor(),
        }),
        None => serde_json::Value::Null,
    }
}

/// Gives a trade taken from a page of the day the approved correction of its amount (in place:
/// a record is not moved through the wait).
async fn correct_trade(
    corrections: &mut Prefetch<(String, AmountCorrection)>,
    trade: &mut Option<ReconTradeRecord>,
) -> Result<(), ReconError> {
    if let Some(trade) = trade {
        trade.amount_correction = correction_of(corrections, &trade.reference).await?;
    }
    Ok(())
}

/// Gives a card transaction taken from a page of the day its approved corrections (of its
/// amount, and the one that credited it).
async fn correct_card(
    corrections: &mut Prefetch<(i64, CardCorrections)>,
    txn: &mut Option<ReconCardRecord>,
) -> Result<(), ReconError> {
    if let Some(txn) = txn {
        txn.correct(correction_of(corrections, &txn.id).await?.unwrap_or_default());
    }
    Ok(())
}

/// Which side the merge takes next.
enum Step {
    Line,
    Kassa,
    Both,
    Done,
}

fn step(line: Option<&str>, kassa: Option<&str>) -> Step {
    match (line, kassa) {
        (None, None) => Step::Done,
        (Some(_), None) => Step::Line,
        (None, Some(_)) => Step::Kassa,
        (Some(line), Some(kassa)) => match line.cmp(kassa) {
            std::cmp::Ordering::Less => Step::Line,
            std::cmp::Ordering::Greater => Step::Kassa,
            std::cmp::Ordering::Equal => Step::Both,
        },
    }
}

struct Merge<'a> {
    reconciler: &'a Reconciler,
    run_id: i64,
    channel: Channel,
    date: CivilDate,
    format: StatementFormat,
    /// The statement's record texts: a line is read back whole only for a difference.
    spool: Spool,
    counts: ReconCounts,
    ops: Vec<WriteOp>,
    resolved: usize,
}

fn next_line(lines: &mut SortedLines) -> Result<Option<SortedLine>, ReconError> {
    lines.next().transpose().map_err(ReconError::from)
}

impl<'a> Merge<'a> {
    fn new(
        reconciler: &'a Reconciler,
        run_id: i64,
        channel: Channel,
        date: CivilDate,
        format: StatementFormat,
        spool: Spool,
    ) -> Merge<'a> {
        Merge {
            reconciler,
            run_id,
            channel,
            date,
            format,
            spool,
            counts: ReconCounts::default(),
            ops: Vec::new(),
            resolved: 0,
        }
    }

    /// The whole line (its text read back from the spool and parsed again): a difference's
    /// evidence. It was parsed once already, so it parses the same.
    fn full_line(&mut self, line: &SortedLine) -> Result<StatementLine, ReconError> {
        let text = self.spool.read(line.raw)?;
        Ok(parse_record(self.format, line.line_no, text)?)
    }

    fn full_lines(&mut self, line: Option<&SortedLine>) -> Result<Option<StatementLine>, ReconError> {
        line.map(|line| self.full_line(line)).transpose()
    }

    fn store(&self) -> &Store {
        &self.reconciler.store
    }

    /// The day's window at the provider, Unix milliseconds `[from, to)`.
    fn day_window_ms(&self) -> (i64, i64) {
        let from = self.date.days_since_epoch() * MS_PER_DAY - i64::from(SHANGHAI_UTC_OFFSET_MINUTES) * 60_000;
        (from, from + MS_PER_DAY)
    }

    async fn run(&mut self, mut lines: SortedLines) -> Result<(), ReconError> {
        if self.channel == Channel::Card {
            self.cards(&mut lines).await?;
            return self.flush().await;
        }
        let mut current = next_line(&mut lines)?;
        current = self.trades(&mut lines, current).await?;
        self.refunds(&mut lines, current).await?;
        self.flush().await
    }

    /// Kassa's trades of the business day (`next_day` false), or those it dates the next
    /// business day (created after its cut-off) that were paid within the statement's day
    /// (`next_day` true), by reference, read ahead.
    fn trades_side(&self, next_day: bool) -> Prefetch<ReconTradeRecord> {
        let store = self.store().clone();
        let channel = self.channel;
        let (from, to) = self.day_window_ms();
        let date = if next_day { self.date.next_day() } else { self.date }.to_string();
        let key: fn(&ReconTradeRecord) -> String = |trade| trade.reference.clone();
        Prefetch::spawn(String::new(), key, move |after: String| {
            let (store, date) = (store.clone(), date.clone());
            async move {
                let recon = store.recon();
                if next_day {
                    recon.trades_paid_between(channel, &date, from, to, &after, PAGE_ROWS).await
                } else {
                    recon.trades_of_day(channel, &date, &after, PAGE_ROWS).await
                }
            }
        })
    }

    /// The approved corrections of the amounts of the trades of the two sides
    /// ([`Merge::trades_side`]), by the trades' reference, read ahead.
    fn trade_corrections_side(&self) -> Prefetch<(String, AmountCorrection)> {
        let store = self.store().clone();
        let channel = self.channel;
        let (date, next_date) = (self.date.to_string(), self.date.next_day().to_string());
        let key: fn(&(String, AmountCorrection)) -> String = |(reference, _)| reference.clone();
        Prefetch::spawn(String::new(), key, move |after: String| {
            let (store, date, next_date) = (store.clone(), date.clone(), next_date.clone());
            async move { store.recon().trade_amount_corrections(channel, &date, &next_date, &after, PAGE_ROWS).await }
        })
    }

    async fn trades(
        &mut self,
        lines: &mut SortedLines,
        mut current: Option<SortedLine>,
    ) -> Result<Option<SortedLine>, ReconError> {
        let mut day = self.trades_side(false);
        let mut next_day = self.trades_side(true);
        // Taken from the two sides in one ascending order: their corrections, in the same.
        let mut corrections = self.trade_corrections_side();
        let mut last_reference: Option<crate::sort::MergeKey> = None;
        loop {
            day.fill().await?;
            next_day.fill().await?;
            // The two Kassa cursors hold different trades (one business date each): the merge
            // takes the smaller reference of their fronts.
            let cursor = match (day.page.front(), next_day.page.front()) {
                (Some(a), Some(b)) if b.reference < a.reference => &mut next_day,
                (None, Some(_)) => &mut next_day,
                _ => &mut day,
            };
            let line_reference = current.as_ref().filter(|line| line.kind == LineKind::Trade).map(|l| l.key.as_str());
            match step(line_reference, cursor.page.front().map(|trade| trade.reference.as_str())) {
                Step::Done => return Ok(current),
                Step::Kassa => {
                    let mut trade = cursor.page.pop_front();
                    correct_trade(&mut corrections, &mut trade).await?;
                    self.trade_pair(None, trade).await?;
                }
                Step::Line | Step::Both => {
                    let Some(line) = current.take() else { return Ok(None) };
                    current = next_line(lines)?;
                    if last_reference == Some(line.key) {
                        let reason = "listed again on the statement (a reference is paid once)";
                        let full = self.full_line(&line)?;
                        self.difference(DifferenceClass::StatusMismatch, reason.into(), Some(&full), None, None, true)
                            .await?;
                        continue;
                    }
                    let trade = if matches!(
                        step(Some(line.key.as_str()), cursor.page.front().map(|t| t.reference.as_str())),
                        Step::Both
                    ) {
                        let mut trade = cursor.page.pop_front();
                        correct_trade(&mut corrections, &mut trade).await?;
                        trade
                    } else {
                        // Not among the day's trades: created on another day, or unknown (read
                        // alone, with its amount correction).
                        self.store().recon().trade_by_reference(self.channel, line.key.as_str()).await?
                    };
                    last_reference = Some(line.key);
                    self.trade_pair(Some(line), trade).await?;
                }
            }
        }
    }

    fn paid_in_day(&self, trade: &ReconTradeRecord) -> bool {
        trade.paid_at_ms.is_some_and(|ms| PROVIDER_DAY.date_of(ms) == self.date)
    }

    async fn trade_pair(
        &mut self,
        line: Option<SortedLine>,
        mut trade: Option<ReconTradeRecord>,
    ) -> Result<(), ReconError> {
        let in_day = trade.as_ref().is_some_and(|t| self.paid_in_day(t));
        let amount = line.map(|line| line.amount);
        let mut verdict = judge_trade(self.channel, amount, trade.as_ref(), in_day, false);
        if verdict == Verdict::Resolve {
            if let Some(known) = &trade {
                trade = self.resolve(known).await?;
            }
            let in_day = trade.as_ref().is_some_and(|t| self.paid_in_day(t));
            verdict = judge_trade(self.channel, amount, trade.as_ref(), in_day, true);
        }
        match verdict {
            Verdict::Matched => self.counts.matched += 1,
            Verdict::Differs(class, reason) => {
                let full = self.full_lines(line.as_ref())?;
                self.difference(class, reason, full.as_ref(), trade.as_ref(), None, false).await?;
            }
            Verdict::Resolve | Verdict::Nothing => {}
        }
        Ok(())
    }

    /// Asks the channel about a trade Kassa does not know the state of (as the resolver would)
    /// and reads it again.
    async fn resolve(&mut self, trade: &ReconTradeRecord) -> Result<Option<ReconTradeRecord>, ReconError> {
        let Some(qr) = &self.reconciler.qr else { return Ok(Some(trade.clone())) };
        if self.resolved >= RESOLVE_CALLS_MAX {
            return Ok(Some(trade.clone()));
        }
        self.resolved += 1;
        match MerchantId::parse(&trade.merchant_id) {
            Ok(merchant) => {
                if let Err(error) = qr.refresh(&merchant, &trade.out_trade_no).await {
                    tracing::warn!(reference = %trade.reference, %error, "reconciliation: the channel could not be asked");
                }
            }
            Err(error) => tracing::warn!(reference = %trade.reference, %error, "reconciliation: a trade's merchant"),
        }
        Ok(self.store().recon().trade_by_reference(self.channel, &trade.reference).await?)
    }

    /// Kassa's card transactions of the business day (`next_day` false), or those it dates the
    /// next business day received before the issuer's midnight (`next_day` true), by id, read
    /// ahead.
    fn cards_side(&self, next_day: bool) -> Prefetch<ReconCardRecord> {
        let store = self.store().clone();
        let (from, to) = self.day_window_ms();
        let date = if next_day { self.date.next_day() } else { self.date }.to_string();
        let key: fn(&ReconCardRecord) -> i64 = |txn| txn.id;
        Prefetch::spawn(0, key, move |after_id: i64| {
            let (store, date) = (store.clone(), date.clone());
            async move {
                let recon = store.recon();
                if next_day {
                    recon.card_txns_received_between(&date, from, to, after_id, PAGE_ROWS).await
                } else {
                    recon.card_txns_of_day(&date, after_id, PAGE_ROWS).await
                }
            }
        })
    }

    /// The approved corrections of the card transactions of the two sides
    /// ([`Merge::cards_side`]), by the transactions' id, read ahead.
    fn card_corrections_side(&self) -> Prefetch<(i64, CardCorrections)> {
        let store = self.store().clone();
        let (date, next_date) = (self.date.to_string(), self.date.next_day().to_string());
        let key: fn(&(i64, CardCorrections)) -> i64 = |(id, _)| *id;
        Prefetch::spawn(0, key, move |after_id: i64| {
            let (store, date, next_date) = (store.clone(), date.clone(), next_date.clone());
            async move { store.recon().card_corrections(&date, &next_date, after_id, PAGE_ROWS).await }
        })
    }

    /// The card merge: the clearing file's rows (grouped per request) against Kassa's card
    /// transactions of the day, both in id order.
    async fn cards(&mut self, lines: &mut SortedLines) -> Result<(), ReconError> {
        let mut day = self.cards_side(false);
        let mut next_day = self.cards_side(true);
        // Taken from the two sides in one ascending order: their corrections, in the same.
        let mut corrections = self.card_corrections_side();
        let mut current = next_line(lines)?;
        // The rows of one request, reused from request to request.
        let mut group: Vec<SortedLine> = Vec::with_capacity(CARD_ROWS_PER_REQUEST_MAX);
        loop {
            day.fill().await?;
            next_day.fill().await?;
            // Two business dates, disjoint: the merge takes the smaller id of their fronts.
            let cursor = match (day.page.front(), next_day.page.front()) {
                (Some(a), Some(b)) if b.id < a.id => &mut next_day,
                (None, Some(_)) => &mut next_day,
                _ => &mut day,
            };
            let kassa_reference = cursor.page.front().map(|txn| card_reference(txn.id));
            match step(current.as_ref().map(|line| line.key.as_str()), kassa_reference.as_deref()) {
                Step::Done => return Ok(()),
                Step::Kassa => {
                    let mut txn = cursor.page.pop_front();
                    correct_card(&mut corrections, &mut txn).await?;
                    self.card_pair(&[], txn).await?;
                }
                Step::Line | Step::Both => {
                    let Some(first) = current.take() else { return Ok(()) };
                    let reference = first.key;
                    group.clear();
                    group.push(first);
                    current = next_line(lines)?;
                    while let Some(line) = current.take_if(|line| line.key == reference) {
                        if group.len() < CARD_ROWS_PER_REQUEST_MAX {
                            group.push(line);
                        }
                        current = next_line(lines)?;
                    }
                    let txn = if kassa_reference.as_deref() == Some(reference.as_str()) {
                        let mut txn = cursor.page.pop_front();
                        correct_card(&mut corrections, &mut txn).await?;
                        txn
                    } else {
                        // Not among the day's: received on another business day, or unknown
                        // (read alone, with its amount correction).
                        match reference.as_str().parse::<i64>() {
                            Ok(id) => self.store().recon().card_txn(id).await?,
                            Err(_) => None,
                        }
                    };
                    self.card_pair(&group, txn).await?;
                }
            }
        }
    }

    async fn card_pair(&mut self, group: &[SortedLine], txn: Option<ReconCardRecord>) -> Result<(), ReconError> {
        let approvals = group.iter().filter(|line| line.kind == LineKind::Trade).count();
        let reversal = group.iter().find(|line| line.kind == LineKind::Reversal);
        let approval = group.iter().find(|line| line.kind == LineKind::Trade);
        let evidence = approval.or(reversal);
        let issuer = match (approval, reversal) {
            (_, Some(reversal)) => Some((IssuerState::Reversed, approval.unwrap_or(reversal).amount)),
            (Some(approval), None) => Some((IssuerState::Approved, approval.amount)),
            (None, None) => None,
        };
        let (from, to) = self.day_window_ms();
        let in_day = txn.as_ref().is_some_and(|txn| (from..to).contains(&txn.created_at_ms));
        let verdict = if approvals > 1 {
            Verdict::Differs(DifferenceClass::StatusMismatch, "approved more than once at the issuer".into())
        } else {
            judge_card(issuer, txn.as_ref(), in_day)
        };
        match verdict {
            Verdict::Matched => self.counts.matched += 1,
            Verdict::Differs(class, reason) => {
                let evidence = self.full_lines(evidence)?;
                self.card_difference(class, reason, evidence.as_ref(), txn.as_ref()).await?;
            }
            Verdict::Resolve | Verdict::Nothing => {}
        }
        Ok(())
    }

    async fn card_difference(
        &mut self,
        class: DifferenceClass,
        reason: String,
        line: Option<&StatementLine>,
        txn: Option<&ReconCardRecord>,
    ) -> Result<(), ReconError> {
        self.counts.count(class);
        let reference =
            line.map(|l| l.reference.clone()).or_else(|| txn.map(|t| card_reference(t.id))).unwrap_or_default();
        let currency = line.map(|l| l.amount.currency()).or(txn.map(|t| t.amount.currency()));
        let mut difference = ReconDifferenceRecord {
            run_id: self.run_id,
            difference_key: format!("card:{}:txn:{}", self.date, reference),
            class,
            kind: LineKind::Trade.as_str().to_owned(),
            reference,
            refund_reference: None,
            merchant_id: txn.map(|t| t.merchant_id.clone()),
            out_trade_no: txn.map(rrn_of),
            channel_amount_minor: line.map(|l| l.amount.minor()),
            kassa_amount_minor: txn.map(|t| t.compared_amount().minor()),
            currency: currency.map_or("CNY", |c| c.code()).to_owned(),
            reason,
            statement_line_no: line.and_then(|l| i64::try_from(l.line_no).ok()),
            statement_line: line.map(|l| l.raw.clone()),
            kassa_record: txn.map(card_json),
            correction_key: None,
        };
        let correction = match (txn, line) {
            (Some(txn), Some(line)) => self.card_correction(&difference, txn, line),
            _ => None,
        };
        if let Some(correction) = correction {
            if !self.store().recon().correction_exists(&correction.correction_key).await? {
                self.counts.corrections_proposed += 1;
            }
            difference.correction_key = Some(correction.correction_key.clone());
            self.ops.push(propose_correction(&correction));
        }
        self.ops.push(insert_difference(&difference));
        if self.ops.len() >= WRITE_BATCH_OPS {
            self.flush().await?;
        }
        Ok(())
    }

    /// The correction a card difference calls for, proposed once per transaction (its key):
    /// - a request the issuer approved (and never reversed) that Kassa has as failed: credit the
    ///   merchant the amount the issuer took (`issuer_approved_host_failed`);
    /// - a sale captured for another amount than the issuer approved: move the merchant by the
    ///   signed difference, the issuer's amount less Kassa's (`amount_mismatch`, as a QR trade's),
    ///   unless its amount was corrected already (a payment's amount is corrected once; what is
    ///   left is for a person).
    ///
    /// Each once a second person approves it; the RRN is its `reference`.
    fn card_correction(
        &self,
        difference: &ReconDifferenceRecord,
        txn: &ReconCardRecord,
        line: &StatementLine,
    ) -> Option<NewCorrection> {
        let (kind, amount_minor) = match difference.class {
            DifferenceClass::PaidNotCredited => (CARD_CORRECTION_KIND, line.amount.minor()),
            DifferenceClass::AmountMismatch if txn.amount_correction.is_none() => {
                (AMOUNT_MISMATCH_KIND, line.amount.checked_sub(txn.amount).ok()?.minor())
            }
            _ => return None,
        };
        Some(NewCorrection {
            correction_key: format!("recon:card:txn:{}:{}", txn.id, difference.class.as_str()),
            source: CORRECTION_SOURCE.to_owned(),
            kind: kind.to_owned(),
            merchant_id: txn.merchant_id.clone(),
            terminal_id: txn.terminal_id.clone(),
            batch_no: None,
            stan: None,
            txn_id: Some(txn.id),
            terminal_amount_minor: None,
            host_amount_minor: Some(txn.amount.minor()),
            currency: difference.currency.clone(),
            details: json!({
                "channel": Channel::Card.as_str(),
                "reference": rrn_of(txn),
                "amount_minor": amount_minor,
                "channel_amount_minor": line.amount.minor(),
                // What an amount correction's approval checks the sale still has.
                "kassa_amount_minor": txn.amount.minor(),
                "auth_code": line.channel_trade_no,
                "kassa_status": card_json(txn)["status"],
                "reason": difference.reason,
                "run_id": self.run_id,
                "business_date": self.date.to_string(),
                "statement_line_no": difference.statement_line_no,
                "statement_line": difference.statement_line,
            }),
            created_at_ms: self.reconciler.clock.now_ms(),
        })
    }

    /// Refunds of the channel's trades created within the day, by refund reference, read ahead.
    fn refunds_side(&self) -> Prefetch<ReconRefundRecord> {
        let store = self.store().clone();
        let channel = self.channel;
        let (from, to) = self.day_window_ms();
        let key: fn(&ReconRefundRecord) -> String = |refund| refund.refund_reference.clone();
        Prefetch::spawn(String::new(), key, move |after: String| {
            let store = store.clone();
            async move { store.recon().refunds_created_between(channel, from, to, &after, PAGE_ROWS).await }
        })
    }

    async fn refunds(&mut self, lines: &mut SortedLines, mut current: Option<SortedLine>) -> Result<(), ReconError> {
        let mut cursor = self.refunds_side();
        let mut last_reference: Option<crate::sort::MergeKey> = None;
        loop {
            cursor.fill().await?;
            // Past the trades, every line is a refund, merged on its refund reference.
            let line_reference = current.as_ref().map(|line| line.key.as_str());
            match step(line_reference, cursor.page.front().map(|refund| refund.refund_reference.as_str())) {
                Step::Done => return Ok(()),
                Step::Kassa => {
                    let refund = cursor.page.pop_front();
                    self.refund_pair(None, refund).await?;
                }
                Step::Line | Step::Both => {
                    let Some(line) = current.take() else { return Ok(()) };
                    current = next_line(lines)?;
                    let refund_reference = line.key;
                    if last_reference == Some(refund_reference) {
                        let reason = "refund listed again on the statement";
                        let full = self.full_line(&line)?;
                        self.difference(DifferenceClass::StatusMismatch, reason.into(), Some(&full), None, None, true)
                            .await?;
                        continue;
                    }
                    let front = cursor.page.front().map(|refund| refund.refund_reference.as_str());
                    let refund = if matches!(step(Some(refund_reference.as_str()), front), Step::Both) {
                        cursor.page.pop_front()
                    } else {
                        self.store().recon().refund_by_reference(refund_reference.as_str()).await?
                    };
                    last_reference = Some(refund_reference);
                    self.refund_pair(Some(line), refund).await?;
                }
            }
        }
    }

    async fn refund_pair(
        &mut self,
        line: Option<SortedLine>,
        refund: Option<ReconRefundRecord>,
    ) -> Result<(), ReconError> {
        let refund = match refund {
            Some(known) => {
                let reconciler = self.reconciler;
                crate::resolve::refund(reconciler.qr.as_ref(), &reconciler.store, known, &mut self.resolved).await?
            }
            None => None,
        };
        // A line without Kassa's refund: its trade decides (a cancel's reversal has no refund).
        let full = match (&line, &refund) {
            (Some(line), None) => self.full_lines(Some(line))?,
            _ => None,
        };
        let trade = match &full {
            Some(full) => self.store().recon().trade_by_reference(self.channel, &full.reference).await?,
            None => None,
        };
        match judge_refund(line.map(|line| line.amount), refund.as_ref(), trade.as_ref()) {
            Verdict::Matched => self.counts.matched += 1,
            Verdict::Differs(class, reason) => {
                let full = match full {
                    Some(full) => Some(full),
                    None => self.full_lines(line.as_ref())?,
                };
                self.difference(class, reason, full.as_ref(), trade.as_ref(), refund.as_ref(), false).await?;
            }
            Verdict::Resolve | Verdict::Nothing => {}
        }
        Ok(())
    }

    /// Records a difference (and proposes its correction when one is due), written in batches.
    async fn difference(
        &mut self,
        class: DifferenceClass,
        reason: String,
        line: Option<&StatementLine>,
        trade: Option<&ReconTradeRecord>,
        refund: Option<&ReconRefundRecord>,
        listed_again: bool,
    ) -> Result<(), ReconError> {
        self.counts.count(class);
        let kind = match (line.map(|l| l.kind), refund) {
            (Some(LineKind::Refund), _) | (None, Some(_)) => LineKind::Refund,
            _ => LineKind::Trade,
        };
        let reference = line
            .map(|l| l.reference.clone())
            .or_else(|| trade.map(|t| t.reference.clone()))
            .or_else(|| refund.map(|r| r.trade_reference.clone()))
            .unwrap_or_default();
        let refund_reference =
            line.and_then(|l| l.refund_reference.clone()).or_else(|| refund.map(|r| r.refund_reference.clone()));
        let mut key = format!("{}:{}:{}:{}", self.channel.as_str(), self.date, kind.as_str(), reference);
        if let Some(refund_reference) = &refund_reference {
            key.push(':');
            key.push_str(refund_reference);
        }
        if let (Some(line), true) = (line, listed_again) {
            // A reference listed twice is a difference per extra line.
            key.push_str(&format!(":line{}", line.line_no));
        }
        let merchant_id = trade.map(|t| t.merchant_id.clone()).or_else(|| refund.map(|r| r.merchant_id.clone()));
        let out_trade_no = trade.map(|t| t.out_trade_no.clone()).or_else(|| refund.map(|r| r.out_trade_no.clone()));
        let kassa_amount = match kind {
            LineKind::Refund => refund.map(|r| r.amount),
            LineKind::Trade | LineKind::Reversal => trade.map(ReconTradeRecord::compared_amount),
        };
        let currency = line.map(|l| l.amount.currency()).or(kassa_amount.map(|a| a.currency()));
        let kassa_record = match (trade, refund) {
            (_, Some(refund)) if kind == LineKind::Refund => Some(refund_json(refund)),
            (Some(trade), _) => Some(trade_json(trade)),
            _ => None,
        };
        let mut difference = ReconDifferenceRecord {
            run_id: self.run_id,
            difference_key: key,
            class,
            kind: kind.as_str().to_owned(),
            reference: reference.clone(),
            refund_reference,
            merchant_id,
            out_trade_no,
            channel_amount_minor: line.map(|l| l.amount.minor()),
            kassa_amount_minor: kassa_amount.map(|a| a.minor()),
            currency: currency.map_or("CNY", |c| c.code()).to_owned(),
            reason,
            statement_line_no: line.and_then(|l| i64::try_from(l.line_no).ok()),
            statement_line: line.map(|l| l.raw.clone()),
            kassa_record,
            correction_key: None,
        };
        if let Some(correction) = self.correction_for(&difference, kind, trade) {
            if !self.store().recon().correction_exists(&correction.correction_key).await? {
                self.counts.corrections_proposed += 1;
            }
            difference.correction_key = Some(correction.correction_key.clone());
            self.ops.push(propose_correction(&correction));
        }
        self.ops.push(insert_difference(&difference));
        if self.ops.len() >= WRITE_BATCH_OPS {
            self.flush().await?;
        }
        Ok(())
    }

    /// The correction a difference calls for: a trade paid at the channel that Kassa has unpaid
    /// (credit it), or paid for another amount (to be reviewed) unless its amount was corrected
    /// already (once per payment; what is left is for a person). Never for a trade Kassa does
    /// not know (no merchant to credit: the difference alone is the evidence).
    fn correction_for(
        &self,
        difference: &ReconDifferenceRecord,
        kind: LineKind,
        trade: Option<&ReconTradeRecord>,
    ) -> Option<NewCorrection> {
        let trade = trade?;
        let channel_minor = difference.channel_amount_minor?;
        let amount_minor = match (difference.class, kind) {
            (DifferenceClass::PaidNotCredited, LineKind::Trade) => channel_minor,
            (DifferenceClass::AmountMismatch, LineKind::Trade) if trade.amount_correction.is_none() => {
                channel_minor.checked_sub(trade.amount.minor())?
            }
            _ => return None,
        };
        let correction_key =
            format!("recon:{}:trade:{}:{}", self.channel.as_str(), trade.reference, difference.class.as_str());
        Some(NewCorrection {
            correction_key,
            source: CORRECTION_SOURCE.to_owned(),
            kind: difference.class.as_str().to_owned(),
            merchant_id: trade.merchant_id.clone(),
            terminal_id: None,
            batch_no: None,
            stan: None,
            txn_id: None,
            terminal_amount_minor: None,
            host_amount_minor: Some(trade.amount.minor()),
            currency: difference.currency.clone(),
            details: json!({
                "channel": self.channel.as_str(),
                "reference": trade.out_trade_no,
                "amount_minor": amount_minor,
                "wallet_reference": trade.reference,
                "qr_trade_id": trade.id,
                "channel_amount_minor": channel_minor,
                "kassa_amount_minor": trade.amount.minor(),
                "kassa_status": trade.status.as_str(),
                "reason": difference.reason,
                "run_id": self.run_id,
                "business_date": self.date.to_string(),
                "statement_line_no": difference.statement_line_no,
                "statement_line": difference.statement_line,
            }),
            created_at_ms: self.reconciler.clock.now_ms(),
        })
    }

    async fn flush(&mut self) -> Result<(), ReconError> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let ops = std::mem::take(&mut self.ops);
        self.store().commit(WriteUnit::ops(ops)).await?;
        Ok(())
    }
}

fn trade_json(trade: &ReconTradeRecord) -> serde_json::Value {
    json!({
        "qr_trade_id": trade.id,
        "merchant_id": trade.merchant_id,
        "out_trade_no": trade.out_trade_no,
        "reference": trade.reference,
        "wallet": trade.wallet.map(Channel::as_str),
        "status": trade.status.as_str(),
        "amount_minor": trade.amount.minor(),
        "currency": trade.amount.currency().code(),
        "refunded_minor": trade.refunded_minor,
        "fee_minor": trade.fee_minor,
        "order": trade.order.as_str(),
        "trade_no": trade.trade_no,
        "paid_at_ms": trade.paid_at_ms,
        "business_date": trade.business_date,
        "amount_correction": amount_correction_json(trade.amount_correction.as_ref()),
    })
}

fn refund_json(refund: &ReconRefundRecord) -> serde_json::Value {
    json!({
        "qr_refund_id": refund.id,
        "refund_reference": refund.refund_reference,
        "trade_reference": refund.trade_reference,
        "merchant_id": refund.merchant_id,
        "out_trade_no": refund.out_trade_no,
        "status": refund.status.as_str(),
        "amount_minor": refund.amount.minor(),
        "currency": refund.amount.currency().code(),
        "created_at_ms": refund.created_at_ms,
    })
}

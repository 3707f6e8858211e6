//! The one write path: group commit.
//!
//! Every write is a [`WriteUnit`] sent to the committer over a bounded channel. The committer
//! takes whatever units are waiting (up to `batch_units_max`), applies them all in ONE database
//! transaction — one fsync — and only after the commit returned tells each caller its outcome.
//! So an approval is durable before anybody can answer it, and concurrent approvals share the
//! cost of the commit instead of queueing behind one fsync each.
//!
//! What a unit is and how its guard decides what is written is `crate::core::unit`. If the
//! database refuses a batch, each of its units is retried alone, so one bad unit cannot fail
//! its neighbours.
//!
//! A backend whose server runs transactions concurrently (PostgreSQL) may give the committer
//! several writers: each takes the units waiting when it is free, so one batch is built and
//! sent while another waits for its commit's flush. Batches in flight together are independent
//! (a caller waits for its own commit before it writes again); the database's unique indexes
//! and row locks order what they share, as they do for several hosts on one database.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::core::unit::{BatchWriter, UnitOutcome, WriteUnit};
use crate::StoreError;

/// Limits of the committer.
#[derive(Debug, Clone, Copy)]
pub struct CommitterLimits {
    /// Units waiting for the committer; senders wait (back-pressure) beyond it.
    pub queue_units_max: usize,
    /// Units applied in one database transaction.
    pub batch_units_max: usize,
    /// How long a caller waits for its unit's outcome, queueing included
    /// ([`crate::timeouts::COMMIT_REPLY_DEADLINE_MS`]).
    pub reply_deadline_ms: u64,
}

impl Default for CommitterLimits {
    fn default() -> Self {
        CommitterLimits {
            queue_units_max: 16_384,
            batch_units_max: 1_024,
            reply_deadline_ms: crate::timeouts::COMMIT_REPLY_DEADLINE_MS,
        }
    }
}

struct Request {
    unit: WriteUnit,
    reply: oneshot::Sender<Result<UnitOutcome, StoreError>>,
}

/// Counters the committer keeps for metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Batches committed.
    pub batches: std::sync::atomic::AtomicU64,
    /// Units committed.
    pub units: std::sync::atomic::AtomicU64,
    /// Total time spent in commits, microseconds.
    pub commit_micros: std::sync::atomic::AtomicU64,
}

/// The sending side of the group committer. Cloneable; dropping every clone stops the writer
/// after it has committed what it holds.
#[derive(Clone, Debug)]
pub struct Committer {
    sender: mpsc::Sender<Request>,
    stats: std::sync::Arc<CommitStats>,
    reply_deadline: Duration,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").finish_non_exhaustive()
    }
}

impl Committer {
    /// Submits a unit and waits until the batch holding it committed (or failed), at most the
    /// reply deadline. A unit that could not even be queued in time is [`StoreError::Timeout`]
    /// (never written); one queued whose outcome did not come back in time is
    /// [`StoreError::CommitUnknown`]: the committer still holds it and may commit it, so the
    /// caller must not treat it as failed. Sending the same unit again is safe (its guard).
    pub async fn commit(&self, unit: WriteUnit) -> Result<UnitOutcome, StoreError> {
        let deadline = tokio::time::Instant::now() + self.reply_deadline;
        let (reply, answer) = oneshot::channel();
        match tokio::time::timeout_at(deadline, self.sender.send(Request { unit, reply })).await {
            Ok(sent) => sent.map_err(|_| StoreError::Closed)?,
            Err(_) => {
                return Err(StoreError::Timeout(format!(
                    "the commit queue stayed full for {} ms",
                    self.reply_deadline.as_millis()
                )))
            }
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(answer) => answer.map_err(|_| StoreError::Closed)?,
            Err(_) => Err(StoreError::CommitUnknown(format!(
                "no outcome from the committer within {} ms",
                self.reply_deadline.as_millis()
            ))),
        }
    }

    /// The committer's counters.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// The committer's counters, shared: for a reader that must not keep the committer open
    /// (a clone of [`Committer`] keeps its writer running until every clone is dropped).
    pub fn shared_stats(&self) -> std::sync::Arc<CommitStats> {
        std::sync::Arc::clone(&self.stats)
    }
}

/// Commits `units` as ONE batch of a committer of its own over `writer` (through the
/// committer's whole path, a refused batch retried unit by unit) and returns each unit's
/// result, in order. For tests: batches of the shared committer form as callers happen to come.
#[cfg(feature = "testing")]
pub(crate) async fn commit_as_one_batch<W: BatchWriter + 'static>(
    writer: W,
    units: Vec<WriteUnit>,
) -> Vec<Result<UnitOutcome, StoreError>> {
    let count = units.len().max(1);
    let (committer, run) = committer(
        vec![writer],
        CommitterLimits { queue_units_max: count, batch_units_max: count, ..CommitterLimits::default() },
    );
    let mut answers = Vec::with_capacity(units.len());
    for unit in units {
        let (reply, answer) = oneshot::channel();
        // The loop is not running yet: every unit is waiting when it takes its first batch.
        if committer.sender.try_send(Request { unit, reply }).is_err() {
            return vec![Err(StoreError::Closed)];
        }
        answers.push(answer);
    }
    drop(committer);
    // The loop on a thread of its own, as the SQLite store runs it (its calls block).
    let runtime = tokio::runtime::Handle::current();
    if tokio::task::spawn_blocking(move || runtime.block_on(run)).await.is_err() {
        return vec![Err(StoreError::Closed)];
    }
    let mut results = Vec::with_capacity(answers.len());
    for answer in answers {
        results.push(answer.await.unwrap_or(Err(StoreError::Closed)));
    }
    results
}

/// Starts a committer whose loops, one per writer, run on the current async context; returns
/// the sending side and the loops' future (run it on a task or a dedicated thread). Each loop
/// takes the units waiting when its writer is free, so with several writers batches overlap.
pub(crate) fn committer<W: BatchWriter + 'static>(
    writers: Vec<W>,
    limits: CommitterLimits,
) -> (Committer, impl std::future::Future<Output = ()> + Send + 'static) {
    let (sender, receiver) = mpsc::channel::<Request>(limits.queue_units_max);
    let receiver = std::sync::Arc::new(tokio::sync::Mutex::new(receiver));
    let stats = std::sync::Arc::new(CommitStats::default());
    let loops = writers.into_iter().map(|mut writer| {
        let (receiver, stats) = (std::sync::Arc::clone(&receiver), std::sync::Arc::clone(&stats));
        async move {
            let mut batch: Vec<Request> = Vec::with_capacity(limits.batch_units_max);
            loop {
                {
                    // One loop at a time takes a batch; the others wait their turn here.
                    let mut receiver = receiver.lock().await;
                    let Some(first) = receiver.recv().await else { return };
                    batch.push(first);
                    while batch.len() < limits.batch_units_max {
                        match receiver.try_recv() {
                            Ok(request) => batch.push(request),
                            Err(_) => break,
                        }
                    }
                }
                commit_batch(&mut writer, &mut batch, &stats).await;
            }
        }
    });
    let run = futures_util::future::join_all(loops.collect::<Vec<_>>());
    let run = async move {
        run.await;
    };
    (Committer { sender, stats, reply_deadline: Duration::from_millis(limits.reply_deadline_ms) }, run)
}

fn record(stats: &CommitStats, units: usize, elapsed: Duration) {
    use std::sync::atomic::Ordering::Relaxed;
    stats.batches.fetch_add(1, Relaxed);
    stats.units.fetch_add(units as u64, Relaxed);
    stats.commit_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Relaxed);
}

/// Writes the batch, counts what committed in `stats`, then replies: counted before anybody
/// hears back, so whoever reads the counters after an answer finds its batch in them.
async fn commit_batch<W: BatchWriter>(writer: &mut W, batch: &mut Vec<Request>, stats: &CommitStats) {
    let started = Instant::now();
    let (units, replies): (Vec<WriteUnit>, Vec<_>) = batch.drain(..).map(|r| (r.unit, r.reply)).unzip();
    match writer.write_batch(&units).await {
        Ok(outcomes) => {
            record(stats, units.len(), started.elapsed());
            debug_assert_eq!(outcomes.len(), replies.len());
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        // A batch refused for what one of its units holds (a constraint, a conflict) is retried
        // unit by unit so the others commit. A database that is unavailable refuses every unit
        // alike: retrying each would multiply the wait by the batch size.
        Err(error) if units.len() > 1 && !error.is_unavailable() => {
            tracing::warn!(%error, units = units.len(), "batch refused; retrying its units one by one");
            for (unit, reply) in units.iter().zip(replies) {
                let alone = Instant::now();
                let result = writer.write_batch(std::slice::from_ref(unit)).await;
                if result.is_ok() {
                    record(stats, 1, alone.elapsed());
                }
                let outcome =
                    result.and_then(|mut outcomes| outcomes.pop().ok_or(StoreError::Corrupt("no outcome".into())));
                let _ = reply.send(outcome);
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use async_trait::async_trait;

    use super::*;

    /// A writer stuck where no deadline of its own reaches (the SQLite writer thread blocked in
    /// the library): it never answers.
    struct Stuck;

    #[async_trait]
    impl BatchWriter for Stuck {
        async fn write_batch(&mut self, _units: &[WriteUnit]) -> Result<Vec<UnitOutcome>, StoreError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_writer_that_never_answers_is_an_unknown_outcome_not_a_hang() {
        let limits = CommitterLimits { queue_units_max: 1, batch_units_max: 1, reply_deadline_ms: 200 };
        let (committer, run) = committer(vec![Stuck], limits);
        tokio::spawn(run);
        let started = Instant::now();
        let first = committer.commit(WriteUnit::default()).await;
        assert!(matches!(first, Err(StoreError::CommitUnknown(_))), "it may still commit: {first:?}");
        // The writer holds the first unit, the queue the second: the third cannot be queued
        // and is known not to be written.
        let second = committer.clone();
        tokio::spawn(async move { second.commit(WriteUnit::default()).await });
        let mut third = committer.commit(WriteUnit::default()).await;
        for _ in 0..10 {
            if matches!(third, Err(StoreError::Timeout(_))) {
                break;
            }
            third = committer.commit(WriteUnit::default()).await;
        }
        assert!(matches!(third, Err(StoreError::Timeout(_))), "{third:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    /// Holds each batch until as many batches as its barrier counts are in flight at once.
    struct Together {
        barrier: std::sync::Arc<tokio::sync::Barrier>,
    }

    #[async_trait]
    impl BatchWriter for Together {
        async fn write_batch(&mut self, units: &[WriteUnit]) -> Result<Vec<UnitOutcome>, StoreError> {
            self.barrier.wait().await;
            Ok(units
                .iter()
                .map(|_| UnitOutcome::Committed { txn_id: None, entry_ids: vec![], reserved_ids: vec![] })
                .collect())
        }
    }

    /// With two writers, a second batch is written while the first still waits for its commit;
    /// every unit hears back once.
    #[tokio::test]
    async fn two_writers_commit_two_batches_at_once() {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let writers = (0..2).map(|_| Together { barrier: std::sync::Arc::clone(&barrier) }).collect();
        let (committer, run) = committer(writers, CommitterLimits { reply_deadline_ms: 5_000, ..Default::default() });
        tokio::spawn(run);
        let first = committer.clone();
        let first = tokio::spawn(async move { first.commit(WriteUnit::default()).await });
        // Once the first loop holds the first unit, the second unit goes to the second loop:
        // neither batch commits until both are in flight.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = tokio::time::timeout(Duration::from_secs(2), committer.commit(WriteUnit::default())).await;
        assert!(matches!(second, Ok(Ok(UnitOutcome::Committed { .. }))), "{second:?}");
        assert!(matches!(first.await.unwrap(), Ok(UnitOutcome::Committed { .. })));
        assert_eq!(committer.stats().batches.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    /// Refuses any batch of more than one unit with `error`; commits single units.
    struct RefusesBatches {
        error: StoreError,
        calls: usize,
    }

    #[async_trait]
    impl BatchWriter for RefusesBatches {
        async fn write_batch(&mut self, units: &[WriteUnit]) -> Result<Vec<UnitOutcome>, StoreError> {
            self.calls += 1;
            if units.len() > 1 {
                return Err(self.error.clone());
            }
            Ok(vec![UnitOutcome::Committed { txn_id: None, entry_ids: vec![], reserved_ids: vec![] }])
        }
    }

    #[tokio::test]
    async fn an_unavailable_database_is_not_retried_unit_by_unit() {
        for (error, retried) in
            [(StoreError::Database("23505".into()), true), (StoreError::Timeout("paused".into()), false)]
        {
            let mut writer = RefusesBatches { error: error.clone(), calls: 0 };
            let mut batch = Vec::new();
            let mut answers = Vec::new();
            for _ in 0..3 {
                let (reply, answer) = oneshot::channel();
                batch.push(Request { unit: WriteUnit::default(), reply });
                answers.push(answer);
            }
            commit_batch(&mut writer, &mut batch, &CommitStats::default()).await;
            assert_eq!(writer.calls, if retried { 4 } else { 1 }, "{error}");
            for answer in answers {
                assert_eq!(answer.await.unwrap().is_ok(), retried, "{error}");
            }
        }
    }
}

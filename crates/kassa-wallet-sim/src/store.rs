//! The simulator's books on disk: one SQLite file (`wallets.db`), WAL journal,
//! `synchronous=NORMAL`, mode 0600. A call is answered after its transaction committed to the
//! WAL: the books survive a restart and a crash (kill -9) of the process, which is what the
//! simulator promises; only a power cut could lose the last answers. Unlike Kassa's own store,
//! which fsyncs every commit, the stand-in for an outside provider does not pay an fsync per
//! call (with FULL it spent about a fifth of the host's CPU in the QR benchmark on them).
//!
//! One connection, used by one job at a time inside one `BEGIN IMMEDIATE` transaction, so the
//! engine's read-then-write steps never interleave. A job of one call (a payment, a query) runs on
//! the calling thread: it takes well under a millisecond, less than a hand-off to another thread
//! would cost. A statement, which reads a whole day, runs on Tokio's blocking pool. At most
//! [`DATABASE_JOBS_MAX`] jobs wait for the connection; a job that cannot have it within
//! [`DATABASE_WAIT_MS`] fails (the API answers a system error).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::Semaphore;

use crate::SimError;

/// Jobs queued for or holding the connection at once.
pub const DATABASE_JOBS_MAX: usize = 256;
/// Longest wait for a place among [`DATABASE_JOBS_MAX`].
pub const DATABASE_WAIT_MS: u64 = 5_000;
/// SQLite's own wait for a lock held by another process on the same file.
pub const SQLITE_BUSY_TIMEOUT_MS: u64 = 5_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS trades (
    id INTEGER PRIMARY KEY,
    wallet TEXT NOT NULL,
    out_trade_no TEXT NOT NULL,
    trade_no TEXT NOT NULL UNIQUE,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    state TEXT NOT NULL,
    closed_by TEXT,
    refunded_minor INTEGER NOT NULL DEFAULT 0,
    behaviour TEXT NOT NULL,
    code TEXT,
    payer TEXT,
    subject TEXT NOT NULL,
    notify_url TEXT,
    qr_id TEXT UNIQUE,
    created_ms INTEGER NOT NULL,
    paid_ms INTEGER,
    paid_day TEXT,
    closed_ms INTEGER,
    expires_ms INTEGER NOT NULL,
    confirm_at_ms INTEGER,
    omit_from_statement INTEGER NOT NULL DEFAULT 0,
    prev_state TEXT NOT NULL DEFAULT 'absent',
    prev_closed_by TEXT,
    prev_paid_ms INTEGER,
    prev_refunded_minor INTEGER NOT NULL DEFAULT 0,
    UNIQUE (wallet, out_trade_no)
);
CREATE INDEX IF NOT EXISTS trades_waiting ON trades (state, expires_ms);
CREATE INDEX IF NOT EXISTS trades_paid_day ON trades (wallet, paid_day);
CREATE TABLE IF NOT EXISTS refunds (
    id INTEGER PRIMARY KEY,
    trade_id INTEGER NOT NULL REFERENCES trades (id),
    out_request_no TEXT,
    refund_id TEXT NOT NULL UNIQUE,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    fee_returned_minor INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    day TEXT NOT NULL,
    UNIQUE (trade_id, out_request_no)
);
CREATE INDEX IF NOT EXISTS refunds_day ON refunds (day);
CREATE INDEX IF NOT EXISTS refunds_out_request_no ON refunds (out_request_no);
CREATE TABLE IF NOT EXISTS payers (
    wallet TEXT NOT NULL,
    payer TEXT NOT NULL,
    balance_minor INTEGER,
    paid_minor INTEGER NOT NULL DEFAULT 0,
    refunded_minor INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (wallet, payer)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    trade_id INTEGER NOT NULL REFERENCES trades (id),
    status TEXT NOT NULL,
    notify_url TEXT NOT NULL,
    notify_id TEXT NOT NULL UNIQUE,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_ms);
CREATE TABLE IF NOT EXISTS bill_tokens (
    token TEXT PRIMARY KEY,
    wallet TEXT NOT NULL,
    day TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
";

/// The database.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    /// Only locked by the holder of `turn`, so never contended.
    conn: Arc<Mutex<Connection>>,
    /// One permit: whose turn it is to use the connection.
    turn: Arc<Semaphore>,
    /// Jobs waiting for or holding the turn.
    jobs: Arc<AtomicUsize>,
}

/// A job's place among [`DATABASE_JOBS_MAX`], given back when dropped.
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Creates `path` empty with mode 0600 unless it exists, so that SQLite (which gives its `-wal`
/// and `-shm` files the database's mode) never creates any of them readable by others.
pub(crate) fn create_private_file(path: &Path) -> Result<(), SimError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(SimError::Io(format!("{}: {error}", path.display()))),
    }
}

impl Store {
    /// Opens (creating) the database at `path`.
    pub(crate) fn open(path: &Path) -> Result<Store, SimError> {
        create_private_file(path)?;
        let database = |error: rusqlite::Error| SimError::Database(format!("{}: {error}", path.display()));
        let conn = Connection::open(path).map_err(database)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -16384; \
             PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};"
        ))
        .map_err(database)?;
        conn.execute_batch(SCHEMA).map_err(database)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            turn: Arc::new(Semaphore::new(1)),
            jobs: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Waits for the connection: `Busy` when [`DATABASE_JOBS_MAX`] jobs already wait, or when
    /// the turn does not come within [`DATABASE_WAIT_MS`].
    async fn turn(&self) -> Result<(Place, tokio::sync::OwnedSemaphorePermit), SimError> {
        if self.jobs.fetch_add(1, Ordering::AcqRel) >= DATABASE_JOBS_MAX {
            self.jobs.fetch_sub(1, Ordering::AcqRel);
            return Err(SimError::Busy);
        }
        let place = Place(Arc::clone(&self.jobs));
        let wait = Duration::from_millis(DATABASE_WAIT_MS);
        match tokio::time::timeout(wait, Arc::clone(&self.turn).acquire_owned()).await {
            Ok(Ok(permit)) => Ok((place, permit)),
            Ok(Err(_)) | Err(_) => Err(SimError::Busy),
        }
    }

    /// Runs `job` of one call in one immediate transaction on the calling thread and commits it.
    pub(crate) async fn run<T, F>(&self, job: F) -> Result<T, SimError>
    where
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    {
        let _turn = self.turn().await?;
        transact(&self.conn, job)
    }

    /// [`Store::run`] on the blocking pool, for a job that reads a lot (a day's statement).
    pub(crate) async fn run_long<T, F>(&self, job: F) -> Result<T, SimError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let turn = self.turn().await?;
        let conn = Arc::clone(&self.conn);
        let joined = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            transact(&conn, job)
        })
        .await;
        joined.map_err(|error| SimError::Database(format!("a database job failed: {error}")))?
    }
}

fn transact<T, F>(conn: &Mutex<Connection>, job: F) -> Result<T, SimError>
where
    F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
{
    let mut conn = conn.lock().map_err(|_| SimError::Database("the connection was poisoned".into()))?;
    let database = |error: rusqlite::Error| SimError::Database(error.to_string());
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(database)?;
    let value = job(&tx).map_err(database)?;
    tx.commit().map_err(database)?;
    Ok(value)
}

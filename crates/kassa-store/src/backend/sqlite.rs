//! The SQLite backend: embedded, WAL journal, `synchronous=FULL` (a commit is on disk when it
//! returns), one writer connection on a dedicated thread running the group committer, and a
//! small pool of read connections. A read runs on the calling thread (most are point lookups of a
//! few microseconds, cheaper than any hand-off to another thread) until it has used
//! [`INLINE_READ_STEPS`] SQLite VM steps; one that runs longer is interrupted and run again on the
//! blocking pool, so a long scan never holds up an async worker.
//!
//! Checkpoints (copying the WAL's pages into the database file, and syncing it) run on a
//! thread of their own ([`Checkpointer`]), not inside a commit: the writer only restarts the
//! WAL from its beginning, a cheap step once the checkpointer has copied nearly all of it, when
//! it has grown past [`WAL_RESTART_FRAMES`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;

use crate::core::committer;
use crate::core::migrate;
use crate::core::queries::{Reader, SqlReads};
use crate::core::unit::{apply_units, BatchWriter, Exec, Sequence, Statement, UnitOutcome, WriteUnit};
use crate::core::value::{Row, Value};
use crate::{timeouts, AdminStore, RestoreReport, Store, StoreError, StoreOptions};

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Bool(v) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*v))),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

fn db_error(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        // Another connection held the write lock past the busy timeout: nothing was written.
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => StoreError::Timeout(format!(
            "the database stayed locked for {} ms: {error}",
            timeouts::SQLITE_BUSY_TIMEOUT_MS
        )),
        Some(rusqlite::ErrorCode::ReadOnly) => StoreError::ReadOnly(error.to_string()),
        _ => StoreError::Database(error.to_string()),
    }
}

/// Creates the database file empty with mode 0600 unless it exists, so SQLite (which gives its
/// `-wal`, `-shm` and journal files the database file's mode) never creates any of them
/// readable by others.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
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
        Err(error) => Err(StoreError::Unreachable(format!("{}: {error}", path.display()))),
    }
}

/// Creates `dir` and its parents, those created here with mode 0700.
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| StoreError::Unreachable(format!("{}: {e}", dir.display())))
}

/// Whether SQLite can write the database at `path` through `conn`: the connection is not
/// read-only (SQLite opens a file it may not write read-only, silently) and the directory
/// takes new files (the WAL, its index, journals). Tried for real, since permission bits do
/// not tell what root, an immutable file or a read-only mount allow.
fn check_writable(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(db_error)? {
        return Err(StoreError::ReadOnly(format!("{} cannot be written", path.display())));
    }
    // SQLite reuses a descriptor this process opened earlier on the same file, so the
    // connection above may not notice a file made read-only since: open it afresh (without
    // truncating or writing anything), and its WAL.
    let wal = path.with_file_name(format!(
        "{}-wal",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    for file in [path, wal.as_path()] {
        match std::fs::OpenOptions::new().write(true).open(file) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && file == wal => {}
            Err(error) => return Err(StoreError::ReadOnly(format!("{} cannot be written: {error}", file.display()))),
        }
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let probe = dir.join(format!(".kassa-write-probe-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(error) => Err(StoreError::ReadOnly(format!("{} takes no new files: {error}", dir.display()))),
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let refused = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            StoreError::Corrupt(format!("{} is not a SQLite database (damaged, or another file)", path.display()))
        }
        _ => StoreError::Unreachable(format!("{}: {e}", path.display())),
    };
    let conn = Connection::open(path).map_err(refused)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {};",
        timeouts::SQLITE_BUSY_TIMEOUT_MS
    ))
    .map_err(refused)?;
    // Fail early and clearly on a file that is not a database.
    conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |_| Ok(())).map_err(refused)?;
    Ok(conn)
}

fn run_query(conn: &Connection, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(db_error)?;
    let columns = statement.column_count();
    let mut rows = statement.query(rusqlite::params_from_iter(params.iter())).map_err(db_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_error)? {
        let mut values = Vec::with_capacity(columns);
        for index in 0..columns {
            values.push(match row.get_ref(index).map_err(db_error)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Real(_) => return Err(StoreError::Corrupt("floating-point value in the database".into())),
                ValueRef::Text(v) => {
                    Value::Text(String::from_utf8(v.to_vec()).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                }
                ValueRef::Blob(v) => Value::Bytes(v.to_vec()),
            });
        }
        out.push(Row(values));
    }
    Ok(out)
}

fn run_execute(conn: &Connection, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(db_error)?;
    let changed = statement.execute(rusqlite::params_from_iter(params.iter())).map_err(db_error)?;
    Ok(changed as u64)
}

/// SQLite VM steps a read may take on the calling thread before it moves to the blocking pool:
/// a point lookup by key takes well under a thousand, and this many run in well under a
/// millisecond.
pub(crate) const INLINE_READ_STEPS: i32 = 20_000;

/// A read connection, and the state its progress handler reads: a read running inline is
/// interrupted once it passes [`INLINE_READ_STEPS`], and a read its caller gave up on (past its
/// deadline, on the blocking pool) at the next handler call.
struct ReadConnection {
    conn: Connection,
    inline: Arc<AtomicU8>,
}

/// [`ReadConnection::inline`]: no read, or one on the blocking pool.
const READ_ANYWHERE: u8 = 0;
/// [`ReadConnection::inline`]: a read on the calling thread.
const READ_INLINE: u8 = 1;
/// [`ReadConnection::inline`]: the inline read was interrupted.
const READ_INTERRUPTED: u8 = 2;
/// [`ReadConnection::inline`]: the read's caller gave up on it: stop it.
const READ_ABANDONED: u8 = 3;

impl ReadConnection {
    fn open(path: &Path) -> Result<ReadConnection, StoreError> {
        let conn = open_connection(path)?;
        conn.execute_batch(&format!("PRAGMA cache_size = -{READER_CACHE_KIB}")).map_err(db_error)?;
        let inline = Arc::new(AtomicU8::new(READ_ANYWHERE));
        let state = inline.clone();
        conn.progress_handler(
            INLINE_READ_STEPS,
            Some(move || {
                state.compare_exchange(READ_INLINE, READ_INTERRUPTED, Ordering::Relaxed, Ordering::Relaxed).is_ok()
                    || state.load(Ordering::Relaxed) == READ_ABANDONED
            }),
        );
        Ok(ReadConnection { conn, inline })
    }

    /// Runs the read here; `None` when it took too long for that (its partial result is dropped).
    fn run_inline(&self, sql: &str, params: &[Value]) -> Option<Result<Vec<Row>, StoreError>> {
        self.inline.store(READ_INLINE, Ordering::Relaxed);
        let result = run_query(&self.conn, sql, params);
        let interrupted = self.inline.swap(READ_ANYWHERE, Ordering::Relaxed) == READ_INTERRUPTED;
        (!interrupted).then_some(result)
    }
}

/// The read pool.
struct SqliteReader {
    path: PathBuf,
    idle: Arc<Mutex<Vec<ReadConnection>>>,
    permits: tokio::sync::Semaphore,
    /// Connections kept open: a read past its deadline gives its permit back at once, so a new
    /// connection may open before its own comes back.
    connections_max: usize,
}

impl SqliteReader {
    fn new(path: &Path, idle: Vec<ReadConnection>, connections_max: usize) -> SqliteReader {
        SqliteReader {
            path: path.to_owned(),
            idle: Arc::new(Mutex::new(idle)),
            permits: tokio::sync::Semaphore::new(connections_max.max(1)),
            connections_max: connections_max.max(1),
        }
    }
}

#[async_trait]
impl Reader for SqliteReader {
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        self.query_within(sql, params, std::time::Duration::from_millis(timeouts::READ_DEADLINE_MS)).await
    }
}

impl SqliteReader {
    /// A read, given up after `deadline`.
    async fn query_within(
        &self,
        sql: &str,
        params: &[Value],
        deadline: std::time::Duration,
    ) -> Result<Vec<Row>, StoreError> {
        let _permit = self.permits.acquire().await.map_err(|_| StoreError::Closed)?;
        let conn = self.idle.lock().map_err(|_| StoreError::Closed)?.pop();
        let conn = match conn {
            Some(conn) => conn,
            None => ReadConnection::open(&self.path)?,
        };
        if let Some(result) = conn.run_inline(sql, params) {
            return_to(&self.idle, conn, self.connections_max);
            return result;
        }
        // A long read, on the blocking pool.
        let state = Arc::clone(&conn.inline);
        let (sql, params) = (sql.to_owned(), params.to_vec());
        let mut task = tokio::task::spawn_blocking(move || {
            let result = run_query(&conn.conn, &sql, &params);
            (conn, result)
        });
        match tokio::time::timeout(deadline, &mut task).await {
            Ok(Ok((conn, result))) => {
                return_to(&self.idle, conn, self.connections_max);
                result
            }
            Ok(Err(error)) => Err(StoreError::Database(format!("reader task failed: {error}"))),
            Err(_) => {
                // Stop the statement at its progress handler's next call (well under a
                // millisecond of work), so a read nobody waits for does not go on competing
                // with the others; its connection then goes back to the pool.
                state.store(READ_ABANDONED, Ordering::Relaxed);
                let (idle, max) = (Arc::clone(&self.idle), self.connections_max);
                tokio::spawn(async move {
                    if let Ok((conn, _)) = task.await {
                        return_to(&idle, conn, max);
                    }
                });
                Err(StoreError::Timeout(format!("no answer to a read within {} ms", deadline.as_millis())))
            }
        }
    }
}

/// Puts a read connection back into the pool, ready for a next read (or closes it when the
/// pool holds `max` already).
fn return_to(idle: &Mutex<Vec<ReadConnection>>, conn: ReadConnection, max: usize) {
    conn.inline.store(READ_ANYWHERE, Ordering::Relaxed);
    if let Ok(mut idle) = idle.lock() {
        if idle.len() < max {
            idle.push(conn);
        }
    }
}

/// The writer connection, owned by the committer thread.
struct SqliteWriter {
    conn: Connection,
    next_txn_id: i64,
    next_entry_id: i64,
    /// `None` when its connection could not be opened: the writer then checkpoints inside its
    /// commits, SQLite's default.
    checkpointer: Option<Checkpointer>,
}

impl SqliteWriter {
    fn new(conn: Connection, checkpointer: Option<Checkpointer>) -> Result<SqliteWriter, StoreError> {
        let (next_txn_id, next_entry_id) = SqliteWriter::new_ids(&conn)?;
        Ok(SqliteWriter { conn, next_txn_id, next_entry_id, checkpointer })
    }

    /// Restarts the WAL from its beginning once it is longer than [`WAL_RESTART_FRAMES`]: under
    /// a steady load the checkpointer copies the WAL but never finds it all copied at the moment
    /// a batch begins (when SQLite would restart it on its own), so the file would only grow.
    /// Runs between batches, and waits at most [`WAL_RESTART_WAIT_MS`] for readers still on an
    /// older snapshot: when one holds it longer (a long report), the next try waits for the
    /// checkpointer's next round instead of stalling every batch until the read ends.
    fn restart_long_wal(&mut self) {
        let Some(checkpointer) = &self.checkpointer else { return };
        if checkpointer.wal_frames.load(Ordering::Relaxed) <= WAL_RESTART_FRAMES {
            return;
        }
        let wait = |ms| self.conn.busy_timeout(std::time::Duration::from_millis(ms)).map_err(db_error);
        let restarted = wait(WAL_RESTART_WAIT_MS).and_then(|()| checkpoint(&self.conn, "RESTART"));
        if let Err(error) = wait(timeouts::SQLITE_BUSY_TIMEOUT_MS) {
            tracing::warn!(%error, "cannot set the writer's busy timeout back");
        }
        match restarted {
            Ok((false, frames, _)) => checkpointer.wal_frames.store(frames, Ordering::Relaxed),
            // Blocked by a reader: the checkpointer's next round reports the length again.
            Ok((true, _, _)) => checkpointer.wal_frames.store(0, Ordering::Relaxed),
            Err(error) => tracing::warn!(%error, "cannot restart the SQLite WAL"),
        }
    }
}

/// WAL frames (pages) past which the writer restarts the WAL ([`SqliteWriter::restart_long_wal`]):
/// 64 MiB at SQLite's 4 KiB pages, some seconds of sales at full speed.
const WAL_RESTART_FRAMES: i64 = 16_384;
/// Bytes the WAL file keeps after a restart (`journal_size_limit`).
const WAL_KEPT_BYTES: i64 = 64 * 1024 * 1024;
/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_INTERVAL_MS: u64 = 100;
/// How long the checkpointer's own truncation of an idle WAL waits for a reader or the writer
/// (a batch that begins meanwhile waits for it as long at most).
const CHECKPOINT_BUSY_TIMEOUT_MS: u64 = 10;
/// How long the writer's restart of a long WAL waits for readers on an older snapshot.
const WAL_RESTART_WAIT_MS: u64 = 2;

/// `PRAGMA wal_checkpoint(mode)`: whether it was blocked, the WAL's frames, the frames copied.
fn checkpoint(conn: &Connection, mode: &str) -> Result<(bool, i64, i64), StoreError> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get::<_, i64>(0)? != 0, r.get(1)?, r.get(2)?))
    })
    .map_err(db_error)
}

/// The background checkpointer of a writer: a thread with a connection of its own that, every
/// [`CHECKPOINT_INTERVAL_MS`], copies what the WAL holds into the database file (`PASSIVE`: it
/// never blocks the writer or a reader), and truncates the WAL once nothing was written for a
/// round. Stops when the writer drops it.
struct Checkpointer {
    /// The WAL's length in frames, as the last checkpoint found it.
    wal_frames: Arc<AtomicI64>,
    _stop: std::sync::mpsc::Sender<()>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = open_connection(path)?;
        conn.busy_timeout(std::time::Duration::from_millis(CHECKPOINT_BUSY_TIMEOUT_MS)).map_err(db_error)?;
        let wal_frames = Arc::new(AtomicI64::new(0));
        let (stop, stopped) = std::sync::mpsc::channel();
        let frames = wal_frames.clone();
        std::thread::Builder::new()
            .name("kassa-sqlite-checkpointer".into())
            .spawn(move || run_checkpointer(&conn, &frames, &stopped))
            .map_err(|e| StoreError::Database(format!("cannot start the checkpointer thread: {e}")))?;
        Ok(Checkpointer { wal_frames, _stop: stop })
    }
}

fn run_checkpointer(conn: &Connection, wal_frames: &AtomicI64, stopped: &std::sync::mpsc::Receiver<()>) {
    let interval = std::time::Duration::from_millis(CHECKPOINT_INTERVAL_MS);
    let mut frames_before = 0;
    // Ends when the writer's sender is dropped (`Disconnected`).
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
        let frames = match checkpoint(conn, "PASSIVE") {
            // The WAL has not grown since the last round: nothing is being written, so the
            // file can go (a truncation blocks the writer, for the copy of a few pages at most).
            Ok((_, frames, _)) if frames > 0 && frames == frames_before => match checkpoint(conn, "TRUNCATE") {
                Ok((false, _, _)) => 0,
                _ => frames,
            },
            Ok((_, frames, _)) => frames,
            Err(error) => {
                tracing::warn!(%error, "SQLite checkpoint failed");
                frames_before
            }
        };
        wal_frames.store(frames, Ordering::Relaxed);
        frames_before = frames;
    }
}

#[async_trait]
impl Exec for SqliteWriter {
    async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        run_query(&self.conn, sql, params)
    }

    async fn execute_many(&mut self, statements: &[Statement]) -> Result<Vec<u64>, StoreError> {
        statements.iter().map(|s| run_execute(&self.conn, s.sql, &s.params)).collect()
    }

    async fn next_ids(&mut self, sequence: Sequence, count: usize) -> Result<Vec<i64>, StoreError> {
        let next = match sequence {
            Sequence::Transactions => &mut self.next_txn_id,
            Sequence::LedgerEntries => &mut self.next_entry_id,
        };
        let count = i64::try_from(count).map_err(|_| StoreError::Corrupt("id count".into()))?;
        let ids = (*next..*next + count).collect();
        *next += count;
        Ok(ids)
    }
}

#[async_trait]
impl BatchWriter for SqliteWriter {
    async fn write_batch(&mut self, units: &[WriteUnit]) -> Result<Vec<UnitOutcome>, StoreError> {
        self.restart_long_wal();
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(db_error)?;
        match apply_units(self, units).await {
            Ok(outcomes) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => Ok(outcomes),
                Err(error) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    Err(match db_error(error) {
                        // COMMIT waited for readers or a lock and gave up: the transaction is
                        // still open here and rolled back above, nothing was written.
                        refused @ (StoreError::Timeout(_) | StoreError::ReadOnly(_)) => refused,
                        // An I/O error while writing or syncing the WAL: its frames may be on
                        // disk and recovered at the next open.
                        other => StoreError::CommitUnknown(other.to_string()),
                    })
                }
            },
            Err(error) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                // Ids handed out in the failed batch were never written; reuse is harmless but
                // re-reading keeps them dense and correct.
                if let Ok(fresh) = SqliteWriter::new_ids(&self.conn) {
                    (self.next_txn_id, self.next_entry_id) = fresh;
                }
                Err(error)
            }
        }
    }
}

impl SqliteWriter {
    /// The next ids to hand out: past every row, and past every id reserved for issuer
    /// requests (an id the issuer may have heard of is never used again).
    fn new_ids(conn: &Connection) -> Result<(i64, i64), StoreError> {
        let max = |sql: &str| -> Result<i64, StoreError> { conn.query_row(sql, [], |r| r.get(0)).map_err(db_error) };
        let txns = max("SELECT COALESCE(MAX(id), 0) FROM transactions")?;
        let reserved = max("SELECT COALESCE(MAX(last_id), 0) FROM gateway_id_blocks")?;
        Ok((txns.max(reserved) + 1, max("SELECT COALESCE(MAX(id), 0) FROM ledger_entries")? + 1))
    }
}

fn migrate_connection(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(migrate::CREATE_TABLE).map_err(db_error)?;
    let applied = applied_migrations(conn)?;
    for migration in migrate::pending(migrate::SQLITE, &applied)? {
        let tx = conn.transaction().map_err(db_error)?;
        tx.execute_batch(migration.sql)
            .map_err(|e| StoreError::Schema(format!("migration {}: {e}", migration.version)))?;
        tx.execute(
            "INSERT INTO kassa_schema_migrations (version, name, checksum, applied_at_ms) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![migration.version, migration.name, migration.checksum(), now_ms()],
        )
        .map_err(db_error)?;
        tx.commit().map_err(db_error)?;
        tracing::info!(version = migration.version, name = migration.name, "applied migration");
    }
    Ok(())
}

fn applied_migrations(conn: &Connection) -> Result<Vec<(i64, String)>, StoreError> {
    let exists: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'kassa_schema_migrations'", [], |r| r.get(0))
        .map_err(db_error)?;
    if exists == 0 {
        return Ok(Vec::new());
    }
    let mut statement =
        conn.prepare("SELECT version, checksum FROM kassa_schema_migrations ORDER BY version").map_err(db_error)?;
    let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_error)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

struct SqliteAdmin {
    path: PathBuf,
}

#[async_trait]
impl AdminStore for SqliteAdmin {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = open_connection(&path)?;
            migrate_connection(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Database(e.to_string()))?
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = open_connection(&path)?;
            let applied = applied_migrations(&conn)?;
            if !migrate::pending(migrate::SQLITE, &applied)?.is_empty() {
                return Err(StoreError::Schema("migrations are not applied (run `kassa migrate`)".into()));
            }
            check_writable(&conn, &path)
        })
        .await
        .map_err(|e| StoreError::Database(e.to_string()))?
    }

    async fn not_durable_because(&self) -> Result<Option<String>, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = open_connection(&path)?;
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(db_error)?;
            let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).map_err(db_error)?;
            // 2 = FULL, 3 = EXTRA. The writer connection sets FULL; this one was opened the same way.
            Ok(if !mode.eq_ignore_ascii_case("wal") {
                Some(format!("SQLite journal_mode = {mode}, not WAL"))
            } else if sync < 2 {
                Some(format!("SQLite synchronous = {sync}, not FULL"))
            } else {
                None
            })
        })
        .await
        .map_err(|e| StoreError::Database(e.to_string()))?
    }

    async fn backup(&self, target: &Path) -> Result<(), StoreError> {
        let path = self.path.clone();
        let target = target.to_owned();
        tokio::task::spawn_blocking(move || {
            let conn = open_connection(&path)?;
            // Written beside the target and renamed, so a crash never leaves half a backup under
            // its name. The empty file is created 0600 first: VACUUM INTO fills an empty file
            // and keeps its mode, so the copy of the data is never readable by others.
            let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let temporary = target.with_file_name(format!(".{name}.partial-{}", std::process::id()));
            let _ = std::fs::remove_file(&temporary);
            create_private_file(&temporary)?;
            // VACUUM INTO reads one consistent snapshot while writers go on.
            let written = conn
                .execute("VACUUM INTO ?1", [temporary.to_string_lossy().as_ref()])
                .map_err(db_error)
                .and_then(|_| {
                    std::fs::File::open(&temporary)
                        .and_then(|file| file.sync_all())
                        .and_then(|()| std::fs::rename(&temporary, &target))
                        .map_err(|e| StoreError::Database(format!("{}: {e}", target.display())))
                });
            if written.is_err() {
                let _ = std::fs::remove_file(&temporary);
            }
            written
        })
        .await
        .map_err(|e| StoreError::Database(e.to_string()))?
    }

    async fn restore(&self, source: &Path) -> Result<RestoreReport, StoreError> {
        let report = verify_database(source).await?;
        let path = self.path.clone();
        let source = source.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut conn = open_connection(&path)?;
            // The online backup API copies every page under an exclusive lock: the database is
            // either the old one or the restored one, never a mix.
            conn.restore(rusqlite::MAIN_DB, &source, None::<fn(rusqlite::backup::Progress)>).map_err(db_error)
        })
        .await
        .map_err(|e| StoreError::Database(e.to_string()))??;
        let after = verify_database(&self.path).await?;
        if after != report {
            return Err(StoreError::Corrupt(format!(
                "restored database differs from the backup: {after:?} vs {report:?}"
            )));
        }
        Ok(report)
    }
}

/// Opens `path` read-only-in-spirit and checks it could be served: SQLite's integrity check,
/// every migration applied with unchanged checksums, a balanced ledger whose cached balances
/// match its postings, and an unbroken audit chain.
async fn verify_database(path: &Path) -> Result<RestoreReport, StoreError> {
    if !path.is_file() {
        return Err(StoreError::Unreachable(format!("{} is not a file", path.display())));
    }
    let probe = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let conn = open_connection(&probe)?;
        let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(db_error)?;
        if integrity != "ok" {
            return Err(StoreError::Corrupt(format!("{}: integrity check says {integrity}", probe.display())));
        }
        let applied = applied_migrations(&conn)?;
        if applied.is_empty() || !migrate::pending(migrate::SQLITE, &applied)?.is_empty() {
            return Err(StoreError::Schema(format!("{} is not a migrated Kassa database", probe.display())));
        }
        Ok(())
    })
    .await
    .map_err(|e| StoreError::Database(e.to_string()))??;
    let reader = SqlReads { reader: Arc::new(SqliteReader::new(path, Vec::new(), 1)) };
    let check = crate::LedgerStore::check(&reader).await?;
    if !check.is_sound() {
        return Err(StoreError::Corrupt(format!("the ledger does not balance: {check:?}")));
    }
    let audit_records = match crate::verify_audit_chain(&reader).await? {
        Ok(count) => count,
        Err(seq) => return Err(StoreError::Corrupt(format!("the audit chain is broken at record {seq}"))),
    };
    let transactions = reader
        .reader
        .query("SELECT COUNT(*) FROM transactions", &[])
        .await?
        .first()
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    Ok(RestoreReport { transactions, ledger_entries: check.entries, audit_records })
}

pub(crate) async fn open(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    create_private_file(path)?;
    // The whole read pool is opened now: its memory (each connection's schema, statements and
    // page cache) is then a fixed cost known at start, not a growth the first burst of
    // concurrent reads (a settlement wave, a report) adds; and an unreadable file fails here.
    let connections = options.read_connections_max.max(1);
    let idle = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            (0..connections).map(|_| ReadConnection::open(&path)).collect::<Result<Vec<_>, StoreError>>()
        })
        .await
        .map_err(|e| StoreError::Database(e.to_string()))??
    };
    let reader = Arc::new(SqliteReader::new(path, idle, connections));
    let reads = SqlReads { reader };

    // The committer's loop runs on its own OS thread: SQLite calls block, and the writer
    // connection must never move between threads mid-transaction. The writer connection is
    // opened at the first batch, so a store opened before `migrate` works once it ran.
    let writer = LazyWriter { path: path.to_owned(), writer: None };
    // One writer: SQLite runs one write transaction at a time.
    let (committer, run_loop) = committer::committer(vec![writer], options.committer);
    std::thread::Builder::new()
        .name("kassa-sqlite-writer".into())
        .spawn(move || match tokio::runtime::Builder::new_current_thread().build() {
            Ok(runtime) => runtime.block_on(run_loop),
            Err(error) => tracing::error!(%error, "cannot start the SQLite writer"),
        })
        .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
    let admin = Arc::new(SqliteAdmin { path: path.to_owned() });
    let reads = Arc::new(reads);
    Ok(Store {
        directory: reads.clone(),
        txns: reads.clone(),
        ledger: reads.clone(),
        audit: reads.clone(),
        settings: reads.clone(),
        admin,
        committer,
        reads,
    })
}

/// [`committer::commit_as_one_batch`] with a writer of its own on the database at `path`.
#[cfg(feature = "testing")]
pub(crate) async fn commit_as_one_batch(path: &Path, units: Vec<WriteUnit>) -> Vec<Result<UnitOutcome, StoreError>> {
    committer::commit_as_one_batch(LazyWriter { path: path.to_owned(), writer: None }, units).await
}

/// Page cache of the writer connection. The card sale's writes touch a few hundred pages (the
/// right edge of each index, one leaf per busy terminal in the card identity's index),
/// and the OS's page cache holds the rest of the file: measured with `kassa bench` (64
/// terminals), 2, 8 and 32 MiB commit at the same rate. A bigger cache would only grow the host's
/// memory when something reads widely in the writer (nothing on the hot paths does: a batch
/// close checks one version row).
const WRITER_CACHE_KIB: u32 = 4 * 1024;
/// Page cache of each read connection (SQLite's default is 2 MiB): reads of whole batches or
/// days (settlement totals, reconciliation, reports) would otherwise leave every connection of
/// the pool holding its full cache; the pages stay in the OS's page cache either way.
const READER_CACHE_KIB: u32 = 512;
/// Prepared statements the writer keeps (rusqlite's default, 16, is fewer than the kinds of
/// write a busy host mixes in its batches: each miss parses its SQL again).
const WRITER_STATEMENTS_CACHED: usize = 128;

/// Opens the writer connection on the committer's thread at its first batch (after `migrate`).
struct LazyWriter {
    path: PathBuf,
    writer: Option<SqliteWriter>,
}

#[async_trait]
impl BatchWriter for LazyWriter {
    async fn write_batch(&mut self, units: &[WriteUnit]) -> Result<Vec<UnitOutcome>, StoreError> {
        if self.writer.is_none() {
            let conn = open_connection(&self.path)?;
            conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB}")).map_err(db_error)?;
            conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS_CACHED);
            let checkpointer = match Checkpointer::start(&self.path) {
                Ok(checkpointer) => {
                    // Checkpoints are the checkpointer's; the WAL's length is bounded by
                    // `restart_long_wal`.
                    conn.execute_batch(&format!(
                        "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_KEPT_BYTES};"
                    ))
                    .map_err(db_error)?;
                    Some(checkpointer)
                }
                Err(error) => {
                    tracing::warn!(%error, "no background checkpointer: the writer checkpoints in its commits");
                    None
                }
            };
            self.writer = Some(SqliteWriter::new(conn, checkpointer)?);
        }
        match self.writer.as_mut() {
            Some(writer) => writer.write_batch(units).await,
            None => Err(StoreError::Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A read too long to run inline gives the same answer from the blocking pool, and the
    /// connection it used runs the next short read inline again.
    #[tokio::test]
    async fn a_long_read_moves_to_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reads.db");
        let reader = SqliteReader::new(&path, vec![ReadConnection::open(&path).unwrap()], 1);
        let long = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) SELECT COUNT(*), SUM(i) FROM n";
        let conn = ReadConnection::open(&path).unwrap();
        assert!(conn.run_inline(long, &[Value::Int(100_000)]).is_none(), "the long read is interrupted inline");
        let rows = reader.query(long, &[Value::Int(100_000)]).await.unwrap();
        assert_eq!(rows[0].int(0).unwrap(), 100_000);
        assert_eq!(rows[0].int(1).unwrap(), 5_000_050_000);
        let conn = reader.idle.lock().unwrap().pop().unwrap();
        let short = conn.run_inline(long, &[Value::Int(10)]).expect("a short read runs inline").unwrap();
        assert_eq!(short[0].int(1).unwrap(), 55);
    }

    /// A read past its deadline is stopped, not left running on the blocking pool, and its
    /// connection comes back to the pool and answers the next read.
    #[tokio::test]
    async fn a_read_past_its_deadline_is_stopped_and_its_connection_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reads.db");
        let reader = SqliteReader::new(&path, vec![ReadConnection::open(&path).unwrap()], 1);
        // Tens of seconds of work if nothing stopped it (bounded, so that a regression fails
        // the test instead of hanging it: the runtime waits for its blocking tasks).
        let endless =
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) SELECT SUM(i) FROM n";
        let started = std::time::Instant::now();
        let late = reader.query_within(endless, &[Value::Int(300_000_000)], Duration::from_millis(200)).await;
        assert!(matches!(late, Err(StoreError::Timeout(_))), "{late:?}");
        let deadline = started + Duration::from_secs(10);
        while reader.idle.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the abandoned read was not stopped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(reader.idle.lock().unwrap().len(), 1, "the same connection, not a new one");
        let rows = reader.query(endless, &[Value::Int(10)]).await.unwrap();
        assert_eq!(rows[0].int(0).unwrap(), 55);
        assert_eq!(reader.idle.lock().unwrap().len(), 1);
    }
}

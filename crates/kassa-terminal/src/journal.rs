//! The terminal's local journal (store-and-forward): one SQLite file per terminal
//! (`<data-dir>/journal.db`, WAL, `synchronous = FULL`), holding the STAN and batch counters,
//! every transaction of the open batch, and what still has to reach the host — reversals,
//! retransmissions and offline sales.
//!
//! **Invariant**: a request's row is on disk before the request is sent (with the message that
//! undoes or repeats it), so a terminal killed mid-exchange finds on restart what it owes the
//! host: [`Journal::open`] turns every row still `sending` into a reversal (sales, voids) or a
//! retransmission (refunds) to send before anything else. A STAN is taken durably before it is
//! used, so no two requests of a batch ever share one.
//!
//! **Boundary**: rows and SQL only; what goes on the wire is the link's, what is sent when is the
//! core's. The clear PAN of a transaction is kept only while the open batch may need it (a
//! reversal, an offline upload, a batch upload) and is erased when the batch closes.
//!
//! **Invariant** (a journal opened with [`Journal::open_sealed`], as the terminal does): no card
//! number reaches the file in clear. The `pan` column and the `pending` column (a reversal
//! carries field 2, an offline upload field 2 or track 2) are sealed under the terminal's
//! [`JournalKey`] on every write and opened on every read; the `meta` table records that the
//! journal is sealed and a key check value, so a journal is never opened under another key, and
//! rows written in clear by an older program are sealed once, at open, in one transaction.

use std::path::{Path, PathBuf};

use kassa_crypto::SealError;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::journal_key::JournalKey;
use crate::link::{mask_pan, Totals};

/// The journal file in the data directory.
pub const JOURNAL_FILE: &str = "journal.db";
/// How long a statement waits for the file's lock (another process on the same directory).
const BUSY_TIMEOUT_MS: u64 = 5_000;
/// The most rows [`Journal::open_batch`] and [`Journal::latest`] return.
pub const ENTRIES_LISTED_MAX: usize = 1_000;

/// `meta` key: how the journal's card data is sealed (absent: in clear, an older journal).
const META_SEALING: &str = "pan_sealing";
/// The one sealing this program writes: AES-256-GCM under a key of the TMK.
const SEALING_V1: &str = "aes-256-gcm-tmk-v1";
/// `meta` key: a value sealed under the journal's key, to tell a wrong key at open.
const META_KEY_CHECK: &str = "pan_key_check";
/// `meta` key: the terminal whose journal this is.
const META_TERMINAL_ID: &str = "terminal_id";
/// The `meta` rows that describe the journal itself and survive [`Journal::wipe`].
const META_KEPT_BY_WIPE: &str = "('pan_sealing', 'pan_key_check', 'terminal_id')";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    batch INTEGER NOT NULL,
    stan INTEGER NOT NULL,
    amount_minor INTEGER NOT NULL,
    operator TEXT NOT NULL,
    pan TEXT,
    pan_masked TEXT NOT NULL DEFAULT '',
    entry_mode TEXT NOT NULL DEFAULT '',
    pending BLOB,
    response_code TEXT NOT NULL DEFAULT '',
    rrn TEXT NOT NULL DEFAULT '',
    auth_code TEXT NOT NULL DEFAULT '',
    date TEXT NOT NULL DEFAULT '',
    original_id INTEGER,
    original_rrn TEXT NOT NULL DEFAULT '',
    out_trade_no TEXT NOT NULL DEFAULT '',
    trade_no TEXT NOT NULL DEFAULT '',
    wallet TEXT NOT NULL DEFAULT '',
    settled INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_batch ON entries (batch, stan);
CREATE INDEX IF NOT EXISTS entries_by_state ON entries (state);
";

/// Why the journal failed. The terminal stops a transaction rather than send what it could not
/// journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The database refused or failed.
    #[error("the local journal failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory cannot be created or secured.
    #[error("the journal directory {path} cannot be used: {reason}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A row holds a value this program never writes.
    #[error("the local journal holds an unknown {what} {value:?}")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The journal was written by another terminal: its unsent items are that terminal's.
    #[error(
        "the local journal {path} belongs to terminal {journal_terminal_id}, not {terminal_id}: \
         start that terminal on it, or give this one its own data directory"
    )]
    OtherTerminal {
        /// The file.
        path: PathBuf,
        /// The terminal it names.
        journal_terminal_id: String,
        /// The terminal opening it.
        terminal_id: String,
    },
    /// The journal's card data was sealed under another key (another TMK) and it still holds
    /// some: opening it would lose what it owes the host.
    #[error(
        "the local journal {path} was sealed under another terminal master key and holds card data \
         of {sealed_rows} transaction(s): start the terminal with the TMK it was written under to send \
         and settle them; the journal was left untouched"
    )]
    WrongKey {
        /// The file.
        path: PathBuf,
        /// The rows holding sealed values.
        sealed_rows: u32,
    },
    /// The journal is sealed and was opened without a key ([`Journal::open`]).
    #[error("the local journal {path} is sealed: it opens only with its terminal's key")]
    KeyRequired {
        /// The file.
        path: PathBuf,
    },
    /// A sealed value does not open (altered), or cannot be sealed.
    #[error("a sealed value of the local journal ({what}) cannot be used: {error}")]
    Sealing {
        /// Which column.
        what: &'static str,
        /// Why.
        error: SealError,
    },
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            /// The name stored and shown.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            fn parse(text: &str) -> Result<$name, JournalError> {
                match text {
                    $($text => Ok($name::$variant),)*
                    _ => Err(JournalError::Corrupt { what: stringify!($name), value: text.to_owned() }),
                }
            }
        }
    };
}

text_enum! {
    /// What a row is.
    Kind {
        /// A card sale sent online.
        Sale => "sale",
        /// A card sale approved by the terminal while the host was unreachable.
        OfflineSale => "offline_sale",
        /// A void of a sale of the open batch.
        Void => "void",
        /// A refund of an earlier sale.
        Refund => "refund",
        /// A QR collection with the customer's payment code.
        QrPay => "qr_pay",
        /// A merchant-presented QR.
        QrShow => "qr_show",
        /// A QR refund.
        QrRefund => "qr_refund",
    }
}

text_enum! {
    /// Where a row stands.
    State {
        /// Written, being sent; found at start-up it becomes a reversal or retransmission.
        Sending => "sending",
        /// Approved (a QR trade paid, a QR refund succeeded).
        Approved => "approved",
        /// Declined (a QR trade failed or closed unpaid).
        Declined => "declined",
        /// A reversal is owed to the host (unsent).
        ReversalPending => "reversal_pending",
        /// The host acknowledged its reversal.
        Reversed => "reversed",
        /// The request is to be sent again (unsent): a refund without an answer.
        RepeatPending => "repeat_pending",
        /// Approved offline, not uploaded yet (unsent).
        OfflineUnsent => "offline_unsent",
        /// An offline sale's upload was sent without an answer (unsent: sent again as a repeat).
        Uploading => "uploading",
        /// A sale whose void the host approved.
        Voided => "voided",
        /// A QR trade or refund whose outcome the host still resolves.
        Unknown => "unknown",
    }
}

impl State {
    /// Whether the row still has to reach the host.
    pub fn is_unsent(self) -> bool {
        matches!(self, State::ReversalPending | State::RepeatPending | State::OfflineUnsent | State::Uploading)
    }
}

/// A new row, written before its request is sent.
#[derive(Clone, Default)]
pub struct NewEntry {
    /// What it is.
    pub kind: Option<Kind>,
    /// Where it starts (`sending`, or `offline_unsent`).
    pub state: Option<State>,
    /// 60.2 it is sent under.
    pub batch: u32,
    /// Its STAN (taken with [`Journal::take_stan`]).
    pub stan: u32,
    /// Minor units.
    pub amount_minor: u64,
    /// The operator who made it.
    pub operator: String,
    /// The clear PAN (card transactions), erased when the batch closes.
    pub pan: Option<String>,
    /// Field 22 as sent.
    pub entry_mode: String,
    /// The encoded message owed if no answer comes: the reversal of a sale or void, the
    /// retransmission of a refund, the upload of an offline sale. Never a PIN block nor track.
    pub pending: Option<Vec<u8>>,
    /// The row of the sale a void or refund names.
    pub original_id: Option<i64>,
    /// The RRN of the sale a refund names.
    pub original_rrn: String,
    /// A QR trade's `out_trade_no`.
    pub out_trade_no: String,
}

impl std::fmt::Debug for NewEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEntry")
            .field("kind", &self.kind)
            .field("batch", &self.batch)
            .field("stan", &self.stan)
            .field("amount_minor", &self.amount_minor)
            .field("pan", &self.pan.as_deref().map(mask_pan))
            .finish_non_exhaustive()
    }
}

/// A row as read.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// Row id.
    pub id: i64,
    /// What it is.
    pub kind: Kind,
    /// Where it stands.
    pub state: State,
    /// Its batch.
    pub batch: u32,
    /// Its STAN.
    pub stan: u32,
    /// Minor units.
    pub amount_minor: u64,
    /// The operator who made it.
    pub operator: String,
    /// The clear PAN while kept.
    pan: Option<String>,
    /// `622202***0128`.
    pub pan_masked: String,
    /// Field 22 as sent.
    pub entry_mode: String,
    /// The message owed (unsent rows).
    pub pending: Option<Vec<u8>>,
    /// Field 39 of the answer.
    pub response_code: String,
    /// Field 37 of the answer.
    pub rrn: String,
    /// Field 38 of the answer.
    pub auth_code: String,
    /// Field 13 of the answer, `MMDD`.
    pub date: String,
    /// The row of the sale a void or refund names.
    pub original_id: Option<i64>,
    /// The RRN a refund names.
    pub original_rrn: String,
    /// A QR trade's `out_trade_no`.
    pub out_trade_no: String,
    /// A QR trade's wallet trade number.
    pub trade_no: String,
    /// `alipay` or `wechat`.
    pub wallet: String,
    /// Whether its batch was settled.
    pub settled: bool,
    /// When it was written, Unix ms.
    pub created_at_ms: i64,
}

impl Entry {
    /// The clear PAN, while the journal keeps it.
    pub fn pan(&self) -> Option<&str> {
        self.pan.as_deref()
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("state", &self.state)
            .field("batch", &self.batch)
            .field("stan", &self.stan)
            .field("amount_minor", &self.amount_minor)
            .field("pan_masked", &self.pan_masked)
            .field("response_code", &self.response_code)
            .field("rrn", &self.rrn)
            .finish_non_exhaustive()
    }
}

/// What an answer sets on a row.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Field 39.
    pub response_code: String,
    /// Field 37.
    pub rrn: String,
    /// Field 38.
    pub auth_code: String,
    /// Field 13.
    pub date: String,
}

/// The journal of one terminal.
#[derive(Debug)]
pub struct Journal {
    connection: Connection,
    path: PathBuf,
    /// `None` only for [`Journal::open`]: card data in clear.
    key: Option<JournalKey>,
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

const COLUMNS: &str = "id, kind, state, batch, stan, amount_minor, operator, pan, pan_masked, entry_mode, pending, \
     response_code, rrn, auth_code, date, original_id, original_rrn, out_trade_no, trade_no, wallet, settled, \
     created_at_ms";

fn read_row(row: &Row<'_>) -> rusqlite::Result<(Entry, String, String)> {
    let kind: String = row.get(1)?;
    let state: String = row.get(2)?;
    let entry = Entry {
        id: row.get(0)?,
        kind: Kind::Sale,
        state: State::Sending,
        batch: row.get(3)?,
        stan: row.get(4)?,
        amount_minor: row.get::<_, i64>(5)?.try_into().unwrap_or(0),
        operator: row.get(6)?,
        pan: row.get(7)?,
        pan_masked: row.get(8)?,
        entry_mode: row.get(9)?,
        pending: row.get(10)?,
        response_code: row.get(11)?,
        rrn: row.get(12)?,
        auth_code: row.get(13)?,
        date: row.get(14)?,
        original_id: row.get(15)?,
        original_rrn: row.get(16)?,
        out_trade_no: row.get(17)?,
        trade_no: row.get(18)?,
        wallet: row.get(19)?,
        settled: row.get::<_, i64>(20)? != 0,
        created_at_ms: row.get(21)?,
    };
    Ok((entry, kind, state))
}

fn sealing_failed(what: &'static str) -> impl Fn(SealError) -> JournalError {
    move |error| JournalError::Sealing { what, error }
}

fn meta_value(connection: &Connection, key: &str) -> Result<Option<String>, JournalError> {
    Ok(connection.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |row| row.get(0)).optional()?)
}

fn set_meta_value(connection: &Connection, key: &str, value: &str) -> Result<(), JournalError> {
    connection.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Rows holding card data (a PAN, a pending message), sealed or not.
fn card_data_rows(connection: &Connection) -> Result<u32, JournalError> {
    let count: i64 = connection.query_row(
        "SELECT count(*) FROM entries WHERE pan IS NOT NULL OR pending IS NOT NULL",
        [],
        |row| row.get(0),
    )?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

fn amount(minor: u64) -> i64 {
    i64::try_from(minor).unwrap_or(i64::MAX)
}

impl Journal {
    /// Opens (creating) the journal in `dir` (created 0700) with its card data in clear, and
    /// recovers from a crash: every row still `sending` becomes what it owes the host.
    ///
    /// For tests and tools: the terminal opens its journal with [`Journal::open_sealed`]. A
    /// sealed journal is refused ([`JournalError::KeyRequired`]).
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        let connection = Journal::connect(dir)?;
        let path = dir.join(JOURNAL_FILE);
        if meta_value(&connection, META_SEALING)?.is_some() {
            return Err(JournalError::KeyRequired { path });
        }
        let journal = Journal { connection, path, key: None };
        journal.recover()?;
        Ok(journal)
    }

    /// Opens (creating) the journal in `dir` with its card data sealed under `key`, as the
    /// terminal does, and recovers from a crash like [`Journal::open`].
    ///
    /// A journal written in clear (by an older program, or [`Journal::open`]) is sealed first,
    /// in one transaction. A journal of another terminal is refused
    /// ([`JournalError::OtherTerminal`]); so is one sealed under another key that still holds
    /// card data ([`JournalError::WrongKey`]), and nothing in it is changed. A journal sealed
    /// under another key that holds no card data any more (the TMK was changed after a
    /// settlement) loses nothing: it is taken over by the new key.
    pub fn open_sealed(dir: &Path, key: JournalKey) -> Result<Journal, JournalError> {
        let mut connection = Journal::connect(dir)?;
        let path = dir.join(JOURNAL_FILE);
        let migrated = Journal::adopt_key(&mut connection, &path, &key)?;
        if migrated {
            // The clear values now live only in pages the WAL replaced: copy the sealed pages
            // into the main file and empty the WAL (secure_delete has zeroed freed space).
            connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        let journal = Journal { connection, path, key: Some(key) };
        journal.recover()?;
        Ok(journal)
    }

    /// Checks the journal against `key` and seals a clear journal; whether rows were sealed.
    fn adopt_key(connection: &mut Connection, path: &Path, key: &JournalKey) -> Result<bool, JournalError> {
        // Immediate: a second process opening the same directory waits rather than migrate too.
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let journal_terminal_id = meta_value(&transaction, META_TERMINAL_ID)?;
        if let Some(journal_terminal_id) = &journal_terminal_id {
            if journal_terminal_id != key.terminal_id() {
                return Err(JournalError::OtherTerminal {
                    path: path.to_owned(),
                    journal_terminal_id: journal_terminal_id.clone(),
                    terminal_id: key.terminal_id().to_owned(),
                });
            }
        }
        let sealing = meta_value(&transaction, META_SEALING)?;
        let (migrated, new_check) = match sealing.as_deref() {
            Some(SEALING_V1) => {
                let check = meta_value(&transaction, META_KEY_CHECK)?.unwrap_or_default();
                if key.matches(&check) {
                    (0, false)
                } else {
                    let sealed_rows = card_data_rows(&transaction)?;
                    if sealed_rows > 0 {
                        return Err(JournalError::WrongKey { path: path.to_owned(), sealed_rows });
                    }
                    tracing::warn!("the journal was sealed under another TMK and holds no card data: taken over");
                    (0, true)
                }
            }
            Some(other) => return Err(JournalError::Corrupt { what: META_SEALING, value: other.to_owned() }),
            None => (Journal::seal_clear_rows(&transaction, key)?, true),
        };
        if new_check {
            set_meta_value(&transaction, META_SEALING, SEALING_V1)?;
            let check = key.check_value().map_err(sealing_failed(META_KEY_CHECK))?;
            set_meta_value(&transaction, META_KEY_CHECK, &check)?;
        }
        if journal_terminal_id.is_none() {
            set_meta_value(&transaction, META_TERMINAL_ID, key.terminal_id())?;
        }
        transaction.commit()?;
        if migrated > 0 {
            tracing::info!(rows = migrated, "the journal's card data written in clear is sealed");
        }
        Ok(migrated > 0)
    }

    /// Seals every PAN and pending message of a journal written in clear; how many rows.
    fn seal_clear_rows(transaction: &Connection, key: &JournalKey) -> Result<u32, JournalError> {
        let mut statement =
            transaction.prepare("SELECT id, pan, pending FROM entries WHERE pan IS NOT NULL OR pending IS NOT NULL")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Option<String>>(1)?, row.get::<_, Option<Vec<u8>>>(2)?))
        })?;
        let mut sealed_rows = 0_u32;
        for row in rows {
            let (id, pan, pending) = row?;
            let pan = pan.map(|pan| key.seal_pan(&pan)).transpose().map_err(sealing_failed("pan"))?;
            let pending =
                pending.map(|pending| key.seal_pending(&pending)).transpose().map_err(sealing_failed("pending"))?;
            transaction
                .execute("UPDATE entries SET pan = ?2, pending = ?3 WHERE id = ?1", params![id, pan, pending])?;
            sealed_rows = sealed_rows.saturating_add(1);
        }
        Ok(sealed_rows)
    }

    /// The directory (0700), the file (0600), its settings and schema.
    fn connect(dir: &Path) -> Result<Connection, JournalError> {
        let directory_error = |reason: String| JournalError::Directory {
            path: dir.to_owned(),
            reason: reason.chars().take(200).collect(),
        };
        std::fs::create_dir_all(dir).map_err(|error| directory_error(error.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|error| directory_error(error.to_string()))?;
        }
        let path = dir.join(JOURNAL_FILE);
        let connection = Connection::open(&path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|error| directory_error(error.to_string()))?;
        }
        // secure_delete: a value overwritten or deleted (a PAN erased at settlement, a row
        // sealed at migration) is zeroed in the file rather than left in free space.
        connection.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; \
             PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"
        ))?;
        connection.execute_batch(SCHEMA)?;
        Ok(connection)
    }

    /// Whether card data is sealed at rest ([`Journal::open_sealed`]).
    pub fn is_sealed(&self) -> bool {
        self.key.is_some()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows left `sending` by a process that stopped: a sale or void may have been approved, so
    /// its reversal is owed; a refund or upload is sent again (the host answers a retransmission
    /// with the original answer); a QR request is the host's to resolve.
    fn recover(&self) -> Result<(), JournalError> {
        let now = now_ms();
        self.connection.execute(
            "UPDATE entries SET state = 'reversal_pending', updated_at_ms = ?1 \
             WHERE state = 'sending' AND kind IN ('sale', 'void') AND pending IS NOT NULL",
            params![now],
        )?;
        self.connection.execute(
            "UPDATE entries SET state = 'repeat_pending', updated_at_ms = ?1 \
             WHERE state = 'sending' AND kind = 'refund' AND pending IS NOT NULL",
            params![now],
        )?;
        self.connection.execute(
            "UPDATE entries SET state = 'unknown', updated_at_ms = ?1 WHERE state = 'sending'",
            params![now],
        )?;
        Ok(())
    }

    /// A value of the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        meta_value(&self.connection, key)
    }

    /// Sets a value of the `meta` table (durably).
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), JournalError> {
        set_meta_value(&self.connection, key, value)
    }

    fn meta_number(&self, key: &str) -> Result<u32, JournalError> {
        Ok(self.meta(key)?.and_then(|value| value.parse().ok()).unwrap_or(0))
    }

    /// The open batch as the terminal knows it (0 before the first sign-in).
    pub fn batch(&self) -> Result<u32, JournalError> {
        self.meta_number("batch")
    }

    /// Adopts the batch the host names.
    pub fn set_batch(&self, batch: u32) -> Result<(), JournalError> {
        self.set_meta("batch", &batch.to_string())
    }

    /// The last STAN used.
    pub fn last_stan(&self) -> Result<u32, JournalError> {
        self.meta_number("stan")
    }

    /// Takes the next STAN, durably, before it is used.
    pub fn take_stan(&self) -> Result<u32, JournalError> {
        let stan = crate::link::next_stan(self.last_stan()?);
        self.set_meta("stan", &stan.to_string())?;
        Ok(stan)
    }

    /// Writes a new row (before its request is sent); returns its id.
    pub fn insert(&self, new: &NewEntry) -> Result<i64, JournalError> {
        let now = now_ms();
        let kind = new.kind.unwrap_or(Kind::Sale);
        let state = new.state.unwrap_or(State::Sending);
        let pan_masked = new.pan.as_deref().map(mask_pan).unwrap_or_default();
        let pan = new.pan.as_deref().map(|pan| self.seal_pan(pan)).transpose()?;
        let pending = new.pending.as_deref().map(|pending| self.seal_pending(pending)).transpose()?;
        self.connection.execute(
            "INSERT INTO entries (kind, state, batch, stan, amount_minor, operator, pan, pan_masked, entry_mode, \
             pending, original_id, original_rrn, out_trade_no, created_at_ms, updated_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)",
            params![
                kind.as_str(),
                state.as_str(),
                new.batch,
                new.stan,
                amount(new.amount_minor),
                new.operator,
                pan,
                pan_masked,
                new.entry_mode,
                pending,
                new.original_id,
                new.original_rrn,
                new.out_trade_no,
                now
            ],
        )?;
        Ok(self.connection.last_insert_rowid())
    }

    /// Records the host's answer: the row's new state and the answer's fields. A row no longer
    /// owing anything forgets its pending message.
    pub fn answer(&self, id: i64, state: State, outcome: &Outcome) -> Result<(), JournalError> {
        self.connection.execute(
            "UPDATE entries SET state = ?2, response_code = ?3, rrn = ?4, auth_code = ?5, date = ?6, \
             pending = CASE WHEN ?7 THEN pending ELSE NULL END, updated_at_ms = ?8 WHERE id = ?1",
            params![
                id,
                state.as_str(),
                outcome.response_code,
                outcome.rrn,
                outcome.auth_code,
                outcome.date,
                state.is_unsent(),
                now_ms()
            ],
        )?;
        Ok(())
    }

    /// Moves a row to `state` (keeping its pending message while it is unsent).
    pub fn set_state(&self, id: i64, state: State) -> Result<(), JournalError> {
        self.connection.execute(
            "UPDATE entries SET state = ?2, pending = CASE WHEN ?3 THEN pending ELSE NULL END, updated_at_ms = ?4 \
             WHERE id = ?1",
            params![id, state.as_str(), state.is_unsent(), now_ms()],
        )?;
        Ok(())
    }

    /// Deletes a row whose request certainly never left the terminal (no connection): it owes
    /// nothing and happened nowhere. Only a row still `sending` is deleted.
    pub fn discard(&self, id: i64) -> Result<(), JournalError> {
        self.connection.execute("DELETE FROM entries WHERE id = ?1 AND state = 'sending'", params![id])?;
        Ok(())
    }

    /// Replaces a row's pending message (a void's reversal once it is sent for real).
    pub fn set_pending(&self, id: i64, pending: &[u8]) -> Result<(), JournalError> {
        let pending = self.seal_pending(pending)?;
        self.connection.execute(
            "UPDATE entries SET pending = ?2, updated_at_ms = ?3 WHERE id = ?1",
            params![id, pending, now_ms()],
        )?;
        Ok(())
    }

    /// A PAN as stored: sealed, or in clear for a journal without a key.
    fn seal_pan(&self, pan: &str) -> Result<String, JournalError> {
        match &self.key {
            Some(key) => key.seal_pan(pan).map_err(sealing_failed("pan")),
            None => Ok(pan.to_owned()),
        }
    }

    /// A pending message as stored.
    fn seal_pending(&self, pending: &[u8]) -> Result<Vec<u8>, JournalError> {
        match &self.key {
            Some(key) => key.seal_pending(pending).map_err(sealing_failed("pending")),
            None => Ok(pending.to_vec()),
        }
    }

    /// A row as read: its kind and state parsed, its card data opened.
    fn finish(&self, raw: (Entry, String, String)) -> Result<Entry, JournalError> {
        let (mut entry, kind, state) = raw;
        entry.kind = Kind::parse(&kind)?;
        entry.state = State::parse(&state)?;
        if let Some(key) = &self.key {
            entry.pan = entry.pan.map(|pan| key.open_pan(&pan)).transpose().map_err(sealing_failed("pan"))?;
            entry.pending = entry
                .pending
                .map(|pending| key.open_pending(&pending))
                .transpose()
                .map_err(sealing_failed("pending"))?;
        }
        Ok(entry)
    }

    /// Sets a QR row's wallet facts.
    pub fn set_qr(&self, id: i64, state: State, trade_no: &str, wallet: &str) -> Result<(), JournalError> {
        self.connection.execute(
            "UPDATE entries SET state = ?2, trade_no = ?3, wallet = ?4, updated_at_ms = ?5 WHERE id = ?1",
            params![id, state.as_str(), trade_no, wallet, now_ms()],
        )?;
        Ok(())
    }

    fn query(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Entry>, JournalError> {
        let mut statement = self.connection.prepare(sql)?;
        let rows = statement.query_map(params, read_row)?;
        let mut entries = Vec::new();
        for row in rows {
            entries.push(self.finish(row?)?);
        }
        Ok(entries)
    }

    /// One row.
    pub fn entry(&self, id: i64) -> Result<Option<Entry>, JournalError> {
        Ok(self.query(&format!("SELECT {COLUMNS} FROM entries WHERE id = ?1"), params![id])?.into_iter().next())
    }

    /// What still has to reach the host, in the order it is sent: reversals first, then
    /// retransmissions, then offline uploads, each oldest first.
    pub fn unsent(&self) -> Result<Vec<Entry>, JournalError> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM entries \
                 WHERE state IN ('reversal_pending', 'repeat_pending', 'uploading', 'offline_unsent') \
                 ORDER BY CASE state WHEN 'reversal_pending' THEN 0 WHEN 'repeat_pending' THEN 1 ELSE 2 END, id"
            ),
            [],
        )
    }

    /// How many rows still have to reach the host.
    pub fn unsent_count(&self) -> Result<u32, JournalError> {
        let count: i64 = self.connection.query_row(
            "SELECT count(*) FROM entries \
             WHERE state IN ('reversal_pending', 'repeat_pending', 'uploading', 'offline_unsent')",
            [],
            |row| row.get(0),
        )?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// How many offline sales are not uploaded yet.
    pub fn offline_unsent_count(&self) -> Result<u32, JournalError> {
        let count: i64 = self.connection.query_row(
            "SELECT count(*) FROM entries WHERE state IN ('offline_unsent', 'uploading')",
            [],
            |row| row.get(0),
        )?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// The rows of the open batch (not settled), newest first, at most [`ENTRIES_LISTED_MAX`].
    pub fn open_batch(&self) -> Result<Vec<Entry>, JournalError> {
        self.query(
            &format!("SELECT {COLUMNS} FROM entries WHERE settled = 0 ORDER BY id DESC LIMIT {ENTRIES_LISTED_MAX}"),
            [],
        )
    }

    /// The newest rows, at most `limit`.
    pub fn latest(&self, limit: usize) -> Result<Vec<Entry>, JournalError> {
        let limit = limit.min(ENTRIES_LISTED_MAX);
        self.query(&format!("SELECT {COLUMNS} FROM entries ORDER BY id DESC LIMIT {limit}"), [])
    }

    /// The card transaction of `batch` with `stan`.
    pub fn by_stan(&self, batch: u32, stan: u32) -> Result<Option<Entry>, JournalError> {
        Ok(self
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM entries WHERE batch = ?1 AND stan = ?2 \
                     AND kind IN ('sale', 'offline_sale', 'void', 'refund') ORDER BY id DESC LIMIT 1"
                ),
                params![batch, stan],
            )?
            .into_iter()
            .next())
    }

    /// The newest transaction that has a slip (approved, offline, or a sale voided since).
    pub fn latest_printable(&self) -> Result<Option<Entry>, JournalError> {
        Ok(self
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM entries \
                     WHERE state IN ('approved', 'voided', 'offline_unsent', 'uploading') ORDER BY id DESC LIMIT 1"
                ),
                [],
            )?
            .into_iter()
            .next())
    }

    /// What the open rows of `batch` came to, per kind: how many transactions happened (approved,
    /// or sales voided since) and their total in minor units, for the settlement slip.
    pub fn batch_summary(&self, batch: u32) -> Result<Vec<(Kind, u32, u64)>, JournalError> {
        let mut statement = self.connection.prepare(
            "SELECT kind, count(*), sum(amount_minor) FROM entries \
             WHERE batch = ?1 AND settled = 0 AND state IN ('approved', 'voided', 'offline_unsent', 'uploading') \
             GROUP BY kind",
        )?;
        let rows = statement.query_map(params![batch], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        })?;
        let mut summary = Vec::new();
        for row in rows {
            let (kind, count, total) = row?;
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            summary.push((Kind::parse(&kind)?, count, u64::try_from(total).unwrap_or(0)));
        }
        Ok(summary)
    }

    /// The approved card sale with `rrn`, if this terminal made it.
    pub fn sale_by_rrn(&self, rrn: &str) -> Result<Option<Entry>, JournalError> {
        Ok(self
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM entries WHERE rrn = ?1 AND kind IN ('sale', 'offline_sale') \
                     ORDER BY id DESC LIMIT 1"
                ),
                params![rrn],
            )?
            .into_iter()
            .next())
    }

    /// The QR trade with `out_trade_no`, if this terminal made it.
    pub fn qr_trade(&self, out_trade_no: &str) -> Result<Option<Entry>, JournalError> {
        Ok(self
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM entries WHERE out_trade_no = ?1 AND kind IN ('qr_pay', 'qr_show') \
                     ORDER BY id DESC LIMIT 1"
                ),
                params![out_trade_no],
            )?
            .into_iter()
            .next())
    }

    /// QR payments (customer code or merchant QR) whose outcome is unknown, oldest first, at most
    /// `limit`.
    pub fn qr_unknown(&self, limit: usize) -> Result<Vec<Entry>, JournalError> {
        let limit = limit.min(ENTRIES_LISTED_MAX);
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM entries WHERE kind IN ('qr_pay', 'qr_show') AND state IN ('unknown', 'sending') \
                 ORDER BY id LIMIT {limit}"
            ),
            [],
        )
    }

    /// The card rows of `batch` the host counts: the batch upload's items.
    pub fn card_rows(&self, batch: u32) -> Result<Vec<Entry>, JournalError> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM entries WHERE batch = ?1 AND settled = 0 \
                 AND kind IN ('sale', 'offline_sale', 'refund') AND state = 'approved' ORDER BY id"
            ),
            params![batch],
        )
    }

    /// The terminal's settlement totals of `batch`: debits are approved sales (online or
    /// uploaded) still standing, credits approved refunds; counts modulo 1000, amounts modulo
    /// 10^12 as field 48 carries them.
    pub fn totals(&self, batch: u32) -> Result<Totals, JournalError> {
        let (mut debit, mut debit_count, mut credit, mut credit_count) = (0_u64, 0_u64, 0_u64, 0_u64);
        for entry in self.card_rows(batch)? {
            match entry.kind {
                Kind::Sale | Kind::OfflineSale => {
                    debit = (debit + entry.amount_minor) % 1_000_000_000_000;
                    debit_count += 1;
                }
                Kind::Refund => {
                    credit = (credit + entry.amount_minor) % 1_000_000_000_000;
                    credit_count += 1;
                }
                _ => {}
            }
        }
        Ok(Totals {
            debit_amount_minor: debit,
            debit_count: (debit_count % 1000) as u16,
            credit_amount_minor: credit,
            credit_count: (credit_count % 1000) as u16,
            settle_code: 0,
        })
    }

    /// Closes the batch: every card row of it is settled and its clear PAN erased, and `next`
    /// becomes the open batch — in one transaction.
    pub fn close_batch(&mut self, batch: u32, next: u32) -> Result<(), JournalError> {
        let transaction = self.connection.transaction()?;
        transaction.execute(
            "UPDATE entries SET settled = 1, pan = NULL, updated_at_ms = ?2 \
             WHERE batch = ?1 AND state NOT IN ('reversal_pending', 'repeat_pending', 'offline_unsent', 'uploading')",
            params![batch, now_ms()],
        )?;
        transaction.execute(
            "UPDATE entries SET settled = 1, updated_at_ms = ?1 \
             WHERE kind IN ('qr_pay', 'qr_show', 'qr_refund') AND settled = 0",
            params![now_ms()],
        )?;
        transaction.execute(
            "INSERT INTO meta (key, value) VALUES ('batch', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![next.to_string()],
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// Re-initialisation: every row and counter is deleted (the caller has checked that nothing
    /// is unsent). What the journal is (its terminal, its sealing) stays.
    pub fn wipe(&mut self) -> Result<(), JournalError> {
        let transaction = self.connection.transaction()?;
        transaction.execute("DELETE FROM entries", [])?;
        transaction.execute(&format!("DELETE FROM meta WHERE key NOT IN {META_KEPT_BY_WIPE}"), [])?;
        transaction.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kassa_crypto::TdesKey;

    use super::*;

    const PAN: &str = "6222021234567890128";
    const TMK: &str = "0123456789ABCDEFFEDCBA9876543210";
    const OTHER_TMK: &str = "FEDCBA98765432100123456789ABCDEF";

    fn key_of(tmk: &str, terminal_id: &str) -> JournalKey {
        JournalKey::derive(&TdesKey::from_hex(tmk).unwrap(), terminal_id).unwrap()
    }

    /// The journal as the terminal opens it: sealed under terminal 10000001's key.
    fn open(dir: &Path) -> Journal {
        Journal::open_sealed(dir, key_of(TMK, "10000001")).unwrap()
    }

    /// The bytes of the journal's files as a copy of the data directory would hold them.
    fn on_disk(dir: &Path) -> Vec<u8> {
        let mut bytes = std::fs::read(dir.join(JOURNAL_FILE)).unwrap();
        if let Ok(wal) = std::fs::read(dir.join(format!("{JOURNAL_FILE}-wal"))) {
            bytes.extend_from_slice(&wal);
        }
        bytes
    }

    fn holds(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|window| window == needle)
    }

    /// A reversal as the link encodes it would carry the PAN; here its digits stand for it.
    fn reversal() -> Vec<u8> {
        format!("0400|2={PAN}|").into_bytes()
    }

    fn offline_sale(journal: &Journal, stan: u32) -> i64 {
        journal
            .insert(&NewEntry {
                kind: Some(Kind::OfflineSale),
                state: Some(State::OfflineUnsent),
                batch: 1,
                stan,
                amount_minor: 300,
                pan: Some(PAN.into()),
                pending: Some(format!("0220|35={PAN}=3012|").into_bytes()),
                ..NewEntry::default()
            })
            .unwrap()
    }

    fn sale(journal: &Journal, stan: u32, pending: &[u8]) -> i64 {
        journal
            .insert(&NewEntry {
                kind: Some(Kind::Sale),
                batch: 1,
                stan,
                amount_minor: 1234,
                operator: "01".into(),
                pan: Some(PAN.into()),
                entry_mode: "021".into(),
                pending: Some(pending.to_vec()),
                ..NewEntry::default()
            })
            .unwrap()
    }

    #[test]
    fn a_stan_taken_is_never_taken_again_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        assert_eq!(journal.take_stan().unwrap(), 1);
        assert_eq!(journal.take_stan().unwrap(), 2);
        drop(journal); // the process dies here
        let journal = open(dir.path());
        assert_eq!(journal.take_stan().unwrap(), 3);
        journal.set_meta("stan", &crate::link::STAN_MAX.to_string()).unwrap();
        assert_eq!(journal.take_stan().unwrap(), 1, "wraps to 1");
    }

    #[test]
    fn a_sale_sent_without_an_answer_owes_its_reversal_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        let id = sale(&journal, 1, b"reversal");
        assert_eq!(journal.unsent_count().unwrap(), 0, "sending is not yet unsent");
        drop(journal); // killed mid-exchange
        let journal = open(dir.path());
        let unsent = journal.unsent().unwrap();
        assert_eq!(unsent.len(), 1);
        assert_eq!(unsent[0].id, id);
        assert_eq!(unsent[0].state, State::ReversalPending);
        assert_eq!(unsent[0].pending.as_deref(), Some(b"reversal".as_slice()));
        // The reversal is acknowledged: nothing is owed any more, and the message is gone.
        journal.set_state(id, State::Reversed).unwrap();
        drop(journal);
        let journal = open(dir.path());
        assert_eq!(journal.unsent_count().unwrap(), 0);
        let entry = journal.entry(id).unwrap().unwrap();
        assert_eq!(entry.state, State::Reversed);
        assert!(entry.pending.is_none());
    }

    #[test]
    fn an_answered_sale_stays_answered_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        let id = sale(&journal, 1, b"reversal");
        let outcome = Outcome {
            response_code: "00".into(),
            rrn: "000000000007".into(),
            auth_code: "123456".into(),
            date: "0612".into(),
        };
        journal.answer(id, State::Approved, &outcome).unwrap();
        drop(journal);
        let journal = open(dir.path());
        let entry = journal.entry(id).unwrap().unwrap();
        assert_eq!((entry.state, entry.rrn.as_str()), (State::Approved, "000000000007"));
        assert!(entry.pending.is_none(), "an answered sale owes nothing");
        assert_eq!(journal.sale_by_rrn("000000000007").unwrap().unwrap().id, id);
        assert_eq!(journal.totals(1).unwrap().debit_amount_minor, 1234);
        assert_eq!(journal.totals(1).unwrap().debit_count, 1);
    }

    #[test]
    fn a_request_that_never_left_leaves_no_row() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        let never_sent = sale(&journal, 1, b"reversal");
        journal.discard(never_sent).unwrap();
        assert!(journal.entry(never_sent).unwrap().is_none());
        let answered = sale(&journal, 2, b"reversal");
        journal.answer(answered, State::Approved, &Outcome::default()).unwrap();
        journal.discard(answered).unwrap();
        assert!(journal.entry(answered).unwrap().is_some(), "only a row still sending is discarded");
    }

    #[test]
    fn refunds_and_qr_requests_recover_to_what_they_owe() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        let refund = journal
            .insert(&NewEntry {
                kind: Some(Kind::Refund),
                batch: 1,
                stan: 2,
                amount_minor: 100,
                pending: Some(b"repeat".to_vec()),
                ..NewEntry::default()
            })
            .unwrap();
        let qr = journal
            .insert(&NewEntry {
                kind: Some(Kind::QrPay),
                batch: 1,
                amount_minor: 100,
                out_trade_no: "T1".into(),
                ..NewEntry::default()
            })
            .unwrap();
        drop(journal);
        let journal = open(dir.path());
        assert_eq!(journal.entry(refund).unwrap().unwrap().state, State::RepeatPending);
        assert_eq!(journal.entry(qr).unwrap().unwrap().state, State::Unknown);
        assert_eq!(journal.unsent_count().unwrap(), 1, "the host resolves QR trades, not the terminal");
    }

    #[test]
    fn offline_sales_survive_and_are_sent_after_reversals() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        let offline = journal
            .insert(&NewEntry {
                kind: Some(Kind::OfflineSale),
                state: Some(State::OfflineUnsent),
                batch: 1,
                stan: 1,
                amount_minor: 500,
                pan: Some(PAN.into()),
                pending: Some(b"upload".to_vec()),
                ..NewEntry::default()
            })
            .unwrap();
        let sale = sale(&journal, 2, b"reversal");
        journal.set_state(sale, State::ReversalPending).unwrap();
        journal.set_state(offline, State::Uploading).unwrap();
        drop(journal);
        let journal = open(dir.path());
        let unsent: Vec<_> = journal.unsent().unwrap().into_iter().map(|entry| (entry.id, entry.state)).collect();
        assert_eq!(unsent, vec![(sale, State::ReversalPending), (offline, State::Uploading)]);
        assert_eq!(journal.offline_unsent_count().unwrap(), 1);
        assert_eq!(journal.totals(1).unwrap().debit_count, 0, "neither counts until the host approves it");
    }

    #[test]
    fn closing_a_batch_settles_it_and_erases_its_pans_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        journal.set_batch(1).unwrap();
        let id = sale(&journal, 1, b"reversal");
        journal.answer(id, State::Approved, &Outcome { response_code: "00".into(), ..Outcome::default() }).unwrap();
        assert_eq!(journal.entry(id).unwrap().unwrap().pan(), Some(PAN));
        journal.close_batch(1, 2).unwrap();
        drop(journal);
        let journal = open(dir.path());
        assert_eq!(journal.batch().unwrap(), 2);
        let entry = journal.entry(id).unwrap().unwrap();
        assert!(entry.settled);
        assert_eq!(entry.pan(), None);
        assert_eq!(entry.pan_masked, "622202***0128");
        assert!(journal.open_batch().unwrap().is_empty());
    }

    #[test]
    fn a_wiped_journal_starts_over_and_rows_print_masked() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        journal.take_stan().unwrap();
        let id = sale(&journal, 1, b"r");
        let printed = format!("{:?}", journal.entry(id).unwrap().unwrap());
        assert!(printed.contains("622202***0128") && !printed.contains(PAN), "{printed}");
        journal.wipe().unwrap();
        assert_eq!(journal.last_stan().unwrap(), 0);
        assert!(journal.latest(10).unwrap().is_empty());
    }

    #[test]
    fn card_data_is_sealed_on_disk_and_clear_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        assert!(journal.is_sealed());
        let sale = sale(&journal, 1, &reversal());
        journal.set_state(sale, State::ReversalPending).unwrap();
        let offline = offline_sale(&journal, 2);
        let void = sale_like_void(&journal, sale);
        journal.set_pending(void, &reversal()).unwrap();

        let bytes = on_disk(dir.path());
        assert!(holds(&bytes, b"622202***0128"), "the masked PAN is there: the bytes are the journal's");
        assert!(!holds(&bytes, PAN.as_bytes()), "a clear PAN in the journal's files");
        let stored: String = journal
            .connection
            .query_row("SELECT pan FROM entries WHERE id = ?1", params![sale], |row| row.get(0))
            .unwrap();
        assert!(stored.starts_with("v1:"), "{stored}");

        // What the terminal reads is clear: the reversal and the upload to send, the PAN.
        let unsent = journal.unsent().unwrap();
        let ids: Vec<i64> = unsent.iter().map(|entry| entry.id).collect();
        assert_eq!(ids, vec![sale, offline]);
        assert_eq!(unsent[0].pending.as_deref(), Some(reversal().as_slice()));
        assert_eq!(unsent[0].pan(), Some(PAN));
        assert_eq!(unsent[1].pending.as_deref(), Some(format!("0220|35={PAN}=3012|").as_bytes()));
        assert_eq!(journal.entry(void).unwrap().unwrap().pending.as_deref(), Some(reversal().as_slice()));
    }

    /// A void row of `sale` (its pending message set later).
    fn sale_like_void(journal: &Journal, sale: i64) -> i64 {
        journal
            .insert(&NewEntry {
                kind: Some(Kind::Void),
                batch: 1,
                stan: 3,
                amount_minor: 1234,
                pan: Some(PAN.into()),
                original_id: Some(sale),
                ..NewEntry::default()
            })
            .unwrap()
    }

    #[test]
    fn a_journal_of_another_key_or_terminal_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        let sale = sale(&journal, 1, &reversal());
        offline_sale(&journal, 2);
        drop(journal); // killed mid-exchange: the sale owes its reversal

        let error = Journal::open_sealed(dir.path(), key_of(OTHER_TMK, "10000001")).unwrap_err();
        assert!(matches!(error, JournalError::WrongKey { sealed_rows: 2, .. }), "{error:?}");
        assert!(error.to_string().contains("another terminal master key"), "{error}");
        let error = Journal::open_sealed(dir.path(), key_of(TMK, "10000002")).unwrap_err();
        assert!(
            matches!(&error, JournalError::OtherTerminal { journal_terminal_id, .. } if journal_terminal_id == "10000001"),
            "{error:?}"
        );
        let error = Journal::open(dir.path()).unwrap_err();
        assert!(matches!(error, JournalError::KeyRequired { .. }), "{error:?}");

        // Nothing was lost nor changed: the right key finds the reversal and the upload.
        let journal = open(dir.path());
        let unsent = journal.unsent().unwrap();
        assert_eq!(unsent.len(), 2);
        assert_eq!((unsent[0].id, unsent[0].state), (sale, State::ReversalPending));
        assert_eq!(unsent[0].pending.as_deref(), Some(reversal().as_slice()));
    }

    #[test]
    fn a_journal_without_card_data_is_taken_over_by_a_new_tmk() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        journal.set_batch(1).unwrap();
        let id = sale(&journal, 1, &reversal());
        journal.answer(id, State::Approved, &Outcome::default()).unwrap();
        journal.close_batch(1, 2).unwrap();
        drop(journal);

        // The TMK changed after the settlement: nothing sealed is left, so nothing is lost.
        let new_key = key_of(OTHER_TMK, "10000001");
        let journal = Journal::open_sealed(dir.path(), new_key.clone()).unwrap();
        assert_eq!(journal.batch().unwrap(), 2);
        assert_eq!(journal.last_stan().unwrap(), 0);
        sale(&journal, 2, &reversal());
        drop(journal);
        // Now the old key is the wrong one.
        let error = Journal::open_sealed(dir.path(), key_of(TMK, "10000001")).unwrap_err();
        assert!(matches!(error, JournalError::WrongKey { sealed_rows: 1, .. }), "{error:?}");
        let journal = Journal::open_sealed(dir.path(), new_key).unwrap();
        assert_eq!(journal.unsent().unwrap()[0].pending.as_deref(), Some(reversal().as_slice()));
    }

    #[test]
    fn clear_rows_of_an_older_journal_are_sealed_once_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut clear = Journal::open(dir.path()).unwrap();
        assert!(!clear.is_sealed());
        clear.set_batch(1).unwrap();
        let settled = sale(&clear, 1, &reversal());
        clear.answer(settled, State::Approved, &Outcome::default()).unwrap();
        clear.close_batch(1, 2).unwrap();
        let reversed = sale(&clear, 2, &reversal());
        let offline = offline_sale(&clear, 3);
        drop(clear);
        assert!(holds(&on_disk(dir.path()), PAN.as_bytes()), "an older journal holds clear PANs");

        let journal = open(dir.path());
        assert!(!holds(&on_disk(dir.path()), PAN.as_bytes()), "a clear PAN left after the migration");
        let unsent = journal.unsent().unwrap();
        let ids: Vec<(i64, State)> = unsent.iter().map(|entry| (entry.id, entry.state)).collect();
        assert_eq!(ids, vec![(reversed, State::ReversalPending), (offline, State::OfflineUnsent)]);
        assert_eq!(unsent[0].pending.as_deref(), Some(reversal().as_slice()));
        assert_eq!(unsent[1].pan(), Some(PAN));
        assert_eq!(journal.entry(settled).unwrap().unwrap().pan(), None, "erased stays erased");
        drop(journal);

        // Sealed once: opening again does not seal the sealed values a second time.
        let journal = open(dir.path());
        assert_eq!(journal.entry(offline).unwrap().unwrap().pan(), Some(PAN));
        assert_eq!(journal.entry(reversed).unwrap().unwrap().pending.as_deref(), Some(reversal().as_slice()));
    }

    #[test]
    fn a_wiped_journal_stays_sealed_and_an_altered_value_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        sale(&journal, 1, &reversal());
        journal.wipe().unwrap();
        let id = sale(&journal, 1, &reversal());
        drop(journal);
        let journal = open(dir.path());
        assert_eq!(journal.entry(id).unwrap().unwrap().pan(), Some(PAN));
        assert!(matches!(
            Journal::open_sealed(dir.path(), key_of(OTHER_TMK, "10000001")),
            Err(JournalError::WrongKey { .. })
        ));

        // A sealed PAN altered on disk does not open, and says so (without a panic).
        journal
            .connection
            .execute(
                "UPDATE entries SET pan = substr(pan, 1, 30) || \
                 CASE substr(pan, 31, 1) WHEN 'A' THEN 'B' ELSE 'A' END || substr(pan, 32) WHERE id = ?1",
                params![id],
            )
            .unwrap();
        let error = journal.entry(id).unwrap_err();
        assert!(matches!(error, JournalError::Sealing { what: "pan", .. }), "{error:?}");
        assert!(!error.to_string().contains(PAN));
    }
}

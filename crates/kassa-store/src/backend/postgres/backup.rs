//! Backup and restore of a PostgreSQL database, consistent while the host runs.
//!
//! Backup reads every table with `COPY … TO STDOUT` inside one `REPEATABLE READ READ ONLY`
//! transaction — one snapshot of the whole database — into a self-describing file: a header
//! with the format version and the applied migrations, one section per table in the text COPY
//! format, and a SHA-256 over everything before the trailer.
//!
//! Restore checks the file (trailer digest, same migrations as this database) and then, in ONE
//! transaction, empties every table, copies the backup in, moves the id sequences past the
//! restored ids, and verifies what it restored — a balanced ledger whose cached balances match
//! its postings, an unbroken audit chain — before it commits. On any failure it rolls back: the
//! database is the old one or the restored one, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::core::queries::{Reader, SqlReads};
use crate::core::value::{Row, Value};
use crate::{RestoreReport, StoreError};

const MAGIC: &str = "KASSA-BACKUP 1 postgres";
const TABLE_PREFIX: &str = "TABLE ";
const END_OF_DATA: &str = "\\.";
const TRAILER_PREFIX: &str = "SHA256 ";
/// The largest backup file restore reads (it is read whole before anything is touched).
const BACKUP_BYTES_MAX: u64 = 16 * 1024 * 1024 * 1024;
/// Sequences and the table whose `id` they feed.
const SEQUENCES: [(&str, &str); 4] = [
    ("transactions_id_seq", "transactions"),
    ("ledger_entries_id_seq", "ledger_entries"),
    // The identity columns' own sequences.
    ("corrections_id_seq", "corrections"),
    ("payouts_id_seq", "payouts"),
];

use super::db_error;

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Database(format!("{}: {e}", path.display()))
}

/// The data tables in an order where every table comes after the tables it refers to.
async fn tables_in_dependency_order(client: &Client) -> Result<Vec<String>, StoreError> {
    let tables: BTreeSet<String> = client
        .query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'kassa_schema_migrations'", &[])
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let mut refers: BTreeMap<String, BTreeSet<String>> = tables.iter().map(|t| (t.clone(), BTreeSet::new())).collect();
    let edges = client
        .query(
            "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c \
             JOIN pg_namespace n ON n.oid = c.connamespace WHERE c.contype = 'f' AND n.nspname = current_schema()",
            &[],
        )
        .await
        .map_err(db_error)?;
    for edge in edges {
        let (from, to): (String, String) = (edge.get(0), edge.get(1));
        if from != to {
            refers.entry(from).or_default().insert(to);
        }
    }
    let mut ordered = Vec::new();
    while !refers.is_empty() {
        let ready: Vec<String> = refers
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| ordered.contains(d) || !tables.contains(d)))
            .map(|(t, _)| t.clone())
            .collect();
        if ready.is_empty() {
            return Err(StoreError::Schema("foreign keys form a cycle".into()));
        }
        for table in ready {
            refers.remove(&table);
            ordered.push(table);
        }
    }
    Ok(ordered)
}

async fn migrations_line(client: &Client) -> Result<String, StoreError> {
    let rows = client
        .query("SELECT version, checksum FROM kassa_schema_migrations ORDER BY version", &[])
        .await
        .map_err(db_error)?;
    let applied: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    serde_json::to_string(&applied).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Writes a consistent backup of the database behind `client` to `path`.
pub(crate) async fn backup(client: &mut Client, path: &Path) -> Result<(), StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db_error)?;
    // Copying every table may take longer than the session's OLTP statement timeout.
    tx.batch_execute(super::UNBOUNDED_TRANSACTION).await.map_err(db_error)?;
    let mut out = Vec::new();
    writeln!(out, "{MAGIC}").map_err(io_error(path))?;
    writeln!(out, "{}", migrations_line(tx.client()).await?).map_err(io_error(path))?;
    for table in tables_in_dependency_order(tx.client()).await? {
        writeln!(out, "{TABLE_PREFIX}{table}").map_err(io_error(path))?;
        let stream = tx.copy_out(&format!("COPY {table} TO STDOUT")).await.map_err(db_error)?;
        futures_util::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.map_err(db_error)?);
        }
        writeln!(out, "{END_OF_DATA}").map_err(io_error(path))?;
    }
    tx.commit().await.map_err(db_error)?;
    let digest = hex::encode(Sha256::digest(&out));
    writeln!(out, "{TRAILER_PREFIX}{digest}").map_err(io_error(path))?;
    // Written beside the target and renamed, so a crash never leaves half a backup under its
    // name; mode 0600 from the start, since it holds all of the data.
    let temporary = path.with_extension("partial");
    let _ = tokio::fs::remove_file(&temporary).await;
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let written = async {
        let mut file = options.open(&temporary).await?;
        tokio::io::AsyncWriteExt::write_all(&mut file, &out).await?;
        file.sync_all().await
    };
    if let Err(error) = written.await {
        let _ = tokio::fs::remove_file(&temporary).await;
        return Err(io_error(&temporary)(error));
    }
    tokio::fs::rename(&temporary, path).await.map_err(io_error(path))
}

/// A parsed backup file.
struct BackupFile {
    migrations: String,
    tables: Vec<(String, Vec<u8>)>,
}

fn parse(bytes: &[u8], path: &Path) -> Result<BackupFile, StoreError> {
    let bad = |why: &str| StoreError::Corrupt(format!("{} is not a Kassa PostgreSQL backup: {why}", path.display()));
    let body_end = bytes[..bytes.len().saturating_sub(1)].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let trailer = std::str::from_utf8(&bytes[body_end..]).map_err(|_| bad("unreadable trailer"))?.trim_end();
    let digest = trailer.strip_prefix(TRAILER_PREFIX).ok_or_else(|| bad("no trailer"))?;
    if hex::encode(Sha256::digest(&bytes[..body_end])) != digest {
        return Err(bad("its digest does not match (damaged or edited)"));
    }
    let mut lines = bytes[..body_end].split(|&b| b == b'\n');
    if lines.next() != Some(MAGIC.as_bytes()) {
        return Err(bad("wrong header"));
    }
    let migrations =
        String::from_utf8(lines.next().ok_or_else(|| bad("no migrations"))?.to_vec()).map_err(|_| bad("migrations"))?;
    let mut tables = Vec::new();
    let mut current: Option<(String, Vec<u8>)> = None;
    for line in lines {
        match &mut current {
            None if line.is_empty() => {}
            None => {
                let name = std::str::from_utf8(line)
                    .ok()
                    .and_then(|l| l.strip_prefix(TABLE_PREFIX))
                    .ok_or_else(|| bad("expected a table"))?;
                if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                    return Err(bad("bad table name"));
                }
                current = Some((name.to_owned(), Vec::new()));
            }
            Some(_) if line == END_OF_DATA.as_bytes() => tables.extend(current.take()),
            Some((_, data)) => {
                data.extend_from_slice(line);
                data.push(b'\n');
            }
        }
    }
    if current.is_some() {
        return Err(bad("a table section is not closed"));
    }
    Ok(BackupFile { migrations, tables })
}

/// Reads through one client, inside whatever transaction it has open.
struct ClientReader {
    client: Arc<Client>,
}

#[async_trait]
impl Reader for ClientReader {
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        super::query_on(&self.client, sql, params).await
    }
}

/// Restores the backup at `path` into the database behind `client` (see the module doc).
pub(crate) async fn restore(client: Arc<Client>, path: &Path) -> Result<RestoreReport, StoreError> {
    let size = tokio::fs::metadata(path).await.map_err(io_error(path))?.len();
    if size > BACKUP_BYTES_MAX {
        return Err(StoreError::Corrupt(format!("{} is larger than {BACKUP_BYTES_MAX} bytes", path.display())));
    }
    let bytes = tokio::fs::read(path).await.map_err(io_error(path))?;
    let backup = parse(&bytes, path)?;
    client.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE").await.map_err(db_error)?;
    match restore_in_transaction(&client, &backup).await {
        Ok(report) => {
            client.batch_execute("COMMIT").await.map_err(db_error)?;
            Ok(report)
        }
        Err(error) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(error)
        }
    }
}

async fn restore_in_transaction(client: &Arc<Client>, backup: &BackupFile) -> Result<RestoreReport, StoreError> {
    if migrations_line(client).await? != backup.migrations {
        return Err(StoreError::Schema("the backup was taken at another schema version than this database's".into()));
    }
    let tables = tables_in_dependency_order(client).await?;
    let restored: BTreeSet<&str> = backup.tables.iter().map(|(t, _)| t.as_str()).collect();
    if restored != tables.iter().map(String::as_str).collect() {
        return Err(StoreError::Schema("the backup's tables differ from this database's".into()));
    }
    client.batch_execute(&format!("TRUNCATE {}", tables.join(", "))).await.map_err(db_error)?;
    let order: BTreeMap<&str, usize> = tables.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut sections: Vec<&(String, Vec<u8>)> = backup.tables.iter().collect();
    sections.sort_by_key(|(t, _)| order.get(t.as_str()).copied().unwrap_or(usize::MAX));
    for (table, data) in sections {
        let sink = client.copy_in::<_, Bytes>(&format!("COPY {table} FROM STDIN")).await.map_err(db_error)?;
        futures_util::pin_mut!(sink);
        sink.send(Bytes::copy_from_slice(data)).await.map_err(db_error)?;
        sink.as_mut().finish().await.map_err(db_error)?;
    }
    for (sequence, table) in SEQUENCES {
        client
            .batch_execute(&format!(
                "SELECT setval('{sequence}', GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1))"
            ))
            .await
            .map_err(db_error)?;
    }
    let reads = SqlReads { reader: Arc::new(ClientReader { client: client.clone() }) };
    let check = crate::LedgerStore::check(&reads).await?;
    if !check.is_sound() {
        return Err(StoreError::Corrupt(format!("the ledger does not balance: {check:?}")));
    }
    let audit_records = match crate::verify_audit_chain(&reads).await? {
        Ok(count) => count,
        Err(seq) => return Err(StoreError::Corrupt(format!("the audit chain is broken at record {seq}"))),
    };
    let transactions = reads
        .reader
        .query("SELECT COUNT(*) FROM transactions", &[])
        .await?
        .first()
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    Ok(RestoreReport { transactions, ledger_entries: check.entries, audit_records })
}

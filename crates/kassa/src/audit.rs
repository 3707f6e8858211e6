//! `kassa audit verify`: walks the audit log's hash chain from its first record and says how
//! many records verify, or which record first breaks the chain (edited, removed, inserted or
//! reordered; docs/reference/cli.md).
//!
//! It only reads, so it runs beside a live host (SQLite readers do not block the writer) and
//! takes no data-directory lock. It never opens a database that is not there: an SQLite file
//! created by the check itself would verify as an empty, "intact" log.

use anyhow::Context;
use kassa_server::{Config, DatabaseKind};

use crate::store;

/// Verifies the chain; `Ok` with the number of records, or an error naming the first broken one.
#[expect(clippy::print_stdout, reason = "the count is what `kassa audit verify` is run for")]
pub async fn verify(config: &Config) -> anyhow::Result<()> {
    if config.database_url.kind() == Some(DatabaseKind::Sqlite) {
        let url = config.database_url.expose();
        let path = url.trim_start_matches("sqlite://").split('?').next().unwrap_or_default();
        anyhow::ensure!(std::path::Path::new(path).exists(), "no database at {path}");
    }
    let store = store::open(config).await?;
    let outcome = kassa_store::verify_audit_chain(store.inner().audit.as_ref())
        .await
        .with_context(|| format!("cannot read the audit log of {}", config.database_url))?;
    match outcome {
        Ok(records) => {
            println!("audit log of {} verified: {records} records, hash chain intact", config.database_url);
            Ok(())
        }
        Err(seq) => anyhow::bail!(
            "the audit log of {} is broken at record {seq} (edited, removed or reordered); the {} records \
             before it verify",
            config.database_url,
            seq.saturating_sub(1)
        ),
    }
}

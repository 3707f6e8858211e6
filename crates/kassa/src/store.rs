//! Where the binary meets `kassa-store`: open and migrate the database, turn its health into the
//! host's readiness and durability report, and the whole-database commands.
//!

use std::path::Path;
use std::sync::Arc;

use kassa_crypto::MasterKey;
use kassa_server::{BoxFuture, Config, DatabaseUrl, Readiness};
use kassa_store::{AdminStore, StoreError, StoreOptions};

use anyhow::Context;

use crate::demo::{self, DemoSecrets};
use crate::seed;

/// The open database.
#[derive(Debug)]
pub struct Store {
    inner: kassa_store::Store,
    url: DatabaseUrl,
}

/// Whether the database holds the demo data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoState {
    /// Nothing seeded yet: generate secrets, write the credentials file, seed.
    Empty,
    /// Seeded earlier: reuse the credentials file.
    Seeded,
    /// The database holds other data: demo data is only ever seeded into an empty database.
    Foreign,
}

/// Opens the database of `config` without migrating it. The error is one line naming the masked
/// URL, e.g. `cannot open the database postgres://kassa:***@db/kassa: database unreachable: …`.
pub async fn open(config: &Config) -> anyhow::Result<Store> {
    let url = config.database_url.clone();
    if url.kind() == Some(kassa_server::DatabaseKind::Sqlite) {
        // New files are created 0600; one created by an older version may not be.
        let path = url.expose().trim_start_matches("sqlite://").split('?').next().unwrap_or_default().to_owned();
        for file in [path.clone(), format!("{path}-wal"), format!("{path}-shm")] {
            crate::files::warn_if_not_private(Path::new(&file));
        }
    }
    let inner = kassa_store::Store::open(url.expose(), StoreOptions::default())
        .await
        .map_err(|error| anyhow::anyhow!("cannot open the database {url}: {error}"))?;
    Ok(Store { inner, url })
}

/// Opens the database and applies pending migrations (`up`, `serve`).
pub async fn open_and_migrate(config: &Config) -> anyhow::Result<Store> {
    let store = open(config).await?;
    store.migrate().await?;
    Ok(store)
}

impl Store {
    /// The store itself, for the servers that use it directly.
    pub fn inner(&self) -> &kassa_store::Store {
        &self.inner
    }

    /// The check behind `/readyz`: database reachable and migrations applied.
    pub fn readiness(&self) -> Arc<dyn Readiness> {
        Arc::new(StoreReadiness { admin: self.inner.admin.clone() })
    }

    /// Fails, with a one-line reason, unless every commit is on stable storage before it is
    /// answered: `up` and `serve` refuse to serve approvals that a crash could lose. The store
    /// sets `synchronous_commit = on` for each of its PostgreSQL sessions, so only what a
    /// session cannot change is left to refuse (a server running with `fsync = off`).
    pub async fn ensure_durable(&self) -> anyhow::Result<()> {
        match self.inner.admin.not_durable_because().await {
            Ok(None) => Ok(()),
            Ok(Some(reason)) => anyhow::bail!("refusing to serve: commits to {} are not durable: {reason}", self.url),
            Err(error) => {
                anyhow::bail!("refusing to serve: cannot tell whether commits to {} are durable: {error}", self.url)
            }
        }
    }

    /// The store's report that every approval is committed before it is answered
    /// (`kassa_store_durable`); `false` when the database cannot tell.
    pub async fn durable(&self) -> bool {
        match self.inner.admin.durable().await {
            Ok(durable) => durable,
            Err(error) => {
                tracing::warn!(%error, "the database does not say whether commits are durable; reporting not durable");
                false
            }
        }
    }

    /// Whether the demo data is in the database.
    pub async fn demo_state(&self) -> anyhow::Result<DemoState> {
        let directory = &self.inner.directory;
        if directory.merchant(demo::DEMO_MERCHANT_ID).await.context("cannot read the merchants")?.is_some() {
            return Ok(DemoState::Seeded);
        }
        let counts = directory.counts().await.context("cannot count the directory")?;
        Ok(if counts == kassa_store::DirectoryCounts::default() { DemoState::Empty } else { DemoState::Foreign })
    }

    /// Seeds the demo data (`crate::seed`) in one write unit: all of it or none.
    pub async fn seed_demo(&self, secrets: &DemoSecrets, master_key: &MasterKey) -> anyhow::Result<()> {
        let unit = tokio::task::block_in_place(|| seed::demo_unit(secrets, master_key))?;
        self.inner.commit(unit).await.map_err(|error| anyhow::anyhow!("cannot seed the demo data: {error}"))?;
        Ok(())
    }

    /// Applies pending migrations; refuses a schema changed after it was applied.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.inner
            .admin
            .migrate()
            .await
            .map_err(|error| anyhow::anyhow!("cannot migrate the database {}: {error}", self.url))
    }

    /// Writes a consistent copy of the whole database to `file` (`kassa backup FILE`).
    pub async fn backup(&self, file: &Path) -> anyhow::Result<()> {
        self.inner
            .admin
            .backup(file)
            .await
            .map_err(|error| anyhow::anyhow!("cannot back up {} to {}: {error}", self.url, file.display()))
    }

    /// Restores `file` (a `kassa backup`) into this database after verifying it.
    pub async fn restore(&self, file: &Path) -> anyhow::Result<kassa_store::RestoreReport> {
        self.inner
            .admin
            .restore(file)
            .await
            .map_err(|error| anyhow::anyhow!("cannot restore {}: {error}", file.display()))
    }
}

/// `/readyz` through the store: reachable, migrated, and accepting writes (a read-only SQLite
/// file or directory, a PostgreSQL standby or read-only database is not ready, since every
/// approval would fail). Answers with a short reason; the details go to the log, since they
/// may name hosts and files a client has no business seeing.
struct StoreReadiness {
    admin: Arc<dyn AdminStore>,
}

impl Readiness for StoreReadiness {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.admin.ready().await.map_err(|error| {
                tracing::warn!(%error, "not ready");
                match error {
                    StoreError::Unreachable(_) | StoreError::Closed => "database unreachable",
                    StoreError::Timeout(_) | StoreError::CommitUnknown(_) => "database not answering",
                    StoreError::ReadOnly(_) => "database read-only",
                    StoreError::Schema(_) => "database schema not migrated",
                    _ => "database error",
                }
                .to_owned()
            })
        })
    }
}

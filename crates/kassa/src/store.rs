//! Where the binary meets `kassa-store`: open and migrate the database, turn its health into the
//! host's readiness and durability report, and the whole-database commands.
//!
//! Items marked `STORE:` are still to be filled in by the store's owner (demo seeding, restore);
//! until then they say so honestly instead of pretending.

use std::path::Path;
use std::sync::Arc;

use kassa_crypto::MasterKey;
use kassa_host::{BoxFuture, Config, DatabaseUrl, Readiness};
use kassa_store::{AdminStore, StoreError, StoreOptions};

use crate::demo::DemoSecrets;

/// The open database.
#[derive(Debug)]
pub struct Store {
    inner: kassa_store::Store,
    url: DatabaseUrl,
    /// Where the demo credentials live; only used by the stand-in of [`Store::demo_state`].
    demo_credentials_path: std::path::PathBuf,
}

/// Whether the database holds the demo data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoState {
    /// Nothing seeded yet: generate secrets, write the credentials file, seed.
    Empty,
    /// Seeded earlier: reuse the credentials file.
    Seeded,
}

/// Opens the database of `config` without migrating it. The error is one line naming the masked
/// URL, e.g. `cannot open the database postgres://kassa:***@db/kassa: database unreachable: …`.
pub async fn open(config: &Config) -> anyhow::Result<Store> {
    let url = config.database_url.clone();
    let inner = kassa_store::Store::open(url.expose(), StoreOptions::default())
        .await
        .map_err(|error| anyhow::anyhow!("cannot open the database {url}: {error}"))?;
    Ok(Store { inner, url, demo_credentials_path: config.demo_credentials_path() })
}

/// Opens the database and applies pending migrations (`up`, `serve`).
pub async fn open_and_migrate(config: &Config) -> anyhow::Result<Store> {
    let store = open(config).await?;
    store.migrate().await?;
    Ok(store)
}

impl Store {
    /// The check behind `/readyz`: database reachable and migrations applied.
    pub fn readiness(&self) -> Arc<dyn Readiness> {
        Arc::new(StoreReadiness { admin: self.inner.admin.clone() })
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
    ///
    /// STORE: ask the database (`self.inner.directory.merchant(demo::DEMO_MERCHANT_ID)`) once
    /// [`Store::seed_demo`] really seeds. Until then the credentials file stands in for the
    /// database: it is written before seeding, so "file present" is what "seeded" will mean.
    pub async fn demo_state(&self) -> anyhow::Result<DemoState> {
        Ok(if self.demo_credentials_path.exists() { DemoState::Seeded } else { DemoState::Empty })
    }

    /// Seeds the demo data of `crate::demo` in one write unit.
    ///
    /// STORE: merchants, terminals (with `demo::DEMO_TMK` sealed under `master_key`, and each
    /// terminal's `tms_credential` as a SHA-256 digest), operators and the refund password as
    /// Argon2id hashes marked "must change", back-office users, fee rates, terminal parameters,
    /// the API key's digest (`kassa_crypto::api_key_digest`), the app's public key
    /// (`secrets.app_public_key_pem()`) under `secrets.app_id`, and the gateway's private key
    /// (`secrets.gateway_private_key_pem()`) sealed under `master_key`. Every fact comes from the
    /// constants in `crate::demo`.
    pub async fn seed_demo(&self, secrets: &DemoSecrets, master_key: &MasterKey) -> anyhow::Result<()> {
        let _ = (secrets, master_key);
        tracing::warn!("demo data not seeded: seeding is not wired to the store yet");
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

    /// Replaces the database's content with `file` (`kassa restore FILE`), after verifying it.
    ///
    /// STORE: `kassa-store` has no restore yet; it must refuse while a host runs against the same
    /// database.
    pub async fn restore(&self, file: &Path) -> anyhow::Result<()> {
        let _ = file;
        Err(anyhow::anyhow!("restore: the store cannot restore a backup yet"))
    }
}

/// `/readyz` through the store. Answers with a short reason; the details go to the log, since
/// they may name hosts and files a client has no business seeing.
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
                    StoreError::Schema(_) => "database schema not migrated",
                    _ => "database error",
                }
                .to_owned()
            })
        })
    }
}

//! Where the binary meets `kassa-store`. Every item marked `STORE:` is an integration point the
//! store fills in; until it does, this module says so honestly instead of pretending:
//! `/readyz` answers 503 `store not wired`, `kassa_store_durable` is 0, and `migrate`, `backup`
//! and `restore` fail with a one-line reason.
//!
//! Kept in one file so that wiring the store is one focused change.

use std::path::Path;
use std::sync::Arc;

use kassa_crypto::MasterKey;
use kassa_host::{BoxFuture, Config, Readiness};

use crate::demo::DemoSecrets;

/// The reason `/readyz` gives until the store is wired.
pub const NOT_WIRED: &str = "store not wired";

/// The open database.
///
/// STORE: hold the store's handle (e.g. `Arc<dyn kassa_store::Store>` or the pool) here.
#[derive(Debug)]
pub struct Store {
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

/// Opens the database of `config` and applies pending migrations.
///
/// STORE: `kassa_store::open(config.database_url.expose())` (creating the SQLite file under
/// `config.data_dir`), then migrate. An unreachable database must come back as an error whose
/// one-line message names the masked URL (`config.database_url` displays masked), e.g.
/// `cannot open the database postgres://kassa:***@db/kassa: connection refused`.
pub async fn open(config: &Config) -> anyhow::Result<Store> {
    tracing::warn!(database = %config.database_url, "the store is not wired yet: /readyz answers 503 until it is");
    Ok(Store { demo_credentials_path: config.demo_credentials_path() })
}

impl Store {
    /// The check behind `/readyz`: database reachable and migrations applied.
    ///
    /// STORE: a `SELECT 1` plus "no pending migration", with a short reason on failure
    /// ("database unreachable", "migrations pending").
    pub fn readiness(&self) -> Arc<dyn Readiness> {
        Arc::new(NotWired)
    }

    /// The store's report that every approval is committed before it is answered
    /// (`kassa_store_durable`).
    ///
    /// STORE: true when the backend commits synchronously (SQLite `synchronous=FULL` or
    /// `NORMAL` in WAL with group commit awaited; PostgreSQL `synchronous_commit=on`).
    pub fn durable(&self) -> bool {
        false
    }

    /// Whether the demo data is in the database.
    ///
    /// STORE: ask the database (e.g. does merchant `demo::DEMO_MERCHANT_ID` exist). Until then the
    /// credentials file stands in for the database: it is written before seeding, so "file
    /// present" is what "seeded" will mean once seeding is real.
    pub async fn demo_state(&self) -> anyhow::Result<DemoState> {
        Ok(if self.demo_credentials_path.exists() { DemoState::Seeded } else { DemoState::Empty })
    }

    /// Seeds the demo data of `crate::demo` in one transaction.
    ///
    /// STORE: merchants, terminals (with `demo::DEMO_TMK` sealed under `master_key`, and each
    /// terminal's `tms_credential` as a SHA-256 digest), operators and the refund password as
    /// Argon2id hashes marked "must change", back-office users, fee rates, terminal parameters,
    /// the API key's SHA-256 digest, the app's public key (`secrets.app_public_key_pem()`) under
    /// `secrets.app_id`, and the gateway's private key (`secrets.gateway_private_key_pem()`)
    /// sealed under `master_key`. Every fact comes from the constants in `crate::demo`.
    pub async fn seed_demo(&self, secrets: &DemoSecrets, master_key: &MasterKey) -> anyhow::Result<()> {
        let _ = (secrets, master_key);
        tracing::warn!("demo data not seeded: the store is not wired yet");
        Ok(())
    }

    /// Applies pending migrations (`kassa migrate`). [`open`] migrates already; this reports it.
    ///
    /// STORE: return the number of migrations applied so `kassa migrate` can print it.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        Err(not_wired("migrate"))
    }

    /// Writes a consistent copy of the whole database to `file` (`kassa backup FILE`).
    ///
    /// STORE: SQLite `VACUUM INTO` / online backup API; PostgreSQL a logical dump of Kassa's
    /// tables; then verify the copy.
    pub async fn backup(&self, file: &Path) -> anyhow::Result<()> {
        let _ = file;
        Err(not_wired("backup"))
    }

    /// Replaces the database's content with `file` (`kassa restore FILE`), after verifying it.
    ///
    /// STORE: refuse while a host is running against the same database.
    pub async fn restore(&self, file: &Path) -> anyhow::Result<()> {
        let _ = file;
        Err(not_wired("restore"))
    }
}

fn not_wired(command: &str) -> anyhow::Error {
    anyhow::anyhow!("{command}: the database store is not wired into this build yet")
}

/// Readiness until the store is wired: never ready, and says why.
#[derive(Debug)]
struct NotWired;

impl Readiness for NotWired {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Err(NOT_WIRED.to_owned()) })
    }
}

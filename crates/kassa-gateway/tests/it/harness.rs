//! A gateway on port 0 over a fresh SQLite database with one merchant and its terminals.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use kassa_crypto::security_module::SOFTWARE_KEYS_MAX_DEFAULT;
use kassa_crypto::{KeyPurpose, MasterKey, SecurityModule, SoftwareSecurityModule, TdesKey};
use kassa_gateway::{Gateway, GatewayConfig, GatewayDeps, NoApprovals};
use kassa_issuer::{IssuerSimulator, SystemClock};
use kassa_store::{MerchantRecord, RefundPasswordMode, Store, StoreOptions, TerminalRecord, WriteOp, WriteUnit};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const MERCHANT: &str = "898100000000001";
pub const DEVICE_TERMINAL: &str = "10000001";
pub const HOST_TERMINAL: &str = "10000003";
pub const TMK: &str = "0123456789ABCDEFFEDCBA9876543210";
const ZPK: &str = "1122334455667788AABBCCDDEEFF0011";
/// 0.60 % in parts per million.
pub const CARD_FEE_PPM: u32 = 6000;
pub const ISSUER_TIMEOUT_MS: u64 = 300;

pub struct Host {
    pub store: Store,
    pub simulator: IssuerSimulator,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

fn master_key() -> Arc<MasterKey> {
    Arc::new(MasterKey::from_bytes([7; 32]))
}

impl Host {
    /// A fresh database with the merchant and its terminals, and a gateway on it.
    pub async fn start() -> Host {
        Host::start_with(|_| {}).await
    }

    /// Like [`Host::start`] with the gateway's config adjusted.
    pub async fn start_with(adjust: impl FnOnce(&mut GatewayConfig)) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("kassa.db").display());
        let store = Store::open(&url, StoreOptions::default()).await.unwrap();
        store.admin.migrate().await.unwrap();
        seed(&store).await;
        let simulator = IssuerSimulator::new(TdesKey::from_hex(ZPK).unwrap(), Arc::new(SystemClock));
        Host::serve(store, simulator, url, Some(dir), adjust).await
    }

    /// The merchant and its terminals seeded into `store` (a fresh database of either backend,
    /// `kassa_store::testing::TestDb`), and a gateway on it. Not for [`Host::restart`].
    pub async fn on(store: Store) -> Host {
        seed(&store).await;
        let simulator = IssuerSimulator::new(TdesKey::from_hex(ZPK).unwrap(), Arc::new(SystemClock));
        Host::serve(store, simulator, String::new(), None, |_| {}).await
    }

    async fn serve(
        store: Store,
        simulator: IssuerSimulator,
        url: String,
        dir: Option<tempfile::TempDir>,
        adjust: impl FnOnce(&mut GatewayConfig),
    ) -> Host {
        // A new security module each time, as after a restart: keys come back from the store.
        let security: Arc<dyn SecurityModule> =
            Arc::new(SoftwareSecurityModule::new(StdRng::from_entropy(), SOFTWARE_KEYS_MAX_DEFAULT));
        let zone_pin_key = security.import_key(KeyPurpose::ZonePin, TdesKey::from_hex(ZPK).unwrap()).unwrap();
        let mut config = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            issuer_timeout_ms: ISSUER_TIMEOUT_MS,
            incomplete_frame_timeout_ms: 300,
            ..GatewayConfig::default()
        };
        adjust(&mut config);
        let deps = GatewayDeps {
            store: store.clone(),
            security,
            master_key: master_key(),
            issuer: Arc::new(simulator.clone()),
            zone_pin_key,
            clock: Arc::new(SystemClock),
            refund_approvals: Arc::new(NoApprovals),
        };
        let gateway = Gateway::build(config, deps).await.unwrap();
        let addr = gateway.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move { gateway.run(token).await.unwrap() });
        Host { store, simulator, addr, shutdown, task, url, _dir: dir }
    }

    /// Stops the gateway gracefully and starts a new one (new process state: security module,
    /// sessions, locks) on the same database and issuer.
    pub async fn restart(self) -> Host {
        self.shutdown.cancel();
        self.task.await.unwrap();
        drop(self.store);
        let store = Store::open(&self.url, StoreOptions::default()).await.unwrap();
        Host::serve(store, self.simulator, self.url, self._dir, |_| {}).await
    }

    /// Stops the gateway gracefully, lets `between` change the database (as a host that
    /// stopped would have left it), then starts a new one like [`Host::restart`].
    pub async fn restart_after<T, F: std::future::Future<Output = T>>(
        self,
        between: impl FnOnce(Store) -> F,
    ) -> (Host, T) {
        self.shutdown.cancel();
        self.task.await.unwrap();
        let value = between(self.store).await;
        let store = Store::open(&self.url, StoreOptions::default()).await.unwrap();
        (Host::serve(store, self.simulator, self.url, self._dir, |_| {}).await, value)
    }

    /// The SQLite file of the store.
    pub fn database_path(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(self.url.strip_prefix("sqlite://").unwrap())
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await.unwrap().unwrap();
    }
}

async fn seed(store: &Store) {
    let master = master_key();
    let mut rng = StdRng::seed_from_u64(3);
    let merchant = MerchantRecord {
        merchant_id: MERCHANT.into(),
        name: "Demo Coffee".into(),
        mcc: "5812".into(),
        currency: "CNY".into(),
        fee_rates: BTreeMap::from([("card".to_owned(), CARD_FEE_PPM)]),
        created_at_ms: 0,
    };
    let mut ops = vec![WriteOp::PutMerchant(merchant)];
    for (terminal_id, mode) in
        [(DEVICE_TERMINAL, RefundPasswordMode::Device), (HOST_TERMINAL, RefundPasswordMode::Host)]
    {
        let tmk = TdesKey::from_hex(TMK).unwrap();
        let sealed = master.seal_tdes_key(&tmk, &format!("tmk:{terminal_id}"), &mut rng).unwrap();
        ops.push(WriteOp::PutTerminal(TerminalRecord {
            terminal_id: terminal_id.into(),
            merchant_id: MERCHANT.into(),
            refund_password_mode: mode,
            mac_algorithm: "x919".into(),
            tmk_sealed: sealed.as_bytes().to_vec(),
            tms_secret_sealed: vec![0],
            open_batch: 1,
            status: "active".into(),
            created_at_ms: 0,
        }));
    }
    store.commit(WriteUnit::ops(ops)).await.unwrap();
}

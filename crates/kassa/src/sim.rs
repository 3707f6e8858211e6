//! The channel simulators and the card issuer the host uses.
//!
//! `kassa sim` serves the simulators alone; `kassa up` serves the same router on its `--sim`
//! address and, unless `--issuer-url` points elsewhere, uses the same simulators in-process: the
//! card issuer (the issuer link of `kassa_issuer::server`) and the wallet simulator
//! (`kassa_wallet_sim`: both wallet providers' APIs, the payer, statements and faults), whose books
//! and credentials live in `<data-dir>/sim/`.
//!
//! The zone PIN key (ZPK) is the one secret host and issuer share: the host translates every
//! terminal PIN block to it, the issuer verifies PINs under it. Both sides read it from
//! `KASSA_ZONE_PIN_KEY` (32 hex characters, environment only, like the master key); where
//! simulators or demo data run and it is not set, both use [`demo::DEMO_ZONE_PIN_KEY`],
//! which is published and protects nothing. A production host (`kassa serve` without `demo`)
//! that talks to an issuer refuses to start without it. Banners print its key check value so
//! that an operator can see that both sides hold the same key.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use kassa_crypto::TdesKey;
use kassa_issuer::{IssuerConnector, IssuerSimulator, RemoteIssuer, RemoteIssuerConfig, SystemClock};
use kassa_server::Config;
use kassa_wallet_sim::{SimConfig, WalletSim};
use tokio_util::sync::CancellationToken;

use crate::demo;

/// Every simulator's routes, for the simulators' address.
pub fn router(issuer: IssuerSimulator, wallets: &WalletSim, shutdown: CancellationToken) -> Router {
    kassa_issuer::server::router(issuer, shutdown).merge(wallets.router())
}

/// Where the wallet simulator keeps its books and credentials.
pub fn wallet_sim_dir(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("sim")
}

/// Opens the wallet simulator of `config`, reachable at `addr`, and starts its background work
/// (payers confirming, orders expiring, notifications) until `shutdown`.
pub fn start_wallet_sim(
    config: &Config,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<(WalletSim, tokio::task::JoinHandle<()>)> {
    let sim_config = SimConfig::new(format!("http://{addr}"), Arc::new(kassa_domain::clock::SystemClock));
    let dir = wallet_sim_dir(config);
    let wallets = WalletSim::open(&dir, sim_config)
        .with_context(|| format!("cannot open the wallet simulator in {}", dir.display()))?;
    let background = wallets.clone();
    let task = tokio::spawn(async move { background.run(shutdown.cancelled_owned()).await });
    Ok((wallets, task))
}

/// The zone PIN key and where it came from.
#[derive(Debug, Clone)]
pub struct ZonePinKey {
    /// The key.
    pub key: TdesKey,
    /// `true`: the published demo key.
    pub demo: bool,
}

impl ZonePinKey {
    /// The banner's description: where the key came from and its check value (not a secret:
    /// the first three bytes of the key's encryption of zeros, as key custodians compare them).
    pub fn describe(&self) -> String {
        let check_value = self.key.check_value().to_string();
        let source = if self.demo { "demo key, not for production" } else { "KASSA_ZONE_PIN_KEY" };
        format!("kcv {} ({source})", check_value.get(..6).unwrap_or(&check_value))
    }
}

/// The zone PIN key of `config` (see the module documentation).
pub fn zone_pin_key(config: &Config) -> anyhow::Result<ZonePinKey> {
    if let Some(key) = &config.zone_pin_key {
        return Ok(ZonePinKey { key: key.clone(), demo: false });
    }
    if !(config.simulators || config.demo) {
        anyhow::bail!(
            "the card issuer needs the zone PIN key it shares with this host: set {} (32 hex characters)",
            kassa_server::config::env::ZONE_PIN_KEY
        );
    }
    let key = TdesKey::from_hex(demo::DEMO_ZONE_PIN_KEY).context("the demo zone PIN key does not parse")?;
    Ok(ZonePinKey { key, demo: true })
}

/// The card issuer the gateway asks, and how the banner names it.
#[derive(Debug)]
pub struct CardIssuer {
    /// The connector.
    pub connector: Arc<dyn IssuerConnector>,
    /// `in-process simulator` or the link's endpoint.
    pub description: String,
}

/// The remote issuer of `config`, checked before anything is written; `None` without
/// `issuer_url`.
pub fn remote_issuer_config(config: &Config) -> anyhow::Result<Option<RemoteIssuerConfig>> {
    let Some(url) = &config.issuer_url else { return Ok(None) };
    Ok(Some(RemoteIssuerConfig::new(url).context("invalid issuer_url")?))
}

/// The remote issuer when one is configured, else the in-process simulator, else none. Fails when
/// an `https://` issuer's certificate could not be checked against any trust anchor.
pub fn card_issuer(
    remote: Option<RemoteIssuerConfig>,
    simulator: Option<&IssuerSimulator>,
) -> anyhow::Result<Option<CardIssuer>> {
    Ok(match (remote, simulator) {
        (Some(remote), _) => {
            let issuer = RemoteIssuer::new(remote, Arc::new(SystemClock)).context("cannot reach the card issuer")?;
            let description = issuer.endpoint().to_string();
            Some(CardIssuer { connector: Arc::new(issuer), description })
        }
        (None, Some(simulator)) => {
            Some(CardIssuer { connector: Arc::new(simulator.clone()), description: "in-process simulator".to_owned() })
        }
        (None, None) => None,
    })
}

/// `kassa sim`: the simulators alone until SIGINT/SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listener = kassa_server::app::bind(config.sim, "sim").await?;
    let shutdown = CancellationToken::new();
    kassa_server::shutdown::cancel_on_signals(shutdown.clone()).context("cannot install signal handlers")?;
    let zone_pin_key = zone_pin_key(&config)?;
    let simulator = IssuerSimulator::new(zone_pin_key.key.clone(), Arc::new(SystemClock));
    let addr = listener.local_addr().context("cannot read the simulators' address")?;
    let (wallets, wallet_task) = start_wallet_sim(&config, addr, shutdown.clone())?;
    print_banner(addr, &zone_pin_key, &wallet_sim_dir(&config));
    let router = router(simulator, &wallets, shutdown.clone());
    let served = kassa_server::serve_until_stopped(listener, router, shutdown.clone(), "simulators").await;
    shutdown.cancel();
    let _ = wallet_task.await;
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Where the simulators are; one `name: value` per line, like `kassa up`'s banner.
#[expect(clippy::print_stdout, reason = "the address is the output `kassa sim` is run for")]
fn print_banner(addr: SocketAddr, zone_pin_key: &ZonePinKey, wallet_dir: &std::path::Path) {
    println!("kassa {} simulators are up", kassa_server::metrics::VERSION);
    println!("sim: http://{addr}");
    println!("issuer: http://{addr}{}", kassa_issuer::link::LINK_PATH);
    println!("zone_pin_key: {}", zone_pin_key.describe());
    println!("wallets: http://{addr}/sim/v1/alipay/gateway.do, http://{addr}/sim/v1/wechat");
    println!("wallet_credentials: {}", wallet_dir.join(kassa_wallet_sim::CREDENTIALS_FILE).display());
    println!("stop with Ctrl-C");
}

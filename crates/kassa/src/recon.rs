//! `kassa recon`: one reconciliation run of a channel's statement for a business day
//! (docs/reference/reconciliation.md). The statement is downloaded through the channel's
//! connector, as the host reaches it (the `wallet_credentials` file, else the credentials of the
//! wallet simulator in the data directory, which `kassa up` writes), or read from `--file`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use kassa_domain::clock::{Clock, SystemClock};
use kassa_domain::{Channel, CivilDate};
use kassa_recon::{ReconReport, Reconciler};
use kassa_server::Config;
use kassa_wallet::{AlipayConnector, WalletConnector, WalletCredentials, WechatConnector};

use crate::{gateway, qr, sim, store};

/// What `kassa recon` was asked.
#[derive(Debug, Clone)]
pub struct ReconRequest {
    /// `alipay`, `wechat` or `card`.
    pub channel: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// The statement, instead of downloading it.
    pub file: Option<PathBuf>,
    /// Print the JSON object instead of a sentence.
    pub json: bool,
}

/// The wallets' credentials as the host has them, or those of the simulator `kassa up` keeps
/// in the data directory.
fn credentials(config: &Config) -> anyhow::Result<WalletCredentials> {
    if let Some(credentials) = qr::credentials(config, None)? {
        return Ok(credentials);
    }
    let path = sim::wallet_sim_dir(config).join(kassa_wallet_sim::CREDENTIALS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("no wallet_credentials configured and no simulator credentials at {}", path.display())
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a wallet credentials file", path.display()))
}

fn connector(
    channel: Channel,
    credentials: &WalletCredentials,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<dyn WalletConnector>> {
    Ok(match channel {
        Channel::Alipay => Arc::new(
            AlipayConnector::from_credentials(&credentials.alipay, clock)
                .map_err(|error| anyhow::anyhow!("the Alipay-style connector: {error}"))?,
        ),
        Channel::Wechat => Arc::new(
            WechatConnector::from_credentials(&credentials.wechat, clock)
                .map_err(|error| anyhow::anyhow!("the WeChat-Pay-style connector: {error}"))?,
        ),
        Channel::Card => anyhow::bail!("the card channel has no wallet connector"),
    })
}

/// The host's reconciler (`kassa up`, `kassa serve`): the wallets it has credentials for, the
/// QR service to ask about trades it does not know the state of.
pub fn host_reconciler(
    config: &Config,
    store: &kassa_store::Store,
    qr_service: Option<kassa_qr::QrService>,
    simulator: Option<&kassa_wallet_sim::WalletSim>,
) -> anyhow::Result<Reconciler> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut reconciler = Reconciler::new(store.clone(), qr_service, clock.clone());
    if let Some(credentials) = qr::credentials(config, simulator)? {
        for channel in [Channel::Alipay, Channel::Wechat] {
            reconciler = reconciler.with_connector(connector(channel, &credentials, clock.clone())?);
        }
    }
    Ok(reconciler)
}

/// Runs `kassa recon`.
#[expect(clippy::print_stdout, reason = "the run's outcome is what `kassa recon` is run for")]
pub async fn run(config: &Config, request: &ReconRequest) -> anyhow::Result<()> {
    let channel = Channel::parse(&request.channel)
        .with_context(|| format!("--channel {:?}: expected alipay, wechat or card", request.channel))?;
    let date = CivilDate::parse(&request.date)
        .with_context(|| format!("--date {:?}: expected a date YYYY-MM-DD", request.date))?;
    anyhow::ensure!(channel != Channel::Card, "--channel card: the card clearing file is not reconciled yet");
    let store = store::open(config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let credentials = credentials(config)?;
    let base = qr::public_base_url(config, config.http, false)?;
    let qr_service = qr::service(store.inner(), &credentials, &base, gateway::business_day(config)?)?;
    let reconciler = Reconciler::new(store.inner().clone(), Some(qr_service), clock.clone());
    let report = match &request.file {
        Some(path) => reconciler.reconcile_file(channel, date, "cli", path).await?,
        None => {
            let connector = connector(channel, &credentials, clock)?;
            reconciler.reconcile_download(channel, date, "cli", connector.as_ref()).await?
        }
    };
    if request.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", sentence(&report));
    }
    Ok(())
}

fn sentence(report: &ReconReport) -> String {
    let counts = &report.counts;
    format!(
        "reconciliation run {} of {} for {}: {} lines, {} matched, {} amount mismatch, {} paid but not credited, \
         {} missing at the channel, {} status mismatch, {} corrections proposed",
        report.run_id,
        report.channel.as_str(),
        report.date,
        counts.lines,
        counts.matched,
        counts.amount_mismatch,
        counts.paid_not_credited,
        counts.missing_at_channel,
        counts.status_mismatch,
        counts.corrections_proposed
    )
}

//! `kassa recon`: one reconciliation run of a channel's statement for a business day
//! (docs/reference/reconciliation.md). A wallet's statement is downloaded through the channel's
//! connector, as the host reaches it (the `wallet_credentials` file, else the credentials of the
//! wallet simulator in the data directory, which `kassa up` writes); the card issuer's clearing
//! file from the issuer (`issuer_url`, else the simulators' address); or either is read from
//! `--file`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use kassa_domain::clock::{Clock, SystemClock};
use kassa_domain::{Channel, CivilDate};
use kassa_recon::run::ClearingSource;
use kassa_recon::{ReconReport, Reconciler};
use kassa_server::Config;
use kassa_wallet::{AlipayConnector, WalletConnector, WalletCredentials, WechatConnector};

use crate::{gateway, qr, sim, store};

/// How long fetching a clearing file may take.
const CLEARING_TIMEOUT_MS: u64 = 120_000;

/// The card issuer's clearing file over HTTP (`GET <issuer>/sim/v1/issuer/clearing/{date}`).
#[derive(Debug)]
struct HttpClearing {
    client: kassa_http_client::HttpClient,
    base_url: String,
}

impl HttpClearing {
    /// The issuer the host talks to: `issuer_url`, else the simulators' address (`sim_addr`
    /// when this process serves them, bound already; else the configured one).
    fn of(config: &Config, sim_addr: Option<std::net::SocketAddr>) -> anyhow::Result<HttpClearing> {
        let base_url = match &config.issuer_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", sim_addr.unwrap_or(config.sim)),
        };
        let client = kassa_http_client::HttpClient::new(kassa_http_client::HttpClientConfig {
            answer_timeout_ms: CLEARING_TIMEOUT_MS,
            ..kassa_http_client::HttpClientConfig::default()
        })
        .map_err(|error| anyhow::anyhow!("the issuer's HTTP client: {error}"))?;
        Ok(HttpClearing { client, base_url })
    }
}

#[async_trait::async_trait]
impl ClearingSource for HttpClearing {
    async fn clearing_to_file(&self, date: CivilDate, bytes_max: u64, file: &std::fs::File) -> Result<u64, String> {
        let uri = format!("{}/sim/v1/issuer/clearing/{date}", self.base_url);
        let request =
            axum::http::Request::get(uri).body(axum::body::Bytes::new()).map_err(|error| error.to_string())?;
        let answer = self.client.send_to_file(request, bytes_max, file).await.map_err(|error| error.to_string())?;
        if !answer.status.is_success() {
            return Err(format!("clearing file: HTTP {}", answer.status));
        }
        Ok(answer.body_bytes)
    }
}

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
    sim_addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<Reconciler> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut reconciler = Reconciler::new(store.clone(), qr_service, clock.clone());
    if config.issuer_url.is_some() || config.simulators {
        reconciler = reconciler.with_clearing(Arc::new(HttpClearing::of(config, sim_addr)?));
    }
    if let Some(credentials) = qr::credentials(config, simulator)? {
        for channel in [Channel::Alipay, Channel::Wechat] {
            reconciler = reconciler.with_connector(connector(channel, &credentials, clock.clone())?);
        }
    }
    Ok(reconciler)
}

/// Runs `kassa recon`.
pub async fn run(config: &Config, request: &ReconRequest) -> anyhow::Result<()> {
    let channel = Channel::parse(&request.channel)
        .with_context(|| format!("--channel {:?}: expected alipay, wechat or card", request.channel))?;
    let date = CivilDate::parse(&request.date)
        .with_context(|| format!("--date {:?}: expected a date YYYY-MM-DD", request.date))?;
    let store = store::open(config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    if channel == Channel::Card {
        // Card transactions are not asked about again: the issuer's file is what it decided.
        let reconciler = Reconciler::new(store.inner().clone(), None, clock)
            .with_clearing(Arc::new(HttpClearing::of(config, None)?));
        let report = match &request.file {
            Some(path) => reconciler.reconcile_file(channel, date, "cli", path).await?,
            None => reconciler.reconcile_day(channel, date, "cli").await?,
        };
        return print(&report, request.json);
    }
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
    print(&report, request.json)
}

#[expect(clippy::print_stdout, reason = "the run's outcome is what `kassa recon` is run for")]
fn print(report: &ReconReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", report.to_json());
    } else {
        println!("{}", sentence(report));
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

//! The wiring of QR payments: the wallet providers' credentials (the `wallet_credentials` file, or
//! the in-process wallet simulator's), one connector per wallet, the QR service with its public
//! base URL, its resolver task, and its metrics.

use std::sync::Arc;

use anyhow::Context;
use kassa_qr::{QrConfig, QrService, Wallets};
use kassa_server::Config;
use kassa_wallet::{AlipayConnector, WalletCredentials, WechatConnector};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

/// The largest credentials file read.
const CREDENTIALS_BYTES_MAX: u64 = 64 * 1024;

/// The wallets' credentials: the `wallet_credentials` file when configured, else those of the
/// in-process simulator, else none (the host then takes no QR payments).
pub fn credentials(
    config: &Config,
    simulator: Option<&kassa_wallet_sim::WalletSim>,
) -> anyhow::Result<Option<WalletCredentials>> {
    if let Some(path) = &config.wallet_credentials {
        let metadata = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        anyhow::ensure!(
            metadata.len() <= CREDENTIALS_BYTES_MAX,
            "{} is larger than {CREDENTIALS_BYTES_MAX} bytes",
            path.display()
        );
        warn_if_readable_by_others(path, &metadata);
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let credentials = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a wallet credentials file", path.display()))?;
        return Ok(Some(credentials));
    }
    Ok(simulator.map(kassa_wallet_sim::WalletSim::credentials))
}

/// The credentials file holds the app's private key and the WeChat API key: say so when others
/// than its owner may read it.
fn warn_if_readable_by_others(path: &std::path::Path, metadata: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the wallet credentials file is readable by others than its owner; chmod 600 it"
        );
    }
}

/// The QR service over both wallets' connectors, its codes and notify URLs on `public_base_url`,
/// its trades dated by `business_day` (the card side's).
pub fn service(
    store: &kassa_store::Store,
    credentials: &WalletCredentials,
    public_base_url: &str,
    business_day: kassa_domain::BusinessDay,
) -> anyhow::Result<QrService> {
    let clock: Arc<dyn kassa_domain::clock::Clock> = Arc::new(kassa_domain::clock::SystemClock);
    let alipay = AlipayConnector::from_credentials(&credentials.alipay, clock.clone())
        .map_err(|error| anyhow::anyhow!("the Alipay-style connector: {error}"))?;
    let wechat = WechatConnector::from_credentials(&credentials.wechat, clock.clone())
        .map_err(|error| anyhow::anyhow!("the WeChat-Pay-style connector: {error}"))?;
    let wallets = Wallets::new().with(Arc::new(alipay)).with(Arc::new(wechat));
    let config = QrConfig {
        public_base_url: public_base_url.trim_end_matches('/').to_owned(),
        business_day,
        ..QrConfig::default()
    };
    Ok(QrService::new(store.clone(), wallets, clock, config))
}

/// The public base URL: `public_url` (checked: an `http://` or `https://` URL with a host and no
/// query), else the HTTP listener's own address — loopback in place of an unspecified address
/// (`0.0.0.0`), which nobody can reach, with a warning that payers elsewhere need `public_url`.
pub fn public_base_url(config: &Config, http_addr: std::net::SocketAddr, tls: bool) -> anyhow::Result<String> {
    if let Some(url) = &config.public_url {
        let url = url.trim_end_matches('/');
        let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
        let host = rest.map(|rest| rest.split('/').next().unwrap_or(""));
        anyhow::ensure!(
            host.is_some_and(|host| !host.is_empty()) && !url.contains(['?', '#', ' ']),
            "public_url {url:?} is not an http:// or https:// URL with a host (and no query)"
        );
        return Ok(url.to_owned());
    }
    let scheme = if tls { "https" } else { "http" };
    if http_addr.ip().is_unspecified() {
        let reachable = std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), http_addr.port());
        tracing::warn!(
            listener = %http_addr,
            "public_url is not set: merchant QR codes and wallet notify URLs name {reachable}, which only this \
             machine reaches; set public_url to the address payers and wallets use"
        );
        return Ok(format!("{scheme}://{reachable}"));
    }
    Ok(format!("{scheme}://{http_addr}"))
}

/// The QR service's counters and the process's RSA signatures, for `/metrics`.
#[derive(Debug)]
pub struct QrMetrics(pub Option<QrService>);

impl prometheus_client::collector::Collector for QrMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let rsa = ConstCounter::new(kassa_crypto::rsa_keys::private_key_operations());
        let metric = encoder.encode_descriptor(
            "kassa_rsa_private_key_operations",
            "RSA private-key operations (signatures) of this process",
            None,
            rsa.metric_type(),
        )?;
        rsa.encode(metric)?;
        let Some(service) = &self.0 else { return Ok(()) };
        let metrics = service.metrics();
        let counters = [
            ("kassa_qr_credits", "QR payments credited to merchants", metrics.credits.load(Relaxed)),
            (
                "kassa_qr_reversals",
                "QR payments reversed at the wallet, never credited",
                metrics.reversals.load(Relaxed),
            ),
            (
                "kassa_qr_notifications_refused",
                "wallet notifications refused",
                metrics.notifications_refused.load(Relaxed),
            ),
            ("kassa_qr_refunds", "QR refunds succeeded", metrics.refunds.load(Relaxed)),
            (
                "kassa_qr_attention",
                "QR trades flagged for reconciliation (still unresolved after many checks)",
                metrics.attention.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

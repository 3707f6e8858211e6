//! Wiring of the ISO 8583 terminal gateway: the software security module, the card issuer behind
//! it (the in-process simulator or a remote issuer over the issuer link, see `sim.rs`), the zone
//! PIN key shared with that issuer, the business day of the config, and TLS on the listener
//! when `iso_tls` is set.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use kassa_crypto::{KeyPurpose, MasterKey, SecurityModule, SoftwareSecurityModule, TdesKey};
use kassa_gateway::{ApprovalKind, BusinessDay, Gateway, GatewayConfig, GatewayDeps, RefundApprovals, TlsServerConfig};
use kassa_issuer::IssuerConnector;
use kassa_issuer::SystemClock;
use kassa_server::Config;
use kassa_store::auth::RefundApprovalBinding;
use tokio::net::TcpListener;

/// Keys the software security module holds: two working keys per signed-in terminal, and room.
const SECURITY_MODULE_KEYS_MAX: usize = 16_384;

/// Builds the gateway on an already bound listener, asking `issuer`, with which it shares
/// `zone_pin_key`.
pub fn build(
    config: &Config,
    store: &kassa_store::Store,
    master_key: &MasterKey,
    listener: TcpListener,
    issuer: Arc<dyn IssuerConnector>,
    zone_pin_key: TdesKey,
) -> anyhow::Result<Gateway> {
    let rng = rand::rngs::OsRng;
    let security: Arc<dyn SecurityModule> = Arc::new(SoftwareSecurityModule::new(rng, SECURITY_MODULE_KEYS_MAX));
    // PIN blocks are translated to the zone PIN key inside the security module and never leave
    // it in clear.
    let zone_pin_handle =
        security.import_key(KeyPurpose::ZonePin, zone_pin_key).context("cannot import the zone PIN key")?;
    let clock = Arc::new(SystemClock);
    let gateway_config = GatewayConfig {
        listen: config.iso,
        tls: iso_tls(config)?,
        business_day: business_day(config)?,
        ..GatewayConfig::default()
    };
    let gateway_config = match config.iso_connections_per_address_max {
        Some(max) => GatewayConfig { connections_per_address_max: max, ..gateway_config },
        None => gateway_config,
    };
    let deps = GatewayDeps {
        store: store.clone(),
        security,
        master_key: Arc::new(master_key.clone()),
        issuer,
        zone_pin_key: zone_pin_handle,
        clock,
        refund_approvals: Arc::new(TmsRefundApprovals { store: store.clone() }),
    };
    Ok(Gateway::with_listener(listener, gateway_config, deps))
}

/// The ISO 8583 listener's TLS when `iso_tls` is set: the host's certificate and key, no ALPN
/// (terminals name no application protocol).
fn iso_tls(config: &Config) -> anyhow::Result<Option<Arc<TlsServerConfig>>> {
    if !config.iso_tls {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        anyhow::bail!("iso_tls needs tls_cert and tls_key");
    };
    let server_config = kassa_server::load_server_config(cert, key, &[]).context("TLS on the ISO 8583 listener")?;
    Ok(Some(server_config))
}

/// The business day of `config` (zone and cut-off), the same for card transactions and QR trades.
pub fn business_day(config: &Config) -> anyhow::Result<BusinessDay> {
    Ok(BusinessDay {
        utc_offset_minutes: utc_offset_minutes(&config.business_time_zone)?,
        cut_off_minutes: u32::from(config.cutoff.hour()) * 60 + u32::from(config.cutoff.minute()),
    })
}

/// The UTC offset of the business time zone. Only zones without daylight saving time are
/// accepted, since the gateway keeps a fixed offset.
fn utc_offset_minutes(zone: &str) -> anyhow::Result<i32> {
    match zone {
        "Asia/Shanghai" | "Asia/Chongqing" | "Asia/Hong_Kong" | "Asia/Macau" | "Asia/Taipei" | "Asia/Singapore" => {
            Ok(480)
        }
        "UTC" | "Etc/UTC" => Ok(0),
        other => anyhow::bail!("business time zone {other} is not supported (use Asia/Shanghai or UTC)"),
    }
}

/// The one-time refund approvals TMS issues (kassa-auth), consumed by the gateway for
/// terminals whose refund password the host enforces (docs/reference/iso8583.md, field 63).
#[derive(Debug)]
struct TmsRefundApprovals {
    store: kassa_store::Store,
}

#[async_trait]
impl RefundApprovals for TmsRefundApprovals {
    async fn consume(
        &self,
        terminal_id: &str,
        operator_code: &str,
        kind: ApprovalKind,
        original_txn_id: i64,
        amount_minor: i64,
        token: &str,
    ) -> bool {
        let original = match self.store.txns.txn(original_txn_id).await {
            Ok(Some(original)) => original,
            Ok(None) => return false,
            Err(error) => {
                tracing::warn!(%error, "cannot read the original of a void or refund; refusing its approval");
                return false;
            }
        };
        let Some(original_rrn) = original.rrn else { return false };
        let binding = RefundApprovalBinding {
            merchant_id: original.merchant_id,
            terminal_id: terminal_id.to_owned(),
            operator_code: operator_code.to_owned(),
            kind: kind.as_str().to_owned(),
            original_rrn,
            amount_minor,
        };
        let now_ms = kassa_auth::Clock::now_ms(&kassa_auth::SystemClock);
        kassa_auth::consume_refund_approval(&self.store, token, &binding, now_ms, &format!("iso:{terminal_id}"))
            .await
            .is_ok()
    }
}

//! The back office's pages (kassa-web) on the host: the same sessions, hashing pool and refusal
//! counter as `/backoffice/v1`, and the services the pages act through — among them the card
//! side (`card_probe`), which holds the master key and the gateway's address for them.

use std::net::SocketAddr;
use std::sync::Arc;

use kassa_crypto::MasterKey;
use kassa_domain::clock::{Clock, SystemClock};
use kassa_server::Config;

use crate::gateway;

/// What the pages act through besides the store.
#[derive(Debug)]
pub struct WebServices {
    /// QR payments, when the host has wallets.
    pub qr: Option<kassa_qr::QrService>,
    /// The refund workflow.
    pub refunds: kassa_refund::RefundService,
    /// Reconciliation runs.
    pub reconciler: kassa_recon::Reconciler,
    /// Where the ISO 8583 gateway listens, when the host runs one (card test transactions).
    pub gateway: Option<SocketAddr>,
}

/// The pages at `/`, on `shared` (the process's one hashing pool and refusal counter).
pub fn routes(
    config: &Config,
    store: &kassa_store::Store,
    master_key: &MasterKey,
    notifier: Arc<dyn kassa_auth::notify::Notifier>,
    shared: kassa_auth::AuthShared,
    secure_cookies: bool,
    services: WebServices,
) -> anyhow::Result<axum::Router> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let auth = kassa_auth::Auth::new(store.clone(), master_key.pepper(), clock.clone(), shared);
    let corrections = kassa_recon::corrections::Corrections::new(store.clone(), services.qr.clone(), clock.clone());
    let payouts = kassa_payout::Payouts::new(store.clone(), clock, gateway::business_day(config)?);
    // A card test speaks plain TCP, as kassa-terminal's link does: a TLS-only gateway is out of
    // its reach.
    let card_gateway = services.gateway.filter(|_| !config.iso_tls);
    let card_probe = crate::card_probe::HostCardProbe::new(store.clone(), Arc::new(master_key.clone()), card_gateway);
    let state = kassa_web::WebState::new(
        auth,
        store.clone(),
        notifier,
        kassa_web::Services {
            refunds: Some(services.refunds),
            reconciler: Some(services.reconciler),
            corrections: Some(corrections),
            payouts: Some(payouts),
            qr: services.qr,
            card_probe: Some(Arc::new(card_probe)),
        },
    )
    .with_secure_cookies(secure_cookies);
    // Backups taken from the pages go next to the database, in the data directory.
    Ok(kassa_web::pages::backups::with_backups(kassa_web::router(state), config.data_dir.join("backups")))
}

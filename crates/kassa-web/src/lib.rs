//! The back office on the web (商户后台 / 管理后台): server-rendered pages at `/` for the
//! institution's staff and the merchants, in English and Chinese (`?lang=en|zh`, remembered in a
//! cookie), on the back-office sessions of `/backoffice/v1` (the same cookie, the same CSRF token,
//! the same role rules of kassa-auth).
//!
//! Shape: [`router`] mounts one module per area under `pages/`; each handler names what it needs
//! from the request with the extractors of [`page`] ([`page::Viewer`] for a signed-in user,
//! [`page::Posted`] for a form of one), renders an askama template (HTML-escaped, compiled
//! into the binary) whose strings come from the Fluent files under `locales/`, and answers
//! errors through [`page::PageError`], rendered in the viewer's language in ONE place.
//!
//! **Invariants**: no inline script or style (the Content-Security-Policy forbids them); every
//! state-changing request is a POST carrying the session's CSRF token from a same-origin page;
//! every handler checks the role before reading anything; no secret, full PAN or token is
//! rendered. **Boundary**: rules and records live in kassa-auth, kassa-store and the services;
//! this crate speaks HTML.

use std::sync::Arc;

use axum::Router;
use kassa_auth::notify::Notifier;
use kassa_auth::Auth;
use kassa_store::Store;

pub mod card_probe;
pub mod chart;
pub mod entries;
pub mod format;
pub mod i18n;
pub mod nav;
pub mod page;
pub mod pages;
mod security;

pub use i18n::Lang;

/// Everything the pages need: the sessions and rules, the store, and the services behind the
/// pages of each area (absent when the host runs without them, e.g. no wallets).
#[derive(Clone)]
pub struct WebState {
    pub(crate) auth: Auth,
    pub(crate) store: Store,
    pub(crate) notifier: Arc<dyn Notifier>,
    pub(crate) secure_cookies: bool,
    pub(crate) services: Services,
}

/// The services behind the pages.
#[derive(Clone, Default)]
pub struct Services {
    /// The refund workflow (退款).
    pub refunds: Option<kassa_refund::RefundService>,
    /// Reconciliation runs (对账).
    pub reconciler: Option<kassa_recon::Reconciler>,
    /// Corrections (补登) under maker-checker.
    pub corrections: Option<kassa_recon::corrections::Corrections>,
    /// Merchant payouts and settlement reports.
    pub payouts: Option<kassa_payout::Payouts>,
    /// QR payments (the test transaction, corrections of QR trades).
    pub qr: Option<kassa_qr::QrService>,
    /// The host's card side: card test transactions and new terminals' sealed keys.
    pub card_probe: Option<Arc<dyn card_probe::CardProbe>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("refunds", &self.refunds.is_some())
            .field("reconciler", &self.reconciler.is_some())
            .field("corrections", &self.corrections.is_some())
            .field("payouts", &self.payouts.is_some())
            .field("qr", &self.qr.is_some())
            .field("card_probe", &self.card_probe.is_some())
            .finish()
    }
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("auth", &self.auth)
            .field("secure_cookies", &self.secure_cookies)
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

impl WebState {
    /// The pages over `auth` (sessions, passwords, settings) and `store`, sending one-time codes
    /// through `notifier`, with the services behind the other pages.
    pub fn new(auth: Auth, store: Store, notifier: Arc<dyn Notifier>, services: Services) -> WebState {
        WebState { auth, store, notifier, secure_cookies: false, services }
    }

    /// Marks the cookies `Secure` (the pages are served over TLS).
    pub fn with_secure_cookies(self, secure: bool) -> WebState {
        WebState { secure_cookies: secure, ..self }
    }
}

/// The pages and their assets, ready to merge into the host's router.
pub fn router(state: WebState) -> Router {
    pages::routes()
        .merge(security::assets())
        .layer(axum::middleware::from_fn_with_state(state.clone(), page::frame))
        .with_state(state)
}

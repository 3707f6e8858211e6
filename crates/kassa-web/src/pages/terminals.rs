//! The terminal fleet (终端管理): each terminal's last contact, software and parameters version,
//! open batch, what waits unsent, and its health, so the acquirer sees a failing device before
//! the merchant calls. Institution staff see every terminal (or one merchant's with
//! `?merchant=`); merchant users see their own.
//!
//! What is shown comes from what the host records anyway (the ISO 8583 sign-in, transactions,
//! the open batch) and from `terminal_contacts`, which TMS writes when a terminal downloads its
//! parameters (下载参数). A parameter change (payment-code settings, offline floor, password
//! policy) reaches a terminal at its next download: the page shows whether the terminal's
//! download is older than the change.

use askama::Template;
use axum::extract::Query;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use kassa_domain::clock::{Clock, SystemClock};
use kassa_store::fleet::{FleetRow, FLEET_ROWS_MAX};
use serde::Deserialize;

use crate::i18n::Lang;
use crate::page::{format_time_ms, render, Chrome, PageError, Viewer};
use crate::WebState;

/// The most lines the fleet table shows, those that need attention first.
pub const FLEET_LINES_SHOWN: usize = 100;

/// A terminal silent longer than this is shown as silent, milliseconds (a day).
pub const SILENT_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

/// The routes of the fleet.
pub fn routes() -> Router<WebState> {
    Router::new().route("/terminals", get(fleet))
}

/// Now, Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemClock.now_ms()
}

/// An optional instant, or a dash.
pub(crate) fn time_or_dash(ms: Option<i64>) -> String {
    ms.map_or_else(|| "—".to_owned(), format_time_ms)
}

#[derive(Debug, Deserialize)]
struct FleetQuery {
    merchant: Option<String>,
}

/// One line of the fleet table, in words.
#[derive(Debug)]
struct FleetLine {
    terminal_id: String,
    merchant_id: String,
    status: String,
    open_batch: u32,
    last_contact: String,
    last_contact_kind: String,
    signed_in: String,
    software_version: String,
    parameters: String,
    parameters_badge: &'static str,
    parameters_state: String,
    last_echo: String,
    unsent: String,
    pending: i64,
    health_badge: &'static str,
    health: String,
}

#[derive(Template)]
#[template(path = "terminals/fleet.html")]
struct FleetPage {
    chrome: Chrome,
    institution: bool,
    merchant: String,
    lines: Vec<FleetLine>,
    total: usize,
    failing: usize,
    cut: bool,
}

fn line(lang: Lang, row: FleetRow, changed_ms: Option<i64>, now: i64) -> FleetLine {
    let (health_badge, health) = if row.status != "active" {
        ("warn", lang.t("terminals-health-disabled"))
    } else {
        match row.last_contact_ms {
            None => ("bad", lang.t("terminals-health-never")),
            Some(at) if now.saturating_sub(at) > SILENT_AFTER_MS => ("bad", lang.t("terminals-health-silent")),
            Some(_)
                if row.pending_txns > 0 || row.unsent_offline.unwrap_or(0) + row.unsent_reversals.unwrap_or(0) > 0 =>
            {
                ("warn", lang.t("terminals-health-waiting"))
            }
            Some(_) => ("good", lang.t("terminals-health-ok")),
        }
    };
    let (parameters_badge, parameters_state) = match (row.parameters_at_ms, changed_ms) {
        (None, _) => ("warn", lang.t("terminals-parameters-never")),
        (Some(at), Some(changed)) if at < changed => ("warn", lang.t("terminals-parameters-behind")),
        (Some(_), _) => ("good", lang.t("terminals-parameters-current")),
    };
    let unsent = match (row.unsent_offline, row.unsent_reversals) {
        (None, None) => "—".to_owned(),
        (offline, reversals) => {
            lang.t2("terminals-unsent-counts", "offline", offline.unwrap_or(0), "reversals", reversals.unwrap_or(0))
        }
    };
    FleetLine {
        last_contact: time_or_dash(row.last_contact_ms),
        last_contact_kind: row
            .last_contact_kind
            .as_deref()
            .map(|kind| lang.t(&format!("terminals-contact-{}", kind.replace('_', "-"))))
            .unwrap_or_default(),
        signed_in: time_or_dash(row.signed_in_at_ms),
        software_version: row.software_version.unwrap_or_else(|| "—".to_owned()),
        parameters: row.parameters_version.unwrap_or_else(|| "—".to_owned()),
        parameters_badge,
        parameters_state,
        last_echo: time_or_dash(row.last_echo_ms),
        unsent,
        pending: row.pending_txns,
        health_badge,
        health,
        status: lang.t(if row.status == "active" { "terminals-status-active" } else { "terminals-status-disabled" }),
        open_batch: row.open_batch,
        terminal_id: row.terminal_id,
        merchant_id: row.merchant_id,
    }
}

async fn fleet(
    viewer: Viewer,
    state: axum::extract::State<WebState>,
    Query(query): Query<FleetQuery>,
) -> Result<Response, PageError> {
    let scope = viewer.merchant_scope(query.merchant.as_deref()).map(str::to_owned);
    if !viewer.is_institution() && scope.is_none() {
        return Err(PageError::Forbidden);
    }
    let store = &state.store;
    let rows = store.fleet().fleet(scope.as_deref(), FLEET_ROWS_MAX).await?;
    let now = now_ms();
    let mut changed: std::collections::BTreeMap<String, Option<i64>> = std::collections::BTreeMap::new();
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        if !changed.contains_key(&row.merchant_id) {
            let at = store.fleet().parameters_changed_ms(&row.merchant_id).await?;
            changed.insert(row.merchant_id.clone(), at);
        }
        let changed_ms = changed.get(&row.merchant_id).copied().flatten();
        lines.push(line(viewer.lang, row, changed_ms, now));
    }
    let failing = lines.iter().filter(|l| l.health_badge != "good").count();
    let total = lines.len();
    // Those that need attention first (stable: by terminal id within each), at most a page.
    lines.sort_by_key(|l| match l.health_badge {
        "bad" => 0,
        "warn" => 1,
        _ => 2,
    });
    lines.truncate(FLEET_LINES_SHOWN);
    render(&FleetPage {
        chrome: viewer.chrome("terminals-title"),
        institution: viewer.is_institution(),
        merchant: scope.unwrap_or_default(),
        total,
        failing,
        cut: total > FLEET_LINES_SHOWN,
        lines,
    })
}

//! Merchants (商户管理), for institution staff: the list, a merchant's page (its facts,
//! terminals, fee rates per channel shown as percentages, its back-office users), onboarding a
//! merchant and changing its fee rates (institution admin).
//!
//! Fee rates are stored in parts per million (0.60 % is 6000) on the merchant record; a change
//! replaces the current rates (the merchant record holds one set, used from the next payment
//! on) and is audited with the old and the new rates, so the history is the audit log's.
//!
//! The institution admin adds a terminal (终端入网): its id (8 digits, unused), where its refund
//! password is checked and its MAC algorithm. The host's card side
//! ([`crate::card_probe::CardProbe`]) makes a random TMK and TMS credential and seals them under
//! the master key with the seed's contexts; the pages store the sealed values with an audit
//! event (`terminal_added`, with the TMK's check value) and show the clear ones on the page that
//! answers, once — they are never stored, logged or shown again (like a new API key). A
//! terminal is disabled and enabled again (`terminal_disabled`, `terminal_enabled`): the gateway
//! and TMS serve active terminals only.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use kassa_auth::Role;
use kassa_domain::{Currency, FeeRate, MerchantId};
use kassa_store::terminals_admin::{add_terminal, set_terminal_status, TerminalStatus};
use kassa_store::{AuditEvent, MerchantRecord, RefundPasswordMode, TerminalRecord, UnitOutcome, WriteOp, WriteUnit};
use serde::Deserialize;
use serde_json::json;

use crate::page::{bounded, format_time_ms, render, see_other, Chrome, PageError, Posted, Viewer};
use crate::WebState;

/// The most merchants one page lists.
pub const MERCHANTS_MAX: i64 = 1_000;
/// The most users listed on a merchant's page.
pub const USERS_MAX: i64 = 200;
/// The longest merchant name, characters (a receipt header line).
pub const NAME_CHARS_MAX: usize = 40;
/// The channels that carry a fee rate.
pub const CHANNELS: [&str; 3] = ["card", "alipay", "wechat"];
/// Digits of a terminal id (field 41).
pub const TERMINAL_ID_DIGITS: usize = 8;
/// The MAC algorithms a terminal may use (the gateway's).
pub const MAC_ALGORITHMS: [&str; 2] = ["x919", "unionpay_ecb"];

fn now_ms(state: &WebState) -> i64 {
    state.auth.now_ms()
}

/// The routes of merchants.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/merchants", get(list).post(onboard))
        .route("/merchants/{merchant}", get(detail))
        .route("/merchants/{merchant}/fees", post(set_fees))
        .route("/merchants/{merchant}/terminals", post(add))
        .route("/merchants/{merchant}/terminals/{terminal}/status", post(set_status))
}

/// A rate in parts per million as a percentage (`0.60 %`).
pub(crate) fn percent(ppm: u32) -> String {
    FeeRate::from_ppm(ppm).map_or_else(|_| format!("{ppm} ppm"), |rate| format!("{} %", rate.to_percent_string()))
}

#[derive(Debug)]
struct MerchantLine {
    merchant_id: String,
    name: String,
    mcc: String,
    currency: String,
    fees: String,
}

fn fees_text(rates: &BTreeMap<String, u32>) -> String {
    rates.iter().map(|(channel, ppm)| format!("{channel} {}", percent(*ppm))).collect::<Vec<_>>().join(" · ")
}

#[derive(Template)]
#[template(path = "merchants/list.html")]
struct ListPage {
    chrome: Chrome,
    admin: bool,
    merchants: Vec<MerchantLine>,
}

async fn list(viewer: Viewer, State(state): State<WebState>) -> Result<Response, PageError> {
    viewer.require_role(&[Role::InstitutionAdmin, Role::InstitutionReviewer])?;
    let merchants = state
        .store
        .fleet()
        .merchants(MERCHANTS_MAX)
        .await?
        .into_iter()
        .map(|m| MerchantLine {
            fees: fees_text(&m.fee_rates),
            merchant_id: m.merchant_id,
            name: m.name,
            mcc: m.mcc,
            currency: m.currency,
        })
        .collect();
    render(&ListPage {
        chrome: viewer.chrome("merchants-title"),
        admin: viewer.session.role == Role::InstitutionAdmin,
        merchants,
    })
}

#[derive(Debug)]
struct FeeLine {
    channel: String,
    percent: String,
    value: String,
}

#[derive(Debug)]
struct TerminalLine {
    terminal_id: String,
    status: String,
    active: bool,
    open_batch: u32,
    refund_password_mode: String,
    mac_algorithm: String,
}

/// A terminal just added, with its secrets: shown on the page that answers, once.
struct NewTerminal {
    terminal_id: String,
    tmk: String,
    tmk_check_value: String,
    tms_credential: String,
}

impl std::fmt::Debug for NewTerminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewTerminal").field("terminal_id", &self.terminal_id).finish_non_exhaustive()
    }
}

#[derive(Template)]
#[template(path = "merchants/detail.html")]
struct DetailPage {
    chrome: Chrome,
    admin: bool,
    /// Terminals can be added (the host's card side is there).
    can_add_terminals: bool,
    merchant: MerchantRecord,
    created: String,
    fees: Vec<FeeLine>,
    terminals: Vec<TerminalLine>,
    users: Vec<(String, String)>,
    new_terminal: Option<NewTerminal>,
    /// The MAC algorithms offered: value and name.
    mac_algorithms: Vec<(String, String)>,
}

async fn detail(
    viewer: Viewer,
    State(state): State<WebState>,
    Path(merchant_id): Path<String>,
) -> Result<Response, PageError> {
    viewer.require_role(&[Role::InstitutionAdmin, Role::InstitutionReviewer])?;
    render(&detail_page(&state, &viewer, &merchant_id).await?)
}

async fn detail_page(state: &WebState, viewer: &Viewer, merchant_id: &str) -> Result<DetailPage, PageError> {
    let merchant_id = merchant_id.to_owned();
    let merchant = state.store.directory.merchant(&merchant_id).await?.ok_or(PageError::NotFound)?;
    let fees = CHANNELS
        .iter()
        .map(|channel| {
            let ppm = merchant.fee_rates.get(*channel).copied().unwrap_or(0);
            FeeLine {
                channel: (*channel).to_owned(),
                percent: percent(ppm),
                value: FeeRate::from_ppm(ppm).map(FeeRate::to_percent_string).unwrap_or_default(),
            }
        })
        .collect();
    let terminals = state
        .store
        .directory
        .terminals_of(&merchant_id)
        .await?
        .into_iter()
        .map(|t| TerminalLine {
            active: t.status == "active",
            status: viewer.lang.t(if t.status == "active" {
                "terminals-status-active"
            } else {
                "terminals-status-disabled"
            }),
            refund_password_mode: viewer.lang.t(match t.refund_password_mode {
                RefundPasswordMode::Device => "merchants-refund-check-device",
                RefundPasswordMode::Host => "merchants-refund-check-host",
            }),
            mac_algorithm: viewer.lang.t(&format!("merchants-mac-{}", t.mac_algorithm.replace('_', "-"))),
            open_batch: t.open_batch,
            terminal_id: t.terminal_id,
        })
        .collect();
    let users = state
        .store
        .fleet()
        .users_of(&merchant_id, USERS_MAX)
        .await?
        .into_iter()
        .map(|(name, role)| (name, viewer.lang.t(&format!("role-{}", role.replace('_', "-")))))
        .collect();
    Ok(DetailPage {
        chrome: viewer.chrome("merchants-detail-title"),
        admin: viewer.session.role == Role::InstitutionAdmin,
        can_add_terminals: state.services.card_probe.is_some(),
        created: format_time_ms(merchant.created_at_ms),
        merchant,
        fees,
        terminals,
        users,
        new_terminal: None,
        mac_algorithms: MAC_ALGORITHMS
            .iter()
            .map(|name| ((*name).to_owned(), viewer.lang.t(&format!("merchants-mac-{}", name.replace('_', "-")))))
            .collect(),
    })
}

#[derive(Debug, Deserialize)]
struct FeesForm {
    card: String,
    alipay: String,
    wechat: String,
}

fn rates_of(form: &FeesForm) -> Result<BTreeMap<String, u32>, PageError> {
    let mut rates = BTreeMap::new();
    for (channel, text) in [("card", &form.card), ("alipay", &form.alipay), ("wechat", &form.wechat)] {
        let rate = FeeRate::parse_percent(text.trim().trim_end_matches('%').trim())
            .map_err(|_| PageError::Bad("merchants-bad-rate"))?;
        rates.insert(channel.to_owned(), rate.ppm());
    }
    Ok(rates)
}

async fn set_fees(
    State(state): State<WebState>,
    Path(merchant_id): Path<String>,
    posted: Posted<FeesForm>,
) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    viewer.require_role(&[Role::InstitutionAdmin])?;
    let merchant = state.store.directory.merchant(&merchant_id).await?.ok_or(PageError::NotFound)?;
    let rates = rates_of(&form)?;
    let now = now_ms(&state);
    let audit = AuditEvent {
        at_ms: now,
        actor: format!("user:{}", viewer.session.username),
        action: "fee_rates_changed".into(),
        target: format!("merchant:{merchant_id}"),
        source: viewer.source.clone(),
        reason: String::new(),
        details: json!({"old_ppm": merchant.fee_rates, "new_ppm": rates}),
    };
    let updated = MerchantRecord { fee_rates: rates, ..merchant };
    state.store.commit(WriteUnit::ops(vec![WriteOp::PutMerchant(updated), WriteOp::Audit(audit)])).await?;
    Ok(see_other(&format!("/merchants/{merchant_id}?done=done-fees-changed")))
}

#[derive(Debug, Deserialize)]
struct OnboardForm {
    merchant_id: String,
    name: String,
    mcc: String,
    currency: String,
    card: String,
    alipay: String,
    wechat: String,
    contact: String,
}

async fn onboard(State(state): State<WebState>, posted: Posted<OnboardForm>) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    viewer.require_role(&[Role::InstitutionAdmin])?;
    let merchant_id = MerchantId::parse(form.merchant_id.trim()).map_err(|_| PageError::Bad("merchants-bad-id"))?;
    let name = bounded(&form.name)?;
    if name.is_empty() || name.chars().count() > NAME_CHARS_MAX {
        return Err(PageError::Bad("merchants-bad-name"));
    }
    let mcc = form.mcc.trim();
    if mcc.len() != 4 || !mcc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PageError::Bad("merchants-bad-mcc"));
    }
    let currency = Currency::from_code(form.currency.trim()).map_err(|_| PageError::Bad("merchants-bad-currency"))?;
    let contact = bounded(&form.contact)?;
    if !contact.contains('@') || contact.contains(char::is_whitespace) {
        return Err(PageError::Bad("merchants-bad-contact"));
    }
    let rates = rates_of(&FeesForm { card: form.card, alipay: form.alipay, wechat: form.wechat })?;
    let now = now_ms(&state);
    let record = MerchantRecord {
        merchant_id: merchant_id.as_str().to_owned(),
        name: name.to_owned(),
        mcc: mcc.to_owned(),
        currency: currency.code().to_owned(),
        fee_rates: rates,
        created_at_ms: now,
    };
    let audit = AuditEvent {
        at_ms: now,
        actor: format!("user:{}", viewer.session.username),
        action: "merchant_onboarded".into(),
        target: format!("merchant:{}", record.merchant_id),
        source: viewer.source.clone(),
        reason: String::new(),
        details: json!({"name": record.name, "mcc": record.mcc, "currency": record.currency, "fee_rates_ppm": record.fee_rates}),
    };
    let unit = WriteUnit::guarded(
        kassa_store::fleet::onboard_merchant(&record)?,
        vec![
            WriteOp::PutSetting {
                scope: record.merchant_id.clone(),
                name: kassa_auth::reset::RESET_CONTACT_SETTING.into(),
                value: json!(contact),
                at_ms: now,
            },
            WriteOp::Audit(audit),
        ],
    );
    match state.store.commit(unit).await? {
        UnitOutcome::Committed { .. } => {
            Ok(see_other(&format!("/merchants/{}?done=done-merchant-onboarded", record.merchant_id)))
        }
        _ => Err(PageError::Bad("merchants-exists")),
    }
}

#[derive(Debug, Deserialize)]
struct AddTerminalForm {
    terminal_id: String,
    refund_password_mode: String,
    mac_algorithm: String,
}

/// Adds a terminal: the answer is the merchant's page with its TMK and TMS credential, shown
/// this once (never stored in clear, logged or audited; only sealed).
async fn add(
    State(state): State<WebState>,
    Path(merchant_id): Path<String>,
    posted: Posted<AddTerminalForm>,
) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    viewer.require_role(&[Role::InstitutionAdmin])?;
    state.store.directory.merchant(&merchant_id).await?.ok_or(PageError::NotFound)?;
    let probe = state.services.card_probe.clone().ok_or(PageError::Bad("merchants-terminals-unavailable"))?;
    let terminal_id = form.terminal_id.trim();
    if terminal_id.len() != TERMINAL_ID_DIGITS || !terminal_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PageError::Bad("merchants-bad-terminal-id"));
    }
    let refund_password_mode = match form.refund_password_mode.as_str() {
        "device" => RefundPasswordMode::Device,
        "host" => RefundPasswordMode::Host,
        _ => return Err(PageError::Bad("merchants-bad-refund-check")),
    };
    let mac_algorithm = MAC_ALGORITHMS
        .into_iter()
        .find(|known| *known == form.mac_algorithm)
        .ok_or(PageError::Bad("merchants-bad-mac"))?;
    // Checked before the keys are made; the insert's guard is what makes the id unique.
    if state.store.directory.terminal(terminal_id).await?.is_some() {
        return Err(PageError::Bad("merchants-terminal-exists"));
    }
    let secrets = probe.new_terminal_secrets(terminal_id).map_err(|e| PageError::Internal(e.to_string()))?;
    let now = now_ms(&state);
    let terminal = TerminalRecord {
        terminal_id: terminal_id.to_owned(),
        merchant_id: merchant_id.clone(),
        refund_password_mode,
        mac_algorithm: mac_algorithm.to_owned(),
        tmk_sealed: secrets.tmk_sealed.clone(),
        tms_secret_sealed: secrets.tms_sealed.clone(),
        open_batch: 1,
        status: TerminalStatus::Active.as_str().to_owned(),
        created_at_ms: now,
    };
    let audit = AuditEvent {
        at_ms: now,
        actor: viewer.session.subject(),
        action: "terminal_added".into(),
        target: format!("terminal:{terminal_id}"),
        source: viewer.source.clone(),
        reason: String::new(),
        details: json!({
            "merchant_id": merchant_id,
            "refund_password_mode": form.refund_password_mode,
            "mac_algorithm": mac_algorithm,
            "tmk_check_value": secrets.tmk_check_value,
        }),
    };
    match state.store.commit(WriteUnit::guarded(add_terminal(&terminal), vec![WriteOp::Audit(audit)])).await? {
        UnitOutcome::Committed { .. } => {}
        _ => return Err(PageError::Bad("merchants-terminal-exists")),
    }
    let mut page = detail_page(&state, &viewer, &merchant_id).await?;
    page.new_terminal = Some(NewTerminal {
        terminal_id: terminal.terminal_id,
        tmk: secrets.tmk_hex.to_string(),
        tmk_check_value: secrets.tmk_check_value,
        tms_credential: secrets.tms_credential.to_string(),
    });
    page.chrome.notice = Some(viewer.lang.t("done-terminal-added"));
    let mut response = render(&page)?;
    // The page holds secrets: never kept by a cache.
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct StatusForm {
    status: String,
}

/// Disables or enables a terminal of the merchant.
async fn set_status(
    State(state): State<WebState>,
    Path((merchant_id, terminal_id)): Path<(String, String)>,
    posted: Posted<StatusForm>,
) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    viewer.require_role(&[Role::InstitutionAdmin])?;
    let status = TerminalStatus::parse(&form.status).ok_or(PageError::Bad("merchants-bad-status"))?;
    let terminal = state
        .store
        .directory
        .terminal(&terminal_id)
        .await?
        .filter(|t| t.merchant_id == merchant_id)
        .ok_or(PageError::NotFound)?;
    let (action, done) = match status {
        TerminalStatus::Active => ("terminal_enabled", "done-terminal-enabled"),
        TerminalStatus::Disabled => ("terminal_disabled", "done-terminal-disabled"),
    };
    let audit = AuditEvent {
        at_ms: now_ms(&state),
        actor: viewer.session.subject(),
        action: action.into(),
        target: format!("terminal:{}", terminal.terminal_id),
        source: viewer.source.clone(),
        reason: String::new(),
        details: json!({"merchant_id": merchant_id, "old_status": terminal.status, "new_status": status.as_str()}),
    };
    let guard = set_terminal_status(&terminal.terminal_id, &merchant_id, status);
    match state.store.commit(WriteUnit::guarded(guard, vec![WriteOp::Audit(audit)])).await? {
        UnitOutcome::Committed { .. } => Ok(see_other(&format!("/merchants/{merchant_id}?done={done}"))),
        // It had that status already: nothing to do, nothing audited.
        _ => Ok(see_other(&format!("/merchants/{merchant_id}"))),
    }
}

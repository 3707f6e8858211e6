//! Merchants (商户管理), for institution staff: the list, a merchant's page (its facts,
//! terminals, fee rates per channel shown as percentages, its back-office users), onboarding a
//! merchant and changing its fee rates (institution admin).
//!
//! Fee rates are stored in parts per million (0.60 % is 6000) on the merchant record; a change
//! replaces the current rates (the merchant record holds one set, used from the next payment
//! on) and is audited with the old and the new rates, so the history is the audit log's.
//! Adding a terminal needs its TMK and TMS credential sealed under the master key, which the
//! pages do not hold: terminals are added by the seed or the command line today.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use kassa_auth::Role;
use kassa_domain::{Currency, FeeRate, MerchantId};
use kassa_store::{AuditEvent, MerchantRecord, UnitOutcome, WriteOp, WriteUnit};
use serde::Deserialize;
use serde_json::json;

use crate::page::{bounded, format_time_ms, render, see_other, Chrome, PageError, Posted, Viewer};
use crate::pages::terminals::now_ms;
use crate::WebState;

/// The most merchants one page lists.
pub const MERCHANTS_MAX: i64 = 1_000;
/// The most users listed on a merchant's page.
pub const USERS_MAX: i64 = 200;
/// The longest merchant name, characters (a receipt header line).
pub const NAME_CHARS_MAX: usize = 40;
/// The channels that carry a fee rate.
pub const CHANNELS: [&str; 3] = ["card", "alipay", "wechat"];

/// The routes of merchants.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/merchants", get(list).post(onboard))
        .route("/merchants/{merchant}", get(detail))
        .route("/merchants/{merchant}/fees", post(set_fees))
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
    open_batch: u32,
    refund_password_mode: String,
}

#[derive(Template)]
#[template(path = "merchants/detail.html")]
struct DetailPage {
    chrome: Chrome,
    admin: bool,
    merchant: MerchantRecord,
    created: String,
    fees: Vec<FeeLine>,
    terminals: Vec<TerminalLine>,
    users: Vec<(String, String)>,
}

async fn detail(
    viewer: Viewer,
    State(state): State<WebState>,
    Path(merchant_id): Path<String>,
) -> Result<Response, PageError> {
    viewer.require_role(&[Role::InstitutionAdmin, Role::InstitutionReviewer])?;
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
            status: viewer.lang.t(if t.status == "active" {
                "terminals-status-active"
            } else {
                "terminals-status-disabled"
            }),
            refund_password_mode: viewer.lang.t(match t.refund_password_mode {
                kassa_store::RefundPasswordMode::Device => "merchants-refund-check-device",
                kassa_store::RefundPasswordMode::Host => "merchants-refund-check-host",
            }),
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
    render(&DetailPage {
        chrome: viewer.chrome("merchants-detail-title"),
        admin: viewer.session.role == Role::InstitutionAdmin,
        created: format_time_ms(merchant.created_at_ms),
        merchant,
        fees,
        terminals,
        users,
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
    let now = now_ms();
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
    let now = now_ms();
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

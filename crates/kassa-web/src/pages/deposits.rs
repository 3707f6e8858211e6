//! Terminal activation deposits (押金与流水达标): an institution admin sets a deposit on a
//! terminal (amount, target volume, period in days), which takes it from what the platform owes
//! the merchant through the ledger (a balanced entry `deposit:<terminal>`); everyone of the
//! merchant sees the progress (the merchant's card and QR volume in the period, from its real
//! transactions, test transactions excluded, against the target, and the days left); once the
//! target is reached within the period an admin returns it with one button, which posts the
//! entry `deposit-return:<terminal>` exactly once (a guard from `held` to `returned` in the same
//! commit). A deposit whose period ended short of its target stays held; nothing is forfeited
//! automatically.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use kassa_auth::Role;
use kassa_domain::{Currency, MerchantId, Money};
use kassa_store::fleet::{self, DepositRecord, DepositStatus};
use kassa_store::{AuditEvent, UnitOutcome, WriteOp, WriteUnit};
use serde::Deserialize;
use serde_json::json;

use crate::format::money;
use crate::page::{format_time_ms, render, see_other, Chrome, PageError, Posted, Viewer};
use crate::pages::terminals::now_ms;
use crate::WebState;

/// The most deposits one page lists.
pub const DEPOSITS_MAX: i64 = 1_000;
/// The longest period a deposit may run, days.
pub const PERIOD_DAYS_MAX: i64 = 366;
const MS_PER_DAY: i64 = 24 * 60 * 60 * 1000;

/// The routes of deposits.
pub fn routes() -> Router<WebState> {
    Router::new().route("/deposits", get(list).post(set)).route("/deposits/{terminal}/return", post(give_back))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    merchant: Option<String>,
}

#[derive(Debug)]
struct DepositLine {
    terminal_id: String,
    merchant_id: String,
    amount: String,
    target: String,
    volume: String,
    percent: i64,
    period: String,
    days_left: String,
    badge: &'static str,
    state: String,
    can_return: bool,
}

#[derive(Template)]
#[template(path = "deposits/list.html")]
struct DepositsPage {
    chrome: Chrome,
    admin: bool,
    lines: Vec<DepositLine>,
}

/// How far a deposit is: the merchant's volume in its period so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Volume so far, minor units.
    pub volume_minor: i64,
    /// Whether the target is reached.
    pub reached: bool,
    /// Whether the period is over.
    pub ended: bool,
}

/// The progress of `deposit` at `now`, from the merchant's real transactions: those of its
/// period made up to and including the millisecond `now`, so a payment taken in the same
/// millisecond as the page is read counts.
pub async fn progress(store: &kassa_store::Store, deposit: &DepositRecord, now: i64) -> Result<Progress, PageError> {
    let until = now.saturating_add(1).clamp(deposit.starts_at_ms, deposit.ends_at_ms);
    let volume_minor =
        store.fleet().volume(&deposit.merchant_id, &deposit.currency, deposit.starts_at_ms, until).await?;
    Ok(Progress { volume_minor, reached: volume_minor >= deposit.target_minor, ended: now >= deposit.ends_at_ms })
}

async fn list(
    viewer: Viewer,
    State(state): State<WebState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    let scope = viewer.merchant_scope(query.merchant.as_deref()).map(str::to_owned);
    if !viewer.is_institution() && scope.is_none() {
        return Err(PageError::Forbidden);
    }
    let admin = viewer.session.role == Role::InstitutionAdmin;
    let lang = viewer.lang;
    let now = now_ms();
    let mut lines = Vec::new();
    for deposit in state.store.fleet().deposits(scope.as_deref(), DEPOSITS_MAX).await? {
        let p = progress(&state.store, &deposit, now).await?;
        let percent = if deposit.target_minor > 0 {
            i64::try_from((i128::from(p.volume_minor.max(0)) * 100 / i128::from(deposit.target_minor)).min(100))
                .unwrap_or(100)
        } else {
            100
        };
        let days = (deposit.ends_at_ms.saturating_sub(now)).max(0).div_euclid(MS_PER_DAY);
        let (badge, state_id) = match deposit.status {
            DepositStatus::Returned => ("good", "deposits-state-returned"),
            DepositStatus::Held if p.reached => ("good", "deposits-state-reached"),
            DepositStatus::Held if p.ended => ("bad", "deposits-state-missed"),
            DepositStatus::Held => ("warn", "deposits-state-held"),
        };
        lines.push(DepositLine {
            amount: money(deposit.amount_minor, &deposit.currency),
            target: money(deposit.target_minor, &deposit.currency),
            volume: money(p.volume_minor, &deposit.currency),
            percent,
            period: format!("{} – {}", format_time_ms(deposit.starts_at_ms), format_time_ms(deposit.ends_at_ms)),
            days_left: if p.ended {
                lang.t("deposits-period-over")
            } else {
                lang.tn("deposits-days-left", "days", days)
            },
            badge,
            state: match deposit.returned_at_ms {
                Some(at) => lang.t1(state_id, "at", format_time_ms(at)),
                None => lang.t(state_id),
            },
            can_return: admin && deposit.status == DepositStatus::Held && p.reached,
            terminal_id: deposit.terminal_id,
            merchant_id: deposit.merchant_id,
        });
    }
    render(&DepositsPage { chrome: viewer.chrome("deposits-title"), admin, lines })
}

#[derive(Debug, Deserialize)]
struct SetForm {
    terminal_id: String,
    amount: String,
    target: String,
    days: String,
}

async fn set(State(state): State<WebState>, posted: Posted<SetForm>) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    viewer.require_role(&[Role::InstitutionAdmin])?;
    let terminal_id = form.terminal_id.trim();
    let terminal = state.store.directory.terminal(terminal_id).await?.ok_or(PageError::Bad("deposits-no-terminal"))?;
    let merchant = state.store.directory.merchant(&terminal.merchant_id).await?.ok_or(PageError::NotFound)?;
    let currency = Currency::from_code(&merchant.currency).map_err(|e| PageError::Internal(e.to_string()))?;
    let amount = Money::parse(form.amount.trim(), currency).map_err(|_| PageError::Bad("deposits-bad-amount"))?;
    let target = Money::parse(form.target.trim(), currency).map_err(|_| PageError::Bad("deposits-bad-amount"))?;
    if !amount.is_positive() || !target.is_positive() {
        return Err(PageError::Bad("deposits-bad-amount"));
    }
    let days: i64 = form.days.trim().parse().map_err(|_| PageError::Bad("deposits-bad-days"))?;
    if !(1..=PERIOD_DAYS_MAX).contains(&days) {
        return Err(PageError::Bad("deposits-bad-days"));
    }
    let merchant_id = MerchantId::parse(&merchant.merchant_id).map_err(|e| PageError::Internal(e.to_string()))?;
    let now = now_ms();
    let record = DepositRecord {
        terminal_id: terminal.terminal_id.clone(),
        merchant_id: merchant.merchant_id.clone(),
        currency: merchant.currency.clone(),
        amount_minor: amount.minor(),
        target_minor: target.minor(),
        starts_at_ms: now,
        ends_at_ms: now.saturating_add(days.saturating_mul(MS_PER_DAY)),
        status: DepositStatus::Held,
        created_by: format!("user:{}", viewer.session.username),
        created_at_ms: now,
        returned_by: None,
        returned_at_ms: None,
    };
    let entry = kassa_ledger::deposit_taken_entry(&fleet::deposit_reference(&record.terminal_id), &merchant_id, amount)
        .map_err(|e| PageError::Internal(e.to_string()))?;
    let audit = AuditEvent {
        at_ms: now,
        actor: record.created_by.clone(),
        action: "deposit_set".into(),
        target: format!("terminal:{}", record.terminal_id),
        source: viewer.source.clone(),
        reason: String::new(),
        details: json!({
            "merchant_id": record.merchant_id, "amount_minor": record.amount_minor,
            "target_minor": record.target_minor, "days": days, "currency": record.currency,
        }),
    };
    let unit = WriteUnit::guarded(
        fleet::take_deposit(&record),
        vec![WriteOp::PostEntry { entry, at_ms: now }, WriteOp::Audit(audit)],
    );
    match state.store.commit(unit).await? {
        UnitOutcome::Committed { .. } => Ok(see_other("/deposits?done=done-deposit-set")),
        _ => Err(PageError::Bad("deposits-exists")),
    }
}

async fn give_back(
    State(state): State<WebState>,
    Path(terminal_id): Path<String>,
    posted: Posted<serde_json::Map<String, serde_json::Value>>,
) -> Result<Response, PageError> {
    let viewer = posted.viewer;
    viewer.require_role(&[Role::InstitutionAdmin])?;
    let deposit = state.store.fleet().deposit(&terminal_id).await?.ok_or(PageError::NotFound)?;
    if deposit.status == DepositStatus::Returned {
        return Ok(see_other("/deposits?done=done-deposit-returned"));
    }
    let now = now_ms();
    if !progress(&state.store, &deposit, now).await?.reached {
        return Err(PageError::Bad("deposits-not-reached"));
    }
    let currency = Currency::from_code(&deposit.currency).map_err(|e| PageError::Internal(e.to_string()))?;
    let merchant_id = MerchantId::parse(&deposit.merchant_id).map_err(|e| PageError::Internal(e.to_string()))?;
    let amount = Money::from_minor(deposit.amount_minor, currency);
    let entry = kassa_ledger::deposit_return_entry(
        &fleet::deposit_return_reference(&deposit.terminal_id),
        &merchant_id,
        amount,
    )
    .map_err(|e| PageError::Internal(e.to_string()))?;
    let by = format!("user:{}", viewer.session.username);
    let audit = AuditEvent {
        at_ms: now,
        actor: by.clone(),
        action: "deposit_returned".into(),
        target: format!("terminal:{}", deposit.terminal_id),
        source: viewer.source.clone(),
        reason: String::new(),
        details: json!({"merchant_id": deposit.merchant_id, "amount_minor": deposit.amount_minor}),
    };
    let unit = WriteUnit::guarded(
        fleet::return_deposit(&deposit.terminal_id, &by, now),
        vec![WriteOp::PostEntry { entry, at_ms: now }, WriteOp::Audit(audit)],
    );
    // Two admins pressing at once: one unit passes the guard, the other writes nothing.
    state.store.commit(unit).await?;
    Ok(see_other("/deposits?done=done-deposit-returned"))
}

//! Merchant payouts (结算给商户): payouts per merchant and business day (gross by channel,
//! refunds, fees, corrections, net, state), running the payouts of a business day (the
//! institution's administrator; the same [`kassa_payout::Payouts::run`] as `kassa payouts`), and
//! one payout's settlement report with its open differences (corrections still proposed: listed,
//! never silently paid) and its CSV and JSON downloads. Merchant users see only their own
//! merchant's payouts (another's answer 404).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kassa_auth::{Permission, Role};
use kassa_domain::CivilDate;
use kassa_payout::{PayoutError, Payouts, SettlementReport, REPORT_ITEMS_MAX};
use kassa_store::payouts::{PayoutRecord, PayoutStatus};
use kassa_store::web_money::PayoutFilter;
use serde::Deserialize;

use crate::format::{money, word, Words};
use crate::page::{format_time_ms, render, see_other, Chrome, PageError, Posted, Viewer};
use crate::WebState;

/// Payouts one list page shows.
pub const PAYOUTS_PER_PAGE: i64 = 50;
/// Report lines one page of a payout shows.
pub const LINES_PER_PAGE: i64 = 200;
/// The most report lines a download holds (a payout of more is cut, and says so).
pub const DOWNLOAD_LINES_MAX: usize = 100_000;
/// The longest merchant id accepted in a filter, characters.
const MERCHANT_CHARS_MAX: usize = 32;

/// The routes of payouts.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/payouts", get(list))
        .route("/payouts/run", post(run))
        .route("/payouts/{id}", get(one))
        .route("/payouts/{id}/report.csv", get(csv))
        .route("/payouts/{id}/report.json", get(json))
}

/// The merchant a viewer is limited to (`None`: institution staff, who see every merchant).
fn own_merchant(viewer: &Viewer) -> Result<Option<String>, PageError> {
    if viewer.is_institution() {
        viewer.require(Permission::PostCorrections)?;
        Ok(None)
    } else {
        viewer.require_role(&[Role::MerchantOwner, Role::MerchantStaff])?;
        viewer.merchant().map(|m| Some(m.to_owned())).ok_or(PageError::Forbidden)
    }
}

fn service(state: &WebState) -> Result<&Payouts, PageError> {
    state.services.payouts.as_ref().ok_or(PageError::Bad("payouts-unavailable"))
}

fn payout_failed(error: PayoutError) -> PageError {
    match error {
        PayoutError::NotFound => PageError::NotFound,
        PayoutError::Store(error) => error.into(),
        other => PageError::Internal(format!("payouts: {other}")),
    }
}

struct Row {
    id: i64,
    merchant: String,
    date: String,
    schedule: String,
    posted: bool,
    gross_card: String,
    gross_qr: String,
    refunds: String,
    fees: String,
    corrections: String,
    net: String,
    items: i64,
}

async fn row(state: &WebState, p: &PayoutRecord) -> Result<Row, PageError> {
    let code = p.currency.code();
    let (mut card, mut qr) = (0i64, 0i64);
    for gross in state.store.web_money().payout_gross_by_channel(p).await? {
        let bucket = if gross.channel == "card" { &mut card } else { &mut qr };
        *bucket = bucket.checked_add(gross.gross_minor).ok_or_else(|| PageError::Internal("gross overflows".into()))?;
    }
    let t = &p.totals;
    Ok(Row {
        id: p.id,
        merchant: p.merchant_id.clone(),
        date: p.business_date.clone(),
        schedule: p.schedule.as_str().to_uppercase(),
        posted: p.status == PayoutStatus::Posted,
        gross_card: money(card, code),
        gross_qr: money(qr, code),
        refunds: money(t.refunds_minor, code),
        fees: money(t.fees_minor, code),
        corrections: money(t.corrections_minor, code),
        net: money(t.net_minor, code),
        items: t.item_count,
    })
}

#[derive(Template)]
#[template(path = "payouts/list.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<Row>,
    next: Option<String>,
    institution: bool,
    can_run: bool,
    date: String,
    merchant: String,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    date: String,
    #[serde(default)]
    merchant: String,
    #[serde(default)]
    before: Option<i64>,
}

async fn list(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    let own = own_merchant(&viewer)?;
    render(&list_page(&state, &viewer, own, query, None).await?)
}

async fn list_page(
    state: &WebState,
    viewer: &Viewer,
    own: Option<String>,
    query: ListQuery,
    error: Option<String>,
) -> Result<ListPage, PageError> {
    let date = query.date.trim().to_owned();
    if !date.is_empty() && CivilDate::parse(&date).is_none() {
        return Err(PageError::Bad("payouts-bad-date"));
    }
    let merchant = query.merchant.trim().to_owned();
    if merchant.chars().count() > MERCHANT_CHARS_MAX {
        return Err(PageError::Bad("payouts-bad-merchant"));
    }
    let filter = PayoutFilter {
        merchant_id: own.clone().or_else(|| Some(merchant.clone()).filter(|m| !m.is_empty())),
        business_date: Some(date.clone()).filter(|d| !d.is_empty()),
        before_id: query.before,
        limit: PAYOUTS_PER_PAGE,
    };
    let ids = state.store.web_money().payout_ids(&filter).await?;
    let mut rows = Vec::with_capacity(ids.len());
    for id in &ids {
        if let Some(p) = state.store.payouts().payout_by_id(*id).await? {
            rows.push(row(state, &p).await?);
        }
    }
    let next = (i64::try_from(ids.len()).unwrap_or(i64::MAX) == PAYOUTS_PER_PAGE)
        .then(|| ids.last().map(|id| format!("/payouts?date={date}&merchant={merchant}&before={id}")))
        .flatten();
    Ok(ListPage {
        chrome: viewer.chrome("payouts-title"),
        rows,
        next,
        institution: own.is_none(),
        can_run: viewer.session.role == Role::InstitutionAdmin && state.services.payouts.is_some(),
        date,
        merchant,
        error,
    })
}

#[derive(Deserialize)]
struct RunForm {
    date: String,
}

async fn run(State(state): State<WebState>, posted: Posted<RunForm>) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    viewer.require_role(&[Role::InstitutionAdmin])?;
    viewer.require(Permission::PostCorrections)?;
    let payouts = service(&state)?.clone();
    let refuse = |message: String| async {
        let query = ListQuery { date: String::new(), merchant: String::new(), before: None };
        let page = list_page(&state, &viewer, None, query, Some(message)).await?;
        Ok::<Response, PageError>((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response())
    };
    let Some(date) = CivilDate::parse(form.date.trim()) else {
        return refuse(viewer.lang.t("payouts-bad-date")).await;
    };
    match payouts.run(date, &viewer.session.subject()).await {
        Ok(_) => Ok(see_other(&format!("/payouts?date={date}&done=done-payouts-run"))),
        Err(PayoutError::Invalid(why)) => refuse(viewer.lang.t1("payouts-refused", "why", why)).await,
        Err(PayoutError::Store(error)) if error.is_unavailable() => {
            refuse(viewer.lang.t("payouts-store-unavailable")).await
        }
        Err(error) => Err(payout_failed(error)),
    }
}

struct Line {
    entry: i64,
    kind: String,
    reference: String,
    at: String,
    amount: String,
    fee: String,
    net: String,
}

struct Open {
    id: i64,
    kind: String,
    channel: String,
    reference: String,
    amount: String,
}

#[derive(Template)]
#[template(path = "payouts/one.html")]
struct OnePage {
    chrome: Chrome,
    p: Row,
    cutoff: String,
    posted_at: String,
    lines: Vec<Line>,
    next: Option<i64>,
    open: Vec<Open>,
    ledger_net: String,
    ledger_agrees: bool,
    entry: String,
    institution: bool,
}

#[derive(Deserialize, Default)]
struct OneQuery {
    #[serde(default)]
    after: Option<i64>,
}

/// The payout `id` if the viewer may see it, with its report from entry `after`.
async fn report_of(
    state: &WebState,
    viewer: &Viewer,
    id: &str,
    after: i64,
    limit: i64,
) -> Result<SettlementReport, PageError> {
    let own = own_merchant(viewer)?;
    let id: i64 = id.parse().map_err(|_| PageError::NotFound)?;
    let report = service(state)?.report(id, after, limit).await.map_err(payout_failed)?;
    if own.is_some_and(|m| m != report.payout.merchant_id) {
        return Err(PageError::NotFound);
    }
    Ok(report)
}

async fn one(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<OneQuery>,
) -> Result<Response, PageError> {
    let report = report_of(&state, &viewer, &id, query.after.unwrap_or(0), LINES_PER_PAGE).await?;
    let p = &report.payout;
    let code = p.currency.code();
    let lines = report
        .items
        .iter()
        .map(|i| Line {
            entry: i.entry_id,
            kind: word(viewer.lang, Words::EntryKind, &i.kind),
            reference: i.reference.clone(),
            at: format_time_ms(i.at_ms),
            amount: money(-(i.merchant_minor + i.fee_minor), code),
            fee: money(-i.fee_minor, code),
            net: money(-i.merchant_minor, code),
        })
        .collect();
    let open = report
        .open_corrections
        .iter()
        .map(|c| Open {
            id: c.id,
            kind: word(viewer.lang, Words::CorrectionKind, &c.correction.kind),
            channel: c.proposal.channel.map(|ch| word(viewer.lang, Words::Channel, ch.as_str())).unwrap_or_default(),
            reference: c.proposal.reference.clone().unwrap_or_default(),
            amount: c.proposal.amount_minor.map(|m| money(m, &c.correction.currency)).unwrap_or_default(),
        })
        .collect();
    let page = OnePage {
        chrome: viewer.chrome("payouts-one-title"),
        cutoff: format_time_ms(p.cutoff_ms),
        posted_at: p.posted_at_ms.map(format_time_ms).unwrap_or_default(),
        lines,
        next: report.next_after,
        open,
        ledger_net: money(report.ledger_net_minor, code),
        ledger_agrees: report.ledger_net_minor == p.totals.net_minor,
        entry: money(report.entry_minor, code),
        institution: viewer.is_institution(),
        p: row(&state, p).await?,
    };
    render(&page)
}

/// The whole report (every line, a page at a time, at most [`DOWNLOAD_LINES_MAX`]).
async fn whole_report(state: &WebState, viewer: &Viewer, id: &str) -> Result<SettlementReport, PageError> {
    let mut report = report_of(state, viewer, id, 0, REPORT_ITEMS_MAX).await?;
    while let Some(after) = report.next_after {
        if report.items.len() >= DOWNLOAD_LINES_MAX {
            break;
        }
        let more = report_of(state, viewer, id, after, REPORT_ITEMS_MAX).await?;
        report.items.extend(more.items);
        report.next_after = more.next_after;
    }
    Ok(report)
}

fn download(body: String, content_type: &'static str, name: String) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        response.headers_mut().insert(CONTENT_DISPOSITION, value);
    }
    response
}

fn file_name(report: &SettlementReport, ext: &str) -> String {
    let p = &report.payout;
    // Merchant ids and dates are digits and dashes; anything else is dropped from the name.
    let clean = |text: &str| text.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect::<String>();
    format!("settlement-{}-{}-{}.{ext}", clean(&p.merchant_id), clean(&p.business_date), p.id)
}

async fn csv(State(state): State<WebState>, viewer: Viewer, Path(id): Path<String>) -> Result<Response, PageError> {
    let report = whole_report(&state, &viewer, &id).await?;
    Ok(download(report.to_csv(), "text/csv; charset=utf-8", file_name(&report, "csv")))
}

async fn json(State(state): State<WebState>, viewer: Viewer, Path(id): Path<String>) -> Result<Response, PageError> {
    let report = whole_report(&state, &viewer, &id).await?;
    let body = serde_json::to_string_pretty(&serde_json::json!({ "report": report.to_json() }))
        .map_err(|e| PageError::Internal(e.to_string()))?;
    Ok(download(body, "application/json", file_name(&report, "json")))
}

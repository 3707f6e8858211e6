//! Reconciliation (对账): the runs (date, channel, state, counts per class, who started them),
//! starting a run for a business day and channel (the same [`kassa_recon::Reconciler`] run as
//! `kassa recon` and `/backoffice/v1/recon/runs`), and one run's differences by class with their
//! evidence, the transaction they name and the correction proposed for them. Institution staff
//! (the `post_corrections` permission).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kassa_auth::Permission;
use kassa_domain::{Channel, CivilDate};
use kassa_recon::ReconError;
use kassa_store::recon::{DifferenceClass, ReconDifferenceRecord, ReconRunRecord};
use serde::Deserialize;

use crate::format::{money, word, Words};
use crate::i18n::Lang;
use crate::page::{encode_component, format_time_ms, render, see_other, Chrome, PageError, Posted, Viewer};
use crate::WebState;

/// The most runs one page lists.
pub const RUNS_PER_PAGE: i64 = 50;
/// The most differences one run's page lists.
pub const DIFFERENCES_PER_PAGE: i64 = 500;

/// The routes of reconciliation.
pub fn routes() -> Router<WebState> {
    Router::new().route("/recon", get(runs)).route("/recon/runs", post(start)).route("/recon/runs/{id}", get(run))
}

/// A class's label id.
fn class_label(class: &str) -> &'static str {
    match class {
        "amount_mismatch" => "recon-class-amount-mismatch",
        "paid_not_credited" => "recon-class-paid-not-credited",
        "missing_at_channel" => "recon-class-missing-at-channel",
        "status_mismatch" => "recon-class-status-mismatch",
        _ => "recon-class-matched",
    }
}

struct RunRow {
    id: i64,
    date: String,
    channel: String,
    finished: bool,
    lines: i64,
    matched: i64,
    amount_mismatch: i64,
    paid_not_credited: i64,
    missing_at_channel: i64,
    status_mismatch: i64,
    corrections_proposed: i64,
    started_by: String,
    started_at: String,
}

impl RunRow {
    fn of(lang: Lang, record: &ReconRunRecord) -> RunRow {
        let counts = &record.counts;
        RunRow {
            id: record.run.id,
            date: record.run.business_date.clone(),
            channel: word(lang, Words::Channel, record.run.channel.as_str()),
            finished: record.finished,
            lines: counts.lines,
            matched: counts.matched,
            amount_mismatch: counts.amount_mismatch,
            paid_not_credited: counts.paid_not_credited,
            missing_at_channel: counts.missing_at_channel,
            status_mismatch: counts.status_mismatch,
            corrections_proposed: counts.corrections_proposed,
            started_by: record.run.started_by.clone(),
            started_at: format_time_ms(record.run.started_at_ms),
        }
    }

    fn differences(&self) -> i64 {
        self.amount_mismatch + self.paid_not_credited + self.missing_at_channel + self.status_mismatch
    }
}

#[derive(Template)]
#[template(path = "recon/runs.html")]
struct RunsPage {
    chrome: Chrome,
    available: bool,
    /// Each channel that can be reconciled, with its name in words.
    channels: Vec<(String, String)>,
    runs: Vec<RunRow>,
    next: Option<i64>,
    error: Option<String>,
    form_date: String,
    form_channel: String,
}

#[derive(Deserialize, Default)]
struct RunsQuery {
    #[serde(default)]
    before: Option<i64>,
}

async fn runs(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<RunsQuery>,
) -> Result<Response, PageError> {
    viewer.require(Permission::PostCorrections)?;
    let page = runs_page(&state, &viewer, query.before, None, String::new(), String::new()).await?;
    render(&page)
}

async fn runs_page(
    state: &WebState,
    viewer: &Viewer,
    before: Option<i64>,
    error: Option<String>,
    form_date: String,
    form_channel: String,
) -> Result<RunsPage, PageError> {
    let records = state.store.recon().runs(before.unwrap_or(i64::MAX), RUNS_PER_PAGE).await?;
    let next = if i64::try_from(records.len()).unwrap_or(i64::MAX) == RUNS_PER_PAGE {
        records.last().map(|r| r.run.id)
    } else {
        None
    };
    let channels = state
        .services
        .reconciler
        .as_ref()
        .map(|r| {
            r.channels()
                .iter()
                .map(|c| (c.as_str().to_owned(), word(viewer.lang, Words::Channel, c.as_str())))
                .collect()
        })
        .unwrap_or_default();
    Ok(RunsPage {
        chrome: viewer.chrome("recon-title"),
        available: state.services.reconciler.is_some(),
        channels,
        runs: records.iter().map(|record| RunRow::of(viewer.lang, record)).collect(),
        next,
        error,
        form_date,
        form_channel,
    })
}

#[derive(Deserialize)]
struct StartForm {
    date: String,
    channel: String,
}

async fn start(State(state): State<WebState>, posted: Posted<StartForm>) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    viewer.require(Permission::PostCorrections)?;
    let reconciler = state.services.reconciler.clone().ok_or(PageError::Bad("recon-unavailable"))?;
    let refuse = |message: String| async {
        let page = runs_page(&state, &viewer, None, Some(message), form.date.clone(), form.channel.clone()).await?;
        Ok::<Response, PageError>((StatusCode::UNPROCESSABLE_ENTITY, askama_html(&page)?).into_response())
    };
    let Some(date) = CivilDate::parse(form.date.trim()) else {
        return refuse(viewer.lang.t("recon-bad-date")).await;
    };
    let Some(channel) = Channel::parse(form.channel.trim()) else {
        return refuse(viewer.lang.t("recon-bad-channel")).await;
    };
    match reconciler.reconcile_day(channel, date, &viewer.session.subject()).await {
        Ok(report) => Ok(see_other(&format!("/recon/runs/{}?done=done-recon-started", report.run_id))),
        Err(ReconError::Statement(error)) => {
            let line = error.line();
            refuse(viewer.lang.t2("recon-statement-refused", "line", line, "why", error.to_string())).await
        }
        Err(ReconError::Unsupported(message)) => refuse(viewer.lang.t1("recon-unsupported", "why", message)).await,
        Err(ReconError::Unavailable(why)) => {
            tracing::warn!(%why, "reconciliation: statement unavailable");
            refuse(viewer.lang.t("recon-statement-unavailable")).await
        }
        Err(ReconError::Store(error)) if error.is_unavailable() => {
            refuse(viewer.lang.t("recon-store-unavailable")).await
        }
        Err(error) => Err(PageError::Internal(format!("reconciliation: {error}"))),
    }
}

fn askama_html(template: &impl Template) -> Result<axum::response::Html<String>, PageError> {
    Ok(axum::response::Html(template.render()?))
}

struct DifferenceRow {
    class: String,
    class_label: String,
    bad: bool,
    kind: String,
    reference: String,
    refund_reference: Option<String>,
    merchant: Option<String>,
    out_trade_no: Option<String>,
    channel_amount: Option<String>,
    kassa_amount: Option<String>,
    reason: String,
    line_no: Option<i64>,
    line: Option<String>,
    record: Option<String>,
    transaction_href: String,
    correction: Option<(i64, String)>,
}

struct ClassCount {
    label: String,
    count: i64,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "recon/run.html")]
struct RunPage {
    chrome: Chrome,
    run: RunRow,
    source: String,
    finished_at: Option<String>,
    classes: Vec<ClassCount>,
    differences: Vec<DifferenceRow>,
    more: bool,
}

#[derive(Deserialize, Default)]
struct RunQuery {
    #[serde(default)]
    class: Option<String>,
}

async fn difference_row(state: &WebState, lang: Lang, d: &ReconDifferenceRecord) -> Result<DifferenceRow, PageError> {
    let correction = match &d.correction_key {
        Some(key) => state
            .store
            .corrections()
            .correction_by_key(key)
            .await?
            .map(|c| (c.id, word(lang, Words::CorrectionStatus, c.status.as_str()))),
        None => None,
    };
    // A card difference names its transaction (`txn:<id>`); a trade is searched by its number.
    let transaction_href = match d.reference.strip_prefix("txn:").and_then(|id| id.parse::<i64>().ok()) {
        Some(id) => format!("/transactions/card/{id}"),
        None => {
            let search = d.out_trade_no.clone().unwrap_or_else(|| d.reference.clone());
            let merchant = d.merchant_id.as_deref().unwrap_or("");
            format!("/transactions?reference={}&merchant_id={}", encode_component(&search), encode_component(merchant))
        }
    };
    Ok(DifferenceRow {
        class: d.class.as_str().to_owned(),
        class_label: lang.t(class_label(d.class.as_str())),
        bad: matches!(d.class, DifferenceClass::PaidNotCredited | DifferenceClass::AmountMismatch),
        kind: word(lang, Words::ReconLine, &d.kind),
        reference: d.reference.clone(),
        refund_reference: d.refund_reference.clone(),
        merchant: d.merchant_id.clone(),
        out_trade_no: d.out_trade_no.clone(),
        channel_amount: d.channel_amount_minor.map(|m| money(m, &d.currency)),
        kassa_amount: d.kassa_amount_minor.map(|m| money(m, &d.currency)),
        reason: d.reason.clone(),
        line_no: d.statement_line_no,
        line: d.statement_line.clone(),
        record: d.kassa_record.as_ref().map(|r| serde_json::to_string_pretty(r).unwrap_or_default()),
        transaction_href,
        correction,
    })
}

async fn run(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<RunQuery>,
) -> Result<Response, PageError> {
    viewer.require(Permission::PostCorrections)?;
    let id: i64 = id.parse().map_err(|_| PageError::NotFound)?;
    let recon = state.store.recon();
    let record = recon.run(id).await?.ok_or(PageError::NotFound)?;
    let wanted = query.class.as_deref().filter(|c| !c.is_empty());
    if wanted.is_some_and(|c| DifferenceClass::parse(c).is_none()) {
        return Err(PageError::Bad("recon-bad-class"));
    }
    // Differences are stored by key; a page shows the first ones of the class asked for.
    let mut differences = Vec::new();
    let mut after = String::new();
    let mut more = false;
    'pages: loop {
        let page = recon.differences(id, &after, DIFFERENCES_PER_PAGE).await?;
        let full = i64::try_from(page.len()).unwrap_or(i64::MAX) == DIFFERENCES_PER_PAGE;
        for d in &page {
            if wanted.is_none_or(|c| c == d.class.as_str()) {
                if i64::try_from(differences.len()).unwrap_or(i64::MAX) == DIFFERENCES_PER_PAGE {
                    more = true;
                    break 'pages;
                }
                differences.push(difference_row(&state, viewer.lang, d).await?);
            }
        }
        match page.last() {
            Some(last) if full => after = last.difference_key.clone(),
            _ => break,
        }
    }
    let row = RunRow::of(viewer.lang, &record);
    let base = format!("/recon/runs/{id}");
    let mut classes = vec![ClassCount {
        label: viewer.lang.t("recon-all-differences"),
        count: row.differences(),
        href: base.clone(),
        current: wanted.is_none(),
    }];
    for (class, count) in [
        ("paid_not_credited", row.paid_not_credited),
        ("amount_mismatch", row.amount_mismatch),
        ("missing_at_channel", row.missing_at_channel),
        ("status_mismatch", row.status_mismatch),
    ] {
        classes.push(ClassCount {
            label: viewer.lang.t(class_label(class)),
            count,
            href: format!("{base}?class={class}"),
            current: wanted == Some(class),
        });
    }
    let page = RunPage {
        chrome: viewer.chrome("recon-run-title"),
        source: word(viewer.lang, Words::ReconSource, record.run.source.as_str()),
        finished_at: record.finished_at_ms.map(format_time_ms),
        run: row,
        classes,
        differences,
        more,
    };
    render(&page)
}

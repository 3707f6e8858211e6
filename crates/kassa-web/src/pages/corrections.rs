//! Corrections (补登) under maker-checker: the proposed, approved and rejected lists, a manual
//! correction with its evidence (the maker: `post_corrections`), and one correction's page where
//! a second person (the checker: `review_corrections`) approves or rejects it with a reason. The
//! proposer cannot review their own: the page says so and kassa-recon refuses it anyway. An
//! approval's journal entry is shown on the correction's page. Institution staff only.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kassa_auth::Permission;
use kassa_recon::corrections::{CorrectionError, Corrections, ManualCorrection};
use kassa_store::corrections::{entry_reference, CorrectionStatus, CorrectionView};
use serde::Deserialize;

use crate::entries::{entry_view, EntryView};
use crate::format::{money, word, Words};
use crate::i18n::Lang;
use crate::page::{bounded, format_time_ms, render, see_other, Chrome, PageError, Posted, Viewer};
use crate::WebState;

/// Corrections one list page shows.
pub const CORRECTIONS_PER_PAGE: i64 = 50;
/// Kinds a person may enter by hand (batch upload's `on_terminal_only` is found, not entered).
const MANUAL_KINDS: [&str; 4] =
    ["paid_not_credited", "issuer_approved_host_failed", "offline_not_uploaded", "amount_mismatch"];
/// Channels a correction may name.
const CHANNELS: [&str; 3] = ["alipay", "wechat", "card"];
/// The longest reference or merchant id accepted, characters (kassa-recon checks its own).
const FIELD_CHARS_MAX: usize = 64;
/// The longest evidence accepted, characters.
const EVIDENCE_CHARS_MAX: usize = kassa_recon::corrections::EVIDENCE_CHARS_MAX;

/// The routes of corrections.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/corrections", get(list).post(propose))
        .route("/corrections/{id}", get(one))
        .route("/corrections/{id}/approve", post(approve))
        .route("/corrections/{id}/reject", post(reject))
}

fn service(state: &WebState) -> Result<&Corrections, PageError> {
    state.services.corrections.as_ref().ok_or(PageError::Bad("corrections-unavailable"))
}

struct Row {
    id: i64,
    kind: String,
    channel: String,
    reference: String,
    merchant: String,
    amount: String,
    source: String,
    proposed_by: String,
    status: String,
    status_class: &'static str,
    created: String,
    reviewed_by: String,
}

fn status_class(status: CorrectionStatus) -> &'static str {
    match status {
        CorrectionStatus::Approved => "good",
        CorrectionStatus::Rejected => "bad",
        _ => "warn",
    }
}

fn row(lang: Lang, c: &CorrectionView) -> Row {
    Row {
        id: c.id,
        kind: word(lang, Words::CorrectionKind, &c.correction.kind),
        channel: c.proposal.channel.map(|ch| word(lang, Words::Channel, ch.as_str())).unwrap_or_default(),
        reference: c.proposal.reference.clone().unwrap_or_default(),
        merchant: c.correction.merchant_id.clone(),
        amount: c.proposal.amount_minor.map(|m| money(m, &c.correction.currency)).unwrap_or_else(|| "—".into()),
        source: word(lang, Words::CorrectionSource, &c.correction.source),
        proposed_by: c.proposal.proposed_by.clone(),
        status: word(lang, Words::CorrectionStatus, c.status.as_str()),
        status_class: status_class(c.status),
        created: format_time_ms(c.correction.created_at_ms),
        reviewed_by: c.reviewed_by.clone().unwrap_or_default(),
    }
}

struct Tab {
    href: &'static str,
    label: String,
    current: bool,
}

#[derive(Deserialize, Default)]
struct ProposeForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    merchant: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    evidence: String,
}

#[derive(Template)]
#[template(path = "corrections/list.html")]
struct ListPage {
    chrome: Chrome,
    tabs: Vec<Tab>,
    rows: Vec<Row>,
    next: Option<String>,
    can_propose: bool,
    kinds: Vec<(&'static str, String)>,
    channels: Vec<(&'static str, String)>,
    form: ProposeForm,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    before: Option<i64>,
}

async fn list(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    viewer.require(Permission::PostCorrections)?;
    let page = list_page(&state, &viewer, query, ProposeForm::default(), None).await?;
    render(&page)
}

async fn list_page(
    state: &WebState,
    viewer: &Viewer,
    query: ListQuery,
    form: ProposeForm,
    error: Option<String>,
) -> Result<ListPage, PageError> {
    let status_name = query.status.as_deref().filter(|s| !s.is_empty()).unwrap_or("proposed");
    let status = match status_name {
        "all" => None,
        name => Some(CorrectionStatus::parse(name).ok_or(PageError::Bad("corrections-bad-status"))?),
    };
    let records = match state.services.corrections.as_ref() {
        Some(corrections) => {
            corrections.list(status, query.before, CORRECTIONS_PER_PAGE).await.map_err(correction_internal)?
        }
        None => Vec::new(),
    };
    let next = (i64::try_from(records.len()).unwrap_or(i64::MAX) == CORRECTIONS_PER_PAGE)
        .then(|| records.last().map(|c| format!("/corrections?status={status_name}&before={}", c.id)))
        .flatten();
    let tabs = [
        ("/corrections?status=proposed", "proposed", "corrections-tab-proposed"),
        ("/corrections?status=approved", "approved", "corrections-tab-approved"),
        ("/corrections?status=rejected", "rejected", "corrections-tab-rejected"),
        ("/corrections?status=all", "all", "corrections-tab-all"),
    ]
    .into_iter()
    .map(|(href, name, label)| Tab { href, label: viewer.lang.t(label), current: name == status_name })
    .collect();
    Ok(ListPage {
        chrome: viewer.chrome("corrections-title"),
        tabs,
        rows: records.iter().map(|c| row(viewer.lang, c)).collect(),
        next,
        can_propose: state.services.corrections.is_some(),
        kinds: MANUAL_KINDS.iter().map(|k| (*k, word(viewer.lang, Words::CorrectionKind, k))).collect(),
        channels: CHANNELS.iter().map(|c| (*c, word(viewer.lang, Words::Channel, c))).collect(),
        form,
        error,
    })
}

fn correction_internal(error: CorrectionError) -> PageError {
    match error {
        CorrectionError::NotFound(_) => PageError::NotFound,
        other => PageError::Internal(format!("corrections: {other}")),
    }
}

/// A refusal of the service in the viewer's words, with the status the page answers; `None`
/// for failures that are not the user's to fix.
fn refusal(lang: Lang, error: &CorrectionError) -> Option<(StatusCode, String)> {
    Some(match error {
        CorrectionError::Invalid(why) => (StatusCode::UNPROCESSABLE_ENTITY, lang.t1("corrections-invalid", "why", why)),
        CorrectionError::Ambiguous(reference) => {
            (StatusCode::UNPROCESSABLE_ENTITY, lang.t1("corrections-ambiguous", "reference", reference))
        }
        CorrectionError::NotFound(what) => {
            (StatusCode::UNPROCESSABLE_ENTITY, lang.t1("corrections-not-found", "what", what))
        }
        CorrectionError::OwnCorrection => (StatusCode::FORBIDDEN, lang.t("corrections-own")),
        CorrectionError::Conflict(why) => (StatusCode::CONFLICT, lang.t1("corrections-conflict", "why", why)),
        CorrectionError::NotPostable(kind) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            lang.t1("corrections-not-postable", "kind", word(lang, Words::CorrectionKind, kind)),
        ),
        CorrectionError::NotCreditable(why) => {
            (StatusCode::CONFLICT, lang.t1("corrections-not-creditable", "why", why))
        }
        CorrectionError::Store(error) if error.is_unavailable() => {
            (StatusCode::SERVICE_UNAVAILABLE, lang.t("corrections-store-unavailable"))
        }
        _ => return None,
    })
}

async fn propose(State(state): State<WebState>, posted: Posted<ProposeForm>) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    viewer.require(Permission::PostCorrections)?;
    let corrections = service(&state)?.clone();
    let lang = viewer.lang;
    let checked = (|| {
        for (text, max) in [
            (&form.kind, FIELD_CHARS_MAX),
            (&form.channel, FIELD_CHARS_MAX),
            (&form.reference, FIELD_CHARS_MAX),
            (&form.merchant, FIELD_CHARS_MAX),
        ] {
            if text.chars().count() > max {
                return Err(lang.t("corrections-field-too-long"));
            }
        }
        if form.evidence.chars().count() > EVIDENCE_CHARS_MAX {
            return Err(lang.t("corrections-evidence-too-long"));
        }
        let amount: i64 = form.amount.trim().parse().map_err(|_| lang.t("corrections-bad-amount"))?;
        Ok(ManualCorrection {
            kind: form.kind.trim().to_owned(),
            channel: form.channel.trim().to_owned(),
            reference: form.reference.trim().to_owned(),
            merchant: Some(form.merchant.trim().to_owned()).filter(|m| !m.is_empty()),
            amount_minor: amount,
            evidence: form.evidence.trim().to_owned(),
        })
    })();
    let outcome = match checked {
        Ok(manual) => match corrections.propose(&viewer.session.subject(), &manual).await {
            Ok(proposed) => {
                return Ok(see_other(&format!("/corrections/{}?done=done-corrections-proposed", proposed.id)))
            }
            Err(error) => match refusal(lang, &error) {
                Some(refused) => refused,
                None => return Err(PageError::Internal(format!("corrections: {error}"))),
            },
        },
        Err(message) => (StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    let (status, message) = outcome;
    let page = list_page(&state, &viewer, ListQuery::default(), form, Some(message)).await?;
    Ok((status, Html(page.render()?)).into_response())
}

#[derive(Template)]
#[template(path = "corrections/one.html")]
struct OnePage {
    chrome: Chrome,
    c: Row,
    evidence: String,
    details: String,
    review_reason: String,
    reviewed_at: String,
    proposed: bool,
    own: bool,
    can_review: bool,
    entries: Vec<EntryView>,
    error: Option<String>,
}

async fn one(State(state): State<WebState>, viewer: Viewer, Path(id): Path<String>) -> Result<Response, PageError> {
    viewer.require(Permission::PostCorrections)?;
    let id: i64 = id.parse().map_err(|_| PageError::NotFound)?;
    render(&one_page(&state, &viewer, id, None).await?)
}

async fn one_page(state: &WebState, viewer: &Viewer, id: i64, error: Option<String>) -> Result<OnePage, PageError> {
    let c = service(state)?.get(id).await.map_err(correction_internal)?;
    let currency = c.correction.currency.clone();
    let entries = state
        .store
        .ledger
        .entries_for(&entry_reference(id))
        .await?
        .iter()
        .map(|e| entry_view(viewer.lang, e, &currency))
        .collect();
    let proposed = c.status == CorrectionStatus::Proposed;
    Ok(OnePage {
        chrome: viewer.chrome("corrections-one-title"),
        evidence: c.proposal.evidence.clone(),
        details: serde_json::to_string_pretty(&c.correction.details).unwrap_or_default(),
        review_reason: c.review_reason.clone().unwrap_or_default(),
        reviewed_at: c.reviewed_at_ms.map(format_time_ms).unwrap_or_default(),
        proposed,
        own: c.proposal.proposed_by == viewer.session.subject(),
        can_review: viewer.require(Permission::ReviewCorrections).is_ok(),
        c: row(viewer.lang, &c),
        entries,
        error,
    })
}

#[derive(Deserialize)]
struct ReviewForm {
    #[serde(default)]
    reason: String,
}

async fn review(state: WebState, posted: Posted<ReviewForm>, id: String, approve: bool) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    viewer.require(Permission::ReviewCorrections)?;
    let id: i64 = id.parse().map_err(|_| PageError::NotFound)?;
    let reason = bounded(&form.reason)?.to_owned();
    let corrections = service(&state)?.clone();
    let subject = viewer.session.subject();
    let outcome = if approve {
        corrections.approve(id, &subject, &reason).await.map(|_| "done-corrections-approved")
    } else if reason.is_empty() {
        Err(CorrectionError::Invalid(viewer.lang.t("corrections-reason-needed")))
    } else {
        corrections.reject(id, &subject, &reason).await.map(|_| "done-corrections-rejected")
    };
    match outcome {
        Ok(done) => Ok(see_other(&format!("/corrections/{id}?done={done}"))),
        Err(CorrectionError::NotFound(_)) => Err(PageError::NotFound),
        Err(error) => match refusal(viewer.lang, &error) {
            Some((status, message)) => {
                let page = one_page(&state, &viewer, id, Some(message)).await?;
                Ok((status, Html(page.render()?)).into_response())
            }
            None => Err(PageError::Internal(format!("corrections: {error}"))),
        },
    }
}

async fn approve(
    State(state): State<WebState>,
    Path(id): Path<String>,
    posted: Posted<ReviewForm>,
) -> Result<Response, PageError> {
    review(state, posted, id, true).await
}

async fn reject(
    State(state): State<WebState>,
    Path(id): Path<String>,
    posted: Posted<ReviewForm>,
) -> Result<Response, PageError> {
    review(state, posted, id, false).await
}

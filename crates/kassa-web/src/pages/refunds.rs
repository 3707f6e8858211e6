//! Refunds (退款): a merchant's owner asks for a refund of one of its payments with a reason
//! (by reference, or from a transaction's detail page: `/refunds/new?channel=…&id=…`); the
//! merchant's review queue (its owner) and the institution's (reviewers); approve or reject
//! with a reason; and each request's progress (退款进度) step by step, with who and when:
//! requested → merchant review → institution review (above the threshold) → sent → succeeded
//! or failed. Every rule (who reviews what, four eyes, what is refundable) is kassa-refund's
//! [`RefundService`], called exactly as `/backoffice/v1/refunds` calls it.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kassa_auth::{AuthError, BackOfficeSession, Origin, PaycodePurpose, Permission, Role};
use kassa_domain::{Channel, Currency, MerchantId, Money, RefundReason, RefundRequestState};
use kassa_refund::{
    Actor, Decision, NewRefund, RefundError, RefundErrorKind, RefundFilter, RefundProgress, RefundService,
    RefundTarget, StepKind,
};
use serde::Deserialize;

use crate::format::{money_of, word, Words};
use crate::page::{
    bounded, encode_component, format_time_ms, render, see_other, Chrome, FormSecret, PageError, Posted, Viewer,
};
use crate::{Lang, WebState};

/// The routes of this area.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/refunds", get(list))
        .route("/refunds/new", get(new_form).post(request))
        .route("/refunds/{merchant}/{request_no}", get(progress))
        .route("/refunds/{merchant}/{request_no}/review", post(review))
}

/// How many requests the list shows.
const LIST_ROWS: usize = 50;

fn service(state: &WebState) -> Result<&RefundService, PageError> {
    state.services.refunds.as_ref().ok_or(PageError::NotFound)
}

/// The workflow's actor for a session (as kassa-backoffice's refunds do).
fn actor(session: &BackOfficeSession) -> Result<Actor, PageError> {
    let username = session.username.clone();
    let merchant = || -> Result<MerchantId, PageError> {
        let id = session.merchant_id.as_deref().ok_or(PageError::Forbidden)?;
        MerchantId::parse(id).map_err(|_| PageError::Forbidden)
    };
    Ok(match session.role {
        Role::MerchantOwner => Actor::MerchantOwner { merchant_id: merchant()?, username },
        Role::MerchantStaff => Actor::MerchantStaff { merchant_id: merchant()?, username },
        Role::InstitutionReviewer => Actor::InstitutionReviewer { username },
        Role::InstitutionAdmin => Actor::InstitutionAdmin { username },
        Role::Supervisor | Role::Operator => return Err(PageError::Forbidden),
    })
}

/// The workflow's refusal in words, or the page error it is.
fn refund_refusal(lang: Lang, error: RefundError) -> Result<String, PageError> {
    match error.kind() {
        RefundErrorKind::NotFound => return Err(PageError::NotFound),
        RefundErrorKind::Forbidden if !matches!(error, RefundError::SelfReview) => return Err(PageError::Forbidden),
        RefundErrorKind::Internal => return Err(PageError::Internal(error.to_string())),
        _ => {}
    }
    Ok(match &error {
        RefundError::Exceeds { refundable } => lang.t1("refunds-exceeds", "refundable", money_of(*refundable)),
        RefundError::SelfReview => lang.t("refunds-self-review"),
        RefundError::WrongState { state, .. } => lang.t1("refunds-wrong-state", "state", state_label(lang, *state)),
        RefundError::NotRefundable(_) => lang.t("refunds-not-refundable"),
        RefundError::Unavailable(_) => lang.t("refunds-unavailable"),
        other => match lang {
            Lang::En => other.to_string(),
            Lang::Zh => format!("{}（{}）", lang.t("error-refused"), other),
        },
    })
}

fn page_error(error: RefundError) -> PageError {
    match error.kind() {
        RefundErrorKind::NotFound => PageError::NotFound,
        RefundErrorKind::Forbidden => PageError::Forbidden,
        _ => PageError::Internal(error.to_string()),
    }
}

fn state_label(lang: Lang, state: RefundRequestState) -> String {
    word(lang, Words::RefundState, state.as_str())
}

fn state_class(state: RefundRequestState) -> &'static str {
    match state {
        RefundRequestState::Succeeded => "good",
        RefundRequestState::Failed
        | RefundRequestState::RejectedByMerchant
        | RefundRequestState::RejectedByInstitution => "bad",
        _ => "warn",
    }
}

fn reason_label(lang: Lang, reason: RefundReason) -> String {
    lang.t(&format!("refunds-reason-{}", reason.as_str().replace('_', "-")))
}

/// `user:owner` → `owner`; `system` → the platform in words.
fn who(lang: Lang, actor: &str) -> String {
    match actor {
        "system" => lang.t("refunds-system"),
        other => other.strip_prefix("user:").unwrap_or(other).to_owned(),
    }
}

fn progress_href(progress: &RefundProgress) -> String {
    format!("/refunds/{}/{}", encode_component(&progress.merchant_id), encode_component(&progress.request_no))
}

struct Row {
    href: String,
    merchant_id: String,
    request_no: String,
    target: String,
    amount: String,
    reason: String,
    state: String,
    state_class: &'static str,
    requested_by: String,
    created: String,
}

fn row(lang: Lang, progress: &RefundProgress) -> Row {
    Row {
        href: progress_href(progress),
        merchant_id: progress.merchant_id.clone(),
        request_no: progress.request_no.clone(),
        target: progress.target.reference().to_owned(),
        amount: money_of(progress.amount),
        reason: reason_label(lang, progress.reason),
        state: state_label(lang, progress.state),
        state_class: state_class(progress.state),
        requested_by: who(lang, &progress.requested_by),
        created: format_time_ms(progress.created_at_ms),
    }
}

#[derive(Template)]
#[template(path = "refunds/list.html")]
struct ListPage {
    chrome: Chrome,
    may_request: bool,
    queue_title: Option<String>,
    queue: Vec<Row>,
    rows: Vec<Row>,
    states: Vec<(String, String)>,
    state_filter: String,
    target_filter: String,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    target: Option<String>,
}

async fn list(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    let actor = actor(&viewer.session)?;
    let refunds = service(&state)?;
    let lang = viewer.lang;
    let (queue_title, queue) = match viewer.session.role {
        Role::MerchantOwner | Role::InstitutionReviewer => {
            let page = refunds.review_queue(&actor, None, LIST_ROWS).await.map_err(page_error)?;
            let title = if viewer.is_institution() { "refunds-queue-institution" } else { "refunds-queue-merchant" };
            (Some(lang.t(title)), page.items.iter().map(|p| row(lang, p)).collect())
        }
        _ => (None, Vec::new()),
    };
    let state_filter = query.state.clone().unwrap_or_default();
    let states = match RefundRequestState::parse(&state_filter) {
        Some(state) => vec![state],
        None if state_filter.is_empty() => Vec::new(),
        None => return Err(PageError::Bad("error-form")),
    };
    let target_filter = query.target.as_deref().map(str::trim).unwrap_or_default().to_owned();
    if target_filter.len() > kassa_refund::TARGET_CHARS_MAX {
        return Err(PageError::Bad("error-form"));
    }
    let filter = RefundFilter {
        states,
        target_reference: (!target_filter.is_empty()).then(|| target_filter.clone()),
        limit: LIST_ROWS,
        ..RefundFilter::default()
    };
    let page = refunds.list(&actor, filter).await.map_err(|error| match error.kind() {
        RefundErrorKind::Invalid => PageError::Bad("error-form"),
        _ => page_error(error),
    })?;
    render(&ListPage {
        chrome: viewer.chrome("refunds-title"),
        may_request: viewer.session.require(Permission::Refund).is_ok(),
        queue_title,
        queue,
        rows: page.items.iter().map(|p| row(lang, p)).collect(),
        states: RefundRequestState::ALL.iter().map(|s| (s.as_str().to_owned(), state_label(lang, *s))).collect(),
        state_filter,
        target_filter,
    })
}

#[derive(Template)]
#[template(path = "refunds/new.html")]
struct NewPage {
    chrome: Chrome,
    request_no: String,
    channel: String,
    reference: String,
    amount: String,
    currency: String,
    paid: String,
    reasons: Vec<(String, String)>,
    reason: String,
    note: String,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct NewQuery {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

/// A fresh request number: the form carries it, so sending the form twice asks once.
fn request_no() -> String {
    format!("web-{}", hex::encode(rand::random::<[u8; 8]>()))
}

async fn owner_merchant(state: &WebState, viewer: &Viewer) -> Result<(MerchantId, Currency), PageError> {
    viewer.require_role(&[Role::MerchantOwner])?;
    viewer.require(Permission::Refund)?;
    let id = viewer.merchant().ok_or(PageError::Forbidden)?;
    let merchant = MerchantId::parse(id).map_err(|_| PageError::Forbidden)?;
    let record = state.store.directory.merchant(id).await?.ok_or(PageError::NotFound)?;
    let currency =
        Currency::from_code(&record.currency).map_err(|_| PageError::Internal("a merchant's currency".into()))?;
    Ok((merchant, currency))
}

fn reasons(lang: Lang) -> Vec<(String, String)> {
    RefundReason::ALL.iter().map(|r| (r.as_str().to_owned(), reason_label(lang, *r))).collect()
}

async fn new_form(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<NewQuery>,
) -> Result<Response, PageError> {
    let (merchant, currency) = owner_merchant(&state, &viewer).await?;
    let mut page = NewPage {
        chrome: viewer.chrome("refunds-new-title"),
        request_no: request_no(),
        channel: "card".into(),
        reference: String::new(),
        amount: String::new(),
        currency: currency.code().to_owned(),
        paid: String::new(),
        reasons: reasons(viewer.lang),
        reason: RefundReason::ReturnOfGoods.as_str().into(),
        note: String::new(),
        error: None,
    };
    if let Some(id) = query.id.as_deref().filter(|id| !id.is_empty()) {
        let id: i64 = id.parse().map_err(|_| PageError::NotFound)?;
        let txn = state
            .store
            .txns
            .txn(id)
            .await?
            .filter(|t| t.merchant_id == merchant.as_str())
            .ok_or(PageError::NotFound)?;
        let qr = txn.channel != Channel::Card;
        if query.channel.as_deref().is_some_and(|asked| (asked == "card") == qr) {
            return Err(PageError::NotFound);
        }
        page.channel = if qr { "qr".into() } else { "card".into() };
        page.reference = if qr {
            txn.out_trade_no.clone().unwrap_or_default()
        } else {
            // The gateway's way when no RRN is stored: the id as RRN.
            txn.rrn.clone().unwrap_or_else(|| format!("{:012}", txn.id))
        };
        let txn_currency = txn.currency;
        let left = txn.amount_minor.saturating_sub(txn.refunded_minor);
        page.paid = viewer.lang.t2(
            "refunds-paid",
            "amount",
            money_of(Money::from_minor(txn.amount_minor, txn_currency)),
            "left",
            money_of(Money::from_minor(left, txn_currency)),
        );
        page.amount = Money::from_minor(left, txn_currency).to_decimal_string();
    }
    render(&page)
}

#[derive(Deserialize)]
struct RequestForm {
    request_no: String,
    channel: String,
    reference: String,
    amount: String,
    reason: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    paycode_password: Option<FormSecret>,
}

async fn request(
    State(state): State<WebState>,
    Posted { viewer, form }: Posted<RequestForm>,
) -> Result<Response, PageError> {
    let (merchant, currency) = owner_merchant(&state, &viewer).await?;
    let actor = actor(&viewer.session)?;
    let refunds = service(&state)?;
    let lang = viewer.lang;
    let note = bounded(&form.note)?.to_owned();
    let reference = form.reference.trim().to_owned();
    let refused = |message: String| NewPage {
        chrome: viewer.chrome("refunds-new-title"),
        request_no: form.request_no.clone(),
        channel: form.channel.clone(),
        reference: reference.clone(),
        amount: form.amount.clone(),
        currency: currency.code().to_owned(),
        paid: String::new(),
        reasons: reasons(lang),
        reason: form.reason.clone(),
        note: note.clone(),
        error: Some(message),
    };
    let answer = |page: NewPage| -> Result<Response, PageError> {
        Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
    };
    let target = match form.channel.as_str() {
        "card" => RefundTarget::Card { rrn: reference.clone() },
        "qr" => RefundTarget::Qr { out_trade_no: reference.clone() },
        _ => return Err(PageError::Bad("error-form")),
    };
    let Some(reason) = RefundReason::parse(&form.reason) else { return Err(PageError::Bad("error-form")) };
    let Ok(amount) = Money::parse(form.amount.trim(), currency) else {
        return answer(refused(lang.t1("settings-bad-amount", "currency", currency.code())));
    };
    if matches!(target, RefundTarget::Qr { .. }) {
        let password = form.paycode_password.as_ref().map(FormSecret::expose).filter(|p| !p.is_empty());
        let origin = Origin { actor: viewer.session.subject(), source: viewer.source.clone() };
        match state.auth.check_paycode(merchant.as_str(), None, PaycodePurpose::Refund, password, &origin).await {
            Ok(_) => {}
            Err(AuthError::PaycodePasswordRequired) => return answer(refused(lang.t("refunds-paycode-required"))),
            Err(error) => {
                let message = crate::pages::operators::refusal(lang, error)?;
                return answer(refused(message));
            }
        }
    }
    let new = NewRefund {
        merchant_id: merchant,
        request_no: form.request_no.trim().to_owned(),
        target,
        amount,
        reason,
        note: note.clone(),
    };
    match refunds.request(&actor, new, &viewer.source).await {
        Ok(progress) => Ok(see_other(&format!("{}?done=done-refunds-requested", progress_href(&progress)))),
        Err(error) => answer(refused(refund_refusal(lang, error)?)),
    }
}

struct Stage {
    label: String,
    outcome: String,
    class: &'static str,
    who: String,
    when: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "refunds/progress.html")]
struct ProgressPage {
    chrome: Chrome,
    row: Row,
    note: String,
    needs_institution: bool,
    stages: Vec<Stage>,
    channel_no: String,
    failure: String,
    fee_returned: String,
    may_review: bool,
    error: Option<String>,
}

/// The stages of a request in order, each with its step when it happened.
fn stages(lang: Lang, progress: &RefundProgress) -> Vec<Stage> {
    let find = |kinds: &[StepKind]| progress.steps.iter().find(|s| kinds.contains(&s.kind));
    let mut plan: Vec<(&str, Vec<StepKind>)> = vec![
        ("refunds-stage-requested", vec![StepKind::Requested]),
        ("refunds-stage-merchant", vec![StepKind::MerchantApproved, StepKind::MerchantRejected]),
    ];
    if progress.needs_institution_review {
        plan.push(("refunds-stage-institution", vec![StepKind::InstitutionApproved, StepKind::InstitutionRejected]));
    }
    plan.push(("refunds-stage-sent", vec![StepKind::SentToChannel]));
    plan.push(("refunds-stage-outcome", vec![StepKind::ChannelSucceeded, StepKind::ChannelFailed]));
    let stopped =
        matches!(progress.state, RefundRequestState::RejectedByMerchant | RefundRequestState::RejectedByInstitution);
    plan.into_iter()
        .map(|(label, kinds)| match find(&kinds) {
            Some(step) => {
                let (outcome, class) = match step.kind {
                    StepKind::Requested => ("refunds-step-requested", "good"),
                    StepKind::MerchantApproved | StepKind::InstitutionApproved => ("refunds-step-approved", "good"),
                    StepKind::MerchantRejected | StepKind::InstitutionRejected => ("refunds-step-rejected", "bad"),
                    StepKind::SentToChannel => ("refunds-step-sent", "good"),
                    StepKind::ChannelSucceeded => ("refunds-step-succeeded", "good"),
                    StepKind::ChannelFailed => ("refunds-step-failed", "bad"),
                };
                Stage {
                    label: lang.t(label),
                    outcome: lang.t(outcome),
                    class,
                    who: who(lang, &step.actor),
                    when: format_time_ms(step.at_ms),
                    reason: step.reason.clone(),
                }
            }
            None => Stage {
                label: lang.t(label),
                outcome: lang.t(if stopped || progress.state == RefundRequestState::Failed {
                    "refunds-step-skipped"
                } else {
                    "refunds-step-waiting"
                }),
                class: "",
                who: String::new(),
                when: String::new(),
                reason: String::new(),
            },
        })
        .collect()
}

async fn progress_page(
    state: &WebState,
    viewer: &Viewer,
    merchant: &str,
    request_no: &str,
    error: Option<String>,
) -> Result<ProgressPage, PageError> {
    let actor = actor(&viewer.session)?;
    let merchant = MerchantId::parse(merchant).map_err(|_| PageError::NotFound)?;
    if request_no.len() > kassa_refund::REQUEST_NO_CHARS_MAX {
        return Err(PageError::NotFound);
    }
    let progress = service(state)?.get(&actor, &merchant, request_no).await.map_err(page_error)?;
    let lang = viewer.lang;
    let may_review = match progress.state {
        RefundRequestState::Requested => viewer.session.role == Role::MerchantOwner,
        RefundRequestState::AwaitingInstitutionReview => viewer.session.role == Role::InstitutionReviewer,
        _ => false,
    } && progress.requested_by != viewer.session.subject();
    let channel = progress.channel.as_ref();
    Ok(ProgressPage {
        chrome: viewer.chrome("refunds-progress-title"),
        row: row(lang, &progress),
        note: progress.note.clone(),
        needs_institution: progress.needs_institution_review,
        stages: stages(lang, &progress),
        channel_no: channel.map(|c| c.channel_refund_no.clone()).unwrap_or_default(),
        failure: channel.and_then(|c| c.failure.clone()).unwrap_or_default(),
        fee_returned: channel.and_then(|c| c.fee_returned).map(money_of).unwrap_or_default(),
        may_review,
        error,
    })
}

async fn progress(
    State(state): State<WebState>,
    viewer: Viewer,
    Path((merchant, request_no)): Path<(String, String)>,
) -> Result<Response, PageError> {
    render(&progress_page(&state, &viewer, &merchant, &request_no, None).await?)
}

#[derive(Deserialize)]
struct ReviewForm {
    decision: String,
    #[serde(default)]
    reason: String,
}

async fn review(
    State(state): State<WebState>,
    Path((merchant, request_no)): Path<(String, String)>,
    Posted { viewer, form }: Posted<ReviewForm>,
) -> Result<Response, PageError> {
    let actor = actor(&viewer.session)?;
    if matches!(actor, Actor::InstitutionReviewer { .. }) {
        viewer.require(Permission::ReviewRefunds)?;
    }
    let merchant_id = MerchantId::parse(&merchant).map_err(|_| PageError::NotFound)?;
    let decision = match form.decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        _ => return Err(PageError::Bad("error-form")),
    };
    let reason = bounded(&form.reason)?;
    let refunds = service(&state)?;
    match refunds.review(&actor, &merchant_id, &request_no, decision, reason, &viewer.source).await {
        Ok(progress) => {
            let done = if decision == Decision::Approve { "done-refunds-approved" } else { "done-refunds-rejected" };
            Ok(see_other(&format!("{}?done={done}", progress_href(&progress))))
        }
        Err(error) => {
            let message = refund_refusal(viewer.lang, error)?;
            let page = progress_page(&state, &viewer, &merchant, &request_no, Some(message)).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
        }
    }
}

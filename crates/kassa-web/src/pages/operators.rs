//! Operators (操作员管理): the merchant's terminal operators — the supervisor 00 and the
//! cashiers — with their state (enabled, locked until, must change, initial-password risk);
//! add one, disable or enable, unlock, and reset a forgotten password (a new initial password
//! typed by the owner, changed by the operator at first use). Below, the back-office users:
//! look one up, unlock, reset a forgotten password to a temporary one (changed at first
//! sign-in), and record the contact their one-time codes go to; and the list of back-office
//! users (an institution admin sees every user, a merchant owner its merchant's) with role,
//! state and last sign-in, a page of [`USERS_PER_PAGE`] at a time by name (`?users_after=`).
//!
//! Institution admins pick the merchant (`?merchant=`); a merchant owner sees its own. The rules
//! are kassa-auth's (`backoffice_operators`, `backoffice`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kassa_auth::{AuthError, Permission, Role};
use serde::Deserialize;

use crate::page::{
    auth_message, bounded, encode_component, format_time_ms, render, see_other, Chrome, FormSecret, PageError, Posted,
    Viewer,
};
use crate::{Lang, WebState};

/// Back-office users one page of the users' list shows.
pub const USERS_PER_PAGE: i64 = 50;

/// The routes of this area.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/operators", get(page))
        .route("/operators/add", post(add))
        .route("/operators/unlock", post(unlock))
        .route("/operators/enable", post(enable))
        .route("/operators/reset", post(reset))
        .route("/operators/users/unlock", post(user_unlock))
        .route("/operators/users/reset", post(user_reset))
        .route("/operators/users/contact", post(user_contact))
}

/// The merchant a page is about: a merchant-side viewer's own; for institution staff the one
/// asked (`None` until one is picked). A malformed id is refused before any read.
pub(crate) fn merchant_of(viewer: &Viewer, asked: Option<&str>) -> Result<Option<String>, PageError> {
    match viewer.merchant_scope(asked.map(str::trim)) {
        Some(id) if kassa_domain::MerchantId::parse(id).is_ok() => Ok(Some(id.to_owned())),
        Some(_) => Err(PageError::Bad("operators-bad-merchant")),
        None if viewer.is_institution() => Ok(None),
        None => Err(PageError::Forbidden),
    }
}

/// A refusal the person can act on, in words (re-rendered on the form's page with 422); any
/// other error goes to the error page.
pub(crate) fn refusal(lang: Lang, error: AuthError) -> Result<String, PageError> {
    match error {
        AuthError::Policy(_)
        | AuthError::Invalid(_)
        | AuthError::WrongSecret { .. }
        | AuthError::SecretLocked { .. }
        | AuthError::Locked { .. }
        | AuthError::Blocked(_)
        | AuthError::Settings(_)
        | AuthError::Refused(_)
        | AuthError::RateLimited
        | AuthError::Conflict => Ok(match &error {
            AuthError::SecretLocked { what } => lang.t1("operators-secret-locked", "what", secret_name(lang, what)),
            AuthError::WrongSecret { what, attempts_left: Some(left) } => {
                lang.t2("auth-wrong-secret-left", "what", secret_name(lang, what), "left", left)
            }
            AuthError::WrongSecret { what, attempts_left: None } => {
                lang.t1("auth-wrong-secret", "what", secret_name(lang, what))
            }
            AuthError::Conflict => lang.t("operators-conflict"),
            other => auth_message(lang, other),
        }),
        AuthError::NotFound(_) => Err(PageError::NotFound),
        other => Err(other.into()),
    }
}

/// A secret kassa-auth names (in English) in the page's words.
fn secret_name(lang: Lang, what: &str) -> String {
    match what {
        "refund password" => lang.t("operators-secret-refund"),
        "payment-code password" => lang.t("operators-secret-paycode"),
        "password" => lang.t("operators-secret-password"),
        other => other.to_owned(),
    }
}

/// Where to go back to after a form of `merchant`.
fn back(merchant: &str, done: &str) -> Response {
    see_other(&format!("/operators?merchant={}&done={done}", encode_component(merchant)))
}

#[derive(Deserialize, Default)]
struct PageQuery {
    #[serde(default)]
    merchant: Option<String>,
    #[serde(default)]
    user: Option<String>,
    /// The users' list from the user after this name.
    #[serde(default)]
    users_after: Option<String>,
}

struct OperatorRow {
    code: String,
    role: String,
    supervisor: bool,
    enabled: bool,
    locked_until: Option<String>,
    must_change: bool,
    failures: i64,
    failures_text: String,
    changed: String,
}

/// A line of the back-office users' list.
struct UserLine {
    username: String,
    role: String,
    merchant: String,
    enabled: bool,
    locked_until: Option<String>,
    must_change: bool,
    last_sign_in: String,
    /// The link that opens the user's actions (users the viewer manages only).
    href: Option<String>,
}

struct RiskRow {
    kind: String,
    account: String,
    since: String,
}

struct UserRow {
    username: String,
    role: String,
    merchant: String,
    enabled: bool,
    locked_until: Option<String>,
    must_change: bool,
    failures: i64,
    failures_text: String,
    contact: Option<String>,
}

#[derive(Template)]
#[template(path = "operators/index.html")]
struct OperatorsPage {
    chrome: Chrome,
    merchant: Option<String>,
    institution: bool,
    operators: Vec<OperatorRow>,
    risks: Vec<RiskRow>,
    rules: String,
    user_query: String,
    user: Option<UserRow>,
    user_missing: bool,
    users: Vec<UserLine>,
    users_next: Option<String>,
    error: Option<String>,
}

/// A role in words.
fn role_label(lang: Lang, role: &str) -> String {
    Role::parse(role)
        .map_or_else(|| role.to_owned(), |role| lang.t(&format!("role-{}", role.as_str().replace('_', "-"))))
}

/// One page of the back-office users the viewer may see: an institution admin every user, a
/// merchant owner its merchant's; none for another role. With the next page's link.
async fn user_lines(
    state: &WebState,
    viewer: &Viewer,
    merchant: Option<&str>,
    after: &str,
) -> Result<(Vec<UserLine>, Option<String>), PageError> {
    let lang = viewer.lang;
    let scope = match viewer.session.role {
        Role::InstitutionAdmin => None,
        Role::MerchantOwner => Some(viewer.merchant().ok_or(PageError::Forbidden)?),
        _ => return Ok((Vec::new(), None)),
    };
    let after = after.trim();
    if after.len() > kassa_auth::backoffice::USERNAME_CHARS_MAX {
        return Err(PageError::Bad("operators-bad-user"));
    }
    let now = state.auth.now_ms();
    let mut rows = state.store.fleet().user_list(scope, after, USERS_PER_PAGE + 1).await?;
    let more = rows.len() > USERS_PER_PAGE as usize;
    rows.truncate(USERS_PER_PAGE as usize);
    let merchant_query = merchant.map(|m| format!("merchant={}&", encode_component(m))).unwrap_or_default();
    let next = more
        .then(|| rows.last())
        .flatten()
        .map(|last| format!("/operators?{merchant_query}users_after={}#users", encode_component(&last.username)));
    let lines = rows
        .into_iter()
        .map(|row| {
            // What kassa-auth lets the viewer manage: any user for an institution admin, the
            // merchant's staff for its owner.
            let manages = viewer.session.role == Role::InstitutionAdmin || row.role == Role::MerchantStaff.as_str();
            UserLine {
                href: manages
                    .then(|| format!("/operators?{merchant_query}user={}#users", encode_component(&row.username))),
                role: role_label(lang, &row.role),
                merchant: row.merchant_id.unwrap_or_default(),
                enabled: row.enabled,
                locked_until: row.locked_until_ms.filter(|until| *until > now).map(format_time_ms),
                must_change: row.must_change_password,
                last_sign_in: row.last_sign_in_ms.map_or_else(|| lang.t("operators-never-signed-in"), format_time_ms),
                username: row.username,
            }
        })
        .collect();
    Ok((lines, next))
}

async fn build(
    state: &WebState,
    viewer: &Viewer,
    merchant: Option<String>,
    user_query: Option<&str>,
    error: Option<String>,
) -> Result<OperatorsPage, PageError> {
    build_from(state, viewer, merchant, user_query, "", error).await
}

async fn build_from(
    state: &WebState,
    viewer: &Viewer,
    merchant: Option<String>,
    user_query: Option<&str>,
    users_after: &str,
    error: Option<String>,
) -> Result<OperatorsPage, PageError> {
    let lang = viewer.lang;
    let now = state.auth.now_ms();
    let locked = |until: Option<i64>| until.filter(|until| *until > now).map(format_time_ms);
    let mut operators = Vec::new();
    let mut risks = Vec::new();
    let mut rules = String::new();
    if let Some(merchant) = &merchant {
        for operator in state.auth.operators_for(&viewer.session, merchant).await.map_err(not_found)? {
            let credential = &operator.credential;
            operators.push(OperatorRow {
                supervisor: operator.operator_code == "00",
                role: lang.t(if operator.role == "supervisor" {
                    "operators-role-supervisor"
                } else {
                    "operators-role-operator"
                }),
                code: operator.operator_code,
                enabled: credential.enabled,
                locked_until: locked(credential.locked_until_ms),
                must_change: credential.must_change_password,
                failures: i64::from(credential.failures),
                failures_text: lang.tn("operators-failures", "count", i64::from(credential.failures)),
                changed: format_time_ms(credential.password_changed_ms),
            });
        }
        for risk in state.auth.back_office_risks(&viewer.session).await? {
            if risk.merchant_id.as_deref() != Some(merchant.as_str()) {
                continue;
            }
            let kind = match risk.kind.as_str() {
                "operator" => "operators-risk-operator",
                "backoffice_user" => "operators-risk-user",
                _ => "operators-risk-secret",
            };
            risks.push(RiskRow { kind: lang.t(kind), account: risk.account, since: format_time_ms(risk.since_ms) });
        }
        let policy = state.auth.terminal_policy(merchant).await?;
        rules = lang.t2("operators-rules", "min", policy.length_min, "history", policy.history_count);
    }
    let user_query = user_query.map(str::trim).filter(|name| !name.is_empty()).unwrap_or_default().to_owned();
    let mut user = None;
    let mut user_missing = false;
    if !user_query.is_empty() {
        match state.auth.managed_user(&viewer.session, &user_query).await {
            Ok(record) => {
                let contact = state.auth.user_contact_for(&viewer.session, &record.username).await?;
                user = Some(UserRow {
                    role: role_label(lang, &record.role),
                    merchant: record.merchant_id.clone().unwrap_or_default(),
                    enabled: record.credential.enabled,
                    locked_until: locked(record.credential.locked_until_ms),
                    must_change: record.credential.must_change_password,
                    failures: i64::from(record.credential.failures),
                    failures_text: lang.tn("operators-failures", "count", i64::from(record.credential.failures)),
                    contact,
                    username: record.username,
                });
            }
            Err(AuthError::NotFound(_) | AuthError::Denied(_)) => user_missing = true,
            Err(error) => return Err(error.into()),
        }
    }
    let (users, users_next) = user_lines(state, viewer, merchant.as_deref(), users_after).await?;
    Ok(OperatorsPage {
        chrome: viewer.chrome("operators-title"),
        users,
        users_next,
        institution: viewer.is_institution(),
        merchant,
        operators,
        risks,
        rules,
        user_query,
        user,
        user_missing,
        error,
    })
}

/// Another merchant's operators, or a merchant that does not exist, are not found.
fn not_found(error: AuthError) -> PageError {
    match error {
        AuthError::Denied(_) | AuthError::NotFound(_) => PageError::NotFound,
        other => other.into(),
    }
}

fn allowed(viewer: &Viewer) -> Result<(), PageError> {
    viewer.require_role(&[Role::InstitutionAdmin, Role::MerchantOwner])?;
    viewer.require(Permission::ManageOperators)
}

async fn page(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    let merchant = merchant_of(&viewer, query.merchant.as_deref())?;
    let after = query.users_after.as_deref().unwrap_or_default();
    render(&build_from(&state, &viewer, merchant, query.user.as_deref(), after, None).await?)
}

/// The page again with `error`, answered 422.
async fn refused(
    state: &WebState,
    viewer: &Viewer,
    merchant: Option<String>,
    user: Option<&str>,
    error: AuthError,
) -> Result<Response, PageError> {
    let message = refusal(viewer.lang, error)?;
    refused_with(state, viewer, merchant, user, message).await
}

async fn refused_with(
    state: &WebState,
    viewer: &Viewer,
    merchant: Option<String>,
    user: Option<&str>,
    message: String,
) -> Result<Response, PageError> {
    let page = build(state, viewer, merchant, user, Some(message)).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
}

#[derive(Deserialize)]
struct AddForm {
    #[serde(default)]
    merchant: String,
    code: String,
    password: FormSecret,
    confirm: FormSecret,
}

async fn add(State(state): State<WebState>, Posted { viewer, form }: Posted<AddForm>) -> Result<Response, PageError> {
    allowed(&viewer)?;
    let merchant = merchant_of(&viewer, Some(&form.merchant))?.ok_or(PageError::Bad("operators-bad-merchant"))?;
    if form.password.expose() != form.confirm.expose() {
        return refused_with(&state, &viewer, Some(merchant), None, viewer.lang.t("operators-mismatch")).await;
    }
    let code = form.code.trim();
    match state.auth.add_operator_for(&viewer.session, &merchant, code, form.password.expose(), &viewer.source).await {
        Ok(()) => Ok(back(&merchant, "done-operators-added")),
        Err(error) => refused(&state, &viewer, Some(merchant), None, error).await,
    }
}

#[derive(Deserialize)]
struct OperatorForm {
    #[serde(default)]
    merchant: String,
    code: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    enabled: String,
}

async fn unlock(
    State(state): State<WebState>,
    Posted { viewer, form }: Posted<OperatorForm>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    let merchant = merchant_of(&viewer, Some(&form.merchant))?.ok_or(PageError::Bad("operators-bad-merchant"))?;
    let reason = bounded(&form.reason)?;
    match state.auth.unlock_operator_for(&viewer.session, &merchant, &form.code, reason, &viewer.source).await {
        Ok(()) => Ok(back(&merchant, "done-operators-unlocked")),
        Err(error) => refused(&state, &viewer, Some(merchant), None, error).await,
    }
}

async fn enable(
    State(state): State<WebState>,
    Posted { viewer, form }: Posted<OperatorForm>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    let merchant = merchant_of(&viewer, Some(&form.merchant))?.ok_or(PageError::Bad("operators-bad-merchant"))?;
    let enabled = match form.enabled.as_str() {
        "true" => true,
        "false" => false,
        _ => return Err(PageError::Bad("error-form")),
    };
    let reason = bounded(&form.reason)?;
    match state
        .auth
        .set_operator_enabled_for(&viewer.session, &merchant, &form.code, enabled, reason, &viewer.source)
        .await
    {
        Ok(()) => Ok(back(&merchant, if enabled { "done-operators-enabled" } else { "done-operators-disabled" })),
        Err(error) => refused(&state, &viewer, Some(merchant), None, error).await,
    }
}

#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    merchant: String,
    code: String,
    password: FormSecret,
    confirm: FormSecret,
    #[serde(default)]
    reason: String,
}

async fn reset(
    State(state): State<WebState>,
    Posted { viewer, form }: Posted<ResetForm>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    let merchant = merchant_of(&viewer, Some(&form.merchant))?.ok_or(PageError::Bad("operators-bad-merchant"))?;
    let reason = bounded(&form.reason)?;
    if form.password.expose() != form.confirm.expose() {
        return refused_with(&state, &viewer, Some(merchant), None, viewer.lang.t("operators-mismatch")).await;
    }
    let outcome = state
        .auth
        .reset_operator_for(&viewer.session, &merchant, &form.code, form.password.expose(), reason, &viewer.source)
        .await;
    match outcome {
        Ok(()) => Ok(back(&merchant, "done-operators-reset")),
        Err(error) => refused(&state, &viewer, Some(merchant), None, error).await,
    }
}

fn user_allowed(viewer: &Viewer) -> Result<(), PageError> {
    viewer.require_role(&[Role::InstitutionAdmin, Role::MerchantOwner])?;
    viewer.require(Permission::ManageUsers)
}

/// Back to the page showing `user` after one of the users' forms.
fn back_to_user(viewer: &Viewer, user: &str, done: &str) -> Response {
    let merchant = viewer.merchant().map(|m| format!("merchant={}&", encode_component(m))).unwrap_or_default();
    see_other(&format!("/operators?{merchant}user={}&done={done}#users", encode_component(user)))
}

#[derive(Deserialize)]
struct UserForm {
    user: String,
    #[serde(default)]
    reason: String,
}

async fn user_unlock(
    State(state): State<WebState>,
    Posted { viewer, form }: Posted<UserForm>,
) -> Result<Response, PageError> {
    user_allowed(&viewer)?;
    let reason = bounded(&form.reason)?;
    let merchant = viewer.merchant().map(str::to_owned);
    match state.auth.unlock_user(&viewer.session, form.user.trim(), reason, &viewer.source).await {
        Ok(()) => Ok(back_to_user(&viewer, form.user.trim(), "done-operators-user-unlocked")),
        Err(AuthError::Denied(_)) => Err(PageError::NotFound),
        Err(error) => refused(&state, &viewer, merchant, Some(form.user.trim()), error).await,
    }
}

#[derive(Deserialize)]
struct UserResetForm {
    user: String,
    password: FormSecret,
    confirm: FormSecret,
    #[serde(default)]
    reason: String,
}

async fn user_reset(
    State(state): State<WebState>,
    Posted { viewer, form }: Posted<UserResetForm>,
) -> Result<Response, PageError> {
    user_allowed(&viewer)?;
    let reason = bounded(&form.reason)?;
    let user = form.user.trim();
    let merchant = viewer.merchant().map(str::to_owned);
    if form.password.expose() != form.confirm.expose() {
        return refused_with(&state, &viewer, merchant, Some(user), viewer.lang.t("operators-mismatch")).await;
    }
    match state
        .auth
        .reset_user_password_for(&viewer.session, user, form.password.expose(), reason, &viewer.source)
        .await
    {
        Ok(()) => Ok(back_to_user(&viewer, user, "done-operators-user-reset")),
        Err(AuthError::Denied(_)) => Err(PageError::NotFound),
        Err(error) => refused(&state, &viewer, merchant, Some(user), error).await,
    }
}

#[derive(Deserialize)]
struct ContactForm {
    user: String,
    contact: String,
}

async fn user_contact(
    State(state): State<WebState>,
    Posted { viewer, form }: Posted<ContactForm>,
) -> Result<Response, PageError> {
    user_allowed(&viewer)?;
    let user = form.user.trim();
    let contact = bounded(&form.contact)?;
    let merchant = viewer.merchant().map(str::to_owned);
    match state.auth.set_user_contact_for(&viewer.session, user, contact, &viewer.source).await {
        Ok(()) => Ok(back_to_user(&viewer, user, "done-operators-contact-set")),
        Err(AuthError::Denied(_)) => Err(PageError::NotFound),
        Err(error) => refused(&state, &viewer, merchant, Some(user), error).await,
    }
}

//! Settings (设置): the back-office password policy (shown to everyone who opens the page,
//! edited by an institution admin within kassa-auth's bounds, `policy`), and for a merchant — its owner, or
//! an institution admin with `?merchant=` — the refund password (退款密码: change, and whether it
//! is still the default), the payment-code settings (付款码设置: QR validity, QR per terminal,
//! when the payment-code password is asked) and the payment-code password (付款码密码: set or
//! change). The rules are kassa-auth's (`paycode`, `refund`, `backoffice_operators`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kassa_auth::{
    AuthError, BackOfficePolicy, BackOfficePolicyDraft, PaycodeSettings, PaycodeSettingsDraft, Permission, PolicyField,
    Role,
};
use kassa_domain::{Currency, Money};
use kassa_store::MerchantSecretKind;
use serde::Deserialize;

use crate::page::{
    bounded, encode_component, format_time_ms, render, see_other, Chrome, FormSecret, PageError, Posted, Viewer,
};
use crate::pages::operators::{merchant_of, refusal};
use crate::WebState;

/// The routes of this area.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/settings", get(page))
        .route("/settings/refund-password", post(refund_password))
        .route("/settings/paycode", post(paycode))
        .route("/settings/paycode-password", post(paycode_password))
        .route("/settings/policy", post(policy))
}

#[derive(Deserialize, Default)]
struct PageQuery {
    #[serde(default)]
    merchant: Option<String>,
}

struct PolicyView {
    length_min: u8,
    history_count: u8,
    lockout_failures: u8,
    lockout_minutes: u16,
    idle: String,
    age: String,
    /// The number fields of the edit form (an institution admin's).
    inputs: Vec<PolicyInput>,
    require_symbol: bool,
}

struct PolicyInput {
    id: String,
    name: &'static str,
    label: String,
    min: u32,
    max: u32,
    value: u32,
}

struct TerminalRow {
    terminal_id: String,
    qr_on: bool,
}

struct MerchantView {
    merchant_id: String,
    name: String,
    currency: String,
    refund_set: bool,
    refund_default: bool,
    refund_changed: String,
    refund_rules: String,
    qr_validity_minutes: u16,
    terminals: Vec<TerminalRow>,
    password_required: bool,
    password_above: String,
    password_for_refunds: bool,
    version: u64,
    updated: String,
    paycode_password_set: bool,
}

#[derive(Template)]
#[template(path = "settings/index.html")]
struct SettingsPage {
    chrome: Chrome,
    policy: PolicyView,
    institution: bool,
    /// May edit the password policy.
    admin: bool,
    owner: bool,
    merchant: Option<MerchantView>,
    asked: String,
    error: Option<String>,
}

fn allowed(viewer: &Viewer) -> Result<(), PageError> {
    viewer.require_role(&[Role::InstitutionAdmin, Role::MerchantOwner])?;
    viewer.require(Permission::ChangeSettings)
}

async fn build(
    state: &WebState,
    viewer: &Viewer,
    merchant: Option<String>,
    error: Option<String>,
) -> Result<SettingsPage, PageError> {
    let lang = viewer.lang;
    let policy = state.auth.back_office_policy().await?;
    let policy = PolicyView {
        length_min: policy.length_min,
        history_count: policy.history_count,
        lockout_failures: policy.lockout_failures,
        lockout_minutes: policy.lockout_minutes,
        idle: policy
            .idle_timeout_minutes
            .map_or_else(|| lang.t("settings-never"), |m| lang.tn("settings-minutes", "n", i64::from(m))),
        age: policy
            .age_max_days
            .map_or_else(|| lang.t("settings-never"), |d| lang.tn("settings-days", "n", i64::from(d))),
        inputs: policy_inputs(lang, &BackOfficePolicyDraft::of(&policy)),
        require_symbol: policy.require_symbol,
    };
    let asked = merchant.clone().unwrap_or_default();
    let merchant = match merchant {
        Some(id) => Some(merchant_view(state, viewer, &id).await?),
        None => None,
    };
    Ok(SettingsPage {
        chrome: viewer.chrome("settings-title"),
        policy,
        institution: viewer.is_institution(),
        admin: viewer.session.role == Role::InstitutionAdmin,
        owner: viewer.session.role == Role::MerchantOwner,
        merchant,
        asked,
        error,
    })
}

async fn merchant_view(state: &WebState, viewer: &Viewer, merchant_id: &str) -> Result<MerchantView, PageError> {
    let lang = viewer.lang;
    let view = match state.auth.paycode_settings_for(&viewer.session, merchant_id).await {
        Ok(view) => view,
        Err(AuthError::NotFound(_) | AuthError::Denied(_)) => return Err(PageError::NotFound),
        Err(error) => return Err(error.into()),
    };
    let record = state.store.directory.merchant(merchant_id).await?.ok_or(PageError::NotFound)?;
    let currency =
        Currency::from_code(&record.currency).map_err(|_| PageError::Internal("a merchant's currency".into()))?;
    let refund = state.store.directory.merchant_secret(merchant_id, MerchantSecretKind::RefundPassword).await?;
    let refund_policy = state.auth.secret_policy(merchant_id, MerchantSecretKind::RefundPassword).await?;
    let settings = &view.current.settings;
    let terminals = state
        .store
        .directory
        .terminals_of(merchant_id)
        .await?
        .into_iter()
        .map(|t| TerminalRow { qr_on: settings.qr_enabled(&t.terminal_id), terminal_id: t.terminal_id })
        .collect();
    Ok(MerchantView {
        merchant_id: merchant_id.to_owned(),
        name: record.name,
        currency: currency.code().to_owned(),
        refund_set: refund.is_some(),
        refund_default: refund.as_ref().is_some_and(|r| r.is_default),
        refund_changed: refund.as_ref().map(|r| format_time_ms(r.changed_at_ms)).unwrap_or_default(),
        refund_rules: lang.t2(
            "settings-code-rules",
            "min",
            refund_policy.length_min,
            "history",
            refund_policy.history_count,
        ),
        qr_validity_minutes: settings.qr_validity_minutes(),
        terminals,
        password_required: settings.password_required(),
        password_above: Money::from_minor(settings.password_above_minor(), currency).to_decimal_string(),
        password_for_refunds: settings.password_for_refunds(),
        version: view.current.version,
        updated: if view.current.updated_at_ms > 0 {
            format_time_ms(view.current.updated_at_ms)
        } else {
            lang.t("settings-never-changed")
        },
        paycode_password_set: view.password_set,
    })
}

async fn page(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    let merchant = merchant_of(&viewer, query.merchant.as_deref())?;
    render(&build(&state, &viewer, merchant, None).await?)
}

async fn refused(state: &WebState, viewer: &Viewer, merchant: String, message: String) -> Result<Response, PageError> {
    refused_on(state, viewer, Some(merchant), message).await
}

async fn refused_on(
    state: &WebState,
    viewer: &Viewer,
    merchant: Option<String>,
    message: String,
) -> Result<Response, PageError> {
    let page = build(state, viewer, merchant, Some(message)).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
}

fn back(merchant: &str, done: &str) -> Response {
    see_other(&format!("/settings?merchant={}&done={done}", encode_component(merchant)))
}

#[derive(Deserialize)]
struct SecretForm {
    #[serde(default)]
    merchant: String,
    #[serde(default)]
    old: Option<FormSecret>,
    new: FormSecret,
    confirm: FormSecret,
}

async fn refund_password(
    State(state): State<WebState>,
    Posted { viewer, form }: Posted<SecretForm>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    let merchant = merchant_of(&viewer, Some(&form.merchant))?.ok_or(PageError::Bad("operators-bad-merchant"))?;
    if form.new.expose() != form.confirm.expose() {
        return refused(&state, &viewer, merchant, viewer.lang.t("operators-mismatch")).await;
    }
    let old = form.old.as_ref().map(FormSecret::expose).unwrap_or_default();
    match state
        .auth
        .change_refund_password_for(&viewer.session, &merchant, old, form.new.expose(), &viewer.source)
        .await
    {
        Ok(()) => Ok(back(&merchant, "done-settings-refund-password")),
        Err(AuthError::Denied(_)) => Err(PageError::Forbidden),
        Err(error) => {
            let message = refusal(viewer.lang, error)?;
            refused(&state, &viewer, merchant, message).await
        }
    }
}

async fn paycode_password(
    State(state): State<WebState>,
    Posted { viewer, form }: Posted<SecretForm>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    let merchant = merchant_of(&viewer, Some(&form.merchant))?.ok_or(PageError::Bad("operators-bad-merchant"))?;
    if form.new.expose() != form.confirm.expose() {
        return refused(&state, &viewer, merchant, viewer.lang.t("operators-mismatch")).await;
    }
    let old = form.old.as_ref().map(FormSecret::expose).filter(|old| !old.is_empty());
    match state.auth.set_paycode_password_for(&viewer.session, &merchant, old, form.new.expose(), &viewer.source).await
    {
        Ok(()) => Ok(back(&merchant, "done-settings-paycode-password")),
        Err(AuthError::Denied(_)) => Err(PageError::Forbidden),
        Err(error) => {
            let message = refusal(viewer.lang, error)?;
            refused(&state, &viewer, merchant, message).await
        }
    }
}

/// The most fields the payment-code settings form carries (one per terminal, and a few).
const PAYCODE_FIELDS_MAX: usize = kassa_auth::paycode::QR_DISABLED_TERMINALS_MAX + 16;

/// The payment-code settings form: checkboxes (one `qr_on` per terminal taking QR payments)
/// come as repeated fields, so the form is read as its pairs.
async fn paycode(
    State(state): State<WebState>,
    Posted { viewer, form }: Posted<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    if form.len() > PAYCODE_FIELDS_MAX {
        return Err(PageError::Bad("error-form"));
    }
    let field = |name: &str| form.iter().find(|(key, _)| key == name).map(|(_, value)| value.trim());
    let merchant = merchant_of(&viewer, field("merchant"))?.ok_or(PageError::Bad("operators-bad-merchant"))?;
    let record = state.store.directory.merchant(&merchant).await?.ok_or(PageError::NotFound)?;
    let currency =
        Currency::from_code(&record.currency).map_err(|_| PageError::Internal("a merchant's currency".into()))?;
    let Some(validity) = field("qr_validity_minutes").and_then(|text| text.parse::<u16>().ok()) else {
        return refused(&state, &viewer, merchant, viewer.lang.t("settings-bad-validity")).await;
    };
    let Some(above) = field("password_above")
        .map(|text| if text.is_empty() { "0" } else { text })
        .and_then(|text| Money::parse(text, currency).ok())
    else {
        return refused(&state, &viewer, merchant, viewer.lang.t1("settings-bad-amount", "currency", currency.code()))
            .await;
    };
    let version = field("version").and_then(|text| text.parse::<u64>().ok());
    let reason = bounded(field("reason").unwrap_or_default())?;
    let on: Vec<&str> = form.iter().filter(|(key, _)| key == "qr_on").map(|(_, value)| value.as_str()).collect();
    let terminals = state.store.directory.terminals_of(&merchant).await?;
    let disabled =
        terminals.iter().filter(|t| !on.contains(&t.terminal_id.as_str())).map(|t| t.terminal_id.clone()).collect();
    let draft = PaycodeSettingsDraft {
        qr_validity_minutes: validity,
        qr_disabled_terminals: disabled,
        password_required: field("password_required").is_some(),
        password_above_minor: above.minor(),
        password_for_refunds: field("password_for_refunds").is_some(),
    };
    let settings = match PaycodeSettings::new(draft) {
        Ok(settings) => settings,
        Err(violations) => {
            let message = refusal(viewer.lang, AuthError::Settings(violations))?;
            return refused(&state, &viewer, merchant, message).await;
        }
    };
    match state.auth.put_paycode_settings(&viewer.session, &merchant, settings, version, reason, &viewer.source).await {
        Ok(_) => Ok(back(&merchant, "done-settings-paycode")),
        Err(AuthError::Denied(_) | AuthError::NotFound(_)) => Err(PageError::NotFound),
        Err(error) => {
            let message = refusal(viewer.lang, error)?;
            refused(&state, &viewer, merchant, message).await
        }
    }
}

fn policy_inputs(lang: crate::i18n::Lang, draft: &BackOfficePolicyDraft) -> Vec<PolicyInput> {
    PolicyField::ALL
        .into_iter()
        .map(|field| {
            let (min, max) = field.bounds();
            PolicyInput {
                id: format!("policy-{}", field.as_str().replace('_', "-")),
                name: field.as_str(),
                label: field_label(lang, field),
                min,
                max,
                value: draft.value(field),
            }
        })
        .collect()
}

/// The label of a policy field on the form (also how a refusal names it).
fn field_label(lang: crate::i18n::Lang, field: PolicyField) -> String {
    let (min, max) = field.bounds();
    let id = match field {
        PolicyField::LengthMin => "settings-policy-length-min",
        PolicyField::HistoryCount => "settings-policy-history",
        PolicyField::AgeMaxDays => "settings-policy-age",
        PolicyField::LockoutFailures => "settings-policy-lockout-failures",
        PolicyField::LockoutMinutes => "settings-policy-lockout-minutes",
        PolicyField::IdleTimeoutMinutes => "settings-policy-idle",
    };
    lang.t2(id, "min", min, "max", max)
}

/// The most fields the policy form carries.
const POLICY_FIELDS_MAX: usize = 16;

/// The back-office password policy form (an institution admin's).
async fn policy(
    State(state): State<WebState>,
    Posted { viewer, form }: Posted<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    if viewer.session.role != Role::InstitutionAdmin {
        return Err(PageError::Forbidden);
    }
    if form.len() > POLICY_FIELDS_MAX {
        return Err(PageError::Bad("error-form"));
    }
    let lang = viewer.lang;
    let field = |name: &str| form.iter().find(|(key, _)| key == name).map(|(_, value)| value.trim());
    let number = |f: PolicyField| field(f.as_str()).and_then(|text| text.parse::<u32>().ok());
    let not_numbers: Vec<PolicyField> = PolicyField::ALL.into_iter().filter(|f| number(*f).is_none()).collect();
    let draft = BackOfficePolicyDraft {
        length_min: number(PolicyField::LengthMin).unwrap_or_default(),
        history_count: number(PolicyField::HistoryCount).unwrap_or_default(),
        age_max_days: number(PolicyField::AgeMaxDays).unwrap_or_default(),
        lockout_failures: number(PolicyField::LockoutFailures).unwrap_or_default(),
        lockout_minutes: number(PolicyField::LockoutMinutes).unwrap_or_default(),
        idle_timeout_minutes: number(PolicyField::IdleTimeoutMinutes).unwrap_or_default(),
        require_symbol: field("require_symbol").is_some(),
    };
    let checked = if not_numbers.is_empty() {
        BackOfficePolicy::new(draft).map_err(|out| out.into_iter().map(|o| o.field).collect())
    } else {
        Err(not_numbers)
    };
    let policy = match checked {
        Ok(policy) => policy,
        Err(fields) => {
            let named: Vec<String> = fields.into_iter().map(|f| field_label(lang, f)).collect();
            let message = lang.t1("settings-policy-bad", "fields", named.join("; "));
            return refused_on(&state, &viewer, None, message).await;
        }
    };
    let reason = bounded(field("reason").unwrap_or_default())?;
    match state.auth.put_back_office_policy(&viewer.session, &policy, reason, &viewer.source).await {
        Ok(_) => Ok(see_other("/settings?done=done-settings-policy")),
        Err(AuthError::Denied(_)) => Err(PageError::Forbidden),
        Err(error) => {
            let message = refusal(lang, error)?;
            refused_on(&state, &viewer, None, message).await
        }
    }
}

//! What every page handler stands on: the language of the request, the signed-in viewer, forms
//! with their CSRF token, the chrome of the layout, and the one place errors become pages.

use std::net::SocketAddr;

use askama::Template;
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::{ACCEPT_LANGUAGE, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use kassa_auth::{AuthError, BackOfficeSession, Permission, Role};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::i18n::Lang;
use crate::nav::{self, NavItem};
use crate::{security, WebState};

/// The language cookie (not a secret; remembered for a year).
pub const LANG_COOKIE: &str = "kassa_lang";
/// The hidden form field carrying the session's CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// The largest form accepted, bytes.
pub const FORM_BYTES_MAX: usize = 16 * 1024;
/// The longest free text (a reason, a note) accepted in a form, characters.
pub const TEXT_CHARS_MAX: usize = 500;
/// The longest path remembered to return to after signing in, bytes.
const NEXT_PATH_BYTES_MAX: usize = 512;

/// Why a page cannot be shown; rendered in the viewer's language by [`frame`].
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Not signed in (or the session ended): to the sign-in page, then back to `next`.
    #[error("sign in first")]
    SignIn {
        /// The path to return to.
        next: String,
        /// A session cookie was sent but its session has ended.
        ended: bool,
    },
    /// The password must change before anything else.
    #[error("change the password first")]
    MustChangePassword,
    /// The role may not see or do this.
    #[error("not allowed")]
    Forbidden,
    /// No such thing (or not the viewer's to see).
    #[error("not found")]
    NotFound,
    /// The form or query is wrong; the message id (of the Fluent files) says how.
    #[error("bad request: {0}")]
    Bad(&'static str),
    /// The form came without the session's CSRF token, or from another site.
    #[error("the form expired or came from another site")]
    Csrf,
    /// A rule of kassa-auth refused it.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Something failed inside; logged, shown as "internal error".
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<kassa_store::StoreError> for PageError {
    fn from(error: kassa_store::StoreError) -> PageError {
        PageError::Auth(AuthError::Store(error))
    }
}

impl From<askama::Error> for PageError {
    fn from(error: askama::Error) -> PageError {
        PageError::Internal(format!("template: {error}"))
    }
}

/// An error on its way to [`frame`], which renders it in the request's language.
#[derive(Debug, Clone)]
struct Problem {
    status: StatusCode,
    /// The message id of the headline.
    title: &'static str,
    /// The explanation, already in words (an [`AuthError`] says what to do).
    detail: Option<ProblemDetail>,
}

#[derive(Debug, Clone)]
enum ProblemDetail {
    Message(&'static str),
    Auth(AuthError),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let problem = match self {
            PageError::SignIn { next, ended } => {
                let mut location = format!("/login?next={}", encode_component(&next));
                if ended {
                    location.push_str("&ended=1");
                }
                return see_other(&location);
            }
            PageError::MustChangePassword => return see_other("/password"),
            PageError::Forbidden => Problem { status: StatusCode::FORBIDDEN, title: "error-forbidden", detail: None },
            PageError::NotFound => Problem { status: StatusCode::NOT_FOUND, title: "error-not-found", detail: None },
            PageError::Bad(id) => Problem {
                status: StatusCode::BAD_REQUEST,
                title: "error-bad",
                detail: Some(ProblemDetail::Message(id)),
            },
            PageError::Csrf => Problem {
                status: StatusCode::FORBIDDEN,
                title: "error-csrf",
                detail: Some(ProblemDetail::Message("error-csrf-detail")),
            },
            PageError::Auth(AuthError::NoSession) => return see_other("/login?ended=1"),
            PageError::Auth(AuthError::MustChangePassword) => return see_other("/password"),
            PageError::Auth(error) => {
                let answer = error.answer("back office");
                let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let title = if status.is_server_error() { "error-internal" } else { "error-refused" };
                Problem { status, title, detail: Some(ProblemDetail::Auth(error)) }
            }
            PageError::Internal(what) => {
                tracing::error!(%what, "a page failed");
                Problem { status: StatusCode::INTERNAL_SERVER_ERROR, title: "error-internal", detail: None }
            }
        };
        let mut response = problem.status.into_response();
        response.extensions_mut().insert(problem);
        response
    }
}

/// A `303 See Other` to `location` (after a form, and to the sign-in page).
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// Percent-encodes a query component.
pub fn encode_component(text: &str) -> String {
    serde_urlencoded::to_string([("", text)]).map(|pair| pair.trim_start_matches('=').to_owned()).unwrap_or_default()
}

/// An [`AuthError`] in the viewer's language: the common refusals translated with their facts,
/// the rest in the service's own (English) words.
pub fn auth_message(lang: Lang, error: &AuthError) -> String {
    match error {
        AuthError::WrongUserCredentials { attempts_left: Some(left) }
        | AuthError::WrongCredentials { attempts_left: Some(left) } => {
            lang.tn("auth-wrong-credentials-left", "left", i64::from(*left))
        }
        AuthError::WrongUserCredentials { .. } | AuthError::WrongCredentials { .. } => lang.t("auth-wrong-credentials"),
        AuthError::WrongSecret { what, attempts_left } => match attempts_left {
            Some(left) => lang.t2("auth-wrong-secret-left", "what", what, "left", left),
            None => lang.t1("auth-wrong-secret", "what", what),
        },
        AuthError::Locked { until_ms } => lang.t1("auth-locked", "until", format_time_ms(*until_ms)),
        AuthError::UserDisabled | AuthError::Disabled => lang.t("auth-disabled"),
        AuthError::Policy(_) => lang.t1("auth-policy", "rules", error.to_string()),
        AuthError::Denied(_) => lang.t("error-forbidden"),
        AuthError::RateLimited => lang.t("auth-rate-limited"),
        AuthError::Busy { .. } => lang.t("auth-busy"),
        AuthError::Store(_) | AuthError::Hash(_) | AuthError::Notify(_) => lang.t("error-internal"),
        other => match lang {
            Lang::En => other.to_string(),
            Lang::Zh => format!("{}（{}）", lang.t("error-refused"), other),
        },
    }
}

/// A Unix-milliseconds instant as `YYYY-MM-DD HH:MM UTC`.
pub fn format_time_ms(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let date = kassa_domain::CivilDate::from_days_since_epoch(days);
    format!("{date} {:02}:{:02} UTC", of_day / 3600, (of_day % 3600) / 60)
}

/// The middleware around every page: picks the language (`?lang=`, then the cookie, then
/// `Accept-Language`), refuses cross-site form posts, renders errors as pages, remembers a
/// language chosen by `?lang=` and sets the security headers.
pub async fn frame(State(_state): State<WebState>, mut request: Request, next: Next) -> Response {
    let chosen = query_param(request.uri().query(), "lang").and_then(|text| Lang::parse(&text));
    let lang = chosen
        .or_else(|| cookie(request.headers(), LANG_COOKIE).and_then(|text| Lang::parse(&text)))
        .or_else(|| {
            request.headers().get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).and_then(Lang::from_accept_language)
        })
        .unwrap_or_default();
    request.extensions_mut().insert(lang);
    let mut response = if request.method() == Method::POST && !same_origin(request.headers()) {
        PageError::Csrf.into_response()
    } else {
        next.run(request).await
    };
    if let Some(problem) = response.extensions_mut().remove::<Problem>() {
        response = render_problem(lang, &problem);
    }
    if let Some(chosen) = chosen {
        let cookie = format!("{LANG_COOKIE}={}; Path=/; SameSite=Lax; Max-Age=31536000", chosen.code());
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    security::headers(response.headers_mut());
    response
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    detail: Option<String>,
    status: u16,
}

fn render_problem(lang: Lang, problem: &Problem) -> Response {
    let detail = problem.detail.as_ref().map(|detail| match detail {
        ProblemDetail::Message(id) => lang.t(id),
        ProblemDetail::Auth(error) => auth_message(lang, error),
    });
    let page =
        ErrorPage { chrome: Chrome::anonymous(lang, problem.title, "/"), detail, status: problem.status.as_u16() };
    match page.render() {
        Ok(html) => (problem.status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "the error page does not render");
            problem.status.into_response()
        }
    }
}

/// Whether a state-changing request comes from one of our own pages: browsers say so in
/// `Sec-Fetch-Site` and `Origin`; a request with neither (a script, curl) must still carry the
/// session's CSRF token, checked by [`Posted`].
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    match (headers.get(ORIGIN).and_then(|v| v.to_str().ok()), headers.get(HOST).and_then(|v| v.to_str().ok())) {
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, rest)| rest == host),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// The value of `name` in a query string.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs.into_iter().find(|(key, _)| key == name).map(|(_, value)| value)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn source_of(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |ConnectInfo(addr)| addr.ip().to_string())
}

/// The language of the request (set by [`frame`]).
impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Lang>().copied().unwrap_or_default())
    }
}

/// Where the request came from, for the audit log.
#[derive(Debug, Clone)]
pub struct Source(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(source_of(parts)))
    }
}

/// A signed-in user whose password need not change first: every page but sign-in, the
/// password change and sign-out starts with one.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The session (role, merchant).
    pub session: BackOfficeSession,
    /// The page's language.
    pub lang: Lang,
    /// The session's CSRF token, for the forms of the page.
    pub csrf: String,
    /// Where the request came from.
    pub source: String,
    /// The path of the request (the current navigation item).
    pub path: String,
    /// The `?done=` notice of a form that just succeeded, if it names a known message.
    pub notice: Option<String>,
}

impl Viewer {
    /// Refuses unless the role has `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), PageError> {
        self.session.require(permission).map_err(|_| PageError::Forbidden)
    }

    /// Refuses unless the role has `permission` for `merchant_id` (institution staff: any).
    pub fn require_for_merchant(&self, permission: Permission, merchant_id: &str) -> Result<(), PageError> {
        self.session.require_for_merchant(permission, merchant_id).map_err(|_| PageError::Forbidden)
    }

    /// Refuses unless the viewer is one of `roles`.
    pub fn require_role(&self, roles: &[Role]) -> Result<(), PageError> {
        if roles.contains(&self.session.role) {
            Ok(())
        } else {
            Err(PageError::Forbidden)
        }
    }

    /// Institution staff (admin or reviewer).
    pub fn is_institution(&self) -> bool {
        matches!(self.session.role, Role::InstitutionAdmin | Role::InstitutionReviewer)
    }

    /// The merchant a merchant-side viewer is bound to; `None` for institution staff.
    pub fn merchant(&self) -> Option<&str> {
        self.session.merchant_id.as_deref()
    }

    /// The merchant a page is about: a merchant-side viewer's own (whatever was asked), or the
    /// one institution staff asked for.
    pub fn merchant_scope<'a>(&'a self, asked: Option<&'a str>) -> Option<&'a str> {
        if self.is_institution() {
            asked.filter(|text| !text.is_empty())
        } else {
            self.merchant()
        }
    }

    /// The layout's chrome for a page titled by message `title`.
    pub fn chrome(&self, title: &str) -> Chrome {
        Chrome {
            lang: self.lang,
            title: self.lang.t(title),
            user: Some(UserBadge {
                username: self.session.username.clone(),
                role: self.lang.t(&format!("role-{}", self.session.role.as_str().replace('_', "-"))),
            }),
            csrf: self.csrf.clone(),
            nav: nav::items(self.lang, self.session.role, &self.path),
            path: self.path.clone(),
            notice: self.notice.clone(),
        }
    }
}

/// A signed-in user who may still have to change the password (the password page and sign-out).
#[derive(Debug, Clone)]
pub struct AnyViewer(pub Viewer);

impl FromRequestParts<WebState> for AnyViewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Self::Rejection> {
        let lang = parts.extensions.get::<Lang>().copied().unwrap_or_default();
        let path = parts.uri.path().to_owned();
        let next = parts.uri.path_and_query().map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
        let next = if next.len() > NEXT_PATH_BYTES_MAX { path.clone() } else { next };
        let Some(token) = kassa_backoffice::session_cookie(&parts.headers) else {
            return Err(PageError::SignIn { next, ended: false });
        };
        let source = source_of(parts);
        let session = match state.auth.back_office_session(&token, &source).await {
            Ok(session) => session,
            Err(AuthError::NoSession) => return Err(PageError::SignIn { next, ended: true }),
            Err(error) => return Err(error.into()),
        };
        let notice = query_param(parts.uri.query(), "done").filter(|id| id.starts_with("done-") && lang.has(id));
        Ok(AnyViewer(Viewer {
            session,
            lang,
            csrf: kassa_backoffice::csrf_token(&token).to_string(),
            source,
            path,
            notice: notice.map(|id| lang.t(&id)),
        }))
    }
}

impl FromRequestParts<WebState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Self::Rejection> {
        let AnyViewer(viewer) = AnyViewer::from_request_parts(parts, state).await?;
        if viewer.session.must_change_password {
            return Err(PageError::MustChangePassword);
        }
        Ok(viewer)
    }
}

/// A form posted by a signed-in user, with the session's CSRF token checked (constant time)
/// before the form is read. `T` names the fields it wants; the token field is left to this.
#[derive(Debug)]
pub struct Posted<T> {
    /// Who posted it.
    pub viewer: Viewer,
    /// The form.
    pub form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<WebState> for Posted<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &WebState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let AnyViewer(viewer) = AnyViewer::from_request_parts(&mut parts, state).await?;
        let form = read_form(&parts.headers, body).await?;
        check_csrf(&form, &viewer.csrf)?;
        if viewer.session.must_change_password {
            return Err(PageError::MustChangePassword);
        }
        Ok(Posted { viewer, form: parse_form(&form)? })
    }
}

/// A form posted by a signed-in user who may still have to change the password.
#[derive(Debug)]
pub struct PostedAny<T> {
    /// Who posted it.
    pub viewer: Viewer,
    /// The form.
    pub form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<WebState> for PostedAny<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &WebState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let AnyViewer(viewer) = AnyViewer::from_request_parts(&mut parts, state).await?;
        let form = read_form(&parts.headers, body).await?;
        check_csrf(&form, &viewer.csrf)?;
        Ok(PostedAny { viewer, form: parse_form(&form)? })
    }
}

/// A form posted without a session (sign-in, a forgotten password): only same-origin, which
/// [`frame`] checked.
#[derive(Debug)]
pub struct PostedAnonymous<T> {
    /// The form.
    pub form: T,
    /// The page's language.
    pub lang: Lang,
    /// Where it came from.
    pub source: String,
}

impl<T: DeserializeOwned + Send> FromRequest<WebState> for PostedAnonymous<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, _state: &WebState) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let lang = parts.extensions.get::<Lang>().copied().unwrap_or_default();
        let form = read_form(&parts.headers, body).await?;
        Ok(PostedAnonymous { form: parse_form(&form)?, lang, source: source_of(&parts) })
    }
}

async fn read_form(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, PageError> {
    let is_form = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !is_form {
        return Err(PageError::Bad("error-not-a-form"));
    }
    let bytes = axum::body::to_bytes(body, FORM_BYTES_MAX).await.map_err(|_| PageError::Bad("error-form-too-large"))?;
    Ok(bytes.to_vec())
}

fn check_csrf(form: &[u8], expected: &str) -> Result<(), PageError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(form).map_err(|_| PageError::Bad("error-form"))?;
    let sent = pairs.iter().find(|(key, _)| key == CSRF_FIELD).map(|(_, value)| value.as_bytes()).unwrap_or_default();
    if bool::from(sent.ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(PageError::Csrf)
    }
}

fn parse_form<T: DeserializeOwned>(form: &[u8]) -> Result<T, PageError> {
    // serde's messages name the field, never its value; the page says only that the form is wrong.
    serde_urlencoded::from_bytes(form).map_err(|error| {
        tracing::debug!(%error, "a form does not parse");
        PageError::Bad("error-form")
    })
}

/// Refuses free text longer than [`TEXT_CHARS_MAX`].
pub fn bounded(text: &str) -> Result<&str, PageError> {
    if text.chars().count() > TEXT_CHARS_MAX {
        Err(PageError::Bad("error-text-too-long"))
    } else {
        Ok(text.trim())
    }
}

/// The user in the header.
#[derive(Debug, Clone)]
pub struct UserBadge {
    /// Login name.
    pub username: String,
    /// The role, in words.
    pub role: String,
}

/// What the layout (`base.html`) shows around every page.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// The page's language.
    pub lang: Lang,
    /// The page's title, in words.
    pub title: String,
    /// The signed-in user, if any.
    pub user: Option<UserBadge>,
    /// The session's CSRF token (empty when signed out).
    pub csrf: String,
    /// The navigation for the role.
    pub nav: Vec<NavItem>,
    /// The path of the page (for the language switch).
    pub path: String,
    /// The notice of a form that just succeeded.
    pub notice: Option<String>,
}

impl Chrome {
    /// The chrome of a page seen signed out.
    pub fn anonymous(lang: Lang, title: &str, path: &str) -> Chrome {
        Chrome {
            lang,
            title: lang.t(title),
            user: None,
            csrf: String::new(),
            nav: Vec::new(),
            path: path.to_owned(),
            notice: None,
        }
    }

    /// The link that shows this page in the other language.
    pub fn switch_href(&self) -> String {
        format!("{}?lang={}", self.path, self.lang.other().code())
    }
}

/// Renders a template as an HTML answer.
pub fn render(template: &impl Template) -> Result<Response, PageError> {
    Ok(Html(template.render()?).into_response())
}

/// A secret typed into a form (a password, a one-time code): zeroed when dropped, never printed,
/// bounded.
pub struct FormSecret(zeroize::Zeroizing<String>);

impl FormSecret {
    /// The secret, for the service that checks or hashes it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for FormSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FormSecret(***)")
    }
}

/// The longest secret accepted in a form, characters.
pub const SECRET_CHARS_MAX: usize = 256;

impl<'de> serde::Deserialize<'de> for FormSecret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<FormSecret, D::Error> {
        let text = zeroize::Zeroizing::new(String::deserialize(deserializer)?);
        if text.chars().count() > SECRET_CHARS_MAX {
            return Err(serde::de::Error::custom("a secret is too long"));
        }
        Ok(FormSecret(text))
    }
}

//! Signing in and out, and the password change (forced at first sign-in, after a reset and when
//! the password expired). A wrong password says how many tries are left; a lock says until when.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kassa_auth::{AuthError, BACK_OFFICE_SESSION_LIFETIME_MS};
use serde::Deserialize;

use crate::page::{
    auth_message, render, see_other, AnyViewer, Chrome, FormSecret, PageError, PostedAnonymous, PostedAny,
};
use crate::{Lang, WebState};

/// The routes of signing in and out and of the password change.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/password", get(password_form).post(change_password))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    next: String,
    username: String,
    error: Option<String>,
    ended: bool,
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    ended: Option<String>,
}

/// Only a path of this site is a place to return to (never `//elsewhere` or a URL).
fn safe_next(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") && next.len() <= 512 {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

async fn login_form(lang: Lang, Query(query): Query<LoginQuery>) -> Result<Response, PageError> {
    render(&LoginPage {
        chrome: Chrome::anonymous(lang, "login-title", "/login"),
        next: safe_next(&query.next),
        username: String::new(),
        error: None,
        ended: query.ended.is_some(),
    })
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: FormSecret,
    #[serde(default)]
    next: String,
}

async fn login(State(state): State<WebState>, posted: PostedAnonymous<LoginForm>) -> Result<Response, PageError> {
    let PostedAnonymous { form, lang, source } = posted;
    let next = safe_next(&form.next);
    let username = form.username.trim().chars().take(kassa_auth::backoffice::USERNAME_CHARS_MAX).collect::<String>();
    match state.auth.login_user(&username, form.password.expose(), &source).await {
        Ok(login) => {
            let target = if login.session.must_change_password { "/password".to_owned() } else { next };
            let mut response = see_other(&target);
            let cookie = kassa_backoffice::session_cookie_header(
                login.token.expose_secret(),
                BACK_OFFICE_SESSION_LIFETIME_MS / 1000,
                state.secure_cookies,
            )
            .map_err(|_| PageError::Internal("session cookie".into()))?;
            response.headers_mut().insert(SET_COOKIE, cookie);
            Ok(response)
        }
        Err(
            error @ (AuthError::WrongUserCredentials { .. }
            | AuthError::Locked { .. }
            | AuthError::UserDisabled
            | AuthError::RateLimited
            | AuthError::Busy { .. }),
        ) => {
            let status = axum::http::StatusCode::from_u16(error.answer("back office").status)
                .unwrap_or(axum::http::StatusCode::UNAUTHORIZED);
            let page = LoginPage {
                chrome: Chrome::anonymous(lang, "login-title", "/login"),
                next,
                username,
                error: Some(auth_message(lang, &error)),
                ended: false,
            };
            Ok((status, render(&page)?).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Deserialize)]
struct Empty {}

async fn logout(State(state): State<WebState>, posted: PostedAny<Empty>) -> Result<Response, PageError> {
    state.auth.logout_user(&posted.viewer.session, &posted.viewer.source).await?;
    let mut response = see_other("/login");
    let cookie = kassa_backoffice::session_cookie_header("", 0, state.secure_cookies)
        .map_err(|_| PageError::Internal("session cookie".into()))?;
    response.headers_mut().insert(SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    chrome: Chrome,
    forced: bool,
    rules: String,
    error: Option<String>,
}

async fn password_page(
    state: &WebState,
    viewer: &crate::page::Viewer,
    error: Option<String>,
) -> Result<PasswordPage, PageError> {
    let policy = state.auth.back_office_policy().await?;
    Ok(PasswordPage {
        chrome: viewer.chrome("password-title"),
        forced: viewer.session.must_change_password,
        rules: viewer.lang.t2("password-rules", "min", policy.length_min, "history", policy.history_count),
        error,
    })
}

async fn password_form(State(state): State<WebState>, AnyViewer(viewer): AnyViewer) -> Result<Response, PageError> {
    render(&password_page(&state, &viewer, None).await?)
}

#[derive(Deserialize)]
struct PasswordForm {
    old: FormSecret,
    new: FormSecret,
    confirm: FormSecret,
}

async fn change_password(
    State(state): State<WebState>,
    posted: PostedAny<PasswordForm>,
) -> Result<Response, PageError> {
    let PostedAny { viewer, form } = posted;
    let refused = if form.new.expose() != form.confirm.expose() {
        Some(viewer.lang.t("password-mismatch"))
    } else {
        match state
            .auth
            .change_user_password(&viewer.session, form.old.expose(), form.new.expose(), &viewer.source)
            .await
        {
            Ok(()) => None,
            Err(error @ (AuthError::WrongSecret { .. } | AuthError::Policy(_) | AuthError::Locked { .. })) => {
                Some(auth_message(viewer.lang, &error))
            }
            Err(error) => return Err(error.into()),
        }
    };
    match refused {
        // The user's other sessions ended (kassa-auth); this one goes on.
        None => Ok(see_other("/?done=done-password-changed")),
        Some(message) => {
            let page = password_page(&state, &viewer, Some(message)).await?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
        }
    }
}

//! A forgotten back-office password, reset by its user (忘记密码), signed out: the user names
//! the account; a one-time code goes to the contact on file (through the notifier); the user
//! types the code and a new password. The page says the same whether the account exists or
//! not; the rules (limits, single use, expiry, failures, policy, audit) are kassa-auth's
//! `user_reset`.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kassa_auth::AuthError;
use serde::Deserialize;

use crate::page::{auth_message, format_time_ms, render, Chrome, FormSecret, PageError, PostedAnonymous};
use crate::{Lang, WebState};

/// The routes of the forgotten-password pages.
pub fn routes() -> Router<WebState> {
    Router::new().route("/forgot", get(ask_form).post(ask)).route("/forgot/complete", post(complete))
}

#[derive(Template)]
#[template(path = "forgot/ask.html")]
struct AskPage {
    chrome: Chrome,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "forgot/code.html")]
struct CodePage {
    chrome: Chrome,
    username: String,
    code_id: String,
    expires: String,
    rules: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "forgot/done.html")]
struct DonePage {
    chrome: Chrome,
}

async fn ask_form(lang: Lang) -> Result<Response, PageError> {
    render(&AskPage { chrome: Chrome::anonymous(lang, "forgot-title", "/forgot"), error: None })
}

#[derive(Deserialize)]
struct AskForm {
    username: String,
}

fn username(text: &str) -> String {
    text.trim().chars().take(kassa_auth::backoffice::USERNAME_CHARS_MAX).collect()
}

async fn rules(state: &WebState, lang: Lang) -> Result<String, PageError> {
    let policy = state.auth.back_office_policy().await?;
    Ok(lang.t2("password-rules", "min", policy.length_min, "history", policy.history_count))
}

async fn ask(State(state): State<WebState>, posted: PostedAnonymous<AskForm>) -> Result<Response, PageError> {
    let PostedAnonymous { form, lang, source } = posted;
    let username = username(&form.username);
    match state.auth.request_user_reset(&username, state.notifier.as_ref(), &source).await {
        Ok(ticket) => render(&CodePage {
            chrome: Chrome::anonymous(lang, "forgot-code-title", "/forgot"),
            username,
            code_id: ticket.code_id,
            expires: format_time_ms(ticket.expires_at_ms),
            rules: rules(&state, lang).await?,
            error: None,
        }),
        Err(error @ (AuthError::RateLimited | AuthError::Busy { .. })) => {
            let page = AskPage {
                chrome: Chrome::anonymous(lang, "forgot-title", "/forgot"),
                error: Some(auth_message(lang, &error)),
            };
            Ok((StatusCode::TOO_MANY_REQUESTS, render(&page)?).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Deserialize)]
struct CompleteForm {
    username: String,
    code_id: String,
    code: FormSecret,
    new: FormSecret,
    confirm: FormSecret,
}

async fn complete(State(state): State<WebState>, posted: PostedAnonymous<CompleteForm>) -> Result<Response, PageError> {
    let PostedAnonymous { form, lang, source } = posted;
    let username = username(&form.username);
    let code_id: String = form.code_id.trim().chars().take(64).collect();
    let refused = if form.new.expose() != form.confirm.expose() {
        Some(lang.t("password-mismatch"))
    } else {
        match state.auth.complete_user_reset(&username, &code_id, form.code.expose(), form.new.expose(), &source).await
        {
            Ok(()) => None,
            Err(AuthError::Refused(_)) => Some(lang.t("forgot-code-refused")),
            Err(error @ (AuthError::Policy(_) | AuthError::RateLimited | AuthError::Busy { .. })) => {
                Some(auth_message(lang, &error))
            }
            Err(error) => return Err(error.into()),
        }
    };
    match refused {
        None => render(&DonePage { chrome: Chrome::anonymous(lang, "forgot-done-title", "/forgot") }),
        Some(message) => {
            let page = CodePage {
                chrome: Chrome::anonymous(lang, "forgot-code-title", "/forgot"),
                username,
                code_id,
                expires: String::new(),
                rules: rules(&state, lang).await?,
                error: Some(message),
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
        }
    }
}

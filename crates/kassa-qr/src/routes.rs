//! The QR service's public HTTP surface (no authentication: the token and the wallets'
//! signatures are the credentials): the aggregated code's landing `GET /qr/v1/{token}` and the
//! wallets' notifications `POST /notify/v1/{alipay|wechat}`. The one place where a
//! [`QrError`] becomes a status.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_wallet::Wallet;

use crate::error::{QrError, QrErrorKind};
use crate::service::QrService;

/// The largest notification body accepted.
pub const NOTIFY_BODY_BYTES_MAX: usize = 64 * 1024;
/// The longest token looked up (longer ones are unknown without a read).
const TOKEN_CHARS_MAX: usize = 64;

/// The routes, to merge into the HTTP app.
pub fn router(service: QrService) -> Router {
    Router::new()
        .route("/qr/v1/{token}", get(landing))
        .route("/notify/v1/{wallet}", post(notify).layer(DefaultBodyLimit::max(NOTIFY_BODY_BYTES_MAX)))
        .with_state(service)
}

#[derive(Debug, serde::Deserialize)]
struct LandingQuery {
    wallet: Option<String>,
}

/// The status a [`QrError`] is answered with.
pub fn status_of(error: &QrError) -> StatusCode {
    match error.kind() {
        QrErrorKind::Invalid => StatusCode::BAD_REQUEST,
        QrErrorKind::NotFound => StatusCode::NOT_FOUND,
        QrErrorKind::Conflict => StatusCode::CONFLICT,
        QrErrorKind::Gone => StatusCode::GONE,
        QrErrorKind::Refused => StatusCode::UNPROCESSABLE_ENTITY,
        QrErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        QrErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn wallet_from(query: &LandingQuery, headers: &HeaderMap) -> Option<Wallet> {
    if let Some(name) = &query.wallet {
        return Wallet::parse(name);
    }
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if agent.contains("AlipayClient") {
        Some(Wallet::Alipay)
    } else if agent.contains("MicroMessenger") {
        Some(Wallet::Wechat)
    } else {
        None
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/json"))
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>",
        title = escape_html(title)
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn error_answer(error: &QrError, json: bool) -> Response {
    let status = status_of(error);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(%error, "qr landing failed");
    }
    // Internal details stay in the log.
    let message = match error.kind() {
        QrErrorKind::Internal => "internal error".to_owned(),
        _ => error.to_string(),
    };
    if json {
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    } else {
        page(status, "Kassa", &format!("<p>{}</p>", escape_html(&message)))
    }
}

async fn landing(
    State(service): State<QrService>,
    Path(token): Path<String>,
    Query(query): Query<LandingQuery>,
    headers: HeaderMap,
) -> Response {
    let json = wants_json(&headers);
    if token.is_empty() || token.len() > TOKEN_CHARS_MAX {
        return error_answer(&QrError::NotFound, json);
    }
    let Some(wallet) = wallet_from(&query, &headers) else {
        // No wallet app: a browser (or a camera app) opened the code. Look it up all the same,
        // so an unknown, paid, closed or expired code says so; create nothing at any wallet.
        let trade = match service.lookup(&token).await {
            Ok(trade) => trade,
            Err(error) => return error_answer(&error, json),
        };
        if json {
            return error_answer(&QrError::Invalid("wallet: alipay or wechat".into()), true);
        }
        return page(
            StatusCode::OK,
            "Kassa",
            &format!(
                "<p>{} {}</p><p>{}</p><p>Scan this code with Alipay or WeChat.</p>",
                escape_html(&trade.amount.to_decimal_string()),
                escape_html(trade.amount.currency().code()),
                escape_html(&trade.subject),
            ),
        );
    };
    match service.scan(&token, wallet).await {
        Ok(answer) if json => Json(serde_json::json!({
            "wallet": answer.wallet.as_str(),
            "wallet_qr_code": answer.wallet_qr_code,
            "amount": answer.amount.to_decimal_string(),
        }))
        .into_response(),
        Ok(answer) => {
            let code = escape_html(&answer.wallet_qr_code);
            page(
                StatusCode::OK,
                "Kassa",
                &format!(
                    "<p>Pay {} with {}.</p><p><a href=\"{code}\">{code}</a></p>",
                    escape_html(&answer.amount.to_decimal_string()),
                    answer.wallet.as_str()
                ),
            )
        }
        Err(error) => error_answer(&error, json),
    }
}

async fn notify(
    State(service): State<QrService>,
    Path(wallet): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(wallet) = Wallet::parse(&wallet) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (answer_type, answer) = service.notification(wallet, content_type, &body).await;
    (StatusCode::OK, [(header::CONTENT_TYPE, answer_type)], answer).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wallet_comes_from_the_query_or_the_user_agent() {
        let mut headers = HeaderMap::new();
        let none = LandingQuery { wallet: None };
        assert_eq!(wallet_from(&none, &headers), None);
        headers.insert(header::USER_AGENT, "Mozilla/5.0 MicroMessenger/8.0".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(wallet_from(&none, &headers), Some(Wallet::Wechat));
        assert_eq!(wallet_from(&LandingQuery { wallet: Some("alipay".into()) }, &headers), Some(Wallet::Alipay));
        assert_eq!(wallet_from(&LandingQuery { wallet: Some("visa".into()) }, &headers), None);
        assert_eq!(escape_html("<a href=\"x\">&"), "&lt;a href=&quot;x&quot;&gt;&amp;");
    }

    #[test]
    fn errors_map_to_statuses_in_one_place() {
        assert_eq!(status_of(&QrError::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(status_of(&QrError::Gone("paid")), StatusCode::GONE);
        assert_eq!(status_of(&QrError::WalletUnavailable("x".into())), StatusCode::SERVICE_UNAVAILABLE);
    }
}

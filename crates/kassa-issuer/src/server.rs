//! The issuer's side of the link: an axum router that answers link messages
//! (`POST` [`LINK_PATH`]) with an [`IssuerSimulator`], for `kassa sim` and `kassa up`'s
//! simulators' address. Other simulators (wallets) merge their routes next to it.
//!
//! Every body is bounded ([`LINK_MESSAGE_BYTES_MAX`]), so is the number of requests being
//! decided at once ([`REQUESTS_IN_FLIGHT_MAX`]). Bytes that are not a link message get `400`
//! with a one-line reason; a link request that can be read as ISO 8583 but not understood gets
//! its ISO 8583 response with `39` = `30`. Nothing the client sends can make it panic.
//!
//! The card whose issuer never answers never answers here either: the request is held until
//! the client gives up (hyper drops the handler when the connection closes) or, at the latest,
//! [`NO_ANSWER_HOLD_MS`], after which it gets `504` so that a client without a timeout cannot
//! pin server memory forever. On shutdown held requests get `503` at once, so that they do not
//! keep the server's graceful shutdown waiting.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::link::{self, LinkError, LinkRequest, LINK_CONTENT_TYPE, LINK_MESSAGE_BYTES_MAX, LINK_PATH};
use crate::{IssuerConnector, IssuerSimulator};

/// Requests decided at once; more are answered `503`.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 1024;
/// Longest a never-answering request is held before `504` (far past any host's issuer timeout).
pub const NO_ANSWER_HOLD_MS: u64 = 5 * 60 * 1000;
/// `GET`: the request ids of the latest reversals the simulator received, newest first, as
/// JSON `{"reversals": ["txn:7", …]}` (tests and the demo).
pub const REVERSALS_PATH: &str = "/sim/v1/issuer/reversals";

#[derive(Debug)]
struct ServerState {
    simulator: IssuerSimulator,
    permits: Semaphore,
    shutdown: CancellationToken,
}

/// The card issuer simulator's routes; `shutdown` releases requests held without an answer.
pub fn router(simulator: IssuerSimulator, shutdown: CancellationToken) -> Router {
    let permits = Semaphore::new(REQUESTS_IN_FLIGHT_MAX);
    let state = Arc::new(ServerState { simulator, permits, shutdown });
    Router::new()
        .route(LINK_PATH, post(link_message).layer(DefaultBodyLimit::max(LINK_MESSAGE_BYTES_MAX)))
        .route(REVERSALS_PATH, get(reversals))
        .route(crate::clearing::CLEARING_PATH, get(clearing))
        .with_state(state)
}

/// A day's clearing file (CSV); `400` for a date that is not `YYYY-MM-DD`.
async fn clearing(
    State(state): State<Arc<ServerState>>,
    axum::extract::Path(date): axum::extract::Path<String>,
) -> Response {
    match kassa_domain::CivilDate::parse(&date) {
        Some(date) => {
            ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], state.simulator.clearing_csv(date)).into_response()
        }
        None => refuse(StatusCode::BAD_REQUEST, "expected a date YYYY-MM-DD".to_owned()),
    }
}

async fn link_message(State(state): State<Arc<ServerState>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    if content_type != Some(LINK_CONTENT_TYPE) {
        return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("expected Content-Type: {LINK_CONTENT_TYPE}"));
    }
    let Ok(_permit) = state.permits.try_acquire() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many requests in flight".to_owned());
    };
    let request = match link::decode(&body) {
        Ok(request) => request,
        Err(error) => return refuse(StatusCode::BAD_REQUEST, format!("malformed link message: {error}")),
    };
    let answer = match link::read_request(&request) {
        Ok(LinkRequest::Authorise(authorise)) => {
            let hold = Duration::from_millis(NO_ANSWER_HOLD_MS);
            let decided = tokio::select! {
                decided = tokio::time::timeout(hold, state.simulator.authorise(&authorise)) => decided,
                () = state.shutdown.cancelled() => {
                    return refuse(StatusCode::SERVICE_UNAVAILABLE, "the issuer simulator is stopping".to_owned());
                }
            };
            match decided {
                Ok(Ok(answer)) => link::answer_message(&request, &answer),
                // The simulator always decides; a connector that cannot is "system malfunction".
                Ok(Err(_)) => link::refusal(&request, "96"),
                Err(_) => return refuse(StatusCode::GATEWAY_TIMEOUT, "the issuer did not answer".to_owned()),
            }
        }
        Ok(LinkRequest::Reverse(request_id)) => {
            tracing::info!(%request_id, "issuer simulator: reversal");
            match state.simulator.reverse(&request_id).await {
                Ok(()) => link::reversal_answer_message(&request),
                Err(_) => link::refusal(&request, "96"),
            }
        }
        Err(error @ LinkError::Mti(_)) => return refuse(StatusCode::BAD_REQUEST, error.to_string()),
        Err(error) => {
            tracing::debug!(%error, "issuer simulator: request not understood");
            link::refusal(&request, link::CODE_FORMAT_ERROR)
        }
    };
    match answer.and_then(|answer| link::encode(&answer, "answer")) {
        Ok(bytes) => ([(header::CONTENT_TYPE, LINK_CONTENT_TYPE)], bytes).into_response(),
        Err(error) => {
            tracing::warn!(%error, "issuer simulator: cannot encode an answer");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the answer".to_owned())
        }
    }
}

async fn reversals(State(state): State<Arc<ServerState>>) -> Json<serde_json::Value> {
    let ids: Vec<String> = state.simulator.recent_reversals().iter().map(ToString::to_string).collect();
    Json(serde_json::json!({ "reversals": ids }))
}

fn refuse(status: StatusCode, reason: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], reason).into_response()
}

#[cfg(test)]
mod tests;

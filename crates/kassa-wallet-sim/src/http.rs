//! The simulator's HTTP surface: the routes, what every API call shares (the request bound, the
//! faults `error`, `slow` and `lose_answer`), faults and statements.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_wallet::Wallet;
use rusqlite::Transaction;

use crate::engine::{self, Ctx};
use crate::faults::Fault;
use crate::{statement, time, SimError, WalletSim};

/// `POST` arms a fault, `DELETE` disarms all.
pub const FAULTS_PATH: &str = "/sim/v1/faults";
/// `GET` a business day's statement: `/sim/v1/statements/{alipay|wechat}/{YYYY-MM-DD}`.
pub const STATEMENTS_PATH: &str = "/sim/v1/statements/{wallet}/{date}";

pub(crate) fn router(sim: WalletSim) -> Router {
    let body_limit = DefaultBodyLimit::max(sim.inner.config.limits.request_bytes_max);
    Router::new()
        .route(crate::alipay_api::GATEWAY_PATH, post(crate::alipay_api::gateway))
        .route(crate::alipay_api::BILL_PATH, get(crate::alipay_api::bill))
        .merge(crate::wechat_api::routes())
        .route(crate::payer::PAY_PATH, post(crate::payer::pay))
        .route(FAULTS_PATH, post(arm_fault).delete(disarm_faults))
        .route(STATEMENTS_PATH, get(statement_of_day))
        .layer(body_limit)
        .with_state(sim)
}

impl WalletSim {
    /// Runs `job` of one call on the books of `wallet` in one transaction, with the clock read
    /// under it.
    pub(crate) async fn book<T, F>(&self, wallet: Wallet, job: F) -> Result<T, SimError>
    where
        F: FnOnce(&Transaction<'_>, &Ctx<'_>) -> rusqlite::Result<T>,
    {
        let inner = &self.inner;
        inner
            .store
            .run(move |tx| {
                let ctx =
                    Ctx { now_ms: inner.config.clock.now_ms(), wallet, faults: &inner.faults, config: &inner.engine };
                job(tx, &ctx)
            })
            .await
    }

    /// The statement of `day` (`YYYY-MM-DD`) of `wallet` as CSV text (the header row alone for
    /// a day without trades or refunds).
    pub(crate) async fn statement(&self, wallet: Wallet, day: String) -> Result<String, SimError> {
        let content = self.day(wallet, day).await?;
        self.render(wallet, &content)
    }

    /// The provider's bill of `day`: `None` when the provider has none — no trade paid and no
    /// refund that day, or a day still to come (Alipay `isp.bill_not_exist`, WeChat
    /// `No Bill Exist`).
    pub(crate) async fn bill(&self, wallet: Wallet, day: String) -> Result<Option<String>, SimError> {
        if day > time::business_day(self.now_ms()) {
            return Ok(None);
        }
        let content = self.day(wallet, day).await?;
        if content.paid.is_empty() && content.refunds.is_empty() {
            return Ok(None);
        }
        self.render(wallet, &content).map(Some)
    }

    async fn day(&self, wallet: Wallet, day: String) -> Result<engine::Day, SimError> {
        let rows_max = self.inner.config.limits.statement_rows_max;
        self.inner.store.run_long(move |tx| engine::day(tx, wallet, &day, rows_max)).await
    }

    fn render(&self, wallet: Wallet, content: &engine::Day) -> Result<String, SimError> {
        let fee_rate = self.inner.engine.fee_rate;
        let credentials = &self.inner.keys.credentials;
        let csv = match wallet {
            Wallet::Alipay => statement::alipay(content, fee_rate),
            Wallet::Wechat => statement::wechat(
                content,
                fee_rate,
                statement::WechatMerchant { appid: &credentials.wechat.appid, mch_id: &credentials.wechat.mch_id },
            ),
        };
        csv.map_err(|error| SimError::Database(format!("an amount in the books: {error}")))
    }

    /// Runs one API call of `wallet` under the faults `error`, `lose_answer` and `slow`, and the
    /// bound on calls in flight: `error_answer` when the `error` fault is armed (nothing done).
    pub(crate) async fn api_call<W>(&self, wallet: Wallet, error_answer: impl FnOnce() -> Response, work: W) -> Response
    where
        W: std::future::Future<Output = Response>,
    {
        let Ok(_permit) = self.inner.permits.try_acquire() else {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "too many requests in flight");
        };
        let faults = &self.inner.faults;
        if faults.take(wallet, Fault::Error) {
            return error_answer();
        }
        let lose = faults.take(wallet, Fault::LoseAnswer);
        let slow = faults.take(wallet, Fault::Slow);
        let response = work.await;
        if lose {
            tracing::info!(%wallet, "wallet simulator: answer lost on purpose");
            return lost_answer();
        }
        if slow {
            tokio::time::sleep(Duration::from_millis(self.inner.config.slow_answer_ms)).await;
        }
        response
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.config.clock.now_ms()
    }
}

/// A plain-text answer.
pub(crate) fn plain(status: StatusCode, text: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text.to_owned()).into_response()
}

/// A body that fails at once: hyper then drops the connection without answering.
#[derive(Debug)]
struct FailingBody;

impl http_body::Body for FailingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::other("the answer is lost on purpose"))))
    }
}

/// The `lose_answer` fault's "answer": the connection closes without one.
fn lost_answer() -> Response {
    Response::new(Body::new(FailingBody))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmFault {
    wallet: Wallet,
    fault: Fault,
    count: u32,
}

async fn arm_fault(State(sim): State<WalletSim>, body: Bytes) -> Response {
    let request: ArmFault = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return plain(StatusCode::BAD_REQUEST, &format!("expected {{\"wallet\", \"fault\", \"count\"}}: {error}"))
        }
    };
    sim.inner.faults.arm(request.wallet, request.fault, request.count);
    tracing::info!(wallet = %request.wallet, fault = ?request.fault, count = request.count, "wallet simulator: fault armed");
    Json(serde_json::json!({ "armed": true })).into_response()
}

async fn disarm_faults(State(sim): State<WalletSim>) -> Response {
    sim.inner.faults.disarm_all();
    Json(serde_json::json!({ "armed": false })).into_response()
}

async fn statement_of_day(State(sim): State<WalletSim>, Path((wallet, date)): Path<(String, String)>) -> Response {
    let Some(wallet) = Wallet::parse(&wallet) else {
        return plain(StatusCode::NOT_FOUND, "no such wallet (alipay or wechat)");
    };
    let Some(day) = time::parse_day(&date, false) else {
        return plain(StatusCode::BAD_REQUEST, "the date is YYYY-MM-DD");
    };
    match sim.statement(wallet, day).await {
        Ok(csv) => csv_answer(csv),
        Err(error) => unavailable(&error),
    }
}

/// A statement as the answer.
pub(crate) fn csv_answer(csv: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response()
}

/// `503` for a failure of the simulator itself.
pub(crate) fn unavailable(error: &SimError) -> Response {
    tracing::warn!(%error, "wallet simulator: cannot answer");
    plain(StatusCode::SERVICE_UNAVAILABLE, "the wallet simulator cannot answer now")
}

//! The Alipay-style wallet: [`AlipayConnector`] speaks the OpenAPI wire ([`wire`]) to the
//! wallet's gateway — form posts signed with Kassa's app key, JSON answers verified with the
//! wallet's platform key, notifications verified likewise.
//!
//! Codes: `10000` success; `10003` (pay only) waiting for the payer; `40004` a definite refusal
//! by its sub code (and the other `400xx` codes: refused before anything happened); `20000`,
//! `ACQ.SYSTEM_ERROR` and anything unexpected is unknown.

pub mod wire;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use kassa_crypto::rsa_keys::{RsaKeyPair, RsaPublicKey};
use kassa_domain::clock::Clock;
use kassa_domain::{Currency, Money};
use serde_json::{json, Map, Value};

use crate::http::{retrying, wallet_uri, HttpClient, HttpConfig};
use crate::{
    AlipayCredentials, CancelOutcome, Decline, NotificationError, PayOutcome, PayRequest, PrecreateRequest,
    RefundRequest, TradeState, Wallet, WalletConnector, WalletError, WalletNotification, WalletRefund, WalletTrade,
    WireError,
};

/// The wallets' currency.
const CURRENCY: Currency = Currency::CNY;

/// How to reach the Alipay-style wallet, and as whom.
#[derive(Debug)]
pub struct AlipayConfig {
    /// The gateway (`http(s)://HOST[:PORT]/…/gateway.do`).
    pub gateway_url: String,
    /// Kassa's app id.
    pub app_id: String,
    /// Kassa's app private key (signs requests).
    pub app_private_key: RsaKeyPair,
    /// The wallet's platform public key (verifies answers and notifications).
    pub wallet_public_key: RsaPublicKey,
    /// The HTTP client's limits.
    pub http: HttpConfig,
    /// Further attempts of an idempotent call (query, close, refund, refund query, statement)
    /// whose outcome is unknown.
    pub idempotent_retries_max: u32,
}

impl AlipayConfig {
    /// The settings for `credentials`, with the default limits.
    pub fn from_credentials(credentials: &AlipayCredentials) -> Result<AlipayConfig, WireError> {
        Ok(AlipayConfig {
            gateway_url: credentials.gateway_url.clone(),
            app_id: credentials.app_id.clone(),
            app_private_key: credentials.app_private_key()?,
            wallet_public_key: credentials.wallet_public_key()?,
            http: HttpConfig::default(),
            idempotent_retries_max: 2,
        })
    }
}

/// The Alipay-style wallet's connector. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AlipayConnector {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    gateway: hyper::Uri,
    config: AlipayConfig,
    http: HttpClient,
    clock: Arc<dyn Clock>,
}

/// Why an answer is a success or not, once verified.
enum Answer {
    /// `10000`.
    Success(Map<String, Value>),
    /// `10003`.
    Waiting(Map<String, Value>),
}

impl AlipayConnector {
    /// A connector for `config`; `clock` stamps the requests' `timestamp`. Must be called inside
    /// a Tokio runtime. Fails (`NotSent`) on an unusable gateway URL or TLS set-up.
    pub fn new(config: AlipayConfig, clock: Arc<dyn Clock>) -> Result<AlipayConnector, WalletError> {
        let gateway = wallet_uri(&config.gateway_url)?;
        let http = HttpClient::new(config.http.clone())?;
        Ok(AlipayConnector { inner: Arc::new(Inner { gateway, config, http, clock }) })
    }

    /// A connector for `credentials` with the default limits.
    pub fn from_credentials(
        credentials: &AlipayCredentials,
        clock: Arc<dyn Clock>,
    ) -> Result<AlipayConnector, WalletError> {
        let config = AlipayConfig::from_credentials(credentials)
            .map_err(|error| WalletError::NotSent(format!("alipay credentials: {error}")))?;
        AlipayConnector::new(config, clock)
    }

    /// One call: sign, post, verify the answer, sort out its code. Logs the method, the
    /// reference, the outcome and the time taken — never the parameters.
    async fn call(
        &self,
        method: &'static str,
        reference: &str,
        biz_content: Value,
        notify_url: Option<&str>,
    ) -> Result<Answer, WalletError> {
        let started = Instant::now();
        let result = self.exchange(method, biz_content, notify_url).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(Answer::Success(_)) => {
                tracing::info!(wallet = "alipay", method, reference, outcome = "success", elapsed_ms)
            }
            Ok(Answer::Waiting(_)) => {
                tracing::info!(wallet = "alipay", method, reference, outcome = "waiting", elapsed_ms)
            }
            Err(WalletError::Declined(decline)) => {
                tracing::info!(wallet = "alipay", method, reference, outcome = "declined", ?decline, elapsed_ms)
            }
            Err(error) => tracing::warn!(wallet = "alipay", method, reference, %error, elapsed_ms),
        }
        result
    }

    async fn exchange(
        &self,
        method: &'static str,
        biz_content: Value,
        notify_url: Option<&str>,
    ) -> Result<Answer, WalletError> {
        let config = &self.inner.config;
        let mut params: Vec<(String, String)> = vec![
            ("app_id".into(), config.app_id.clone()),
            ("method".into(), method.into()),
            ("format".into(), "JSON".into()),
            ("charset".into(), "utf-8".into()),
            ("sign_type".into(), "RSA2".into()),
            ("timestamp".into(), wire::timestamp(self.inner.clock.now_ms())),
            ("version".into(), "1.0".into()),
            ("biz_content".into(), biz_content.to_string()),
        ];
        if let Some(notify_url) = notify_url {
            params.push(("notify_url".into(), notify_url.into()));
        }
        let signature = wire::sign(&params, &config.app_private_key)
            .map_err(|error| WalletError::NotSent(format!("{method}: {error}")))?;
        params.push((wire::SIGN.into(), signature));
        let body = wire::encode_form(&params).into_bytes();
        let answer = self.inner.http.post(&self.inner.gateway, wire::FORM_CONTENT_TYPE, body).await?;
        if !answer.status.is_success() {
            return Err(WalletError::Unknown(format!("{method}: HTTP {}", answer.status)));
        }
        let text = std::str::from_utf8(&answer.body)
            .map_err(|_| WalletError::Unknown(format!("{method}: the answer is not UTF-8")))?;
        let object = wire::verified_response(method, text, &config.wallet_public_key)
            .map_err(|error| WalletError::Unknown(format!("{method}: {error}")))?;
        classify(method, object)
    }

    /// A call that must succeed (`10000`); `10003` is unknown.
    async fn success(
        &self,
        method: &'static str,
        reference: &str,
        biz_content: Value,
        notify_url: Option<&str>,
    ) -> Result<Map<String, Value>, WalletError> {
        match self.call(method, reference, biz_content, notify_url).await? {
            Answer::Success(object) => Ok(object),
            Answer::Waiting(_) => Err(WalletError::Unknown(format!("{method}: code 10003"))),
        }
    }

    /// An idempotent call, retried while its outcome is unknown.
    async fn idempotent(
        &self,
        method: &'static str,
        reference: &str,
        biz_content: Value,
    ) -> Result<Map<String, Value>, WalletError> {
        retrying(self.inner.config.idempotent_retries_max, || {
            self.success(method, reference, biz_content.clone(), None)
        })
        .await
    }
}

/// Sorts a verified answer out by its code.
fn classify(method: &str, object: Map<String, Value>) -> Result<Answer, WalletError> {
    let code = text(&object, "code").unwrap_or_default();
    let sub_code = text(&object, "sub_code").unwrap_or_default();
    match code {
        "10000" => Ok(Answer::Success(object)),
        "10003" => Ok(Answer::Waiting(object)),
        // A system error reported under a business code is still a system error.
        "40004" if sub_code == "ACQ.SYSTEM_ERROR" || sub_code == "aop.unknow-error" => {
            Err(WalletError::Unknown(format!("{method}: code {code} {sub_code}")))
        }
        "40004" => Err(WalletError::Declined(decline(sub_code, text(&object, "sub_msg").unwrap_or_default()))),
        // Refused before anything happened (missing or invalid parameters, a signature the
        // wallet did not accept, no permission), and signed as such.
        "40001" | "40002" | "40003" | "40006" => Err(WalletError::Declined(Decline::Other {
            code: if sub_code.is_empty() { code.to_owned() } else { sub_code.to_owned() },
            message: text(&object, "sub_msg").or_else(|| text(&object, "msg")).unwrap_or_default().to_owned(),
        })),
        _ => Err(WalletError::Unknown(format!("{method}: code {code} {sub_code}"))),
    }
}

/// The decline a `40004` sub code stands for.
fn decline(sub_code: &str, message: &str) -> Decline {
    match sub_code {
        "ACQ.BUYER_BALANCE_NOT_ENOUGH" | "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH" => Decline::BalanceNotEnough,
        "ACQ.PAYMENT_AUTH_CODE_INVALID" => Decline::CodeInvalid,
        "ACQ.TRADE_NOT_EXIST" => Decline::TradeNotFound,
        "ACQ.TRADE_HAS_SUCCESS" => Decline::TradeAlreadyPaid,
        "ACQ.TRADE_STATUS_ERROR" | "ACQ.TRADE_HAS_CLOSE" => Decline::TradeStatus,
        "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL" => Decline::RefundTooLarge,
        _ => Decline::Other { code: sub_code.to_owned(), message: message.to_owned() },
    }
}

/// A string member.
fn text<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    object.get(name).and_then(Value::as_str).filter(|value| !value.is_empty())
}

/// A string member the answer must have.
fn required<'a>(method: &str, object: &'a Map<String, Value>, name: &str) -> Result<&'a str, WalletError> {
    text(object, name).ok_or_else(|| WalletError::Unknown(format!("{method}: the answer has no {name}")))
}

/// An amount member the answer must have.
fn amount(method: &str, object: &Map<String, Value>, name: &str) -> Result<Money, WalletError> {
    wire::parse_yuan(required(method, object, name)?, CURRENCY)
        .map_err(|error| WalletError::Unknown(format!("{method}: {name}: {error}")))
}

/// The answer's `out_trade_no`, when it has one, must be the trade asked about.
fn check_reference(method: &str, object: &Map<String, Value>, reference: &str) -> Result<(), WalletError> {
    match text(object, "out_trade_no") {
        Some(answered) if answered != reference => {
            Err(WalletError::Unknown(format!("{method}: the answer is about another trade")))
        }
        _ => Ok(()),
    }
}

/// A time member, when present and well-formed.
fn time(object: &Map<String, Value>, name: &str) -> Option<i64> {
    text(object, name).and_then(|value| wire::parse_timestamp(value).ok())
}

/// The state a `trade_status` stands for.
fn trade_state(status: &str) -> Option<TradeState> {
    match status {
        "WAIT_BUYER_PAY" => Some(TradeState::Waiting),
        "TRADE_SUCCESS" | "TRADE_FINISHED" => Some(TradeState::Paid),
        "TRADE_CLOSED" => Some(TradeState::Closed),
        _ => None,
    }
}

/// Refuses an amount no wallet call can carry (another currency, zero or negative).
fn check_amount(amount: Money) -> Result<(), WalletError> {
    if amount.currency() != CURRENCY || !amount.is_positive() {
        return Err(WalletError::NotSent(format!("the wallet takes positive {CURRENCY} amounts, not {amount}")));
    }
    Ok(())
}

#[async_trait]
impl WalletConnector for AlipayConnector {
    fn wallet(&self) -> Wallet {
        Wallet::Alipay
    }

    async fn pay(&self, request: &PayRequest) -> Result<PayOutcome, WalletError> {
        const METHOD: &str = "alipay.trade.pay";
        check_amount(request.amount)?;
        let biz = json!({
            "out_trade_no": request.reference,
            "scene": "bar_code",
            "auth_code": request.code.expose(),
            "subject": request.subject,
            "total_amount": wire::yuan(request.amount),
        });
        // Not retried: the caller journals the trade and queries when the outcome is unknown.
        let answer = self.call(METHOD, &request.reference, biz, None).await?;
        let (object, state) = match &answer {
            Answer::Success(object) => (object, TradeState::Paid),
            Answer::Waiting(object) => (object, TradeState::Waiting),
        };
        check_reference(METHOD, object, &request.reference)?;
        if state == TradeState::Paid {
            let paid = amount(METHOD, object, "total_amount")?;
            if paid != request.amount {
                return Err(WalletError::Unknown(format!("{METHOD}: the wallet charged another amount")));
            }
        }
        let trade = WalletTrade {
            reference: request.reference.clone(),
            trade_no: text(object, "trade_no").map(str::to_owned),
            state,
            amount: request.amount,
            paid_at_ms: if state == TradeState::Paid { time(object, "gmt_payment") } else { None },
        };
        Ok(match answer {
            Answer::Success(_) => PayOutcome::Paid(trade),
            Answer::Waiting(_) => PayOutcome::Waiting(trade),
        })
    }

    async fn precreate(&self, request: &PrecreateRequest) -> Result<String, WalletError> {
        const METHOD: &str = "alipay.trade.precreate";
        check_amount(request.amount)?;
        let biz = json!({
            "out_trade_no": request.reference,
            "subject": request.subject,
            "total_amount": wire::yuan(request.amount),
            "timeout_express": format!("{}m", request.validity_minutes.max(1)),
        });
        let object = self.success(METHOD, &request.reference, biz, Some(&request.notify_url)).await?;
        check_reference(METHOD, &object, &request.reference)?;
        Ok(required(METHOD, &object, "qr_code")?.to_owned())
    }

    async fn query(&self, reference: &str) -> Result<WalletTrade, WalletError> {
        const METHOD: &str = "alipay.trade.query";
        let object = self.idempotent(METHOD, reference, json!({ "out_trade_no": reference })).await?;
        check_reference(METHOD, &object, reference)?;
        let status = required(METHOD, &object, "trade_status")?;
        let state =
            trade_state(status).ok_or_else(|| WalletError::Unknown(format!("{METHOD}: trade_status {status:?}")))?;
        Ok(WalletTrade {
            reference: reference.to_owned(),
            trade_no: text(&object, "trade_no").map(str::to_owned),
            state,
            amount: amount(METHOD, &object, "total_amount")?,
            paid_at_ms: if state == TradeState::Paid { time(&object, "send_pay_date") } else { None },
        })
    }

    async fn cancel(&self, reference: &str) -> Result<CancelOutcome, WalletError> {
        const METHOD: &str = "alipay.trade.cancel";
        // Not retried here: the caller decides when to cancel again.
        let object = self.success(METHOD, reference, json!({ "out_trade_no": reference }), None).await?;
        check_reference(METHOD, &object, reference)?;
        if text(&object, "retry_flag") == Some("Y") {
            return Err(WalletError::Unknown(format!("{METHOD}: the wallet asks to cancel again")));
        }
        match text(&object, "action") {
            Some("close") => Ok(CancelOutcome::Closed),
            Some("refund") => Ok(CancelOutcome::Refunded),
            other => Err(WalletError::Unknown(format!("{METHOD}: action {other:?}"))),
        }
    }

    async fn close(&self, reference: &str) -> Result<(), WalletError> {
        const METHOD: &str = "alipay.trade.close";
        let object = self.idempotent(METHOD, reference, json!({ "out_trade_no": reference })).await?;
        check_reference(METHOD, &object, reference)
    }

    async fn refund(&self, request: &RefundRequest) -> Result<WalletRefund, WalletError> {
        const METHOD: &str = "alipay.trade.refund";
        check_amount(request.amount)?;
        let biz = json!({
            "out_trade_no": request.reference,
            "out_request_no": request.refund_reference,
            "refund_amount": wire::yuan(request.amount),
            "refund_reason": request.reason,
        });
        // The wallet refunds once per out_request_no, so the same request may be sent again.
        let object = self.idempotent(METHOD, &request.reference, biz).await?;
        check_reference(METHOD, &object, &request.reference)?;
        let refunded_total = match text(&object, "refund_fee") {
            Some(_) => Some(amount(METHOD, &object, "refund_fee")?),
            None => None,
        };
        Ok(WalletRefund {
            reference: request.reference.clone(),
            refund_reference: request.refund_reference.clone(),
            amount: request.amount,
            refunded_total,
        })
    }

    async fn refund_query(&self, reference: &str, refund_reference: &str) -> Result<WalletRefund, WalletError> {
        const METHOD: &str = "alipay.trade.fastpay.refund.query";
        let biz = json!({ "out_trade_no": reference, "out_request_no": refund_reference });
        let object = self.idempotent(METHOD, reference, biz).await?;
        check_reference(METHOD, &object, reference)?;
        // The wallet answers 10000 without a refund amount when it has no such refund.
        if text(&object, "refund_amount").is_none() {
            return Err(WalletError::Declined(Decline::TradeNotFound));
        }
        match text(&object, "refund_status") {
            None | Some("REFUND_SUCCESS") => {}
            Some(status) => return Err(WalletError::Unknown(format!("{METHOD}: refund_status {status:?}"))),
        }
        Ok(WalletRefund {
            reference: reference.to_owned(),
            refund_reference: refund_reference.to_owned(),
            amount: amount(METHOD, &object, "refund_amount")?,
            refunded_total: None,
        })
    }

    async fn statement_to_file(&self, date: &str, bytes_max: u64, file: &std::fs::File) -> Result<u64, WalletError> {
        const METHOD: &str = "alipay.data.dataservice.bill.downloadurl.query";
        check_date(date)?;
        let biz = json!({ "bill_type": "trade", "bill_date": date });
        let object = match self.idempotent(METHOD, date, biz).await {
            Ok(object) => object,
            // A day without trades has no bill: its statement is empty, signed as such.
            Err(WalletError::Declined(Decline::Other { code, .. })) if code == wire::BILL_NOT_EXIST => {
                return crate::write_empty_statement(file, wire::BILL_HEADER, bytes_max);
            }
            Err(error) => return Err(error),
        };
        let url = wallet_uri(required(METHOD, &object, "bill_download_url")?)
            .map_err(|error| WalletError::Unknown(format!("{METHOD}: {error}")))?;
        retrying(self.inner.config.idempotent_retries_max, || async {
            let started = Instant::now();
            let answer = self.inner.http.get_to_file(&url, bytes_max, file).await?;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::info!(wallet = "alipay", method = "bill download", date, status = %answer.status, bytes = answer.bytes, elapsed_ms);
            if !answer.status.is_success() {
                return Err(WalletError::Unknown(format!("bill download: HTTP {}", answer.status)));
            }
            Ok(answer.bytes)
        })
        .await
    }

    fn verify_notification(&self, content_type: &str, body: &[u8]) -> Result<WalletNotification, NotificationError> {
        let malformed = |what: &str| NotificationError::Malformed(what.to_owned());
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(malformed("not a form"));
        }
        let params = wire::parse_form(body).map_err(|error| NotificationError::Malformed(error.to_string()))?;
        let signature = wire::param(&params, wire::SIGN).ok_or(NotificationError::BadSignature)?;
        if !wire::verify(&params, signature, &self.inner.config.wallet_public_key, true) {
            return Err(NotificationError::BadSignature);
        }
        let field = |name: &str| wire::param(&params, name).filter(|value| !value.is_empty());
        if field("app_id") != Some(self.inner.config.app_id.as_str()) {
            return Err(NotificationError::WrongApp);
        }
        if let Some(kind) = field("notify_type") {
            if kind != "trade_status_sync" {
                return Err(malformed("not a trade status notification"));
            }
        }
        let notify_id = field("notify_id").ok_or_else(|| malformed("no notify_id"))?;
        let reference = field("out_trade_no").ok_or_else(|| malformed("no out_trade_no"))?;
        let state = field("trade_status").and_then(trade_state).ok_or_else(|| malformed("no known trade_status"))?;
        let amount = field("total_amount").ok_or_else(|| malformed("no total_amount")).and_then(|text| {
            wire::parse_yuan(text, CURRENCY).map_err(|error| NotificationError::Malformed(error.to_string()))
        })?;
        let paid_at_ms = match state {
            TradeState::Paid => field("gmt_payment").and_then(|text| wire::parse_timestamp(text).ok()),
            _ => None,
        };
        tracing::info!(wallet = "alipay", reference, ?state, "notification verified");
        Ok(WalletNotification {
            notify_id: notify_id.to_owned(),
            trade: WalletTrade {
                reference: reference.to_owned(),
                trade_no: field("trade_no").map(str::to_owned),
                state,
                amount,
                paid_at_ms,
            },
        })
    }

    fn notification_answer(&self, accepted: bool) -> (&'static str, Vec<u8>) {
        ("text/plain; charset=utf-8", if accepted { b"success".to_vec() } else { b"fail".to_vec() })
    }
}

/// A business day `YYYY-MM-DD`.
pub(crate) fn check_date(date: &str) -> Result<(), WalletError> {
    let bytes = date.as_bytes();
    let shape = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes.iter().enumerate().all(|(index, b)| index == 4 || index == 7 || b.is_ascii_digit());
    if !shape {
        return Err(WalletError::NotSent("a statement date is YYYY-MM-DD".into()));
    }
    Ok(())
}

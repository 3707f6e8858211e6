//! The payer endpoint: `POST /sim/v1/qr/pay` `{"qr_code": "…", "wallet": "alipay"|"wechat"}`,
//! a payer scanning a merchant-presented code with a wallet app and paying it.
//!
//! The code is a wallet's own (`https://qr.alipay.sim/<id>`, `weixin://wxpay/bizpayurl?pr=<id>`),
//! or Kassa's aggregated code, an `http(s)://` URL: opening it in the wallet app is
//! `GET <qr_code>?wallet=<wallet>` with `Accept: application/json`, which answers
//! `{"wallet_qr_code": "<the wallet's own code>", …}` (`404` unknown, `410` closed or paid).
//! The answer is `{"paid": true, "wallet", "trade_no", "out_trade_no"}` or
//! `{"paid": false, "wallet"?, "reason"}` (`200`); `400` for a request that is not one, `502`
//! when the aggregated code's lookup gives no usable answer.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kassa_wallet::Wallet;
use serde_json::{json, Value};

use crate::engine::{self, Refusal};
use crate::http::{plain, unavailable};
use crate::{client, WalletSim};

/// The payer endpoint.
pub const PAY_PATH: &str = "/sim/v1/qr/pay";
/// Longest code accepted, characters.
const QR_CODE_CHARS_MAX: usize = 1024;
/// Longest order id in a wallet's own code, characters.
const ORDER_ID_CHARS_MAX: usize = 64;

#[derive(Debug, serde::Deserialize)]
struct PayQr {
    qr_code: String,
    #[serde(default)]
    wallet: Option<Wallet>,
}

/// The wallet and order id of one of the wallets' own codes.
fn own_code(code: &str) -> Option<(Wallet, &str)> {
    let (wallet, id) = if let Some(id) = code.strip_prefix(crate::alipay_api::OWN_QR_PREFIX) {
        (Wallet::Alipay, id)
    } else {
        (Wallet::Wechat, code.strip_prefix(crate::wechat_api::OWN_QR_PREFIX)?)
    };
    let valid = !id.is_empty() && id.len() <= ORDER_ID_CHARS_MAX && id.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then_some((wallet, id))
}

fn not_paid(wallet: Option<Wallet>, reason: &str) -> Response {
    let mut answer = json!({ "paid": false, "reason": reason });
    if let Some(wallet) = wallet {
        answer["wallet"] = json!(wallet);
    }
    Json(answer).into_response()
}

/// `POST /sim/v1/qr/pay`.
pub(crate) async fn pay(State(sim): State<WalletSim>, body: Bytes) -> Response {
    let request: PayQr = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return plain(StatusCode::BAD_REQUEST, &format!("expected {{\"qr_code\", \"wallet\"}}: {error}")),
    };
    if request.qr_code.chars().count() > QR_CODE_CHARS_MAX {
        return plain(StatusCode::BAD_REQUEST, "qr_code is too long");
    }
    let looked_up;
    let (wallet, order_id) = match own_code(&request.qr_code) {
        Some((wallet, _)) if request.wallet.is_some_and(|asked| asked != wallet) => {
            return not_paid(request.wallet, "this code belongs to the other wallet");
        }
        Some(own) => own,
        None if request.qr_code.starts_with("http://") || request.qr_code.starts_with("https://") => {
            let wallet = request.wallet.unwrap_or(Wallet::Alipay);
            looked_up = match lookup(&sim, &request.qr_code, wallet).await {
                Ok(code) => code,
                Err(answer) => return answer,
            };
            match own_code(&looked_up) {
                Some((own_wallet, id)) if own_wallet == wallet => (wallet, id),
                _ => return plain(StatusCode::BAD_GATEWAY, "the code's wallet_qr_code is not a code of this wallet"),
            }
        }
        None => return not_paid(request.wallet, "not a payment code"),
    };
    let order_id = order_id.to_owned();
    match sim.book(wallet, move |tx, ctx| engine::pay_order(tx, ctx, &order_id)).await {
        Ok(Ok(trade)) => {
            tracing::info!(%wallet, out_trade_no = %trade.out_trade_no, "wallet simulator: a payer paid an order");
            Json(json!({
                "paid": true,
                "wallet": wallet,
                "trade_no": trade.trade_no,
                "out_trade_no": trade.out_trade_no,
            }))
            .into_response()
        }
        Ok(Err(refusal)) => not_paid(
            Some(wallet),
            match refusal {
                Refusal::TradeNotExist => "unknown order",
                Refusal::TradeHasSuccess => "the order is paid already",
                _ => "the order is closed",
            },
        ),
        Err(error) => unavailable(&error),
    }
}

/// Opens Kassa's aggregated code in `wallet`'s app: the wallet's own code of that order.
async fn lookup(sim: &WalletSim, qr_code: &str, wallet: Wallet) -> Result<String, Response> {
    let separator = if qr_code.contains('?') { '&' } else { '?' };
    let url = format!("{qr_code}{separator}wallet={wallet}");
    let answer = client::send(&sim.inner.client, Method::GET, &url, None, "application/json", Vec::new())
        .await
        .map_err(|reason| plain(StatusCode::BAD_GATEWAY, &format!("the code could not be opened: {reason}")))?;
    match answer.status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Err(not_paid(Some(wallet), "unknown code")),
        StatusCode::GONE => return Err(not_paid(Some(wallet), "the order is closed or paid")),
        status => return Err(plain(StatusCode::BAD_GATEWAY, &format!("the code's lookup answered HTTP {status}"))),
    }
    match serde_json::from_slice::<Value>(&answer.body) {
        Ok(Value::Object(object)) => match object.get("wallet_qr_code") {
            Some(Value::String(code)) => Ok(code.clone()),
            _ => Err(plain(StatusCode::BAD_GATEWAY, "the code's lookup answered no wallet_qr_code")),
        },
        _ => Err(plain(StatusCode::BAD_GATEWAY, "the code's lookup did not answer JSON")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_codes() {
        assert_eq!(own_code("https://qr.alipay.sim/abc123"), Some((Wallet::Alipay, "abc123")));
        assert_eq!(own_code("weixin://wxpay/bizpayurl?pr=Xyz9"), Some((Wallet::Wechat, "Xyz9")));
        assert_eq!(own_code("https://qr.alipay.sim/"), None);
        assert_eq!(own_code("https://qr.alipay.sim/a/b"), None);
        assert_eq!(own_code("http://127.0.0.1:8080/qr/v1/abc"), None);
    }
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use kassa_crypto::TdesKey;
use kassa_domain::{Currency, Money, Pan};
use kassa_iso8583::Message;
use tower::ServiceExt;

use super::*;
use crate::clock::ManualClock;
use crate::link::Trace;
use crate::{AuthoriseRequest, Operation, RequestId};

fn app() -> Router {
    let clock = ManualClock::new(1_795_315_709_000);
    let simulator =
        IssuerSimulator::new(TdesKey::from_hex("1122334455667788AABBCCDDEEFF0011").unwrap(), Arc::new(clock));
    router(simulator, CancellationToken::new())
}

async fn post(app: Router, content_type: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let request = Request::post(LINK_PATH).header(header::CONTENT_TYPE, content_type).body(Body::from(body)).unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

fn purchase(pan: &str, minor: i64) -> Message {
    let request = AuthoriseRequest {
        request_id: RequestId::new("txn:1").unwrap(),
        operation: Operation::Purchase,
        pan: Pan::parse(pan).unwrap(),
        expiry: None,
        amount: Money::from_minor(minor, Currency::CNY),
        pin_block: None,
        chip: false,
    };
    link::authorisation_message(&request, &Trace { stan: "000001".into(), transmitted: "0101000000".into() }).unwrap()
}

#[tokio::test]
async fn a_link_request_gets_its_iso8583_answer() {
    let request = purchase("6222021234567890136", 1001);
    let (status, body) = post(app(), LINK_CONTENT_TYPE, link::encode(&request, "test").unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let answer = link::decode(&body).unwrap();
    assert_eq!(answer.mti().as_str(), "0210");
    assert_eq!(answer.field_str(39), Some("51"));
}

#[tokio::test]
async fn a_request_it_cannot_understand_is_answered_30() {
    let mut request = purchase("6222021234567890128", 100);
    request.remove(2);
    let (status, body) = post(app(), LINK_CONTENT_TYPE, link::encode(&request, "test").unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(link::decode(&body).unwrap().field_str(39), Some("30"));
}

#[tokio::test]
async fn bytes_that_are_not_a_link_request_get_a_clear_http_error() {
    let (status, body) = post(app(), LINK_CONTENT_TYPE, b"0200 not iso".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8(body).unwrap().starts_with("malformed link message: "));

    let mut sign_in = Message::new(kassa_iso8583::Mti::parse("0800").unwrap());
    sign_in.set(11, "000001");
    let (status, body) = post(app(), LINK_CONTENT_TYPE, link::encode(&sign_in, "test").unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(String::from_utf8(body).unwrap(), "unexpected MTI 0800");

    let (status, _) = post(app(), "application/json", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let (status, _) = post(app(), LINK_CONTENT_TYPE, vec![b'0'; LINK_MESSAGE_BYTES_MAX + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn reversals_are_listed_newest_first() {
    let app = app();
    for id in ["txn:1", "txn:2"] {
        let reversal = link::reversal_message(
            &RequestId::new(id).unwrap(),
            &Trace { stan: "000002".into(), transmitted: "0101000000".into() },
        )
        .unwrap();
        let (status, body) = post(app.clone(), LINK_CONTENT_TYPE, link::encode(&reversal, "test").unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(link::decode(&body).unwrap().field_str(39), Some("00"));
    }
    let response = app.oneshot(Request::get(REVERSALS_PATH).body(Body::empty()).unwrap()).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let listed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(listed, serde_json::json!({ "reversals": ["txn:2", "txn:1"] }));
}

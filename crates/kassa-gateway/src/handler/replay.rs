//! Exactly once: the answer stored with a transaction, and its replay to a retransmission.

use kassa_domain::TxnStatus;
use kassa_iso8583::Message;
use kassa_store::TxnRecord;
use serde_json::json;

use super::common::{host_auth_code, respond, rrn_for, status_name};
use super::Handler;
use crate::budget::paused;
use crate::business_day::Stamp;
use crate::codes::ResponseCode;
use crate::{duration_ms, GatewayError};

/// How often a duplicate polls an original that another process is still processing.
const PENDING_POLL_MS: u64 = 20;

impl Handler {
    /// The answer stored with a transaction, replayed to retransmissions.
    pub(super) fn stored_answer(
        code: ResponseCode,
        stamp: &Stamp,
        auth_code: Option<&str>,
        balance: Option<&str>,
    ) -> serde_json::Value {
        let mut answer = json!({ "39": code.as_str(), "12": stamp.time_hhmmss, "13": stamp.date_mmdd });
        if code.is_approved() {
            answer["15"] = json!(stamp.settlement_mmdd);
        }
        if let Some(auth_code) = auth_code {
            answer["38"] = json!(auth_code);
        }
        if let Some(balance) = balance {
            answer["54"] = json!(balance);
        }
        answer
    }

    /// Builds the answer to `request` from a stored transaction.
    pub(super) fn answer_from(request: &Message, txn: &TxnRecord) -> Message {
        let stored = &txn.response;
        let code = stored["39"].as_str().and_then(ResponseCode::parse).unwrap_or(ResponseCode::SYSTEM_ERROR);
        let mut response = respond(request, code);
        for field in [12u8, 13, 15, 38, 54] {
            if let Some(value) = stored[field.to_string().as_str()].as_str() {
                response.set(field, value);
            }
        }
        response.set(37, txn.rrn.clone().unwrap_or_else(|| rrn_for(txn.id)));
        if code.is_approved() {
            if !response.has(38) {
                response.set(38, txn.auth_code.clone().unwrap_or_else(|| host_auth_code(txn.id)));
            }
            response.set(63, "CUP");
        }
        response
    }

    /// The answer to a request whose identity is taken by `existing`.
    pub(super) async fn replay(
        &self,
        request: &Message,
        existing: TxnRecord,
        digest: &str,
    ) -> Result<Message, GatewayError> {
        let existing = self.settled_state_of(existing).await?;
        if existing.status == status_name(TxnStatus::Reversed) {
            return Ok(respond(request, ResponseCode::INVALID_TRANSACTION));
        }
        if existing.content_digest != digest {
            return Ok(respond(request, ResponseCode::DUPLICATE));
        }
        if existing.status == status_name(TxnStatus::Pending) {
            return Ok(respond(request, ResponseCode::SYSTEM_ERROR));
        }
        Ok(Self::answer_from(request, &existing))
    }
    /// Waits while another process still has `txn` pending (bounded by the issuer timeout).
    pub(super) async fn settled_state_of(&self, mut txn: TxnRecord) -> Result<TxnRecord, GatewayError> {
        if txn.status == status_name(TxnStatus::Pending)
            && self.clock.now_ms() - txn.created_at_ms > self.stale_after_ms()
        {
            // Left by a host that stopped: nobody will decide it but us.
            self.reverser().finalize_stale(&txn).await?;
            return Ok(self.store.txns.txn(txn.id).await?.unwrap_or(txn));
        }
        let deadline = tokio::time::Instant::now() + self.issuer_timeout * 2;
        while txn.status == status_name(TxnStatus::Pending) && tokio::time::Instant::now() < deadline {
            paused(tokio::time::sleep(duration_ms(PENDING_POLL_MS))).await;
            match self.store.txns.txn(txn.id).await? {
                Some(fresh) => txn = fresh,
                None => break,
            }
        }
        Ok(txn)
    }
}

//! Exactly once: the answer stored with a transaction, and its replay to a retransmission.

use kassa_domain::TxnStatus;
use kassa_iso8583::Message;
use kassa_store::{CardIdentity, Guard, NewTxn, StoredAnswer, TxnRecord, UnitOutcome, WriteOp, WriteUnit};

use super::common::{host_auth_code, respond, rrn_for};
use super::Handler;
use crate::budget::paused;
use crate::business_day::Stamp;
use crate::codes::ResponseCode;
use crate::{duration_ms, GatewayError};

/// How often a duplicate polls an original that another process is still processing.
const PENDING_POLL_MS: u64 = 20;

/// What [`Handler::insert_or_replay`] did.
pub(super) enum Inserted {
    /// The transaction was inserted with its ops, under this id.
    New(i64),
    /// Its identity was taken: the answer to the request, replayed from the record that has it.
    Replayed(Box<Message>),
}

impl Handler {
    /// The answer stored with a transaction, replayed to retransmissions.
    pub(super) fn stored_answer(
        code: ResponseCode,
        stamp: &Stamp,
        auth_code: Option<&str>,
        balance: Option<&str>,
    ) -> StoredAnswer {
        StoredAnswer {
            response_code: Some(code.as_str().to_owned()),
            time_hhmmss: Some(stamp.time_hhmmss.clone()),
            date_mmdd: Some(stamp.date_mmdd.clone()),
            settlement_mmdd: code.is_approved().then(|| stamp.settlement_mmdd.clone()),
            auth_code: auth_code.map(str::to_owned),
            balance: balance.map(str::to_owned),
            refund_request: None,
        }
    }

    /// Inserts `txn` guarded by its card identity, with `ops`, in one unit. When the identity
    /// is taken (a retransmission, or the same identity with other content) nothing is
    /// written and the existing record answers: its stored answer replayed, `94` for other
    /// content, or a wait while another process still has it pending.
    pub(super) async fn insert_or_replay(
        &self,
        request: &Message,
        txn: NewTxn,
        ops: Vec<WriteOp>,
    ) -> Result<Inserted, GatewayError> {
        debug_assert!(txn.card_identity.is_some(), "a card request is inserted under its identity");
        let digest = txn.content_digest.clone();
        let identity = txn.card_identity.clone();
        let outcome = self.store.commit(WriteUnit::guarded(Guard::InsertTxn(Box::new(txn)), ops)).await?;
        if let Some(identity) = identity.filter(|_| matches!(outcome, UnitOutcome::Committed { .. })) {
            self.marks.recorded(&identity);
        }
        match outcome {
            UnitOutcome::Committed { txn_id: Some(id), .. } => Ok(Inserted::New(id)),
            UnitOutcome::Duplicate { existing_txn_id: Some(id) } => {
                let existing = self.stored_txn(id).await?;
                Ok(Inserted::Replayed(Box::new(self.replay(request, existing, &digest).await?)))
            }
            other => Err(GatewayError::Corrupt(format!("unexpected outcome {other:?}"))),
        }
    }

    /// The replayed answer when `identity` was seen already, `None` for a new request.
    pub(super) async fn replay_if_seen(
        &self,
        request: &Message,
        identity: &CardIdentity,
        digest: &str,
    ) -> Result<Option<Message>, GatewayError> {
        match self.store.txns.txn_by_card_identity(identity).await? {
            Some(existing) => Ok(Some(self.replay(request, existing, digest).await?)),
            None => Ok(None),
        }
    }

    /// Builds the answer to `request` from a stored transaction.
    pub(super) fn answer_from(request: &Message, txn: &TxnRecord) -> Message {
        // A card record's RRN is its id (rrn_for), stored or not: what the terminal got first.
        debug_assert!(
            txn.rrn.as_deref().is_none_or(|rrn| rrn == rrn_for(txn.id)),
            "txn {}: stored RRN is not its id",
            txn.id
        );
        let stored = &txn.response;
        let code = stored.response_code.as_deref().and_then(ResponseCode::parse).unwrap_or(ResponseCode::SYSTEM_ERROR);
        let mut response = respond(request, code);
        for (field, value) in [
            (12u8, &stored.time_hhmmss),
            (13, &stored.date_mmdd),
            (15, &stored.settlement_mmdd),
            (38, &stored.auth_code),
            (54, &stored.balance),
        ] {
            if let Some(value) = value {
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
        if existing.status == TxnStatus::Reversed {
            return Ok(respond(request, ResponseCode::INVALID_TRANSACTION));
        }
        if existing.content_digest != digest {
            return Ok(respond(request, ResponseCode::DUPLICATE));
        }
        if existing.status == TxnStatus::Pending {
            return Ok(respond(request, ResponseCode::SYSTEM_ERROR));
        }
        debug_assert!(existing.response.response_code.is_some(), "txn {}: decided without an answer", existing.id);
        Ok(Self::answer_from(request, &existing))
    }

    /// Waits while another process still has `txn` pending (bounded by the issuer timeout).
    pub(super) async fn settled_state_of(&self, mut txn: TxnRecord) -> Result<TxnRecord, GatewayError> {
        if txn.status == TxnStatus::Pending && self.clock.now_ms() - txn.created_at_ms > self.stale_after_ms() {
            // Left by a host that stopped: nobody will decide it but us.
            self.reverser().finalize_stale(&txn).await?;
            return Ok(self.store.txns.txn(txn.id).await?.unwrap_or(txn));
        }
        let deadline = tokio::time::Instant::now() + self.issuer_timeout * 2;
        while txn.status == TxnStatus::Pending && tokio::time::Instant::now() < deadline {
            paused(tokio::time::sleep(duration_ms(PENDING_POLL_MS))).await;
            match self.store.txns.txn(txn.id).await? {
                Some(fresh) => txn = fresh,
                None => break,
            }
        }
        Ok(txn)
    }
}

//! The background worker: writes the contacts heard, closes the id blocks whose requests were
//! decided, recovers what a stopped host left (its open id blocks, its pending requests), and
//! retries the issuer reversals still owed (journaled in `gateway_issuer_reversals`).

use std::sync::Arc;

use kassa_issuer::{Clock, IssuerConnector, RequestId};
use kassa_store::gateway::{close_id_block, prune_id_blocks};
use kassa_store::{Guard, Store, TxnRecord, UnitOutcome, WriteUnit};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::common::{request_id_for, rrn_for};
use super::contacts::CONTACTS_FLUSH_INTERVAL_MS;
use super::request_ids::{Closing, RequestIds, BLOCK_USE_MS, REQUEST_PREFIX};
use super::Handler;
use crate::business_day::{BusinessDay, Stamp};
use crate::codes::ResponseCode;
use crate::{duration_ms, GatewayError};

/// Issuer reversals retried per sweep, and how often the sweep runs.
const REVERSALS_PER_SWEEP_MAX: i64 = 100;
const REVERSAL_SWEEP_MS: u64 = 30_000;
/// Attempts at an issuer reversal right after it was journaled; the sweep retries the rest.
const REVERSAL_ATTEMPTS_MAX: u32 = 3;
/// How long a closed id block is kept (for the operator looking into a request id; the issuer
/// reversals it owed are journaled apart).
const ID_BLOCKS_KEPT_MS: i64 = 3_600_000;
/// Added to twice the issuer timeout before a pending request counts as abandoned.
const STALE_MARGIN_MS: i64 = 5_000;

impl Handler {
    /// How long a card request may stay pending before it is taken for abandoned: twice the
    /// issuer timeout plus a margin, so a live host (this or another process) always decides
    /// its own requests first.
    pub(super) fn stale_after_ms(&self) -> i64 {
        i64::try_from(self.issuer_timeout.as_millis() * 2).unwrap_or(i64::MAX / 2) + STALE_MARGIN_MS
    }

    pub(super) fn reverser(&self) -> IssuerReverser {
        IssuerReverser {
            store: self.store.clone(),
            issuer: Arc::clone(&self.issuer),
            clock: Arc::clone(&self.clock),
            business_day: self.business_day,
            stale_after_ms: self.stale_after_ms(),
        }
    }

    /// Retries the issuer reversals still owed (after a crash or a failed attempt) until
    /// `shutdown`; writes the contacts heard and closes the id blocks whose requests were
    /// decided until [`Background::finish`] (then once more each: the server finishes them
    /// after the last connection has answered, so nothing a request left is lost at a stop).
    pub(crate) fn start_background(&self, shutdown: CancellationToken) -> Background {
        let finishing = CancellationToken::new();
        let mut tasks = Vec::with_capacity(2);
        let (contacts, store, stop) = (Arc::clone(&self.contacts), self.store.clone(), finishing.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    () = stop.cancelled() => true,
                    () = tokio::time::sleep(duration_ms(CONTACTS_FLUSH_INTERVAL_MS)) => false,
                };
                contacts.flush(&store).await;
                if stopping {
                    return;
                }
            }
        }));
        if let Some(due) = self.request_ids.take_due() {
            let (ids, store, clock) = (Arc::clone(&self.request_ids), self.store.clone(), Arc::clone(&self.clock));
            tasks.push(tokio::spawn(close_blocks(ids, due, store, clock, finishing.clone())));
        }
        let reverser = self.reverser();
        tokio::spawn(async move {
            loop {
                reverser.sweep().await;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(duration_ms(REVERSAL_SWEEP_MS)) => {}
                }
            }
        });
        Background { finishing, tasks }
    }
    pub(super) async fn reverse_at_issuer(&self, request_id: RequestId, txn_id: Option<i64>, reason: &str) {
        let at_ms = self.clock.now_ms();
        let op = kassa_store::gateway::owe_issuer_reversal(request_id.as_str(), txn_id, reason, at_ms);
        if let Err(error) = self.store.commit(WriteUnit::ops(vec![op])).await {
            tracing::error!(%error, %request_id, "cannot journal an issuer reversal");
        }
        self.spawn_issuer_reversal(request_id, txn_id);
    }

    pub(super) fn spawn_issuer_reversal(&self, request_id: RequestId, _txn_id: Option<i64>) {
        let reverser = self.reverser();
        tokio::spawn(async move { reverser.reverse(&request_id).await });
    }
}

/// The background tasks that must finish before a stop returns.
#[must_use = "a stop must finish the background, or id blocks are left open"]
pub(crate) struct Background {
    finishing: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    /// Writes the contacts heard and closes every id block, then returns. Called once no
    /// request can be in flight any more.
    pub(crate) async fn finish(self) {
        self.finishing.cancel();
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a background task of the host failed");
            }
        }
    }
}

/// Closes each id block once its requests are decided (see `request_ids`), and lets go of a
/// block whose time is over when no request comes to move the allocator on. When finishing,
/// the current block and those already due are closed; a block whose request is still in
/// flight then (a stop that did not wait for its connections) is left to the recovery sweep
/// of the next start.
async fn close_blocks(
    ids: Arc<RequestIds>,
    mut due: mpsc::Receiver<Closing>,
    store: Store,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(duration_ms(BLOCK_USE_MS.unsigned_abs()));
    loop {
        tokio::select! {
            closing = due.recv() => match closing {
                Some(closing) => close_block(&store, clock.as_ref(), closing).await,
                None => return,
            },
            _ = tick.tick() => ids.retire(false).await,
            () = shutdown.cancelled() => break,
        }
    }
    ids.retire(true).await;
    while let Ok(closing) = due.try_recv() {
        close_block(&store, clock.as_ref(), closing).await;
    }
}

async fn close_block(store: &Store, clock: &dyn Clock, closing: Closing) {
    let unit = close_id_block(closing.block_id, &closing.handed_out, REQUEST_PREFIX, clock.now_ms());
    if let Err(error) = store.commit(unit).await {
        tracing::warn!(%error, block = closing.block_id, "cannot close an id block; the recovery sweep closes it");
    }
}

/// Reverses issuer requests journaled in `gateway_issuer_reversals`, recording each attempt.
#[derive(Debug, Clone)]
pub(super) struct IssuerReverser {
    store: Store,
    issuer: Arc<dyn IssuerConnector>,
    clock: Arc<dyn Clock>,
    business_day: BusinessDay,
    /// A card request pending longer than this was left by a host that stopped.
    stale_after_ms: i64,
}

impl IssuerReverser {
    pub(super) async fn reverse(&self, request_id: &RequestId) {
        for attempt in 0..REVERSAL_ATTEMPTS_MAX {
            let done = self.issuer.reverse(request_id).await.is_ok();
            let op = kassa_store::gateway::issuer_reversal_attempted(request_id.as_str(), done, self.clock.now_ms());
            if let Err(error) = self.store.commit(WriteUnit::ops(vec![op])).await {
                tracing::warn!(%error, %request_id, "cannot record an issuer reversal attempt");
            }
            if done {
                return;
            }
            tokio::time::sleep(duration_ms(100 << attempt)).await;
        }
        tracing::warn!(%request_id, "issuer reversal still owed; the sweep retries it");
    }

    /// Decides a card request a stopped host left pending: declined `98` (the terminal, which
    /// never got an answer, reverses it anyway) and reversed at the issuer, which may have
    /// approved it.
    pub(super) async fn finalize_stale(&self, txn: &TxnRecord) -> Result<(), GatewayError> {
        let now_ms = self.clock.now_ms();
        let Ok(declined) = Handler::state_of_record(txn)?.apply(kassa_domain::TxnEvent::Decline) else { return Ok(()) };
        let stamp = Stamp::of(&self.business_day, now_ms);
        let mut update = Handler::update_to(txn, &declined, now_ms);
        update.response = Some(Handler::stored_answer(ResponseCode::ISSUER_TIMEOUT, &stamp, None, None));
        update.rrn = Some(rrn_for(txn.id));
        let request_id = request_id_for(txn.id).ok_or_else(|| GatewayError::Corrupt("request id".into()))?;
        let op = kassa_store::gateway::owe_issuer_reversal(request_id.as_str(), Some(txn.id), "recovery", now_ms);
        if let UnitOutcome::Committed { .. } =
            self.store.commit(WriteUnit::guarded(Guard::UpdateTxn(update), vec![op])).await?
        {
            tracing::warn!(
                txn = txn.id,
                "a request left pending by a stopped host was declined and is reversed at the issuer"
            );
            self.reverse(&request_id).await;
        }
        Ok(())
    }

    /// Closes the id blocks a stopped host left open: once nothing of a block can still be in
    /// flight, each of its ids without a transaction is owed a reversal at the issuer (which may
    /// have approved it), all counting as sent.
    async fn close_abandoned_blocks(&self) {
        let before_ms = self.clock.now_ms() - BLOCK_USE_MS - self.stale_after_ms;
        let blocks = match self.store.gateway().open_id_blocks(before_ms, REVERSALS_PER_SWEEP_MAX).await {
            Ok(blocks) => blocks,
            Err(error) => return tracing::warn!(%error, "cannot read the open id blocks"),
        };
        for block in blocks {
            let unit = close_id_block(block.block_id, &block.ranges, REQUEST_PREFIX, self.clock.now_ms());
            match self.store.commit(unit).await {
                Ok(UnitOutcome::Committed { .. }) => tracing::warn!(
                    block = block.block_id,
                    reserved_at_ms = block.reserved_at_ms,
                    "an id block left open by a stopped host was closed; its unrecorded requests are reversed"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, block = block.block_id, "cannot close an abandoned id block"),
            }
        }
    }

    async fn recover_pending(&self) {
        let before_ms = self.clock.now_ms() - self.stale_after_ms;
        let stale = match self.store.gateway().stale_pending_card_txns(before_ms, REVERSALS_PER_SWEEP_MAX).await {
            Ok(stale) => stale,
            Err(error) => return tracing::warn!(%error, "cannot read stale pending requests"),
        };
        for id in stale {
            let result = match self.store.txns.txn(id).await {
                Ok(Some(txn)) => self.finalize_stale(&txn).await,
                Ok(None) => Ok(()),
                Err(error) => Err(error.into()),
            };
            if let Err(error) = result {
                tracing::warn!(%error, txn = id, "cannot recover a pending request");
            }
        }
    }

    pub(super) async fn sweep(&self) {
        self.close_abandoned_blocks().await;
        let prune = prune_id_blocks(self.clock.now_ms() - ID_BLOCKS_KEPT_MS);
        if let Err(error) = self.store.commit(prune).await {
            tracing::warn!(%error, "cannot prune the closed id blocks");
        }
        self.recover_pending().await;
        match self.store.gateway().issuer_reversals_owed(REVERSALS_PER_SWEEP_MAX).await {
            Ok(owed) => {
                for record in owed {
                    if let Some(request_id) = RequestId::new(record.request_id) {
                        self.reverse(&request_id).await;
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the issuer reversals owed"),
        }
    }
}

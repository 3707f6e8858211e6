//! The ids a capture's issuer request is sent under: transaction ids the store reserved a block
//! at a time (one commit per block, not per request, and the next block reserved in the
//! background while the current one still hands out ids) before any of them reaches the issuer, so
//! the request is journaled before it is sent and its decision is one commit, an insert under
//! its id. A block hands out ids for [`BLOCK_USE_MS`] at most; once the allocator moved on and
//! its last request was decided, it is closed, which owes a reversal at the issuer for each id
//! it handed out that has no transaction (an approval the host could not record). The blocks of
//! a host that stopped are closed by the recovery sweep, all their ids counting as handed out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kassa_issuer::Clock;
use kassa_store::gateway::IdRanges;
use kassa_store::{ReservedId, Store, StoreError, UnitOutcome, WriteOp, WriteUnit};
use tokio::sync::{mpsc, Mutex};

/// Ids in a block: the first one, and the most. A block is doubled while blocks run out
/// before their time and halved when one outlives it, so a busy host reserves about one block
/// per second and an idle one leaves few unused ids to its close.
const BLOCK_IDS_MIN: usize = 16;
const BLOCK_IDS_MAX: usize = 1_024;
/// How long after its reservation a block hands out ids.
pub(super) const BLOCK_USE_MS: i64 = 2_000;
/// Blocks waiting for their close, at most; one that finds the queue full is closed by the
/// recovery sweep instead (all its ids counting as handed out).
const CLOSING_QUEUE_MAX: usize = 256;
/// The request id prefix: request `txn:<id>` is the issuer request of transaction `<id>`.
pub(super) const REQUEST_PREFIX: &str = "txn:";

/// A block whose close is due, with the ids it handed out.
pub(super) struct Closing {
    pub(super) block_id: i64,
    pub(super) handed_out: IdRanges,
}

/// A reserved block, shared by the allocator (while it hands out its ids) and by every request
/// sent under one of them (until it is decided): when the last lets go, the block is due for
/// its close.
struct Block {
    block_id: i64,
    ids: Vec<i64>,
    reserved_at_ms: i64,
    /// How many of `ids`, from the first, were handed out.
    handed_out: AtomicUsize,
    closing: mpsc::Sender<Closing>,
}

impl Drop for Block {
    fn drop(&mut self) {
        let handed_out = self.handed_out.load(Ordering::Acquire).min(self.ids.len());
        let due = Closing { block_id: self.block_id, handed_out: IdRanges::of(&self.ids[..handed_out]) };
        if self.closing.try_send(due).is_err() {
            tracing::warn!(block = self.block_id, "id block not closed now; the recovery sweep closes it");
        }
    }
}

/// An issuer request's id, holding its block open until the request is decided (dropped).
pub(super) struct RequestNo {
    id: i64,
    block: Arc<Block>,
}

impl RequestNo {
    /// The transaction id the decision is recorded under.
    pub(super) fn txn_id(&self) -> i64 {
        self.id
    }

    /// The id as the store's insert takes it.
    pub(super) fn reserved(&self) -> ReservedId {
        ReservedId { id: self.id, block_id: self.block.block_id }
    }
}

/// The block being handed out.
struct Current {
    block: Arc<Block>,
    next: usize,
}

/// The allocator's state.
struct Slot {
    current: Option<Current>,
    /// The size of the next block reserved when none is ready.
    size: usize,
    /// The next block, reserved in the background before the current one runs out.
    ready: Option<Arc<Block>>,
    /// Whether that reservation is under way.
    reserving: bool,
}

/// Hands out request ids; see the module documentation.
pub(super) struct RequestIds {
    store: Store,
    clock: Arc<dyn Clock>,
    slot: Mutex<Slot>,
    closing: mpsc::Sender<Closing>,
    due: std::sync::Mutex<Option<mpsc::Receiver<Closing>>>,
}

impl std::fmt::Debug for RequestIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestIds").finish_non_exhaustive()
    }
}

impl RequestIds {
    pub(super) fn new(store: Store, clock: Arc<dyn Clock>) -> RequestIds {
        let (closing, due) = mpsc::channel(CLOSING_QUEUE_MAX);
        RequestIds {
            store,
            clock,
            slot: Mutex::new(Slot { current: None, size: BLOCK_IDS_MIN, ready: None, reserving: false }),
            closing,
            due: std::sync::Mutex::new(Some(due)),
        }
    }

    /// The blocks due for their close, once (for the background worker).
    pub(super) fn take_due(&self) -> Option<mpsc::Receiver<Closing>> {
        self.due.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    /// The next request id: from the current block, else from the block reserved in the
    /// background, else from a block reserved now.
    pub(super) async fn next(self: &Arc<Self>) -> Result<RequestNo, StoreError> {
        let mut slot = self.slot.lock().await;
        let now_ms = self.clock.now_ms();
        if let Some(taken) = slot.current.as_mut().and_then(|current| Self::take(current, now_ms)) {
            self.reserve_ahead(&mut slot, now_ms);
            return Ok(taken);
        }
        Self::retire_current(&mut slot);
        let block = match slot.ready.take().filter(|ready| now_ms - ready.reserved_at_ms < BLOCK_USE_MS) {
            Some(ready) => ready,
            None => self.reserve(slot.size, now_ms).await?,
        };
        let fresh = slot.current.insert(Current { block, next: 0 });
        Self::take(fresh, now_ms).ok_or_else(|| StoreError::Corrupt("a fresh id block hands out nothing".into()))
    }

    /// Once half of the current block is handed out, reserves the next one in the background,
    /// so that requests at a steady pace never wait for a reservation: twice as large when the
    /// half went in less than half the block's time.
    fn reserve_ahead(self: &Arc<Self>, slot: &mut Slot, now_ms: i64) {
        let Some(current) = &slot.current else { return };
        let len = current.block.ids.len();
        if slot.reserving || slot.ready.is_some() || current.next * 2 < len {
            return;
        }
        let fast = now_ms - current.block.reserved_at_ms < BLOCK_USE_MS / 2;
        let size = if fast { len * 2 } else { len }.clamp(BLOCK_IDS_MIN, BLOCK_IDS_MAX);
        slot.reserving = true;
        let ids = Arc::clone(self);
        tokio::spawn(async move {
            let reserved = ids.reserve(size, ids.clock.now_ms()).await;
            let mut slot = ids.slot.lock().await;
            slot.reserving = false;
            match reserved {
                Ok(block) => slot.ready = Some(block),
                Err(error) => tracing::warn!(%error, "cannot reserve the next id block ahead"),
            }
        });
    }

    /// Reserves a block of `size` ids, journaled before any of them is handed out.
    async fn reserve(&self, size: usize, now_ms: i64) -> Result<Arc<Block>, StoreError> {
        let unit = WriteUnit::ops(vec![WriteOp::ReserveTxnIds { count: size, at_ms: now_ms }]);
        let ids = match self.store.commit(unit).await? {
            UnitOutcome::Committed { reserved_ids, .. } if reserved_ids.len() == size => reserved_ids,
            other => return Err(StoreError::Corrupt(format!("an id block of {size} came back as {other:?}"))),
        };
        Ok(Arc::new(Block {
            block_id: ids[0],
            ids,
            reserved_at_ms: now_ms,
            handed_out: AtomicUsize::new(0),
            closing: self.closing.clone(),
        }))
    }

    /// Lets go of the current block once its time is over (or now, when `all`), so that it is
    /// closed even when no request comes to move the allocator on.
    pub(super) async fn retire(&self, all: bool) {
        let mut slot = self.slot.lock().await;
        let now_ms = self.clock.now_ms();
        let expired = |block: &Block| all || now_ms - block.reserved_at_ms >= BLOCK_USE_MS;
        if slot.current.as_ref().is_some_and(|current| expired(&current.block)) {
            Self::retire_current(&mut slot);
        }
        // A block reserved ahead and never used is closed with nothing handed out.
        if slot.ready.as_deref().is_some_and(expired) {
            slot.ready = None;
        }
    }

    /// Lets go of `request`'s block if it is still the current one: a decision under it was
    /// refused (it may have been closed by the recovery of another host).
    pub(super) async fn retire_block_of(&self, request: &RequestNo) {
        let mut slot = self.slot.lock().await;
        if slot.current.as_ref().is_some_and(|current| Arc::ptr_eq(&current.block, &request.block)) {
            Self::retire_current(&mut slot);
        }
    }

    /// Lets go of the current block (it is closed once its requests are decided) and sizes the
    /// next one.
    fn retire_current(slot: &mut Slot) {
        if let Some(old) = slot.current.take() {
            let len = old.block.ids.len();
            slot.size = if old.next >= len { len * 2 } else { len / 2 }.clamp(BLOCK_IDS_MIN, BLOCK_IDS_MAX);
        }
    }

    fn take(current: &mut Current, now_ms: i64) -> Option<RequestNo> {
        let block = &current.block;
        let id = *block.ids.get(current.next).filter(|_| now_ms - block.reserved_at_ms < BLOCK_USE_MS)?;
        current.next += 1;
        block.handed_out.store(current.next, Ordering::Release);
        Some(RequestNo { id, block: Arc::clone(block) })
    }
}

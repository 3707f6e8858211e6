//! Terminals and merchants as the gateway reads them on every request, cached per process for
//! at most [`DIRECTORY_REVALIDATE_MS`] (the same interval as the working keys in `sessions`).
//!
//! The store holds the truth. This process forgets a terminal as soon as it changes it itself
//! (sign-in, settlement), and re-reads it whenever a request names another batch than the
//! cached one, so within one process nothing is ever stale. A change made by another host
//! process on the same database (a terminal disabled, a merchant's fee rate changed) takes
//! effect here within the interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kassa_domain::FeeRate;
use kassa_store::{Store, TerminalRecord};

use crate::GatewayError;

/// How long a cached terminal or merchant is trusted before it is read again.
const DIRECTORY_REVALIDATE_MS: u64 = 1_000;

#[derive(Debug)]
struct Cached<T> {
    value: T,
    read_at: Instant,
}

impl<T: Clone> Cached<T> {
    fn fresh(&self) -> Option<T> {
        (self.read_at.elapsed() < Duration::from_millis(DIRECTORY_REVALIDATE_MS)).then(|| self.value.clone())
    }
}

/// The per-process cache. Only records found in the store are cached, so its size is bounded
/// by the number of terminals and merchants, whatever ids hostile requests name.
#[derive(Debug)]
pub(crate) struct Directory {
    store: Store,
    terminals: Mutex<HashMap<String, Cached<Arc<TerminalRecord>>>>,
    card_fees: Mutex<HashMap<String, Cached<FeeRate>>>,
}

impl Directory {
    pub(crate) fn new(store: Store) -> Directory {
        Directory { store, terminals: Mutex::default(), card_fees: Mutex::default() }
    }

    /// The terminal, from the cache while it is fresh.
    pub(crate) async fn terminal(&self, terminal_id: &str) -> Result<Option<Arc<TerminalRecord>>, GatewayError> {
        let cached =
            self.terminals.lock().unwrap_or_else(PoisonError::into_inner).get(terminal_id).and_then(Cached::fresh);
        match cached {
            Some(terminal) => Ok(Some(terminal)),
            None => self.reload_terminal(terminal_id).await,
        }
    }

    /// The terminal as the store has it now (and cached from now on).
    pub(crate) async fn reload_terminal(&self, terminal_id: &str) -> Result<Option<Arc<TerminalRecord>>, GatewayError> {
        let read_at = Instant::now();
        let terminal = self.store.directory.terminal(terminal_id).await?.map(Arc::new);
        let mut map = self.terminals.lock().unwrap_or_else(PoisonError::into_inner);
        match &terminal {
            Some(terminal) => {
                map.insert(terminal_id.to_owned(), Cached { value: Arc::clone(terminal), read_at });
            }
            None => {
                map.remove(terminal_id);
            }
        }
        Ok(terminal)
    }

    /// Drops the cached terminal after this process changed it.
    pub(crate) fn forget_terminal(&self, terminal_id: &str) {
        self.terminals.lock().unwrap_or_else(PoisonError::into_inner).remove(terminal_id);
    }

    /// The merchant's card fee rate.
    pub(crate) async fn card_fee_rate(&self, merchant_id: &str) -> Result<FeeRate, GatewayError> {
        let cached =
            self.card_fees.lock().unwrap_or_else(PoisonError::into_inner).get(merchant_id).and_then(Cached::fresh);
        if let Some(rate) = cached {
            return Ok(rate);
        }
        let read_at = Instant::now();
        let merchant = self
            .store
            .directory
            .merchant(merchant_id)
            .await?
            .ok_or_else(|| GatewayError::Corrupt(format!("merchant {merchant_id} of a terminal is missing")))?;
        let ppm = merchant.fee_rates.get("card").copied().unwrap_or(0);
        let rate = FeeRate::from_ppm(ppm).map_err(|e| GatewayError::Corrupt(e.to_string()))?;
        self.card_fees
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(merchant_id.to_owned(), Cached { value: rate, read_at });
        Ok(rate)
    }
}

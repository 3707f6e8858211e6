//! Refusals of requests that prove no identity, audited as counted rows per window.
//!
//! A login for a name that does not exist, a TMS request with a bad signature, a stale
//! timestamp or a replayed nonce, a one-time code that is unknown or used: anyone can send
//! these, as fast as the network allows. One audit row each lets an attacker grow the
//! (append-only, hash-chained) audit log without limit. Instead they are counted in memory per
//! [`Refusal`] key — what was refused, why, from where, in whose name — and written as ONE
//! audit row per key and window ([`REFUSAL_WINDOW_MS`]) carrying the count and the first and
//! last time seen. Memory is bounded: at most [`REFUSAL_KEYS_MAX`] keys are kept per window;
//! further keys are counted together under the same action with `source` and `actor` `*`.
//!
//! Acts that concern a real account keep their own rows (a wrong password for an existing
//! user counts towards its lockout; the lockout itself is a `user_locked` / `operator_locked`
//! row): only the repeated refusals of an account already locked or disabled come here.
//!
//! Rows are written by a background task at the end of each window, by [`RefusalLog::flush`]
//! (the host calls it once its listeners have stopped), and, as a last resort, when the last
//! handle is dropped.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kassa_store::{AuditEvent, Store, StoreError, WriteOp, WriteUnit};
use serde_json::json;

use crate::clock::Clock;

/// How long refusals are counted before their rows are written.
pub const REFUSAL_WINDOW_MS: u64 = 60_000;
/// Distinct keys counted per window; the rest share one key per action.
pub const REFUSAL_KEYS_MAX: usize = 4_096;
/// How long the last counts may take to be written when the last handle is dropped unflushed.
pub const REFUSAL_DROP_FLUSH_MS: u64 = 2_000;
/// The longest text kept in a key's fields (they may come from the request).
pub const REFUSAL_FIELD_CHARS_MAX: usize = 64;

/// One refusal, as counted: every field is part of the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Refusal {
    /// The audit action, e.g. `login_failed`, `tms_request_refused`.
    pub action: &'static str,
    /// Why, e.g. `unknown user`, `bad signature`.
    pub reason: &'static str,
    /// In whose name (`user:admin`, `terminal:10000001`), or `*` when the name is not kept.
    pub actor: String,
    /// What it was aimed at (a path, an account).
    pub target: String,
    /// Where it came from (an IP address, a terminal id).
    pub source: String,
}

impl Refusal {
    fn bounded(mut self) -> Refusal {
        for field in [&mut self.actor, &mut self.target, &mut self.source] {
            if field.chars().count() > REFUSAL_FIELD_CHARS_MAX {
                *field = field.chars().take(REFUSAL_FIELD_CHARS_MAX).chain(['…']).collect();
            }
        }
        self
    }

    fn overflow(&self) -> Refusal {
        Refusal { action: self.action, reason: self.reason, actor: "*".into(), target: "*".into(), source: "*".into() }
    }
}

#[derive(Debug, Clone, Copy)]
struct Count {
    count: u64,
    first_ms: i64,
    last_ms: i64,
}

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    pending: Mutex<HashMap<Refusal, Count>>,
}

impl Inner {
    fn take(&self) -> HashMap<Refusal, Count> {
        match self.pending.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    fn unit(&self, counts: &HashMap<Refusal, Count>) -> WriteUnit {
        let now = self.clock.now_ms();
        let mut rows: Vec<(&Refusal, &Count)> = counts.iter().collect();
        // A stable order, so the chain reads the same whichever way the map iterates.
        rows.sort_by(|a, b| (a.1.first_ms, a.0.action, &a.0.source).cmp(&(b.1.first_ms, b.0.action, &b.0.source)));
        let ops = rows
            .into_iter()
            .map(|(refusal, count)| {
                WriteOp::Audit(AuditEvent {
                    at_ms: now,
                    actor: refusal.actor.clone(),
                    action: refusal.action.into(),
                    target: refusal.target.clone(),
                    source: refusal.source.clone(),
                    reason: refusal.reason.into(),
                    details: json!({
                        "count": count.count,
                        "first_ms": count.first_ms,
                        "last_ms": count.last_ms,
                        "counted": true,
                    }),
                })
            })
            .collect();
        WriteUnit::ops(ops)
    }

    /// Puts counts that could not be written back, so the next flush tries again.
    fn restore(&self, counts: HashMap<Refusal, Count>) {
        let Ok(mut pending) = self.pending.lock() else { return };
        for (refusal, count) in counts {
            merge(&mut pending, refusal, count);
        }
    }

    async fn flush(&self) -> Result<usize, StoreError> {
        let counts = self.take();
        if counts.is_empty() {
            return Ok(0);
        }
        match self.store.commit(self.unit(&counts)).await {
            Ok(_) => Ok(counts.len()),
            Err(error) => {
                self.restore(counts);
                Err(error)
            }
        }
    }
}

fn merge(pending: &mut HashMap<Refusal, Count>, refusal: Refusal, count: Count) {
    let key =
        if pending.len() >= REFUSAL_KEYS_MAX && !pending.contains_key(&refusal) { refusal.overflow() } else { refusal };
    pending
        .entry(key)
        .and_modify(|c| {
            c.count = c.count.saturating_add(count.count);
            c.first_ms = c.first_ms.min(count.first_ms);
            c.last_ms = c.last_ms.max(count.last_ms);
        })
        .or_insert(count);
}

impl Drop for Inner {
    fn drop(&mut self) {
        let counts = self.take();
        if counts.is_empty() {
            return;
        }
        // Last resort, when the host did not flush: written from a thread of its own with a
        // runtime of its own (this may run while the process's runtime shuts down), waited for
        // at most `REFUSAL_DROP_FLUSH_MS`.
        let unit = self.unit(&counts);
        let store = self.store.clone();
        let flushed = std::thread::Builder::new().name("kassa-refusal-flush".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            let deadline = Duration::from_millis(REFUSAL_DROP_FLUSH_MS);
            runtime.block_on(async { tokio::time::timeout(deadline, store.commit(unit)).await.ok()?.ok() })
        });
        if !matches!(flushed.map(std::thread::JoinHandle::join), Ok(Ok(Some(_)))) {
            tracing::warn!(keys = counts.len(), "the last refusal counts could not be audited");
        }
    }
}

/// The counter of refusals; one per process, shared by every surface. Cheap to clone.
#[derive(Clone)]
pub struct RefusalLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for RefusalLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefusalLog").finish_non_exhaustive()
    }
}

impl RefusalLog {
    /// Counts refusals for `store`'s audit log; inside a tokio runtime, a background task
    /// writes them every [`REFUSAL_WINDOW_MS`].
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> RefusalLog {
        let log = RefusalLog { inner: Arc::new(Inner { store, clock, pending: Mutex::new(HashMap::new()) }) };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(flush_every_window(Arc::downgrade(&log.inner)));
        }
        log
    }

    /// Counts one refusal.
    pub fn record(&self, refusal: Refusal) {
        let now = self.inner.clock.now_ms();
        let count = Count { count: 1, first_ms: now, last_ms: now };
        match self.inner.pending.lock() {
            Ok(mut pending) => merge(&mut pending, refusal.bounded(), count),
            Err(poisoned) => merge(&mut poisoned.into_inner(), refusal.bounded(), count),
        }
    }

    /// Writes every count held now, one audit row per key; returns how many rows. Counts that
    /// cannot be written are kept for the next try.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        self.inner.flush().await
    }

    /// Keys held now (for tests and metrics).
    pub fn pending_keys(&self) -> usize {
        self.inner.pending.lock().map_or(0, |pending| pending.len())
    }
}

async fn flush_every_window(log: Weak<Inner>) {
    let mut ticks = tokio::time::interval(Duration::from_millis(REFUSAL_WINDOW_MS));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate
    loop {
        ticks.tick().await;
        let Some(inner) = log.upgrade() else { return };
        if let Err(error) = inner.flush().await {
            tracing::warn!(%error, "refusal counts could not be audited; kept for the next window");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(source: &str) -> Refusal {
        Refusal {
            action: "login_failed",
            reason: "unknown user",
            actor: "*".into(),
            target: "backoffice".into(),
            source: source.into(),
        }
    }

    #[test]
    fn keys_are_bounded_and_the_rest_counted_together() {
        let mut pending = HashMap::new();
        let one = Count { count: 1, first_ms: 5, last_ms: 5 };
        for i in 0..REFUSAL_KEYS_MAX + 10 {
            merge(&mut pending, refusal(&format!("10.0.{}.{}", i / 256, i % 256)), one);
        }
        merge(&mut pending, refusal("10.0.0.0"), Count { count: 1, first_ms: 1, last_ms: 9 });
        assert_eq!(pending.len(), REFUSAL_KEYS_MAX + 1);
        let overflow = pending[&refusal("x").overflow()];
        assert_eq!(overflow.count, 10);
        let first = pending[&refusal("10.0.0.0")];
        assert_eq!((first.count, first.first_ms, first.last_ms), (2, 1, 9));
        let long = refusal(&"9".repeat(500)).bounded();
        assert_eq!(long.source.chars().count(), REFUSAL_FIELD_CHARS_MAX + 1);
    }
}

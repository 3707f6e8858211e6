//! Exactly once, in process: one lock per request identity, so a duplicate that arrives while
//! its original is being processed waits for it. Across processes the store's unique index on
//! the identity decides; this only saves the second process's duplicate a wasted issuer call.
//! And the highest STAN recorded per terminal batch and MTI class ([`StanMarks`]), so that a
//! new request, the common case, is known new without a read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use kassa_store::CardIdentity;
use sha2::{Digest, Sha256};
use tokio::sync::OwnedMutexGuard;

/// Identities remembered before forgotten ones are swept out.
const LOCKS_SWEEP_AT: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct IdentityLocks {
    map: Mutex<HashMap<CardIdentity, Weak<tokio::sync::Mutex<()>>>>,
}

impl IdentityLocks {
    /// Holds the identity until the guard drops. Waiting for another request of the same
    /// identity does not spend this request's database budget: that one has its own.
    pub(crate) async fn lock(&self, identity: &CardIdentity) -> OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            if map.len() >= LOCKS_SWEEP_AT {
                map.retain(|_, lock| lock.strong_count() > 0);
            }
            match map.get(identity).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(identity.clone(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        crate::budget::paused(lock.lock_owned()).await
    }
}

/// Terminal batches and MTI classes remembered before all are forgotten (each is read again
/// once, at its next request).
const MARKS_MAX: usize = 65_536;

/// Per terminal batch and MTI class, the highest STAN recorded as far as this process knows (read
/// from the store at the first request, raised by every record this process makes). A first
/// transmission (not a repeat MTI) above it was never recorded by this process, nor before it
/// started: it needs no read to know it is no retransmission. A terminal's STANs rise, so that
/// is nearly every request; a repeat, a STAN that wrapped or went back, is looked up. Another
/// process on the same database may have recorded it meanwhile: the store's identity index
/// refuses the second record, and the caller reverses its issuer request.
#[derive(Debug, Default)]
pub(crate) struct StanMarks {
    marks: Mutex<HashMap<(String, u32, String), u32>>,
}

impl StanMarks {
    fn key(identity: &CardIdentity) -> (String, u32, String) {
        (identity.terminal_id.as_str().to_owned(), identity.batch_no.value(), identity.mti_class.clone())
    }

    /// Whether `identity`'s STAN is above its batch and class's mark; `None` when no mark is
    /// known yet (see [`StanMarks::learn`]).
    pub(crate) fn above(&self, identity: &CardIdentity) -> Option<bool> {
        let marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        marks.get(&Self::key(identity)).map(|&mark| identity.stan.value() > mark)
    }

    /// Remembers the highest STAN the store holds for `identity`'s batch and class (0: none).
    pub(crate) fn learn(&self, identity: &CardIdentity, highest: u32) {
        self.raise(identity, highest);
    }

    /// Remembers that `identity` was recorded.
    pub(crate) fn recorded(&self, identity: &CardIdentity) {
        self.raise(identity, identity.stan.value());
    }

    fn raise(&self, identity: &CardIdentity, stan: u32) {
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        if marks.len() >= MARKS_MAX && !marks.contains_key(&Self::key(identity)) {
            marks.clear();
        }
        let mark = marks.entry(Self::key(identity)).or_insert(stan);
        *mark = (*mark).max(stan);
    }
}

/// The content a retransmission must match (docs/reference/iso8583.md "Exactly once"): processing code,
/// amount, PAN, 60.1 and 61; nothing that changes with keys or time.
pub(crate) fn content_digest(
    processing_code: &[u8],
    amount: &[u8],
    pan: &str,
    type_code: &[u8],
    original: &[u8],
) -> String {
    let mut hasher = Sha256::new();
    for part in [processing_code, amount, pan.as_bytes(), type_code, original] {
        hasher.update((part.len() as u32).to_be_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    fn identity(stan: u32) -> CardIdentity {
        CardIdentity::new("10000001", 1, stan, "020").unwrap()
    }

    #[tokio::test]
    async fn a_duplicate_waits_for_its_original_and_others_do_not() {
        let locks = Arc::new(IdentityLocks::default());
        let held = locks.lock(&identity(1)).await;
        let waiting = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move { drop(locks.lock(&identity(1)).await) })
        };
        // Another identity is not held up.
        tokio::time::timeout(Duration::from_secs(1), locks.lock(&identity(2))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the duplicate must wait");
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), waiting).await.unwrap().unwrap();
    }

    #[test]
    fn a_stan_is_new_above_its_batch_and_class_mark() {
        let marks = StanMarks::default();
        assert_eq!(marks.above(&identity(5)), None, "nothing known: read");
        marks.learn(&identity(1), 4);
        assert_eq!(marks.above(&identity(5)), Some(true));
        assert_eq!(marks.above(&identity(4)), Some(false));
        marks.recorded(&identity(9));
        assert_eq!(marks.above(&identity(9)), Some(false), "recorded here");
        assert_eq!(marks.above(&identity(10)), Some(true));
        // Learning an older mark never lowers it; other batches and classes have their own.
        marks.learn(&identity(1), 2);
        assert_eq!(marks.above(&identity(9)), Some(false));
        assert_eq!(marks.above(&CardIdentity::new("10000001", 2, 1, "020").unwrap()), None);
        assert_eq!(marks.above(&CardIdentity::new("10000001", 1, 1, "040").unwrap()), None);
    }

    #[test]
    fn digests_separate_fields() {
        let one = content_digest(b"000000", b"000000000100", "6222021234567890128", b"22", b"");
        assert_eq!(one, content_digest(b"000000", b"000000000100", "6222021234567890128", b"22", b""));
        assert_ne!(one, content_digest(b"000000", b"000000000101", "6222021234567890128", b"22", b""));
        assert_ne!(
            content_digest(b"0000000", b"00000000100", "6222021234567890128", b"22", b""),
            one,
            "moving a digit between fields changes the digest"
        );
    }
}

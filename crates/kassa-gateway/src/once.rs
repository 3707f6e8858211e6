//! Exactly once, in process: one lock per request identity, so a duplicate that arrives while
//! its original is being processed waits for it. Across processes the store's unique index on
//! the identity decides; this only saves the second process's duplicate a wasted issuer call.

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

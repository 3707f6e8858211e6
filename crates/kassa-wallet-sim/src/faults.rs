//! Faults a test arms to make a wallet misbehave (`POST /sim/v1/faults`): each is armed for the
//! next N matching events of one wallet, counted down as they happen. Kept in memory: a restart
//! disarms everything.

use std::collections::HashMap;
use std::sync::Mutex;

use kassa_wallet::Wallet;

/// The most events one fault can be armed for.
pub const FAULT_COUNT_MAX: u32 = 10_000;

/// A way to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The next notifications are never sent.
    DropNotification,
    /// The next API answers come after [`crate::SimConfig::slow_answer_ms`] (the call is carried
    /// out at once).
    Slow,
    /// The next API calls answer a system error and do nothing.
    Error,
    /// The next API calls are carried out, then the connection closes without an answer.
    LoseAnswer,
    /// The next trade queries answer the state the trade had before its last change.
    StaleQuery,
    /// The next close/cancel calls answer success but the trade stays payable.
    ForgetClose,
    /// The next trades paid are left out of the statements.
    OmitFromStatement,
}

/// The armed faults.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    armed: Mutex<HashMap<(Wallet, Fault), u32>>,
}

impl Faults {
    /// Arms `fault` for the next `count` events of `wallet` (replacing an earlier count).
    pub(crate) fn arm(&self, wallet: Wallet, fault: Fault, count: u32) {
        if let Ok(mut armed) = self.armed.lock() {
            armed.insert((wallet, fault), count.min(FAULT_COUNT_MAX));
        }
    }

    /// Disarms every fault.
    pub(crate) fn disarm_all(&self) {
        if let Ok(mut armed) = self.armed.lock() {
            armed.clear();
        }
    }

    /// Whether `fault` is armed for `wallet`; if so, counts this event.
    pub(crate) fn take(&self, wallet: Wallet, fault: Fault) -> bool {
        let Ok(mut armed) = self.armed.lock() else { return false };
        match armed.get_mut(&(wallet, fault)) {
            Some(count) if *count > 0 => {
                *count -= 1;
                if *count == 0 {
                    armed.remove(&(wallet, fault));
                }
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armed_for_n_events_of_one_wallet() {
        let faults = Faults::default();
        faults.arm(Wallet::Alipay, Fault::Error, 2);
        assert!(!faults.take(Wallet::Wechat, Fault::Error));
        assert!(!faults.take(Wallet::Alipay, Fault::Slow));
        assert!(faults.take(Wallet::Alipay, Fault::Error));
        assert!(faults.take(Wallet::Alipay, Fault::Error));
        assert!(!faults.take(Wallet::Alipay, Fault::Error));
        faults.arm(Wallet::Wechat, Fault::Slow, 5);
        faults.disarm_all();
        assert!(!faults.take(Wallet::Wechat, Fault::Slow));
    }
}

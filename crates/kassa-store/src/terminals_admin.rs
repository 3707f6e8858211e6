//! Terminals as the institution administers them from the back office: a terminal added with
//! its sealed keys (only if the id is free), disabled and enabled again, and the card requests a
//! test transaction (模拟交易) made marked as tests. Writes are constructors of [`Guard`]s and
//! [`WriteOp`]s for the one write path; the one read is [`TerminalsAdminStore`]
//! (`store.terminals_admin()`).
//!
//! A card test is an ordinary sale through the gateway, so it lands in `transactions` like any
//! other; [`mark_card_test`] gives its row an `out_trade_no` starting with
//! [`crate::fleet::TEST_TRADE_PREFIX`], the marker QR tests carry already, which keeps it out of
//! deposit volumes ([`crate::fleet::FleetStore::volume`]) and tells it apart. The update touches
//! neither the status nor the version, so it never races the gateway's own updates of the row.
//! Every statement uses its `$n` placeholders in ascending order of first appearance.

use async_trait::async_trait;

use crate::core::queries::SqlReads;
use crate::core::unit::{Guard, Statement, WriteOp};
use crate::core::value::params;
use crate::fleet::TEST_TRADE_PREFIX;
use crate::{CardIdentity, Store, StoreError, TerminalRecord};

/// A terminal's status: the gateway and TMS serve `active` terminals only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminalStatus {
    /// Served.
    Active,
    /// Refused by the gateway (`97`) and TMS until enabled again.
    Disabled,
}

impl TerminalStatus {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            TerminalStatus::Active => "active",
            TerminalStatus::Disabled => "disabled",
        }
    }

    /// The status of a stored word, `None` for anything else.
    pub fn parse(text: &str) -> Option<TerminalStatus> {
        match text {
            "active" => Some(TerminalStatus::Active),
            "disabled" => Some(TerminalStatus::Disabled),
            _ => None,
        }
    }
}

/// Reads for administering terminals.
#[async_trait]
pub trait TerminalsAdminStore: Send + Sync {
    /// The STAN of the latest card request of `terminal_id` that is not a test, in its latest
    /// batch that has one; `None` when it never made one. A test transaction picks its STANs far
    /// from it, so the terminal's own next requests cannot meet them in the same batch.
    async fn latest_stan(&self, terminal_id: &str) -> Result<Option<u32>, StoreError>;
}

#[async_trait]
impl TerminalsAdminStore for SqlReads {
    async fn latest_stan(&self, terminal_id: &str) -> Result<Option<u32>, StoreError> {
        // The index on (terminal_id, batch_no) finds the latest batch; ids grow with time.
        let sql = "SELECT stan FROM transactions WHERE terminal_id = $1 AND stan IS NOT NULL \
                   AND (out_trade_no IS NULL OR out_trade_no NOT LIKE $2) ORDER BY batch_no DESC, id DESC LIMIT 1";
        let test = format!("{TEST_TRADE_PREFIX}%");
        let stan = self.one(sql, &params![terminal_id, test], |row| row.int(0)).await?;
        stan.map(|stan| u32::try_from(stan).map_err(|_| StoreError::Corrupt(format!("STAN {stan}")))).transpose()
    }
}

impl Store {
    /// Administering terminals (`terminals_admin` module).
    pub fn terminals_admin(&self) -> &dyn TerminalsAdminStore {
        &*self.reads
    }
}

/// The guard that adds `terminal` unless a terminal with its id exists (`Duplicate`: nothing
/// written, the existing one untouched). Pair it with the audit event.
pub fn add_terminal(terminal: &TerminalRecord) -> Guard {
    Guard::Statement(Statement {
        sql: "INSERT INTO terminals (terminal_id, merchant_id, refund_password_mode, mac_algorithm, tmk_sealed, \
              tms_secret_sealed, open_batch, status, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
              ON CONFLICT (terminal_id) DO NOTHING",
        params: params![
            terminal.terminal_id.as_str(),
            terminal.merchant_id.as_str(),
            terminal.refund_password_mode.as_str(),
            terminal.mac_algorithm.as_str(),
            terminal.tmk_sealed.clone(),
            terminal.tms_secret_sealed.clone(),
            terminal.open_batch,
            terminal.status.as_str(),
            terminal.created_at_ms
        ]
        .to_vec(),
    })
}

/// The guard that sets the status of `merchant_id`'s terminal `terminal_id`: passes only when it
/// changes it (`Duplicate` when the terminal is not the merchant's or has that status already).
/// Pair it with the audit event.
pub fn set_terminal_status(terminal_id: &str, merchant_id: &str, status: TerminalStatus) -> Guard {
    Guard::Statement(Statement {
        sql: "UPDATE terminals SET status = $1 WHERE terminal_id = $2 AND merchant_id = $3 AND status <> $1",
        params: params![status.as_str(), terminal_id, merchant_id].to_vec(),
    })
}

/// Marks the card request of `identity` as a test transaction: its `out_trade_no` becomes
/// `out_trade_no` (which must start with [`TEST_TRADE_PREFIX`] and be unique for the merchant).
/// Changes nothing when the host recorded no such request, or marked it already.
pub fn mark_card_test(identity: &CardIdentity, out_trade_no: &str, at_ms: i64) -> WriteOp {
    debug_assert!(out_trade_no.starts_with(TEST_TRADE_PREFIX), "a test's number starts with the test prefix");
    WriteOp::Statement {
        statement: Statement {
            sql: "UPDATE transactions SET out_trade_no = $1, updated_at_ms = $2 WHERE terminal_id = $3 \
                  AND batch_no = $4 AND stan = $5 AND mti_class = $6 AND out_trade_no IS NULL",
            params: params![
                out_trade_no,
                at_ms,
                identity.terminal_id.as_str(),
                identity.batch_no.value(),
                identity.stan.value(),
                identity.mti_class.as_str()
            ]
            .to_vec(),
        },
        may_change_nothing: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_as_written() {
        for status in [TerminalStatus::Active, TerminalStatus::Disabled] {
            assert_eq!(TerminalStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(TerminalStatus::parse("retired"), None);
    }

    #[test]
    fn placeholders_ascend_in_order_of_first_appearance() {
        let statements = [
            match add_terminal(&TerminalRecord {
                terminal_id: "10000009".into(),
                merchant_id: "898100000000001".into(),
                refund_password_mode: crate::RefundPasswordMode::Device,
                mac_algorithm: "x919".into(),
                tmk_sealed: vec![1],
                tms_secret_sealed: vec![2],
                open_batch: 1,
                status: "active".into(),
                created_at_ms: 1,
            }) {
                Guard::Statement(statement) => statement,
                other => panic!("{other:?}"),
            },
            match set_terminal_status("10000009", "898100000000001", TerminalStatus::Disabled) {
                Guard::Statement(statement) => statement,
                other => panic!("{other:?}"),
            },
        ];
        for statement in statements {
            let mut next = 1;
            let mut rest = statement.sql;
            while let Some(at) = rest.find('$') {
                let digits: String = rest[at + 1..].chars().take_while(char::is_ascii_digit).collect();
                let number: usize = digits.parse().unwrap();
                assert!(number <= next, "{}", statement.sql);
                if number == next {
                    next += 1;
                }
                rest = &rest[at + 1..];
            }
            assert_eq!(next - 1, statement.params.len(), "{}", statement.sql);
        }
    }
}

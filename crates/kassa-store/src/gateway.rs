//! The ISO 8583 gateway's aggregate: per-terminal working keys and the journal of issuer
//! reversals owed. Reads through [`GatewayStore`] (`store.gateway()`), writes through the
//! constructors below, which build [`WriteOp`]s for the one write path.

use async_trait::async_trait;

use crate::core::queries::SqlReads;
use crate::core::records::CardIdentity;
use crate::core::unit::{Guard, Statement, WriteOp, WriteUnit};
use crate::core::value::{params, Row};
use crate::StoreError;

/// A terminal's working keys of its latest sign-in.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkingKeysRecord {
    /// The terminal.
    pub terminal_id: String,
    /// Bumped by every sign-in; a process holding an older generation reloads.
    pub generation: i64,
    /// Field 62 of the 0810 (keys under the TMK), sealed again under the master key.
    pub keys_sealed: Vec<u8>,
    /// When the terminal signed in, Unix milliseconds.
    pub signed_in_at_ms: i64,
}

impl std::fmt::Debug for WorkingKeysRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkingKeysRecord")
            .field("terminal_id", &self.terminal_id)
            .field("generation", &self.generation)
            .field("keys_sealed", &"<sealed>")
            .field("signed_in_at_ms", &self.signed_in_at_ms)
            .finish()
    }
}

/// An issuer reversal the host owes (journaled before it is attempted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerReversalRecord {
    /// The issuer request to reverse.
    pub request_id: String,
    /// The transaction it belongs to.
    pub txn_id: Option<i64>,
    /// `timeout`, `reversal` or `void`.
    pub reason: String,
    /// When it was journaled, Unix milliseconds.
    pub created_at_ms: i64,
    /// Attempts so far.
    pub attempts: i64,
    /// When the issuer confirmed it, Unix milliseconds.
    pub done_at_ms: Option<i64>,
}

/// Reads of the gateway's aggregate.
#[async_trait]
pub trait GatewayStore: Send + Sync {
    /// The working keys of a terminal's latest sign-in.
    async fn working_keys(&self, terminal_id: &str) -> Result<Option<WorkingKeysRecord>, StoreError>;
    /// One issuer reversal by request id.
    async fn issuer_reversal(&self, request_id: &str) -> Result<Option<IssuerReversalRecord>, StoreError>;
    /// Issuer reversals not yet confirmed, oldest first, at most `limit`.
    async fn issuer_reversals_owed(&self, limit: i64) -> Result<Vec<IssuerReversalRecord>, StoreError>;
    /// Ids of card transactions still pending that were created before `created_before_ms`,
    /// oldest first, at most `limit` (crash recovery).
    async fn stale_pending_card_txns(&self, created_before_ms: i64, limit: i64) -> Result<Vec<i64>, StoreError>;
    /// Who credited the offline sale of this terminal identity (`upload:<txn id>` or
    /// `correction:<id>`), if anyone did.
    async fn offline_credit(&self, terminal_id: &str, batch_no: u32, stan: u32) -> Result<Option<String>, StoreError>;
    /// The highest STAN recorded in a terminal's batch for an MTI class, if any.
    async fn highest_stan(&self, identity: &CardIdentity) -> Result<Option<u32>, StoreError>;
    /// Id blocks still open that were reserved before `reserved_before_ms`, oldest first, at
    /// most `limit` (crash recovery: the host that reserved them stopped).
    async fn open_id_blocks(&self, reserved_before_ms: i64, limit: i64) -> Result<Vec<IdBlockRecord>, StoreError>;
}

/// A block of transaction ids reserved for issuer requests ([`WriteOp::ReserveTxnIds`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdBlockRecord {
    /// Its first id.
    pub block_id: i64,
    /// Its ids.
    pub ranges: IdRanges,
    /// When it was reserved, Unix milliseconds.
    pub reserved_at_ms: i64,
}

/// Ids as ascending, disjoint, inclusive ranges; stored as `first-last` ranges, comma
/// separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdRanges(Vec<(i64, i64)>);

/// Ranges an id block holds at most (its ids come from a sequence other writers draw from too).
const ID_RANGES_MAX: usize = 4_096;

impl IdRanges {
    /// The ranges of `ids` (ascending).
    pub fn of(ids: &[i64]) -> IdRanges {
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        for &id in ids {
            match ranges.last_mut() {
                Some((_, last)) if last.checked_add(1) == Some(id) => *last = id,
                _ => ranges.push((id, id)),
            }
        }
        IdRanges(ranges)
    }

    /// The ranges, ascending.
    pub fn ranges(&self) -> &[(i64, i64)] {
        &self.0
    }

    /// Parses the stored form; `None` when it is not one.
    pub fn parse(text: &str) -> Option<IdRanges> {
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let (first, last) = part.split_once('-')?;
            let (first, last) = (first.parse::<i64>().ok()?, last.parse::<i64>().ok()?);
            let after_previous = ranges.last().is_none_or(|&(_, previous): &(i64, i64)| previous < first);
            if first > last || !after_previous || ranges.len() == ID_RANGES_MAX {
                return None;
            }
            ranges.push((first, last));
        }
        Some(IdRanges(ranges))
    }
}

impl std::fmt::Display for IdRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, (first, last)) in self.0.iter().enumerate() {
            let comma = if index == 0 { "" } else { "," };
            write!(f, "{comma}{first}-{last}")?;
        }
        Ok(())
    }
}

/// Closes an id block: from then on no transaction is inserted under its ids, and each of
/// `handed_out` (its ids a request may have been sent to the issuer under: all of them for a
/// block whose host stopped) that has no transaction is owed a reversal at the issuer, as
/// request `<request_prefix><id>`. `Duplicate` when the block was closed already.
pub fn close_id_block(block_id: i64, handed_out: &IdRanges, request_prefix: &str, at_ms: i64) -> WriteUnit {
    let close = Statement {
        sql: "UPDATE gateway_id_blocks SET closed_at_ms = $1 WHERE block_id = $2 AND closed_at_ms IS NULL",
        params: params![at_ms, block_id].to_vec(),
    };
    let owe = handed_out
        .ranges()
        .iter()
        .map(|&(first, last)| WriteOp::Statement {
            statement: Statement {
                // Runs after the close above, which waited for every insert still holding the
                // block: each of those is seen here.
                sql: "WITH RECURSIVE ids (id) AS (SELECT CAST($1 AS BIGINT) UNION ALL SELECT id + 1 FROM ids WHERE id < $2) \
                      INSERT INTO gateway_issuer_reversals (request_id, txn_id, reason, created_at_ms) \
                      SELECT $3 || CAST(ids.id AS TEXT), NULL, 'unrecorded', $4 FROM ids \
                      WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.id = ids.id) \
                      ON CONFLICT (request_id) DO NOTHING",
                params: params![first, last, request_prefix, at_ms].to_vec(),
            },
            may_change_nothing: true,
        })
        .collect();
    WriteUnit::guarded(Guard::Statement(close), owe)
}

/// Closed id blocks deleted per prune.
pub const ID_BLOCKS_PRUNED_MAX: i64 = 1_000;

/// Deletes up to [`ID_BLOCKS_PRUNED_MAX`] id blocks closed before `closed_before_ms`, oldest
/// first. Open blocks stay, and so does the highest block ever reserved, closed or not: ids are
/// drawn past it (SQLite's writer starts its counter after the highest reserved id), so an id
/// an issuer may have heard of is never reused. A transaction under a deleted block's id is
/// refused, as under a closed one.
pub fn prune_id_blocks(closed_before_ms: i64) -> WriteUnit {
    WriteUnit::ops(vec![WriteOp::Statement {
        statement: Statement {
            sql: "DELETE FROM gateway_id_blocks WHERE block_id IN (SELECT block_id FROM gateway_id_blocks \
                  WHERE closed_at_ms < $1 AND block_id < (SELECT MAX(block_id) FROM gateway_id_blocks) \
                  ORDER BY block_id LIMIT $2)",
            params: params![closed_before_ms, ID_BLOCKS_PRUNED_MAX].to_vec(),
        },
        may_change_nothing: true,
    }])
}

fn working_keys(row: &Row) -> Result<WorkingKeysRecord, StoreError> {
    Ok(WorkingKeysRecord {
        terminal_id: row.text(0)?,
        generation: row.int(1)?,
        keys_sealed: row.bytes(2)?,
        signed_in_at_ms: row.int(3)?,
    })
}

fn issuer_reversal(row: &Row) -> Result<IssuerReversalRecord, StoreError> {
    Ok(IssuerReversalRecord {
        request_id: row.text(0)?,
        txn_id: row.opt_int(1)?,
        reason: row.text(2)?,
        created_at_ms: row.int(3)?,
        attempts: row.int(4)?,
        done_at_ms: row.opt_int(5)?,
    })
}

const REVERSAL_COLUMNS: &str = "request_id, txn_id, reason, created_at_ms, attempts, done_at_ms";

#[async_trait]
impl GatewayStore for SqlReads {
    async fn working_keys(&self, terminal_id: &str) -> Result<Option<WorkingKeysRecord>, StoreError> {
        self.one(
            "SELECT terminal_id, generation, keys_sealed, signed_in_at_ms FROM gateway_working_keys WHERE terminal_id = $1",
            &params![terminal_id],
            working_keys,
        )
        .await
    }

    async fn issuer_reversal(&self, request_id: &str) -> Result<Option<IssuerReversalRecord>, StoreError> {
        let sql = format!("SELECT {REVERSAL_COLUMNS} FROM gateway_issuer_reversals WHERE request_id = $1");
        self.one(&sql, &params![request_id], issuer_reversal).await
    }

    async fn issuer_reversals_owed(&self, limit: i64) -> Result<Vec<IssuerReversalRecord>, StoreError> {
        let sql = format!(
            "SELECT {REVERSAL_COLUMNS} FROM gateway_issuer_reversals WHERE done_at_ms IS NULL \
             ORDER BY created_at_ms, request_id LIMIT $1"
        );
        self.all(&sql, &params![limit], issuer_reversal).await
    }

    async fn stale_pending_card_txns(&self, created_before_ms: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        self.all(
            "SELECT id FROM transactions WHERE status = 'pending' AND channel = 'card' AND created_at_ms < $1 \
             ORDER BY created_at_ms, id LIMIT $2",
            &params![created_before_ms, limit],
            |row| row.int(0),
        )
        .await
    }

    async fn highest_stan(&self, identity: &CardIdentity) -> Result<Option<u32>, StoreError> {
        let highest = self
            .one(
                "SELECT MAX(stan) FROM transactions WHERE terminal_id = $1 AND batch_no = $2 AND mti_class = $3",
                &params![identity.terminal_id.as_str(), identity.batch_no.value(), identity.mti_class.as_str()],
                |row| row.opt_int(0),
            )
            .await?
            .flatten();
        highest.map(|stan| u32::try_from(stan).map_err(|_| StoreError::Corrupt(format!("STAN {stan}")))).transpose()
    }

    async fn open_id_blocks(&self, reserved_before_ms: i64, limit: i64) -> Result<Vec<IdBlockRecord>, StoreError> {
        self.all(
            "SELECT block_id, ranges, reserved_at_ms FROM gateway_id_blocks \
             WHERE closed_at_ms IS NULL AND reserved_at_ms < $1 ORDER BY reserved_at_ms, block_id LIMIT $2",
            &params![reserved_before_ms, limit],
            |row| {
                let text = row.text(1)?;
                let ranges =
                    IdRanges::parse(&text).ok_or_else(|| StoreError::Corrupt(format!("id block ranges {text:?}")))?;
                Ok(IdBlockRecord { block_id: row.int(0)?, ranges, reserved_at_ms: row.int(2)? })
            },
        )
        .await
    }

    async fn offline_credit(&self, terminal_id: &str, batch_no: u32, stan: u32) -> Result<Option<String>, StoreError> {
        self.one(
            "SELECT credited_by FROM offline_credits WHERE terminal_id = $1 AND batch_no = $2 AND stan = $3",
            &params![terminal_id, batch_no, stan],
            |row| row.text(0),
        )
        .await
    }
}

/// Stores the working keys of a sign-in, replacing the previous sign-in's (whose keys stop
/// working). The generation is the previous one plus one, computed in the database so that two
/// processes signing the same terminal in never reuse a generation.
pub fn put_working_keys(terminal_id: &str, keys_sealed: Vec<u8>, signed_in_at_ms: i64) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            sql: "INSERT INTO gateway_working_keys (terminal_id, generation, keys_sealed, signed_in_at_ms) \
                  VALUES ($1, 1, $2, $3) ON CONFLICT (terminal_id) DO UPDATE SET \
                  generation = gateway_working_keys.generation + 1, keys_sealed = excluded.keys_sealed, \
                  signed_in_at_ms = excluded.signed_in_at_ms",
            params: params![terminal_id, keys_sealed, signed_in_at_ms].to_vec(),
        },
        may_change_nothing: false,
    }
}

/// Journals an issuer reversal the host owes; journaling the same request twice changes
/// nothing.
pub fn owe_issuer_reversal(request_id: &str, txn_id: Option<i64>, reason: &str, at_ms: i64) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            sql: "INSERT INTO gateway_issuer_reversals (request_id, txn_id, reason, created_at_ms) \
                  VALUES ($1, $2, $3, $4) ON CONFLICT (request_id) DO NOTHING",
            params: params![request_id, txn_id, reason, at_ms].to_vec(),
        },
        may_change_nothing: true,
    }
}

/// Claims the one credit of an offline sale (离线消费), named by its terminal identity, for
/// `credited_by` (`upload:<txn id>` or `correction:<id>`). When the sale was credited already the
/// op changes no row and fails its whole unit with [`StoreError::Conflict`]: the caller commits
/// again without the credit.
pub fn claim_offline_credit(terminal_id: &str, batch_no: u32, stan: u32, credited_by: &str, at_ms: i64) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            sql: "INSERT INTO offline_credits (terminal_id, batch_no, stan, credited_by, at_ms) \
                  VALUES ($1, $2, $3, $4, $5) ON CONFLICT (terminal_id, batch_no, stan) DO NOTHING",
            params: params![terminal_id, batch_no, stan, credited_by, at_ms].to_vec(),
        },
        may_change_nothing: false,
    }
}

/// Records one attempt at an issuer reversal; `done` when the issuer confirmed it.
pub fn issuer_reversal_attempted(request_id: &str, done: bool, at_ms: i64) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            // SQLite numbers `$n` parameters by first appearance: keep them in order.
            sql: "UPDATE gateway_issuer_reversals SET attempts = attempts + 1, \
                  done_at_ms = CASE WHEN $1 THEN $2 ELSE done_at_ms END WHERE request_id = $3",
            params: params![done, at_ms, request_id].to_vec(),
        },
        may_change_nothing: true,
    }
}

/// Forgets a terminal's working keys (sign-out): its next financial request gets `77`.
pub fn delete_working_keys(terminal_id: &str) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            sql: "DELETE FROM gateway_working_keys WHERE terminal_id = $1",
            params: params![terminal_id].to_vec(),
        },
        may_change_nothing: true,
    }
}

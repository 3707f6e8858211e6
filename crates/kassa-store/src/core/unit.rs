//! What a writer hands the committer, and how it is written: a [`WriteUnit`] (an optional
//! admission, an optional [`Guard`], then [`WriteOp`]s), its lowering into SQL statements
//! ([`Planned`] writes), the audit chain ([`audit_hash`]), and the traits a backend implements
//! to run them inside its batch transaction ([`Exec`], [`BatchWriter`]).
//!
//! A unit may start with a guard: an insert that must not collide with an existing row (a card
//! request's identity, a trade's `out_trade_no`, an idempotency key) or an optimistic update of
//! a transaction's version. If the guard fails, the unit's other ops are skipped and the caller
//! learns why (a duplicate to replay, a concurrent update to retry); nothing of it is written.

use std::collections::BTreeMap;

use async_trait::async_trait;
use kassa_domain::TxnStatus;
use kassa_ledger::JournalEntry;
use sha2::{Digest, Sha256};

use crate::core::records::{
    ApiKeyRecord, AuditEvent, BackofficeUserRecord, BatchKey, CardIdentity, GatewayAppRecord, IdempotencyRecord,
    MerchantRecord, MerchantSecretRecord, NewTxn, OperatorRecord, StoredAnswer, TerminalRecord, TxnUpdate,
};
use crate::core::value::{params, Row, Value};
use crate::StoreError;

/// The first guard of a unit.
#[derive(Debug, Clone)]
pub enum Guard {
    /// Insert a transaction unless its identity (card identity or `out_trade_no`) exists.
    InsertTxn(Box<NewTxn>),
    /// Insert a transaction under an id reserved before its issuer request was sent
    /// ([`WriteOp::ReserveTxnIds`]) unless its identity exists. While the unit is written its
    /// id block is held open; when the block was closed already (its ids are then owed a
    /// reversal at the issuer) the unit fails with [`StoreError::Conflict`].
    InsertReservedTxn(Box<NewTxn>, ReservedId),
    /// Update a transaction only if its version is still the expected one.
    UpdateTxn(TxnUpdate),
    /// Store an idempotency key unless it exists.
    InsertIdempotency(IdempotencyRecord),
    /// A statement built by one of this crate's aggregate modules (e.g. "insert this nonce
    /// unless it exists"): passes when it changed at least one row.
    Statement(Statement),
}

/// A transaction id taken from a block reserved by [`WriteOp::ReserveTxnIds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedId {
    /// The id.
    pub id: i64,
    /// The block it was reserved in.
    pub block_id: i64,
}

/// A write statement built inside this crate by an aggregate module's constructor functions;
/// its SQL never comes from outside the store.
#[derive(Debug, Clone)]
pub struct Statement {
    pub(crate) sql: &'static str,
    pub(crate) params: Vec<Value>,
}

/// An unconditional write.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Post a balanced journal entry (and update the cached balances).
    PostEntry {
        /// The entry.
        entry: JournalEntry,
        /// Creation time, Unix milliseconds.
        at_ms: i64,
    },
    /// Post a balanced journal entry that accounts for the transaction `txn_id` (the one the
    /// same unit records under an id reserved before): found by that transaction
    /// ([`crate::LedgerStore::entries_of_txn`]), not by its reference, which no index holds for it.
    PostTxnEntry {
        /// The entry.
        entry: JournalEntry,
        /// The transaction it accounts for.
        txn_id: i64,
        /// Creation time, Unix milliseconds.
        at_ms: i64,
    },
    /// Update another transaction (e.g. mark the original of a void as voided).
    UpdateTxn(TxnUpdate),
    /// Append to the audit log (the committer chains it).
    Audit(AuditEvent),
    /// Insert or replace a merchant.
    PutMerchant(MerchantRecord),
    /// Insert or replace a terminal.
    PutTerminal(TerminalRecord),
    /// Set the open batch of a terminal.
    SetOpenBatch {
        /// The terminal.
        terminal_id: String,
        /// The new open batch.
        batch_no: u32,
    },
    /// Insert or replace an operator.
    PutOperator(OperatorRecord),
    /// Insert or replace a back-office user.
    PutBackofficeUser(BackofficeUserRecord),
    /// Insert or replace a merchant secret.
    PutMerchantSecret(MerchantSecretRecord),
    /// Register an API key digest.
    PutApiKey(ApiKeyRecord),
    /// Register a gateway app.
    PutGatewayApp(GatewayAppRecord),
    /// A statement built by one of this crate's aggregate modules; must change at least one row
    /// unless `may_change_nothing`.
    Statement {
        /// The statement.
        statement: Statement,
        /// Whether changing no row is fine (an upsert that found nothing to do).
        may_change_nothing: bool,
    },
    /// Reserve `count` transaction ids for issuer requests, journaled as one block
    /// (`gateway_id_blocks`) whose id is its first; they come back in
    /// [`UnitOutcome::Committed::reserved_ids`].
    ReserveTxnIds {
        /// How many.
        count: usize,
        /// Reservation time, Unix milliseconds.
        at_ms: i64,
    },
    /// Insert or replace a setting.
    PutSetting {
        /// Scope (`platform`, a merchant id, …).
        scope: String,
        /// Name.
        name: String,
        /// Value.
        value: serde_json::Value,
        /// Update time, Unix milliseconds.
        at_ms: i64,
    },
}

/// Everything one caller wants written atomically.
#[derive(Debug, Clone, Default)]
pub struct WriteUnit {
    /// Checked before anything else (e.g. "this request's nonce was never seen"): when it
    /// changes no row the unit is [`UnitOutcome::Refused`] and nothing of it is written. Once it
    /// passed it is written whatever `guard` then finds: it records that the request was
    /// seen, so the request's first real write also admits it, in one commit instead of two.
    pub admission: Option<Guard>,
    /// Checked next; on failure nothing else is written.
    pub guard: Option<Guard>,
    /// Written when the guard passed (or there is none).
    pub ops: Vec<WriteOp>,
}

impl WriteUnit {
    /// A unit of unconditional ops.
    pub fn ops(ops: Vec<WriteOp>) -> WriteUnit {
        WriteUnit { admission: None, guard: None, ops }
    }

    /// A guarded unit.
    pub fn guarded(guard: Guard, ops: Vec<WriteOp>) -> WriteUnit {
        WriteUnit { admission: None, guard: Some(guard), ops }
    }

    /// This unit, written only if `admission` passes first (see [`WriteUnit::admission`]).
    pub fn admitted_by(self, admission: Guard) -> WriteUnit {
        WriteUnit { admission: Some(admission), ..self }
    }

    /// Rows this unit writes when it succeeds (for throughput figures).
    pub fn row_count(&self) -> usize {
        let guard = usize::from(self.admission.is_some()) + usize::from(self.guard.is_some());
        guard
            + self
                .ops
                .iter()
                .map(|op| match op {
                    // The entry, its postings and one balance row per posting.
                    WriteOp::PostEntry { entry, .. } | WriteOp::PostTxnEntry { entry, .. } => {
                        1 + 2 * entry.postings().len()
                    }
                    _ => 1,
                })
                .sum::<usize>()
    }
}

/// What happened to a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitOutcome {
    /// Committed. `txn_id` is the id of a transaction the guard inserted.
    Committed {
        /// The inserted transaction's id, for an `InsertTxn` guard.
        txn_id: Option<i64>,
        /// Ids of the journal entries posted, in op order.
        entry_ids: Vec<i64>,
        /// The transaction ids a [`WriteOp::ReserveTxnIds`] reserved, ascending.
        reserved_ids: Vec<i64>,
    },
    /// The guard's identity exists already: nothing was written. Carries the existing
    /// transaction's id (for `InsertTxn`) — the caller replays its stored answer.
    Duplicate {
        /// The existing transaction, for an `InsertTxn` guard.
        existing_txn_id: Option<i64>,
    },
    /// An `UpdateTxn` guard found another version: nothing was written; re-read and retry.
    VersionConflict,
    /// The unit's admission changed no row (e.g. a replayed nonce): nothing was written.
    Refused,
}

/// A sequence the store allocates ids from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sequence {
    Transactions,
    LedgerEntries,
}

/// A database connection inside an open transaction, as the write path needs it. SQLite
/// implements it with synchronous calls (it never suspends), PostgreSQL with real awaits.
#[async_trait]
pub(crate) trait Exec: Send {
    async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError>;
    /// Executes the statements in order and returns how many rows each changed. PostgreSQL
    /// pipelines them (one round trip for the lot); SQLite runs them one after another.
    async fn execute_many(&mut self, statements: &[Statement]) -> Result<Vec<u64>, StoreError>;
    async fn next_ids(&mut self, sequence: Sequence, count: usize) -> Result<Vec<i64>, StoreError>;
    /// Holds the audit chain's head until the transaction ends, so that two transactions
    /// writing at once (several writers, several hosts) append one after the other instead of
    /// both after the same head. A no-op where one transaction writes at a time (SQLite).
    async fn lock_audit_chain(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether the id block `block_id` is open and reaches `highest_id`, held so until the
    /// transaction ends: a close waits for the transaction, and one that came first is seen.
    /// Where one transaction writes at a time (SQLite) reading it is enough.
    async fn hold_id_block(&mut self, block_id: i64, highest_id: i64) -> Result<bool, StoreError> {
        let rows = self
            .query(
                "SELECT closed_at_ms FROM gateway_id_blocks WHERE block_id = $1 AND last_id >= $2",
                &params![block_id, highest_id],
            )
            .await?;
        Ok(matches!(rows.first().map(|row| row.opt_int(0)), Some(Ok(None))))
    }
    /// [`Exec::hold_id_block`] as a statement sent with the guards (it changes one row when the
    /// block is open), where a round trip of its own would cost more than the statement
    /// (PostgreSQL); `None`: [`Exec::hold_id_block`] is called instead.
    fn id_block_fence(&self, _block_id: i64, _highest_id: i64) -> Option<Statement> {
        None
    }
    /// Writes `planned` as if one statement after another, in order, and returns how many rows
    /// each changed. The default is one statement each ([`Planned::into_statement`]); a backend
    /// whose statements are costly (PostgreSQL) writes rows of a kind together where that
    /// cannot change any outcome.
    async fn execute_planned(&mut self, planned: Vec<Planned<'_>>) -> Result<Vec<u64>, StoreError> {
        let statements: Vec<Statement> = planned.into_iter().map(Planned::into_statement).collect();
        self.execute_many(&statements).await
    }
}

/// One write as the common code plans it: the hot kinds (the card sale's rows) as rows, every
/// other kind as its statement.
#[derive(Debug, Clone)]
pub(crate) enum Planned<'a> {
    /// A guarded transaction insert: changes nothing when an identity exists.
    InsertTxn { id: i64, txn: &'a NewTxn },
    /// A guarded transaction update: changes nothing when the version moved on.
    UpdateTxn(&'a TxnUpdate),
    /// A journal entry's row, with the transaction it accounts for, if any.
    Entry { id: i64, entry: &'a JournalEntry, at_ms: i64, txn_id: Option<i64> },
    /// A change of an account's cached balance (created at zero if new); at most one per
    /// account in a batch.
    Balance { account_key: String, account: &'a kassa_ledger::Account, delta_minor: i64 },
    /// A posting; comes after its entry and its account's balance.
    Posting { entry_id: i64, line: i64, account_key: String, amount_minor: i64 },
    /// The version of a batch whose transactions the batch writes, bumped by how many of its
    /// transaction writes the batch makes; at most one per batch key in a batch, before any
    /// other write of the ops' phase.
    BatchVersion { key: BatchKey, bump: i64 },
    /// Any other write.
    Statement(Statement),
}

impl Planned<'_> {
    /// The transaction a transaction write names.
    pub(crate) fn txn_id(&self) -> Option<i64> {
        match self {
            Planned::InsertTxn { id, .. } => Some(*id),
            Planned::UpdateTxn(update) => Some(update.id),
            _ => None,
        }
    }

    /// The one statement that writes it.
    pub(crate) fn into_statement(self) -> Statement {
        match self {
            Planned::InsertTxn { id, txn } => insert_txn_statement(id, txn),
            Planned::UpdateTxn(update) => update_txn_statement(update),
            Planned::Entry { id, entry, at_ms, txn_id } => entry_statement(id, entry, at_ms, txn_id),
            Planned::Balance { account_key, account, delta_minor } => {
                balance_statement(account_key, account, delta_minor)
            }
            Planned::Posting { entry_id, line, account_key, amount_minor } => {
                posting_statement(entry_id, line, account_key, amount_minor)
            }
            Planned::BatchVersion { key, bump } => batch_version_statement(&key, bump),
            Planned::Statement(statement) => statement,
        }
    }
}

impl WriteOp {
    /// A journal entry to post: the entry, its time and the transaction it accounts for.
    fn entry(&self) -> Option<(&JournalEntry, i64, Option<i64>)> {
        match self {
            WriteOp::PostEntry { entry, at_ms } => Some((entry, *at_ms, None)),
            WriteOp::PostTxnEntry { entry, txn_id, at_ms } => Some((entry, *at_ms, Some(*txn_id))),
            _ => None,
        }
    }
}

/// A writer connection: begins and ends the batch transaction around [`apply_units`].
#[async_trait]
pub(crate) trait BatchWriter: Send {
    async fn write_batch(&mut self, units: &[WriteUnit]) -> Result<Vec<UnitOutcome>, StoreError>;
}

fn statement(sql: &'static str, params: Vec<Value>) -> Statement {
    Statement { sql, params }
}

/// What an op's statement must have changed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Anything (an upsert, an insert that fails loudly on its own).
    Any,
    /// At least one row, else the unit conflicts with a concurrent change.
    SomeRow,
}

/// Applies `units` inside the caller's open transaction, as if one after another, in two
/// pipelined phases: first every unit's guard, then the ops of the units whose guard passed.
/// Balance changes of the whole batch are summed per account first, so a batch touches each
/// account row once however many entries it posts.
pub(crate) async fn apply_units(exec: &mut dyn Exec, units: &[WriteUnit]) -> Result<Vec<UnitOutcome>, StoreError> {
    check_txn_writes(units)?;
    let mut outcomes = check_guards(exec, units).await?;
    let passed: Vec<(usize, &WriteUnit)> =
        units.iter().enumerate().filter(|(i, _)| matches!(outcomes[*i], UnitOutcome::Committed { .. })).collect();
    let entry_count = passed.iter().flat_map(|(_, u)| &u.ops).filter(|op| op.entry().is_some()).count();
    let mut entry_ids = exec.next_ids(Sequence::LedgerEntries, entry_count).await?.into_iter();
    let mut audit_head = None;
    // The versions of the batches written to first: a close later in this batch (a module
    // statement checking its batch's version) then sees every write of the batch to its batch,
    // and one earlier refuses conservatively, as if it came after them.
    let mut planned: Vec<Planned<'_>> =
        batch_bumps(units, &outcomes)?.into_iter().map(|(key, bump)| Planned::BatchVersion { key, bump }).collect();
    // What each planned write must change, and the first words of its SQL for the error.
    let mut expectations: Vec<(Expect, &'static str)> = vec![(Expect::Any, ""); planned.len()];
    let mut postings = Vec::new();
    let mut balances: BTreeMap<String, (&kassa_ledger::Account, i64)> = BTreeMap::new();
    for (index, unit) in passed {
        for op in &unit.ops {
            if let Some((entry, at_ms, txn_id)) = op.entry() {
                let id = entry_ids.next().ok_or_else(|| StoreError::Corrupt("ledger entry ids ran out".into()))?;
                let UnitOutcome::Committed { entry_ids, txn_id: inserted, .. } = &mut outcomes[index] else {
                    return Err(StoreError::Corrupt("an entry of a unit that was not written".into()));
                };
                entry_ids.push(id);
                // An entry accounts for a transaction its own unit writes, never another's.
                if txn_id.is_some_and(|txn_id| *inserted != Some(txn_id) && !unit_updates(unit, txn_id)) {
                    return Err(StoreError::Corrupt(format!(
                        "an entry for transaction {txn_id:?}, which its unit does not write"
                    )));
                }
                planned.push(Planned::Entry { id, entry, at_ms, txn_id });
                expectations.push((Expect::Any, ""));
                for (line, posting) in entry.postings().iter().enumerate() {
                    let key = posting.account.key();
                    let balance = balances.entry(key.clone()).or_insert_with(|| (&posting.account, 0));
                    balance.1 = balance
                        .1
                        .checked_add(posting.amount.minor())
                        .ok_or(StoreError::Corrupt("balance overflow".into()))?;
                    let line = i64::try_from(line).map_err(|_| StoreError::Corrupt("too many postings".into()))?;
                    postings.push(Planned::Posting {
                        entry_id: id,
                        line,
                        account_key: key,
                        amount_minor: posting.amount.minor(),
                    });
                }
                continue;
            }
            if let WriteOp::ReserveTxnIds { count, at_ms } = op {
                let mut ids = exec.next_ids(Sequence::Transactions, *count).await?;
                ids.sort_unstable();
                let statement = reserve_statement(&ids, *at_ms)?;
                if let UnitOutcome::Committed { reserved_ids, .. } = &mut outcomes[index] {
                    reserved_ids.extend(ids);
                }
                expectations.push((Expect::SomeRow, statement.sql));
                planned.push(Planned::Statement(statement));
                continue;
            }
            let (statement, expect) = op_statement(exec, op, &mut audit_head).await?;
            expectations.push((expect, statement.sql));
            planned.push(Planned::Statement(statement));
        }
    }
    assert_postings_refer_to_batch(&planned, &balances, &postings)?;
    // Accounts before postings: a posting refers to its account row.
    for (account_key, (account, delta_minor)) in balances {
        planned.push(Planned::Balance { account_key, account, delta_minor });
        expectations.push((Expect::Any, ""));
    }
    expectations.extend(std::iter::repeat_n((Expect::Any, ""), postings.len()));
    planned.extend(postings);
    let changed = exec.execute_planned(planned).await?;
    if changed.len() != expectations.len() {
        return Err(StoreError::Corrupt("a write's outcome is missing".into()));
    }
    for ((expect, sql), rows) in expectations.iter().zip(&changed) {
        if *expect == Expect::SomeRow && *rows == 0 {
            return Err(StoreError::Conflict(format!("a concurrent change won: {}", first_words(sql))));
        }
    }
    Ok(outcomes)
}

/// Whether `unit` updates the transaction `txn_id`.
fn unit_updates(unit: &WriteUnit, txn_id: i64) -> bool {
    matches!(&unit.guard, Some(Guard::UpdateTxn(update)) if update.id == txn_id)
        || unit.ops.iter().any(|op| matches!(op, WriteOp::UpdateTxn(update) if update.id == txn_id))
}

/// How many writes of decided transactions the units that are written make to each batch: an
/// inserted transaction's card identity, an updated one's batch as read; admissions are written
/// for every unit not refused, guards and ops for the units whose guard passed. A pending
/// request's insert (and a change that leaves it pending) is not counted: a batch's totals
/// count decided transactions only, and a request still pending when its batch closes is
/// settled once it is decided, whenever it was created. So a card sale bumps its batch once,
/// with its decision, not also with its pending row.
fn batch_bumps(units: &[WriteUnit], outcomes: &[UnitOutcome]) -> Result<BTreeMap<BatchKey, i64>, StoreError> {
    fn key_of_update(update: &TxnUpdate) -> Option<BatchKey> {
        let decided = update.expected_status != TxnStatus::Pending || update.status != TxnStatus::Pending;
        update.batch.clone().filter(|_| decided)
    }
    fn key_of(guard: &Guard) -> Option<BatchKey> {
        match guard {
            Guard::InsertTxn(txn) | Guard::InsertReservedTxn(txn, _) if txn.status == TxnStatus::Pending => None,
            Guard::InsertTxn(txn) | Guard::InsertReservedTxn(txn, _) => {
                txn.card_identity.as_ref().map(CardIdentity::batch)
            }
            Guard::UpdateTxn(update) => key_of_update(update),
            Guard::InsertIdempotency(_) | Guard::Statement(_) => None,
        }
    }
    let mut bumps: BTreeMap<BatchKey, i64> = BTreeMap::new();
    for (unit, outcome) in units.iter().zip(outcomes) {
        let mut keys = Vec::new();
        if !matches!(outcome, UnitOutcome::Refused) {
            keys.extend(unit.admission.as_ref().and_then(key_of));
        }
        if matches!(outcome, UnitOutcome::Committed { .. }) {
            keys.extend(unit.guard.as_ref().and_then(key_of));
            keys.extend(unit.ops.iter().filter_map(|op| match op {
                WriteOp::UpdateTxn(update) => key_of_update(update),
                _ => None,
            }));
        }
        for key in keys {
            let bump = bumps.entry(key).or_insert(0);
            *bump = bump.checked_add(1).ok_or(StoreError::Corrupt("batch version overflow".into()))?;
        }
    }
    Ok(bumps)
}

/// Postings carry no foreign keys (a per-row look-up and lock on every sale's hot path, see
/// migration 0020): a posting is written only here, in the batch that writes its entry, after
/// the entry and after its account's balance row (which creates the account). This checks it.
fn assert_postings_refer_to_batch(
    planned: &[Planned<'_>],
    balances: &BTreeMap<String, (&kassa_ledger::Account, i64)>,
    postings: &[Planned<'_>],
) -> Result<(), StoreError> {
    let entries: std::collections::HashSet<i64> = planned
        .iter()
        .filter_map(|write| match write {
            Planned::Entry { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    for posting in postings {
        let Planned::Posting { entry_id, account_key, .. } = posting else {
            return Err(StoreError::Corrupt("a posting that is not one".into()));
        };
        if !entries.contains(entry_id) || !balances.contains_key(account_key) {
            return Err(StoreError::Corrupt(format!("posting of entry {entry_id} without its entry or account")));
        }
    }
    Ok(())
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Phase one: every admission, then every guard of the units admitted, each pipelined in unit
/// order. Returns each unit's outcome so far.
async fn check_guards(exec: &mut dyn Exec, units: &[WriteUnit]) -> Result<Vec<UnitOutcome>, StoreError> {
    let mut outcomes: Vec<UnitOutcome> = units
        .iter()
        .map(|_| UnitOutcome::Committed { txn_id: None, entry_ids: Vec::new(), reserved_ids: Vec::new() })
        .collect();
    let admissions: Vec<usize> = (0..units.len()).filter(|&i| units[i].admission.is_some()).collect();
    if !admissions.is_empty() {
        let planned = admissions
            .iter()
            .filter_map(|&i| units[i].admission.as_ref())
            .map(guard_write)
            .collect::<Result<Vec<_>, _>>()?;
        let changed = exec.execute_planned(planned).await?;
        if changed.len() != admissions.len() {
            return Err(StoreError::Corrupt("an admission's outcome is missing".into()));
        }
        for (index, rows) in admissions.into_iter().zip(changed) {
            if rows == 0 {
                outcomes[index] = UnitOutcome::Refused;
            }
        }
    }
    let admitted = |i: &usize| !matches!(outcomes[*i], UnitOutcome::Refused);
    let inserts =
        (0..units.len()).filter(admitted).filter(|&i| matches!(units[i].guard, Some(Guard::InsertTxn(_)))).count();
    let mut txn_ids = exec.next_ids(Sequence::Transactions, inserts).await?.into_iter();
    // Each block with the highest id its units insert under: a block holds the ids from its
    // first (its id) to its last, so an id below the block's is not one of its ids, and one
    // above is refused by the check of the block.
    let mut blocks: BTreeMap<i64, i64> = BTreeMap::new();
    for index in (0..units.len()).filter(admitted) {
        if let Some(Guard::InsertReservedTxn(_, reserved)) = &units[index].guard {
            if reserved.id < reserved.block_id {
                return Err(StoreError::Conflict(format!(
                    "id {} is not of id block {}",
                    reserved.id, reserved.block_id
                )));
            }
            let highest = blocks.entry(reserved.block_id).or_insert(reserved.id);
            *highest = (*highest).max(reserved.id);
        }
    }
    // The whole batch fails when a block is closed, then each unit alone: only the late ones
    // fail again.
    let closed = |block_id: i64| {
        StoreError::Conflict(format!(
            "id block {block_id} is closed (its requests without a transaction are reversed at the issuer), \
             or does not hold the id"
        ))
    };
    let mut planned = Vec::new();
    let mut fenced = Vec::new();
    for (block_id, highest_id) in blocks {
        match exec.id_block_fence(block_id, highest_id) {
            Some(fence) => {
                planned.push(Planned::Statement(fence));
                fenced.push(block_id);
            }
            None if exec.hold_id_block(block_id, highest_id).await? => {}
            None => return Err(closed(block_id)),
        }
    }
    let mut guarded = Vec::new();
    for index in (0..units.len()).filter(admitted) {
        let Some(guard) = &units[index].guard else { continue };
        let (write, txn_id) = match guard {
            Guard::InsertTxn(txn) => {
                let id = txn_ids.next().ok_or_else(|| StoreError::Corrupt("transaction ids ran out".into()))?;
                (Planned::InsertTxn { id, txn }, Some(id))
            }
            Guard::InsertReservedTxn(txn, reserved) => (Planned::InsertTxn { id: reserved.id, txn }, Some(reserved.id)),
            other => (guard_write(other)?, None),
        };
        planned.push(write);
        guarded.push((index, txn_id));
    }
    let changed = exec.execute_planned(planned).await?;
    if changed.len() != fenced.len() + guarded.len() {
        return Err(StoreError::Corrupt("a guard's outcome is missing".into()));
    }
    let (fences, changed) = changed.split_at(fenced.len());
    if let Some((&block_id, _)) = fenced.iter().zip(fences).find(|(_, &rows)| rows == 0) {
        return Err(closed(block_id));
    }
    for ((index, txn_id), &rows) in guarded.into_iter().zip(changed) {
        outcomes[index] = match (&units[index].guard, rows) {
            (Some(Guard::InsertTxn(txn) | Guard::InsertReservedTxn(txn, _)), 0) => {
                UnitOutcome::Duplicate { existing_txn_id: existing_txn(exec, txn).await? }
            }
            (Some(Guard::UpdateTxn(_)), 0) => UnitOutcome::VersionConflict,
            (_, 0) => UnitOutcome::Duplicate { existing_txn_id: None },
            _ => UnitOutcome::Committed { txn_id, entry_ids: Vec::new(), reserved_ids: Vec::new() },
        };
    }
    Ok(outcomes)
}

/// The write of a guard that needs no id from the batch: every kind but `InsertTxn`, whose id
/// [`check_guards`] draws (it is not an admission: admitting a request is recording a key).
fn guard_write(guard: &Guard) -> Result<Planned<'_>, StoreError> {
    Ok(match guard {
        Guard::InsertTxn(_) | Guard::InsertReservedTxn(..) => {
            return Err(StoreError::Corrupt("a transaction insert cannot admit a unit".into()))
        }
        Guard::UpdateTxn(update) => Planned::UpdateTxn(update),
        Guard::InsertIdempotency(record) => Planned::Statement(statement(
            "INSERT INTO idempotency_keys (scope, idem_key, request_digest, response, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, idem_key) DO NOTHING",
            params![
                record.scope.as_str(),
                record.key.as_str(),
                record.request_digest.as_str(),
                record.response.to_string(),
                record.created_at_ms
            ]
            .to_vec(),
        )),
        Guard::Statement(s) => Planned::Statement(s.clone()),
    })
}

/// The journal row of a block of reserved ids (`ids` ascending, not empty).
fn reserve_statement(ids: &[i64], at_ms: i64) -> Result<Statement, StoreError> {
    let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
        return Err(StoreError::Corrupt("an empty id block".into()));
    };
    Ok(statement(
        "INSERT INTO gateway_id_blocks (block_id, ranges, last_id, reserved_at_ms) VALUES ($1, $2, $3, $4)",
        params![first, crate::gateway::IdRanges::of(ids).to_string(), last, at_ms].to_vec(),
    ))
}

fn insert_txn_statement(id: i64, txn: &NewTxn) -> Statement {
    let identity = txn.card_identity.as_ref();
    statement(
        "INSERT INTO transactions (id, kind, status, channel, merchant_id, terminal_id, batch_no, stan, mti_class, \
         out_trade_no, rrn, auth_code, amount_minor, currency, fee_minor, pan_masked, content_digest, original_id, \
         response, business_date, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $21) \
         ON CONFLICT DO NOTHING",
        params![
            id,
            txn.kind.as_str(),
            txn.status.as_str(),
            txn.channel.as_str(),
            txn.merchant_id.as_str(),
            identity.map(|i| i.terminal_id.as_str()),
            identity.map(|i| i.batch_no.value()),
            identity.map(|i| i.stan.value()),
            identity.map(|i| i.mti_class.clone()),
            txn.out_trade_no.clone(),
            txn.rrn.clone(),
            txn.auth_code.clone(),
            txn.amount_minor,
            txn.currency.code(),
            txn.fee_minor,
            txn.pan_masked.clone(),
            txn.content_digest.as_str(),
            txn.original_id,
            answer_json(&txn.response),
            txn.business_date.as_str(),
            txn.created_at_ms
        ]
        .to_vec(),
    )
}

/// The transaction whose identity a refused insert collided with: by card identity, by
/// `out_trade_no`, else by RRN.
async fn existing_txn(exec: &mut dyn Exec, txn: &NewTxn) -> Result<Option<i64>, StoreError> {
    let rows = if let Some(identity) = &txn.card_identity {
        exec.query(
            "SELECT id FROM transactions WHERE terminal_id = $1 AND batch_no = $2 AND stan = $3 AND mti_class = $4",
            &params![
                identity.terminal_id.as_str(),
                identity.batch_no.value(),
                identity.stan.value(),
                identity.mti_class.as_str()
            ],
        )
        .await?
    } else if let Some(out_trade_no) = &txn.out_trade_no {
        exec.query(
            "SELECT id FROM transactions WHERE merchant_id = $1 AND out_trade_no = $2",
            &params![txn.merchant_id.as_str(), out_trade_no.as_str()],
        )
        .await?
    } else {
        Vec::new()
    };
    if let Some(row) = rows.first() {
        return Ok(Some(row.int(0)?));
    }
    match &txn.rrn {
        Some(rrn) => {
            let rows = exec.query("SELECT id FROM transactions WHERE rrn = $1", &params![rrn.as_str()]).await?;
            rows.first().map(|r| r.int(0)).transpose()
        }
        None => Ok(None),
    }
}

/// A stored answer as its column holds it.
pub(crate) fn answer_json(answer: &StoredAnswer) -> String {
    // A struct of optional strings always serialises.
    serde_json::to_string(answer).unwrap_or_else(|_| "{}".to_owned())
}

/// Refuses a transaction update the domain's state machine could never make: a status no event
/// leads to from the status the caller read. A bug in a caller; refused before anything of the
/// batch is written (the batch is then retried unit by unit, so only its own unit fails).
/// Inserts are not checked: a row may be recorded in any status (a reversal's placeholder, a
/// correction, an import).
fn check_txn_writes(units: &[WriteUnit]) -> Result<(), StoreError> {
    for unit in units {
        for guard in [&unit.admission, &unit.guard].into_iter().flatten() {
            match guard {
                Guard::UpdateTxn(update) => check_update(update)?,
                Guard::InsertTxn(_)
                | Guard::InsertReservedTxn(..)
                | Guard::InsertIdempotency(_)
                | Guard::Statement(_) => {}
            }
        }
        for op in &unit.ops {
            if let WriteOp::UpdateTxn(update) = op {
                check_update(update)?;
            }
        }
    }
    Ok(())
}

fn check_update(update: &TxnUpdate) -> Result<(), StoreError> {
    if update.expected_status.may_become(update.kind, update.status) {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "refused to move txn {} ({}) from {} to {}",
        update.id,
        update.kind.as_str(),
        update.expected_status.as_str(),
        update.status.as_str()
    )))
}

fn update_txn_statement(update: &TxnUpdate) -> Statement {
    statement(
        "UPDATE transactions SET status = $1, refunded_minor = $2, settled = $3, \
         response = COALESCE($4, response), rrn = COALESCE($5, rrn), auth_code = COALESCE($6, auth_code), \
         updated_at_ms = $7, version = version + 1 WHERE id = $8 AND version = $9 \
         AND terminal_id IS NOT DISTINCT FROM $10 AND batch_no IS NOT DISTINCT FROM $11",
        params![
            update.status.as_str(),
            update.refunded_minor,
            update.settled,
            update.response.as_ref().map(answer_json),
            update.rrn.clone(),
            update.auth_code.clone(),
            update.updated_at_ms,
            update.id,
            update.expected_version,
            update.batch.as_ref().map(|b| b.terminal_id.as_str()),
            update.batch.as_ref().map(|b| b.batch_no.value())
        ]
        .to_vec(),
    )
}

fn batch_version_statement(key: &BatchKey, bump: i64) -> Statement {
    statement(
        "INSERT INTO batch_versions (terminal_id, batch_no, version) VALUES ($1, $2, $3) \
         ON CONFLICT (terminal_id, batch_no) DO UPDATE SET version = batch_versions.version + excluded.version",
        params![key.terminal_id.as_str(), key.batch_no.value(), bump].to_vec(),
    )
}

fn entry_statement(id: i64, entry: &JournalEntry, at_ms: i64, txn_id: Option<i64>) -> Statement {
    statement(
        "INSERT INTO ledger_entries (id, kind, reference, created_at_ms, txn_id) VALUES ($1, $2, $3, $4, $5)",
        params![id, entry.kind().as_str(), entry.reference(), at_ms, txn_id].to_vec(),
    )
}

fn posting_statement(entry_id: i64, line: i64, account_key: String, amount_minor: i64) -> Statement {
    statement(
        "INSERT INTO ledger_postings (entry_id, line, account_key, amount_minor) VALUES ($1, $2, $3, $4)",
        params![entry_id, line, account_key, amount_minor].to_vec(),
    )
}

fn balance_statement(key: String, account: &kassa_ledger::Account, delta: i64) -> Statement {
    statement(
        "INSERT INTO ledger_accounts (account_key, kind, owner, currency, balance_minor) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (account_key) DO UPDATE SET balance_minor = ledger_accounts.balance_minor + excluded.balance_minor",
        params![key, account.kind().as_str(), account.owner(), account.currency().code(), delta].to_vec(),
    )
}

/// The statement of an op other than a journal entry, and what it must change.
async fn op_statement(
    exec: &mut dyn Exec,
    op: &WriteOp,
    audit_head: &mut Option<(i64, String)>,
) -> Result<(Statement, Expect), StoreError> {
    Ok(match op {
        WriteOp::PostEntry { .. } | WriteOp::PostTxnEntry { .. } | WriteOp::ReserveTxnIds { .. } => {
            return Err(StoreError::Corrupt("journal entries and id blocks are planned separately".into()))
        }
        WriteOp::UpdateTxn(update) => (update_txn_statement(update), Expect::SomeRow),
        WriteOp::Audit(event) => (audit_statement(exec, event, audit_head).await?, Expect::Any),
        WriteOp::Statement { statement, may_change_nothing } => {
            (statement.clone(), if *may_change_nothing { Expect::Any } else { Expect::SomeRow })
        }
        WriteOp::PutMerchant(m) => {
            let fee_rates = serde_json::to_string(&m.fee_rates).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            (
                statement(
                    "INSERT INTO merchants (merchant_id, name, mcc, currency, fee_rates, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (merchant_id) DO UPDATE SET name = excluded.name, mcc = excluded.mcc, currency = excluded.currency, \
                     fee_rates = excluded.fee_rates",
                    params![m.merchant_id.as_str(), m.name.as_str(), m.mcc.as_str(), m.currency.as_str(), fee_rates, m.created_at_ms]
                        .to_vec(),
                ),
                Expect::Any,
            )
        }
        WriteOp::PutTerminal(t) => (
            statement(
                "INSERT INTO terminals (terminal_id, merchant_id, refund_password_mode, mac_algorithm, tmk_sealed, tms_secret_sealed, \
                 open_batch, status, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (terminal_id) DO UPDATE SET merchant_id = excluded.merchant_id, \
                 refund_password_mode = excluded.refund_password_mode, mac_algorithm = excluded.mac_algorithm, \
                 tmk_sealed = excluded.tmk_sealed, tms_secret_sealed = excluded.tms_secret_sealed, \
                 open_batch = excluded.open_batch, status = excluded.status",
                params![
                    t.terminal_id.as_str(),
                    t.merchant_id.as_str(),
                    t.refund_password_mode.as_str(),
                    t.mac_algorithm.as_str(),
                    t.tmk_sealed.clone(),
                    t.tms_secret_sealed.clone(),
                    t.open_batch,
                    t.status.as_str(),
                    t.created_at_ms
                ]
                .to_vec(),
            ),
            Expect::Any,
        ),
        WriteOp::SetOpenBatch { terminal_id, batch_no } => (
            statement(
                "UPDATE terminals SET open_batch = $1 WHERE terminal_id = $2",
                params![*batch_no, terminal_id.as_str()].to_vec(),
            ),
            Expect::Any,
        ),
        WriteOp::PutOperator(o) => {
            let c = &o.credential;
            (
                statement(
                    "INSERT INTO operators (merchant_id, operator_code, role, password_hash, password_history, must_change_password, \
                     failures, locked_until_ms, password_changed_ms, enabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (merchant_id, operator_code) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash, \
                     password_history = excluded.password_history, must_change_password = excluded.must_change_password, \
                     failures = excluded.failures, locked_until_ms = excluded.locked_until_ms, \
                     password_changed_ms = excluded.password_changed_ms, enabled = excluded.enabled",
                    params![
                        o.merchant_id.as_str(),
                        o.operator_code.as_str(),
                        o.role.as_str(),
                        c.password_hash.as_str(),
                        json_list(&c.password_history)?,
                        c.must_change_password,
                        i64::from(c.failures),
                        c.locked_until_ms,
                        c.password_changed_ms,
                        c.enabled
                    ]
                    .to_vec(),
                ),
                Expect::Any,
            )
        }
        WriteOp::PutBackofficeUser(u) => {
            let c = &u.credential;
            (
                statement(
                    "INSERT INTO backoffice_users (username, role, merchant_id, password_hash, password_history, must_change_password, \
                     failures, locked_until_ms, password_changed_ms, enabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (username) DO UPDATE SET role = excluded.role, merchant_id = excluded.merchant_id, \
                     password_hash = excluded.password_hash, password_history = excluded.password_history, \
                     must_change_password = excluded.must_change_password, failures = excluded.failures, \
                     locked_until_ms = excluded.locked_until_ms, password_changed_ms = excluded.password_changed_ms, \
                     enabled = excluded.enabled",
                    params![
                        u.username.as_str(),
                        u.role.as_str(),
                        u.merchant_id.clone(),
                        c.password_hash.as_str(),
                        json_list(&c.password_history)?,
                        c.must_change_password,
                        i64::from(c.failures),
                        c.locked_until_ms,
                        c.password_changed_ms,
                        c.enabled
                    ]
                    .to_vec(),
                ),
                Expect::Any,
            )
        }
        WriteOp::PutMerchantSecret(s) => (
            statement(
                "INSERT INTO merchant_secrets (merchant_id, kind, secret_hash, is_default, history, changed_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (merchant_id, kind) DO UPDATE SET \
                 secret_hash = excluded.secret_hash, is_default = excluded.is_default, history = excluded.history, \
                 changed_at_ms = excluded.changed_at_ms",
                params![
                    s.merchant_id.as_str(),
                    s.kind.as_str(),
                    s.secret_hash.as_str(),
                    s.is_default,
                    json_list(&s.history)?,
                    s.changed_at_ms
                ]
                .to_vec(),
            ),
            Expect::Any,
        ),
        WriteOp::PutApiKey(k) => (
            statement(
                "INSERT INTO api_keys (key_digest, merchant_id, label, created_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (key_digest) DO NOTHING",
                params![k.key_digest.as_str(), k.merchant_id.as_str(), k.label.as_str(), k.created_at_ms].to_vec(),
            ),
            Expect::Any,
        ),
        WriteOp::PutGatewayApp(a) => (
            statement(
                "INSERT INTO gateway_apps (app_id, merchant_id, public_key_pem, created_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (app_id) DO UPDATE SET merchant_id = excluded.merchant_id, public_key_pem = excluded.public_key_pem",
                params![a.app_id.as_str(), a.merchant_id.as_str(), a.public_key_pem.as_str(), a.created_at_ms].to_vec(),
            ),
            Expect::Any,
        ),
        WriteOp::PutSetting { scope, name, value, at_ms } => (
            statement(
                "INSERT INTO settings (scope, name, value, updated_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (scope, name) DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
                params![scope.as_str(), name.as_str(), value.to_string(), *at_ms].to_vec(),
            ),
            Expect::Any,
        ),
    })
}

fn json_list(items: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(items).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The hash of the first record's predecessor.
pub const AUDIT_GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chained hash of an audit record: SHA-256 over its sequence number, previous hash and a
/// canonical serialisation of the event. `kassa audit verify` recomputes it for every row.
pub fn audit_hash(seq: i64, prev_hash: &str, event: &AuditEvent) -> String {
    let mut hasher = Sha256::new();
    for part in [
        seq.to_string().as_str(),
        prev_hash,
        event.at_ms.to_string().as_str(),
        &event.actor,
        &event.action,
        &event.target,
        &event.source,
        &event.reason,
        &event.details.to_string(),
    ] {
        // Length-prefixed, so that no two different events serialise alike.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The insert of the next audit record; the chain head is read once per batch and carried.
async fn audit_statement(
    exec: &mut dyn Exec,
    event: &AuditEvent,
    head: &mut Option<(i64, String)>,
) -> Result<Statement, StoreError> {
    let (last_seq, last_hash) = match head.take() {
        Some(head) => head,
        None => {
            exec.lock_audit_chain().await?;
            let rows = exec.query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", &[]).await?;
            match rows.first() {
                Some(row) => (row.int(0)?, row.text(1)?),
                None => (0, AUDIT_GENESIS_HASH.to_owned()),
            }
        }
    };
    let seq = last_seq + 1;
    let hash = audit_hash(seq, &last_hash, event);
    let insert = statement(
        "INSERT INTO audit_log (seq, at_ms, actor, action, target, source, reason, details, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        params![
            seq,
            event.at_ms,
            event.actor.as_str(),
            event.action.as_str(),
            event.target.as_str(),
            event.source.as_str(),
            event.reason.as_str(),
            event.details.to_string(),
            last_hash.as_str(),
            hash.as_str()
        ]
        .to_vec(),
    );
    *head = Some((seq, hash));
    Ok(insert)
}

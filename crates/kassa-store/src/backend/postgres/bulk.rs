//! Set-based writes for PostgreSQL: the rows of a card sale written by kind, one statement per
//! kind and batch (arrays bound as parameters, `unnest`ed by the server), instead of one
//! statement per row. Parsing, binding and executing a statement costs the server tens of
//! microseconds whatever it writes, and a batch of a thousand card sales was some six thousand
//! statements; now it is about six.
//!
//! [`steps`] decides what may be written together without changing any outcome of the batch,
//! which the common code defines as "one statement after another, in order":
//! - transaction inserts and updates are grouped in runs between module statements (a module
//!   guard may read `transactions`, e.g. the re-initialisation guard), and a run ends before a
//!   write that could see another of the run: an update of a row already updated (or inserted)
//!   in the run, an insert and an update naming the same RRN (a unique index);
//! - inserts keep their order inside the statement (`WITH ORDINALITY … ORDER BY`), so of two
//!   with one identity the first is written and the second finds it, as one after another;
//! - entries, balances and postings go last, in that order: no module statement touches the
//!   ledger tables (asserted), a posting needs its entry and account, and an upsert may touch
//!   an account once per statement (balances come summed per account; a repeat starts a new
//!   statement all the same).
//!
//! A group of one row is written with its own statement, as before.

use std::collections::HashSet;

use tokio_postgres::types::ToSql;

use crate::core::unit::Planned;
use crate::StoreError;

/// Rows written by one set-based statement: bounds the statement's size and the server's
/// memory for it; larger groups are split, in order.
pub(crate) const BULK_ROWS_MAX: usize = 1_000;

/// One statement's worth of planned writes, by index into the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The write's own statement.
    One(usize),
    /// Transaction inserts, `ON CONFLICT DO NOTHING`, returning the ids written.
    InsertTxns(Vec<usize>),
    /// Transaction updates at their expected versions, returning the ids updated.
    UpdateTxns(Vec<usize>),
    /// Journal entries.
    Entries(Vec<usize>),
    /// Balance changes, one per account.
    Balances(Vec<usize>),
    /// Postings.
    Postings(Vec<usize>),
    /// Batch versions, one per batch.
    BatchVersions(Vec<usize>),
}

impl Step {
    /// The planned writes it writes.
    pub(crate) fn indices(&self) -> Vec<usize> {
        match self {
            Step::One(index) => vec![*index],
            Step::InsertTxns(indices)
            | Step::UpdateTxns(indices)
            | Step::Entries(indices)
            | Step::Balances(indices)
            | Step::Postings(indices)
            | Step::BatchVersions(indices) => indices.clone(),
        }
    }
}

/// A run of transaction writes that may be written as one insert and one update.
#[derive(Default)]
struct TxnRun<'p> {
    inserts: Vec<usize>,
    updates: Vec<usize>,
    inserted_ids: HashSet<i64>,
    updated_ids: HashSet<i64>,
    inserted_rrns: HashSet<&'p str>,
    updated_rrns: HashSet<&'p str>,
}

impl<'p> TxnRun<'p> {
    fn flush(&mut self, steps: &mut Vec<Step>) {
        let run = std::mem::take(self);
        push_grouped(steps, run.inserts, Step::InsertTxns);
        push_grouped(steps, run.updates, Step::UpdateTxns);
    }
}

/// `indices` as statements of at most [`BULK_ROWS_MAX`] rows, a lone row as its own statement.
fn push_grouped(steps: &mut Vec<Step>, indices: Vec<usize>, group: fn(Vec<usize>) -> Step) {
    match indices.as_slice() {
        [] => {}
        [one] => steps.push(Step::One(*one)),
        _ => steps.extend(indices.chunks(BULK_ROWS_MAX).map(|chunk| match chunk {
            [one] => Step::One(*one),
            _ => group(chunk.to_vec()),
        })),
    }
}

/// The statements that write `planned` with the same outcome as one after another.
pub(crate) fn steps(planned: &[Planned<'_>]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut run = TxnRun::default();
    let (mut entries, mut postings) = (Vec::new(), Vec::new());
    let mut balances: Vec<Vec<usize>> = vec![Vec::new()];
    let mut balance_keys: HashSet<&str> = HashSet::new();
    // Batch versions come first in a plan, each batch once: one statement for the lot, ended by
    // any other write (so a statement reading a version sees the bumps planned before it).
    let mut versions: Vec<usize> = Vec::new();
    let mut version_keys = HashSet::new();
    for (index, write) in planned.iter().enumerate() {
        if let Planned::BatchVersion { key, .. } = write {
            if !version_keys.insert(key) {
                version_keys.clear();
                version_keys.insert(key);
                push_grouped(&mut steps, std::mem::take(&mut versions), Step::BatchVersions);
            }
            versions.push(index);
            continue;
        }
        if !versions.is_empty() {
            version_keys.clear();
            push_grouped(&mut steps, std::mem::take(&mut versions), Step::BatchVersions);
        }
        match write {
            Planned::InsertTxn { id, txn } => {
                let rrn = txn.rrn.as_deref();
                if run.updated_ids.contains(id) || rrn.is_some_and(|r| run.updated_rrns.contains(r)) {
                    run.flush(&mut steps);
                }
                run.inserts.push(index);
                run.inserted_ids.insert(*id);
                run.inserted_rrns.extend(rrn);
            }
            Planned::UpdateTxn(update) => {
                let rrn = update.rrn.as_deref();
                if run.updated_ids.contains(&update.id)
                    || run.inserted_ids.contains(&update.id)
                    || rrn.is_some_and(|r| run.inserted_rrns.contains(r))
                {
                    run.flush(&mut steps);
                }
                run.updates.push(index);
                run.updated_ids.insert(update.id);
                run.updated_rrns.extend(rrn);
            }
            Planned::Entry { .. } => entries.push(index),
            Planned::Balance { account_key, .. } => {
                if !balance_keys.insert(account_key) {
                    balance_keys.clear();
                    balance_keys.insert(account_key);
                    balances.push(Vec::new());
                }
                if let Some(last) = balances.last_mut() {
                    last.push(index);
                }
            }
            Planned::Posting { .. } => postings.push(index),
            Planned::BatchVersion { .. } => {}
            Planned::Statement(statement) => {
                debug_assert!(!statement.sql.contains("ledger_"), "ledger rows are written last: {}", statement.sql);
                run.flush(&mut steps);
                steps.push(Step::One(index));
            }
        }
    }
    push_grouped(&mut steps, versions, Step::BatchVersions);
    run.flush(&mut steps);
    push_grouped(&mut steps, entries, Step::Entries);
    for group in balances {
        push_grouped(&mut steps, group, Step::Balances);
    }
    push_grouped(&mut steps, postings, Step::Postings);
    steps
}

const INSERT_TXNS: &str = "INSERT INTO transactions (id, kind, status, channel, merchant_id, terminal_id, batch_no, stan, \
     mti_class, out_trade_no, rrn, auth_code, amount_minor, currency, fee_minor, pan_masked, content_digest, \
     original_id, response, business_date, created_at_ms, updated_at_ms) \
     SELECT id, kind, status, channel, merchant_id, terminal_id, batch_no, stan, mti_class, out_trade_no, rrn, \
     auth_code, amount_minor, currency, fee_minor, pan_masked, content_digest, original_id, response, business_date, \
     created_at_ms, created_at_ms \
     FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::BIGINT[], $8::BIGINT[], \
     $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::TEXT[], $13::BIGINT[], $14::TEXT[], $15::BIGINT[], $16::TEXT[], \
     $17::TEXT[], $18::BIGINT[], $19::TEXT[], $20::TEXT[], $21::BIGINT[]) WITH ORDINALITY \
     AS u(id, kind, status, channel, merchant_id, terminal_id, batch_no, stan, mti_class, out_trade_no, rrn, auth_code, \
     amount_minor, currency, fee_minor, pan_masked, content_digest, original_id, response, business_date, \
     created_at_ms, position) \
     ORDER BY position \
     ON CONFLICT DO NOTHING RETURNING id";

const UPDATE_TXNS: &str = "UPDATE transactions t SET status = u.status, refunded_minor = u.refunded_minor, \
     settled = u.settled, response = COALESCE(u.response, t.response), rrn = COALESCE(u.rrn, t.rrn), \
     auth_code = COALESCE(u.auth_code, t.auth_code), updated_at_ms = u.updated_at_ms, version = t.version + 1 \
     FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::BOOLEAN[], $6::TEXT[], $7::TEXT[], \
     $8::TEXT[], $9::BIGINT[], $10::TEXT[], $11::BIGINT[]) \
     AS u(id, expected_version, status, refunded_minor, settled, response, rrn, auth_code, updated_at_ms, \
     terminal_id, batch_no) \
     WHERE t.id = u.id AND t.version = u.expected_version AND t.terminal_id IS NOT DISTINCT FROM u.terminal_id \
     AND t.batch_no IS NOT DISTINCT FROM u.batch_no RETURNING t.id";

const INSERT_ENTRIES: &str = "INSERT INTO ledger_entries (id, kind, reference, created_at_ms, txn_id) \
     SELECT * FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[])";

const UPSERT_BALANCES: &str = "INSERT INTO ledger_accounts (account_key, kind, owner, currency, balance_minor) \
     SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[]) \
     ON CONFLICT (account_key) DO UPDATE SET balance_minor = ledger_accounts.balance_minor + excluded.balance_minor";

const UPSERT_BATCH_VERSIONS: &str = "INSERT INTO batch_versions (terminal_id, batch_no, version) \
     SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) \
     ON CONFLICT (terminal_id, batch_no) DO UPDATE SET version = batch_versions.version + excluded.version";

const INSERT_POSTINGS: &str = "INSERT INTO ledger_postings (entry_id, line, account_key, amount_minor) \
     SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[])";

/// A parameter of a set-based statement.
pub(crate) type Param<'p> = Box<dyn ToSql + Sync + Send + 'p>;

/// How a set-based statement reports the rows it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reports {
    /// `RETURNING id`: the ids of the rows written; the others changed nothing.
    Ids,
    /// Every row changes exactly one row, or the statement fails.
    EveryRow,
}

/// A set-based statement with its array parameters.
pub(crate) struct SetStatement<'p> {
    pub(crate) sql: &'static str,
    pub(crate) params: Vec<Param<'p>>,
    pub(crate) reports: Reports,
}

/// The set-based statement of a step (`None` for [`Step::One`]).
pub(crate) fn bind<'p>(step: &Step, planned: &'p [Planned<'p>]) -> Result<Option<SetStatement<'p>>, StoreError> {
    fn column<'p, T: ToSql + Sync + Send + 'p>(values: Vec<T>) -> Param<'p> {
        Box::new(values)
    }
    Ok(Some(match step {
        Step::One(_) => return Ok(None),
        Step::InsertTxns(indices) => {
            let txns: Vec<(i64, &crate::core::records::NewTxn)> = rows(indices, planned, |write| match write {
                Planned::InsertTxn { id, txn } => Some((*id, *txn)),
                _ => None,
            })?;
            let params = vec![
                column(txns.iter().map(|(id, _)| *id).collect::<Vec<i64>>()),
                column(txns.iter().map(|(_, t)| t.kind.as_str()).collect::<Vec<_>>()),
                column(txns.iter().map(|(_, t)| t.status.as_str()).collect::<Vec<_>>()),
                column(txns.iter().map(|(_, t)| t.channel.as_str()).collect::<Vec<_>>()),
                column(txns.iter().map(|(_, t)| t.merchant_id.as_str()).collect::<Vec<_>>()),
                column(
                    txns.iter()
                        .map(|(_, t)| t.card_identity.as_ref().map(|i| i.terminal_id.as_str()))
                        .collect::<Vec<_>>(),
                ),
                column(
                    txns.iter()
                        .map(|(_, t)| t.card_identity.as_ref().map(|i| i64::from(i.batch_no.value())))
                        .collect::<Vec<_>>(),
                ),
                column(
                    txns.iter()
                        .map(|(_, t)| t.card_identity.as_ref().map(|i| i64::from(i.stan.value())))
                        .collect::<Vec<_>>(),
                ),
                column(
                    txns.iter()
                        .map(|(_, t)| t.card_identity.as_ref().map(|i| i.mti_class.as_str()))
                        .collect::<Vec<_>>(),
                ),
                column(txns.iter().map(|(_, t)| t.out_trade_no.as_deref()).collect::<Vec<_>>()),
                column(txns.iter().map(|(_, t)| t.rrn.as_deref()).collect::<Vec<_>>()),
                column(txns.iter().map(|(_, t)| t.auth_code.as_deref()).collect::<Vec<_>>()),
                column(txns.iter().map(|(_, t)| t.amount_minor).collect::<Vec<_>>()),
                column(txns.iter().map(|(_, t)| t.currency.code()).collect::<Vec<_>>()),
                column(txns.iter().map(|(_, t)| t.fee_minor).collect::<Vec<_>>()),
                column(txns.iter().map(|(_, t)| t.pan_masked.as_deref()).collect::<Vec<_>>()),
                column(txns.iter().map(|(_, t)| t.content_digest.as_str()).collect::<Vec<_>>()),
                column(txns.iter().map(|(_, t)| t.original_id).collect::<Vec<_>>()),
                column(txns.iter().map(|(_, t)| crate::core::unit::answer_json(&t.response)).collect::<Vec<_>>()),
                column(txns.iter().map(|(_, t)| t.business_date.as_str()).collect::<Vec<_>>()),
                column(txns.iter().map(|(_, t)| t.created_at_ms).collect::<Vec<_>>()),
            ];
            SetStatement { sql: INSERT_TXNS, params, reports: Reports::Ids }
        }
        Step::UpdateTxns(indices) => {
            let updates: Vec<&crate::core::records::TxnUpdate> = rows(indices, planned, |write| match write {
                Planned::UpdateTxn(update) => Some(*update),
                _ => None,
            })?;
            let params = vec![
                column(updates.iter().map(|u| u.id).collect::<Vec<_>>()),
                column(updates.iter().map(|u| u.expected_version).collect::<Vec<_>>()),
                column(updates.iter().map(|u| u.status.as_str()).collect::<Vec<_>>()),
                column(updates.iter().map(|u| u.refunded_minor).collect::<Vec<_>>()),
                column(updates.iter().map(|u| u.settled).collect::<Vec<_>>()),
                column(
                    updates.iter().map(|u| u.response.as_ref().map(crate::core::unit::answer_json)).collect::<Vec<_>>(),
                ),
                column(updates.iter().map(|u| u.rrn.as_deref()).collect::<Vec<_>>()),
                column(updates.iter().map(|u| u.auth_code.as_deref()).collect::<Vec<_>>()),
                column(updates.iter().map(|u| u.updated_at_ms).collect::<Vec<_>>()),
                column(updates.iter().map(|u| u.batch.as_ref().map(|b| b.terminal_id.as_str())).collect::<Vec<_>>()),
                column(
                    updates.iter().map(|u| u.batch.as_ref().map(|b| i64::from(b.batch_no.value()))).collect::<Vec<_>>(),
                ),
            ];
            SetStatement { sql: UPDATE_TXNS, params, reports: Reports::Ids }
        }
        Step::Entries(indices) => {
            let entries: Vec<(i64, &kassa_ledger::JournalEntry, i64, Option<i64>)> =
                rows(indices, planned, |write| match write {
                    Planned::Entry { id, entry, at_ms, txn_id } => Some((*id, *entry, *at_ms, *txn_id)),
                    _ => None,
                })?;
            let params = vec![
                column(entries.iter().map(|(id, ..)| *id).collect::<Vec<_>>()),
                column(entries.iter().map(|(_, e, ..)| e.kind().as_str()).collect::<Vec<_>>()),
                column(entries.iter().map(|(_, e, ..)| e.reference()).collect::<Vec<_>>()),
                column(entries.iter().map(|(_, _, at_ms, _)| *at_ms).collect::<Vec<_>>()),
                column(entries.iter().map(|(.., txn_id)| *txn_id).collect::<Vec<_>>()),
            ];
            SetStatement { sql: INSERT_ENTRIES, params, reports: Reports::EveryRow }
        }
        Step::Balances(indices) => {
            let balances: Vec<(&str, &kassa_ledger::Account, i64)> = rows(indices, planned, |write| match write {
                Planned::Balance { account_key, account, delta_minor } => {
                    Some((account_key.as_str(), *account, *delta_minor))
                }
                _ => None,
            })?;
            let params = vec![
                column(balances.iter().map(|(key, _, _)| *key).collect::<Vec<_>>()),
                column(balances.iter().map(|(_, a, _)| a.kind().as_str()).collect::<Vec<_>>()),
                column(balances.iter().map(|(_, a, _)| a.owner()).collect::<Vec<_>>()),
                column(balances.iter().map(|(_, a, _)| a.currency().code()).collect::<Vec<_>>()),
                column(balances.iter().map(|(_, _, delta)| *delta).collect::<Vec<_>>()),
            ];
            SetStatement { sql: UPSERT_BALANCES, params, reports: Reports::EveryRow }
        }
        Step::BatchVersions(indices) => {
            let versions: Vec<(&str, i64, i64)> = rows(indices, planned, |write| match write {
                Planned::BatchVersion { key, bump } => {
                    Some((key.terminal_id.as_str(), i64::from(key.batch_no.value()), *bump))
                }
                _ => None,
            })?;
            let params = vec![
                column(versions.iter().map(|v| v.0).collect::<Vec<_>>()),
                column(versions.iter().map(|v| v.1).collect::<Vec<_>>()),
                column(versions.iter().map(|v| v.2).collect::<Vec<_>>()),
            ];
            SetStatement { sql: UPSERT_BATCH_VERSIONS, params, reports: Reports::EveryRow }
        }
        Step::Postings(indices) => {
            let postings: Vec<(i64, i64, &str, i64)> = rows(indices, planned, |write| match write {
                Planned::Posting { entry_id, line, account_key, amount_minor } => {
                    Some((*entry_id, *line, account_key.as_str(), *amount_minor))
                }
                _ => None,
            })?;
            let params = vec![
                column(postings.iter().map(|p| p.0).collect::<Vec<_>>()),
                column(postings.iter().map(|p| p.1).collect::<Vec<_>>()),
                column(postings.iter().map(|p| p.2).collect::<Vec<_>>()),
                column(postings.iter().map(|p| p.3).collect::<Vec<_>>()),
            ];
            SetStatement { sql: INSERT_POSTINGS, params, reports: Reports::EveryRow }
        }
    }))
}

/// The writes at `indices`, picked out of the plan; every one must be of the step's kind.
fn rows<'p, T>(
    indices: &[usize],
    planned: &'p [Planned<'p>],
    pick: impl Fn(&'p Planned<'p>) -> Option<T>,
) -> Result<Vec<T>, StoreError> {
    indices
        .iter()
        .map(|i| planned.get(*i).and_then(&pick).ok_or_else(|| StoreError::Corrupt("a step of mixed writes".into())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::records::{NewTxn, StoredAnswer, TxnUpdate};
    use crate::core::unit::Statement;
    use kassa_domain::{Channel, Currency, TxnKind, TxnStatus};

    fn txn(rrn: Option<&str>) -> NewTxn {
        NewTxn {
            kind: TxnKind::Sale,
            status: TxnStatus::Pending,
            channel: Channel::Card,
            merchant_id: "898100000000001".into(),
            card_identity: None,
            out_trade_no: None,
            rrn: rrn.map(str::to_owned),
            auth_code: None,
            amount_minor: 1,
            currency: Currency::CNY,
            fee_minor: 0,
            pan_masked: None,
            content_digest: String::new(),
            original_id: None,
            response: StoredAnswer::default(),
            business_date: "2026-11-22".into(),
            created_at_ms: 0,
        }
    }

    fn update(id: i64, rrn: Option<&str>) -> TxnUpdate {
        TxnUpdate {
            id,
            expected_version: 1,
            kind: TxnKind::Sale,
            expected_status: TxnStatus::Pending,
            status: TxnStatus::Approved,
            refunded_minor: 0,
            settled: false,
            response: None,
            rrn: rrn.map(str::to_owned),
            auth_code: None,
            updated_at_ms: 0,
            batch: None,
        }
    }

    fn module_statement() -> Planned<'static> {
        Planned::Statement(Statement { sql: "INSERT INTO tms_nonces VALUES ($1)", params: Vec::new() })
    }

    #[test]
    fn transaction_writes_are_grouped_between_module_statements() {
        let (a, b) = (txn(None), txn(None));
        let (u, v) = (update(1, None), update(2, None));
        let planned = [
            Planned::InsertTxn { id: 10, txn: &a },
            Planned::UpdateTxn(&u),
            Planned::InsertTxn { id: 11, txn: &b },
            Planned::UpdateTxn(&v),
            module_statement(),
            Planned::InsertTxn { id: 12, txn: &a },
        ];
        assert_eq!(
            steps(&planned),
            [Step::InsertTxns(vec![0, 2]), Step::UpdateTxns(vec![1, 3]), Step::One(4), Step::One(5)]
        );
    }

    #[test]
    fn a_run_ends_before_a_write_that_could_see_another_of_it() {
        let (a, with_rrn) = (txn(None), txn(Some("R")));
        let (u, u_again, sets_rrn, of_insert) =
            (update(1, None), update(1, None), update(2, Some("R")), update(10, None));
        // The same transaction updated twice.
        let planned = [Planned::UpdateTxn(&u), Planned::InsertTxn { id: 10, txn: &a }, Planned::UpdateTxn(&u_again)];
        assert_eq!(steps(&planned), [Step::One(1), Step::One(0), Step::One(2)]);
        // An RRN an update set, then inserted (and the other way round).
        let planned = [Planned::UpdateTxn(&sets_rrn), Planned::InsertTxn { id: 10, txn: &with_rrn }];
        assert_eq!(steps(&planned), [Step::One(0), Step::One(1)]);
        let planned = [Planned::InsertTxn { id: 10, txn: &with_rrn }, Planned::UpdateTxn(&sets_rrn)];
        assert_eq!(steps(&planned), [Step::One(0), Step::One(1)]);
        // An update of a row inserted in the run.
        let planned = [Planned::InsertTxn { id: 10, txn: &a }, Planned::UpdateTxn(&of_insert)];
        assert_eq!(steps(&planned), [Step::One(0), Step::One(1)]);
    }

    #[test]
    fn large_groups_are_split_in_order() {
        let a = txn(None);
        let planned: Vec<Planned<'_>> = (0..2_001).map(|id| Planned::InsertTxn { id, txn: &a }).collect();
        let steps = steps(&planned);
        let sizes: Vec<usize> = steps.iter().map(|s| s.indices().len()).collect();
        assert_eq!(sizes, [BULK_ROWS_MAX, BULK_ROWS_MAX, 1]);
        assert_eq!(steps.last(), Some(&Step::One(2_000)));
        assert_eq!(steps.iter().flat_map(Step::indices).collect::<Vec<_>>(), (0..2_001).collect::<Vec<_>>());
    }

    #[test]
    fn ledger_rows_go_last_and_touch_an_account_once_per_statement() {
        let merchant = kassa_domain::MerchantId::parse("898100000000001").unwrap_or_else(|e| panic!("{e}"));
        let account = kassa_ledger::Account::merchant_payable(&merchant, kassa_domain::Currency::CNY);
        let balance = |key: &str| Planned::Balance { account_key: key.into(), account: &account, delta_minor: 1 };
        let posting = |line| Planned::Posting { entry_id: 1, line, account_key: "k".into(), amount_minor: 1 };
        let planned = [module_statement(), balance("a"), balance("b"), balance("a"), posting(0), posting(1)];
        assert_eq!(
            steps(&planned),
            [Step::One(0), Step::Balances(vec![1, 2]), Step::One(3), Step::Postings(vec![4, 5])]
        );
    }

    #[test]
    fn batch_versions_are_one_statement_before_what_follows_them() {
        let key = |terminal: &str| crate::core::records::CardIdentity::new(terminal, 1, 1, "020").unwrap().batch();
        let version = |terminal| Planned::BatchVersion { key: key(terminal), bump: 1 };
        let a = txn(None);
        let planned =
            [version("10000001"), version("10000002"), module_statement(), Planned::InsertTxn { id: 1, txn: &a }];
        assert_eq!(steps(&planned), [Step::BatchVersions(vec![0, 1]), Step::One(2), Step::One(3)]);
        // A batch twice (never planned so, but kept correct): a statement each.
        let planned = [version("10000001"), version("10000001"), version("10000002")];
        assert_eq!(steps(&planned), [Step::One(0), Step::BatchVersions(vec![1, 2])]);
    }
}

//! The PostgreSQL backend: several host processes may share one database. Reads use a
//! connection pool; writes go through this process's group committer on its own connection.
//! Ids come from sequences (fetched in blocks), so processes never hand out the same id, and
//! exactly-once rests on the unique indexes, which hold across processes.

mod backup;
mod bulk;
mod tls;

use std::collections::{HashMap, HashSet, VecDeque};
use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::Client;

use crate::core::committer;
use crate::core::migrate;
use crate::core::queries::{Reader, SqlReads};
use crate::core::unit::{apply_units, BatchWriter, Exec, Planned, Sequence, Statement, UnitOutcome, WriteUnit};
use crate::core::value::{Row, Value};
use crate::{timeouts, AdminStore, RestoreReport, Store, StoreError, StoreOptions};
use bulk::{Reports, SetStatement, Step};
use tls::{one_line, MakeRustls};

/// Ids fetched from a sequence per round trip.
const ID_BLOCK_SIZE: i64 = 512;
/// Advisory lock key held while migrating, so concurrent `kassa` processes migrate once.
const MIGRATION_LOCK_KEY: i64 = 0x006b_6173_7361;
/// Advisory lock key a transaction holds from reading the audit chain's head to its end.
const AUDIT_LOCK_KEY: i64 = 0x006b_6173_7361_6175;

#[derive(Debug)]
struct PgValue<'a>(&'a Value);

impl ToSql for PgValue<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) => v.to_sql(ty, out),
            Value::Bool(v) => v.to_sql(ty, out),
            Value::Text(v) => v.as_str().to_sql(ty, out),
            Value::Bytes(v) => v.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

pub(crate) fn db_error(error: tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    match error.as_db_error() {
        Some(db) => {
            let text = format!("{}: {}", db.code().code(), db.message());
            let code = db.code();
            if *code == SqlState::QUERY_CANCELED || *code == SqlState::LOCK_NOT_AVAILABLE {
                // statement_timeout or lock_timeout: the statement, and so its transaction,
                // did not happen.
                StoreError::Timeout(text)
            } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
                StoreError::ReadOnly(text)
            } else if *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
            {
                StoreError::Unreachable(text)
            } else {
                StoreError::Database(text)
            }
        }
        None if error.is_closed() => StoreError::Unreachable(one_line(&error)),
        None => StoreError::Database(one_line(&error)),
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    match error {
        deadpool_postgres::PoolError::Timeout(kind) => {
            StoreError::Timeout(format!("no database connection within the deadline ({kind:?})"))
        }
        deadpool_postgres::PoolError::Backend(error) => match db_error(error) {
            StoreError::Database(text) => StoreError::Unreachable(text),
            other => other,
        },
        other => StoreError::Unreachable(one_line(&other)),
    }
}

/// Settings of every session the host opens, sent in the start-up packet: they take precedence
/// over the database's and the role's own (`ALTER DATABASE … SET`), so a database configured
/// `synchronous_commit = off` still commits durably for Kassa.
fn session_options() -> String {
    format!(
        "-c synchronous_commit=on -c statement_timeout={} -c lock_timeout={} \
         -c idle_in_transaction_session_timeout={} -c plan_cache_mode=force_custom_plan",
        timeouts::STATEMENT_TIMEOUT_MS,
        timeouts::LOCK_TIMEOUT_MS,
        timeouts::IDLE_IN_TRANSACTION_TIMEOUT_MS
    )
}

/// The connection settings and TLS connector of `url` with the host's session settings, its
/// name and its connect timeout.
fn host_config(url: &str, connect_timeout: Duration) -> Result<(tokio_postgres::Config, MakeRustls), StoreError> {
    let (mut config, tls) = tls::connect_config(url)?;
    config.connect_timeout(connect_timeout);
    config.application_name("kassa");
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    // Plan every execution for its actual parameters. A generic plan cached while a table was
    // still empty (a fresh database, never analyzed) joins the batch's unnest() arrays to
    // `transactions` by a sequential scan, and keeps doing so as the table grows: commits got
    // slower with every batch. Planning these short statements costs microseconds.
    let server_options = match config.get_options() {
        Some(given) if !given.is_empty() => format!("{given} {}", session_options()),
        _ => session_options(),
    };
    config.options(&server_options);
    Ok((config, tls))
}

fn pool(
    config: tokio_postgres::Config,
    tls: MakeRustls,
    size: usize,
    connect_timeout: Duration,
) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        // connect_timeout covers the TCP connect only; this covers TLS and the start-up too.
        .create_timeout(Some(connect_timeout))
        .wait_timeout(Some(Duration::from_millis(timeouts::POOL_WAIT_TIMEOUT_MS)))
        .recycle_timeout(Some(connect_timeout))
        .build()
        .map_err(|e| StoreError::Unreachable(e.to_string()))
}

fn decode(row: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(index).map(|v| v.map(Value::Int))
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(index).map(|v| v.map(|v| Value::Int(i64::from(v))))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(index).map(|v| v.map(|v| Value::Int(i64::from(v))))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(index).map(|v| v.map(Value::Bool))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(index).map(|v| v.map(Value::Bytes))
        } else {
            row.try_get::<_, Option<String>>(index).map(|v| v.map(Value::Text))
        };
        values.push(value.map_err(db_error)?.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

pub(crate) async fn query_on(client: &Client, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
    let statement = client.prepare(sql).await.map_err(db_error)?;
    let wrapped: Vec<PgValue<'_>> = params.iter().map(PgValue).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = wrapped.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    let rows = client.query(&statement, &refs).await.map_err(db_error)?;
    rows.iter().map(decode).collect()
}

struct PgReader {
    pool: Pool,
}

#[async_trait]
impl Reader for PgReader {
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let deadline = Duration::from_millis(timeouts::READ_DEADLINE_MS);
        let mut client = None;
        let read = async {
            let taken = client.insert(self.pool.get().await.map_err(pool_error)?);
            let statement = taken.prepare_cached(sql).await.map_err(db_error)?;
            let wrapped: Vec<PgValue<'_>> = params.iter().map(PgValue).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = wrapped.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            let rows = taken.query(&statement, &refs).await.map_err(db_error)?;
            rows.iter().map(decode).collect()
        };
        match tokio::time::timeout(deadline, read).await {
            Ok(result) => result,
            Err(_) => {
                // The server never answered: the connection's state is unknown, keep it out of
                // the pool.
                if let Some(client) = client {
                    drop(deadpool_postgres::Object::take(client));
                }
                Err(StoreError::Timeout(format!("no answer to a read within {} ms", deadline.as_millis())))
            }
        }
    }
}

/// Ids drawn from the sequences a block at a time, not yet handed out.
#[derive(Debug, Default)]
struct IdPools {
    txns: VecDeque<i64>,
    entries: VecDeque<i64>,
}

impl IdPools {
    fn of(&mut self, sequence: Sequence) -> &mut VecDeque<i64> {
        match sequence {
            Sequence::Transactions => &mut self.txns,
            Sequence::LedgerEntries => &mut self.entries,
        }
    }
}

/// Where the current batch's transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Begin {
    /// No batch, or its `BEGIN` has yet to go out: it goes with the batch's first statements,
    /// in their round trip.
    Due,
    /// `BEGIN` went out on the current connection: every statement of the batch must run on
    /// that connection, never on a new one (it would run outside the transaction).
    Sent,
}

/// The committer's connection with its cached statements and id blocks.
struct PgWriter {
    pool: Pool,
    client: Option<deadpool_postgres::Object>,
    /// Shared by the committer's writers, so that ids follow the order batches take them in.
    ids: Arc<std::sync::Mutex<IdPools>>,
    begin: Begin,
    /// Whether the current batch's `COMMIT` went out: from then on its outcome is the server's.
    commit_sent: bool,
}

impl PgWriter {
    fn new(pool: Pool, ids: Arc<std::sync::Mutex<IdPools>>) -> PgWriter {
        PgWriter { pool, client: None, ids, begin: Begin::Due, commit_sent: false }
    }

    /// The batch's connection, and whether `BEGIN` must go out first (pipelined with what the
    /// caller sends next, so a batch's transaction costs no round trip of its own).
    async fn client(&mut self) -> Result<(&deadpool_postgres::Object, bool), StoreError> {
        let closed = self.client.as_ref().is_none_or(|c| c.is_closed());
        match (self.begin, closed) {
            (Begin::Sent, true) => {
                Err(StoreError::Unreachable("the connection closed in the middle of the transaction".into()))
            }
            (Begin::Sent, false) => Ok((self.client.as_ref().ok_or(StoreError::Closed)?, false)),
            (Begin::Due, _) => {
                if closed {
                    self.client = Some(self.pool.get().await.map_err(pool_error)?);
                }
                self.begin = Begin::Sent;
                Ok((self.client.as_ref().ok_or(StoreError::Closed)?, true))
            }
        }
    }

    /// Forgets the connection (out of the pool too): its transaction state is unknown.
    fn discard_client(&mut self) {
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

#[async_trait]
impl Exec for PgWriter {
    async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let (client, begin) = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(db_error)?;
        let wrapped: Vec<PgValue<'_>> = params.iter().map(PgValue).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = wrapped.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let rows = after_begin(client, begin, client.query(&statement, &refs)).await?.map_err(db_error)?;
        rows.iter().map(decode).collect()
    }

    async fn execute_many(&mut self, statements: &[Statement]) -> Result<Vec<u64>, StoreError> {
        let (client, begin) = self.client().await?;
        let mut prepared: HashMap<&'static str, tokio_postgres::Statement> = HashMap::new();
        for s in statements {
            if !prepared.contains_key(s.sql) {
                prepared.insert(s.sql, client.prepare_cached(s.sql).await.map_err(db_error)?);
            }
        }
        let wrapped: Vec<Vec<PgValue<'_>>> =
            statements.iter().map(|s| s.params.iter().map(PgValue).collect()).collect();
        // Polled together, the requests go out back to back on the one connection and the
        // server answers them in order: one round trip for the whole batch, not one each.
        let pending = statements.iter().zip(&wrapped).map(|(s, params)| {
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            let prepared = prepared.get(s.sql);
            async move {
                match prepared {
                    Some(statement) => client.execute(statement, &refs).await.map_err(db_error),
                    None => Err(StoreError::Corrupt("statement was not prepared".into())),
                }
            }
        });
        after_begin(client, begin, futures_util::future::join_all(pending)).await?.into_iter().collect()
    }

    async fn execute_planned(&mut self, planned: Vec<Planned<'_>>) -> Result<Vec<u64>, StoreError> {
        let steps = bulk::steps(&planned);
        let mut bound = Vec::with_capacity(steps.len());
        for step in &steps {
            bound.push(match (step, bulk::bind(step, &planned)?) {
                (_, Some(set)) => Bound::Set { indices: step.indices(), set },
                (Step::One(index), None) => {
                    let write = planned.get(*index).ok_or(StoreError::Corrupt("a step past the plan".into()))?;
                    Bound::One { index: *index, statement: write.clone().into_statement() }
                }
                (_, None) => return Err(StoreError::Corrupt("a set-based step without SQL".into())),
            });
        }
        let (client, begin) = self.client().await?;
        let mut prepared: HashMap<&'static str, tokio_postgres::Statement> = HashMap::new();
        for sql in bound.iter().map(Bound::sql) {
            if !prepared.contains_key(sql) {
                prepared.insert(sql, client.prepare_cached(sql).await.map_err(db_error)?);
            }
        }
        // As in `execute_many`: polled together, the statements make one round trip.
        let planned = &planned;
        let pending = bound.iter().map(|bound| {
            let statement = prepared.get(bound.sql());
            async move {
                let statement = statement.ok_or(StoreError::Corrupt("statement was not prepared".into()))?;
                bound.run(client, statement, planned).await
            }
        });
        let mut changed: Vec<Option<u64>> = vec![None; planned.len()];
        for result in after_begin(client, begin, futures_util::future::join_all(pending)).await? {
            for (index, rows) in result? {
                if let Some(slot) = changed.get_mut(index) {
                    *slot = Some(rows);
                }
            }
        }
        changed.into_iter().map(|rows| rows.ok_or(StoreError::Corrupt("a planned write was not run".into()))).collect()
    }

    async fn lock_audit_chain(&mut self) -> Result<(), StoreError> {
        // Read after the lock is granted, the head is the one the last holder committed (each
        // statement of a READ COMMITTED transaction sees what committed before it began).
        self.query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS locked", &[Value::Int(AUDIT_LOCK_KEY)]).await?;
        Ok(())
    }

    fn id_block_fence(&self, block_id: i64, highest_id: i64) -> Option<Statement> {
        // FOR SHARE: writers inserting under the block at once do not wait for each other; its
        // close (an UPDATE) waits for them, and one that committed first is seen. Sent with the
        // guards, in their round trip; its row count (1: open) is checked before the commit.
        Some(Statement {
            sql: "SELECT 1 FROM gateway_id_blocks WHERE block_id = $1 AND last_id >= $2 AND closed_at_ms IS NULL \
                  FOR SHARE",
            params: vec![Value::Int(block_id), Value::Int(highest_id)],
        })
    }

    async fn next_ids(&mut self, sequence: Sequence, count: usize) -> Result<Vec<i64>, StoreError> {
        let name = match sequence {
            Sequence::Transactions => "transactions_id_seq",
            Sequence::LedgerEntries => "ledger_entries_id_seq",
        };
        loop {
            {
                let mut pools = self.ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let pool = pools.of(sequence);
                if pool.len() >= count {
                    return Ok(pool.drain(..count).collect());
                }
            }
            let wanted = ID_BLOCK_SIZE.max(i64::try_from(count).unwrap_or(ID_BLOCK_SIZE));
            // nextval is not transactional: ids stay taken even if this batch rolls back.
            let sql = format!("SELECT nextval('{name}') FROM generate_series(1, $1::BIGINT)");
            let rows = self.query(&sql, &[Value::Int(wanted)]).await?;
            let ids = rows.iter().map(|r| r.int(0)).collect::<Result<Vec<_>, _>>()?;
            self.ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner).of(sequence).extend(ids);
        }
    }
}

/// A step of [`bulk::steps`] ready to send.
enum Bound<'p> {
    One { index: usize, statement: Statement },
    Set { indices: Vec<usize>, set: SetStatement<'p> },
}

impl Bound<'_> {
    fn sql(&self) -> &'static str {
        match self {
            Bound::One { statement, .. } => statement.sql,
            Bound::Set { set, .. } => set.sql,
        }
    }

    /// Runs it; returns the rows each of its planned writes changed.
    async fn run(
        &self,
        client: &Client,
        statement: &tokio_postgres::Statement,
        planned: &[Planned<'_>],
    ) -> Result<Vec<(usize, u64)>, StoreError> {
        match self {
            Bound::One { index, statement: s } => {
                let wrapped: Vec<PgValue<'_>> = s.params.iter().map(PgValue).collect();
                let refs: Vec<&(dyn ToSql + Sync)> = wrapped.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                let rows = client.execute(statement, &refs).await.map_err(db_error)?;
                Ok(vec![(*index, rows)])
            }
            Bound::Set { indices, set } => {
                let refs: Vec<&(dyn ToSql + Sync)> =
                    set.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
                match set.reports {
                    Reports::Ids => {
                        let rows = client.query(statement, &refs).await.map_err(db_error)?;
                        let written = rows
                            .iter()
                            .map(|row| row.try_get::<_, i64>(0))
                            .collect::<Result<HashSet<i64>, _>>()
                            .map_err(db_error)?;
                        indices
                            .iter()
                            .map(|index| {
                                let id = planned.get(*index).and_then(Planned::txn_id);
                                let id = id.ok_or(StoreError::Corrupt("a transaction write without id".into()))?;
                                Ok((*index, u64::from(written.contains(&id))))
                            })
                            .collect()
                    }
                    Reports::EveryRow => {
                        let rows = client.execute(statement, &refs).await.map_err(db_error)?;
                        if rows != indices.len() as u64 {
                            return Err(StoreError::Corrupt(format!("{rows} rows written of {}", indices.len())));
                        }
                        Ok(indices.iter().map(|index| (*index, 1)).collect())
                    }
                }
            }
        }
    }
}

#[async_trait]
impl BatchWriter for PgWriter {
    /// One batch transaction within [`timeouts::COMMIT_DEADLINE_MS`]. Past it, or when the
    /// connection breaks: before `COMMIT` went out nothing is written ([`StoreError::Timeout`]
    /// or the error; the server rolls back when it sees the connection go, or at its
    /// `idle_in_transaction_session_timeout`), after it the outcome is the server's and
    /// unknown here ([`StoreError::CommitUnknown`]).
    async fn write_batch(&mut self, units: &[WriteUnit]) -> Result<Vec<UnitOutcome>, StoreError> {
        self.commit_sent = false;
        let deadline = Duration::from_millis(timeouts::COMMIT_DEADLINE_MS);
        let result = match tokio::time::timeout(deadline, self.write_batch_now(units)).await {
            Ok(result) => result,
            Err(_) => {
                self.discard_client();
                let why = format!("no answer from the database within {} ms", deadline.as_millis());
                Err(if self.commit_sent { StoreError::CommitUnknown(why) } else { StoreError::Timeout(why) })
            }
        };
        if result.is_err() && self.commit_sent {
            self.discard_client();
        }
        result
    }
}

impl PgWriter {
    async fn write_batch_now(&mut self, units: &[WriteUnit]) -> Result<Vec<UnitOutcome>, StoreError> {
        // `BEGIN` goes out with the batch's first statements (`client`).
        self.begin = Begin::Due;
        let applied = apply_units(self, units).await;
        let began = std::mem::replace(&mut self.begin, Begin::Due) == Begin::Sent;
        match applied {
            Ok(outcomes) if !began => Ok(outcomes),
            Ok(outcomes) => {
                // Never a new connection here: COMMIT on one without this transaction would
                // "succeed" having written nothing.
                let client = self.client.as_ref().filter(|c| !c.is_closed()).ok_or_else(|| {
                    StoreError::Unreachable("the connection closed in the middle of the transaction".into())
                })?;
                self.commit_sent = true;
                let commit = client.batch_execute("COMMIT").await;
                match commit {
                    Ok(()) => Ok(outcomes),
                    // The server answered: it did not commit (a deferred constraint, a
                    // serialization failure, a statement or lock timeout).
                    Err(error) if error.as_db_error().is_some() => Err(db_error(error)),
                    // No answer: the connection broke with COMMIT on its way.
                    Err(error) => Err(StoreError::CommitUnknown(one_line(&error))),
                }
            }
            Err(error) => {
                if let Some(client) = self.client.as_ref().filter(|_| began) {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        self.client = None;
                    }
                }
                Err(error)
            }
        }
    }
}

/// Runs `work` (the batch's next statements) after `BEGIN` when `begin`: `BEGIN` is polled
/// first, so it goes out ahead of them in the same round trip.
async fn after_begin<T>(
    client: &deadpool_postgres::Object,
    begin: bool,
    work: impl std::future::Future<Output = T>,
) -> Result<T, StoreError> {
    let begin = async {
        if begin {
            client.batch_execute("BEGIN").await.map_err(db_error)?;
        }
        Ok::<(), StoreError>(())
    };
    let (begun, done) = futures_util::future::join(begin, work).await;
    begun?;
    Ok(done)
}

struct PgAdmin {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustls,
}

impl PgAdmin {
    async fn applied(client: &Client) -> Result<Vec<(i64, String)>, StoreError> {
        let exists = query_on(client, "SELECT to_regclass('kassa_schema_migrations') IS NOT NULL", &[]).await?;
        if !exists.first().map(|r| r.boolean(0)).transpose()?.unwrap_or(false) {
            return Ok(Vec::new());
        }
        let rows =
            query_on(client, "SELECT version, checksum FROM kassa_schema_migrations ORDER BY version", &[]).await?;
        rows.iter().map(|r| Ok((r.int(0)?, r.text(1)?))).collect()
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// A pooled client whose every call is bounded by the read deadline.
    async fn query(&self, sql: &str) -> Result<Vec<Row>, StoreError> {
        let deadline = Duration::from_millis(timeouts::READ_DEADLINE_MS);
        let read = async {
            let client = self.client().await?;
            query_on(&client, sql, &[]).await
        };
        tokio::time::timeout(deadline, read)
            .await
            .map_err(|_| StoreError::Timeout(format!("no answer within {} ms", deadline.as_millis())))?
    }
}

#[async_trait]
impl AdminStore for PgAdmin {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        client.batch_execute(migrate::CREATE_TABLE).await.map_err(db_error)?;
        let tx = client.transaction().await.map_err(db_error)?;
        // A migration may rewrite a large table: the session's OLTP timeouts do not apply.
        tx.batch_execute(UNBOUNDED_TRANSACTION).await.map_err(db_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY]).await.map_err(db_error)?;
        let applied = Self::applied(tx.client()).await?;
        for migration in migrate::pending(migrate::POSTGRES, &applied)? {
            tx.batch_execute(migration.sql)
                .await
                .map_err(|e| StoreError::Schema(format!("migration {}: {}", migration.version, db_error(e))))?;
            tx.execute(
                "INSERT INTO kassa_schema_migrations (version, name, checksum, applied_at_ms) VALUES ($1, $2, $3, $4)",
                &[&migration.version, &migration.name, &migration.checksum(), &crate::backend::sqlite::now_ms()],
            )
            .await
            .map_err(db_error)?;
            tracing::info!(version = migration.version, name = migration.name, "applied migration");
        }
        tx.commit().await.map_err(db_error)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let deadline = Duration::from_millis(timeouts::READ_DEADLINE_MS);
        let check = async {
            let client = self.client().await?;
            let applied = Self::applied(&client).await?;
            if !migrate::pending(migrate::POSTGRES, &applied)?.is_empty() {
                return Err(StoreError::Schema("migrations are not applied (run `kassa migrate`)".into()));
            }
            // A standby, or a database or role set `default_transaction_read_only`, answers
            // reads and refuses every write.
            let rows =
                query_on(&client, "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'", &[])
                    .await?;
            let row = rows.first().ok_or(StoreError::Corrupt("no answer to the read-only check".into()))?;
            if row.boolean(0)? {
                Err(StoreError::ReadOnly("the PostgreSQL server is in recovery (a standby)".into()))
            } else if row.boolean(1)? {
                Err(StoreError::ReadOnly("the session is read-only (default_transaction_read_only)".into()))
            } else {
                Ok(())
            }
        };
        tokio::time::timeout(deadline, check)
            .await
            .map_err(|_| StoreError::Timeout(format!("no answer within {} ms", deadline.as_millis())))?
    }

    async fn not_durable_because(&self) -> Result<Option<String>, StoreError> {
        // The settings in effect for the pool's sessions, which the committer's are.
        let rows = self.query("SELECT current_setting('fsync'), current_setting('synchronous_commit')").await?;
        let row = rows.first().ok_or(StoreError::Corrupt("no answer to the durability check".into()))?;
        let (fsync, synchronous_commit) = (row.text(0)?, row.text(1)?);
        Ok(if fsync != "on" {
            Some(format!("the PostgreSQL server runs with fsync = {fsync}"))
        } else if synchronous_commit == "off" {
            Some(format!("the PostgreSQL session runs with synchronous_commit = {synchronous_commit}"))
        } else {
            None
        })
    }

    async fn backup(&self, path: &Path) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        backup::backup(&mut client, path).await
    }

    async fn restore(&self, path: &Path) -> Result<RestoreReport, StoreError> {
        // A connection of its own: the restore holds one transaction open across many
        // statements and checks, which must not mix with the pool's other users.
        let client = tls::connect_one(&self.config, self.tls.clone()).await?;
        client.batch_execute(UNBOUNDED_SESSION).await.map_err(db_error)?;
        backup::restore(Arc::new(client), path).await
    }
}

/// Lifts the session's OLTP timeouts for one maintenance transaction (migrate, backup).
pub(crate) const UNBOUNDED_TRANSACTION: &str = "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0";
/// The same for a maintenance session of its own (restore), which may also sit in its
/// transaction while it verifies.
const UNBOUNDED_SESSION: &str =
    "SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0";

/// Connections the committer writes through at once: while one batch waits for its commit's
/// flush, the next is built and sent (a host on 2 cores was idle 43 % of a PostgreSQL run with
/// one, every commit waiting on round trips and the flush).
pub const WRITERS: usize = 2;

pub(crate) async fn open(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
    let connect_timeout = Duration::from_millis(options.connect_timeout_ms);
    let (config, tls) = host_config(url, connect_timeout)?;
    let admin_config = config.clone();
    let pool = pool(config, tls.clone(), options.read_connections_max.max(2) + WRITERS, connect_timeout)?;
    // Fail now, with a clear reason, when the database cannot be reached.
    let probe = tokio::time::timeout(connect_timeout, pool.get())
        .await
        .map_err(|_| {
            StoreError::Unreachable(format!(
                "no answer from {} within {} ms",
                crate::redact_url(url),
                options.connect_timeout_ms
            ))
        })?
        .map_err(|e| {
            let reason = match pool_error(e) {
                StoreError::Unreachable(reason) | StoreError::Timeout(reason) => reason,
                other => other.to_string(),
            };
            StoreError::Unreachable(format!("{}: {reason}", crate::redact_url(url)))
        })?;
    drop(probe);
    let ids = Arc::default();
    let writers = (0..WRITERS).map(|_| PgWriter::new(pool.clone(), Arc::clone(&ids))).collect();
    let (committer, run_loop) = committer::committer(writers, options.committer);
    tokio::spawn(run_loop);
    let reads = Arc::new(SqlReads { reader: Arc::new(PgReader { pool: pool.clone() }) });
    Ok(Store {
        directory: reads.clone(),
        txns: reads.clone(),
        ledger: reads.clone(),
        audit: reads.clone(),
        settings: reads.clone(),
        admin: Arc::new(PgAdmin { pool, config: admin_config, tls }),
        committer,
        reads,
    })
}

/// [`committer::commit_as_one_batch`] with a writer of its own on the database at `url`.
#[cfg(feature = "testing")]
pub(crate) async fn commit_as_one_batch(url: &str, units: Vec<WriteUnit>) -> Vec<Result<UnitOutcome, StoreError>> {
    let connect_timeout = Duration::from_millis(timeouts::CONNECT_TIMEOUT_MS);
    let pool = host_config(url, connect_timeout).and_then(|(config, tls)| pool(config, tls, 1, connect_timeout));
    match pool {
        Ok(pool) => committer::commit_as_one_batch(PgWriter::new(pool, Arc::default()), units).await,
        Err(error) => vec![Err(error)],
    }
}

/// Replaces the database name of a `postgres://` URL (keeping its query string).
pub fn url_with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

fn checked_database_name(name: &str) -> Result<&str, StoreError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    if valid {
        Ok(name)
    } else {
        Err(StoreError::Database(format!("not a plain database name: {name:?}")))
    }
}

async fn server_client(server_url: &str) -> Result<tokio_postgres::Client, StoreError> {
    connect(server_url).await
}

/// One client on the database at `url` outside any pool, with the URL's TLS settings
/// (`sslmode`, `sslrootcert`) and none of the host's session settings: for scratch databases,
/// tests and tools. The error is one line naming the masked URL.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, StoreError> {
    let in_url = |error: StoreError| match error {
        StoreError::Unreachable(reason) => StoreError::Unreachable(format!("{}: {reason}", crate::redact_url(url))),
        other => other,
    };
    let (mut config, tls) = tls::connect_config(url).map_err(in_url)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_millis(timeouts::CONNECT_TIMEOUT_MS));
    }
    tls::connect_one(&config, tls).await.map_err(in_url)
}

/// Creates the empty database `name` (lower-case letters, digits, `_`) on the server of
/// `server_url` and returns its URL. For scratch databases: tests, benchmarks.
pub async fn create_database(server_url: &str, name: &str) -> Result<String, StoreError> {
    let name = checked_database_name(name)?;
    let client = server_client(server_url).await?;
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.map_err(db_error)?;
    Ok(url_with_database(server_url, name))
}

/// Drops the database `name` on the server of `server_url`, closing its connections.
pub async fn drop_database(server_url: &str, name: &str) -> Result<(), StoreError> {
    let name = checked_database_name(name)?;
    let client = server_client(server_url).await?;
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.map_err(db_error)
}

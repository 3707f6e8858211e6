//! The integrators' JSON API (`/api/v1`): API keys as their owners manage them, Idempotency-Key
//! records, and the transaction search across card transactions and QR trades. Reads through
//! [`ApiStore`] (`store.api()`), writes through the constructors below, which build [`Guard`]s
//! and [`WriteOp`]s for the one write path.
//!
//! **Invariant**: an API key is stored only as the SHA-256 of the key; a revoked key stays
//! revoked (the revocation is a guarded update of a key not yet revoked). An idempotency record
//! is claimed by exactly one request (the primary key), finished or released only by the request
//! holding it (the holder token in the guard), and taken over only by a guarded update naming
//! the holder that was seen after its lease passed.
//! **Invariant**: the search's order (creation time, source, id; newest first) is total, so a
//! cursor names one place in it and pages never overlap or skip, whatever lands meanwhile.

use async_trait::async_trait;

use crate::core::queries::SqlReads;
use crate::core::unit::{Guard, Statement, WriteOp};
use crate::core::value::{params, Row, Value};
use crate::StoreError;

/// Hex digits of a key's digest that make its public id.
pub const API_KEY_ID_HEX_DIGITS: usize = 16;

/// An API key as its owner sees it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The public id: the first [`API_KEY_ID_HEX_DIGITS`] hex digits of the digest.
    pub key_id: String,
    /// Hex SHA-256 of the key.
    pub key_digest: String,
    /// The merchant it acts for.
    pub merchant_id: String,
    /// The owner's label.
    pub label: String,
    /// The key's first characters (e.g. `kassa_live_3f9a`), `None` for keys registered before
    /// prefixes were kept.
    pub prefix: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// When it was revoked, Unix milliseconds.
    pub revoked_at_ms: Option<i64>,
    /// When it was last used (to a resolution the API chooses), Unix milliseconds.
    pub last_used_at_ms: Option<i64>,
}

impl ApiKey {
    /// The public id of a key digest.
    pub fn id_of(key_digest: &str) -> String {
        key_digest.chars().take(API_KEY_ID_HEX_DIGITS).collect()
    }
}

/// Where an idempotency record stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyState {
    /// A request holds it and runs; taken over after `lease_until_ms`.
    InFlight {
        /// Unix milliseconds.
        lease_until_ms: i64,
    },
    /// Answered: the status and JSON body to replay.
    Done {
        /// HTTP status.
        status: u16,
        /// The JSON body as sent.
        response: String,
    },
}

/// An Idempotency-Key record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyEntry {
    /// Whose keys (`merchant:<id>`).
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// Hex SHA-256 of what the request asked (method, route, canonical body).
    pub request_digest: String,
    /// The random token of the request holding (or that finished) it.
    pub holder: String,
    /// Where it stands.
    pub state: IdempotencyState,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Forgotten after this, Unix milliseconds.
    pub expires_at_ms: i64,
}

/// Which table a search row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SearchSource {
    /// A card transaction (`transactions`).
    Card,
    /// A QR trade (`qr_trades`).
    Qr,
}

impl SearchSource {
    /// The stable name, also its place in the order (`card` < `qr`).
    pub fn as_str(self) -> &'static str {
        match self {
            SearchSource::Card => "card",
            SearchSource::Qr => "qr",
        }
    }

    /// The source of a stable name.
    pub fn parse(text: &str) -> Option<SearchSource> {
        match text {
            "card" => Some(SearchSource::Card),
            "qr" => Some(SearchSource::Qr),
            _ => None,
        }
    }
}

/// Statuses the search knows, one vocabulary for card transactions and QR trades.
pub const SEARCH_STATUSES: [&str; 9] =
    ["pending", "succeeded", "failed", "closed", "reversed", "voided", "partially_refunded", "refunded", "completed"];

/// What a search keeps; every field narrows it, `None` leaves it open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// First business day (`YYYY-MM-DD`), inclusive.
    pub date_from: Option<String>,
    /// Last business day (`YYYY-MM-DD`), inclusive.
    pub date_to: Option<String>,
    /// `card`, `alipay` or `wechat`.
    pub channel: Option<String>,
    /// One of [`SEARCH_STATUSES`].
    pub status: Option<String>,
    /// Smallest amount, minor units, inclusive.
    pub amount_min_minor: Option<i64>,
    /// Largest amount, minor units, inclusive.
    pub amount_max_minor: Option<i64>,
    /// The terminal.
    pub terminal_id: Option<String>,
    /// An RRN (card), an `out_trade_no` or a wallet trade number (QR).
    pub reference: Option<String>,
}

/// A place in the search's order: the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchCursor {
    /// Its creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Its source.
    pub source: SearchSource,
    /// Its id in its table.
    pub id: i64,
}

/// One row of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRow {
    /// Its table.
    pub source: SearchSource,
    /// The merchant.
    pub merchant_id: String,
    /// The card number, masked (first 6, last 4); `None` for QR trades.
    pub pan_masked: Option<String>,
    /// Its id in its table.
    pub id: i64,
    /// `sale`, `void`, `refund`, … for cards; `qr_payment` for QR trades.
    pub kind: String,
    /// `card`, `alipay`, `wechat`; `None` for a merchant QR no wallet paid.
    pub channel: Option<String>,
    /// One of [`SEARCH_STATUSES`].
    pub status: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Currency code.
    pub currency: String,
    /// Refunded so far, minor units.
    pub refunded_minor: i64,
    /// The terminal.
    pub terminal_id: Option<String>,
    /// RRN (card) or `out_trade_no` (QR).
    pub reference: Option<String>,
    /// The wallet's trade number (QR).
    pub trade_no: Option<String>,
    /// Business day.
    pub business_date: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

impl SearchRow {
    /// The cursor that continues after this row.
    pub fn cursor(&self) -> SearchCursor {
        SearchCursor { created_at_ms: self.created_at_ms, source: self.source, id: self.id }
    }
}

/// Reads of the API's aggregate.
#[async_trait]
pub trait ApiStore: Send + Sync {
    /// An API key by the hex SHA-256 of the key.
    async fn api_key(&self, key_digest: &str) -> Result<Option<ApiKey>, StoreError>;
    /// The keys of a merchant, newest first, at most `limit`.
    async fn api_keys_of(&self, merchant_id: &str, limit: i64) -> Result<Vec<ApiKey>, StoreError>;
    /// A key of a merchant by its public id.
    async fn api_key_by_id(&self, merchant_id: &str, key_id: &str) -> Result<Option<ApiKey>, StoreError>;
    /// How many keys of a merchant are not revoked.
    async fn live_api_keys(&self, merchant_id: &str) -> Result<i64, StoreError>;
    /// An idempotency record.
    async fn idempotency_entry(&self, scope: &str, key: &str) -> Result<Option<IdempotencyEntry>, StoreError>;
    /// The merchant's card transactions (balance inquiries aside) and QR trades that pass
    /// `filter`, newest first, after `after`, at most `limit`.
    async fn search(
        &self,
        merchant_id: &str,
        filter: &SearchFilter,
        after: Option<SearchCursor>,
        limit: i64,
    ) -> Result<Vec<SearchRow>, StoreError>;
}

const KEY_COLUMNS: &str = "key_digest, merchant_id, label, prefix, created_at_ms, revoked_at_ms, last_used_at_ms";

fn api_key(row: &Row) -> Result<ApiKey, StoreError> {
    let key_digest = row.text(0)?;
    Ok(ApiKey {
        key_id: ApiKey::id_of(&key_digest),
        key_digest,
        merchant_id: row.text(1)?,
        label: row.text(2)?,
        prefix: row.opt_text(3)?,
        created_at_ms: row.int(4)?,
        revoked_at_ms: row.opt_int(5)?,
        last_used_at_ms: row.opt_int(6)?,
    })
}

const IDEMPOTENCY_COLUMNS: &str =
    "scope, idem_key, request_digest, holder, state, lease_until_ms, status, response, created_at_ms, expires_at_ms";

fn idempotency(row: &Row) -> Result<IdempotencyEntry, StoreError> {
    let state = match row.text(4)?.as_str() {
        "in_flight" => IdempotencyState::InFlight { lease_until_ms: row.int(5)? },
        "done" => {
            let status = row.opt_int(6)?.ok_or_else(|| StoreError::Corrupt("idempotency status missing".into()))?;
            IdempotencyState::Done {
                status: u16::try_from(status).map_err(|_| StoreError::Corrupt("idempotency status".into()))?,
                response: row.opt_text(7)?.ok_or_else(|| StoreError::Corrupt("idempotency answer missing".into()))?,
            }
        }
        other => return Err(StoreError::Corrupt(format!("idempotency state {other}"))),
    };
    Ok(IdempotencyEntry {
        scope: row.text(0)?,
        key: row.text(1)?,
        request_digest: row.text(2)?,
        holder: row.text(3)?,
        state,
        created_at_ms: row.int(8)?,
        expires_at_ms: row.int(9)?,
    })
}

fn search_row(row: &Row) -> Result<SearchRow, StoreError> {
    let source = row.text(0)?;
    Ok(SearchRow {
        source: SearchSource::parse(&source).ok_or_else(|| StoreError::Corrupt(format!("search source {source}")))?,
        id: row.int(1)?,
        kind: row.text(2)?,
        channel: row.opt_text(3)?,
        status: row.text(4)?,
        amount_minor: row.int(5)?,
        currency: row.text(6)?,
        refunded_minor: row.int(7)?,
        terminal_id: row.opt_text(8)?,
        reference: row.opt_text(9)?,
        trade_no: row.opt_text(10)?,
        business_date: row.text(11)?,
        created_at_ms: row.int(12)?,
        merchant_id: row.text(13)?,
        pan_masked: row.opt_text(14)?,
    })
}

/// Card transactions in the search's shape and status vocabulary ([`SEARCH_STATUSES`]). A sale the host recorded as failed that an approved correction (补登) credited
/// reads as succeeded: the correction is joined at read time, the record is never edited.
const SEARCH_CARDS: &str = "SELECT 'card' AS source, id, kind, channel, \
       CASE WHEN status IN ('declined', 'pending', 'reversed') AND EXISTS (SELECT 1 FROM corrections \
                 WHERE corrections.txn_id = transactions.id AND corrections.status = 'approved' \
                 AND corrections.txn_id IS NOT NULL AND corrections.kind <> 'amount_mismatch') THEN 'succeeded' \
            WHEN status = 'approved' THEN 'succeeded' WHEN status = 'declined' THEN 'failed' ELSE status END AS status, \
       amount_minor, currency, refunded_minor, terminal_id, rrn AS reference, CAST(NULL AS TEXT) AS trade_no, \
       business_date, created_at_ms, merchant_id, pan_masked \
     FROM transactions WHERE kind <> 'balance_inquiry'";

/// QR trades in the search's shape and status vocabulary.
const SEARCH_TRADES: &str = "SELECT 'qr' AS source, id, 'qr_payment' AS kind, wallet AS channel, \
       CASE WHEN status IN ('pending', 'waiting') THEN 'pending' \
            WHEN status = 'paid' AND refunded_minor >= amount_minor THEN 'refunded' \
            WHEN status = 'paid' AND refunded_minor > 0 THEN 'partially_refunded' \
            WHEN status = 'paid' THEN 'succeeded' ELSE status END AS status, \
       amount_minor, currency, refunded_minor, terminal_id, out_trade_no AS reference, trade_no, \
       business_date, created_at_ms, merchant_id, CAST(NULL AS TEXT) AS pan_masked \
     FROM qr_trades";

const SEARCH_COLUMNS: &str = "source, id, kind, channel, status, amount_minor, currency, refunded_minor, terminal_id, \
     reference, trade_no, business_date, created_at_ms, merchant_id, pan_masked";

/// The WHERE conditions of a search over `source`'s table and their parameters, numbered from
/// `$1` (the same numbers and values for either source); `merchant_id` `None` searches every
/// merchant (the institution's staff).
fn search_conditions(
    merchant_id: Option<&str>,
    filter: &SearchFilter,
    after: Option<SearchCursor>,
    source: SearchSource,
) -> (Vec<String>, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let next = |value: Value, values: &mut Vec<Value>| {
        values.push(value);
        format!("${}", values.len())
    };
    if let Some(merchant_id) = merchant_id {
        conditions.push(format!("merchant_id = {}", next(merchant_id.into(), &mut values)));
    }
    if let Some(date) = &filter.date_from {
        conditions.push(format!("business_date >= {}", next(date.as_str().into(), &mut values)));
    }
    if let Some(date) = &filter.date_to {
        conditions.push(format!("business_date <= {}", next(date.as_str().into(), &mut values)));
    }
    if let Some(channel) = &filter.channel {
        conditions.push(format!("channel = {}", next(channel.as_str().into(), &mut values)));
    }
    if let Some(status) = &filter.status {
        conditions.push(format!("status = {}", next(status.as_str().into(), &mut values)));
    }
    if let Some(minor) = filter.amount_min_minor {
        conditions.push(format!("amount_minor >= {}", next(minor.into(), &mut values)));
    }
    if let Some(minor) = filter.amount_max_minor {
        conditions.push(format!("amount_minor <= {}", next(minor.into(), &mut values)));
    }
    if let Some(terminal) = &filter.terminal_id {
        conditions.push(format!("terminal_id = {}", next(terminal.as_str().into(), &mut values)));
    }
    if let Some(reference) = &filter.reference {
        let slot = next(reference.as_str().into(), &mut values);
        // A card transaction has no wallet trade number: `rrn = $n` alone keeps its index usable.
        conditions.push(match source {
            SearchSource::Card => format!("reference = {slot}"),
            SearchSource::Qr => format!("(reference = {slot} OR trade_no = {slot})"),
        });
    }
    if let Some(cursor) = after {
        let at = next(cursor.created_at_ms.into(), &mut values);
        let source = next(cursor.source.as_str().into(), &mut values);
        let id = next(cursor.id.into(), &mut values);
        conditions.push(format!(
            // The first conjunct is implied by the second; it lets the index on (merchant,
            // creation time) start at the cursor instead of filtering the newer rows out.
            "created_at_ms <= {at} AND (created_at_ms < {at} OR (created_at_ms = {at} AND (source < {source} \
             OR (source = {source} AND id < {id}))))"
        ));
    }
    (conditions, values)
}

#[async_trait]
impl ApiStore for SqlReads {
    async fn api_key(&self, key_digest: &str) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_digest = $1");
        self.one(&sql, &params![key_digest], api_key).await
    }

    async fn api_keys_of(&self, merchant_id: &str, limit: i64) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE merchant_id = $1 ORDER BY created_at_ms DESC, key_digest LIMIT $2"
        );
        self.all(&sql, &params![merchant_id, limit], api_key).await
    }

    async fn api_key_by_id(&self, merchant_id: &str, key_id: &str) -> Result<Option<ApiKey>, StoreError> {
        if key_id.len() != API_KEY_ID_HEX_DIGITS || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let sql =
            format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE merchant_id = $1 AND substr(key_digest, 1, 16) = $2");
        self.one(&sql, &params![merchant_id, key_id.to_ascii_lowercase()], api_key).await
    }

    async fn live_api_keys(&self, merchant_id: &str) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) FROM api_keys WHERE merchant_id = $1 AND revoked_at_ms IS NULL";
        let rows = self.reader.query(sql, &params![merchant_id]).await?;
        rows.first().map_or(Ok(0), |row| row.int(0))
    }

    async fn idempotency_entry(&self, scope: &str, key: &str) -> Result<Option<IdempotencyEntry>, StoreError> {
        let sql = format!("SELECT {IDEMPOTENCY_COLUMNS} FROM api_idempotency WHERE scope = $1 AND idem_key = $2");
        self.one(&sql, &params![scope, key], idempotency).await
    }

    async fn search(
        &self,
        merchant_id: &str,
        filter: &SearchFilter,
        after: Option<SearchCursor>,
        limit: i64,
    ) -> Result<Vec<SearchRow>, StoreError> {
        self.search_rows(Some(merchant_id), filter, after, limit).await
    }
}

impl SqlReads {
    /// The search of [`ApiStore::search`], of one merchant or (`None`) of every merchant: the one
    /// query behind `/api/v1/transactions`, the web pages and their export.
    pub(crate) async fn search_rows(
        &self,
        merchant_id: Option<&str>,
        filter: &SearchFilter,
        after: Option<SearchCursor>,
        limit: i64,
    ) -> Result<Vec<SearchRow>, StoreError> {
        let (_, mut all) = search_conditions(merchant_id, filter, after, SearchSource::Card);
        all.push(limit.into());
        // Each table's page first, in the order of its index on (merchant, creation time) (id
        // breaks ties: SQLite's rowid, PostgreSQL's incremental sort), then the two merged: a
        // page reads about `limit` rows of each table however many the merchant has.
        let limit_slot = all.len();
        let branch = |source: SearchSource, table: &str| {
            let (conditions, _) = search_conditions(merchant_id, filter, after, source);
            let condition = if conditions.is_empty() { "1 = 1".to_owned() } else { conditions.join(" AND ") };
            format!(
                "SELECT * FROM (SELECT * FROM ({table}) AS candidates WHERE {condition} \
                 ORDER BY created_at_ms DESC, id DESC LIMIT ${limit_slot}) AS page"
            )
        };
        // A channel filter names one table's rows only (card transactions are all `card`, QR
        // trades never): the other table is not read at all, rather than walked to find nothing.
        let channel = filter.channel.as_deref();
        let mut branches = Vec::with_capacity(2);
        if channel.is_none_or(|channel| channel == "card") {
            branches.push(branch(SearchSource::Card, SEARCH_CARDS));
        }
        if channel.is_none_or(|channel| channel != "card") {
            branches.push(branch(SearchSource::Qr, SEARCH_TRADES));
        }
        let sql = format!(
            "SELECT {SEARCH_COLUMNS} FROM ({}) AS found \
             ORDER BY created_at_ms DESC, source DESC, id DESC LIMIT ${limit_slot}",
            branches.join(" UNION ALL ")
        );
        self.all(&sql, &all, search_row).await
    }
}

fn statement(sql: &'static str, params: Vec<Value>) -> Statement {
    Statement { sql, params }
}

/// Registers a new key (passes unless its digest exists).
pub fn insert_api_key(key: &ApiKey) -> Guard {
    Guard::Statement(statement(
        "INSERT INTO api_keys (key_digest, merchant_id, label, prefix, created_at_ms, revoked_at_ms, last_used_at_ms) \
         VALUES ($1, $2, $3, $4, $5, NULL, NULL) ON CONFLICT (key_digest) DO NOTHING",
        params![
            key.key_digest.as_str(),
            key.merchant_id.as_str(),
            key.label.as_str(),
            key.prefix.clone(),
            key.created_at_ms
        ]
        .to_vec(),
    ))
}

/// Revokes a key of a merchant (passes only if it was not revoked yet).
pub fn revoke_api_key(merchant_id: &str, key_digest: &str, at_ms: i64) -> Guard {
    Guard::Statement(statement(
        "UPDATE api_keys SET revoked_at_ms = $1 WHERE key_digest = $2 AND merchant_id = $3 AND revoked_at_ms IS NULL",
        params![at_ms, key_digest, merchant_id].to_vec(),
    ))
}

/// Records a use of a key at `at_ms`, unless one at or after `stale_before_ms` is on record.
pub fn touch_api_key(key_digest: &str, at_ms: i64, stale_before_ms: i64) -> WriteOp {
    WriteOp::Statement {
        statement: statement(
            "UPDATE api_keys SET last_used_at_ms = $1 WHERE key_digest = $2 \
             AND (last_used_at_ms IS NULL OR last_used_at_ms < $3)",
            params![at_ms, key_digest, stale_before_ms].to_vec(),
        ),
        may_change_nothing: true,
    }
}

/// Claims a key for a request (passes unless the key exists in its scope). `entry` must be in
/// flight.
pub fn claim_idempotency(entry: &IdempotencyEntry) -> Guard {
    let lease_until_ms = match entry.state {
        IdempotencyState::InFlight { lease_until_ms } => lease_until_ms,
        IdempotencyState::Done { .. } => entry.created_at_ms,
    };
    Guard::Statement(statement(
        "INSERT INTO api_idempotency (scope, idem_key, request_digest, holder, state, lease_until_ms, status, response, \
         created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, 'in_flight', $5, NULL, NULL, $6, $7) \
         ON CONFLICT (scope, idem_key) DO NOTHING",
        params![
            entry.scope.as_str(),
            entry.key.as_str(),
            entry.request_digest.as_str(),
            entry.holder.as_str(),
            lease_until_ms,
            entry.created_at_ms,
            entry.expires_at_ms
        ]
        .to_vec(),
    ))
}

/// Takes a key over for `entry`'s request from the holder `seen_holder` (passes only while
/// that one still holds it and, at `now_ms`, its lease has passed or the record has expired).
pub fn take_over_idempotency(entry: &IdempotencyEntry, seen_holder: &str, now_ms: i64) -> Guard {
    let lease_until_ms = match entry.state {
        IdempotencyState::InFlight { lease_until_ms } => lease_until_ms,
        IdempotencyState::Done { .. } => entry.created_at_ms,
    };
    Guard::Statement(statement(
        "UPDATE api_idempotency SET request_digest = $1, holder = $2, state = 'in_flight', lease_until_ms = $3, \
         status = NULL, response = NULL, created_at_ms = $4, expires_at_ms = $5 \
         WHERE scope = $6 AND idem_key = $7 AND holder = $8 \
         AND ((state = 'in_flight' AND lease_until_ms <= $9) OR expires_at_ms <= $9)",
        params![
            entry.request_digest.as_str(),
            entry.holder.as_str(),
            lease_until_ms,
            entry.created_at_ms,
            entry.expires_at_ms,
            entry.scope.as_str(),
            entry.key.as_str(),
            seen_holder,
            now_ms
        ]
        .to_vec(),
    ))
}

/// Stores the answer of the request holding the key (passes only for that holder, in flight).
pub fn finish_idempotency(scope: &str, key: &str, holder: &str, status: u16, response: &str) -> Guard {
    Guard::Statement(statement(
        "UPDATE api_idempotency SET state = 'done', status = $1, response = $2 \
         WHERE scope = $3 AND idem_key = $4 AND holder = $5 AND state = 'in_flight'",
        params![i64::from(status), response, scope, key, holder].to_vec(),
    ))
}

/// Gives the key up, so that the same request may be sent again (passes only for its holder, in
/// flight): what a request that could not be answered for certain does.
pub fn release_idempotency(scope: &str, key: &str, holder: &str) -> Guard {
    Guard::Statement(statement(
        "DELETE FROM api_idempotency WHERE scope = $1 AND idem_key = $2 AND holder = $3 AND state = 'in_flight'",
        params![scope, key, holder].to_vec(),
    ))
}

/// Deletes at most `limit` records that expired before `now_ms`.
pub fn purge_idempotency(now_ms: i64, limit: i64) -> WriteOp {
    WriteOp::Statement {
        statement: statement(
            "DELETE FROM api_idempotency WHERE (scope, idem_key) IN \
             (SELECT scope, idem_key FROM api_idempotency WHERE expires_at_ms < $1 LIMIT $2)",
            params![now_ms, limit].to_vec(),
        ),
        may_change_nothing: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_conditions_number_their_parameters_after_the_merchant() {
        let filter = SearchFilter {
            channel: Some("alipay".into()),
            amount_min_minor: Some(100),
            reference: Some("R1".into()),
            ..SearchFilter::default()
        };
        let cursor = SearchCursor { created_at_ms: 5, source: SearchSource::Qr, id: 9 };
        let (conditions, values) = search_conditions(Some("M1"), &filter, Some(cursor), SearchSource::Qr);
        assert_eq!(conditions[0], "merchant_id = $1");
        assert_eq!(conditions[1], "channel = $2");
        assert_eq!(conditions[2], "amount_minor >= $3");
        assert_eq!(conditions[3], "(reference = $4 OR trade_no = $4)");
        assert!(conditions[4].starts_with("created_at_ms <= $5 AND") && conditions[4].contains("id < $7"));
        assert_eq!(values.len(), 7);
        let (cards, card_values) = search_conditions(Some("M1"), &filter, Some(cursor), SearchSource::Card);
        assert_eq!(cards[3], "reference = $4", "a card has no trade number");
        assert_eq!(card_values, values, "one numbering for both tables");
        let (everyone, _) = search_conditions(None, &filter, None, SearchSource::Card);
        assert_eq!(everyone[0], "channel = $1");
    }

    #[test]
    fn the_key_id_is_the_digest_head() {
        assert_eq!(ApiKey::id_of(&"ab".repeat(32)), "abababababababab");
    }
}

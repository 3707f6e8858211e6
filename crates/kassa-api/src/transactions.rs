//! Card transactions (read-only) and the search across card transactions and QR trades, with
//! an opaque cursor over a stable order (newest first; creation time, source, id).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use kassa_domain::calendar::CivilDate;
use kassa_domain::{Channel, TerminalId, TxnKind};
use kassa_store::api::{SearchCursor, SearchFilter, SearchRow, SearchSource};
use kassa_store::TxnRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::wire::ReadErrors;
use crate::{ApiError, ApiState};

/// The most rows of one page.
pub const PAGE_LIMIT_MAX: i64 = 100;
/// Rows of a page when the request names no limit.
pub const PAGE_LIMIT_DEFAULT: i64 = 20;
/// The longest `reference` filter, in characters.
pub const REFERENCE_CHARS_MAX: usize = 64;
/// The longest cursor accepted, in characters.
pub const CURSOR_CHARS_MAX: usize = 128;

/// A card transaction. Amounts are integer minor units of `currency`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CardTransactionView {
    /// Kassa's id.
    pub id: i64,
    /// `sale`, `void`, `refund`, `pre_auth`, `completion`, `offline_sale`, …
    #[schema(example = "sale")]
    pub kind: String,
    /// `pending`, `approved`, `declined`, `reversed`, `voided`, `partially_refunded`,
    /// `refunded`, `completed`.
    #[schema(example = "approved")]
    pub status: String,
    /// The amount, minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Refunded so far, minor units.
    pub refunded: i64,
    /// The merchant's fee, minor units.
    pub fee: i64,
    /// The terminal.
    pub terminal_id: Option<String>,
    /// The terminal's batch.
    pub batch_no: Option<u32>,
    /// The terminal's trace number.
    pub stan: Option<u32>,
    /// Retrieval reference number.
    pub rrn: Option<String>,
    /// Authorisation code.
    pub auth_code: Option<String>,
    /// The card number, masked (first 6, last 4).
    pub pan_masked: Option<String>,
    /// The transaction it voids or refunds.
    pub original_id: Option<i64>,
    /// Whether its batch is settled.
    pub settled: bool,
    /// Business day, `YYYY-MM-DD`.
    pub business_date: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// The approved correction (补登) that credited a sale the host recorded as failed: its
    /// `status` then reads `approved`.
    pub correction: Option<i64>,
}

impl From<&TxnRecord> for CardTransactionView {
    fn from(txn: &TxnRecord) -> Self {
        let identity = txn.card_identity.as_ref();
        CardTransactionView {
            id: txn.id,
            kind: txn.kind.as_str().to_owned(),
            status: txn.status.as_str().to_owned(),
            amount: txn.amount_minor,
            currency: txn.currency.code().to_owned(),
            refunded: txn.refunded_minor,
            fee: txn.fee_minor,
            terminal_id: identity.map(|i| i.terminal_id.to_string()),
            batch_no: identity.map(|i| i.batch_no.value()),
            stan: identity.map(|i| i.stan.value()),
            rrn: txn.rrn.clone(),
            auth_code: txn.auth_code.clone(),
            pan_masked: txn.pan_masked.clone(),
            original_id: txn.original_id,
            settled: txn.settled,
            business_date: txn.business_date.clone(),
            created_at_ms: txn.created_at_ms,
            correction: None,
        }
    }
}

/// A card transaction of the merchant, by Kassa's id.
#[utoipa::path(
    get,
    path = "/api/v1/card-transactions/{id}",
    operation_id = "get_card_transaction",
    tag = "Card transactions",
    params(("id" = i64, Path, description = "Kassa's id of the transaction")),
    responses((status = 200, description = "The transaction", body = CardTransactionView), ReadErrors)
)]
pub async fn card_transaction(
    State(state): State<ApiState>,
    caller: Caller,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<CardTransactionView>, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::parameter("id", "an integer"))?;
    let txn = state.store().txns.txn(id).await?.ok_or(ApiError::NotFound("card transaction"))?;
    if txn.merchant_id != caller.merchant.as_str()
        || txn.channel != Channel::Card
        || txn.kind == TxnKind::BalanceInquiry
    {
        return Err(ApiError::NotFound("card transaction"));
    }
    let mut view = CardTransactionView::from(&txn);
    // A failed sale an approved correction credited reads approved; its record is not edited.
    if matches!(txn.status.as_str(), "declined" | "pending" | "reversed") {
        if let Some(correction) = state.store().corrections().approved_of_txn(txn.id).await? {
            view.status = "approved".into();
            view.correction = Some(correction);
        }
    }
    Ok(Json(view))
}

/// The channels of the search.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchChannel {
    /// Card transactions.
    Card,
    /// The Alipay-style wallet.
    Alipay,
    /// The WeChat-Pay-style wallet.
    Wechat,
}

impl SearchChannel {
    fn as_str(self) -> &'static str {
        match self {
            SearchChannel::Card => "card",
            SearchChannel::Alipay => "alipay",
            SearchChannel::Wechat => "wechat",
        }
    }
}

/// One status vocabulary for card transactions and QR trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchStatus {
    /// Not decided yet (a QR trade waiting for its payer, a card request without an answer).
    Pending,
    /// Approved or paid.
    Succeeded,
    /// Declined or refused.
    Failed,
    /// A QR trade closed unpaid.
    Closed,
    /// Undone by a reversal.
    Reversed,
    /// Voided in its batch.
    Voided,
    /// Refunded in part.
    PartiallyRefunded,
    /// Refunded in full.
    Refunded,
    /// A pre-authorisation captured by its completion.
    Completed,
}

impl SearchStatus {
    fn as_str(self) -> &'static str {
        match self {
            SearchStatus::Pending => "pending",
            SearchStatus::Succeeded => "succeeded",
            SearchStatus::Failed => "failed",
            SearchStatus::Closed => "closed",
            SearchStatus::Reversed => "reversed",
            SearchStatus::Voided => "voided",
            SearchStatus::PartiallyRefunded => "partially_refunded",
            SearchStatus::Refunded => "refunded",
            SearchStatus::Completed => "completed",
        }
    }

    fn parse(text: &str) -> Option<SearchStatus> {
        kassa_store::api::SEARCH_STATUSES.contains(&text).then_some(())?;
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }
}

/// Where a search row comes from.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A card transaction: `id` is for `GET /api/v1/card-transactions/{id}`.
    Card,
    /// A QR trade: `id` is its `out_trade_no`, for `GET /api/v1/qr/trades/{out_trade_no}`.
    Qr,
}

/// Filters and the page of a search; every filter narrows it.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// First business day, `YYYY-MM-DD`, inclusive.
    #[param(example = "2026-12-01")]
    pub date_from: Option<String>,
    /// Last business day, `YYYY-MM-DD`, inclusive.
    #[param(example = "2026-12-06")]
    pub date_to: Option<String>,
    /// `card`, `alipay` or `wechat`.
    pub channel: Option<SearchChannel>,
    /// The status.
    pub status: Option<SearchStatus>,
    /// Smallest amount, minor units, inclusive.
    #[param(minimum = 0)]
    pub amount_min: Option<i64>,
    /// Largest amount, minor units, inclusive.
    #[param(minimum = 0)]
    pub amount_max: Option<i64>,
    /// The terminal (8 characters).
    pub terminal_id: Option<String>,
    /// An RRN (card), an `out_trade_no` or a wallet trade number (QR).
    #[param(max_length = 64)]
    pub reference: Option<String>,
    /// Rows per page, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 128)]
    pub cursor: Option<String>,
}

/// One transaction found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransactionItem {
    /// Which kind of record.
    pub source: Source,
    /// Its id for its own route: the card transaction's id, or the QR trade's `out_trade_no`.
    pub id: String,
    /// `sale`, `void`, `refund`, … for cards; `qr_payment` for QR trades.
    pub kind: String,
    /// `card`, `alipay`, `wechat`; `null` for a merchant QR no wallet paid.
    pub channel: Option<SearchChannel>,
    /// The status.
    pub status: SearchStatus,
    /// The amount, minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Refunded so far, minor units.
    pub refunded: i64,
    /// The terminal.
    pub terminal_id: Option<String>,
    /// The RRN (card) or the `out_trade_no` (QR).
    pub reference: Option<String>,
    /// The wallet's trade number (QR).
    pub trade_no: Option<String>,
    /// Business day, `YYYY-MM-DD`.
    pub business_date: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

/// A page of a search.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransactionPage {
    /// The rows, newest first.
    pub data: Vec<TransactionItem>,
    /// Whether more rows follow.
    pub has_more: bool,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

const CURSOR_VERSION: &str = "c1";

/// The opaque cursor of a row.
pub(crate) fn encode_cursor(cursor: SearchCursor) -> String {
    hex::encode(format!("{CURSOR_VERSION}:{}:{}:{}", cursor.created_at_ms, cursor.source.as_str(), cursor.id))
}

pub(crate) fn decode_cursor(text: &str) -> Option<SearchCursor> {
    if text.len() > CURSOR_CHARS_MAX {
        return None;
    }
    let bytes = hex::decode(text).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.split(':');
    if parts.next()? != CURSOR_VERSION {
        return None;
    }
    let created_at_ms = parts.next()?.parse().ok()?;
    let source = SearchSource::parse(parts.next()?)?;
    let id = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(SearchCursor { created_at_ms, source, id })
}

fn date(param: &str, text: Option<String>) -> Result<Option<String>, ApiError> {
    match text {
        Some(text) if CivilDate::parse(&text).is_none() || text.len() != 10 => {
            Err(ApiError::parameter(param, "a date, YYYY-MM-DD"))
        }
        other => Ok(other),
    }
}

fn filter_of(params: SearchParams) -> Result<(SearchFilter, Option<SearchCursor>, i64), ApiError> {
    let limit = params.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::parameter("limit", format!("1 to {PAGE_LIMIT_MAX}")));
    }
    for (param, value) in [("amount_min", params.amount_min), ("amount_max", params.amount_max)] {
        if value.is_some_and(|minor| minor < 0) {
            return Err(ApiError::parameter(param, "zero or more minor units"));
        }
    }
    if let Some(terminal) = &params.terminal_id {
        TerminalId::parse(terminal).map_err(|_| ApiError::parameter("terminal_id", "a terminal id, 8 characters"))?;
    }
    if params.reference.as_ref().is_some_and(|r| r.is_empty() || r.chars().count() > REFERENCE_CHARS_MAX) {
        return Err(ApiError::parameter("reference", format!("1 to {REFERENCE_CHARS_MAX} characters")));
    }
    let cursor = match &params.cursor {
        Some(text) => {
            Some(decode_cursor(text).ok_or_else(|| ApiError::parameter("cursor", "not a cursor of this API"))?)
        }
        None => None,
    };
    let filter = SearchFilter {
        date_from: date("date_from", params.date_from)?,
        date_to: date("date_to", params.date_to)?,
        channel: params.channel.map(|c| c.as_str().to_owned()),
        status: params.status.map(|s| s.as_str().to_owned()),
        amount_min_minor: params.amount_min,
        amount_max_minor: params.amount_max,
        terminal_id: params.terminal_id,
        reference: params.reference,
    };
    Ok((filter, cursor, limit))
}

fn item(row: &SearchRow) -> Result<TransactionItem, ApiError> {
    let corrupt = |what: &str| {
        tracing::error!(what, "a search row does not convert");
        ApiError::Internal
    };
    let channel = match row.channel.as_deref() {
        None => None,
        Some("card") => Some(SearchChannel::Card),
        Some("alipay") => Some(SearchChannel::Alipay),
        Some("wechat") => Some(SearchChannel::Wechat),
        Some(_) => return Err(corrupt("channel")),
    };
    let (source, id) = match row.source {
        SearchSource::Card => (Source::Card, row.id.to_string()),
        SearchSource::Qr => (Source::Qr, row.reference.clone().ok_or_else(|| corrupt("out_trade_no"))?),
    };
    Ok(TransactionItem {
        source,
        id,
        kind: row.kind.clone(),
        channel,
        status: SearchStatus::parse(&row.status).ok_or_else(|| corrupt("status"))?,
        amount: row.amount_minor,
        currency: row.currency.clone(),
        refunded: row.refunded_minor,
        terminal_id: row.terminal_id.clone(),
        reference: row.reference.clone(),
        trade_no: row.trade_no.clone(),
        business_date: row.business_date.clone(),
        created_at_ms: row.created_at_ms,
    })
}

/// Search the merchant's card transactions and QR trades, newest first, a page at a time.
///
/// Pages follow one stable order (creation time, then source, then id): following
/// `next_cursor` never repeats or skips a row, whatever is created meanwhile (newer rows are
/// before the first page).
#[utoipa::path(
    get,
    path = "/api/v1/transactions",
    operation_id = "search_transactions",
    tag = "Transactions",
    params(SearchParams),
    responses((status = 200, description = "A page", body = TransactionPage), ReadErrors)
)]
pub async fn search(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<TransactionPage>, ApiError> {
    let Query(params) = params.map_err(|rejection| ApiError::ParameterInvalid {
        message: format!("invalid query: {}", rejection.body_text()),
        param: None,
    })?;
    let (filter, cursor, limit) = filter_of(params)?;
    let mut rows = state.store().api().search(caller.merchant.as_str(), &filter, cursor, limit + 1).await?;
    let has_more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let data = rows.iter().map(item).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if has_more { rows.last().map(|row| encode_cursor(row.cursor())) } else { None };
    Ok(Json(TransactionPage { data, has_more, next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = SearchCursor { created_at_ms: 1_765_000_000_000, source: SearchSource::Qr, id: 42 };
        assert_eq!(decode_cursor(&encode_cursor(cursor)), Some(cursor));
        for bad in ["", "zz", &hex::encode("c2:1:qr:1"), &hex::encode("c1:1:bank:1"), &hex::encode("c1:1:qr:1:9")] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn statuses_parse_only_from_the_vocabulary() {
        for status in kassa_store::api::SEARCH_STATUSES {
            assert_eq!(SearchStatus::parse(status).map(SearchStatus::as_str), Some(status));
        }
        assert_eq!(SearchStatus::parse("approved"), None);
    }
}

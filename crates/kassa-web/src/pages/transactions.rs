//! Transactions (交易查询): the search across card transactions and QR trades (the store's one
//! search query, keyset pages newest first), a transaction's detail (its facts, journal entries,
//! refunds and audit trail) and the CSV export of a search, streamed page by page.
//!
//! Institution staff search every merchant (or one, with the merchant filter); merchant users
//! search only their own, and another merchant's transaction answers 404.

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kassa_auth::Role;
use kassa_domain::{CivilDate, Currency, Money, TerminalId, TxnStatus};
use kassa_store::api::{SearchCursor, SearchFilter, SearchRow, SearchSource, SEARCH_STATUSES};
use kassa_store::refund_requests::RefundRequestQuery;
use kassa_store::{AuditRecord, Store};
use serde::Deserialize;

use crate::entries::{entries_about, entry_view, EntryView};
use crate::format::{self, money, word, Words};
use crate::i18n::Lang;
use crate::page::{encode_component, format_time_ms, render, Chrome, PageError, Viewer};
use crate::WebState;

/// Rows of one page of the search.
pub const PAGE_ROWS: i64 = 50;
/// Rows read per query of the export: the memory an export holds is one page of this size.
pub const EXPORT_PAGE_ROWS: i64 = 1_000;
/// The most rows one export writes.
pub const EXPORT_ROWS_MAX: i64 = 2_000_000;
/// The longest reference filter, characters.
pub const REFERENCE_CHARS_MAX: usize = 64;
/// The longest cursor accepted, characters.
pub const CURSOR_CHARS_MAX: usize = 64;
/// The most refunds, entries and audit records a detail page lists, each.
pub const DETAIL_ROWS_MAX: i64 = 100;

/// Who may search and see transactions: every back-office role (merchant users their own).
pub(crate) const VIEWERS: &[Role] =
    &[Role::InstitutionAdmin, Role::InstitutionReviewer, Role::MerchantOwner, Role::MerchantStaff];

/// The routes of the area.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/transactions", get(search))
        .route("/transactions.csv", get(export))
        .route("/transactions/card/{id}", get(card_detail))
        .route("/transactions/qr/{id}", get(qr_detail))
}

/// The filters as typed in the form (every field may come empty).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Params {
    date_from: String,
    date_to: String,
    channel: String,
    status: String,
    amount_min: String,
    amount_max: String,
    terminal_id: String,
    reference: String,
    merchant_id: String,
    cursor: String,
    lang: String,
    done: String,
}

/// A search as checked: the store's filter, the merchant it is confined to, the page's place.
#[derive(Debug)]
struct Search {
    filter: SearchFilter,
    merchant_id: Option<String>,
    cursor: Option<SearchCursor>,
    /// The query string of the filters (no cursor), for the next page and the export.
    query: String,
}

fn parse_params(query: Option<&str>) -> Result<Params, PageError> {
    serde_urlencoded::from_str(query.unwrap_or_default()).map_err(|_| PageError::Bad("transactions-bad-filter"))
}

fn date(text: &str) -> Result<Option<String>, PageError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() != 10 || CivilDate::parse(text).is_none() {
        return Err(PageError::Bad("transactions-bad-date"));
    }
    Ok(Some(text.to_owned()))
}

/// An amount typed in yuan (`12.50`) as minor units.
fn amount(text: &str) -> Result<Option<i64>, PageError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let cny = Currency::from_code("CNY").map_err(|_| PageError::Internal("CNY unknown".into()))?;
    let parsed = Money::parse(text, cny).map_err(|_| PageError::Bad("transactions-bad-amount"))?;
    if parsed.minor() < 0 {
        return Err(PageError::Bad("transactions-bad-amount"));
    }
    Ok(Some(parsed.minor()))
}

fn encode_cursor(cursor: SearchCursor) -> String {
    format!("{}-{}-{}", cursor.created_at_ms, cursor.source.as_str(), cursor.id)
}

fn decode_cursor(text: &str) -> Option<SearchCursor> {
    if text.len() > CURSOR_CHARS_MAX {
        return None;
    }
    let mut parts = text.splitn(3, '-');
    let created_at_ms = parts.next()?.parse().ok()?;
    let source = SearchSource::parse(parts.next()?)?;
    let id = parts.next()?.parse().ok()?;
    Some(SearchCursor { created_at_ms, source, id })
}

fn search_of(viewer: &Viewer, params: &Params) -> Result<Search, PageError> {
    let channel = match params.channel.trim() {
        "" => None,
        channel @ ("card" | "alipay" | "wechat") => Some(channel.to_owned()),
        _ => return Err(PageError::Bad("transactions-bad-filter")),
    };
    let status = match params.status.trim() {
        "" => None,
        status if SEARCH_STATUSES.contains(&status) => Some(status.to_owned()),
        _ => return Err(PageError::Bad("transactions-bad-filter")),
    };
    let terminal_id = match params.terminal_id.trim() {
        "" => None,
        terminal => {
            TerminalId::parse(terminal).map_err(|_| PageError::Bad("transactions-bad-terminal"))?;
            Some(terminal.to_owned())
        }
    };
    let reference = match params.reference.trim() {
        "" => None,
        reference if reference.chars().count() > REFERENCE_CHARS_MAX => {
            return Err(PageError::Bad("transactions-bad-reference"))
        }
        reference => Some(reference.to_owned()),
    };
    let asked = params.merchant_id.trim();
    if !asked.is_empty() && (asked.len() > 32 || !asked.bytes().all(|b| b.is_ascii_alphanumeric())) {
        return Err(PageError::Bad("transactions-bad-filter"));
    }
    let merchant_id = viewer.merchant_scope(Some(asked)).map(str::to_owned);
    let cursor = match params.cursor.trim() {
        "" => None,
        text => Some(decode_cursor(text).ok_or(PageError::Bad("transactions-bad-filter"))?),
    };
    let filter = SearchFilter {
        date_from: date(&params.date_from)?,
        date_to: date(&params.date_to)?,
        channel,
        status,
        amount_min_minor: amount(&params.amount_min)?,
        amount_max_minor: amount(&params.amount_max)?,
        terminal_id,
        reference,
    };
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for (name, value) in [
        ("date_from", &params.date_from),
        ("date_to", &params.date_to),
        ("channel", &params.channel),
        ("status", &params.status),
        ("amount_min", &params.amount_min),
        ("amount_max", &params.amount_max),
        ("terminal_id", &params.terminal_id),
        ("reference", &params.reference),
    ] {
        if !value.trim().is_empty() {
            pairs.push((name, value.trim()));
        }
    }
    if viewer.is_institution() && !asked.is_empty() {
        pairs.push(("merchant_id", asked));
    }
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    Ok(Search { filter, merchant_id, cursor, query })
}

/// One row of the results, in words.
#[derive(Debug)]
struct RowView {
    href: String,
    time: String,
    merchant_id: String,
    channel: String,
    kind: String,
    status: String,
    badge: &'static str,
    amount: String,
    refunded: String,
    terminal_id: String,
    reference: String,
    pan: String,
}

fn badge(status: &str) -> &'static str {
    match status {
        "succeeded" | "completed" => "good",
        "failed" | "reversed" | "closed" => "bad",
        _ => "warn",
    }
}

fn channel_label(lang: Lang, channel: Option<&str>) -> String {
    match channel {
        Some(channel) => word(lang, Words::Channel, channel),
        None => lang.t("transactions-channel-none"),
    }
}

fn status_label(lang: Lang, status: &str) -> String {
    word(lang, Words::Status, status)
}

fn kind_label(lang: Lang, kind: &str) -> String {
    word(lang, Words::Kind, kind)
}

fn row_view(lang: Lang, row: &SearchRow) -> RowView {
    RowView {
        href: format!("/transactions/{}/{}", row.source.as_str(), row.id),
        time: format_time_ms(row.created_at_ms),
        merchant_id: row.merchant_id.clone(),
        channel: channel_label(lang, row.channel.as_deref()),
        kind: kind_label(lang, &row.kind),
        status: status_label(lang, &row.status),
        badge: badge(&row.status),
        amount: money(row.amount_minor, &row.currency),
        refunded: if row.refunded_minor == 0 { String::new() } else { money(row.refunded_minor, &row.currency) },
        terminal_id: row.terminal_id.clone().unwrap_or_default(),
        reference: row.trade_no.clone().map_or_else(
            || row.reference.clone().unwrap_or_default(),
            |trade_no| format!("{} / {trade_no}", row.reference.clone().unwrap_or_default()),
        ),
        pan: row.pan_masked.as_deref().map(format::mask_pan).unwrap_or_default(),
    }
}

/// An option of a `<select>`.
#[derive(Debug)]
struct Choice {
    value: &'static str,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "transactions/search.html")]
struct SearchPage {
    chrome: Chrome,
    institution: bool,
    params: Params,
    channels: Vec<Choice>,
    statuses: Vec<Choice>,
    rows: Vec<RowView>,
    next_href: Option<String>,
    first_href: Option<String>,
    export_href: String,
}

async fn search(
    viewer: Viewer,
    State(state): State<WebState>,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    viewer.require_role(VIEWERS)?;
    let params = parse_params(query.as_deref())?;
    let found = search_of(&viewer, &params)?;
    let lang = viewer.lang;
    let mut rows =
        state.store.web().search(found.merchant_id.as_deref(), &found.filter, found.cursor, PAGE_ROWS + 1).await?;
    let has_more = rows.len() > PAGE_ROWS as usize;
    rows.truncate(PAGE_ROWS as usize);
    let separator = if found.query.is_empty() { "" } else { "&" };
    let next_href = if has_more {
        rows.last().map(|row| {
            format!("/transactions?{}{separator}cursor={}", found.query, encode_component(&encode_cursor(row.cursor())))
        })
    } else {
        None
    };
    let first_href = found.cursor.map(|_| format!("/transactions?{}", found.query));
    let channels = ["card", "alipay", "wechat"]
        .into_iter()
        .map(|value| Choice { value, label: channel_label(lang, Some(value)), selected: params.channel == value })
        .collect();
    let statuses = SEARCH_STATUSES
        .into_iter()
        .map(|value| Choice { value, label: status_label(lang, value), selected: params.status == value })
        .collect();
    let page = SearchPage {
        chrome: viewer.chrome("transactions-title"),
        institution: viewer.is_institution(),
        channels,
        statuses,
        rows: rows.iter().map(|row| row_view(lang, row)).collect(),
        next_href,
        first_href,
        export_href: format!("/transactions.csv?{}", found.query),
        params,
    };
    render(&page)
}

/// The export's header line.
pub const CSV_HEADER: &str = "created_at_utc,merchant_id,source,id,kind,channel,status,amount,refunded,currency,\
terminal_id,reference,trade_no,pan_masked,business_date\r\n";

/// A CSV field: quoted when it must be, and a leading `= + - @` neutralised so that a
/// spreadsheet never runs a merchant's reference as a formula.
fn csv_field(out: &mut String, text: &str) {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&text);
    }
}

fn csv_line(out: &mut String, row: &SearchRow) {
    let amount = format::decimal(row.amount_minor, &row.currency);
    let refunded = format::decimal(row.refunded_minor, &row.currency);
    let pan = row.pan_masked.as_deref().map(format::mask_pan).unwrap_or_default();
    let fields = [
        format::timestamp_ms(row.created_at_ms),
        row.merchant_id.clone(),
        row.source.as_str().to_owned(),
        row.id.to_string(),
        row.kind.clone(),
        row.channel.clone().unwrap_or_default(),
        row.status.clone(),
        amount,
        refunded,
        row.currency.clone(),
        row.terminal_id.clone().unwrap_or_default(),
        row.reference.clone().unwrap_or_default(),
        row.trade_no.clone().unwrap_or_default(),
        pan,
        row.business_date.clone(),
    ];
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        csv_field(out, field);
    }
    out.push_str("\r\n");
}

/// Where an export stands between two pages.
struct ExportState {
    store: Store,
    merchant_id: Option<String>,
    filter: SearchFilter,
    after: Option<SearchCursor>,
    written: i64,
    header: bool,
    done: bool,
}

/// The next chunk of an export: the header, then one page of [`EXPORT_PAGE_ROWS`] rows per
/// chunk, read after the last row of the previous one (keyset), so memory holds one page.
async fn next_chunk(mut at: ExportState) -> Option<(Result<Bytes, std::io::Error>, ExportState)> {
    if at.done {
        return None;
    }
    if !at.header {
        at.header = true;
        return Some((Ok(Bytes::from_static(CSV_HEADER.as_bytes())), at));
    }
    let limit = EXPORT_PAGE_ROWS.min(EXPORT_ROWS_MAX - at.written);
    if limit <= 0 {
        return None;
    }
    let rows = match at.store.web().search(at.merchant_id.as_deref(), &at.filter, at.after, limit).await {
        Ok(rows) => rows,
        Err(error) => {
            // The status line is gone; breaking the body tells the client the file is incomplete.
            tracing::error!(%error, "an export failed");
            at.done = true;
            return Some((Err(std::io::Error::other("the export failed")), at));
        }
    };
    if rows.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(rows.len() * 160);
    for row in &rows {
        csv_line(&mut out, row);
    }
    at.written += rows.len() as i64;
    at.done = (rows.len() as i64) < limit;
    at.after = rows.last().map(SearchRow::cursor);
    Some((Ok(Bytes::from(out)), at))
}

async fn export(
    viewer: Viewer,
    State(state): State<WebState>,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    viewer.require_role(VIEWERS)?;
    let params = parse_params(query.as_deref())?;
    let found = search_of(&viewer, &params)?;
    let start = ExportState {
        store: state.store.clone(),
        merchant_id: found.merchant_id,
        filter: found.filter,
        after: None,
        written: 0,
        header: false,
        done: false,
    };
    let body = Body::from_stream(futures_util::stream::unfold(start, next_chunk));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert(CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"transactions.csv\""));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A fact of the detail page.
#[derive(Debug)]
struct Fact {
    label: String,
    value: String,
}

/// A refund (or void) of the transaction.
#[derive(Debug)]
struct RefundView {
    href: Option<String>,
    what: String,
    amount: String,
    status: String,
    time: String,
}

/// An audit record, in words.
#[derive(Debug)]
struct AuditView {
    seq: i64,
    time: String,
    actor: String,
    /// The action in the page's language (as stored when not known).
    action_word: String,
    action: String,
    target: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "transactions/detail.html")]
struct DetailPage {
    chrome: Chrome,
    facts: Vec<Fact>,
    entries: Vec<EntryView>,
    refunds: Vec<RefundView>,
    audit: Vec<AuditView>,
}

fn fact(lang: Lang, id: &str, value: impl Into<String>) -> Fact {
    Fact { label: lang.t(id), value: value.into() }
}

fn audit_view(lang: Lang, record: &AuditRecord) -> AuditView {
    AuditView {
        seq: record.seq,
        time: format_time_ms(record.event.at_ms),
        actor: record.event.actor.clone(),
        action_word: word(lang, Words::AuditAction, &record.event.action),
        action: record.event.action.clone(),
        target: record.event.target.clone(),
        reason: record.event.reason.clone(),
    }
}

async fn entries_of(
    store: &Store,
    lang: Lang,
    references: &[String],
    txn_ids: &[i64],
    currency: &str,
) -> Result<Vec<EntryView>, PageError> {
    let max = usize::try_from(DETAIL_ROWS_MAX).unwrap_or(usize::MAX);
    let entries = entries_about(store, references, txn_ids, max).await?;
    Ok(entries.iter().map(|entry| entry_view(lang, entry, currency)).collect())
}

/// Refund requests of a payment (by its reference), as refund rows, with their audit targets.
async fn refund_requests_of(
    store: &Store,
    lang: Lang,
    merchant_id: &str,
    target_ref: &str,
    refunds: &mut Vec<RefundView>,
    targets: &mut Vec<String>,
) -> Result<(), PageError> {
    let query = RefundRequestQuery {
        merchant_id: Some(merchant_id.to_owned()),
        states: Vec::new(),
        target_ref: Some(target_ref.to_owned()),
        before: None,
        limit: DETAIL_ROWS_MAX,
    };
    for request in store.refund_requests().refund_requests(&query).await? {
        targets.push(format!("refund_request:{}/{}", request.merchant_id, request.request_no));
        refunds.push(RefundView {
            href: Some(format!("/refunds/{}", request.id)),
            what: lang.t1("transactions-refund-request", "no", &request.request_no),
            amount: format::money_of(request.amount),
            status: word(lang, Words::RefundState, request.state.as_str()),
            time: format_time_ms(request.created_at_ms),
        });
    }
    Ok(())
}

/// The merchant a viewer may see a record of, or 404.
fn visible(viewer: &Viewer, merchant_id: &str) -> Result<(), PageError> {
    match viewer.merchant() {
        Some(own) if own != merchant_id => Err(PageError::NotFound),
        _ => Ok(()),
    }
}

async fn card_detail(
    viewer: Viewer,
    State(state): State<WebState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    viewer.require_role(VIEWERS)?;
    let id: i64 = id.parse().map_err(|_| PageError::NotFound)?;
    let store = &state.store;
    let txn = store.txns.txn(id).await?.ok_or(PageError::NotFound)?;
    visible(&viewer, &txn.merchant_id)?;
    let lang = viewer.lang;
    let mut status = txn.status;
    let correction = if matches!(txn.status, TxnStatus::Declined | TxnStatus::Pending | TxnStatus::Reversed) {
        store.corrections().approved_of_txn(txn.id).await?
    } else {
        None
    };
    if correction.is_some() {
        status = TxnStatus::Approved;
    }
    let identity = txn.card_identity.as_ref();
    let mut facts = vec![
        fact(lang, "transactions-fact-id", txn.id.to_string()),
        fact(lang, "transactions-fact-merchant", txn.merchant_id.clone()),
        fact(lang, "transactions-fact-channel", channel_label(lang, Some(txn.channel.as_str()))),
        fact(lang, "transactions-fact-kind", kind_label(lang, txn.kind.as_str())),
        fact(lang, "transactions-fact-status", status_label(lang, status.as_str())),
        fact(lang, "transactions-fact-amount", money(txn.amount_minor, txn.currency.code())),
        fact(lang, "transactions-fact-refunded", money(txn.refunded_minor, txn.currency.code())),
        fact(lang, "transactions-fact-fee", money(txn.fee_minor, txn.currency.code())),
        fact(lang, "transactions-fact-pan", txn.pan_masked.as_deref().map(format::mask_pan).unwrap_or_default()),
        fact(lang, "transactions-fact-terminal", identity.map(|i| i.terminal_id.to_string()).unwrap_or_default()),
        fact(lang, "transactions-fact-batch", identity.map(|i| format!("{:06}", i.batch_no)).unwrap_or_default()),
        fact(lang, "transactions-fact-stan", identity.map(|i| format!("{:06}", i.stan)).unwrap_or_default()),
        fact(lang, "transactions-fact-rrn", txn.rrn.clone().unwrap_or_default()),
        fact(lang, "transactions-fact-auth-code", txn.auth_code.clone().unwrap_or_default()),
        fact(lang, "transactions-fact-business-date", txn.business_date.clone()),
        fact(lang, "transactions-fact-created", format_time_ms(txn.created_at_ms)),
        fact(lang, "transactions-fact-updated", format_time_ms(txn.updated_at_ms)),
        fact(
            lang,
            "transactions-fact-settled",
            lang.t(if txn.settled { "transactions-yes" } else { "transactions-no" }),
        ),
    ];
    if let Some(original) = txn.original_id {
        facts.push(fact(lang, "transactions-fact-original", original.to_string()));
    }
    if let Some(correction) = correction {
        facts.push(fact(lang, "transactions-fact-correction", correction.to_string()));
    }
    let mut references = Vec::new();
    if let Some(identity) = identity {
        references.push(format!(
            "card:{}:{:06}:{:06}:{}",
            identity.terminal_id, identity.batch_no, identity.stan, identity.mti_class
        ));
    }
    let entries = entries_of(store, lang, &references, &[txn.id], txn.currency.code()).await?;
    let mut refunds = Vec::new();
    let mut targets = vec![format!("txn:{}", txn.id)];
    for follow_id in store.web().follow_ups(txn.id, DETAIL_ROWS_MAX).await? {
        if let Some(follow) = store.txns.txn(follow_id).await? {
            refunds.push(RefundView {
                href: Some(format!("/transactions/card/{}", follow.id)),
                what: kind_label(lang, follow.kind.as_str()),
                amount: money(follow.amount_minor, follow.currency.code()),
                status: status_label(lang, follow.status.as_str()),
                time: format_time_ms(follow.created_at_ms),
            });
        }
    }
    if let Some(rrn) = &txn.rrn {
        targets.push(format!("rrn:{rrn}"));
        refund_requests_of(store, lang, &txn.merchant_id, rrn, &mut refunds, &mut targets).await?;
    }
    let audit = store.web().audit_naming(&targets, DETAIL_ROWS_MAX).await?;
    let page = DetailPage {
        chrome: viewer.chrome("transactions-detail-title"),
        facts,
        entries,
        refunds,
        audit: audit.iter().map(|record| audit_view(lang, record)).collect(),
    };
    render(&page)
}

async fn qr_detail(
    viewer: Viewer,
    State(state): State<WebState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    viewer.require_role(VIEWERS)?;
    let id: i64 = id.parse().map_err(|_| PageError::NotFound)?;
    let store = &state.store;
    let trade = store.qr().trade(id).await?.ok_or(PageError::NotFound)?;
    visible(&viewer, &trade.merchant_id)?;
    let lang = viewer.lang;
    let currency = trade.amount.currency().code();
    let wallet = trade.wallet.map(|wallet| wallet.as_str());
    let facts = vec![
        fact(lang, "transactions-fact-id", trade.id.to_string()),
        fact(lang, "transactions-fact-merchant", trade.merchant_id.clone()),
        fact(lang, "transactions-fact-channel", channel_label(lang, wallet)),
        fact(lang, "transactions-fact-kind", kind_label(lang, trade.kind.as_str())),
        fact(lang, "transactions-fact-status", status_label(lang, trade.status.as_str())),
        fact(lang, "transactions-fact-amount", format::money_of(trade.amount)),
        fact(lang, "transactions-fact-refunded", money(trade.refunded_minor, currency)),
        fact(lang, "transactions-fact-refunding", money(trade.refunding_minor, currency)),
        fact(lang, "transactions-fact-fee", money(trade.fee_minor, currency)),
        fact(lang, "transactions-fact-out-trade-no", trade.out_trade_no.clone()),
        fact(lang, "transactions-fact-reference", trade.reference.clone()),
        fact(lang, "transactions-fact-trade-no", trade.trade_no.clone().unwrap_or_default()),
        fact(lang, "transactions-fact-subject", trade.subject.clone()),
        fact(lang, "transactions-fact-origin", word(lang, Words::Origin, trade.origin.as_str())),
        fact(lang, "transactions-fact-terminal", trade.terminal_id.clone().unwrap_or_default()),
        fact(lang, "transactions-fact-operator", trade.operator.clone().unwrap_or_default()),
        fact(lang, "transactions-fact-business-date", trade.business_date.clone()),
        fact(lang, "transactions-fact-created", format_time_ms(trade.created_at_ms)),
        fact(lang, "transactions-fact-paid", trade.paid_at_ms.map(format_time_ms).unwrap_or_default()),
        fact(lang, "transactions-fact-updated", format_time_ms(trade.updated_at_ms)),
    ];
    let qr_refunds = store.qr().refunds_of(trade.id, DETAIL_ROWS_MAX).await?;
    let mut references = vec![trade.reference.clone()];
    references.extend(qr_refunds.iter().map(|refund| refund.refund_reference.clone()));
    let entries = entries_of(store, lang, &references, &[], currency).await?;
    let mut refunds: Vec<RefundView> = qr_refunds
        .iter()
        .map(|refund| RefundView {
            href: None,
            what: lang.t1("transactions-refund-qr", "no", &refund.out_request_no),
            amount: format::money_of(refund.amount),
            status: status_label(lang, refund.status.as_str()),
            time: format_time_ms(refund.created_at_ms),
        })
        .collect();
    let mut targets = vec![format!("qr:{}", trade.reference)];
    refund_requests_of(store, lang, &trade.merchant_id, &trade.out_trade_no, &mut refunds, &mut targets).await?;
    let audit = store.web().audit_naming(&targets, DETAIL_ROWS_MAX).await?;
    let page = DetailPage {
        chrome: viewer.chrome("transactions-detail-title"),
        facts,
        entries,
        refunds,
        audit: audit.iter().map(|record| audit_view(lang, record)).collect(),
    };
    render(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let cursor = SearchCursor { created_at_ms: 1_765_000_000_000, source: SearchSource::Qr, id: 42 };
        assert_eq!(decode_cursor(&encode_cursor(cursor)), Some(cursor));
        for bad in ["", "1-bank-2", "x-qr-1", "1-qr-", &"9".repeat(80)] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        let mut out = String::new();
        csv_field(&mut out, "a,\"b\"");
        assert_eq!(out, "\"a,\"\"b\"\"\"");
        let mut out = String::new();
        csv_field(&mut out, "=HYPERLINK(1)");
        assert_eq!(out, "'=HYPERLINK(1)");
    }
}

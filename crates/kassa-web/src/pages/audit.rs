//! The audit log (审计日志): newest first, filtered by actor, action, subject and day, a page at
//! a time (keyset on the sequence number), with the state of its hash chain
//! ([`kassa_store::verify_audit_chain`]: verified up to record N, or the first broken record).
//! Institution staff only; details are shown as recorded (the writers never put a secret there).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use kassa_auth::Role;
use kassa_domain::CivilDate;
use kassa_store::web_money::AuditFilter;
use serde::Deserialize;

use crate::format::{word, Words};
use crate::page::{encode_component, format_time_ms, render, Chrome, PageError, Viewer};
use crate::WebState;

/// Records one page shows.
pub const RECORDS_PER_PAGE: i64 = 50;
/// The longest filter value accepted, characters.
const FILTER_CHARS_MAX: usize = 128;
const MS_PER_DAY: i64 = 86_400_000;

/// The routes of the audit log.
pub fn routes() -> Router<WebState> {
    Router::new().route("/audit", get(audit))
}

struct Record {
    seq: i64,
    at: String,
    actor: String,
    /// The action in the page's language (as stored when not known).
    action_word: String,
    action: String,
    subject: String,
    source: String,
    reason: String,
    details: String,
}

#[derive(Template)]
#[template(path = "audit/log.html")]
struct AuditPage {
    chrome: Chrome,
    records: Vec<Record>,
    next: Option<String>,
    actor: String,
    action: String,
    subject: String,
    date: String,
    /// The chain verifies.
    chain_ok: bool,
    /// What its check found, in words.
    chain: String,
}

#[derive(Deserialize, Default)]
struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    before: Option<i64>,
}

async fn audit(
    State(state): State<WebState>,
    viewer: Viewer,
    Query(query): Query<AuditQuery>,
) -> Result<Response, PageError> {
    viewer.require_role(&[Role::InstitutionAdmin, Role::InstitutionReviewer])?;
    for text in [&query.actor, &query.action, &query.subject, &query.date] {
        if text.chars().count() > FILTER_CHARS_MAX {
            return Err(PageError::Bad("audit-filter-too-long"));
        }
    }
    let date = query.date.trim();
    let (from_ms, to_ms) = if date.is_empty() {
        (None, None)
    } else {
        let day = CivilDate::parse(date).ok_or(PageError::Bad("audit-bad-date"))?;
        let start = day.days_since_epoch().checked_mul(MS_PER_DAY).ok_or(PageError::Bad("audit-bad-date"))?;
        (Some(start), start.checked_add(MS_PER_DAY))
    };
    let filter = AuditFilter {
        actor: query.actor.trim().to_owned(),
        action: query.action.trim().to_owned(),
        subject: query.subject.trim().to_owned(),
        from_ms,
        to_ms,
    };
    let records =
        state.store.web_money().audit_page(&filter, query.before.unwrap_or(i64::MAX), RECORDS_PER_PAGE).await?;
    let next = (i64::try_from(records.len()).unwrap_or(i64::MAX) == RECORDS_PER_PAGE)
        .then(|| {
            records.last().map(|r| {
                format!(
                    "/audit?actor={}&action={}&subject={}&date={}&before={}",
                    encode_component(&filter.actor),
                    encode_component(&filter.action),
                    encode_component(&filter.subject),
                    encode_component(date),
                    r.seq
                )
            })
        })
        .flatten();
    let chain = kassa_store::verify_audit_chain(&*state.store.audit).await?;
    let page = AuditPage {
        chrome: viewer.chrome("audit-title"),
        records: records
            .into_iter()
            .map(|r| Record {
                seq: r.seq,
                at: format_time_ms(r.event.at_ms),
                actor: r.event.actor,
                action_word: word(viewer.lang, Words::AuditAction, &r.event.action),
                action: r.event.action,
                subject: r.event.target,
                source: r.event.source,
                reason: r.event.reason,
                details: if r.event.details.is_null() { String::new() } else { r.event.details.to_string() },
            })
            .collect(),
        next,
        actor: filter.actor,
        action: filter.action,
        subject: filter.subject,
        date: date.to_owned(),
        chain_ok: chain.is_ok(),
        chain: match chain {
            Ok(n) => viewer.lang.tn("audit-chain-ok", "n", n),
            Err(seq) => viewer.lang.tn("audit-chain-broken", "seq", seq),
        },
    };
    render(&page)
}

//! The test transaction (模拟交易): a merchant owner (or an institution admin, for any merchant)
//! picks one of the merchant's terminals, a kind and an amount, runs it, and sees every step
//! with its timing, to check a new setting end to end.
//!
//! A **QR payment** goes through the real QR service (`Services::qr`) with a payment code of the
//! wallet simulator, as if the chosen terminal had scanned it: the payment-code settings of the
//! merchant are checked for that terminal, the wallet is called, its answer applied, the sale's
//! journal entry read back — then the payment is refunded in full at once (its refund entry
//! returns the amount and the fee), so a test moves no money into a payout.
//!
//! A **card sale** is a real ISO 8583 exchange with the host's own gateway, made by the host's
//! card side ([`crate::card_probe::CardProbe`], `Services::card_probe`) as the chosen terminal:
//! its TMK unsealed, a sign-in for working keys, a sale with one of the issuer simulator's test
//! cards, MAC'd, and the approved sale voided at once (reversed on a terminal whose refund
//! password the host enforces).
//!
//! Either way the test's number starts with `TEST` ([`TEST_TRADE_PREFIX`]): it is the QR trade's
//! `out_trade_no`, and the `out_trade_no` the card side gives the sale's row, which keeps both
//! out of deposit volumes and tells them apart. A run is recorded in the audit log
//! (`test_transaction_run`, target `test_transaction:<number>`) with its steps as data; the form
//! answers with a redirect to `/test-transaction/runs/<number>`, which renders that record in
//! the viewer's language with the journal entries and transactions read back now — so a reload
//! shows the run again instead of running it again. The run itself goes on in a task of its
//! own: a browser that gives up waiting never leaves a sale half done.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use kassa_auth::Role;
use kassa_domain::{Currency, MerchantId, Money, OperatorCode, TerminalId};
use kassa_qr::{CollectRequest, QrOrigin, QrTradeStatus, RefundRequest};
use kassa_store::fleet::{record_contact, Contact, TEST_TRADE_PREFIX};
use kassa_store::{AuditEvent, CardIdentity, TerminalRecord, WriteOp, WriteUnit};
use serde::{Deserialize, Serialize};

use crate::card_probe::{CardProbe, CardRun, CardStep, CardStepKind, CardTest, ProbeError, TestCard};
use crate::entries::{entries_about, entry_view, EntryView};
use crate::format::money;
use crate::i18n::Lang;
use crate::page::{format_time_ms, render, see_other, Chrome, PageError, Posted, Viewer};
use crate::WebState;

/// The largest test amount, minor units (100.00 in a two-decimal currency).
pub const TEST_AMOUNT_MINOR_MAX: i64 = 10_000;
/// The audit action of a run.
pub const RUN_ACTION: &str = "test_transaction_run";
/// The longest test number accepted in a result page's path, characters.
const RUN_ID_CHARS_MAX: usize = 40;
/// The most journal entries a result page reads back.
const ENTRIES_MAX: usize = 20;
/// Characters of a service's error kept in a step.
const ERROR_CHARS_MAX: usize = 200;
/// The one currency of card tests (the terminal's field 49 is `156`).
const CARD_CURRENCY: &str = "CNY";

/// The wallet simulator's payment codes offered (code, message id of what it does).
pub const PAYMENT_CODES: [(&str, &str); 4] = [
    ("281234567890123401", "test-transaction-code-paid"),
    ("134567890123456701", "test-transaction-code-paid-wechat"),
    ("281234567890123402", "test-transaction-code-confirm"),
    ("281234567890123403", "test-transaction-code-balance"),
];

/// The routes of the test transaction.
pub fn routes() -> Router<WebState> {
    Router::new().route("/test-transaction", get(form).post(run)).route("/test-transaction/runs/{run_id}", get(result))
}

/// The audit target of a run.
fn run_target(run_id: &str) -> String {
    format!("test_transaction:{run_id}")
}

fn allowed(viewer: &Viewer) -> Result<(), PageError> {
    viewer.require_role(&[Role::InstitutionAdmin, Role::MerchantOwner])
}

// ---- The form ------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct FormQuery {
    merchant: Option<String>,
}

#[derive(Template)]
#[template(path = "test_transaction/page.html")]
struct FormPage {
    chrome: Chrome,
    institution: bool,
    merchant: String,
    terminals: Vec<String>,
    codes: Vec<(String, String)>,
    cards: Vec<(String, String)>,
    qr_available: bool,
    card_available: bool,
}

async fn form(
    viewer: Viewer,
    State(state): State<WebState>,
    Query(query): Query<FormQuery>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    let merchant = viewer.merchant_scope(query.merchant.as_deref()).map(str::to_owned);
    let terminals = match &merchant {
        Some(merchant) => {
            state.store.directory.merchant(merchant).await?.ok_or(PageError::NotFound)?;
            state.store.directory.terminals_of(merchant).await?.into_iter().map(|t| t.terminal_id).collect()
        }
        None => Vec::new(),
    };
    let lang = viewer.lang;
    render(&FormPage {
        chrome: viewer.chrome("test-transaction-title"),
        institution: viewer.is_institution(),
        merchant: merchant.unwrap_or_default(),
        terminals,
        codes: PAYMENT_CODES.iter().map(|(code, id)| ((*code).to_owned(), lang.t(id))).collect(),
        cards: TestCard::ALL
            .iter()
            .map(|card| (card.as_str().to_owned(), lang.t(&format!("test-transaction-card-{}", card.as_str()))))
            .collect(),
        qr_available: state.services.qr.is_some(),
        card_available: state.services.card_probe.is_some(),
    })
}

// ---- A run as recorded ---------------------------------------------------------------------

/// Words of a step or an outcome: a message with its arguments, or a service's own words.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Text {
    /// A message id of `test-transaction.ftl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// Its arguments (at most two).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    args: BTreeMap<String, String>,
    /// Words of a service (English), when there is no message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    raw: Option<String>,
}

impl Text {
    fn id(id: &str) -> Text {
        Text { id: Some(id.to_owned()), ..Text::default() }
    }

    fn with(id: &str, args: &[(&str, String)]) -> Text {
        let args = args.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect();
        Text { id: Some(id.to_owned()), args, raw: None }
    }

    fn raw(words: impl std::fmt::Display) -> Text {
        Text { raw: Some(words.to_string().chars().take(ERROR_CHARS_MAX).collect()), ..Text::default() }
    }

    fn render(&self, lang: Lang) -> String {
        let Some(id) = &self.id else { return self.raw.clone().unwrap_or_default() };
        let mut args = self.args.iter();
        match (args.next(), args.next()) {
            (None, _) => lang.t(id),
            (Some((name, value)), None) => lang.t1(id, name, value),
            (Some((name1, value1)), Some((name2, value2))) => lang.t2(id, name1, value1, name2, value2),
        }
    }
}

/// One step of a run as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StepRecord {
    /// The message id of its name.
    step: String,
    /// `good`, `bad` or `warn`.
    badge: String,
    /// When it ended, milliseconds since the run started.
    elapsed_ms: u64,
    detail: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    /// What the code means (English, Chinese).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    meaning: Option<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pan_masked: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rrn: Option<String>,
}

/// A run as the audit log keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunRecord {
    run_id: String,
    /// `qr` or `card`.
    kind: String,
    merchant_id: String,
    terminal_id: String,
    amount_minor: i64,
    currency: String,
    /// The test card's word (card tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    card: Option<String>,
    outcome: Text,
    /// `good`, `bad` or `warn`.
    outcome_badge: String,
    steps: Vec<StepRecord>,
    /// The references of the journal entries the result page reads back.
    references: Vec<String>,
    /// The card requests of the run (its sale, its void) by batch and STAN.
    #[serde(default)]
    card_requests: Vec<(u32, u32)>,
}

impl RunRecord {
    fn step(&mut self, started: Instant, step: &str, badge: &str, detail: Text) -> &mut StepRecord {
        self.steps.push(StepRecord {
            step: step.to_owned(),
            badge: badge.to_owned(),
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            detail,
            code: None,
            meaning: None,
            pan_masked: None,
            rrn: None,
        });
        let last = self.steps.len() - 1;
        &mut self.steps[last]
    }

    fn finish(&mut self, outcome: Text, badge: &str) {
        self.outcome = outcome;
        badge.clone_into(&mut self.outcome_badge);
    }
}

// ---- Running one ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct RunForm {
    merchant: Option<String>,
    terminal_id: String,
    kind: String,
    amount: String,
    code: Option<String>,
    card: Option<String>,
}

/// What a run needs, checked.
enum Instrument {
    Qr { code: &'static str, qr: kassa_qr::QrService },
    Card { card: TestCard, probe: Arc<dyn CardProbe> },
}

async fn run(State(state): State<WebState>, posted: Posted<RunForm>) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    allowed(&viewer)?;
    let merchant_id = viewer
        .merchant_scope(form.merchant.as_deref())
        .map(str::to_owned)
        .ok_or(PageError::Bad("test-transaction-no-merchant"))?;
    let merchant = state.store.directory.merchant(&merchant_id).await?.ok_or(PageError::NotFound)?;
    let terminal = state
        .store
        .directory
        .terminal(form.terminal_id.trim())
        .await?
        .filter(|t| t.merchant_id == merchant_id)
        .ok_or(PageError::Bad("test-transaction-no-terminal"))?;
    let currency = Currency::from_code(&merchant.currency).map_err(|e| PageError::Internal(e.to_string()))?;
    let amount =
        Money::parse(form.amount.trim(), currency).map_err(|_| PageError::Bad("test-transaction-bad-amount"))?;
    if !amount.is_positive() || amount.minor() > TEST_AMOUNT_MINOR_MAX {
        return Err(PageError::Bad("test-transaction-bad-amount"));
    }
    let instrument = match form.kind.as_str() {
        "qr" => {
            let code = form.code.as_deref().and_then(|c| PAYMENT_CODES.iter().find(|(known, _)| *known == c));
            let (code, _) = code.ok_or(PageError::Bad("test-transaction-bad-code"))?;
            let qr = state.services.qr.clone().ok_or(PageError::Bad("test-transaction-qr-unavailable"))?;
            Instrument::Qr { code, qr }
        }
        "card" => {
            let card =
                form.card.as_deref().and_then(TestCard::parse).ok_or(PageError::Bad("test-transaction-bad-card"))?;
            let probe = state.services.card_probe.clone().ok_or(PageError::Bad("test-transaction-card-unavailable"))?;
            if currency.code() != CARD_CURRENCY {
                return Err(PageError::Bad("test-transaction-card-currency"));
            }
            if terminal.status != "active" {
                return Err(PageError::Bad("test-transaction-terminal-disabled"));
            }
            Instrument::Card { card, probe }
        }
        _ => return Err(PageError::Bad("test-transaction-bad-kind")),
    };
    let run_id = format!("{TEST_TRADE_PREFIX}{}{}", terminal.terminal_id, state.auth.now_ms());
    // Its own task: once started, a run finishes and is recorded whatever the browser does.
    let task = tokio::spawn(execute(state.clone(), viewer.clone(), terminal, amount, run_id.clone(), instrument));
    match task.await {
        Ok(outcome) => outcome?,
        Err(error) => return Err(PageError::Internal(format!("the test transaction stopped: {error}"))),
    }
    Ok(see_other(&format!("/test-transaction/runs/{run_id}")))
}

/// Runs the test and records it with the terminal's contact, in one write.
async fn execute(
    state: WebState,
    viewer: Viewer,
    terminal: TerminalRecord,
    amount: Money,
    run_id: String,
    instrument: Instrument,
) -> Result<(), PageError> {
    let mut record = RunRecord {
        run_id: run_id.clone(),
        kind: String::new(),
        merchant_id: terminal.merchant_id.clone(),
        terminal_id: terminal.terminal_id.clone(),
        amount_minor: amount.minor(),
        currency: amount.currency().code().to_owned(),
        card: None,
        outcome: Text::default(),
        outcome_badge: String::new(),
        steps: Vec::new(),
        references: Vec::new(),
        card_requests: Vec::new(),
    };
    match instrument {
        Instrument::Qr { code, qr } => {
            record.kind = "qr".into();
            qr_payment(&state, &qr, &mut record, amount, code).await?;
        }
        Instrument::Card { card, probe } => {
            record.kind = "card".into();
            record.card = Some(card.as_str().to_owned());
            card_sale(&*probe, &mut record, amount, card).await?;
        }
    }
    let now = state.auth.now_ms();
    // The terminal was used: its fleet line shows the test as its latest contact.
    let contact = Contact {
        terminal_id: terminal.terminal_id.clone(),
        at_ms: now,
        kind: "test",
        software_version: None,
        parameters_version: None,
        unsent_offline: None,
        unsent_reversals: None,
    };
    let details = serde_json::to_value(&record).map_err(|e| PageError::Internal(e.to_string()))?;
    let audit = AuditEvent {
        at_ms: now,
        actor: viewer.session.subject(),
        action: RUN_ACTION.into(),
        target: run_target(&run_id),
        source: viewer.source.clone(),
        reason: String::new(),
        details,
    };
    state.store.commit(WriteUnit::ops(vec![WriteOp::Audit(audit), record_contact(&contact)])).await?;
    Ok(())
}

async fn qr_payment(
    state: &WebState,
    qr: &kassa_qr::QrService,
    record: &mut RunRecord,
    amount: Money,
    code: &str,
) -> Result<(), PageError> {
    let started = Instant::now();
    let (merchant_id, terminal_id, out_trade_no) =
        (record.merchant_id.clone(), record.terminal_id.clone(), record.run_id.clone());
    // 1. The payment-code settings, as the terminal will apply them.
    let settings = state.auth.paycode_settings(&merchant_id).await?;
    let enabled = settings.settings.qr_enabled(&terminal_id);
    let detail = Text::with(
        "test-transaction-settings-detail",
        &[("version", settings.version.to_string()), ("enabled", if enabled { "on" } else { "off" }.to_owned())],
    );
    record.step(started, "test-transaction-step-settings", badge(enabled), detail);
    if !enabled {
        record.finish(Text::id("test-transaction-outcome-qr-off"), "bad");
        return Ok(());
    }
    // 2. The wallet called through the QR service, as the terminal's scan would.
    let merchant = MerchantId::parse(&merchant_id).map_err(|e| PageError::Internal(e.to_string()))?;
    let origin = QrOrigin::Terminal {
        terminal_id: TerminalId::parse(&terminal_id).map_err(|e| PageError::Internal(e.to_string()))?,
        operator: OperatorCode::parse("00").map_err(|e| PageError::Internal(e.to_string()))?,
    };
    let request = CollectRequest {
        out_trade_no: out_trade_no.clone(),
        code: kassa_wallet::PaymentCode::new(code),
        amount,
        subject: "Kassa test transaction".into(),
    };
    let trade = match qr.collect(&merchant, &origin, request).await {
        Ok(trade) => trade,
        Err(error) => {
            record.step(started, "test-transaction-step-wallet", "bad", Text::raw(error));
            record.finish(Text::id("test-transaction-outcome-failed"), "bad");
            return Ok(());
        }
    };
    let wallet = trade.wallet.map(|w| w.to_string()).unwrap_or_default();
    let detail = Text::with("test-transaction-wallet-detail", &[("wallet", wallet), ("trade", out_trade_no.clone())]);
    record.step(started, "test-transaction-step-wallet", "good", detail);
    record.references.push(trade.reference.clone());
    // 3. Its answer.
    let paid = trade.status == QrTradeStatus::Paid;
    let detail = Text::with(
        "test-transaction-answer-detail",
        &[("status", trade.status.as_str().to_owned()), ("trade", trade.trade_no.clone().unwrap_or_default())],
    );
    record.step(started, "test-transaction-step-answer", badge(paid), detail);
    if !paid {
        let outcome = Text::with("test-transaction-outcome-declined", &[("status", trade.status.as_str().to_owned())]);
        record.finish(outcome, "bad");
        return Ok(());
    }
    // 4. The journal entry of the sale.
    let entries = state.store.ledger.entries_for(&trade.reference).await?;
    let posted = entries.iter().find(|e| e.kind == "sale");
    let detail = match posted {
        Some(entry) => Text::with(
            "test-transaction-journal-detail",
            &[("entry", entry.id.to_string()), ("fee", money(trade.fee.minor(), trade.fee.currency().code()))],
        ),
        None => Text::id("test-transaction-journal-missing"),
    };
    record.step(started, "test-transaction-step-journal", badge(posted.is_some()), detail);
    // 5. Refunded at once: the test moves no money into a payout.
    let refund =
        RefundRequest { out_request_no: format!("{out_trade_no}R"), amount, reason: "test transaction".into() };
    match qr.refund(&merchant, &origin, &out_trade_no, refund).await {
        Ok(refund) => {
            record.references.push(refund.refund_reference.clone());
            let status = format!("{:?}", refund.status).to_lowercase();
            record.step(
                started,
                "test-transaction-step-refund",
                "good",
                Text::with("test-transaction-refund-detail", &[("status", status)]),
            );
            let paid = money(amount.minor(), amount.currency().code());
            record.finish(Text::with("test-transaction-outcome-paid", &[("amount", paid)]), "good");
        }
        Err(error) => {
            record.step(started, "test-transaction-step-refund", "bad", Text::raw(error));
            record.finish(Text::id("test-transaction-outcome-refund-failed"), "warn");
        }
    }
    Ok(())
}

fn badge(ok: bool) -> &'static str {
    if ok {
        "good"
    } else {
        "bad"
    }
}

/// The ledger reference of a card request (the gateway's: terminal, batch, STAN, MTI class).
fn card_reference(terminal_id: &str, batch: u32, stan: u32) -> String {
    format!("card:{terminal_id}:{batch:06}:{stan:06}:020")
}

async fn card_sale(
    probe: &dyn CardProbe,
    record: &mut RunRecord,
    amount: Money,
    card: TestCard,
) -> Result<(), PageError> {
    let test = CardTest {
        terminal_id: record.terminal_id.clone(),
        amount_minor: u64::try_from(amount.minor()).map_err(|_| PageError::Bad("test-transaction-bad-amount"))?,
        card,
        run_id: record.run_id.clone(),
    };
    let run = match probe.card_test(&test).await {
        Ok(run) => run,
        Err(ProbeError::Busy) => return Err(PageError::Bad("test-transaction-card-busy")),
        Err(ProbeError::NoGateway) => return Err(PageError::Bad("test-transaction-card-no-gateway")),
        Err(ProbeError::TerminalDisabled) => return Err(PageError::Bad("test-transaction-terminal-disabled")),
        Err(ProbeError::UnknownTerminal) => return Err(PageError::Bad("test-transaction-no-terminal")),
        Err(ProbeError::Store(error)) => return Err(error.into()),
        Err(error @ ProbeError::Seal(_)) => return Err(PageError::Internal(error.to_string())),
    };
    record_card_run(record, &run, amount);
    Ok(())
}

/// The probe's steps as recorded steps, the outcome, and what the result page reads back.
fn record_card_run(record: &mut RunRecord, run: &CardRun, amount: Money) {
    for step in &run.steps {
        let (name, ok) = match step.kind {
            CardStepKind::Keys => ("test-transaction-step-keys", step.error.is_none()),
            CardStepKind::SignIn => ("test-transaction-step-sign-in", step.approved()),
            CardStepKind::Sale => ("test-transaction-step-sale", step.approved()),
            CardStepKind::Void => ("test-transaction-step-void", step.approved()),
            CardStepKind::VoidRepeat => ("test-transaction-step-void-repeat", step.approved()),
            CardStepKind::Reversal => ("test-transaction-step-reversal", step.approved()),
        };
        record.steps.push(StepRecord {
            step: name.to_owned(),
            badge: badge(ok).to_owned(),
            elapsed_ms: step.elapsed_ms,
            detail: card_detail(step),
            code: step.code.clone(),
            meaning: step.meaning.clone(),
            pan_masked: step.pan_masked.clone(),
            rrn: step.rrn.clone(),
        });
    }
    let terminal_id = record.terminal_id.clone();
    for request in [&run.sale, &run.void].into_iter().flatten() {
        record.card_requests.push((request.batch, request.stan));
        let reference = card_reference(&terminal_id, request.batch, request.stan);
        record.references.push(format!("{reference}:reversal"));
        record.references.insert(record.references.len() - 1, reference);
    }
    let last = |kind: CardStepKind| run.steps.iter().rev().find(|step| step.kind == kind);
    let sale = last(CardStepKind::Sale);
    let cancelled = [CardStepKind::Void, CardStepKind::VoidRepeat, CardStepKind::Reversal]
        .into_iter()
        .filter_map(last)
        .any(CardStep::approved);
    let paid = money(amount.minor(), amount.currency().code());
    let (outcome, badge) = match sale {
        None => (Text::id("test-transaction-outcome-not-sent"), "bad"),
        // Sent without an answer: the probe reversed it. Not sent at all: nothing to undo.
        Some(sale) if sale.code.is_none() && last(CardStepKind::Reversal).is_some() => {
            (Text::id("test-transaction-outcome-no-answer"), "bad")
        }
        Some(sale) if sale.code.is_none() => (Text::id("test-transaction-outcome-not-sent"), "bad"),
        Some(sale) if !sale.approved() => {
            let code = sale.code.clone().unwrap_or_default();
            (Text::with("test-transaction-outcome-card-declined", &[("code", code)]), "warn")
        }
        Some(_) if cancelled => (Text::with("test-transaction-outcome-card-approved", &[("amount", paid)]), "good"),
        Some(_) => (Text::id("test-transaction-outcome-not-cancelled"), "bad"),
    };
    record.finish(outcome, badge);
}

/// A card step's detail: what was sent and what the answer said.
fn card_detail(step: &CardStep) -> Text {
    if let Some(error) = &step.error {
        return Text::raw(error);
    }
    let stan = step.stan.map(|stan| format!("{stan:06}")).unwrap_or_default();
    let batch = step.batch.map(|batch| format!("{batch:06}")).unwrap_or_default();
    match step.kind {
        CardStepKind::Keys => Text::id("test-transaction-keys-detail"),
        CardStepKind::SignIn => Text::with("test-transaction-sign-in-detail", &[("batch", batch)]),
        CardStepKind::Sale | CardStepKind::Void | CardStepKind::VoidRepeat | CardStepKind::Reversal => {
            let mac = if step.mac_verified { "yes" } else { "no" };
            Text::with(
                "test-transaction-request-detail",
                &[("request", format!("{} · STAN {stan} · batch {batch}", step.mti)), ("mac", mac.to_owned())],
            )
        }
    }
}

// ---- The result page -----------------------------------------------------------------------

/// One step, in words.
#[derive(Debug)]
struct StepView {
    label: String,
    detail: String,
    code: String,
    pan_masked: String,
    rrn: String,
    elapsed_ms: u64,
    badge: String,
}

/// A transaction of the run, read back.
#[derive(Debug)]
struct TxnLink {
    href: String,
    what: String,
    status: String,
}

#[derive(Template)]
#[template(path = "test_transaction/result.html")]
struct ResultPage {
    chrome: Chrome,
    run_id: String,
    kind: String,
    merchant: String,
    terminal_id: String,
    amount: String,
    time: String,
    again: String,
    outcome: String,
    outcome_badge: String,
    steps: Vec<StepView>,
    entries: Vec<EntryView>,
    txns: Vec<TxnLink>,
}

async fn result(
    viewer: Viewer,
    State(state): State<WebState>,
    Path(run_id): Path<String>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    if !run_id.starts_with(TEST_TRADE_PREFIX)
        || run_id.len() > RUN_ID_CHARS_MAX
        || !run_id.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(PageError::NotFound);
    }
    let records = state.store.web().audit_naming(&[run_target(&run_id)], 1).await?;
    let stored = records.into_iter().find(|r| r.event.action == RUN_ACTION).ok_or(PageError::NotFound)?;
    let record: RunRecord = serde_json::from_value(stored.event.details.clone())
        .map_err(|e| PageError::Internal(format!("a test transaction's record: {e}")))?;
    if viewer.merchant().is_some_and(|own| own != record.merchant_id) {
        return Err(PageError::NotFound);
    }
    let lang = viewer.lang;
    let steps = record
        .steps
        .iter()
        .map(|step| StepView {
            label: lang.t(&step.step),
            detail: step.detail.render(lang),
            code: match (&step.code, &step.meaning) {
                (Some(code), Some((en, zh))) => format!("{code} {}", if lang == Lang::Zh { zh } else { en }),
                (Some(code), None) => code.clone(),
                _ => String::new(),
            },
            pan_masked: step.pan_masked.clone().map(|pan| crate::format::mask_pan(&pan)).unwrap_or_default(),
            rrn: step.rrn.clone().unwrap_or_default(),
            elapsed_ms: step.elapsed_ms,
            badge: step.badge.clone(),
        })
        .collect();
    let (txns, txn_ids) = transactions_of(&state, &record, lang).await?;
    let entries = entries_about(&state.store, &record.references, &txn_ids, ENTRIES_MAX)
        .await?
        .iter()
        .map(|entry| entry_view(lang, entry, &record.currency))
        .collect();
    let again = if viewer.is_institution() {
        format!("/test-transaction?merchant={}", record.merchant_id)
    } else {
        "/test-transaction".to_owned()
    };
    render(&ResultPage {
        chrome: viewer.chrome("test-transaction-result-title"),
        kind: lang.t(if record.kind == "card" { "test-transaction-kind-card" } else { "test-transaction-kind-qr" }),
        merchant: record.merchant_id.clone(),
        terminal_id: record.terminal_id.clone(),
        amount: money(record.amount_minor, &record.currency),
        time: format_time_ms(stored.event.at_ms),
        again,
        outcome: record.outcome.render(lang),
        outcome_badge: record.outcome_badge.clone(),
        run_id: record.run_id,
        steps,
        entries,
        txns,
    })
}

/// The run's transactions as they stand now, as links, and the ids of its card transactions
/// (whose entries are found by them).
async fn transactions_of(
    state: &WebState,
    record: &RunRecord,
    lang: Lang,
) -> Result<(Vec<TxnLink>, Vec<i64>), PageError> {
    let (mut links, mut ids) = (Vec::new(), Vec::new());
    if record.kind == "card" {
        for (batch, stan) in &record.card_requests {
            // An identity that does not parse names no stored request.
            let Ok(identity) = CardIdentity::new(&record.terminal_id, *batch, *stan, "020") else { continue };
            if let Some(txn) = state.store.txns.txn_by_card_identity(&identity).await? {
                ids.push(txn.id);
                links.push(TxnLink {
                    href: format!("/transactions/card/{}", txn.id),
                    what: lang.t2(
                        "test-transaction-txn-card",
                        "kind",
                        word(lang, "transactions-kind", txn.kind.as_str()),
                        "stan",
                        format!("{stan:06}"),
                    ),
                    status: word(lang, "transactions-status", txn.status.as_str()),
                });
            }
        }
    } else if let Some(trade) = state.store.qr().trade_by_out_trade_no(&record.merchant_id, &record.run_id).await? {
        links.push(TxnLink {
            href: format!("/transactions/qr/{}", trade.id),
            what: lang.t1("test-transaction-txn-qr", "trade", &record.run_id),
            status: word(lang, "transactions-status", trade.status.as_str()),
        });
    }
    Ok((links, ids))
}

/// A stored word (a kind, a status) in the viewer's language, as the transactions pages name it;
/// the word itself when they have no message for it.
fn word(lang: Lang, prefix: &str, stored: &str) -> String {
    let id = format!("{prefix}-{}", stored.replace('_', "-"));
    if lang.has(&id) {
        lang.t(&id)
    } else {
        stored.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card_probe::CardRequestRef;

    fn step(kind: CardStepKind, code: Option<&str>) -> CardStep {
        let mut step = CardStep::new(kind, 5);
        step.code = code.map(str::to_owned);
        step.stan = Some(500_001);
        step.batch = Some(1);
        step.mti = "0200".into();
        step
    }

    fn record() -> RunRecord {
        RunRecord {
            run_id: "TEST100000011".into(),
            kind: "card".into(),
            merchant_id: "898100000000001".into(),
            terminal_id: "10000001".into(),
            amount_minor: 100,
            currency: "CNY".into(),
            card: Some("approved".into()),
            outcome: Text::default(),
            outcome_badge: String::new(),
            steps: Vec::new(),
            references: Vec::new(),
            card_requests: Vec::new(),
        }
    }

    #[test]
    fn a_card_run_is_judged_by_its_sale_and_its_cancellation() {
        let amount = Money::from_minor(100, Currency::from_code("CNY").unwrap());
        let sale = CardRequestRef { batch: 1, stan: 500_001 };
        let sale_then = |kinds: &[(CardStepKind, Option<&str>)]| {
            let mut steps = vec![step(CardStepKind::Sale, Some("00"))];
            steps.extend(kinds.iter().map(|(kind, code)| step(*kind, *code)));
            steps
        };
        let cases = [
            (sale_then(&[(CardStepKind::Void, Some("00"))]), "good", "test-transaction-outcome-card-approved"),
            (vec![step(CardStepKind::Sale, Some("54"))], "warn", "test-transaction-outcome-card-declined"),
            (sale_then(&[(CardStepKind::Void, None)]), "bad", "test-transaction-outcome-not-cancelled"),
            (sale_then(&[(CardStepKind::Void, Some("58"))]), "bad", "test-transaction-outcome-not-cancelled"),
            (
                sale_then(&[(CardStepKind::Void, None), (CardStepKind::VoidRepeat, Some("00"))]),
                "good",
                "test-transaction-outcome-card-approved",
            ),
            (sale_then(&[(CardStepKind::Reversal, Some("00"))]), "good", "test-transaction-outcome-card-approved"),
            (
                vec![step(CardStepKind::Sale, None), step(CardStepKind::Reversal, Some("00"))],
                "bad",
                "test-transaction-outcome-no-answer",
            ),
            (vec![step(CardStepKind::Sale, None)], "bad", "test-transaction-outcome-not-sent"),
            (vec![step(CardStepKind::SignIn, None)], "bad", "test-transaction-outcome-not-sent"),
        ];
        for (steps, badge, outcome) in cases {
            let mut record = record();
            let run = CardRun { steps: steps.clone(), sale: Some(sale.clone()), void: None };
            record_card_run(&mut record, &run, amount);
            assert_eq!(
                (record.outcome_badge.as_str(), record.outcome.id.as_deref()),
                (badge, Some(outcome)),
                "{steps:?}"
            );
            assert_eq!(record.steps.len(), steps.len());
        }
        let mut record = record();
        let run = CardRun {
            steps: vec![step(CardStepKind::Sale, Some("00"))],
            sale: Some(sale),
            void: Some(CardRequestRef { batch: 1, stan: 500_002 }),
        };
        record_card_run(&mut record, &run, amount);
        assert_eq!(
            record.references,
            [
                "card:10000001:000001:500001:020",
                "card:10000001:000001:500001:020:reversal",
                "card:10000001:000001:500002:020",
                "card:10000001:000001:500002:020:reversal"
            ]
        );
        assert_eq!(record.card_requests, [(1, 500_001), (1, 500_002)]);
    }

    #[test]
    fn a_record_reads_back_in_either_language() {
        let mut record = record();
        record.finish(Text::with("test-transaction-outcome-card-declined", &[("code", "54".into())]), "warn");
        let stored = serde_json::to_value(&record).unwrap();
        let back: RunRecord = serde_json::from_value(stored).unwrap();
        assert!(back.outcome.render(Lang::En).contains("54"));
        assert!(back.outcome.render(Lang::Zh).contains("54"));
        assert_ne!(back.outcome.render(Lang::En), back.outcome.render(Lang::Zh));
        assert_eq!(Text::raw("x".repeat(1_000)).render(Lang::En).len(), ERROR_CHARS_MAX);
    }
}

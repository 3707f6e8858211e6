//! The test transaction (模拟交易): a merchant owner (or an institution admin, for any merchant)
//! picks one of the merchant's terminals, a kind and an amount, runs it, and sees every step
//! with its timing, to check a new setting end to end.
//!
//! A QR payment goes through the real QR service (`Services::qr`) with a payment code of the
//! wallet simulator, as if the chosen terminal had scanned it: the payment-code settings of the
//! merchant are checked for that terminal, the wallet is called, its answer applied, the sale's
//! journal entry read back — then the payment is refunded in full at once (its refund entry
//! returns the amount and the fee), so a test moves no money into a payout. Its `out_trade_no`
//! starts with `TEST`, which keeps it out of deposit volumes and tells it apart in the
//! transaction list.
//!
//! A card sale needs an ISO 8583 exchange through the gateway with the terminal's keys, which
//! the pages do not hold: the page says so instead of pretending.

use std::time::Instant;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use kassa_auth::Role;
use kassa_domain::{Currency, MerchantId, Money, OperatorCode, TerminalId};
use kassa_qr::{CollectRequest, QrOrigin, QrTradeStatus, RefundRequest};
use kassa_store::fleet::{record_contact, Contact, TEST_TRADE_PREFIX};
use kassa_store::WriteUnit;
use serde::Deserialize;

use crate::i18n::Lang;
use crate::page::{render, Chrome, PageError, Posted, Viewer};
use crate::pages::terminals::{money, now_ms};
use crate::WebState;

/// The largest test amount, minor units (100.00 in a two-decimal currency).
pub const TEST_AMOUNT_MINOR_MAX: i64 = 10_000;

/// The wallet simulator's payment codes offered (code, message id of what it does).
pub const PAYMENT_CODES: [(&str, &str); 4] = [
    ("281234567890123401", "test-transaction-code-paid"),
    ("134567890123456701", "test-transaction-code-paid-wechat"),
    ("281234567890123402", "test-transaction-code-confirm"),
    ("281234567890123403", "test-transaction-code-balance"),
];

/// The routes of the test transaction.
pub fn routes() -> Router<WebState> {
    Router::new().route("/test-transaction", get(form).post(run))
}

#[derive(Debug, Deserialize)]
struct FormQuery {
    merchant: Option<String>,
}

/// One step of a run.
#[derive(Debug)]
struct Step {
    label: String,
    detail: String,
    elapsed_ms: u128,
    badge: &'static str,
}

#[derive(Template)]
#[template(path = "test_transaction/page.html")]
struct TestPage {
    chrome: Chrome,
    institution: bool,
    merchant: String,
    terminals: Vec<String>,
    codes: Vec<(String, String)>,
    qr_available: bool,
    steps: Vec<Step>,
    outcome: Option<(String, &'static str)>,
}

fn allowed(viewer: &Viewer) -> Result<(), PageError> {
    viewer.require_role(&[Role::InstitutionAdmin, Role::MerchantOwner])
}

async fn page(
    state: &WebState,
    viewer: &Viewer,
    merchant: Option<String>,
    steps: Vec<Step>,
    outcome: Option<(String, &'static str)>,
) -> Result<TestPage, PageError> {
    let terminals = match &merchant {
        Some(merchant) => {
            state.store.directory.terminals_of(merchant).await?.into_iter().map(|t| t.terminal_id).collect()
        }
        None => Vec::new(),
    };
    Ok(TestPage {
        chrome: viewer.chrome("test-transaction-title"),
        institution: viewer.is_institution(),
        merchant: merchant.unwrap_or_default(),
        terminals,
        codes: PAYMENT_CODES.iter().map(|(code, id)| ((*code).to_owned(), viewer.lang.t(id))).collect(),
        qr_available: state.services.qr.is_some(),
        steps,
        outcome,
    })
}

async fn form(
    viewer: Viewer,
    State(state): State<WebState>,
    Query(query): Query<FormQuery>,
) -> Result<Response, PageError> {
    allowed(&viewer)?;
    let merchant = viewer.merchant_scope(query.merchant.as_deref()).map(str::to_owned);
    if let Some(merchant) = &merchant {
        state.store.directory.merchant(merchant).await?.ok_or(PageError::NotFound)?;
    }
    render(&page(&state, &viewer, merchant, Vec::new(), None).await?)
}

#[derive(Debug, Deserialize)]
struct RunForm {
    merchant: Option<String>,
    terminal_id: String,
    kind: String,
    amount: String,
    code: Option<String>,
}

struct Run {
    lang: Lang,
    started: Instant,
    steps: Vec<Step>,
}

impl Run {
    fn step(&mut self, label: &str, detail: String, ok: bool) {
        self.steps.push(Step {
            label: self.lang.t(label),
            detail,
            elapsed_ms: self.started.elapsed().as_millis(),
            badge: if ok { "good" } else { "bad" },
        });
    }
}

async fn run(State(state): State<WebState>, posted: Posted<RunForm>) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    allowed(&viewer)?;
    let lang = viewer.lang;
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
    let mut run = Run { lang, started: Instant::now(), steps: Vec::new() };
    let outcome = match form.kind.as_str() {
        "qr" => {
            let code = form.code.as_deref().filter(|c| PAYMENT_CODES.iter().any(|(known, _)| known == c));
            let code = code.ok_or(PageError::Bad("test-transaction-bad-code"))?;
            qr_payment(&state, &mut run, &merchant_id, &terminal.terminal_id, amount, code).await?
        }
        "card" => {
            run.step("test-transaction-step-card", lang.t("test-transaction-card-unavailable"), false);
            (lang.t("test-transaction-outcome-not-run"), "warn")
        }
        _ => return Err(PageError::Bad("test-transaction-bad-kind")),
    };
    // The terminal was used: its fleet line shows the test as its latest contact.
    let contact = Contact {
        terminal_id: terminal.terminal_id.clone(),
        at_ms: now_ms(),
        kind: "test",
        software_version: None,
        parameters_version: None,
        unsent_offline: None,
        unsent_reversals: None,
    };
    state.store.commit(WriteUnit::ops(vec![record_contact(&contact)])).await?;
    render(&page(&state, &viewer, Some(merchant_id), run.steps, Some(outcome)).await?)
}

async fn qr_payment(
    state: &WebState,
    run: &mut Run,
    merchant_id: &str,
    terminal_id: &str,
    amount: Money,
    code: &str,
) -> Result<(String, &'static str), PageError> {
    let lang = run.lang;
    let Some(qr) = state.services.qr.clone() else {
        run.step("test-transaction-step-settings", lang.t("test-transaction-qr-unavailable"), false);
        return Ok((lang.t("test-transaction-outcome-not-run"), "warn"));
    };
    // 1. The payment-code settings, as the terminal will apply them.
    let settings = state.auth.paycode_settings(merchant_id).await?;
    let enabled = settings.settings.qr_enabled(terminal_id);
    run.step(
        "test-transaction-step-settings",
        lang.t2(
            "test-transaction-settings-detail",
            "version",
            settings.version,
            "enabled",
            lang.t(if enabled { "test-transaction-yes" } else { "test-transaction-no" }),
        ),
        enabled,
    );
    if !enabled {
        return Ok((lang.t("test-transaction-outcome-qr-off"), "bad"));
    }
    // 2. The wallet called through the QR service, as the terminal's scan would.
    let merchant = MerchantId::parse(merchant_id).map_err(|e| PageError::Internal(e.to_string()))?;
    let origin = QrOrigin::Terminal {
        terminal_id: TerminalId::parse(terminal_id).map_err(|e| PageError::Internal(e.to_string()))?,
        operator: OperatorCode::parse("00").map_err(|e| PageError::Internal(e.to_string()))?,
    };
    let out_trade_no = format!("{TEST_TRADE_PREFIX}{}{}", terminal_id, now_ms());
    let request = CollectRequest {
        out_trade_no: out_trade_no.clone(),
        code: kassa_wallet::PaymentCode::new(code),
        amount,
        subject: "Kassa test transaction".into(),
    };
    let trade = match qr.collect(&merchant, &origin, request).await {
        Ok(trade) => trade,
        Err(error) => {
            run.step("test-transaction-step-wallet", error.to_string(), false);
            return Ok((lang.t("test-transaction-outcome-failed"), "bad"));
        }
    };
    let wallet = trade.wallet.map(|w| w.to_string()).unwrap_or_default();
    run.step(
        "test-transaction-step-wallet",
        lang.t2("test-transaction-wallet-detail", "wallet", &wallet, "trade", &out_trade_no),
        true,
    );
    // 3. Its answer.
    let paid = trade.status == QrTradeStatus::Paid;
    run.step(
        "test-transaction-step-answer",
        lang.t2(
            "test-transaction-answer-detail",
            "status",
            trade.status.as_str(),
            "trade",
            trade.trade_no.clone().unwrap_or_default(),
        ),
        paid,
    );
    if !paid {
        return Ok((lang.t1("test-transaction-outcome-declined", "status", trade.status.as_str()), "bad"));
    }
    // 4. The journal entry of the sale.
    let entries = state.store.ledger.entries_for(&trade.reference).await?;
    let posted = entries.iter().find(|e| e.kind == "sale");
    run.step(
        "test-transaction-step-journal",
        match posted {
            Some(entry) => lang.t2(
                "test-transaction-journal-detail",
                "entry",
                entry.id,
                "fee",
                money(trade.fee.minor(), trade.fee.currency().code()),
            ),
            None => lang.t("test-transaction-journal-missing"),
        },
        posted.is_some(),
    );
    // 5. Refunded at once: the test moves no money into a payout.
    let refund = qr
        .refund(
            &merchant,
            &origin,
            &out_trade_no,
            RefundRequest { out_request_no: format!("{out_trade_no}R"), amount, reason: "test transaction".into() },
        )
        .await;
    match refund {
        Ok(refund) => {
            run.step(
                "test-transaction-step-refund",
                lang.t1("test-transaction-refund-detail", "status", format!("{:?}", refund.status).to_lowercase()),
                true,
            );
            Ok((lang.t1("test-transaction-outcome-paid", "amount", amount), "good"))
        }
        Err(error) => {
            run.step("test-transaction-step-refund", error.to_string(), false);
            Ok((lang.t("test-transaction-outcome-refund-failed"), "warn"))
        }
    }
}

//! The wallets' books and rules, dialect-free: payers, trades, refunds, the notification outbox.
//! Every function runs inside one database transaction (see [`crate::store`]) and takes the
//! time as an argument.
//!
//! A trade is `waiting` → `paid`, `waiting` → `closed` (closed, cancelled or expired unpaid) or
//! `paid` → `closed` (cancelled: refunded in full). Refunds keep a paid trade paid. Each change
//! keeps the state before it, which the `stale_query` fault answers.
//!
//! **Invariant**: a trade's refunded total never exceeds its amount, and a refund reference
//! (per trade) refunds once: the unique index on `(trade_id, out_request_no)` holds it.

use kassa_domain::{fee_returned_by_refund, Currency, FeeRate, Money};
use kassa_wallet::Wallet;
use rand::Rng;
use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::faults::{Fault, Faults};
use crate::time;

/// `tx.execute`, through the connection's statement cache (each API call runs a handful of the
/// same statements; parsing them anew every time cost more than running them).
fn execute(tx: &Transaction<'_>, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

/// `tx.query_row`, through the statement cache.
fn query_row<T>(
    tx: &Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    tx.prepare_cached(sql)?.query_row(params, f)
}

/// Where a trade stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Not there (only as the state before a trade's creation).
    Absent,
    Waiting,
    Paid,
    Closed,
}

impl State {
    fn parse(text: &str) -> State {
        match text {
            "waiting" => State::Waiting,
            "paid" => State::Paid,
            "closed" => State::Closed,
            _ => State::Absent,
        }
    }
}

/// Why a trade was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClosedBy {
    /// `close` / `closeorder`.
    Close,
    /// `cancel` / `reverse` (refunded in full when it had been paid).
    Cancel,
    /// Its validity ended unpaid.
    Expiry,
}

impl ClosedBy {
    fn as_str(self) -> &'static str {
        match self {
            ClosedBy::Close => "close",
            ClosedBy::Cancel => "cancel",
            ClosedBy::Expiry => "expiry",
        }
    }

    fn parse(text: Option<String>) -> Option<ClosedBy> {
        match text.as_deref()? {
            "close" => Some(ClosedBy::Close),
            "cancel" => Some(ClosedBy::Cancel),
            "expiry" => Some(ClosedBy::Expiry),
            _ => None,
        }
    }
}

/// How the payer behaves, from the payment code's last two digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// `01`: paid at once.
    Paid,
    /// `02`: waits, then paid [`EngineConfig::confirm_delay_ms`] later.
    ConfirmLater,
    /// `03`: the balance is too low.
    BalanceTooLow,
    /// `04`: never confirms.
    NeverConfirms,
    /// A merchant-presented order: paid when a payer scans it.
    Precreated,
}

impl Behaviour {
    fn as_str(self) -> &'static str {
        match self {
            Behaviour::Paid => "paid",
            Behaviour::ConfirmLater => "confirm_later",
            Behaviour::BalanceTooLow => "balance_too_low",
            Behaviour::NeverConfirms => "never_confirms",
            Behaviour::Precreated => "precreated",
        }
    }

    fn parse(text: &str) -> Behaviour {
        match text {
            "paid" => Behaviour::Paid,
            "confirm_later" => Behaviour::ConfirmLater,
            "balance_too_low" => Behaviour::BalanceTooLow,
            "never_confirms" => Behaviour::NeverConfirms,
            _ => Behaviour::Precreated,
        }
    }

    /// The behaviour of a customer payment code at `wallet`; `None`: invalid there.
    pub(crate) fn of_code(wallet: Wallet, code: &str) -> Option<Behaviour> {
        if Wallet::for_payment_code(code) != Some(wallet) {
            return None;
        }
        match code.get(16..)? {
            "01" => Some(Behaviour::Paid),
            "02" => Some(Behaviour::ConfirmLater),
            "03" => Some(Behaviour::BalanceTooLow),
            "04" => Some(Behaviour::NeverConfirms),
            _ => None,
        }
    }
}

/// A definite business refusal (nothing was changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    TradeNotExist,
    BalanceNotEnough,
    CodeInvalid,
    /// Paid already (pay with other parameters, close of a paid trade).
    TradeHasSuccess,
    /// Closed already.
    TradeHasClose,
    /// The state forbids the call (pay again with other parameters while waiting, refund of an
    /// unpaid trade).
    TradeStatusError,
    /// More than what remains refundable.
    RefundTooLarge,
    /// The refund reference was used with another amount.
    DiscordantRepeat,
}

/// The engine's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineConfig {
    pub confirm_delay_ms: i64,
    pub pay_validity_ms: i64,
    pub fee_rate: FeeRate,
}

/// What one engine call needs besides the database.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub now_ms: i64,
    pub wallet: Wallet,
    pub faults: &'a Faults,
    pub config: &'a EngineConfig,
}

/// A trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trade {
    pub id: i64,
    pub wallet: Wallet,
    pub out_trade_no: String,
    pub trade_no: String,
    pub amount: Money,
    pub state: State,
    pub closed_by: Option<ClosedBy>,
    pub refunded: Money,
    pub behaviour: Behaviour,
    pub code: Option<String>,
    pub payer: Option<String>,
    pub subject: String,
    pub notify_url: Option<String>,
    pub qr_id: Option<String>,
    pub created_ms: i64,
    pub paid_ms: Option<i64>,
    pub closed_ms: Option<i64>,
    pub expires_ms: i64,
    pub confirm_at_ms: Option<i64>,
    pub omit_from_statement: bool,
    pub prev_state: State,
    pub prev_closed_by: Option<ClosedBy>,
    pub prev_paid_ms: Option<i64>,
    pub prev_refunded: Money,
}

impl Trade {
    /// The trade as it was before its last change (`None`: it did not exist).
    pub(crate) fn stale(&self) -> Option<Trade> {
        if self.prev_state == State::Absent {
            return None;
        }
        let mut stale = self.clone();
        stale.state = self.prev_state;
        stale.closed_by = self.prev_closed_by;
        stale.paid_ms = self.prev_paid_ms;
        stale.refunded = self.prev_refunded;
        Some(stale)
    }
}

const TRADE_COLUMNS: &str = "id, wallet, out_trade_no, trade_no, amount_minor, state, closed_by, refunded_minor, \
     behaviour, code, payer, subject, notify_url, qr_id, created_ms, paid_ms, closed_ms, expires_ms, confirm_at_ms, \
     omit_from_statement, prev_state, prev_closed_by, prev_paid_ms, prev_refunded_minor";

fn cny(minor: i64) -> Money {
    Money::from_minor(minor, Currency::CNY)
}

fn trade_from_row(row: &Row<'_>) -> rusqlite::Result<Trade> {
    let wallet: String = row.get(1)?;
    let wallet = Wallet::parse(&wallet).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, format!("wallet {wallet}").into())
    })?;
    Ok(Trade {
        id: row.get(0)?,
        wallet,
        out_trade_no: row.get(2)?,
        trade_no: row.get(3)?,
        amount: cny(row.get(4)?),
        state: State::parse(&row.get::<_, String>(5)?),
        closed_by: ClosedBy::parse(row.get(6)?),
        refunded: cny(row.get(7)?),
        behaviour: Behaviour::parse(&row.get::<_, String>(8)?),
        code: row.get(9)?,
        payer: row.get(10)?,
        subject: row.get(11)?,
        notify_url: row.get(12)?,
        qr_id: row.get(13)?,
        created_ms: row.get(14)?,
        paid_ms: row.get(15)?,
        closed_ms: row.get(16)?,
        expires_ms: row.get(17)?,
        confirm_at_ms: row.get(18)?,
        omit_from_statement: row.get(19)?,
        prev_state: State::parse(&row.get::<_, String>(20)?),
        prev_closed_by: ClosedBy::parse(row.get(21)?),
        prev_paid_ms: row.get(22)?,
        prev_refunded: cny(row.get(23)?),
    })
}

/// How a call names a trade.
#[derive(Debug, Clone)]
pub(crate) enum TradeKey {
    /// The merchant's reference.
    OutTradeNo(String),
    /// The wallet's trade number.
    TradeNo(String),
}

fn find(tx: &Transaction<'_>, wallet: Wallet, key: &TradeKey) -> rusqlite::Result<Option<Trade>> {
    let (column, value) = match key {
        TradeKey::OutTradeNo(value) => ("out_trade_no", value),
        TradeKey::TradeNo(value) => ("trade_no", value),
    };
    query_row(
        tx,
        &format!("SELECT {TRADE_COLUMNS} FROM trades WHERE wallet = ?1 AND {column} = ?2"),
        params![wallet.as_str(), value],
        trade_from_row,
    )
    .optional()
}

fn by_id(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<Trade> {
    query_row(tx, &format!("SELECT {TRADE_COLUMNS} FROM trades WHERE id = ?1"), [id], trade_from_row)
}

/// The trade named by `key`, brought up to date (a due confirmation or expiry applied).
fn current(tx: &Transaction<'_>, ctx: &Ctx<'_>, key: &TradeKey) -> rusqlite::Result<Option<Trade>> {
    let Some(trade) = find(tx, ctx.wallet, key)? else { return Ok(None) };
    settle(tx, ctx.faults, trade, ctx.now_ms).map(Some)
}

/// Applies what is due on `trade` at `now_ms`: the payer's delayed confirmation, the end of
/// validity.
fn settle(tx: &Transaction<'_>, faults: &Faults, trade: Trade, now_ms: i64) -> rusqlite::Result<Trade> {
    if trade.state != State::Waiting {
        return Ok(trade);
    }
    if let Some(confirm_at_ms) = trade.confirm_at_ms.filter(|at| *at <= now_ms && *at < trade.expires_ms) {
        mark_paid(tx, faults, &trade, confirm_at_ms)?;
        return by_id(tx, trade.id);
    }
    if trade.expires_ms <= now_ms {
        mark_closed(tx, &trade, ClosedBy::Expiry, trade.expires_ms)?;
        return by_id(tx, trade.id);
    }
    Ok(trade)
}

/// Applies everything due at `now_ms` on at most `limit` trades; answers how many changed.
pub(crate) fn settle_due(tx: &Transaction<'_>, faults: &Faults, now_ms: i64, limit: usize) -> rusqlite::Result<usize> {
    let mut statement = tx.prepare_cached(&format!(
        "SELECT {TRADE_COLUMNS} FROM trades WHERE state = 'waiting' \
         AND (expires_ms <= ?1 OR (confirm_at_ms IS NOT NULL AND confirm_at_ms <= ?1)) ORDER BY id LIMIT ?2"
    ))?;
    let due: Vec<Trade> = statement
        .query_map(params![now_ms, i64::try_from(limit).unwrap_or(i64::MAX)], trade_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let changed = due.len();
    for trade in due {
        settle(tx, faults, trade, now_ms)?;
    }
    Ok(changed)
}

fn remember_previous(tx: &Transaction<'_>, trade_id: i64) -> rusqlite::Result<()> {
    execute(
        tx,
        "UPDATE trades SET prev_state = state, prev_closed_by = closed_by, prev_paid_ms = paid_ms, \
         prev_refunded_minor = refunded_minor WHERE id = ?1",
        [trade_id],
    )?;
    Ok(())
}

fn mark_paid(tx: &Transaction<'_>, faults: &Faults, trade: &Trade, paid_ms: i64) -> rusqlite::Result<()> {
    debug_assert_eq!(trade.state, State::Waiting);
    let omit = faults.take(trade.wallet, Fault::OmitFromStatement);
    remember_previous(tx, trade.id)?;
    execute(
        tx,
        "UPDATE trades SET state = 'paid', paid_ms = ?2, paid_day = ?3, confirm_at_ms = NULL, \
         omit_from_statement = ?4 WHERE id = ?1 AND state = 'waiting'",
        params![trade.id, paid_ms, time::business_day(paid_ms), omit],
    )?;
    if let Some(payer) = &trade.payer {
        execute(
            tx,
            "UPDATE payers SET paid_minor = paid_minor + ?3, \
             balance_minor = CASE WHEN balance_minor IS NULL THEN NULL ELSE balance_minor - ?3 END \
             WHERE wallet = ?1 AND payer = ?2",
            params![trade.wallet.as_str(), payer, trade.amount.minor()],
        )?;
    }
    enqueue_notification(tx, trade, "paid", paid_ms)
}

fn mark_closed(tx: &Transaction<'_>, trade: &Trade, by: ClosedBy, closed_ms: i64) -> rusqlite::Result<()> {
    remember_previous(tx, trade.id)?;
    execute(
        tx,
        "UPDATE trades SET state = 'closed', closed_by = ?2, closed_ms = ?3, confirm_at_ms = NULL WHERE id = ?1",
        params![trade.id, by.as_str(), closed_ms],
    )?;
    // Alipay tells the merchant about closed trades too; WeChat only about payments.
    if trade.wallet == Wallet::Alipay {
        enqueue_notification(tx, trade, "closed", closed_ms)?;
    }
    Ok(())
}

fn enqueue_notification(tx: &Transaction<'_>, trade: &Trade, status: &str, now_ms: i64) -> rusqlite::Result<()> {
    let Some(notify_url) = &trade.notify_url else { return Ok(()) };
    let notify_id = random_token(32);
    execute(
        tx,
        "INSERT INTO outbox (trade_id, status, notify_url, notify_id, next_attempt_ms, created_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![trade.id, status, notify_url, notify_id, now_ms],
    )?;
    Ok(())
}

/// Random letters and digits (order ids, tokens, notification ids).
pub(crate) fn random_token(chars: usize) -> String {
    rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(chars).map(char::from).collect()
}

/// The payer behind a customer payment code (an Alipay `buyer_user_id`, a WeChat `openid`).
/// One payer per code (the behaviour digits included, so a `…03` payer is never another's).
fn payer_of_code(wallet: Wallet, code: &str) -> String {
    match wallet {
        Wallet::Alipay => format!("2088{}", code.get(6..).unwrap_or(code)),
        Wallet::Wechat => format!("oSim{}", code.get(2..).unwrap_or(code)),
    }
}

/// The payer who scans merchant-presented codes.
fn qr_payer(wallet: Wallet) -> &'static str {
    match wallet {
        Wallet::Alipay => "2088000000000001",
        Wallet::Wechat => "oSimQrPayer00001",
    }
}

fn ensure_payer(
    tx: &Transaction<'_>,
    wallet: Wallet,
    payer: &str,
    balance: Option<i64>,
) -> rusqlite::Result<Option<i64>> {
    execute(
        tx,
        "INSERT INTO payers (wallet, payer, balance_minor) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![wallet.as_str(), payer, balance],
    )?;
    query_row(
        tx,
        "SELECT balance_minor FROM payers WHERE wallet = ?1 AND payer = ?2",
        params![wallet.as_str(), payer],
        |row| row.get(0),
    )
}

/// The wallet's trade number: Alipay 28 digits starting with the date; WeChat `transaction_id`,
/// 28 digits. Unique by the trade's row id.
fn trade_no(wallet: Wallet, id: i64, now_ms: i64) -> String {
    let day = time::compact_day(now_ms);
    match wallet {
        Wallet::Alipay => format!("{day}22{id:018}"),
        Wallet::Wechat => format!("4200{id:016}{day}"),
    }
}

struct NewTrade<'a> {
    out_trade_no: &'a str,
    amount: Money,
    behaviour: Behaviour,
    code: Option<&'a str>,
    payer: Option<&'a str>,
    subject: &'a str,
    notify_url: Option<&'a str>,
    qr_id: Option<&'a str>,
    expires_ms: i64,
    confirm_at_ms: Option<i64>,
}

fn insert_trade(tx: &Transaction<'_>, ctx: &Ctx<'_>, new: &NewTrade<'_>) -> rusqlite::Result<Trade> {
    let id: i64 = query_row(tx, "SELECT COALESCE(MAX(id), 0) + 1 FROM trades", [], |row| row.get(0))?;
    execute(tx,
        "INSERT INTO trades (id, wallet, out_trade_no, trade_no, amount_minor, state, behaviour, code, payer, subject, \
         notify_url, qr_id, created_ms, expires_ms, confirm_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'waiting', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            id,
            ctx.wallet.as_str(),
            new.out_trade_no,
            trade_no(ctx.wallet, id, ctx.now_ms),
            new.amount.minor(),
            new.behaviour.as_str(),
            new.code,
            new.payer,
            new.subject,
            new.notify_url,
            new.qr_id,
            ctx.now_ms,
            new.expires_ms,
            new.confirm_at_ms,
        ],
    )?;
    by_id(tx, id)
}

/// A customer-presented payment.
#[derive(Debug, Clone)]
pub(crate) struct PayInput {
    pub out_trade_no: String,
    pub code: String,
    pub amount: Money,
    pub subject: String,
    pub notify_url: Option<String>,
}

/// Charges a payment code (`alipay.trade.pay`, `micropay`); the trade answered is paid or
/// waiting.
pub(crate) fn pay(tx: &Transaction<'_>, ctx: &Ctx<'_>, input: &PayInput) -> rusqlite::Result<Result<Trade, Refusal>> {
    if let Some(existing) = current(tx, ctx, &TradeKey::OutTradeNo(input.out_trade_no.clone()))? {
        let same = existing.code.as_deref() == Some(input.code.as_str()) && existing.amount == input.amount;
        return Ok(match existing.state {
            State::Paid if same => Ok(existing),
            State::Waiting if same => Ok(existing),
            State::Paid => Err(Refusal::TradeHasSuccess),
            State::Closed => Err(Refusal::TradeHasClose),
            State::Waiting | State::Absent => Err(Refusal::TradeStatusError),
        });
    }
    let Some(behaviour) = Behaviour::of_code(ctx.wallet, &input.code) else { return Ok(Err(Refusal::CodeInvalid)) };
    let payer = payer_of_code(ctx.wallet, &input.code);
    let balance = ensure_payer(tx, ctx.wallet, &payer, (behaviour == Behaviour::BalanceTooLow).then_some(0))?;
    if behaviour == Behaviour::BalanceTooLow || balance.is_some_and(|balance| balance < input.amount.minor()) {
        return Ok(Err(Refusal::BalanceNotEnough));
    }
    let confirm_at_ms = (behaviour == Behaviour::ConfirmLater).then(|| ctx.now_ms + ctx.config.confirm_delay_ms);
    let trade = insert_trade(
        tx,
        ctx,
        &NewTrade {
            out_trade_no: &input.out_trade_no,
            amount: input.amount,
            behaviour,
            code: Some(&input.code),
            payer: Some(&payer),
            subject: &input.subject,
            notify_url: input.notify_url.as_deref(),
            qr_id: None,
            expires_ms: ctx.now_ms.saturating_add(ctx.config.pay_validity_ms),
            confirm_at_ms,
        },
    )?;
    if behaviour == Behaviour::Paid {
        mark_paid(tx, ctx.faults, &trade, ctx.now_ms)?;
        return by_id(tx, trade.id).map(Ok);
    }
    Ok(Ok(trade))
}

/// A merchant-presented order.
#[derive(Debug, Clone)]
pub(crate) struct PrecreateInput {
    pub out_trade_no: String,
    pub amount: Money,
    pub subject: String,
    pub notify_url: Option<String>,
    pub validity_ms: i64,
}

/// Creates a merchant-presented order (`alipay.trade.precreate`, `unifiedorder` NATIVE); the
/// same reference and amount again answers the same order while it is payable.
pub(crate) fn precreate(
    tx: &Transaction<'_>,
    ctx: &Ctx<'_>,
    input: &PrecreateInput,
) -> rusqlite::Result<Result<Trade, Refusal>> {
    if let Some(existing) = current(tx, ctx, &TradeKey::OutTradeNo(input.out_trade_no.clone()))? {
        let same = existing.behaviour == Behaviour::Precreated && existing.amount == input.amount;
        return Ok(match existing.state {
            State::Waiting if same => Ok(existing),
            State::Paid => Err(Refusal::TradeHasSuccess),
            State::Closed => Err(Refusal::TradeHasClose),
            State::Waiting | State::Absent => Err(Refusal::TradeStatusError),
        });
    }
    let qr_id = random_token(24);
    insert_trade(
        tx,
        ctx,
        &NewTrade {
            out_trade_no: &input.out_trade_no,
            amount: input.amount,
            behaviour: Behaviour::Precreated,
            code: None,
            payer: None,
            subject: &input.subject,
            notify_url: input.notify_url.as_deref(),
            qr_id: Some(&qr_id),
            expires_ms: ctx.now_ms.saturating_add(input.validity_ms),
            confirm_at_ms: None,
        },
    )
    .map(Ok)
}

/// A payer scans the merchant-presented order `qr_id` of `ctx.wallet` and pays it.
pub(crate) fn pay_order(tx: &Transaction<'_>, ctx: &Ctx<'_>, qr_id: &str) -> rusqlite::Result<Result<Trade, Refusal>> {
    let trade = tx
        .query_row(
            &format!("SELECT {TRADE_COLUMNS} FROM trades WHERE wallet = ?1 AND qr_id = ?2"),
            params![ctx.wallet.as_str(), qr_id],
            trade_from_row,
        )
        .optional()?;
    let Some(trade) = trade else { return Ok(Err(Refusal::TradeNotExist)) };
    let trade = settle(tx, ctx.faults, trade, ctx.now_ms)?;
    match trade.state {
        State::Waiting => {}
        State::Paid => return Ok(Err(Refusal::TradeHasSuccess)),
        State::Closed | State::Absent => return Ok(Err(Refusal::TradeHasClose)),
    }
    let payer = qr_payer(ctx.wallet);
    ensure_payer(tx, ctx.wallet, payer, None)?;
    execute(tx, "UPDATE trades SET payer = ?2 WHERE id = ?1", params![trade.id, payer])?;
    let trade = by_id(tx, trade.id)?;
    mark_paid(tx, ctx.faults, &trade, ctx.now_ms)?;
    by_id(tx, trade.id).map(Ok)
}

/// The trade named by `key`; with `stale`, as it was before its last change.
pub(crate) fn query(
    tx: &Transaction<'_>,
    ctx: &Ctx<'_>,
    key: &TradeKey,
    stale: bool,
) -> rusqlite::Result<Result<Trade, Refusal>> {
    let Some(trade) = current(tx, ctx, key)? else { return Ok(Err(Refusal::TradeNotExist)) };
    if stale {
        return Ok(trade.stale().ok_or(Refusal::TradeNotExist));
    }
    Ok(Ok(trade))
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelAction {
    /// Closed unpaid (or it was closed already).
    Close,
    /// Refunded in full.
    Refund,
}

/// Cancels: closes an unpaid trade, refunds a paid one in full (what is left of it).
pub(crate) fn cancel(
    tx: &Transaction<'_>,
    ctx: &Ctx<'_>,
    key: &TradeKey,
) -> rusqlite::Result<Result<(Trade, CancelAction), Refusal>> {
    let Some(trade) = current(tx, ctx, key)? else { return Ok(Err(Refusal::TradeNotExist)) };
    let action = match trade.state {
        State::Waiting | State::Absent => {
            mark_closed(tx, &trade, ClosedBy::Cancel, ctx.now_ms)?;
            CancelAction::Close
        }
        State::Paid => {
            let rest = cny(trade.amount.minor() - trade.refunded.minor());
            if rest.is_positive() {
                insert_refund(tx, ctx, &trade, None, rest, "cancel")?;
            }
            mark_closed(tx, &trade, ClosedBy::Cancel, ctx.now_ms)?;
            CancelAction::Refund
        }
        State::Closed if trade.paid_ms.is_some() => CancelAction::Refund,
        State::Closed => CancelAction::Close,
    };
    Ok(Ok((by_id(tx, trade.id)?, action)))
}

/// Closes an unpaid trade (closing a closed one again is fine).
pub(crate) fn close(tx: &Transaction<'_>, ctx: &Ctx<'_>, key: &TradeKey) -> rusqlite::Result<Result<Trade, Refusal>> {
    let Some(trade) = current(tx, ctx, key)? else { return Ok(Err(Refusal::TradeNotExist)) };
    match trade.state {
        State::Paid => Ok(Err(Refusal::TradeHasSuccess)),
        State::Closed => Ok(Ok(trade)),
        State::Waiting | State::Absent => {
            mark_closed(tx, &trade, ClosedBy::Close, ctx.now_ms)?;
            by_id(tx, trade.id).map(Ok)
        }
    }
}

/// A refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refund {
    pub out_request_no: Option<String>,
    pub refund_id: String,
    pub amount: Money,
    pub fee_returned: Money,
    pub reason: String,
    pub created_ms: i64,
}

const REFUND_COLUMNS: &str = "out_request_no, refund_id, amount_minor, fee_returned_minor, reason, created_ms";

fn refund_from_row(row: &Row<'_>) -> rusqlite::Result<Refund> {
    Ok(Refund {
        out_request_no: row.get(0)?,
        refund_id: row.get(1)?,
        amount: cny(row.get(2)?),
        fee_returned: cny(row.get(3)?),
        reason: row.get(4)?,
        created_ms: row.get(5)?,
    })
}

fn find_refund(tx: &Transaction<'_>, trade_id: i64, out_request_no: &str) -> rusqlite::Result<Option<Refund>> {
    query_row(
        tx,
        &format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE trade_id = ?1 AND out_request_no = ?2"),
        params![trade_id, out_request_no],
        refund_from_row,
    )
    .optional()
}

fn insert_refund(
    tx: &Transaction<'_>,
    ctx: &Ctx<'_>,
    trade: &Trade,
    out_request_no: Option<&str>,
    amount: Money,
    reason: &str,
) -> rusqlite::Result<Refund> {
    let conversion = |error: kassa_domain::MoneyError| {
        rusqlite::Error::ToSqlConversionFailure(format!("refund amount: {error}").into())
    };
    let refunded_after = trade.refunded.checked_add(amount).map_err(conversion)?;
    assert!(refunded_after.minor() <= trade.amount.minor(), "a refund above what was paid reached the books");
    let fee = ctx.config.fee_rate.fee_for(trade.amount).map_err(conversion)?;
    let fee_returned = fee_returned_by_refund(fee, trade.amount, trade.refunded, amount).map_err(conversion)?;
    let id: i64 = query_row(tx, "SELECT COALESCE(MAX(id), 0) + 1 FROM refunds", [], |row| row.get(0))?;
    let refund_id = format!("50{id:019}{}", time::compact_day(ctx.now_ms));
    execute(
        tx,
        "INSERT INTO refunds (id, trade_id, out_request_no, refund_id, amount_minor, fee_returned_minor, reason, \
         created_ms, day) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            id,
            trade.id,
            out_request_no,
            refund_id,
            amount.minor(),
            fee_returned.minor(),
            reason,
            ctx.now_ms,
            time::business_day(ctx.now_ms)
        ],
    )?;
    remember_previous(tx, trade.id)?;
    execute(tx, "UPDATE trades SET refunded_minor = ?2 WHERE id = ?1", params![trade.id, refunded_after.minor()])?;
    if let Some(payer) = &trade.payer {
        execute(
            tx,
            "UPDATE payers SET refunded_minor = refunded_minor + ?3, \
             balance_minor = CASE WHEN balance_minor IS NULL THEN NULL ELSE balance_minor + ?3 END \
             WHERE wallet = ?1 AND payer = ?2",
            params![trade.wallet.as_str(), payer, amount.minor()],
        )?;
    }
    Ok(Refund {
        out_request_no: out_request_no.map(str::to_owned),
        refund_id,
        amount,
        fee_returned,
        reason: reason.to_owned(),
        created_ms: ctx.now_ms,
    })
}

/// A refund asked for.
#[derive(Debug, Clone)]
pub(crate) struct RefundInput {
    pub key: TradeKey,
    pub out_request_no: String,
    pub amount: Money,
    pub reason: String,
}

/// A refund done (or found again), the trade after it, and whether this call moved money.
#[derive(Debug, Clone)]
pub(crate) struct RefundDone {
    pub trade: Trade,
    pub refund: Refund,
    pub fund_change: bool,
}

/// Refunds (part of) a paid trade, once per refund reference.
pub(crate) fn refund(
    tx: &Transaction<'_>,
    ctx: &Ctx<'_>,
    input: &RefundInput,
) -> rusqlite::Result<Result<RefundDone, Refusal>> {
    let Some(trade) = current(tx, ctx, &input.key)? else { return Ok(Err(Refusal::TradeNotExist)) };
    if let Some(refund) = find_refund(tx, trade.id, &input.out_request_no)? {
        if refund.amount != input.amount {
            return Ok(Err(Refusal::DiscordantRepeat));
        }
        return Ok(Ok(RefundDone { trade, refund, fund_change: false }));
    }
    match trade.state {
        State::Paid => {}
        State::Closed => return Ok(Err(Refusal::TradeHasClose)),
        State::Waiting | State::Absent => return Ok(Err(Refusal::TradeStatusError)),
    }
    let refundable = trade.amount.minor() - trade.refunded.minor();
    if !input.amount.is_positive() || input.amount.minor() > refundable {
        return Ok(Err(Refusal::RefundTooLarge));
    }
    let refund = insert_refund(tx, ctx, &trade, Some(&input.out_request_no), input.amount, &input.reason)?;
    let trade = by_id(tx, trade.id)?;
    Ok(Ok(RefundDone { trade, refund, fund_change: true }))
}

/// The trade and its refund `out_request_no` (`None`: no such refund).
pub(crate) fn refund_query(
    tx: &Transaction<'_>,
    ctx: &Ctx<'_>,
    key: &TradeKey,
    out_request_no: &str,
) -> rusqlite::Result<Result<(Trade, Option<Refund>), Refusal>> {
    let Some(trade) = current(tx, ctx, key)? else { return Ok(Err(Refusal::TradeNotExist)) };
    let refund = find_refund(tx, trade.id, out_request_no)?;
    Ok(Ok((trade, refund)))
}

/// How a refund query names a refund.
#[derive(Debug, Clone)]
pub(crate) enum RefundKey {
    /// The wallet's refund number.
    RefundId(String),
    /// The merchant's refund reference.
    OutRequestNo(String),
}

/// What a refund query found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RefundsFound {
    /// The trade and the refunds asked for, oldest first, never empty: the named refund, or
    /// every refund of the trade made through the refund API when none is named (a cancel's
    /// refund has no reference: the trade is cancelled, not refunded).
    Found(Box<Trade>, Vec<Refund>),
    /// No such trade, no such refund, or a trade without refunds.
    NotFound,
    /// A refund reference used on more than one trade, named without its trade.
    Ambiguous,
}

/// The refunds named by `trade` and/or `refund` (at least one of them). With both, the refund
/// is looked for within that trade only.
pub(crate) fn refunds(
    tx: &Transaction<'_>,
    ctx: &Ctx<'_>,
    trade: Option<&TradeKey>,
    refund: Option<&RefundKey>,
) -> rusqlite::Result<RefundsFound> {
    let trade = match (trade, refund) {
        (Some(key), _) => current(tx, ctx, key)?,
        (None, Some(refund)) => {
            let (column, value) = refund_column(refund);
            let owners: Vec<i64> = tx
                .prepare_cached(&format!(
                    "SELECT r.trade_id FROM refunds r JOIN trades t ON t.id = r.trade_id \
                     WHERE t.wallet = ?1 AND r.{column} = ?2 LIMIT 2"
                ))?
                .query_map(params![ctx.wallet.as_str(), value], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            match owners.as_slice() {
                [] => None,
                [trade_id] => Some(settle(tx, ctx.faults, by_id(tx, *trade_id)?, ctx.now_ms)?),
                _ => return Ok(RefundsFound::Ambiguous),
            }
        }
        (None, None) => None,
    };
    let Some(trade) = trade else { return Ok(RefundsFound::NotFound) };
    let found: Vec<Refund> = match refund {
        Some(refund) => {
            let (column, value) = refund_column(refund);
            tx.prepare_cached(&format!(
                "SELECT {REFUND_COLUMNS} FROM refunds WHERE trade_id = ?1 AND {column} = ?2 ORDER BY id"
            ))?
            .query_map(params![trade.id, value], refund_from_row)?
            .collect::<rusqlite::Result<_>>()?
        }
        None => tx
            .prepare_cached(&format!(
                "SELECT {REFUND_COLUMNS} FROM refunds WHERE trade_id = ?1 AND out_request_no IS NOT NULL ORDER BY id"
            ))?
            .query_map([trade.id], refund_from_row)?
            .collect::<rusqlite::Result<_>>()?,
    };
    Ok(if found.is_empty() { RefundsFound::NotFound } else { RefundsFound::Found(Box::new(trade), found) })
}

fn refund_column(key: &RefundKey) -> (&'static str, &str) {
    match key {
        RefundKey::RefundId(value) => ("refund_id", value),
        RefundKey::OutRequestNo(value) => ("out_request_no", value),
    }
}

/// One business day of one wallet: trades paid that day, refunds made that day (with their
/// trade), oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Day {
    pub paid: Vec<Trade>,
    pub refunds: Vec<(Refund, Trade)>,
}

/// The statement's content for `day` (`YYYY-MM-DD`), at most `rows_max` rows of each kind.
pub(crate) fn day(tx: &Transaction<'_>, wallet: Wallet, day: &str, rows_max: usize) -> rusqlite::Result<Day> {
    let limit = i64::try_from(rows_max).unwrap_or(i64::MAX);
    let paid = tx
        .prepare_cached(&format!(
            "SELECT {TRADE_COLUMNS} FROM trades WHERE wallet = ?1 AND paid_day = ?2 \
             AND omit_from_statement = 0 ORDER BY paid_ms, id LIMIT ?3"
        ))?
        .query_map(params![wallet.as_str(), day, limit], trade_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let trade_columns = TRADE_COLUMNS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ");
    let refund_columns = REFUND_COLUMNS.split(", ").map(|c| format!("r.{c}")).collect::<Vec<_>>().join(", ");
    let refunds = tx
        .prepare_cached(&format!(
            "SELECT {trade_columns}, {refund_columns} FROM refunds r JOIN trades t ON t.id = r.trade_id \
             WHERE t.wallet = ?1 AND r.day = ?2 ORDER BY r.created_ms, r.id LIMIT ?3"
        ))?
        .query_map(params![wallet.as_str(), day, limit], |row| {
            let trade = trade_from_row(row)?;
            let offset = 24;
            let refund = Refund {
                out_request_no: row.get(offset)?,
                refund_id: row.get(offset + 1)?,
                amount: cny(row.get(offset + 2)?),
                fee_returned: cny(row.get(offset + 3)?),
                reason: row.get(offset + 4)?,
                created_ms: row.get(offset + 5)?,
            };
            Ok((refund, trade))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Day { paid, refunds })
}

/// A notification to send.
#[derive(Debug, Clone)]
pub(crate) struct Notification {
    pub id: i64,
    pub status: String,
    pub notify_url: String,
    pub notify_id: String,
    pub attempts: u32,
    pub created_ms: i64,
    pub trade: Trade,
}

/// The notifications due at `now_ms`, oldest first, at most `limit`.
pub(crate) fn due_notifications(
    tx: &Transaction<'_>,
    now_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<Notification>> {
    let rows: Vec<(i64, i64, String, String, String, u32, i64)> = tx
        .prepare_cached(
            "SELECT id, trade_id, status, notify_url, notify_id, attempts, created_ms FROM outbox \
             WHERE state = 'pending' AND next_attempt_ms <= ?1 ORDER BY next_attempt_ms, id LIMIT ?2",
        )?
        .query_map(params![now_ms, i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter()
        .map(|(id, trade_id, status, notify_url, notify_id, attempts, created_ms)| {
            Ok(Notification { id, status, notify_url, notify_id, attempts, created_ms, trade: by_id(tx, trade_id)? })
        })
        .collect()
}

/// What became of one notification attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// The receiver acknowledged it.
    Delivered,
    /// Not sent (the `drop_notification` fault).
    Dropped,
    /// Not acknowledged: retry at the given time, or give up when `None`.
    Failed { next_attempt_ms: Option<i64> },
}

/// Records an attempt.
pub(crate) fn record_delivery(tx: &Transaction<'_>, id: i64, delivery: Delivery) -> rusqlite::Result<()> {
    let (state, next): (&str, Option<i64>) = match delivery {
        Delivery::Delivered => ("delivered", None),
        Delivery::Dropped => ("dropped", None),
        Delivery::Failed { next_attempt_ms: Some(next) } => ("pending", Some(next)),
        Delivery::Failed { next_attempt_ms: None } => ("abandoned", None),
    };
    execute(
        tx,
        "UPDATE outbox SET attempts = attempts + 1, state = ?2, next_attempt_ms = COALESCE(?3, next_attempt_ms) \
         WHERE id = ?1",
        params![id, state, next],
    )?;
    Ok(())
}

/// Stores a one-time bill download token for `day`, valid until `expires_ms`; forgets expired
/// ones.
pub(crate) fn add_bill_token(
    tx: &Transaction<'_>,
    wallet: Wallet,
    day: &str,
    now_ms: i64,
    expires_ms: i64,
) -> rusqlite::Result<String> {
    execute(tx, "DELETE FROM bill_tokens WHERE expires_ms <= ?1", [now_ms])?;
    let token = random_token(32);
    execute(
        tx,
        "INSERT INTO bill_tokens (token, wallet, day, expires_ms) VALUES (?1, ?2, ?3, ?4)",
        params![token, wallet.as_str(), day, expires_ms],
    )?;
    Ok(token)
}

/// The wallet and day a bill token (still valid at `now_ms`) is for.
pub(crate) fn bill_token(tx: &Transaction<'_>, token: &str, now_ms: i64) -> rusqlite::Result<Option<(Wallet, String)>> {
    let row: Option<(String, String)> = tx
        .query_row(
            "SELECT wallet, day FROM bill_tokens WHERE token = ?1 AND expires_ms > ?2",
            params![token, now_ms],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(wallet, day)| Some((Wallet::parse(&wallet)?, day))))
}

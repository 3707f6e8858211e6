//! Reconciliation (对账) runs: Kassa's side of a channel's day read in reference order (the
//! merge join's second input, a page at a time), the runs with their counts, and their
//! differences with evidence. Reads through [`ReconStore`] (`store.recon()`), writes through
//! the constructors below for the one write path. Corrections are proposed through
//! [`crate::batch_upload::propose_correction`] (exactly once by their key).
//!
//! Reconciliation compares the channel's amount with Kassa's as corrected: the recorded amount
//! plus the approved correction of it (补登 `amount_mismatch`), if any ([`AmountCorrection`]), the
//! record itself never being edited. A payment read alone carries its correction (joined); the
//! pages of a day do not (an index probe per row costs SQLite about a second of CPU per million
//! rows, a sixth of a whole run): the day's corrections are read apart, in the pages' order
//! ([`ReconStore::trade_amount_corrections`], [`ReconStore::card_corrections`]), driven
//! by the few approved corrections rather than by the day's rows, and merged with them. A card
//! sale the host recorded as failed that an approved correction credited ([`CreditCorrection`],
//! 补登 `issuer_approved_host_failed`) is compared as captured, at the amount credited.
//!
//! **Invariant**: a run's id is taken once (its insert is a guard); a difference is stored once
//! per run and key; reading a day never holds more than one page of it; a payment has at most one
//! approved amount correction (the unique indexes of approved ones), so a join never repeats a
//! row.

use async_trait::async_trait;
use kassa_domain::{Channel, Currency, Money};

use crate::core::queries::SqlReads;
use crate::core::unit::{Guard, Statement, WriteOp};
use crate::core::value::{params, Row, Value};
use crate::qr::{QrOrderState, QrRefundStatus, QrStatus};
use crate::StoreError;

/// Kassa's QR trade as reconciliation compares it (the columns it needs, nothing more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconTradeRecord {
    /// The trade's id.
    pub id: i64,
    /// The merchant.
    pub merchant_id: String,
    /// The merchant's number.
    pub out_trade_no: String,
    /// Kassa's reference at the wallets (the statement's 商户订单号).
    pub reference: String,
    /// The wallet that paid (or the payment code's), when known.
    pub wallet: Option<Channel>,
    /// Where it stands.
    pub status: QrStatus,
    /// The amount as recorded (never edited: see [`ReconTradeRecord::compared_amount`]).
    pub amount: Money,
    /// Refunded so far, minor units.
    pub refunded_minor: i64,
    /// The merchant's fee, minor units.
    pub fee_minor: i64,
    /// The order at the channel read for.
    pub order: QrOrderState,
    /// The paying wallet's trade number.
    pub trade_no: Option<String>,
    /// When it was paid, Unix milliseconds.
    pub paid_at_ms: Option<i64>,
    /// Kassa's business day of its creation.
    pub business_date: String,
    /// The approved correction of its amount, if any (read with a trade alone; the pages of a
    /// day leave it `None`, see [`ReconStore::trade_amount_corrections`]).
    pub amount_correction: Option<AmountCorrection>,
}

impl ReconTradeRecord {
    /// What Kassa has it paid for: its recorded amount, or that amount as corrected.
    pub fn compared_amount(&self) -> Money {
        self.amount_correction.as_ref().map_or(self.amount, |correction| correction.corrected)
    }
}

/// The approved correction (补登) of a payment's amount: the channel took another amount than
/// Kassa recorded, and a second person approved moving the merchant by the difference. The
/// payment's record keeps the recorded amount; this is what it comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmountCorrection {
    /// The correction's id (its entry is `correction:<id>`).
    pub id: i64,
    /// The signed difference it posted (the channel's amount less the recorded one).
    pub delta: Money,
    /// The recorded amount plus `delta`.
    pub corrected: Money,
}

/// Kassa's QR refund as reconciliation compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconRefundRecord {
    /// The refund's id.
    pub id: i64,
    /// Kassa's refund number at the wallet (the statement's refund request number).
    pub refund_reference: String,
    /// Its trade's reference at the wallet.
    pub trade_reference: String,
    /// The merchant.
    pub merchant_id: String,
    /// The trade's number at the merchant.
    pub out_trade_no: String,
    /// The trade's wallet.
    pub wallet: Option<Channel>,
    /// The refund's amount.
    pub amount: Money,
    /// Where it stands.
    pub status: QrRefundStatus,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
}

/// Kassa's card transaction that went to the card issuer (a sale, a pre-authorisation, an
/// uploaded offline sale), as reconciliation compares it with the issuer's clearing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconCardRecord {
    /// The transaction's id (the issuer's request id is `txn:<id>`).
    pub id: i64,
    /// What it is.
    pub kind: kassa_domain::TxnKind,
    /// Where it stands.
    pub status: kassa_domain::TxnStatus,
    /// The merchant.
    pub merchant_id: String,
    /// The terminal.
    pub terminal_id: Option<String>,
    /// Its RRN, once it has one.
    pub rrn: Option<String>,
    /// Its amount as recorded (never edited: see [`ReconCardRecord::compared_amount`]).
    pub amount: Money,
    /// Kassa's business day.
    pub business_date: String,
    /// When it was received, Unix milliseconds.
    pub created_at_ms: i64,
    /// The approved correction of its amount, if any (read with a transaction alone; the pages
    /// of a day leave it `None`, see [`ReconStore::card_corrections`]).
    pub amount_correction: Option<AmountCorrection>,
    /// The approved correction that credited it although the host recorded it as failed
    /// (补登 `issuer_approved_host_failed`), if any; read as `amount_correction` is.
    pub credit_correction: Option<CreditCorrection>,
}

impl ReconCardRecord {
    /// What Kassa has it captured for: its recorded amount (or the amount a correction credited
    /// it for), or that amount as corrected.
    pub fn compared_amount(&self) -> Money {
        match (self.amount_correction, self.credit_correction) {
            (Some(correction), _) => correction.corrected,
            (None, Some(credit)) => credit.amount,
            (None, None) => self.amount,
        }
    }

    /// Gives it its approved corrections.
    pub fn correct(&mut self, corrections: CardCorrections) {
        self.amount_correction = corrections.amount;
        self.credit_correction = corrections.credit;
    }
}

/// The approved correction (补登) that credited a card sale the host recorded as failed: the
/// record keeps its status; this says the merchant was credited, and for how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditCorrection {
    /// The correction's id (its entry is `correction:<id>`).
    pub id: i64,
    /// What it credited (the issuer's amount).
    pub amount: Money,
}

/// The approved corrections of one card transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CardCorrections {
    /// Of its amount, on top of what was captured or credited.
    pub amount: Option<AmountCorrection>,
    /// That credited it.
    pub credit: Option<CreditCorrection>,
}

/// Where a run's statement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconSource {
    /// Downloaded through the channel's connector.
    Download,
    /// Read from a file.
    File,
}

impl ReconSource {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconSource::Download => "download",
            ReconSource::File => "file",
        }
    }

    fn parse(text: &str) -> Option<ReconSource> {
        match text {
            "download" => Some(ReconSource::Download),
            "file" => Some(ReconSource::File),
            _ => None,
        }
    }
}

/// What a difference is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DifferenceClass {
    /// Both sides have it as paid (or refunded), for different amounts.
    AmountMismatch,
    /// Paid at the channel, but not credited here (支付遗漏): Kassa has it unpaid, or not at all.
    PaidNotCredited,
    /// Paid (or refunded) here, absent from the channel's statement.
    MissingAtChannel,
    /// Both sides know it but disagree on where it stands, even after asking the channel.
    StatusMismatch,
}

impl DifferenceClass {
    /// Every class.
    pub const ALL: [DifferenceClass; 4] = [
        DifferenceClass::AmountMismatch,
        DifferenceClass::PaidNotCredited,
        DifferenceClass::MissingAtChannel,
        DifferenceClass::StatusMismatch,
    ];

    /// The stored (and reported) name.
    pub fn as_str(self) -> &'static str {
        match self {
            DifferenceClass::AmountMismatch => "amount_mismatch",
            DifferenceClass::PaidNotCredited => "paid_not_credited",
            DifferenceClass::MissingAtChannel => "missing_at_channel",
            DifferenceClass::StatusMismatch => "status_mismatch",
        }
    }

    /// The class of a stored name.
    pub fn parse(text: &str) -> Option<DifferenceClass> {
        DifferenceClass::ALL.into_iter().find(|class| class.as_str() == text)
    }
}

/// A run's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconCounts {
    /// Statement lines read (trades and refunds).
    pub lines: i64,
    /// Pairs that agree.
    pub matched: i64,
    /// Differences by class.
    pub amount_mismatch: i64,
    /// Paid at the channel, not credited here.
    pub paid_not_credited: i64,
    /// Here, not at the channel.
    pub missing_at_channel: i64,
    /// Known to both, in different states.
    pub status_mismatch: i64,
    /// Corrections this run proposed (not those an earlier run proposed already).
    pub corrections_proposed: i64,
}

impl ReconCounts {
    /// Counts one more difference of `class`.
    pub fn count(&mut self, class: DifferenceClass) {
        let slot = match class {
            DifferenceClass::AmountMismatch => &mut self.amount_mismatch,
            DifferenceClass::PaidNotCredited => &mut self.paid_not_credited,
            DifferenceClass::MissingAtChannel => &mut self.missing_at_channel,
            DifferenceClass::StatusMismatch => &mut self.status_mismatch,
        };
        *slot += 1;
    }
}

/// A run as it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReconRun {
    /// Its id (see [`ReconStore::next_run_id`]).
    pub id: i64,
    /// The channel reconciled.
    pub channel: Channel,
    /// The business day, `YYYY-MM-DD`.
    pub business_date: String,
    /// Where the statement came from.
    pub source: ReconSource,
    /// `cli`, `schedule`, or `user:<name>`.
    pub started_by: String,
    /// When it started, Unix milliseconds.
    pub started_at_ms: i64,
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconRunRecord {
    /// How it started.
    pub run: NewReconRun,
    /// Whether it finished (a run that stopped half-way stays `false`, its counts zero).
    pub finished: bool,
    /// Its counts.
    pub counts: ReconCounts,
    /// When it finished, Unix milliseconds.
    pub finished_at_ms: Option<i64>,
}

/// A difference found by a run, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconDifferenceRecord {
    /// The run.
    pub run_id: i64,
    /// Unique per run: `channel:date:kind:reference[:refund reference]`.
    pub difference_key: String,
    /// What differs.
    pub class: DifferenceClass,
    /// `trade` or `refund`.
    pub kind: String,
    /// Kassa's reference of the trade at the channel.
    pub reference: String,
    /// The refund's reference, for a refund.
    pub refund_reference: Option<String>,
    /// The merchant, when Kassa knows the trade.
    pub merchant_id: Option<String>,
    /// The merchant's number, when Kassa knows the trade.
    pub out_trade_no: Option<String>,
    /// The amount as the channel has it, minor units.
    pub channel_amount_minor: Option<i64>,
    /// The amount as Kassa has it, minor units.
    pub kassa_amount_minor: Option<i64>,
    /// ISO 4217 code.
    pub currency: String,
    /// Why it is a difference, in words.
    pub reason: String,
    /// The statement's line number.
    pub statement_line_no: Option<i64>,
    /// The statement's record.
    pub statement_line: Option<String>,
    /// Kassa's record as read (JSON).
    pub kassa_record: Option<serde_json::Value>,
    /// The correction proposed for it.
    pub correction_key: Option<String>,
}

/// Reads of reconciliation.
#[async_trait]
pub trait ReconStore: Send + Sync {
    /// The id the next run takes (one above the highest; the insert's guard settles a race).
    async fn next_run_id(&self) -> Result<i64, StoreError>;
    /// A run.
    async fn run(&self, id: i64) -> Result<Option<ReconRunRecord>, StoreError>;
    /// The newest finished run of a channel's day, if any.
    async fn finished_run_of_day(
        &self,
        channel: Channel,
        business_date: &str,
    ) -> Result<Option<ReconRunRecord>, StoreError>;
    /// Runs, newest first, with ids below `before_id`, at most `limit`.
    async fn runs(&self, before_id: i64, limit: i64) -> Result<Vec<ReconRunRecord>, StoreError>;
    /// A run's differences by key, after `after_key`, at most `limit`.
    async fn differences(
        &self,
        run_id: i64,
        after_key: &str,
        limit: i64,
    ) -> Result<Vec<ReconDifferenceRecord>, StoreError>;
    /// Kassa's trades of `business_date` that `channel` may hold (its own and those no wallet
    /// paid yet), by reference, after `after_reference`, at most `limit`; without their amount
    /// corrections ([`ReconStore::trade_amount_corrections`]).
    async fn trades_of_day(
        &self,
        channel: Channel,
        business_date: &str,
        after_reference: &str,
        limit: i64,
    ) -> Result<Vec<ReconTradeRecord>, StoreError>;
    /// Kassa's trades of `business_date` that `channel` paid in `[from_ms, to_ms)`, by
    /// reference, after `after_reference`, at most `limit` (the trades Kassa dates the next
    /// business day that a wallet's calendar day still holds); without their amount corrections.
    async fn trades_paid_between(
        &self,
        channel: Channel,
        business_date: &str,
        from_ms: i64,
        to_ms: i64,
        after_reference: &str,
        limit: i64,
    ) -> Result<Vec<ReconTradeRecord>, StoreError>;
    /// Kassa's card transactions of `business_date` that went to the issuer, by id, after
    /// `after_id`, at most `limit`; without their amount corrections
    /// ([`ReconStore::card_corrections`]).
    async fn card_txns_of_day(
        &self,
        business_date: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<ReconCardRecord>, StoreError>;
    /// Kassa's card transactions of `business_date` that went to the issuer and were received
    /// in `[from_ms, to_ms)`, by id, after `after_id`, at most `limit` (those Kassa dates the next
    /// business day that the issuer's calendar day still holds); without their amount corrections.
    async fn card_txns_received_between(
        &self,
        business_date: &str,
        from_ms: i64,
        to_ms: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<ReconCardRecord>, StoreError>;
    /// A card transaction that went to the issuer, by id, of any day, with its amount correction.
    async fn card_txn(&self, id: i64) -> Result<Option<ReconCardRecord>, StoreError>;
    /// The approved corrections of the amounts of `channel`'s trades of two business days
    /// (`business_date` and `next_business_date`, as the day's pages read them), each with its
    /// trade's reference, by that reference, after `after_reference`, at most `limit`: what the
    /// pages leave out, read in their order to be merged with them. Driven by the channel's
    /// approved amount corrections (a few), not by the days' trades.
    async fn trade_amount_corrections(
        &self,
        channel: Channel,
        business_date: &str,
        next_business_date: &str,
        after_reference: &str,
        limit: i64,
    ) -> Result<Vec<(String, AmountCorrection)>, StoreError>;
    /// The approved corrections (of amounts, and credits of sales the host recorded as failed)
    /// of the card transactions of two business days, each with its transaction's id, by that
    /// id, after `after_id`, at most `limit`: what [`ReconStore::card_txns_of_day`] leaves out,
    /// in its order.
    async fn card_corrections(
        &self,
        business_date: &str,
        next_business_date: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<(i64, CardCorrections)>, StoreError>;
    /// A trade by its reference, of any day, with its amount correction.
    async fn trade_by_reference(
        &self,
        channel: Channel,
        reference: &str,
    ) -> Result<Option<ReconTradeRecord>, StoreError>;
    /// Refunds of `channel`'s trades created in `[from_ms, to_ms)`, by refund reference, after
    /// `after_reference`, at most `limit`.
    async fn refunds_created_between(
        &self,
        channel: Channel,
        from_ms: i64,
        to_ms: i64,
        after_reference: &str,
        limit: i64,
    ) -> Result<Vec<ReconRefundRecord>, StoreError>;
    /// A refund by its reference at the wallet.
    async fn refund_by_reference(&self, refund_reference: &str) -> Result<Option<ReconRefundRecord>, StoreError>;
    /// Whether a correction with this key was proposed already.
    async fn correction_exists(&self, correction_key: &str) -> Result<bool, StoreError>;
}

fn corrupt(what: &str, text: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: {text:?}"))
}

/// A text column read in place (an enum's or a currency's name is parsed, never copied: a day
/// is read a row at a time by the million); `None` for NULL.
fn text_ref(row: &Row, index: usize) -> Result<Option<&str>, StoreError> {
    match row.0.get(index) {
        Some(Value::Text(text)) => Ok(Some(text)),
        Some(Value::Null) => Ok(None),
        Some(_) => Err(StoreError::Corrupt(format!("column {index}: expected text"))),
        None => Err(StoreError::Corrupt(format!("missing column {index}"))),
    }
}

fn parsed<T>(row: &Row, index: usize, what: &str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
    let text = text_ref(row, index)?.ok_or_else(|| corrupt(what, "NULL"))?;
    parse(text).ok_or_else(|| corrupt(what, text))
}

fn money(row: &Row, minor: usize, currency: usize) -> Result<Money, StoreError> {
    let currency = parsed(row, currency, "currency", |code| Currency::from_code(code).ok())?;
    Ok(Money::from_minor(row.int(minor)?, currency))
}

fn channel_of(text: String) -> Result<Channel, StoreError> {
    Channel::parse(&text).ok_or_else(|| corrupt("channel", &text))
}

fn opt_channel(row: &Row, index: usize) -> Result<Option<Channel>, StoreError> {
    text_ref(row, index)?.map(|text| Channel::parse(text).ok_or_else(|| corrupt("channel", text))).transpose()
}

/// A trade's columns.
const TRADE_COLUMNS: &str = "t.id, t.merchant_id, t.out_trade_no, t.reference, t.wallet, t.status, t.amount_minor, \
                             t.currency, t.refunded_minor, t.fee_minor, t.alipay_order, t.wechat_order, t.trade_no, \
                             t.paid_at_ms, t.business_date";

/// The columns of an approved amount correction read with its payment (NULL without one).
const CORRECTION_COLUMNS: &str = "c.id, c.amount_minor, c.currency";

/// An approved correction of an amount (`c`), as its unique partial indexes hold it.
const APPROVED_AMOUNT: &str = "c.status = 'approved' AND c.kind = 'amount_mismatch'";

/// A trade (`t`) with the approved correction of its amount (`c`), by the payment's identity as
/// corrections name it (merchant, channel, `out_trade_no`): a probe of
/// `corrections_one_amount_approved`. The channel is `$1`, so the statement's other placeholders
/// follow from `$2` (SQLite numbers them by first appearance).
const TRADE_CORRECTED: &str = "qr_trades t LEFT JOIN corrections c ON c.merchant_id = t.merchant_id \
     AND c.channel = $1 AND c.reference = t.out_trade_no AND c.status = 'approved' AND c.kind = 'amount_mismatch' \
     AND c.channel IS NOT NULL AND c.reference IS NOT NULL";

/// The approved correction of the amount of a payment, in the columns from `first` (its id,
/// signed amount and currency; all NULL without one, none when the read did not join it).
fn amount_correction(row: &Row, first: usize, recorded: Money) -> Result<Option<AmountCorrection>, StoreError> {
    let Some((id, delta)) = correction_columns(row, first, recorded, "amount correction")? else { return Ok(None) };
    let corrected = recorded.checked_add(delta).map_err(|_| corrupt("amount correction", &id.to_string()))?;
    Ok(Some(AmountCorrection { id, delta, corrected }))
}

fn trade(row: &Row, channel: Channel) -> Result<ReconTradeRecord, StoreError> {
    let order_column = if channel == Channel::Wechat { 11 } else { 10 };
    let amount = money(row, 6, 7)?;
    Ok(ReconTradeRecord {
        id: row.int(0)?,
        merchant_id: row.text(1)?,
        out_trade_no: row.text(2)?,
        reference: row.text(3)?,
        wallet: opt_channel(row, 4)?,
        status: parsed(row, 5, "qr status", QrStatus::parse)?,
        amount,
        refunded_minor: row.int(8)?,
        fee_minor: row.int(9)?,
        order: parsed(row, order_column, "qr order", QrOrderState::parse)?,
        trade_no: row.opt_text(12)?,
        paid_at_ms: row.opt_int(13)?,
        business_date: row.text(14)?,
        amount_correction: amount_correction(row, 15, amount)?,
    })
}

/// The row reader of a channel's trades (its own order column).
fn trade_reader(channel: Channel) -> fn(&Row) -> Result<ReconTradeRecord, StoreError> {
    if channel == Channel::Wechat {
        |row| trade(row, Channel::Wechat)
    } else {
        |row| trade(row, Channel::Alipay)
    }
}

/// A card transaction's columns.
const CARD_COLUMNS: &str = "t.id, t.kind, t.status, t.merchant_id, t.terminal_id, t.rrn, t.amount_minor, t.currency, \
                            t.business_date, t.created_at_ms";

/// A card transaction (`t`) with the approved correction of its amount (`c`, a probe of
/// `corrections_one_amount_approved_per_txn`) and the approved correction that credited it
/// (`k`, a probe of `corrections_one_approved_per_txn`), by the transaction's id.
const CARD_CORRECTED: &str = "transactions t LEFT JOIN corrections c ON c.txn_id = t.id \
     AND c.status = 'approved' AND c.kind = 'amount_mismatch' AND c.txn_id IS NOT NULL \
     LEFT JOIN corrections k ON k.txn_id = t.id \
     AND k.status = 'approved' AND k.kind <> 'amount_mismatch' AND k.txn_id IS NOT NULL";

/// The credit's columns of [`CARD_CORRECTED`]: its id, amount (the transaction's when an older
/// approval did not write it) and currency.
const CREDIT_COLUMNS: &str = "k.id, COALESCE(k.amount_minor, t.amount_minor), k.currency";

/// The approved correction that credited a card transaction, in the columns from `first`
/// (none when the read did not join it).
fn credit_correction(row: &Row, first: usize, recorded: Money) -> Result<Option<CreditCorrection>, StoreError> {
    let credit = correction_columns(row, first, recorded, "credit correction")?;
    Ok(credit.map(|(id, amount)| CreditCorrection { id, amount }))
}

/// A correction's id and amount from its three columns at `first` (id, minor units, currency),
/// the amount in the payment's currency: `None` when the row has no such correction (NULLs) or
/// the read did not join it (no columns).
fn correction_columns(
    row: &Row,
    first: usize,
    recorded: Money,
    what: &str,
) -> Result<Option<(i64, Money)>, StoreError> {
    if row.0.len() <= first {
        return Ok(None);
    }
    let Some(id) = row.opt_int(first)? else { return Ok(None) };
    let currency = parsed(row, first + 2, "currency", |code| Currency::from_code(code).ok())?;
    if currency != recorded.currency() {
        return Err(corrupt(&format!("{what}'s currency"), currency.code()));
    }
    Ok(Some((id, Money::from_minor(row.int(first + 1)?, currency))))
}

/// A card transaction's approved corrections, in the columns from `first`: the amount's (as
/// [`CORRECTION_COLUMNS`]), then the credit's ([`CREDIT_COLUMNS`]). An amount correction moves
/// what was captured, or what a correction credited.
fn card_corrections_at(row: &Row, first: usize, recorded: Money) -> Result<CardCorrections, StoreError> {
    let credit = credit_correction(row, first + 3, recorded)?;
    let base = credit.map_or(recorded, |credit| credit.amount);
    Ok(CardCorrections { amount: amount_correction(row, first, base)?, credit })
}

/// A payment's key (its reference, or its id) and the approved correction of its amount, from a
/// row of the payment's key, amount and currency, then the correction's columns.
fn keyed_correction<K>(row: &Row, key: fn(&Row) -> Result<K, StoreError>) -> Result<(K, AmountCorrection), StoreError> {
    let recorded = money(row, 1, 2)?;
    let correction =
        amount_correction(row, 3, recorded)?.ok_or_else(|| StoreError::Corrupt("amount correction: NULL".into()))?;
    Ok((key(row)?, correction))
}

/// The card transactions whose requests go to the issuer (`txn:<id>`).
const CARD_ISSUER_KINDS: &str = "t.channel = 'card' AND t.kind IN ('sale', 'pre_auth', 'offline_sale')";

fn domain_enum<T: serde::de::DeserializeOwned>(what: &str, text: String) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.clone())).map_err(|_| corrupt(what, &text))
}

fn card(row: &Row) -> Result<ReconCardRecord, StoreError> {
    let amount = money(row, 6, 7)?;
    let mut txn = ReconCardRecord {
        id: row.int(0)?,
        kind: domain_enum("txn kind", row.text(1)?)?,
        status: domain_enum("txn status", row.text(2)?)?,
        merchant_id: row.text(3)?,
        terminal_id: row.opt_text(4)?,
        rrn: row.opt_text(5)?,
        amount,
        business_date: row.text(8)?,
        created_at_ms: row.int(9)?,
        amount_correction: None,
        credit_correction: None,
    };
    txn.correct(card_corrections_at(row, 10, amount)?);
    Ok(txn)
}

const REFUND_COLUMNS: &str = "r.id, r.refund_reference, t.reference, t.merchant_id, t.out_trade_no, t.wallet, \
                              r.amount_minor, r.currency, r.status, r.created_at_ms";

fn refund(row: &Row) -> Result<ReconRefundRecord, StoreError> {
    Ok(ReconRefundRecord {
        id: row.int(0)?,
        refund_reference: row.text(1)?,
        trade_reference: row.text(2)?,
        merchant_id: row.text(3)?,
        out_trade_no: row.text(4)?,
        wallet: opt_channel(row, 5)?,
        amount: money(row, 6, 7)?,
        status: parsed(row, 8, "qr refund status", QrRefundStatus::parse)?,
        created_at_ms: row.int(9)?,
    })
}

const RUN_COLUMNS: &str = "id, channel, business_date, source, status, lines, matched, amount_mismatch, \
                           paid_not_credited, missing_at_channel, status_mismatch, corrections_proposed, started_by, \
                           started_at_ms, finished_at_ms";

fn run(row: &Row) -> Result<ReconRunRecord, StoreError> {
    let source = row.text(3)?;
    Ok(ReconRunRecord {
        run: NewReconRun {
            id: row.int(0)?,
            channel: channel_of(row.text(1)?)?,
            business_date: row.text(2)?,
            source: ReconSource::parse(&source).ok_or_else(|| corrupt("recon source", &source))?,
            started_by: row.text(12)?,
            started_at_ms: row.int(13)?,
        },
        finished: row.text(4)? == "finished",
        counts: ReconCounts {
            lines: row.int(5)?,
            matched: row.int(6)?,
            amount_mismatch: row.int(7)?,
            paid_not_credited: row.int(8)?,
            missing_at_channel: row.int(9)?,
            status_mismatch: row.int(10)?,
            corrections_proposed: row.int(11)?,
        },
        finished_at_ms: row.opt_int(14)?,
    })
}

const DIFFERENCE_COLUMNS: &str = "run_id, difference_key, class, kind, reference, refund_reference, merchant_id, \
                                  out_trade_no, channel_amount_minor, kassa_amount_minor, currency, reason, \
                                  statement_line_no, statement_line, kassa_record, correction_key";

fn difference(row: &Row) -> Result<ReconDifferenceRecord, StoreError> {
    let class = row.text(2)?;
    let kassa_record = row
        .opt_text(14)?
        .map(|text| serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("kassa_record: {e}"))))
        .transpose()?;
    Ok(ReconDifferenceRecord {
        run_id: row.int(0)?,
        difference_key: row.text(1)?,
        class: DifferenceClass::parse(&class).ok_or_else(|| corrupt("difference class", &class))?,
        kind: row.text(3)?,
        reference: row.text(4)?,
        refund_reference: row.opt_text(5)?,
        merchant_id: row.opt_text(6)?,
        out_trade_no: row.opt_text(7)?,
        channel_amount_minor: row.opt_int(8)?,
        kassa_amount_minor: row.opt_int(9)?,
        currency: row.text(10)?,
        reason: row.text(11)?,
        statement_line_no: row.opt_int(12)?,
        statement_line: row.opt_text(13)?,
        kassa_record,
        correction_key: row.opt_text(15)?,
    })
}

#[async_trait]
impl ReconStore for SqlReads {
    async fn next_run_id(&self) -> Result<i64, StoreError> {
        let id = self.one("SELECT COALESCE(MAX(id), 0) + 1 FROM recon_runs", &[], |row| row.int(0)).await?;
        Ok(id.unwrap_or(1))
    }

    async fn run(&self, id: i64) -> Result<Option<ReconRunRecord>, StoreError> {
        self.one(&format!("SELECT {RUN_COLUMNS} FROM recon_runs WHERE id = $1"), &params![id], run).await
    }

    async fn finished_run_of_day(
        &self,
        channel: Channel,
        business_date: &str,
    ) -> Result<Option<ReconRunRecord>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM recon_runs WHERE channel = $1 AND business_date = $2 AND status = 'finished' \
             ORDER BY id DESC LIMIT 1"
        );
        self.one(&sql, &params![channel.as_str(), business_date], run).await
    }

    async fn runs(&self, before_id: i64, limit: i64) -> Result<Vec<ReconRunRecord>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM recon_runs WHERE id < $1 ORDER BY id DESC LIMIT $2");
        self.all(&sql, &params![before_id, limit], run).await
    }

    async fn differences(
        &self,
        run_id: i64,
        after_key: &str,
        limit: i64,
    ) -> Result<Vec<ReconDifferenceRecord>, StoreError> {
        let sql = format!(
            "SELECT {DIFFERENCE_COLUMNS} FROM recon_differences WHERE run_id = $1 AND difference_key > $2 \
             ORDER BY difference_key LIMIT $3"
        );
        self.all(&sql, &params![run_id, after_key, limit], difference).await
    }

    async fn trades_of_day(
        &self,
        channel: Channel,
        business_date: &str,
        after_reference: &str,
        limit: i64,
    ) -> Result<Vec<ReconTradeRecord>, StoreError> {
        let sql = format!(
            "SELECT {TRADE_COLUMNS} FROM qr_trades t WHERE t.business_date = $1 AND t.reference > $2 \
             AND (t.wallet = $3 OR t.wallet IS NULL) ORDER BY t.reference LIMIT $4"
        );
        self.all(&sql, &params![business_date, after_reference, channel.as_str(), limit], trade_reader(channel)).await
    }

    async fn trades_paid_between(
        &self,
        channel: Channel,
        business_date: &str,
        from_ms: i64,
        to_ms: i64,
        after_reference: &str,
        limit: i64,
    ) -> Result<Vec<ReconTradeRecord>, StoreError> {
        let sql = format!(
            "SELECT {TRADE_COLUMNS} FROM qr_trades t WHERE t.business_date = $1 AND t.reference > $2 \
             AND t.wallet = $3 AND t.paid_at_ms >= $4 AND t.paid_at_ms < $5 ORDER BY t.reference LIMIT $6"
        );
        let params = params![business_date, after_reference, channel.as_str(), from_ms, to_ms, limit];
        self.all(&sql, &params, trade_reader(channel)).await
    }

    async fn card_txns_of_day(
        &self,
        business_date: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<ReconCardRecord>, StoreError> {
        let sql = format!(
            "SELECT {CARD_COLUMNS} FROM transactions t WHERE {CARD_ISSUER_KINDS} \
             AND t.business_date = $1 AND t.id > $2 ORDER BY t.id LIMIT $3"
        );
        self.all(&sql, &params![business_date, after_id, limit], card).await
    }

    async fn card_txns_received_between(
        &self,
        business_date: &str,
        from_ms: i64,
        to_ms: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<ReconCardRecord>, StoreError> {
        let sql = format!(
            "SELECT {CARD_COLUMNS} FROM transactions t WHERE {CARD_ISSUER_KINDS} \
             AND t.business_date = $1 AND t.id > $2 AND t.created_at_ms >= $3 AND t.created_at_ms < $4 \
             ORDER BY t.id LIMIT $5"
        );
        self.all(&sql, &params![business_date, after_id, from_ms, to_ms, limit], card).await
    }

    async fn card_txn(&self, id: i64) -> Result<Option<ReconCardRecord>, StoreError> {
        let sql = format!(
            "SELECT {CARD_COLUMNS}, {CORRECTION_COLUMNS}, {CREDIT_COLUMNS} FROM {CARD_CORRECTED} \
             WHERE {CARD_ISSUER_KINDS} AND t.id = $1"
        );
        self.one(&sql, &params![id], card).await
    }

    async fn trade_amount_corrections(
        &self,
        channel: Channel,
        business_date: &str,
        next_business_date: &str,
        after_reference: &str,
        limit: i64,
    ) -> Result<Vec<(String, AmountCorrection)>, StoreError> {
        // CROSS JOIN: SQLite joins in the order written, so the approved corrections (a few, from
        // their partial index) drive and each probes its trade by (merchant, out_trade_no).
        let sql = format!(
            "SELECT t.reference, t.amount_minor, t.currency, {CORRECTION_COLUMNS} FROM corrections c \
             CROSS JOIN qr_trades t WHERE {APPROVED_AMOUNT} AND c.channel = $1 AND c.channel IS NOT NULL \
             AND c.reference IS NOT NULL AND t.merchant_id = c.merchant_id AND t.out_trade_no = c.reference \
             AND t.business_date IN ($2, $3) AND t.reference > $4 ORDER BY t.reference LIMIT $5"
        );
        let params = params![channel.as_str(), business_date, next_business_date, after_reference, limit];
        self.all(&sql, &params, |row| keyed_correction(row, |row| row.text(0))).await
    }

    async fn card_corrections(
        &self,
        business_date: &str,
        next_business_date: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<(i64, CardCorrections)>, StoreError> {
        // The approved corrections naming a transaction (a few) drive; a transaction with both
        // an amount's and a credit's is read once, at the credit's.
        let sql = format!(
            "SELECT t.id, t.amount_minor, t.currency, {CORRECTION_COLUMNS}, {CREDIT_COLUMNS} FROM corrections d \
             CROSS JOIN {CARD_CORRECTED} WHERE d.status = 'approved' AND d.txn_id IS NOT NULL AND t.id = d.txn_id \
             AND d.id = COALESCE(k.id, c.id) AND {CARD_ISSUER_KINDS} AND t.business_date IN ($1, $2) AND t.id > $3 \
             ORDER BY t.id LIMIT $4"
        );
        let params = params![business_date, next_business_date, after_id, limit];
        self.all(&sql, &params, |row| Ok((row.int(0)?, card_corrections_at(row, 3, money(row, 1, 2)?)?))).await
    }

    async fn trade_by_reference(
        &self,
        channel: Channel,
        reference: &str,
    ) -> Result<Option<ReconTradeRecord>, StoreError> {
        let sql = format!("SELECT {TRADE_COLUMNS}, {CORRECTION_COLUMNS} FROM {TRADE_CORRECTED} WHERE t.reference = $2");
        self.one(&sql, &params![channel.as_str(), reference], trade_reader(channel)).await
    }

    async fn refunds_created_between(
        &self,
        channel: Channel,
        from_ms: i64,
        to_ms: i64,
        after_reference: &str,
        limit: i64,
    ) -> Result<Vec<ReconRefundRecord>, StoreError> {
        let sql = format!(
            "SELECT {REFUND_COLUMNS} FROM qr_refunds r JOIN qr_trades t ON t.id = r.trade_id \
             WHERE r.created_at_ms >= $1 AND r.created_at_ms < $2 AND t.wallet = $3 AND r.refund_reference > $4 \
             ORDER BY r.refund_reference LIMIT $5"
        );
        self.all(&sql, &params![from_ms, to_ms, channel.as_str(), after_reference, limit], refund).await
    }

    async fn refund_by_reference(&self, refund_reference: &str) -> Result<Option<ReconRefundRecord>, StoreError> {
        let sql = format!(
            "SELECT {REFUND_COLUMNS} FROM qr_refunds r JOIN qr_trades t ON t.id = r.trade_id \
             WHERE r.refund_reference = $1"
        );
        self.one(&sql, &params![refund_reference], refund).await
    }

    async fn correction_exists(&self, correction_key: &str) -> Result<bool, StoreError> {
        let found = self
            .one("SELECT 1 FROM corrections WHERE correction_key = $1", &params![correction_key], |row| row.int(0))
            .await?;
        Ok(found.is_some())
    }
}

/// The guard that starts a run unless its id is taken (a concurrent run took it: take the
/// next id and try again).
pub fn insert_run(run: &NewReconRun) -> Guard {
    Guard::Statement(Statement {
        sql: "INSERT INTO recon_runs (id, channel, business_date, source, started_by, started_at_ms) \
              VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        params: params![
            run.id,
            run.channel.as_str(),
            run.business_date.as_str(),
            run.source.as_str(),
            run.started_by.as_str(),
            run.started_at_ms
        ]
        .to_vec(),
    })
}

/// Finishes a run with its counts.
pub fn finish_run(run_id: i64, counts: &ReconCounts, finished_at_ms: i64) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            sql: "UPDATE recon_runs SET status = 'finished', lines = $1, matched = $2, amount_mismatch = $3, \
                  paid_not_credited = $4, missing_at_channel = $5, status_mismatch = $6, corrections_proposed = $7, \
                  finished_at_ms = $8 WHERE id = $9 AND status = 'running'",
            params: params![
                counts.lines,
                counts.matched,
                counts.amount_mismatch,
                counts.paid_not_credited,
                counts.missing_at_channel,
                counts.status_mismatch,
                counts.corrections_proposed,
                finished_at_ms,
                run_id
            ]
            .to_vec(),
        },
        may_change_nothing: false,
    }
}

/// Stores a difference of a run (once per run and key).
pub fn insert_difference(difference: &ReconDifferenceRecord) -> WriteOp {
    WriteOp::Statement {
        statement: Statement {
            sql:
                "INSERT INTO recon_differences (run_id, difference_key, class, kind, reference, refund_reference, \
                  merchant_id, out_trade_no, channel_amount_minor, kassa_amount_minor, currency, reason, \
                  statement_line_no, statement_line, kassa_record, correction_key) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT DO NOTHING",
            params: params![
                difference.run_id,
                difference.difference_key.as_str(),
                difference.class.as_str(),
                difference.kind.as_str(),
                difference.reference.as_str(),
                difference.refund_reference.clone(),
                difference.merchant_id.clone(),
                difference.out_trade_no.clone(),
                difference.channel_amount_minor,
                difference.kassa_amount_minor,
                difference.currency.as_str(),
                difference.reason.as_str(),
                difference.statement_line_no,
                difference.statement_line.clone(),
                difference.kassa_record.as_ref().map(|value| value.to_string()),
                difference.correction_key.clone()
            ]
            .to_vec(),
        },
        may_change_nothing: true,
    }
}

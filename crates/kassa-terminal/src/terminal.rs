//! The terminal core: one method per action of the POS, each returning an [`Outcome`]. The
//! headless driver and the screen UI are thin views over it.
//!
//! Every card request follows one path (`Terminal::send_financial`): the STAN is taken and
//! the row written (with the reversal or retransmission it would owe) before the request leaves;
//! whatever the journal owes the host goes first; an answer updates the row; no answer leaves the
//! reversal queued. Operators and QR payments go through TMS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kassa_crypto::TdesKey;
use kassa_iso8583::UNIONPAY;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::codes::Lang;
use crate::journal::{Entry, Journal, JournalError, Kind, NewEntry, Outcome as Answered, State};
use crate::journal_key::{JournalKey, JournalKeyError};
use crate::link::{
    icc_data, mask_pan, Answer, BatchItem, Card, CardData, ClientError, IccRead, Link, Message, Original,
    SettlementTotals, TerminalIdentity, Totals, CRYPTOGRAM_ARQC, CRYPTOGRAM_TC,
};
use crate::outcome::{JournalItem, Outcome, Refusal, Status};
use crate::receipt::{Printer, Receipt, SettlementSlip, SlipError, SlipHeader};
use crate::tms::{TmsAnswer, TmsClient, TmsError};

/// How long the terminal waits for an ISO 8583 answer (the host's issuer timeout is 10 s).
pub const EXCHANGE_TIMEOUT_MS: u64 = 60_000;
/// How often a QR trade still waiting is asked about.
pub const QR_POLL_MS: u64 = 1_000;
/// How long a customer-code collection is followed before it is cancelled (the host's own wait
/// is 30 s).
pub const QR_COLLECT_FOLLOW_MS: u64 = 45_000;
/// How long after its validity a merchant QR is still followed (the host closes it then).
pub const QR_SHOW_GRACE_MS: u64 = 30_000;
/// The longest a merchant QR is followed, whatever its validity says (120 minutes, the longest
/// validity, and the grace).
pub const QR_SHOW_FOLLOW_MS_MAX: u64 = 120 * 60_000 + QR_SHOW_GRACE_MS;
/// How long a cancelled trade is followed until the wallets confirm it closed (the host may show
/// it `waiting` until then).
pub const QR_CANCEL_FOLLOW_MS: u64 = 10_000;
/// QR trades of the journal whose outcome is unknown, asked about at one operator sign-in at most
/// (the oldest first; the next sign-in asks about the rest).
pub const QR_RESOLVED_AT_LOGIN_MAX: usize = 32;
/// Items sent by one flush at most (a bounded loop; a flush again sends the rest).
pub const FLUSH_ITEMS_MAX: usize = 10_000;

/// The test cards of the demo issuer (docs/reference/demo-data.md): PAN and expiry, so the
/// terminal's "card reader" can swipe them.
pub const TEST_CARDS: &[(&str, &str)] = &[
    ("6222021234567890128", "3012"),
    ("6222021234567890136", "3012"),
    ("6222021234567890144", "2001"),
    ("6222021234567890151", "3012"),
    ("6222021234567890169", "3012"),
    ("6222021234567890177", "3012"),
];

/// What the terminal is started with.
pub struct TerminalConfig {
    /// Field 41.
    pub terminal_id: String,
    /// The host's ISO 8583 address.
    pub iso: SocketAddr,
    /// The host's HTTP base URL (`http://127.0.0.1:8080`).
    pub http_url: String,
    /// The terminal master key.
    pub tmk: TdesKey,
    /// The TMS credential (its text is the HMAC key).
    pub tms_credential: Zeroizing<String>,
    /// Where the journal lives.
    pub data_dir: PathBuf,
    /// The language of messages.
    pub lang: Lang,
    /// How long an ISO 8583 answer is waited for.
    pub exchange_timeout_ms: u64,
}

impl std::fmt::Debug for TerminalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalConfig")
            .field("terminal_id", &self.terminal_id)
            .field("iso", &self.iso)
            .field("http_url", &self.http_url)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Why the terminal cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The journal cannot be opened.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The TMS client cannot be set up.
    #[error(transparent)]
    Tms(#[from] TmsError),
    /// The journal's key cannot be derived (the terminal id).
    #[error(transparent)]
    JournalKey(#[from] JournalKeyError),
}

/// The signed-in operator.
struct Operator {
    code: String,
    role: String,
    must_change_password: bool,
}

/// The terminal parameters of TMS that the core uses (cached in the journal).
#[derive(Debug, Clone, Default)]
pub struct Parameters {
    /// Field 42.
    pub merchant_id: String,
    /// For receipts.
    pub merchant_name: String,
    /// `device` or `host`.
    pub refund_password_mode: String,
    /// The largest sale approved offline, minor units (0: none).
    pub offline_floor_limit_minor: u64,
    /// How many offline sales may wait unsent.
    pub offline_sales_unsent_max: u32,
    /// The whole answer.
    pub raw: Value,
}

impl Parameters {
    fn from_json(raw: Value) -> Parameters {
        Parameters {
            merchant_id: raw["merchant_id"].as_str().unwrap_or_default().to_owned(),
            merchant_name: raw["merchant_name"].as_str().unwrap_or_default().to_owned(),
            refund_password_mode: raw["refund_password_mode"].as_str().unwrap_or("device").to_owned(),
            offline_floor_limit_minor: raw["offline_floor_limit_minor"].as_u64().unwrap_or(0),
            offline_sales_unsent_max: raw["offline_sales_unsent_max"]
                .as_u64()
                .and_then(|max| u32::try_from(max).ok())
                .unwrap_or(0),
            raw,
        }
    }
}

/// Builds a request again under the link's current keys (after a new sign-in).
type Rebuild<'a> = dyn Fn(&Link) -> Result<Message, ClientError> + Send + Sync + 'a;

/// What a sent financial request came to, before it becomes an [`Outcome`].
enum Exchanged {
    Answered(Box<Answer>),
    /// The request never left: the row is gone.
    NotSent(String),
    /// Sent without an answer: the row owes its reversal or retransmission.
    NoAnswer(String),
}

/// The terminal core.
pub struct Terminal {
    config: TerminalConfig,
    journal: Journal,
    link: Link,
    tms: TmsClient,
    operator: Option<Operator>,
    parameters: Option<Parameters>,
    offline: bool,
    drop_next_response: bool,
    printer: Option<Printer>,
    utc_offset_minutes: i32,
    last_settlement: Option<SettlementSlip>,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("terminal_id", &self.config.terminal_id)
            .field("operator", &self.operator.as_ref().map(|operator| &operator.code))
            .field("offline", &self.offline)
            .finish_non_exhaustive()
    }
}

fn journal_failed(error: JournalError) -> Outcome {
    tracing::error!(%error, "journal");
    Outcome::refused(error.to_string())
}

/// `?` for journal calls inside actions: a failing journal refuses the action.
macro_rules! journal {
    ($expression:expr) => {
        match $expression {
            Ok(value) => value,
            Err(error) => return journal_failed(error),
        }
    };
}

fn tms_failed(error: TmsError) -> Outcome {
    match error {
        TmsError::NotSent(why) => Outcome::no_network(format!("the host cannot be reached: {why}")),
        TmsError::NoAnswer(why) => Outcome {
            status: Status::NoAnswer,
            error: Some(format!("no answer from the host: {why}")),
            ..Outcome::default()
        },
        TmsError::Setup(why) => Outcome::refused(why),
    }
}

/// A TMS refusal with the facts the cashier acts on (tries left, unlock time).
fn tms_refused(answer: &TmsAnswer) -> Outcome {
    let mut outcome = Outcome::refused(answer.error());
    if answer.status == 403 {
        outcome.refusal = Some(Refusal::NotAllowed);
    }
    outcome.attempts_left = answer.body["attempts_left"].as_u64();
    outcome.locked_until_ms = answer.body["locked_until_ms"].as_i64();
    if answer.body["must_change_password"] == json!(true) {
        outcome.must_change_password = Some(true);
    }
    outcome
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The test cards that carry a chip (service code `201`; the others are `101`, stripe only). A
/// chip card is inserted or tapped, never swiped.
pub const CHIP_CARDS: &[&str] = &["6222021234567890177"];

/// The service code on a test card's track 2 (`201` chip, `101` stripe only).
pub fn service_code_of(pan: &str) -> &'static str {
    if CHIP_CARDS.contains(&pan) {
        "201"
    } else {
        "101"
    }
}

/// How the card reached the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardEntry {
    /// Swiped: the magnetic stripe (field 22 `02x`).
    Swipe,
    /// Inserted: the chip, contact (`05x`).
    Insert,
    /// Tapped: the chip, contactless (`07x`).
    Tap,
    /// The number keyed by hand (`01x`).
    Keyed,
}

/// A card as the reader took it: its number and how it was read.
#[derive(Clone, PartialEq, Eq)]
pub struct CardRead {
    /// PAN digits.
    pub pan: String,
    /// How it was read.
    pub entry: CardEntry,
}

impl CardRead {
    /// A swiped card (what [`Terminal::sale`] and [`Terminal::balance`] take).
    pub fn swiped(pan: &str) -> CardRead {
        CardRead { pan: pan.to_owned(), entry: CardEntry::Swipe }
    }
}

impl std::fmt::Debug for CardRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardRead").field("pan", &mask_pan(&self.pan)).field("entry", &self.entry).finish()
    }
}

/// What a chip read adds to a request: the amount, the kind and the cryptogram asked for.
struct ChipContext {
    amount_minor: u64,
    transaction_type: u8,
    cryptogram_information: u8,
    atc: u16,
    utc_offset_minutes: i32,
}

/// The card data of `read` as the reader gives it, or why the reader refuses it: a chip card is
/// not swiped (real terminals send no fallback while the chip can be read: "insert the card"),
/// a stripe-only card has no chip to insert or tap, and only the test cards can be read.
fn card_data(read: &CardRead, chip: &ChipContext) -> Result<CardData, Refusal> {
    let pan = read.pan.as_str();
    let Some(expiry) = expiry_of(pan) else {
        return match read.entry {
            CardEntry::Swipe | CardEntry::Keyed => Ok(CardData::Keyed { pan: pan.to_owned(), expiry_yymm: None }),
            CardEntry::Insert | CardEntry::Tap => Err(Refusal::CardNotRead),
        };
    };
    let has_chip = service_code_of(pan).starts_with('2');
    match read.entry {
        CardEntry::Keyed => Ok(CardData::Keyed { pan: pan.to_owned(), expiry_yymm: Some(expiry) }),
        CardEntry::Swipe if has_chip => Err(Refusal::InsertChipCard),
        CardEntry::Swipe => Ok(CardData::Swiped(Card { pan: pan.to_owned(), expiry_yymm: expiry })),
        CardEntry::Insert | CardEntry::Tap if !has_chip => Err(Refusal::NoChip),
        CardEntry::Insert | CardEntry::Tap => {
            let date = crate::receipt::local_date_time(now_ms(), chip.utc_offset_minutes);
            let digits: Vec<u8> = date.bytes().filter(u8::is_ascii_digit).collect();
            let mut date_yymmdd = [b'0'; 6];
            if let Some(yymmdd) = digits.get(2..8) {
                date_yymmdd.copy_from_slice(yymmdd);
            }
            let icc = icc_data(
                pan,
                &IccRead {
                    amount_minor: chip.amount_minor,
                    transaction_type: chip.transaction_type,
                    date_yymmdd,
                    atc: chip.atc,
                    unpredictable_number: rand::random(),
                    cryptogram_information: chip.cryptogram_information,
                },
            );
            Ok(CardData::Chip {
                pan: pan.to_owned(),
                expiry_yymm: expiry,
                contactless: read.entry == CardEntry::Tap,
                icc,
            })
        }
    }
}

/// The card as the terminal's reader takes it: a test card is swiped (its track 2), any other
/// number keyed.
pub fn read_card(pan: &str) -> CardData {
    match TEST_CARDS.iter().find(|(known, _)| *known == pan) {
        Some((pan, expiry)) => CardData::Swiped(Card { pan: (*pan).to_owned(), expiry_yymm: (*expiry).to_owned() }),
        None => CardData::Keyed { pan: pan.to_owned(), expiry_yymm: None },
    }
}

/// 9F36 of a chip read: the card's counter, here the STAN the read goes with (a new one each).
fn atc_of(stan: u32) -> u16 {
    u16::try_from(stan % 65_536).unwrap_or(0)
}

fn expiry_of(pan: &str) -> Option<String> {
    TEST_CARDS.iter().find(|(known, _)| *known == pan).map(|(_, expiry)| (*expiry).to_owned())
}

fn encode(message: &Message) -> Result<Vec<u8>, String> {
    UNIONPAY.encode(message).map_err(|error| error.to_string())
}

fn decode(bytes: &[u8]) -> Result<Message, String> {
    UNIONPAY.decode(bytes).map_err(|error| error.to_string())
}

fn answered_fields(answer: &Answer) -> Answered {
    Answered {
        response_code: answer.code().to_owned(),
        rrn: answer.rrn().to_owned(),
        auth_code: answer.auth_code().to_owned(),
        date: answer.date().to_owned(),
    }
}

fn valid_digits(text: &str, length: usize) -> bool {
    text.len() == length && text.bytes().all(|byte| byte.is_ascii_digit())
}

impl Terminal {
    /// Opens the journal (recovering from a crash), its card data sealed under a key of the TMK,
    /// and prepares the links; nothing is sent yet.
    pub fn start(config: TerminalConfig) -> Result<Terminal, StartError> {
        let key = JournalKey::derive(&config.tmk, &config.terminal_id)?;
        let journal = Journal::open_sealed(&config.data_dir, key)?;
        let parameters = journal
            .meta("parameters")?
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .map(Parameters::from_json);
        let identity = TerminalIdentity {
            terminal_id: config.terminal_id.clone(),
            merchant_id: parameters.as_ref().map(|p| p.merchant_id.clone()).unwrap_or_default(),
            operator: String::new(),
            tmk: config.tmk.clone(),
        };
        let mut link =
            Link::new(config.iso, identity, journal.last_stan()?, Duration::from_millis(config.exchange_timeout_ms));
        link.set_batch(journal.batch()?);
        let tms = TmsClient::new(&config.http_url, &config.terminal_id, &config.tms_credential)?;
        let unsent = journal.unsent_count()?;
        if unsent > 0 {
            tracing::info!(unsent, "the journal holds items to send to the host");
        }
        Ok(Terminal {
            config,
            journal,
            link,
            tms,
            operator: None,
            parameters,
            offline: false,
            drop_next_response: false,
            printer: None,
            utc_offset_minutes: kassa_domain::calendar::SHANGHAI_UTC_OFFSET_MINUTES,
            last_settlement: None,
        })
    }

    /// The language of messages.
    pub fn lang(&self) -> Lang {
        self.config.lang
    }

    /// Switches the language of messages.
    pub fn set_lang(&mut self, lang: Lang) {
        self.config.lang = lang;
    }

    /// The terminal id.
    pub fn terminal_id(&self) -> &str {
        &self.config.terminal_id
    }

    /// The parameters last downloaded, if any.
    pub fn parameters(&self) -> Option<&Parameters> {
        self.parameters.as_ref()
    }

    /// The signed-in operator's code.
    pub fn operator(&self) -> Option<&str> {
        self.operator.as_ref().map(|operator| operator.code.as_str())
    }

    /// The signed-in operator's role (`supervisor` or `operator`).
    pub fn role(&self) -> Option<&str> {
        self.operator.as_ref().map(|operator| operator.role.as_str())
    }

    /// Whether the operator must change an initial password before anything else.
    pub fn must_change_password(&self) -> bool {
        self.operator.as_ref().is_some_and(|operator| operator.must_change_password)
    }

    /// Whether the terminal pretends the network is down.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// The journal (reads for the UI: transaction query, reprint).
    pub fn journal_store(&self) -> &Journal {
        &self.journal
    }

    /// `None` when an operator may act now; otherwise the refusal.
    pub fn operator_required(&self) -> Option<Outcome> {
        match &self.operator {
            None => Some(
                Outcome::refused("no operator is signed in: login OPERATOR PASSWORD").with_refusal(Refusal::NoOperator),
            ),
            Some(operator) if operator.must_change_password => {
                let mut refused =
                    Outcome::refused("the initial password must be changed first: change-password OLD NEW");
                refused.must_change_password = Some(true);
                Some(refused)
            }
            Some(_) => None,
        }
    }

    // ---------------------------------------------------------------------------------------
    // Operators and parameters (TMS)

    /// Operator sign-in (TMS), the parameters, and the terminal's sign-in (ISO 0800).
    pub async fn login(&mut self, operator: &str, password: &str) -> Outcome {
        if self.offline {
            return Outcome::no_network("offline: the operator cannot sign in");
        }
        self.tms.set_session(None);
        self.operator = None;
        let answer = match self.tms.post("/tms/v1/login", &json!({"operator": operator, "password": password})).await {
            Ok(answer) => answer,
            Err(error) => return tms_failed(error),
        };
        if !answer.ok() {
            return tms_refused(&answer);
        }
        let Some(session) = answer.body["session"].as_str() else {
            return Outcome::refused("the host answered the login without a session");
        };
        self.tms.set_session(Some(session));
        let must_change_password = answer.body["must_change_password"] == json!(true);
        let role = answer.body["role"].as_str().unwrap_or("operator").to_owned();
        self.operator = Some(Operator { code: operator.to_owned(), role: role.clone(), must_change_password });
        self.link.set_operator(operator);
        let mut outcome = self.download_parameters().await;
        if outcome.ok() {
            outcome = self.sign_in().await;
        }
        if !must_change_password {
            self.resolve_unknown_qr().await;
        }
        outcome.must_change_password = Some(must_change_password);
        outcome.role = Some(role);
        outcome
    }

    /// The terminal's sign-in (0800): new working keys and the batch the host holds open.
    pub async fn sign_in(&mut self) -> Outcome {
        if self.offline {
            return Outcome::no_network("offline");
        }
        let stan = journal!(self.journal.take_stan());
        match self.link.sign_in_at(stan).await {
            Ok(answer) => {
                let batch = answer.batch().unwrap_or(0);
                journal!(self.journal.set_batch(batch));
                Outcome { batch: Some(batch), stan: Some(stan), ..Outcome::done() }
            }
            Err(ClientError::NotSent(error)) => Outcome::no_network(format!("the host cannot be reached: {error}")),
            Err(error) => Outcome::refused(format!("the terminal's sign-in failed: {error}")),
        }
    }

    /// `GET /tms/v1/parameters`, kept in the journal for offline use.
    pub async fn download_parameters(&mut self) -> Outcome {
        if self.offline {
            return Outcome::no_network("offline");
        }
        let answer = match self.tms.get("/tms/v1/parameters").await {
            Ok(answer) => answer,
            Err(error) => return tms_failed(error),
        };
        if !answer.ok() {
            return tms_refused(&answer);
        }
        journal!(self.journal.set_meta("parameters", &answer.body.to_string()));
        let parameters = Parameters::from_json(answer.body.clone());
        self.link.set_merchant(&parameters.merchant_id);
        self.parameters = Some(parameters);
        Outcome { details: Some(answer.body), ..Outcome::done() }
    }

    /// A TMS call of the signed-in operator: its answer, or the outcome of a refusal.
    async fn tms_call(&mut self, path: &str, body: &Value) -> Result<TmsAnswer, Outcome> {
        if self.offline {
            return Err(Outcome::no_network("offline"));
        }
        let answer = self.tms.post(path, body).await.map_err(tms_failed)?;
        if answer.ok() {
            Ok(answer)
        } else {
            Err(tms_refused(&answer))
        }
    }

    /// The signed-in operator changes its own password.
    pub async fn change_password(&mut self, old: &str, new: &str) -> Outcome {
        if self.operator.is_none() {
            return Outcome::refused("no operator is signed in: login OPERATOR PASSWORD");
        }
        match self.tms_call("/tms/v1/password", &json!({"old": old, "new": new})).await {
            Ok(_) => {
                if let Some(operator) = self.operator.as_mut() {
                    operator.must_change_password = false;
                }
                // The host answers QR queries only now that the password is not an initial one.
                self.resolve_unknown_qr().await;
                Outcome { must_change_password: Some(false), ..Outcome::done() }
            }
            Err(outcome) => outcome,
        }
    }

    /// The supervisor changes the merchant's refund password.
    pub async fn change_refund_password(&mut self, old: &str, new: &str) -> Outcome {
        if let Some(refused) = self.operator_required() {
            return refused;
        }
        match self.tms_call("/tms/v1/refund-password", &json!({"old": old, "new": new})).await {
            Ok(_) => Outcome::done(),
            Err(outcome) => outcome,
        }
    }

    /// The supervisor sets (no `old`) or changes the merchant's payment-code password.
    pub async fn change_paycode_password(&mut self, old: Option<&str>, new: &str) -> Outcome {
        if let Some(refused) = self.operator_required() {
            return refused;
        }
        let body = match old {
            Some(old) => json!({"old": old, "new": new}),
            None => json!({"new": new}),
        };
        match self.tms_call("/tms/v1/paycode-password", &body).await {
            Ok(answer) => Outcome { details: Some(answer.body), ..Outcome::done() },
            Err(outcome) => outcome,
        }
    }

    /// Supervisor: adds an operator with an initial password.
    pub async fn add_operator(&mut self, code: &str, initial_password: &str) -> Outcome {
        self.operator_admin(
            "/tms/v1/operators".to_owned(),
            json!({"operator": code, "initial_password": initial_password}),
        )
        .await
    }

    /// Supervisor: disables (`false`) or enables an operator.
    pub async fn set_operator_enabled(&mut self, code: &str, enabled: bool) -> Outcome {
        let action = if enabled { "enable" } else { "disable" };
        self.operator_admin(format!("/tms/v1/operators/{code}/{action}"), json!({})).await
    }

    /// Supervisor: unlocks a locked operator.
    pub async fn unlock_operator(&mut self, code: &str) -> Outcome {
        self.operator_admin(format!("/tms/v1/operators/{code}/unlock"), json!({})).await
    }

    /// Supervisor: resets an operator's password to a new initial one.
    pub async fn reset_operator(&mut self, code: &str, new_password: &str, reason: &str) -> Outcome {
        self.operator_admin(
            format!("/tms/v1/operators/{code}/reset"),
            json!({"new_password": new_password, "reason": reason}),
        )
        .await
    }

    async fn operator_admin(&mut self, path: String, body: Value) -> Outcome {
        if let Some(refused) = self.operator_required() {
            return refused;
        }
        if !valid_path_segment(&path) {
            return Outcome::refused("an operator code is two digits");
        }
        match self.tms_call(&path, &body).await {
            Ok(answer) => Outcome { details: Some(answer.body), ..Outcome::done() },
            Err(outcome) => outcome,
        }
    }

    /// Operator sign-out (TMS); the terminal's working keys stay.
    pub async fn logout(&mut self) -> Outcome {
        if self.operator.is_none() {
            return Outcome::refused("no operator is signed in");
        }
        let result = if self.offline { Ok(()) } else { self.tms_call("/tms/v1/logout", &json!({})).await.map(|_| ()) };
        self.operator = None;
        self.tms.set_session(None);
        self.link.set_operator("");
        match result {
            Ok(()) => Outcome::done(),
            // Signed out here either way; the host ends the session at its expiry.
            Err(mut outcome) => {
                outcome.status = Status::Done;
                outcome.error = outcome.error.map(|why| format!("signed out here; the host was not told: {why}"));
                outcome
            }
        }
    }

    /// Re-initialisation: refused while the journal holds anything unsent; then the host is
    /// asked (supervisor), and only then the journal is wiped and the terminal must sign in again.
    pub async fn reinit(&mut self) -> Outcome {
        let unsent = journal!(self.journal.unsent_count());
        if unsent > 0 {
            let mut refused = Outcome::refused(format!(
                "{unsent} item(s) in the journal are not sent yet: flush them before re-initialising"
            ));
            refused.unsent = Some(journal!(self.journal.unsent()).iter().map(JournalItem::from).collect());
            refused.refusal = Some(Refusal::UnsentBlockReinit);
            return refused;
        }
        if let Some(refused) = self.operator_required() {
            return refused;
        }
        let body = json!({"unsent_count": 0, "reason": "re-initialised at the terminal"});
        if let Err(outcome) = self.tms_call("/tms/v1/reinit", &body).await {
            return outcome;
        }
        journal!(self.journal.wipe());
        self.operator = None;
        self.tms.set_session(None);
        self.link.forget_keys();
        self.link.set_batch(0);
        self.parameters = None;
        Outcome { error: Some("re-initialised: sign in again".into()), ..Outcome::done() }
    }

    // ---------------------------------------------------------------------------------------
    // Network switches and faults

    /// Pretends the network is down (`true`) or back.
    pub fn set_offline(&mut self, offline: bool) -> Outcome {
        self.offline = offline;
        if offline {
            self.link.disconnect();
        }
        Outcome::done()
    }

    /// The next financial request is sent but its answer ignored, as if it timed out.
    pub fn arm_fault_drop_response(&mut self) -> Outcome {
        self.drop_next_response = true;
        Outcome::done()
    }

    // ---------------------------------------------------------------------------------------
    // Card transactions

    /// Signs the terminal in when it holds no working keys.
    async fn ensure_signed_in(&mut self) -> Result<(), Outcome> {
        if self.offline {
            return Err(Outcome::no_network("offline: the host is not reachable"));
        }
        if self.link.signed_in() {
            return Ok(());
        }
        let outcome = self.sign_in().await;
        if outcome.ok() {
            Ok(())
        } else {
            Err(outcome)
        }
    }

    /// Sends the journal's reversals and retransmissions (not the offline uploads): they go
    /// before any other request.
    async fn send_owed(&mut self) -> Result<u32, Outcome> {
        self.send_unsent(false).await
    }

    /// Sends what the journal owes, reversals first; with `uploads`, the offline sales too.
    /// Returns how many the host answered; stops at the first that gets no answer.
    async fn send_unsent(&mut self, uploads: bool) -> Result<u32, Outcome> {
        let unsent = self.journal.unsent().map_err(journal_failed)?;
        let mut sent = 0_u32;
        for entry in unsent.into_iter().take(FLUSH_ITEMS_MAX) {
            let is_upload = matches!(entry.state, State::OfflineUnsent | State::Uploading);
            if is_upload && !uploads {
                continue;
            }
            let Some(bytes) = entry.pending.as_deref() else {
                tracing::warn!(id = entry.id, "an unsent row has no message; left for the operator");
                continue;
            };
            let message =
                decode(bytes).map_err(|why| Outcome::refused(format!("the journal's message {}: {why}", entry.id)))?;
            let request = match entry.state {
                State::OfflineUnsent => {
                    self.journal.set_state(entry.id, State::Uploading).map_err(journal_failed)?;
                    message
                }
                State::ReversalPending => message,
                _ => Link::repeat_of(&message),
            };
            // Under new keys a reversal, retransmission or upload is the same message with a new
            // MAC (it carries no PIN block): the link computes the MAC at each exchange.
            let resend = request.clone();
            let rebuild = move |_: &Link| Ok(resend.clone());
            let answer = match self.exchange_signed(&request, &rebuild).await {
                Ok(answer) if answer.code() == "A0" => {
                    let mut outcome = Outcome {
                        status: Status::NoAnswer,
                        error: Some("the host answered A0 (MAC error) twice; it stays in the journal".into()),
                        ..Outcome::default()
                    };
                    outcome.sent = Some(sent);
                    return Err(outcome);
                }
                Ok(answer) => answer,
                Err(error) => {
                    let mut outcome = if error.not_sent() {
                        Outcome::no_network(format!("the host cannot be reached: {error}"))
                    } else {
                        Outcome {
                            status: Status::NoAnswer,
                            error: Some(format!("no answer from the host: {error}; it stays in the journal")),
                            ..Outcome::default()
                        }
                    };
                    outcome.sent = Some(sent);
                    return Err(outcome);
                }
            };
            self.forget_keys_on(&answer);
            sent += 1;
            self.record_owed(&entry, &answer).map_err(journal_failed)?;
        }
        Ok(sent)
    }

    fn record_owed(&self, entry: &Entry, answer: &Answer) -> Result<(), JournalError> {
        match entry.state {
            State::ReversalPending => {
                tracing::info!(stan = entry.stan, batch = entry.batch, "reversal acknowledged");
                self.journal.set_state(entry.id, State::Reversed)
            }
            _ => {
                let state = if answer.approved() { State::Approved } else { State::Declined };
                self.journal.answer(entry.id, state, &answered_fields(answer))
            }
        }
    }

    /// A `77` or `A0` means the working keys (or the batch) are no longer good: the next request
    /// signs in again first.
    fn forget_keys_on(&mut self, answer: &Answer) {
        if matches!(answer.code(), "77" | "A0") {
            self.link.forget_keys();
        }
    }

    /// Sends `request`; when the host answers `A0` because the working keys were replaced (a
    /// sign-in of the same terminal elsewhere), it did not process the request: the terminal
    /// signs in and sends it once more, rebuilt under the new keys (a new PIN block and MAC) with
    /// the same STAN and content, so that had the host processed it after all, the second is a
    /// retransmission and gets the first's answer.
    async fn exchange_signed(&mut self, request: &Message, rebuild: &Rebuild<'_>) -> Result<Answer, ClientError> {
        let answer = self.link.exchange(request).await?;
        if answer.code() != "A0" || self.offline {
            return Ok(answer);
        }
        let stan = request.field_str(11).unwrap_or_default().to_owned();
        tracing::info!(stan = %stan, "answered A0 (the working keys were replaced?): signing in again and sending it once more");
        let batch = self.link.batch();
        self.link.forget_keys();
        let signed_in = self.sign_in().await;
        if !signed_in.ok() || self.link.batch() != batch {
            // No keys, or another batch (the request names the old one): leave the A0.
            tracing::warn!(error = ?signed_in.error, "no second attempt after A0");
            return Ok(answer);
        }
        let again = rebuild(&self.link)?;
        self.link.exchange(&again).await
    }

    /// The one path of a journaled card request: the row (with what it would owe) is written,
    /// then the request sent; the answer or its absence is recorded.
    async fn send_financial(
        &mut self,
        row: NewEntry,
        request: &Message,
        owed: &Message,
        rebuild: &Rebuild<'_>,
    ) -> Result<(i64, Exchanged), Outcome> {
        let pending = encode(owed).map_err(|why| Outcome::refused(format!("cannot encode the request: {why}")))?;
        let kind = row.kind;
        let id = self.journal.insert(&NewEntry { pending: Some(pending), ..row }).map_err(journal_failed)?;
        let drop_answer = std::mem::take(&mut self.drop_next_response);
        let result =
            if drop_answer { self.link.exchange(request).await } else { self.exchange_signed(request, rebuild).await };
        let owes = if kind == Some(Kind::Refund) { State::RepeatPending } else { State::ReversalPending };
        let exchanged = match result {
            Ok(_) if drop_answer => {
                self.journal.set_state(id, owes).map_err(journal_failed)?;
                Exchanged::NoAnswer("the answer was dropped (fault drop-response)".into())
            }
            Ok(answer) => {
                self.forget_keys_on(&answer);
                let state = if answer.approved() { State::Approved } else { State::Declined };
                self.journal.answer(id, state, &answered_fields(&answer)).map_err(journal_failed)?;
                Exchanged::Answered(Box::new(answer))
            }
            Err(error) if error.not_sent() => {
                self.journal.discard(id).map_err(journal_failed)?;
                Exchanged::NotSent(error.to_string())
            }
            Err(error) => {
                self.journal.set_state(id, owes).map_err(journal_failed)?;
                Exchanged::NoAnswer(error.to_string())
            }
        };
        Ok((id, exchanged))
    }

    /// Shapes what a financial exchange came to.
    fn financial_outcome(
        &self,
        id: i64,
        stan: u32,
        amount_minor: Option<u64>,
        exchanged: Exchanged,
        queued_what: &str,
    ) -> Outcome {
        let base = Outcome {
            stan: Some(stan),
            batch: Some(self.link.batch()),
            amount_minor,
            entry_id: Some(id),
            ..Outcome::default()
        };
        match exchanged {
            Exchanged::Answered(answer) => {
                let mut outcome = if answer.approved() { Outcome::done() } else { Outcome::declined(answer.code(), self.lang()) };
                outcome.response_code = Some(answer.code().to_owned());
                outcome.rrn = Some(answer.rrn().to_owned()).filter(|rrn| !rrn.is_empty());
                outcome.auth_code = Some(answer.auth_code().to_owned()).filter(|code| !code.is_empty());
                outcome.date = Some(answer.date().to_owned()).filter(|date| !date.is_empty());
                Outcome { stan: base.stan, batch: base.batch, amount_minor, entry_id: base.entry_id, ..outcome }
            }
            Exchanged::NotSent(why) => Outcome {
                status: Status::NoNetwork,
                error: Some(format!("the host cannot be reached: {why}")),
                entry_id: None,
                ..base
            },
            Exchanged::NoAnswer(why) => Outcome {
                status: Status::NoAnswer,
                error: Some(format!("no answer from the host ({why}): {queued_what} is queued and goes to the host before anything else")),
                queued: true,
                ..base
            },
        }
    }

    /// Common start of a card transaction: an operator, the network, the keys, what is owed.
    async fn card_preamble(&mut self) -> Result<(), Outcome> {
        if let Some(refused) = self.operator_required() {
            return Err(refused);
        }
        self.ensure_signed_in().await?;
        self.send_owed().await?;
        // A reversal answered 77/A0 leaves no keys: sign in again before the request.
        self.ensure_signed_in().await
    }

    /// Card sale of `amount_minor` on `pan` swiped, with an online PIN when given. While the host
    /// is unreachable (or `offline on`), a sale under the floor limit is approved offline.
    pub async fn sale(&mut self, amount_minor: u64, pan: &str, pin: Option<&str>) -> Outcome {
        self.sale_read(amount_minor, &CardRead::swiped(pan), pin).await
    }

    /// Card sale of `amount_minor` on the card as it was read (swiped, inserted, tapped or
    /// keyed), with an online PIN when given: field 22 says how, a chip read sends its ICC data
    /// in 55, and a chip card swiped is refused ("insert the card"). While the host is
    /// unreachable (or `offline on`), a sale under the floor limit is approved offline.
    pub async fn sale_read(&mut self, amount_minor: u64, read: &CardRead, pin: Option<&str>) -> Outcome {
        let pan = read.pan.as_str();
        let probe = match self.check_card(read, amount_minor, 0x00) {
            Ok(probe) => probe,
            Err(refused) => return *refused,
        };
        if let Some(pin) = pin {
            if kassa_crypto::Pin::parse(pin).is_err() {
                return Outcome::refused("a PIN is 4 to 12 digits");
            }
        }
        if self.offline {
            return self.offline_sale(amount_minor, read, "offline");
        }
        if let Err(outcome) = self.card_preamble().await {
            return match outcome.status {
                Status::NoNetwork => self.offline_sale(amount_minor, read, outcome.error.as_deref().unwrap_or("")),
                _ => outcome,
            };
        }
        let stan = journal!(self.journal.take_stan());
        let chip = ChipContext { atc: atc_of(stan), ..probe };
        let card = match card_data(read, &chip) {
            Ok(card) => card,
            Err(refusal) => return Outcome::refused_as(refusal),
        };
        let request = match self.link.sale_at(stan, amount_minor, &card, pin) {
            Ok(request) => request,
            Err(error) => return Outcome::refused(error.to_string()),
        };
        let reversal = Link::reversal_of(&request, pan, "98");
        let row = NewEntry {
            kind: Some(Kind::Sale),
            batch: self.link.batch(),
            stan,
            amount_minor,
            operator: self.operator().unwrap_or_default().to_owned(),
            pan: Some(pan.to_owned()),
            entry_mode: request.field_str(22).unwrap_or_default().to_owned(),
            ..NewEntry::default()
        };
        let rebuild = |link: &Link| link.sale_at(stan, amount_minor, &card, pin);
        let (id, exchanged) = match self.send_financial(row, &request, &reversal, &rebuild).await {
            Ok(sent) => sent,
            Err(outcome) => return outcome,
        };
        if let Exchanged::NotSent(why) = &exchanged {
            let why = why.clone();
            return self.offline_sale(amount_minor, read, &why);
        }
        let mut outcome = self.financial_outcome(id, stan, Some(amount_minor), exchanged, "its reversal");
        outcome.pan_masked = Some(mask_pan(pan));
        outcome
    }

    /// A sale approved by the terminal alone: under the floor limit and the count of the TMS
    /// parameters, journaled with its upload message, uploaded by `flush` or `settle`.
    fn offline_sale(&mut self, amount_minor: u64, read: &CardRead, why: &str) -> Outcome {
        let pan = read.pan.as_str();
        let Some(parameters) = self.parameters.clone() else {
            return Outcome::no_network(format!("no network ({why}) and no parameters downloaded: no offline sale"));
        };
        if amount_minor > parameters.offline_floor_limit_minor {
            return Outcome::no_network(format!(
                "no network ({why}); {} is above the offline floor limit {}",
                crate::money::format_amount(amount_minor),
                crate::money::format_amount(parameters.offline_floor_limit_minor)
            ))
            .with_refusal(Refusal::OfflineLimit);
        }
        let waiting = journal!(self.journal.offline_unsent_count());
        if waiting >= parameters.offline_sales_unsent_max {
            return Outcome::no_network(format!(
                "no network ({why}); {waiting} offline sales already wait to be sent (the most allowed)"
            ))
            .with_refusal(Refusal::OfflineLimit);
        }
        let stan = journal!(self.journal.take_stan());
        // A swiped card's track 2 is not kept: the upload carries the PAN and expiry as keyed. A
        // chip read keeps its entry mode, with the card's offline approval (TC) in 55.
        let card = match read.entry {
            CardEntry::Insert | CardEntry::Tap => {
                let chip = ChipContext {
                    amount_minor,
                    transaction_type: 0x00,
                    cryptogram_information: CRYPTOGRAM_TC,
                    atc: atc_of(stan),
                    utc_offset_minutes: self.utc_offset_minutes,
                };
                match card_data(read, &chip) {
                    Ok(card) => card,
                    Err(refusal) => return Outcome::refused_as(refusal),
                }
            }
            CardEntry::Swipe | CardEntry::Keyed => CardData::Keyed { pan: pan.to_owned(), expiry_yymm: expiry_of(pan) },
        };
        let upload = self.link.offline_upload_at(stan, amount_minor, &card);
        let pending = match encode(&upload) {
            Ok(bytes) => bytes,
            Err(why) => return Outcome::refused(format!("cannot encode the upload: {why}")),
        };
        let id = journal!(self.journal.insert(&NewEntry {
            kind: Some(Kind::OfflineSale),
            state: Some(State::OfflineUnsent),
            batch: self.link.batch(),
            stan,
            amount_minor,
            operator: self.operator().unwrap_or_default().to_owned(),
            pan: Some(pan.to_owned()),
            entry_mode: upload.field_str(22).unwrap_or_default().to_owned(),
            pending: Some(pending),
            ..NewEntry::default()
        }));
        tracing::info!(stan, "sale approved offline");
        Outcome {
            offline: true,
            stan: Some(stan),
            batch: Some(self.link.batch()),
            amount_minor: Some(amount_minor),
            pan_masked: Some(mask_pan(pan)),
            entry_id: Some(id),
            ..Outcome::done()
        }
    }

    /// Checks the refund password as the terminal's mode wants: on the device (TMS verifies it),
    /// or a one-time approval from the host for exactly this void or refund.
    async fn refund_authority(
        &mut self,
        refund_password: &str,
        kind: &str,
        original_rrn: &str,
        amount_minor: u64,
    ) -> Result<Option<Zeroizing<String>>, Outcome> {
        let mode = self.parameters.as_ref().map_or("device", |p| p.refund_password_mode.as_str()).to_owned();
        if mode == "host" {
            let body = json!({
                "refund_password": refund_password,
                "kind": kind,
                "original_rrn": original_rrn,
                "amount": amount_minor,
            });
            let answer = self.tms_call("/tms/v1/refund-approvals", &body).await?;
            let approval = answer.body["approval"].as_str().unwrap_or_default();
            return Ok(Some(Zeroizing::new(approval.to_owned())));
        }
        self.tms_call("/tms/v1/refund-password/verify", &json!({"password": refund_password})).await?;
        Ok(None)
    }

    /// Void of the approved sale with `stan` in the open batch, after the refund password.
    pub async fn void(&mut self, stan: u32, refund_password: &str) -> Outcome {
        if let Some(refused) = self.operator_required() {
            return refused;
        }
        let batch = self.link.batch();
        let sale = match journal!(self.journal.by_stan(batch, stan)) {
            Some(entry) if matches!(entry.kind, Kind::Sale | Kind::OfflineSale) && entry.state == State::Approved => {
                entry
            }
            Some(entry) if entry.state == State::Voided => {
                return Outcome::refused(format!("the sale {stan:06} is already voided"))
            }
            _ => {
                return Outcome::refused(format!("no approved sale with STAN {stan:06} in the open batch"))
                    .with_refusal(Refusal::UnknownStan)
            }
        };
        if let Err(outcome) = self.card_preamble().await {
            return outcome;
        }
        let approval = match self.refund_authority(refund_password, "void", &sale.rrn, sale.amount_minor).await {
            Ok(approval) => approval,
            Err(outcome) => return outcome,
        };
        let original = Original {
            rrn: sale.rrn.clone(),
            auth_code: sale.auth_code.clone(),
            batch: sale.batch,
            stan: sale.stan,
            date_mmdd: sale.date.as_bytes().try_into().ok(),
        };
        let stan = journal!(self.journal.take_stan());
        let request = self.link.void_at(stan, sale.amount_minor, &original, approval.as_deref().map(String::as_str));
        let reversal = Link::reversal_of(&request, sale.pan().unwrap_or_default(), "98");
        let row = NewEntry {
            kind: Some(Kind::Void),
            batch,
            stan,
            amount_minor: sale.amount_minor,
            operator: self.operator().unwrap_or_default().to_owned(),
            pan: sale.pan().map(str::to_owned),
            entry_mode: "012".into(),
            original_id: Some(sale.id),
            original_rrn: sale.rrn.clone(),
            ..NewEntry::default()
        };
        let approval_code = approval.as_deref().map(String::as_str);
        let rebuild = |link: &Link| Ok(link.void_at(stan, sale.amount_minor, &original, approval_code));
        let (id, exchanged) = match self.send_financial(row, &request, &reversal, &rebuild).await {
            Ok(sent) => sent,
            Err(outcome) => return outcome,
        };
        if let Exchanged::Answered(answer) = &exchanged {
            if answer.approved() {
                journal!(self.journal.set_state(sale.id, State::Voided));
            }
        }
        let mut outcome = self.financial_outcome(id, stan, Some(sale.amount_minor), exchanged, "its reversal");
        outcome.pan_masked = Some(sale.pan_masked.clone());
        outcome
    }

    /// Refund of `amount_minor` of the sale with `rrn` (approved on `date_mmdd`), after the
    /// refund password.
    pub async fn refund(&mut self, rrn: &str, amount_minor: u64, date_mmdd: &str, refund_password: &str) -> Outcome {
        if let Some(refused) = self.operator_required() {
            return refused;
        }
        if rrn.len() != 12 || !rrn.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
            return Outcome::refused("an RRN is 12 characters").with_refusal(Refusal::UnknownRrn);
        }
        if !valid_digits(date_mmdd, 4) {
            return Outcome::refused("the sale's date is MMDD");
        }
        if let Err(outcome) = self.card_preamble().await {
            return outcome;
        }
        let approval = match self.refund_authority(refund_password, "refund", rrn, amount_minor).await {
            Ok(approval) => approval,
            Err(outcome) => return outcome,
        };
        let known = journal!(self.journal.sale_by_rrn(rrn));
        let original = Original {
            rrn: rrn.to_owned(),
            auth_code: String::new(),
            batch: 0,
            stan: 0,
            date_mmdd: date_mmdd.as_bytes().try_into().ok(),
        };
        let stan = journal!(self.journal.take_stan());
        let request = self.link.refund_at(stan, amount_minor, &original, approval.as_deref().map(String::as_str));
        let row = NewEntry {
            kind: Some(Kind::Refund),
            batch: self.link.batch(),
            stan,
            amount_minor,
            operator: self.operator().unwrap_or_default().to_owned(),
            pan: known.as_ref().and_then(|sale| sale.pan().map(str::to_owned)),
            entry_mode: "012".into(),
            original_id: known.as_ref().map(|sale| sale.id),
            original_rrn: rrn.to_owned(),
            ..NewEntry::default()
        };
        // A refund is not reversible: without an answer it is sent again, as a repeat.
        let approval_code = approval.as_deref().map(String::as_str);
        let rebuild = |link: &Link| Ok(link.refund_at(stan, amount_minor, &original, approval_code));
        let (id, exchanged) = match self.send_financial(row, &request, &request, &rebuild).await {
            Ok(sent) => sent,
            Err(outcome) => return outcome,
        };
        let mut outcome = self.financial_outcome(id, stan, Some(amount_minor), exchanged, "its retransmission");
        outcome.pan_masked = known.map(|sale| sale.pan_masked);
        outcome
    }

    /// Balance inquiry of a swiped card (moves no money: not journaled, not reversed).
    pub async fn balance(&mut self, pan: &str, pin: &str) -> Outcome {
        self.balance_read(&CardRead::swiped(pan), pin).await
    }

    /// What a card request checks before the network: an operator signed in, a valid card
    /// number, and the reader's own refusals (no chip, a chip card swiped). Returns the chip
    /// context of the read (its ATC set once the STAN is taken).
    fn check_card(
        &self,
        read: &CardRead,
        amount_minor: u64,
        transaction_type: u8,
    ) -> Result<ChipContext, Box<Outcome>> {
        if let Some(refused) = self.operator_required() {
            return Err(Box::new(refused));
        }
        if kassa_domain::Pan::parse(read.pan.as_str()).is_err() {
            return Err(Box::new(Outcome::refused("not a valid card number")));
        }
        let chip = ChipContext {
            amount_minor,
            transaction_type,
            cryptogram_information: CRYPTOGRAM_ARQC,
            atc: 0,
            utc_offset_minutes: self.utc_offset_minutes,
        };
        card_data(read, &chip).map_err(|refusal| Box::new(Outcome::refused_as(refusal)))?;
        Ok(chip)
    }

    /// Balance inquiry of the card as it was read (see [`Terminal::sale_read`]).
    pub async fn balance_read(&mut self, read: &CardRead, pin: &str) -> Outcome {
        let pan = read.pan.as_str();
        let mut chip = match self.check_card(read, 0, 0x31) {
            Ok(chip) => chip,
            Err(refused) => return *refused,
        };
        if let Err(outcome) = self.card_preamble().await {
            return outcome;
        }
        let stan = journal!(self.journal.take_stan());
        chip.atc = atc_of(stan);
        let card = match card_data(read, &chip) {
            Ok(card) => card,
            Err(refusal) => return Outcome::refused_as(refusal),
        };
        let request = match self.link.balance_at(stan, &card, pin) {
            Ok(request) => request,
            Err(error) => return Outcome::refused(error.to_string()),
        };
        let drop_answer = std::mem::take(&mut self.drop_next_response);
        let rebuild = |link: &Link| link.balance_at(stan, &card, pin);
        let answer = match self.exchange_signed(&request, &rebuild).await {
            Ok(_) if drop_answer => {
                return Outcome {
                    status: Status::NoAnswer,
                    error: Some("the answer was dropped (fault drop-response); an inquiry needs no reversal".into()),
                    stan: Some(stan),
                    ..Outcome::default()
                }
            }
            Ok(answer) => answer,
            Err(error) if error.not_sent() => return Outcome::no_network(error.to_string()),
            Err(error) => {
                return Outcome { status: Status::NoAnswer, error: Some(error.to_string()), ..Outcome::default() }
            }
        };
        self.forget_keys_on(&answer);
        let mut outcome =
            if answer.approved() { Outcome::done() } else { Outcome::declined(answer.code(), self.lang()) };
        outcome.response_code = Some(answer.code().to_owned());
        outcome.stan = Some(stan);
        outcome.batch = Some(self.link.batch());
        outcome.date = Some(answer.date().to_owned()).filter(|date| !date.is_empty());
        outcome.pan_masked = Some(mask_pan(pan));
        if let Some(balance) = answer.balance() {
            let magnitude = i64::try_from(balance.amount_minor).unwrap_or(i64::MAX);
            outcome.balance_minor = Some(match balance.sign {
                kassa_iso8583::fields::BalanceSign::Credit => magnitude,
                kassa_iso8583::fields::BalanceSign::Debit => -magnitude,
            });
        }
        outcome
    }

    /// Sends everything the journal holds, reversals first, then retransmissions, then offline
    /// uploads; reports how many the host answered.
    pub async fn flush(&mut self) -> Outcome {
        if let Some(refused) = self.operator_required() {
            return refused;
        }
        if let Err(mut outcome) = self.ensure_signed_in().await {
            outcome.sent = Some(0);
            return outcome;
        }
        match self.send_unsent(true).await {
            Ok(sent) => {
                let left = journal!(self.journal.unsent_count());
                let mut outcome = Outcome { sent: Some(sent), ..Outcome::done() };
                if left > 0 {
                    outcome.status = Status::Refused;
                    outcome.error = Some(format!("{left} item(s) could not be sent"));
                }
                outcome
            }
            Err(outcome) => outcome,
        }
    }

    /// Settlement of the open batch: everything unsent is sent first; when the host's totals
    /// differ, the batch is uploaded item by item; the batch closes and the next one opens.
    pub async fn settle(&mut self) -> Outcome {
        let flushed = self.flush().await;
        if !flushed.ok() {
            let mut outcome = flushed;
            outcome.error = outcome.error.map(|why| format!("nothing settled: {why}"));
            return outcome;
        }
        let batch = self.link.batch();
        let totals = journal!(self.journal.totals(batch));
        let summary = journal!(self.journal.batch_summary(batch));
        let stan = journal!(self.journal.take_stan());
        let request = self.link.settlement_at(stan, SettlementTotals { domestic: totals, foreign: Totals::default() });
        let answer = match self.exchange_plain(&request).await {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        if !answer.approved() {
            let mut outcome = Outcome::declined(answer.code(), self.lang());
            outcome.stan = Some(stan);
            return outcome;
        }
        let balanced = answer.settlement_totals().is_some_and(|host| host.domestic.settle_code == 1);
        let (closing, uploaded) = if balanced {
            (answer, 0)
        } else {
            match self.batch_upload(batch).await {
                Ok(closed) => closed,
                Err(outcome) => return outcome,
            }
        };
        let Some(next) = closing.batch().filter(|next| *next != batch) else {
            return Outcome::refused("the host did not open a new batch; settle again");
        };
        journal!(self.journal.close_batch(batch, next));
        self.link.set_batch(next);
        self.last_settlement = Some(SettlementSlip {
            batch,
            operator: self.operator().unwrap_or_default().to_owned(),
            settled_at_ms: now_ms(),
            totals: crate::receipt::settlement_totals(&summary),
            balanced,
        });
        tracing::info!(batch, next, balanced, uploaded, "batch settled");
        Outcome {
            balanced: Some(balanced),
            uploaded: Some(uploaded),
            batch: Some(next),
            stan: Some(stan),
            amount_minor: Some(totals.debit_amount_minor),
            ..Outcome::done()
        }
    }

    /// The batch upload after an unbalanced settlement: one 0320 per approved card transaction,
    /// then the end; the 0330 of the end closes the batch.
    async fn batch_upload(&mut self, batch: u32) -> Result<(Answer, u32), Outcome> {
        let rows = self.journal.card_rows(batch).map_err(journal_failed)?;
        let mut uploaded = 0_u32;
        for row in &rows {
            let (type_code, processing_code) = match row.kind {
                Kind::Sale => (*b"22", "000000"),
                Kind::OfflineSale => (*b"30", "000000"),
                Kind::Refund => (*b"25", "200000"),
                _ => continue,
            };
            let item = BatchItem {
                type_code,
                processing_code: processing_code.to_owned(),
                amount_minor: row.amount_minor,
                entry_mode: row.entry_mode.clone(),
                stan: row.stan,
                pan: row.pan().unwrap_or_default().to_owned(),
                rrn: row.rrn.clone(),
                auth_code: row.auth_code.clone(),
            };
            let stan = self.journal.take_stan().map_err(journal_failed)?;
            let request = self.link.batch_item_at(stan, &item);
            let answer = self.exchange_plain(&request).await?;
            if !answer.approved() {
                let mut outcome = Outcome::declined(answer.code(), self.lang());
                outcome.error = outcome.error.map(|why| format!("batch upload of {:06}: {why}", row.stan));
                return Err(outcome);
            }
            uploaded += 1;
        }
        let stan = self.journal.take_stan().map_err(journal_failed)?;
        let count = u16::try_from(uploaded).unwrap_or(u16::MAX);
        let request = self.link.batch_upload_end_at(stan, count);
        let answer = self.exchange_plain(&request).await?;
        if !answer.approved() {
            return Err(Outcome::declined(answer.code(), self.lang()));
        }
        Ok((answer, uploaded))
    }

    /// An exchange that owes nothing when it fails (settlement, batch upload: sent again later).
    /// An `A0` (the working keys were replaced, by a sign-in elsewhere) is not processed by the
    /// host: the terminal signs in again and sends the same request once more.
    async fn exchange_plain(&mut self, request: &Message) -> Result<Answer, Outcome> {
        let first = self.link.exchange(request).await;
        let result = match first {
            Ok(answer) if answer.code() == "A0" => {
                self.link.forget_keys();
                self.ensure_signed_in().await?;
                self.link.exchange(request).await
            }
            other => other,
        };
        match result {
            Ok(answer) => {
                self.forget_keys_on(&answer);
                Ok(answer)
            }
            Err(error) if error.not_sent() => Err(Outcome::no_network(error.to_string())),
            Err(error) => {
                Err(Outcome { status: Status::NoAnswer, error: Some(error.to_string()), ..Outcome::default() })
            }
        }
    }

    /// What the journal holds: unsent items first, then the open batch.
    pub fn journal(&self) -> Outcome {
        let unsent: Vec<JournalItem> = journal!(self.journal.unsent()).iter().map(JournalItem::from).collect();
        let entries: Vec<JournalItem> = journal!(self.journal.open_batch()).iter().map(JournalItem::from).collect();
        Outcome { unsent: Some(unsent), entries: Some(entries), batch: Some(self.link.batch()), ..Outcome::done() }
    }

    /// The row to reprint: the transaction with `stan` in the open batch, or the newest.
    pub fn reprint(&self, stan: Option<u32>) -> Result<Option<Entry>, JournalError> {
        match stan {
            Some(stan) => self.journal.by_stan(self.link.batch(), stan),
            None => Ok(self.journal.latest(1)?.into_iter().next()),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Receipts

    /// Sets the receipt printer (`None`: slips are only shown).
    pub fn set_printer(&mut self, printer: Option<Printer>) {
        self.printer = printer;
    }

    /// The receipt printer, if any.
    pub fn printer(&self) -> Option<&Printer> {
        self.printer.as_ref()
    }

    /// Sets the till's offset from UTC for the date and time printed on slips (Shanghai, +8:00,
    /// unless set).
    pub fn set_utc_offset_minutes(&mut self, utc_offset_minutes: i32) {
        self.utc_offset_minutes = utc_offset_minutes;
    }

    fn slip_header(&self) -> SlipHeader<'_> {
        SlipHeader {
            terminal_id: &self.config.terminal_id,
            merchant_id: &self.link.identity().merchant_id,
            parameters: self.parameters.as_ref(),
            utc_offset_minutes: self.utc_offset_minutes,
        }
    }

    /// The slip of a journal row (refused for a row that is not a transaction that happened).
    pub fn receipt(&self, entry: &Entry) -> Result<Receipt, SlipError> {
        crate::receipt::receipt_of(entry, &self.slip_header())
    }

    /// The slip of the last settlement made by this run of the terminal.
    pub fn settlement_receipt(&self) -> Option<Result<Receipt, SlipError>> {
        let settlement = self.last_settlement.as_ref()?;
        Some(crate::receipt::settlement_receipt(settlement, &self.slip_header()))
    }

    /// Prints the merchant copy, then the customer copy, in the terminal's language.
    pub async fn print(&self, receipt: &Receipt) -> Result<(), SlipError> {
        let printer = self.printer.as_ref().ok_or(SlipError::NoPrinter)?;
        crate::receipt::print(printer, receipt, self.lang()).await
    }

    /// After an approval (or a settlement), with a printer set: prints its slips and records in
    /// `outcome` whether they printed. The approval stands whatever the printer does.
    pub async fn print_approval(&self, outcome: &mut Outcome) {
        if self.printer.is_none() || !outcome.ok() {
            return;
        }
        let receipt = match (outcome.entry_id, outcome.balanced) {
            (Some(id), _) => match self.journal.entry(id) {
                Ok(Some(entry)) => self.receipt(&entry),
                Ok(None) => Err(SlipError::NotFound(format!("no journal row {id}"))),
                Err(error) => Err(SlipError::Journal(error)),
            },
            (None, Some(_)) => match self.settlement_receipt() {
                Some(receipt) => receipt,
                None => return,
            },
            (None, None) => return,
        };
        let printed = match receipt {
            Ok(receipt) => self.print(&receipt).await,
            Err(error) => Err(error),
        };
        if let Err(error) = &printed {
            tracing::warn!(%error, "the slips did not print; the transaction stands and can be reprinted");
        }
        outcome.printed = Some(printed.is_ok());
        outcome.print_error = printed.err().map(|error| error.to_string());
    }

    /// The transaction a reprint names: the newest with a slip (`None`), the card transaction
    /// with a STAN of the open batch (up to 6 digits), or the QR payment with an `out_trade_no`.
    pub fn receipt_entry(&self, reference: Option<&str>) -> Result<Entry, SlipError> {
        let found = match reference {
            None => self.journal.latest_printable()?,
            Some(stan) if !stan.is_empty() && stan.len() <= 6 && stan.bytes().all(|b| b.is_ascii_digit()) => {
                let stan: u32 = stan.parse().unwrap_or(0);
                self.journal.by_stan(self.link.batch(), stan)?
            }
            Some(out_trade_no) => {
                if !valid_out_trade_no(out_trade_no) {
                    return Err(SlipError::NotFound("a reference is a STAN (1 to 6 digits) or an out_trade_no".into()));
                }
                self.journal.qr_trade(out_trade_no)?
            }
        };
        found.ok_or_else(|| {
            SlipError::NotFound(match reference {
                None => "no transaction to reprint yet".to_owned(),
                Some(reference) => format!("no transaction {reference} in the journal's open batch"),
            })
        })
    }

    /// Reprint (`reprint [STAN|OUT_TRADE_NO]`): the slip marked as a reprint, its customer copy
    /// in `receipt` (the screen's preview), and, with a printer, both copies printed again.
    pub async fn reprint_receipt(&self, reference: Option<&str>) -> Outcome {
        if let Some(refused) = self.operator_required() {
            return refused;
        }
        let slip = self.receipt_entry(reference).and_then(|entry| Ok((self.receipt(&entry)?, entry)));
        let (mut receipt, entry) = match slip {
            Ok(slip) => slip,
            Err(error) => return Outcome::refused(error.to_string()),
        };
        receipt.reprint = true;
        let present = |text: &str| Some(text.to_owned()).filter(|text| !text.is_empty());
        let mut outcome = Outcome {
            entry_id: Some(entry.id),
            stan: Some(entry.stan).filter(|stan| *stan > 0),
            batch: Some(entry.batch),
            amount_minor: Some(entry.amount_minor),
            rrn: present(&entry.rrn),
            auth_code: present(&entry.auth_code),
            date: present(&entry.date),
            pan_masked: present(&entry.pan_masked),
            out_trade_no: present(&entry.out_trade_no),
            trade_no: present(&entry.trade_no),
            wallet: present(&entry.wallet),
            receipt: Some(crate::receipt::customer_preview(&receipt, self.lang())),
            ..Outcome::done()
        };
        if self.printer.is_some() {
            let printed = self.print(&receipt).await;
            outcome.printed = Some(printed.is_ok());
            outcome.print_error = printed.err().map(|error| error.to_string());
        }
        outcome
    }

    // ---------------------------------------------------------------------------------------
    // QR payments (TMS)

    fn new_reference(&self, prefix: char) -> String {
        let random: u16 = rand::random();
        format!("{prefix}{}{}{:05}", self.config.terminal_id, now_ms(), random)
    }

    fn qr_preamble(&self) -> Option<Outcome> {
        if let Some(refused) = self.operator_required() {
            return Some(refused);
        }
        if self.offline {
            return Some(Outcome::no_network("offline: QR payments need the host"));
        }
        None
    }

    fn qr_row(&self, kind: Kind, amount_minor: u64, out_trade_no: &str) -> NewEntry {
        NewEntry {
            kind: Some(kind),
            batch: self.link.batch(),
            amount_minor,
            operator: self.operator().unwrap_or_default().to_owned(),
            out_trade_no: out_trade_no.to_owned(),
            ..NewEntry::default()
        }
    }

    /// Records a trade's state in its row and shapes the outcome.
    fn qr_outcome(&self, id: i64, out_trade_no: &str, amount_minor: u64, trade: &Value) -> Outcome {
        let status = trade["status"].as_str().unwrap_or("pending").to_owned();
        let trade_no = trade["trade_no"].as_str().unwrap_or_default();
        let wallet = trade["wallet"].as_str().unwrap_or_default();
        let state = trade_state(trade);
        journal!(self.journal.set_qr(id, state, trade_no, wallet));
        let mut outcome = match state {
            State::Approved => Outcome::done(),
            State::Declined => {
                let failure = trade["failure"].as_str().unwrap_or(status.as_str());
                Outcome {
                    status: Status::Declined,
                    error: Some(format!("the QR payment {status}: {failure}")),
                    ..Outcome::default()
                }
            }
            _ => Outcome {
                status: Status::NoAnswer,
                error: Some(format!(
                    "the QR payment is still {status}: the host keeps asking the wallet; query it later, never charge again"
                )),
                ..Outcome::default()
            },
        };
        outcome.out_trade_no = Some(out_trade_no.to_owned());
        outcome.trade_no = Some(trade_no.to_owned()).filter(|text| !text.is_empty());
        outcome.wallet = Some(wallet.to_owned()).filter(|text| !text.is_empty());
        outcome.qr_status = Some(status);
        outcome.amount_minor = Some(amount_minor);
        outcome.entry_id = Some(id);
        outcome
    }

    /// `GET` the trade until it is final, `deadline` passes or `cancel` fires; the last trade
    /// seen.
    async fn follow_trade(
        &mut self,
        out_trade_no: &str,
        mut trade: Value,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Value {
        while !is_final(&trade) && Instant::now() < deadline && !cancel.is_cancelled() {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(QR_POLL_MS)) => {}
                () = cancel.cancelled() => break,
            }
            if let Some(fresh) = self.query_trade(out_trade_no).await {
                trade = fresh;
            }
        }
        trade
    }

    /// `GET /tms/v1/qr/trades/{out_trade_no}`: the trade as the host knows it now.
    async fn query_trade(&mut self, out_trade_no: &str) -> Option<Value> {
        match self.tms.get(&format!("/tms/v1/qr/trades/{out_trade_no}")).await {
            Ok(answer) if answer.ok() => Some(answer.body["trade"].clone()),
            Ok(answer) => {
                tracing::warn!(status = answer.status, "QR query refused");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "QR query failed");
                None
            }
        }
    }

    /// Gives up on a trade: `…/cancel`, then the trade followed until the wallets confirm. A
    /// payer faster than the cancel leaves it paid (the host refuses to cancel a paid trade);
    /// either way the trade as the host last showed it (`trade` when nothing newer came).
    async fn cancel_trade(&mut self, out_trade_no: &str, trade: Value) -> Value {
        let path = format!("/tms/v1/qr/trades/{out_trade_no}/cancel");
        let mut trade = match self.tms.post(&path, &json!({})).await {
            Ok(answer) if answer.ok() => answer.body["trade"].clone(),
            Ok(answer) => {
                tracing::warn!(status = answer.status, error = %answer.error(), "QR cancel refused; asking for the trade");
                self.query_trade(out_trade_no).await.unwrap_or(trade)
            }
            Err(error) => {
                tracing::warn!(%error, "QR cancel failed; asking for the trade");
                self.query_trade(out_trade_no).await.unwrap_or(trade)
            }
        };
        if !is_final(&trade) {
            let deadline = Instant::now() + Duration::from_millis(QR_CANCEL_FOLLOW_MS);
            trade = self.follow_trade(out_trade_no, trade, deadline, &CancellationToken::new()).await;
        }
        trade
    }

    /// Asks the host about the QR payments the journal holds as unknown (a terminal that stopped
    /// while following one, a host that did not answer) and records what it says: `journal`
    /// then never shows a trade as pending that the host knows paid or closed. A trade the host
    /// never received is recorded declined. Needs an operator session: [`Terminal::login`] calls it.
    pub async fn resolve_unknown_qr(&mut self) -> Outcome {
        if let Some(refused) = self.qr_preamble() {
            return refused;
        }
        let unknown = journal!(self.journal.qr_unknown(QR_RESOLVED_AT_LOGIN_MAX));
        let (mut resolved, mut still_unknown) = (0_u32, 0_u32);
        for entry in unknown {
            let path = format!("/tms/v1/qr/trades/{}", entry.out_trade_no);
            let trade = match self.tms.get(&path).await {
                Ok(answer) if answer.ok() => answer.body["trade"].clone(),
                // The collection or order never reached the host: nothing was charged.
                Ok(answer) if answer.status == 404 => json!({"status": "failed"}),
                Ok(answer) => {
                    tracing::warn!(status = answer.status, "QR query refused");
                    still_unknown += 1;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "QR query failed");
                    still_unknown += 1;
                    continue;
                }
            };
            let state = trade_state(&trade);
            let trade_no = trade["trade_no"].as_str().unwrap_or_default();
            let wallet = trade["wallet"].as_str().unwrap_or_default();
            journal!(self.journal.set_qr(entry.id, state, trade_no, wallet));
            if state == State::Unknown {
                still_unknown += 1;
            } else {
                resolved += 1;
                tracing::info!(id = entry.id, state = state.as_str(), "QR trade of the journal resolved");
            }
        }
        Outcome { details: Some(json!({"resolved": resolved, "still_unknown": still_unknown})), ..Outcome::done() }
    }

    /// Collects `amount_minor` with the customer's payment code: paid at once, or followed while
    /// the payer confirms, then cancelled when the outcome stays unknown.
    pub async fn qr_pay(&mut self, amount_minor: u64, code: &str, paycode_password: Option<&str>) -> Outcome {
        if let Some(refused) = self.qr_preamble() {
            return refused;
        }
        let out_trade_no = self.new_reference('Q');
        let id = journal!(self.journal.insert(&self.qr_row(Kind::QrPay, amount_minor, &out_trade_no)));
        let mut body = json!({"out_trade_no": out_trade_no, "amount": amount_minor, "code": code});
        if let Some(password) = paycode_password {
            body["paycode_password"] = json!(password);
        }
        let trade = match self.tms.post("/tms/v1/qr/collect", &body).await {
            Ok(answer) if answer.ok() => answer.body["trade"].clone(),
            Ok(answer) => {
                journal!(self.journal.set_qr(id, State::Declined, "", ""));
                let mut outcome = tms_refused(&answer);
                outcome.out_trade_no = Some(out_trade_no);
                return outcome;
            }
            Err(TmsError::NotSent(why)) => {
                journal!(self.journal.set_qr(id, State::Declined, "", ""));
                return Outcome::no_network(format!("the host cannot be reached: {why}"));
            }
            // Sent: the trade may exist. Follow it like a waiting one.
            Err(error) => {
                tracing::warn!(%error, "QR collection without an answer; querying it");
                json!({"status": "pending"})
            }
        };
        let deadline = Instant::now() + Duration::from_millis(QR_COLLECT_FOLLOW_MS);
        let mut trade = self.follow_trade(&out_trade_no, trade, deadline, &CancellationToken::new()).await;
        if !is_final(&trade) {
            trade = self.cancel_trade(&out_trade_no, trade).await;
        }
        self.qr_outcome(id, &out_trade_no, amount_minor, &trade)
    }

    /// A merchant-presented QR: `on_code` gets the code to show, then the trade is followed until
    /// it is paid or closed (when its validity ends).
    pub async fn qr_show(&mut self, amount_minor: u64, on_code: &mut (dyn FnMut(&str) + Send)) -> Outcome {
        self.qr_show_cancellable(amount_minor, on_code, &CancellationToken::new()).await
    }

    /// [`Terminal::qr_show`] that the cashier may give up on: when `cancel` fires before the
    /// trade is paid, the merchant QR is closed at the host and the outcome says `closed`, or
    /// `paid` if the payer was faster than the cancel.
    pub async fn qr_show_cancellable(
        &mut self,
        amount_minor: u64,
        on_code: &mut (dyn FnMut(&str) + Send),
        cancel: &CancellationToken,
    ) -> Outcome {
        if let Some(refused) = self.qr_preamble() {
            return refused;
        }
        let out_trade_no = self.new_reference('M');
        let id = journal!(self.journal.insert(&self.qr_row(Kind::QrShow, amount_minor, &out_trade_no)));
        let body = json!({"out_trade_no": out_trade_no, "amount": amount_minor});
        let trade = match self.tms.post("/tms/v1/qr/orders", &body).await {
            Ok(answer) if answer.ok() => answer.body["trade"].clone(),
            Ok(answer) => {
                journal!(self.journal.set_qr(id, State::Declined, "", ""));
                let mut outcome = tms_refused(&answer);
                outcome.out_trade_no = Some(out_trade_no);
                return outcome;
            }
            Err(error) => {
                journal!(self.journal.set_qr(id, State::Declined, "", ""));
                return tms_failed(error);
            }
        };
        let Some(code) = trade["qr_code"].as_str() else {
            return Outcome::refused("the host answered the order without a QR code");
        };
        on_code(code);
        let expires_in_ms =
            u64::try_from(trade["expires_at_ms"].as_i64().unwrap_or(0).saturating_sub(now_ms())).unwrap_or(0);
        let follow_ms = expires_in_ms.saturating_add(QR_SHOW_GRACE_MS).min(QR_SHOW_FOLLOW_MS_MAX);
        let deadline = Instant::now() + Duration::from_millis(follow_ms);
        let mut trade = self.follow_trade(&out_trade_no, trade, deadline, cancel).await;
        let cancelled = cancel.is_cancelled() && !is_final(&trade);
        if cancelled {
            tracing::info!("the cashier cancelled the merchant QR");
            trade = self.cancel_trade(&out_trade_no, trade).await;
        }
        let mut outcome = self.qr_outcome(id, &out_trade_no, amount_minor, &trade);
        if cancelled && outcome.qr_status.as_deref() == Some("closed") {
            outcome.error = Some("cancelled: the merchant QR is closed unpaid".into());
        }
        outcome
    }

    /// Refunds `amount_minor` of the QR trade `out_trade_no`.
    pub async fn qr_refund(
        &mut self,
        out_trade_no: &str,
        amount_minor: u64,
        paycode_password: Option<&str>,
    ) -> Outcome {
        if let Some(refused) = self.qr_preamble() {
            return refused;
        }
        if !valid_out_trade_no(out_trade_no) {
            return Outcome::refused("out_trade_no is 1 to 64 printable characters");
        }
        let out_request_no = self.new_reference('R');
        let id = journal!(self.journal.insert(&self.qr_row(Kind::QrRefund, amount_minor, out_trade_no)));
        let mut body = json!({"out_request_no": out_request_no, "amount": amount_minor});
        if let Some(password) = paycode_password {
            body["paycode_password"] = json!(password);
        }
        let path = format!("/tms/v1/qr/trades/{out_trade_no}/refunds");
        let answer = match self.tms.post(&path, &body).await {
            Ok(answer) => answer,
            Err(error) => {
                journal!(self.journal.set_qr(id, State::Unknown, "", ""));
                let mut outcome = tms_failed(error);
                outcome.out_trade_no = Some(out_trade_no.to_owned());
                return outcome;
            }
        };
        if !answer.ok() {
            journal!(self.journal.set_qr(id, State::Declined, "", ""));
            let mut outcome = tms_refused(&answer);
            outcome.out_trade_no = Some(out_trade_no.to_owned());
            return outcome;
        }
        let mut refund = answer.body["refund"].clone();
        let trade = answer.body["trade"].clone();
        let refund_path = format!("/tms/v1/qr/trades/{out_trade_no}/refunds/{out_request_no}");
        let deadline = Instant::now() + Duration::from_millis(QR_COLLECT_FOLLOW_MS);
        while refund["status"] == json!("pending") && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(QR_POLL_MS)).await;
            if let Ok(answer) = self.tms.get(&refund_path).await {
                if answer.ok() {
                    refund = answer.body["refund"].clone();
                }
            }
        }
        let status = refund["status"].as_str().unwrap_or("pending").to_owned();
        let trade_no = trade["trade_no"].as_str().unwrap_or_default();
        let wallet = trade["wallet"].as_str().unwrap_or_default();
        let state = match status.as_str() {
            "succeeded" => State::Approved,
            "failed" => State::Declined,
            _ => State::Unknown,
        };
        journal!(self.journal.set_qr(id, state, trade_no, wallet));
        let mut outcome = match state {
            State::Approved => Outcome::done(),
            State::Declined => Outcome {
                status: Status::Declined,
                error: Some(format!("the QR refund failed: {}", refund["failure"].as_str().unwrap_or("refused"))),
                ..Outcome::default()
            },
            _ => Outcome {
                status: Status::NoAnswer,
                error: Some("the QR refund is still pending: the host keeps asking the wallet".into()),
                ..Outcome::default()
            },
        };
        outcome.out_trade_no = Some(out_trade_no.to_owned());
        outcome.out_request_no = Some(out_request_no);
        outcome.trade_no = Some(trade_no.to_owned()).filter(|text| !text.is_empty());
        outcome.wallet = Some(wallet.to_owned()).filter(|text| !text.is_empty());
        outcome.qr_status = Some(status);
        outcome.amount_minor = Some(amount_minor);
        outcome.entry_id = Some(id);
        outcome
    }
}

/// The journal state of a trade as the host shows it.
fn trade_state(trade: &Value) -> State {
    match trade["status"].as_str() {
        Some("paid" | "partially_refunded" | "refunded") => State::Approved,
        Some("failed" | "closed") => State::Declined,
        _ => State::Unknown,
    }
}

fn is_final(trade: &Value) -> bool {
    matches!(trade["status"].as_str(), Some("paid" | "partially_refunded" | "refunded" | "closed" | "failed"))
}

/// An `out_trade_no` as the host takes it: 1 to 64 printable ASCII characters (and no `/`: it
/// goes into a URL path).
fn valid_out_trade_no(out_trade_no: &str) -> bool {
    !out_trade_no.is_empty()
        && out_trade_no.len() <= 64
        && out_trade_no.bytes().all(|b| b.is_ascii_graphic())
        && !out_trade_no.contains('/')
}

/// An operator path whose code is two digits (the code goes into the URL).
fn valid_path_segment(path: &str) -> bool {
    match path.strip_prefix("/tms/v1/operators") {
        Some("") => true,
        Some(rest) => {
            rest.strip_prefix('/').and_then(|rest| rest.split_once('/')).is_some_and(|(code, _)| valid_digits(code, 2))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_are_swiped_and_others_keyed() {
        assert!(matches!(read_card("6222021234567890144"), CardData::Swiped(card) if card.expiry_yymm == "2001"));
        assert!(matches!(read_card("4111111111111111"), CardData::Keyed { expiry_yymm: None, .. }));
    }

    #[test]
    fn operator_codes_in_paths_are_two_digits() {
        assert!(valid_path_segment("/tms/v1/operators"));
        assert!(valid_path_segment("/tms/v1/operators/03/unlock"));
        assert!(!valid_path_segment("/tms/v1/operators/../unlock"));
        assert!(!valid_path_segment("/tms/v1/operators/3/unlock"));
    }

    #[test]
    fn trades_are_final_only_when_the_host_says_so() {
        for status in ["paid", "closed", "failed", "refunded"] {
            assert!(is_final(&json!({"status": status})), "{status}");
        }
        for status in ["pending", "waiting"] {
            assert!(!is_final(&json!({"status": status})), "{status}");
        }
        assert!(!is_final(&json!({})));
    }
}

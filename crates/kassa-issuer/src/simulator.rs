//! The card issuer simulator: the test cards of docs/reference/demo-data.md behind [`IssuerConnector`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use kassa_crypto::{verify_pin_block, Pin, TdesKey};
use kassa_domain::{AuthCode, CivilTime, Expiry, Money};

use crate::clearing::ClearingBook;
use crate::clock::Clock;
use crate::compact::{RequestKey, StoredCode};
use crate::{AuthoriseRequest, Decline, IssuerAnswer, IssuerConnector, IssuerError, Operation, RequestId};

/// The PIN of every test card.
pub const SIMULATOR_PIN: &str = "123456";
/// Wrong PINs in a row that lock a card's PIN.
pub const PIN_TRIES_MAX: u32 = 3;
/// How long a locked PIN stays locked.
pub const PIN_LOCK_MS: i64 = 10 * 60 * 1000;
/// Requests remembered for idempotent reversal; the oldest are forgotten first, so memory stays
/// flat under load. Far more than can be in flight within an issuer timeout. About 100 bytes
/// each (the map's entry of 80 bytes at its load factor, and 16 in `order`), no allocation of
/// their own for the host's `txn:<id>`: about 25 MiB when full.
const REQUESTS_REMEMBERED_MAX: usize = 200_000;
/// Reversals listed by [`IssuerSimulator::recent_reversals`] (tests and the demo look at them).
pub const REVERSALS_LISTED_MAX: usize = 100;
/// Expiry is checked in China Standard Time, like the rest of the host.
const ISSUER_UTC_OFFSET_MINUTES: i32 = 8 * 60;

/// How a test card behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Approved; the balance never runs out.
    Unlimited,
    /// Approved while the balance (minor units) covers the amount, else `51`.
    Balance(i64),
    /// Reported lost: `41`.
    Lost,
    /// The issuer never answers.
    NoAnswer,
}

/// One test card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestCard {
    /// The card number.
    pub pan: &'static str,
    /// Its expiry, `YYMM`.
    pub expiry: &'static str,
    /// Service code on track 2 (`101` stripe, `201` chip).
    pub service_code: &'static str,
    /// What it does.
    pub behaviour: Behaviour,
}

/// The test cards of docs/reference/demo-data.md.
pub const TEST_CARDS: [TestCard; 6] = [
    TestCard { pan: "6222021234567890128", expiry: "3012", service_code: "101", behaviour: Behaviour::Unlimited },
    TestCard { pan: "6222021234567890136", expiry: "3012", service_code: "101", behaviour: Behaviour::Balance(1000) },
    TestCard { pan: "6222021234567890144", expiry: "2001", service_code: "101", behaviour: Behaviour::Unlimited },
    TestCard { pan: "6222021234567890151", expiry: "3012", service_code: "101", behaviour: Behaviour::Lost },
    TestCard { pan: "6222021234567890169", expiry: "3012", service_code: "101", behaviour: Behaviour::NoAnswer },
    TestCard { pan: "6222021234567890177", expiry: "3012", service_code: "201", behaviour: Behaviour::Unlimited },
];

/// The balance the simulator reports for a card whose balance never runs out.
const UNLIMITED_BALANCE_MINOR: i64 = 99_999_999_999;

#[derive(Debug)]
struct CardState {
    card: TestCard,
    expiry: Expiry,
    balance_minor: Option<i64>,
    wrong_pins: u32,
    locked_until_ms: Option<i64>,
}

/// What the simulator remembers of a request: no allocation of its own (the card is one of
/// [`TEST_CARDS`]), as there are up to [`REQUESTS_REMEMBERED_MAX`] of them.
#[derive(Debug, Clone)]
enum RequestRecord {
    /// Approved; `held_minor` was taken from the card's balance.
    Approved { pan: &'static str, held_minor: i64, auth_code: StoredCode, balance: Option<Money> },
    /// Reversed (possibly before it arrived).
    Reversed,
}

#[derive(Debug)]
struct State {
    cards: HashMap<&'static str, CardState>,
    requests: HashMap<RequestKey, RequestRecord>,
    /// The keys of `requests`, oldest first.
    order: VecDeque<RequestKey>,
    /// Requests remembered: [`REQUESTS_REMEMBERED_MAX`] but in tests.
    requests_max: usize,
    /// The latest reversals received, newest last, at most [`REVERSALS_LISTED_MAX`].
    reversals: VecDeque<RequestId>,
    next_auth_code: u32,
    /// What it approved and reversed, for its clearing file.
    clearing: ClearingBook,
}

impl State {
    fn new() -> State {
        State {
            cards: HashMap::new(),
            requests: HashMap::new(),
            order: VecDeque::new(),
            requests_max: REQUESTS_REMEMBERED_MAX,
            reversals: VecDeque::new(),
            next_auth_code: 0,
            clearing: ClearingBook::default(),
        }
    }

    fn remember(&mut self, id: RequestKey, record: RequestRecord) {
        if self.requests.insert(id.clone(), record).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.requests_max {
            if let Some(oldest) = self.order.pop_front() {
                self.requests.remove(&oldest);
            }
        }
    }
}

/// The simulated issuer. Cheap to share (`Arc`); all state is in memory.
#[derive(Debug, Clone)]
pub struct IssuerSimulator {
    zone_pin_key: Arc<TdesKey>,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
}

impl IssuerSimulator {
    /// A simulator that verifies PIN blocks under `zone_pin_key` (the key the host translates
    /// terminal PIN blocks to) and reads time from `clock`.
    pub fn new(zone_pin_key: TdesKey, clock: Arc<dyn Clock>) -> IssuerSimulator {
        let mut state = State::new();
        for card in TEST_CARDS {
            // The table is a constant; its expiries parse.
            let Ok(expiry) = Expiry::parse(card.expiry) else { continue };
            let balance_minor = match card.behaviour {
                Behaviour::Balance(minor) => Some(minor),
                _ => None,
            };
            state
                .cards
                .insert(card.pan, CardState { card, expiry, balance_minor, wrong_pins: 0, locked_until_ms: None });
        }
        IssuerSimulator { zone_pin_key: Arc::new(zone_pin_key), clock, state: Arc::new(Mutex::new(state)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn no_answer(&self, request: &AuthoriseRequest) -> bool {
        self.lock()
            .cards
            .get(request.pan.expose_digits())
            .is_some_and(|card| card.card.behaviour == Behaviour::NoAnswer)
    }

    /// Decides a request (everything but the never-answering card).
    fn decide(&self, request: &AuthoriseRequest) -> IssuerAnswer {
        let now_ms = self.clock.now_ms();
        let today = Expiry::parse(&CivilTime::at(now_ms, ISSUER_UTC_OFFSET_MINUTES).yymm()).ok();
        let key = RequestKey::of(&request.request_id);
        let mut state = self.lock();
        match state.requests.get(&key) {
            Some(RequestRecord::Reversed) => return IssuerAnswer::Declined(Decline::AlreadyReversed),
            Some(RequestRecord::Approved { auth_code, balance, .. }) => {
                return match auth_code.code() {
                    Some(auth_code) => IssuerAnswer::Approved { auth_code, balance: *balance },
                    // Kept from an `AuthCode`: it parses again.
                    None => IssuerAnswer::Declined(Decline::DoNotHonour),
                };
            }
            None => {}
        }
        let Some(card) = state.cards.get_mut(request.pan.expose_digits()) else {
            return IssuerAnswer::Declined(Decline::InvalidCard);
        };
        if request.expiry.is_some_and(|expiry| expiry != card.expiry) {
            return IssuerAnswer::Declined(Decline::InvalidCard);
        }
        if card.card.behaviour == Behaviour::Lost {
            return IssuerAnswer::Declined(Decline::Lost);
        }
        if today.is_some_and(|today| card.expiry.is_expired_at(today)) {
            return IssuerAnswer::Declined(Decline::Expired);
        }
        if let Some(decline) = check_pin(card, request, &self.zone_pin_key, now_ms) {
            return IssuerAnswer::Declined(decline);
        }
        let currency = request.amount.currency();
        let held_minor = match request.operation {
            Operation::BalanceInquiry => 0,
            Operation::Purchase | Operation::Hold => request.amount.minor(),
        };
        if held_minor < 0 {
            return IssuerAnswer::Declined(Decline::DoNotHonour);
        }
        let balance_minor = match card.balance_minor.as_mut() {
            Some(balance) if *balance < held_minor => return IssuerAnswer::Declined(Decline::InsufficientFunds),
            Some(balance) => {
                *balance -= held_minor;
                *balance
            }
            None => UNLIMITED_BALANCE_MINOR,
        };
        let balance = Some(Money::from_minor(balance_minor, currency));
        let pan = card.card.pan;
        let auth_code = state.next_auth_code;
        state.next_auth_code = (auth_code + 1) % 1_000_000;
        let Ok(auth_code) = AuthCode::parse(&format!("{:06}", auth_code)) else {
            return IssuerAnswer::Declined(Decline::DoNotHonour);
        };
        if request.operation != Operation::BalanceInquiry {
            let record = RequestRecord::Approved { pan, held_minor, auth_code: StoredCode::of(&auth_code), balance };
            state.remember(key, record);
            state.clearing.approved(&request.request_id, request.amount, &auth_code, now_ms);
        }
        IssuerAnswer::Approved { auth_code, balance }
    }

    /// The request ids of the latest reversals received (repeats included), newest first, at
    /// most [`REVERSALS_LISTED_MAX`].
    pub fn recent_reversals(&self) -> Vec<RequestId> {
        self.lock().reversals.iter().rev().cloned().collect()
    }

    /// The clearing file of `date`: what it approved and reversed that day
    /// ([`crate::clearing`]).
    pub fn clearing_csv(&self, date: kassa_domain::CivilDate) -> String {
        self.lock().clearing.csv(date)
    }

    /// The current balance of a test card with a balance (tests and the demo).
    pub fn balance_minor(&self, pan: &str) -> Option<i64> {
        self.lock().cards.get(pan).and_then(|card| card.balance_minor)
    }
}

/// The PIN rule: three wrong in a row lock the PIN for [`PIN_LOCK_MS`]; a right one resets the
/// count. A request without a PIN block is not checked.
fn check_pin(card: &mut CardState, request: &AuthoriseRequest, zone_pin_key: &TdesKey, now_ms: i64) -> Option<Decline> {
    let block = request.pin_block.as_ref()?;
    match card.locked_until_ms {
        Some(until) if now_ms < until => return Some(Decline::PinTriesExceeded),
        Some(_) => {
            card.locked_until_ms = None;
            card.wrong_pins = 0;
        }
        None => {}
    }
    let Ok(expected) = Pin::parse(SIMULATOR_PIN) else { return Some(Decline::DoNotHonour) };
    match verify_pin_block(zone_pin_key, block, request.pan.expose_digits(), &expected) {
        Ok(verdict) if verdict.is_match() => {
            card.wrong_pins = 0;
            None
        }
        Ok(_) => {
            card.wrong_pins += 1;
            if card.wrong_pins >= PIN_TRIES_MAX {
                card.locked_until_ms = Some(now_ms + PIN_LOCK_MS);
                Some(Decline::PinTriesExceeded)
            } else {
                Some(Decline::WrongPin)
            }
        }
        Err(_) => Some(Decline::PinBlockError),
    }
}

#[async_trait]
impl IssuerConnector for IssuerSimulator {
    async fn authorise(&self, request: &AuthoriseRequest) -> Result<IssuerAnswer, IssuerError> {
        if self.no_answer(request) {
            // The issuer that never answers: the host's issuer timeout decides.
            std::future::pending::<()>().await;
        }
        Ok(self.decide(request))
    }

    async fn reverse(&self, request_id: &RequestId) -> Result<(), IssuerError> {
        let now_ms = self.clock.now_ms();
        let mut state = self.lock();
        state.reversals.push_back(request_id.clone());
        if state.reversals.len() > REVERSALS_LISTED_MAX {
            state.reversals.pop_front();
        }
        let key = RequestKey::of(request_id);
        match state.requests.get(&key).cloned() {
            Some(RequestRecord::Reversed) => {}
            Some(RequestRecord::Approved { pan, held_minor, balance: reported, .. }) => {
                if let Some(balance) = state.cards.get_mut(pan).and_then(|card| card.balance_minor.as_mut()) {
                    *balance += held_minor;
                }
                let currency = reported.map_or(kassa_domain::Currency::CNY, |money| money.currency());
                state.clearing.reversed(request_id, Money::from_minor(held_minor, currency), now_ms);
                state.remember(key, RequestRecord::Reversed);
            }
            None => state.remember(key, RequestRecord::Reversed),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! The host's card side for the back office ([`kassa_web::card_probe::CardProbe`]): a card test
//! transaction (模拟交易) run as one of a merchant's terminals against this host's own ISO 8583
//! gateway, and the sealed secrets of a terminal added from the pages. It holds what the pages
//! never do: the master key and the gateway's address.
//!
//! A card test is what a terminal does, through the terminal's own client (kassa-terminal's
//! [`Link`]): the TMK unsealed as the gateway unseals it (context `tmk:<terminal>`, the seed's),
//! a sign-in (0800) for working keys, a sale (0200) with one of the issuer simulator's test
//! cards and its PIN, MAC'd under the working MAC key, and, when approved, cancelled at once —
//! voided (0200 `200000`), or reversed (0400) on a terminal whose refund password the host
//! enforces (a void there needs a one-time approval that only the refund password gives). A
//! sale that gets no answer is reversed, as a terminal must. The sale and the void are marked
//! as tests as soon as their answers came (`out_trade_no` `TEST…`), so deposit volumes never count
//! them.
//!
//! Two limits keep the test off the terminal's way: tests take turns within a process (each signs
//! the terminal in, which replaces its working keys: its next request is answered `A0` and it
//! signs in again, as Kassa's terminal does by itself), and the STANs are chosen
//! [`STAN_DISTANCE`] away from the terminal's latest own one, so its next requests in the same
//! batch cannot meet a test's identity.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_crypto::{MasterKey, SealedSecret, TdesKey};
use kassa_store::terminals_admin::mark_card_test;
use kassa_store::{CardIdentity, RefundPasswordMode, Store, WriteUnit};
use kassa_terminal::link::{
    icc_data, Answer, Card, CardData, ClientError, IccRead, Link, Original, TerminalIdentity, CRYPTOGRAM_ARQC, STAN_MAX,
};
use kassa_web::card_probe::{
    CardProbe, CardRequestRef, CardRun, CardStep, CardStepKind, CardTest, ProbeError, ProbeFuture, TerminalSecrets,
    TestCard,
};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::seed::{tmk_context, tms_context};

/// How long one exchange with the gateway may take: longer than the gateway's issuer timeout
/// (10 s), so a slow issuer's answer (`98`) still arrives.
pub const EXCHANGE_TIMEOUT_MS: u64 = 12_000;
/// How far a test's STANs are from the terminal's latest own STAN (half the counter).
pub const STAN_DISTANCE: u32 = 500_000;
/// Candidate STAN pairs tried before giving up (each costs two indexed reads).
const STAN_TRIES_MAX: u32 = 32;
/// The operator code of field 63 (the gateway does not check it on a sale or void).
const PROBE_OPERATOR: &str = "00";
/// Characters of a link error kept in a step.
const ERROR_CHARS_MAX: usize = 200;
/// Field 39 of a reversal that cancels an approved sale on purpose (其他原因).
const REVERSAL_REASON_CANCEL: &str = "06";
/// Field 39 of a reversal of a sale whose answer never came.
const REVERSAL_REASON_NO_ANSWER: &str = "98";

/// The test cards' numbers and expiries, from the issuer simulator's table.
fn card_numbers(card: TestCard) -> Option<(&'static str, &'static str, bool)> {
    let pan = match card {
        TestCard::Approved => "6222021234567890128",
        TestCard::Chip => "6222021234567890177",
        TestCard::Expired => "6222021234567890144",
        TestCard::Lost => "6222021234567890151",
    };
    let known = kassa_issuer::TEST_CARDS.iter().find(|known| known.pan == pan)?;
    Some((known.pan, known.expiry, known.service_code.starts_with('2')))
}

/// The host's [`CardProbe`].
pub struct HostCardProbe {
    store: Store,
    master_key: Arc<MasterKey>,
    gateway: Option<SocketAddr>,
    /// One card test at a time in this process.
    turn: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for HostCardProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCardProbe").field("gateway", &self.gateway).finish_non_exhaustive()
    }
}

impl HostCardProbe {
    /// The probe of a host whose gateway listens on `gateway` (`None`: no gateway a plain TCP
    /// terminal can reach). An unspecified listening address (`0.0.0.0`, `::`) is reached on
    /// loopback.
    pub fn new(store: Store, master_key: Arc<MasterKey>, gateway: Option<SocketAddr>) -> HostCardProbe {
        let gateway = gateway.map(|addr| match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
            IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
            _ => addr,
        });
        HostCardProbe { store, master_key, gateway, turn: tokio::sync::Mutex::new(()) }
    }

    async fn run(&self, test: &CardTest) -> Result<CardRun, ProbeError> {
        let addr = self.gateway.ok_or(ProbeError::NoGateway)?;
        let _turn = self.turn.try_lock().map_err(|_| ProbeError::Busy)?;
        let terminal = self.store.directory.terminal(&test.terminal_id).await?.ok_or(ProbeError::UnknownTerminal)?;
        if terminal.status != "active" {
            return Err(ProbeError::TerminalDisabled);
        }
        let (pan, expiry, chip) =
            card_numbers(test.card).ok_or_else(|| ProbeError::Seal("not a test card of the simulator".into()))?;
        let mut run = Recorder { started: Instant::now(), out: CardRun { steps: Vec::new(), sale: None, void: None } };

        // 1. The TMK, as the gateway opens it.
        let tmk = SealedSecret::from_bytes(&terminal.tmk_sealed)
            .and_then(|sealed| self.master_key.open_tdes_key(&sealed, &tmk_context(&terminal.terminal_id)));
        let tmk = match tmk {
            Ok(tmk) => {
                run.step(CardStepKind::Keys);
                tmk
            }
            Err(error) => {
                run.step(CardStepKind::Keys).error = Some(error.to_string());
                return Ok(run.out);
            }
        };
        let identity = TerminalIdentity {
            terminal_id: terminal.terminal_id.clone(),
            merchant_id: terminal.merchant_id.clone(),
            operator: PROBE_OPERATOR.into(),
            tmk,
        };
        let mut link = Link::new(addr, identity, 0, Duration::from_millis(EXCHANGE_TIMEOUT_MS));

        // 2. Sign-in: the working keys and the open batch.
        let sign_in_stan = 1 + rand::random::<u32>() % STAN_MAX;
        let signed_in = link.sign_in_at(sign_in_stan).await;
        let step = run.step(CardStepKind::SignIn);
        step.mti = "0800".into();
        step.stan = Some(sign_in_stan);
        match signed_in {
            Ok(answer) => {
                describe(step, &answer);
                step.batch = Some(link.batch());
            }
            Err(error) => {
                // A refused sign-in names its code ("answered 97").
                step.error = Some(bounded(&error));
                return Ok(run.out);
            }
        }
        let batch = link.batch();
        let (sale_stan, void_stan) = self.free_stans(&terminal.terminal_id, batch).await?;

        // 3. The sale, with the card's PIN, as the terminal's reader gives the card.
        let card = if chip {
            let read = IccRead {
                amount_minor: test.amount_minor,
                transaction_type: 0x00,
                date_yymmdd: today_yymmdd(),
                atc: u16::try_from(sale_stan % 65_536).unwrap_or(0),
                unpredictable_number: rand::random(),
                cryptogram_information: CRYPTOGRAM_ARQC,
            };
            CardData::Chip {
                pan: pan.into(),
                expiry_yymm: expiry.into(),
                contactless: false,
                icc: icc_data(pan, &read),
            }
        } else {
            CardData::Swiped(Card { pan: pan.into(), expiry_yymm: expiry.into() })
        };
        let pan_masked = kassa_domain::Pan::parse(pan).map(|pan| pan.masked()).ok();
        let sale = match link.sale_at(sale_stan, test.amount_minor, &card, Some(kassa_issuer::SIMULATOR_PIN)) {
            Ok(sale) => sale,
            Err(error) => {
                let step = run.step(CardStepKind::Sale);
                step.error = Some(bounded(&error));
                return Ok(run.out);
            }
        };
        let answered = link.exchange(&sale).await;
        let step = run.step(CardStepKind::Sale);
        step.mti = "0200".into();
        step.batch = Some(batch);
        step.stan = Some(sale_stan);
        step.pan_masked.clone_from(&pan_masked);
        let sale_answer = match answered {
            Ok(answer) => {
                describe(step, &answer);
                answer
            }
            Err(error) => {
                let sent = !error.not_sent();
                step.error = Some(bounded(&error));
                if sent {
                    run.out.sale = Some(CardRequestRef { batch, stan: sale_stan });
                    self.mark(&terminal.terminal_id, batch, sale_stan, &test.run_id).await;
                    // The terminal's duty: reverse what may have been approved.
                    let reversal = Link::reversal_of(&sale, pan, REVERSAL_REASON_NO_ANSWER);
                    self.reverse(&mut run, &mut link, &reversal, batch, sale_stan, pan_masked).await;
                }
                return Ok(run.out);
            }
        };
        run.out.sale = Some(CardRequestRef { batch, stan: sale_stan });
        self.mark(&terminal.terminal_id, batch, sale_stan, &test.run_id).await;
        if !sale_answer.approved() {
            return Ok(run.out);
        }

        // 4. Cancelled at once, so the test moves no money.
        if terminal.refund_password_mode == RefundPasswordMode::Host {
            let reversal = Link::reversal_of(&sale, pan, REVERSAL_REASON_CANCEL);
            self.reverse(&mut run, &mut link, &reversal, batch, sale_stan, pan_masked).await;
            return Ok(run.out);
        }
        let original = Original {
            rrn: sale_answer.rrn().to_owned(),
            auth_code: sale_answer.auth_code().to_owned(),
            batch,
            stan: sale_stan,
            date_mmdd: <[u8; 4]>::try_from(sale_answer.date().as_bytes()).ok(),
        };
        let void = link.void_at(void_stan, test.amount_minor, &original, None);
        run.out.void = Some(CardRequestRef { batch, stan: void_stan });
        let mut kind = CardStepKind::Void;
        let mut request = void.clone();
        loop {
            let answered = link.exchange(&request).await;
            let step = run.step(kind);
            step.mti = request.mti().as_str().to_owned();
            step.batch = Some(batch);
            step.stan = Some(void_stan);
            step.pan_masked.clone_from(&pan_masked);
            match answered {
                Ok(answer) => {
                    describe(step, &answer);
                    break;
                }
                // Sent, no answer: once more as a retransmission, which the host answers as it
                // answered the first if it got it (a reversal would re-instate the sale).
                Err(error) if !error.not_sent() && kind == CardStepKind::Void => {
                    step.error = Some(bounded(&error));
                    kind = CardStepKind::VoidRepeat;
                    request = Link::repeat_of(&void);
                }
                Err(error) => {
                    step.error = Some(bounded(&error));
                    break;
                }
            }
        }
        self.mark(&terminal.terminal_id, batch, void_stan, &format!("{}V", test.run_id)).await;
        Ok(run.out)
    }

    /// Sends `reversal` (of the sale at `stan`) and records it.
    async fn reverse(
        &self,
        run: &mut Recorder,
        link: &mut Link,
        reversal: &kassa_terminal::link::Message,
        batch: u32,
        stan: u32,
        pan_masked: Option<String>,
    ) {
        let answered = link.exchange(reversal).await;
        let step = run.step(CardStepKind::Reversal);
        step.mti = "0400".into();
        step.batch = Some(batch);
        step.stan = Some(stan);
        step.pan_masked = pan_masked;
        match answered {
            Ok(answer) => describe(step, &answer),
            Err(error) => step.error = Some(bounded(&error)),
        }
    }

    /// Marks the card request at (`batch`, `stan`) as a test. A failure is logged, never
    /// allowed to stop the test half-way: the void that follows matters more than the mark (a
    /// voided sale counts in no volume either).
    async fn mark(&self, terminal_id: &str, batch: u32, stan: u32, out_trade_no: &str) {
        let Ok(identity) = CardIdentity::new(terminal_id, batch, stan, "020") else {
            tracing::warn!(terminal = %terminal_id, batch, stan, "a card test's request has no valid identity");
            return;
        };
        let op = mark_card_test(&identity, out_trade_no, now_ms());
        if let Err(error) = self.store.commit(WriteUnit::ops(vec![op])).await {
            tracing::warn!(%error, terminal = %terminal_id, batch, stan, "cannot mark a card test's request as a test");
        }
    }

    /// Two consecutive STANs unused in `batch`, [`STAN_DISTANCE`] after the terminal's latest
    /// own one.
    async fn free_stans(&self, terminal_id: &str, batch: u32) -> Result<(u32, u32), ProbeError> {
        let latest = self.store.terminals_admin().latest_stan(terminal_id).await?.unwrap_or(0);
        let mut stan = wrap(latest.saturating_add(STAN_DISTANCE));
        for _ in 0..STAN_TRIES_MAX {
            let next = wrap(stan + 1);
            if self.unused(terminal_id, batch, stan).await? && self.unused(terminal_id, batch, next).await? {
                return Ok((stan, next));
            }
            stan = wrap(stan + 2);
        }
        Err(ProbeError::Busy)
    }

    async fn unused(&self, terminal_id: &str, batch: u32, stan: u32) -> Result<bool, ProbeError> {
        // An identity that does not parse could not be sent either.
        let Ok(identity) = CardIdentity::new(terminal_id, batch, stan, "020") else { return Ok(false) };
        Ok(self.store.txns.txn_by_card_identity(&identity).await?.is_none())
    }
}

/// A STAN in 1 ..= [`STAN_MAX`], counting on from `stan` past the wrap.
fn wrap(stan: u32) -> u32 {
    (stan.saturating_sub(1) % STAN_MAX) + 1
}

/// Today as `YYMMDD` digits (UTC), for 9A of a chip read.
fn today_yymmdd() -> [u8; 6] {
    let date = kassa_domain::CivilDate::at(now_ms(), 0).compact();
    let mut out = [b'0'; 6];
    if let Some(digits) = date.as_bytes().get(2..8) {
        out.copy_from_slice(digits);
    }
    out
}

fn bounded(error: &ClientError) -> String {
    error.to_string().chars().take(ERROR_CHARS_MAX).collect()
}

/// The answer's facts into `step`.
fn describe(step: &mut CardStep, answer: &Answer) {
    let code = answer.code().to_owned();
    step.meaning = Some((
        kassa_terminal::meaning(&code, kassa_terminal::Lang::En),
        kassa_terminal::meaning(&code, kassa_terminal::Lang::Zh),
    ));
    step.code = Some(code);
    step.rrn = Some(answer.rrn().to_owned()).filter(|rrn| !rrn.is_empty());
    step.auth_code = Some(answer.auth_code().to_owned()).filter(|code| !code.is_empty());
    step.mac_verified = answer.mac_verified;
}

/// The steps of a run with their times.
struct Recorder {
    started: Instant,
    out: CardRun,
}

impl Recorder {
    /// A new step, ended now.
    fn step(&mut self, kind: CardStepKind) -> &mut CardStep {
        let elapsed_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.out.steps.push(CardStep::new(kind, elapsed_ms));
        let last = self.out.steps.len() - 1;
        &mut self.out.steps[last]
    }
}

impl CardProbe for HostCardProbe {
    fn card_test<'a>(&'a self, test: &'a CardTest) -> ProbeFuture<'a, Result<CardRun, ProbeError>> {
        Box::pin(self.run(test))
    }

    fn new_terminal_secrets(&self, terminal_id: &str) -> Result<TerminalSecrets, ProbeError> {
        seal_terminal_secrets(&self.master_key, terminal_id)
    }
}

/// A random double-length TMK and a random TMS credential for `terminal_id`, sealed under
/// `master_key` with the seed's contexts (`tmk:<terminal>`, `tms:<terminal>`), so the gateway and
/// TMS open them as they open the demo terminals'.
pub fn seal_terminal_secrets(master_key: &MasterKey, terminal_id: &str) -> Result<TerminalSecrets, ProbeError> {
    let mut rng = rand::rngs::OsRng;
    let tmk = TdesKey::generate_double(&mut rng);
    let mut credential = Zeroizing::new([0_u8; crate::demo::SECRET_BYTES]);
    rng.fill_bytes(credential.as_mut_slice());
    let tms_credential = Zeroizing::new(hex::encode(credential.as_slice()));
    let seal_error = |error: kassa_crypto::SealError| ProbeError::Seal(error.to_string());
    let tmk_sealed = master_key.seal_tdes_key(&tmk, &tmk_context(terminal_id), &mut rng).map_err(seal_error)?;
    let tms_sealed =
        master_key.seal(tms_credential.as_bytes(), &tms_context(terminal_id), &mut rng).map_err(seal_error)?;
    let check_value = tmk.check_value().to_string();
    Ok(TerminalSecrets {
        tmk_hex: Zeroizing::new(hex::encode_upper(tmk.expose_secret())),
        tmk_check_value: check_value.chars().take(6).collect(),
        tms_credential,
        tmk_sealed: tmk_sealed.as_bytes().to_vec(),
        tms_sealed: tms_sealed.as_bytes().to_vec(),
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_card_is_a_card_of_the_simulator() {
        for card in TestCard::ALL {
            let (pan, expiry, _) = card_numbers(card).unwrap();
            assert!(kassa_domain::Pan::parse(pan).is_ok(), "{pan}");
            assert_eq!(expiry.len(), 4);
        }
        assert!(card_numbers(TestCard::Chip).unwrap().2, "the chip card has a chip");
        assert!(!card_numbers(TestCard::Approved).unwrap().2);
    }

    #[test]
    fn stans_wrap_within_the_counter() {
        assert_eq!(wrap(1), 1);
        assert_eq!(wrap(STAN_MAX), STAN_MAX);
        assert_eq!(wrap(STAN_MAX + 1), 1);
        assert_eq!(wrap(0), 1);
        assert_eq!(wrap(600_000 + STAN_DISTANCE), 100_001);
    }

    #[test]
    fn new_secrets_open_under_the_seeds_contexts() {
        let master_key = MasterKey::generate(&mut rand::rngs::OsRng);
        let secrets = seal_terminal_secrets(&master_key, "10000009").unwrap();
        let tmk = master_key
            .open_tdes_key(&SealedSecret::from_bytes(&secrets.tmk_sealed).unwrap(), &tmk_context("10000009"))
            .unwrap();
        assert_eq!(hex::encode_upper(tmk.expose_secret()), *secrets.tmk_hex);
        assert!(tmk.has_odd_parity());
        assert_eq!(secrets.tmk_check_value, tmk.check_value().to_string()[..6]);
        let credential =
            master_key.open(&SealedSecret::from_bytes(&secrets.tms_sealed).unwrap(), &tms_context("10000009")).unwrap();
        assert_eq!(credential.expose_secret(), secrets.tms_credential.as_bytes());
        assert_eq!(secrets.tms_credential.len(), 64);
        // Bound to the terminal: another terminal's context does not open them.
        assert!(master_key
            .open_tdes_key(&SealedSecret::from_bytes(&secrets.tmk_sealed).unwrap(), &tmk_context("10000001"))
            .is_err());
        let other = seal_terminal_secrets(&master_key, "10000009").unwrap();
        assert_ne!(*other.tmk_hex, *secrets.tmk_hex);
    }
}

//! The terminal's ISO 8583 link to the host (docs/reference/iso8583.md): one TCP connection, one
//! request at a time, the UnionPay packed-BCD dialect, working keys from sign-in, PIN blocks under
//! the PIN key and X9.19 MACs under the MAC key on requests, every answer's MAC checked.
//!
//! It builds requests the way a UnionPay POS does and knows nothing of journals or load: the
//! terminal core ([`crate::Terminal`]) and `kassa bench` both talk to the host through it. The
//! builders that end in `_at` take the STAN the caller reserved (the terminal journals it first);
//! the others take the next one from the link's own counter (the bench).
//!
//! A connection that fails is dropped and the next exchange opens a new one; the working keys
//! stay (the host keeps them across connections).

use std::net::SocketAddr;
use std::time::Duration;

use kassa_crypto::{encrypt_pin_block, unwrap_working_keys, x9_19_mac, Pin, TdesKey, WorkingKeys};
use kassa_iso8583::fields::{BatchUploadCount, Field60, Field61};
use kassa_iso8583::frame::{encode_frame, encode_frame_with_mac, frame_length, Envelope, Frame, Tpdu};
use kassa_iso8583::{Mti, UNIONPAY};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub use kassa_iso8583::fields::{Balance, SettlementTotals, Totals};
pub use kassa_iso8583::Message;

/// The envelope this client sends: TPDU to NII 0001 from 0002, a UnionPay-style header.
pub const ENVELOPE: Envelope =
    Envelope { tpdu: Tpdu { destination: [0, 1], source: [0, 2] }, header: [0x60, 0x31, 0, 0x31, 0, 0] };

/// Largest STAN (n6); the next one wraps to 1.
pub const STAN_MAX: u32 = 999_999;

/// Field 53: PIN format 0 with PAN, double-length 3DES.
const SECURITY_CONTROL: &str = "2600000000000000";

/// Field 23 of a chip read: the test cards are each the first card on their account.
const CARD_SEQUENCE_NUMBER: &str = "001";

/// The facts of one chip or contactless read that go into its ICC data (field 55).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IccRead {
    /// 9F02, the amount authorised in minor units (0 for a balance inquiry).
    pub amount_minor: u64,
    /// 9C, the transaction type: `0x00` goods and services, `0x31` balance inquiry.
    pub transaction_type: u8,
    /// 9A, the terminal's date as `YYMMDD` digits.
    pub date_yymmdd: [u8; 6],
    /// 9F36, the card's application transaction counter.
    pub atc: u16,
    /// 9F37, the terminal's unpredictable number.
    pub unpredictable_number: [u8; 4],
    /// 9F27 `0x80` (ARQC: go online) or `0x40` (TC: approved offline by the card).
    pub cryptogram_information: u8,
}

/// 9F27 of an online request: an authorisation request cryptogram.
pub const CRYPTOGRAM_ARQC: u8 = 0x80;
/// 9F27 of a sale the card approved offline: a transaction certificate.
pub const CRYPTOGRAM_TC: u8 = 0x40;

/// The ICC data (field 55) a simulated UnionPay chip card gives for `read`: 9F26 cryptogram,
/// 9F27, 9F10 issuer application data, 9F37, 9F36, 95 TVR, 9A, 9C, 9F02, 5F2A (156), 82 AIP and
/// 9F1A (156), in minimal BER-TLV. The test cards hold no issuer key: the cryptogram is the first
/// 8 bytes of SHA-256 over the PAN and the data it covers, so it changes with every read and the
/// host (which checks no cryptogram of the demo issuer) sees a well-formed value.
pub fn icc_data(pan: &str, read: &IccRead) -> Vec<u8> {
    use kassa_iso8583::tlv::{build, Tag, Tlv};
    use sha2::{Digest, Sha256};

    let amount = bcd(&format!("{:012}", read.amount_minor.min(999_999_999_999)));
    let date = bcd(&String::from_utf8_lossy(&read.date_yymmdd));
    let atc = read.atc.to_be_bytes();
    let country_and_currency = [0x01, 0x56];
    let tvr = [0_u8; 5];
    let aip = [0x7C, 0x00];
    // Issuer application data as UnionPay cards format it: length, key index, version, CVR.
    let iad = [0x07, 0x01, 0x01, 0x03, 0xA0, 0x00, 0x00, 0x00];
    let mut covered = Sha256::new();
    covered.update(pan.as_bytes());
    covered.update(&amount);
    covered.update(country_and_currency);
    covered.update(tvr);
    covered.update(&date);
    covered.update([read.transaction_type]);
    covered.update(read.unpredictable_number);
    covered.update(aip);
    covered.update(atc);
    covered.update([read.cryptogram_information]);
    let digest = covered.finalize();
    let cryptogram = &digest[..8];
    let items: Vec<(u32, &[u8])> = vec![
        (0x9F26, cryptogram),
        (0x9F27, std::slice::from_ref(&read.cryptogram_information)),
        (0x9F10, &iad),
        (0x9F37, &read.unpredictable_number),
        (0x9F36, &atc),
        (0x95, &tvr),
        (0x9A, &date),
        (0x9C, std::slice::from_ref(&read.transaction_type)),
        (0x9F02, &amount),
        (0x5F2A, &country_and_currency),
        (0x82, &aip),
        (0x9F1A, &country_and_currency),
    ];
    let tlvs: Vec<Tlv<'_>> =
        items.into_iter().filter_map(|(tag, value)| Tag::new(tag).map(|tag| Tlv { tag, value })).collect();
    let mut out = Vec::with_capacity(96);
    // Every value above is under 128 bytes: building cannot fail; an empty field 55 would be
    // refused by the host as a format error rather than go unnoticed.
    if build(&tlvs, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Packs decimal digits two to a byte (an even count; anything else packs as 0).
fn bcd(digits: &str) -> Vec<u8> {
    digits
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |byte: Option<&u8>| byte.map_or(0, |b| b.wrapping_sub(b'0') & 0x0F);
            (digit(pair.first()) << 4) | digit(pair.get(1))
        })
        .collect()
}

/// What can go wrong talking to the host. Declines are not errors: they are answers.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be opened: nothing of the request left the terminal.
    #[error("the host cannot be reached: {0}")]
    NotSent(std::io::Error),
    /// Writing or reading failed, or the host closed the connection, after the request may have
    /// left.
    #[error("connection to the host failed: {0}")]
    Io(#[from] std::io::Error),
    /// No complete answer within the exchange timeout.
    #[error("no answer from the host within {0} ms")]
    Timeout(u64),
    /// The request could not be encoded (a caller bug or an oversized field).
    #[error("cannot encode the request: {0}")]
    Encode(#[from] kassa_iso8583::EncodeError),
    /// The answer is not a well-formed frame or message.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The answer does not belong to the request (MTI, STAN or TID differ).
    #[error("the answer does not match the request: {0}")]
    Mismatch(String),
    /// The answer's MAC does not verify under the working MAC key.
    #[error("the answer's MAC does not verify")]
    BadMac,
    /// A request that needs working keys was built before a successful sign-in.
    #[error("not signed in")]
    NotSignedIn,
    /// Sign-in was declined (field 39) or its working keys could not be unwrapped.
    #[error("sign-in failed: {0}")]
    SignIn(String),
    /// A PIN or PAN the PIN block cannot be built from.
    #[error("cannot build the PIN block: {0}")]
    Pin(String),
}

impl ClientError {
    /// Whether the request certainly never reached the host (so it can be sent again as new, and
    /// needs no reversal).
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            ClientError::NotSent(_)
                | ClientError::Encode(_)
                | ClientError::NotSignedIn
                | ClientError::Pin(_)
                | ClientError::SignIn(_)
        )
    }
}

/// Who the terminal is.
#[derive(Clone)]
pub struct TerminalIdentity {
    /// Field 41, 8 characters.
    pub terminal_id: String,
    /// Field 42, 15 characters.
    pub merchant_id: String,
    /// Operator code for field 63, 2 characters (sent padded to 3).
    pub operator: String,
    /// The terminal master key that wraps the working keys of field 62.
    pub tmk: TdesKey,
}

impl std::fmt::Debug for TerminalIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalIdentity")
            .field("terminal_id", &self.terminal_id)
            .field("merchant_id", &self.merchant_id)
            .field("operator", &self.operator)
            .finish_non_exhaustive()
    }
}

/// A swiped magnetic-stripe card (track 2 `PAN=YYMM101…`, service code 101).
#[derive(Clone)]
pub struct Card {
    /// PAN digits.
    pub pan: String,
    /// Expiry YYMM.
    pub expiry_yymm: String,
}

impl Card {
    /// Track 2 equivalent data as the terminal reads it.
    pub fn track2(&self) -> String {
        format!("{}={}1010000000000", self.pan, self.expiry_yymm)
    }
}

/// `622202***0128`: the first 6 and last 4 digits (`***` for anything shorter than 10).
pub fn mask_pan(pan: &str) -> String {
    match (pan.get(..6), pan.len().checked_sub(4).and_then(|end| pan.get(end..))) {
        (Some(first), Some(last)) if pan.len() >= 10 => format!("{first}***{last}"),
        _ => "***".to_owned(),
    }
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Card").field("pan", &mask_pan(&self.pan)).finish_non_exhaustive()
    }
}

/// How the card data reaches a request.
#[derive(Clone)]
pub enum CardData {
    /// Swiped: track 2 in 35, entry mode `02x`.
    Swiped(Card),
    /// Keyed: the PAN in 2 and, when known, the expiry in 14; entry mode `01x`.
    Keyed {
        /// PAN digits.
        pan: String,
        /// `YYMM`, when known.
        expiry_yymm: Option<String>,
    },
    /// Read from the chip, inserted (`05x`) or tapped (`07x`): the PAN in 2, the expiry in 14,
    /// the card sequence number in 23 and the card's ICC data (BER-TLV, see [`icc_data`]) in 55.
    Chip {
        /// PAN digits.
        pan: String,
        /// `YYMM`.
        expiry_yymm: String,
        /// Tapped rather than inserted.
        contactless: bool,
        /// Field 55 as the card produced it.
        icc: Vec<u8>,
    },
}

impl CardData {
    /// The PAN digits.
    pub fn pan(&self) -> &str {
        match self {
            CardData::Swiped(card) => &card.pan,
            CardData::Keyed { pan, .. } | CardData::Chip { pan, .. } => pan,
        }
    }

    /// Sets 2 or 35 and 22 (`…1` with a PIN, `…2` without).
    fn write(&self, request: &mut Message, with_pin: bool) {
        let pin_digit = if with_pin { '1' } else { '2' };
        match self {
            CardData::Swiped(card) => {
                request.set(35, card.track2()).set(22, format!("02{pin_digit}"));
            }
            CardData::Keyed { pan, expiry_yymm } => {
                request.set(2, pan.as_str()).set(22, format!("01{pin_digit}"));
                if let Some(expiry) = expiry_yymm {
                    request.set(14, expiry.as_str());
                }
            }
            CardData::Chip { pan, expiry_yymm, contactless, icc } => {
                let mode = if *contactless { "07" } else { "05" };
                request
                    .set(2, pan.as_str())
                    .set(14, expiry_yymm.as_str())
                    .set(22, format!("{mode}{pin_digit}"))
                    .set(23, CARD_SEQUENCE_NUMBER)
                    .set(55, icc.clone());
            }
        }
    }
}

impl std::fmt::Debug for CardData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entry = match self {
            CardData::Swiped(_) => "swiped",
            CardData::Keyed { .. } => "keyed",
            CardData::Chip { contactless: false, .. } => "chip",
            CardData::Chip { contactless: true, .. } => "contactless",
        };
        f.debug_struct("CardData").field("entry", &entry).field("pan", &mask_pan(self.pan())).finish()
    }
}

/// The sale a void or refund names (fields 37, 38 and 61).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// Field 37 of its approval.
    pub rrn: String,
    /// Field 38 of its approval (voids; empty when unknown).
    pub auth_code: String,
    /// 61.1 (zero when unknown: refunds).
    pub batch: u32,
    /// 61.2 (zero when unknown: refunds).
    pub stan: u32,
    /// 61.3, `MMDD` (field 13 of its approval), when known.
    pub date_mmdd: Option<[u8; 4]>,
}

/// A response and whether it carried a MAC that verified (an answer with a wrong MAC is an error,
/// never an `Answer`).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The decoded response.
    pub message: Message,
    /// Whether field 64 was present (and verified).
    pub mac_verified: bool,
}

impl Answer {
    /// Field 39, empty when absent.
    pub fn code(&self) -> &str {
        self.message.field_str(39).unwrap_or("")
    }

    /// Whether the host approved (`00`).
    pub fn approved(&self) -> bool {
        self.code() == "00"
    }

    /// Field 37, empty when absent.
    pub fn rrn(&self) -> &str {
        self.message.field_str(37).unwrap_or("")
    }

    /// Field 38, empty when absent.
    pub fn auth_code(&self) -> &str {
        self.message.field_str(38).unwrap_or("")
    }

    /// Field 13 (`MMDD`), empty when absent.
    pub fn date(&self) -> &str {
        self.message.field_str(13).unwrap_or("")
    }

    /// 60.2 of the answer: the batch the host considers open (sign-in, batch close).
    pub fn batch(&self) -> Option<u32> {
        self.message.typed::<Field60>().ok().flatten().map(|field| field.batch_number)
    }

    /// Field 48 of a 0510: the host's totals with its settle code.
    pub fn settlement_totals(&self) -> Option<SettlementTotals> {
        self.message.typed::<SettlementTotals>().ok().flatten()
    }

    /// Field 54 of a balance inquiry's approval.
    pub fn balance(&self) -> Option<Balance> {
        self.message.typed::<Balance>().ok().flatten()
    }
}

struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

/// One terminal's link to the host.
pub struct Link {
    addr: SocketAddr,
    identity: TerminalIdentity,
    connection: Option<Connection>,
    keys: Option<WorkingKeys>,
    batch: u32,
    stan: u32,
    exchange_timeout: Duration,
    wire: Vec<u8>,
    frame: Vec<u8>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("terminal_id", &self.identity.terminal_id)
            .field("batch", &self.batch)
            .field("stan", &self.stan)
            .field("connected", &self.connection.is_some())
            .field("signed_in", &self.keys.is_some())
            .finish_non_exhaustive()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Link {
    /// A link that connects at its first exchange. `stan` is the last STAN used; the next request
    /// built with the link's own counter uses `stan + 1`.
    pub fn new(addr: SocketAddr, identity: TerminalIdentity, stan: u32, exchange_timeout: Duration) -> Link {
        Link {
            addr,
            identity,
            connection: None,
            keys: None,
            batch: 0,
            stan: stan % (STAN_MAX + 1),
            exchange_timeout,
            wire: Vec::with_capacity(512),
            frame: Vec::with_capacity(512),
        }
    }

    /// Connects now (no sign-in yet).
    pub async fn connect(
        addr: SocketAddr,
        identity: TerminalIdentity,
        stan: u32,
        exchange_timeout: Duration,
    ) -> Result<Link, ClientError> {
        let mut link = Link::new(addr, identity, stan, exchange_timeout);
        link.ensure_connected().await?;
        Ok(link)
    }

    async fn ensure_connected(&mut self) -> Result<(), ClientError> {
        if self.connection.is_some() {
            return Ok(());
        }
        let not_sent = |error: std::io::Error| {
            ClientError::NotSent(std::io::Error::new(error.kind(), format!("{}: {error}", self.addr)))
        };
        let stream = match tokio::time::timeout(self.exchange_timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(not_sent(error)),
            Err(_) => return Err(not_sent(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))),
        };
        // One small request at a time: Nagle would add its delay to every exchange.
        stream.set_nodelay(true).map_err(not_sent)?;
        let (read, writer) = stream.into_split();
        self.connection = Some(Connection { reader: BufReader::new(read), writer });
        Ok(())
    }

    /// Drops the connection (the next exchange opens a new one); the working keys stay.
    pub fn disconnect(&mut self) {
        self.connection = None;
    }

    /// Forgets the working keys (after a sign-out or a re-initialisation).
    pub fn forget_keys(&mut self) {
        self.keys = None;
    }

    /// Whether the link holds working keys.
    pub fn signed_in(&self) -> bool {
        self.keys.is_some()
    }

    /// Who the terminal is.
    pub fn identity(&self) -> &TerminalIdentity {
        &self.identity
    }

    /// Sets the operator code of field 63.
    pub fn set_operator(&mut self, operator: &str) {
        operator.clone_into(&mut self.identity.operator);
    }

    /// Sets the merchant of field 42.
    pub fn set_merchant(&mut self, merchant_id: &str) {
        merchant_id.clone_into(&mut self.identity.merchant_id);
    }

    /// Field 41.
    pub fn terminal_id(&self) -> &str {
        &self.identity.terminal_id
    }

    /// The batch the terminal considers open (adopted from the host at sign-in and batch close).
    pub fn batch(&self) -> u32 {
        self.batch
    }

    /// Sets the batch of 60.2 (a terminal restoring its journal).
    pub fn set_batch(&mut self, batch: u32) {
        self.batch = batch;
    }

    /// The last STAN used.
    pub fn stan(&self) -> u32 {
        self.stan
    }

    /// Takes the next STAN (1 … 999999, then 1 again).
    pub fn next_stan(&mut self) -> u32 {
        self.stan = next_stan(self.stan);
        self.stan
    }

    /// A request with the fields every request carries: 11, 41, 42 and 60. `mti` is four digits.
    fn base_at(&self, stan: u32, mti: &str, type_code: [u8; 2], network_code: [u8; 3]) -> Message {
        let mut message = Message::with_capacity(literal_mti(mti), 256);
        message.set(11, format!("{stan:06}")).set(41, &self.identity.terminal_id).set(42, &self.identity.merchant_id);
        message.set_typed(&Field60 {
            message_type_code: type_code,
            batch_number: self.batch,
            network_management_code: network_code,
        });
        message
    }

    fn operator_field(&self) -> String {
        format!("{:<3}", self.identity.operator)
    }

    /// Sign-in (0800, 60.3 `003`) under the link's next STAN.
    pub async fn sign_in(&mut self) -> Result<Answer, ClientError> {
        let stan = self.next_stan();
        self.sign_in_at(stan).await
    }

    /// Sign-in (0800, 60.3 `003`): adopts the working keys of field 62 and the batch of 60.2.
    pub async fn sign_in_at(&mut self, stan: u32) -> Result<Answer, ClientError> {
        let mut request = self.base_at(stan, "0800", *b"00", *b"003");
        request.set(63, self.operator_field());
        let answer = self.exchange(&request).await?;
        if !answer.approved() {
            return Err(ClientError::SignIn(format!("answered {}", answer.code())));
        }
        let field_62 = answer.message.field(62).ok_or_else(|| ClientError::SignIn("no field 62".into()))?;
        let keys = unwrap_working_keys(&self.identity.tmk, field_62)
            .map_err(|error| ClientError::SignIn(format!("field 62: {error}")))?;
        let batch = answer.batch().ok_or_else(|| ClientError::SignIn("no batch in 60.2".into()))?;
        self.keys = Some(keys);
        self.batch = batch;
        Ok(answer)
    }

    /// Sign-out (0820, 60.3 `002`): the working keys end.
    pub fn sign_out_at(&self, stan: u32) -> Message {
        self.base_at(stan, "0820", *b"00", *b"002")
    }

    fn pin_block(&self, pan: &str, pin: &str) -> Result<Vec<u8>, ClientError> {
        let pin_key = self.keys.as_ref().ok_or(ClientError::NotSignedIn)?.pin_key();
        let pin = Pin::parse(pin).map_err(|error| ClientError::Pin(error.to_string()))?;
        let block = encrypt_pin_block(pin_key, &pin, pan).map_err(|error| ClientError::Pin(error.to_string()))?;
        Ok(block.as_bytes().to_vec())
    }

    fn set_pin(&self, request: &mut Message, pan: &str, pin: &str) -> Result<(), ClientError> {
        let block = self.pin_block(pan, pin)?;
        request.set(26, "12").set(52, block).set(53, SECURITY_CONTROL);
        Ok(())
    }

    /// A swiped sale (0200, 60.1 `22`) under the link's next STAN, with the PIN block of `pin`.
    pub fn sale(&mut self, amount_minor: u64, card: &Card, pin: &str) -> Result<Message, ClientError> {
        let stan = self.next_stan();
        self.sale_at(stan, amount_minor, &CardData::Swiped(card.clone()), Some(pin))
    }

    /// A sale (0200, 60.1 `22`); with a PIN, its block under the PIN key.
    pub fn sale_at(
        &self,
        stan: u32,
        amount_minor: u64,
        card: &CardData,
        pin: Option<&str>,
    ) -> Result<Message, ClientError> {
        let mut request = self.base_at(stan, "0200", *b"22", *b"000");
        request.set(3, "000000").set(4, format!("{amount_minor:012}")).set(25, "00").set(49, "156");
        card.write(&mut request, pin.is_some());
        if let Some(pin) = pin {
            self.set_pin(&mut request, card.pan(), pin)?;
        }
        request.set(63, self.operator_field());
        Ok(request)
    }

    /// The upload of a sale approved offline (0220, 60.1 `30`) under the STAN it was taken with:
    /// the sale's fields, no PIN.
    pub fn offline_upload_at(&self, stan: u32, amount_minor: u64, card: &CardData) -> Message {
        let mut request = self.base_at(stan, "0220", *b"30", *b"000");
        request.set(3, "000000").set(4, format!("{amount_minor:012}")).set(25, "00").set(49, "156");
        card.write(&mut request, false);
        request.set(63, self.operator_field());
        request
    }

    /// A balance inquiry (0200 / `310000`, 60.1 `01`): card data and PIN, no amount.
    pub fn balance_at(&self, stan: u32, card: &CardData, pin: &str) -> Result<Message, ClientError> {
        let mut request = self.base_at(stan, "0200", *b"01", *b"000");
        request.set(3, "310000").set(25, "00").set(49, "156");
        card.write(&mut request, true);
        self.set_pin(&mut request, card.pan(), pin)?;
        request.set(63, self.operator_field());
        Ok(request)
    }

    /// Field 63 of a void or refund: the operator code, then the host's one-time approval when
    /// the terminal's refund password is enforced by the host.
    fn operator_with_approval(&self, approval: Option<&str>) -> String {
        format!("{}{}", self.operator_field(), approval.unwrap_or(""))
    }

    /// A void (0200 / `200000`, 60.1 `23`) of a sale of the open batch, for its whole amount.
    pub fn void_at(&self, stan: u32, amount_minor: u64, original: &Original, approval: Option<&str>) -> Message {
        let mut request = self.base_at(stan, "0200", *b"23", *b"000");
        request
            .set(3, "200000")
            .set(4, format!("{amount_minor:012}"))
            .set(22, "012")
            .set(25, "00")
            .set(37, &original.rrn)
            .set(49, "156")
            .set(63, self.operator_with_approval(approval));
        if !original.auth_code.is_empty() {
            request.set(38, &original.auth_code);
        }
        request.set_typed(&Field61 {
            original_batch_number: original.batch,
            original_stan: original.stan,
            original_date_mmdd: original.date_mmdd,
        });
        request
    }

    /// A refund (0220 / `200000`, 60.1 `25`) of part or all of an earlier sale.
    pub fn refund_at(&self, stan: u32, amount_minor: u64, original: &Original, approval: Option<&str>) -> Message {
        let mut request = self.base_at(stan, "0220", *b"25", *b"000");
        request
            .set(3, "200000")
            .set(4, format!("{amount_minor:012}"))
            .set(22, "012")
            .set(25, "00")
            .set(37, &original.rrn)
            .set(49, "156")
            .set(63, self.operator_with_approval(approval));
        request.set_typed(&Field61 {
            original_batch_number: original.batch,
            original_stan: original.stan,
            original_date_mmdd: original.date_mmdd,
        });
        request
    }

    /// The reversal (0400) of a request that got no answer (docs/reference/iso8583.md: the
    /// original's fields, its STAN, never track data or a PIN block; the reason in 39, `98` for no
    /// response). `pan` goes in field 2 since the original's track 2 may not be sent.
    pub fn reversal_of(original: &Message, pan: &str, reason: &str) -> Message {
        let mut request = original.clone();
        request.set_mti(literal_mti("0400"));
        for field in [26, 35, 36, 52, 53, 55, 63, 64] {
            request.remove(field);
        }
        if !pan.is_empty() {
            request.set(2, pan);
        }
        request.set(39, reason);
        request
    }

    /// The retransmission of `original`: the repeat MTI (`0201`, `0221`, `0401`), same content.
    pub fn repeat_of(original: &Message) -> Message {
        let mut request = original.clone();
        let mut digits = original.mti().digits();
        digits[3] = b'1';
        if let Some(mti) = Mti::from_bytes(&digits) {
            request.set_mti(mti);
        }
        request.remove(64);
        request
    }

    /// Settlement (0500) of the open batch under the link's next STAN.
    pub fn settlement(&mut self, totals: SettlementTotals) -> Message {
        let stan = self.next_stan();
        self.settlement_at(stan, totals)
    }

    /// Settlement (0500) of the open batch with the terminal's totals (settle code 0).
    pub fn settlement_at(&self, stan: u32, totals: SettlementTotals) -> Message {
        let mut request = self.base_at(stan, "0500", *b"00", *b"201");
        request.set(49, "156").set(63, self.operator_field());
        request.set_typed(&totals);
        request
    }

    /// One batch-upload item (0320, 60.3 `201`, 60.1 the item's own type code): 2, 3, 4, 11,
    /// 22, 37, 38 and 61 naming the transaction by its batch and STAN.
    pub fn batch_item_at(&self, stan: u32, item: &BatchItem) -> Message {
        let mut request = self.base_at(stan, "0320", item.type_code, *b"201");
        request
            .set(3, item.processing_code.as_str())
            .set(4, format!("{:012}", item.amount_minor))
            .set(22, item.entry_mode.as_str());
        if !item.pan.is_empty() {
            request.set(2, item.pan.as_str());
        }
        if !item.rrn.is_empty() {
            request.set(37, item.rrn.as_str());
        }
        if !item.auth_code.is_empty() {
            request.set(38, item.auth_code.as_str());
        }
        request.set_typed(&Field61 {
            original_batch_number: self.batch,
            original_stan: item.stan,
            original_date_mmdd: None,
        });
        request
    }

    /// The end of a batch upload (0320, 60.3 `202`) under the link's next STAN.
    pub fn batch_upload_end(&mut self, count: u16) -> Message {
        let stan = self.next_stan();
        self.batch_upload_end_at(stan, count)
    }

    /// The end of a batch upload (0320, 60.3 `202`) after `count` uploaded transactions.
    pub fn batch_upload_end_at(&self, stan: u32, count: u16) -> Message {
        let mut request = self.base_at(stan, "0320", *b"00", *b"202");
        request.set_typed(&BatchUploadCount(count));
        request
    }

    /// Adopts the batch a 0510 or 0330 answer opened (60.2).
    pub fn adopt_batch(&mut self, answer: &Answer) {
        if let Some(batch) = answer.batch() {
            self.batch = batch;
        }
    }

    /// Sends `request` (with a MAC when its MTI carries one) and reads its answer. Any failure
    /// after the connection is up drops the connection, so a late answer is never taken for the
    /// next request's.
    pub async fn exchange(&mut self, request: &Message) -> Result<Answer, ClientError> {
        self.encode(request)?;
        self.ensure_connected().await?;
        let timeout = self.exchange_timeout;
        let result = match tokio::time::timeout(timeout, self.send_and_read()).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout(millis(timeout))),
        };
        if let Err(error) = result {
            self.connection = None;
            return Err(error);
        }
        let answer = self.decode();
        if answer.is_err() {
            self.connection = None;
        }
        let answer = answer?;
        check_matches(request, &answer.message)?;
        Ok(answer)
    }

    fn encode(&mut self, request: &Message) -> Result<(), ClientError> {
        self.wire.clear();
        if carries_mac(request.mti()) {
            let key = self.keys.as_ref().ok_or(ClientError::NotSignedIn)?.mac_key();
            let mut request = request.clone();
            let mut mac_error = None;
            encode_frame_with_mac(&UNIONPAY, &ENVELOPE, &mut request, &mut self.wire, |mab| {
                match x9_19_mac(key, mab) {
                    Ok(mac) => *mac.as_bytes(),
                    Err(error) => {
                        mac_error = Some(error);
                        [0; 8]
                    }
                }
            })?;
            if mac_error.is_some() {
                return Err(ClientError::NotSignedIn);
            }
        } else {
            encode_frame(&UNIONPAY, &ENVELOPE, request, &mut self.wire)?;
        }
        Ok(())
    }

    async fn send_and_read(&mut self) -> Result<(), ClientError> {
        let Some(connection) = self.connection.as_mut() else {
            return Err(ClientError::NotSent(std::io::Error::new(std::io::ErrorKind::NotConnected, "not connected")));
        };
        connection.writer.write_all(&self.wire).await?;
        let mut prefix = [0_u8; 2];
        connection.reader.read_exact(&mut prefix).await?;
        let length = frame_length(prefix).map_err(|error| ClientError::Malformed(error.to_string()))?;
        self.frame.clear();
        self.frame.extend_from_slice(&prefix);
        self.frame.resize(prefix.len() + length, 0);
        connection.reader.read_exact(&mut self.frame[prefix.len()..]).await?;
        Ok(())
    }

    fn decode(&self) -> Result<Answer, ClientError> {
        let frame = Frame::parse(&self.frame).map_err(|error| ClientError::Malformed(error.to_string()))?;
        if frame.envelope != ENVELOPE.response() {
            return Err(ClientError::Mismatch("envelope not swapped".into()));
        }
        let message =
            UNIONPAY.decode(frame.message_bytes).map_err(|error| ClientError::Malformed(error.to_string()))?;
        let mac_verified = match message.field(64) {
            None => false,
            Some(received) => {
                let key = self.keys.as_ref().ok_or(ClientError::BadMac)?.mac_key();
                let mab =
                    UNIONPAY.mab(frame.message_bytes).map_err(|error| ClientError::Malformed(error.to_string()))?;
                let expected = x9_19_mac(key, mab).map_err(|_| ClientError::BadMac)?;
                if !expected.verify(received) {
                    return Err(ClientError::BadMac);
                }
                true
            }
        };
        Ok(Answer { message, mac_verified })
    }
}

/// A transaction of the batch as a batch upload describes it.
#[derive(Clone)]
pub struct BatchItem {
    /// 60.1 of the item: its own type code (`22` sale, `25` refund, `30` offline sale, …).
    pub type_code: [u8; 2],
    /// Field 3 of the transaction.
    pub processing_code: String,
    /// Field 4.
    pub amount_minor: u64,
    /// Field 22.
    pub entry_mode: String,
    /// The transaction's STAN (61.2).
    pub stan: u32,
    /// PAN digits, empty when unknown.
    pub pan: String,
    /// Field 37, empty when none.
    pub rrn: String,
    /// Field 38, empty when none.
    pub auth_code: String,
}

impl std::fmt::Debug for BatchItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchItem")
            .field("stan", &self.stan)
            .field("amount_minor", &self.amount_minor)
            .field("pan", &mask_pan(&self.pan))
            .finish_non_exhaustive()
    }
}

/// The STAN after `stan` (1 … 999999, then 1 again).
pub fn next_stan(stan: u32) -> u32 {
    if stan >= STAN_MAX {
        1
    } else {
        stan + 1
    }
}

/// An MTI written in this file; every one is four digits.
fn literal_mti(digits: &str) -> Mti {
    match Mti::parse(digits) {
        Ok(mti) => mti,
        Err(_) => unreachable!("MTI literal {digits:?} is not four digits"),
    }
}

/// Requests of MTI 0100, 0200, 0220, 0320, 0400 and 0500 carry a MAC; 0800/0820 do not.
fn carries_mac(mti: Mti) -> bool {
    !matches!(&mti.digits()[..2], b"08")
}

fn check_matches(request: &Message, response: &Message) -> Result<(), ClientError> {
    if request.mti().response() != Some(response.mti()) {
        return Err(ClientError::Mismatch(format!(
            "{} answered by {}",
            request.mti().as_str(),
            response.mti().as_str()
        )));
    }
    for field in [11, 41] {
        if request.field(field) != response.field(field) {
            return Err(ClientError::Mismatch(format!("field {field} differs")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        let identity = TerminalIdentity {
            terminal_id: "10000001".into(),
            merchant_id: "898100000000001".into(),
            operator: "01".into(),
            tmk: TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap(),
        };
        Link::new("127.0.0.1:9".parse().unwrap(), identity, 0, Duration::from_secs(1))
    }

    #[test]
    fn a_card_prints_masked() {
        let card = Card { pan: "6222021234567890128".into(), expiry_yymm: "3012".into() };
        let printed = format!("{card:?}");
        assert!(printed.contains("622202***0128"), "{printed}");
        assert!(!printed.contains("1234567890"), "{printed}");
        assert_eq!(card.track2(), "6222021234567890128=30121010000000000");
        let keyed = format!("{:?}", CardData::Keyed { pan: "6222021234567890128".into(), expiry_yymm: None });
        assert!(keyed.contains("622202***0128") && !keyed.contains("1234567890"), "{keyed}");
        assert_eq!(mask_pan("123"), "***");
    }

    #[test]
    fn network_management_carries_no_mac() {
        assert!(!carries_mac(Mti::parse("0800").unwrap()));
        assert!(!carries_mac(Mti::parse("0820").unwrap()));
        for mti in ["0100", "0200", "0220", "0320", "0400", "0500"] {
            assert!(carries_mac(Mti::parse(mti).unwrap()), "{mti}");
        }
    }

    #[test]
    fn a_repeat_keeps_the_class_and_content() {
        let mut original = Message::new(Mti::parse("0200").unwrap());
        original.set(4, "000000001000").set(11, "000007").set(64, [0_u8; 8]);
        let repeat = Link::repeat_of(&original);
        assert_eq!(repeat.mti().as_str(), "0201");
        assert_eq!(repeat.mti().class(), original.mti().class());
        assert_eq!(repeat.field(4), original.field(4));
        assert!(!repeat.has(64));
    }

    #[test]
    fn a_reversal_carries_no_track_nor_pin() {
        let mut original = Message::new(Mti::parse("0200").unwrap());
        original.set(4, "000000001000").set(35, "6222021234567890128=3012").set(52, [1_u8; 8]).set(53, "26");
        let reversal = Link::reversal_of(&original, "6222021234567890128", "98");
        assert_eq!(reversal.mti().as_str(), "0400");
        assert!(!reversal.has(35) && !reversal.has(52) && !reversal.has(53));
        assert_eq!(reversal.field_str(2), Some("6222021234567890128"));
        assert_eq!(reversal.field_str(39), Some("98"));
    }

    #[test]
    fn voids_and_refunds_name_their_original() {
        let mut link = link();
        link.set_batch(7);
        let original = Original {
            rrn: "000000000042".into(),
            auth_code: "123456".into(),
            batch: 7,
            stan: 3,
            date_mmdd: Some(*b"0612"),
        };
        let void = link.void_at(9, 1234, &original, None);
        assert_eq!(void.mti().as_str(), "0200");
        assert_eq!(void.field_str(3), Some("200000"));
        assert_eq!(void.field_str(37), Some("000000000042"));
        assert_eq!(void.field_str(38), Some("123456"));
        assert_eq!(void.field_str(63), Some("01 "));
        let field61 = void.typed::<Field61>().unwrap().unwrap();
        assert_eq!((field61.original_batch_number, field61.original_stan), (7, 3));
        let refund = link.refund_at(10, 500, &original, Some("abcdef"));
        assert_eq!(refund.mti().as_str(), "0220");
        assert_eq!(refund.field_str(63), Some("01 abcdef"));
        assert_eq!(refund.typed::<Field60>().unwrap().unwrap().message_type_code, *b"25");
    }

    #[test]
    fn an_offline_upload_is_a_sale_without_pin() {
        let link = link();
        let card = CardData::Swiped(Card { pan: "6222021234567890128".into(), expiry_yymm: "3012".into() });
        let upload = link.offline_upload_at(5, 100, &card);
        assert_eq!(upload.mti().as_str(), "0220");
        assert_eq!(upload.field_str(22), Some("022"));
        assert!(!upload.has(52));
        assert_eq!(upload.typed::<Field60>().unwrap().unwrap().message_type_code, *b"30");
    }

    #[test]
    fn a_chip_read_sends_its_entry_mode_and_icc_data() {
        use kassa_iso8583::tlv::{find, parse, Tag};
        let read = IccRead {
            amount_minor: 1234,
            transaction_type: 0x00,
            date_yymmdd: *b"261206",
            atc: 7,
            unpredictable_number: [1, 2, 3, 4],
            cryptogram_information: CRYPTOGRAM_ARQC,
        };
        let icc = icc_data("6222021234567890177", &read);
        let items = parse(&icc).unwrap();
        let tag = |value| Tag::new(value).unwrap();
        assert_eq!(find(&items, tag(0x9F02)), Some(&[0, 0, 0, 0, 0x12, 0x34][..]));
        assert_eq!(find(&items, tag(0x9A)), Some(&[0x26, 0x12, 0x06][..]));
        assert_eq!(find(&items, tag(0x9F27)), Some(&[0x80][..]));
        assert_eq!(find(&items, tag(0x9F36)), Some(&[0, 7][..]));
        assert_eq!(find(&items, tag(0x5F2A)), Some(&[0x01, 0x56][..]));
        assert_eq!(find(&items, tag(0x9F26)).map(<[u8]>::len), Some(8));
        for required in [0x9F10, 0x9F37, 0x95, 0x9C, 0x82, 0x9F1A] {
            assert!(find(&items, tag(required)).is_some(), "{required:X}");
        }
        // Another unpredictable number, another cryptogram.
        let other = icc_data("6222021234567890177", &IccRead { unpredictable_number: [9, 9, 9, 9], ..read });
        assert_ne!(find(&parse(&other).unwrap(), tag(0x9F26)), find(&items, tag(0x9F26)));

        let link = link();
        let chip = |contactless| CardData::Chip {
            pan: "6222021234567890177".into(),
            expiry_yymm: "3012".into(),
            contactless,
            icc: icc.clone(),
        };
        let sale = link.sale_at(3, 1234, &chip(false), None).unwrap();
        assert_eq!(sale.field_str(22), Some("052"));
        assert_eq!(sale.field_str(2), Some("6222021234567890177"));
        assert_eq!(sale.field_str(14), Some("3012"));
        assert!(!sale.has(35) && sale.has(55));
        let tapped = chip(true);
        assert_eq!(link.sale_at(4, 1, &tapped, None).unwrap().field_str(22), Some("072"));
        let printed = format!("{tapped:?}");
        assert!(printed.contains("contactless") && !printed.contains("1234567890"), "{printed}");
        let reversal = Link::reversal_of(&sale, "6222021234567890177", "98");
        assert!(!reversal.has(55));
    }

    #[test]
    fn stans_wrap_to_one() {
        assert_eq!(next_stan(0), 1);
        assert_eq!(next_stan(41), 42);
        assert_eq!(next_stan(STAN_MAX), 1);
    }
}

//! An ISO 8583 terminal client (docs/reference/iso8583.md): one TCP connection, one request at a time, the
//! UnionPay packed-BCD dialect, working keys from sign-in, PIN blocks under the PIN key and X9.19
//! MACs under the MAC key on requests, every response MAC checked.
//!
//! It builds requests the way a UnionPay POS does and knows nothing of load or statistics, so the
//! terminal program can use it as its link to the host.

use std::net::SocketAddr;
use std::time::Duration;

use kassa_crypto::{encrypt_pin_block, unwrap_working_keys, x9_19_mac, Pin, TdesKey, WorkingKeys};
use kassa_iso8583::fields::{BatchUploadCount, Field60};
use kassa_iso8583::frame::{encode_frame, encode_frame_with_mac, frame_length, Envelope, Frame, Tpdu};
use kassa_iso8583::{Mti, UNIONPAY};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub use kassa_iso8583::fields::{SettlementTotals, Totals};
pub use kassa_iso8583::Message;

/// The envelope this client sends: TPDU to NII 0001 from 0002, a UnionPay-style header.
pub const ENVELOPE: Envelope =
    Envelope { tpdu: Tpdu { destination: [0, 1], source: [0, 2] }, header: [0x60, 0x31, 0, 0x31, 0, 0] };

/// Largest STAN (n6); the next one wraps to 1.
pub const STAN_MAX: u32 = 999_999;

/// Field 53: PIN format 0 with PAN, double-length 3DES.
const SECURITY_CONTROL: &str = "2600000000000000";

/// What can go wrong talking to the host. Declines are not errors: they are answers.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, writing or reading failed, or the host closed the connection.
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

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = match (self.pan.get(..6), self.pan.len().checked_sub(4).and_then(|end| self.pan.get(end..))) {
            (Some(first), Some(last)) => format!("{first}***{last}"),
            _ => "***".to_owned(),
        };
        f.debug_struct("Card").field("pan", &masked).finish_non_exhaustive()
    }
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

    /// 60.2 of the answer: the batch the host considers open (sign-in, batch close).
    pub fn batch(&self) -> Option<u32> {
        self.message.typed::<Field60>().ok().flatten().map(|field| field.batch_number)
    }

    /// Field 48 of a 0510: the host's totals with its settle code.
    pub fn settlement_totals(&self) -> Option<SettlementTotals> {
        self.message.typed::<SettlementTotals>().ok().flatten()
    }
}

/// One terminal's connection to the host.
pub struct Terminal {
    identity: TerminalIdentity,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    keys: Option<WorkingKeys>,
    batch: u32,
    stan: u32,
    exchange_timeout: Duration,
    wire: Vec<u8>,
    frame: Vec<u8>,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("terminal_id", &self.identity.terminal_id)
            .field("batch", &self.batch)
            .field("stan", &self.stan)
            .field("signed_in", &self.keys.is_some())
            .finish_non_exhaustive()
    }
}

impl Terminal {
    /// Connects (no sign-in yet). `stan` is the last STAN used; the next request uses `stan + 1`.
    pub async fn connect(
        addr: SocketAddr,
        identity: TerminalIdentity,
        stan: u32,
        exchange_timeout: Duration,
    ) -> Result<Terminal, ClientError> {
        let millis = u64::try_from(exchange_timeout.as_millis()).unwrap_or(u64::MAX);
        let stream = tokio::time::timeout(exchange_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(millis))??;
        // One small request at a time: Nagle would add its delay to every exchange.
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        Ok(Terminal {
            identity,
            reader: BufReader::new(read),
            writer,
            keys: None,
            batch: 0,
            stan: stan % (STAN_MAX + 1),
            exchange_timeout,
            wire: Vec::with_capacity(512),
            frame: Vec::with_capacity(512),
        })
    }

    /// Who the terminal is.
    pub fn identity(&self) -> &TerminalIdentity {
        &self.identity
    }

    /// Field 41.
    pub fn terminal_id(&self) -> &str {
        &self.identity.terminal_id
    }

    /// The batch the terminal considers open (adopted from the host at sign-in and batch close).
    pub fn batch(&self) -> u32 {
        self.batch
    }

    /// The last STAN used.
    pub fn stan(&self) -> u32 {
        self.stan
    }

    /// Takes the next STAN (1 … 999999, then 1 again).
    pub fn next_stan(&mut self) -> u32 {
        self.stan = if self.stan >= STAN_MAX { 1 } else { self.stan + 1 };
        self.stan
    }

    /// A request with the fields every request carries: 11, 41, 42 and 60. `mti` is four digits.
    fn base(&mut self, mti: &str, type_code: [u8; 2], network_code: [u8; 3]) -> Message {
        let stan = self.next_stan();
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

    /// Sign-in (0800, 60.3 `003`): adopts the working keys of field 62 and the batch of 60.2.
    pub async fn sign_in(&mut self) -> Result<Answer, ClientError> {
        let mut request = self.base("0800", *b"00", *b"003");
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

    /// A swiped sale (0200, 60.1 `22`) with the PIN block of `pin` under the PIN key.
    pub fn sale(&mut self, amount_minor: u64, card: &Card, pin: &str) -> Result<Message, ClientError> {
        let pin_key = self.keys.as_ref().ok_or(ClientError::NotSignedIn)?.pin_key().clone();
        let pin = Pin::parse(pin).map_err(|error| ClientError::Pin(error.to_string()))?;
        let block =
            encrypt_pin_block(&pin_key, &pin, &card.pan).map_err(|error| ClientError::Pin(error.to_string()))?;
        let mut request = self.base("0200", *b"22", *b"000");
        request
            .set(3, "000000")
            .set(4, format!("{amount_minor:012}"))
            .set(22, "021")
            .set(25, "00")
            .set(26, "12")
            .set(35, card.track2())
            .set(49, "156")
            .set(52, block.as_bytes())
            .set(53, SECURITY_CONTROL)
            .set(63, self.operator_field());
        Ok(request)
    }

    /// The reversal (0400) of a request that got no answer (docs/reference/iso8583.md: the original's fields,
    /// its STAN, never track data or a PIN block; the reason in 39, `98` for no response). `pan`
    /// goes in field 2 since the original's track 2 may not be sent.
    pub fn reversal_of(original: &Message, pan: &str, reason: &str) -> Message {
        let mut request = original.clone();
        request.set_mti(literal_mti("0400"));
        for field in [26, 35, 36, 52, 53, 55, 63, 64] {
            request.remove(field);
        }
        request.set(2, pan).set(39, reason);
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

    /// Settlement (0500) of the open batch with the terminal's totals (settle code 0).
    pub fn settlement(&mut self, totals: SettlementTotals) -> Message {
        let mut request = self.base("0500", *b"00", *b"201");
        request.set(49, "156").set(63, self.operator_field());
        request.set_typed(&totals);
        request
    }

    /// The end of a batch upload (0320, 60.3 `202`) after `count` uploaded transactions.
    pub fn batch_upload_end(&mut self, count: u16) -> Message {
        let mut request = self.base("0320", *b"00", *b"202");
        request.set_typed(&BatchUploadCount(count));
        request
    }

    /// Adopts the batch a 0510 or 0330 answer opened (60.2).
    pub fn adopt_batch(&mut self, answer: &Answer) {
        if let Some(batch) = answer.batch() {
            self.batch = batch;
        }
    }

    /// Sends `request` (with a MAC when its MTI carries one) and reads its answer.
    pub async fn exchange(&mut self, request: &Message) -> Result<Answer, ClientError> {
        self.encode(request)?;
        let millis = u64::try_from(self.exchange_timeout.as_millis()).unwrap_or(u64::MAX);
        tokio::time::timeout(self.exchange_timeout, self.send_and_read())
            .await
            .map_err(|_| ClientError::Timeout(millis))??;
        let answer = self.decode()?;
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
        self.writer.write_all(&self.wire).await?;
        let mut prefix = [0_u8; 2];
        self.reader.read_exact(&mut prefix).await?;
        let length = frame_length(prefix).map_err(|error| ClientError::Malformed(error.to_string()))?;
        self.frame.clear();
        self.frame.extend_from_slice(&prefix);
        self.frame.resize(prefix.len() + length, 0);
        self.reader.read_exact(&mut self.frame[prefix.len()..]).await?;
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

    #[test]
    fn a_card_prints_masked() {
        let card = Card { pan: "6222021234567890128".into(), expiry_yymm: "3012".into() };
        let printed = format!("{card:?}");
        assert!(printed.contains("622202***0128"), "{printed}");
        assert!(!printed.contains("1234567890"), "{printed}");
        assert_eq!(card.track2(), "6222021234567890128=30121010000000000");
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
        let repeat = Terminal::repeat_of(&original);
        assert_eq!(repeat.mti().as_str(), "0201");
        assert_eq!(repeat.mti().class(), original.mti().class());
        assert_eq!(repeat.field(4), original.field(4));
        assert!(!repeat.has(64));
    }

    #[test]
    fn a_reversal_carries_no_track_nor_pin() {
        let mut original = Message::new(Mti::parse("0200").unwrap());
        original.set(4, "000000001000").set(35, "6222021234567890128=3012").set(52, [1_u8; 8]).set(53, "26");
        let reversal = Terminal::reversal_of(&original, "6222021234567890128", "98");
        assert_eq!(reversal.mti().as_str(), "0400");
        assert!(!reversal.has(35) && !reversal.has(52) && !reversal.has(53));
        assert_eq!(reversal.field_str(2), Some("6222021234567890128"));
        assert_eq!(reversal.field_str(39), Some("98"));
    }
}

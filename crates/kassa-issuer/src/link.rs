//! The issuer link: how [`AuthoriseRequest`]s, [`IssuerAnswer`]s and reversals travel between
//! the host and an issuer in another process, as ISO 8583:1987 messages in the
//! [`ISO8583_1987_ASCII`] dialect. Pure: no sockets, no clock (the caller passes the STAN and
//! the transmission time).
//!
//! | request | MTI | response |
//! | --- | --- | --- |
//! | purchase | `0200`, processing code `000000` | `0210` |
//! | hold (pre-authorisation) | `0100`, processing code `000000` | `0110` |
//! | balance inquiry | `0100`, processing code `310000` | `0110` |
//! | reversal | `0400` | `0410` |
//!
//! Fields: 2 PAN · 3 processing code · 4 amount (minor units, n12) · 7 transmission date and
//! time (`MMDDhhmmss`, UTC) · 11 STAN · 14 expiry (`YYMM`, when the terminal read one) · 22 POS
//! entry mode (`051` chip or contactless, `021` otherwise) · 48 the host's [`RequestId`] ·
//! 49 currency (ISO 4217 numeric) · 52 PIN block under the zone PIN key, with 53 =
//! [`SECURITY_CONTROL_PIN`] (ISO 9564 format 0, double-length 3DES) · answers: 38 authorisation
//! code (approvals), 39 response code, 54 available balance (account `00`, amount type `02`).
//!
//! **Invariant**: the request id (field 48) is the identity on the link. A response is accepted
//! only if it echoes the request's STAN (11) and request id (48); a reversal names its original
//! by request id only, so a reversal can be sent by any host process, after a restart, without
//! knowing the original's STAN, and reversing twice changes nothing. Field 90 (original data
//! elements) is not used: it cannot carry a 40-character request id.
//!
//! **Invariant**: response codes map to [`IssuerAnswer`] in exactly one place, [`DECLINE_CODES`]
//! (both directions); a code the table does not know is [`Decline::DoNotHonour`], except the
//! "cannot process" codes of [`UNAVAILABLE_CODES`], which are [`IssuerError::Unavailable`].

use kassa_crypto::EncryptedPinBlock;
use kassa_domain::{AuthCode, Currency, Expiry, Money, Pan};
use kassa_iso8583::fields::{Balance, BalanceSign};
use kassa_iso8583::{Message, Mti, ISO8583_1987_ASCII};

use crate::{AuthoriseRequest, Decline, IssuerAnswer, IssuerError, Operation, RequestId};

/// The path, on the simulators' address, that accepts link messages (HTTP POST).
pub const LINK_PATH: &str = "/sim/v1/issuer/iso8583";
/// The content type of link messages in both directions.
pub const LINK_CONTENT_TYPE: &str = "application/octet-stream";
/// Largest encoded link message, either direction.
pub const LINK_MESSAGE_BYTES_MAX: usize = kassa_iso8583::MESSAGE_BYTES_MAX;
/// Field 53 when field 52 is present: PIN block format 1 (ISO 9564 format 0, with the PAN),
/// algorithm 6 (double-length 3DES).
pub const SECURITY_CONTROL_PIN: &str = "1600000000000000";

const PROCESSING_PURCHASE: &str = "000000";
const PROCESSING_BALANCE_INQUIRY: &str = "310000";
const ENTRY_MODE_CHIP: &str = "051";
const ENTRY_MODE_OTHER: &str = "021";
const CODE_APPROVED: &str = "00";
/// Format error: the request could not be read as a link request.
pub const CODE_FORMAT_ERROR: &str = "30";
/// Account type `00` (unspecified), amount type `02` (available balance).
const BALANCE_ACCOUNT_TYPE: [u8; 2] = *b"00";
const BALANCE_AMOUNT_TYPE: [u8; 2] = *b"02";

/// Every decline and its response code (field 39). The one place where link response codes
/// and [`Decline`]s meet.
pub const DECLINE_CODES: [(Decline, &str); 9] = [
    (Decline::DoNotHonour, "05"),
    (Decline::AlreadyReversed, "12"),
    (Decline::InvalidCard, "14"),
    (Decline::Lost, "41"),
    (Decline::InsufficientFunds, "51"),
    (Decline::Expired, "54"),
    (Decline::WrongPin, "55"),
    (Decline::PinTriesExceeded, "75"),
    (Decline::PinBlockError, "99"),
];

/// Codes that say the issuer (or a switch) could not decide: format error, issuer or switch
/// inoperative, routing error, system malfunction. The host answers them like a link that is
/// down (`91`), never like a decline of the card.
pub const UNAVAILABLE_CODES: [&str; 4] = [CODE_FORMAT_ERROR, "91", "92", "96"];

/// Why a link message cannot be read as what it should be. Messages name the field, never its
/// value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The bytes are not an ISO 8583:1987 ASCII message.
    #[error("not an ISO 8583 message: {0}")]
    Decode(String),
    /// A message that cannot be encoded (a value does not fit its field).
    #[error("cannot encode the {what}: {reason}")]
    Encode {
        /// Which message.
        what: &'static str,
        /// The codec's reason (names the field).
        reason: String,
    },
    /// The MTI is not one the link knows in this direction.
    #[error("unexpected MTI {0}")]
    Mti(String),
    /// A field that must be present is not.
    #[error("field {0} is missing")]
    Missing(u8),
    /// A field holds a value the link does not accept.
    #[error("field {0} is invalid")]
    Invalid(u8),
    /// The answer does not echo its request (STAN or request id differ).
    #[error("the answer does not belong to the request (field {0} differs)")]
    NotOurs(u8),
}

/// A request the issuer's side of the link received.
#[derive(Debug, Clone)]
pub enum LinkRequest {
    /// `0100` / `0200`.
    Authorise(AuthoriseRequest),
    /// `0400`.
    Reverse(RequestId),
}

/// Encodes `message` in the link's dialect.
pub fn encode(message: &Message, what: &'static str) -> Result<Vec<u8>, LinkError> {
    ISO8583_1987_ASCII.encode(message).map_err(|error| LinkError::Encode { what, reason: error.to_string() })
}

/// Decodes link bytes (at most [`LINK_MESSAGE_BYTES_MAX`]).
pub fn decode(bytes: &[u8]) -> Result<Message, LinkError> {
    if bytes.len() > LINK_MESSAGE_BYTES_MAX {
        return Err(LinkError::Decode(format!("longer than {LINK_MESSAGE_BYTES_MAX} bytes")));
    }
    ISO8583_1987_ASCII.decode(bytes).map_err(|error| LinkError::Decode(error.to_string()))
}

/// What identifies one message on the link besides its request id: the STAN (field 11, 1 …
/// 999 999) and the transmission time (field 7, `MMDDhhmmss` UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Field 11, six digits.
    pub stan: String,
    /// Field 7, ten digits.
    pub transmitted: String,
}

/// The `0100`/`0200` for `request`.
pub fn authorisation_message(request: &AuthoriseRequest, trace: &Trace) -> Result<Message, LinkError> {
    let (mti, processing) = match request.operation {
        Operation::Purchase => ("0200", PROCESSING_PURCHASE),
        Operation::Hold => ("0100", PROCESSING_PURCHASE),
        Operation::BalanceInquiry => ("0100", PROCESSING_BALANCE_INQUIRY),
    };
    let amount_minor = u64::try_from(request.amount.minor()).map_err(|_| LinkError::Invalid(4))?;
    let mut message = Message::new(mti_of(mti)?);
    message
        .set(2, request.pan.expose_digits())
        .set(3, processing)
        .set(4, format!("{amount_minor:012}"))
        .set(7, &trace.transmitted)
        .set(11, &trace.stan)
        .set(22, if request.chip { ENTRY_MODE_CHIP } else { ENTRY_MODE_OTHER })
        .set(48, request.request_id.as_str())
        .set(49, format!("{:03}", request.amount.currency().numeric()));
    if let Some(expiry) = request.expiry {
        message.set(14, expiry.to_yymm());
    }
    if let Some(block) = &request.pin_block {
        message.set(52, block.as_bytes()).set(53, SECURITY_CONTROL_PIN);
    }
    Ok(message)
}

/// The `0400` that reverses `request_id`.
pub fn reversal_message(request_id: &RequestId, trace: &Trace) -> Result<Message, LinkError> {
    let mut message = Message::new(mti_of("0400")?);
    message.set(7, &trace.transmitted).set(11, &trace.stan).set(48, request_id.as_str());
    Ok(message)
}

/// Reads a request on the issuer's side. `Err` means the message cannot be answered as a
/// request at all; a request that can be answered but not understood gets a [`refusal`].
pub fn read_request(message: &Message) -> Result<LinkRequest, LinkError> {
    let request_id = || {
        let text = message.field_str(48).ok_or(LinkError::Missing(48))?;
        RequestId::new(text).ok_or(LinkError::Invalid(48))
    };
    let class = message.mti().class();
    match class.as_str() {
        "0400" => return Ok(LinkRequest::Reverse(request_id()?)),
        "0100" | "0200" => {}
        other => return Err(LinkError::Mti(other.to_owned())),
    }
    let operation = match (class.as_str(), required(message, 3)?) {
        ("0200", PROCESSING_PURCHASE) => Operation::Purchase,
        ("0100", PROCESSING_PURCHASE) => Operation::Hold,
        ("0100", PROCESSING_BALANCE_INQUIRY) => Operation::BalanceInquiry,
        _ => return Err(LinkError::Invalid(3)),
    };
    let pan = Pan::parse(required(message, 2)?).map_err(|_| LinkError::Invalid(2))?;
    let currency = required(message, 49)?
        .parse::<u16>()
        .ok()
        .and_then(|numeric| Currency::from_numeric(numeric).ok())
        .ok_or(LinkError::Invalid(49))?;
    let amount_minor = required(message, 4)?.parse::<i64>().map_err(|_| LinkError::Invalid(4))?;
    let expiry =
        message.field_str(14).map(|yymm| Expiry::parse(yymm).map_err(|_| LinkError::Invalid(14))).transpose()?;
    let pin_block = match message.field(52) {
        Some(bytes) => {
            if message.field_str(53) != Some(SECURITY_CONTROL_PIN) {
                return Err(LinkError::Invalid(53));
            }
            Some(EncryptedPinBlock::from_slice(bytes).map_err(|_| LinkError::Invalid(52))?)
        }
        None => None,
    };
    let chip = match required(message, 22)? {
        ENTRY_MODE_CHIP => true,
        ENTRY_MODE_OTHER => false,
        _ => return Err(LinkError::Invalid(22)),
    };
    Ok(LinkRequest::Authorise(AuthoriseRequest {
        request_id: request_id()?,
        operation,
        pan,
        expiry,
        amount: Money::from_minor(amount_minor, currency),
        pin_block,
        chip,
    }))
}

/// The response to `request` carrying `answer`: echoes 3, 4, 7, 11, 48, 49; sets 39, and 38
/// and 54 on approvals.
pub fn answer_message(request: &Message, answer: &IssuerAnswer) -> Result<Message, LinkError> {
    let mut response = response_skeleton(request)?;
    match answer {
        IssuerAnswer::Approved { auth_code, balance } => {
            response.set(38, auth_code.as_str()).set(39, CODE_APPROVED);
            if let Some(balance) = balance {
                response.set_typed(&Balance {
                    account_type: BALANCE_ACCOUNT_TYPE,
                    amount_type: BALANCE_AMOUNT_TYPE,
                    currency: numeric_digits(balance.currency()),
                    sign: if balance.minor() < 0 { BalanceSign::Debit } else { BalanceSign::Credit },
                    amount_minor: balance.minor().unsigned_abs(),
                });
            }
        }
        IssuerAnswer::Declined(decline) => {
            response.set(39, code_of(*decline));
        }
    }
    Ok(response)
}

/// The `0410` that confirms a reversal.
pub fn reversal_answer_message(request: &Message) -> Result<Message, LinkError> {
    let mut response = response_skeleton(request)?;
    response.set(39, CODE_APPROVED);
    Ok(response)
}

/// The response to `request` refusing it with `code` (one of [`UNAVAILABLE_CODES`]): the
/// request could not be understood (`30`) or not be processed (`96`).
pub fn refusal(request: &Message, code: &'static str) -> Result<Message, LinkError> {
    let mut response = response_skeleton(request)?;
    response.set(39, code);
    Ok(response)
}

/// Reads the answer to the authorisation `request` (checked to be its response).
pub fn read_answer(request: &Message, response: &Message) -> Result<Result<IssuerAnswer, IssuerError>, LinkError> {
    check_belongs(request, response)?;
    let code = required(response, 39)?;
    if code == CODE_APPROVED {
        let auth_code = AuthCode::parse(required(response, 38)?).map_err(|_| LinkError::Invalid(38))?;
        let balance = match response.typed::<Balance>() {
            Ok(Some(balance)) => Some(balance_money(&balance).ok_or(LinkError::Invalid(54))?),
            Ok(None) => None,
            Err(_) => return Err(LinkError::Invalid(54)),
        };
        return Ok(Ok(IssuerAnswer::Approved { auth_code, balance }));
    }
    Ok(answer_of_code(code))
}

/// Reads the answer to the reversal `request`: `Ok` when the issuer confirmed it (`00`).
pub fn read_reversal_answer(request: &Message, response: &Message) -> Result<Result<(), IssuerError>, LinkError> {
    check_belongs(request, response)?;
    Ok(match required(response, 39)? {
        CODE_APPROVED => Ok(()),
        code => Err(IssuerError::Unavailable(format!("the issuer refused the reversal ({code})"))),
    })
}

/// Field 39 for a decline.
pub fn code_of(decline: Decline) -> &'static str {
    DECLINE_CODES.iter().find(|(known, _)| *known == decline).map_or("05", |(_, code)| code)
}

/// The answer a non-approval code stands for.
fn answer_of_code(code: &str) -> Result<IssuerAnswer, IssuerError> {
    if UNAVAILABLE_CODES.contains(&code) {
        return Err(IssuerError::Unavailable(format!("the issuer could not process the request ({code})")));
    }
    let decline = DECLINE_CODES.iter().find(|(_, known)| *known == code).map_or(Decline::DoNotHonour, |(d, _)| *d);
    Ok(IssuerAnswer::Declined(decline))
}

fn response_skeleton(request: &Message) -> Result<Message, LinkError> {
    let mti = request.mti().class().response().ok_or_else(|| LinkError::Mti(request.mti().to_string()))?;
    let mut response = Message::new(mti);
    for field in [3, 4, 7, 11, 48, 49] {
        if let Some(value) = request.field(field) {
            response.set(field, value);
        }
    }
    Ok(response)
}

fn check_belongs(request: &Message, response: &Message) -> Result<(), LinkError> {
    if Some(response.mti()) != request.mti().class().response() {
        return Err(LinkError::Mti(response.mti().to_string()));
    }
    for field in [11, 48] {
        if response.field(field) != request.field(field) {
            return Err(LinkError::NotOurs(field));
        }
    }
    Ok(())
}

fn required(message: &Message, field: u8) -> Result<&str, LinkError> {
    message.field_str(field).ok_or(LinkError::Missing(field))
}

fn mti_of(digits: &str) -> Result<Mti, LinkError> {
    Mti::parse(digits).map_err(|_| LinkError::Mti(digits.to_owned()))
}

fn numeric_digits(currency: Currency) -> [u8; 3] {
    let numeric = currency.numeric();
    // ISO 4217 numeric codes are below 1000: three digits.
    [b'0' + (numeric / 100 % 10) as u8, b'0' + (numeric / 10 % 10) as u8, b'0' + (numeric % 10) as u8]
}

fn balance_money(balance: &Balance) -> Option<Money> {
    let numeric = std::str::from_utf8(&balance.currency).ok()?.parse::<u16>().ok()?;
    let currency = Currency::from_numeric(numeric).ok()?;
    let magnitude = i64::try_from(balance.amount_minor).ok()?;
    let minor = match balance.sign {
        BalanceSign::Credit => magnitude,
        BalanceSign::Debit => magnitude.checked_neg()?,
    };
    Some(Money::from_minor(minor, currency))
}

#[cfg(test)]
mod tests;

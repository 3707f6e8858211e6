//! Typed views of structured fields and subfields (docs/reference/iso8583.md, "Messages").
//!
//! Each type reads from and writes to a field's logical value; the [`Message`] keeps the raw
//! value, so a typed read never loses what it does not model.

use std::fmt;

use crate::error::SubfieldError;
use crate::message::Message;

/// A structured field value with a fixed field number.
pub trait TypedField: Sized {
    /// The field that carries it.
    const FIELD: u8;
    /// Reads the structure from the field's logical value.
    fn parse(value: &[u8]) -> Result<Self, SubfieldError>;
    /// Writes the field's logical value.
    fn write(&self, out: &mut Vec<u8>);
}

impl Message {
    /// The typed view of field `T::FIELD`: `Ok(None)` when absent.
    pub fn typed<T: TypedField>(&self) -> Result<Option<T>, SubfieldError> {
        self.field(T::FIELD).map(T::parse).transpose()
    }

    /// Sets field `T::FIELD` from its typed view.
    pub fn set_typed<T: TypedField>(&mut self, value: &T) -> &mut Self {
        let mut out = Vec::with_capacity(64);
        value.write(&mut out);
        self.set(T::FIELD, out)
    }

    /// A numeric field (amount, STAN, …) as an integer: `Ok(None)` when absent.
    pub fn number(&self, field: u8) -> Result<Option<u64>, SubfieldError> {
        self.field(field).map(|digits| parse_digits(field, "value", digits)).transpose()
    }
}

/// Longest digit string that always fits a `u64`.
const U64_DIGITS_MAX: usize = 19;

fn parse_digits(field: u8, part: &'static str, digits: &[u8]) -> Result<u64, SubfieldError> {
    if digits.is_empty() || digits.len() > U64_DIGITS_MAX || !digits.iter().all(u8::is_ascii_digit) {
        return Err(SubfieldError::NotDigits { field, part });
    }
    Ok(digits.iter().fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0')))
}

/// Writes `value` as exactly `width` digits (modulo 10^width, as counts and amounts wrap).
fn write_digits(value: u64, width: usize, out: &mut Vec<u8>) {
    let start = out.len();
    let mut rest = value;
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
}

/// Splits `value` into consecutive parts of the given widths, checking the total length.
fn split_exact<'a, const N: usize>(
    field: u8,
    value: &'a [u8],
    widths: [usize; N],
    expected: &'static str,
) -> Result<[&'a [u8]; N], SubfieldError> {
    let total: usize = widths.iter().sum();
    if value.len() != total {
        return Err(SubfieldError::Length { field, length: value.len(), expected });
    }
    let mut parts = [&value[..0]; N];
    let mut offset = 0;
    for (part, width) in parts.iter_mut().zip(widths) {
        *part = &value[offset..offset + width];
        offset += width;
    }
    Ok(parts)
}

fn digits_array<const N: usize>(field: u8, part: &'static str, digits: &[u8]) -> Result<[u8; N], SubfieldError> {
    let array: [u8; N] = digits.try_into().map_err(|_| SubfieldError::NotDigits { field, part })?;
    if array.iter().all(u8::is_ascii_digit) {
        Ok(array)
    } else {
        Err(SubfieldError::NotDigits { field, part })
    }
}

/// Field 60: 60.1 message type code n2, 60.2 batch number n6, 60.3 network management code
/// n3. Digits after 60.3 (60.4, 60.5) stay in the raw field and are not modelled; writing this
/// type writes 11 digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field60 {
    /// 60.1, e.g. `22` sale, `00` management.
    pub message_type_code: [u8; 2],
    /// 60.2, 0..=999999.
    pub batch_number: u32,
    /// 60.3, e.g. `000`, `003` sign-in, `201` settlement / batch-upload item.
    pub network_management_code: [u8; 3],
}

const FIELD60_DIGITS: usize = 11;

impl TypedField for Field60 {
    const FIELD: u8 = 60;

    fn parse(value: &[u8]) -> Result<Field60, SubfieldError> {
        let head = value.get(..FIELD60_DIGITS).ok_or(SubfieldError::Length {
            field: 60,
            length: value.len(),
            expected: "at least 11 digits",
        })?;
        let [kind, batch, network] = split_exact(60, head, [2, 6, 3], "11 digits")?;
        Ok(Field60 {
            message_type_code: digits_array(60, "60.1", kind)?,
            batch_number: parse_digits(60, "60.2", batch)? as u32,
            network_management_code: digits_array(60, "60.3", network)?,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.message_type_code);
        write_digits(u64::from(self.batch_number), 6, out);
        out.extend_from_slice(&self.network_management_code);
    }
}

/// Field 61, the original transaction: 61.1 batch n6, 61.2 STAN n6, 61.3 date MMDD n4
/// (optional in a void). Digits after 61.3 are not modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field61 {
    /// 61.1.
    pub original_batch_number: u32,
    /// 61.2.
    pub original_stan: u32,
    /// 61.3, MMDD digits.
    pub original_date_mmdd: Option<[u8; 4]>,
}

impl TypedField for Field61 {
    const FIELD: u8 = 61;

    fn parse(value: &[u8]) -> Result<Field61, SubfieldError> {
        let expected = "12 or at least 16 digits";
        let length_error = SubfieldError::Length { field: 61, length: value.len(), expected };
        let head = value.get(..12).ok_or(length_error.clone())?;
        let original_date_mmdd = match value.len() {
            12 => None,
            13..=15 => return Err(length_error),
            _ => Some(digits_array(61, "61.3", &value[12..16])?),
        };
        Ok(Field61 {
            original_batch_number: parse_digits(61, "61.1", &head[..6])? as u32,
            original_stan: parse_digits(61, "61.2", &head[6..])? as u32,
            original_date_mmdd,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        write_digits(u64::from(self.original_batch_number), 6, out);
        write_digits(u64::from(self.original_stan), 6, out);
        if let Some(date) = self.original_date_mmdd {
            out.extend_from_slice(&date);
        }
    }
}

/// Totals of one card family in field 48.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Debit amount in minor units, modulo 10^12.
    pub debit_amount_minor: u64,
    /// Debit count, modulo 1000.
    pub debit_count: u16,
    /// Credit amount in minor units, modulo 10^12.
    pub credit_amount_minor: u64,
    /// Credit count, modulo 1000.
    pub credit_count: u16,
    /// `0` in the request; `1` balanced, `2` not, in the response.
    pub settle_code: u8,
}

const TOTALS_DIGITS: usize = 31;

impl Totals {
    fn parse(digits: &[u8]) -> Result<Totals, SubfieldError> {
        let [debit, debit_count, credit, credit_count, code] = split_exact(48, digits, [12, 3, 12, 3, 1], "31 digits")?;
        Ok(Totals {
            debit_amount_minor: parse_digits(48, "debit amount", debit)?,
            debit_count: parse_digits(48, "debit count", debit_count)? as u16,
            credit_amount_minor: parse_digits(48, "credit amount", credit)?,
            credit_count: parse_digits(48, "credit count", credit_count)? as u16,
            settle_code: parse_digits(48, "settle code", code)? as u8,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        write_digits(self.debit_amount_minor, 12, out);
        write_digits(u64::from(self.debit_count), 3, out);
        write_digits(self.credit_amount_minor, 12, out);
        write_digits(u64::from(self.credit_count), 3, out);
        write_digits(u64::from(self.settle_code), 1, out);
    }
}

/// Field 48 of a settlement (0500/0510): domestic then foreign totals, 62 digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SettlementTotals {
    /// Domestic cards.
    pub domestic: Totals,
    /// Foreign cards (zeros at Kassa).
    pub foreign: Totals,
}

impl TypedField for SettlementTotals {
    const FIELD: u8 = 48;

    fn parse(value: &[u8]) -> Result<SettlementTotals, SubfieldError> {
        if value.len() != 2 * TOTALS_DIGITS {
            return Err(SubfieldError::Length { field: 48, length: value.len(), expected: "62 digits" });
        }
        let (domestic, foreign) = value.split_at(TOTALS_DIGITS);
        Ok(SettlementTotals { domestic: Totals::parse(domestic)?, foreign: Totals::parse(foreign)? })
    }

    fn write(&self, out: &mut Vec<u8>) {
        self.domestic.write(out);
        self.foreign.write(out);
    }
}

/// Field 48 of the batch-upload end message: the number of transactions uploaded, n4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchUploadCount(pub u16);

impl TypedField for BatchUploadCount {
    const FIELD: u8 = 48;

    fn parse(value: &[u8]) -> Result<BatchUploadCount, SubfieldError> {
        let [count] = split_exact(48, value, [4], "4 digits")?;
        Ok(BatchUploadCount(parse_digits(48, "count", count)? as u16))
    }

    fn write(&self, out: &mut Vec<u8>) {
        write_digits(u64::from(self.0), 4, out);
    }
}

/// Sign of a balance in field 54.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceSign {
    /// `C`: in the cardholder's favour.
    Credit,
    /// `D`: owed by the cardholder.
    Debit,
}

/// Field 54, balance: account type, amount type, currency, sign, amount n12 (20 chars).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    /// e.g. `10`.
    pub account_type: [u8; 2],
    /// e.g. `02`.
    pub amount_type: [u8; 2],
    /// ISO 4217 numeric, e.g. `156`.
    pub currency: [u8; 3],
    /// `C` or `D`.
    pub sign: BalanceSign,
    /// Minor units.
    pub amount_minor: u64,
}

impl TypedField for Balance {
    const FIELD: u8 = 54;

    fn parse(value: &[u8]) -> Result<Balance, SubfieldError> {
        let [account, amount_type, currency, sign, amount] = split_exact(54, value, [2, 2, 3, 1, 12], "20 characters")?;
        let sign = match sign {
            b"C" => BalanceSign::Credit,
            b"D" => BalanceSign::Debit,
            _ => return Err(SubfieldError::InvalidValue { field: 54, part: "sign" }),
        };
        Ok(Balance {
            account_type: digits_array(54, "account type", account)?,
            amount_type: digits_array(54, "amount type", amount_type)?,
            currency: digits_array(54, "currency", currency)?,
            sign,
            amount_minor: parse_digits(54, "amount", amount)?,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.account_type);
        out.extend_from_slice(&self.amount_type);
        out.extend_from_slice(&self.currency);
        out.push(match self.sign {
            BalanceSign::Credit => b'C',
            BalanceSign::Debit => b'D',
        });
        write_digits(self.amount_minor, 12, out);
    }
}

/// Field 62 of the sign-in response: working keys under the TMK and their check values.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkingKeys {
    /// PIN key encrypted under the TMK (3DES ECB).
    pub pin_key_under_tmk: [u8; 16],
    /// First 4 bytes of 3DES-ECB(PIN key, zeros).
    pub pin_key_check_value: [u8; 4],
    /// MAC key encrypted under the TMK.
    pub mac_key_under_tmk: [u8; 16],
    /// First 4 bytes of 3DES-ECB(MAC key, zeros).
    pub mac_key_check_value: [u8; 4],
}

impl fmt::Debug for WorkingKeys {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("WorkingKeys")
            .field("pin_key_under_tmk", &"<masked>")
            .field("pin_key_check_value", &self.pin_key_check_value)
            .field("mac_key_under_tmk", &"<masked>")
            .field("mac_key_check_value", &self.mac_key_check_value)
            .finish()
    }
}

impl TypedField for WorkingKeys {
    const FIELD: u8 = 62;

    fn parse(value: &[u8]) -> Result<WorkingKeys, SubfieldError> {
        let [pin, pin_check, mac, mac_check] = split_exact(62, value, [16, 4, 16, 4], "40 bytes")?;
        let array_error = SubfieldError::Length { field: 62, length: value.len(), expected: "40 bytes" };
        Ok(WorkingKeys {
            pin_key_under_tmk: pin.try_into().map_err(|_| array_error.clone())?,
            pin_key_check_value: pin_check.try_into().map_err(|_| array_error.clone())?,
            mac_key_under_tmk: mac.try_into().map_err(|_| array_error.clone())?,
            mac_key_check_value: mac_check.try_into().map_err(|_| array_error)?,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pin_key_under_tmk);
        out.extend_from_slice(&self.pin_key_check_value);
        out.extend_from_slice(&self.mac_key_under_tmk);
        out.extend_from_slice(&self.mac_key_check_value);
    }
}

/// Longest refund approval carried after the operator code in field 63.
pub const REFUND_APPROVAL_BYTES_MAX: usize = 40;
const OPERATOR_CODE_BYTES: usize = 3;

/// Field 63 of a request: operator code, optionally followed by a one-time refund approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorField {
    /// 3 characters, e.g. `01 `.
    pub operator_code: [u8; 3],
    /// Up to 40 printable ASCII characters issued by TMS, for a host-enforced refund
    /// password.
    pub refund_approval: Option<String>,
}

impl TypedField for OperatorField {
    const FIELD: u8 = 63;

    fn parse(value: &[u8]) -> Result<OperatorField, SubfieldError> {
        let max = OPERATOR_CODE_BYTES + REFUND_APPROVAL_BYTES_MAX;
        if value.len() < OPERATOR_CODE_BYTES || value.len() > max {
            return Err(SubfieldError::Length { field: 63, length: value.len(), expected: "3 to 43 bytes" });
        }
        let (code, approval) = value.split_at(OPERATOR_CODE_BYTES);
        let printable = |bytes: &[u8]| bytes.iter().all(|byte| (0x20..=0x7E).contains(byte));
        if !printable(code) {
            return Err(SubfieldError::InvalidValue { field: 63, part: "operator code" });
        }
        let refund_approval = match approval {
            [] => None,
            approval if printable(approval) => Some(String::from_utf8_lossy(approval).into_owned()),
            _ => return Err(SubfieldError::InvalidValue { field: 63, part: "refund approval" }),
        };
        let mut operator_code = [0u8; OPERATOR_CODE_BYTES];
        operator_code.copy_from_slice(code);
        Ok(OperatorField { operator_code, refund_approval })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.operator_code);
        if let Some(approval) = &self.refund_approval {
            out.extend_from_slice(approval.as_bytes());
        }
    }
}

/// Field 63 of a response: the card organisation, e.g. `CUP`. Anything after the first 3
/// characters is not modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardOrganisation(pub [u8; 3]);

impl TypedField for CardOrganisation {
    const FIELD: u8 = 63;

    fn parse(value: &[u8]) -> Result<CardOrganisation, SubfieldError> {
        let code = value.get(..3).ok_or(SubfieldError::Length {
            field: 63,
            length: value.len(),
            expected: "at least 3 bytes",
        })?;
        let mut organisation = [0u8; 3];
        organisation.copy_from_slice(code);
        Ok(CardOrganisation(organisation))
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

//! Money: integer minor units with an ISO 4217 currency, checked arithmetic, never floats.
//!
//! Amounts cross the wire as minor units (ISO 8583 field 4 is fen) and as decimal strings
//! (`"12.34"` in the Alipay-compatible gateway and on the terminal keypad). Both conversions
//! live here so that no other crate parses or formats an amount by hand.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An ISO 4217 currency: alphabetic code, numeric code and the number of minor-unit digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct Currency {
    code: &'static str,
    numeric: u16,
    exponent: u8,
}

/// The currencies Kassa knows. Extending the table is the only change a new currency needs.
const CURRENCIES: [Currency; 6] = [
    Currency::new("CNY", 156, 2),
    Currency::new("HKD", 344, 2),
    Currency::new("USD", 840, 2),
    Currency::new("EUR", 978, 2),
    Currency::new("JPY", 392, 0),
    Currency::new("MOP", 446, 2),
];

impl Currency {
    /// Chinese yuan renminbi, the currency of every demo merchant.
    pub const CNY: Currency = CURRENCIES[0];

    const fn new(code: &'static str, numeric: u16, exponent: u8) -> Self {
        Currency { code, numeric, exponent }
    }

    /// Looks a currency up by its alphabetic code (`"CNY"`).
    pub fn from_code(code: &str) -> Result<Currency, MoneyError> {
        CURRENCIES
            .iter()
            .find(|c| c.code == code)
            .copied()
            .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(8).collect()))
    }

    /// Looks a currency up by its numeric code (`156`, as in ISO 8583 field 49).
    pub fn from_numeric(numeric: u16) -> Result<Currency, MoneyError> {
        CURRENCIES
            .iter()
            .find(|c| c.numeric == numeric)
            .copied()
            .ok_or_else(|| MoneyError::UnknownCurrency(numeric.to_string()))
    }

    /// The alphabetic code, e.g. `"CNY"`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The numeric code, e.g. `156`.
    pub fn numeric(&self) -> u16 {
        self.numeric
    }

    /// Number of digits after the decimal point (2 for CNY, 0 for JPY).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    fn minor_per_major(&self) -> i64 {
        10_i64.pow(u32::from(self.exponent))
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Currency::from_code(&value)
    }
}

// By hand: a derived impl would demand `'de: 'static` because of the `&'static str` field.
impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Currency::from_code(&code).map_err(serde::de::Error::custom)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.code().to_owned()
    }
}

/// Why an amount could not be built or computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The currency code is not in Kassa's table.
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
    /// Two amounts of different currencies were combined.
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    /// The result does not fit in 64-bit minor units.
    #[error("amount overflow")]
    Overflow,
    /// A decimal amount string is malformed (`"12.345"` for CNY, `"1e3"`, `""`, `"-1"` where a
    /// positive amount is required, …).
    #[error("invalid amount {0:?}: {1}")]
    Invalid(String, &'static str),
}

/// An amount of money: signed minor units in one currency.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    /// The longest decimal string [`Money::parse`] looks at; anything longer is refused before
    /// any work is done.
    pub const DECIMAL_CHARS_MAX: usize = 24;

    /// An amount from minor units (fen for CNY).
    pub const fn from_minor(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    /// Zero in `currency`.
    pub const fn zero(currency: Currency) -> Money {
        Money { minor: 0, currency }
    }

    /// Minor units (fen).
    pub fn minor(&self) -> i64 {
        self.minor
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// True when the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.minor == 0
    }

    /// True when the amount is strictly positive.
    pub fn is_positive(&self) -> bool {
        self.minor > 0
    }

    /// `self + other`, refusing mixed currencies and overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self.minor.checked_add(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { minor, currency: self.currency })
    }

    /// `self - other`, refusing mixed currencies and overflow.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self.minor.checked_sub(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { minor, currency: self.currency })
    }

    /// `-self`, refusing overflow (`i64::MIN`).
    pub fn checked_neg(self) -> Result<Money, MoneyError> {
        let minor = self.minor.checked_neg().ok_or(MoneyError::Overflow)?;
        Ok(Money { minor, currency: self.currency })
    }

    fn same_currency(&self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }

    /// Parses a non-negative decimal amount in major units: `"12.34"`, `"12.3"`, `"12"`, `"0.01"`.
    /// More fraction digits than the currency has, signs, exponents, spaces and separators are
    /// refused — an amount is never silently rounded.
    pub fn parse(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let invalid = |why| MoneyError::Invalid(text.chars().take(Self::DECIMAL_CHARS_MAX).collect(), why);
        if text.is_empty() || text.len() > Self::DECIMAL_CHARS_MAX {
            return Err(invalid("expected 1 to 24 characters"));
        }
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (text, None),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("expected digits before the decimal point"));
        }
        let exponent = usize::from(currency.exponent);
        let fraction = fraction.unwrap_or("");
        if text.contains('.') && fraction.is_empty() {
            return Err(invalid("expected digits after the decimal point"));
        }
        if !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("expected digits after the decimal point"));
        }
        if fraction.len() > exponent {
            return Err(invalid("too many decimal places"));
        }
        let mut minor: i64 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(digit - b'0')))
                .ok_or(MoneyError::Overflow)?;
        }
        for _ in fraction.len()..exponent {
            minor = minor.checked_mul(10).ok_or(MoneyError::Overflow)?;
        }
        Ok(Money { minor, currency })
    }

    /// The amount as a decimal string in major units with exactly the currency's number of
    /// decimals: `12.34`, `-0.05`, `100` (JPY).
    pub fn to_decimal_string(&self) -> String {
        let exponent = usize::from(self.currency.exponent);
        let per_major = self.currency.minor_per_major().unsigned_abs();
        let magnitude = self.minor.unsigned_abs();
        let sign = if self.minor < 0 { "-" } else { "" };
        if exponent == 0 {
            return format!("{sign}{magnitude}");
        }
        format!("{sign}{}.{:0exponent$}", magnitude / per_major, magnitude % per_major)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

/// Rounds `numerator / denominator` to the nearest integer, ties to even (banker's rounding).
/// Used for fees: a fee is never computed through floating point. `denominator` must be positive.
pub fn div_round_half_even(numerator: i128, denominator: i128) -> Option<i128> {
    if denominator <= 0 {
        return None;
    }
    let quotient = numerator.div_euclid(denominator);
    let remainder = numerator.rem_euclid(denominator);
    let twice = remainder.checked_mul(2)?;
    let rounded = match twice.cmp(&denominator) {
        std::cmp::Ordering::Less => quotient,
        std::cmp::Ordering::Greater => quotient.checked_add(1)?,
        std::cmp::Ordering::Equal if quotient % 2 == 0 => quotient,
        std::cmp::Ordering::Equal => quotient.checked_add(1)?,
    };
    Some(rounded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cny(minor: i64) -> Money {
        Money::from_minor(minor, Currency::CNY)
    }

    #[test]
    fn parses_decimal_yuan() {
        assert_eq!(Money::parse("12.34", Currency::CNY), Ok(cny(1234)));
        assert_eq!(Money::parse("12.3", Currency::CNY), Ok(cny(1230)));
        assert_eq!(Money::parse("12", Currency::CNY), Ok(cny(1200)));
        assert_eq!(Money::parse("0.01", Currency::CNY), Ok(cny(1)));
        assert_eq!(Money::parse("007.00", Currency::CNY), Ok(cny(700)));
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(Money::parse("500", jpy).map(|m| m.minor()), Ok(500));
    }

    #[test]
    fn refuses_malformed_amounts() {
        for bad in ["", "12.345", "-1", "+1", "1e3", " 1", "1 ", "1,00", ".5", "5.", "1.2.3", "١٢", "NaN"] {
            assert!(Money::parse(bad, Currency::CNY).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Money::parse("99999999999999999999", Currency::CNY), Err(MoneyError::Overflow));
        assert!(Money::parse(&"1".repeat(25), Currency::CNY).is_err());
        assert!(Money::parse("1.5", Currency::from_code("JPY").unwrap()).is_err());
    }

    #[test]
    fn formats_with_currency_exponent() {
        assert_eq!(cny(1234).to_decimal_string(), "12.34");
        assert_eq!(cny(5).to_decimal_string(), "0.05");
        assert_eq!(cny(-5).to_decimal_string(), "-0.05");
        assert_eq!(cny(0).to_decimal_string(), "0.00");
        assert_eq!(cny(i64::MIN).to_decimal_string(), "-92233720368547758.08");
        assert_eq!(Money::from_minor(500, Currency::from_code("JPY").unwrap()).to_decimal_string(), "500");
        assert_eq!(format!("{:?}", cny(1234)), "12.34 CNY");
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(cny(1).checked_add(cny(2)), Ok(cny(3)));
        assert_eq!(cny(i64::MAX).checked_add(cny(1)), Err(MoneyError::Overflow));
        assert_eq!(cny(i64::MIN).checked_sub(cny(1)), Err(MoneyError::Overflow));
        assert_eq!(cny(i64::MIN).checked_neg(), Err(MoneyError::Overflow));
        let usd = Money::from_minor(1, Currency::from_code("USD").unwrap());
        assert!(matches!(cny(1).checked_add(usd), Err(MoneyError::CurrencyMismatch(..))));
    }

    #[test]
    fn currencies_by_code_and_number() {
        assert_eq!(Currency::from_numeric(156), Ok(Currency::CNY));
        assert_eq!(Currency::CNY.code(), "CNY");
        assert_eq!(Currency::from_code("JPY").unwrap().code(), "JPY");
        assert!(Currency::from_code("XYZ").is_err());
        assert_eq!(serde_json::to_string(&cny(1)).unwrap(), r#"{"minor":1,"currency":"CNY"}"#);
    }

    #[test]
    fn half_even_rounding() {
        assert_eq!(div_round_half_even(5, 2), Some(2));
        assert_eq!(div_round_half_even(7, 2), Some(4));
        assert_eq!(div_round_half_even(6, 4), Some(2));
        assert_eq!(div_round_half_even(-5, 2), Some(-2));
        assert_eq!(div_round_half_even(1, 3), Some(0));
        assert_eq!(div_round_half_even(2, 3), Some(1));
        assert_eq!(div_round_half_even(1, 0), None);
    }

    proptest! {
        #[test]
        fn format_parse_round_trip(minor in 0_i64..=i64::MAX) {
            let money = cny(minor);
            prop_assert_eq!(Money::parse(&money.to_decimal_string(), Currency::CNY), Ok(money));
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,30}") {
            let _ = Money::parse(&text, Currency::CNY);
        }

        #[test]
        fn half_even_is_within_half(n in -1_000_000_i128..1_000_000, d in 1_i128..10_000) {
            let r = div_round_half_even(n, d).unwrap();
            prop_assert!((r * d - n).abs() * 2 <= d);
        }
    }
}

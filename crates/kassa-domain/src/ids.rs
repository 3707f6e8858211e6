//! Validated identifiers. Each is parsed once at the edge and then carried as its type, so a
//! terminal id can never be passed where a merchant id is expected and never has the wrong length.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {why}")]
pub struct IdError {
    /// Which identifier (`"merchant id"`, `"STAN"`, …).
    pub kind: &'static str,
    /// What was wrong, without echoing the input back (it may be hostile or huge).
    pub why: &'static str,
}

fn check_chars(
    kind: &'static str,
    text: &str,
    len: usize,
    allowed: fn(u8) -> bool,
    why: &'static str,
) -> Result<(), IdError> {
    if text.len() != len {
        return Err(IdError { kind, why: "wrong length" });
    }
    if !text.bytes().all(allowed) {
        return Err(IdError { kind, why });
    }
    Ok(())
}

fn is_printable_ascii(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

fn is_alphanumeric(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $len:expr, $allowed:expr, $why:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The fixed length in characters.
            pub const LEN: usize = $len;

            /// Validates `text`.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                check_chars($kind, text, $len, $allowed, $why)?;
                Ok($name(text.to_owned()))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                $name::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

text_id!(
    /// Merchant id (商户号), ISO 8583 field 42: 15 printable ASCII characters.
    MerchantId, "merchant id", 15, is_printable_ascii, "expected printable ASCII"
);
text_id!(
    /// Terminal id (终端号), ISO 8583 field 41: 8 printable ASCII characters.
    TerminalId, "terminal id", 8, is_printable_ascii, "expected printable ASCII"
);
text_id!(
    /// Retrieval reference number (参考号), field 37: 12 letters or digits.
    Rrn, "RRN", 12, is_alphanumeric, "expected letters and digits"
);
text_id!(
    /// Authorisation code (授权码), field 38: 6 letters or digits.
    AuthCode, "authorisation code", 6, is_alphanumeric, "expected letters and digits"
);

/// Operator code (操作员号): two digits; `00` is the merchant's supervisor (主管).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OperatorCode(String);

impl OperatorCode {
    /// Validates a two-digit operator code. Field 63 pads it to three characters with a space
    /// (`"01 "`); trailing spaces are accepted here and dropped.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let trimmed = text.trim_end_matches(' ');
        check_chars("operator code", trimmed, 2, |b| b.is_ascii_digit(), "expected two digits")?;
        Ok(OperatorCode(trimmed.to_owned()))
    }

    /// The supervisor (`00`).
    pub fn supervisor() -> Self {
        OperatorCode("00".to_owned())
    }

    /// True for the supervisor (`00`).
    pub fn is_supervisor(&self) -> bool {
        self.0 == "00"
    }

    /// The code as text (`"01"`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OperatorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OperatorCode({:?})", self.0)
    }
}

impl TryFrom<String> for OperatorCode {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        OperatorCode::parse(&value)
    }
}

impl From<OperatorCode> for String {
    fn from(value: OperatorCode) -> String {
        value.0
    }
}

macro_rules! six_digit_number {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $min:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "u32", into = "u32")]
        pub struct $name(u32);

        impl $name {
            /// The smallest valid value.
            pub const MIN: u32 = $min;
            /// The largest valid value (six digits).
            pub const MAX: u32 = 999_999;

            /// Validates a number.
            pub fn new(value: u32) -> Result<Self, IdError> {
                if ($min..=Self::MAX).contains(&value) {
                    Ok($name(value))
                } else {
                    Err(IdError { kind: $kind, why: "out of range" })
                }
            }

            /// Parses six digits (`"000123"`).
            pub fn parse(text: &str) -> Result<Self, IdError> {
                check_chars($kind, text, 6, |b| b.is_ascii_digit(), "expected six digits")?;
                let value = text.bytes().fold(0_u32, |acc, b| acc * 10 + u32::from(b - b'0'));
                Self::new(value)
            }

            /// The value.
            pub fn value(&self) -> u32 {
                self.0
            }

            /// The next value, wrapping from 999999 to the minimum (terminals wrap their counters).
            pub fn next(&self) -> Self {
                if self.0 >= Self::MAX { $name($min) } else { $name(self.0 + 1) }
            }

            /// Six digits, zero-padded.
            pub fn to_digits(&self) -> String {
                format!("{:06}", self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:06}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:06})", stringify!($name), self.0)
            }
        }

        impl TryFrom<u32> for $name {
            type Error = IdError;
            fn try_from(value: u32) -> Result<Self, Self::Error> {
                $name::new(value)
            }
        }

        impl From<$name> for u32 {
            fn from(value: $name) -> u32 {
                value.0
            }
        }
    };
}

six_digit_number!(
    /// System trace audit number (流水号), field 11: 000001–999999, unique per terminal and batch.
    Stan, "STAN", 1
);
six_digit_number!(
    /// Batch number (批次号), field 60.2: 000001–999999.
    BatchNo, "batch number", 1
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_check_length_and_characters() {
        assert!(MerchantId::parse("898100000000001").is_ok());
        assert!(MerchantId::parse("89810000000001").is_err());
        assert!(TerminalId::parse("10000001").is_ok());
        assert!(TerminalId::parse("1000000\u{1}").is_err());
        assert!(TerminalId::parse("1000001").is_err());
        assert!(Rrn::parse("123456789012").is_ok());
        assert!(Rrn::parse("12345678901 ").is_err());
        assert!(AuthCode::parse("A1B2C3").is_ok());
        assert!(AuthCode::parse("A1B2C").is_err());
        let err = TerminalId::parse("x").unwrap_err();
        assert_eq!(err.to_string(), "invalid terminal id: wrong length");
    }

    #[test]
    fn operator_codes() {
        assert_eq!(OperatorCode::parse("01 ").unwrap().as_str(), "01");
        assert!(OperatorCode::parse("00").unwrap().is_supervisor());
        assert!(OperatorCode::parse("1").is_err());
        assert!(OperatorCode::parse("0a").is_err());
        assert!(OperatorCode::parse("001").is_err());
    }

    #[test]
    fn stan_and_batch_numbers() {
        assert_eq!(Stan::parse("000123").unwrap().value(), 123);
        assert!(Stan::parse("000000").is_err());
        assert!(Stan::new(1_000_000).is_err());
        assert_eq!(Stan::new(999_999).unwrap().next(), Stan::new(1).unwrap());
        assert_eq!(BatchNo::new(7).unwrap().to_string(), "000007");
        assert!(BatchNo::parse("12345a").is_err());
        assert_eq!(serde_json::to_string(&Stan::new(5).unwrap()).unwrap(), "5");
        assert!(serde_json::from_str::<Stan>("0").is_err());
    }
}

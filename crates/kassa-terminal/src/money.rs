//! Amounts as the cashier types them: yuan with at most two decimals (`12.34`), parsed exactly
//! to fen. No floats anywhere: the text goes through [`kassa_domain::Money::parse`].

use kassa_domain::{Currency, Money};

/// The largest amount a terminal takes in one transaction, in fen: 1,000,000.00 (the QR routes'
/// limit; card amounts stay far below field 4's twelve digits).
pub const AMOUNT_MINOR_MAX: u64 = 100_000_000;

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a decimal amount of yuan with at most two decimals.
    #[error("not an amount in yuan: {0:?} (write it like 12.34)")]
    Malformed(String),
    /// Zero.
    #[error("the amount must be more than 0.00")]
    Zero,
    /// Above [`AMOUNT_MINOR_MAX`].
    #[error("the amount is above 1000000.00")]
    TooLarge,
}

/// Parses `12.34` (yuan) to 1234 fen: digits, an optional point and one or two decimals; no
/// sign, exponent, separator or space. Zero and amounts above [`AMOUNT_MINOR_MAX`] are refused.
pub fn parse_amount(text: &str) -> Result<u64, AmountError> {
    let shown: String = text.chars().take(Money::DECIMAL_CHARS_MAX).collect();
    let money = Money::parse(text, Currency::CNY).map_err(|_| AmountError::Malformed(shown))?;
    let minor = u64::try_from(money.minor()).map_err(|_| AmountError::TooLarge)?;
    if minor == 0 {
        return Err(AmountError::Zero);
    }
    if minor > AMOUNT_MINOR_MAX {
        return Err(AmountError::TooLarge);
    }
    Ok(minor)
}

/// 1234 fen as `12.34`.
pub fn format_amount(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_parse_exactly_to_fen() {
        for (text, minor) in [
            ("12.34", 1234),
            ("12.3", 1230),
            ("12", 1200),
            ("0.01", 1),
            ("0.1", 10),
            ("1000000.00", 100_000_000),
            ("007.50", 750),
            // A float would make this 1.1599999…: exact decimal parsing keeps every fen.
            ("1.16", 116),
            ("19.99", 1999),
        ] {
            assert_eq!(parse_amount(text), Ok(minor), "{text}");
        }
    }

    #[test]
    fn malformed_amounts_are_refused() {
        for text in
            ["", "abc", "12.345", "-1", "+1", "1e3", "1,000", " 12", "12 ", "12.", ".5", "1.2.3", "１２", "0x10", "NaN"]
        {
            assert!(matches!(parse_amount(text), Err(AmountError::Malformed(_))), "{text:?}");
        }
        assert_eq!(parse_amount("0"), Err(AmountError::Zero));
        assert_eq!(parse_amount("0.00"), Err(AmountError::Zero));
        assert_eq!(parse_amount("1000000.01"), Err(AmountError::TooLarge));
        assert!(parse_amount("99999999999999999999").is_err());
        assert!(parse_amount(&"9".repeat(1000)).is_err());
    }

    #[test]
    fn amounts_format_back() {
        assert_eq!(format_amount(1234), "12.34");
        assert_eq!(format_amount(5), "0.05");
        assert_eq!(format_amount(100), "1.00");
        for minor in [1, 99, 100, 1234, 100_000_000] {
            assert_eq!(parse_amount(&format_amount(minor)), Ok(minor));
        }
    }
}

//! Card data as secret types. A [`Pan`] or [`Track2`] cannot be printed in clear by accident:
//! `Debug` and `Display` show the masked form (first 6, last 4), e.g. `622202*********0128`.
//! The clear digits are reachable only through [`Pan::expose_digits`], named so that every use
//! stands out in review.

use std::fmt;

/// Why card data was refused. Never carries the digits themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// A PAN must have 13 to 19 digits.
    #[error("card number must have 13 to 19 digits")]
    PanLength,
    /// A PAN holds digits only.
    #[error("card number must contain digits only")]
    PanCharacters,
    /// The Luhn check digit does not match.
    #[error("card number fails the check digit")]
    PanCheckDigit,
    /// Track 2 is `PAN=YYMM` followed by a service code and discretionary data.
    #[error("malformed track 2 data")]
    Track2Format,
    /// Expiry dates are `YYMM` with a month of 01–12.
    #[error("malformed expiry date")]
    Expiry,
}

/// A primary account number (card number), Luhn-checked.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pan(String);

impl Pan {
    /// The fewest digits of a PAN.
    pub const DIGITS_MIN: usize = 13;
    /// The most digits of a PAN.
    pub const DIGITS_MAX: usize = 19;

    /// Validates a card number: 13–19 digits with a correct Luhn check digit.
    pub fn parse(digits: &str) -> Result<Pan, CardError> {
        if !(Self::DIGITS_MIN..=Self::DIGITS_MAX).contains(&digits.len()) {
            return Err(CardError::PanLength);
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CardError::PanCharacters);
        }
        if !luhn_valid(digits) {
            return Err(CardError::PanCheckDigit);
        }
        Ok(Pan(digits.to_owned()))
    }

    /// The clear card number. Only for the codec, the PIN block and the issuer connector.
    pub fn expose_digits(&self) -> &str {
        &self.0
    }

    /// The masked form shown everywhere else: first 6 and last 4 digits, `*` between.
    pub fn masked(&self) -> String {
        let len = self.0.len();
        let mut masked = String::with_capacity(len);
        masked.push_str(&self.0[..6]);
        masked.extend(std::iter::repeat_n('*', len - 10));
        masked.push_str(&self.0[len - 4..]);
        masked
    }

    /// The last four digits (receipts).
    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// True when `digits` (ASCII digits only) pass the Luhn check.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0_u32;
    for (position, byte) in digits.bytes().rev().enumerate() {
        let mut digit = u32::from(byte.wrapping_sub(b'0'));
        if digit > 9 {
            return false;
        }
        if position % 2 == 1 {
            digit *= 2;
            if digit > 9 {
                digit -= 9;
            }
        }
        sum += digit;
    }
    sum.is_multiple_of(10)
}

/// A card expiry date, `YYMM`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry {
    year: u8,
    month: u8,
}

impl Expiry {
    /// Parses `YYMM`.
    pub fn parse(yymm: &str) -> Result<Expiry, CardError> {
        if yymm.len() != 4 || !yymm.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CardError::Expiry);
        }
        let number = |range: std::ops::Range<usize>| yymm[range].bytes().fold(0_u8, |acc, b| acc * 10 + (b - b'0'));
        let (year, month) = (number(0..2), number(2..4));
        if !(1..=12).contains(&month) {
            return Err(CardError::Expiry);
        }
        Ok(Expiry { year, month })
    }

    /// True when the card has expired by `today_yymm` (a card is valid through its expiry month).
    pub fn is_expired_at(&self, today: Expiry) -> bool {
        *self < today
    }

    /// `YYMM`.
    pub fn to_yymm(&self) -> String {
        format!("{:02}{:02}", self.year, self.month)
    }
}

impl fmt::Debug for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expiry({:02}{:02})", self.year, self.month)
    }
}

/// Track 2 equivalent data: `PAN=YYMM` + service code (3 digits) + discretionary data. Secret:
/// masked in `Debug`/`Display`, never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Track2 {
    pan: Pan,
    expiry: Expiry,
    service_code: [u8; 3],
    raw: String,
}

impl Track2 {
    /// The longest track 2 (ISO 7813: 37 characters without sentinels).
    pub const CHARS_MAX: usize = 37;

    /// Parses track 2 data with `=` (or `D`, as the nibble arrives from the wire) as separator.
    pub fn parse(text: &str) -> Result<Track2, CardError> {
        if text.len() > Self::CHARS_MAX {
            return Err(CardError::Track2Format);
        }
        let separator = text.find(['=', 'D', 'd']).ok_or(CardError::Track2Format)?;
        let pan = Pan::parse(&text[..separator])?;
        let rest = &text[separator + 1..];
        if rest.len() < 7 || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CardError::Track2Format);
        }
        let expiry = Expiry::parse(&rest[..4])?;
        let mut service_code = [0_u8; 3];
        service_code.copy_from_slice(&rest.as_bytes()[4..7]);
        Ok(Track2 { pan, expiry, service_code, raw: format!("{}={}", &text[..separator], rest) })
    }

    /// The card number.
    pub fn pan(&self) -> &Pan {
        &self.pan
    }

    /// The expiry date.
    pub fn expiry(&self) -> Expiry {
        self.expiry
    }

    /// The service code (`101` magnetic stripe, `201` chip card).
    pub fn service_code(&self) -> &str {
        std::str::from_utf8(&self.service_code).unwrap_or("000")
    }

    /// True when the service code says the card has a chip (first digit 2 or 6).
    pub fn is_chip_card(&self) -> bool {
        matches!(self.service_code[0], b'2' | b'6')
    }

    /// The clear track data (`=` as separator). Only for the codec and the issuer connector.
    pub fn expose(&self) -> &str {
        &self.raw
    }
}

impl fmt::Debug for Track2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Track2({}=****)", self.pan.masked())
    }
}

impl fmt::Display for Track2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=****", self.pan.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pan_is_luhn_checked_and_masked() {
        let pan = Pan::parse("6222021234567890128").unwrap();
        assert_eq!(pan.masked(), "622202*********0128");
        assert_eq!(format!("{pan:?}"), "Pan(622202*********0128)");
        assert_eq!(format!("{pan}"), "622202*********0128");
        assert_eq!(pan.last4(), "0128");
        assert_eq!(Pan::parse("6222021234567890127"), Err(CardError::PanCheckDigit));
        assert_eq!(Pan::parse("622202123456"), Err(CardError::PanLength));
        assert_eq!(Pan::parse("62220212345678901x8"), Err(CardError::PanCharacters));
        for test_card in [
            "6222021234567890136",
            "6222021234567890144",
            "6222021234567890151",
            "6222021234567890169",
            "6222021234567890177",
        ] {
            assert!(Pan::parse(test_card).is_ok(), "{test_card}");
        }
    }

    #[test]
    fn track2_parses_and_masks() {
        let track = Track2::parse("6222021234567890128=30121010000000000").unwrap();
        assert_eq!(track.pan().expose_digits(), "6222021234567890128");
        assert_eq!(track.expiry().to_yymm(), "3012");
        assert_eq!(track.service_code(), "101");
        assert!(!track.is_chip_card());
        assert_eq!(format!("{track:?}"), "Track2(622202*********0128=****)");
        let chip = Track2::parse("6222021234567890177D30122010000000000").unwrap();
        assert!(chip.is_chip_card());
        assert_eq!(chip.expose(), "6222021234567890177=30122010000000000");
        assert!(Track2::parse("6222021234567890128").is_err());
        assert!(Track2::parse("6222021234567890128=3013101").is_err());
        assert!(Track2::parse(&"1".repeat(40)).is_err());
    }

    #[test]
    fn expiry_compares_by_month() {
        let expired = Expiry::parse("2001").unwrap();
        let today = Expiry::parse("2611").unwrap();
        assert!(expired.is_expired_at(today));
        assert!(!Expiry::parse("3012").unwrap().is_expired_at(today));
        assert!(!today.is_expired_at(today));
        assert!(Expiry::parse("2613").is_err());
    }

    proptest! {
        #[test]
        fn masked_form_never_shows_the_middle(body in "[0-9]{12,18}") {
            // Make a valid PAN by appending the right check digit.
            let check = (0..10).find(|d| luhn_valid(&format!("{body}{d}"))).unwrap();
            let digits = format!("{body}{check}");
            let pan = Pan::parse(&digits).unwrap();
            let masked = pan.masked();
            let len = digits.len();
            prop_assert_eq!(masked.len(), len);
            prop_assert_eq!(&masked[..6], &digits[..6]);
            prop_assert_eq!(&masked[len - 4..], &digits[len - 4..]);
            prop_assert!(masked[6..len - 4].bytes().all(|b| b == b'*'));
            prop_assert_eq!(format!("{pan}"), masked.clone());
            prop_assert_eq!(format!("{pan:?}"), format!("Pan({masked})"));
        }

        #[test]
        fn parsers_never_panic(text in "\\PC{0,40}") {
            let _ = Pan::parse(&text);
            let _ = Track2::parse(&text);
            let _ = Expiry::parse(&text);
        }
    }
}

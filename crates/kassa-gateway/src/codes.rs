//! Response codes (field 39), and the one place where reasons become codes.

use kassa_issuer::Decline;

/// A field 39 value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCode(pub [u8; 2]);

impl ResponseCode {
    pub const APPROVED: ResponseCode = ResponseCode(*b"00");
    pub const INVALID_MERCHANT: ResponseCode = ResponseCode(*b"03");
    pub const DO_NOT_HONOUR: ResponseCode = ResponseCode(*b"05");
    pub const INVALID_TRANSACTION: ResponseCode = ResponseCode(*b"12");
    pub const INVALID_AMOUNT: ResponseCode = ResponseCode(*b"13");
    pub const INVALID_CARD: ResponseCode = ResponseCode(*b"14");
    pub const ORIGINAL_NOT_FOUND: ResponseCode = ResponseCode(*b"25");
    pub const FORMAT_ERROR: ResponseCode = ResponseCode(*b"30");
    pub const NOT_SUPPORTED: ResponseCode = ResponseCode(*b"40");
    pub const LOST_CARD: ResponseCode = ResponseCode(*b"41");
    pub const INSUFFICIENT_FUNDS: ResponseCode = ResponseCode(*b"51");
    pub const EXPIRED_CARD: ResponseCode = ResponseCode(*b"54");
    pub const WRONG_PIN: ResponseCode = ResponseCode(*b"55");
    pub const NOT_PERMITTED: ResponseCode = ResponseCode(*b"58");
    pub const AMOUNT_LIMIT: ResponseCode = ResponseCode(*b"61");
    pub const AMOUNT_DIFFERS: ResponseCode = ResponseCode(*b"64");
    pub const PIN_TRIES_EXCEEDED: ResponseCode = ResponseCode(*b"75");
    pub const SIGN_IN_AGAIN: ResponseCode = ResponseCode(*b"77");
    pub const ISSUER_UNAVAILABLE: ResponseCode = ResponseCode(*b"91");
    pub const DUPLICATE: ResponseCode = ResponseCode(*b"94");
    pub const SYSTEM_ERROR: ResponseCode = ResponseCode(*b"96");
    pub const UNKNOWN_TERMINAL: ResponseCode = ResponseCode(*b"97");
    pub const ISSUER_TIMEOUT: ResponseCode = ResponseCode(*b"98");
    pub const PIN_BLOCK_ERROR: ResponseCode = ResponseCode(*b"99");
    pub const MAC_ERROR: ResponseCode = ResponseCode(*b"A0");

    /// The two characters.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("96")
    }

    /// Reads a stored code.
    pub fn parse(text: &str) -> Option<ResponseCode> {
        let bytes: [u8; 2] = text.as_bytes().try_into().ok()?;
        bytes.iter().all(u8::is_ascii_alphanumeric).then_some(ResponseCode(bytes))
    }

    /// Whether it approves.
    pub fn is_approved(&self) -> bool {
        *self == ResponseCode::APPROVED
    }
}

/// The code for an issuer's decline.
pub fn for_decline(decline: Decline) -> ResponseCode {
    match decline {
        Decline::InvalidCard => ResponseCode::INVALID_CARD,
        Decline::InsufficientFunds => ResponseCode::INSUFFICIENT_FUNDS,
        Decline::Expired => ResponseCode::EXPIRED_CARD,
        Decline::Lost => ResponseCode::LOST_CARD,
        Decline::WrongPin => ResponseCode::WRONG_PIN,
        Decline::PinTriesExceeded => ResponseCode::PIN_TRIES_EXCEEDED,
        Decline::PinBlockError => ResponseCode::PIN_BLOCK_ERROR,
        Decline::DoNotHonour => ResponseCode::DO_NOT_HONOUR,
        Decline::AlreadyReversed => ResponseCode::INVALID_TRANSACTION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_declines_map() {
        assert_eq!(ResponseCode::parse("A0"), Some(ResponseCode::MAC_ERROR));
        assert_eq!(ResponseCode::parse("0"), None);
        assert_eq!(for_decline(Decline::PinTriesExceeded).as_str(), "75");
        assert_eq!(for_decline(Decline::Lost).as_str(), "41");
        assert!(ResponseCode::APPROVED.is_approved());
    }
}

//! Compact forms of what the simulator keeps per request ([`crate::simulator`]'s requests and
//! [`crate::clearing`]'s rows), so that the hundreds of thousands of them it keeps cost no
//! allocation of their own each: a request id is mostly the host's `txn:<id>` and is kept as
//! that number, an approval code is six ASCII characters kept in place.

use std::fmt;

use kassa_domain::AuthCode;

use crate::RequestId;

/// A [`RequestId`] as the simulator keeps it: 16 bytes, without an allocation for the host's
/// ids (`txn:` and a decimal number without leading zeros); any other id is kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum RequestKey {
    /// `txn:<n>`.
    Txn(u64),
    /// Any other id, as is.
    Other(Box<str>),
}

impl RequestKey {
    /// The key of `id`; [`RequestKey::fmt`] writes `id` back exactly.
    pub(crate) fn of(id: &RequestId) -> RequestKey {
        let text = id.as_str();
        match text.strip_prefix("txn:").and_then(canonical_number) {
            Some(number) => RequestKey::Txn(number),
            None => RequestKey::Other(text.into()),
        }
    }
}

/// `digits` as a number when it is one written the one way `u64`'s `Display` writes it (no
/// sign, no leading zero), so that the number gives back the same text.
fn canonical_number(digits: &str) -> Option<u64> {
    let canonical =
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && (digits == "0" || !digits.starts_with('0'));
    if canonical {
        digits.parse().ok()
    } else {
        None
    }
}

impl fmt::Display for RequestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestKey::Txn(number) => write!(f, "txn:{number}"),
            RequestKey::Other(text) => f.write_str(text),
        }
    }
}

/// An [`AuthCode`] kept in place (it is [`AuthCode::LEN`] ASCII letters and digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredCode([u8; AuthCode::LEN]);

impl StoredCode {
    pub(crate) fn of(code: &AuthCode) -> StoredCode {
        let mut bytes = [b'0'; AuthCode::LEN];
        // An `AuthCode` is exactly `LEN` ASCII characters.
        for (to, from) in bytes.iter_mut().zip(code.as_str().bytes()) {
            *to = from;
        }
        StoredCode(bytes)
    }

    /// The code as text.
    pub(crate) fn as_str(&self) -> &str {
        // Only ever built from an `AuthCode`'s ASCII.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The code again.
    pub(crate) fn code(&self) -> Option<AuthCode> {
        AuthCode::parse(self.as_str()).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key(id: &str) -> RequestKey {
        RequestKey::of(&RequestId::new(id).unwrap())
    }

    #[test]
    fn the_hosts_ids_are_numbers_and_every_id_comes_back_as_it_was() {
        assert_eq!(key("txn:42"), RequestKey::Txn(42));
        assert_eq!(key("txn:0"), RequestKey::Txn(0));
        assert_eq!(key("txn:18446744073709551615"), RequestKey::Txn(u64::MAX));
        for id in [
            "txn:42",
            "txn:0",
            "txn:042",
            "txn:+42",
            "txn:",
            "txn:4x",
            "txn:18446744073709551616",
            "TXN:42",
            "a",
            "refund:7",
        ] {
            assert_eq!(key(id).to_string(), id, "{id}");
        }
        // Two ids are one key only when they are the same id.
        assert_ne!(key("txn:42"), key("txn:042"));
        assert_ne!(key("txn:42"), key("txn:+42"));
    }

    #[test]
    fn a_key_and_a_code_take_no_allocation_and_little_room() {
        assert_eq!(std::mem::size_of::<RequestKey>(), 16);
        assert_eq!(std::mem::size_of::<StoredCode>(), AuthCode::LEN);
        let code = AuthCode::parse("A1B2C3").unwrap();
        assert_eq!(StoredCode::of(&code).as_str(), "A1B2C3");
        assert_eq!(StoredCode::of(&code).code(), Some(code));
    }
}

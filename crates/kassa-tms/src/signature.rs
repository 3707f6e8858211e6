//! Signed terminal requests.
//!
//! Every TMS request carries `X-Kassa-Terminal` (TID), `X-Kassa-Timestamp` (Unix ms),
//! `X-Kassa-Nonce` (16–64 of `[0-9A-Za-z_-]`), optionally `X-Kassa-Session`, and
//! `X-Kassa-Signature`: lowercase hex HMAC-SHA256 under the terminal's TMS credential (the
//! `tms_credential` string of credentials.json, as bytes) over [`canonical`]. The host refuses
//! timestamps more than [`SKEW_MS_MAX`] away from its clock and any nonce the terminal used
//! within that window (kept in the database, so replays are refused across host processes).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Header names.
pub const HEADER_TERMINAL: &str = "x-kassa-terminal";
/// Unix milliseconds.
pub const HEADER_TIMESTAMP: &str = "x-kassa-timestamp";
/// Unique per request.
pub const HEADER_NONCE: &str = "x-kassa-nonce";
/// The operator session token, when signed in.
pub const HEADER_SESSION: &str = "x-kassa-session";
/// The signature.
pub const HEADER_SIGNATURE: &str = "x-kassa-signature";
/// How far a request's timestamp may be from the host's clock.
pub const SKEW_MS_MAX: i64 = 5 * 60 * 1000;
/// Nonce length bounds.
pub const NONCE_CHARS_MIN: usize = 16;
/// Nonce length bounds.
pub const NONCE_CHARS_MAX: usize = 64;

/// The signed text: every part on its own line, the body as its SHA-256.
pub fn canonical(
    method: &str,
    path: &str,
    terminal_id: &str,
    timestamp_ms: i64,
    nonce: &str,
    session: &str,
    body: &[u8],
) -> String {
    format!(
        "KASSA-TMS-V1\n{method}\n{path}\n{terminal_id}\n{timestamp_ms}\n{nonce}\n{session}\n{}",
        hex::encode(Sha256::digest(body))
    )
}

fn mac(credential: &[u8], text: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this never fails; an empty key is still a key.
    let mut mac = match Hmac::<Sha256>::new_from_slice(credential) {
        Ok(mac) => mac,
        Err(_) => Hmac::<Sha256>::new(&Default::default()),
    };
    mac.update(text.as_bytes());
    mac
}

/// The signature a terminal sends (client side).
#[allow(clippy::too_many_arguments, reason = "the signed parts of a request")]
pub fn sign(
    credential: &[u8],
    method: &str,
    path: &str,
    terminal_id: &str,
    timestamp_ms: i64,
    nonce: &str,
    session: &str,
    body: &[u8],
) -> String {
    let text = canonical(method, path, terminal_id, timestamp_ms, nonce, session, body);
    hex::encode(mac(credential, &text).finalize().into_bytes())
}

/// Constant-time check of a received signature.
pub fn verify(credential: &[u8], text: &str, signature_hex: &str) -> bool {
    match hex::decode(signature_hex) {
        Ok(signature) => mac(credential, text).verify_slice(&signature).is_ok(),
        Err(_) => false,
    }
}

/// Whether a nonce has an acceptable shape.
pub fn nonce_ok(nonce: &str) -> bool {
    (NONCE_CHARS_MIN..=NONCE_CHARS_MAX).contains(&nonce.len())
        && nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_every_part() {
        let key = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let base = ("POST", "/tms/v1/login", "10000001", 1_000_i64, "nonce-0000000001", "", b"{}".as_slice());
        let signature = sign(key, base.0, base.1, base.2, base.3, base.4, base.5, base.6);
        let text = canonical(base.0, base.1, base.2, base.3, base.4, base.5, base.6);
        assert!(verify(key, &text, &signature));
        assert!(!verify(b"other", &text, &signature));
        assert!(!verify(key, &text, "zz"));
        for changed in [
            canonical("GET", base.1, base.2, base.3, base.4, base.5, base.6),
            canonical(base.0, "/tms/v1/logout", base.2, base.3, base.4, base.5, base.6),
            canonical(base.0, base.1, "10000002", base.3, base.4, base.5, base.6),
            canonical(base.0, base.1, base.2, 1_001, base.4, base.5, base.6),
            canonical(base.0, base.1, base.2, base.3, "nonce-0000000002", base.5, base.6),
            canonical(base.0, base.1, base.2, base.3, base.4, "token", base.6),
            canonical(base.0, base.1, base.2, base.3, base.4, base.5, b"{ }"),
        ] {
            assert!(!verify(key, &changed, &signature), "{changed}");
        }
        assert!(nonce_ok("abcdefABCDEF0123"));
        assert!(!nonce_ok("short"));
        assert!(!nonce_ok("abcdefABCDEF0123/"));
    }
}

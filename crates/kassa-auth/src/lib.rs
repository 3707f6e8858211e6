//! Identities and their secrets.
//!
//! Every password-like secret is stored only as an Argon2id hash (OWASP parameters: 19 MiB,
//! 2 passes, 1 lane) in PHC string form. Short digit codes — operator passwords, the refund
//! password (退款密码), the payment-code password (付款码密码) — are first keyed with the
//! pepper held under the master key (HMAC-SHA256), so that a stolen database alone cannot be
//! brute-forced over the 10^4–10^8 possible codes. Verification is constant-time inside
//! Argon2's own comparison.
//!
//! **Invariant**: no function here logs or returns a secret; errors never echo the input.

pub mod secrets;

pub use secrets::{hash_digit_code, hash_password, verify_digit_code, verify_password, HashError};

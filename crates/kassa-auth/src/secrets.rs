//! Argon2id hashing of passwords and peppered digit codes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use kassa_crypto::Pepper;
use zeroize::Zeroizing;

/// Argon2id memory cost (KiB): OWASP's 19 MiB.
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
/// Argon2id passes: OWASP's 2.
pub const ARGON2_PASSES: u32 = 2;
/// Argon2id lanes: 1.
pub const ARGON2_LANES: u32 = 1;
/// The longest secret accepted for hashing; longer input is refused before any work.
pub const SECRET_BYTES_MAX: usize = 1024;

/// Why a secret could not be hashed or a hash not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The secret is longer than [`SECRET_BYTES_MAX`].
    #[error("secret too long")]
    TooLong,
    /// The stored hash is not an Argon2 PHC string (a damaged record).
    #[error("stored hash is malformed")]
    MalformedHash,
    /// Argon2 refused its parameters (a bug).
    #[error("hashing failed")]
    Hashing,
}

fn argon2() -> Result<Argon2<'static>, HashError> {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None).map_err(|_| HashError::Hashing)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_bytes(secret: &[u8]) -> Result<String, HashError> {
    if secret.len() > SECRET_BYTES_MAX {
        return Err(HashError::TooLong);
    }
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let hash = argon2()?.hash_password(secret, &salt).map_err(|_| HashError::Hashing)?;
    Ok(hash.to_string())
}

fn verify_bytes(stored: &str, secret: &[u8]) -> Result<bool, HashError> {
    if secret.len() > SECRET_BYTES_MAX {
        return Ok(false);
    }
    let parsed = PasswordHash::new(stored).map_err(|_| HashError::MalformedHash)?;
    // The stored string carries its own parameters, so hashes made with older parameters still
    // verify (and can be re-hashed on the next successful login).
    Ok(Argon2::default().verify_password(secret, &parsed).is_ok())
}

/// Hashes a back-office password.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    hash_bytes(password.as_bytes())
}

/// Checks a back-office password against its stored hash.
pub fn verify_password(stored: &str, password: &str) -> Result<bool, HashError> {
    verify_bytes(stored, password.as_bytes())
}

/// Hashes a short digit code (operator password, refund or payment-code password): pepper first.
pub fn hash_digit_code(pepper: &Pepper, code: &str) -> Result<String, HashError> {
    if code.len() > SECRET_BYTES_MAX {
        return Err(HashError::TooLong);
    }
    let keyed: Zeroizing<[u8; 32]> = pepper.digit_code(code);
    hash_bytes(keyed.as_ref())
}

/// Checks a digit code against its stored hash.
pub fn verify_digit_code(pepper: &Pepper, stored: &str, code: &str) -> Result<bool, HashError> {
    if code.len() > SECRET_BYTES_MAX {
        return Ok(false);
    }
    let keyed: Zeroizing<[u8; 32]> = pepper.digit_code(code);
    verify_bytes(stored, keyed.as_ref())
}

#[cfg(test)]
mod tests {
    use kassa_crypto::MasterKey;

    use super::*;

    #[test]
    fn passwords_hash_with_owasp_argon2id_and_verify() {
        let hash = hash_password("Kassa-Demo-2026!").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(!hash.contains("Kassa-Demo"));
        assert!(verify_password(&hash, "Kassa-Demo-2026!").unwrap());
        assert!(!verify_password(&hash, "Kassa-Demo-2026?").unwrap());
        assert_ne!(hash, hash_password("Kassa-Demo-2026!").unwrap(), "salts differ");
        assert_eq!(verify_password("not a hash", "x"), Err(HashError::MalformedHash));
        assert_eq!(hash_password(&"x".repeat(2000)), Err(HashError::TooLong));
    }

    #[test]
    fn digit_codes_need_the_pepper() {
        let master = MasterKey::from_bytes([7; 32]);
        let other = MasterKey::from_bytes([8; 32]);
        let hash = hash_digit_code(&master.pepper(), "123456").unwrap();
        assert!(verify_digit_code(&master.pepper(), &hash, "123456").unwrap());
        assert!(!verify_digit_code(&master.pepper(), &hash, "123457").unwrap());
        // Without the right pepper the code does not verify: the database alone is not enough.
        assert!(!verify_digit_code(&other.pepper(), &hash, "123456").unwrap());
        assert!(!verify_password(&hash, "123456").unwrap());
    }
}

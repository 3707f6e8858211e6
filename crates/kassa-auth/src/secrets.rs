//! Argon2id hashing of passwords and peppered digit codes.
//!
//! A serving process reaches Argon2 only through the bounded pool ([`crate::hashing`]), whose
//! workers compute in their own reused memory (`Scratch`). The free functions below allocate
//! per call and are for work outside any request: seeding demo data, tests.

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use kassa_crypto::Pepper;
use zeroize::{Zeroize, Zeroizing};

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

/// The most Argon2 memory a worker keeps for reuse (1 KiB blocks): the OWASP parameters' 19 MiB.
/// A stored hash with larger parameters is computed in memory of its own.
pub const SCRATCH_BLOCKS_MAX: usize = ARGON2_MEMORY_KIB as usize;

/// Argon2 memory reused by one pool worker, so that its 19 MiB are allocated once per worker
/// rather than once per hash (the allocator then never holds freed blocks for every thread that
/// ever hashed). Zeroed after every use.
#[derive(Default)]
pub(crate) struct Scratch(Vec<Block>);

impl Scratch {
    /// Fills `out` with Argon2 of `secret` and `salt`, in this memory when the parameters fit.
    fn compute(&mut self, context: &Argon2<'_>, secret: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), HashError> {
        let count = context.params().block_count();
        if count > SCRATCH_BLOCKS_MAX {
            return context.hash_password_into(secret, salt, out).map_err(|_| HashError::Hashing);
        }
        if self.0.len() < count {
            self.0.resize(count, Block::default());
        }
        let computed = context.hash_password_into_with_memory(secret, salt, out, &mut self.0[..count]);
        self.0[..count].iter_mut().for_each(Zeroize::zeroize);
        computed.map_err(|_| HashError::Hashing)
    }

    /// [`hash_bytes`] in this memory.
    pub(crate) fn hash(&mut self, secret: &[u8]) -> Result<String, HashError> {
        if secret.len() > SECRET_BYTES_MAX {
            return Err(HashError::TooLong);
        }
        let context = argon2()?;
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let mut salt_bytes = [0_u8; 64];
        let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(|_| HashError::Hashing)?;
        let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
            self.compute(&context, secret, salt_raw, out).map_err(|_| argon2::password_hash::Error::Crypto)
        })
        .map_err(|_| HashError::Hashing)?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: context.params().try_into().map_err(|_| HashError::Hashing)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(hash.to_string())
    }

    /// [`verify_bytes`] in this memory: the parameters, salt and algorithm come from `stored`,
    /// the comparison is `Output`'s constant-time one.
    pub(crate) fn verify(&mut self, stored: &str, secret: &[u8]) -> Result<bool, HashError> {
        if secret.len() > SECRET_BYTES_MAX {
            return Ok(false);
        }
        let parsed = PasswordHash::new(stored).map_err(|_| HashError::MalformedHash)?;
        fn malformed<E>(_: E) -> HashError {
            HashError::MalformedHash
        }
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(malformed)?;
        let version = parsed.version.map(Version::try_from).transpose().map_err(malformed)?.unwrap_or_default();
        let params = Params::try_from(&parsed).map_err(malformed)?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(HashError::MalformedHash);
        };
        let mut salt_bytes = [0_u8; 64];
        let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(malformed)?;
        let context = Argon2::new(algorithm, version, params);
        let mut computed = Zeroizing::new(vec![0_u8; expected.len()]);
        self.compute(&context, secret, salt_raw, &mut computed)?;
        let computed = Output::new(&computed).map_err(malformed)?;
        Ok(computed == expected)
    }

    /// A back-office password's hash.
    pub(crate) fn hash_password(&mut self, password: &str) -> Result<String, HashError> {
        self.hash(password.as_bytes())
    }

    /// A back-office password against its hash.
    pub(crate) fn verify_password(&mut self, stored: &str, password: &str) -> Result<bool, HashError> {
        self.verify(stored, password.as_bytes())
    }

    /// A digit code's hash (pepper first).
    pub(crate) fn hash_digit_code(&mut self, pepper: &Pepper, code: &str) -> Result<String, HashError> {
        if code.len() > SECRET_BYTES_MAX {
            return Err(HashError::TooLong);
        }
        self.hash(pepper.digit_code(code).as_ref())
    }

    /// A digit code against its hash (pepper first).
    pub(crate) fn verify_digit_code(&mut self, pepper: &Pepper, stored: &str, code: &str) -> Result<bool, HashError> {
        if code.len() > SECRET_BYTES_MAX {
            return Ok(false);
        }
        self.verify(stored, pepper.digit_code(code).as_ref())
    }
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
    fn reused_memory_hashes_and_verifies_like_the_library() {
        let mut scratch = Scratch::default();
        let library = hash_password("Kassa-Demo-2026!").unwrap();
        assert!(scratch.verify_password(&library, "Kassa-Demo-2026!").unwrap());
        assert!(!scratch.verify_password(&library, "Kassa-Demo-2026?").unwrap());
        let ours = scratch.hash_password("Kassa-Demo-2026!").unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{ours}");
        assert!(verify_password(&ours, "Kassa-Demo-2026!").unwrap());
        assert!(!verify_password(&ours, "Kassa-Demo-2026?").unwrap());
        let zero = format!("{:?}", Block::new());
        for index in [0, scratch.0.len() / 2, scratch.0.len() - 1] {
            assert_eq!(format!("{:?}", scratch.0[index]), zero, "block {index} zeroed after use");
        }
        // Other parameters (older or larger hashes) still verify.
        let small = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(1024, 1, 1, None).unwrap());
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let small = small.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(scratch.verify(&small, b"pw").unwrap() && !scratch.verify(&small, b"px").unwrap());
        let large = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(32 * 1024, 1, 1, None).unwrap());
        let large = large.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(scratch.verify(&large, b"pw").unwrap());
        assert_eq!(scratch.0.len(), SCRATCH_BLOCKS_MAX, "never grown past its bound");
        assert_eq!(scratch.verify("not a hash", b"x"), Err(HashError::MalformedHash));
        let master = MasterKey::from_bytes([7; 32]);
        let code = scratch.hash_digit_code(&master.pepper(), "123456").unwrap();
        assert!(verify_digit_code(&master.pepper(), &code, "123456").unwrap());
        assert!(scratch.verify_digit_code(&master.pepper(), &code, "123456").unwrap());
        assert!(!scratch.verify_digit_code(&master.pepper(), &code, "123457").unwrap());
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

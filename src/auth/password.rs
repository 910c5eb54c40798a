//! Passwords (before anything in submit → … → poll: who may use it at all): Argon2id
//! hashes in PHC strings, checked in constant time. The clear password never leaves this
//! file except as the argument it came in; nothing here logs.

use std::sync::OnceLock;

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use rand_core::OsRng;

/// Shortest password `wordtally user add` accepts.
pub const MIN_PASSWORD_CHARS: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the password is too short (at least {MIN_PASSWORD_CHARS} characters)")]
    TooShort,
    #[error("the password could not be hashed: {0}")]
    Hash(String),
}

/// An Argon2id PHC string for `password` (default parameters: 19 MiB, 2 passes), with a
/// fresh random salt. Slow on purpose; callers on the async runtime use `spawn_blocking`.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches `stored`. When there is no such account (`None`) a hash is
/// still checked, against a dummy, so that the answer takes as long either way and the
/// time taken does not tell which names exist.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    let Some(stored) = stored else {
        let _ = check(password, dummy_hash());
        return false;
    };
    check(password, stored)
}

fn check(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        // argon2's verify compares the outputs in constant time.
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A real hash of a random password, made once, for unknown account names.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = crate::auth::token::random_hex(16);
        hash(&random).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("correct horse", Some(&a)));
        assert!(!verify("correct hors", Some(&a)));
        assert!(!verify("correct horse", None));
        assert!(!verify("correct horse", Some("not a phc string")));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
    }
}

//! API tokens and other random secrets (before submit → … → poll: which script is
//! asking). A token is 32 random bytes from the OS, shown once; only its SHA-256 digest is
//! stored. A fast hash is right here: the secret has 256 bits of entropy, so it cannot be
//! guessed from the digest the way a password could.

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

/// Prefix of every API token, so that a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "wt_";

/// `bytes` random bytes from the operating system, as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex(&buf)
}

/// A new API token: `wt_` and 64 hex digits.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_hex(32))
}

/// The stored form of a token or session id: SHA-256, hex.
pub fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Equality whose time does not depend on where the inputs differ (CSRF tokens, the
/// metrics token). The length is not secret.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_digest_is_sha256() {
        let a = new_token();
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), 3 + 64);
        assert_ne!(a, new_token());
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}

//! Webhook signatures (… → DB → **notify**): `X-Wordtally-Signature: t=TIMESTAMP,v1=HEX`
//! where HEX is HMAC-SHA256 over `TIMESTAMP.BODY` with the webhook's secret — Stripe's
//! scheme, so receivers can use code they already have. The timestamp (Unix seconds) is
//! inside the signed text: a receiver that refuses old timestamps stops replays of a
//! captured request, and the `X-Wordtally-Delivery` id lets it drop duplicates.
//!
//! Secrets are stored as they are: an HMAC needs the plain key to sign (a hash of it would
//! not do), and deriving per-webhook keys from a server key would make one more secret to
//! deploy and rotate. The secret is shown once at creation, never logged, and never
//! returned by any read route.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of a webhook secret (`whsec_` + 64 hex digits = 256 random bits).
pub const SECRET_PREFIX: &str = "whsec_";

/// A new webhook secret from the operating system's random source.
pub fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", crate::auth::token::random_hex(32))
}

/// The hex HMAC-SHA256 of `TIMESTAMP.BODY` under `secret`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// The `X-Wordtally-Signature` header value.
pub fn header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", signature(secret, timestamp, body))
}

/// Why a signature header was refused by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is not `t=TIMESTAMP,v1=HEX`")]
    Malformed,
    #[error("the timestamp is outside the tolerance window")]
    Stale,
    #[error("no v1 signature matches")]
    Mismatch,
}

/// Checks a signature header the way a receiver should: the timestamp within `tolerance_s`
/// of `now_s`, and some `v1` equal (in constant time) to the HMAC of `TIMESTAMP.BODY`.
/// The receiver side of the scheme, used by the tests and shown in the README.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), VerifyError> {
    let mut t: Option<i64> = None;
    let mut sigs: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse().map_err(|_| VerifyError::Malformed)?),
            Some(("v1", v)) => sigs.push(unhex(v).ok_or(VerifyError::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(VerifyError::Malformed)?;
    if sigs.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if (now_s - t).abs() > tolerance_s {
        return Err(VerifyError::Stale);
    }
    for sig in sigs {
        let mut mac = mac(secret);
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        if mac.verify_slice(&sig).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::Mismatch)
}

fn mac(secret: &str) -> HmacSha256 {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        let sig = signature("whsec_test", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(sig.len(), 64);
        let mut mac = HmacSha256::new_from_slice(b"whsec_test").expect("key");
        mac.update(br#"1700000000.{"a":1}"#);
        assert_eq!(sig, hex(&mac.finalize().into_bytes()));
    }

    #[test]
    fn verify_accepts_its_own_header_and_refuses_tampering() {
        let body = br#"{"type":"batch.finished"}"#;
        let h = header("whsec_k", 1000, body);
        assert_eq!(verify("whsec_k", &h, body, 1010, 300), Ok(()));
        assert_eq!(
            verify("whsec_other", &h, body, 1010, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("whsec_k", &h, b"{}", 1010, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("whsec_k", &h, body, 5000, 300),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify("whsec_k", "v1=zz", body, 1000, 300),
            Err(VerifyError::Malformed)
        );
        // A changed timestamp breaks the signature (it is signed too).
        let forged = h.replacen("t=1000", "t=1001", 1);
        assert_eq!(
            verify("whsec_k", &forged, body, 1000, 300),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn secrets_are_long_and_distinct() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with(SECRET_PREFIX) && a.len() == SECRET_PREFIX.len() + 64);
        assert_ne!(a, b);
    }
}

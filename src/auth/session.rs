//! Browser sessions (before submit → … → poll: which person is asking). The cookie holds a
//! random id; the database holds its SHA-256, the account and a per-session CSRF token, so
//! sessions survive a restart of `serve`, end at sign-out or expiry, and a stolen copy of
//! the database does not sign anyone in.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};

use super::token::{digest, random_hex};
use crate::model::now_ms;
use crate::store::accounts::SessionRow;
use crate::store::{Store, StoreResult};

/// Name of the session cookie.
pub const COOKIE: &str = "wordtally_session";

/// The session cookie's value, if the request carries one.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Whether the browser reached us over TLS. wordtally itself speaks plain HTTP, so TLS
/// means a proxy in front that says so (`X-Forwarded-Proto: https` or `Forwarded:
/// proto=https`); the cookie is then marked `Secure`.
pub fn behind_tls(headers: &HeaderMap) -> bool {
    let xfp = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().eq_ignore_ascii_case("https"))
        .unwrap_or(false);
    let fwd = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.to_ascii_lowercase().contains("proto=https"))
        .unwrap_or(false);
    xfp || fwd
}

/// `Set-Cookie` for a new session: HttpOnly (no script reads it), SameSite=Lax (not sent
/// on cross-site posts), Secure behind TLS.
pub fn set_cookie(value: &str, ttl: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let s = format!(
        "{COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        ttl.as_secs()
    );
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// `Set-Cookie` that deletes the session cookie.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    let s = format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// Starts a session for `account_id`; returns the cookie value (shown to the browser only).
pub async fn start(store: &Store, account_id: i64, ttl: Duration) -> StoreResult<String> {
    let id = random_hex(32);
    let csrf = random_hex(32);
    let now = now_ms();
    let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    store
        .create_session(&digest(&id), account_id, &csrf, now, expires)
        .await?;
    Ok(id)
}

/// The live session a cookie value stands for.
pub async fn lookup(store: &Store, cookie: &str) -> StoreResult<Option<SessionRow>> {
    store.session(&digest(cookie), now_ms()).await
}

/// Ends the session a cookie value stands for (sign-out).
pub async fn end(store: &Store, cookie: &str) -> StoreResult<()> {
    store.delete_session(&digest(cookie)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; wordtally_session=abc ; b=2"),
        );
        assert_eq!(cookie_value(&h).as_deref(), Some("abc"));
        assert_eq!(cookie_value(&HeaderMap::new()), None);
    }

    #[test]
    fn cookie_attributes() {
        let c = set_cookie("x", Duration::from_secs(60), false);
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && !c.contains("Secure"));
        let s = set_cookie("x", Duration::from_secs(60), true);
        assert!(s.to_str().unwrap().ends_with("; Secure"));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(behind_tls(&h));
        assert!(!behind_tls(&HeaderMap::new()));
    }
}

//! Cross-site request forgery checks (before submit → … → poll: a state-changing request
//! must come from our own pages). Two independent checks, both required for a request
//! made with a session: the browser's own `Sec-Fetch-Site` / `Origin` headers say the
//! request came from this origin, and the per-session token (a hidden form field
//! `csrf_token`, or the `X-CSRF-Token` header htmx sends) matches. Requests with an API
//! token are exempt: a browser never adds `Authorization: Bearer` by itself.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};

/// The form field carrying the token.
pub const FIELD: &str = "csrf_token";
/// The request header carrying the token (htmx sends it on every request, see base.html).
pub const HEADER: &str = "x-csrf-token";

/// Methods that change state and so need the checks.
pub fn changes_state(m: &Method) -> bool {
    !matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Why the browser's headers say this request is cross-site, if they do. Requests with
/// neither header (scripts, old browsers) pass this check; the token check still applies
/// to them when they carry a session.
pub fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        // "same-site" is a sibling subdomain: another origin, refused as well.
        if !matches!(site, "same-origin" | "none") {
            return Some("the request came from another site (Sec-Fetch-Site)");
        }
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("null");
    let authority = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .unwrap_or("");
    let hosts = [header::HOST.as_str(), "x-forwarded-host"];
    let same = hosts.iter().any(|h| {
        headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|host| {
                let host = host.trim();
                host.eq_ignore_ascii_case(authority)
                    || strip_default_port(host).eq_ignore_ascii_case(strip_default_port(authority))
            })
            .unwrap_or(false)
    });
    if same {
        None
    } else {
        Some("the request came from another origin (Origin)")
    }
}

fn strip_default_port(authority: &str) -> &str {
    authority
        .strip_suffix(":80")
        .or_else(|| authority.strip_suffix(":443"))
        .unwrap_or(authority)
}

/// The token sent with the request: the header, or else (for an urlencoded form) the
/// `csrf_token` field. Reading the form means buffering the body (at most `limit` bytes,
/// the body limit the handlers apply anyway); the request is rebuilt with the same bytes.
/// `Err` = the body is larger than `limit`.
pub async fn sent_token(req: Request, limit: usize) -> Result<(Request, Option<String>), ()> {
    if let Some(v) = req.headers().get(HEADER).and_then(|v| v.to_str().ok()) {
        let v = v.to_string();
        return Ok((req, Some(v)));
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.starts_with("application/x-www-form-urlencoded"))
        .unwrap_or(false);
    if !is_form {
        return Ok((req, None));
    }
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, limit).await.map_err(|_| ())?;
    let token = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == FIELD)
        .map(|(_, v)| v.into_owned());
    Ok((Request::from_parts(parts, Body::from(bytes)), token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn same_origin_passes_cross_site_fails() {
        assert_eq!(cross_site(&headers(&[("host", "127.0.0.1:5000")])), None);
        assert_eq!(
            cross_site(&headers(&[
                ("host", "127.0.0.1:5000"),
                ("origin", "http://127.0.0.1:5000"),
                ("sec-fetch-site", "same-origin"),
            ])),
            None
        );
        assert!(
            cross_site(&headers(&[
                ("host", "127.0.0.1:5000"),
                ("origin", "http://evil.example"),
            ]))
            .is_some()
        );
        assert!(
            cross_site(&headers(&[
                ("host", "127.0.0.1:5000"),
                ("sec-fetch-site", "cross-site"),
            ]))
            .is_some()
        );
        assert!(cross_site(&headers(&[("host", "127.0.0.1:5000"), ("origin", "null")])).is_some());
        assert_eq!(
            cross_site(&headers(&[
                ("host", "example.com"),
                ("origin", "https://example.com")
            ])),
            None
        );
    }
}

//! Security and cache headers on every response (the outermost layer of the web side,
//! submit … **poll**). A strict Content-Security-Policy: scripts only from our own origin,
//! no inline script and no `eval` — htmx 2 runs under it because the page turns off its
//! injected indicator styles (`includeIndicatorStyles: false` in base.html) and uses no
//! `hx-on`/`js:` attributes. Embedded assets are linked with their version in the query
//! (`?v=…`) and then cached as immutable; everything else is `no-store`, since pages and
//! API answers show live data.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The policy every response carries.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'; object-src 'none'";

/// The version string of the embedded assets: a hash of their bytes, so a new build with
/// changed assets gets new URLs and an old cached copy is never used.
pub fn asset_version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        // FNV-1a over both files: cheap, stable, and only needs to change when they do.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in include_bytes!("../../static/htmx.min.js")
            .iter()
            .chain(include_bytes!("../../static/app.css"))
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    })
}

pub async fn security_headers(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let versioned = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "v" && v == asset_version())
        })
        .unwrap_or(false);
    let mut res = next.run(req).await;
    let ok = res.status().is_success();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let cache = if path.starts_with("/static/") {
        if versioned && ok {
            "public, max-age=31536000, immutable"
        } else {
            // Unversioned link (an old page, a hand-typed URL): short, revalidated.
            "public, max-age=300"
        }
    } else {
        "no-store"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
}

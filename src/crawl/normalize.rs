//! URL normalisation of the crawl (queue → fetch → count → **links** → NSQ → DB): turns an
//! `href` found on a page into the one spelling the frontier deduplicates on, or says why
//! the link is not a page to crawl. The worker calls it on every link; the DB writer only
//! compares the strings it produces (`task.url_key`).
//!
//! What "the same page" means here (RFC 3986 §6 normalisation, as browsers and the `url`
//! crate's WHATWG parser do it, plus the crawler's own choices):
//! * resolved against the page's `<base href>` (itself resolved against the page URL) or
//!   the page's final URL; surrounding ASCII whitespace stripped, as browsers do;
//! * scheme and host lower-cased, IDN hosts in punycode, default ports removed, dot
//!   segments removed (`..` past the root stays at the root), an empty path becomes `/`
//!   (all by the WHATWG parser);
//! * percent-encoding: escapes upper-cased, escapes of unreserved characters
//!   (`A-Z a-z 0-9 - . _ ~`) decoded, so `%7euser`, `%7Euser` and `~user` are one page;
//! * the fragment dropped (it names a place in the same page);
//! * only `http` and `https`; links with credentials (`user:pass@host`) are refused (they
//!   would put secrets in a shared table and are a classic trap), as are URLs over the
//!   crawl's length limit.
//!
//! The query string is kept as it is (its order can matter to the server).

use url::Url;

/// Why a link is not followed (each is counted, never silent).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("not an http(s) link")]
    Scheme,
    #[error("the link does not parse as a URL")]
    Invalid,
    #[error("the link carries a user name or password")]
    Credentials,
    #[error("the link is longer than {0} bytes")]
    TooLong(usize),
}

/// Resolves `href` against `base` and normalises it (see the module docs).
pub fn resolve(base: &Url, href: &str, max_len: usize) -> Result<Url, LinkError> {
    let href = href.trim_matches(|c: char| c.is_ascii_whitespace());
    // A cheap first check on the raw text: a scheme other than http(s) is the common
    // case of a skipped link (javascript:, mailto:, tel:, data:) and needs no parse.
    if let Some(colon) = href.find(':') {
        let scheme = &href[..colon];
        let is_scheme = !scheme.is_empty()
            && scheme.as_bytes()[0].is_ascii_alphabetic()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if is_scheme
            && !scheme.eq_ignore_ascii_case("http")
            && !scheme.eq_ignore_ascii_case("https")
        {
            return Err(LinkError::Scheme);
        }
    }
    let url = base.join(href).map_err(|_| LinkError::Invalid)?;
    normalize(url, max_len)
}

/// Normalises an absolute URL (see the module docs).
pub fn normalize(mut url: Url, max_len: usize) -> Result<Url, LinkError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(LinkError::Scheme);
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(LinkError::Invalid);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(LinkError::Credentials);
    }
    url.set_fragment(None);
    let path = url.path();
    if path.contains('%') {
        let p = normalize_escapes(path);
        url.set_path(&p);
    }
    if let Some(q) = url.query()
        && q.contains('%')
    {
        let q = normalize_escapes(q);
        url.set_query(Some(&q));
    }
    if url.as_str().len() > max_len {
        return Err(LinkError::TooLong(max_len));
    }
    Ok(url)
}

/// Upper-cases the hex digits of every escape and decodes escapes of unreserved chars.
fn normalize_escapes(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            let v = h * 16 + l;
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(b[i + 1].to_ascii_uppercase() as char);
                out.push(b[i + 2].to_ascii_uppercase() as char);
            }
            i += 3;
            continue;
        }
        // Copy up to the next escape; every other byte is kept as the parser left it
        // (the parser already escaped what must be escaped, so this is ASCII).
        let next = s[i + 1..].find('%').map_or(b.len(), |k| i + 1 + k);
        out.push_str(&s[i..next]);
        i = next;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://Example.COM:80/docs/a/page.html?x=1#top").unwrap()
    }

    fn r(href: &str) -> Result<String, LinkError> {
        resolve(&base(), href, 2048).map(String::from)
    }

    #[test]
    fn relative_links_resolve_against_the_page() {
        assert_eq!(
            r("other.html").unwrap(),
            "http://example.com/docs/a/other.html"
        );
        assert_eq!(r("../b/").unwrap(), "http://example.com/docs/b/");
        assert_eq!(r("/root").unwrap(), "http://example.com/root");
        assert_eq!(
            r("?y=2").unwrap(),
            "http://example.com/docs/a/page.html?y=2"
        );
        assert_eq!(r("//other.org/x").unwrap(), "http://other.org/x");
        assert_eq!(
            r("  spaced.html\n").unwrap(),
            "http://example.com/docs/a/spaced.html"
        );
    }

    #[test]
    fn dot_segments_never_climb_past_the_root() {
        assert_eq!(
            r("../../../../../etc/passwd").unwrap(),
            "http://example.com/etc/passwd"
        );
        assert_eq!(r("/./a/./b/../c").unwrap(), "http://example.com/a/c");
    }

    #[test]
    fn fragments_are_dropped_and_same_page_links_collapse() {
        assert_eq!(
            r("#section").unwrap(),
            "http://example.com/docs/a/page.html?x=1"
        );
        assert_eq!(
            r("page.html#x").unwrap(),
            "http://example.com/docs/a/page.html"
        );
    }

    #[test]
    fn case_ports_and_empty_paths_are_normalised() {
        assert_eq!(
            r("HTTP://WWW.Example.ORG:80").unwrap(),
            "http://www.example.org/"
        );
        assert_eq!(
            r("https://example.org:443/A").unwrap(),
            "https://example.org/A"
        );
        assert_eq!(
            r("http://example.org:8080").unwrap(),
            "http://example.org:8080/"
        );
    }

    #[test]
    fn escapes_are_upper_cased_and_unreserved_ones_decoded() {
        assert_eq!(
            r("/%7euser/%2fa%2Fb").unwrap(),
            "http://example.com/~user/%2Fa%2Fb"
        );
        assert_eq!(r("/a?q=%41%3d").unwrap(), "http://example.com/a?q=A%3D");
        assert_eq!(r("/caf%C3%A9").unwrap(), r("/café").unwrap());
        // A lone or broken escape is kept as is.
        assert_eq!(r("/100%").unwrap(), "http://example.com/100%");
        assert_eq!(r("/%zz").unwrap(), "http://example.com/%zz");
    }

    #[test]
    fn other_schemes_are_not_links_to_crawl() {
        for href in [
            "javascript:void(0)",
            "JavaScript:alert(1)",
            "mailto:a@b.c",
            "tel:+123",
            "data:text/html,hi",
            "ftp://example.com/",
            "file:///etc/passwd",
        ] {
            assert_eq!(r(href), Err(LinkError::Scheme), "{href}");
        }
    }

    #[test]
    fn credentials_and_long_urls_are_refused() {
        assert_eq!(
            r("http://user:pw@example.com/"),
            Err(LinkError::Credentials)
        );
        assert_eq!(r("http://user@example.com/"), Err(LinkError::Credentials));
        let long = format!("/{}", "a".repeat(3000));
        assert_eq!(r(&long), Err(LinkError::TooLong(2048)));
        assert_eq!(r("http://[::1"), Err(LinkError::Invalid));
    }

    #[test]
    fn idn_hosts_become_punycode() {
        assert_eq!(
            r("http://bücher.example/").unwrap(),
            "http://xn--bcher-kva.example/"
        );
        assert_eq!(
            r("http://BÜCHER.example/").unwrap(),
            "http://xn--bcher-kva.example/"
        );
    }

    #[test]
    fn normalisation_is_idempotent() {
        for href in [
            "/%7euser/x%2f",
            "/a/../b?q=%41",
            "http://Ex.com:80/#f",
            "/café?é",
        ] {
            let once = resolve(&base(), href, 2048).unwrap();
            let twice = normalize(once.clone(), 2048).unwrap();
            assert_eq!(once, twice, "{href}");
        }
    }
}

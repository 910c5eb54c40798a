//! Address validation: the first thing done to a pasted line in the "submit" step
//! (submit → queue → fetch → count → NSQ → DB → poll), so that only a clean `http(s)` URL is
//! queued, stored and later handed to the "fetch" step.
//!
//! The rules mirror the original Flask app (bare `example.com/x` means `http://example.com/x`)
//! and add the checks a shared, public table needs: no credentials, no control characters,
//! nothing longer than the DB column. Private/loopback targets are NOT refused here: whether a
//! host is reachable-and-allowed depends on DNS at fetch time, so that is the SSRF guard's job
//! (`crate::fetch::guard`).

use url::Url;

/// Longest address we store (the DB column allows this many chars).
pub const MAX_ADDRESS_LEN: usize = 2048;

/// Why a pasted line is not an address we will fetch.
///
/// `Display` is one short plain-text sentence meant for the person who pasted it; it never echoes
/// arbitrary input (only a scheme, which is restricted to `[a-z0-9+.-]`), so it is safe to show
/// even before escaping.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AddressError {
    /// Nothing but whitespace was pasted.
    #[error("the address is empty")]
    Empty,
    /// Longer than [`MAX_ADDRESS_LEN`] characters (before or after normalization).
    #[error("the address is too long ({len} characters, at most {max} allowed)")]
    TooLong { len: usize, max: usize },
    /// NUL, newline, DEL or another control character inside the line.
    #[error("the address contains a control character")]
    ControlCharacter,
    /// A space, tab or other blank character inside the address.
    #[error("the address contains a space or other blank character")]
    Whitespace,
    /// A scheme other than `http`/`https`; carries the lower-cased scheme.
    #[error("only http and https addresses are supported (got \"{0}:\")")]
    UnsupportedScheme(String),
    /// `http://` with nothing (usable) after it.
    #[error("the address has no host name")]
    MissingHost,
    /// The host is neither a valid domain name nor a valid IP address.
    #[error("the address does not have a valid host name")]
    InvalidHost,
    /// A host name with an empty label (`a..b`, a leading dot): not a DNS name.
    #[error("the host name has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    /// A host name label longer than 63 octets: DNS cannot carry it.
    #[error("a label of the host name is longer than 63 characters")]
    LabelTooLong,
    /// A host name longer than 253 octets: DNS cannot carry it.
    #[error("the host name is longer than 253 characters")]
    HostTooLong,
    /// `[...]` that is not a valid IPv6 address (or is not closed).
    #[error("the address has an invalid IPv6 address")]
    InvalidIpv6,
    /// Port that is not a number or is larger than 65535.
    #[error("the address has an invalid port (it must be a number from 0 to 65535)")]
    InvalidPort,
    /// `user:password@host`: credentials would end up in a shared table.
    #[error("addresses with a user name or password are not accepted")]
    Credentials,
    /// Anything else the URL parser refuses.
    #[error("this is not a valid web address")]
    Invalid,
}

/// Turns one pasted line into the URL we will fetch, or a human reason.
///
/// Trims surrounding whitespace, adds `http://` when no scheme was given (also for
/// `host:port/...`, which a URL parser would otherwise read as scheme `host`), and accepts only
/// `http`/`https` URLs with a valid host, no credentials and at most [`MAX_ADDRESS_LEN`] chars.
pub fn normalize_address(input: &str) -> Result<Url, AddressError> {
    let trimmed = input.trim_matches(is_blank);
    if trimmed.is_empty() {
        return Err(AddressError::Empty);
    }
    let len = trimmed.chars().count();
    if len > MAX_ADDRESS_LEN {
        return Err(AddressError::TooLong {
            len,
            max: MAX_ADDRESS_LEN,
        });
    }
    // Tab is reported as whitespace (what a person sees), every other control char as control.
    if trimmed.chars().any(|c| c.is_control() && c != '\t') {
        return Err(AddressError::ControlCharacter);
    }
    if trimmed.chars().any(is_blank) {
        return Err(AddressError::Whitespace);
    }

    let candidate = match explicit_scheme(trimmed) {
        Some(scheme) => {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return Err(AddressError::UnsupportedScheme(scheme));
            }
            trimmed.to_owned()
        }
        // Scheme-relative `//host/path`.
        None if trimmed.starts_with("//") => format!("http:{trimmed}"),
        None => format!("http://{trimmed}"),
    };

    let url = Url::parse(&candidate).map_err(map_parse_error)?;
    // Defensive: `explicit_scheme` already decided, but the parser is the authority.
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(AddressError::UnsupportedScheme(url.scheme().to_owned()));
    }
    match url.host_str() {
        None | Some("") => return Err(AddressError::MissingHost),
        Some(_) => {}
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(AddressError::Credentials);
    }
    if let Some(url::Host::Domain(name)) = url.host() {
        check_dns_name(name)?;
    }
    // Percent-encoding and punycode can make the stored form longer than what was pasted.
    let final_len = url.as_str().len();
    if final_len > MAX_ADDRESS_LEN {
        return Err(AddressError::TooLong {
            len: final_len,
            max: MAX_ADDRESS_LEN,
        });
    }
    Ok(url)
}

/// Refuses host names that DNS cannot carry (RFC 1035 §2.3.4, as punycode): an empty
/// label, a label over 63 octets, a name over 253 octets. One trailing dot (a fully
/// qualified name) is allowed. Without this, such a name would be queued and fail later
/// at fetch time with a resolver error instead of a reason on the pasted line.
fn check_dns_name(name: &str) -> Result<(), AddressError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > 253 {
        return Err(AddressError::HostTooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(AddressError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(AddressError::LabelTooLong);
        }
    }
    Ok(())
}

/// Whitespace plus the invisible characters that survive copy-paste (zero-width space, BOM...).
fn is_blank(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// Returns the scheme if `s` really starts with one.
///
/// `localhost:8080`, `example.com:80/x` and `example.com:abc` are syntactically a scheme followed
/// by a path, but a person pasting them means host (and port), so they return `None` and get
/// `http://` prefixed (a bad port is then reported as such by the parser).
fn explicit_scheme(s: &str) -> Option<&str> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
        return None;
    }
    let rest = &s[colon + 1..];
    if rest.starts_with("//") {
        return Some(scheme);
    }
    let lower = scheme.to_ascii_lowercase();
    // `example.com:80/x`, `example.com:abc`, `localhost:8080`: a host name (maybe with a broken
    // port), not a scheme; the parser reports a bad port as such.
    if lower.contains('.') || lower == "localhost" {
        return None;
    }
    // `javascript:1` must stay a (refused) script, never become host "javascript".
    if NON_WEB_SCHEMES.contains(&lower.as_str()) {
        return Some(scheme);
    }
    // `intranet:8080/x`: a single-label host with a numeric port.
    let port_part = rest.split(['/', '?', '#']).next().unwrap_or("");
    if !port_part.is_empty() && port_part.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(scheme)
}

/// Schemes that are never read as a host name, even when followed by digits.
const NON_WEB_SCHEMES: &[&str] = &[
    "about",
    "blob",
    "chrome",
    "data",
    "file",
    "ftp",
    "ftps",
    "git",
    "gopher",
    "intent",
    "irc",
    "jar",
    "javascript",
    "ldap",
    "mailto",
    "news",
    "nntp",
    "sftp",
    "sms",
    "ssh",
    "tel",
    "telnet",
    "view-source",
    "vbscript",
    "ws",
    "wss",
];

fn map_parse_error(e: url::ParseError) -> AddressError {
    use url::ParseError as P;
    match e {
        P::EmptyHost => AddressError::MissingHost,
        P::InvalidPort => AddressError::InvalidPort,
        P::InvalidIpv6Address => AddressError::InvalidIpv6,
        P::IdnaError | P::InvalidIpv4Address | P::InvalidDomainCharacter => {
            AddressError::InvalidHost
        }
        _ => AddressError::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        match normalize_address(input) {
            Ok(u) => u.to_string(),
            Err(e) => panic!("{input:?} should be accepted, got {e}"),
        }
    }

    fn err(input: &str) -> AddressError {
        match normalize_address(input) {
            Ok(u) => panic!("{input:?} should be rejected, got {u}"),
            Err(e) => e,
        }
    }

    #[test]
    fn accepts_plain_http_and_https() {
        assert_eq!(ok("http://example.com/"), "http://example.com/");
        assert_eq!(
            ok("https://example.com/a?b=c#d"),
            "https://example.com/a?b=c#d"
        );
        assert_eq!(ok("HTTPS://EXAMPLE.COM/Path"), "https://example.com/Path");
    }

    #[test]
    fn trims_surrounding_whitespace() {
        assert_eq!(ok("  http://example.com/x \t\r\n"), "http://example.com/x");
        assert_eq!(ok("\u{FEFF}example.com\u{200B}"), "http://example.com/");
    }

    #[test]
    fn empty_is_rejected() {
        assert_eq!(err(""), AddressError::Empty);
        assert_eq!(err("   \t\n "), AddressError::Empty);
    }

    #[test]
    fn missing_scheme_gets_http() {
        assert_eq!(ok("example.com/x"), "http://example.com/x");
        assert_eq!(ok("example.com"), "http://example.com/");
        assert_eq!(ok("//example.com/x"), "http://example.com/x");
        assert_eq!(ok("www.example.com?q=1"), "http://www.example.com/?q=1");
    }

    #[test]
    fn host_port_without_scheme_gets_http() {
        assert_eq!(ok("localhost:8080"), "http://localhost:8080/");
        assert_eq!(ok("localhost:8080/x"), "http://localhost:8080/x");
        assert_eq!(ok("example.com:80/x"), "http://example.com/x");
        assert_eq!(ok("example.com:8443?q"), "http://example.com:8443/?q");
        assert_eq!(ok("127.0.0.1:9000"), "http://127.0.0.1:9000/");
        assert_eq!(ok("[::1]:8080/x"), "http://[::1]:8080/x");
        assert_eq!(ok("intranet:8080/x"), "http://intranet:8080/x");
        assert_eq!(ok("localhost:"), "http://localhost/");
    }

    #[test]
    fn non_http_schemes_are_rejected_by_name() {
        for (input, scheme) in [
            ("javascript:alert(1)", "javascript"),
            ("JavaScript:alert(1)", "javascript"),
            ("file:///etc/passwd", "file"),
            ("data:text/html,<b>x</b>", "data"),
            ("ftp://example.com/", "ftp"),
            ("mailto:someone@example.com", "mailto"),
            ("gopher://example.com/", "gopher"),
            ("ws://example.com/", "ws"),
            ("javascript:1", "javascript"),
            ("javascript:", "javascript"),
            ("data:1", "data"),
            ("tel:5551234", "tel"),
            ("intranet:abc", "intranet"),
        ] {
            assert_eq!(
                err(input),
                AddressError::UnsupportedScheme(scheme.into()),
                "{input}"
            );
        }
        assert_eq!(
            err("javascript:alert(1)").to_string(),
            "only http and https addresses are supported (got \"javascript:\")"
        );
    }

    #[test]
    fn missing_host_is_rejected() {
        assert_eq!(err("http://"), AddressError::MissingHost);
        assert_eq!(err("https://"), AddressError::MissingHost);
        assert_eq!(err("http://:80/"), AddressError::MissingHost);
    }

    #[test]
    fn control_characters_are_rejected() {
        assert_eq!(err("http://exa\0mple.com/"), AddressError::ControlCharacter);
        assert_eq!(err("http://example.com/\0"), AddressError::ControlCharacter);
        assert_eq!(
            err("http://example.com/a\nb"),
            AddressError::ControlCharacter
        );
        assert_eq!(
            err("http://example.com/a\rb"),
            AddressError::ControlCharacter
        );
        assert_eq!(
            err("http://example.com/\u{7f}"),
            AddressError::ControlCharacter
        );
        assert_eq!(
            err("http://example.com/a\u{85}b"),
            AddressError::ControlCharacter
        );
        assert_eq!(err("\u{1b}[31mexample.com"), AddressError::ControlCharacter);
    }

    #[test]
    fn interior_whitespace_is_rejected() {
        assert_eq!(err("http://example.com/a b"), AddressError::Whitespace);
        assert_eq!(err("http://exa mple.com/"), AddressError::Whitespace);
        assert_eq!(err("http://example.com/a\tb"), AddressError::Whitespace);
        assert_eq!(err("example.com/\u{A0}x"), AddressError::Whitespace);
        assert_eq!(err("example.com/\u{200B}x"), AddressError::Whitespace);
        assert_eq!(
            err("http://example.com/ http://other.com/"),
            AddressError::Whitespace
        );
    }

    #[test]
    fn invalid_ports_are_rejected() {
        assert_eq!(err("http://example.com:99999/"), AddressError::InvalidPort);
        assert_eq!(err("http://example.com:65536/"), AddressError::InvalidPort);
        assert_eq!(err("http://example.com:abc/"), AddressError::InvalidPort);
        assert_eq!(err("http://example.com:-1/"), AddressError::InvalidPort);
        assert_eq!(err("example.com:abc"), AddressError::InvalidPort);
        assert_eq!(err("localhost:abc/x"), AddressError::InvalidPort);
        assert_eq!(err("localhost:70000"), AddressError::InvalidPort);
        assert_eq!(ok("http://example.com:65535/"), "http://example.com:65535/");
    }

    #[test]
    fn broken_ipv6_is_rejected() {
        assert_eq!(err("http://[::1"), AddressError::InvalidIpv6);
        assert_eq!(err("http://[zz::1]/"), AddressError::InvalidIpv6);
        assert_eq!(
            err("http://[1:2:3:4:5:6:7:8:9]/"),
            AddressError::InvalidIpv6
        );
        assert_eq!(err("[::1/x"), AddressError::InvalidIpv6);
        assert_eq!(ok("http://[::1]:8080/"), "http://[::1]:8080/");
        assert_eq!(ok("http://[2001:DB8::1]/"), "http://[2001:db8::1]/");
    }

    #[test]
    fn invalid_hosts_are_rejected() {
        assert_eq!(err("http://exa<mple.com/"), AddressError::InvalidHost);
        assert_eq!(err("http://example%.com/"), AddressError::InvalidHost);
        assert_eq!(err("http://256.256.256.256/"), AddressError::InvalidHost);
        assert!(normalize_address("http://a|b.com/").is_err());
    }

    #[test]
    fn too_long_is_rejected() {
        let path = "a".repeat(MAX_ADDRESS_LEN);
        assert_eq!(
            err(&format!("http://example.com/{path}")),
            AddressError::TooLong {
                len: MAX_ADDRESS_LEN + 19,
                max: MAX_ADDRESS_LEN
            }
        );
        // Exactly at the limit is fine, counting the prefix we add.
        let at_limit = format!("http://example.com/{}", "a".repeat(MAX_ADDRESS_LEN - 19));
        assert_eq!(ok(&at_limit).len(), MAX_ADDRESS_LEN);
        // Short as pasted, long once percent-encoded.
        let encoded = format!("http://example.com/{}", "é".repeat(MAX_ADDRESS_LEN / 3));
        assert!(matches!(err(&encoded), AddressError::TooLong { .. }));
    }

    #[test]
    fn credentials_are_rejected() {
        assert_eq!(
            err("http://user:pass@example.com/"),
            AddressError::Credentials
        );
        assert_eq!(err("http://user@example.com/"), AddressError::Credentials);
        assert_eq!(err("https://:pass@example.com/"), AddressError::Credentials);
        // Without a scheme, `user:` reads as one; refused either way.
        assert_eq!(
            err("user:pass@example.com"),
            AddressError::UnsupportedScheme("user".into())
        );
    }

    #[test]
    fn markup_is_rejected_with_plain_text_reason() {
        for input in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "\"><script>alert(1)</script>",
            "http://<script>/",
        ] {
            let e = err(input);
            let msg = e.to_string();
            assert!(
                !msg.contains('<') && !msg.contains('>') && !msg.contains('&'),
                "{input}: {msg}"
            );
        }
        // Markup in the path of a real host is just percent-encoded text, not a problem.
        assert_eq!(ok("example.com/<b>"), "http://example.com/%3Cb%3E");
    }

    #[test]
    fn messages_are_short_sentences() {
        let all = [
            AddressError::Empty,
            AddressError::TooLong {
                len: 3000,
                max: 2048,
            },
            AddressError::ControlCharacter,
            AddressError::Whitespace,
            AddressError::UnsupportedScheme("ftp".into()),
            AddressError::MissingHost,
            AddressError::InvalidHost,
            AddressError::InvalidIpv6,
            AddressError::EmptyLabel,
            AddressError::LabelTooLong,
            AddressError::HostTooLong,
            AddressError::InvalidPort,
            AddressError::Credentials,
            AddressError::Invalid,
        ];
        for e in all {
            let msg = e.to_string();
            assert!(!msg.is_empty() && msg.len() < 100, "{msg}");
            assert!(msg.is_ascii());
        }
    }

    #[test]
    fn idn_hosts_become_punycode() {
        assert_eq!(ok("bücher.example/"), "http://xn--bcher-kva.example/");
    }

    #[test]
    fn hosts_that_cannot_be_dns_names_are_rejected() {
        assert_eq!(err("http://a..example.com/"), AddressError::EmptyLabel);
        assert_eq!(err("http://.example.com/"), AddressError::EmptyLabel);
        let label = "a".repeat(64);
        assert_eq!(
            err(&format!("{label}.example.com")),
            AddressError::LabelTooLong
        );
        let ok63 = "a".repeat(63);
        assert_eq!(
            ok(&format!("{ok63}.example.com")),
            format!("http://{ok63}.example.com/")
        );
        // 4 × 63 + 3 dots = 255 octets > 253, every label legal.
        let long = [ok63.as_str(); 4].join(".");
        assert_eq!(err(&long), AddressError::HostTooLong);
        // A fully qualified name (one trailing dot) is fine.
        assert_eq!(ok("example.com."), "http://example.com./");
    }
}

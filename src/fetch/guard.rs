//! SSRF guard for the "fetch" step (submit → queue → fetch → count → NSQ → DB → poll): keeps
//! user-submitted addresses from reaching loopback, private, link-local, cloud-metadata and other
//! non-public addresses from inside our network.
//!
//! Three checkpoints, because no single one sees everything:
//! * [`GuardResolver`] filters the addresses DNS returns, so the IP actually connected to is
//!   checked (no time-of-check/time-of-use gap, DNS rebinding does not help).
//! * [`Guard::check_url`] checks IP-literal hosts (reqwest never calls the resolver for those) and
//!   refuses `localhost` names, before the first request…
//! * …and again on every redirect hop, via [`Guard::redirect_policy`].
//!
//! Operators can switch it off (`--allow-private-targets`) or allow exact targets (`host` or
//! `host:port`), which is also how the tests reach their loopback servers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Hint appended to every refusal so an operator knows how to get past it on purpose.
const HOW_TO_ALLOW: &str =
    "use --allow-private-targets, or add the target to the allow-list with --allow-target";

/// A refusal by the guard (or a redirect rule it enforces); `Display` is the human sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// The target is (or resolves only to) a non-public address, or is a `localhost` name.
    #[error("blocked by SSRF guard: {target} is {why} ({HOW_TO_ALLOW})")]
    Blocked { target: String, why: String },
    /// More than `max_redirects` hops.
    #[error("too many redirects ({0})")]
    TooManyRedirects(usize),
    /// A hop leads back to an address already visited in this chain.
    #[error("redirect loop: {0} was already visited")]
    RedirectLoop(String),
    /// A redirect to `file:`, `ftp:` and the like.
    #[error("redirect to an unsupported address ({0}); only http and https are followed")]
    BadRedirectScheme(String),
}

/// Why an allow-list entry could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid allow-list entry {entry:?}: expected host or host:port")]
pub struct InvalidAllowEntry {
    pub entry: String,
}

/// DNS resolution failed for a reason other than the guard.
#[derive(Debug, thiserror::Error)]
#[error("could not resolve host {host}: {source}")]
pub struct ResolveError {
    pub host: String,
    #[source]
    pub source: std::io::Error,
}

/// One parsed allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowEntry {
    host: Host<String>,
    /// `None` = any port.
    port: Option<u16>,
}

impl AllowEntry {
    fn parse(raw: &str) -> Result<AllowEntry, InvalidAllowEntry> {
        let bad = || InvalidAllowEntry {
            entry: raw.to_owned(),
        };
        let s = raw.trim();
        if s.is_empty() {
            return Err(bad());
        }
        // A bare IPv6 address (several colons, no brackets) has no port.
        if let Ok(ip) = s.parse::<Ipv6Addr>() {
            return Ok(AllowEntry {
                host: Host::Ipv6(ip),
                port: None,
            });
        }
        let (host_part, port_part) = if s.starts_with('[') {
            let close = s.find(']').ok_or_else(bad)?;
            let rest = &s[close + 1..];
            let port = match rest.strip_prefix(':') {
                Some(p) => Some(p),
                None if rest.is_empty() => None,
                None => return Err(bad()),
            };
            (&s[..=close], port)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        let port = match port_part {
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
            None => None,
        };
        // Same host parser as request URLs use, so `127.1`, `LOCALHOST` etc. compare equal.
        let host = Host::parse(host_part).map_err(|_| bad())?;
        let host = match host {
            Host::Domain(d) => Host::Domain(normalize_domain(&d).to_owned()),
            other => other,
        };
        Ok(AllowEntry { host, port })
    }
}

/// Lower-case with the trailing root dot removed, for name comparisons.
fn normalize_domain(d: &str) -> &str {
    d.strip_suffix('.').unwrap_or(d)
}

/// The guard's configuration, shared by the resolver, the pre-check and the redirect policy.
#[derive(Debug, Clone)]
pub struct Guard {
    inner: Arc<GuardInner>,
}

#[derive(Debug)]
struct GuardInner {
    /// `allow_private_targets`: the guard is off.
    disabled: bool,
    allow: Vec<AllowEntry>,
    max_redirects: usize,
}

impl Guard {
    /// Builds the guard; `allow` entries are `host` or `host:port` (IPv6 as `[::1]:8080` or `::1`).
    pub fn new(
        allow_private_targets: bool,
        allow: &[String],
        max_redirects: usize,
    ) -> Result<Guard, InvalidAllowEntry> {
        let allow = allow
            .iter()
            .map(|e| AllowEntry::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Guard {
            inner: Arc::new(GuardInner {
                disabled: allow_private_targets,
                allow,
                max_redirects,
            }),
        })
    }

    /// True when `--allow-private-targets` switched the guard off.
    pub fn is_disabled(&self) -> bool {
        self.inner.disabled
    }

    fn is_allowed(&self, host: &Host<&str>, port: Option<u16>) -> bool {
        self.inner.allow.iter().any(|e| {
            let host_matches = match (&e.host, host) {
                (Host::Domain(a), Host::Domain(b)) => a == normalize_domain(b),
                (Host::Ipv4(a), Host::Ipv4(b)) => a == b,
                (Host::Ipv6(a), Host::Ipv6(b)) => a == b,
                _ => false,
            };
            host_matches && (e.port.is_none() || e.port == port)
        })
    }

    /// True when some allow-list entry names this domain (with or without a port).
    ///
    /// The resolver does not filter such names: it only sees the name, not the port, so
    /// [`check_url`](Self::check_url) refuses such a name on any port not listed for it.
    fn name_allow_listed(&self, name: &str) -> bool {
        let name = normalize_domain(name);
        self.inner
            .allow
            .iter()
            .any(|e| matches!(&e.host, Host::Domain(d) if d == name))
    }

    /// Checks a URL's host before a request is sent or a redirect followed.
    ///
    /// IP literals are checked here because reqwest does not resolve them; `localhost` names are
    /// refused by name (they may not even go through DNS). Other names pass: the resolver checks
    /// the addresses they resolve to.
    pub fn check_url(&self, url: &Url) -> Result<(), GuardError> {
        if self.inner.disabled {
            return Ok(());
        }
        let Some(host) = url.host() else {
            return Ok(()); // No host, nothing to connect to; reqwest will refuse it.
        };
        let port = url.port_or_known_default();
        if self.is_allowed(&host, port) {
            return Ok(());
        }
        let target = match port {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        match host {
            Host::Ipv4(ip) => check_ip(IpAddr::V4(ip), &target),
            Host::Ipv6(ip) => check_ip(IpAddr::V6(ip), &target),
            Host::Domain(d) => {
                let d = normalize_domain(d);
                if d == "localhost" || d.ends_with(".localhost") {
                    return Err(GuardError::Blocked {
                        target,
                        why: "a localhost name".into(),
                    });
                }
                if self.name_allow_listed(d) {
                    // Its DNS answers are not filtered, so only the listed ports may be used.
                    return Err(GuardError::Blocked {
                        target,
                        why: "allow-listed only for other ports".into(),
                    });
                }
                Ok(())
            }
        }
    }

    /// The redirect policy enforcing the guard, the hop limit and loop detection on every hop.
    pub fn redirect_policy(&self) -> reqwest::redirect::Policy {
        let guard = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            let next = attempt.url();
            // `previous` starts with the original URL, so its length is the hop number.
            if attempt.previous().len() > guard.inner.max_redirects {
                let max = guard.inner.max_redirects;
                return attempt.error(GuardError::TooManyRedirects(max));
            }
            if next.scheme() != "http" && next.scheme() != "https" {
                let scheme = format!("{}:", next.scheme());
                return attempt.error(GuardError::BadRedirectScheme(scheme));
            }
            if attempt.previous().iter().any(|p| same_resource(p, next)) {
                let looped = next.to_string();
                return attempt.error(GuardError::RedirectLoop(looped));
            }
            if let Err(e) = guard.check_url(next) {
                return attempt.error(e);
            }
            // Recorded for the result (the task page shows the chain); outside a fetch's
            // scope there is nothing to record into.
            let _ = super::HOPS.try_with(|h| h.borrow_mut().push(next.to_string()));
            attempt.follow()
        })
    }

    /// The DNS resolver that drops blocked addresses.
    pub fn resolver(&self) -> GuardResolver {
        GuardResolver {
            guard: self.clone(),
        }
    }
}

/// Equal ignoring the fragment (which is never sent).
fn same_resource(a: &Url, b: &Url) -> bool {
    let mut a = a.clone();
    let mut b = b.clone();
    a.set_fragment(None);
    b.set_fragment(None);
    a == b
}

fn check_ip(ip: IpAddr, target: &str) -> Result<(), GuardError> {
    match blocked_reason(ip) {
        Some(why) => Err(GuardError::Blocked {
            target: target.to_owned(),
            why: format!("a {why} address"),
        }),
        None => Ok(()),
    }
}

/// True when connecting to `ip` could reach something that is not the public internet.
pub fn is_blocked_ip(ip: IpAddr) -> bool {
    blocked_reason(ip).is_some()
}

/// The kind of non-public address `ip` is, or `None` for a public one.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_reason_v4(v4),
        IpAddr::V6(v6) => blocked_reason_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn blocked_reason_v4(ip: Ipv4Addr) -> Option<&'static str> {
    // Order matters only for the wording (metadata before link-local, broadcast before reserved).
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([169, 254, 169, 254], 32, "cloud metadata"),
        ([100, 100, 100, 200], 32, "cloud metadata"),
        ([255, 255, 255, 255], 32, "broadcast"),
        ([0, 0, 0, 0], 8, "unspecified (\"this network\")"),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "shared (CGNAT)"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "IETF protocol assignment"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 31, 196, 0], 24, "AS112"),
        ([192, 52, 193, 0], 24, "AMT"),
        ([192, 88, 99, 0], 24, "6to4 relay"),
        ([192, 168, 0, 0], 16, "private"),
        ([192, 175, 48, 0], 24, "AS112"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

fn in_v6(ip: Ipv6Addr, net: u128, prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (u128::from(ip) & mask) == (net & mask)
}

fn blocked_reason_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    let low_v4 = Ipv4Addr::from(bits as u32);
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // Forms that carry an IPv4 address: judged by the embedded address.
    // ::ffff:a.b.c.d (mapped), ::ffff:0:a.b.c.d (SIIT translated), ::a.b.c.d (compatible),
    // 64:ff9b::a.b.c.d (NAT64 well-known prefix).
    if in_v6(ip, 0xffff_0000_0000, 96)
        || in_v6(ip, 0xffff_0000_0000_0000, 96)
        || in_v6(ip, 0, 96)
        || in_v6(ip, 0x0064_ff9b << 96, 96)
    {
        return blocked_reason_v4(low_v4).map(|_| "IPv4-embedding IPv6 (to a blocked IPv4)");
    }
    // 6to4: 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD.
    if in_v6(ip, 0x2002 << 112, 16) {
        let v4 = Ipv4Addr::from((bits >> 80) as u32);
        return blocked_reason_v4(v4).map(|_| "6to4 (to a blocked IPv4)");
    }
    const RANGES: &[(u128, u32, &str)] = &[
        // fd00:ec2::254, AWS metadata over IPv6 (also inside fc00::/7).
        (
            0xfd00_0ec2_0000_0000_0000_0000_0000_0254,
            128,
            "cloud metadata",
        ),
        (0x0064_ff9b_0001 << 80, 48, "local-use NAT64"),
        (0x0100 << 112, 64, "discard-only"),
        // IETF protocol assignments incl. Teredo, benchmarking, ORCHID.
        (0x2001 << 112, 23, "IETF protocol assignment"),
        (0x2001_0db8 << 96, 32, "documentation"),
        (0x3fff << 112, 20, "documentation"),
        (0x5f00 << 112, 16, "segment routing"),
        (0xfc00 << 112, 7, "unique-local (private)"),
        (0xfe80 << 112, 10, "link-local"),
        (0xfec0 << 112, 10, "site-local"),
        (0xff00 << 112, 8, "multicast"),
    ];
    if let Some((_, _, why)) = RANGES
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
    {
        return Some(why);
    }
    // Only 2000::/3 is allocated global unicast; everything else is reserved.
    if !in_v6(ip, 0x2000 << 112, 3) {
        return Some("reserved");
    }
    None
}

/// A `reqwest` DNS resolver that resolves with the system resolver (tokio `lookup_host`) and
/// drops blocked addresses, so the IP actually connected to is the one that was checked.
///
/// When every address is blocked the lookup fails with a [`GuardError::Blocked`].
/// Allow-listed names are not filtered (their ports are enforced by [`Guard::check_url`]).
#[derive(Debug, Clone)]
pub struct GuardResolver {
    guard: Guard,
}

impl Resolve for GuardResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|source| ResolveError {
                    host: host.clone(),
                    source,
                })?
                .collect();
            if guard.is_disabled() || guard.name_allow_listed(&host) {
                let it: Addrs = Box::new(addrs.into_iter());
                return Ok(it);
            }
            let mut first_reason = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match blocked_reason(a.ip()) {
                    Some(why) => {
                        tracing::debug!(host = %host, ip = %a.ip(), why, "SSRF guard dropped address");
                        first_reason.get_or_insert((a.ip(), why));
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                let why = match first_reason {
                    Some((ip, why)) => {
                        format!("a name that resolves only to blocked addresses ({ip}: {why})")
                    }
                    None => "a name that resolves to no address".to_owned(),
                };
                return Err(GuardError::Blocked { target: host, why }.into());
            }
            let it: Addrs = Box::new(allowed.into_iter());
            Ok(it)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(s: &str) -> bool {
        let ip: IpAddr = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
        is_blocked_ip(ip)
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ipv4_loopback_private_linklocal_cgnat_blocked() {
        for ip in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "192.168.255.255",
            "169.254.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "100.100.100.200",
        ] {
            assert!(blocked(ip), "{ip}");
        }
    }

    #[test]
    fn ipv4_unspecified_broadcast_multicast_reserved_blocked() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "250.1.2.3",
        ] {
            assert!(blocked(ip), "{ip}");
        }
    }

    #[test]
    fn ipv4_documentation_benchmark_protocol_ranges_blocked() {
        for ip in [
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.0.8",
            "192.88.99.1",
        ] {
            assert!(blocked(ip), "{ip}");
        }
    }

    #[test]
    fn ipv4_public_allowed_including_range_edges() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "9.255.255.255",
            "11.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert!(!blocked(ip), "{ip}");
        }
    }

    #[test]
    fn ipv6_special_ranges_blocked() {
        for ip in [
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fc00::1",
            "fd12:3456::1",
            "fd00:ec2::254",
            "ff02::1",
            "ff0e::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
            "2001::1",      // Teredo
            "2001:2::1",    // benchmarking
            "64:ff9b:1::1", // local-use NAT64
            "fec0::1",      // site-local
            "4000::1",      // outside 2000::/3
            "::2",          // IPv4-compatible 0.0.0.2
        ] {
            assert!(blocked(ip), "{ip}");
        }
    }

    #[test]
    fn ipv6_public_allowed() {
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:82a::200e",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808", // NAT64 of 8.8.8.8
            "2002:808:808::1",  // 6to4 of 8.8.8.8
        ] {
            assert!(!blocked(ip), "{ip}");
        }
    }

    #[test]
    fn ipv4_embedded_in_ipv6_is_checked() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0:127.0.0.1", // SIIT
            "::127.0.0.1",        // IPv4-compatible
            "::169.254.169.254",
            "64:ff9b::127.0.0.1", // NAT64
            "64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
            "2002:7f00:1::1",     // 6to4 of 127.0.0.1
            "2002:c0a8:101::1",   // 6to4 of 192.168.1.1
        ] {
            assert!(blocked(ip), "{ip}");
        }
    }

    #[test]
    fn url_crate_normalizes_numeric_hosts_and_guard_blocks_them() {
        let g = Guard::new(false, &[], 10).expect("guard");
        for (s, host) in [
            ("http://2130706433/", "127.0.0.1"),
            ("http://0x7f.0.0.1/", "127.0.0.1"),
            ("http://127.1/", "127.0.0.1"),
            ("http://0177.0.0.1/", "127.0.0.1"),
            ("http://0x7f000001/", "127.0.0.1"),
            ("http://0/", "0.0.0.0"),
        ] {
            let u = url(s);
            assert_eq!(u.host_str(), Some(host), "{s}");
            let e = g.check_url(&u).expect_err(s);
            assert!(e.to_string().starts_with("blocked by SSRF guard"), "{e}");
        }
    }

    #[test]
    fn check_url_blocks_literals_and_localhost_names() {
        let g = Guard::new(false, &[], 10).expect("guard");
        for s in [
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://foo.localhost:3000/",
            "https://a.b.localhost/",
        ] {
            let e = g.check_url(&url(s)).expect_err(s);
            let msg = e.to_string();
            assert!(msg.contains("blocked by SSRF guard"), "{msg}");
            assert!(msg.contains("--allow-private-targets"), "{msg}");
            assert!(msg.contains("allow-list"), "{msg}");
        }
        // Public literals and ordinary names pass (names are checked by the resolver).
        for s in [
            "http://8.8.8.8/",
            "https://example.com/",
            "http://localhost.example.com/",
            "http://[2606:4700:4700::1111]/",
        ] {
            assert_eq!(g.check_url(&url(s)), Ok(()), "{s}");
        }
    }

    #[test]
    fn disabled_guard_allows_everything() {
        let g = Guard::new(true, &[], 10).expect("guard");
        assert!(g.check_url(&url("http://127.0.0.1/")).is_ok());
        assert!(g.check_url(&url("http://localhost/")).is_ok());
    }

    #[test]
    fn allow_list_matches_host_and_port_exactly() {
        let allow = vec![
            "127.0.0.1:8081".to_owned(),
            "[::1]:9000".to_owned(),
            "Internal.Example".to_owned(),
            "localhost:3000".to_owned(),
            "fd00::5".to_owned(),
            "app.internal:8443".to_owned(),
        ];
        let g = Guard::new(false, &allow, 10).expect("guard");
        assert!(g.check_url(&url("http://127.0.0.1:8081/x")).is_ok());
        assert!(g.check_url(&url("http://127.1:8081/x")).is_ok());
        assert!(g.check_url(&url("http://127.0.0.1:8082/")).is_err());
        assert!(g.check_url(&url("http://127.0.0.1/")).is_err());
        assert!(g.check_url(&url("http://[::1]:9000/")).is_ok());
        assert!(g.check_url(&url("http://[::1]:9001/")).is_err());
        assert!(g.check_url(&url("http://localhost:3000/")).is_ok());
        assert!(g.check_url(&url("http://localhost:3001/")).is_err());
        assert!(g.check_url(&url("http://[fd00::5]:1234/")).is_ok());
        // A name listed with a port: its DNS is unfiltered, so other ports are refused.
        assert!(g.check_url(&url("https://app.internal:8443/")).is_ok());
        assert!(g.check_url(&url("https://app.internal/")).is_err());
        assert!(g.check_url(&url("http://internal.example:1234/")).is_ok());
        assert!(g.name_allow_listed("internal.example"));
        assert!(g.name_allow_listed("internal.example."));
        assert!(g.name_allow_listed("localhost"));
        assert!(!g.name_allow_listed("example.com"));
    }

    #[test]
    fn allow_list_rejects_garbage() {
        for bad in ["", "host:notaport", "host:70000", "[::1", "[::1]x", "a b"] {
            assert!(Guard::new(false, &[bad.to_owned()], 10).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_http_port_counts_for_allow_entries() {
        let g = Guard::new(false, &["127.0.0.1:80".to_owned()], 10).expect("guard");
        assert!(g.check_url(&url("http://127.0.0.1/")).is_ok());
        assert!(g.check_url(&url("https://127.0.0.1/")).is_err());
    }

    #[tokio::test]
    async fn resolver_refuses_names_resolving_only_to_blocked_addresses() {
        let g = Guard::new(false, &[], 10).expect("guard");
        let name: Name = "127.0.0.1".parse().expect("name");
        let err = match g.resolver().resolve(name).await {
            Ok(_) => panic!("should be blocked"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.contains("blocked by SSRF guard"), "{msg}");
        assert!(msg.contains("loopback"), "{msg}");

        // Guard off: same name resolves.
        let off = Guard::new(true, &[], 10).expect("guard");
        let name: Name = "127.0.0.1".parse().expect("name");
        let addrs: Vec<_> = match off.resolver().resolve(name).await {
            Ok(a) => a.collect(),
            Err(e) => panic!("{e}"),
        };
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}

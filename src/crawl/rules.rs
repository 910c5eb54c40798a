//! Crawl rules (submit → queue → fetch → count → **links** → DB): what a crawl may follow.
//! Checked when the crawl is submitted (a bad rule is a 422 with a reason), carried in
//! every job of the crawl, and applied by the worker to each normalised link of a page so
//! that only links in scope travel back; the DB writer applies the limits that need the
//! crawl's state (`max_pages`, `max_depth`, deduplication).
//!
//! Each rule is one small, separately tested piece, like Scrapy's offsite and URL filters:
//! * [`Follow`]: `host` (the start address's host and port), `domain` (its registrable
//!   domain and every subdomain, from the public suffix list) or `prefix` (the start
//!   address up to its last `/`);
//! * `include` / `exclude`: URL regular expressions (the `regex` crate: linear time, size-
//!   limited, so a hostile pattern cannot stall a worker);
//! * limits with a server-wide ceiling.

use regex::{RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::address::MAX_ADDRESS_LEN;

/// Pages a crawl stores at most unless it says otherwise.
pub const DEFAULT_MAX_PAGES: u64 = 10_000;
/// Links kept per page unless the crawl says otherwise.
pub const DEFAULT_LINKS_PER_PAGE: u32 = 10_000;
/// Most `include` / `exclude` patterns, each at most this many chars.
pub const MAX_PATTERNS: usize = 20;
pub const MAX_PATTERN_CHARS: usize = 1_000;
/// Compiled size limit of the include / exclude automata.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Which links of a page a crawl follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Follow {
    /// The start address's host and port (default).
    #[default]
    Host,
    /// The start address's registrable domain and every subdomain of it.
    Domain,
    /// URLs that start with the start address up to its last `/`.
    Prefix,
}

impl Follow {
    pub fn as_str(self) -> &'static str {
        match self {
            Follow::Host => "host",
            Follow::Domain => "domain",
            Follow::Prefix => "prefix",
        }
    }
}

impl std::str::FromStr for Follow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "host" => Ok(Follow::Host),
            "domain" => Ok(Follow::Domain),
            "prefix" => Ok(Follow::Prefix),
            _ => Err(format!(
                "unknown follow rule {s:?}: use host, domain or prefix"
            )),
        }
    }
}

/// A crawl's rules as stored with its batch and carried in its jobs. `roots` is derived
/// from the start addresses when the crawl is created (one entry per distinct root: a
/// `host:port`, a registrable domain, or a URL prefix, by `follow`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CrawlRules {
    pub follow: Follow,
    pub max_pages: u64,
    #[schema(required = true)]
    pub max_depth: Option<u32>,
    pub links_per_page: u32,
    pub max_url_len: usize,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    pub obey_robots: bool,
    /// What `follow` compares a link with (derived; see the type's docs).
    #[serde(default)]
    pub roots: Vec<String>,
}

impl Default for CrawlRules {
    fn default() -> Self {
        CrawlRules {
            follow: Follow::Host,
            max_pages: DEFAULT_MAX_PAGES,
            max_depth: None,
            links_per_page: DEFAULT_LINKS_PER_PAGE,
            max_url_len: MAX_ADDRESS_LEN,
            include: Vec::new(),
            exclude: Vec::new(),
            obey_robots: true,
            roots: Vec::new(),
        }
    }
}

/// Why a link is outside a crawl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// Another host, domain or prefix than the crawl follows.
    Offsite,
    /// No `include` pattern matches.
    NotIncluded,
    /// An `exclude` pattern matches.
    Excluded,
}

impl CrawlRules {
    /// Checks user-given rules against the server's ceiling; `Err` is a sentence for a 422.
    pub fn validate(&self, ceiling: u64) -> Result<(), String> {
        if self.max_pages == 0 {
            return Err("max_pages must be at least 1".into());
        }
        if self.max_pages > ceiling {
            return Err(format!(
                "max_pages {} is above this server's ceiling of {ceiling} (CRAWL_MAX_PAGES)",
                self.max_pages
            ));
        }
        if self.links_per_page == 0 || self.links_per_page > 100_000 {
            return Err("links_per_page must be from 1 to 100000".into());
        }
        if self.max_url_len < 16 || self.max_url_len > MAX_ADDRESS_LEN {
            return Err(format!(
                "max_url_len must be from 16 to {MAX_ADDRESS_LEN} bytes"
            ));
        }
        if let Some(d) = self.max_depth
            && d > 1_000
        {
            return Err("max_depth must be at most 1000".into());
        }
        compile("include", &self.include)?;
        compile("exclude", &self.exclude)?;
        Ok(())
    }

    /// Sets `roots` from the start addresses (already normalised) by `follow`.
    pub fn set_roots(&mut self, starts: &[Url]) {
        let mut roots: Vec<String> = starts.iter().map(|u| root_of(self.follow, u)).collect();
        roots.sort();
        roots.dedup();
        self.roots = roots;
    }

    /// The compiled form, for checking many links.
    pub fn scope(&self) -> Result<Scope, String> {
        Ok(Scope {
            follow: self.follow,
            roots: self.roots.clone(),
            include: compile("include", &self.include)?,
            exclude: compile("exclude", &self.exclude)?,
        })
    }
}

/// What `follow` compares for this URL.
fn root_of(follow: Follow, u: &Url) -> String {
    match follow {
        Follow::Host => host_port(u),
        Follow::Domain => registrable(u.host_str().unwrap_or_default()),
        Follow::Prefix => {
            let s = u.as_str();
            // Up to and including the path's last '/', without query (a URL always has a
            // '/' after its host, so this keeps at least the origin).
            let path_end = s.find(['?', '#']).unwrap_or(s.len());
            let cut = s[..path_end].rfind('/').map_or(path_end, |k| k + 1);
            s[..cut].to_owned()
        }
    }
}

fn host_port(u: &Url) -> String {
    format!(
        "{}:{}",
        u.host_str().unwrap_or_default(),
        u.port_or_known_default().unwrap_or(0)
    )
}

/// The registrable domain of a host by the public suffix list (`docs.python.org` →
/// `python.org`); an IP address, a single label or a public suffix itself stand for
/// themselves.
fn registrable(host: &str) -> String {
    let h = host.trim_end_matches('.');
    if h.parse::<std::net::Ipv4Addr>().is_ok() || h.starts_with('[') {
        return h.to_owned();
    }
    psl::domain_str(h).unwrap_or(h).to_owned()
}

fn compile(what: &str, patterns: &[String]) -> Result<Option<RegexSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    if patterns.len() > MAX_PATTERNS {
        return Err(format!("at most {MAX_PATTERNS} {what} patterns"));
    }
    for p in patterns {
        if p.chars().count() > MAX_PATTERN_CHARS {
            return Err(format!(
                "an {what} pattern is longer than {MAX_PATTERN_CHARS} characters"
            ));
        }
    }
    RegexSetBuilder::new(patterns)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Some)
        .map_err(|e| format!("{what} pattern: {e}"))
}

/// [`CrawlRules`] compiled for checking links.
#[derive(Clone, Debug)]
pub struct Scope {
    follow: Follow,
    roots: Vec<String>,
    include: Option<RegexSet>,
    exclude: Option<RegexSet>,
}

impl Scope {
    /// Whether the crawl follows this (normalised) URL.
    pub fn check(&self, u: &Url) -> Result<(), Miss> {
        if !self.onsite(u) {
            return Err(Miss::Offsite);
        }
        if let Some(inc) = &self.include
            && !inc.is_match(u.as_str())
        {
            return Err(Miss::NotIncluded);
        }
        if let Some(exc) = &self.exclude
            && exc.is_match(u.as_str())
        {
            return Err(Miss::Excluded);
        }
        Ok(())
    }

    fn onsite(&self, u: &Url) -> bool {
        match self.follow {
            Follow::Host => {
                // `host_port(u)` without building it (this runs for every link).
                let host = u.host_str().unwrap_or_default();
                let port = u.port_or_known_default().unwrap_or(0);
                self.roots.iter().any(|r| {
                    r.rsplit_once(':')
                        .is_some_and(|(h, p)| h == host && p.parse::<u16>() == Ok(port))
                })
            }
            Follow::Domain => {
                let host = u.host_str().unwrap_or_default().trim_end_matches('.');
                self.roots.iter().any(|d| {
                    host == d
                        || (host.len() > d.len()
                            && host.ends_with(d.as_str())
                            && host.as_bytes()[host.len() - d.len() - 1] == b'.')
                })
            }
            Follow::Prefix => self
                .roots
                .iter()
                .any(|p| u.as_str().starts_with(p.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn scope(follow: Follow, start: &str, inc: &[&str], exc: &[&str]) -> Scope {
        let mut r = CrawlRules {
            follow,
            include: inc.iter().map(|s| s.to_string()).collect(),
            exclude: exc.iter().map(|s| s.to_string()).collect(),
            ..CrawlRules::default()
        };
        r.set_roots(&[url(start)]);
        r.scope().unwrap()
    }

    #[test]
    fn host_means_host_and_port() {
        let s = scope(
            Follow::Host,
            "http://docs.example.com/3/index.html",
            &[],
            &[],
        );
        assert_eq!(s.check(&url("http://docs.example.com/other")), Ok(()));
        assert_eq!(s.check(&url("http://docs.example.com:80/x")), Ok(()));
        assert_eq!(
            s.check(&url("http://docs.example.com:8080/x")),
            Err(Miss::Offsite)
        );
        assert_eq!(
            s.check(&url("https://docs.example.com/x")),
            Err(Miss::Offsite)
        );
        assert_eq!(
            s.check(&url("http://www.example.com/x")),
            Err(Miss::Offsite)
        );
    }

    #[test]
    fn domain_means_the_registrable_domain_and_its_subdomains() {
        let s = scope(Follow::Domain, "http://docs.python.org/3/", &[], &[]);
        assert_eq!(s.check(&url("http://www.python.org/")), Ok(()));
        assert_eq!(s.check(&url("https://python.org/")), Ok(()));
        assert_eq!(s.check(&url("http://a.b.python.org/")), Ok(()));
        assert_eq!(s.check(&url("http://notpython.org/")), Err(Miss::Offsite));
        assert_eq!(
            s.check(&url("http://python.org.evil.com/")),
            Err(Miss::Offsite)
        );
        // A public suffix with two labels.
        let s = scope(Follow::Domain, "http://shop.example.co.uk/", &[], &[]);
        assert_eq!(s.check(&url("http://example.co.uk/")), Ok(()));
        assert_eq!(s.check(&url("http://other.co.uk/")), Err(Miss::Offsite));
        // An IP address stands for itself.
        let s = scope(Follow::Domain, "http://127.0.0.1:8000/", &[], &[]);
        assert_eq!(s.check(&url("http://127.0.0.1:9000/x")), Ok(()));
        assert_eq!(s.check(&url("http://127.0.0.2/")), Err(Miss::Offsite));
    }

    #[test]
    fn prefix_means_the_start_up_to_its_last_slash() {
        let s = scope(
            Follow::Prefix,
            "http://h.test/docs/3/index.html?x=1",
            &[],
            &[],
        );
        assert_eq!(
            s.check(&url("http://h.test/docs/3/library/os.html")),
            Ok(())
        );
        assert_eq!(s.check(&url("http://h.test/docs/3/")), Ok(()));
        assert_eq!(s.check(&url("http://h.test/docs/2/")), Err(Miss::Offsite));
        assert_eq!(s.check(&url("http://h.test/docs/")), Err(Miss::Offsite));
    }

    #[test]
    fn include_and_exclude_patterns() {
        let s = scope(
            Follow::Host,
            "http://h.test/",
            &["/library/", "/tutorial/"],
            &["\\?"],
        );
        assert_eq!(s.check(&url("http://h.test/library/os.html")), Ok(()));
        assert_eq!(
            s.check(&url("http://h.test/howto/x.html")),
            Err(Miss::NotIncluded)
        );
        assert_eq!(
            s.check(&url("http://h.test/library/os.html?a=1")),
            Err(Miss::Excluded)
        );
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        let bad = |r: CrawlRules| r.validate(10_000).unwrap_err();
        let e = bad(CrawlRules {
            include: vec!["(unclosed".into()],
            ..CrawlRules::default()
        });
        assert!(
            e.contains("include pattern") && e.contains("unclosed"),
            "{e}"
        );
        let e = bad(CrawlRules {
            exclude: vec!["a{100000}{100000}".into()],
            ..CrawlRules::default()
        });
        assert!(e.contains("exclude pattern"), "{e}");
        let e = bad(CrawlRules {
            max_pages: 20_000,
            ..CrawlRules::default()
        });
        assert!(e.contains("CRAWL_MAX_PAGES"), "{e}");
        let e = bad(CrawlRules {
            include: vec!["x".into(); 21],
            ..CrawlRules::default()
        });
        assert!(e.contains("at most 20"), "{e}");
        let e = bad(CrawlRules {
            max_pages: 0,
            ..CrawlRules::default()
        });
        assert!(e.contains("at least 1"), "{e}");
        assert_eq!(CrawlRules::default().validate(10_000), Ok(()));
    }

    #[test]
    fn rules_round_trip_as_json() {
        let mut r = CrawlRules {
            follow: Follow::Prefix,
            max_depth: Some(3),
            include: vec!["a".into()],
            ..CrawlRules::default()
        };
        r.set_roots(&[url("http://h.test/a/b")]);
        let back: CrawlRules = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.roots, vec!["http://h.test/a/".to_string()]);
    }
}

//! robots.txt (RFC 9309) before the "fetch" step of a crawl (submit → queue → **fetch** →
//! count → NSQ → DB → poll): may this crawl fetch this URL, and how long must it wait
//! between requests to the host?
//!
//! The file is fetched through the [`Fetcher`] (SSRF guard, redirects, timeouts) once per
//! (crawl, origin), kept in a bounded process cache shared by every worker runner and, when
//! Redis is configured, in Redis under `{prefix}:robots:{crawl}:{origin}` with an expiry, so
//! other worker processes do not fetch it again. Matching is `texting_robots`' (its tests
//! include Google's robots.txt suite) for the product token of `USER_AGENT`.
//!
//! What a robots.txt answer means (RFC 9309 §2.3.1):
//! * 2xx: its rules apply (`Crawl-delay` too, capped at [`MAX_CRAWL_DELAY`]);
//! * 4xx except 429 ("unavailable"): everything is allowed;
//! * 5xx, 429, unreachable, refused by the SSRF guard, a redirect loop, larger than
//!   [`MAX_ROBOTS_BYTES`], binary: the origin is disallowed for this crawl, with the reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use texting_robots::Robot;
use tokio::sync::OnceCell;
use url::Url;

use super::RedisShared;
use crate::fetch::{BodySink, Fetcher};

/// robots.txt bytes read at most. RFC 9309 §2.5 asks crawlers to parse at least 500 KiB; a
/// larger file disallows the origin (its rules past the cap are unknown, so nothing is
/// assumed allowed).
pub const MAX_ROBOTS_BYTES: usize = 500 * 1024;

/// Longest `Crawl-delay` honoured: a hostile or mistaken `Crawl-delay: 86400` would
/// otherwise park the crawl for a day per page.
pub const MAX_CRAWL_DELAY: Duration = Duration::from_secs(60);

/// `Sitemap:` lines kept per robots.txt.
pub const MAX_SITEMAP_LINES: usize = 100;

/// (crawl, origin) entries the process cache holds; past it the expired and then the oldest
/// tenth are dropped (a dropped entry is fetched again, or read from Redis, when next asked).
const CACHE_CAPACITY: usize = 10_000;

/// How long another process's fetch of the same robots.txt is waited for (its lock's life)
/// before this process fetches it itself.
const FETCH_LOCK: Duration = Duration::from_secs(30);

/// May the crawl fetch this URL?
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RobotsVerdict {
    /// Fetch it; wait at least `crawl_delay` between requests to the host when given (the
    /// caller takes the larger of it and `PER_HOST_DELAY_MS`).
    Allowed { crawl_delay: Option<Duration> },
    /// Do not fetch: the task ends `skipped` with this reason, e.g. "disallowed by
    /// robots.txt" or "robots.txt answered 503".
    Disallowed { reason: String },
}

/// What one origin's robots.txt came to; the form kept in Redis (JSON), so another process
/// re-parses the same text instead of fetching it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum RobotsFile {
    /// A 2xx text: its rules.
    Rules { body: String },
    /// "Unavailable" (4xx): every URL allowed.
    AllowAll { status: u16 },
    /// "Unreachable" or unusable: every URL disallowed, for this reason.
    DisallowAll { reason: String },
}

/// A parsed [`RobotsFile`], as the process cache holds it.
enum Rules {
    Parsed(Box<Robot>),
    AllowAll,
    DisallowAll(String),
}

struct Cached {
    rules: OnceCell<Arc<Rules>>,
    created: Instant,
}

/// The robots.txt cache of one process; `Clone` (clones share everything), given to every
/// worker runner. Concurrent checks of one (crawl, origin) wait for a single fetch.
#[derive(Clone)]
pub struct RobotsCache {
    inner: Arc<Inner>,
}

struct Inner {
    fetcher: Fetcher,
    shared: Option<RedisShared>,
    /// The product token matched against `User-agent:` lines (`wordtally` of
    /// `wordtally/0.1.0`).
    token: String,
    ttl: Duration,
    map: Mutex<HashMap<(i64, String), Arc<Cached>>>,
}

impl std::fmt::Debug for RobotsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobotsCache")
            .field("token", &self.inner.token)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

impl RobotsCache {
    /// `user_agent` is the full `USER_AGENT` (`wordtally/0.1.0`); its product token is what
    /// `User-agent:` lines are matched against (RFC 9309 §2.2.1). `ttl` bounds how long a
    /// robots.txt is trusted, in the process and in Redis.
    pub fn new(
        fetcher: Fetcher,
        shared: Option<RedisShared>,
        user_agent: String,
        ttl: Duration,
    ) -> Self {
        RobotsCache {
            inner: Arc::new(Inner {
                fetcher,
                shared,
                token: product_token(&user_agent),
                ttl: ttl.max(Duration::from_secs(1)),
                map: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Fetched once per (crawl, origin) and cached; Redis-shared across processes when given.
    pub async fn check(&self, crawl: i64, url: &Url) -> RobotsVerdict {
        let Some(origin) = origin_of(url) else {
            return RobotsVerdict::Disallowed {
                reason: format!("no robots.txt for a {} address", url.scheme()),
            };
        };
        if is_robots_txt(url) {
            // The file itself is always fetchable (RFC 9309 §2.4).
            return RobotsVerdict::Allowed { crawl_delay: None };
        }
        match &*self.rules(crawl, &origin).await {
            Rules::Parsed(robot) => {
                if robot.allowed(url.as_str()) {
                    RobotsVerdict::Allowed {
                        crawl_delay: crawl_delay(robot.delay),
                    }
                } else {
                    RobotsVerdict::Disallowed {
                        reason: "disallowed by robots.txt".to_owned(),
                    }
                }
            }
            Rules::AllowAll => RobotsVerdict::Allowed { crawl_delay: None },
            Rules::DisallowAll(reason) => RobotsVerdict::Disallowed {
                reason: reason.clone(),
            },
        }
    }

    /// The `Sitemap:` lines of the origin's robots.txt (same cache), at most
    /// [`MAX_SITEMAP_LINES`], absolute http(s) URLs only.
    pub async fn sitemaps(&self, crawl: i64, url: &Url) -> Vec<String> {
        let Some(origin) = origin_of(url) else {
            return Vec::new();
        };
        match &*self.rules(crawl, &origin).await {
            Rules::Parsed(robot) => robot
                .sitemaps
                .iter()
                .filter(|s| Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https")))
                .take(MAX_SITEMAP_LINES)
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Entries in the process cache (tests check the bound).
    pub fn cached_origins(&self) -> usize {
        self.inner.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    async fn rules(&self, crawl: i64, origin: &str) -> Arc<Rules> {
        let cell = self.cell(crawl, origin);
        cell.rules
            .get_or_init(|| async {
                let file = self.load(crawl, origin).await;
                Arc::new(self.parse(file))
            })
            .await
            .clone()
    }

    /// The cache slot of (crawl, origin), made if missing or expired. Bounded: when full,
    /// expired slots go first, then the oldest tenth.
    fn cell(&self, crawl: i64, origin: &str) -> Arc<Cached> {
        let ttl = self.inner.ttl;
        let now = Instant::now();
        let mut map = self.inner.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = (crawl, origin.to_owned());
        if let Some(c) = map.get(&key)
            && now.duration_since(c.created) < ttl
        {
            return Arc::clone(c);
        }
        if map.len() >= CACHE_CAPACITY {
            map.retain(|_, c| now.duration_since(c.created) < ttl);
            if map.len() >= CACHE_CAPACITY {
                let mut ages: Vec<Instant> = map.values().map(|c| c.created).collect();
                ages.sort_unstable();
                let cut = ages[CACHE_CAPACITY / 10];
                map.retain(|_, c| c.created > cut);
            }
        }
        let cached = Arc::new(Cached {
            rules: OnceCell::new(),
            created: now,
        });
        map.insert(key, Arc::clone(&cached));
        cached
    }

    fn parse(&self, file: RobotsFile) -> Rules {
        match file {
            RobotsFile::Rules { body } => match Robot::new(&self.inner.token, body.as_bytes()) {
                Ok(robot) => Rules::Parsed(Box::new(robot)),
                Err(e) => Rules::DisallowAll(format!("robots.txt could not be parsed ({e})")),
            },
            RobotsFile::AllowAll { .. } => Rules::AllowAll,
            RobotsFile::DisallowAll { reason } => Rules::DisallowAll(reason),
        }
    }

    /// From Redis when another process already fetched it; else fetched here (with a short
    /// Redis lock so processes asking at once fetch it once) and stored for the others.
    async fn load(&self, crawl: i64, origin: &str) -> RobotsFile {
        let Some(shared) = &self.inner.shared else {
            return self.fetch(origin).await;
        };
        let key = shared.key(&format!("robots:{crawl}:{origin}"));
        let lock = shared.key(&format!("robots-lock:{crawl}:{origin}"));
        match self.load_shared(shared, &key, &lock).await {
            Ok(Some(file)) => return file,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(origin, error = %e,
                    "robots.txt: Redis unavailable, fetching without sharing");
                return self.fetch(origin).await;
            }
        }
        let file = self.fetch(origin).await;
        if let Err(e) = self.store_shared(shared, &key, &lock, &file).await {
            tracing::warn!(origin, error = %e, "robots.txt: could not share it through Redis");
        }
        file
    }

    /// `Ok(Some)` = another process's copy; `Ok(None)` = this process holds the fetch lock
    /// (or waited it out) and must fetch.
    async fn load_shared(
        &self,
        shared: &RedisShared,
        key: &str,
        lock: &str,
    ) -> Result<Option<RobotsFile>, redis::RedisError> {
        let Ok(mut conn) = shared.conn().await else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no connection",
            )));
        };
        let deadline = Instant::now() + FETCH_LOCK;
        loop {
            let stored: Option<String> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
            if let Some(file) = stored.and_then(|s| serde_json::from_str(&s).ok()) {
                return Ok(Some(file));
            }
            let got: Option<String> = redis::cmd("SET")
                .arg(lock)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(FETCH_LOCK.as_millis() as u64)
                .query_async(&mut conn)
                .await?;
            if got.is_some() {
                // The holder may have stored its copy and let go of the lock between our GET
                // and our SET: look once more before fetching it a second time.
                let stored: Option<String> =
                    redis::cmd("GET").arg(key).query_async(&mut conn).await?;
                if let Some(file) = stored.and_then(|s| serde_json::from_str(&s).ok()) {
                    let _: Result<(), _> = redis::cmd("DEL").arg(lock).query_async(&mut conn).await;
                    return Ok(Some(file));
                }
                return Ok(None);
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            // Another process is fetching it: its answer lands under `key` shortly.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn store_shared(
        &self,
        shared: &RedisShared,
        key: &str,
        lock: &str,
        file: &RobotsFile,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut conn = shared.conn().await?;
        let json = serde_json::to_string(file)?;
        let ttl_ms = u64::try_from(self.inner.ttl.as_millis()).unwrap_or(u64::MAX);
        redis::pipe()
            .cmd("SET")
            .arg(key)
            .arg(json)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("DEL")
            .arg(lock)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Fetches `{origin}/robots.txt` and decides what it means (see the module header).
    async fn fetch(&self, origin: &str) -> RobotsFile {
        let url = match Url::parse(&format!("{origin}/robots.txt")) {
            Ok(u) => u,
            Err(e) => {
                return RobotsFile::DisallowAll {
                    reason: format!("robots.txt address is invalid ({e})"),
                };
            }
        };
        metrics::counter!("wordtally_robots_fetches_total").increment(1);
        let fetched = self
            .inner
            .fetcher
            .fetch(&url, |_| CappedBytes::new(MAX_ROBOTS_BYTES))
            .await;
        let file = judge(
            fetched.status,
            fetched.error.as_deref(),
            fetched.output.as_deref(),
        );
        tracing::info!(origin, status = fetched.status, verdict = ?summary(&file), "robots.txt read");
        file
    }
}

/// Short form of a decision for the log (never the whole body).
fn summary(file: &RobotsFile) -> String {
    match file {
        RobotsFile::Rules { body } => format!("rules ({} bytes)", body.len()),
        RobotsFile::AllowAll { status } => format!("allow all (HTTP {status})"),
        RobotsFile::DisallowAll { reason } => format!("disallow all ({reason})"),
    }
}

/// What a robots.txt fetch means (RFC 9309 §2.3.1); pure, so it is unit-tested.
fn judge(status: Option<u16>, error: Option<&str>, body: Option<&[u8]>) -> RobotsFile {
    let disallow = |reason: String| RobotsFile::DisallowAll { reason };
    match status {
        Some(s) if s >= 500 || s == 429 => return disallow(format!("robots.txt answered {s}")),
        _ => {}
    }
    if let Some(e) = error {
        if e.starts_with("not a text document") {
            return disallow(format!("robots.txt is {e}"));
        }
        return disallow(format!("robots.txt could not be fetched: {e}"));
    }
    match status {
        Some(s) if (400..500).contains(&s) => RobotsFile::AllowAll { status: s },
        Some(s) if (200..300).contains(&s) => {
            let body = body.unwrap_or_default();
            if body.len() > MAX_ROBOTS_BYTES {
                return disallow(format!(
                    "robots.txt is larger than {} KiB",
                    MAX_ROBOTS_BYTES / 1024
                ));
            }
            if looks_binary(body) {
                return disallow("robots.txt is not text (binary content)".to_owned());
            }
            RobotsFile::Rules {
                body: String::from_utf8_lossy(body).into_owned(),
            }
        }
        Some(s) => disallow(format!("robots.txt answered {s}")),
        None => disallow("robots.txt could not be fetched".to_owned()),
    }
}

/// A NUL byte, or more than one byte in twenty outside UTF-8 (a Latin-1 comment here and
/// there is still text): not a robots.txt.
fn looks_binary(body: &[u8]) -> bool {
    if memchr::memchr(0, body).is_some() {
        return true;
    }
    if simdutf8::basic::from_utf8(body).is_ok() {
        return false;
    }
    let text = String::from_utf8_lossy(body);
    let bad = text
        .chars()
        .filter(|&c| c == char::REPLACEMENT_CHARACTER)
        .count();
    bad * 20 > body.len()
}

fn crawl_delay(secs: Option<f32>) -> Option<Duration> {
    let s = secs?;
    if !s.is_finite() || s <= 0.0 {
        return None;
    }
    Some(Duration::from_secs_f32(
        s.min(MAX_CRAWL_DELAY.as_secs_f32()),
    ))
}

/// `scheme://host[:port]` of an http(s) URL: robots.txt applies per origin (RFC 9309 §2.3).
fn origin_of(url: &Url) -> Option<String> {
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Some(url.origin().ascii_serialization()),
        _ => None,
    }
}

fn is_robots_txt(url: &Url) -> bool {
    url.path() == "/robots.txt"
}

/// `wordtally/0.1.0 (+https://…)` → `wordtally`: the product token, the letters, `_` and
/// `-` before the version (RFC 9309 §2.2.1). Falls back to `wordtally`.
pub fn product_token(user_agent: &str) -> String {
    let token: String = user_agent
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic() || *c == '_' || *c == '-')
        .collect();
    if token.is_empty() {
        "wordtally".to_owned()
    } else {
        token.to_ascii_lowercase()
    }
}

/// Collects a body up to `cap` bytes plus one (so "larger than the cap" is known), then says
/// it is full: the fetcher stops reading.
pub(crate) struct CappedBytes {
    buf: Vec<u8>,
    cap: usize,
}

impl CappedBytes {
    pub(crate) fn new(cap: usize) -> Self {
        CappedBytes {
            buf: Vec::new(),
            cap,
        }
    }
}

impl BodySink for CappedBytes {
    type Output = Vec<u8>;
    fn feed(&mut self, chunk: &[u8]) {
        let room = (self.cap + 1).saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    fn finish(self) -> Vec<u8> {
        self.buf
    }
    fn is_full(&self) -> bool {
        self.buf.len() > self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Matches like the cache does: the product token of the default user agent.
    fn robot(txt: &str) -> Robot {
        Robot::new(&product_token("wordtally/0.1.0"), txt.as_bytes()).expect("parses")
    }

    fn allowed(txt: &str, path: &str) -> bool {
        robot(txt).allowed(&format!("http://example.test{path}"))
    }

    #[test]
    fn product_token_is_the_name_before_the_version() {
        assert_eq!(product_token("wordtally/0.1.0"), "wordtally");
        assert_eq!(product_token("WordTally/2 (+https://x.test)"), "wordtally");
        assert_eq!(product_token("my-bot_x/1"), "my-bot_x");
        assert_eq!(product_token("  /1.0"), "wordtally");
    }

    #[test]
    fn the_longest_match_wins_and_allow_wins_a_tie() {
        let txt = "User-agent: *\nDisallow: /docs/\nAllow: /docs/public/\nDisallow: /docs/public/secret\n\
                   Allow: /tie\nDisallow: /tie\n";
        assert!(!allowed(txt, "/docs/x.html"));
        assert!(allowed(txt, "/docs/public/x.html"));
        assert!(!allowed(txt, "/docs/public/secret.html"));
        assert!(
            allowed(txt, "/tie"),
            "equal length: allow wins (RFC 9309 §2.2.2)"
        );
        assert!(allowed(txt, "/other"));
    }

    #[test]
    fn wildcards_and_end_anchors() {
        let txt =
            "User-agent: *\nDisallow: /*.pdf$\nDisallow: /private*/data\nDisallow: /*?session=\n";
        assert!(!allowed(txt, "/a/b/report.pdf"));
        assert!(allowed(txt, "/a/b/report.pdf.html"), "$ anchors the end");
        assert!(!allowed(txt, "/private-area/data/x"));
        assert!(allowed(txt, "/public/data"));
        assert!(
            !allowed(txt, "/page?session=123"),
            "the query is matched too"
        );
        assert!(allowed(txt, "/page?x=1"));
    }

    #[test]
    fn only_the_most_specific_group_applies() {
        let txt = "User-agent: *\nDisallow: /\n\nUser-agent: otherbot\nAllow: /\n\n\
                   User-agent: WordTally\nDisallow: /nope\nCrawl-delay: 2.5\n";
        assert!(
            allowed(txt, "/anything"),
            "our group replaces `*`, it does not add to it"
        );
        assert!(!allowed(txt, "/nope/x"));
        assert_eq!(robot(txt).delay, Some(2.5));
        // No group of ours: `*` applies.
        let star = "User-agent: otherbot\nDisallow: /\n\nUser-agent: *\nDisallow: /tmp\n";
        assert!(allowed(star, "/x"));
        assert!(!allowed(star, "/tmp/x"));
        // Several user agents sharing one group.
        let shared = "User-agent: a\nUser-agent: wordtally\nDisallow: /shared\n";
        assert!(!allowed(shared, "/shared"));
    }

    #[test]
    fn an_empty_disallow_and_an_empty_file_allow_everything() {
        assert!(allowed("User-agent: *\nDisallow:\n", "/x"));
        assert!(allowed("", "/x"));
        assert!(allowed("# only a comment\n", "/x"));
    }

    #[test]
    fn crawl_delay_is_capped_and_nonsense_ignored() {
        assert_eq!(crawl_delay(Some(1.5)), Some(Duration::from_millis(1500)));
        assert_eq!(crawl_delay(Some(86_400.0)), Some(MAX_CRAWL_DELAY));
        assert_eq!(crawl_delay(Some(-1.0)), None);
        assert_eq!(crawl_delay(Some(f32::NAN)), None);
        assert_eq!(crawl_delay(None), None);
    }

    #[test]
    fn what_each_answer_means() {
        let ok = judge(Some(200), None, Some(b"User-agent: *\nDisallow: /x\n"));
        assert!(matches!(ok, RobotsFile::Rules { .. }));
        assert_eq!(
            judge(Some(404), None, Some(b"not found")),
            RobotsFile::AllowAll { status: 404 }
        );
        assert_eq!(
            judge(Some(403), None, None),
            RobotsFile::AllowAll { status: 403 }
        );
        assert_eq!(
            judge(Some(503), Some("HTTP 503 after 3 attempts"), Some(b"")),
            RobotsFile::DisallowAll {
                reason: "robots.txt answered 503".into()
            }
        );
        assert_eq!(
            judge(Some(429), Some("HTTP 429 after 3 attempts"), None),
            RobotsFile::DisallowAll {
                reason: "robots.txt answered 429".into()
            }
        );
        let RobotsFile::DisallowAll { reason } = judge(
            None,
            Some("could not connect to a.test:80 (connection refused)"),
            None,
        ) else {
            panic!("unreachable must disallow")
        };
        assert!(reason.contains("connection refused"), "{reason}");
        let big = vec![b'#'; MAX_ROBOTS_BYTES + 1];
        assert_eq!(
            judge(Some(200), None, Some(&big)),
            RobotsFile::DisallowAll {
                reason: "robots.txt is larger than 500 KiB".into()
            }
        );
        let exactly = vec![b'#'; MAX_ROBOTS_BYTES];
        assert!(matches!(
            judge(Some(200), None, Some(&exactly)),
            RobotsFile::Rules { .. }
        ));
        assert!(matches!(
            judge(Some(200), None, Some(b"\x89PNG\r\n\x1a\n\0\0\0")),
            RobotsFile::DisallowAll { .. }
        ));
    }

    #[test]
    fn latin1_comments_are_still_text_but_garbage_is_not() {
        assert!(!looks_binary(
            "User-agent: *\n# caf\u{e9}\nDisallow: /x\n".as_bytes()
        ));
        assert!(!looks_binary(b"User-agent: *\n# caf\xe9\nDisallow: /x\n"));
        let garbage: Vec<u8> = (0..1000u32).map(|i| (i * 131 % 128 + 128) as u8).collect();
        assert!(looks_binary(&garbage));
    }

    #[test]
    fn robots_json_round_trips_for_redis() {
        for f in [
            RobotsFile::Rules {
                body: "User-agent: *\nDisallow: /\n".into(),
            },
            RobotsFile::AllowAll { status: 410 },
            RobotsFile::DisallowAll {
                reason: "robots.txt answered 500".into(),
            },
        ] {
            let json = serde_json::to_string(&f).expect("json");
            assert_eq!(serde_json::from_str::<RobotsFile>(&json).expect("back"), f);
        }
    }

    #[tokio::test]
    async fn the_process_cache_is_bounded_and_guard_refusals_disallow() {
        // The SSRF guard (on by default) refuses loopback before any request is sent, so this
        // costs no traffic; every crawl id is a fresh cache entry.
        let fetcher = Fetcher::new(crate::fetch::FetchConfig::default()).expect("fetcher");
        let cache = RobotsCache::new(
            fetcher,
            None,
            "wordtally/0.1.0".into(),
            Duration::from_secs(3600),
        );
        let url = Url::parse("http://127.0.0.1:9/page").expect("url");
        let RobotsVerdict::Disallowed { reason } = cache.check(1, &url).await else {
            panic!("a refused robots.txt must disallow");
        };
        assert!(
            reason.starts_with("robots.txt could not be fetched"),
            "{reason}"
        );
        for crawl in 2..(CACHE_CAPACITY as i64 + 50) {
            let _ = cache.check(crawl, &url).await;
        }
        assert!(
            cache.cached_origins() <= CACHE_CAPACITY,
            "{}",
            cache.cached_origins()
        );
        // robots.txt itself is never disallowed, and other schemes have no robots.txt.
        let robots = Url::parse("http://127.0.0.1:9/robots.txt").expect("url");
        assert_eq!(
            cache.check(1, &robots).await,
            RobotsVerdict::Allowed { crawl_delay: None }
        );
        let ftp = Url::parse("ftp://a.test/x").expect("url");
        assert!(matches!(
            cache.check(1, &ftp).await,
            RobotsVerdict::Disallowed { .. }
        ));
    }
}

//! Crawl politeness against local servers: robots.txt (rules, answers, hostile files),
//! sitemaps (index, gzip, loops, bombs) and the per-host delay, in one process and shared
//! through Redis by two instances as two worker processes would. Only loopback traffic.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;
use url::Url;
use wordtally::crawl::RedisShared;
use wordtally::crawl::politeness::Politeness;
use wordtally::crawl::robots::{RobotsCache, RobotsVerdict};
use wordtally::crawl::sitemap::{SitemapDoc, SitemapLimits, read_sitemap, walk_sitemaps};
use wordtally::fetch::{FetchConfig, Fetcher};

use crate::helpers::{redis_cleanup, redis_url, require_redis, unique};

type Handler = Arc<dyn Fn(&str, SocketAddr) -> Response + Send + Sync>;

/// A local site whose every path is answered by `handler`; counts requests per path.
struct Site {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Site {
    async fn start(handler: impl Fn(&str, SocketAddr) -> Response + Send + Sync + 'static) -> Site {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let handler: Handler = Arc::new(handler);
        let counted = hits.clone();
        let app = Router::new().fallback(move |uri: Uri| {
            let handler = handler.clone();
            let counted = counted.clone();
            async move {
                *counted
                    .lock()
                    .expect("hits")
                    .entry(uri.path().to_owned())
                    .or_default() += 1;
                handler(uri.path(), addr)
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Site { addr, hits }
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).expect("url")
    }

    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("hits")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

fn text(body: impl Into<Body>) -> Response {
    ([("content-type", "text/plain")], body.into()).into_response()
}

fn status(code: u16) -> Response {
    StatusCode::from_u16(code).expect("status").into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::FOUND, [("location", to.to_owned())]).into_response()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// Loopback allowed (the sites are local), one attempt, a short timeout.
fn local_fetcher() -> Fetcher {
    Fetcher::new(FetchConfig {
        allow_private_targets: true,
        total_timeout: Duration::from_secs(1),
        max_attempts: 1,
        ..FetchConfig::default()
    })
    .expect("fetcher")
}

fn cache(fetcher: Fetcher, shared: Option<RedisShared>) -> RobotsCache {
    RobotsCache::new(
        fetcher,
        shared,
        "wordtally/0.1.0".to_owned(),
        Duration::from_secs(600),
    )
}

fn reason(v: RobotsVerdict) -> String {
    match v {
        RobotsVerdict::Disallowed { reason } => reason,
        other => panic!("expected a disallowed verdict, got {other:?}"),
    }
}

const RULES: &str = "User-agent: *\nDisallow: /\n\nUser-agent: wordtally\nDisallow: /private\n\
                     Allow: /private/open\nCrawl-delay: 1\nSitemap: http://SITE/sitemap.xml\n";

fn rules_site() -> impl Fn(&str, SocketAddr) -> Response + Send + Sync + 'static {
    |path, addr| match path {
        "/robots.txt" => text(RULES.replace("SITE", &addr.to_string())),
        _ => text("page"),
    }
}

#[tokio::test]
async fn robots_rules_apply_to_our_agent_and_are_fetched_once_per_crawl() {
    let site = Site::start(rules_site()).await;
    let robots = cache(local_fetcher(), None);
    // Twenty workers ask at once: one fetch.
    let mut asks = Vec::new();
    for i in 0..20 {
        let robots = robots.clone();
        let url = site.url(&format!("/page{i}"));
        asks.push(tokio::spawn(async move { robots.check(7, &url).await }));
    }
    for a in asks {
        assert_eq!(
            a.await.expect("task"),
            RobotsVerdict::Allowed {
                crawl_delay: Some(Duration::from_secs(1))
            },
            "our group allows /page* and sets the delay (the `*` group would disallow)"
        );
    }
    assert_eq!(site.hits("/robots.txt"), 1);
    assert_eq!(
        reason(robots.check(7, &site.url("/private/x")).await),
        "disallowed by robots.txt"
    );
    assert!(matches!(
        robots.check(7, &site.url("/private/open/x")).await,
        RobotsVerdict::Allowed { .. }
    ));
    assert_eq!(
        robots.sitemaps(7, &site.url("/")).await,
        vec![format!("http://{}/sitemap.xml", site.addr)]
    );
    assert_eq!(site.hits("/robots.txt"), 1, "cached for the crawl");
    assert_eq!(
        site.hits("/private/x"),
        0,
        "a disallowed page is never fetched"
    );
    // Another crawl reads it afresh.
    let _ = robots.check(8, &site.url("/page")).await;
    assert_eq!(site.hits("/robots.txt"), 2);
}

#[tokio::test]
async fn a_4xx_robots_txt_allows_everything() {
    for code in [401, 403, 404, 410] {
        let site = Site::start(move |path, _| match path {
            "/robots.txt" => status(code),
            _ => text("page"),
        })
        .await;
        let robots = cache(local_fetcher(), None);
        assert_eq!(
            robots.check(1, &site.url("/anything")).await,
            RobotsVerdict::Allowed { crawl_delay: None },
            "HTTP {code}"
        );
        assert!(robots.sitemaps(1, &site.url("/")).await.is_empty());
    }
}

#[tokio::test]
async fn hostile_robots_txt_disallow_the_host_with_a_reason() {
    let cases: Vec<(
        &str,
        Box<dyn Fn(&str, SocketAddr) -> Response + Send + Sync>,
        &str,
    )> = vec![
        (
            "503",
            Box::new(|_, _| status(503)),
            "robots.txt answered 503",
        ),
        (
            "500",
            Box::new(|_, _| status(500)),
            "robots.txt answered 500",
        ),
        (
            "endless",
            Box::new(|_, _| {
                let line = Bytes::from("# padding padding padding padding padding\n".repeat(100));
                let forever = futures_util::stream::unfold(line, |l| async move {
                    Some((Ok::<_, std::io::Error>(l.clone()), l))
                });
                text(Body::from_stream(forever))
            }),
            "robots.txt is larger than 500 KiB",
        ),
        (
            "binary type",
            Box::new(|_, _| {
                (
                    [("content-type", "application/octet-stream")],
                    vec![0u8, 1, 2, 3],
                )
                    .into_response()
            }),
            "robots.txt is not a text document",
        ),
        (
            "binary bytes",
            Box::new(|_, _| text(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec())),
            "robots.txt is not text (binary content)",
        ),
        (
            "slow drip",
            Box::new(|_, _| {
                let drip = futures_util::stream::unfold(0u32, |i| async move {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    (i < 100)
                        .then(|| (Ok::<_, std::io::Error>(Bytes::from_static(b"# x\n")), i + 1))
                });
                text(Body::from_stream(drip))
            }),
            "timed out after 1 s",
        ),
        (
            "redirect loop",
            Box::new(|path, _| match path {
                "/robots.txt" => redirect("/r1"),
                "/r1" => redirect("/r2"),
                _ => redirect("/robots.txt"),
            }),
            "redirect",
        ),
    ];
    for (name, handler, want) in cases {
        let site = Site::start(move |p, a| handler(p, a)).await;
        let robots = cache(local_fetcher(), None);
        let started = Instant::now();
        let why = reason(robots.check(1, &site.url("/page")).await);
        assert!(why.contains(want), "{name}: {why:?} should say {want:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: bounded in time ({:?})",
            started.elapsed()
        );
        assert_eq!(site.hits("/page"), 0, "{name}: the page is not fetched");
        // Cached like any answer: asked again, nothing is fetched.
        let before = site.hits("/robots.txt");
        let _ = robots.check(1, &site.url("/other")).await;
        assert_eq!(site.hits("/robots.txt"), before, "{name}: cached");
    }
}

#[tokio::test]
async fn robots_txt_redirects_are_followed_and_the_ssrf_guard_applies() {
    let site = Site::start(|path, _| match path {
        "/robots.txt" => redirect("/real-robots.txt"),
        "/real-robots.txt" => text("User-agent: *\nDisallow: /no\n"),
        _ => text("page"),
    })
    .await;
    let robots = cache(local_fetcher(), None);
    assert_eq!(
        reason(robots.check(1, &site.url("/no/x")).await),
        "disallowed by robots.txt"
    );
    assert!(matches!(
        robots.check(1, &site.url("/yes")).await,
        RobotsVerdict::Allowed { .. }
    ));
    // The default fetcher refuses loopback: the host is disallowed, nothing is sent.
    let guarded = cache(Fetcher::new(FetchConfig::default()).expect("fetcher"), None);
    let why = reason(guarded.check(1, &site.url("/yes")).await);
    assert!(why.contains("blocked by SSRF guard"), "{why}");
    assert_eq!(site.hits("/real-robots.txt"), 1);
}

fn urlset(addr: SocketAddr, paths: &[&str]) -> String {
    let mut s = String::from(
        r#"<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">"#,
    );
    for p in paths {
        s.push_str(&format!("<url><loc>http://{addr}{p}</loc></url>"));
    }
    s + "</urlset>"
}

fn index(addr: SocketAddr, paths: &[&str]) -> String {
    let mut s = String::from(
        r#"<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">"#,
    );
    for p in paths {
        s.push_str(&format!("<sitemap><loc>http://{addr}{p}</loc></sitemap>"));
    }
    s + "</sitemapindex>"
}

fn xml(body: impl Into<Body>) -> Response {
    ([("content-type", "application/xml")], body.into()).into_response()
}

#[tokio::test]
async fn sitemap_indexes_gzip_and_loops_are_walked_once_each() {
    let site = Site::start(|path, addr| match path {
        "/sitemap.xml" => xml(index(addr, &["/a.xml", "/b.xml.gz", "/inner-index.xml"])),
        "/a.xml" => xml(urlset(addr, &["/1", "/2"])),
        "/b.xml.gz" => (
            [("content-type", "application/gzip")],
            gz(urlset(addr, &["/2", "/3"]).as_bytes()),
        )
            .into_response(),
        // Lists the top index again and itself: a loop.
        "/inner-index.xml" => xml(index(addr, &["/sitemap.xml", "/inner-index.xml", "/c.xml"])),
        "/c.xml" => xml(urlset(addr, &["/4"])),
        _ => status(404),
    })
    .await;
    let fetcher = local_fetcher();
    let walk = walk_sitemaps(
        &fetcher,
        &[site.url("/sitemap.xml")],
        &SitemapLimits::default(),
    )
    .await;
    let want: Vec<String> = ["/1", "/2", "/3", "/4"]
        .iter()
        .map(|p| format!("http://{}{p}", site.addr))
        .collect();
    assert_eq!(
        walk.urls, want,
        "every page once, duplicates across sitemaps merged"
    );
    assert_eq!(walk.sitemaps_read, 5);
    assert!(
        walk.notes.iter().any(|n| n.contains("a sitemap loop")),
        "{:?}",
        walk.notes
    );
    for p in [
        "/sitemap.xml",
        "/a.xml",
        "/b.xml.gz",
        "/inner-index.xml",
        "/c.xml",
    ] {
        assert_eq!(site.hits(p), 1, "{p} read once");
    }
    // Nesting is capped: with depth 0 the index's sitemaps are not read.
    let flat = SitemapLimits {
        max_depth: 0,
        ..SitemapLimits::default()
    };
    let walk = walk_sitemaps(&fetcher, &[site.url("/sitemap.xml")], &flat).await;
    assert!(walk.urls.is_empty());
    assert!(
        walk.notes
            .iter()
            .any(|n| n.contains("nested deeper than 0")),
        "{:?}",
        walk.notes
    );
    // And so is the number of sitemaps.
    let few = SitemapLimits {
        max_sitemaps: 2,
        ..SitemapLimits::default()
    };
    let walk = walk_sitemaps(&fetcher, &[site.url("/sitemap.xml")], &few).await;
    assert_eq!(walk.sitemaps_read, 2);
    assert!(
        walk.notes
            .iter()
            .any(|n| n.contains("stopped after 2 sitemaps")),
        "{:?}",
        walk.notes
    );
}

#[tokio::test]
async fn hostile_sitemaps_end_with_a_reason() {
    // 64 MiB of zeros, ~64 KiB on the wire.
    let bomb = Bytes::from(gz(&vec![0u8; 64 << 20]));
    let site = Site::start(move |path, addr| match path {
        "/bomb.xml.gz" => ([("content-type", "application/gzip")], bomb.clone()).into_response(),
        "/html" => (
            [("content-type", "text/html")],
            "<html><body>hi</body></html>",
        )
            .into_response(),
        "/image" => (
            [("content-type", "image/png")],
            vec![0x89u8, b'P', b'N', b'G', 0, 0],
        )
            .into_response(),
        "/ok.xml" => xml(urlset(addr, &["/1"])),
        "/moved" => redirect("/ok.xml"),
        "/loop" => redirect("/loop"),
        _ => status(404),
    })
    .await;
    let fetcher = local_fetcher();
    let limits = SitemapLimits {
        max_bytes: 1 << 20,
        ..SitemapLimits::default()
    };
    let cases = [
        ("/bomb.xml.gz", "larger than 1 MiB once decompressed"),
        ("/html", "not a sitemap (the document is <html>)"),
        ("/image", "not a sitemap"),
        ("/missing.xml", "sitemap answered 404"),
        ("/loop", "redirect"),
    ];
    for (path, want) in cases {
        let started = Instant::now();
        let e = read_sitemap(&fetcher, &site.url(path), &limits)
            .await
            .expect_err(path);
        assert!(e.contains(want), "{path}: {e:?} should say {want:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path}: bounded"
        );
    }
    let moved = read_sitemap(&fetcher, &site.url("/moved"), &limits)
        .await
        .expect("redirect followed");
    assert_eq!(
        moved.doc,
        SitemapDoc::Urls(vec![format!("http://{}/1", site.addr)])
    );
    // The SSRF guard applies to sitemaps too.
    let guarded = Fetcher::new(FetchConfig::default()).expect("fetcher");
    let e = read_sitemap(&guarded, &site.url("/ok.xml"), &limits)
        .await
        .expect_err("refused");
    assert!(e.contains("blocked by SSRF guard"), "{e}");
    assert_eq!(
        site.hits("/ok.xml"),
        1,
        "only the redirect's fetch reached it"
    );
}

#[tokio::test]
async fn two_processes_share_robots_txt_through_redis() {
    require_redis().await;
    let url = redis_url();
    let prefix = unique("wt-robots");
    let site = Site::start(rules_site()).await;
    let shared = || Some(RedisShared::new(&url, &prefix).expect("redis"));
    let first = cache(local_fetcher(), shared());
    let second = cache(local_fetcher(), shared());

    assert_eq!(
        reason(first.check(3, &site.url("/private/a")).await),
        "disallowed by robots.txt"
    );
    assert_eq!(site.hits("/robots.txt"), 1);
    assert_eq!(
        reason(second.check(3, &site.url("/private/b")).await),
        "disallowed by robots.txt"
    );
    assert_eq!(
        second.check(3, &site.url("/open")).await,
        RobotsVerdict::Allowed {
            crawl_delay: Some(Duration::from_secs(1))
        }
    );
    assert_eq!(second.sitemaps(3, &site.url("/")).await.len(), 1);
    assert_eq!(
        site.hits("/robots.txt"),
        1,
        "the second process read Redis, not the site"
    );

    // Both asking at the same moment for a new crawl: still one fetch (the Redis lock).
    let (x, y) = (site.url("/x"), site.url("/y"));
    let (a, b) = tokio::join!(first.check(4, &x), second.check(4, &y));
    assert_eq!(a, b);
    assert_eq!(site.hits("/robots.txt"), 2);

    // The shared copy expires.
    let mut conn = redis::Client::open(url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let key = format!("{prefix}:robots:3:http://{}", site.addr);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("pttl");
    assert!(ttl > 0 && ttl <= 600_000, "expiry set: {ttl}");
    redis_cleanup(&url, &prefix).await;
}

#[tokio::test]
async fn two_processes_keep_the_per_host_delay_through_redis() {
    require_redis().await;
    let url = redis_url();
    let prefix = unique("wt-polite");
    let one = Politeness::new(Some(RedisShared::new(&url, &prefix).expect("redis")));
    let two = Politeness::new(Some(RedisShared::new(&url, &prefix).expect("redis")));
    let delay = Duration::from_millis(150);
    let start = Instant::now();
    let mut turns = Vec::new();
    for i in 0..6 {
        let p = if i % 2 == 0 { one.clone() } else { two.clone() };
        turns.push(tokio::spawn(async move {
            p.wait_turn("site.test:80", delay).await;
            start.elapsed()
        }));
    }
    // Another host is not held up by this one.
    two.wait_turn("other.test:80", delay).await;
    assert!(
        start.elapsed() < Duration::from_millis(140),
        "{:?}",
        start.elapsed()
    );
    let mut at = Vec::new();
    for t in turns {
        at.push(t.await.expect("task"));
    }
    at.sort();
    for pair in at.windows(2) {
        // Redis' clock has millisecond steps and a busy 2-core machine wakes sleepers late.
        assert!(
            pair[1] - pair[0] >= delay - Duration::from_millis(20),
            "turns {at:?} closer than {delay:?}"
        );
    }
    assert!(at[5] >= delay * 5 - Duration::from_millis(10), "{at:?}");
    redis_cleanup(&url, &prefix).await;
}

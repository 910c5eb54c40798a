//! Sitemaps, the seeds of a crawl before the "queue" step (**submit** → queue → fetch → count
//! → NSQ → DB → poll): `sitemap.xml` (`<urlset>`), sitemap indexes (`<sitemapindex>`), their
//! `.xml.gz` forms and plain-text sitemaps (one URL a line), read through the [`Fetcher`]
//! (SSRF guard, timeouts, body cap) and reduced to their `<loc>` values.
//!
//! Everything is bounded ([`SitemapLimits`]): bytes after decompression (a gzip bomb ends
//! with "larger than … once decompressed" as soon as the cap is passed, the rest is never
//! inflated), URLs kept per sitemap, URL length, index nesting, sitemaps read per walk.
//! The XML is read by `quick-xml` event by event over the (capped) decompressed bytes,
//! never built into a tree; DTD entities are not expanded (no billion laughs).

use std::collections::{HashSet, VecDeque};
use std::io::Write;

use flate2::write::GzDecoder;
use quick_xml::Reader;
use quick_xml::events::Event;
use url::Url;

use crate::fetch::{BodySink, Fetcher};

/// Caps of sitemap reading. The defaults are the sitemaps.org protocol's own limits
/// (50,000 URLs and 50 MB uncompressed per file), so a valid sitemap is never cut.
#[derive(Clone, Debug)]
pub struct SitemapLimits {
    /// Decompressed bytes of one sitemap; past it the sitemap is refused. (A plain sitemap is
    /// also held to the fetcher's `MAX_BODY_BYTES`.)
    pub max_bytes: u64,
    /// `<loc>` values kept per sitemap; the rest are counted in `dropped`.
    pub max_urls: usize,
    /// Longest URL kept (the crawl's URL length limit).
    pub max_url_len: usize,
    /// How deep indexes may nest below the sitemaps a crawl names (0 = indexes are not
    /// followed; 1 = an index's sitemaps are read, as the protocol intends).
    pub max_depth: usize,
    /// Sitemaps one [`walk_sitemaps`] reads at most (indexes included).
    pub max_sitemaps: usize,
    /// Page URLs one [`walk_sitemaps`] returns at most.
    pub max_total_urls: usize,
}

impl Default for SitemapLimits {
    fn default() -> Self {
        SitemapLimits {
            max_bytes: 50 * 1024 * 1024,
            max_urls: 50_000,
            max_url_len: 2048,
            max_depth: 2,
            max_sitemaps: 1000,
            max_total_urls: 100_000,
        }
    }
}

/// What one sitemap lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SitemapDoc {
    /// A `<urlset>` (or a text sitemap): page URLs.
    Urls(Vec<String>),
    /// A `<sitemapindex>`: more sitemaps.
    Index(Vec<String>),
}

/// One sitemap, read: its URLs (absolute http(s), at most `max_urls`), how many `<loc>`
/// values were dropped (over the cap, too long, not http(s), unparsable) and a sentence when
/// something was cut short (malformed XML after some URLs, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SitemapRead {
    pub doc: SitemapDoc,
    pub dropped: u64,
    pub note: Option<String>,
}

/// Fetches and reads one sitemap. `Err` is a sentence saying why nothing usable came of it
/// ("sitemap answered 404", "sitemap is larger than 50 MiB once decompressed", "not a
/// sitemap (the document is <html>)", the fetcher's error, ...).
pub async fn read_sitemap(
    fetcher: &Fetcher,
    url: &Url,
    limits: &SitemapLimits,
) -> Result<SitemapRead, String> {
    let fetched = fetcher
        .fetch_raw(url, |_| SitemapSink::new(limits.max_bytes))
        .await;
    metrics::counter!("wordtally_sitemap_fetches_total").increment(1);
    if let Some(s) = fetched.status
        && !(200..300).contains(&s)
    {
        return Err(format!("sitemap answered {s}"));
    }
    if let Some(e) = fetched.error {
        return Err(format!("sitemap could not be fetched: {e}"));
    }
    let Some(body) = fetched.output else {
        return Err("sitemap could not be fetched".to_owned());
    };
    let bytes = body?;
    if fetched.truncated {
        return Err(format!(
            "sitemap is larger than the body limit ({} bytes, MAX_BODY_BYTES)",
            fetcher.config().max_body_bytes
        ));
    }
    parse_sitemap(&bytes, limits)
}

/// Reads `bytes` (already decompressed) as an XML or text sitemap; pure, so it is unit-tested.
pub fn parse_sitemap(bytes: &[u8], limits: &SitemapLimits) -> Result<SitemapRead, String> {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err("sitemap is empty".to_owned()),
        Some(b'<') => parse_xml(body, limits),
        Some(_) => parse_text(body, limits),
    }
}

/// Keeps `loc` when it is an absolute http(s) URL within the length cap and the URL cap.
struct Collector<'a> {
    limits: &'a SitemapLimits,
    urls: Vec<String>,
    dropped: u64,
}

impl Collector<'_> {
    fn offer(&mut self, loc: &str) {
        let loc = loc.trim();
        let ok = !loc.is_empty()
            && loc.len() <= self.limits.max_url_len
            && self.urls.len() < self.limits.max_urls
            && Url::parse(loc).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if ok {
            self.urls.push(loc.to_owned());
        } else {
            self.dropped += 1;
        }
    }
}

fn parse_text(body: &[u8], limits: &SitemapLimits) -> Result<SitemapRead, String> {
    if memchr::memchr(0, body).is_some() {
        return Err("not a sitemap (binary content)".to_owned());
    }
    let text = String::from_utf8_lossy(body);
    let mut c = Collector {
        limits,
        urls: Vec::new(),
        dropped: 0,
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        c.offer(line);
    }
    if c.urls.is_empty() {
        return Err("not a sitemap (no XML and no URL lines)".to_owned());
    }
    Ok(SitemapRead {
        doc: SitemapDoc::Urls(c.urls),
        dropped: c.dropped,
        note: None,
    })
}

fn parse_xml(body: &[u8], limits: &SitemapLimits) -> Result<SitemapRead, String> {
    let mut reader = Reader::from_reader(body);
    let mut c = Collector {
        limits,
        urls: Vec::new(),
        dropped: 0,
    };
    let mut index: Option<bool> = None;
    // Inside a <loc>: its text so far (entity references arrive as their own events).
    let mut loc: Option<String> = None;
    let mut note = None;
    let mut buf = Vec::new();
    loop {
        let event = match reader.read_event_into(&mut buf) {
            Ok(e) => e,
            Err(e) => {
                let at = reader.buffer_position();
                if index.is_none() || (c.urls.is_empty() && c.dropped == 0) {
                    return Err(format!("not a sitemap: malformed XML at byte {at} ({e})"));
                }
                note = Some(format!(
                    "malformed XML at byte {at} ({e}); the {} URLs before it are kept",
                    c.urls.len()
                ));
                break;
            }
        };
        match event {
            Event::Start(e) => {
                let name = e.local_name().into_inner();
                match index {
                    None => {
                        index = Some(match name {
                            "urlset" => false,
                            "sitemapindex" => true,
                            other => {
                                return Err(format!("not a sitemap (the document is <{}>)", other));
                            }
                        });
                    }
                    Some(_) if name == "loc" => loc = Some(String::new()),
                    Some(_) => {}
                }
            }
            Event::Empty(e) if index.is_none() => {
                let name = e.local_name().into_inner();
                return match name {
                    "urlset" | "sitemapindex" => Err("sitemap lists nothing".to_owned()),
                    other => Err(format!("not a sitemap (the document is <{}>)", other)),
                };
            }
            Event::Text(t) => {
                if let Some(l) = loc.as_mut()
                    && l.len() <= limits.max_url_len
                {
                    l.push_str(&t);
                }
            }
            Event::CData(t) => {
                if let Some(l) = loc.as_mut()
                    && l.len() <= limits.max_url_len
                {
                    l.push_str(&t);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(l) = loc.as_mut() {
                    if let Ok(Some(ch)) = r.resolve_char_ref() {
                        l.push(ch);
                    } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&r) {
                        l.push_str(s);
                    }
                    // Anything else is a DTD entity: never expanded.
                }
            }
            Event::End(e) if e.local_name().into_inner() == "loc" => {
                if let Some(l) = loc.take() {
                    c.offer(&l);
                }
            }
            Event::Eof => {
                if index.is_none() {
                    return Err("not a sitemap (no root element)".to_owned());
                }
                break;
            }
            _ => {}
        }
        buf.clear();
    }
    if c.dropped > 0 && note.is_none() {
        note = Some(format!("{} <loc> values dropped", c.dropped));
    }
    let doc = if index == Some(true) {
        SitemapDoc::Index(c.urls)
    } else {
        SitemapDoc::Urls(c.urls)
    };
    Ok(SitemapRead {
        doc,
        dropped: c.dropped,
        note,
    })
}

/// The outcome of [`walk_sitemaps`]: every page URL found (deduplicated, at most
/// `max_total_urls`), and what was cut or failed, each as a sentence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SitemapWalk {
    pub urls: Vec<String>,
    pub sitemaps_read: usize,
    pub dropped: u64,
    pub notes: Vec<String>,
}

/// Reads the sitemaps a crawl names and, through indexes, the ones they list, breadth first,
/// each at most once (an index that lists itself or an ancestor is not read again), within
/// `max_depth`, `max_sitemaps` and `max_total_urls`. Scope rules are the caller's.
pub async fn walk_sitemaps(
    fetcher: &Fetcher,
    roots: &[Url],
    limits: &SitemapLimits,
) -> SitemapWalk {
    let mut walk = SitemapWalk::default();
    let mut seen_sitemaps: HashSet<String> = HashSet::new();
    let mut seen_urls: HashSet<String> = HashSet::new();
    let mut todo: VecDeque<(Url, usize)> = VecDeque::new();
    for r in roots {
        if seen_sitemaps.insert(r.to_string()) {
            todo.push_back((r.clone(), 0));
        }
    }
    while let Some((url, depth)) = todo.pop_front() {
        if walk.sitemaps_read >= limits.max_sitemaps {
            walk.notes.push(format!(
                "stopped after {} sitemaps; {} more not read",
                limits.max_sitemaps,
                todo.len() + 1
            ));
            break;
        }
        walk.sitemaps_read += 1;
        let read = match read_sitemap(fetcher, &url, limits).await {
            Ok(r) => r,
            Err(e) => {
                walk.notes.push(format!("{url}: {e}"));
                continue;
            }
        };
        walk.dropped += read.dropped;
        if let Some(n) = read.note {
            walk.notes.push(format!("{url}: {n}"));
        }
        match read.doc {
            SitemapDoc::Urls(urls) => {
                for u in urls {
                    if walk.urls.len() >= limits.max_total_urls {
                        walk.dropped += 1;
                    } else if seen_urls.insert(u.clone()) {
                        walk.urls.push(u);
                    }
                }
            }
            SitemapDoc::Index(children) => {
                if depth >= limits.max_depth {
                    walk.notes.push(format!(
                        "{url}: sitemap index nested deeper than {}; its {} sitemaps not read",
                        limits.max_depth,
                        children.len()
                    ));
                    continue;
                }
                for child in children {
                    let Ok(child_url) = Url::parse(&child) else {
                        walk.dropped += 1;
                        continue;
                    };
                    if seen_sitemaps.insert(child_url.to_string()) {
                        todo.push_back((child_url, depth + 1));
                    } else {
                        walk.notes.push(format!(
                            "{url}: lists {child_url} again (a sitemap loop); read once"
                        ));
                    }
                }
            }
        }
    }
    walk
}

/// Decompressed bytes so far, refusing to hold more than the cap.
struct CapWriter {
    buf: Vec<u8>,
    cap: u64,
}

impl Write for CapWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() as u64 + data.len() as u64 > self.cap {
            return Err(std::io::Error::other("over the decompressed size cap"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Mode {
    /// Fewer than two bytes seen: gzip or not is not known yet.
    Undecided(Vec<u8>),
    Plain(CapWriter),
    Gzip(Box<GzDecoder<CapWriter>>),
    Failed,
}

/// The fetch sink of a sitemap: recognises gzip by its magic bytes (a `.xml.gz` file comes
/// as `application/gzip` without `Content-Encoding`; with `Content-Encoding: gzip` reqwest
/// has already inflated it), inflates as bytes arrive and stops at the cap.
struct SitemapSink {
    mode: Mode,
    cap: u64,
    error: Option<String>,
}

impl SitemapSink {
    fn new(cap: u64) -> Self {
        SitemapSink {
            mode: Mode::Undecided(Vec::new()),
            cap,
            error: None,
        }
    }

    fn too_large(&self, gzip: bool) -> String {
        let size = if self.cap >= 1 << 20 && self.cap.is_multiple_of(1 << 20) {
            format!("{} MiB", self.cap >> 20)
        } else {
            format!("{} bytes", self.cap)
        };
        if gzip {
            format!("sitemap is larger than {size} once decompressed (a gzip bomb?)")
        } else {
            format!("sitemap is larger than {size}")
        }
    }

    fn push(&mut self, data: &[u8]) {
        let result = match &mut self.mode {
            Mode::Plain(w) => w.write_all(data).map_err(|_| self.too_large(false)),
            Mode::Gzip(d) => d.write_all(data).map_err(|e| {
                if e.to_string().contains("cap") {
                    self.too_large(true)
                } else {
                    format!("sitemap is not valid gzip ({e})")
                }
            }),
            Mode::Undecided(_) | Mode::Failed => Ok(()),
        };
        if let Err(e) = result {
            self.error = Some(e);
            self.mode = Mode::Failed;
        }
    }

    fn decide(&mut self) {
        if let Mode::Undecided(head) = &mut self.mode {
            let head = std::mem::take(head);
            let w = CapWriter {
                buf: Vec::new(),
                cap: self.cap,
            };
            self.mode = if head.starts_with(&[0x1f, 0x8b]) {
                Mode::Gzip(Box::new(GzDecoder::new(w)))
            } else {
                Mode::Plain(w)
            };
            self.push(&head);
        }
    }
}

impl BodySink for SitemapSink {
    type Output = Result<Vec<u8>, String>;

    fn feed(&mut self, chunk: &[u8]) {
        if let Mode::Undecided(head) = &mut self.mode {
            head.extend_from_slice(chunk);
            if head.len() >= 2 {
                self.decide();
            }
            return;
        }
        self.push(chunk);
    }

    fn finish(mut self) -> Self::Output {
        self.decide();
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.mode {
            Mode::Plain(w) => Ok(w.buf),
            Mode::Gzip(d) => match d.finish() {
                Ok(w) => Ok(w.buf),
                Err(e) if e.to_string().contains("cap") => Err(self_too_large(self.cap)),
                Err(e) => Err(format!("sitemap is not valid gzip ({e})")),
            },
            Mode::Undecided(_) | Mode::Failed => Err("sitemap could not be read".to_owned()),
        }
    }

    fn is_full(&self) -> bool {
        self.error.is_some()
    }
}

fn self_too_large(cap: u64) -> String {
    SitemapSink::new(cap).too_large(true)
}

#[cfg(test)]
mod tests;

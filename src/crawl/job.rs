//! The worker's part of a crawl (queue → **fetch → count → links** → NSQ, DESIGN §15): one
//! job of a crawl carried out. A page is checked against robots.txt (a disallowed one ends
//! `skipped`, never fetched), waits its turn at its host (`PER_HOST_DELAY_MS` or the
//! robots.txt `Crawl-delay`, whichever is larger, across every worker process), is fetched
//! and counted like a listed page, and its links come back from the same pass, resolved,
//! normalised and scoped (`page::report`). A sitemap task comes back with its URLs as
//! seeds; a robots task with the origin's `Sitemap:` lines. The worker never decides what
//! is new: the DB writer's frontier does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use url::Url;

use super::page::{self, RawLinks};
use super::politeness::Politeness;
use super::robots::{RobotsCache, RobotsVerdict};
use super::rules::Scope;
use super::sitemap::{SitemapDoc, SitemapLimits, read_sitemap};
use crate::address::normalize_address;
use crate::count::{BodyCounter, CountSummary, LinkOptions, PageLinks};
use crate::fetch::{BodySink, Fetcher};
use crate::model::{CrawlJob, CrawlReport, Job, ResultRecord, TaskRole};

/// Scopes kept compiled per process (a crawl's rules never change; cleared when full).
const SCOPES_KEPT: usize = 256;

/// What every worker runner of a process shares for crawls. Cheap to clone.
#[derive(Clone)]
pub struct CrawlKit {
    pub robots: RobotsCache,
    pub politeness: Politeness,
    /// `PER_HOST_DELAY_MS`: the least time between two requests to one host.
    pub per_host_delay: Duration,
    pub sitemap_limits: SitemapLimits,
    scopes: Arc<Mutex<HashMap<i64, Arc<Scope>>>>,
}

impl CrawlKit {
    pub fn new(
        robots: RobotsCache,
        politeness: Politeness,
        per_host_delay: Duration,
        sitemap_limits: SitemapLimits,
    ) -> CrawlKit {
        CrawlKit {
            robots,
            politeness,
            per_host_delay,
            sitemap_limits,
            scopes: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The crawl's compiled scope (compiled once per crawl and process).
    fn scope(&self, c: &CrawlJob) -> Result<Arc<Scope>, String> {
        if let Ok(m) = self.scopes.lock()
            && let Some(s) = m.get(&c.batch)
        {
            return Ok(s.clone());
        }
        let s = Arc::new(c.rules.scope()?);
        if let Ok(mut m) = self.scopes.lock() {
            if m.len() >= SCOPES_KEPT {
                m.clear();
            }
            m.insert(c.batch, s.clone());
        }
        Ok(s)
    }
}

impl From<PageLinks> for RawLinks {
    fn from(p: PageLinks) -> RawLinks {
        RawLinks {
            base: p.base,
            hrefs: p.hrefs,
            nofollow_page: p.nofollow_page,
            dropped: p.dropped,
        }
    }
}

/// Feeds the body into a counter that also collects links.
struct LinkSink(BodyCounter);

impl BodySink for LinkSink {
    type Output = CountSummary;
    fn feed(&mut self, chunk: &[u8]) {
        self.0.feed(chunk);
    }
    fn finish(self) -> CountSummary {
        self.0.finish()
    }
}

fn failed(error: String, started: Instant) -> ResultRecord {
    ResultRecord::error_only(error, started.elapsed().as_millis() as i64)
}

/// A task read for URLs (a sitemap, a robots.txt) that worked: an `ok` result counting 0.
fn listed(report: CrawlReport, url: &Url, started: Instant) -> ResultRecord {
    let mut r = ResultRecord::error_only(String::new(), started.elapsed().as_millis() as i64);
    r.error = None;
    r.words_count = Some(0);
    r.final_url = Some(url.to_string());
    r.attempts = 1;
    r.crawl = Some(report);
    r
}

/// Carries out one job of a crawl (see the module docs).
#[tracing::instrument(skip_all, fields(task_id = job.task_id, address = %job.address, depth = crawl.depth))]
pub async fn carry_out(
    kit: &CrawlKit,
    fetcher: &Fetcher,
    job: &Job,
    crawl: &CrawlJob,
) -> ResultRecord {
    let started = Instant::now();
    let url = match normalize_address(&job.address) {
        Ok(u) => u,
        Err(e) => return failed(e.to_string(), started),
    };
    let scope = match kit.scope(crawl) {
        Ok(s) => s,
        Err(e) => return failed(format!("the crawl's rules do not compile: {e}"), started),
    };
    match crawl.role {
        Some(TaskRole::Robots) => {
            let mut sitemaps = kit.robots.sitemaps(crawl.batch, &url).await;
            sitemaps.truncate(crawl.rules.links_per_page as usize);
            let report = CrawlReport {
                sitemaps,
                ..CrawlReport::default()
            };
            listed(report, &url, started)
        }
        Some(TaskRole::Sitemap) => {
            let limits = SitemapLimits {
                max_url_len: crawl.rules.max_url_len,
                ..kit.sitemap_limits.clone()
            };
            match read_sitemap(fetcher, &url, &limits).await {
                Ok(read) => {
                    let mut report = match read.doc {
                        SitemapDoc::Urls(urls) => page::seeds(&urls, &crawl.rules, &scope),
                        SitemapDoc::Index(maps) => CrawlReport {
                            sitemaps: maps,
                            ..CrawlReport::default()
                        },
                    };
                    report.dropped += read.dropped;
                    report.note = read.note;
                    listed(report, &url, started)
                }
                Err(e) => failed(e, started),
            }
        }
        None => page(kit, fetcher, job, crawl, &scope, url, started).await,
    }
}

async fn page(
    kit: &CrawlKit,
    fetcher: &Fetcher,
    job: &Job,
    crawl: &CrawlJob,
    scope: &Scope,
    url: Url,
    started: Instant,
) -> ResultRecord {
    let mut delay = kit.per_host_delay;
    if crawl.rules.obey_robots {
        match kit.robots.check(crawl.batch, &url).await {
            RobotsVerdict::Disallowed { reason } => {
                metrics::counter!("wordtally_crawl_skipped_total").increment(1);
                let mut r = failed(reason, started);
                r.skipped = true;
                r.final_url = Some(url.to_string());
                return r;
            }
            RobotsVerdict::Allowed { crawl_delay } => {
                delay = delay.max(crawl_delay.unwrap_or_default());
            }
        }
    }
    if !delay.is_zero() {
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or(0)
        );
        kit.politeness.wait_turn(&host, delay).await;
    }
    let opts = job.options.clone();
    let links = LinkOptions {
        // Room for the duplicates a page repeats (navigation bars) before the per-page cap
        // of distinct links applies in `page::report`.
        max_links: (crawl.rules.links_per_page as usize)
            .saturating_mul(4)
            .min(100_000),
        max_href_bytes: crawl.rules.max_url_len.saturating_mul(2),
        obey_nofollow: crawl.rules.obey_robots,
    };
    let mut fetched = fetcher
        .fetch(&url, |meta| {
            LinkSink(BodyCounter::new_with_links(
                &opts,
                meta.content_type.as_deref(),
                links,
            ))
        })
        .await;
    let raw = fetched.output.as_mut().and_then(|s| s.links.take());
    let status = fetched.status;
    let final_url = fetched
        .final_url
        .as_deref()
        .and_then(|u| Url::parse(u).ok())
        .unwrap_or_else(|| url.clone());
    // The keys of `counts`: the words, then the patterns (DESIGN §17).
    let mut record = crate::actors::worker::record_of(fetched, &opts.count_keys());
    let report = match raw {
        _ if status.is_some_and(|s| s >= 400) => CrawlReport {
            note: Some("an error page: its links are not followed".into()),
            ..CrawlReport::default()
        },
        Some(raw) => page::report(&final_url, &RawLinks::from(raw), &crawl.rules, scope),
        None if record.words_count.is_some() => CrawlReport {
            note: Some("not an HTML page: no links".into()),
            ..CrawlReport::default()
        },
        None => CrawlReport::default(),
    };
    record.crawl = Some(report);
    record
}

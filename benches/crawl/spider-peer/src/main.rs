//! Crawl benchmark peer (issue 19 "Targets"): the `spider` crate crawls a site from one
//! start URL, same host only, 32 concurrent requests, no delay, robots.txt not obeyed
//! (as the peers were measured and as `run.sh` asks wordtally: `obey_robots:
//! false`; the docs site has no robots.txt anyway), and counts the case-insensitive
//! substring `python` in each page's raw bytes (wordtally's `scope: raw`,
//! `whole_word: false`).
//!
//! Usage: `spider-peer START_URL [PER_PAGE_JSON]` → prints
//! `{"tool":"spider","urls":N,"total":T,"seconds":S,"per_page_file":PATH}`; the per-page
//! counts `{url: count}` go to PER_PAGE_JSON (default /tmp/wt-crawl-bench/spider.json).
use spider::tokio;
use spider::website::Website;
use std::collections::BTreeMap;
use std::time::Instant;

/// Case-insensitive (ASCII) occurrences of `needle` in `hay`, non-overlapping. For
/// `python` overlapping and non-overlapping counts agree (no border of the word is also
/// its prefix), so this is the same rule as wordtally's substring count.
fn count_ci(hay: &[u8], needle: &[u8]) -> u64 {
    let first_lo = needle[0].to_ascii_lowercase();
    let first_up = needle[0].to_ascii_uppercase();
    let mut n = 0;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let b = hay[i];
        if (b == first_lo || b == first_up) && hay[i..i + needle.len()].eq_ignore_ascii_case(needle)
        {
            n += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    n
}

/// utime + stime of this process in seconds, from /proc/self/stat (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of proc(5), counted from after the command name; clock ticks are
    // 100 a second on Linux (USER_HZ), without a libc dependency for sysconf.
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let start = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8089/index.html".to_string());
    let out = args
        .next()
        .unwrap_or_else(|| "/tmp/wt-crawl-bench/spider.json".to_string());
    let word = std::env::var("WORD").unwrap_or_else(|_| "python".to_string());

    let t0 = Instant::now();
    let c0 = cpu_seconds();
    let mut website = Website::new(&start);
    website
        .with_respect_robots_txt(false)
        .with_subdomains(false)
        .with_tld(false)
        .with_delay(0)
        .with_concurrency_limit(Some(32));
    // Large enough that the counter never lags behind the crawl (528 pages): a lagged
    // broadcast receiver would silently skip pages.
    let mut rx = website.subscribe(1 << 16);
    let counter = tokio::spawn(async move {
        let mut per_page: BTreeMap<String, u64> = BTreeMap::new();
        let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
        loop {
            match rx.recv().await {
                Ok(page) => {
                    let n = count_ci(page.get_html_bytes_u8(), word.as_bytes());
                    *statuses.entry(page.status_code.as_u16()).or_default() += 1;
                    per_page.insert(page.get_url().to_string(), n);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                    eprintln!("spider-peer: the counter lagged, {k} pages lost");
                    std::process::exit(2);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
        (per_page, statuses)
    });
    website.crawl().await;
    website.unsubscribe();
    let (per_page, statuses) = match counter.await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("spider-peer: counter task failed: {e}");
            std::process::exit(2);
        }
    };
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    let total: u64 = per_page.values().sum();
    let json = serde_json::to_string(&per_page).unwrap_or_default();
    if let Err(e) = std::fs::write(&out, json) {
        eprintln!("spider-peer: cannot write {out}: {e}");
        std::process::exit(2);
    }
    let statuses: Vec<String> = statuses
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    println!(
        "{{\"tool\":\"spider\",\"urls\":{},\"total\":{},\"seconds\":{:.4},\"cpu_seconds\":{:.3},\"statuses\":{{{}}},\"per_page_file\":{:?}}}",
        per_page.len(),
        total,
        seconds,
        cpu,
        statuses.join(","),
        out
    );
}

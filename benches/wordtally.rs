//! wordtally's benchmarks (DESIGN §9), one binary with a mode per measurement:
//!
//! ```text
//! cargo bench --bench wordtally -- counting [ROW_FILTER] [MAX_PAGES]
//! cargo bench --bench wordtally -- pipeline [TASKS] [WORKER_PROCS] [WORKERS_EACH]
//! cargo bench --bench wordtally -- latency  [RATE_PER_S] [SECONDS]
//! cargo bench --bench wordtally -- poll     [TASKS] [postgres|sqlite]
//! cargo bench --bench wordtally -- scale    [TASKS] [LOAD_TASKS_PER_S]
//! cargo bench --bench wordtally -- memory   [TASKS]
//! ```
//!
//! Everything runs on this machine: PostgreSQL and Redis on localhost, the project's NSQ
//! test broker, and a local page server. Numbers are printed as Markdown table rows for
//! BENCHMARKS.md.

#[path = "../tests/support/nsq_broker.rs"]
mod nsq_broker;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use clap::Parser;
use serde_json::{Value, json};
use sqlx::Connection;
use wordtally::app::{start_serve, start_worker};
use wordtally::config::{Cli, Command, ServeArgs};
use wordtally::count::{BodyCounter, CountOptions, Scope};

use nsq_broker::{BrokerConfig, NsqTestBroker};

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";
const REDIS: &str = "redis://127.0.0.1:6379";

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and a debug-build benchmark would only cost time there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmarks run with `cargo bench --bench wordtally -- MODE` (see BENCHMARKS.md)");
        return;
    }
    // reqwest is built with rustls-no-provider: install ring before any client exists.
    wordtally::fetch::install_crypto_provider();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mode = args.first().map(String::as_str).unwrap_or("counting");
    let num = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match mode {
        "counting" => counting(
            args.get(1).map(String::as_str),
            args.get(2).and_then(|s| s.parse().ok()),
        ),
        "pipeline" => rt.block_on(pipeline(
            num(1, 2000),
            num(2, 2) as usize,
            num(3, 32) as usize,
        )),
        "latency" => rt.block_on(latency(num(1, 100), num(2, 20))),
        "poll" => rt.block_on(poll(
            num(1, 1_000_000) as i64,
            args.get(2).is_some_and(|d| d == "sqlite"),
        )),
        "scale" => rt.block_on(scale(num(1, 1_000_000) as i64, num(2, 3000))),
        "memory" => rt.block_on(memory(num(1, 10_000) as usize)),
        "ingest" => rt.block_on(ingest(num(1, 20_000), num(2, 1_000) as usize)),
        other => eprintln!(
            "unknown mode {other:?}: counting | pipeline | latency | poll | scale | memory | ingest"
        ),
    }
}

// ------------------------------------------------------------------ counting

/// ~16 MiB of HTML shaped like documentation: paragraphs, inline markup, code, scripts.
fn synthetic_corpus() -> Vec<u8> {
    let block = "<div class=\"section\"><h2>Using Python &amp; friends</h2>\
        <p>The <b>python</b> interpreter reads <code>python3 script.py</code>; \
        <a href=\"/python/\" title=\"python docs\">see the tutorial</a> for Pythonic idioms.</p>\
        <script>var python = {version: 3};</script><ul><li>py<i>thon</i></li><li>Jython</li></ul>\
        <p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor \
        incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam — naïve café.</p></div>\n";
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>Python</title></head><body>",
    );
    while out.len() < 16 << 20 {
        out.push_str(block);
    }
    out.push_str("</body></html>");
    out.into_bytes()
}

/// The pages of the counting corpus: every `*.html` under `WORDTALLY_CORPUS` (default
/// Debian's python3.11-doc, `/usr/share/doc/python3.11/html`, 530 pages), or the synthetic
/// corpus as one page when that directory is missing.
fn corpus_pages() -> (String, Vec<String>) {
    let dir = std::env::var("WORDTALLY_CORPUS")
        .unwrap_or_else(|_| "/usr/share/doc/python3.11/html".to_owned());
    let mut files = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(&dir)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "html") {
                files.push(p);
            }
        }
    }
    files.sort();
    let pages: Vec<String> = files
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect();
    if pages.is_empty() {
        let synthetic = String::from_utf8_lossy(&synthetic_corpus()).into_owned();
        return (
            "synthetic documentation-like HTML (python3.11-doc not installed)".to_owned(),
            vec![synthetic],
        );
    }
    (format!("{} pages of {dir}", pages.len()), pages)
}

fn time_best<F: FnMut() -> u64>(runs: usize, mut f: F) -> (Duration, u64) {
    let mut best = Duration::MAX;
    let mut result = 0;
    for _ in 0..runs {
        let t = Instant::now();
        result = f();
        best = best.min(t.elapsed());
    }
    (best, result)
}

/// The `outside` selectors of the regions rows (issue 20's target).
const OUTSIDE: [&str; 4] = ["nav", "footer", "div.sphinxsidebar", "div.related"];

/// 20 common words of technical documentation (many matches: a heavy case).
const TWENTY_WORDS: [&str; 20] = [
    "python", "the", "and", "module", "function", "class", "return", "value", "object", "file",
    "string", "list", "type", "data", "error", "example", "import", "default", "method", "code",
];

/// 20 rare words (other languages' names): few matches, so the row measures the search
/// itself rather than the per-match work.
const TWENTY_RARE_WORDS: [&str; 20] = [
    "haskell",
    "golang",
    "kotlin",
    "fortran",
    "cobol",
    "erlang",
    "elixir",
    "clojure",
    "scala",
    "ocaml",
    "pascal",
    "prolog",
    "smalltalk",
    "rustlang",
    "julia",
    "ruby",
    "swift",
    "lua",
    "zig",
    "dart",
];

/// html5ever sink that only sums the length of character tokens (a bare tokenizer pass).
struct BareSink(std::cell::Cell<u64>);

impl html5ever::tokenizer::TokenSink for BareSink {
    type Handle = ();
    fn process_token(
        &self,
        token: html5ever::tokenizer::Token,
        _line: u64,
    ) -> html5ever::tokenizer::TokenSinkResult<()> {
        if let html5ever::tokenizer::Token::CharacterTokens(t) = token {
            self.0.set(self.0.get() + t.len() as u64);
        }
        html5ever::tokenizer::TokenSinkResult::Continue
    }
}

fn html5ever_bare(page: &str, chunk: usize) -> u64 {
    use html5ever::tendril::StrTendril;
    use html5ever::tokenizer::{BufferQueue, Tokenizer, TokenizerOpts};
    let tok = Tokenizer::new(BareSink(std::cell::Cell::new(0)), TokenizerOpts::default());
    let queue = BufferQueue::default();
    for part in str_chunks(page, chunk) {
        queue.push_back(StrTendril::from_slice(part));
        let _ = tok.feed(&queue);
    }
    tok.end();
    tok.sink.0.get()
}

fn lol_html_bare(page: &str, chunk: usize) -> u64 {
    use lol_html::{HtmlRewriter, Settings, doc_text};
    let mut n = 0u64;
    {
        let settings = Settings::new().append_document_content_handler(doc_text!(|t| {
            n += t.as_str().len() as u64;
            Ok(())
        }));
        let mut rw = HtmlRewriter::new(settings, |_: &[u8]| {});
        for part in page.as_bytes().chunks(chunk) {
            rw.write(part).expect("lol_html write");
        }
        rw.end().expect("lol_html end");
    }
    n
}

/// lol_html's streaming selector engine over the same bytes: a text handler on each
/// selector's element content (what lol_html does to find regions), plus the bare
/// document text pass.
fn lol_html_selectors(page: &str, chunk: usize, selectors: &[&str]) -> u64 {
    use lol_html::{HtmlRewriter, Settings, doc_text, text};
    let n = std::cell::Cell::new(0u64);
    {
        let mut settings = Settings::new().append_document_content_handler(doc_text!(|t| {
            n.set(n.get() + t.as_str().len() as u64);
            Ok(())
        }));
        for sel in selectors {
            settings = settings.append_element_content_handler(text!(*sel, |t| {
                n.set(n.get() + 1 + t.as_str().len() as u64);
                Ok(())
            }));
        }
        let mut rw = HtmlRewriter::new(settings, |_: &[u8]| {});
        for part in page.as_bytes().chunks(chunk) {
            rw.write(part).expect("lol_html write");
        }
        rw.end().expect("lol_html end");
    }
    n.get()
}

/// Splits `s` into pieces of about `chunk` bytes on char boundaries.
fn str_chunks(s: &str, chunk: usize) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = chunk.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (a, b) = rest.split_at(cut);
        rest = b;
        Some(a)
    })
}

/// The library floor of a several-words search: aho-corasick's packed (Teddy) searcher
/// alone, counting leftmost non-overlapping matches over the raw bytes (no decoding, no
/// whole-word test, no per-word bookkeeping).
fn ac_bare_packed(pages: &[String], words: &[String]) -> u64 {
    let s = aho_corasick::packed::Searcher::new(words).expect("Teddy for 20 short words");
    pages
        .iter()
        .map(|p| s.find_iter(p.as_bytes()).count() as u64)
        .sum()
}

/// Every occurrence of every word (what counting needs: words may overlap each other),
/// aho-corasick's overlapping DFA search alone, over the raw bytes.
fn ac_bare_overlapping(pages: &[String], words: &[String]) -> u64 {
    let ac = aho_corasick::AhoCorasick::builder()
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(words)
        .expect("DFA for 20 short words");
    pages
        .iter()
        .map(|p| ac.find_overlapping_iter(p.as_bytes()).count() as u64)
        .sum()
}

/// `counting [ROW_FILTER] [MAX_PAGES]`: every row over the whole corpus by default; a
/// filter (substring of the row name; several separated by `|`) and a page limit make a small run for callgrind.
fn counting(filter: Option<&str>, max_pages: Option<usize>) {
    let (what, mut pages) = corpus_pages();
    if let Some(max) = max_pages {
        pages.truncate(max);
    }
    let total: usize = pages.iter().map(String::len).sum();
    let mb = total as f64 / (1024.0 * 1024.0);
    let chunk = 16 * 1024;
    let twenty: Vec<String> = TWENTY_WORDS.iter().map(|w| (*w).to_owned()).collect();
    let rare: Vec<String> = TWENTY_RARE_WORDS.iter().map(|w| (*w).to_owned()).collect();
    let one = vec!["python".to_owned()];
    let feed = |words: &[String], cs: bool, whole: bool, scope: Scope| -> u64 {
        let mut sum = 0;
        for page in &pages {
            let mut c =
                BodyCounter::new_words(words, cs, whole, scope, Some("text/html; charset=utf-8"));
            for part in page.as_bytes().chunks(chunk) {
                c.feed(part);
            }
            sum += c.finish().counts.iter().sum::<u64>();
        }
        sum
    };
    let opts = |cs: bool, whole: bool, scope: Scope| CountOptions {
        word: "python".into(),
        case_sensitive: cs,
        whole_word: whole,
        scope,
        ..CountOptions::default()
    };
    let feed_one = |o: CountOptions| -> u64 {
        let mut sum = 0;
        for page in &pages {
            let mut c = BodyCounter::new(&o, Some("text/html; charset=utf-8"));
            for part in page.as_bytes().chunks(chunk) {
                c.feed(part);
            }
            sum += c.finish().count;
        }
        sum
    };
    // Everything the options ask for (regions, patterns), through `for_options`.
    let feed_opts = |o: CountOptions| -> u64 {
        let mut sum = 0;
        for page in &pages {
            let mut c = BodyCounter::for_options(&o, Some("text/html; charset=utf-8"));
            for part in page.as_bytes().chunks(chunk) {
                c.feed(part);
            }
            sum += c.finish().counts.iter().sum::<u64>();
        }
        sum
    };
    // Words and one pattern in one pass (DESIGN §17); the count is the pattern's.
    let feed_patterns = |o: CountOptions| -> u64 {
        let o = CountOptions {
            patterns: vec![r"py(thon)?\d*".to_owned()],
            ..o
        };
        let mut sum = 0;
        for page in &pages {
            let mut c = BodyCounter::for_options(&o, Some("text/html; charset=utf-8"));
            for part in page.as_bytes().chunks(chunk) {
                c.feed(part);
            }
            sum += c.finish().counts.last().copied().unwrap_or(0);
        }
        sum
    };
    // Words plus links (hrefs counted into the sum, so the work cannot be skipped).
    let feed_links = |o: CountOptions| -> u64 {
        let mut sum = 0;
        for page in &pages {
            let mut c = BodyCounter::new_with_links(
                &o,
                Some("text/html; charset=utf-8"),
                wordtally::count::LinkOptions::default(),
            );
            for part in page.as_bytes().chunks(chunk) {
                c.feed(part);
            }
            let s = c.finish();
            sum += s.count + s.links.map_or(0, |l| l.hrefs.len() as u64);
        }
        sum
    };
    println!("| what | count | best of 5 | MB/s |\n|---|---|---|---|");
    type Case<'a> = (&'static str, Box<dyn Fn() -> u64 + 'a>);
    let rows: Vec<Case> = vec![
        (
            "memmem: memchr::memmem count of `python` (baseline, bytes)",
            Box::new(|| {
                let f = memchr::memmem::Finder::new(b"python");
                pages
                    .iter()
                    .map(|p| f.find_iter(p.as_bytes()).count() as u64)
                    .sum()
            }),
        ),
        (
            "memmem case-insensitive: count::fold_search::FoldFinder of `python` (bytes)",
            Box::new(|| {
                let f = wordtally::count::fold_search::FoldFinder::new(b"python")
                    .expect("ASCII needle");
                pages
                    .iter()
                    .map(|p| f.find_iter(p.as_bytes()).count() as u64)
                    .sum()
            }),
        ),
        (
            "aho-corasick ascii_case_insensitive count of `python` (crate baseline, bytes)",
            Box::new(|| {
                let ac = aho_corasick::AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(["python"])
                    .expect("one small pattern");
                pages
                    .iter()
                    .map(|p| ac.find_iter(p.as_bytes()).count() as u64)
                    .sum()
            }),
        ),
        (
            "raw, case-sensitive, substring (= str.count)",
            Box::new(|| feed_one(opts(true, false, Scope::Raw))),
        ),
        (
            "raw, case-sensitive, whole word",
            Box::new(|| feed_one(opts(true, true, Scope::Raw))),
        ),
        (
            "raw, case-insensitive, substring",
            Box::new(|| feed_one(opts(false, false, Scope::Raw))),
        ),
        (
            "raw, case-insensitive, whole word",
            Box::new(|| feed_one(opts(false, true, Scope::Raw))),
        ),
        (
            "raw, 20 words, case-sensitive, substring",
            Box::new(|| feed(&twenty, true, false, Scope::Raw)),
        ),
        (
            "raw, 20 words, case-insensitive, whole word",
            Box::new(|| feed(&twenty, false, true, Scope::Raw)),
        ),
        (
            "raw, 20 rare words, case-sensitive, substring",
            Box::new(|| feed(&rare, true, false, Scope::Raw)),
        ),
        (
            "raw, 20 rare words, case-insensitive, whole word",
            Box::new(|| feed(&rare, false, true, Scope::Raw)),
        ),
        (
            "aho-corasick bare: Teddy (packed) leftmost count of the 20 words (library floor, bytes)",
            Box::new(|| ac_bare_packed(&pages, &twenty)),
        ),
        (
            "aho-corasick bare: Teddy (packed) leftmost count of the 20 rare words (bytes)",
            Box::new(|| ac_bare_packed(&pages, &rare)),
        ),
        (
            "aho-corasick bare: overlapping DFA count of the 20 words (bytes)",
            Box::new(|| ac_bare_overlapping(&pages, &twenty)),
        ),
        (
            "aho-corasick bare: overlapping DFA count of the 20 rare words (bytes)",
            Box::new(|| ac_bare_overlapping(&pages, &rare)),
        ),
        (
            "lol_html (bare text pass: text handler sums chunk lengths)",
            Box::new(|| pages.iter().map(|p| lol_html_bare(p, chunk)).sum()),
        ),
        (
            "html5ever (bare tokenizer pass, sums character tokens)",
            Box::new(|| pages.iter().map(|p| html5ever_bare(p, chunk)).sum()),
        ),
        (
            "text via html5ever (old engine, now the test oracle; decoded text)",
            Box::new(|| {
                pages
                    .iter()
                    .map(|p| {
                        wordtally::count::count_text_html5ever(
                            &one,
                            false,
                            true,
                            Scope::Text,
                            true,
                            p,
                            chunk,
                        )[0]
                    })
                    .sum()
            }),
        ),
        (
            "text (default: case-insensitive, whole word)",
            Box::new(|| feed_one(CountOptions::default())),
        ),
        (
            "text, case-sensitive, substring",
            Box::new(|| feed_one(opts(true, false, Scope::Text))),
        ),
        (
            "text, outside selectors (nav, footer, div.sphinxsidebar, div.related)",
            Box::new(|| {
                feed_opts(CountOptions {
                    outside: OUTSIDE.iter().map(|s| (*s).to_owned()).collect(),
                    ..CountOptions::default()
                })
            }),
        ),
        (
            "text, within selectors (div.body)",
            Box::new(|| {
                feed_opts(CountOptions {
                    within: vec!["div.body".to_owned()],
                    ..CountOptions::default()
                })
            }),
        ),
        (
            "lol_html selector pass (text handlers on the 4 outside selectors + document text)",
            Box::new(|| {
                pages
                    .iter()
                    .map(|p| lol_html_selectors(p, chunk, &OUTSIDE))
                    .sum()
            }),
        ),
        (
            "text, default options, with links (crawl: hrefs, base, nofollow)",
            Box::new(|| feed_links(CountOptions::default())),
        ),
        (
            "raw, case-insensitive, whole word, with links (tags-only scanner beside)",
            Box::new(|| feed_links(opts(false, true, Scope::Raw))),
        ),
        (
            "text, 1 word via new_words (default options)",
            Box::new(|| feed(&one, false, true, Scope::Text)),
        ),
        (
            "text, 20 words (default options)",
            Box::new(|| feed(&twenty, false, true, Scope::Text)),
        ),
        (
            "text, 20 words, case-sensitive, substring",
            Box::new(|| feed(&twenty, true, false, Scope::Text)),
        ),
        (
            "text, 1 pattern (`py(thon)?\\d*` beside `python`, default options)",
            Box::new(|| feed_patterns(CountOptions::default())),
        ),
        (
            "text, 1 pattern, case-sensitive, substring",
            Box::new(|| feed_patterns(opts(true, false, Scope::Text))),
        ),
        (
            "raw, 1 pattern (`py(thon)?\\d*` beside `python`, case-insensitive, whole word)",
            Box::new(|| feed_patterns(opts(false, true, Scope::Raw))),
        ),
    ];
    for (name, f) in rows {
        if filter.is_some_and(|f| !f.split('|').any(|f| name.contains(f))) {
            continue;
        }
        let (t, n) = time_best(5, f);
        println!(
            "| {name} | {n} | {:.1} ms | {:.0} |",
            t.as_secs_f64() * 1e3,
            mb / t.as_secs_f64()
        );
    }
    println!(
        "\n(corpus: {what}, {} pages used, {mb:.1} MiB; fed page by page in {} KiB chunks, one core)",
        pages.len(),
        chunk / 1024
    );
}

// ------------------------------------------------------------------ shared set-up

async fn page_server(delay: Duration) -> SocketAddr {
    let app = Router::new().route(
        "/page/{n}",
        get(move |Path(n): Path<usize>| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut s = String::from("<!doctype html><html><head><meta charset=utf-8><title>page</title></head><body>");
            // ~20 KiB per page, `n % 50` visible occurrences.
            for i in 0..200 {
                if i < n % 50 {
                    s.push_str("<p>Python is a programming language.</p>");
                } else {
                    s.push_str("<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.</p>");
                }
            }
            s.push_str("</body></html>");
            ([("content-type", "text/html; charset=utf-8")], s)
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    addr
}

async fn fresh_db() -> (String, String) {
    let mut conn = sqlx::PgConnection::connect(PG_ADMIN)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432");
    let name = format!("wt_bench_{}", std::process::id());
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create db");
    (
        name.clone(),
        format!("postgres://postgres@127.0.0.1:5432/{name}"),
    )
}

async fn drop_db(name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(PG_ADMIN).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

fn serve_args(db: &str, broker: &NsqTestBroker, prefix: &str, workers: usize) -> ServeArgs {
    let cli = Cli::try_parse_from([
        "wordtally",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        &workers.to_string(),
        "--allow-private-targets",
    ])
    .expect("args");
    let Some(Command::Serve(mut a)) = cli.command else {
        unreachable!()
    };
    a.database_url = db.into();
    a.worker.redis_url = Some(REDIS.into());
    a.worker.redis_prefix = prefix.into();
    a.worker.nsqd_tcp_address = Some(broker.tcp_addr().to_string());
    a.worker.nsq_topic = "counter".into();
    a.worker.per_host_concurrency = 1000; // one local page server stands for many sites
    a.nsqlookupd_http_address.clear();
    a
}

async fn submit(client: &reqwest::Client, base: &str, addresses: Vec<String>) -> usize {
    let res: Value = client
        .post(format!("{base}/api/tasks"))
        .json(&json!({ "addresses": addresses }))
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("json");
    res["tasks"].as_array().map(Vec::len).unwrap_or(0)
}

async fn finished(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT finished FROM task_stats WHERE id = 1")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

async fn latencies(pool: &sqlx::PgPool) -> (f64, f64, f64) {
    let row: (Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY updated_at - timestamp)::float8, \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY updated_at - timestamp)::float8, \
                MAX(updated_at - timestamp)::float8 FROM task WHERE task_status = 'FINISHED'",
    )
    .fetch_one(pool)
    .await
    .expect("latency query");
    (
        row.0.unwrap_or(0.0),
        row.1.unwrap_or(0.0),
        row.2.unwrap_or(0.0),
    )
}

async fn redis_cleanup(prefix: &str) {
    if let Ok(c) = redis::Client::open(REDIS)
        && let Ok(mut conn) = c.get_multiplexed_async_connection().await
    {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for k in keys {
            let _: Result<(), _> = redis::cmd("DEL").arg(k).query_async(&mut conn).await;
        }
    }
}

// ------------------------------------------------------------------ pipeline

async fn pipeline(tasks: u64, procs: usize, workers_each: usize) {
    let pages = page_server(Duration::ZERO).await;
    let broker = NsqTestBroker::start(BrokerConfig::default())
        .await
        .expect("broker");
    let (dbname, db) = fresh_db().await;
    let prefix = format!("wt-bench-{}", std::process::id());
    let serve = start_serve(serve_args(&db, &broker, &prefix, 0))
        .await
        .expect("serve");
    let mut workers = Vec::new();
    for _ in 0..procs {
        workers.push(
            start_worker(serve_args(&db, &broker, &prefix, workers_each).worker)
                .await
                .expect("worker"),
        );
    }
    let base = format!("http://{}", serve.addr);
    let client = reqwest::Client::new();
    let pool = sqlx::PgPool::connect(&db).await.expect("pool");
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < tasks {
        let n = (tasks - sent).min(500);
        let addrs = (sent..sent + n)
            .map(|i| format!("http://{pages}/page/{i}"))
            .collect();
        sent += submit(&client, &base, addrs).await as u64;
    }
    let submitted = t0.elapsed();
    while (finished(&pool).await as u64) < tasks {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if t0.elapsed() > Duration::from_secs(600) {
            eprintln!("gave up waiting");
            break;
        }
    }
    let total = t0.elapsed();
    let (p50, p99, max) = latencies(&pool).await;
    println!(
        "| tasks | worker procs × fetches | submit time | all finished | tasks/s | submit→stored p50 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {tasks} | {procs} × {workers_each} | {:.2} s | {:.2} s | {:.0} | {p50:.0} ms | {p99:.0} ms | {max:.0} ms |",
        submitted.as_secs_f64(),
        total.as_secs_f64(),
        tasks as f64 / total.as_secs_f64()
    );
    for w in workers {
        let _ = w.stop().await;
    }
    let _ = serve.stop().await;
    pool.close().await;
    redis_cleanup(&prefix).await;
    drop_db(&dbname).await;
}

/// Steady arrivals below capacity: the latency one task sees.
async fn latency(rate: u64, seconds: u64) {
    let pages = page_server(Duration::ZERO).await;
    let broker = NsqTestBroker::start(BrokerConfig::default())
        .await
        .expect("broker");
    let (dbname, db) = fresh_db().await;
    let prefix = format!("wt-bench-{}", std::process::id());
    let serve = start_serve(serve_args(&db, &broker, &prefix, 0))
        .await
        .expect("serve");
    let worker = start_worker(serve_args(&db, &broker, &prefix, 32).worker)
        .await
        .expect("worker");
    let base = format!("http://{}", serve.addr);
    let client = reqwest::Client::new();
    let pool = sqlx::PgPool::connect(&db).await.expect("pool");
    let total = rate * seconds;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1) as u32);
    for i in 0..total {
        tick.tick().await;
        submit(&client, &base, vec![format!("http://{pages}/page/{i}")]).await;
    }
    while (finished(&pool).await as u64) < total {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (p50, p99, max) = latencies(&pool).await;
    println!("| arrival rate | tasks | submit→stored p50 | p99 | max |\n|---|---|---|---|---|");
    println!("| {rate}/s | {total} | {p50:.0} ms | {p99:.0} ms | {max:.0} ms |");
    let _ = worker.stop().await;
    let _ = serve.stop().await;
    pool.close().await;
    redis_cleanup(&prefix).await;
    drop_db(&dbname).await;
}

// ------------------------------------------------------------------ poll

fn percentile(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

/// The task table's fill for `poll`, in either database's SQL: `n` tasks over 5,000 hosts,
/// one in ten pending, the rest finished with a result; the counters moved along.
const POLL_FILL: [&str; 3] = [
    "INSERT INTO task (address, timestamp, task_status, word, case_sensitive, whole_word, scope, attempts, queued_at, updated_at) \
     SELECT 'http://site' || (g % 5000) || '.example/page/' || g, 1700000000000 + g, \
            CASE WHEN g % 10 = 0 THEN 'PENDING' ELSE 'FINISHED' END, 'python', false, true, 'text', 1, 1700000000000 + g, 1700000000000 + g \
     FROM GEN",
    "INSERT INTO result (task_id, words_count, http_status_code, timestamp, bytes_read, truncated, duration_ms, attempts) \
     SELECT id, id % 97, 200, timestamp + 50, 20000, false, 40, 1 FROM task WHERE task_status = 'FINISHED'",
    "UPDATE task_stats SET version = version + 1, \
     pending = (SELECT COUNT(*) FROM task WHERE task_status = 'PENDING'), \
     finished = (SELECT COUNT(*) FROM task WHERE task_status = 'FINISHED') WHERE id = 1",
];

/// Fills `poll`'s tables directly (fast) on the database `url` whose migrations `serve`
/// ran; the counters' version afterwards.
async fn poll_fill(url: &str, n: i64) -> i64 {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("sqlite");
        let fill = POLL_FILL[0].replace("FROM GEN", "FROM gen");
        let fill = format!(
            "WITH RECURSIVE gen(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM gen WHERE g < {n}) {fill}"
        );
        for q in [fill.as_str(), POLL_FILL[1], POLL_FILL[2], "ANALYZE"] {
            sqlx::query(q).execute(&pool).await.expect("fill");
        }
        let v = sqlx::query_scalar("SELECT version FROM task_stats")
            .fetch_one(&pool)
            .await
            .expect("v");
        pool.close().await;
        v
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("pool");
        let fill = POLL_FILL[0].replace("FROM GEN", &format!("FROM generate_series(1, {n}) g"));
        // VACUUM as well as ANALYZE: a database that has grown to 1M tasks has been
        // vacuumed long since, while a table filled a second ago is where autovacuum starts
        // (it vacuums after inserts too, and merges the trigram index's pending list),
        // busy on one of the two cores while the rows below are timed.
        for q in [
            fill.as_str(),
            POLL_FILL[1],
            POLL_FILL[2],
            "VACUUM (ANALYZE)",
        ] {
            sqlx::query(q).execute(&pool).await.expect("fill");
        }
        let v = sqlx::query_scalar("SELECT version FROM task_stats")
            .fetch_one(&pool)
            .await
            .expect("v");
        pool.close().await;
        v
    }
}

/// `poll N [postgres|sqlite]`: what the pages people poll and search cost with N tasks
/// stored, on Postgres or on the embedded default (SQLite, in-process queue). Each row is
/// 200 requests, or as many as fit in 20 s (slow rows: the count is in the table).
async fn poll(n: i64, sqlite: bool) {
    let broker = NsqTestBroker::start(BrokerConfig::default())
        .await
        .expect("broker");
    let prefix = format!("wt-bench-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("wt-bench-poll-{}", std::process::id()));
    let (dbname, args) = if sqlite {
        let _ = std::fs::create_dir_all(&dir);
        let mut a = serve_args("", &broker, &prefix, 0);
        a.database_url = format!("sqlite://{}", dir.join("poll.db").display());
        a.worker.redis_url = None;
        a.worker.nsqd_tcp_address = None;
        (None, a)
    } else {
        let (name, db) = fresh_db().await;
        (Some(name), serve_args(&db, &broker, &prefix, 0))
    };
    let url = args.database_url.clone();
    // Start once to run the migrations, then fill the tables directly (fast).
    let serve = start_serve(args).await.expect("serve");
    let t = Instant::now();
    let version = poll_fill(&url, n).await;
    let filled = t.elapsed();
    let base = format!("http://{}", serve.addr);
    let client = reqwest::Client::new();
    println!(
        "({n} tasks inserted in {:.1} s, {})\n",
        filled.as_secs_f64(),
        if sqlite { "SQLite" } else { "PostgreSQL" }
    );
    println!("| request | status | requests | p50 | p99 |\n|---|---|---|---|---|");
    for (name, path) in [
        ("poll, nothing changed", format!("/tasks/table?v={version}")),
        (
            "poll, changed: first page (50 rows)",
            "/tasks/table?v=0".to_string(),
        ),
        (
            "page, filtered by status",
            "/tasks?status=PENDING".to_string(),
        ),
        ("page, deep keyset page", format!("/tasks?before={}", n / 2)),
        (
            "page, address search: one host (site42.example, 1 in 5,000)",
            "/tasks?q=site42.example".to_string(),
        ),
        (
            "page, address search: common (example, every task)",
            "/tasks?q=example".to_string(),
        ),
        (
            "page, address search: rare (one task)",
            format!("/tasks?q=page/{}", n / 3 + 7),
        ),
        (
            "page, address search: medium (42.example, 1 in 100)",
            "/tasks?q=42.example".to_string(),
        ),
        (
            "page, address search: one host + status PENDING",
            "/tasks?q=site42.example&status=PENDING".to_string(),
        ),
        (
            "page, address search: one host, deep keyset page",
            format!("/tasks?q=site42.example&before={}", n / 2),
        ),
        (
            "API, address search: one host",
            "/api/tasks?q=site42.example".to_string(),
        ),
        ("API, one task", format!("/api/tasks/{}", n / 3)),
    ] {
        let mut times = Vec::new();
        let mut status = 0;
        let row = Instant::now();
        while times.len() < 200 && (times.len() < 10 || row.elapsed() < Duration::from_secs(20)) {
            let t = Instant::now();
            let res = client
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect("get");
            status = res.status().as_u16();
            let _ = res.bytes().await;
            times.push(t.elapsed());
        }
        println!(
            "| {name} | {status} | {} | {:.2} ms | {:.2} ms |",
            times.len(),
            percentile(times.clone(), 0.5),
            percentile(times, 0.99)
        );
    }
    let _ = serve.stop().await;
    if let Some(name) = dbname {
        drop_db(&name).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------------ scale

/// Fills the task table directly (fast) with tasks `from..=to`, all finished (so the
/// reconciler has nothing to re-queue), and moves the counters along.
async fn fill_finished(pool: &sqlx::PgPool, from: i64, to: i64) {
    if to < from {
        return;
    }
    sqlx::query(
        "INSERT INTO task (address, timestamp, task_status, word, case_sensitive, whole_word, scope, attempts, queued_at, updated_at, outcome) \
         SELECT 'http://site' || (g % 5000) || '.example/page/' || g, 1700000000000 + g, 'FINISHED', 'python', false, true, 'text', 1, 1700000000000 + g, 1700000000000 + g, 'ok' \
         FROM generate_series($1::bigint, $2::bigint) g",
    )
    .bind(from)
    .bind(to)
    .execute(pool)
    .await
    .expect("fill tasks");
    sqlx::query(
        "UPDATE task_stats SET version = version + 1, finished = finished + $1, ok = ok + $1 WHERE id = 1",
    )
    .bind(to - from + 1)
    .execute(pool)
    .await
    .expect("stats");
    sqlx::query("ANALYZE").execute(pool).await.expect("analyze");
}

/// `requests` submissions of `per` addresses each, one after another; p50 and p99 in ms.
async fn submit_latency(
    client: &reqwest::Client,
    base: &str,
    pages: SocketAddr,
    per: usize,
    requests: usize,
) -> (f64, f64) {
    let mut times = Vec::with_capacity(requests);
    for r in 0..requests {
        let addrs = (0..per)
            .map(|i| format!("http://{pages}/page/{}", r * per + i))
            .collect();
        let t = Instant::now();
        let n = submit(client, base, addrs).await;
        times.push(t.elapsed());
        assert_eq!(n, per, "every address accepted");
    }
    (percentile(times.clone(), 0.5), percentile(times, 0.99))
}

/// `scale N RATE`: does submitting cost more with a million tasks stored (DESIGN §9, issue
/// 11 item 5)? `serve --workers 0` and two worker "processes" (in-process, the same code
/// as `wordtally worker`, 32 fetches each) over Postgres + Redis + the NSQ test broker,
/// pages from a local server. At 1,000 stored tasks and then at N: submit latency of
/// `POST /api/tasks` with 1 and with 100 addresses, idle and while a load generator
/// submits RATE tasks/s (batches of 100) that the workers fetch and count.
async fn scale(n: i64, rate: u64) {
    let pages = page_server(Duration::ZERO).await;
    let broker = NsqTestBroker::start(BrokerConfig::default())
        .await
        .expect("broker");
    let (dbname, db) = fresh_db().await;
    let prefix = format!("wt-bench-scale-{}", std::process::id());
    let mut args = serve_args(&db, &broker, &prefix, 0);
    args.max_submit_addresses = 1000;
    // One client stands for many people here: no per-client submission limit.
    args.auth.rate_submissions_per_min = 10_000_000;
    args.auth.rate_addresses_per_min = 100_000_000;
    let serve = start_serve(args).await.expect("serve");
    let mut workers = Vec::new();
    for _ in 0..2 {
        workers.push(
            start_worker(serve_args(&db, &broker, &prefix, 32).worker)
                .await
                .expect("worker"),
        );
    }
    let base = format!("http://{}", serve.addr);
    let client = reqwest::Client::new();
    let pool = sqlx::PgPool::connect(&db).await.expect("pool");
    println!(
        "| stored tasks | flowing load | submit 1 address p50 | p99 | submit 100 addresses p50 | p99 | load achieved (finished/s) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut filled = 0;
    for size in [1000, n] {
        let t = Instant::now();
        // Tasks the measurements themselves add are counted in the next size's fill.
        let have: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM task")
            .fetch_one(&pool)
            .await
            .expect("count");
        fill_finished(&pool, filled + 1, filled + (size - have).max(0)).await;
        filled += (size - have).max(0);
        eprintln!("(filled to {size} in {:.1} s)", t.elapsed().as_secs_f64());
        for loaded in [false, true] {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let load = loaded.then(|| {
                let (stop, base, client) = (stop.clone(), base.clone(), client.clone());
                tokio::spawn(async move {
                    let mut tick =
                        tokio::time::interval(Duration::from_secs(1) * 100 / rate.max(1) as u32);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    let mut i = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        tick.tick().await;
                        let addrs = (0..100)
                            .map(|k| format!("http://{pages}/page/{}", i * 100 + k))
                            .collect();
                        submit(&client, &base, addrs).await;
                        i += 1;
                    }
                })
            });
            if loaded {
                // Let the flow reach its steady state first.
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            let done0 = finished(&pool).await;
            let t0 = Instant::now();
            let one = submit_latency(&client, &base, pages, 1, 300).await;
            let hundred = submit_latency(&client, &base, pages, 100, 100).await;
            let rate_seen = (finished(&pool).await - done0) as f64 / t0.elapsed().as_secs_f64();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(l) = load {
                let _ = l.await;
            }
            println!(
                "| {size} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
                if loaded {
                    format!("{rate} tasks/s offered")
                } else {
                    "none".into()
                },
                one.0,
                one.1,
                hundred.0,
                hundred.1,
                if loaded {
                    format!("{rate_seen:.0}")
                } else {
                    "–".into()
                },
            );
            // Let the workers drain before the next measurement.
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let s: (i64, i64) =
                    sqlx::query_as("SELECT not_started, pending FROM task_stats WHERE id = 1")
                        .fetch_one(&pool)
                        .await
                        .expect("stats");
                if s.0 + s.1 == 0 || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    for w in workers {
        let _ = w.stop().await;
    }
    let _ = serve.stop().await;
    pool.close().await;
    redis_cleanup(&prefix).await;
    drop_db(&dbname).await;
}

// ------------------------------------------------------------------ memory

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// RSS of a release `serve` process (embedded default: SQLite, in-process queue and bus)
/// holding `n` tasks in flight: 256 fetches hang on slow pages, the rest wait in its queue.
async fn memory(n: usize) {
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/wordtally");
    assert!(bin.exists(), "build it first: cargo build --release");
    let pages = page_server(Duration::from_secs(120)).await;
    let dir = std::env::temp_dir().join(format!("wt-bench-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = tokio::process::Command::new(&bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--allow-private-targets",
            "--workers",
            "256",
            "--per-host-concurrency",
            "1000",
            "--fetch-timeout-ms",
            "300000",
        ])
        .env("DATABASE_URL", format!("sqlite://{}/wt.db", dir.display()))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");
    let pid = child.id().expect("pid");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle = rss_kib(pid);
    let mut sent = 0;
    while sent < n {
        let k = (n - sent).min(1000);
        let addrs = (sent..sent + k)
            .map(|i| format!("http://{pages}/page/{i}"))
            .collect();
        sent += submit(&client, &base, addrs).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let busy = rss_kib(pid);
    // Page through the table while loaded, as a person would.
    for _ in 0..20 {
        let _ = client.get(format!("{base}/tasks")).send().await;
    }
    let after = rss_kib(pid);
    println!("| state | RSS | peak RSS |\n|---|---|---|");
    println!(
        "| idle, after start-up | {:.1} MiB | {:.1} MiB |",
        idle.0 as f64 / 1024.0,
        idle.1 as f64 / 1024.0
    );
    println!(
        "| {n} tasks in flight (256 fetching, rest queued) | {:.1} MiB | {:.1} MiB |",
        busy.0 as f64 / 1024.0,
        busy.1 as f64 / 1024.0
    );
    println!(
        "| same, after 20 page views | {:.1} MiB | {:.1} MiB |",
        after.0 as f64 / 1024.0,
        after.1 as f64 / 1024.0
    );
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------------ ingest

/// `ingest N [PER_REQUEST]`: N addresses through `POST /api/tasks`, PER_REQUEST at a time,
/// one request after another, into `serve --workers 0` — over Postgres + Redis + NSQ
/// broker, then over the embedded default (SQLite, in-process queue). Nothing is fetched:
/// this is the cost of storing, queueing and marking tasks. Prints tasks/s and the
/// per-request latency.
async fn ingest(n: u64, per_request: usize) {
    let broker = NsqTestBroker::start(BrokerConfig::default())
        .await
        .expect("broker");
    let (name, db) = fresh_db().await;
    let prefix = format!("wt-bench-ingest-{}", std::process::id());
    let mut pg = serve_args(&db, &broker, &prefix, 0);
    pg.max_submit_addresses = per_request.max(1);
    let dir = std::env::temp_dir().join(format!("wt-bench-ingest-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let mut lite = pg.clone();
    lite.database_url = format!("sqlite://{}", dir.join("ingest.db").display());
    lite.worker.redis_url = None;
    lite.worker.nsqd_tcp_address = None;
    println!("| store + queue | tasks | per request | total | tasks/s | request p50 | p99 |");
    println!("|---|---|---|---|---|---|---|");
    for (what, args) in [
        ("PostgreSQL + Redis + NSQ", pg),
        ("SQLite + in-process", lite),
    ] {
        let running = start_serve(args).await.expect("serve");
        let base = format!("http://{}", running.addr);
        let client = reqwest::Client::new();
        let mut lat = Vec::new();
        let started = Instant::now();
        let mut stored = 0usize;
        let mut i = 0u64;
        while i < n {
            let k = per_request.min((n - i) as usize);
            let addresses: Vec<String> = (0..k)
                .map(|j| format!("http://example.com/ingest/{}", i + j as u64))
                .collect();
            let t = Instant::now();
            stored += submit(&client, &base, addresses).await;
            lat.push(t.elapsed());
            i += k as u64;
        }
        let took = started.elapsed();
        println!(
            "| {what} | {stored} | {per_request} | {:.2} s | {:.0} | {:.1} ms | {:.1} ms |",
            took.as_secs_f64(),
            stored as f64 / took.as_secs_f64(),
            percentile(lat.clone(), 0.5),
            percentile(lat, 0.99)
        );
        // Bulk actions on the last batch: cancel everything, then retry it all.
        let (_, last): (u16, Value) = {
            let r = client
                .get(format!("{base}/api/batches?limit=1"))
                .send()
                .await
                .expect("list");
            (r.status().as_u16(), r.json().await.expect("json"))
        };
        let batch = last["batches"][0]["id"].as_i64().expect("a batch");
        let t = Instant::now();
        let c: Value = client
            .post(format!("{base}/api/batches/{batch}/cancel"))
            .send()
            .await
            .expect("cancel")
            .json()
            .await
            .expect("json");
        let cancel_took = t.elapsed();
        let t = Instant::now();
        let r: Value = client
            .post(format!("{base}/api/batches/{batch}/retry"))
            .json(&json!({"outcomes": ["cancelled"]}))
            .send()
            .await
            .expect("retry")
            .json()
            .await
            .expect("json");
        let retry_took = t.elapsed();
        eprintln!(
            "{what}: cancel of {} tasks {:.2} s, retry of {} tasks {:.2} s",
            c["cancelled"],
            cancel_took.as_secs_f64(),
            r["retried"],
            retry_took.as_secs_f64()
        );
        running.stop().await.expect("stop");
    }
    redis_cleanup(&prefix).await;
    drop_db(&name).await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = broker.stop().await;
}

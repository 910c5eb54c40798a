#![allow(dead_code)] // each crawl test uses a part of the site

//! A generated web site for the crawl tests (DESIGN §15), served on 127.0.0.1:0, and the
//! model of it the tests compare a crawl with: which URLs a crawl obeying robots.txt must
//! reach from `/index.html`, and the count of `python` on each.
//!
//! Page `/p/{i}.html` (i < n) holds `i % 7` visible occurrences of "python" (plus decoys in
//! a script, a comment and an attribute) and links to a few other pages in every spelling a
//! crawler must fold into one URL (relative, absolute, `./`, `../`, a fragment, an explicit
//! default port, a percent-escaped unreserved char), plus links that must not be followed:
//! another host, `mailto:`, `javascript:`, a `rel=nofollow` link, credentials. Some pages
//! link to `/private/{i}.html` (disallowed by robots.txt: `skipped`), to `/missing.html`
//! (404), to `/data.txt` (not HTML: counted, no links), and to `/trap/0` (an endless chain
//! of pages that the tests exclude or bound).
//!
//! [`TreeSite`], under `/t/`, is a second shape for the fault tests (tests/it/crawl_faults.rs):
//! a slow tree whose every page is first found on its parent whatever order results
//! arrive in, so a disturbed crawl must match an undisturbed one in depths and "found on"
//! as well as in URLs and counts.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The site's shape.
#[derive(Clone, Debug)]
pub struct Site {
    pub pages: usize,
}

/// A tree-shaped site under `/t/`, answered slowly: page `i` links to its children
/// `fanout·i + 1 ..= fanout·i + fanout` (heap order, those below `pages`), each child in
/// two spellings that normalise to one URL, and otherwise only to pages a crawl already
/// has by the time it reads the link (the page's parent, the root, itself). A page is
/// therefore always first found on its parent, so its depth and "found on" are fixed: the
/// same in every correct crawl, however results are delayed, redelivered or reordered.
/// Like [`Site`] it has counts `i % 7`, out-of-scope links (another host, credentials),
/// links never followed (`mailto:`, `javascript:`, `rel=nofollow`), `/private/t{i}.html`
/// links (disallowed by robots.txt) on pages `i % 10 == 5`, and `/missing.html` (404) and
/// `/data.txt` (not HTML) on page 7.
#[derive(Clone, Debug)]
pub struct TreeSite {
    pub pages: usize,
    pub fanout: usize,
    /// How long every `/t/` page takes to answer (ms), so that a crawl lasts long enough
    /// for a fault to land in its middle.
    pub delay_ms: u64,
}

/// What a correct crawl stores for one URL of a [`TreeSite`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreePage {
    /// The count (None: not counted, i.e. skipped by robots.txt).
    pub count: Option<i64>,
    pub status: Option<u16>,
    pub depth: i32,
    /// The path of the page it is first found on (None for the start page).
    pub found_on: Option<String>,
}

impl TreeSite {
    /// The root, where a crawl of this site starts.
    pub const START: &'static str = "/t/0.html";

    fn children(&self, i: usize) -> impl Iterator<Item = usize> + use<> {
        let (f, n) = (self.fanout, self.pages);
        (f * i + 1..=f * i + f).filter(move |c| *c < n)
    }

    /// Page `i`'s HTML, served on `port`.
    fn page(&self, i: usize, port: u16) -> String {
        let mut b = format!(
            "<!doctype html><html><head><meta charset=utf-8><title>Tree {i}</title>\
             <script>var python = 'python';</script></head><body>\
             <!-- python --><p title=\"python\">tree page {i}</p>"
        );
        for _ in 0..(i % 7) {
            b.push_str("<p>Python is here.</p>");
        }
        for (k, c) in self.children(i).enumerate() {
            let cs = c.to_string();
            // Two spellings of each child, the first one rotating through the forms a
            // crawler must fold into one URL.
            let first = match k % 4 {
                0 => format!("{c}.html"),
                1 => format!("./{c}.html#top"),
                2 => format!("../t/{c}.html"),
                _ => format!(
                    "HTTP://127.0.0.1:{port}/t/%{:02x}{}.html",
                    cs.as_bytes()[0],
                    &cs[1..]
                ),
            };
            b.push_str(&format!(
                "<a href=\"{first}\">child</a> <a href=\"/t/{c}.html#again\">again</a> "
            ));
        }
        // Pages the crawl already has when it reads these.
        if i > 0 {
            b.push_str(&format!(
                "<a href=\"/t/{}.html\">up</a> ",
                (i - 1) / self.fanout
            ));
        }
        b.push_str(&format!(
            "<a href=\"http://127.0.0.1:{port}/t/0.html\">root</a> <a href=\"#top\">top</a> \
             <a href=\"{i}.html\">self</a>"
        ));
        // Out of scope (counted), and never followed (not counted).
        b.push_str(&format!(
            "<a href=\"http://other.invalid/x\">other host</a> \
             <a href=\"http://user:pw@127.0.0.1:{port}/t/0.html\">creds</a> \
             <a href=\"mailto:a@b.c\">mail</a> <a href=\"javascript:void(0)\">js</a> \
             <a rel=\"nofollow\" href=\"/nofollow.html\">nofollow</a>"
        ));
        if i % 10 == 5 {
            b.push_str(&format!("<a href=\"/private/t{i}.html\">private</a>"));
        }
        if i == 7 {
            b.push_str("<a href=\"/missing.html\">broken</a> <a href=\"/data.txt\">data</a>");
        }
        b.push_str("</body></html>");
        b
    }

    /// Links each fetched `/t/` page counts as out of scope (another host, credentials).
    pub const OUT_OF_SCOPE_PER_PAGE: i64 = 2;

    /// Every URL path a crawl from [`START`](Self::START) that obeys robots.txt stores.
    pub fn expected(&self) -> BTreeMap<String, TreePage> {
        let mut out = BTreeMap::new();
        let mut depth = vec![0i32; self.pages];
        for i in 0..self.pages {
            if i > 0 {
                depth[i] = depth[(i - 1) / self.fanout] + 1;
            }
            let path = format!("/t/{i}.html");
            let found_on = (i > 0).then(|| format!("/t/{}.html", (i - 1) / self.fanout));
            out.insert(
                path.clone(),
                TreePage {
                    count: Some((i % 7) as i64),
                    status: Some(200),
                    depth: depth[i],
                    found_on,
                },
            );
            let below = |count, status| TreePage {
                count,
                status,
                depth: depth[i] + 1,
                found_on: Some(path.clone()),
            };
            if i % 10 == 5 {
                // Disallowed: stored as skipped, never fetched.
                out.insert(format!("/private/t{i}.html"), below(None, None));
            }
            if i == 7 {
                out.insert("/missing.html".into(), below(Some(0), Some(404)));
                out.insert("/data.txt".into(), below(Some(2), Some(200)));
            }
        }
        out
    }
}

#[derive(Clone)]
struct Served {
    site: Site,
    tree: Option<TreeSite>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    port: Arc<std::sync::atomic::AtomicU16>,
}

/// A running generated site.
pub struct SiteServer {
    pub addr: SocketAddr,
    pub site: Site,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SiteServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Site {
    /// The pages page `i` links to (indices), in the order they appear.
    fn targets(&self, i: usize) -> Vec<usize> {
        let n = self.pages;
        vec![(i + 1) % n, (i * 3 + 1) % n, (i * 7 + 2) % n]
    }

    /// Page `i`'s HTML, served on `port`.
    fn page(&self, i: usize, port: u16) -> String {
        let t = self.targets(i);
        let mut b = format!(
            "<!doctype html><html><head><meta charset=utf-8><title>Page {i}</title>\
             <script>var python = 'python';</script></head><body>\
             <!-- python --><p title=\"python\">page {i}</p>"
        );
        for _ in 0..(i % 7) {
            b.push_str("<p>Python is here.</p>");
        }
        // Every spelling of the same few targets.
        let first = t[0].to_string();
        b.push_str(&format!(
            "<a href=\"{}.html\">a</a> <a href=\"./{}.html#top\">b</a> \
             <a href=\"../p/{}.html\">c</a> \
             <a href=\"HTTP://127.0.0.1:{port}/p/%{:02x}{}.html\">d</a>",
            t[0],
            t[1],
            t[2],
            first.as_bytes()[0],
            &first[1..],
        ));
        // Links that must not be followed.
        b.push_str(
            "<a href=\"http://other.invalid/x\">other host</a> \
             <a href=\"mailto:a@b.c\">mail</a> <a href=\"javascript:void(0)\">js</a> \
             <a rel=\"nofollow\" href=\"/nofollow.html\">nofollow</a>",
        );
        b.push_str(&format!(
            "<a href=\"http://user:pw@127.0.0.1:{port}/p/0.html\">creds</a>"
        ));
        if i.is_multiple_of(5) {
            b.push_str(&format!("<a href=\"/private/{i}.html\">private</a>"));
        }
        if i == 3 {
            b.push_str("<a href=\"/missing.html\">broken</a> <a href=\"/data.txt\">data</a>");
        }
        if i == 4 {
            b.push_str("<a href=\"/trap/0\">calendar</a>");
        }
        b.push_str("</body></html>");
        b
    }

    /// The URL paths a crawl from `/index.html` that obeys robots.txt (and excludes the
    /// trap) stores, each with its expected count (None: not counted) and HTTP status.
    pub fn expected(&self) -> BTreeMap<String, (Option<i64>, Option<u16>)> {
        let mut out = BTreeMap::new();
        out.insert("/index.html".to_string(), (Some(1), Some(200)));
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([0usize]);
        seen.insert(0);
        while let Some(i) = queue.pop_front() {
            out.insert(format!("/p/{i}.html"), (Some((i % 7) as i64), Some(200)));
            if i % 5 == 0 {
                // Disallowed: stored as skipped, never fetched.
                out.insert(format!("/private/{i}.html"), (None, None));
            }
            if i == 3 {
                out.insert("/missing.html".into(), (Some(0), Some(404)));
                out.insert("/data.txt".into(), (Some(2), Some(200)));
            }
            for t in self.targets(i) {
                if seen.insert(t) {
                    queue.push_back(t);
                }
            }
        }
        out
    }
}

async fn page(State(s): State<Served>, Path(name): Path<String>) -> Response {
    let Some(i) = name
        .strip_suffix(".html")
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if i >= s.site.pages {
        return StatusCode::NOT_FOUND.into_response();
    }
    html(
        s.site
            .page(i, s.port.load(std::sync::atomic::Ordering::SeqCst)),
    )
}

async fn tree_page(State(s): State<Served>, Path(name): Path<String>) -> Response {
    let (Some(tree), Some(i)) = (
        s.tree.as_ref(),
        name.strip_suffix(".html")
            .and_then(|n| n.parse::<usize>().ok()),
    ) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if i >= tree.pages {
        return StatusCode::NOT_FOUND.into_response();
    }
    // The site is slow on purpose (the server's own pace, not a wait of the test).
    tokio::time::sleep(std::time::Duration::from_millis(tree.delay_ms)).await;
    html(tree.page(i, s.port.load(std::sync::atomic::Ordering::SeqCst)))
}

fn html(body: String) -> Response {
    ([("content-type", "text/html; charset=utf-8")], body).into_response()
}

async fn record(
    State(s): State<Served>,
    uri: Uri,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    *s.hits
        .lock()
        .unwrap()
        .entry(
            uri.path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
        )
        .or_default() += 1;
    next.run(req).await
}

impl SiteServer {
    pub async fn start(site: Site) -> SiteServer {
        Self::start_with(site, None).await
    }

    /// Serves a [`TreeSite`] under `/t/` (beside an empty [`Site`]: robots.txt, the
    /// private pages, `/data.txt` and the rest answer as usual).
    pub async fn start_tree(tree: TreeSite) -> SiteServer {
        Self::start_with(Site { pages: 0 }, Some(tree)).await
    }

    async fn start_with(site: Site, tree: Option<TreeSite>) -> SiteServer {
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let port: Arc<std::sync::atomic::AtomicU16> = Arc::default();
        let served = Served {
            site: site.clone(),
            tree,
            hits: hits.clone(),
            port: port.clone(),
        };
        let index = "<html><body><h1>Index of the python site</h1>\
                     <a href=\"/p/0.html\">start</a></body></html>";
        let app = Router::new()
            .route(
                "/index.html",
                get(move || async move { html(index.to_string()) }),
            )
            .route("/p/{name}", get(page))
            .route("/t/{name}", get(tree_page))
            .route(
                "/robots.txt",
                get(|| async {
                    (
                        [("content-type", "text/plain")],
                        "User-agent: *\nDisallow: /private/\n",
                    )
                }),
            )
            .route(
                "/private/{name}",
                get(|| async { html("<p>python python python</p>".into()) }),
            )
            .route(
                "/nofollow.html",
                get(|| async { html("<p>python</p>".into()) }),
            )
            .route(
                "/data.txt",
                get(|| async { ([("content-type", "text/plain")], "python and PYTHON") }),
            )
            .route("/trap/{n}", get(trap))
            .route("/hostile/index.html", get(hostile_index))
            .route("/hostile/many", get(many_links))
            .route(
                "/hostile/out",
                get(|| async {
                    // Another host (still loopback): counted there, its links not followed.
                    axum::response::Redirect::temporary("http://localhost.:1/elsewhere")
                }),
            )
            .route(
                "/hostile/deep/{*rest}",
                get(|| async { html("<p>python</p>".into()) }),
            )
            .layer(axum::middleware::from_fn_with_state(served.clone(), record))
            .with_state(served);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind site server");
        let addr = listener.local_addr().expect("site addr");
        port.store(addr.port(), std::sync::atomic::Ordering::SeqCst);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SiteServer {
            addr,
            site,
            hits,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received for a path (with its query).
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Requests received so far for paths starting with `prefix`.
    pub fn hits_under(&self, prefix: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every path requested so far, with how many times.
    pub fn all_hits(&self) -> HashMap<String, usize> {
        self.hits.lock().unwrap().clone()
    }

    /// Every path requested more than once (robots.txt aside).
    pub fn fetched_twice(&self) -> Vec<String> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, n)| **n > 1 && p.as_str() != "/robots.txt")
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// Links a crawler must survive: `..` past the root, credentials, an IDN host, a page of
/// many links, a redirect to another host, every scheme but http(s).
async fn hostile_index() -> Response {
    html(
        "<p>python</p>\
         <a href=\"../../../../hostile/deep/a\">dots</a>\
         <a href=\"/hostile/deep/./b/../c\">dot segments</a>\
         <a href=\"http://user:secret@127.0.0.1/hostile/deep/x\">credentials</a>\
         <a href=\"http://bücher.example/\">idn</a>\
         <a href=\"/hostile/many\">many</a>\
         <a href=\"/hostile/out\">out</a>\
         <a href=\"data:text/html,<p>python</p>\">data</a>\
         <a href=\"javascript:alert(1)\">js</a>"
            .into(),
    )
}

/// A page of 200,000 distinct links (~5 MB): kept only up to the crawl's links per page.
async fn many_links() -> Response {
    let mut b = String::with_capacity(6 << 20);
    b.push_str("<p>python</p>");
    for i in 0..200_000 {
        b.push_str(&format!("<a href=\"/m/{i}\">{i}</a>"));
    }
    html(b)
}

/// An endless chain of pages: `/trap/{n}` links to `/trap/{n+1}` and to a query-string
/// variant of itself.
async fn trap(Path(n): Path<u64>) -> Response {
    html(format!(
        "<p>day {n}</p><a href=\"/trap/{}\">next</a> <a href=\"/trap/{n}?session={}\">again</a>",
        n + 1,
        n * 31 + 7
    ))
}

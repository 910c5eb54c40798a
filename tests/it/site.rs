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

#[derive(Clone)]
struct Served {
    site: Site,
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
        if i % 5 == 0 {
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
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let port: Arc<std::sync::atomic::AtomicU16> = Arc::default();
        let served = Served {
            site: site.clone(),
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

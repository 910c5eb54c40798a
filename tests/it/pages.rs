#![allow(dead_code)] // request counters are used by the SSRF and fault tests

//! A local page server for the tests: pages with known counts, and counters of the
//! requests it received (to prove that a blocked request never arrived).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

#[derive(Clone, Default)]
struct Hits(Arc<Mutex<HashMap<String, usize>>>);

/// A running page server on 127.0.0.1:0.
pub struct PageServer {
    pub addr: SocketAddr,
    hits: Hits,
    healed: Healed,
    task: tokio::task::JoinHandle<()>,
}

/// HTML in which the default options (word `python`, case-insensitive, whole word, text
/// scope) count exactly `n`: visible occurrences plus decoys that must not count.
pub fn page_with(n: usize) -> String {
    let mut body = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>Test page</title>\
         <style>.python{color:red}</style><script>var python = 'python';</script></head><body>\
         <!-- python in a comment --><a href=\"/python\" title=\"python\">link</a>\
         <p>pythonic and Jython and python3 are other words</p>",
    );
    for i in 0..n {
        if i % 3 == 0 {
            body.push_str("<p>Python is great.</p>");
        } else if i % 3 == 1 {
            body.push_str("<li><b>py</b>thon</li>");
        } else {
            body.push_str("<div>PYTHON</div>");
        }
    }
    body.push_str("<template>python</template><noscript>python</noscript></body></html>");
    body
}

async fn count_page(Path(n): Path<usize>) -> Response {
    (
        [("content-type", "text/html; charset=utf-8")],
        page_with(n.min(10_000)),
    )
        .into_response()
}

async fn status_page(Path(code): Path<u16>) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
    (code, [("content-type", "text/html")], page_with(2)).into_response()
}

async fn record(
    State(hits): State<Hits>,
    uri: Uri,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Ok(mut g) = hits.0.lock() {
        *g.entry(uri.path().to_string()).or_default() += 1;
        // Also by path and query, so a test can count requests for an address of its own
        // (a port freed by an earlier test may be reused while that test's jobs retry).
        if let Some(q) = uri.query() {
            *g.entry(format!("{}?{q}", uri.path())).or_default() += 1;
        }
    }
    next.run(req).await
}

/// Whether the `/flaky/{n}` pages have started answering (404 until then).
#[derive(Clone, Default)]
struct Healed(Arc<std::sync::atomic::AtomicBool>);

async fn flaky_page(State(h): State<Healed>, Path(n): Path<usize>) -> Response {
    if h.0.load(std::sync::atomic::Ordering::SeqCst) {
        count_page(Path(n)).await
    } else {
        (
            StatusCode::NOT_FOUND,
            [("content-type", "text/html")],
            "<p>not yet</p>",
        )
            .into_response()
    }
}

/// A page that answers after `ms` milliseconds (for tasks that must still be running).
async fn slow_page(Path(ms): Path<u64>) -> Response {
    tokio::time::sleep(std::time::Duration::from_millis(ms.min(30_000))).await;
    ([("content-type", "text/html")], page_with(1)).into_response()
}

impl PageServer {
    /// From now on the `/flaky/{n}` pages answer 200 with `n` matches.
    pub fn heal(&self) {
        self.healed
            .0
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub async fn start() -> PageServer {
        let hits = Hits::default();
        let healed = Healed::default();
        let flaky = Router::new()
            .route("/flaky/{n}", get(flaky_page))
            .with_state(healed.clone());
        let app = Router::new()
            .merge(flaky)
            .route("/slow/{ms}", get(slow_page))
            .route("/count/{n}", get(count_page))
            .route("/status/{code}", get(status_page))
            .route(
                "/plain",
                get(|| async { ([("content-type", "text/plain")], "python, Python, PYTHON!") }),
            )
            .layer(axum::middleware::from_fn_with_state(hits.clone(), record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind page server");
        let addr = listener.local_addr().expect("page server addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PageServer {
            addr,
            hits,
            healed,
            task,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .0
            .lock()
            .map(|g| g.get(path).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        // Path-and-query entries duplicate a path entry: count each request once.
        self.hits
            .0
            .lock()
            .map(|g| {
                g.iter()
                    .filter(|(k, _)| !k.contains('?'))
                    .map(|(_, n)| n)
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ------------------------------------------------------------------ hostile and slow pages
//
// Used by the fault, hostile-input and SSRF tests (`faults.rs`, `hostile.rs`, `ssrf.rs`).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Query;

/// `python ` repeated, as a gzip member hand-encoded with fixed-Huffman deflate (the seven
/// literals, then `repeats` length-258/distance-7 matches), so a few KiB on the wire inflate
/// to `7 + 258 * repeats` bytes: a compression bomb without a gzip crate.
pub fn gzip_of_repeated_python(repeats: u64) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        len: u32,
    }
    impl Bits {
        fn put(&mut self, value: u64, count: u32) {
            self.acc |= value << self.len;
            self.len += count;
            while self.len >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.len -= 8;
            }
        }
        /// Huffman codes go most-significant bit first.
        fn code(&mut self, code: u64, count: u32) {
            let mut rev = 0;
            for i in 0..count {
                rev |= ((code >> i) & 1) << (count - 1 - i);
            }
            self.put(rev, count);
        }
    }
    const UNIT: &[u8] = b"python ";
    let mut b = Bits {
        out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff],
        acc: 0,
        len: 0,
    };
    b.put(1, 1); // BFINAL
    b.put(1, 2); // BTYPE = fixed Huffman
    for &c in UNIT {
        b.code(0x30 + u64::from(c), 8); // literals 0..=143: 8-bit codes from 0x30
    }
    for _ in 0..repeats {
        b.code(0xc0 + 5, 8); // symbol 285 = length 258
        b.code(5, 5); // distance code 5 = distances 7..=8, one extra bit
        b.put(0, 1); // extra bit 0: distance 7
    }
    b.code(0, 7); // end of block (256)
    if b.len > 0 {
        b.put(0, 8 - b.len);
    }
    let mut table = [0u32; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    let total = UNIT.len() as u64 + 258 * repeats;
    let mut crc = !0u32;
    for i in 0..total {
        let byte = UNIT[(i % UNIT.len() as u64) as usize];
        crc = table[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    let mut out = b.out;
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out
}

/// The compression bomb served at `/bomb`: ~32 MiB of `python ` once inflated, ~150 KiB
/// on the wire. Built once per test binary.
pub fn bomb() -> &'static [u8] {
    static BOMB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BOMB.get_or_init(|| gzip_of_repeated_python(130_000))
}

#[derive(serde::Deserialize)]
struct RedirectTo {
    to: String,
}

fn location(to: &str) -> Response {
    (StatusCode::FOUND, [("location", to.to_string())]).into_response()
}

/// `/count/{n}` after `ms` milliseconds: keeps jobs in flight long enough for a fault to
/// land in the middle of a run.
async fn slow_count_page(Path((ms, n)): Path<(u64, usize)>) -> Response {
    tokio::time::sleep(Duration::from_millis(ms.min(10_000))).await;
    count_page(Path(n)).await
}

/// Every route of [`PageServer::start`] plus hostile ones:
/// * `/slow/{ms}/{n}`: `/count/{n}` answered after a delay;
/// * `/endless`: `python ` forever (text/plain);
/// * `/drip`: one `python ` every 200 ms for a minute (slow drip);
/// * `/loop`: redirects to itself; `/chain/{n}`: n redirects, then a page counting 1;
/// * `/redirect?to=URL`: one redirect to any URL;
/// * `/bomb`: the gzip bomb above (Content-Encoding: gzip);
/// * `/bogus-charset`: an unknown charset in the header and in `<meta>`, counting 3;
/// * `/binary/png`, `/binary/octet`: binary content types whose bytes contain the word;
/// * `/markup`: an HTML page.
fn full_router(hits: Hits) -> Router {
    Router::new()
        .route("/count/{n}", get(count_page))
        .route("/status/{code}", get(status_page))
        .route(
            "/plain",
            get(|| async { ([("content-type", "text/plain")], "python, Python, PYTHON!") }),
        )
        .route("/slow/{ms}/{n}", get(slow_count_page))
        .route(
            "/endless",
            get(|| async {
                let chunk = Bytes::from("python ".repeat(1024));
                let forever = futures_util::stream::unfold(chunk, |c| async move {
                    Some((Ok::<_, std::io::Error>(c.clone()), c))
                });
                ([("content-type", "text/plain")], Body::from_stream(forever)).into_response()
            }),
        )
        .route(
            "/drip",
            get(|| async {
                let drip = futures_util::stream::unfold(0u32, |i| async move {
                    if i >= 300 {
                        return None;
                    }
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from_static(b"python ")),
                        i + 1,
                    ))
                });
                ([("content-type", "text/plain")], Body::from_stream(drip)).into_response()
            }),
        )
        .route("/loop", get(|| async { location("/loop") }))
        .route(
            "/chain/{n}",
            get(|Path(n): Path<u32>| async move {
                if n == 0 {
                    count_page(Path(1)).await
                } else {
                    location(&format!("/chain/{}", n - 1))
                }
            }),
        )
        .route(
            "/redirect",
            get(|Query(q): Query<RedirectTo>| async move { location(&q.to) }),
        )
        .route(
            "/bomb",
            get(|| async {
                (
                    [("content-type", "text/plain"), ("content-encoding", "gzip")],
                    bomb().to_vec(),
                )
                    .into_response()
            }),
        )
        .route(
            "/bogus-charset",
            get(|| async {
                (
                    [("content-type", "text/html; charset=x-klingon-42")],
                    "<html><head><meta charset=\"no-such-charset\"></head>\
                     <body><p>python</p><p>Python</p><p>PYTHON</p></body></html>",
                )
                    .into_response()
            }),
        )
        .route(
            "/binary/png",
            get(|| async {
                (
                    [("content-type", "image/png")],
                    b"\x89PNG\r\n\x1a\npython python".to_vec(),
                )
                    .into_response()
            }),
        )
        .route(
            "/binary/octet",
            get(|| async {
                (
                    [("content-type", "application/octet-stream")],
                    b"\x00\x01python\x02".to_vec(),
                )
                    .into_response()
            }),
        )
        .layer(axum::middleware::from_fn_with_state(hits, record))
}

impl PageServer {
    /// A page server with every route of [`full_router`], on 127.0.0.1:0.
    pub async fn start_full() -> PageServer {
        let hits = Hits::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind page server");
        let addr = listener.local_addr().expect("page server addr");
        let app = full_router(hits.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PageServer {
            addr,
            hits,
            healed: Healed::default(),
            task,
        }
    }

    /// Like [`start_full`](Self::start_full), listening on `[::1]` too, on the same port, with
    /// the same request counters (so an IPv6 spelling of loopback would be seen).
    pub async fn start_full_dual_stack() -> PageServer {
        for _ in 0..20 {
            let v4 = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind page server");
            let addr = v4.local_addr().expect("page server addr");
            let Ok(v6) = tokio::net::TcpListener::bind(("::1", addr.port())).await else {
                continue;
            };
            let hits = Hits::default();
            let app = full_router(hits.clone());
            let app6 = app.clone();
            let task = tokio::spawn(async move {
                let _ = tokio::join!(axum::serve(v4, app), axum::serve(v6, app6));
            });
            return PageServer {
                addr,
                hits,
                healed: Healed::default(),
                task,
            };
        }
        panic!("could not bind 127.0.0.1 and [::1] on one port (is IPv6 loopback up?)");
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

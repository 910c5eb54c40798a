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
    }
    next.run(req).await
}

impl PageServer {
    pub async fn start() -> PageServer {
        let hits = Hits::default();
        let app = Router::new()
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
        PageServer { addr, hits, task }
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
        self.hits.0.lock().map(|g| g.values().sum()).unwrap_or(0)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

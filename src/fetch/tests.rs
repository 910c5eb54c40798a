//! Tests of the "fetch" step (submit → queue → fetch → count → NSQ → DB → poll) against local
//! axum servers on 127.0.0.1:0. Nothing here connects anywhere but loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;

use super::*;

/// Collects the body, like the real counter would see it.
struct Collect(Vec<u8>);

impl BodySink for Collect {
    type Output = Vec<u8>;
    fn feed(&mut self, chunk: &[u8]) {
        self.0.extend_from_slice(chunk);
    }
    fn finish(self) -> Vec<u8> {
        self.0
    }
}

fn collect(_: &ResponseMeta) -> Collect {
    Collect(Vec::new())
}

#[derive(Clone, Default)]
struct Counters {
    /// Every request the server received, whatever the path.
    hits: Arc<AtomicUsize>,
    flaky: Arc<AtomicUsize>,
    throttled: Arc<AtomicUsize>,
    /// Highest number of `/slow-ok` requests in flight at once.
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

struct TestServer {
    addr: SocketAddr,
    counters: Counters,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{}", self.addr, path)).expect("test url")
    }
    fn hits(&self) -> usize {
        self.counters.hits.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn count_hits(State(c): State<Counters>, req: Request, next: Next) -> Response {
    c.hits.fetch_add(1, Ordering::SeqCst);
    next.run(req).await
}

fn text(status: StatusCode, body: impl Into<Body>) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body.into())
        .unwrap_or_default()
}

fn redirect(to: &str) -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, to)
        .body(Body::empty())
        .unwrap_or_default()
}

/// `'a' * n` as a gzip member, hand-encoded (fixed-Huffman deflate: one literal, then
/// length-258/distance-1 matches), so a tiny body inflates to `n` bytes without a gzip crate.
fn gzip_of_repeated_a(n: u64) -> Vec<u8> {
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
    assert!(n >= 1 && (n - 1).is_multiple_of(258), "n must be 1 + 258k");
    let mut b = Bits {
        out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff],
        acc: 0,
        len: 0,
    };
    b.put(1, 1); // BFINAL
    b.put(1, 2); // BTYPE = fixed Huffman
    b.code(0x30 + u64::from(b'a'), 8);
    for _ in 0..(n - 1) / 258 {
        b.code(0xc0 + 5, 8); // symbol 285 = length 258
        b.code(0, 5); // distance code 0 = distance 1
    }
    b.code(0, 7); // end of block (256)
    if b.len > 0 {
        b.put(0, 8 - b.len);
    }
    let mut crc_table = [0u32; 256];
    for (i, slot) in crc_table.iter_mut().enumerate() {
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
    let mut crc = !0u32;
    for _ in 0..n {
        crc = crc_table[((crc ^ u32::from(b'a')) & 0xff) as usize] ^ (crc >> 8);
    }
    let mut out = b.out;
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out
}

fn gzip_response(body: Vec<u8>) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(body))
        .unwrap_or_default()
}

async fn start_server() -> TestServer {
    let counters = Counters::default();
    let app = Router::new()
        .route("/ok", get(|| async { text(StatusCode::OK, "hello world") }))
        .route("/redirect", get(|| async { redirect("/ok") }))
        .route("/loop-a", get(|| async { redirect("/loop-b") }))
        .route("/loop-b", get(|| async { redirect("/loop-a") }))
        .route(
            "/chain/{n}",
            get(|Path(n): Path<u32>| async move {
                if n == 0 {
                    text(StatusCode::OK, "end of chain")
                } else {
                    redirect(&format!("/chain/{}", n - 1))
                }
            }),
        )
        .route(
            "/big",
            get(|| async { text(StatusCode::OK, vec![b'a'; 1024 * 1024]) }),
        )
        .route(
            "/gzip-small",
            get(|| async { gzip_response(gzip_of_repeated_a(1 + 258 * 4)) }),
        )
        .route(
            "/bomb",
            get(|| async {
                // ~32 MiB once inflated, ~200 KiB on the wire; built once per test binary.
                static BOMB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
                gzip_response(
                    BOMB.get_or_init(|| gzip_of_repeated_a(1 + 258 * 130_000))
                        .clone(),
                )
            }),
        )
        .route(
            "/slow",
            get(|| async {
                // Bounded: 400 chunks at 50 ms = 20 s at most, far past the tests' timeout.
                let drip = futures_util::stream::unfold(0u32, |i| async move {
                    if i >= 400 {
                        return None;
                    }
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Some((Ok::<_, std::io::Error>(Bytes::from_static(b"drip ")), i + 1))
                });
                text(StatusCode::OK, Body::from_stream(drip))
            }),
        )
        .route(
            "/404",
            get(|| async { text(StatusCode::NOT_FOUND, "no such page") }),
        )
        .route(
            "/flaky",
            get(|State(c): State<Counters>| async move {
                if c.flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                    text(StatusCode::INTERNAL_SERVER_ERROR, "oops")
                } else {
                    text(StatusCode::OK, "recovered")
                }
            }),
        )
        .route(
            "/503",
            get(|| async { text(StatusCode::SERVICE_UNAVAILABLE, "down for maintenance") }),
        )
        .route(
            "/429",
            get(|State(c): State<Counters>| async move {
                if c.throttled.fetch_add(1, Ordering::SeqCst) == 0 {
                    let mut r = text(StatusCode::TOO_MANY_REQUESTS, "slow down");
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
                    r
                } else {
                    text(StatusCode::OK, "thanks for waiting")
                }
            }),
        )
        .route(
            "/image",
            get(|| async {
                Response::builder()
                    .header(header::CONTENT_TYPE, "image/png")
                    .body(Body::from(vec![0x89, b'P', b'N', b'G']))
                    .unwrap_or_default()
            }),
        )
        .route(
            "/octet/{kind}",
            get(|Path(kind): Path<String>| async move {
                // A `.py` download as nginx serves it, and a real binary with the same label.
                let body: Vec<u8> = match kind.as_str() {
                    "text" => b"# tzinfo examples\nimport datetime\n\tpython = 1\r\n".to_vec(),
                    _ => b"PK\x03\x04\x14\x00python".to_vec(),
                };
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(Body::from(body))
                    .unwrap_or_default()
            }),
        )
        .route(
            "/no-type",
            get(|| async { Response::new(Body::from("untyped words")) }),
        )
        .route(
            "/slow-ok",
            get(|State(c): State<Counters>| async move {
                let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                c.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                c.in_flight.fetch_sub(1, Ordering::SeqCst);
                text(StatusCode::OK, "done")
            }),
        )
        .route("/to-file", get(|| async { redirect("file:///etc/passwd") }))
        .layer(middleware::from_fn_with_state(counters.clone(), count_hits))
        .with_state(counters.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind test server");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TestServer {
        addr,
        counters,
        task,
    }
}

/// Guard off, short timeouts and backoff.
fn test_config() -> FetchConfig {
    FetchConfig {
        connect_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(5),
        backoff_base: Duration::from_millis(10),
        allow_private_targets: true,
        ..FetchConfig::default()
    }
}

fn fetcher(config: FetchConfig) -> Fetcher {
    Fetcher::new(config).expect("fetcher")
}

fn body_text(f: &Fetched<Vec<u8>>) -> String {
    String::from_utf8_lossy(f.output.as_deref().unwrap_or_default()).into_owned()
}

#[tokio::test]
async fn success_records_everything() {
    let s = start_server().await;
    let f = fetcher(test_config()).fetch(&s.url("/ok"), collect).await;
    assert_eq!(f.error, None);
    assert_eq!(body_text(&f), "hello world");
    assert_eq!(f.status, Some(200));
    assert_eq!(f.bytes_read, 11);
    assert!(!f.truncated);
    assert_eq!(f.attempts, 1);
    assert_eq!(f.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    assert_eq!(f.final_url.as_deref(), Some(s.url("/ok").as_str()));
}

#[tokio::test]
async fn sink_factory_sees_response_meta() {
    let s = start_server().await;
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen2 = Arc::clone(&seen);
    let f = fetcher(test_config())
        .fetch(&s.url("/redirect"), move |meta: &ResponseMeta| {
            *seen2.lock().unwrap_or_else(|p| p.into_inner()) = Some(meta.clone());
            Collect(Vec::new())
        })
        .await;
    assert_eq!(f.error, None);
    let meta = seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .expect("make_sink called");
    assert_eq!(meta.status, 200);
    assert_eq!(meta.final_url, s.url("/ok"));
    assert_eq!(
        meta.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
}

#[tokio::test]
async fn redirect_is_followed_and_final_url_recorded() {
    let s = start_server().await;
    let f = fetcher(test_config())
        .fetch(&s.url("/redirect"), collect)
        .await;
    assert_eq!(f.error, None);
    assert_eq!(body_text(&f), "hello world");
    assert_eq!(f.final_url.as_deref(), Some(s.url("/ok").as_str()));
    assert_eq!(
        f.redirects,
        vec![s.url("/ok").to_string()],
        "the chain is recorded"
    );
    assert_eq!(s.hits(), 2);
}

#[tokio::test]
async fn redirect_loop_is_a_clear_error() {
    let s = start_server().await;
    let f = fetcher(test_config())
        .fetch(&s.url("/loop-a"), collect)
        .await;
    let err = f.error.expect("error");
    assert!(err.contains("redirect loop"), "{err}");
    assert!(f.output.is_none());
    assert_eq!(f.attempts, 1, "a loop is not retried");
    assert_eq!(s.hits(), 2);
}

#[tokio::test]
async fn too_many_redirects() {
    let s = start_server().await;
    let config = FetchConfig {
        max_redirects: 3,
        ..test_config()
    };
    let f = fetcher(config.clone())
        .fetch(&s.url("/chain/3"), collect)
        .await;
    assert_eq!(f.error, None, "exactly max_redirects hops are fine");
    assert_eq!(body_text(&f), "end of chain");
    assert_eq!(
        f.redirects,
        vec![
            s.url("/chain/2").to_string(),
            s.url("/chain/1").to_string(),
            s.url("/chain/0").to_string()
        ],
        "every hop, in order"
    );

    let f = fetcher(config).fetch(&s.url("/chain/5"), collect).await;
    assert_eq!(f.error.as_deref(), Some("too many redirects (3)"));
    assert_eq!(f.attempts, 1);
}

#[tokio::test]
async fn redirect_to_other_scheme_is_refused() {
    let s = start_server().await;
    let f = fetcher(test_config())
        .fetch(&s.url("/to-file"), collect)
        .await;
    let err = f.error.expect("error");
    assert!(err.contains("file:"), "{err}");
    assert!(f.output.is_none());
    assert_eq!(f.status, Some(302));
    assert_eq!(f.attempts, 1);
}

#[tokio::test]
async fn body_cap_truncates_at_exactly_the_cap() {
    let s = start_server().await;
    let config = FetchConfig {
        max_body_bytes: 1000,
        ..test_config()
    };
    let f = fetcher(config).fetch(&s.url("/big"), collect).await;
    assert_eq!(f.error, None, "truncation is a flag, not an error");
    assert!(f.truncated);
    assert_eq!(f.bytes_read, 1000);
    assert_eq!(f.output.as_ref().map(Vec::len), Some(1000));
}

#[tokio::test]
async fn body_exactly_at_cap_is_not_truncated() {
    let s = start_server().await;
    let config = FetchConfig {
        max_body_bytes: 11,
        ..test_config()
    };
    let f = fetcher(config).fetch(&s.url("/ok"), collect).await;
    assert!(!f.truncated);
    assert_eq!(f.bytes_read, 11);
}

#[tokio::test]
async fn gzip_body_is_decompressed_for_the_sink() {
    let s = start_server().await;
    let f = fetcher(test_config())
        .fetch(&s.url("/gzip-small"), collect)
        .await;
    assert_eq!(f.error, None);
    assert_eq!(f.bytes_read, 1 + 258 * 4);
    assert!(
        f.output
            .as_deref()
            .unwrap_or_default()
            .iter()
            .all(|&b| b == b'a')
    );
}

#[tokio::test]
async fn gzip_bomb_stops_at_the_cap() {
    let s = start_server().await;
    let cap = 64 * 1024;
    let config = FetchConfig {
        max_body_bytes: cap,
        ..test_config()
    };
    let f = fetcher(config).fetch(&s.url("/bomb"), collect).await;
    assert_eq!(f.error, None);
    assert!(f.truncated);
    assert_eq!(f.bytes_read, cap);
    let out = f.output.expect("output");
    assert_eq!(out.len() as u64, cap);
    assert!(
        out.iter().all(|&b| b == b'a'),
        "sink gets decompressed bytes"
    );
}

#[tokio::test]
async fn slow_drip_body_hits_total_timeout() {
    let s = start_server().await;
    let config = FetchConfig {
        total_timeout: Duration::from_millis(400),
        max_attempts: 2,
        ..test_config()
    };
    let started = std::time::Instant::now();
    let f = fetcher(config).fetch(&s.url("/slow"), collect).await;
    assert_eq!(f.error.as_deref(), Some("timed out after 400 ms"));
    assert_eq!(f.attempts, 2, "timeouts are retried");
    assert_eq!(f.status, Some(200));
    // The last attempt's partial body is kept alongside the error.
    assert!(f.bytes_read > 0 && f.bytes_read < 400 * 5);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn not_found_is_final_and_counted() {
    let s = start_server().await;
    let f = fetcher(test_config()).fetch(&s.url("/404"), collect).await;
    assert_eq!(f.status, Some(404));
    assert_eq!(f.attempts, 1);
    assert_eq!(body_text(&f), "no such page");
    assert_eq!(f.error, None);
    assert_eq!(s.hits(), 1);
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let s = start_server().await;
    let f = fetcher(test_config())
        .fetch(&s.url("/flaky"), collect)
        .await;
    assert_eq!(f.error, None);
    assert_eq!(f.status, Some(200));
    assert_eq!(f.attempts, 2);
    assert_eq!(body_text(&f), "recovered", "the 500 body is not counted");
    assert_eq!(f.bytes_read, 9);
}

#[tokio::test]
async fn persistent_503_uses_all_attempts_and_counts_last_body() {
    let s = start_server().await;
    let config = FetchConfig {
        max_attempts: 3,
        ..test_config()
    };
    let f = fetcher(config).fetch(&s.url("/503"), collect).await;
    assert_eq!(f.attempts, 3);
    assert_eq!(f.status, Some(503));
    assert_eq!(f.error.as_deref(), Some("HTTP 503 after 3 attempts"));
    assert_eq!(body_text(&f), "down for maintenance");
    assert_eq!(s.hits(), 3);
}

#[tokio::test]
async fn too_many_requests_is_retried() {
    let s = start_server().await;
    let f = fetcher(test_config()).fetch(&s.url("/429"), collect).await;
    assert_eq!(f.error, None);
    assert_eq!(f.status, Some(200));
    assert_eq!(f.attempts, 2);
    assert_eq!(body_text(&f), "thanks for waiting");
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let url = Url::parse(&format!("http://{addr}/")).expect("url");
    let config = FetchConfig {
        max_attempts: 3,
        ..test_config()
    };
    let f = fetcher(config).fetch(&url, collect).await;
    assert_eq!(f.attempts, 3);
    assert_eq!(f.status, None);
    assert!(f.output.is_none());
    let err = f.error.expect("error");
    assert!(
        err.contains("could not connect") && err.contains("refused"),
        "{err}"
    );
}

#[tokio::test]
async fn binary_content_type_is_refused() {
    let s = start_server().await;
    let f = fetcher(test_config())
        .fetch(&s.url("/image"), collect)
        .await;
    assert!(f.output.is_none());
    assert_eq!(f.bytes_read, 0);
    assert_eq!(f.status, Some(200));
    assert_eq!(f.attempts, 1);
    assert_eq!(
        f.error.as_deref(),
        Some("not a text document (content type image/png)")
    );
}

#[tokio::test]
async fn octet_stream_is_sniffed_text_counted_binary_refused() {
    let s = start_server().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let f = fetcher(test_config())
        .fetch(&s.url("/octet/text"), |meta: &ResponseMeta| {
            seen.lock().expect("lock").push(meta.content_type.clone());
            Collect(Vec::new())
        })
        .await;
    assert_eq!(f.error, None);
    assert!(body_text(&f).contains("python = 1"), "{}", body_text(&f));
    // The sink counts it as plain text; the result keeps what the server said.
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![Some("text/plain".to_owned())]
    );
    assert_eq!(f.content_type.as_deref(), Some("application/octet-stream"));

    let f = fetcher(test_config())
        .fetch(&s.url("/octet/zip"), collect)
        .await;
    assert!(f.output.is_none());
    assert_eq!(
        f.error.as_deref(),
        Some("not a text document (content type application/octet-stream)")
    );
}

#[test]
fn binary_bytes_are_the_whatwg_ones() {
    assert!(!looks_binary(b""));
    assert!(!looks_binary(b"plain\ttext\r\n\x0c\x1b[0m"));
    assert!(!looks_binary("Grüße, ½ → ∞".as_bytes()));
    assert!(!looks_binary(&[0xFF, 0xFE, b'a', 0]));
    assert!(looks_binary(b"\x89PNG\r\n\x1a\n"));
    assert!(looks_binary(b"\x7fELF\x02\x01\x01\x00"));
    // Only the first 512 bytes are looked at, as a browser does.
    let mut late = vec![b'a'; 512];
    late.push(0);
    assert!(!looks_binary(&late));
}

#[tokio::test]
async fn missing_content_type_is_counted() {
    let s = start_server().await;
    let f = fetcher(test_config())
        .fetch(&s.url("/no-type"), collect)
        .await;
    assert_eq!(f.error, None);
    assert_eq!(body_text(&f), "untyped words");
}

#[test]
fn content_type_classification() {
    for ct in [
        "image/png",
        "IMAGE/JPEG",
        "audio/mpeg",
        "video/mp4",
        "font/woff2",
        "application/octet-stream",
        "application/zip",
        "application/pdf",
        "application/pdf; charset=binary",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ] {
        assert!(is_binary_content_type(ct), "{ct}");
    }
    for ct in [
        "text/html",
        "text/html; charset=ISO-8859-1",
        "text/plain",
        "application/json",
        "application/xhtml+xml",
        "application/xml",
        "image/svg+xml",
        "",
        "garbage",
    ] {
        assert!(!is_binary_content_type(ct), "{ct}");
    }
}

#[tokio::test]
async fn per_host_concurrency_is_limited_and_entries_cleaned_up() {
    let s = start_server().await;
    let config = FetchConfig {
        per_host_concurrency: 2,
        ..test_config()
    };
    let fetcher = fetcher(config);
    let url = s.url("/slow-ok");
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let f = fetcher.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move { f.fetch(&url, collect).await }));
    }
    for t in tasks {
        let f = t.await.expect("task");
        assert_eq!(f.error, None);
    }
    assert_eq!(s.counters.max_in_flight.load(Ordering::SeqCst), 2);
    assert_eq!(fetcher.inner.hosts.tracked_hosts(), 0);
}

#[test]
fn backoff_is_jittered_and_capped() {
    let f = fetcher(FetchConfig {
        backoff_base: Duration::from_millis(100),
        ..test_config()
    });
    for _ in 0..50 {
        assert!(f.backoff(1, None) <= Duration::from_millis(100));
        assert!(f.backoff(3, None) <= Duration::from_millis(400));
        assert!(f.backoff(30, None) <= MAX_BACKOFF);
        assert!(f.backoff(1, Some(Duration::from_millis(700))) >= Duration::from_millis(700));
        assert!(f.backoff(1, Some(Duration::from_secs(3600))) <= MAX_BACKOFF);
    }
}

#[test]
fn config_errors() {
    assert!(matches!(
        Fetcher::new(FetchConfig {
            per_host_concurrency: 0,
            ..FetchConfig::default()
        }),
        Err(FetchError::Config(_))
    ));
    assert!(matches!(
        Fetcher::new(FetchConfig {
            max_attempts: 0,
            ..FetchConfig::default()
        }),
        Err(FetchError::Config(_))
    ));
    assert!(matches!(
        Fetcher::new(FetchConfig {
            allow_targets: vec!["host:port".into()],
            ..FetchConfig::default()
        }),
        Err(FetchError::AllowList(_))
    ));
    let d = FetchConfig::default();
    assert_eq!(d.connect_timeout, Duration::from_secs(5));
    assert_eq!(d.total_timeout, Duration::from_secs(20));
    assert_eq!(d.max_redirects, 10);
    assert_eq!(d.max_body_bytes, 10 * 1024 * 1024);
    assert_eq!(d.per_host_concurrency, 4);
    assert_eq!(d.max_attempts, 3);
    assert_eq!(d.backoff_base, Duration::from_millis(500));
    assert!(!d.allow_private_targets);
    assert!(d.user_agent.starts_with("wordtally/"));
}

#[test]
fn fetcher_is_shareable() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<Fetcher>();
}

#[test]
fn human_durations() {
    assert_eq!(human_duration(Duration::from_secs(20)), "20 s");
    assert_eq!(human_duration(Duration::from_millis(250)), "250 ms");
    assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 s");
}

// ---- SSRF guard ON ----

fn guarded_config() -> FetchConfig {
    FetchConfig {
        allow_private_targets: false,
        ..test_config()
    }
}

fn assert_blocked(f: &Fetched<Vec<u8>>, what: &str) {
    let err = f
        .error
        .as_deref()
        .unwrap_or_else(|| panic!("{what}: not blocked"));
    assert!(err.starts_with("blocked by SSRF guard"), "{what}: {err}");
    assert!(err.contains("--allow-private-targets"), "{what}: {err}");
    assert!(err.contains("allow-list"), "{what}: {err}");
    assert!(f.output.is_none(), "{what}");
    assert_eq!(f.status, None, "{what}");
}

#[tokio::test]
async fn guard_blocks_loopback_in_every_spelling() {
    let s = start_server().await;
    let port = s.addr.port();
    let fetcher = fetcher(guarded_config());
    for spelling in [
        format!("http://127.0.0.1:{port}/ok"),
        format!("http://localhost:{port}/ok"),
        format!("http://foo.localhost:{port}/ok"),
        format!("http://[::1]:{port}/ok"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok"),
        format!("http://0.0.0.0:{port}/ok"),
        format!("http://2130706433:{port}/ok"),
        format!("http://0x7f.0.0.1:{port}/ok"),
        format!("http://127.1:{port}/ok"),
    ] {
        // Through the address rules first, as the real flow does.
        let url = crate::address::normalize_address(&spelling).expect("valid address");
        let f = fetcher.fetch(&url, collect).await;
        assert_blocked(&f, &spelling);
        assert_eq!(f.attempts, 0, "{spelling}: refused before any request");
    }
    assert_eq!(s.hits(), 0, "the server must never see a request");
}

#[tokio::test]
async fn guard_filters_names_resolving_to_loopback() {
    // The machine's own host name usually resolves to loopback via /etc/hosts; this exercises
    // the resolver path (reqwest calls it only for names). Skipped where it does not apply.
    let Ok(name) = std::fs::read_to_string("/etc/hostname") else {
        return;
    };
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() || name == "localhost" || name.ends_with(".localhost") {
        return;
    }
    let Ok(addrs) = tokio::net::lookup_host((name.as_str(), 0)).await else {
        return;
    };
    let addrs: Vec<_> = addrs.collect();
    if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
        return;
    }
    let s = start_server().await;
    let url = Url::parse(&format!("http://{name}:{}/ok", s.addr.port())).expect("url");
    let f = fetcher(guarded_config()).fetch(&url, collect).await;
    assert_blocked(&f, &name);
    assert!(f.error.as_deref().unwrap_or("").contains("loopback"));
    assert_eq!(f.attempts, 1, "a guard refusal is not retried");
    assert_eq!(s.hits(), 0);
}

#[tokio::test]
async fn allow_listed_target_cannot_redirect_to_another_loopback_port() {
    let b = start_server().await;
    let b_url = b.url("/ok").to_string();
    let a_hits = Arc::new(AtomicUsize::new(0));
    let a_hits2 = Arc::clone(&a_hits);
    let app = Router::new().route(
        "/",
        get(move || {
            a_hits2.fetch_add(1, Ordering::SeqCst);
            let to = b_url.clone();
            async move { redirect(&to) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let a_addr = listener.local_addr().expect("addr");
    let a_task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let config = FetchConfig {
        allow_targets: vec![a_addr.to_string()],
        ..guarded_config()
    };
    let a_url = Url::parse(&format!("http://{a_addr}/")).expect("url");
    let f = fetcher(config).fetch(&a_url, collect).await;
    a_task.abort();
    assert_blocked(&f, "redirect to B");
    assert!(
        f.error
            .as_deref()
            .unwrap_or("")
            .contains(&format!("127.0.0.1:{}", b.addr.port())),
        "{:?}",
        f.error
    );
    assert_eq!(f.attempts, 1);
    assert_eq!(a_hits.load(Ordering::SeqCst), 1, "A is allowed");
    assert_eq!(b.hits(), 0, "B must never be contacted");
}

#[tokio::test]
async fn allow_listed_target_is_fetched_with_guard_on() {
    let s = start_server().await;
    let config = FetchConfig {
        allow_targets: vec![s.addr.to_string()],
        ..guarded_config()
    };
    let f = fetcher(config).fetch(&s.url("/redirect"), collect).await;
    assert_eq!(f.error, None, "same host:port redirect stays allowed");
    assert_eq!(body_text(&f), "hello world");
}

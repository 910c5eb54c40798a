//! The "fetch" step (submit → queue → fetch → count → NSQ → DB → poll): downloads one already
//! normalized address (see `crate::address`) and streams its decompressed body into a sink (the
//! "count" step), with the SSRF guard, timeouts, a body cap, per-host concurrency limits and
//! retries with backoff.
//!
//! The fetcher never buffers a whole body: pages can be huge or hostile (compression bombs,
//! slow-drip servers), so bytes go to the sink as they arrive and reading stops at the cap.

pub mod guard;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{
    ACCEPT, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, RETRY_AFTER,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

use guard::{Guard, ResolveError};
pub use guard::{GuardError, InvalidAllowEntry, is_blocked_ip};

/// Longest wait between attempts, whatever the attempt number or `Retry-After` says: a fetch
/// must not park a job for minutes.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Installs rustls' ring crypto provider as the process default.
///
/// reqwest is built with `rustls-no-provider` (ring builds fast on 2 cores, aws-lc-sys does
/// not), so someone must install a provider before the first TLS handshake. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Knobs for [`Fetcher`]; the defaults suit the public service.
#[derive(Clone, Debug)]
pub struct FetchConfig {
    /// TCP (+TLS) connect limit per attempt. Default 5 s.
    pub connect_timeout: Duration,
    /// Whole attempt incl. body; slow-drip bodies end here. Default 20 s.
    pub total_timeout: Duration,
    /// Redirect hops followed before giving up. Default 10.
    pub max_redirects: usize,
    /// Body cap, counted on DECOMPRESSED bytes. Default 10 MiB.
    pub max_body_bytes: u64,
    /// Concurrent fetches to one host. Default 4.
    pub per_host_concurrency: usize,
    /// Tries per fetch, incl. the first. Default 3.
    pub max_attempts: u32,
    /// Base of the exponential backoff with full jitter (capped at 10 s). Default 500 ms.
    pub backoff_base: Duration,
    /// Turns the SSRF guard off entirely. Default false.
    pub allow_private_targets: bool,
    /// Targets (`host` or `host:port`) that bypass the SSRF guard.
    pub allow_targets: Vec<String>,
    /// Sent as `User-Agent`. Default `wordtally/<version>`.
    pub user_agent: String,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(20),
            max_redirects: 10,
            max_body_bytes: 10 * 1024 * 1024,
            per_host_concurrency: 4,
            max_attempts: 3,
            backoff_base: Duration::from_millis(500),
            allow_private_targets: false,
            allow_targets: Vec::new(),
            user_agent: concat!("wordtally/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Why a [`Fetcher`] could not be built (bad configuration, never a network problem).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    AllowList(#[from] InvalidAllowEntry),
    #[error("invalid fetch configuration: {0}")]
    Config(&'static str),
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

/// Longest validator (`ETag`, `Last-Modified`) kept from a response: real ones are tens of
/// bytes; a hostile server must not make every later job carry kilobytes.
const MAX_VALIDATOR_LEN: usize = 512;

/// What an earlier response said about its version (DESIGN §16, conditional requests): sent
/// back as `If-None-Match` / `If-Modified-Since`, so an unchanged page answers `304` with no
/// body and the previous counts stand.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    /// True when there is nothing to send (a plain request).
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }

    /// The conditional headers to send; values that are not valid header text are dropped
    /// (they would make the request fail, where a plain request still counts the page).
    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = self
            .etag
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            h.insert(IF_NONE_MATCH, v);
        }
        if let Some(v) = self
            .last_modified
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            h.insert(IF_MODIFIED_SINCE, v);
        }
        h
    }

    /// The validators a response carries (too long or non-text values are not kept).
    fn of(headers: &HeaderMap) -> Validators {
        let get = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= MAX_VALIDATOR_LEN)
                .map(str::to_owned)
        };
        Validators {
            etag: get(ETAG),
            last_modified: get(LAST_MODIFIED),
        }
    }
}

/// Receives a response body chunk by chunk (already decompressed); the "count" step's entry.
pub trait BodySink: Send {
    type Output: Send;
    fn feed(&mut self, chunk: &[u8]);
    fn finish(self) -> Self::Output;
    /// True once the sink wants no more bytes (its own cap is reached, e.g. a robots.txt
    /// past 500 KiB or a sitemap past its decompressed limit): the fetcher stops reading and
    /// marks the fetch `truncated`, so a hostile body costs no more than the sink's cap.
    fn is_full(&self) -> bool {
        false
    }
}

/// What is known about a response before its body is read; given to the sink factory so it can
/// pick a decoder (charset from `content_type`, ...).
#[derive(Clone, Debug)]
pub struct ResponseMeta {
    pub status: u16,
    pub final_url: Url,
    pub content_type: Option<String>,
}

/// The outcome of [`Fetcher::fetch`]: never a `Result`, because even a failed fetch carries
/// facts worth storing (status, attempts, duration, what was read before it broke).
#[derive(Debug)]
pub struct Fetched<O> {
    /// None when no body was counted (error before/without a body, or refused content type).
    /// Some with an `error` set when the body broke off (timeout, reset) on the last attempt.
    pub output: Option<O>,
    pub status: Option<u16>,
    pub final_url: Option<String>,
    pub content_type: Option<String>,
    /// Decompressed bytes fed to the sink.
    pub bytes_read: u64,
    /// Hit `max_body_bytes`; the count covers what was read. A flag, not an error.
    pub truncated: bool,
    /// Whole fetch incl. retries and backoff.
    pub duration: Duration,
    /// Tries made; 0 when the SSRF guard refused the address before any request.
    pub attempts: u32,
    /// Human sentence, e.g. "timed out after 20 s"; None on success and for 4xx (see `status`).
    pub error: Option<String>,
    /// What each attempt ended with, oldest first (shown on the task page).
    pub attempt_log: Vec<AttemptNote>,
    /// The redirects the last attempt followed, in order (the final URL last).
    pub redirects: Vec<String>,
    /// The server answered `304 Not Modified` to the validators sent: no body was read and
    /// `output` is None; the previous counts stand (the DB writer carries them over).
    pub not_modified: bool,
    /// The validators of the last response (to send on the next run).
    pub validators: Validators,
}

tokio::task_local! {
    /// The redirect hops of the request being sent: the redirect policy (which reqwest
    /// calls while this task polls the request) appends each URL it follows.
    pub(crate) static HOPS: std::cell::RefCell<Vec<String>>;
}

/// One attempt's HTTP status or error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptNote {
    pub status: Option<u16>,
    pub error: Option<String>,
}

impl<O> Fetched<O> {
    fn empty() -> Self {
        Fetched {
            output: None,
            status: None,
            final_url: None,
            content_type: None,
            bytes_read: 0,
            truncated: false,
            duration: Duration::ZERO,
            attempts: 0,
            error: None,
            attempt_log: Vec::new(),
            redirects: Vec::new(),
            not_modified: false,
            validators: Validators::default(),
        }
    }
}

/// The HTTP fetcher: one shared `reqwest::Client` (connection pool, guard resolver, redirect
/// policy) plus per-host limits. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    config: FetchConfig,
    guard: Guard,
    hosts: HostLimiter,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// One attempt's result, before the retry loop decides what to do with it.
struct AttemptOutcome<O> {
    output: Option<O>,
    status: Option<u16>,
    final_url: Option<String>,
    content_type: Option<String>,
    bytes_read: u64,
    truncated: bool,
    error: Option<String>,
    /// Worth another try (connect error, timeout, 429, 5xx, broken connection).
    retryable: bool,
    /// Redirects followed on the way to the response.
    redirects: Vec<String>,
    retry_after: Option<Duration>,
    not_modified: bool,
    validators: Validators,
}

impl<O> AttemptOutcome<O> {
    fn failed(error: String, retryable: bool) -> Self {
        AttemptOutcome {
            output: None,
            status: None,
            final_url: None,
            content_type: None,
            bytes_read: 0,
            truncated: false,
            error: Some(error),
            retryable,
            retry_after: None,
            redirects: Vec::new(),
            not_modified: false,
            validators: Validators::default(),
        }
    }
}

impl Fetcher {
    /// Builds the shared client; fails only on bad configuration.
    pub fn new(config: FetchConfig) -> Result<Fetcher, FetchError> {
        install_crypto_provider();
        if config.per_host_concurrency == 0 {
            return Err(FetchError::Config(
                "per_host_concurrency must be at least 1",
            ));
        }
        if config.max_attempts == 0 {
            return Err(FetchError::Config("max_attempts must be at least 1"));
        }
        if config.total_timeout.is_zero() {
            return Err(FetchError::Config("total_timeout must be more than zero"));
        }
        let guard = Guard::new(
            config.allow_private_targets,
            &config.allow_targets,
            config.max_redirects,
        )?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(
                "text/html,application/xhtml+xml,text/plain;q=0.9,text/*;q=0.8,*/*;q=0.5",
            ),
        );
        let client = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .default_headers(headers)
            .connect_timeout(config.connect_timeout)
            .redirect(guard.redirect_policy())
            .dns_resolver(guard.resolver())
            // A proxy from the environment would do the DNS lookup and bypass the guard.
            .no_proxy()
            .referer(false)
            .build()
            .map_err(|e| FetchError::Client(error_chain(&e)))?;
        Ok(Fetcher {
            inner: Arc::new(Inner {
                client,
                hosts: HostLimiter::new(config.per_host_concurrency),
                config,
                guard,
            }),
        })
    }

    /// The configuration this fetcher was built with.
    pub fn config(&self) -> &FetchConfig {
        &self.inner.config
    }

    /// Fetches `url` (already normalized by address::normalize_address), streaming the body into
    /// a sink made for the response. Retries transient failures (connect error, timeout, 429,
    /// 5xx) with backoff; a 4xx is a final result, never retried. For a retried 5xx the body is
    /// not counted; on the LAST attempt a 5xx body IS counted and the status recorded.
    pub async fn fetch<S: BodySink>(
        &self,
        url: &Url,
        make_sink: impl FnMut(&ResponseMeta) -> S + Send,
    ) -> Fetched<S::Output> {
        self.fetch_with(url, &Validators::default(), make_sink, false)
            .await
    }

    /// [`fetch`](Self::fetch), sending `validators` as `If-None-Match` / `If-Modified-Since`.
    /// A `304` answer to them is a success with no body (`not_modified`, `bytes_read` 0).
    #[tracing::instrument(name = "fetch", skip_all, fields(url = %url))]
    pub async fn fetch_conditional<S: BodySink>(
        &self,
        url: &Url,
        validators: &Validators,
        make_sink: impl FnMut(&ResponseMeta) -> S + Send,
    ) -> Fetched<S::Output> {
        self.fetch_with(url, validators, make_sink, false).await
    }

    /// Like [`Fetcher::fetch`] (guard, limits, retries), but binary content types are read
    /// too: a crawl's sitemaps come as `application/gzip` (`.xml.gz`), which the counting
    /// path refuses. The sink is responsible for what it makes of the bytes.
    #[tracing::instrument(name = "fetch_raw", skip_all, fields(url = %url))]
    pub async fn fetch_raw<S: BodySink>(
        &self,
        url: &Url,
        make_sink: impl FnMut(&ResponseMeta) -> S + Send,
    ) -> Fetched<S::Output> {
        self.fetch_with(url, &Validators::default(), make_sink, true)
            .await
    }

    async fn fetch_with<S: BodySink>(
        &self,
        url: &Url,
        validators: &Validators,
        mut make_sink: impl FnMut(&ResponseMeta) -> S + Send,
        accept_binary: bool,
    ) -> Fetched<S::Output> {
        let started = Instant::now();
        let mut fetched = Fetched::empty();
        if let Err(e) = self.inner.guard.check_url(url) {
            tracing::info!(error = %e, "refused before fetching");
            fetched.error = Some(e.to_string());
            fetched.duration = started.elapsed();
            return fetched;
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        let max_attempts = self.inner.config.max_attempts.max(1);
        loop {
            fetched.attempts += 1;
            let attempt = fetched.attempts;
            let last = attempt >= max_attempts;
            let outcome = {
                // Held for the attempt only, not during the backoff sleep.
                let _permit = self.inner.hosts.acquire(&host).await;
                self.attempt(
                    url,
                    validators,
                    &mut make_sink,
                    attempt,
                    last,
                    accept_binary,
                )
                .await
            };
            fetched.attempt_log.push(AttemptNote {
                status: outcome.status,
                error: outcome.error.clone(),
            });
            if outcome.retryable && !last {
                let delay = self.backoff(attempt, outcome.retry_after);
                tracing::info!(
                    attempt,
                    error = outcome.error.as_deref().unwrap_or(""),
                    delay_ms = delay.as_millis() as u64,
                    "transient failure, retrying"
                );
                tokio::time::sleep(delay).await;
                continue;
            }
            fetched.output = outcome.output;
            fetched.status = outcome.status;
            fetched.final_url = outcome.final_url;
            fetched.content_type = outcome.content_type;
            fetched.bytes_read = outcome.bytes_read;
            fetched.truncated = outcome.truncated;
            fetched.error = outcome.error;
            fetched.redirects = outcome.redirects;
            fetched.not_modified = outcome.not_modified;
            fetched.validators = outcome.validators;
            fetched.duration = started.elapsed();
            tracing::debug!(
                status = fetched.status,
                bytes = fetched.bytes_read,
                truncated = fetched.truncated,
                attempts = fetched.attempts,
                error = fetched.error.as_deref(),
                "fetch finished"
            );
            return fetched;
        }
    }

    /// Exponential backoff with full jitter, capped; a server's `Retry-After` is honoured as a
    /// minimum (within the same cap).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .inner
            .config
            .backoff_base
            .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(20))
            .min(MAX_BACKOFF);
        let nanos = u64::try_from(exp.as_nanos()).unwrap_or(u64::MAX);
        let jittered = Duration::from_nanos(fastrand::u64(0..=nanos));
        match retry_after {
            Some(ra) => jittered.max(ra.min(MAX_BACKOFF)),
            None => jittered,
        }
    }

    /// One try: request, status/content-type decisions, body streaming, all under one deadline.
    async fn attempt<S: BodySink>(
        &self,
        url: &Url,
        validators: &Validators,
        make_sink: &mut (impl FnMut(&ResponseMeta) -> S + Send),
        attempt: u32,
        last: bool,
        accept_binary: bool,
    ) -> AttemptOutcome<S::Output> {
        let config = &self.inner.config;
        let deadline = tokio::time::Instant::now() + config.total_timeout;
        let timed_out = || format!("timed out after {}", human_duration(config.total_timeout));

        let request = self
            .inner
            .client
            .get(url.clone())
            .headers(validators.headers());
        let sent = tokio::time::timeout_at(deadline, request.send());
        let (sent, hops) = HOPS
            .scope(std::cell::RefCell::new(Vec::new()), async {
                let r = sent.await;
                (r, HOPS.with(|h| h.take()))
            })
            .await;
        let mut response = match sent {
            Err(_) => return AttemptOutcome::failed(timed_out(), true),
            Ok(Err(e)) => {
                let (msg, retryable) = describe_request_error(&e, config);
                return AttemptOutcome::failed(msg, retryable);
            }
            Ok(Ok(r)) => r,
        };

        let status = response.status().as_u16();
        let final_url = response.url().clone();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let retry_status = status == 429 || (500..=599).contains(&status);
        let mut outcome = AttemptOutcome {
            output: None,
            status: Some(status),
            final_url: Some(final_url.to_string()),
            content_type: content_type.clone(),
            bytes_read: 0,
            truncated: false,
            error: None,
            retryable: false,
            retry_after: None,
            redirects: hops,
            not_modified: false,
            validators: Validators::of(response.headers()),
        };
        if status == 304 && !validators.is_empty() {
            // The page is as it was: nothing to read or count (DESIGN §16). A 304 need not
            // repeat the validators; then the ones sent still describe the page.
            outcome.not_modified = true;
            let v = &mut outcome.validators;
            if v.etag.is_none() {
                v.etag = validators.etag.clone();
            }
            if v.last_modified.is_none() {
                v.last_modified = validators.last_modified.clone();
            }
            return outcome;
        }
        if retry_status && !last {
            // Not counted: dropping the response closes the connection without draining it.
            outcome.error = Some(format!("HTTP {status}"));
            outcome.retryable = true;
            outcome.retry_after = retry_after(response.headers());
            return outcome;
        }
        if (300..400).contains(&status) {
            // reqwest hands back a redirect it would not follow (e.g. to `file:`); its body is
            // a stub page, not the document.
            outcome.error = Some(unfollowed_redirect(status, &final_url, response.headers()));
            return outcome;
        }
        // `application/octet-stream` is what a server says when it does not know (nginx's
        // default type for `.py`, `.md`, `.rst` …): the first bytes decide, as a browser's
        // MIME sniffing would. Any other binary type is refused before reading.
        let mut sniff = false;
        if !accept_binary
            && let Some(ct) = content_type.as_deref()
            && is_binary_content_type(ct)
        {
            if media_type(ct) == UNKNOWN_TYPE {
                sniff = true;
            } else {
                outcome.error = Some(format!(
                    "not a text document (content type {})",
                    media_type(ct)
                ));
                return outcome;
            }
        }

        let meta = ResponseMeta {
            status,
            final_url,
            // Sniffed as text: counted as plain text, never parsed as markup. The stored
            // content type stays what the server said.
            content_type: if sniff {
                Some("text/plain".to_owned())
            } else {
                content_type
            },
        };
        let mut sink = make_sink(&meta);
        let cap = config.max_body_bytes;
        let mut body_error: Option<(String, bool)> = None;
        loop {
            let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => break,
                // Exactly at the cap we read one more chunk only to learn whether more
                // followed; whatever went wrong there was past what we would count anyway.
                _ if cap > 0 && outcome.bytes_read >= cap => {
                    outcome.truncated = true;
                    break;
                }
                Err(_) => {
                    body_error = Some((timed_out(), true));
                    break;
                }
                Ok(Err(e)) => {
                    body_error = Some(describe_body_error(&e));
                    break;
                }
            };
            if sniff {
                sniff = false;
                if looks_binary(&chunk) {
                    // Not counted: dropping the response closes the connection undrained.
                    outcome.error =
                        Some(format!("not a text document (content type {UNKNOWN_TYPE})"));
                    return outcome;
                }
            }
            let room = cap.saturating_sub(outcome.bytes_read);
            let take = usize::try_from(room).unwrap_or(usize::MAX).min(chunk.len());
            if take > 0 {
                sink.feed(&chunk[..take]);
                outcome.bytes_read += take as u64;
            }
            if take < chunk.len() || sink.is_full() {
                // Stop here: the rest (possibly a decompression bomb) is never read.
                outcome.truncated = true;
                break;
            }
        }
        drop(response);

        match body_error {
            Some((msg, true)) if !last => {
                outcome.error = Some(msg);
                outcome.retryable = true;
                outcome.bytes_read = 0;
                outcome.truncated = false;
                // The partial sink is dropped unfinished; the next attempt gets a new one.
                return outcome;
            }
            Some((msg, _)) => outcome.error = Some(msg),
            None if retry_status => {
                let tries = if attempt == 1 { "attempt" } else { "attempts" };
                outcome.error = Some(format!("HTTP {status} after {attempt} {tries}"));
            }
            None => {}
        }
        outcome.output = Some(sink.finish());
        outcome
    }
}

/// Why a 3xx response came back instead of being followed.
fn unfollowed_redirect(status: u16, from: &Url, headers: &HeaderMap) -> String {
    let location = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| from.join(v).ok());
    match location {
        Some(to) if to.scheme() != "http" && to.scheme() != "https" => {
            GuardError::BadRedirectScheme(format!("{}:", to.scheme())).to_string()
        }
        Some(_) => format!("redirect not followed (HTTP {status})"),
        None => format!("HTTP {status} redirect without a usable Location"),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored: servers rarely send it for 429/503).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// `text/html; charset=utf-8` → `text/html`.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The content type of bytes whose type the server does not know (RFC 9110 §8.3).
const UNKNOWN_TYPE: &str = "application/octet-stream";

/// WHATWG MIME Sniffing §7.1 "binary data byte" in the first 512 bytes (the resource header
/// a browser looks at): control bytes other than tab, line feed, form feed, carriage return
/// and escape. UTF-8, UTF-16 with a BOM and Latin-1 text pass; images, archives and
/// executables do not.
pub fn looks_binary(first: &[u8]) -> bool {
    let head = &first[..first.len().min(512)];
    if head.starts_with(&[0xFE, 0xFF]) || head.starts_with(&[0xFF, 0xFE]) {
        return false;
    }
    head.iter()
        .any(|&b| matches!(b, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F))
}

/// True for content types whose bytes are not text worth counting words in.
///
/// Unknown and missing types are counted (servers mislabel text often; a wrong count is cheaper
/// than a refused page). `image/svg+xml` is XML text and is counted.
pub fn is_binary_content_type(content_type: &str) -> bool {
    let mt = media_type(content_type);
    if mt == "image/svg+xml" {
        return false;
    }
    const BINARY_PREFIXES: &[&str] = &["image/", "audio/", "video/", "font/", "model/"];
    const BINARY_TYPES: &[&str] = &[
        "application/octet-stream",
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/x-tar",
        "application/x-bzip2",
        "application/x-xz",
        "application/zstd",
        "application/x-7z-compressed",
        "application/x-rar-compressed",
        "application/vnd.rar",
        "application/pdf",
        "application/wasm",
        "application/java-archive",
        "application/x-msdownload",
        "application/x-executable",
        "application/x-sharedlib",
        "application/x-shockwave-flash",
        "application/vnd.android.package-archive",
        "application/x-sqlite3",
        "application/x-protobuf",
        "application/msword",
        "application/ogg",
        "application/font-woff",
        "application/x-font-ttf",
    ];
    BINARY_PREFIXES.iter().any(|p| mt.starts_with(p))
        || BINARY_TYPES.contains(&mt.as_str())
        || mt.starts_with("application/vnd.ms-")
        || mt.starts_with("application/vnd.openxmlformats-officedocument.")
        || mt.starts_with("application/vnd.oasis.opendocument.")
}

/// "20 s", "1.5 s", "250 ms".
fn human_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The first error of type `T` in `err`'s source chain, looking inside `io::Error`s too.
fn find_cause<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(t) = inner.downcast_ref::<T>()
        {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

/// The innermost message of an error chain (reqwest's top level only says "error sending
/// request for url (...)").
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Whole chain, for logs and client-build errors.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

/// Turns a failed `send()` into (human sentence, retryable).
fn describe_request_error(e: &reqwest::Error, config: &FetchConfig) -> (String, bool) {
    tracing::debug!(error = %error_chain(e), "request failed");
    if let Some(g) = find_cause::<GuardError>(e) {
        return (g.to_string(), false);
    }
    if let Some(r) = find_cause::<ResolveError>(e) {
        return (r.to_string(), true);
    }
    if let Some(tls) = find_cause::<rustls::Error>(e) {
        return (format!("TLS handshake failed: {tls}"), false);
    }
    let target = e
        .url()
        .map(|u| match (u.host_str(), u.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => u.to_string(),
        })
        .unwrap_or_else(|| "the server".to_owned());
    if e.is_timeout() {
        return if e.is_connect() {
            let t = human_duration(config.connect_timeout);
            (format!("could not connect to {target} within {t}"), true)
        } else {
            let t = human_duration(config.total_timeout);
            (format!("timed out after {t}"), true)
        };
    }
    if e.is_connect() {
        let why = match find_cause::<std::io::Error>(e) {
            Some(io) => describe_io(io),
            None => root_cause(e),
        };
        return (format!("could not connect to {target} ({why})"), true);
    }
    if e.is_redirect() {
        return (format!("redirect failed: {}", root_cause(e)), false);
    }
    if e.is_builder() {
        return (format!("invalid request: {}", root_cause(e)), false);
    }
    // Connection closed early, protocol errors...: usually a flaky server, worth one more try.
    (format!("request failed ({})", root_cause(e)), true)
}

/// Turns an error while reading the body into (human sentence, retryable).
fn describe_body_error(e: &reqwest::Error) -> (String, bool) {
    tracing::debug!(error = %error_chain(e), "body read failed");
    if e.is_decode() {
        return (
            format!("could not decode the response body ({})", root_cause(e)),
            false,
        );
    }
    let why = match find_cause::<std::io::Error>(e) {
        Some(io) => describe_io(io),
        None => root_cause(e),
    };
    (
        format!("connection broke while reading the body ({why})"),
        true,
    )
}

fn describe_io(io: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match io.kind() {
        K::ConnectionRefused => "connection refused".to_owned(),
        K::ConnectionReset => "connection reset".to_owned(),
        K::ConnectionAborted => "connection aborted".to_owned(),
        K::TimedOut => "timed out".to_owned(),
        K::HostUnreachable => "host unreachable".to_owned(),
        K::NetworkUnreachable => "network unreachable".to_owned(),
        K::UnexpectedEof => "connection closed early".to_owned(),
        _ => io.to_string(),
    }
}

/// Per-host semaphores, created on demand and removed when the last user lets go, so the map
/// does not grow with every host ever fetched.
struct HostLimiter {
    permits: usize,
    map: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

/// Holds one slot of a host's semaphore; removes the host's entry on drop when unused.
struct HostPermit {
    permit: Option<OwnedSemaphorePermit>,
    semaphore: Arc<Semaphore>,
    host: String,
    map: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl HostLimiter {
    fn new(permits: usize) -> Self {
        HostLimiter {
            permits,
            map: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    async fn acquire(&self, host: &str) -> HostPermit {
        let semaphore = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(host.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.permits)))
                .clone()
        };
        // Never closed, so acquiring only fails if that invariant breaks; then run unlimited
        // rather than fail the fetch.
        let permit = semaphore.clone().acquire_owned().await.ok();
        HostPermit {
            permit,
            semaphore,
            host: host.to_owned(),
            map: Arc::clone(&self.map),
        }
    }

    #[cfg(test)]
    fn tracked_hosts(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl Drop for HostPermit {
    fn drop(&mut self) {
        self.permit.take();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this guard hold it: nobody is using or waiting for this host.
        // (New users clone it under this same lock, so this cannot race.)
        if Arc::strong_count(&self.semaphore) == 2
            && map
                .get(&self.host)
                .is_some_and(|s| Arc::ptr_eq(s, &self.semaphore))
        {
            map.remove(&self.host);
        }
    }
}

#[cfg(test)]
mod tests;

//! Access control (DESIGN §13), in front of everything from **submit** to **poll**: one
//! middleware decides who is asking — nobody (`Anonymous`, allowed only while the service
//! is open), a signed-in person (`Account`, by session cookie) or a script (`Token`, by
//! `Authorization: Bearer`) — and whether they may go on.
//!
//! The decision is generic, by method and path prefix, never by a list of routes, so a
//! route added later is covered the day it lands:
//! * public: `/healthz`, `/static/…`, `/login`, `/api/openapi.json`; `/metrics` too unless
//!   `METRICS_TOKEN` is set (then it wants that bearer token);
//! * `/api` and `/api/…`: a session or a token, else `401` with a JSON reason;
//! * every other path is a page: signed out, a browser is sent to `/login` (htmx requests
//!   get `HX-Redirect`);
//! * any method other than GET/HEAD/OPTIONS made without a token passes the CSRF checks
//!   (`csrf`): same-origin headers, and the session's token when there is a session.
//!
//! The identity of the request is also kept in a task-local for the duration of the
//! request, so templates (`csrf_token()`, `signed_in_as()`) and the submit step's rate
//! limit (`rate_key()`) read it from one place without every handler passing it along.

pub mod csrf;
pub mod headers;
pub mod limit;
pub mod password;
pub mod session;
pub mod token;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::model::now_ms;
use crate::store::Store;
use limit::{Limits, Rates};

/// `--auth`: whether sign-in is required.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Open, unless an account exists (then as `password`).
    #[default]
    None,
    /// Sign-in (or an API token) required for everything but the public paths.
    Password,
}

/// Access-control settings of `serve` (flattened into `ServeArgs`).
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// `password` requires sign-in; `none` leaves the service open — but sign-in is
    /// required anyway as soon as an account exists (`wordtally user add`).
    #[arg(long, env = "AUTH", help_heading = crate::config::heading::SECURITY, value_enum, default_value_t = AuthMode::None)]
    pub auth: AuthMode,

    /// Serve without accounts on a non-loopback address: anyone who reaches the port may
    /// submit and read everything. Without it such a `serve` refuses to start.
    #[arg(long, env = "INSECURE_OPEN", help_heading = crate::config::heading::SECURITY, default_value_t = false)]
    pub insecure_open: bool,

    /// First account, created at start-up only while no account exists (e.g. a new
    /// deployment): its name.
    #[arg(long, env = "WORDTALLY_ADMIN_USER", help_heading = crate::config::heading::SECURITY, default_value = "admin")]
    pub admin_user: String,

    /// First account's password (see `--admin-user`); prefer `--admin-password-file`.
    #[arg(long, env = "WORDTALLY_ADMIN_PASSWORD", help_heading = crate::config::heading::SECURITY, hide_env_values = true)]
    pub admin_password: Option<String>,

    /// File holding the first account's password (e.g. a Docker secret under
    /// /run/secrets/); its first line is the password.
    /// (A string, not a path: compose passes an unset variable as an empty value.)
    #[arg(long, env = "WORDTALLY_ADMIN_PASSWORD_FILE", help_heading = crate::config::heading::SECURITY)]
    pub admin_password_file: Option<String>,

    /// How long a sign-in lasts (hours).
    #[arg(long, env = "SESSION_TTL_HOURS", help_heading = crate::config::heading::SECURITY, default_value_t = 168)]
    pub session_ttl_hours: u64,

    /// Submissions a minute per account, token, or (signed out) client address.
    #[arg(long, env = "RATE_SUBMISSIONS_PER_MIN", help_heading = crate::config::heading::LIMITS, default_value_t = 1_200)]
    pub rate_submissions_per_min: u32,

    /// Addresses a minute per account, token, or (signed out) client address.
    #[arg(long, env = "RATE_ADDRESSES_PER_MIN", help_heading = crate::config::heading::LIMITS, default_value_t = 1_200_000)]
    pub rate_addresses_per_min: u32,

    /// Sign-in attempts a minute for one account name.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_MIN", help_heading = crate::config::heading::LIMITS, default_value_t = 5)]
    pub login_attempts_per_min: u32,

    /// Sign-in attempts a minute from one client address.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_ADDRESS_PER_MIN", help_heading = crate::config::heading::LIMITS, default_value_t = 20)]
    pub login_attempts_per_address_per_min: u32,

    /// When set, `GET /metrics` wants `Authorization: Bearer METRICS_TOKEN`; unset, it is
    /// public like `/healthz` (it shows counts only, no addresses).
    #[arg(long, env = "METRICS_TOKEN", help_heading = crate::config::heading::SECURITY, hide_env_values = true)]
    pub metrics_token: Option<String>,
}

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Who {
    /// Nobody signed in (allowed only while the service is open, or on public paths).
    Anonymous,
    Account {
        id: i64,
        name: String,
    },
    Token {
        id: i64,
        name: String,
    },
}

/// What the current request knows about its sender (the task-local).
#[derive(Clone, Debug)]
struct Current {
    who: Who,
    csrf: Option<String>,
    client: Option<IpAddr>,
}

tokio::task_local! {
    static CURRENT: Current;
}

/// The CSRF token of the current request's session ("" when there is none). Templates
/// call it: `{% include "_csrf.html" %}` in a form, and base.html's `hx-headers`.
pub fn csrf_token() -> String {
    CURRENT
        .try_with(|c| c.csrf.clone())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The signed-in account's name, for the page header.
pub fn signed_in_as() -> Option<String> {
    CURRENT
        .try_with(|c| match &c.who {
            Who::Account { name, .. } => Some(name.clone()),
            _ => None,
        })
        .ok()
        .flatten()
}

/// Who the current request is (Anonymous outside a request).
pub fn current_who() -> Who {
    CURRENT
        .try_with(|c| c.who.clone())
        .unwrap_or(Who::Anonymous)
}

/// The client address of the current request, when known.
pub fn current_client() -> Option<IpAddr> {
    CURRENT.try_with(|c| c.client).ok().flatten()
}

/// The key the current request's rate limits are counted under.
pub fn rate_key() -> String {
    match current_who() {
        Who::Account { id, .. } => format!("account:{id}"),
        Who::Token { id, .. } => format!("token:{id}"),
        Who::Anonymous => format!(
            "address:{}",
            current_client().map(|a| a.to_string()).unwrap_or_default()
        ),
    }
}

/// Access control of one `serve`: cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    mode: AuthMode,
    metrics_token: Option<String>,
    session_ttl: Duration,
    limits: Limits,
    /// An account exists (latched: once sign-in is required it stays so until restart).
    has_accounts: AtomicBool,
    /// When `has_accounts` was last checked while false.
    last_check: std::sync::Mutex<Option<Instant>>,
}

/// Largest body read to find a form's CSRF token (the handlers' own limit).
const BODY_LIMIT: usize = crate::http::MAX_BODY_BYTES;

impl Auth {
    /// Reads whether accounts exist and builds the limiters.
    pub async fn new(store: Store, args: &AuthArgs) -> anyhow::Result<Auth> {
        let has = store.any_account().await?;
        Ok(Auth {
            inner: Arc::new(Inner {
                store,
                mode: args.auth,
                metrics_token: args.metrics_token.clone().filter(|t| !t.is_empty()),
                session_ttl: Duration::from_secs(args.session_ttl_hours.max(1) * 3600),
                limits: Limits::new(Rates {
                    submissions_per_minute: args.rate_submissions_per_min,
                    addresses_per_minute: args.rate_addresses_per_min,
                    logins_per_account_per_minute: args.login_attempts_per_min,
                    logins_per_address_per_minute: args.login_attempts_per_address_per_min,
                }),
                has_accounts: AtomicBool::new(has),
                last_check: std::sync::Mutex::new(Some(Instant::now())),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub fn session_ttl(&self) -> Duration {
        self.inner.session_ttl
    }

    /// Whether sign-in is required now. While open, an account created from the command
    /// line closes the service within a second, without a restart.
    pub async fn required(&self) -> bool {
        let i = &self.inner;
        if i.mode == AuthMode::Password || i.has_accounts.load(Ordering::Relaxed) {
            return true;
        }
        let due = match i.last_check.lock() {
            Ok(mut last) => {
                let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if due {
                    *last = Some(Instant::now());
                }
                due
            }
            Err(_) => true,
        };
        if due && let Ok(true) = i.store.any_account().await {
            i.has_accounts.store(true, Ordering::Relaxed);
        }
        i.has_accounts.load(Ordering::Relaxed)
    }
}

/// Refuses an open `serve` on anything but loopback (DESIGN §13): one clear sentence.
pub fn check_listen(listen: SocketAddr, required: bool, insecure_open: bool) -> anyhow::Result<()> {
    if required || insecure_open || listen.ip().is_loopback() {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve on {listen} without accounts: anyone reaching it could use it. \
         Create one with `wordtally user add NAME` (or set AUTH=password), listen on 127.0.0.1, \
         or pass --insecure-open (INSECURE_OPEN=true) if it is meant to be open"
    )
}

/// Which rule a path falls under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    Public,
    Metrics,
    Api,
    Page,
}

/// The rule for `path`, by prefix.
pub fn area(path: &str) -> Area {
    match path {
        "/healthz" | "/login" | "/api/openapi.json" | "/favicon.ico" => Area::Public,
        "/metrics" => Area::Metrics,
        p if p.starts_with("/static/") => Area::Public,
        p if p == "/api" || p.starts_with("/api/") => Area::Api,
        _ => Area::Page,
    }
}

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// A refusal, in the form the client reads: JSON for the API, a toast for htmx, a short
/// page otherwise. `msg` is always one of our own sentences (no input echoed).
fn deny(status: StatusCode, area: Area, htmx: bool, msg: &str) -> Response {
    let mut res = if area == Area::Api || area == Area::Metrics {
        (status, Json(json!({ "error": msg }))).into_response()
    } else if htmx {
        let mut r = (
            status,
            Html(format!("<div class=\"toast error\" role=alert>{msg}</div>")),
        )
            .into_response();
        r.headers_mut()
            .insert("hx-retarget", HeaderValue::from_static("#toast"));
        r.headers_mut()
            .insert("hx-reswap", HeaderValue::from_static("innerHTML"));
        r
    } else {
        (
            status,
            Html(format!(
                "<!doctype html><meta charset=utf-8><title>{code} · wordtally</title>\
                 <link rel=stylesheet href=/static/app.css><main class=error-page><h1>{code}</h1>\
                 <p>{msg}</p><p><a href=/tasks>Back to the tasks</a></p></main>",
                code = status.as_u16()
            )),
        )
            .into_response()
    };
    if status == StatusCode::UNAUTHORIZED && area == Area::Api {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"wordtally\""),
        );
    }
    res
}

/// Where a signed-out browser is sent: `/login`, remembering the page it wanted.
fn to_sign_in(req: &Request, htmx: bool) -> Response {
    let wanted = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/tasks");
    // An htmx request's own URL is a fragment; come back to the page it was made from.
    let next = if htmx { "/tasks" } else { wanted };
    let target = format!(
        "/login?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("next", next)
            .finish()
    );
    let loc = HeaderValue::from_str(&target).unwrap_or_else(|_| HeaderValue::from_static("/login"));
    if htmx {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        r.headers_mut().insert("hx-redirect", loc);
        r
    } else {
        let mut r = StatusCode::SEE_OTHER.into_response();
        r.headers_mut().insert(header::LOCATION, loc);
        r
    }
}

/// The middleware (see the module doc).
pub async fn guard(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let area = area(&path);
    let htmx = req.headers().contains_key("hx-request");
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());

    if area == Area::Metrics {
        if let Some(expected) = &auth.inner.metrics_token {
            let ok = bearer(req.headers())
                .map(|t| token::constant_time_eq(t, expected))
                .unwrap_or(false);
            if !ok {
                return deny(
                    StatusCode::UNAUTHORIZED,
                    area,
                    false,
                    "send Authorization: Bearer METRICS_TOKEN",
                );
            }
        }
        return next.run(req).await;
    }

    let store = auth.store();
    let unavailable = || {
        deny(
            StatusCode::SERVICE_UNAVAILABLE,
            area,
            htmx,
            "the database is unavailable right now; please retry",
        )
    };
    let (who, csrf_expected) = if let Some(secret) = bearer(req.headers()) {
        match store.token_by_hash(&token::digest(secret), now_ms()).await {
            Ok(Some(t)) => (
                Who::Token {
                    id: t.id,
                    name: t.name,
                },
                None,
            ),
            Ok(None) => {
                return deny(
                    StatusCode::UNAUTHORIZED,
                    Area::Api,
                    false,
                    "the API token is unknown or revoked",
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "token lookup failed");
                return unavailable();
            }
        }
    } else if let Some(cookie) = session::cookie_value(req.headers()) {
        match session::lookup(store, &cookie).await {
            Ok(Some(s)) => (
                Who::Account {
                    id: s.account_id,
                    name: s.account_name,
                },
                Some(s.csrf_token),
            ),
            // Expired or signed out elsewhere: treated as signed out.
            Ok(None) => (Who::Anonymous, None),
            Err(e) => {
                tracing::error!(error = %e, "session lookup failed");
                return unavailable();
            }
        }
    } else {
        (Who::Anonymous, None)
    };

    if who == Who::Anonymous && area != Area::Public && auth.required().await {
        return match area {
            Area::Api => deny(
                StatusCode::UNAUTHORIZED,
                area,
                false,
                "sign in, or send Authorization: Bearer TOKEN (wordtally token create NAME)",
            ),
            _ => to_sign_in(&req, htmx),
        };
    }

    let mut req = req;
    if csrf::changes_state(req.method()) && !matches!(who, Who::Token { .. }) {
        if let Some(reason) = csrf::cross_site(req.headers()) {
            tracing::warn!(%path, reason, "cross-site request refused");
            return deny(StatusCode::FORBIDDEN, area, htmx, reason);
        }
        if let Some(expected) = &csrf_expected {
            let (r, sent) = match csrf::sent_token(req, BODY_LIMIT).await {
                Ok(x) => x,
                Err(()) => {
                    return deny(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        area,
                        htmx,
                        "the request body is too large",
                    );
                }
            };
            req = r;
            let ok = sent
                .map(|s| token::constant_time_eq(&s, expected))
                .unwrap_or(false);
            if !ok {
                return deny(
                    StatusCode::FORBIDDEN,
                    area,
                    htmx,
                    "the form is out of date or was not sent by this site (CSRF token); reload the page and try again",
                );
            }
        }
    }

    let current = Current {
        who,
        csrf: csrf_expected,
        client,
    };
    CURRENT.scope(current, next.run(req)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_under_rules_by_prefix() {
        assert_eq!(area("/healthz"), Area::Public);
        assert_eq!(area("/static/htmx.min.js"), Area::Public);
        assert_eq!(area("/login"), Area::Public);
        assert_eq!(area("/metrics"), Area::Metrics);
        assert_eq!(area("/api/tasks"), Area::Api);
        assert_eq!(area("/api/batches/7"), Area::Api);
        assert_eq!(area("/api"), Area::Api);
        assert_eq!(area("/apix"), Area::Page);
        assert_eq!(area("/tasks/3/retry"), Area::Page);
        assert_eq!(area("/batches"), Area::Page);
        assert_eq!(area("/logout"), Area::Page);
        assert_eq!(area("/"), Area::Page);
    }

    #[test]
    fn open_serve_only_on_loopback() {
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        assert!(check_listen(lo, false, false).is_ok());
        assert!(check_listen("[::1]:5000".parse().unwrap(), false, false).is_ok());
        let e = check_listen(any, false, false).unwrap_err().to_string();
        assert!(e.contains("--insecure-open") && !e.contains('\n'), "{e}");
        assert!(check_listen(any, true, false).is_ok());
        assert!(check_listen(any, false, true).is_ok());
    }

    #[test]
    fn bearer_is_parsed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}

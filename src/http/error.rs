//! One error type for every handler. 4xx carry a sentence for the person; 5xx are logged
//! with their cause and shown as a generic sentence (internals never leak). For htmx
//! requests a middleware turns any error into a toast fragment swapped into `#toast`.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong; the message says how.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("not found")]
    NotFound,
    /// The request conflicts with the current state (e.g. retrying an unfinished task).
    #[error("{0}")]
    Conflict(String),
    /// A dependency is down; retrying later will work.
    #[error("{0}")]
    Unavailable(String),
    /// Over a rate limit (crate::auth::limit): nothing was stored.
    #[error("{0}")]
    Limited(crate::auth::limit::Limited),
    #[error("database error")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON body of every API error: `{"error": "..."}` (a sentence saying what to fix).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// The public sentence of an error, stored on the response for the htmx middleware.
#[derive(Clone, Debug)]
pub struct ErrorMessage(pub String);

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Store(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the person may see.
    pub fn public_message(&self) -> String {
        match self {
            Error::Store(e) => {
                tracing::error!(error = %e, "database error while serving a request");
                "the database is unavailable right now; please retry".into()
            }
            Error::Internal(e) => {
                tracing::error!(error = %e, "internal error while serving a request");
                "something went wrong on our side; it has been logged".into()
            }
            other => other.to_string(),
        }
    }

    /// The JSON form, for the API.
    pub fn into_json(self) -> Response {
        let status = self.status();
        let msg = self.public_message();
        let retry = self.retry_after();
        let mut res = (status, Json(ErrorBody { error: msg.clone() })).into_response();
        res.extensions_mut().insert(ErrorMessage(msg));
        with_retry_after(res, retry)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let msg = self.public_message();
        let page = format!(
            "<!doctype html><meta charset=utf-8><title>{code} · wordtally</title>\
             <link rel=stylesheet href=/static/app.css><main class=error-page><h1>{code}</h1>\
             <p>{text}</p><p><a href=/tasks>Back to the tasks</a></p></main>",
            code = status.as_u16(),
            text = escape(&msg)
        );
        let retry = self.retry_after();
        let mut res = (status, Html(page)).into_response();
        res.extensions_mut().insert(ErrorMessage(msg));
        with_retry_after(res, retry)
    }
}

impl Error {
    /// Seconds for `Retry-After`, when the error has them.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Error::Limited(l) => Some(l.retry_after_secs),
            _ => None,
        }
    }
}

fn with_retry_after(mut res: Response, secs: Option<u64>) -> Response {
    if let Some(v) = secs.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        res.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    res
}

/// Minimal HTML escaping for the few strings built outside templates.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// For htmx requests, replaces an error response by a toast fragment for `#toast`.
/// The page's htmx config swaps 4xx/5xx responses, so the person sees the reason.
pub async fn htmx_errors(req: Request, next: Next) -> Response {
    let htmx = req.headers().contains_key("hx-request");
    let res = next.run(req).await;
    let status = res.status();
    if !htmx || !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let msg = res
        .extensions()
        .get::<ErrorMessage>()
        .map(|m| m.0.clone())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let mut out = (
        status,
        Html(format!(
            "<div class=\"toast error\" role=alert>{}</div>",
            escape(&msg)
        )),
    )
        .into_response();
    if let Some(v) = res.headers().get(axum::http::header::RETRY_AFTER) {
        out.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v.clone());
    }
    let h = out.headers_mut();
    h.insert("hx-retarget", HeaderValue::from_static("#toast"));
    h.insert("hx-reswap", HeaderValue::from_static("innerHTML"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>\"x\"&'</script>"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn server_errors_do_not_leak() {
        let e = Error::Internal("secret path /etc/x".into());
        assert!(!e.public_message().contains("secret"));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

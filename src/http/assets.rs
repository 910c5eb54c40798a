//! Static assets embedded in the binary: htmx (vendored from the npm package `htmx.org`,
//! version pinned in `e2e/package.json` and checked by the e2e suite) and the stylesheet.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

/// The htmx version embedded; keep in step with `static/htmx.min.js`.
pub const HTMX_VERSION: &str = "2.0.11";

const HTMX_JS: &[u8] = include_bytes!("../../static/htmx.min.js");
const APP_CSS: &[u8] = include_bytes!("../../static/app.css");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/static/htmx.min.js", get(htmx))
        .route("/static/app.css", get(css))
}

const CACHE: &str = "public, max-age=3600";

async fn htmx() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        HTMX_JS,
    )
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        APP_CSS,
    )
}

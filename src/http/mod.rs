//! The web side (browser → **submit**, and **poll** ← DB): axum routes, one file per page
//! or resource. `app(state)` builds the router that `serve` runs and tests call with
//! `oneshot`. The web server never fetches a page and never writes results: it stores and
//! queues tasks through the Submitter actor and reads the store.

mod actions;
mod api;
mod api_batches;
mod assets;
mod batches;
mod crawls;
mod error;
mod export;
mod login;
mod openapi;
mod submit;
mod task;
mod tasks;
mod view;
mod workers;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::{Json, Router, middleware};

pub use error::Error;
pub use view::utc;

use crate::actors::ActorSlot;
use crate::actors::submitter::SubmitterMsg;
use crate::queue::SharedQueue;
use crate::store::Store;

/// Largest accepted request body (form or JSON): a few thousand addresses.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub submitter: ActorSlot<SubmitterMsg>,
    pub queue: SharedQueue,
    /// Rows per page of the task table.
    pub page_size: i64,
    /// Most addresses in one submission.
    pub max_submit: usize,
    /// How long a submission may wait for the Submitter (store + enqueue).
    pub submit_timeout: Duration,
    /// Where /workers reads the result bus's depth.
    pub bus: std::sync::Arc<crate::bus::stats::BusProbe>,
    /// Who is asking, sessions, rate limits (crate::auth).
    pub auth: crate::auth::Auth,
    /// The most pages one crawl may ask for (`CRAWL_MAX_PAGES`).
    pub crawl_max_pages: u64,
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/tasks") }))
        .merge(tasks::router())
        .merge(task::router())
        .merge(batches::router())
        .merge(api::router())
        .merge(crawls::router())
        .merge(api_batches::router())
        .merge(export::router())
        .merge(assets::router())
        .merge(workers::router())
        .merge(login::router())
        .merge(openapi::router())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        // Routes merged above this line are all covered by the layers below (outermost last).
        .layer(middleware::from_fn(error::htmx_errors))
        .layer(middleware::from_fn_with_state(
            state.auth.clone(),
            crate::auth::guard,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(crate::auth::headers::security_headers))
        .with_state(state)
}

/// Prometheus metrics (see `crate::metrics` for the names).
async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let stats = state.store.stats().await.ok();
    workers::record_gauges(&state).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(stats),
    )
}

/// 200 when the database answers (the queue is reported, not required: tasks wait for it).
#[utoipa::path(get, path = "/healthz", tag = "service", security(()),
    responses(
        (status = 200, description = "The database answers", body = openapi::Health),
        (status = 503, description = "The database does not answer", body = openapi::Health),
    ))]
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let db = state.store.ping().await;
    let queue = tokio::time::timeout(Duration::from_secs(2), state.queue.ping()).await;
    let queue_ok = matches!(queue, Ok(Ok(())));
    let body = openapi::Health {
        status: if db.is_ok() { "ok" } else { "unavailable" },
        database: openapi::Component {
            kind: state.store.kind(),
            ok: db.is_ok(),
        },
        queue: openapi::Component {
            kind: state.queue.kind(),
            ok: queue_ok,
        },
        version: env!("CARGO_PKG_VERSION"),
        htmx: assets::HTMX_VERSION,
    };
    let code = if db.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

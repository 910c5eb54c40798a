//! Seeing the system (queue → fetch, NSQ, DB → **poll**; DESIGN §12): `GET /workers` with
//! its polled partial, the header's "nobody is working" warning, the compact chart on
//! /tasks, and the JSON `GET /api/workers` and `GET /api/throughput`.
//!
//! Every read here is cheap whatever the size of the data: heartbeats and queue state are
//! a handful of Redis commands (or a lock in-process), the bus state one `/stats` request
//! per nsqd, the charts a primary-key range of ≤ 1,440 rollup rows.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::api::ApiError;
use super::view::utc;
use super::{AppState, Error};
use crate::bus::stats::BusState;
use crate::chart::{Frame, latency_svg, throughput_svg};
use crate::model::now_ms;
use crate::queue::{Heartbeat, QueueState};
use crate::store::rollups::{Bucket, Window};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workers", get(page))
        .route("/workers/panel", get(panel))
        .route("/workers/alert", get(alert))
        .route("/workers/compact", get(compact))
        .route("/api/workers", get(api_workers))
        .route("/api/throughput", get(api_throughput))
}

/// One worker as the API shows it (the contract's names, exactly).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkerJson {
    id: String,
    host: String,
    pid: u32,
    version: String,
    started_at: i64,
    last_seen: i64,
    concurrency: usize,
    busy: usize,
    done: u64,
    failed: u64,
    alive: bool,
}

impl WorkerJson {
    fn from_beat(b: Heartbeat, now: i64) -> WorkerJson {
        WorkerJson {
            alive: b.alive_at(now),
            id: b.id,
            host: b.host,
            pid: b.pid,
            version: b.version,
            started_at: b.started_at,
            last_seen: b.last_seen,
            concurrency: b.concurrency,
            busy: b.busy,
            done: b.done,
            failed: b.failed,
        }
    }
}

/// Everything /workers shows except the charts, read at one moment.
struct Snapshot {
    now: i64,
    workers: Vec<WorkerJson>,
    queue_kind: &'static str,
    /// None when the queue did not answer.
    queue: Option<QueueState>,
    bus: BusState,
}

impl Snapshot {
    fn alive(&self) -> usize {
        self.workers.iter().filter(|w| w.alive).count()
    }
}

async fn snapshot(state: &AppState, with_bus: bool) -> Snapshot {
    let now = now_ms();
    let (beats, queue) = tokio::join!(state.queue.heartbeats(), state.queue.state());
    let mut workers: Vec<WorkerJson> = beats
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read heartbeats");
            Vec::new()
        })
        .into_iter()
        .map(|b| WorkerJson::from_beat(b, now))
        .collect();
    workers.sort_by(|a, b| b.alive.cmp(&a.alive).then_with(|| a.id.cmp(&b.id)));
    let bus = if with_bus {
        state.bus.state().await
    } else {
        BusState {
            kind: "",
            depth: None,
            in_flight: None,
        }
    };
    Snapshot {
        now,
        workers,
        queue_kind: state.queue.kind(),
        queue: queue.ok(),
        bus,
    }
}

/// Records the queue gauges for `/metrics`: depth, unacknowledged, lag, live workers.
pub async fn record_gauges(state: &AppState) {
    let s = snapshot(state, false).await;
    if let Some(q) = s.queue {
        metrics::gauge!("wordtally_queue_depth").set(q.depth as f64);
        metrics::gauge!("wordtally_queue_unacked").set(q.unacked as f64);
        metrics::gauge!("wordtally_queue_lag_seconds").set(q.lag_ms as f64 / 1000.0);
    }
    metrics::gauge!("wordtally_workers_alive").set(s.alive() as f64);
}

/// The job queue as `GET /api/workers` shows it; the numbers are null when it did not answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueJson {
    /// "memory" or "redis".
    kind: &'static str,
    #[schema(required = true)]
    depth: Option<u64>,
    #[schema(required = true)]
    unacked: Option<u64>,
    #[schema(required = true)]
    lag_ms: Option<i64>,
}

/// `GET /api/workers` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkersJson {
    workers: Vec<WorkerJson>,
    queue: QueueJson,
    bus: BusState,
}

/// `GET /api/throughput` answer: every bucket of the window, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ThroughputJson {
    buckets: Vec<Bucket>,
}

/// Live workers (by heartbeat), the job queue and the result bus.
#[utoipa::path(get, path = "/api/workers", tag = "workers",
    responses((status = 200, description = "Workers, queue and bus", body = WorkersJson)))]
async fn api_workers(State(state): State<AppState>) -> Json<WorkersJson> {
    let s = snapshot(&state, true).await;
    Json(WorkersJson {
        workers: s.workers,
        queue: QueueJson {
            kind: s.queue_kind,
            depth: s.queue.map(|q| q.depth),
            unacked: s.queue.map(|q| q.unacked),
            lag_ms: s.queue.map(|q| q.lag_ms),
        },
        bus: s.bus,
    })
}

/// `window` from the raw query: absent = 1h; repeated, empty or unknown = 400.
fn window_param(raw: Option<&str>) -> Result<Window, Error> {
    let values: Vec<String> = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "window")
        .map(|(_, v)| v.into_owned())
        .collect();
    match values.as_slice() {
        [] => Ok(Window::Hour),
        [one] => Window::parse(one).map_err(Error::BadRequest),
        _ => Err(Error::BadRequest("give `window` once (1h or 24h)".into())),
    }
}

/// Finished runs per bucket of the window, with latency percentiles.
#[utoipa::path(get, path = "/api/throughput", tag = "workers",
    params(super::openapi::WindowParam),
    responses(
        (status = 200, description = "The window's buckets", body = ThroughputJson),
        (status = 400, description = "`window` is not 1h or 24h, or given twice", body = super::error::ErrorBody),
    ))]
async fn api_throughput(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ThroughputJson>, ApiError> {
    let window = window_param(raw.as_deref())?;
    let buckets = state
        .store
        .throughput(window, now_ms())
        .await
        .map_err(Error::from)?;
    Ok(Json(ThroughputJson { buckets }))
}

/// A worker row on the page.
struct WorkerRow {
    id: String,
    version: String,
    started: String,
    seen: String,
    concurrency: usize,
    busy: usize,
    done: u64,
    failed: u64,
    alive: bool,
}

/// "3 s ago", "4 min ago".
fn ago(now: i64, then: i64) -> String {
    let s = ((now - then) / 1000).max(0);
    if s < 120 {
        format!("{s} s ago")
    } else if s < 7_200 {
        format!("{} min ago", s / 60)
    } else {
        format!("{} h ago", s / 3_600)
    }
}

/// `1,234`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A lag for people: `0 s`, `42 s`, `5 min`, `2.5 h`.
fn lag_label(ms: i64) -> String {
    let s = ms / 1000;
    if s < 120 {
        format!("{s} s")
    } else if s < 7_200 {
        format!("{} min", s / 60)
    } else {
        format!("{:.1} h", s as f64 / 3_600.0)
    }
}

/// The panel fragment's data.
struct PanelView {
    workers: Vec<WorkerRow>,
    alive: usize,
    queue_kind: &'static str,
    queue_ok: bool,
    depth: String,
    unacked: String,
    lag: String,
    consumers: u64,
    bus_kind: &'static str,
    /// nsqd answered (else the depth is unknown).
    bus_known: bool,
    bus_depth: String,
    bus_in_flight: String,
    window: &'static str,
    other_window: &'static str,
    throughput_svg: String,
    latency_svg: String,
    finished_in_window: i64,
}

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    panel: PanelView,
}

#[derive(Template)]
#[template(path = "workers_partial.html")]
struct WorkersPartial {
    panel: PanelView,
}

fn render<T: Template>(t: &T) -> Result<Html<String>, Error> {
    t.render()
        .map(Html)
        .map_err(|e| Error::Internal(format!("template: {e}")))
}

fn charts(buckets: &[Bucket], window: Window) -> (String, String) {
    let wide = Frame {
        width: 720.0,
        height: 200.0,
        axes: true,
        label_every: match window {
            Window::Hour => 10,
            Window::Day => 16,
        },
    };
    let short = Frame {
        height: 140.0,
        ..wide
    };
    (throughput_svg(buckets, &wide), latency_svg(buckets, &short))
}

async fn panel_view(state: &AppState, raw: Option<&str>) -> Result<PanelView, Error> {
    let window = window_param(raw)?;
    let s = snapshot(state, true).await;
    let buckets = state.store.throughput(window, s.now).await?;
    let (throughput_svg, latency_svg) = charts(&buckets, window);
    let opt = |v: Option<u64>| v.map(thousands).unwrap_or_else(|| "?".into());
    Ok(PanelView {
        alive: s.alive(),
        workers: s
            .workers
            .iter()
            .map(|w| WorkerRow {
                id: w.id.clone(),
                version: w.version.clone(),
                started: utc(w.started_at),
                seen: ago(s.now, w.last_seen),
                concurrency: w.concurrency,
                busy: w.busy,
                done: w.done,
                failed: w.failed,
                alive: w.alive,
            })
            .collect(),
        queue_kind: s.queue_kind,
        queue_ok: s.queue.is_some(),
        depth: opt(s.queue.map(|q| q.depth)),
        unacked: opt(s.queue.map(|q| q.unacked)),
        lag: s
            .queue
            .map(|q| lag_label(q.lag_ms))
            .unwrap_or_else(|| "?".into()),
        consumers: s.queue.map(|q| q.consumers).unwrap_or(0),
        bus_kind: s.bus.kind,
        bus_known: s.bus.depth.is_some(),
        bus_depth: opt(s.bus.depth),
        bus_in_flight: opt(s.bus.in_flight),
        window: window.as_str(),
        other_window: match window {
            Window::Hour => "24h",
            Window::Day => "1h",
        },
        throughput_svg,
        latency_svg,
        finished_in_window: buckets
            .iter()
            .map(|b| b.ok + b.http_error + b.failed + b.truncated + b.cancelled)
            .sum(),
    })
}

async fn page(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, Error> {
    let panel = panel_view(&state, raw.as_deref()).await?;
    Ok(render(&WorkersPage { panel })?.into_response())
}

async fn panel(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, Error> {
    let panel = panel_view(&state, raw.as_deref()).await?;
    Ok(render(&WorkersPartial { panel })?.into_response())
}

/// The header warning: shown when no worker is alive while tasks wait; empty otherwise.
async fn alert(State(state): State<AppState>) -> Result<Response, Error> {
    let s = snapshot(&state, false).await;
    let stats = state.store.stats().await?;
    let waiting = (stats.not_started + stats.pending).max(0) as u64;
    let body = if s.alive() == 0 && waiting > 0 {
        format!(
            "<a class=\"nobody-working\" href=\"/workers\" role=\"status\">nobody is working on {} waiting task{}</a>",
            thousands(waiting),
            if waiting == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(body)).into_response())
}

/// The compact chart and the lag, for /tasks.
async fn compact(State(state): State<AppState>) -> Result<Response, Error> {
    let s = snapshot(&state, false).await;
    let buckets = state.store.throughput(Window::Hour, s.now).await?;
    let svg = throughput_svg(
        &buckets,
        &Frame {
            width: 240.0,
            height: 36.0,
            axes: false,
            label_every: 60,
        },
    );
    let finished: i64 = buckets
        .iter()
        .map(|b| b.ok + b.http_error + b.failed + b.truncated + b.cancelled)
        .sum();
    let lag = s
        .queue
        .map(|q| lag_label(q.lag_ms))
        .unwrap_or_else(|| "?".into());
    let body = format!(
        "<a class=\"compact-chart\" href=\"/workers\" title=\"tasks finished per minute, last hour\">{svg}</a> \
         <span class=\"compact-figures\">{} finished in the last hour · lag {lag} · {} worker{} alive</span>",
        thousands(finished.max(0) as u64),
        s.alive(),
        if s.alive() == 1 { "" } else { "s" }
    );
    Ok(Html(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234), "1,234");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(lag_label(42_000), "42 s");
        assert_eq!(lag_label(300_000), "5 min");
        assert_eq!(ago(10_000, 7_000), "3 s ago");
    }

    #[test]
    fn window_parameter_is_strict() {
        assert_eq!(window_param(None).unwrap(), Window::Hour);
        assert_eq!(window_param(Some("window=24h")).unwrap(), Window::Day);
        assert_eq!(window_param(Some("x=1&window=1h")).unwrap(), Window::Hour);
        for bad in [
            "window=",
            "window=7d",
            "window=1h&window=24h",
            "window=1h%00",
            "window=%FF",
        ] {
            assert!(window_param(Some(bad)).is_err(), "{bad}");
        }
    }
}

//! Operational metrics in Prometheus text format, served by `serve` at `GET /metrics`.
//! Every step of submit → queue → fetch → count → NSQ → DB records what it did through the
//! `metrics` facade; task totals by status come from the store's `task_stats` row when
//! scraped (one row, no scan).
//!
//! Metric names:
//! * `wordtally_tasks{status}` — tasks by status (gauge, at scrape time)
//! * `wordtally_tasks_submitted_total`, `wordtally_addresses_rejected_total`
//! * `wordtally_enqueue_failures_total`, `wordtally_requeued_total{reason}`,
//!   `wordtally_tasks_gave_up_total`
//! * `wordtally_fetches_total{outcome}`, `wordtally_fetch_duration_seconds`,
//!   `wordtally_fetched_bytes_total`, `wordtally_publish_failures_total`
//! * `wordtally_results_total{outcome}` (stored, duplicate, unknown_task, malformed,
//!   requeued), `wordtally_db_batch_size`, `wordtally_db_batch_failures_total`
//! * `wordtally_jobs_reserved_total`, `wordtally_jobs_acked_total` (worker pool)
//! * `wordtally_queue_depth`, `wordtally_queue_unacked`, `wordtally_queue_lag_seconds`,
//!   `wordtally_workers_alive` — gauges read from the queue at scrape time (`serve` only)
//!
//! A `worker` process serves its own metrics with `--metrics-listen` ([`MetricsListener`]).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::model::Stats;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls reuse it).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("wordtally_fetch_duration_seconds".into()),
                    &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("wordtally_db_batch_size".into()),
                        &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0],
                    )
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(h) => Some(h),
                Err(e) => {
                    // Another recorder is installed (embedding): metrics go there instead.
                    tracing::warn!(error = %e, "Prometheus metrics not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// The Prometheus text exposition, with task totals from `stats`.
pub fn render(stats: Option<Stats>) -> String {
    if let Some(s) = stats {
        metrics::gauge!("wordtally_tasks", "status" => "NOT_STARTED").set(s.not_started as f64);
        metrics::gauge!("wordtally_tasks", "status" => "PENDING").set(s.pending as f64);
        metrics::gauge!("wordtally_tasks", "status" => "FINISHED").set(s.finished as f64);
    }
    install().map(|h| h.render()).unwrap_or_default()
}

/// A running metrics listener of a `worker` process (`--metrics-listen`).
pub struct MetricsListener {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl MetricsListener {
    /// Binds `addr` (port 0 allowed) and serves `GET /metrics` with this process's
    /// metrics (the same names as `serve`'s, without the task totals it has no database
    /// for). Workers have no web server otherwise, so this is all it answers.
    pub async fn start(addr: std::net::SocketAddr) -> std::io::Result<MetricsListener> {
        install();
        let tcp = tokio::net::TcpListener::bind(addr).await?;
        let addr = tcp.local_addr()?;
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(|| async {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    render(None),
                )
            }),
        );
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(tcp, router)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await
        });
        tracing::info!(%addr, "worker metrics on http://{addr}/metrics");
        Ok(MetricsListener {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Stops listening (last in a worker's graceful stop, so a final scrape still works
    /// while it drains).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
    }
}

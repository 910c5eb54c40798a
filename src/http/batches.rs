//! The batches pages (DB → **poll**): `GET /batches` (the list, each with a live progress
//! bar; its table polls `GET /batches/table`, 204 while nothing changed) and
//! `GET /batches/{id}` (progress, totals by outcome, the distribution of counts, HTTP
//! statuses, the batch's tasks, and the actions: retry, cancel, export, delete), whose
//! panel polls `GET /batches/{id}/panel` (204 while the batch's own change counter is
//! unchanged). Every action is a plain form post that redirects (works without
//! JavaScript); with htmx the answer is a notice fragment and the page refreshes itself.

use askama::Template;
use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::api_batches::{DEFAULT_RETRY, batch_id, load};
use super::tasks::{ListQuery, TableView, nonempty, render, table_view};
use super::view::{age, outcome_label, utc};
use super::{AppState, Error, actions};
use crate::model::now_ms;
use crate::outcome::Outcome;
use crate::store::{Batch, BatchDistribution, BatchFilter, TaskFilter};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/batches", get(list_page))
        .route("/batches/table", get(list_partial))
        .route("/batches/{id}", get(batch_page))
        .route("/batches/{id}/panel", get(batch_panel))
        .route("/batches/{id}/retry", post(retry_form))
        .route("/batches/{id}/cancel", post(cancel_form))
        .route("/batches/{id}/delete", post(delete_form))
}

/// One coloured piece of a progress bar (SVG, so it needs no inline style under a strict
/// CSP), in percent of the width.
pub struct Segment {
    pub class: &'static str,
    pub x: String,
    pub width: String,
}

/// A batch as a list row or page header shows it.
pub struct BatchView {
    pub id: i64,
    pub title: String,
    pub created: String,
    pub age: String,
    pub what: String,
    pub total: i64,
    pub unfinished: i64,
    pub not_started: i64,
    pub pending: i64,
    pub finished: i64,
    pub percent: i64,
    pub words_total: i64,
    /// (word, sum of its counts) when the batch counts several words.
    pub word_totals: Vec<(String, i64)>,
    /// (outcome spelling, label, count), every outcome.
    pub outcomes: Vec<(&'static str, &'static str, i64)>,
    pub segments: Vec<Segment>,
    /// A crawl's progress (DESIGN §15); None for a list.
    pub crawl: Option<crate::store::CrawlSummary>,
    /// A crawl's pages per depth, shallowest first.
    pub depths: Vec<(i64, i64)>,
    /// Sentence for screen readers and the bar's title.
    pub summary: String,
    pub done: bool,
}

/// The regions and patterns of a batch or task as (label, list) lines for its page
/// (DESIGN §17): "counted only inside" / "never inside" selectors, the patterns.
pub(crate) fn regions_patterns_facts(
    o: &crate::count::CountOptions,
) -> Vec<(&'static str, String)> {
    let list = |v: &[String]| {
        v.iter()
            .map(|s| format!("“{s}”"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    if !o.within.is_empty() {
        out.push(("counted only inside", list(&o.within)));
    }
    if !o.outside.is_empty() {
        out.push(("never inside", list(&o.outside)));
    }
    if !o.patterns.is_empty() {
        out.push(("patterns", list(&o.patterns)));
    }
    out
}

impl BatchView {
    pub fn from_batch(b: &Batch, now: i64) -> BatchView {
        let outcomes: Vec<(&'static str, &'static str, i64)> = Outcome::ALL
            .into_iter()
            .map(|o| {
                let n = match o {
                    Outcome::Ok => b.ok,
                    Outcome::HttpError => b.http_error,
                    Outcome::Failed => b.failed,
                    Outcome::Truncated => b.truncated,
                    Outcome::Cancelled => b.cancelled,
                    Outcome::Skipped => b.skipped,
                };
                (o.as_str(), outcome_label(o), n)
            })
            .collect();
        let mut segments = Vec::new();
        let mut x = 0.0f64;
        let total = b.total.max(1) as f64;
        let pieces = outcomes
            .iter()
            .map(|(o, _, n)| (*o, *n))
            .chain([("pending", b.pending), ("not-started", b.not_started)]);
        for (class, n) in pieces {
            if n <= 0 {
                continue;
            }
            let w = n as f64 * 100.0 / total;
            segments.push(Segment {
                class: match class {
                    "ok" => "seg-ok",
                    "http_error" => "seg-http-error",
                    "failed" => "seg-failed",
                    "truncated" => "seg-truncated",
                    "cancelled" => "seg-cancelled",
                    "skipped" => "seg-cancelled",
                    "pending" => "seg-pending",
                    _ => "seg-waiting",
                },
                x: format!("{x:.3}"),
                width: format!("{w:.3}"),
            });
            x += w;
        }
        let mut parts: Vec<String> = outcomes
            .iter()
            .filter(|(_, _, n)| *n > 0)
            .map(|(_, l, n)| format!("{n} {l}"))
            .collect();
        if b.pending > 0 {
            parts.push(format!("{} pending", b.pending));
        }
        if b.not_started > 0 {
            parts.push(format!("{} waiting", b.not_started));
        }
        let summary = format!(
            "{}% finished ({} of {}){}{}",
            b.percent(),
            b.finished,
            b.total,
            if parts.is_empty() { "" } else { ": " },
            parts.join(", ")
        );
        let o = &b.options;
        let mut what = o
            .word_list()
            .iter()
            .map(|w| format!("“{w}”"))
            .collect::<Vec<_>>()
            .join(", ");
        what.push_str(if o.whole_word {
            " · whole word"
        } else {
            " · substring"
        });
        if o.case_sensitive {
            what.push_str(" · case-sensitive");
        }
        if o.scope == crate::count::Scope::Raw {
            what.push_str(" · raw HTML");
        }
        for (label, list) in regions_patterns_facts(o) {
            what.push_str(&format!(" · {label} {list}"));
        }
        BatchView {
            id: b.id,
            title: match &b.label {
                Some(l) => l.clone(),
                None => format!("Batch {}", b.id),
            },
            created: utc(b.created_at),
            age: age(b.created_at, now),
            what,
            total: b.total,
            unfinished: b.unfinished(),
            not_started: b.not_started,
            pending: b.pending,
            finished: b.finished,
            percent: b.percent(),
            words_total: b.words_total,
            word_totals: if b.options.count_keys().len() > 1 {
                b.options
                    .count_keys()
                    .iter()
                    .map(|w| (w.clone(), b.word_totals.get(w).copied().unwrap_or(0)))
                    .collect()
            } else {
                Vec::new()
            },
            outcomes,
            segments,
            crawl: b.crawl.clone(),
            depths: {
                let mut d: Vec<(i64, i64)> = b
                    .crawl
                    .iter()
                    .flat_map(|c| c.pages_per_depth.iter())
                    .filter_map(|(k, n)| Some((k.parse().ok()?, *n)))
                    .collect();
                d.sort_unstable();
                d
            },
            summary,
            done: b.unfinished() == 0,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct BatchListQuery {
    pub before: Option<String>,
    /// The `task_stats` change counter the list was rendered at (poll only).
    pub v: Option<i64>,
    /// Set after a deletion (shown as a notice).
    pub deleted: Option<String>,
}

pub struct BatchListView {
    pub rows: Vec<BatchView>,
    pub poll_url: String,
    pub older_url: Option<String>,
}

#[derive(Template)]
#[template(path = "batches.html")]
struct BatchesPage {
    list: BatchListView,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "batches_partial.html")]
struct BatchesPartial {
    list: BatchListView,
}

async fn list_view(state: &AppState, q: &BatchListQuery) -> Result<BatchListView, Error> {
    let before = nonempty(&q.before)
        .map(|b| {
            b.parse::<i64>().map_err(|_| {
                Error::BadRequest("`before` must be a batch id (a whole number)".into())
            })
        })
        .transpose()?;
    // The version first, so a change between the two reads shows in the next poll.
    let version = state.store.stats().await?.version;
    let batches = state
        .store
        .list_batches(&BatchFilter {
            before,
            limit: state.page_size,
        })
        .await?;
    let now = now_ms();
    let older_url = (batches.len() as i64 >= state.page_size)
        .then(|| batches.last().map(|b| format!("/batches?before={}", b.id)))
        .flatten();
    let b = before.map(|b| b.to_string()).unwrap_or_default();
    Ok(BatchListView {
        rows: batches
            .iter()
            .map(|b| BatchView::from_batch(b, now))
            .collect(),
        poll_url: format!(
            "/batches/table?{}",
            super::tasks::query_string(&[("before", &b), ("v", &version.to_string())])
        ),
        older_url,
    })
}

async fn list_page(
    State(state): State<AppState>,
    Query(q): Query<BatchListQuery>,
) -> Result<Response, Error> {
    let list = list_view(&state, &q).await?;
    let notice = nonempty(&q.deleted)
        .and_then(|d| d.parse::<i64>().ok())
        .map(|d| format!("Batch {d} was deleted with its tasks and results."));
    Ok(render(&BatchesPage { list, notice })?.into_response())
}

async fn list_partial(
    State(state): State<AppState>,
    Query(q): Query<BatchListQuery>,
) -> Result<Response, Error> {
    if let Some(v) = q.v
        && state.store.stats().await?.version == v
    {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let list = list_view(&state, &q).await?;
    Ok(render(&BatchesPartial { list })?.into_response())
}

/// The batch page's live panel: progress, totals, distribution, statuses.
pub struct PanelView {
    pub batch: BatchView,
    pub dist: BatchDistribution,
    /// (label, count) of HTTP statuses, "no response" for none.
    pub statuses: Vec<(String, i64)>,
    pub poll_url: String,
}

#[derive(Template)]
#[template(path = "batch.html")]
struct BatchPage {
    panel: PanelView,
    table: TableView,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "batch_partial.html")]
struct BatchPartial {
    panel: PanelView,
}

#[derive(Template)]
#[template(path = "_notice.html")]
struct Notice {
    text: String,
}

async fn panel_view(state: &AppState, b: &Batch) -> Result<PanelView, Error> {
    let dist = state.store.distribution(b.id).await?;
    let statuses = dist
        .http_statuses
        .iter()
        .map(|(code, n)| {
            (
                code.map(|c| c.to_string())
                    .unwrap_or_else(|| "no response".into()),
                *n,
            )
        })
        .collect();
    Ok(PanelView {
        batch: BatchView::from_batch(b, now_ms()),
        dist,
        statuses,
        poll_url: format!("/batches/{}/panel?v={}", b.id, b.version),
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct BatchPageQuery {
    #[serde(flatten)]
    pub list: ListQuery,
    pub retried: Option<String>,
    pub cancelled: Option<String>,
}

async fn batch_page(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    Query(q): Query<BatchPageQuery>,
) -> Result<Response, Error> {
    let id = batch_id(id)?;
    let b = load(&state, id).await?;
    let panel = panel_view(&state, &b).await?;
    let mut lq = q.list.clone();
    lq.batch = Some(id.to_string());
    let (table, _) = table_view(&state, &lq, &format!("/batches/{id}")).await?;
    let count = |s: &Option<String>| nonempty(s).and_then(|n| n.parse::<usize>().ok());
    let notice = match (count(&q.retried), count(&q.cancelled)) {
        (Some(n), _) => Some(retried_sentence(n)),
        (_, Some(n)) => Some(cancelled_sentence(n)),
        _ => None,
    };
    Ok(render(&BatchPage {
        panel,
        table,
        notice,
    })?
    .into_response())
}

async fn batch_panel(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    Query(q): Query<BatchListQuery>,
) -> Result<Response, Error> {
    let id = batch_id(id)?;
    let b = load(&state, id).await?;
    if q.v == Some(b.version) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let panel = panel_view(&state, &b).await?;
    Ok(render(&BatchPartial { panel })?.into_response())
}

pub fn retried_sentence(n: usize) -> String {
    match n {
        0 => "Nothing to retry: no finished task has the chosen outcomes.".into(),
        1 => "Retried 1 task: it is queued again as a new run.".into(),
        n => format!("Retried {n} tasks: they are queued again as new runs."),
    }
}

pub fn cancelled_sentence(n: usize) -> String {
    match n {
        0 => "Nothing to cancel: every task had already finished.".into(),
        1 => "Cancelled 1 unfinished task.".into(),
        n => format!("Cancelled {n} unfinished tasks."),
    }
}

/// The answer to an action's form: a notice fragment (and a refresh of every polled part)
/// for htmx, a redirect back to `to` otherwise.
pub(crate) fn acted(headers: &HeaderMap, text: String, to: String) -> Result<Response, Error> {
    if headers.contains_key("hx-request") {
        let mut res = render(&Notice { text })?.into_response();
        res.headers_mut()
            .insert("hx-trigger", HeaderValue::from_static("tasks-changed"));
        return Ok(res);
    }
    Ok(Redirect::to(&to).into_response())
}

/// The outcomes ticked in the retry form (`outcomes=failed&outcomes=http_error`).
#[derive(Debug, Default)]
struct RetryForm {
    outcomes: Vec<Outcome>,
}

fn parse_retry_form(body: &[u8]) -> Result<RetryForm, Error> {
    let mut f = RetryForm::default();
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "outcomes" | "outcome" => f
                .outcomes
                .push(v.parse::<Outcome>().map_err(Error::Unprocessable)?),
            "csrf_token" => {}
            other => {
                return Err(Error::BadRequest(format!("unknown field {other:?}")));
            }
        }
    }
    Ok(f)
}

async fn retry_form(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    let id = batch_id(id)?;
    load(&state, id).await?;
    let f = parse_retry_form(&body)?;
    let outcomes = if f.outcomes.is_empty() {
        DEFAULT_RETRY.to_vec()
    } else {
        f.outcomes
    };
    let filter = TaskFilter {
        batch: Some(id),
        ..Default::default()
    };
    let n = actions::retry_matching(&state, &filter, &outcomes).await?;
    acted(
        &headers,
        retried_sentence(n),
        format!("/batches/{id}?retried={n}"),
    )
}

#[derive(Debug, Deserialize)]
struct EmptyForm {
    #[serde(default, rename = "csrf_token")]
    _csrf: Option<String>,
}

async fn cancel_form(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
    form: Result<Form<EmptyForm>, FormRejection>,
) -> Result<Response, Error> {
    let id = batch_id(id)?;
    let _ = form.map_err(|e| Error::BadRequest(e.body_text()))?;
    load(&state, id).await?;
    let filter = TaskFilter {
        batch: Some(id),
        ..Default::default()
    };
    let n = actions::cancel_matching(&state, &filter).await?;
    acted(
        &headers,
        cancelled_sentence(n),
        format!("/batches/{id}?cancelled={n}"),
    )
}

async fn delete_form(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
    form: Result<Form<EmptyForm>, FormRejection>,
) -> Result<Response, Error> {
    let id = batch_id(id)?;
    let _ = form.map_err(|e| Error::BadRequest(e.body_text()))?;
    actions::delete_batch(&state, id).await?;
    let to = format!("/batches?deleted={id}");
    if headers.contains_key("hx-request") {
        // The page it was on is gone: send the browser to the list.
        let mut res = StatusCode::NO_CONTENT.into_response();
        res.headers_mut().insert(
            "hx-redirect",
            HeaderValue::from_str(&to).map_err(|e| Error::Internal(e.to_string()))?,
        );
        return Ok(res);
    }
    Ok(Redirect::to(&to).into_response())
}

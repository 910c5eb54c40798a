//! The task page (DB → **poll**): `GET /tasks/{id}` shows one task whole — address,
//! options, batch, status and outcome, the current run's result in full (final URL,
//! content type, charset and where it came from, bytes, truncation, duration, every fetch
//! attempt) and every earlier run, newest first. Its panel polls `GET /tasks/{id}/panel`
//! (204 while nothing changed). `POST /tasks/{id}/retry` and `/cancel` act on it, and
//! `POST /tasks/actions` retries or cancels everything matching the table's filter.

use askama::Template;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::api::task_id;
use super::batches::{acted, cancelled_sentence, retried_sentence};
use super::tasks::{ListQuery, render};
use super::view::{Row, human_bytes, utc};
use super::{AppState, Error, actions};
use crate::model::{ResultRecord, RunRecord, TaskView};
use crate::outcome::Outcome;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tasks/{id}", get(page))
        .route("/tasks/{id}/panel", get(panel))
        .route("/tasks/{id}/retry", post(retry))
        .route("/tasks/{id}/cancel", post(cancel))
        .route("/tasks/actions", post(bulk))
}

/// One result, every fact as a (label, value) line.
pub struct ResultView {
    pub run: i32,
    pub headline: String,
    pub facts: Vec<(&'static str, String)>,
    /// "attempt N: HTTP 503" / "attempt N: timed out", oldest first.
    pub attempts: Vec<String>,
}

impl ResultView {
    fn of(run: i32, r: &ResultRecord) -> ResultView {
        let outcome = Outcome::of(r);
        let headline = match (outcome, r.words_count) {
            (Outcome::HttpError, n) => format!(
                "HTTP error {}{}",
                r.http_status_code
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                n.map(|n| format!(" · count {n}")).unwrap_or_default()
            ),
            (Outcome::Failed, _) => format!(
                "failed: {}",
                r.error.clone().unwrap_or_else(|| "not counted".into())
            ),
            (o, Some(n)) => format!("{n} · {}", super::view::outcome_label(o)),
            (o, None) => super::view::outcome_label(o).to_string(),
        };
        let mut facts: Vec<(&'static str, String)> = Vec::new();
        if let Some(n) = r.words_count {
            facts.push(("count", n.to_string()));
        }
        if let Some(c) = r.counts.as_ref().filter(|c| c.len() > 1) {
            let per: Vec<String> = c.iter().map(|(w, n)| format!("{w}: {n}")).collect();
            facts.push(("count per word", per.join(", ")));
        }
        if let Some(c) = r.http_status_code {
            facts.push(("HTTP status", c.to_string()));
        }
        if let Some(e) = &r.error {
            facts.push(("error", e.clone()));
        }
        if !r.redirects.is_empty() {
            facts.push((
                "redirects",
                format!("{} hop(s): {}", r.redirects.len(), r.redirects.join(" → ")),
            ));
        }
        if let Some(u) = &r.final_url {
            facts.push(("final URL", u.clone()));
        }
        if let Some(c) = &r.content_type {
            facts.push(("content type", c.clone()));
        }
        if let Some(c) = &r.charset {
            let from = match r.charset_source.as_deref() {
                Some("bom") => " (from the byte-order mark)",
                Some("header") => " (from the Content-Type header)",
                Some("meta") => " (from <meta charset>)",
                Some("guess") => " (guessed from the bytes)",
                _ => "",
            };
            facts.push(("charset", format!("{c}{from}")));
        }
        facts.push(("bytes read", human_bytes(r.bytes_read)));
        facts.push((
            "truncated",
            if r.truncated {
                "yes: the page was longer than the size limit; the count covers what was read"
                    .into()
            } else {
                "no".into()
            },
        ));
        facts.push(("duration", format!("{} ms", r.duration_ms)));
        facts.push(("fetch attempts", r.attempts.to_string()));
        facts.push(("finished", utc(r.timestamp)));
        let attempts = r
            .attempt_log
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let what = match (&a.error, a.status) {
                    (Some(e), _) => e.clone(),
                    (None, Some(s)) => format!("HTTP {s}"),
                    (None, None) => "no answer".into(),
                };
                format!("attempt {}: {what}", i + 1)
            })
            .collect();
        ResultView {
            run,
            headline,
            facts,
            attempts,
        }
    }
}

pub struct TaskPanel {
    pub row: Row,
    pub id: i64,
    pub batch_id: Option<i64>,
    /// A crawl's page: its depth, and the task it was first found on (DESIGN §15).
    pub depth: Option<i32>,
    pub found_on: Option<i64>,
    pub run: i32,
    pub finished: bool,
    pub options: Vec<(&'static str, String)>,
    pub current: Option<ResultView>,
    pub history: Vec<ResultView>,
    pub poll_url: String,
    /// Who submitted its batch.
    pub submitted_by: String,
    /// "retried by … at … (run 2)", newest first.
    pub actions: Vec<String>,
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    panel: TaskPanel,
}

#[derive(Template)]
#[template(path = "task_partial.html")]
struct TaskPartial {
    panel: TaskPanel,
}

async fn panel_view(state: &AppState, id: i64) -> Result<(TaskPanel, i64), Error> {
    let version = state.store.stats().await?.version;
    let v: TaskView = state.store.get_task(id).await?.ok_or(Error::NotFound)?;
    let history: Vec<RunRecord> = state.store.history(id, v.task.run).await?;
    let submitted_by = match v.task.batch_id {
        Some(b) => state
            .store
            .get_batch(b)
            .await?
            .and_then(|b| b.created_by)
            .unwrap_or_else(|| "unknown".into()),
        None => "unknown".into(),
    };
    let actions = state
        .store
        .task_audit(id)
        .await?
        .into_iter()
        .map(|a| {
            let verb = match a.action.as_str() {
                "retry" => "retried",
                "cancel" => "cancelled",
                other => other,
            };
            let run = a.run.map(|r| format!(" (run {r})")).unwrap_or_default();
            format!("{verb} by {} at {}{run}", a.who, utc(a.at))
        })
        .collect();
    let t = &v.task;
    let o = &t.options;
    let mut options = vec![
        (
            if o.words.len() > 1 { "words" } else { "word" },
            o.word_list().join(", "),
        ),
        (
            "match",
            if o.whole_word {
                "whole word"
            } else {
                "substring"
            }
            .to_string(),
        ),
        (
            "case",
            if o.case_sensitive {
                "case-sensitive"
            } else {
                "any case"
            }
            .to_string(),
        ),
        (
            "in",
            match o.scope {
                crate::count::Scope::Text => "page text (what a reader sees)".to_string(),
                crate::count::Scope::Raw => "raw HTML (markup included)".to_string(),
            },
        ),
        ("submitted", utc(t.timestamp)),
        ("queued", t.attempts.to_string() + " time(s) this run"),
    ];
    options.extend(crate::http::batches::regions_patterns_facts(o));
    Ok((
        TaskPanel {
            row: Row::from_view(&v),
            id: t.id,
            batch_id: t.batch_id,
            depth: t.depth,
            found_on: t.found_on,
            run: t.run,
            finished: t.status == crate::model::TaskStatus::Finished,
            options,
            current: v.result.as_ref().map(|r| ResultView::of(t.run, r)),
            history: history
                .iter()
                .map(|h| ResultView::of(h.run, &h.result))
                .collect(),
            poll_url: format!("/tasks/{id}/panel?v={version}"),
            submitted_by,
            actions,
        },
        version,
    ))
}

async fn page(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, Error> {
    let id = task_id(id)?;
    let (panel, _) = panel_view(&state, id).await?;
    Ok(render(&TaskPage { panel })?.into_response())
}

#[derive(Debug, Deserialize)]
struct PanelQuery {
    v: Option<i64>,
}

async fn panel(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    Query(q): Query<PanelQuery>,
) -> Result<Response, Error> {
    let id = task_id(id)?;
    if let Some(v) = q.v
        && state.store.stats().await?.version == v
    {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let (panel, _) = panel_view(&state, id).await?;
    Ok(render(&TaskPartial { panel })?.into_response())
}

async fn retry(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let id = task_id(id)?;
    let t = actions::retry_task(&state, id).await?;
    acted(
        &headers,
        format!("Retrying: run {} is queued.", t.run),
        format!("/tasks/{id}"),
    )
}

async fn cancel(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let id = task_id(id)?;
    actions::cancel_task(&state, id).await?;
    acted(&headers, "Cancelled.".into(), format!("/tasks/{id}"))
}

/// `POST /tasks/actions`: `action=retry|cancel` plus the table's filter fields.
async fn bulk(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    let mut q = ListQuery::default();
    let mut action = None;
    let mut outcomes = Vec::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        let v = v.into_owned();
        match k.as_ref() {
            "action" => action = Some(v),
            "status" => q.status = Some(v),
            "outcome" => q.outcome = Some(v),
            "batch" => q.batch = Some(v),
            "q" => q.q = Some(v),
            "outcomes" => outcomes.push(v.parse::<Outcome>().map_err(Error::Unprocessable)?),
            "csrf_token" => {}
            other => return Err(Error::BadRequest(format!("unknown field {other:?}"))),
        }
    }
    let filter = q.filter(state.page_size)?;
    let back = {
        let qs = super::tasks::query_string(&[
            ("status", q.status.as_deref().unwrap_or("")),
            ("outcome", q.outcome.as_deref().unwrap_or("")),
            ("batch", q.batch.as_deref().unwrap_or("")),
            ("q", q.q.as_deref().unwrap_or("")),
        ]);
        if qs.is_empty() {
            "/tasks".to_string()
        } else {
            format!("/tasks?{qs}")
        }
    };
    match action.as_deref() {
        Some("retry") => {
            let outcomes = if outcomes.is_empty() {
                match filter.outcome {
                    Some(o) => vec![o],
                    None => super::api_batches::DEFAULT_RETRY.to_vec(),
                }
            } else {
                outcomes
            };
            let n = actions::retry_matching(&state, &filter, &outcomes).await?;
            acted(&headers, retried_sentence(n), back)
        }
        Some("cancel") => {
            let n = actions::cancel_matching(&state, &filter).await?;
            acted(&headers, cancelled_sentence(n), back)
        }
        _ => Err(Error::BadRequest("`action` must be retry or cancel".into())),
    }
}

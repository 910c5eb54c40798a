//! Watching a batch over time (DESIGN §16), poll side: its schedule and change rules from
//! the API (`PUT|GET|DELETE /api/batches/{id}/schedule`, `PUT|GET
//! /api/batches/{id}/rules`) and the batch page's forms (`POST /batches/{id}/schedule`,
//! `…/schedule/pause|resume|remove`, `…/rules`); the history a run leaves (`GET
//! /api/tasks/{id}/history`, `GET /api/batches/{id}/runs`, the runs export `GET
//! /api/batches/{id}/runs/export?format=csv|jsonl`) and the trend charts drawn from it.
//! The forms answer htmx with the schedule section re-rendered (swapped in place, so its
//! buttons follow the schedule) and a redirect without JavaScript.
//! A due schedule starts its run in `crate::schedule::tick`, not here.

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::api::ApiError;
use super::api_batches::{batch_id, load};
use super::batches::acted;
use super::tasks::render;
use super::{AppState, Error};
use crate::model::now_ms;
use crate::schedule::{Cadence, Rule, format_interval};
use crate::store::changes::{RunRow, TaskRun};
use crate::store::schedules::{BatchRun, Schedule};

/// Largest schedule or rules body: a few hundred bytes are plenty.
const MAX_SCHEDULE_BODY: usize = 16 * 1024;
/// Runs the batch page draws.
const TREND_RUNS: i64 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/batches/{id}/schedule",
            get(show).put(set).delete(unset),
        )
        .route("/api/batches/{id}/rules", get(get_rules).put(put_rules))
        .route("/api/batches/{id}/runs", get(batch_runs))
        .route("/api/batches/{id}/runs/export", get(export_runs))
        .route("/api/tasks/{id}/history", get(task_history))
        .route("/batches/{id}/schedule", post(schedule_form))
        .route("/batches/{id}/schedule/pause", post(pause_form))
        .route("/batches/{id}/schedule/resume", post(resume_form))
        .route("/batches/{id}/schedule/remove", post(remove_form))
        .route("/batches/{id}/rules", post(rules_form))
}

/// A schedule as the API shows it: `every` or `cron`, never both.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleJson {
    /// The interval (`15m`, `6h`, `1d`…), for an interval schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// The cron expression, for a cron schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The time zone the cron expression is read in (UTC for intervals).
    pub timezone: String,
    pub paused: bool,
    /// When the next tick is due (epoch ms).
    pub next_run_at: i64,
    /// When a tick was last handled (epoch ms).
    #[schema(required = true)]
    pub last_tick_at: Option<i64>,
    /// What the last tick did ("started run 3", or why it was skipped).
    #[schema(required = true)]
    pub last_tick_note: Option<String>,
    /// Runs this schedule started.
    pub runs_started: i64,
}

impl From<&Schedule> for ScheduleJson {
    fn from(s: &Schedule) -> Self {
        ScheduleJson {
            every: s.every_ms.map(format_interval),
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            paused: s.paused,
            next_run_at: s.next_run_at,
            last_tick_at: s.last_tick_at,
            last_tick_note: s.last_tick_note.clone(),
            runs_started: s.runs_started,
        }
    }
}

/// `GET /api/batches/{id}`: the batch's totals and its schedule.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchWithSchedule {
    #[serde(flatten)]
    pub batch: crate::store::Batch,
    /// Null when the batch has no schedule.
    #[schema(required = true)]
    pub schedule: Option<ScheduleJson>,
}

/// The batch with its schedule, for `GET /api/batches/{id}`.
pub async fn with_schedule(
    state: &AppState,
    batch: crate::store::Batch,
) -> Result<BatchWithSchedule, Error> {
    let schedule = state.store.get_schedule(batch.id).await?;
    Ok(BatchWithSchedule {
        batch,
        schedule: schedule.as_ref().map(ScheduleJson::from),
    })
}

/// `PUT /api/batches/{id}/schedule` body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"cron": "0 */6 * * *", "timezone": "Europe/Berlin"}))]
pub struct ScheduleBody {
    /// An interval of at least a minute: `15m`, `6h`, `1d`, `1h30m`.
    every: Option<String>,
    /// A five-field cron expression.
    cron: Option<String>,
    /// IANA time zone of `cron` (default UTC).
    timezone: Option<String>,
    /// Set without running (default false).
    paused: Option<bool>,
    /// Change rules to set with it (see `PUT /api/batches/{id}/rules`).
    rules: Option<Vec<String>>,
}

/// `PUT /api/batches/{id}/rules` body and answer.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"rules": ["> 10", "becomes 0"]}))]
pub struct RulesBody {
    /// `> N`, `< N`, `becomes 0`, `becomes non-zero`; empty = every difference is a change.
    rules: Vec<String>,
}

/// `GET /api/tasks/{id}/history` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskHistory {
    /// Every run with a result, oldest first.
    runs: Vec<TaskRun>,
}

/// `GET /api/batches/{id}/runs` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchRuns {
    /// The batch's runs, oldest first (the last 500).
    runs: Vec<BatchRun>,
}

fn too_large(body: &Bytes) -> Result<(), Error> {
    if body.len() > MAX_SCHEDULE_BODY {
        return Err(Error::TooLarge(format!(
            "a schedule body is at most {} KiB",
            MAX_SCHEDULE_BODY / 1024
        )));
    }
    Ok(())
}

/// Checks and canonicalises rules (422 with the reason).
fn check_rules(rules: &[String]) -> Result<Vec<String>, Error> {
    Rule::parse_list(rules)
        .map(|r| r.iter().map(Rule::to_string).collect())
        .map_err(|e| Error::Unprocessable(e.to_string()))
}

/// Sets a schedule from what a person gave. With neither `every` nor `cron`, an existing
/// schedule keeps its cadence (so `{"paused": true}` pauses, `{"paused": false}` resumes).
/// The next tick is computed from now. Everything is checked before anything is stored.
async fn set_schedule(
    state: &AppState,
    id: i64,
    body: ScheduleBody,
) -> Result<(Schedule, Vec<String>), Error> {
    load(state, id).await?;
    let existing = state.store.get_schedule(id).await?;
    let cadence = match (&body.every, &body.cron, &existing) {
        (None, None, Some(s)) => {
            if body.timezone.is_some() {
                return Err(Error::Unprocessable(
                    "`timezone` needs `cron` with it".into(),
                ));
            }
            Cadence::from_columns(s.every_ms, s.cron.as_deref(), &s.timezone)
                .map_err(|e| Error::Unprocessable(e.to_string()))?
        }
        _ => Cadence::parse(
            body.every.as_deref(),
            body.cron.as_deref(),
            body.timezone.as_deref(),
            state.schedule_min_ms,
        )
        .map_err(|e| Error::Unprocessable(e.to_string()))?,
    };
    let rules = body.rules.as_deref().map(check_rules).transpose()?;
    let paused = body
        .paused
        .unwrap_or_else(|| existing.as_ref().is_some_and(|s| s.paused));
    let next = cadence
        .next_after(now_ms())
        .map_err(|e| Error::Unprocessable(e.to_string()))?;
    let s = state
        .store
        .put_schedule(id, &cadence, paused, next)
        .await?
        .ok_or(Error::NotFound)?;
    if let Some(r) = &rules {
        state.store.set_change_rules(id, r).await?;
    }
    let rules = state.store.change_rules(id).await?;
    tracing::info!(batch = id, every = ?cadence.every_ms(), cron = ?cadence.cron(), paused, "schedule set");
    Ok((s, rules))
}

/// A batch's schedule (null when it has none).
#[utoipa::path(get, path = "/api/batches/{id}/schedule", tag = "watching",
    params(("id" = i64, Path, description = "Batch id")),
    responses(
        (status = 200, description = "The schedule, or null when the batch has none", body = Option<ScheduleJson>),
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 404, description = "No such batch", body = super::error::ErrorBody),
    ))]
async fn show(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Option<ScheduleJson>>, ApiError> {
    let id = batch_id(id)?;
    load(&state, id).await?;
    let s = state.store.get_schedule(id).await.map_err(Error::from)?;
    Ok(Json(s.as_ref().map(ScheduleJson::from)))
}

/// Set (create or replace), pause or resume a batch's schedule.
#[utoipa::path(put, path = "/api/batches/{id}/schedule", tag = "watching",
    params(("id" = i64, Path, description = "Batch id")),
    request_body = ScheduleBody,
    responses(
        (status = 200, description = "The schedule", body = ScheduleJson),
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 404, description = "No such batch", body = super::error::ErrorBody),
        (status = 413, description = "The body is over 16 KiB", body = super::error::ErrorBody),
        (status = 422, description = "A bad interval, cron expression, time zone or rule: nothing stored", body = super::error::ErrorBody),
    ))]
async fn set(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    body: Bytes,
) -> Result<Json<ScheduleJson>, ApiError> {
    let id = batch_id(id)?;
    too_large(&body)?;
    let body: ScheduleBody = serde_json::from_slice(&body).map_err(|e| {
        Error::Unprocessable(format!(
            "the body must be {{\"every\": \"1h\"}} or {{\"cron\": \"0 */6 * * *\", \"timezone\": \"Europe/Berlin\"}} (optional \"paused\", \"rules\"): {e}"
        ))
    })?;
    let (s, _) = set_schedule(&state, id, body).await?;
    Ok(Json(ScheduleJson::from(&s)))
}

/// Remove a batch's schedule (its runs and changes stay).
#[utoipa::path(delete, path = "/api/batches/{id}/schedule", tag = "watching",
    params(("id" = i64, Path, description = "Batch id")),
    responses(
        (status = 204, description = "Removed (or there was none)"),
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 404, description = "No such batch", body = super::error::ErrorBody),
    ))]
async fn unset(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = batch_id(id)?;
    load(&state, id).await?;
    state.store.delete_schedule(id).await.map_err(Error::from)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A batch's change rules.
#[utoipa::path(get, path = "/api/batches/{id}/rules", tag = "watching",
    params(("id" = i64, Path, description = "Batch id")),
    responses(
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 200, description = "The rules", body = RulesBody),
        (status = 404, description = "No such batch", body = super::error::ErrorBody),
    ))]
async fn get_rules(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<RulesBody>, ApiError> {
    let id = batch_id(id)?;
    load(&state, id).await?;
    let rules = state.store.change_rules(id).await.map_err(Error::from)?;
    Ok(Json(RulesBody { rules }))
}

/// Set a batch's change rules (empty: every difference is a change).
#[utoipa::path(put, path = "/api/batches/{id}/rules", tag = "watching",
    params(("id" = i64, Path, description = "Batch id")),
    request_body = RulesBody,
    responses(
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 200, description = "The rules as stored", body = RulesBody),
        (status = 404, description = "No such batch", body = super::error::ErrorBody),
        (status = 413, description = "The body is over 16 KiB", body = super::error::ErrorBody),
        (status = 422, description = "A rule does not read: nothing stored", body = super::error::ErrorBody),
    ))]
async fn put_rules(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    body: Bytes,
) -> Result<Json<RulesBody>, ApiError> {
    let id = batch_id(id)?;
    too_large(&body)?;
    let body: RulesBody = serde_json::from_slice(&body).map_err(|e| {
        Error::Unprocessable(format!(
            "the body must be {{\"rules\": [\"> 10\", \"becomes 0\", ...]}}: {e}"
        ))
    })?;
    let rules = check_rules(&body.rules)?;
    load(&state, id).await?;
    state
        .store
        .set_change_rules(id, &rules)
        .await
        .map_err(Error::from)?;
    Ok(Json(RulesBody { rules }))
}

/// Every run of a task with its counts, oldest first.
#[utoipa::path(get, path = "/api/tasks/{id}/history", tag = "watching",
    params(("id" = i64, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task's runs", body = TaskHistory),
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 404, description = "No such task", body = super::error::ErrorBody),
    ))]
async fn task_history(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<TaskHistory>, ApiError> {
    let id = id
        .map(|Path(id)| id)
        .map_err(|_| Error::BadRequest("the task id must be a whole number".into()))?;
    if state
        .store
        .get_task(id)
        .await
        .map_err(Error::from)?
        .is_none()
    {
        return Err(Error::NotFound.into());
    }
    let runs = state.store.task_runs(id).await.map_err(Error::from)?;
    Ok(Json(TaskHistory { runs }))
}

/// A batch's runs with the batch total when each finished.
#[utoipa::path(get, path = "/api/batches/{id}/runs", tag = "watching",
    params(("id" = i64, Path, description = "Batch id")),
    responses(
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 200, description = "The batch's runs", body = BatchRuns),
        (status = 404, description = "No such batch", body = super::error::ErrorBody),
    ))]
async fn batch_runs(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<BatchRuns>, ApiError> {
    let id = batch_id(id)?;
    load(&state, id).await?;
    let runs = state.store.batch_runs(id, 500).await.map_err(Error::from)?;
    Ok(Json(BatchRuns { runs }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `csv` (default) or `jsonl`.
    format: Option<String>,
}

/// Rows per page of the runs export (one read each, streamed).
const EXPORT_PAGE: i64 = 1000;

fn csv_field(s: &str) -> String {
    // Formula-looking cells are prefixed, as the task export does (CSV injection).
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn run_line(r: &RunRow, jsonl: bool) -> String {
    if jsonl {
        let mut l = serde_json::to_string(r).unwrap_or_default();
        l.push('\n');
        return l;
    }
    let counts = serde_json::to_string(&r.counts).unwrap_or_default();
    format!(
        "{},{},{},{},{},{},{},{}\n",
        r.task_id,
        csv_field(&r.address),
        r.run,
        super::view::utc(r.finished_at),
        r.words_count.map(|n| n.to_string()).unwrap_or_default(),
        r.http_status_code
            .map(|n| n.to_string())
            .unwrap_or_default(),
        r.outcome.as_deref().unwrap_or_default(),
        csv_field(&counts),
    )
}

/// Every run of every task of a batch, one row per task and run (CSV or JSON Lines),
/// streamed a thousand rows per read.
#[utoipa::path(get, path = "/api/batches/{id}/runs/export", tag = "watching",
    params(("id" = i64, Path, description = "Batch id"), ExportParams),
    responses(
        (status = 200, description = "CSV (task_id,address,run,finished_at,words_count,http_status_code,outcome,counts) or JSON Lines", content_type = "text/csv"),
        (status = 400, description = "A parameter is malformed", body = super::error::ErrorBody),
        (status = 404, description = "No such batch", body = super::error::ErrorBody),
    ))]
async fn export_runs(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = batch_id(id)?;
    let Query(p) = params.map_err(|e| Error::BadRequest(e.body_text()))?;
    let jsonl = match p.format.as_deref().unwrap_or("csv") {
        "csv" => false,
        "jsonl" => true,
        _ => return Err(Error::BadRequest("`format` must be csv or jsonl".into()).into()),
    };
    load(&state, id).await?;
    let store = state.store.clone();
    let header_line = if jsonl {
        None
    } else {
        Some("task_id,address,run,finished_at,words_count,http_status_code,outcome,counts\n")
    };
    let stream =
        futures_util::stream::unfold((Some((0i64, 0i32)), header_line), move |(after, head)| {
            let store = store.clone();
            async move {
                if let Some(h) = head {
                    return Some((Ok::<Bytes, std::io::Error>(Bytes::from(h)), (after, None)));
                }
                let after = after?;
                match store.batch_run_rows(id, after, EXPORT_PAGE).await {
                    Err(e) => {
                        tracing::error!(error = %e, batch = id, "runs export failed");
                        Some((Err(std::io::Error::other("database error")), (None, None)))
                    }
                    Ok(rows) if rows.is_empty() => None,
                    Ok(rows) => {
                        let next = (rows.len() as i64 >= EXPORT_PAGE)
                            .then(|| rows.last().map(|r| (r.task_id, r.run)))
                            .flatten();
                        let text: String = rows.iter().map(|r| run_line(r, jsonl)).collect();
                        Some((Ok(Bytes::from(text)), (next, None)))
                    }
                }
            }
        });
    let (ctype, ext) = if jsonl {
        ("application/x-ndjson", "jsonl")
    } else {
        ("text/csv; charset=utf-8", "csv")
    };
    Ok((
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"batch-{id}-runs.{ext}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

// ---- the batch page's forms ----

/// Reads a urlencoded form into (name, value) pairs, refusing unknown names.
fn form_pairs(body: &[u8], known: &[&str]) -> Result<Vec<(String, String)>, Error> {
    if body.len() > MAX_SCHEDULE_BODY {
        return Err(Error::TooLarge("the form is over 16 KiB".into()));
    }
    let mut out = Vec::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if k == "csrf_token" {
            continue;
        }
        if !known.contains(&k.as_ref()) {
            return Err(Error::BadRequest(format!(
                "unknown field {:?}",
                truncate(&k)
            )));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

fn field(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, v)| k == name && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_string())
}

/// One sentence for the notice after a schedule change.
fn schedule_sentence(s: &Schedule) -> String {
    let what = match (&s.every_ms, &s.cron) {
        (Some(ms), _) => format!("every {}", format_interval(*ms)),
        (_, Some(c)) => format!("on “{c}” ({})", s.timezone),
        _ => String::new(),
    };
    if s.paused {
        format!("Schedule {what} is paused.")
    } else {
        format!(
            "Runs {what}; next run at {}.",
            super::view::utc(s.next_run_at)
        )
    }
}

/// The schedule section of the batch page with a notice: what an htmx form post gets back.
#[derive(Template)]
#[template(path = "schedule_forms_partial.html")]
struct ScheduleForms {
    watch: WatchView,
    notice: Option<String>,
}

/// The answer to a schedule or rules form. For htmx: the section re-rendered from the
/// database (its forms target it, so Pause / Resume / Remove appear and go at once — they
/// sit outside the polled panel), the notice swapped out of band into `#batch-notice`, and
/// `tasks-changed` so the panel redraws. Without JavaScript: a redirect to the batch page.
async fn schedule_answer(
    state: &AppState,
    id: i64,
    headers: &HeaderMap,
    text: String,
) -> Result<Response, Error> {
    if !headers.contains_key("hx-request") {
        return acted(headers, text, format!("/batches/{id}"));
    }
    let view = ScheduleForms {
        watch: watch_view(state, id).await?,
        notice: Some(text),
    };
    let mut res = render(&view)?.into_response();
    res.headers_mut()
        .insert("hx-trigger", HeaderValue::from_static("tasks-changed"));
    Ok(res)
}

/// `POST /batches/{id}/schedule` (`mode=every&every=1h`, or `mode=cron&cron=…&timezone=…`).
async fn schedule_form(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let id = batch_id(id)?;
    let pairs = form_pairs(&body, &["mode", "every", "cron", "timezone"])?;
    let mode = field(&pairs, "mode").unwrap_or_else(|| "every".into());
    let body = match mode.as_str() {
        "every" => ScheduleBody {
            every: Some(field(&pairs, "every").unwrap_or_default()),
            ..Default::default()
        },
        "cron" => ScheduleBody {
            cron: Some(field(&pairs, "cron").unwrap_or_default()),
            timezone: field(&pairs, "timezone"),
            ..Default::default()
        },
        _ => return Err(Error::BadRequest("`mode` must be every or cron".into())),
    };
    let (s, _) = set_schedule(
        &state,
        id,
        ScheduleBody {
            paused: Some(false),
            ..body
        },
    )
    .await?;
    schedule_answer(&state, id, &headers, schedule_sentence(&s)).await
}

async fn pause_or_resume(
    state: &AppState,
    id: i64,
    headers: &HeaderMap,
    body: &[u8],
    paused: bool,
) -> Result<Response, Error> {
    form_pairs(body, &[])?;
    if state.store.get_schedule(id).await?.is_none() {
        load(state, id).await?;
        return Err(Error::Conflict("this batch has no schedule".into()));
    }
    let (s, _) = set_schedule(
        state,
        id,
        ScheduleBody {
            paused: Some(paused),
            ..Default::default()
        },
    )
    .await?;
    schedule_answer(state, id, headers, schedule_sentence(&s)).await
}

async fn pause_form(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    pause_or_resume(&state, batch_id(id)?, &headers, &body, true).await
}

async fn resume_form(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    pause_or_resume(&state, batch_id(id)?, &headers, &body, false).await
}

async fn remove_form(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let id = batch_id(id)?;
    form_pairs(&body, &[])?;
    load(&state, id).await?;
    state.store.delete_schedule(id).await?;
    schedule_answer(
        &state,
        id,
        &headers,
        "The schedule was removed; the runs so far stay.".into(),
    )
    .await
}

/// `POST /batches/{id}/rules` (`rules=> 10, becomes 0`: comma or newline separated).
async fn rules_form(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let id = batch_id(id)?;
    let pairs = form_pairs(&body, &["rules"])?;
    let text = field(&pairs, "rules").unwrap_or_default();
    let list: Vec<String> = text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let rules = check_rules(&list)?;
    load(&state, id).await?;
    state.store.set_change_rules(id, &rules).await?;
    let text = if rules.is_empty() {
        "No rules: every difference between runs is a change.".to_string()
    } else {
        format!(
            "Changes are stored when a count crosses: {}.",
            rules.join(", ")
        )
    };
    schedule_answer(&state, id, &headers, text).await
}

// ---- what the batch and task pages show ----

/// The batch page's watching section: schedule, rules, runs and the trend.
pub struct WatchView {
    pub id: i64,
    pub schedule: Option<ScheduleJson>,
    /// "every 1h" / "on “0 */6 * * *” (Europe/Berlin)".
    pub cadence: String,
    pub next_run: String,
    pub last_tick: String,
    pub rules: String,
    /// (run, trigger, started, finished or "running", total), newest first.
    pub runs: Vec<(i32, String, String, String, String)>,
    /// The batch total per run (server-rendered SVG), empty with fewer than one run.
    pub trend_svg: String,
}

pub async fn watch_view(state: &AppState, id: i64) -> Result<WatchView, Error> {
    let schedule = state.store.get_schedule(id).await?;
    let rules = state.store.change_rules(id).await?;
    let runs = state.store.batch_runs(id, TREND_RUNS).await?;
    let points: Vec<(i32, Vec<(String, i64)>)> = runs
        .iter()
        .filter_map(|r| {
            r.words_total
                .map(|t| (r.run, vec![("total".to_string(), t)]))
        })
        .collect();
    Ok(WatchView {
        id,
        cadence: match &schedule {
            Some(s) => match (&s.every_ms, &s.cron) {
                (Some(ms), _) => format!("every {}", format_interval(*ms)),
                (_, Some(c)) => format!("on “{c}” ({})", s.timezone),
                _ => String::new(),
            },
            None => String::new(),
        },
        next_run: schedule
            .as_ref()
            .map(|s| super::view::utc(s.next_run_at))
            .unwrap_or_default(),
        last_tick: schedule
            .as_ref()
            .and_then(|s| {
                s.last_tick_at.map(|at| {
                    format!(
                        "{}: {}",
                        super::view::utc(at),
                        s.last_tick_note.as_deref().unwrap_or("")
                    )
                })
            })
            .unwrap_or_default(),
        schedule: schedule.as_ref().map(ScheduleJson::from),
        rules: rules.join(", "),
        runs: runs
            .iter()
            .rev()
            .map(|r| {
                (
                    r.run,
                    r.trigger.clone(),
                    super::view::utc(r.started_at),
                    r.finished_at
                        .map(super::view::utc)
                        .unwrap_or_else(|| "running".into()),
                    r.words_total.map(|t| t.to_string()).unwrap_or_default(),
                )
            })
            .collect(),
        trend_svg: trend_svg(&points, "batch total per run"),
    })
}

/// The task page's trend: counts per run, one line per word.
pub async fn task_trend(state: &AppState, task_id: i64) -> Result<String, Error> {
    let runs = state.store.task_runs(task_id).await?;
    let points: Vec<(i32, Vec<(String, i64)>)> = runs
        .iter()
        .filter(|r| !r.counts.is_empty())
        .map(|r| {
            (
                r.run,
                r.counts.iter().map(|(w, n)| (w.clone(), *n)).collect(),
            )
        })
        .collect();
    Ok(trend_svg(&points, "counts per run"))
}

/// Escapes text for SVG/HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart of values per run: x = run, one polyline (and dots) per series. Empty
/// when there is nothing to draw. Colours come from static/app.css (`.wt-trend .s0…`):
/// the strict CSP forbids inline styles.
pub fn trend_svg(points: &[(i32, Vec<(String, i64)>)], label: &str) -> String {
    use std::fmt::Write;
    if points.is_empty() {
        return String::new();
    }
    let (w, h) = (480.0f64, 160.0f64);
    let (l, r, t, b) = (44.0, 8.0, 8.0, 20.0);
    let mut series: Vec<String> = Vec::new();
    for (_, vals) in points {
        for (name, _) in vals {
            if !series.contains(name) {
                series.push(name.clone());
            }
        }
    }
    let max = points
        .iter()
        .flat_map(|(_, v)| v.iter().map(|(_, n)| *n))
        .max()
        .unwrap_or(0) as f64;
    let scale = crate::chart::Scale::nice(max, 4);
    let n = points.len();
    let x_of = |i: usize| {
        if n == 1 {
            l + (w - l - r) / 2.0
        } else {
            l + (w - l - r) * i as f64 / (n - 1) as f64
        }
    };
    let y_of = |v: i64| t + (h - t - b) * (1.0 - scale.frac(v as f64));
    let mut out = String::with_capacity(2048);
    let _ = write!(
        out,
        "<svg class=\"wt-chart wt-trend\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" \
         width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
        esc(label)
    );
    for v in scale.ticks() {
        let y = t + (h - t - b) * (1.0 - scale.frac(v));
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{l}\" x2=\"{x2}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{}</text>",
            crate::chart::count_label(v),
            x2 = w - r,
            tx = l - 4.0,
            ty = y + 4.0,
        );
    }
    let every = n.div_ceil(12).max(1);
    for (i, (run, _)) in points.iter().enumerate() {
        if i % every == 0 || i == n - 1 {
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\">{run}</text>",
                x = x_of(i),
                y = h - 5.0
            );
        }
    }
    for (si, name) in series.iter().enumerate() {
        let mut d = String::new();
        let mut dots = String::new();
        for (i, (run, vals)) in points.iter().enumerate() {
            let Some((_, v)) = vals.iter().find(|(w, _)| w == name) else {
                continue;
            };
            let (x, y) = (x_of(i), y_of(*v));
            let _ = write!(d, "{}{x:.1},{y:.1} ", if d.is_empty() { "M" } else { "L" });
            let _ = write!(
                dots,
                "<circle class=\"s{c}\" data-run=\"{run}\" data-value=\"{v}\" data-series=\"{s}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\"><title>run {run}: {s} {v}</title></circle>",
                c = si % 6,
                s = esc(name)
            );
        }
        let _ = write!(
            out,
            "<path class=\"line s{c}\" data-series=\"{s}\" fill=\"none\" d=\"{d}\"/>{dots}",
            c = si % 6,
            s = esc(name),
            d = d.trim_end()
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trend_has_a_line_per_series_and_a_dot_per_point() {
        let svg = trend_svg(
            &[
                (1, vec![("a".into(), 3), ("b".into(), 1)]),
                (2, vec![("a".into(), 5), ("b".into(), 1)]),
            ],
            "counts per run",
        );
        assert_eq!(svg.matches("<path class=\"line").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("data-run=\"2\" data-value=\"5\" data-series=\"a\""));
        assert!(trend_svg(&[], "x").is_empty());
    }
}

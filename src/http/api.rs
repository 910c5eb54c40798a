//! JSON API for scripts: `POST /api/tasks`, `GET /api/tasks/{id}`, `GET /api/tasks`, and
//! the actions on one task (`POST /api/tasks/{id}/retry`, `/cancel`). Batches are in
//! `api_batches.rs`, exports in `export.rs`. Errors are JSON `{"error": "..."}` with a 4xx
//! that says what to fix.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::submit::{Rejected, submit};
use super::tasks::ListQuery;
use super::{AppState, Error, actions};
use crate::count::{CountOptions, Scope};
use crate::model::{ResultRecord, RunRecord, TaskView};
use crate::outcome::Outcome;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tasks", get(list).post(create))
        .route("/api/tasks/{id}", get(show))
        .route("/api/tasks/{id}/retry", post(retry_one))
        .route("/api/tasks/{id}/cancel", post(cancel_one))
}

/// An API error: the shared `Error`, rendered as JSON.
pub struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_json()
    }
}

pub(crate) fn json_rejection(e: JsonRejection) -> ApiError {
    ApiError(match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge(format!(
            "the request body is larger than {} KiB; split the addresses over several requests",
            super::MAX_BODY_BYTES / 1024
        )),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            Error::BadRequest("send JSON with `Content-Type: application/json`".into())
        }
        StatusCode::UNPROCESSABLE_ENTITY => Error::Unprocessable(e.body_text()),
        _ => Error::BadRequest(e.body_text()),
    })
}

/// `POST /api/tasks` body. Unknown fields are refused so a typo in an option name is an
/// error, not a silently ignored setting.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"addresses": ["https://example.com/"], "word": "python", "label": "docs"}))]
pub struct CreateTasks {
    pub addresses: Vec<String>,
    pub word: Option<String>,
    /// Several words (or phrases) counted in one pass; `word` then must be absent.
    pub words: Option<Vec<String>>,
    pub case_sensitive: Option<bool>,
    pub whole_word: Option<bool>,
    pub scope: Option<Scope>,
    /// A name for the batch these addresses become.
    pub label: Option<String>,
    /// Count only inside the elements matching these CSS selectors (text scope only).
    pub within: Option<Vec<String>>,
    /// Never count inside the elements matching these CSS selectors (text scope only).
    pub outside: Option<Vec<String>>,
    /// Regular expressions counted beside the words, each with its own count (at most 20;
    /// the result's `counts` has one key per pattern, its text).
    pub patterns: Option<Vec<String>>,
}

/// One accepted address of `POST /api/tasks`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Created {
    id: i64,
    address: String,
    #[schema(value_type = crate::model::TaskStatus)]
    status: &'static str,
}

/// `POST /api/tasks` answer: the batch, the accepted tasks and a reason per refused line.
/// With nothing accepted it is a 422 that also carries `error`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedTasks {
    #[schema(required = true)]
    batch_id: Option<i64>,
    tasks: Vec<Created>,
    rejected: Vec<Rejected>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `POST /api/tasks/{id}/retry` answer: the task and its new run.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RetriedTask {
    id: i64,
    run: i32,
}

/// `POST /api/tasks/{id}/cancel` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CancelledTask {
    id: i64,
    #[schema(value_type = crate::model::TaskStatus)]
    status: &'static str,
    #[schema(required = true)]
    outcome: Option<Outcome>,
}

/// `GET /api/tasks` answer: a page of tasks, the cursor of the next page, the totals.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskList {
    tasks: Vec<TaskJson>,
    /// Pass as `before` for the next (older) page; null on the last page.
    #[schema(required = true)]
    next_before: Option<i64>,
    stats: crate::model::Stats,
}

/// One task as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskJson {
    id: i64,
    #[schema(required = true)]
    batch_id: Option<i64>,
    run: i32,
    address: String,
    #[schema(value_type = crate::model::TaskStatus)]
    status: &'static str,
    #[schema(required = true)]
    outcome: Option<Outcome>,
    timestamp: i64,
    word: String,
    case_sensitive: bool,
    whole_word: bool,
    scope: Scope,
    /// The regions and patterns the task counts (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    within: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    outside: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    patterns: Vec<String>,
    attempts: i32,
    /// A crawl's page: links away from a start address; null for a listed address.
    #[schema(required = true)]
    depth: Option<i32>,
    /// A crawl's page: the task it was first found on; null for seeds and listed addresses.
    #[schema(required = true)]
    found_on: Option<i64>,
    /// `sitemap` or `robots` for a crawl task read for URLs; absent for pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<crate::model::TaskRole>,
    #[schema(required = true)]
    result: Option<ResultRecord>,
    /// Earlier runs, newest first (only on `GET /api/tasks/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<RunRecord>>,
}

impl From<TaskView> for TaskJson {
    fn from(v: TaskView) -> Self {
        let t = v.task;
        TaskJson {
            id: t.id,
            batch_id: t.batch_id,
            run: t.run,
            address: t.address,
            status: t.status.as_str(),
            outcome: t.outcome,
            timestamp: t.timestamp,
            word: t.options.word,
            case_sensitive: t.options.case_sensitive,
            whole_word: t.options.whole_word,
            scope: t.options.scope,
            within: t.options.within,
            outside: t.options.outside,
            patterns: t.options.patterns,
            attempts: t.attempts,
            depth: t.depth,
            found_on: t.found_on,
            role: t.role,
            result: v.result,
            history: None,
        }
    }
}

/// Submit addresses: they become one batch of tasks.
#[utoipa::path(post, path = "/api/tasks", tag = "tasks",
    request_body = CreateTasks,
    responses(
        (status = 201, description = "Stored and queued (some lines may be rejected)", body = CreatedTasks),
        (status = 400, description = "Not JSON, or not the expected shape", body = super::error::ErrorBody),
        (status = 413, description = "Body or address count over the limit", body = super::error::ErrorBody),
        (status = 422, description = "Nothing valid (`rejected` says why) or bad options", body = super::error::ErrorBody),
        (status = 429, description = "Over the submission rate limit; nothing stored", body = super::error::ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreateTasks>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(json_rejection)?;
    if req.addresses.is_empty() {
        return Err(
            Error::Unprocessable("`addresses` must list at least one address".into()).into(),
        );
    }
    let d = CountOptions::default();
    let mut options = CountOptions {
        word: req.word.clone().unwrap_or(d.word),
        case_sensitive: req.case_sensitive.unwrap_or(d.case_sensitive),
        whole_word: req.whole_word.unwrap_or(d.whole_word),
        scope: req.scope.unwrap_or(d.scope),
        words: Vec::new(),
        within: req.within.clone().unwrap_or_default(),
        outside: req.outside.clone().unwrap_or_default(),
        patterns: req.patterns.clone().unwrap_or_default(),
    };
    if let Some(words) = req.words {
        if req.word.is_some() {
            return Err(
                Error::Unprocessable("give either `word` or `words`, not both".into()).into(),
            );
        }
        crate::count::validate_words(&words).map_err(Error::Unprocessable)?;
        options.set_words(words);
    }
    let out = submit(&state, &req.addresses, options, false, req.label.as_deref()).await?;
    let tasks: Vec<Created> = out
        .accepted
        .into_iter()
        .map(|t| Created {
            id: t.id,
            address: t.address,
            status: t.status.as_str(),
        })
        .collect();
    let code = if tasks.is_empty() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::CREATED
    };
    let error = tasks
        .is_empty()
        .then(|| "no valid address: see `rejected`".to_string());
    let body = CreatedTasks {
        batch_id: out.batch_id,
        tasks,
        rejected: out.rejected,
        error,
    };
    Ok((code, Json(body)).into_response())
}

pub(crate) fn task_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, Error> {
    id.map(|Path(id)| id)
        .map_err(|_| Error::BadRequest("the task id must be a whole number".into()))
}

/// One task with its result and its earlier runs.
#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks",
    params(("id" = i64, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = TaskJson),
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 404, description = "No such task", body = super::error::ErrorBody),
    ))]
async fn show(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<TaskJson>, ApiError> {
    let id = task_id(id)?;
    let view = state.store.get_task(id).await.map_err(Error::from)?;
    let Some(view) = view else {
        return Err(ApiError(Error::NotFound));
    };
    let history = state
        .store
        .history(id, view.task.run)
        .await
        .map_err(Error::from)?;
    let mut json = TaskJson::from(view);
    json.history = Some(history);
    Ok(Json(json))
}

/// `POST /api/tasks/{id}/retry` → `202 {"id", "run"}`; 409 while the task is unfinished.
#[utoipa::path(post, path = "/api/tasks/{id}/retry", tag = "tasks",
    params(("id" = i64, Path, description = "Task id")),
    responses(
        (status = 202, description = "Queued again as a new run", body = RetriedTask),
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 404, description = "No such task", body = super::error::ErrorBody),
        (status = 409, description = "The task has not finished", body = super::error::ErrorBody),
    ))]
async fn retry_one(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = task_id(id)?;
    let task = actions::retry_task(&state, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RetriedTask {
            id: task.id,
            run: task.run,
        }),
    )
        .into_response())
}

/// `POST /api/tasks/{id}/cancel` → `200 {"id", "status", "outcome"}`; 409 if it finished
/// first.
#[utoipa::path(post, path = "/api/tasks/{id}/cancel", tag = "tasks",
    params(("id" = i64, Path, description = "Task id")),
    responses(
        (status = 200, description = "Cancelled", body = CancelledTask),
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 404, description = "No such task", body = super::error::ErrorBody),
        (status = 409, description = "The task finished first", body = super::error::ErrorBody),
    ))]
async fn cancel_one(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<CancelledTask>, ApiError> {
    let id = task_id(id)?;
    let task = actions::cancel_task(&state, id).await?;
    Ok(Json(CancelledTask {
        id: task.id,
        status: task.status.as_str(),
        outcome: task.outcome,
    }))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    #[serde(flatten)]
    q: ListQuery,
    limit: Option<i64>,
}

/// A page of tasks, newest first, with the totals.
#[utoipa::path(get, path = "/api/tasks", tag = "tasks",
    params(super::openapi::FilterParams, super::openapi::PageParams),
    responses(
        (status = 200, description = "A page of tasks", body = TaskList),
        (status = 400, description = "A filter is malformed", body = super::error::ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TaskList>, ApiError> {
    let Query(p) = params.map_err(|e| Error::BadRequest(e.body_text()))?;
    let limit = p.limit.unwrap_or(state.page_size).clamp(1, 500);
    let filter = p.q.filter(limit)?;
    let stats = state.store.stats().await.map_err(Error::from)?;
    let views = state.store.list_tasks(&filter).await.map_err(Error::from)?;
    let next_before = (views.len() as i64 >= limit)
        .then(|| views.last().map(|v| v.task.id))
        .flatten();
    let tasks: Vec<TaskJson> = views.into_iter().map(TaskJson::from).collect();
    Ok(Json(TaskList {
        tasks,
        next_before,
        stats,
    }))
}

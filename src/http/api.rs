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
use serde_json::json;

use super::submit::submit;
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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
}

#[derive(Serialize)]
struct Created {
    id: i64,
    address: String,
    status: &'static str,
}

/// One task as the API shows it.
#[derive(Serialize)]
pub struct TaskJson {
    id: i64,
    batch_id: Option<i64>,
    run: i32,
    address: String,
    status: &'static str,
    outcome: Option<Outcome>,
    timestamp: i64,
    word: String,
    case_sensitive: bool,
    whole_word: bool,
    scope: Scope,
    attempts: i32,
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
            attempts: t.attempts,
            result: v.result,
            history: None,
        }
    }
}

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
    let mut body = json!({ "batch_id": out.batch_id, "tasks": tasks, "rejected": out.rejected });
    if tasks.is_empty() {
        body["error"] = json!("no valid address: see `rejected`");
    }
    Ok((code, Json(body)).into_response())
}

pub(crate) fn task_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, Error> {
    id.map(|Path(id)| id)
        .map_err(|_| Error::BadRequest("the task id must be a whole number".into()))
}

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
async fn retry_one(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = task_id(id)?;
    let task = actions::retry_task(&state, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": task.id, "run": task.run })),
    )
        .into_response())
}

/// `POST /api/tasks/{id}/cancel` → `200 {"id", "status", "outcome"}`; 409 if it finished
/// first.
async fn cancel_one(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = task_id(id)?;
    let task = actions::cancel_task(&state, id).await?;
    Ok(Json(json!({
        "id": task.id,
        "status": task.status.as_str(),
        "outcome": task.outcome,
    })))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    #[serde(flatten)]
    q: ListQuery,
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(p) = params.map_err(|e| Error::BadRequest(e.body_text()))?;
    let limit = p.limit.unwrap_or(state.page_size).clamp(1, 500);
    let filter = p.q.filter(limit)?;
    let stats = state.store.stats().await.map_err(Error::from)?;
    let views = state.store.list_tasks(&filter).await.map_err(Error::from)?;
    let next_before = (views.len() as i64 >= limit)
        .then(|| views.last().map(|v| v.task.id))
        .flatten();
    let tasks: Vec<TaskJson> = views.into_iter().map(TaskJson::from).collect();
    Ok(Json(
        json!({ "tasks": tasks, "next_before": next_before, "stats": stats }),
    ))
}

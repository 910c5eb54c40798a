//! JSON API for scripts: `POST /api/tasks`, `GET /api/tasks/{id}`, `GET /api/tasks`.
//! Errors are JSON `{"error": "..."}` with a 4xx that says what to fix.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::submit::submit;
use super::tasks::ListQuery;
use super::{AppState, Error};
use crate::count::{CountOptions, Scope};
use crate::model::{ResultRecord, TaskView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tasks", get(list).post(create))
        .route("/api/tasks/{id}", get(show))
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

fn json_rejection(e: JsonRejection) -> ApiError {
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
    pub case_sensitive: Option<bool>,
    pub whole_word: Option<bool>,
    pub scope: Option<Scope>,
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
    address: String,
    status: &'static str,
    timestamp: i64,
    word: String,
    case_sensitive: bool,
    whole_word: bool,
    scope: Scope,
    attempts: i32,
    result: Option<ResultRecord>,
}

impl From<TaskView> for TaskJson {
    fn from(v: TaskView) -> Self {
        let t = v.task;
        TaskJson {
            id: t.id,
            address: t.address,
            status: t.status.as_str(),
            timestamp: t.timestamp,
            word: t.options.word,
            case_sensitive: t.options.case_sensitive,
            whole_word: t.options.whole_word,
            scope: t.options.scope,
            attempts: t.attempts,
            result: v.result,
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
    let options = CountOptions {
        word: req.word.unwrap_or(d.word),
        case_sensitive: req.case_sensitive.unwrap_or(d.case_sensitive),
        whole_word: req.whole_word.unwrap_or(d.whole_word),
        scope: req.scope.unwrap_or(d.scope),
    };
    let out = submit(&state, &req.addresses, options, false).await?;
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
    let mut body = json!({ "tasks": tasks, "rejected": out.rejected });
    if tasks.is_empty() {
        body["error"] = json!("no valid address: see `rejected`");
    }
    Ok((code, Json(body)).into_response())
}

async fn show(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<TaskJson>, ApiError> {
    let Path(id) =
        id.map_err(|_| Error::BadRequest("the task id must be a whole number".into()))?;
    let view = state.store.get_task(id).await.map_err(Error::from)?;
    view.map(|v| Json(v.into()))
        .ok_or(ApiError(Error::NotFound))
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

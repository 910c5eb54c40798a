//! JSON API of batches: `GET /api/batches` (paged), `GET /api/batches/{id}`,
//! `POST /api/batches/{id}/retry`, `POST /api/batches/{id}/cancel`,
//! `DELETE /api/batches/{id}`. A batch's totals are one row (DESIGN §11).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::api::ApiError;
use super::{AppState, Error, actions};
use crate::outcome::Outcome;
use crate::store::{Batch, BatchFilter, TaskFilter};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/batches", get(list))
        .route("/api/batches/{id}", get(show).delete(remove))
        .route("/api/batches/{id}/retry", post(retry))
        .route("/api/batches/{id}/cancel", post(cancel))
}

/// The outcomes `POST /api/batches/{id}/retry` retries when the body names none.
pub const DEFAULT_RETRY: [Outcome; 2] = [Outcome::Failed, Outcome::HttpError];

pub(crate) fn batch_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, Error> {
    id.map(|Path(id)| id)
        .map_err(|_| Error::BadRequest("the batch id must be a whole number".into()))
}

/// The batch, or 404.
pub(crate) async fn load(state: &AppState, id: i64) -> Result<Batch, Error> {
    state.store.get_batch(id).await?.ok_or(Error::NotFound)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    before: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/batches` answer: a page of batches, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchList {
    batches: Vec<Batch>,
    /// Pass as `before` for the next (older) page; null on the last page.
    #[schema(required = true)]
    next_before: Option<i64>,
}

/// `POST /api/batches/{id}/retry` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RetriedBatch {
    /// Tasks queued again.
    retried: usize,
}

/// `POST /api/batches/{id}/cancel` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CancelledBatch {
    /// Unfinished tasks that were cancelled.
    cancelled: usize,
}

/// A page of batches with their totals, newest first.
#[utoipa::path(get, path = "/api/batches", tag = "batches",
    params(super::openapi::BatchPageParams),
    responses(
        (status = 200, description = "A page of batches", body = BatchList),
        (status = 400, description = "A parameter is malformed or unknown", body = super::error::ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<BatchList>, ApiError> {
    let Query(p) = params.map_err(|e| Error::BadRequest(e.body_text()))?;
    let limit = p.limit.unwrap_or(state.page_size).clamp(1, 500);
    let batches = state
        .store
        .list_batches(&BatchFilter {
            before: p.before,
            limit,
        })
        .await
        .map_err(Error::from)?;
    let next_before = (batches.len() as i64 >= limit)
        .then(|| batches.last().map(|b| b.id))
        .flatten();
    Ok(Json(BatchList {
        batches,
        next_before,
    }))
}

/// One batch's totals.
#[utoipa::path(get, path = "/api/batches/{id}", tag = "batches",
    params(("id" = i64, Path, description = "Batch id")),
    responses(
        (status = 200, description = "The batch with its schedule (null when none)", body = super::schedule::BatchWithSchedule),
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 404, description = "No such batch", body = super::error::ErrorBody),
    ))]
async fn show(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<super::schedule::BatchWithSchedule>, ApiError> {
    let batch = load(&state, batch_id(id)?).await?;
    Ok(Json(super::schedule::with_schedule(&state, batch).await?))
}

/// `POST /api/batches/{id}/retry` body (optional: empty means `["failed", "http_error"]`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"outcomes": ["failed", "http_error"]}))]
pub struct RetryBody {
    outcomes: Option<Vec<Outcome>>,
}

/// Queue again the batch's finished tasks that ended with one of `outcomes`.
#[utoipa::path(post, path = "/api/batches/{id}/retry", tag = "batches",
    params(("id" = i64, Path, description = "Batch id")),
    request_body(content = Option<RetryBody>, description = "Optional; empty = failed and http_error"),
    responses(
        (status = 200, description = "How many tasks were queued again", body = RetriedBatch),
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 404, description = "No such batch", body = super::error::ErrorBody),
        (status = 413, description = "The body is over the limit", body = super::error::ErrorBody),
        (status = 422, description = "The body is not `{\"outcomes\": [...]}`", body = super::error::ErrorBody),
    ))]
async fn retry(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    body: axum::body::Bytes,
) -> Result<Json<RetriedBatch>, ApiError> {
    let id = batch_id(id)?;
    // The body is optional: empty means the default outcomes.
    let body: RetryBody = if body.iter().all(u8::is_ascii_whitespace) {
        RetryBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            Error::Unprocessable(format!(
                "the body must be {{\"outcomes\": [\"failed\", ...]}} or empty: {e}"
            ))
        })?
    };
    load(&state, id).await?;
    let outcomes = match body.outcomes {
        None => DEFAULT_RETRY.to_vec(),
        Some(o) if o.is_empty() => {
            return Err(Error::Unprocessable(
                "`outcomes` must name at least one of ok, http_error, failed, truncated, cancelled"
                    .into(),
            )
            .into());
        }
        Some(o) => o,
    };
    let filter = TaskFilter {
        batch: Some(id),
        ..Default::default()
    };
    let n = actions::retry_matching(&state, &filter, &outcomes).await?;
    Ok(Json(RetriedBatch { retried: n }))
}

/// Cancel the batch's unfinished tasks.
#[utoipa::path(post, path = "/api/batches/{id}/cancel", tag = "batches",
    params(("id" = i64, Path, description = "Batch id")),
    responses(
        (status = 200, description = "How many tasks were cancelled", body = CancelledBatch),
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 404, description = "No such batch", body = super::error::ErrorBody),
    ))]
async fn cancel(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<CancelledBatch>, ApiError> {
    let id = batch_id(id)?;
    load(&state, id).await?;
    let filter = TaskFilter {
        batch: Some(id),
        ..Default::default()
    };
    let n = actions::cancel_matching(&state, &filter).await?;
    Ok(Json(CancelledBatch { cancelled: n }))
}

/// Delete a batch and its tasks.
#[utoipa::path(delete, path = "/api/batches/{id}", tag = "batches",
    params(("id" = i64, Path, description = "Batch id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 404, description = "No such batch", body = super::error::ErrorBody),
    ))]
async fn remove(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = batch_id(id)?;
    actions::delete_batch(&state, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

//! JSON API of batches: `GET /api/batches` (paged), `GET /api/batches/{id}`,
//! `POST /api/batches/{id}/retry`, `POST /api/batches/{id}/cancel`,
//! `DELETE /api/batches/{id}`. A batch's totals are one row (DESIGN §11).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

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

async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    Ok(Json(
        json!({ "batches": batches, "next_before": next_before }),
    ))
}

async fn show(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Batch>, ApiError> {
    Ok(Json(load(&state, batch_id(id)?).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    outcomes: Option<Vec<Outcome>>,
}

async fn retry(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    Ok(Json(json!({ "retried": n })))
}

async fn cancel(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = batch_id(id)?;
    load(&state, id).await?;
    let filter = TaskFilter {
        batch: Some(id),
        ..Default::default()
    };
    let n = actions::cancel_matching(&state, &filter).await?;
    Ok(Json(json!({ "cancelled": n })))
}

async fn remove(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = batch_id(id)?;
    actions::delete_batch(&state, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

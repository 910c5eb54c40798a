//! A crawl's pages by count (DB → **poll**, DESIGN §15): `GET /batches/{id}/pages`, every
//! page of one batch sorted by its current count (most first, or `?order=asc`), a hundred
//! per page. Not polled: the sort reads the batch's own rows (through the `task_batch_id`
//! index, bounded by the batch's size, like the batch's distribution), once per visit.

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::api_batches::{batch_id, load};
use super::tasks::render;
use super::view::Row;
use super::{AppState, Error};

pub fn router() -> Router<AppState> {
    Router::new().route("/batches/{id}/pages", get(page))
}

/// Rows per page of the list.
const PER_PAGE: i64 = 100;
/// Deepest page number served (100,000 rows: the most a crawl holds by default ×10).
const MAX_PAGE: i64 = 1_000;

#[derive(Debug, Default, Deserialize)]
pub struct PagesQuery {
    /// `desc` (default: most matches first) or `asc`.
    pub order: Option<String>,
    /// 1-based page of the list.
    pub page: Option<i64>,
}

#[derive(askama::Template)]
#[template(path = "crawl_pages.html")]
struct PagesPage {
    id: i64,
    title: String,
    rows: Vec<(Row, Option<i32>)>,
    ascending: bool,
    page: i64,
    prev: Option<i64>,
    next: Option<i64>,
}

async fn page(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<PagesQuery>, QueryRejection>,
) -> Result<Response, Error> {
    let id = batch_id(id)?;
    let Query(q) = q.map_err(|e| Error::BadRequest(e.body_text()))?;
    let ascending = match q.order.as_deref().map(str::trim) {
        None | Some("") | Some("desc") => false,
        Some("asc") => true,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "order is desc or asc, not {:?}",
                other.chars().take(20).collect::<String>()
            )));
        }
    };
    let page = q.page.unwrap_or(1);
    if !(1..=MAX_PAGE).contains(&page) {
        return Err(Error::BadRequest(format!(
            "page must be from 1 to {MAX_PAGE}"
        )));
    }
    let b = load(&state, id).await?;
    let views = state
        .store
        .batch_tasks_by_count(id, ascending, (page - 1) * PER_PAGE, PER_PAGE + 1)
        .await?;
    let more = views.len() as i64 > PER_PAGE;
    let rows = views
        .iter()
        .take(PER_PAGE as usize)
        .map(|v| (Row::from_view(v), v.task.depth))
        .collect();
    Ok(render(&PagesPage {
        id,
        title: b.label.clone().unwrap_or_else(|| format!("Batch {id}")),
        rows,
        ascending,
        page,
        prev: (page > 1).then(|| page - 1),
        next: more.then(|| page + 1),
    })?
    .into_response())
}

//! Changes (DESIGN §16), poll side: the `/changes` page (filterable by batch; its list
//! polls `/changes/table`, 204 while no newer change exists), `GET /api/changes` (newest
//! first, keyset paged by id) and the Atom feed `/changes.atom` (readable with an API
//! token as `?token=` or the bearer header, for feed readers; see `crate::auth`). The
//! changes themselves are stored by the DB writer (store/changes.rs).

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::api::ApiError;
use super::tasks::render;
use super::view::utc;
use super::{AppState, Error};
use crate::store::changes::Change;

/// Changes per page (API default, the page, the feed).
const PAGE: i64 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/changes", get(api_list))
        .route("/changes", get(page))
        .route("/changes/table", get(partial))
        .route("/changes.atom", get(atom))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ChangeParams {
    /// Only this batch's changes.
    batch: Option<String>,
    /// Only changes older than this id (the previous page's `next_before`).
    before: Option<String>,
    /// At most this many (1–500, default 50).
    limit: Option<String>,
    /// The newest change id the page was rendered at (poll only).
    #[param(ignore)]
    v: Option<String>,
    /// An API token (only `/changes.atom` reads it, in `crate::auth`).
    #[param(ignore)]
    #[serde(rename = "token")]
    _token: Option<String>,
}

/// `GET /api/changes` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ChangeList {
    changes: Vec<Change>,
    /// Pass as `before` for the next (older) page; null on the last page.
    #[schema(required = true)]
    next_before: Option<i64>,
}

fn number(name: &str, v: &Option<String>) -> Result<Option<i64>, Error> {
    match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Error::BadRequest(format!("`{name}` must be a whole number"))),
    }
}

struct Filter {
    batch: Option<i64>,
    before: Option<i64>,
    limit: i64,
}

fn filter(p: &ChangeParams) -> Result<Filter, Error> {
    Ok(Filter {
        batch: number("batch", &p.batch)?,
        before: number("before", &p.before)?,
        limit: number("limit", &p.limit)?.unwrap_or(PAGE).clamp(1, 500),
    })
}

async fn read(state: &AppState, f: &Filter) -> Result<(Vec<Change>, Option<i64>), Error> {
    let changes = state.store.list_changes(f.batch, f.before, f.limit).await?;
    let next = (changes.len() as i64 >= f.limit)
        .then(|| changes.last().map(|c| c.id))
        .flatten();
    Ok((changes, next))
}

/// Changes newest first: counts that differ from the task's previous run, or crossed a
/// rule of the batch.
#[utoipa::path(get, path = "/api/changes", tag = "watching",
    params(ChangeParams),
    responses(
        (status = 200, description = "A page of changes, newest first", body = ChangeList),
        (status = 400, description = "A parameter is malformed or unknown", body = super::error::ErrorBody),
    ))]
async fn api_list(
    State(state): State<AppState>,
    params: Result<Query<ChangeParams>, QueryRejection>,
) -> Result<Json<ChangeList>, ApiError> {
    let Query(p) = params.map_err(|e| Error::BadRequest(e.body_text()))?;
    let (changes, next_before) = read(&state, &filter(&p)?).await?;
    Ok(Json(ChangeList {
        changes,
        next_before,
    }))
}

/// A change as the page lists it.
pub struct ChangeRow {
    pub id: i64,
    pub at: String,
    pub task_id: i64,
    pub address: String,
    pub batch_id: Option<i64>,
    pub run: i32,
    pub word: String,
    pub before: i64,
    pub after: i64,
    /// "up" or "down".
    pub direction: &'static str,
    pub rule: String,
}

pub struct ChangesView {
    pub rows: Vec<ChangeRow>,
    pub batch: String,
    pub poll_url: String,
    pub older_url: Option<String>,
}

#[derive(Template)]
#[template(path = "changes.html")]
struct ChangesPage {
    view: ChangesView,
}

#[derive(Template)]
#[template(path = "changes_partial.html")]
struct ChangesPartial {
    view: ChangesView,
}

async fn view(state: &AppState, p: &ChangeParams) -> Result<ChangesView, Error> {
    let f = filter(p)?;
    // The version first, so a change stored between the two reads shows in the next poll.
    let version = state.store.latest_change(f.batch).await?;
    let (changes, next) = read(state, &f).await?;
    let batch = f.batch.map(|b| b.to_string()).unwrap_or_default();
    let before = f.before.map(|b| b.to_string()).unwrap_or_default();
    Ok(ChangesView {
        rows: changes
            .into_iter()
            .map(|c| ChangeRow {
                id: c.id,
                at: utc(c.at),
                task_id: c.task_id,
                address: c.address,
                batch_id: c.batch_id,
                run: c.run,
                word: c.word,
                before: c.before,
                after: c.after,
                direction: if c.after > c.before { "up" } else { "down" },
                rule: c.rule.unwrap_or_default(),
            })
            .collect(),
        poll_url: format!(
            "/changes/table?{}",
            super::tasks::query_string(&[
                ("batch", &batch),
                ("before", &before),
                ("v", &version.to_string())
            ])
        ),
        older_url: next.map(|n| {
            format!(
                "/changes?{}",
                super::tasks::query_string(&[("batch", &batch), ("before", &n.to_string())])
            )
        }),
        batch,
    })
}

async fn page(
    State(state): State<AppState>,
    params: Result<Query<ChangeParams>, QueryRejection>,
) -> Result<Response, Error> {
    let Query(p) = params.map_err(|e| Error::BadRequest(e.body_text()))?;
    let view = view(&state, &p).await?;
    Ok(render(&ChangesPage { view })?.into_response())
}

async fn partial(
    State(state): State<AppState>,
    params: Result<Query<ChangeParams>, QueryRejection>,
) -> Result<Response, Error> {
    let Query(p) = params.map_err(|e| Error::BadRequest(e.body_text()))?;
    if let Some(v) = number("v", &p.v)?
        && state
            .store
            .latest_change(number("batch", &p.batch)?)
            .await?
            == v
    {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let view = view(&state, &p).await?;
    Ok(render(&ChangesPartial { view })?.into_response())
}

/// Escapes text for XML.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// RFC 3339 for Atom (`2026-01-01T00:00:00Z`).
fn rfc3339(ms: i64) -> String {
    let u = utc(ms); // "YYYY-MM-DD HH:MM:SS UTC"
    format!("{}T{}Z", &u[..10], &u[11..19])
}

/// The Atom feed of the newest changes (of one batch with `?batch=`).
async fn atom(
    State(state): State<AppState>,
    params: Result<Query<ChangeParams>, QueryRejection>,
) -> Result<Response, Error> {
    let Query(p) = params.map_err(|e| Error::BadRequest(e.body_text()))?;
    let f = filter(&p)?;
    let (changes, _) = read(&state, &f).await?;
    let updated = changes.first().map(|c| c.at).unwrap_or(0);
    let scope = match f.batch {
        Some(b) => format!("batch {b}"),
        None => "all batches".to_string(),
    };
    let mut out = String::with_capacity(1024 + changes.len() * 512);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    out.push_str(&format!(
        "<title>wordtally changes ({scope})</title>\n<id>urn:wordtally:changes:{}</id>\n<updated>{}</updated>\n<link rel=\"alternate\" href=\"/changes{}\"/>\n",
        f.batch.map(|b| b.to_string()).unwrap_or_else(|| "all".into()),
        rfc3339(updated),
        f.batch.map(|b| format!("?batch={b}")).unwrap_or_default(),
    ));
    for c in &changes {
        let title = format!(
            "“{}” {} → {} on {}{}",
            c.word,
            c.before,
            c.after,
            c.address,
            c.rule
                .as_deref()
                .map(|r| format!(" (crossed {r})"))
                .unwrap_or_default()
        );
        out.push_str(&format!(
            "<entry>\n<id>urn:wordtally:change:{id}</id>\n<title>{t}</title>\n<updated>{at}</updated>\n<link href=\"/tasks/{task}\"/>\n<author><name>wordtally</name></author>\n<content type=\"text\">Task {task} run {run}: “{w}” counted {b} before and {a} now on {addr}.</content>\n</entry>\n",
            id = c.id,
            t = xml(&title),
            at = rfc3339(c.at),
            task = c.task_id,
            run = c.run,
            w = xml(&c.word),
            b = c.before,
            a = c.after,
            addr = xml(&c.address),
        ));
    }
    out.push_str("</feed>\n");
    Ok((
        [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        out,
    )
        .into_response())
}

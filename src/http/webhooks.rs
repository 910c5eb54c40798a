//! Webhooks of a batch (DB → **notify**, DESIGN §16), JSON and page:
//! `POST /api/batches/{id}/webhooks` → `201 {"id", "secret"}` (the secret is shown this
//! once), `GET /api/batches/{id}/webhooks`, `GET /api/webhooks/{id}/deliveries` (the
//! delivery log), `POST /api/webhooks/{id}/test` (queue a `webhook.test` event),
//! `DELETE /api/webhooks/{id}` → `204`; and the batch page's section,
//! `GET /batches/{id}/webhooks` (a partial for htmx, a page otherwise) with its forms.
//!
//! Creation checks the URL against the SSRF guard (422 with the guard's sentence for a
//! private address unless `ALLOW_TARGETS` / `ALLOW_PRIVATE_TARGETS` lets it through);
//! a bad body is a 4xx with a reason and stores nothing.

use askama::Template;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::api::ApiError;
use super::api_batches::{batch_id, load};
use super::tasks::render;
use super::view::utc;
use super::{AppState, Error, actions};
use crate::store::deliveries::{
    Delivery, EVENTS, MAX_WEBHOOKS_PER_BATCH, NewWebhook, Webhook, WebhookError,
};

/// Largest webhook request body: a URL and a few event names fit in far less.
const MAX_WEBHOOK_BODY: usize = 16 * 1024;

/// Delivery log lines shown per webhook on the batch page.
const LOG_ON_PAGE: i64 = 10;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/batches/{id}/webhooks", post(create_api).get(list_api))
        .route("/api/webhooks/{id}", axum::routing::delete(delete_api))
        .route("/api/webhooks/{id}/deliveries", get(deliveries_api))
        .route("/api/webhooks/{id}/test", post(test_api))
        .route("/batches/{id}/webhooks", get(section).post(create_form))
        .route("/batches/{id}/webhooks/{wid}/test", post(test_form))
        .route("/batches/{id}/webhooks/{wid}/delete", post(delete_form))
}

/// `POST /api/batches/{id}/webhooks` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://hooks.example.com/wordtally", "events": ["batch.finished", "task.changed"]}))]
pub struct CreateWebhook {
    /// Where to POST events: an absolute http(s) URL that passes the SSRF guard.
    url: String,
    /// `batch.finished` and/or `task.changed`.
    events: Vec<String>,
}

/// `POST /api/batches/{id}/webhooks` answer. The secret is shown only here.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    id: i64,
    /// Signs every delivery (`X-Wordtally-Signature`); keep it, it is never shown again.
    secret: String,
    webhook: Webhook,
}

/// `GET /api/batches/{id}/webhooks` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookList {
    webhooks: Vec<Webhook>,
}

/// `GET /api/webhooks/{id}/deliveries` answer: newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryLog {
    webhook: Webhook,
    deliveries: Vec<Delivery>,
    /// Pass as `before` for the next (older) page; null on the last page.
    #[schema(required = true)]
    next_before: Option<i64>,
}

/// `GET /api/webhooks/{id}/deliveries` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// Only deliveries with a smaller id (keyset paging).
    before: Option<i64>,
    /// Page size, 1–500 (default 100).
    limit: Option<i64>,
}

/// Webhook bodies are small; anything larger is refused before it is parsed (the router's
/// 1 MiB limit is for address lists). A route-level `DefaultBodyLimit` would do the same,
/// but the OpenAPI test reads routes from one-line `.route(…)` calls.
fn check_size(body: &[u8]) -> Result<(), Error> {
    if body.len() > MAX_WEBHOOK_BODY {
        return Err(Error::TooLarge(format!(
            "the request body is larger than {} KiB",
            MAX_WEBHOOK_BODY / 1024
        )));
    }
    Ok(())
}

fn webhook_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, Error> {
    id.map(|Path(id)| id)
        .map_err(|_| Error::BadRequest("the webhook id must be a whole number".into()))
}

/// Validates, checks the SSRF guard and stores; the one path of the API and the form.
async fn create(
    state: &AppState,
    batch: i64,
    url: &str,
    events: &[String],
) -> Result<(Webhook, String), Error> {
    load(state, batch).await?;
    let (url, events) = crate::notify::validate(url, events).map_err(Error::Unprocessable)?;
    state
        .webhooks
        .check_target(&url)
        .await
        .map_err(|why| Error::Unprocessable(format!("the webhook URL is refused: {why}")))?;
    let secret = crate::notify::sign::new_secret();
    let hook = state
        .store
        .create_webhook(&NewWebhook {
            batch_id: batch,
            url: url.to_string(),
            events,
            secret: secret.clone(),
            created_by: Some(actions::who()),
        })
        .await
        .map_err(|e| match e {
            WebhookError::NoBatch => Error::NotFound,
            WebhookError::TooMany => Error::Conflict(format!(
                "a batch can have at most {MAX_WEBHOOKS_PER_BATCH} webhooks; delete one first"
            )),
            WebhookError::Store(e) => Error::Store(e),
        })?;
    tracing::info!(webhook = hook.id, batch, events = ?hook.events, "webhook created");
    Ok((hook, secret))
}

/// Subscribe a URL to the batch's events.
#[utoipa::path(post, path = "/api/batches/{id}/webhooks", tag = "webhooks",
    params(("id" = i64, Path, description = "Batch id")),
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Created; the secret is shown only now", body = CreatedWebhook),
        (status = 400, description = "The id or the body is malformed", body = super::error::ErrorBody),
        (status = 404, description = "No such batch", body = super::error::ErrorBody),
        (status = 409, description = "The batch has the most webhooks allowed", body = super::error::ErrorBody),
        (status = 413, description = "The body is over 16 KiB", body = super::error::ErrorBody),
        (status = 422, description = "Bad URL, unknown event, or a target the SSRF guard refuses", body = super::error::ErrorBody),
    ))]
pub(crate) async fn create_api(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = batch_id(id)?;
    check_size(&body)?;
    let body: CreateWebhook = serde_json::from_slice(&body).map_err(|e| {
        let why = format!("the body must be {{\"url\": \"https://…\", \"events\": [...]}}: {e}");
        match e.classify() {
            serde_json::error::Category::Data => Error::Unprocessable(why),
            _ => Error::BadRequest(why),
        }
    })?;
    let (webhook, secret) = create(&state, id, &body.url, &body.events).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            id: webhook.id,
            secret,
            webhook,
        }),
    )
        .into_response())
}

/// The batch's webhooks (without their secrets).
#[utoipa::path(get, path = "/api/batches/{id}/webhooks", tag = "webhooks",
    params(("id" = i64, Path, description = "Batch id")),
    responses(
        (status = 200, description = "The batch's webhooks", body = WebhookList),
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 404, description = "No such batch", body = super::error::ErrorBody),
    ))]
pub(crate) async fn list_api(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<WebhookList>, ApiError> {
    let id = batch_id(id)?;
    load(&state, id).await?;
    let webhooks = state.store.batch_webhooks(id).await.map_err(Error::from)?;
    Ok(Json(WebhookList { webhooks }))
}

/// The webhook's delivery log: time, state, attempts, last status and error.
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = i64, Path, description = "Webhook id"), DeliveryParams),
    responses(
        (status = 200, description = "Deliveries, newest first", body = DeliveryLog),
        (status = 400, description = "A parameter is malformed or unknown", body = super::error::ErrorBody),
        (status = 404, description = "No such webhook", body = super::error::ErrorBody),
    ))]
pub(crate) async fn deliveries_api(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    params: Result<Query<DeliveryParams>, QueryRejection>,
) -> Result<Json<DeliveryLog>, ApiError> {
    let id = webhook_id(id)?;
    let Query(p) = params.map_err(|e| Error::BadRequest(e.body_text()))?;
    let webhook = state
        .store
        .get_webhook(id)
        .await
        .map_err(Error::from)?
        .ok_or(Error::NotFound)?;
    let limit = p.limit.unwrap_or(100).clamp(1, 500);
    let deliveries = state
        .store
        .deliveries(id, p.before, limit)
        .await
        .map_err(Error::from)?;
    let next_before = (deliveries.len() as i64 >= limit)
        .then(|| deliveries.last().map(|d| d.id))
        .flatten();
    Ok(Json(DeliveryLog {
        webhook,
        deliveries,
        next_before,
    }))
}

/// Queue a `webhook.test` event for this webhook (sent by the dispatcher like any other).
#[utoipa::path(post, path = "/api/webhooks/{id}/test", tag = "webhooks",
    params(("id" = i64, Path, description = "Webhook id")),
    responses(
        (status = 202, description = "Queued; its delivery", body = Delivery),
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 404, description = "No such webhook", body = super::error::ErrorBody),
    ))]
pub(crate) async fn test_api(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = webhook_id(id)?;
    let d = state
        .store
        .enqueue_test_event(id)
        .await
        .map_err(Error::from)?
        .ok_or(Error::NotFound)?;
    Ok((StatusCode::ACCEPTED, Json(d)).into_response())
}

/// Delete a webhook and its delivery log; pending deliveries are not sent.
#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a whole number", body = super::error::ErrorBody),
        (status = 404, description = "No such webhook", body = super::error::ErrorBody),
    ))]
pub(crate) async fn delete_api(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = webhook_id(id)?;
    if !state.store.delete_webhook(id).await.map_err(Error::from)? {
        return Err(Error::NotFound.into());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- the batch page's section ----

/// One delivery log line as the page shows it.
struct DeliveryRow {
    id: i64,
    event: String,
    created: String,
    state: String,
    attempts: i32,
    status: String,
    error: String,
    next: String,
}

struct WebhookRow {
    id: i64,
    url: String,
    events: String,
    created: String,
    log: Vec<DeliveryRow>,
}

#[derive(Template)]
#[template(path = "webhooks_partial.html")]
struct WebhooksPartial {
    batch: i64,
    hooks: Vec<WebhookRow>,
    events: &'static [&'static str],
    /// Shown once after creation from the form.
    secret: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    batch: i64,
    /// The rendered section (escaped by its own template).
    body: String,
}

impl WebhooksPage {
    fn of(section: &WebhooksPartial) -> Result<WebhooksPage, Error> {
        Ok(WebhooksPage {
            batch: section.batch,
            body: render(section)?.0,
        })
    }
}

async fn section_view(
    state: &AppState,
    batch: i64,
    secret: Option<String>,
    notice: Option<String>,
) -> Result<WebhooksPartial, Error> {
    let mut hooks = Vec::new();
    for h in state.store.batch_webhooks(batch).await? {
        let log = state
            .store
            .deliveries(h.id, None, LOG_ON_PAGE)
            .await?
            .into_iter()
            .map(|d| DeliveryRow {
                id: d.id,
                event: d.event,
                created: utc(d.created_at),
                state: match d.state.as_str() {
                    "failed" => "gave up".into(),
                    "pending" if d.attempts > 0 => "retrying".into(),
                    other => other.to_owned(),
                },
                attempts: d.attempts,
                status: d.last_status.map(|s| s.to_string()).unwrap_or_default(),
                error: d.last_error.unwrap_or_default(),
                next: match (d.state.as_str(), d.next_attempt_at) {
                    ("pending", Some(t)) => utc(t),
                    _ => String::new(),
                },
            })
            .collect();
        hooks.push(WebhookRow {
            id: h.id,
            url: h.url,
            events: h.events.join(", "),
            created: utc(h.created_at),
            log,
        });
    }
    Ok(WebhooksPartial {
        batch,
        hooks,
        events: &EVENTS,
        secret,
        notice,
    })
}

/// The section: a partial for htmx (the batch page loads and refreshes it), a page
/// otherwise (the no-JavaScript link and the forms' redirects).
async fn section(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let id = batch_id(id)?;
    load(&state, id).await?;
    let view = section_view(&state, id, None, None).await?;
    if headers.contains_key("hx-request") {
        return Ok(render(&view)?.into_response());
    }
    Ok(render(&WebhooksPage::of(&view)?)?.into_response())
}

/// The create form: `url`, `events` (repeated), `csrf_token`.
fn parse_create_form(body: &[u8]) -> Result<(String, Vec<String>), Error> {
    let mut url = None;
    let mut events = Vec::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "url" => url = Some(v.into_owned()),
            "events" | "event" => events.push(v.into_owned()),
            "csrf_token" => {}
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(Error::BadRequest(format!("unknown field {shown:?}")));
            }
        }
    }
    let url = url.ok_or_else(|| Error::Unprocessable("the webhook URL is missing".into()))?;
    Ok((url, events))
}

/// The answer to a form on the section: the refreshed section (htmx), else its page.
fn section_answer(
    headers: &HeaderMap,
    view: WebhooksPartial,
    to: String,
) -> Result<Response, Error> {
    if headers.contains_key("hx-request") {
        let mut res = render(&view)?.into_response();
        res.headers_mut()
            .insert("hx-trigger", HeaderValue::from_static("webhooks-changed"));
        return Ok(res);
    }
    // A new secret must be shown now (a redirect would lose it): render the page.
    if view.secret.is_some() {
        return Ok(render(&WebhooksPage::of(&view)?)?.into_response());
    }
    Ok(Redirect::to(&to).into_response())
}

async fn create_form(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    let id = batch_id(id)?;
    check_size(&body)?;
    let (url, events) = parse_create_form(&body)?;
    let (hook, secret) = create(&state, id, &url, &events).await?;
    let notice = format!(
        "Webhook #{} created. Copy its secret now: it is not shown again.",
        hook.id
    );
    let view = section_view(&state, id, Some(secret), Some(notice)).await?;
    section_answer(&headers, view, format!("/batches/{id}/webhooks"))
}

/// The webhook `wid` if it belongs to batch `id` (a form cannot act across batches).
async fn own_webhook(state: &AppState, id: i64, wid: i64) -> Result<Webhook, Error> {
    match state.store.get_webhook(wid).await? {
        Some(h) if h.batch_id == id => Ok(h),
        _ => Err(Error::NotFound),
    }
}

fn ids(p: Result<Path<(i64, i64)>, PathRejection>) -> Result<(i64, i64), Error> {
    p.map(|Path(p)| p)
        .map_err(|_| Error::BadRequest("the batch and webhook ids must be whole numbers".into()))
}

async fn test_form(
    State(state): State<AppState>,
    p: Result<Path<(i64, i64)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let (id, wid) = ids(p)?;
    own_webhook(&state, id, wid).await?;
    state
        .store
        .enqueue_test_event(wid)
        .await?
        .ok_or(Error::NotFound)?;
    let notice = format!("A test event is queued for webhook #{wid}; see its log below.");
    let view = section_view(&state, id, None, Some(notice)).await?;
    section_answer(&headers, view, format!("/batches/{id}/webhooks"))
}

async fn delete_form(
    State(state): State<AppState>,
    p: Result<Path<(i64, i64)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let (id, wid) = ids(p)?;
    own_webhook(&state, id, wid).await?;
    state.store.delete_webhook(wid).await?;
    let notice = format!("Webhook #{wid} deleted.");
    let view = section_view(&state, id, None, Some(notice)).await?;
    section_answer(&headers, view, format!("/batches/{id}/webhooks"))
}

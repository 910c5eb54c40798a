//! Webhooks and their outbox (… → DB → **notify**, DESIGN §16): a batch's subscriptions,
//! and one `delivery` row per event and subscribed webhook, written in the transaction that
//! makes the event (a batch's run finishing, a `change` row), so an event is never lost
//! between the commit and the send, and never sent for a transaction that rolled back.
//!
//! The dispatcher (`crate::notify`) claims due rows by moving `next_attempt_at` past a
//! lease in one statement (`FOR UPDATE SKIP LOCKED` on Postgres; SQLite has one writer),
//! so any number of `serve` processes send each attempt once; a process that dies
//! mid-send leaves the row to be claimed again when the lease ends (at-least-once, with
//! the same `event_id` as the idempotency key every time).

use serde::Serialize;
use sqlx::{QueryBuilder, Row};

use super::{Store, StoreError, StoreResult, push_ids};
use crate::model::now_ms;

/// Most webhooks one batch may have: each event is one row per webhook.
pub const MAX_WEBHOOKS_PER_BATCH: i64 = 10;

/// The events a webhook can subscribe to (`webhook.test` is sent on request only).
pub const EVENTS: [&str; 2] = ["batch.finished", "task.changed"];

/// The event a "send a test event" button sends to one webhook.
pub const TEST_EVENT: &str = "webhook.test";

/// A subscription as the API and the batch page show it (never with its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: i64,
    pub batch_id: i64,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: i64,
    #[schema(required = true)]
    pub created_by: Option<String>,
}

/// What `create_webhook` stores.
#[derive(Clone, Debug)]
pub struct NewWebhook {
    pub batch_id: i64,
    pub url: String,
    pub events: Vec<String>,
    /// Stored as it is: signing needs it (see `crate::notify::sign`).
    pub secret: String,
    pub created_by: Option<String>,
}

/// Why a webhook could not be created.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no such batch")]
    NoBatch,
    #[error("a batch can have at most {MAX_WEBHOOKS_PER_BATCH} webhooks")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for WebhookError {
    fn from(e: sqlx::Error) -> Self {
        WebhookError::Store(e.into())
    }
}

/// One event's delivery to one webhook: a line of the delivery log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: i64,
    pub event: String,
    /// The idempotency key (`X-Wordtally-Delivery`), the same on every attempt.
    pub event_id: String,
    /// `pending` (waiting for its next attempt), `delivered`, or `failed` (gave up).
    pub state: String,
    pub attempts: i32,
    pub created_at: i64,
    /// When it is tried next (pending only).
    #[schema(required = true)]
    pub next_attempt_at: Option<i64>,
    #[schema(required = true)]
    pub last_attempt_at: Option<i64>,
    /// The receiver's HTTP status on the last attempt (None: no response).
    #[schema(required = true)]
    pub last_status: Option<i32>,
    #[schema(required = true)]
    pub last_error: Option<String>,
    #[schema(required = true)]
    pub delivered_at: Option<i64>,
}

/// A claimed delivery with what sending it needs.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    pub id: i64,
    pub webhook_id: i64,
    pub url: String,
    pub secret: String,
    pub event: String,
    pub event_id: String,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i32,
}

/// How one attempt ended, for [`Store::record_attempt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptEnd {
    /// 2xx: done.
    Delivered { status: i32 },
    /// Try again at `next_at` (epoch ms).
    Retry {
        status: Option<i32>,
        error: String,
        next_at: i64,
    },
    /// No more attempts (the schedule is used up, or the target is refused for good).
    GiveUp { status: Option<i32>, error: String },
}

const WEBHOOK_COLUMNS: &str = "id, batch_id, url, events, created_at, created_by";
const DELIVERY_COLUMNS: &str = "id, webhook_id, event, event_id, state, attempts, created_at, \
     next_attempt_at, last_attempt_at, last_status, last_error, delivered_at";

/// Inserts one delivery per webhook of `$1` subscribed to `$2` (`$3` event id, `$4` body,
/// `$5` now). Subscriptions are a comma list; the names contain no LIKE wildcards.
const ENQUEUE: &str = "INSERT INTO delivery (webhook_id, event, event_id, body, created_at, \
     next_attempt_at) SELECT w.id, $2, $3, $4, $5, $5 FROM webhook w \
     WHERE w.batch_id = $1 AND (',' || w.events || ',') LIKE '%,' || $2 || ',%'";

/// Reads a webhook row (columns as in `WEBHOOK_COLUMNS`).
macro_rules! webhook_from_row {
    ($row:expr) => {{
        let row = $row;
        let events: String = row.try_get("events")?;
        Webhook {
            id: row.try_get("id")?,
            batch_id: row.try_get("batch_id")?,
            url: row.try_get("url")?,
            events: events
                .split(',')
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect(),
            created_at: row.try_get("created_at")?,
            created_by: row.try_get("created_by")?,
        }
    }};
}

/// Reads a delivery row (columns as in `DELIVERY_COLUMNS`).
macro_rules! delivery_from_row {
    ($row:expr) => {{
        let row = $row;
        Delivery {
            id: row.try_get("id")?,
            webhook_id: row.try_get("webhook_id")?,
            event: row.try_get("event")?,
            event_id: row.try_get("event_id")?,
            state: row.try_get("state")?,
            attempts: row.try_get("attempts")?,
            created_at: row.try_get("created_at")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            last_attempt_at: row.try_get("last_attempt_at")?,
            last_status: row.try_get("last_status")?,
            last_error: row.try_get("last_error")?,
            delivered_at: row.try_get("delivered_at")?,
        }
    }};
}

/// A new event id: `evt_` and 32 hex digits.
fn new_event_id() -> String {
    format!("evt_{}", crate::auth::token::random_hex(16))
}

/// The JSON body of an event: the same bytes on every attempt (they are signed).
pub fn event_body(
    event_id: &str,
    event: &str,
    batch_id: i64,
    at: i64,
    data: &serde_json::Value,
) -> String {
    serde_json::json!({
        "id": event_id,
        "type": event,
        "created_at": at,
        "batch_id": batch_id,
        "data": data,
    })
    .to_string()
}

/// Writes an event's deliveries inside the caller's transaction (the outbox insert). The
/// one entry point for every event source: `apply_deltas!` (`batch.finished`) and the
/// code that stores a `change` row (`task.changed`) call it with their open transaction,
/// so the event exists exactly when what it reports committed.
pub(crate) trait Outbox {
    /// One delivery per webhook of `batch_id` subscribed to `event`; returns how many.
    async fn enqueue_event(
        &mut self,
        batch_id: i64,
        event: &str,
        data: &serde_json::Value,
        now: i64,
    ) -> StoreResult<u64>;

    /// `batch.finished` for `batch_id`, whose last unfinished task just finished in this
    /// transaction (called by `apply_deltas!`); the data is the batch's totals as they now
    /// stand. Costs one indexed look-up when the batch has no webhook.
    async fn batch_finished(&mut self, batch_id: i64, now: i64) -> StoreResult<u64>;

    /// `task.changed` for each stored `change` row (`(batch_id, data)`, called where the
    /// rows are inserted): one look-up for the batches that have webhooks, then one
    /// outbox insert per change of those batches.
    async fn task_changes(
        &mut self,
        changes: &[(i64, serde_json::Value)],
        now: i64,
    ) -> StoreResult<u64>;
}

/// The `batch.finished` data of a `FINISHED_BATCH` row: the batch's totals as they stand
/// right after the update that finished it.
macro_rules! batch_finished_data {
    ($row:expr) => {{
        let row = $row;
        let word_totals: Option<serde_json::Value> =
            crate::store::json_column(row.try_get("word_totals")?, "word_totals")?;
        serde_json::json!({
            "batch": {
                "id": row.try_get::<i64, _>("id")?,
                "label": row.try_get::<Option<String>, _>("label")?,
                "total": row.try_get::<i64, _>("total")?,
                "finished": row.try_get::<i64, _>("finished")?,
                "ok": row.try_get::<i64, _>("ok")?,
                "http_error": row.try_get::<i64, _>("http_error")?,
                "failed": row.try_get::<i64, _>("failed")?,
                "truncated": row.try_get::<i64, _>("truncated")?,
                "cancelled": row.try_get::<i64, _>("cancelled")?,
                "words_total": row.try_get::<i64, _>("words_total")?,
                "word_totals": word_totals.unwrap_or_else(|| serde_json::json!({})),
                "finished_at": row.try_get::<Option<i64>, _>("finished_at")?,
            }
        })
    }};
}

macro_rules! impl_outbox {
    ($conn:ty) => {
        impl Outbox for $conn {
            async fn enqueue_event(
                &mut self,
                batch_id: i64,
                event: &str,
                data: &serde_json::Value,
                now: i64,
            ) -> StoreResult<u64> {
                let event_id = new_event_id();
                let body = event_body(&event_id, event, batch_id, now, data);
                let done = sqlx::query(ENQUEUE)
                    .bind(batch_id)
                    .bind(event)
                    .bind(&event_id)
                    .bind(&body)
                    .bind(now)
                    .execute(&mut *self)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn batch_finished(&mut self, batch_id: i64, now: i64) -> StoreResult<u64> {
                let hooked: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM webhook WHERE batch_id = $1 LIMIT 1")
                        .bind(batch_id)
                        .fetch_optional(&mut *self)
                        .await?;
                if hooked.is_none() {
                    return Ok(0);
                }
                let Some(row) = sqlx::query(FINISHED_BATCH)
                    .bind(batch_id)
                    .fetch_optional(&mut *self)
                    .await?
                else {
                    return Ok(0);
                };
                let data = batch_finished_data!(&row);
                self.enqueue_event(batch_id, "batch.finished", &data, now)
                    .await
            }

            async fn task_changes(
                &mut self,
                changes: &[(i64, serde_json::Value)],
                now: i64,
            ) -> StoreResult<u64> {
                if changes.is_empty() {
                    return Ok(0);
                }
                let mut batches: Vec<i64> = changes.iter().map(|(b, _)| *b).collect();
                batches.sort_unstable();
                batches.dedup();
                let mut hooked = std::collections::HashSet::new();
                for chunk in batches.chunks(super::CHUNK) {
                    let mut qb = QueryBuilder::new(
                        "SELECT DISTINCT batch_id FROM webhook WHERE batch_id IN (",
                    );
                    push_ids(&mut qb, chunk);
                    qb.push(")");
                    for row in qb.build().fetch_all(&mut *self).await? {
                        hooked.insert(row.try_get::<i64, _>(0)?);
                    }
                }
                let mut n = 0;
                for (batch, data) in changes {
                    if hooked.contains(batch) {
                        n += self
                            .enqueue_event(*batch, "task.changed", data, now)
                            .await?;
                    }
                }
                Ok(n)
            }
        }
    };
}

impl_outbox!(sqlx::PgConnection);
impl_outbox!(sqlx::SqliteConnection);

/// The totals a `batch.finished` event carries.
const FINISHED_BATCH: &str = "SELECT id, label, total, finished, ok, http_error, failed, \
     truncated, cancelled, words_total, word_totals, finished_at FROM batch WHERE id = $1";

impl Store {
    /// Stores a webhook for an existing batch (at most [`MAX_WEBHOOKS_PER_BATCH`]).
    pub async fn create_webhook(&self, w: &NewWebhook) -> Result<Webhook, WebhookError> {
        let now = now_ms();
        let events = w.events.join(",");
        let sql = format!(
            "INSERT INTO webhook (batch_id, url, events, secret, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {WEBHOOK_COLUMNS}"
        );
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // The batch row, locked on Postgres (SQLite's writer lock is taken by the
            // first write), so two creations cannot both pass the limit.
            let lock = if matches!(self, Store::Postgres(_)) {
                " FOR UPDATE"
            } else {
                ""
            };
            let found = sqlx::query(&format!("SELECT id FROM batch WHERE id = $1{lock}"))
                .bind(w.batch_id)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(WebhookError::NoBatch);
            }
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook WHERE batch_id = $1")
                .bind(w.batch_id)
                .fetch_one(&mut *tx)
                .await?;
            if n >= MAX_WEBHOOKS_PER_BATCH {
                return Err(WebhookError::TooMany);
            }
            let row = sqlx::query(&sql)
                .bind(w.batch_id)
                .bind(&w.url)
                .bind(&events)
                .bind(&w.secret)
                .bind(now)
                .bind(&w.created_by)
                .fetch_one(&mut *tx)
                .await?;
            let hook = webhook_from_row!(&row);
            tx.commit().await?;
            Ok(hook)
        })
    }

    /// One webhook, or None.
    pub async fn get_webhook(&self, id: i64) -> StoreResult<Option<Webhook>> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhook WHERE id = $1");
        on_pool!(self, |pool| {
            match sqlx::query(&sql).bind(id).fetch_optional(pool).await? {
                Some(row) => Ok(Some(webhook_from_row!(&row))),
                None => Ok(None),
            }
        })
    }

    /// A batch's webhooks, oldest first (at most [`MAX_WEBHOOKS_PER_BATCH`]).
    pub async fn batch_webhooks(&self, batch_id: i64) -> StoreResult<Vec<Webhook>> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhook WHERE batch_id = $1 ORDER BY id");
        on_pool!(self, |pool| {
            let rows = sqlx::query(&sql).bind(batch_id).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(webhook_from_row!(row));
            }
            Ok(out)
        })
    }

    /// Deletes a webhook and its delivery log (pending deliveries are not sent). False when
    /// there was none.
    pub async fn delete_webhook(&self, id: i64) -> StoreResult<bool> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // Explicit, not only ON DELETE CASCADE: SQLite enforces it only with
            // foreign_keys on, which a hand-opened database may not have.
            sqlx::query("DELETE FROM delivery WHERE webhook_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let n = sqlx::query("DELETE FROM webhook WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    /// A webhook's delivery log, newest first (keyset paging by id).
    pub async fn deliveries(
        &self,
        webhook_id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        let limit = limit.clamp(1, 500);
        on_pool!(self, |pool| {
            let mut qb = QueryBuilder::new(format!(
                "SELECT {DELIVERY_COLUMNS} FROM delivery WHERE webhook_id = "
            ));
            qb.push_bind(webhook_id);
            if let Some(b) = before {
                qb.push(" AND id < ").push_bind(b);
            }
            qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
            let rows = qb.build().fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(delivery_from_row!(row));
            }
            Ok(out)
        })
    }

    /// Queues a `webhook.test` event for one webhook (the "send a test event" button).
    /// Returns the delivery, or None when the webhook does not exist.
    pub async fn enqueue_test_event(&self, webhook_id: i64) -> StoreResult<Option<Delivery>> {
        let now = now_ms();
        let Some(hook) = self.get_webhook(webhook_id).await? else {
            return Ok(None);
        };
        let event_id = new_event_id();
        let data =
            serde_json::json!({"webhook_id": hook.id, "message": "a test event from wordtally"});
        let body = event_body(&event_id, TEST_EVENT, hook.batch_id, now, &data);
        let sql = format!(
            "INSERT INTO delivery (webhook_id, event, event_id, body, created_at, next_attempt_at) \
             SELECT id, $2, $3, $4, $5, $5 FROM webhook WHERE id = $1 RETURNING {DELIVERY_COLUMNS}"
        );
        on_pool!(self, |pool| {
            let row = sqlx::query(&sql)
                .bind(webhook_id)
                .bind(TEST_EVENT)
                .bind(&event_id)
                .bind(&body)
                .bind(now)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(row) => Ok(Some(delivery_from_row!(&row))),
                None => Ok(None),
            }
        })
    }

    /// Claims up to `limit` due deliveries for `lease_ms` (their `next_attempt_at` moves past
    /// the lease, so no other process takes them meanwhile) and returns what sending needs.
    pub async fn claim_deliveries(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<DueDelivery>> {
        let skip_locked = match self {
            Store::Postgres(_) => " FOR UPDATE SKIP LOCKED",
            Store::Sqlite(_) => "",
        };
        let claim = format!(
            "UPDATE delivery SET next_attempt_at = $1 WHERE id IN (SELECT id FROM delivery \
             WHERE state = 'pending' AND next_attempt_at <= $2 ORDER BY next_attempt_at \
             LIMIT $3{skip_locked}) AND state = 'pending' AND next_attempt_at <= $2 \
             RETURNING id, webhook_id, event, event_id, body, attempts"
        );
        on_pool!(self, |pool| {
            let rows = sqlx::query(&claim)
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit.max(1))
                .fetch_all(pool)
                .await?;
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            let mut hook_ids: Vec<i64> = rows
                .iter()
                .map(|r| r.try_get("webhook_id"))
                .collect::<Result<_, _>>()?;
            hook_ids.sort_unstable();
            hook_ids.dedup();
            let mut qb = QueryBuilder::new("SELECT id, url, secret FROM webhook WHERE id IN (");
            push_ids(&mut qb, &hook_ids);
            qb.push(")");
            let mut hooks = std::collections::HashMap::new();
            for r in qb.build().fetch_all(pool).await? {
                let id: i64 = r.try_get("id")?;
                let url: String = r.try_get("url")?;
                let secret: String = r.try_get("secret")?;
                hooks.insert(id, (url, secret));
            }
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let webhook_id: i64 = r.try_get("webhook_id")?;
                // Deleted meanwhile: its deliveries went with it.
                let Some((url, secret)) = hooks.get(&webhook_id) else {
                    continue;
                };
                out.push(DueDelivery {
                    id: r.try_get("id")?,
                    webhook_id,
                    url: url.clone(),
                    secret: secret.clone(),
                    event: r.try_get("event")?,
                    event_id: r.try_get("event_id")?,
                    body: r.try_get("body")?,
                    attempts: r.try_get("attempts")?,
                });
            }
            Ok(out)
        })
    }

    /// Records how an attempt ended. Guarded on `pending`: a late report of an attempt
    /// whose lease ran out and whose delivery another process finished changes nothing.
    pub async fn record_attempt(&self, id: i64, at: i64, end: &AttemptEnd) -> StoreResult<()> {
        let (state, status, error, next_at, delivered_at) = match end {
            AttemptEnd::Delivered { status } => ("delivered", Some(*status), None, None, Some(at)),
            AttemptEnd::Retry {
                status,
                error,
                next_at,
            } => (
                "pending",
                *status,
                Some(error.as_str()),
                Some(*next_at),
                None,
            ),
            AttemptEnd::GiveUp { status, error } => {
                ("failed", *status, Some(error.as_str()), None, None)
            }
        };
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE delivery SET state = $1, attempts = attempts + 1, last_attempt_at = $2, \
                 last_status = $3, last_error = $4, next_attempt_at = $5, delivered_at = $6 \
                 WHERE id = $7 AND state = 'pending'",
            )
            .bind(state)
            .bind(at)
            .bind(status)
            .bind(error)
            .bind(next_at)
            .bind(delivered_at)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

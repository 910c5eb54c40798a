//! The tasks page (`GET /tasks`), its polled partial (`GET /tasks/table`), and the form
//! submission (`POST /tasks`), which works with htmx (fragment swapped in place, the table
//! told to refresh) and without JavaScript (the whole page rendered again).
//!
//! Polling is cheap: the partial's URL carries the change counter it was rendered at, and
//! while the `task_stats.version` is unchanged the answer is `204 No Content` after reading
//! one row. Otherwise one page of rows is read (keyset paging), never the whole table.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

use super::submit::{Rejected, submit};
use super::view::{Counters, Row};
use super::{AppState, Error};
use crate::count::{CountOptions, Scope};
use crate::model::{TaskStatus, TaskView};
use crate::outcome::Outcome;
use crate::store::TaskFilter;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tasks", get(page).post(post_form))
        .route("/tasks/table", get(partial))
}

/// Filters and paging from the query string. Everything optional; empty = not set.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListQuery {
    pub status: Option<String>,
    pub outcome: Option<String>,
    /// Only the tasks of this batch (an id).
    pub batch: Option<String>,
    pub q: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    /// The change counter the client's table was rendered at (poll only).
    pub v: Option<i64>,
    /// The page the polled table lives on (`/batches/{id}`), for its links (poll only).
    pub base: Option<String>,
    /// Only tasks whose current result counted this word or pattern (count > 0).
    pub contains: Option<String>,
    /// Only tasks whose current result counted this word or pattern zero times.
    pub absent: Option<String>,
}

/// `/batches/{digits}`: the only other page a task table lives on.
fn is_batch_path(p: &str) -> bool {
    p.strip_prefix("/batches/")
        .is_some_and(|id| !id.is_empty() && id.len() < 20 && id.bytes().all(|b| b.is_ascii_digit()))
}

/// A `contains` / `absent` value: a word or pattern as the task counts it (a key of the
/// result's `counts`), at most as long as a pattern may be.
fn count_key(s: &Option<String>, name: &str) -> Result<Option<String>, Error> {
    let Some(v) = nonempty(s) else {
        return Ok(None);
    };
    if v.chars().count() > crate::count::MAX_PATTERN_CHARS {
        return Err(Error::BadRequest(format!(
            "`{name}` must be at most {} characters long",
            crate::count::MAX_PATTERN_CHARS
        )));
    }
    Ok(Some(v.to_string()))
}

pub(crate) fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl ListQuery {
    pub fn filter(&self, limit: i64) -> Result<TaskFilter, Error> {
        let id = |s: &Option<String>, name: &str| -> Result<Option<i64>, Error> {
            nonempty(s)
                .map(|v| {
                    v.parse::<i64>().map_err(|_| {
                        Error::BadRequest(format!("`{name}` must be a task id (a whole number)"))
                    })
                })
                .transpose()
        };
        Ok(TaskFilter {
            status: nonempty(&self.status)
                .map(|s| s.parse::<TaskStatus>())
                .transpose()
                .map_err(Error::BadRequest)?,
            outcome: nonempty(&self.outcome)
                .map(|s| s.parse::<Outcome>())
                .transpose()
                .map_err(Error::BadRequest)?,
            batch: nonempty(&self.batch)
                .map(|v| {
                    v.parse::<i64>().map_err(|_| {
                        Error::BadRequest("`batch` must be a batch id (a whole number)".into())
                    })
                })
                .transpose()?,
            search: nonempty(&self.q).map(|s| s.chars().take(200).collect()),
            before: id(&self.before, "before")?,
            after: id(&self.after, "after")?,
            limit,
            oldest_first: false,
            contains: count_key(&self.contains, "contains")?,
            absent: count_key(&self.absent, "absent")?,
        })
    }
}

/// The table fragment (also embedded in the page).
pub struct TableView {
    pub rows: Vec<Row>,
    pub counters: Counters,
    pub poll_url: String,
    pub status: String,
    pub outcome: String,
    /// The batch the table is limited to ("" = all tasks).
    pub batch: String,
    pub q: String,
    /// The "contains" / "absent" filters (a word or pattern; "" = none).
    pub contains: String,
    pub absent: String,
    /// The current filter as a query string (for exports and bulk actions).
    pub filter_qs: String,
    /// Where this table lives (`/tasks` or `/batches/{id}`), for its links.
    pub base: String,
    pub older_url: Option<String>,
    pub newer_url: Option<String>,
    pub all_url: String,
    pub filtered: bool,
}

/// The form's current values (refilled after a submission).
pub struct FormView {
    pub addresses: String,
    pub label: String,
    pub word: String,
    pub whole_word: bool,
    pub case_sensitive: bool,
    pub raw: bool,
    /// Regions and patterns (DESIGN §17), as typed: one selector / pattern per line.
    pub within: String,
    pub outside: String,
    pub patterns: String,
    /// The crawl part of the form (DESIGN §15), kept as typed.
    pub crawl: CrawlFormView,
}

/// "Crawl from these addresses" and its rules, as typed.
#[derive(Debug, Default)]
pub struct CrawlFormView {
    /// The form asks for a crawl instead of a list.
    pub on: bool,
    pub follow: String,
    pub max_pages: String,
    pub max_depth: String,
    pub include: String,
    pub exclude: String,
    pub ignore_robots: bool,
    pub sitemaps: String,
}

impl Default for FormView {
    fn default() -> Self {
        let d = CountOptions::default();
        FormView {
            addresses: String::new(),
            label: String::new(),
            word: d.word,
            whole_word: d.whole_word,
            case_sensitive: d.case_sensitive,
            raw: d.scope == Scope::Raw,
            within: String::new(),
            outside: String::new(),
            patterns: String::new(),
            crawl: CrawlFormView::default(),
        }
    }
}

/// What a submission did, shown above the table.
pub struct SubmitView {
    pub batch_id: Option<i64>,
    pub queued: usize,
    pub waiting: usize,
    pub rejected: Vec<Rejected>,
    pub notice: Option<String>,
    /// The batch is a crawl (it grows as pages are fetched).
    pub crawl: bool,
}

#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPage {
    table: TableView,
    form: FormView,
    result: Option<SubmitView>,
    oob: bool,
}

#[derive(Template)]
#[template(path = "tasks_partial.html")]
struct TasksPartial {
    table: TableView,
}

#[derive(Template)]
#[template(path = "submit_result.html")]
struct SubmitFragment {
    form: FormView,
    result: Option<SubmitView>,
    oob: bool,
}

/// Renders a template; a failure is a logged 500, never an empty 200.
pub(crate) fn render<T: Template>(t: &T) -> Result<Html<String>, Error> {
    t.render()
        .map(Html)
        .map_err(|e| Error::Internal(format!("template: {e}")))
}

pub(crate) fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// The task table for the filter `q`, living on the page `base` (`/tasks` or a batch's
/// page), whose own links keep `base`.
pub(crate) async fn table_view(
    state: &AppState,
    q: &ListQuery,
    base: &str,
) -> Result<(TableView, i64), Error> {
    let filter = q.filter(state.page_size)?;
    // Stats first: a change landing between the two reads then shows up in the next poll
    // (the version we hand out is never newer than the rows we show).
    let stats = state.store.stats().await?;
    let views: Vec<TaskView> = state.store.list_tasks(&filter).await?;
    let status = filter
        .status
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    let outcome = filter
        .outcome
        .map(|o| o.as_str().to_string())
        .unwrap_or_default();
    let batch = filter.batch.map(|b| b.to_string()).unwrap_or_default();
    let search = filter.search.clone().unwrap_or_default();
    let contains = filter.contains.clone().unwrap_or_default();
    let absent = filter.absent.clone().unwrap_or_default();
    // On a batch's page the batch is implied by the path.
    let in_batch_page = base != "/tasks";
    let link_batch = if in_batch_page { "" } else { batch.as_str() };
    let keep = [
        ("status", status.as_str()),
        ("outcome", outcome.as_str()),
        ("batch", link_batch),
        ("q", search.as_str()),
        ("contains", contains.as_str()),
        ("absent", absent.as_str()),
    ];
    let with = |extra: (&str, &str)| {
        let mut pairs = keep.to_vec();
        pairs.push(extra);
        query_string(&pairs)
    };
    let page_full = views.len() as i64 >= filter.limit;
    let older_url = match views.last() {
        Some(last) if page_full || filter.after.is_some() => Some(format!(
            "{base}?{}",
            with(("before", &last.task.id.to_string()))
        )),
        _ => None,
    };
    let newer_url = match views.first() {
        Some(first) if filter.before.is_some() || (filter.after.is_some() && page_full) => Some(
            format!("{base}?{}", with(("after", &first.task.id.to_string()))),
        ),
        _ => None,
    };
    let before = filter.before.map(|b| b.to_string()).unwrap_or_default();
    let after = filter.after.map(|a| a.to_string()).unwrap_or_default();
    let version = stats.version.to_string();
    let poll_url = format!(
        "/tasks/table?{}",
        query_string(&[
            ("status", status.as_str()),
            ("outcome", outcome.as_str()),
            ("batch", batch.as_str()),
            ("q", search.as_str()),
            ("contains", contains.as_str()),
            ("absent", absent.as_str()),
            ("before", &before),
            ("after", &after),
            ("v", &version),
            ("base", if in_batch_page { base } else { "" }),
        ])
    );
    let filter_qs = query_string(&[
        ("status", status.as_str()),
        ("outcome", outcome.as_str()),
        ("batch", batch.as_str()),
        ("q", search.as_str()),
        ("contains", contains.as_str()),
        ("absent", absent.as_str()),
    ]);
    let filtered = filter.status.is_some()
        || filter.contains.is_some()
        || filter.absent.is_some()
        || filter.outcome.is_some()
        || filter.search.is_some()
        || (filter.batch.is_some() && !in_batch_page);
    Ok((
        TableView {
            rows: views.iter().map(Row::from_view).collect(),
            counters: stats.into(),
            poll_url,
            status,
            outcome,
            batch,
            q: search,
            contains,
            absent,
            filter_qs,
            base: base.to_string(),
            older_url,
            newer_url,
            all_url: base.to_string(),
            filtered,
        },
        stats.version,
    ))
}

async fn page(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Error> {
    let (table, _) = table_view(&state, &q, "/tasks").await?;
    let page = TasksPage {
        table,
        form: FormView::default(),
        result: None,
        oob: false,
    };
    Ok(render(&page)?.into_response())
}

async fn partial(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Error> {
    if let Some(v) = q.v {
        let stats = state.store.stats().await?;
        if stats.version == v {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
    let base = match nonempty(&q.base) {
        // Only a batch page may be named as the table's home (it is put into links).
        Some(b) if is_batch_path(b) => b.to_string(),
        _ => "/tasks".to_string(),
    };
    let (table, _) = table_view(&state, &q, &base).await?;
    Ok(render(&TasksPartial { table })?.into_response())
}

/// The form's fields. Checkboxes are present only when ticked.
#[derive(Debug, Deserialize)]
pub struct SubmitForm {
    #[serde(default)]
    pub addresses: String,
    pub label: Option<String>,
    pub word: Option<String>,
    pub whole_word: Option<String>,
    pub case_sensitive: Option<String>,
    pub scope: Option<String>,
    /// "Only inside …": CSS selectors, one per line.
    pub within: Option<String>,
    /// "Never inside …": CSS selectors, one per line.
    pub outside: Option<String>,
    /// "Count a pattern": regular expressions, one per line.
    pub patterns: Option<String>,
    /// `crawl` for "Crawl from these addresses"; anything else counts the list.
    pub mode: Option<String>,
    pub follow: Option<String>,
    pub max_pages: Option<String>,
    pub max_depth: Option<String>,
    /// One URL pattern per line.
    pub include: Option<String>,
    pub exclude: Option<String>,
    pub ignore_robots: Option<String>,
    /// Sitemap addresses, one per line, or `auto`.
    pub sitemaps: Option<String>,
}

/// The non-blank lines of a textarea, trimmed of the line ends (a pattern's own spaces
/// matter, so only `\r` and blank lines go).
fn lines_of(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

async fn post_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SubmitForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Error> {
    let Form(f) = form.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge(format!(
            "the submission is larger than {} KiB; split it",
            super::MAX_BODY_BYTES / 1024
        )),
        _ => Error::BadRequest(e.body_text()),
    })?;
    let htmx = headers.contains_key("hx-request");
    let mut form = FormView {
        addresses: f.addresses.clone(),
        label: f.label.clone().unwrap_or_default(),
        word: f
            .word
            .clone()
            .unwrap_or_else(|| CountOptions::default().word),
        whole_word: f.whole_word.is_some(),
        case_sensitive: f.case_sensitive.is_some(),
        raw: f.scope.as_deref() == Some("raw"),
        within: f.within.clone().unwrap_or_default(),
        outside: f.outside.clone().unwrap_or_default(),
        patterns: f.patterns.clone().unwrap_or_default(),
        crawl: CrawlFormView {
            on: f.mode.as_deref() == Some("crawl"),
            follow: f.follow.clone().unwrap_or_default(),
            max_pages: f.max_pages.clone().unwrap_or_default(),
            max_depth: f.max_depth.clone().unwrap_or_default(),
            include: f.include.clone().unwrap_or_default(),
            exclude: f.exclude.clone().unwrap_or_default(),
            ignore_robots: f.ignore_robots.is_some(),
            sitemaps: f.sitemaps.clone().unwrap_or_default(),
        },
    };
    let lines: Vec<String> = f.addresses.lines().map(str::to_string).collect();
    let scope = match f.scope.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(Scope::Text),
        Some(s) => s.parse::<Scope>(),
    };
    let outcome = match scope {
        Err(e) => Err(Error::Unprocessable(e)),
        Ok(_) if lines.iter().all(|l| l.trim().is_empty()) => Err(Error::Unprocessable(
            "paste at least one address (one per line)".into(),
        )),
        Ok(scope) => {
            // Several words: separated by commas or one per line.
            let words: Vec<String> = form
                .word
                .split([',', '\n'])
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect();
            let mut options = CountOptions {
                word: form.word.trim().to_string(),
                case_sensitive: form.case_sensitive,
                whole_word: form.whole_word,
                scope,
                words: Vec::new(),
                within: lines_of(&form.within)
                    .iter()
                    .map(|l| l.trim().to_string())
                    .collect(),
                outside: lines_of(&form.outside)
                    .iter()
                    .map(|l| l.trim().to_string())
                    .collect(),
                patterns: lines_of(&form.patterns),
            };
            if words.len() > 1 {
                options.set_words(words);
            }
            if form.crawl.on {
                super::crawls::submit_form(&state, &f, &lines, options).await
            } else {
                submit(&state, &lines, options, true, f.label.as_deref()).await
            }
        }
    };
    let result = match outcome {
        Ok(o) => {
            let waiting = o
                .accepted
                .iter()
                .filter(|t| t.status == TaskStatus::NotStarted)
                .count();
            // Keep only the rejected lines in the textarea, for fixing.
            form.addresses = o
                .rejected
                .iter()
                .map(|r| {
                    // As pasted, but no raw control characters into the HTML (a browser
                    // would show U+FFFD for a NUL anyway).
                    let line = lines
                        .get(r.line - 1)
                        .map(String::as_str)
                        .unwrap_or_default();
                    line.chars()
                        .map(|c| {
                            if c.is_control() && c != '\t' {
                                '\u{fffd}'
                            } else {
                                c
                            }
                        })
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join("\n");
            if o.batch_id.is_some() {
                // A new batch: the next one gets a label of its own.
                form.label.clear();
            }
            SubmitView {
                batch_id: o.batch_id,
                queued: o.accepted.len() - waiting,
                waiting,
                rejected: o.rejected,
                notice: None,
                crawl: form.crawl.on,
            }
        }
        // The person's mistakes are shown in the form, not as an error page.
        Err(e @ (Error::Unprocessable(_) | Error::TooLarge(_) | Error::BadRequest(_))) => {
            SubmitView {
                batch_id: None,
                queued: 0,
                waiting: 0,
                rejected: Vec::new(),
                notice: Some(e.to_string()),
                crawl: false,
            }
        }
        Err(e) => return Err(e),
    };
    if htmx {
        let frag = SubmitFragment {
            form,
            result: Some(result),
            oob: true,
        };
        let mut res = render(&frag)?.into_response();
        res.headers_mut()
            .insert("hx-trigger", HeaderValue::from_static("tasks-changed"));
        return Ok(res);
    }
    let (table, _) = table_view(&state, &ListQuery::default(), "/tasks").await?;
    let page = TasksPage {
        table,
        form,
        result: Some(result),
        oob: false,
    };
    Ok(render(&page)?.into_response())
}

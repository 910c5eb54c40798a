//! Crawl submission (**submit** → queue, DESIGN §15): `POST /api/crawls`, and the check
//! shared with the form's "Crawl from these addresses". A crawl is stored as a batch of
//! kind `crawl` with its rules and its seeds (start pages, sitemaps, robots.txt files to
//! read for sitemaps), then its seeds are queued like any task; the DB writer grows it.
//! The web server never fetches anything: sitemaps and robots.txt are read by workers.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::api::{ApiError, json_rejection};
use super::submit::{Rejected, clean_label};
use super::{AppState, Error, actions};
use crate::address::normalize_address;
use crate::count::{CountOptions, Scope};
use crate::crawl::normalize::normalize;
use crate::crawl::rules::{CrawlRules, DEFAULT_LINKS_PER_PAGE, DEFAULT_MAX_PAGES, Follow};
use crate::model::{Task, TaskRole};
use crate::store::crawls::{Seed, StoredCrawl};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/crawls", post(create))
}

/// Most start and sitemap addresses of one crawl.
pub const MAX_SEEDS: usize = 100;

/// `sitemaps`: a list of sitemap addresses, or `"auto"` (read the `Sitemap:` lines of each
/// start address's robots.txt).
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Sitemaps {
    List(Vec<String>),
    #[schema(value_type = String, example = "auto")]
    Auto(String),
}

/// `POST /api/crawls` body. Unknown fields are refused (a typo is an error, not a silently
/// ignored rule).
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"start": ["http://127.0.0.1:8000/index.html"], "word": "python", "follow": "host", "max_pages": 1000}))]
pub struct CreateCrawl {
    /// Addresses the crawl starts from (depth 0).
    #[serde(default)]
    pub start: Vec<String>,
    /// Sitemap addresses whose URLs (in scope) are depth-0 seeds, or `"auto"`.
    pub sitemaps: Option<Sitemaps>,
    pub word: Option<String>,
    pub words: Option<Vec<String>>,
    pub case_sensitive: Option<bool>,
    pub whole_word: Option<bool>,
    pub scope: Option<Scope>,
    /// `host` (default), `domain` or `prefix`.
    pub follow: Option<Follow>,
    /// Pages stored at most (default 10,000; at most the server's `CRAWL_MAX_PAGES`).
    pub max_pages: Option<u64>,
    /// Links followed at most this many steps from a start (default: no limit).
    pub max_depth: Option<u32>,
    /// Links kept per page (default 10,000).
    pub links_per_page: Option<u32>,
    /// URL regular expressions: only matching links are followed.
    pub include: Option<Vec<String>>,
    /// URL regular expressions: matching links are never followed.
    pub exclude: Option<Vec<String>>,
    /// Obey robots.txt, `Crawl-delay` and nofollow (default true).
    pub obey_robots: Option<bool>,
    pub label: Option<String>,
    /// Regions and patterns, as on `POST /api/tasks` (DESIGN §17).
    pub within: Option<Vec<String>>,
    pub outside: Option<Vec<String>>,
    pub patterns: Option<Vec<String>>,
}

/// `POST /api/crawls` answer: the crawl's batch, its seed tasks, a reason per refused
/// address.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedCrawl {
    batch_id: i64,
    tasks: Vec<SeedTask>,
    rejected: Vec<Rejected>,
}

/// A seed of a new crawl.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SeedTask {
    id: i64,
    address: String,
    #[schema(value_type = crate::model::TaskStatus)]
    status: &'static str,
    /// `sitemap` or `robots` for seeds that are read for URLs, absent for pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<TaskRole>,
}

/// A checked crawl, ready to store.
pub struct Checked {
    pub options: CountOptions,
    pub crawl: StoredCrawl,
    pub seeds: Vec<Seed>,
    pub rejected: Vec<Rejected>,
    pub label: Option<String>,
}

/// Checks a crawl request; every problem is a 4xx with a reason, and nothing is stored.
pub fn check(req: &CreateCrawl, ceiling: u64) -> Result<Checked, Error> {
    let d = CountOptions::default();
    let mut options = CountOptions {
        word: req.word.clone().unwrap_or(d.word),
        case_sensitive: req.case_sensitive.unwrap_or(d.case_sensitive),
        whole_word: req.whole_word.unwrap_or(d.whole_word),
        scope: req.scope.unwrap_or(d.scope),
        within: req.within.clone().unwrap_or_default(),
        outside: req.outside.clone().unwrap_or_default(),
        patterns: req.patterns.clone().unwrap_or_default(),
        ..CountOptions::default()
    };
    if let Some(words) = &req.words {
        if req.word.is_some() {
            return Err(Error::Unprocessable(
                "give either `word` or `words`, not both".into(),
            ));
        }
        crate::count::validate_words(words).map_err(Error::Unprocessable)?;
        options.set_words(words.clone());
    }
    options.validate_all().map_err(Error::Unprocessable)?;
    let label = clean_label(req.label.as_deref())?;
    let ceiling = ceiling.max(1);
    let mut rules = CrawlRules {
        follow: req.follow.unwrap_or_default(),
        max_pages: req.max_pages.unwrap_or(DEFAULT_MAX_PAGES.min(ceiling)),
        max_depth: req.max_depth,
        links_per_page: req.links_per_page.unwrap_or(DEFAULT_LINKS_PER_PAGE),
        include: req.include.clone().unwrap_or_default(),
        exclude: req.exclude.clone().unwrap_or_default(),
        obey_robots: req.obey_robots.unwrap_or(true),
        ..CrawlRules::default()
    };
    rules.validate(ceiling).map_err(Error::Unprocessable)?;

    let (sitemaps, auto) = match &req.sitemaps {
        None => (Vec::new(), false),
        Some(Sitemaps::List(l)) => (l.clone(), false),
        Some(Sitemaps::Auto(s)) if s == "auto" => (Vec::new(), true),
        Some(Sitemaps::Auto(s)) => {
            return Err(Error::Unprocessable(format!(
                "`sitemaps` is a list of addresses or \"auto\", not {:?}",
                s.chars().take(40).collect::<String>()
            )));
        }
    };
    if req.start.is_empty() && sitemaps.is_empty() {
        return Err(Error::Unprocessable(
            "give at least one `start` address or one sitemap address".into(),
        ));
    }
    if auto && req.start.is_empty() {
        return Err(Error::Unprocessable(
            "`sitemaps: \"auto\"` reads the robots.txt of the start addresses: give `start`".into(),
        ));
    }
    if req.start.len() + sitemaps.len() > MAX_SEEDS {
        return Err(Error::TooLarge(format!(
            "at most {MAX_SEEDS} start and sitemap addresses per crawl"
        )));
    }
    let mut rejected = Vec::new();
    let mut parse = |i: usize, raw: &String| match normalize_address(raw)
        .map_err(|e| e.to_string())
        .and_then(|u| normalize(u, rules.max_url_len).map_err(|e| e.to_string()))
    {
        Ok(u) => Some(u),
        Err(e) => {
            rejected.push(Rejected {
                line: i + 1,
                address: raw.chars().take(200).collect(),
                error: e,
            });
            None
        }
    };
    let starts: Vec<url::Url> = req
        .start
        .iter()
        .enumerate()
        .filter_map(|(i, s)| parse(i, s))
        .collect();
    let maps: Vec<url::Url> = sitemaps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| parse(req.start.len() + i, s))
        .collect();
    if starts.is_empty() && maps.is_empty() {
        return Err(Error::Unprocessable(format!(
            "no valid start or sitemap address: {}",
            rejected
                .iter()
                .map(|r| r.error.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    // The scope follows the start addresses; a sitemap-only crawl follows its sitemaps'.
    rules.set_roots(if starts.is_empty() { &maps } else { &starts });
    let mut seeds: Vec<Seed> = starts
        .iter()
        .map(|u| Seed {
            url: u.to_string(),
            role: None,
        })
        .collect();
    seeds.extend(maps.iter().map(|u| Seed {
        url: u.to_string(),
        role: Some(TaskRole::Sitemap),
    }));
    if auto {
        let mut origins: Vec<String> = starts
            .iter()
            .filter_map(|u| u.join("/robots.txt").ok())
            .map(String::from)
            .collect();
        origins.sort();
        origins.dedup();
        seeds.extend(origins.into_iter().map(|url| Seed {
            url,
            role: Some(TaskRole::Robots),
        }));
    }
    let crawl = StoredCrawl {
        start: starts.iter().map(|u| u.to_string()).collect(),
        sitemaps: if auto {
            vec!["auto".into()]
        } else {
            maps.iter().map(|u| u.to_string()).collect()
        },
        rules,
    };
    Ok(Checked {
        options,
        crawl,
        seeds,
        rejected,
        label,
    })
}

/// Stores a checked crawl and queues its seeds; the batch id and the seed tasks.
pub async fn start(state: &AppState, c: &Checked) -> Result<(i64, Vec<Task>), Error> {
    // Rate limits before anything is stored (DESIGN §13): a crawl counts its seeds.
    state
        .auth
        .limits()
        .submission(&crate::auth::rate_key(), c.seeds.len())
        .map_err(Error::Limited)?;
    let (batch, mut tasks) = state
        .store
        .insert_crawl(
            c.label.as_deref(),
            Some(&actions::who()),
            &c.options,
            &c.crawl,
            &c.seeds,
        )
        .await?;
    metrics::counter!("wordtally_crawls_started_total").increment(1);
    let queued = actions::enqueue_counted(state, tasks.clone()).await;
    if queued == tasks.len() {
        for t in &mut tasks {
            t.status = crate::model::TaskStatus::Pending;
        }
    }
    Ok((batch, tasks))
}

/// Start a crawl: it becomes one batch that grows as pages are fetched.
#[utoipa::path(post, path = "/api/crawls", tag = "crawls",
    request_body = CreateCrawl,
    responses(
        (status = 201, description = "Stored and its seeds queued (some addresses may be rejected)", body = CreatedCrawl),
        (status = 400, description = "Not JSON, or not the expected shape", body = super::error::ErrorBody),
        (status = 413, description = "Body or address count over the limit", body = super::error::ErrorBody),
        (status = 422, description = "No valid address, a bad rule or pattern (the parser's message), or a limit above the ceiling", body = super::error::ErrorBody),
        (status = 429, description = "Over the submission rate limit; nothing stored", body = super::error::ErrorBody),
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreateCrawl>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(json_rejection)?;
    let checked = check(&req, state.crawl_max_pages)?;
    let (batch_id, tasks) = start(&state, &checked).await?;
    let body = CreatedCrawl {
        batch_id,
        tasks: tasks
            .into_iter()
            .map(|t| SeedTask {
                id: t.id,
                address: t.address,
                status: t.status.as_str(),
                role: t.role,
            })
            .collect(),
        rejected: checked.rejected,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The form's "Crawl from these addresses": the lines are the start addresses, the rules
/// come from the crawl fields. Answers like a list submission (the seeds as accepted
/// tasks, the refused lines with their line numbers).
pub async fn submit_form(
    state: &AppState,
    f: &super::tasks::SubmitForm,
    lines: &[String],
    options: CountOptions,
) -> Result<super::submit::SubmitOutcome, Error> {
    let field = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let number = |name: &str, v: &Option<String>| -> Result<Option<u64>, Error> {
        field(v)
            .map(|s| {
                s.parse::<u64>().map_err(|_| {
                    Error::Unprocessable(format!("{name} must be a whole number, not {s:?}"))
                })
            })
            .transpose()
    };
    let patterns = |v: &Option<String>| -> Option<Vec<String>> {
        field(v).map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
    };
    let starts: Vec<(usize, String)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.clone()))
        .collect();
    let sitemaps = match field(&f.sitemaps) {
        None => None,
        Some(s) if s.eq_ignore_ascii_case("auto") => Some(Sitemaps::Auto("auto".into())),
        Some(s) => Some(Sitemaps::List(
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        )),
    };
    let req = CreateCrawl {
        start: starts.iter().map(|(_, l)| l.clone()).collect(),
        sitemaps,
        follow: field(&f.follow)
            .map(|s| s.parse::<Follow>())
            .transpose()
            .map_err(Error::Unprocessable)?,
        max_pages: number("Max pages", &f.max_pages)?,
        max_depth: number("Max depth", &f.max_depth)?.map(|d| u32::try_from(d).unwrap_or(u32::MAX)),
        include: patterns(&f.include),
        exclude: patterns(&f.exclude),
        obey_robots: Some(f.ignore_robots.is_none()),
        label: f.label.clone(),
        ..CreateCrawl::default()
    };
    let mut checked = check(&req, state.crawl_max_pages)?;
    checked.options = options;
    checked
        .options
        .validate_all()
        .map_err(Error::Unprocessable)?;
    // Line numbers of the textarea, not indexes of the start list.
    for r in &mut checked.rejected {
        if let Some((line, _)) = starts.get(r.line - 1) {
            r.line = *line;
        }
    }
    let (batch, tasks) = start(state, &checked).await?;
    Ok(super::submit::SubmitOutcome {
        batch_id: Some(batch),
        accepted: tasks,
        rejected: checked.rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(start: &[&str]) -> CreateCrawl {
        CreateCrawl {
            start: start.iter().map(|s| s.to_string()).collect(),
            ..CreateCrawl::default()
        }
    }

    fn err(r: CreateCrawl) -> String {
        match check(&r, 10_000) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn a_crawl_needs_a_start_or_a_sitemap() {
        assert!(err(req(&[])).contains("at least one"));
        assert!(err(req(&["ftp://x"])).contains("no valid start"));
        let c = check(
            &req(&["127.0.0.1:8000/docs/index.html#top", "bad url"]),
            10_000,
        )
        .unwrap();
        assert_eq!(c.seeds.len(), 1);
        assert_eq!(c.seeds[0].url, "http://127.0.0.1:8000/docs/index.html");
        assert_eq!(c.rejected.len(), 1);
        assert_eq!(c.crawl.rules.roots, vec!["127.0.0.1:8000".to_string()]);
    }

    #[test]
    fn rules_are_checked_against_the_ceiling_and_the_regex_parser() {
        let mut r = req(&["http://h.test/"]);
        r.max_pages = Some(20_000);
        assert!(err(r).contains("ceiling"));
        let mut r = req(&["http://h.test/"]);
        r.include = Some(vec!["[".into()]);
        assert!(err(r).contains("include pattern"));
        let mut r = req(&["http://h.test/"]);
        r.sitemaps = Some(Sitemaps::Auto("sometimes".into()));
        assert!(err(r).contains("auto"));
    }

    #[test]
    fn auto_sitemaps_read_each_origins_robots_txt_once() {
        let mut r = req(&["http://h.test/a", "http://h.test/b", "http://g.test/"]);
        r.sitemaps = Some(Sitemaps::Auto("auto".into()));
        let c = check(&r, 10_000).unwrap();
        let robots: Vec<&str> = c
            .seeds
            .iter()
            .filter(|s| s.role == Some(TaskRole::Robots))
            .map(|s| s.url.as_str())
            .collect();
        assert_eq!(
            robots,
            vec!["http://g.test/robots.txt", "http://h.test/robots.txt"]
        );
        assert_eq!(c.crawl.sitemaps, vec!["auto".to_string()]);
    }
}

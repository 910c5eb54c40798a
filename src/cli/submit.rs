//! `wordtally submit` (a script's **submit** → … → poll): reads addresses (one per line)
//! from a file or stdin, submits them as one batch through the JSON API, shows the
//! batch's progress until it is finished (a progress bar on a terminal, a plain line every
//! few seconds otherwise), then writes the batch to stdout as CSV or JSON Lines.
//!
//! Exit status: 0 when the batch was submitted (and, unless `--no-wait`, finished and
//! written out), whatever its pages' outcomes; 1 when the server is unreachable or
//! refuses the batch. Each rejected line is reported on stderr.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

/// Settings of `wordtally submit`.
#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    /// The server and its token (shared with the other API verbs).
    #[command(flatten)]
    pub api: super::ServerArg,
    /// What to count and how.
    #[command(flatten)]
    pub count: CountArgs,
    /// A name for the batch.
    #[arg(long)]
    pub label: Option<String>,
    /// Submit and print the batch id only; do not wait for the results.
    #[arg(long)]
    pub no_wait: bool,
    /// Output format of the results.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// Give up waiting after this many seconds (0 = wait for ever).
    #[arg(long, default_value_t = 0)]
    pub timeout_secs: u64,
    /// File of addresses, one per line; `-` or nothing reads standard input.
    pub file: Option<PathBuf>,
}

/// The counting options (DESIGN §4, §14, §17), shared by the verbs that submit them
/// (`submit` and `crawl` flatten it with `#[command(flatten)]`).
#[derive(Debug, Clone, Args)]
pub struct CountArgs {
    /// Word (or phrase) to count; repeat for several (default: the server's, `python`).
    #[arg(long = "word", short = 'w')]
    pub words: Vec<String>,
    /// Compare exactly instead of case-insensitively.
    #[arg(long)]
    pub case_sensitive: bool,
    /// Count substrings, not only whole words.
    #[arg(long)]
    pub substring: bool,
    /// Where to count: the page's text or its raw HTML.
    #[arg(long, value_enum, default_value_t = ScopeArg::Text)]
    pub scope: ScopeArg,
    /// Regions and patterns (DESIGN §17).
    #[command(flatten)]
    pub regions: RegionPatternArgs,
}

impl CountArgs {
    /// Adds the counting fields to a JSON request body (`POST /api/tasks`,
    /// `POST /api/crawls`): `word`/`words` only when given, so the server's default holds.
    pub fn add_to(&self, body: &mut serde_json::Value) {
        body["case_sensitive"] = json!(self.case_sensitive);
        body["whole_word"] = json!(!self.substring);
        body["scope"] = json!(match self.scope {
            ScopeArg::Text => "text",
            ScopeArg::Raw => "raw",
        });
        match self.words.as_slice() {
            [] => {}
            [w] => body["word"] = json!(w),
            many => body["words"] = json!(many),
        }
        self.regions.add_to(body);
    }
}

/// `--within`, `--outside`, `--pattern` (DESIGN §17), part of [`CountArgs`].
#[derive(Debug, Clone, Default, Args)]
pub struct RegionPatternArgs {
    /// Count only inside the elements matching this CSS selector (e.g. `main`,
    /// `div.body`); repeat for several. Page text only.
    #[arg(long = "within", value_name = "SEL")]
    pub within: Vec<String>,
    /// Never count inside the elements matching this CSS selector (e.g. `nav`, `footer`);
    /// repeat for several. Page text only.
    #[arg(long = "outside", value_name = "SEL")]
    pub outside: Vec<String>,
    /// Also count this regular expression (e.g. `py(thon)?3\.\d+`), with its own count;
    /// repeat for several (at most 20).
    #[arg(long = "pattern", value_name = "RE")]
    pub patterns: Vec<String>,
}

impl RegionPatternArgs {
    /// Adds the given lists to a JSON request body (`within`, `outside`, `patterns`).
    pub fn add_to(&self, body: &mut serde_json::Value) {
        for (key, list) in [
            ("within", &self.within),
            ("outside", &self.outside),
            ("patterns", &self.patterns),
        ] {
            if !list.is_empty() {
                body[key] = json!(list);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    Text,
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

/// The answer of `POST /api/tasks` or `POST /api/crawls`, as far as the verbs need it.
#[derive(Debug, Deserialize)]
pub(crate) struct Created {
    batch_id: Option<i64>,
    #[serde(default)]
    pub tasks: Vec<serde_json::Value>,
    #[serde(default)]
    pub rejected: Vec<RejectedLine>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RejectedLine {
    address: String,
    error: String,
}

#[derive(Debug, Deserialize)]
struct BatchTotals {
    total: i64,
    finished: i64,
    ok: i64,
    http_error: i64,
    failed: i64,
    truncated: i64,
    cancelled: i64,
    #[serde(default)]
    skipped: i64,
}

impl BatchTotals {
    fn line(&self) -> String {
        format!(
            "{}/{} finished (ok {}, http error {}, failed {}, truncated {}, cancelled {}, skipped {})",
            self.finished,
            self.total,
            self.ok,
            self.http_error,
            self.failed,
            self.truncated,
            self.cancelled,
            self.skipped
        )
    }
}

/// Runs the verb; `Err` is printed as one line by `main`.
pub async fn run(args: SubmitArgs) -> anyhow::Result<()> {
    let text = read_input(args.file.as_deref())?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        bail!("no addresses: give a file or pipe them in, one per line");
    }
    let server = args.api.base();
    let client = args.api.client(None)?;
    let auth = |rb: reqwest::RequestBuilder| args.api.auth(rb);
    let mut body = json!({ "addresses": lines });
    args.count.add_to(&mut body);
    if let Some(l) = &args.label {
        body["label"] = json!(l);
    }
    let (batch, created) =
        post_batch(&client, &auth, &server, "/api/tasks", &body, "batch").await?;
    eprintln!(
        "batch {batch}: {} task(s) submitted, {} line(s) rejected — {server}/batches/{batch}",
        created.tasks.len(),
        created.rejected.len()
    );
    if args.no_wait {
        println!("{batch}");
        return Ok(());
    }
    wait(&client, &auth, &server, batch, args.timeout_secs, false).await?;
    export(&client, &auth, &server, batch, args.format).await
}

/// Posts a submission (`/api/tasks`, `/api/crawls`) and returns its batch id with the
/// answer, after printing each rejected line on stderr; `what` names it in the error when
/// the server refuses it.
pub(crate) async fn post_batch(
    client: &reqwest::Client,
    auth: &impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    server: &str,
    path: &str,
    body: &serde_json::Value,
    what: &str,
) -> anyhow::Result<(i64, Created)> {
    let res = auth(client.post(format!("{server}{path}")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {server}"))?;
    let status = res.status();
    let text = res.text().await.context("the server's answer broke off")?;
    let created: Created = serde_json::from_str(&text).with_context(|| {
        format!(
            "the server answered {status} with something that is not wordtally's JSON: {}",
            text.chars().take(200).collect::<String>()
        )
    })?;
    for r in &created.rejected {
        eprintln!("rejected: {}: {}", r.address, r.error);
    }
    let Some(batch) = created.batch_id.filter(|_| status.is_success()) else {
        bail!(
            "the server refused the {what} ({status}): {}",
            created
                .error
                .clone()
                .unwrap_or_else(|| "no reason given".into())
        );
    };
    Ok((batch, created))
}

/// Writes the finished batch to stdout in `format`, streamed.
pub(crate) async fn export(
    client: &reqwest::Client,
    auth: &impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    server: &str,
    batch: i64,
    format: Format,
) -> anyhow::Result<()> {
    let format = match format {
        Format::Csv => "csv",
        Format::Jsonl => "jsonl",
    };
    let res = auth(client.get(format!(
        "{server}/api/tasks/export?format={format}&batch={batch}"
    )))
    .send()
    .await
    .with_context(|| format!("cannot reach the server at {server}"))?;
    if !res.status().is_success() {
        bail!("the server refused the export ({})", res.status());
    }
    let mut stream = res.bytes_stream();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("the export broke off")?;
        out.write_all(&chunk).context("cannot write to stdout")?;
    }
    out.flush().context("cannot write to stdout")?;
    Ok(())
}

pub(crate) fn read_input(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let mut text = String::new();
    match file {
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read addresses from standard input")?;
        }
        Some(p) if p.as_os_str() == "-" => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read addresses from standard input")?;
        }
        Some(p) => {
            text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
        }
    }
    Ok(text)
}

/// Polls the batch until nothing is unfinished, drawing progress on stderr (for a crawl,
/// `fetched / discovered`: the bar's length grows as pages are found).
pub(crate) async fn wait(
    client: &reqwest::Client,
    auth: &impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    server: &str,
    batch: i64,
    timeout_secs: u64,
    crawl: bool,
) -> anyhow::Result<()> {
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let pb = indicatif::ProgressBar::new(0);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40.green/white} {pos}/{len} {msg} [{elapsed_precise}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    });
    let started = Instant::now();
    let mut last_line = Instant::now() - Duration::from_secs(60);
    let mut failures = 0u32;
    loop {
        let res = auth(client.get(format!("{server}/api/batches/{batch}")))
            .send()
            .await;
        let totals: Option<BatchTotals> = match res {
            Ok(r) if r.status().is_success() => r.json_or_none().await,
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                bail!("batch {batch} no longer exists on the server (deleted?)")
            }
            _ => None,
        };
        match totals {
            Some(t) => {
                failures = 0;
                if let Some(pb) = &bar {
                    pb.set_length(t.total as u64);
                    pb.set_position(t.finished as u64);
                    pb.set_message(if crawl {
                        format!(
                            "fetched / discovered · skipped {} · failed {}",
                            t.skipped, t.failed
                        )
                    } else {
                        format!(
                            "ok {} · http error {} · failed {}",
                            t.ok, t.http_error, t.failed
                        )
                    });
                } else if last_line.elapsed() >= Duration::from_secs(2) || t.finished >= t.total {
                    eprintln!("batch {batch}: {}", t.line());
                    last_line = Instant::now();
                }
                if t.finished >= t.total {
                    if let Some(pb) = &bar {
                        pb.finish_with_message(t.line());
                    }
                    return Ok(());
                }
            }
            None => {
                failures += 1;
                if failures >= 30 {
                    bail!("lost the server at {server} while waiting for batch {batch}");
                }
            }
        }
        if timeout_secs > 0 && started.elapsed() >= Duration::from_secs(timeout_secs) {
            bail!(
                "batch {batch} did not finish within {timeout_secs} s (it goes on; see {server}/batches/{batch})"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Decodes a JSON body, or None (a broken answer counts as a failed poll).
trait JsonOrNone {
    async fn json_or_none<T: for<'de> Deserialize<'de>>(self) -> Option<T>;
}

impl JsonOrNone for reqwest::Response {
    async fn json_or_none<T: for<'de> Deserialize<'de>>(self) -> Option<T> {
        let bytes = self.bytes().await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

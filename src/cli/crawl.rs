//! `wordtally crawl` (a script's **submit** → … → poll for a crawl, DESIGN §15): starts a
//! crawl through the JSON API (`POST /api/crawls`) from the start addresses given, shows
//! `fetched / discovered` while it grows (a progress bar on a terminal, a plain line every
//! few seconds otherwise), then writes every page to stdout as CSV or JSON Lines, like
//! `wordtally submit`.
//!
//! Exit status: 0 when the crawl was started (and, unless `--no-wait`, finished and
//! written out); 1 when the server is unreachable or refuses the crawl.

use clap::{Args, ValueEnum};
use serde_json::json;

use super::submit::{CountArgs, Format, export, post_batch, wait};

/// Settings of `wordtally crawl`.
#[derive(Debug, Clone, Args)]
pub struct CrawlArgs {
    /// Start addresses (depth 0).
    #[arg(required_unless_present = "sitemap")]
    pub start: Vec<String>,
    /// The server and its token (shared with the other API verbs).
    #[command(flatten)]
    pub api: super::ServerArg,
    /// Which links to follow: the start's host and port, its registrable domain and every
    /// subdomain, or URLs under the start's folder.
    #[arg(long, value_enum, default_value_t = FollowArg::Host)]
    pub follow: FollowArg,
    /// Pages stored at most (default: the server's 10,000).
    #[arg(long)]
    pub max_pages: Option<u64>,
    /// Links followed at most this many steps from a start (default: no limit).
    #[arg(long)]
    pub max_depth: Option<u32>,
    /// Only follow URLs matching this regular expression (repeatable).
    #[arg(long)]
    pub include: Vec<String>,
    /// Never follow URLs matching this regular expression (repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Ignore robots.txt, Crawl-delay and nofollow (only for your own sites).
    #[arg(long)]
    pub no_robots: bool,
    /// A sitemap whose URLs are seeds too (repeatable), or `auto` for the ones robots.txt
    /// names.
    #[arg(long)]
    pub sitemap: Vec<String>,
    /// What to count on every page, as on `submit`.
    #[command(flatten)]
    pub count: CountArgs,
    /// A name for the crawl's batch.
    #[arg(long)]
    pub label: Option<String>,
    /// Start the crawl and print its batch id only; do not wait.
    #[arg(long)]
    pub no_wait: bool,
    /// Output format of the pages.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// Give up waiting after this many seconds (0 = wait for ever; the crawl goes on).
    #[arg(long, default_value_t = 0)]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FollowArg {
    Host,
    Domain,
    Prefix,
}

/// The `POST /api/crawls` body these settings ask for.
pub fn body(args: &CrawlArgs) -> serde_json::Value {
    let mut body = json!({
        "start": args.start,
        "follow": match args.follow {
            FollowArg::Host => "host",
            FollowArg::Domain => "domain",
            FollowArg::Prefix => "prefix",
        },
        "obey_robots": !args.no_robots,
    });
    args.count.add_to(&mut body);
    match args.sitemap.as_slice() {
        [] => {}
        [a] if a == "auto" => body["sitemaps"] = json!("auto"),
        maps => body["sitemaps"] = json!(maps),
    }
    if let Some(n) = args.max_pages {
        body["max_pages"] = json!(n);
    }
    if let Some(n) = args.max_depth {
        body["max_depth"] = json!(n);
    }
    if !args.include.is_empty() {
        body["include"] = json!(args.include);
    }
    if !args.exclude.is_empty() {
        body["exclude"] = json!(args.exclude);
    }
    if let Some(l) = &args.label {
        body["label"] = json!(l);
    }
    body
}

/// Runs the verb; `Err` is printed as one line by `main`.
pub async fn run(args: CrawlArgs) -> anyhow::Result<()> {
    let server = args.api.base();
    let client = args.api.client(None)?;
    let auth = |rb: reqwest::RequestBuilder| args.api.auth(rb);
    let (batch, started) = post_batch(
        &client,
        &auth,
        &server,
        "/api/crawls",
        &body(&args),
        "crawl",
    )
    .await?;
    eprintln!(
        "crawl {batch}: started from {} seed(s), {} address(es) rejected — {server}/batches/{batch}",
        started.tasks.len(),
        started.rejected.len()
    );
    if args.no_wait {
        println!("{batch}");
        return Ok(());
    }
    wait(&client, &auth, &server, batch, args.timeout_secs, true).await?;
    export(&client, &auth, &server, batch, args.format).await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::{Cli, Command};

    fn parse(args: &[&str]) -> CrawlArgs {
        let mut v = vec!["wordtally", "crawl"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).expect("parses").command {
            Some(Command::Crawl(a)) => a,
            _ => panic!("not crawl"),
        }
    }

    #[test]
    fn flags_become_the_api_body() {
        let a = parse(&[
            "http://h.test/",
            "--follow",
            "prefix",
            "--max-pages",
            "50",
            "--max-depth",
            "2",
            "--include",
            "/docs/",
            "--exclude",
            "\\?",
            "--no-robots",
            "--sitemap",
            "auto",
            "-w",
            "python",
            "-w",
            "rust",
        ]);
        let b = body(&a);
        assert_eq!(b["start"], json!(["http://h.test/"]));
        assert_eq!(b["follow"], "prefix");
        assert_eq!(
            (b["max_pages"].as_u64(), b["max_depth"].as_u64()),
            (Some(50), Some(2))
        );
        assert_eq!(b["include"], json!(["/docs/"]));
        assert_eq!(b["exclude"], json!(["\\?"]));
        assert_eq!(b["obey_robots"], false);
        assert_eq!(b["sitemaps"], "auto");
        assert_eq!(b["words"], json!(["python", "rust"]));
    }

    #[test]
    fn counting_flags_mean_the_same_on_submit_and_crawl() {
        let flags = [
            "-w",
            "python",
            "--case-sensitive",
            "--substring",
            "--scope",
            "raw",
            "--within",
            "main",
            "--outside",
            "nav",
            "--pattern",
            "py\\d",
        ];
        let crawl = parse(&[&["http://h.test/"][..], &flags[..]].concat());
        let mut v = vec!["wordtally", "submit"];
        v.extend_from_slice(&flags);
        let Some(Command::Submit(submit)) = Cli::try_parse_from(v).expect("parses").command else {
            panic!("not submit")
        };
        let (mut a, mut b) = (json!({}), json!({}));
        crawl.count.add_to(&mut a);
        submit.count.add_to(&mut b);
        assert_eq!(a, b);
        assert_eq!(
            a,
            json!({"word": "python", "case_sensitive": true, "whole_word": false,
                   "scope": "raw", "within": ["main"], "outside": ["nav"],
                   "patterns": ["py\\d"]})
        );
    }

    #[test]
    fn a_crawl_needs_a_start_or_a_sitemap() {
        let v = ["wordtally", "crawl"];
        assert!(Cli::try_parse_from(v).is_err());
        let a = parse(&["--sitemap", "http://h.test/sitemap.xml"]);
        assert!(a.start.is_empty());
        assert_eq!(body(&a)["sitemaps"], json!(["http://h.test/sitemap.xml"]));
    }
}

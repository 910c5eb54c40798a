//! wordtally counts a word on web pages at scale.
//!
//! The flow of one address, and the module that owns each step:
//!
//! ```text
//! submit ──▶ queue ──▶ fetch ──▶ count ──▶ NSQ ──▶ DB ──▶ poll
//! http/      queue/    fetch/    count/    bus/    store/  http/
//! actors::submitter    actors::worker      actors::nsq_listener, actors::db_writer
//! ```
//!
//! * [`http`] — axum: the page, its polled partial, the JSON API, `/healthz`.
//! * [`actors`] — ractor actors: Submitter, Worker pool (a factory), NSQ Listener, DB writer,
//!   and their supervisor.
//! * [`queue`] — `TaskQueue`: Redis stream + consumer group, or in-process.
//! * [`bus`] — result publishing/consuming: NSQ, or in-process.
//! * [`store`] — SQLite or Postgres through sqlx; the source of truth.
//! * [`fetch`] / [`count`] / [`address`] — pure, separately tested: what a worker does.
//! * [`crawl`] — crawls (DESIGN §15): rules, URL normalisation, robots.txt, sitemaps,
//!   politeness, the worker's crawl step.
//! * [`app`] — wiring: `serve` and `worker` as functions that tests call.
//! * [`config`] — the one clap definition of every setting.
//! * [`cli`] — command-line verbs beside `serve`/`worker` (`submit`).
//! * [`metrics`] — Prometheus metrics of every step (`GET /metrics`).
//! * [`chart`] — server-rendered SVG charts of the per-minute rollups (`/workers`).
//! * [`auth`] — who is asking (sign-in, sessions, API tokens), CSRF, rate limits and
//!   security headers, in front of every route; [`cli`] — `wordtally user|token`.

pub mod actors;
pub mod address;
pub mod app;
pub mod auth;
pub mod bus;
pub mod chart;
pub mod cli;
pub mod config;
pub mod count;
pub mod crawl;
pub mod fetch;
pub mod http;
pub mod metrics;
pub mod model;
pub mod outcome;
pub mod queue;
pub mod store;

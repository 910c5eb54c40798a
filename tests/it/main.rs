//! wordtally's integration tests: ONE test binary (every file directly in `tests/` would
//! link a binary of its own, which a 2-core machine pays for on every build).
//!
//! They run against real services — PostgreSQL on 127.0.0.1:5432 and Redis on
//! 127.0.0.1:6379 (override with WORDTALLY_TEST_POSTGRES / WORDTALLY_TEST_REDIS) — and the
//! project's NSQ test broker, or a real nsqd when NSQD_TCP_ADDRESS / NSQD_HTTP_ADDRESS are
//! set. A missing service fails the test with a message saying so; nothing is skipped.
//! Traffic goes only to loopback. Asynchronous outcomes are awaited by polling with a
//! deadline.

#[path = "../support/nsq_broker.rs"]
mod nsq_broker;

mod helpers;
mod pages;
mod site;

mod auth;
mod batches;
mod conditional;
mod crawl;
mod crawl_faults;
mod deploy;
mod embedded;
mod faults;
mod hostile;
mod openapi;
mod pipeline;
mod regions;
mod robots;
mod scale;
mod ssrf;
mod watch;
mod webhooks;
mod workers;

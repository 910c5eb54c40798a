//! Crawls (DESIGN §15): a batch that grows from start addresses by following links.
//!
//! Where each piece sits in submit → queue → fetch → count → NSQ → DB → poll:
//! * [`rules`] — what a crawl may follow (checked at submit, applied by the worker);
//! * [`normalize`] — one spelling per page for the frontier (worker, per link);
//! * the frontier itself is the database: `store::crawls` inserts unseen links as tasks in
//!   the DB writer's transaction.

pub mod normalize;
pub mod page;
pub mod rules;

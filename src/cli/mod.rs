//! Command-line verbs that talk to a running server or the database, beside `serve` and
//! `worker` (which live in `app`): one file per verb. `main.rs` only dispatches.

pub mod submit;

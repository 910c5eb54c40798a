//! The "contains" / "absent" filters of the task lists (… → DB → **poll**; DESIGN §17):
//! the `task_count` table (migration 0011) holds one row per word or pattern of each task's
//! current result, written by the DB writer in the result's transaction
//! (`store_results`) and dropped when a new run starts (`retry_tasks_by`).
//!
//! Why a table and not a scan of `result.counts`: a filtered page must cost the same
//! whatever the number of tasks (DESIGN §9). The index `(word, positive, task_id DESC)`
//! (and `(batch_id, word, positive, task_id DESC)` for a batch's list) hands back the
//! matching task ids already in page order, so a page reads `limit` index entries and
//! their tasks — a rare word does not walk the task table looking for its few rows. A task
//! without a result (or whose result does not count that word) has no row: it matches
//! neither filter.

use sqlx::QueryBuilder;

use super::tasks::TaskFilter;
use crate::model::ResultRecord;

/// Rows per INSERT (5 columns each).
pub(crate) const CHUNK: usize = 500;

/// One row of `task_count`.
pub(crate) struct CountRow<'a> {
    task_id: i64,
    batch_id: Option<i64>,
    word: &'a str,
    count: i64,
}

/// Adds the rows of one stored current result (none without per-word counts).
pub(crate) fn rows_of<'a>(
    out: &mut Vec<CountRow<'a>>,
    task_id: i64,
    batch_id: Option<i64>,
    r: &'a ResultRecord,
) {
    if let Some(counts) = &r.counts {
        out.extend(counts.iter().map(|(w, &n)| CountRow {
            task_id,
            batch_id,
            word: w,
            count: n,
        }));
    }
}

/// The INSERT of `rows` (an upsert: a result replayed for the same run rewrites its row).
pub(crate) fn insert_query<'a, DB: sqlx::Database>(rows: &'a [CountRow<'a>]) -> QueryBuilder<'a, DB>
where
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut qb =
        QueryBuilder::new("INSERT INTO task_count (task_id, batch_id, word, count, positive) ");
    qb.push_values(rows, |mut b, r| {
        b.push_bind(r.task_id)
            .push_bind(r.batch_id)
            .push_bind(r.word)
            .push_bind(r.count)
            .push_bind(r.count > 0);
    });
    qb.push(
        " ON CONFLICT (task_id, word) DO UPDATE SET count = excluded.count, \
         positive = excluded.positive, batch_id = excluded.batch_id",
    );
    qb
}

impl TaskFilter {
    /// The count conditions of this filter: (word or pattern, wanted `count > 0`).
    pub(crate) fn count_filters(&self) -> Vec<(&str, bool)> {
        let mut out = Vec::new();
        if let Some(w) = self.contains.as_deref() {
            out.push((w, true));
        }
        if let Some(w) = self.absent.as_deref() {
            out.push((w, false));
        }
        out
    }

    /// `FROM …` of a page read through `task_count` (alias `c`, which leads: its index gives
    /// the ids in page order), with the task `t` and its current result `r`, and the count
    /// conditions and id bounds on `c`, after a `WHERE 1 = 1`-like start. `None` without a
    /// count filter. The caller adds `push_filters(qb, "t")` and orders by `c.task_id`.
    pub(crate) fn push_count_source<'a, DB: sqlx::Database>(
        &'a self,
        qb: &mut QueryBuilder<'a, DB>,
    ) -> bool
    where
        i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    {
        let conds = self.count_filters();
        let Some(&(word, positive)) = conds.first() else {
            return false;
        };
        qb.push(
            " FROM task_count c JOIN task t ON t.id = c.task_id \
             LEFT JOIN result r ON r.task_id = t.id AND r.run = t.run WHERE c.word = ",
        )
        .push_bind(word)
        .push(" AND c.positive = ")
        .push_bind(positive);
        if let Some(b) = self.batch {
            qb.push(" AND c.batch_id = ").push_bind(b);
        }
        // The bounds on `c` (the planner does not carry `<` across the join).
        if let Some(b) = self.before {
            qb.push(" AND c.task_id < ").push_bind(b);
        }
        if let Some(a) = self.after {
            qb.push(" AND c.task_id > ").push_bind(a);
        }
        self.push_other_counts(qb, &conds[1..]);
        true
    }

    /// `AND EXISTS (…)` per further count condition (the driving one is `c`).
    pub(crate) fn push_other_counts<'a, DB: sqlx::Database>(
        &self,
        qb: &mut QueryBuilder<'a, DB>,
        conds: &[(&'a str, bool)],
    ) where
        &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
        bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    {
        for &(word, positive) in conds {
            qb.push(
                " AND EXISTS (SELECT 1 FROM task_count c2 WHERE c2.task_id = t.id AND c2.word = ",
            )
            .push_bind(word)
            .push(" AND c2.positive = ")
            .push_bind(positive)
            .push(")");
        }
    }
}

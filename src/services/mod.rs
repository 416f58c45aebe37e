//! Use cases. Handlers and jobs call these; they read projections and append events.

pub mod auth;
pub mod browse_index;
pub mod delivery;
pub mod erasure;
pub mod error;
pub mod events;
pub mod exports;
pub mod files;
pub mod imports;
pub mod logs;
pub mod projects;
pub mod rate_limit;
pub mod retention;
pub mod sendouts;
pub mod stream;
pub mod tasks;
pub mod webhooks;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, Statement};

use crate::domain::pagination::{Cursor, Limit, Page};

/// A list's rows in list order, newest first by `(time, id)`: a page for a `GET` list, and every
/// row page by page for work that walks a whole list (bulk retries, exports), so that both hold
/// the same rows in the same order by construction. A page's cursor is also a resume point.
pub struct Keyset<E: EntityTrait> {
    select: Select<E>,
    time: E::Column,
    id: E::Column,
    key: fn(&E::Model) -> Cursor,
}

impl<E: EntityTrait> Keyset<E>
where
    E::Model: Sync,
{
    pub fn new(select: Select<E>, time: E::Column, id: E::Column, key: fn(&E::Model) -> Cursor) -> Self {
        Self { select, time, id, key }
    }

    /// Up to `limit` rows after `cursor`, and the cursor of the next page if there is one.
    pub async fn page(&self, db: &impl ConnectionTrait, limit: Limit, cursor: Option<&Cursor>) -> Result<Page<E::Model>, DbErr> {
        let rows = self.query(limit, cursor).all(db).await?;
        Ok(Page::from_overfetch(rows, limit, self.key))
    }

    /// The query of that page (one row more than `limit`), for a caller that selects other
    /// columns than the model's.
    pub fn query(&self, limit: Limit, cursor: Option<&Cursor>) -> Select<E> {
        newest_first(self.select.clone(), self.time, self.id, limit, cursor)
    }

    /// Whether any of the keyset's rows also meets `condition`.
    pub async fn holds_any(&self, db: &impl ConnectionTrait, condition: impl sea_orm::sea_query::IntoCondition) -> Result<bool, DbErr> {
        Ok(self.select.clone().filter(condition).limit(1).count(db).await? > 0)
    }

    /// How many rows follow `cursor` (all of them without one).
    pub async fn count_after(&self, db: &impl ConnectionTrait, cursor: Option<&Cursor>) -> Result<u64, DbErr> {
        after_cursor(self.select.clone(), self.time, self.id, cursor).count(db).await
    }
}

/// Orders a query newest first by `(time, id)`, continues after `cursor`, and fetches one row more
/// than `limit` so the caller can tell whether another page follows.
pub fn newest_first<E: EntityTrait>(
    select: Select<E>,
    time: E::Column,
    id: E::Column,
    limit: Limit,
    cursor: Option<&Cursor>,
) -> Select<E> {
    after_cursor(select, time, id, cursor).order_by_desc(time).order_by_desc(id).limit(limit.get() + 1)
}

/// The rows that come after `cursor` in newest-first order.
fn after_cursor<E: EntityTrait>(select: Select<E>, time: E::Column, id: E::Column, cursor: Option<&Cursor>) -> Select<E> {
    // A row-value comparison, not `time < t OR (time = t AND id < i)`: SQLite plans the OR as two
    // searches merged and sorted, which read every older row for each page (a deep page of a
    // long list, an export's last pages); both databases walk the index from the cursor for this.
    match cursor {
        Some(c) => select.filter(
            Expr::tuple([Expr::col(time), Expr::col(id)]).lt(Expr::tuple([Expr::val(c.time_ms), Expr::val(c.id.as_str())])),
        ),
        None => select,
    }
}

/// Counts of `select`'s rows per bin of `bin_ms` milliseconds on the integer column `time`, one
/// count per expression of `counted` (SQL that is 1 for a row it counts, else 0): a histogram's
/// one grouped query over the filtered range, which the filter's indexes bound.
pub async fn count_bins<E: EntityTrait, const N: usize>(
    db: &impl ConnectionTrait,
    select: Select<E>,
    time: &str,
    bin_ms: i64,
    counted: [&str; N],
) -> Result<Vec<(i64, [i64; N])>, DbErr> {
    let mut query = select.select_only().column_as(Expr::cust(format!("{time} / {bin_ms}")), "bin");
    for (i, expr) in counted.iter().enumerate() {
        query = query.column_as(Expr::cust(format!("SUM({expr})")), format!("n{i}"));
    }
    let statement = query.group_by(Expr::cust("bin")).build(db.get_database_backend());
    let rows = db.query_all_raw(statement).await?;
    rows.iter()
        .map(|row| {
            let mut counts = [0; N];
            for (i, count) in counts.iter_mut().enumerate() {
                *count = row.try_get_by_index::<Option<i64>>(i + 1)?.unwrap_or(0);
            }
            Ok((row.try_get_by_index::<i64>(0)?, counts))
        })
        .collect()
}

/// The most frequent values of `value` (an SQL expression) among `select`'s rows, with their
/// counts, most frequent first; rows where it is null are left out.
pub async fn top_values<E: EntityTrait>(db: &impl ConnectionTrait, select: Select<E>, value: &str, limit: u64) -> Result<Vec<(String, i64)>, DbErr> {
    select
        .select_only()
        .column_as(Expr::cust(value.to_owned()), "value")
        .column_as(Expr::cust("COUNT(*)"), "n")
        .filter(Expr::cust(format!("{value} IS NOT NULL")))
        .group_by(Expr::cust("value"))
        .order_by_desc(Expr::cust("n"))
        .order_by_asc(Expr::cust("value"))
        .limit(limit)
        .into_tuple()
        .all(db)
        .await
}

/// The work waiting, for `/metrics`: due delivery attempts (by the `sendouts_due` index) and
/// scheduled tasks, with the age of the oldest of each.
pub async fn backlog(db: &DatabaseConnection) -> Result<crate::metrics::Backlog, DbErr> {
    let now = crate::domain::time::now_ms();
    let backend = db.get_database_backend();
    let p = crate::dialect::ph(backend, 1);
    let count_and_oldest = |sql: String| Statement::from_sql_and_values(backend, sql, [now.into()]);
    let due = db
        .query_one_raw(count_and_oldest(format!(
            "SELECT COUNT(*) AS n, MIN(next_attempt_at_ms) AS oldest FROM sendouts WHERE next_attempt_at_ms IS NOT NULL AND next_attempt_at_ms <= {p}"
        )))
        .await?;
    let waiting = db
        .query_one_raw(count_and_oldest(format!(
            "SELECT COUNT(*) AS n, MIN(created_at_ms) AS oldest FROM tasks WHERE status = 'scheduled' AND created_at_ms <= {p}"
        )))
        .await?;
    let read = |row: Option<sea_orm::QueryResult>| -> Result<(i64, i64), DbErr> {
        let Some(row) = row else { return Ok((0, 0)) };
        let oldest: Option<i64> = row.try_get("", "oldest")?;
        Ok((row.try_get("", "n")?, oldest.map_or(0, |t| now - t)))
    };
    let ((deliveries_due, delivery_lag_ms), (tasks_waiting, oldest_task_wait_ms)) = (read(due)?, read(waiting)?);
    Ok(crate::metrics::Backlog { deliveries_due, delivery_lag_ms, tasks_waiting, oldest_task_wait_ms })
}

//! The SQL that differs between SQLite and PostgreSQL, in one place: placeholders, row and key
//! locks, the event log's purge permits, and statement budgets. Callers say what they need; this
//! module says how each backend does it. (The two search indexes are different algorithms, FTS5
//! against pg_trgm, and live in `projections::search`; bulk inserts in `projections::unnest`.)

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, RuntimeErr, Statement, TransactionTrait};

/// The `n`th bind placeholder (1-based) in the backend's syntax.
pub fn ph(backend: DbBackend, n: usize) -> String {
    if backend == DbBackend::Postgres { format!("${n}") } else { "?".to_owned() }
}

/// ` FOR UPDATE` where rows are locked for the transaction (PostgreSQL); SQLite's single writer
/// already holds everything a write transaction reads.
pub fn for_update(backend: DbBackend) -> &'static str {
    if backend == DbBackend::Postgres { " FOR UPDATE" } else { "" }
}

/// Makes concurrent transactions on `key` take turns until they end (PostgreSQL's transaction
/// advisory lock); SQLite's writer lock already serialises every write transaction.
pub async fn lock_key(conn: &impl ConnectionTrait, key: &str) -> Result<(), DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let lock = Statement::from_sql_and_values(DbBackend::Postgres, "SELECT pg_advisory_xact_lock(hashtext($1))", [key.into()]);
    conn.execute_raw(lock).await.map(drop)
}

/// Lets this transaction delete event-log rows, or redact their payload and metadata: the
/// append-only trigger admits either only while a permit row exists, and [`revoke_purge_permit`]
/// removes it again before the commit.
pub async fn grant_purge_permit(conn: &impl ConnectionTrait, permit: &str) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    let sql = format!("INSERT INTO event_log_purge_permits (purge_id) VALUES ({})", ph(backend, 1));
    conn.execute_raw(Statement::from_sql_and_values(backend, sql, [permit.into()])).await.map(drop)
}

pub async fn revoke_purge_permit(conn: &impl ConnectionTrait, permit: &str) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    let sql = format!("DELETE FROM event_log_purge_permits WHERE purge_id = {}", ph(backend, 1));
    conn.execute_raw(Statement::from_sql_and_values(backend, sql, [permit.into()])).await.map(drop)
}

/// Runs `query`, giving up after `budget` on PostgreSQL (`statement_timeout`, answered `None`).
/// SQLite has no statement timeout; it runs the query to the end.
pub async fn query_within(db: &DatabaseConnection, query: Statement, budget: Duration) -> Result<Option<Vec<QueryResult>>, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return db.query_all_raw(query).await.map(Some);
    }
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!("SET LOCAL statement_timeout = {}", budget.as_millis())).await?;
    match txn.query_all_raw(query).await {
        Ok(rows) => {
            txn.commit().await?;
            Ok(Some(rows))
        }
        Err(err) if is_cancelled(&err) => Ok(None),
        Err(err) => Err(err),
    }
}

/// PostgreSQL's `query_canceled` (57014), which `statement_timeout` raises.
fn is_cancelled(err: &DbErr) -> bool {
    match err {
        DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) => {
            e.as_database_error().and_then(|d| d.code()).is_some_and(|code| code == "57014")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_backend() {
        assert_eq!(ph(DbBackend::Postgres, 3), "$3");
        assert_eq!(ph(DbBackend::Sqlite, 3), "?");
        assert_eq!(for_update(DbBackend::Sqlite), "");
    }

    /// Needs PostgreSQL (`TEST_DATABASE_URL`, as CI's second run sets it); on SQLite there is no budget.
    #[tokio::test]
    async fn a_query_over_budget_is_given_up_and_one_within_it_is_returned() {
        let Some(url) = std::env::var("TEST_DATABASE_URL").ok().filter(|u| u.starts_with("postgres")) else {
            eprintln!("TEST_DATABASE_URL is not PostgreSQL: nothing to check");
            return;
        };
        let budget = Duration::from_millis(100);
        let db = sea_orm::Database::connect(url).await.unwrap();
        let query = |sql: &str| Statement::from_string(DbBackend::Postgres, sql.to_owned());
        let slow = format!("SELECT pg_sleep({}) IS NULL AS seq", 3.0 * budget.as_secs_f64());
        assert!(query_within(&db, query(&slow), budget).await.unwrap().is_none());
        let quick = query_within(&db, query("SELECT 7::bigint AS seq"), budget).await.unwrap().expect("a quick listing");
        assert_eq!(quick[0].try_get::<i64>("", "seq").unwrap(), 7);
        // The budget was local to its transaction: the pool's connections are not left with it.
        let timeout = db.query_one_raw(query("SHOW statement_timeout")).await.unwrap().unwrap();
        assert_eq!(timeout.try_get::<String>("", "statement_timeout").unwrap(), "0");
    }
}

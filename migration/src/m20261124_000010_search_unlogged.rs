//! PostgreSQL keeps the search index out of the write-ahead log. The index is a projection the
//! indexer rebuilds from the event log, so it needs no crash safety of its own, and its trigram GIN
//! indexes wrote most of the WAL of an ingest (every pending-list insert, then the merged posting
//! lists again, each with full-page images after every checkpoint). Crash recovery empties an
//! unlogged table, so the index's checkpoint moves into one too: both vanish together, and the
//! indexer starts over from a missing checkpoint (see `projections::search`). The GIN indexes are
//! now on the stored bodies themselves: they are stored case-folded since migration 000008.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The statements of `up` (`false`: of `down`, which restores the logged table and the GIN
/// indexes on `lower(body)` with no statistics, as migration 000009 left them).
fn statements(up: bool) -> Vec<String> {
    let (persistence, body) = if up { ("UNLOGGED", "{}") } else { ("LOGGED", "lower({})") };
    let mut all = vec!["DROP INDEX log_search_request".to_owned(), "DROP INDEX log_search_response".to_owned()];
    all.push(format!("ALTER TABLE log_search SET {persistence}"));
    all.push(format!("ALTER TABLE projection_checkpoints SET {persistence}"));
    for (index, column) in [("log_search_request", "request_body"), ("log_search_response", "response_body")] {
        let expr = body.replace("{}", column);
        all.push(format!("CREATE INDEX {index} ON log_search USING gin ({expr} gin_trgm_ops)"));
        if !up {
            all.push(format!("ALTER INDEX {index} ALTER COLUMN 1 SET STATISTICS 0"));
        }
    }
    all
}

async fn run(manager: &SchemaManager<'_>, up: bool) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    exec_each(manager, &statements(up).iter().map(String::as_str).collect::<Vec<_>>()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, true).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, false).await
    }
}

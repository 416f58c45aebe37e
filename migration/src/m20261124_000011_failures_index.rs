//! The status filter's index holds only failed logs. Successes are most of a log (nine in ten in
//! the benchmark, more in most APIs), so the time index finds a page of them at once, while a page
//! of failures needs an index when they are rare. Every log paid for an entry it rarely used: one
//! B-tree insert in eleven on the ingest path. The query states the index's condition word for word
//! (`logs.failed`), as SQLite needs to use a partial index.

use sea_orm_migration::prelude::*;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec_each(
            manager,
            &["CREATE INDEX logs_page_failures ON logs (project_id, occurred_at_ms, id) WHERE failed", "DROP INDEX logs_page_failed"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec_each(
            manager,
            &["CREATE INDEX logs_page_failed ON logs (project_id, failed, occurred_at_ms, id)", "DROP INDEX logs_page_failures"],
        )
        .await
    }
}

//! SQLite keeps the log search index in a file of its own (see `db::connect_search`): its tables
//! leave the main database. PostgreSQL keeps it where it is.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            return Ok(());
        }
        exec_each(manager, &[
            "DROP TABLE log_search_request",
            "DROP TABLE log_search_response",
            "DELETE FROM projection_checkpoints WHERE name = 'log_search'",
        ])
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            return Ok(());
        }
        exec_each(manager, &[
            "CREATE VIRTUAL TABLE log_search_request USING fts5(
                body, content='', contentless_delete=1, detail=none, tokenize='trigram')",
            "CREATE VIRTUAL TABLE log_search_response USING fts5(
                body, content='', contentless_delete=1, detail=none, tokenize='trigram')",
            "INSERT INTO projection_checkpoints (name, last_seq) VALUES ('log_search', 0)",
        ])
        .await
    }
}

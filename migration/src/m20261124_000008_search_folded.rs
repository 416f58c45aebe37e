//! PostgreSQL's search index table now holds bodies case-folded (a row check is then a plain
//! `LIKE`): the rows indexed before are dropped and the indexer, rewound, indexes them again.
//! SQLite's index lives in a file of its own (migration 000005), with its own checkpoint table: the
//! main file's, left empty since, goes.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return exec_each(manager, &["DROP TABLE projection_checkpoints"]).await;
        }
        exec_each(manager, &["DELETE FROM log_search", "UPDATE projection_checkpoints SET last_seq = 0 WHERE name = 'log_search'"]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Folded bodies are found by the old searches too (they fold both sides).
        if manager.get_database_backend() != DbBackend::Postgres {
            return exec_each(manager, &["CREATE TABLE projection_checkpoints (name TEXT PRIMARY KEY, last_seq BIGINT NOT NULL)"]).await;
        }
        Ok(())
    }
}

//! The body-text search index: an asynchronous projection with its own checkpoint, so ingestion
//! never pays for trigram indexing. SQLite uses FTS5's trigram tokenizer; PostgreSQL pg_trgm GIN.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

const CHECKPOINTS: &[&str] = &[
    "CREATE TABLE projection_checkpoints (name TEXT PRIMARY KEY, last_seq BIGINT NOT NULL)",
    "INSERT INTO projection_checkpoints (name, last_seq) VALUES ('log_search', 0)",
];

/// One contentless table per body (the bodies stay in the event log), rowid = the event's `seq`.
/// `detail=none` keeps only which rows hold each trigram, not where: about half the indexing work.
/// A search takes the rows holding all of a needle's trigrams as candidates and checks them against
/// the stored body, so the result is exact.
const SQLITE: &[&str] = &[
    "CREATE VIRTUAL TABLE log_search_request USING fts5(
        body, content='', contentless_delete=1, detail=none, tokenize='trigram')",
    "CREATE VIRTUAL TABLE log_search_response USING fts5(
        body, content='', contentless_delete=1, detail=none, tokenize='trigram')",
];

const POSTGRES: &[&str] = &[
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE TABLE log_search (seq BIGINT PRIMARY KEY, request_body TEXT, response_body TEXT)",
    "CREATE INDEX log_search_request ON log_search USING gin (lower(request_body) gin_trgm_ops)",
    "CREATE INDEX log_search_response ON log_search USING gin (lower(response_body) gin_trgm_ops)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec_each(manager, CHECKPOINTS).await?;
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        exec_each(manager, if postgres { POSTGRES } else { SQLITE }).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        let tables: &[&str] = if postgres {
            &["DROP TABLE log_search", "DROP TABLE projection_checkpoints"]
        } else {
            &["DROP TABLE log_search_request", "DROP TABLE log_search_response", "DROP TABLE projection_checkpoints"]
        };
        exec_each(manager, tables).await
    }
}

//! Background tasks, imports with their stored files, and published events.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

const COMMON: &[&str] = &[
    // The task projection. `checkpoint` is where a resumed worker carries on; `result` grows as the
    // task advances, so a running import shows its counts.
    "CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL,
        task_type TEXT NOT NULL,
        status TEXT NOT NULL,
        processing_status TEXT,
        processed BIGINT NOT NULL,
        total BIGINT,
        percent INTEGER NOT NULL,
        created_at_ms BIGINT NOT NULL,
        started_at_ms BIGINT,
        finished_at_ms BIGINT,
        created_by_kind TEXT NOT NULL,
        created_by_id TEXT,
        request_id TEXT,
        related TEXT NOT NULL,
        params TEXT NOT NULL,
        result TEXT NOT NULL,
        error_count BIGINT NOT NULL,
        checkpoint TEXT,
        attempts INTEGER NOT NULL)",
    "CREATE INDEX tasks_project_time ON tasks (project_id, created_at_ms, id)",
    "CREATE INDEX tasks_project_type ON tasks (project_id, task_type, created_at_ms)",
    "CREATE INDEX tasks_project_status ON tasks (project_id, status, created_at_ms)",
    // The sweeper looks for scheduled tasks whose job may have been lost.
    "CREATE INDEX tasks_status ON tasks (status, created_at_ms)",
    // The first 1,000 errors of a task, in the order they happened.
    "CREATE TABLE task_errors (
        task_id TEXT NOT NULL,
        position BIGINT NOT NULL,
        line BIGINT,
        message TEXT NOT NULL,
        PRIMARY KEY (task_id, position))",
    "CREATE TABLE imports (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        file_id TEXT NOT NULL,
        file_name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        size_bytes BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        format TEXT NOT NULL,
        rows_total BIGINT NOT NULL,
        rows_imported BIGINT NOT NULL,
        rows_failed BIGINT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        request_id TEXT)",
    "CREATE INDEX imports_task ON imports (task_id)",
    "CREATE INDEX imports_project_time ON imports (project_id, created_at_ms)",
    "CREATE INDEX imports_request ON imports (request_id) WHERE request_id IS NOT NULL",
    // Published events: a narrow row per event; `data` stays in the event row `event_seq`.
    "CREATE TABLE events (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        source_id TEXT,
        created_at_ms BIGINT NOT NULL,
        event_seq BIGINT NOT NULL,
        request_id TEXT)",
    "CREATE INDEX events_project_time ON events (project_id, created_at_ms, id)",
    "CREATE INDEX events_project_type ON events (project_id, event_type, created_at_ms)",
    "CREATE INDEX events_project_source ON events (project_id, source_id, created_at_ms) WHERE source_id IS NOT NULL",
    // Uploaded files, byte for byte, in the shared database so that every node can serve them. Not a
    // projection: the event log records the file's metadata, these tables hold its bytes.
    "CREATE TABLE files (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL,
        size_bytes BIGINT NOT NULL,
        complete BOOLEAN NOT NULL,
        created_at_ms BIGINT NOT NULL)",
    "CREATE INDEX files_incomplete ON files (created_at_ms) WHERE NOT complete",
];

const CHUNKS_SQLITE: &str = "CREATE TABLE file_chunks (
    file_id TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (file_id, idx))";
const CHUNKS_POSTGRES: &str = "CREATE TABLE file_chunks (
    file_id TEXT NOT NULL, idx INTEGER NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (file_id, idx))";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec_each(manager, COMMON).await?;
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        exec_each(manager, &[if postgres { CHUNKS_POSTGRES } else { CHUNKS_SQLITE }]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = ["file_chunks", "files", "events", "imports", "task_errors", "tasks"];
        for table in tables {
            manager.get_connection().execute_unprepared(&format!("DROP TABLE {table}")).await?;
        }
        Ok(())
    }
}

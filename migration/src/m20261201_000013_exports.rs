//! Exports: the projection of `export.created` and of its task's progress. The file itself is a
//! stored file (`files`, `file_chunks`), so every node can serve the download.

use sea_orm_migration::prelude::*;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec_each(
            manager,
            &[
                "CREATE TABLE exports (
                    id TEXT PRIMARY KEY,
                    project_id TEXT NOT NULL,
                    task_id TEXT NOT NULL,
                    resource TEXT NOT NULL,
                    filters TEXT NOT NULL,
                    fields TEXT NOT NULL,
                    format TEXT NOT NULL,
                    time_zone TEXT NOT NULL,
                    status TEXT NOT NULL,
                    created_by_kind TEXT NOT NULL,
                    created_by_id TEXT,
                    request_id TEXT,
                    created_at_ms BIGINT NOT NULL,
                    finished_at_ms BIGINT,
                    row_count BIGINT,
                    size_bytes BIGINT,
                    file_id TEXT,
                    error TEXT)",
                "CREATE INDEX exports_project_time ON exports (project_id, created_at_ms, id)",
                "CREATE INDEX exports_task ON exports (task_id)",
                // A logs export's rows, for browsing without reading the file again: its cells (a
                // JSON array, in the file's order of columns) and their lowercased text for `q`.
                // Written with the file, removed with the export; not a projection of the log.
                "CREATE TABLE export_rows (
                    export_id TEXT NOT NULL,
                    position BIGINT NOT NULL,
                    cells TEXT NOT NULL,
                    folded TEXT NOT NULL,
                    PRIMARY KEY (export_id, position))",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec_each(manager, &["DROP TABLE export_rows", "DROP TABLE exports"]).await
    }
}

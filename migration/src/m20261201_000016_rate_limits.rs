//! PostgreSQL: the per-credential request counts that nodes share for rate limits (see
//! `services::rate_limit`). Unlogged: a count lost in a crash only lets a window start afresh.
//! SQLite serves one node, which counts in memory.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        exec_each(manager, &[
            "CREATE UNLOGGED TABLE rate_limit_windows (
            credential TEXT NOT NULL,
            window_start_ms BIGINT NOT NULL,
            count BIGINT NOT NULL,
            PRIMARY KEY (credential, window_start_ms))",
            // Each node reads the current window's counts, every credential's.
            "CREATE INDEX rate_limit_windows_by_window ON rate_limit_windows (window_start_ms)",
        ])
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        exec_each(manager, &["DROP TABLE rate_limit_windows"]).await
    }
}

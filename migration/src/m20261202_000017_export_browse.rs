//! A logs export's rows are indexed for browsing after its file is written, off the export's own
//! path: `browse_status` (`indexing`, `ready`, `failed`; null for exports that are not browsed)
//! and how many rows are indexed so far. Exports done before this indexed their rows as they wrote
//! them, so they are ready.
//!
//! PostgreSQL: file chunks and browse rows are compressed with lz4 rather than pglz (the default)
//! where the server was built with it: pglz ran at a fraction of an export's speed, in the
//! database's own CPU, for every 1 MiB chunk and every browse row over 2 KiB.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec_each(manager, &[
            "ALTER TABLE exports ADD COLUMN browse_status TEXT",
            "ALTER TABLE exports ADD COLUMN browse_indexed_rows BIGINT",
            "UPDATE exports SET browse_status = 'ready', browse_indexed_rows = row_count WHERE resource = 'logs' AND status = 'done'",
        ])
        .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            exec_each(manager, &[LZ4]).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec_each(manager, &["ALTER TABLE exports DROP COLUMN browse_indexed_rows", "ALTER TABLE exports DROP COLUMN browse_status"]).await
    }
}

const LZ4: &str = "DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4'::text = ANY(enumvals)) THEN
        ALTER TABLE file_chunks ALTER COLUMN data SET COMPRESSION lz4;
        ALTER TABLE export_rows ALTER COLUMN cells SET COMPRESSION lz4, ALTER COLUMN folded SET COMPRESSION lz4;
    END IF;
END $$";

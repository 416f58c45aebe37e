//! The exact-value index of browsable exports (`filter.<column>`): for each column whose values are
//! short and repeat, where each value stands, per block of 65,536 rows (see
//! `services::browse_index`). Without it a rare value was found by reading every row (1.4 s at
//! 200,000 rows on PostgreSQL). Exports indexed before this have no such rows and are read as before.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (blob, without_rowid) = match manager.get_database_backend() {
            DbBackend::Postgres => ("BYTEA", ""),
            _ => ("BLOB", " WITHOUT ROWID"),
        };
        let table = format!(
            "CREATE TABLE export_cells (
                export_id TEXT NOT NULL,
                col INTEGER NOT NULL,
                value TEXT NOT NULL,
                block BIGINT NOT NULL,
                positions {blob} NOT NULL,
                PRIMARY KEY (export_id, col, value, block)){without_rowid}"
        );
        exec_each(manager, &[&table]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec_each(manager, &["DROP TABLE export_cells"]).await
    }
}

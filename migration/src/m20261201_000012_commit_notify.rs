//! PostgreSQL announces every commit that appended to the event log on the channel
//! `logbook_commits`, so live subscribers on every node wake (see `event_log::live`). A statement
//! trigger with an empty payload: PostgreSQL delivers notifications at commit and folds identical
//! ones of a transaction into one, so a batch of thousands costs one notification and no extra
//! round trip. SQLite has one process; it wakes its subscribers in memory.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "CREATE FUNCTION logbook_notify_commit() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         PERFORM pg_notify('logbook_commits', '');
         RETURN NULL;
     END $$",
    "CREATE TRIGGER event_log_notify_commit AFTER INSERT ON event_log
     FOR EACH STATEMENT EXECUTE FUNCTION logbook_notify_commit()",
];

const DOWN: &[&str] = &["DROP TRIGGER event_log_notify_commit ON event_log", "DROP FUNCTION logbook_notify_commit()"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        exec_each(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        exec_each(manager, DOWN).await
    }
}

//! The event log admits an UPDATE of an event's payload and metadata under the same permit as the
//! retention purge's DELETE: re-sealing secrets under a new key and erasing a customer rewrite what
//! events say, never which events there are or where they sit in the log. Every other column stays
//! immutable, permit or not.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

// One text each, so that the drop and the create run on one pooled connection: another one may
// still hold the schema from before the drop.
const UP_SQLITE: &[&str] = &["DROP TRIGGER event_log_no_update;
    CREATE TRIGGER event_log_no_update BEFORE UPDATE ON event_log
     WHEN NOT EXISTS (SELECT 1 FROM event_log_purge_permits)
     BEGIN SELECT RAISE(ABORT, 'event_log is append-only: UPDATE refused outside a redaction'); END;
    CREATE TRIGGER event_log_fixed_columns BEFORE UPDATE OF seq, event_id, project_id, stream_type, stream_id,
     stream_version, event_type, schema_version, recorded_at_ms ON event_log
     BEGIN SELECT RAISE(ABORT, 'event_log: only payload and metadata may be redacted'); END"];

const DOWN_SQLITE: &[&str] = &["DROP TRIGGER event_log_fixed_columns;
    DROP TRIGGER event_log_no_update;
    CREATE TRIGGER event_log_no_update BEFORE UPDATE ON event_log
     BEGIN SELECT RAISE(ABORT, 'event_log is append-only: UPDATE refused'); END"];

const UP_POSTGRES: &[&str] = &["CREATE OR REPLACE FUNCTION event_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM event_log_purge_permits) THEN
         RETURN OLD;
       END IF;
       IF TG_OP = 'UPDATE' AND EXISTS (SELECT 1 FROM event_log_purge_permits) THEN
         IF (NEW.seq, NEW.event_id, NEW.project_id, NEW.stream_type, NEW.stream_id, NEW.stream_version,
             NEW.event_type, NEW.schema_version, NEW.recorded_at_ms)
            IS DISTINCT FROM (OLD.seq, OLD.event_id, OLD.project_id, OLD.stream_type, OLD.stream_id,
             OLD.stream_version, OLD.event_type, OLD.schema_version, OLD.recorded_at_ms) THEN
           RAISE EXCEPTION 'event_log: only payload and metadata may be redacted';
         END IF;
         RETURN NEW;
       END IF;
       RAISE EXCEPTION 'event_log is append-only: % refused', TG_OP;
     END $$"];

const DOWN_POSTGRES: &[&str] = &["CREATE OR REPLACE FUNCTION event_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM event_log_purge_permits) THEN
         RETURN OLD;
       END IF;
       RAISE EXCEPTION 'event_log is append-only: % refused', TG_OP;
     END $$"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => exec_each(manager, UP_POSTGRES).await,
            _ => exec_each(manager, UP_SQLITE).await,
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => exec_each(manager, DOWN_POSTGRES).await,
            _ => exec_each(manager, DOWN_SQLITE).await,
        }
    }
}

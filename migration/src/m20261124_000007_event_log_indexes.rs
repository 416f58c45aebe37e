//! Two index entries fewer per request log, on the hot path of ingestion. The unique stream index
//! leaves out one-event streams (request logs and published events: a new id each, never
//! continued, and unique in their own projection tables), and the event log's project/time index
//! goes: nothing reads the log by project and time (the retention purge finds rows through the
//! projections).

use sea_orm_migration::prelude::*;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The streams whose versions the unique index checks. A query that looks streams up must repeat
/// this condition word for word for SQLite to use the partial index.
pub const VERSIONED_STREAMS: &str = "stream_type NOT IN ('log', 'event')";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let create = format!("CREATE UNIQUE INDEX event_log_versions ON event_log (stream_type, stream_id, stream_version) WHERE {VERSIONED_STREAMS}");
        exec_each(manager, &[&create, "DROP INDEX event_log_stream", "DROP INDEX event_log_project_time"]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec_each(manager, &[
            "CREATE UNIQUE INDEX event_log_stream ON event_log (stream_type, stream_id, stream_version)",
            "CREATE INDEX event_log_project_time ON event_log (project_id, recorded_at_ms)",
            "DROP INDEX event_log_versions",
        ])
        .await
    }
}

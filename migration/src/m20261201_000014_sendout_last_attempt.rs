//! A sendout keeps when its last attempt was made and what it got back (`last_http_status`, or `last_error`, the kind
//! of failure when no answer came), so failure groups and their filters read one row per sendout
//! instead of each one's attempts. Events and tasks are indexed by the request that caused them, for
//! the `request_id` filters the console's chain of a request follows. Existing sendouts take them from their newest attempt; the
//! kinds below are `domain::sendout::FailureKind::of` as it stood when this migration was written.

use sea_orm_migration::prelude::*;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

const LAST: &str = "(SELECT a.{col} FROM sendout_attempts a WHERE a.sendout_id = sendouts.id ORDER BY a.attempted_at_ms DESC, a.id DESC LIMIT 1)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let last = |col: &str| LAST.replace("{col}", col);
        // The newest attempt's error text first, then its kind in its place.
        let copy = format!(
            "UPDATE sendouts SET last_attempt_at_ms = {}, last_http_status = {}, last_error = {} WHERE attempt_count > 0",
            last("attempted_at_ms"),
            last("http_status"),
            last("error")
        );
        let kind = "UPDATE sendouts SET last_error = CASE \
             WHEN last_http_status IS NOT NULL THEN NULL \
             WHEN lower(last_error) LIKE 'no answer within%' OR lower(last_error) LIKE '%timed out%' OR lower(last_error) LIKE '%timeout%' THEN 'timeout' \
             WHEN lower(last_error) LIKE 'the url reaches%' THEN 'blocked' \
             WHEN lower(last_error) LIKE 'reading the response failed%' THEN 'read' \
             WHEN lower(last_error) LIKE '%dns error%' OR lower(last_error) LIKE '%failed to lookup%' THEN 'dns' \
             WHEN lower(last_error) LIKE '%certificate%' OR lower(last_error) LIKE '%tls%' OR lower(last_error) LIKE '%ssl%' OR lower(last_error) LIKE '%handshake%' THEN 'tls' \
             WHEN lower(last_error) LIKE '%connect%' THEN 'connect' \
             ELSE 'other' END \
             WHERE last_error IS NOT NULL";
        exec_each(
            manager,
            &[
                "ALTER TABLE sendouts ADD COLUMN last_attempt_at_ms BIGINT",
                "ALTER TABLE sendouts ADD COLUMN last_http_status INTEGER", "ALTER TABLE sendouts ADD COLUMN last_error TEXT",
                &copy,
                kind,
                // The chain from a request to what it caused looks these up by request.
                "CREATE INDEX events_project_request ON events (project_id, request_id) WHERE request_id IS NOT NULL",
                "CREATE INDEX tasks_project_request ON tasks (project_id, request_id) WHERE request_id IS NOT NULL",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec_each(manager, &["DROP INDEX tasks_project_request", "DROP INDEX events_project_request"]).await?;
        let drop = ["last_error", "last_http_status", "last_attempt_at_ms"].map(|c| format!("ALTER TABLE sendouts DROP COLUMN {c}"));
        exec_each(manager, &drop.iter().map(String::as_str).collect::<Vec<_>>()).await
    }
}

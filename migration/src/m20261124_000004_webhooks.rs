//! Webhook endpoints, sendouts with their attempts, and `Idempotency-Key`s of published events.

use sea_orm_migration::prelude::*;

use crate::exec_each;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL,
        url TEXT NOT NULL,
        event_types TEXT NOT NULL,
        description TEXT,
        enabled BOOLEAN NOT NULL,
        disabled_reason TEXT,
        rate_limit_per_second INTEGER,
        secret TEXT NOT NULL,
        previous_secret TEXT,
        previous_secret_until_ms BIGINT,
        failing_since_ms BIGINT,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL)",
    "CREATE INDEX webhooks_project ON webhooks (project_id, created_at_ms, id)",
    // `generation` counts the attempts scheduled; a delivery job names the one it is for, so a
    // stale job (the sendout was retried by hand meanwhile) does nothing.
    "CREATE TABLE sendouts (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL,
        webhook_id TEXT NOT NULL,
        url TEXT NOT NULL,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        source_id TEXT,
        request_id TEXT,
        status TEXT NOT NULL,
        attempt_count INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        scheduled_attempts INTEGER NOT NULL,
        next_attempt_at_ms BIGINT,
        created_at_ms BIGINT NOT NULL,
        sent_at_ms BIGINT,
        delivered_at_ms BIGINT)",
    "CREATE INDEX sendouts_project_time ON sendouts (project_id, created_at_ms, id)",
    "CREATE INDEX sendouts_project_status ON sendouts (project_id, status, created_at_ms)",
    "CREATE INDEX sendouts_project_webhook ON sendouts (project_id, webhook_id, created_at_ms)",
    "CREATE INDEX sendouts_project_type ON sendouts (project_id, event_type, created_at_ms)",
    "CREATE INDEX sendouts_project_source ON sendouts (project_id, source_id, created_at_ms) WHERE source_id IS NOT NULL",
    "CREATE INDEX sendouts_project_request ON sendouts (project_id, request_id) WHERE request_id IS NOT NULL",
    "CREATE INDEX sendouts_event ON sendouts (event_id)",
    // The sweeper looks for due sendouts whose delivery job went missing.
    "CREATE INDEX sendouts_due ON sendouts (next_attempt_at_ms) WHERE next_attempt_at_ms IS NOT NULL",
    "CREATE TABLE sendout_attempts (
        id TEXT PRIMARY KEY,
        sendout_id TEXT NOT NULL,
        attempted_at_ms BIGINT NOT NULL,
        trigger TEXT NOT NULL,
        http_status INTEGER,
        response_headers TEXT NOT NULL,
        response_body TEXT,
        duration_ms BIGINT NOT NULL,
        error TEXT)",
    "CREATE INDEX sendout_attempts_sendout ON sendout_attempts (sendout_id, attempted_at_ms)",
    "CREATE TABLE event_idempotency (
        project_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        event_id TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (project_id, idempotency_key))",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        exec_each(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["event_idempotency", "sendout_attempts", "sendouts", "webhooks"] {
            manager.get_connection().execute_unprepared(&format!("DROP TABLE {table}")).await?;
        }
        Ok(())
    }
}

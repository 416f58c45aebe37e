//! Exports: created by `export.created`, then moved along by their task's events (an export's
//! state is its task's: started, done with the file it wrote, failed or cancelled).

use entity::export;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter};

use crate::domain::export::ExportStatus;
use crate::event_log::{DomainEvent, StoredEvent};

/// What an export's task reports as its result when done.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ExportResult {
    pub file_id: Option<String>,
    pub row_count: i64,
    pub size_bytes: i64,
}

pub async fn apply(conn: &impl ConnectionTrait, stored: &StoredEvent) -> Result<(), DbErr> {
    let at = stored.recorded_at_ms;
    let by_task = |task_id: &str| export::Entity::update_many().filter(export::Column::TaskId.eq(task_id));
    match &stored.event {
        DomainEvent::ExportCreated(e) => {
            let actor = &stored.metadata.actor;
            let row = export::Model {
                id: e.id.clone(),
                project_id: e.project_id.clone(),
                task_id: e.task_id.clone(),
                resource: e.resource.as_str().to_owned(),
                filters: e.filters.to_string(),
                fields: serde_json::to_string(&e.fields).unwrap_or_default(),
                format: e.format.as_str().to_owned(),
                time_zone: e.time_zone.name().to_owned(),
                status: ExportStatus::Scheduled.as_str().to_owned(),
                created_by_kind: actor.kind.as_str().to_owned(),
                created_by_id: actor.id.clone(),
                request_id: stored.metadata.request_log_id.clone(),
                created_at_ms: at,
                finished_at_ms: None,
                row_count: None,
                size_bytes: None,
                file_id: None,
                error: None,
            };
            export::Entity::insert(row.into_active_model()).exec_without_returning(conn).await?;
        }
        DomainEvent::TaskStarted(e) => {
            by_task(&e.id).col_expr(export::Column::Status, Expr::value(ExportStatus::InProgress.as_str())).exec(conn).await?;
        }
        DomainEvent::TaskCompleted(e) => {
            let result: ExportResult = serde_json::from_value(e.result.clone()).unwrap_or_default();
            by_task(&e.id)
                .col_expr(export::Column::Status, Expr::value(ExportStatus::Done.as_str()))
                .col_expr(export::Column::FinishedAtMs, Expr::value(at))
                .col_expr(export::Column::RowCount, Expr::value(result.row_count))
                .col_expr(export::Column::SizeBytes, Expr::value(result.size_bytes))
                .col_expr(export::Column::FileId, Expr::value(result.file_id))
                .exec(conn)
                .await?;
        }
        DomainEvent::TaskFailed(e) => failed(conn, &e.id, &e.message, at).await?,
        DomainEvent::TaskCancelled(e) => failed(conn, &e.id, "The export was cancelled.", at).await?,
        DomainEvent::ExportWithdrawn(e) => {
            export::Entity::update_many()
                .filter(export::Column::Id.eq(&e.id))
                .col_expr(export::Column::Status, Expr::value(ExportStatus::Failed.as_str()))
                .col_expr(export::Column::Error, Expr::value(e.reason.as_str()))
                .col_expr(export::Column::FileId, Expr::value(Option::<String>::None))
                .col_expr(export::Column::SizeBytes, Expr::value(Option::<i64>::None))
                .exec(conn)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

async fn failed(conn: &impl ConnectionTrait, task_id: &str, message: &str, at: i64) -> Result<(), DbErr> {
    export::Entity::update_many()
        .filter(export::Column::TaskId.eq(task_id))
        .col_expr(export::Column::Status, Expr::value(ExportStatus::Failed.as_str()))
        .col_expr(export::Column::FinishedAtMs, Expr::value(at))
        .col_expr(export::Column::Error, Expr::value(message))
        .exec(conn)
        .await
        .map(|_| ())
}

//! Background tasks and imports: current state, progress, the first 1,000 errors.

use entity::{import, task, task_error};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QuerySelect};
use serde_json::Value;

use crate::domain::task::{MAX_KEPT_ERRORS, ProcessingStatus, TaskError, TaskStatus};
use crate::event_log::{DomainEvent, StoredEvent};

pub async fn apply(conn: &impl ConnectionTrait, stored: &StoredEvent) -> Result<(), DbErr> {
    let at = stored.recorded_at_ms;
    match &stored.event {
        DomainEvent::TaskScheduled(e) => {
            let row = task::Model {
                id: e.id.clone(),
                project_id: e.project_id.clone(),
                task_type: e.task_type.as_str().to_owned(),
                status: TaskStatus::Scheduled.as_str().to_owned(),
                processing_status: None,
                processed: 0,
                total: e.total,
                percent: 0,
                created_at_ms: at,
                started_at_ms: None,
                finished_at_ms: None,
                created_by_kind: e.created_by.kind.as_str().to_owned(),
                created_by_id: e.created_by.id.clone(),
                request_id: e.request_id.clone(),
                related: json_text(&e.related),
                params: e.params.to_string(),
                result: "{}".into(),
                error_count: 0,
                checkpoint: None,
                attempts: 0,
            };
            task::Entity::insert(row.into_active_model()).exec_without_returning(conn).await?;
        }
        DomainEvent::TaskStarted(e) => {
            task::Entity::update_many()
                .col_expr(task::Column::Status, Expr::value(TaskStatus::InProgress.as_str()))
                .col_expr(task::Column::StartedAtMs, Expr::col(task::Column::StartedAtMs).if_null(at))
                .col_expr(task::Column::Attempts, Expr::col(task::Column::Attempts).add(1))
                .filter(task::Column::Id.eq(&e.id))
                .exec(conn)
                .await?;
        }
        DomainEvent::TaskProgressed(e) => {
            let row = task::ActiveModel {
                id: Set(e.id.clone()),
                processed: Set(e.processed),
                total: Set(e.total),
                percent: Set(e.percent),
                checkpoint: Set(Some(e.checkpoint.to_string())),
                result: Set(e.result.to_string()),
                ..Default::default()
            };
            task::Entity::update(row).exec(conn).await?;
            add_errors(conn, &e.id, &e.errors).await?;
            update_import_counts(conn, &e.id, &e.result).await?;
        }
        DomainEvent::TaskCompleted(e) => {
            let row = task::ActiveModel {
                id: Set(e.id.clone()),
                status: Set(TaskStatus::Done.as_str().to_owned()),
                processing_status: Set(Some(e.processing_status.as_str().to_owned())),
                processed: Set(e.processed),
                total: Set(Some(e.processed)),
                percent: Set(100),
                result: Set(e.result.to_string()),
                finished_at_ms: Set(Some(at)),
                ..Default::default()
            };
            task::Entity::update(row).exec(conn).await?;
            update_import_counts(conn, &e.id, &e.result).await?;
        }
        DomainEvent::TaskFailed(e) => {
            finish(conn, &e.id, TaskStatus::Failed, at).await?;
            add_errors(conn, &e.id, &[TaskError { line: None, message: e.message.clone() }]).await?;
        }
        DomainEvent::TaskCancelled(e) => finish(conn, &e.id, TaskStatus::Cancelled, at).await?,
        DomainEvent::ImportCreated(e) => {
            let row = import::Model {
                id: e.id.clone(),
                project_id: e.project_id.clone(),
                task_id: e.task_id.clone(),
                file_id: e.file_id.clone(),
                file_name: e.file_name.clone(),
                content_type: e.content_type.clone(),
                size_bytes: e.size_bytes,
                sha256: e.sha256.clone(),
                format: json_text(&e.format).trim_matches('"').to_owned(),
                rows_total: 0,
                rows_imported: 0,
                rows_failed: 0,
                created_at_ms: at,
                request_id: stored.metadata.request_log_id.clone(),
            };
            import::Entity::insert(row.into_active_model()).exec_without_returning(conn).await?;
        }
        _ => {}
    }
    Ok(())
}

/// Ends a task that did not complete its work: failed, or cancelled.
async fn finish(conn: &impl ConnectionTrait, id: &str, status: TaskStatus, at: i64) -> Result<(), DbErr> {
    let row = task::ActiveModel {
        id: Set(id.to_owned()),
        status: Set(status.as_str().to_owned()),
        processing_status: Set(Some(ProcessingStatus::Failure.as_str().to_owned())),
        finished_at_ms: Set(Some(at)),
        ..Default::default()
    };
    task::Entity::update(row).exec(conn).await.map(|_| ())
}

/// Counts every error and keeps the first [`MAX_KEPT_ERRORS`].
async fn add_errors(conn: &impl ConnectionTrait, task_id: &str, errors: &[TaskError]) -> Result<(), DbErr> {
    if errors.is_empty() {
        return Ok(());
    }
    let count: Option<i64> = task::Entity::find_by_id(task_id)
        .select_only()
        .column(task::Column::ErrorCount)
        .into_tuple()
        .one(conn)
        .await?;
    let count = count.unwrap_or(0);
    let kept: Vec<task_error::ActiveModel> = errors
        .iter()
        .zip(count..MAX_KEPT_ERRORS)
        .map(|(e, position)| {
            task_error::Model { task_id: task_id.to_owned(), position, line: e.line, message: e.message.clone() }.into_active_model()
        })
        .collect();
    if !kept.is_empty() {
        task_error::Entity::insert_many(kept).exec_without_returning(conn).await?;
    }
    task::Entity::update_many()
        .col_expr(task::Column::ErrorCount, Expr::col(task::Column::ErrorCount).add(errors.len() as i64))
        .filter(task::Column::Id.eq(task_id))
        .exec(conn)
        .await
        .map(|_| ())
}

/// An import's counters follow its task's result.
async fn update_import_counts(conn: &impl ConnectionTrait, task_id: &str, result: &Value) -> Result<(), DbErr> {
    let count = |key: &str| result.get(key).and_then(Value::as_i64);
    let (Some(total), Some(imported), Some(failed)) = (count("rows_total"), count("rows_imported"), count("rows_failed")) else {
        return Ok(());
    };
    import::Entity::update_many()
        .col_expr(import::Column::RowsTotal, Expr::value(total))
        .col_expr(import::Column::RowsImported, Expr::value(imported))
        .col_expr(import::Column::RowsFailed, Expr::value(failed))
        .filter(import::Column::TaskId.eq(task_id))
        .exec(conn)
        .await
        .map(|_| ())
}

fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

//! Exports: created by `export.created`, then moved along by their task's events (an export's
//! state is its task's: started, failed or cancelled) and done by `export.written`, when its file
//! is whole. A logs export's task goes on to index its rows for browsing, which its progress
//! (`indexed_rows`) and its end report.

use entity::export;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter};

use crate::domain::export::{BrowseStatus, ExportResource, ExportStatus};
use crate::event_log::{DomainEvent, StoredEvent};

/// What an export's task reports as its result when done.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ExportResult {
    pub file_id: Option<String>,
    pub row_count: i64,
    pub size_bytes: i64,
}

/// The browse index's progress, in an export task's progress result.
pub const INDEXED_ROWS: &str = "indexed_rows";

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
                browse_status: None,
                browse_indexed_rows: None,
            };
            export::Entity::insert(row.into_active_model()).exec_without_returning(conn).await?;
        }
        DomainEvent::TaskStarted(e) => {
            // A task resumed after the file was whole goes on indexing a done export.
            by_task(&e.id).filter(export::Column::Status.ne(ExportStatus::Done.as_str())).col_expr(export::Column::Status, Expr::value(ExportStatus::InProgress.as_str())).exec(conn).await?;
        }
        DomainEvent::ExportWritten(e) => {
            let (browse, indexed) = if e.browse { (Some(BrowseStatus::Indexing.as_str()), Some(0)) } else { (None, None) };
            export::Entity::update_many()
                .filter(export::Column::Id.eq(&e.id))
                .col_expr(export::Column::Status, Expr::value(ExportStatus::Done.as_str()))
                .col_expr(export::Column::FinishedAtMs, Expr::value(at))
                .col_expr(export::Column::RowCount, Expr::value(e.row_count))
                .col_expr(export::Column::SizeBytes, Expr::value(e.size_bytes))
                .col_expr(export::Column::FileId, Expr::value(e.file_id.as_str()))
                .col_expr(export::Column::BrowseStatus, Expr::value(browse))
                .col_expr(export::Column::BrowseIndexedRows, Expr::value(indexed))
                .exec(conn)
                .await?;
        }
        DomainEvent::TaskProgressed(e) => {
            if let Some(indexed) = e.result.get(INDEXED_ROWS).and_then(|v| v.as_i64()) {
                by_task(&e.id).col_expr(export::Column::BrowseIndexedRows, Expr::value(indexed)).exec(conn).await?;
            }
        }
        DomainEvent::TaskCompleted(e) => {
            // Also what made an export done before `export.written` existed (its rows were
            // indexed as they were written); `finished_at` stays when the file was whole.
            let result: ExportResult = serde_json::from_value(e.result.clone()).unwrap_or_default();
            let logs = export::Column::Resource.eq(ExportResource::Logs.as_str());
            by_task(&e.id)
                .col_expr(export::Column::Status, Expr::value(ExportStatus::Done.as_str()))
                .col_expr(export::Column::FinishedAtMs, Expr::col(export::Column::FinishedAtMs).if_null(at))
                .col_expr(export::Column::RowCount, Expr::value(result.row_count))
                .col_expr(export::Column::SizeBytes, Expr::value(result.size_bytes))
                .col_expr(export::Column::FileId, Expr::value(result.file_id))
                .col_expr(export::Column::BrowseStatus, Expr::case(logs.clone(), BrowseStatus::Ready.as_str()).finally(Expr::null()).into())
                .col_expr(export::Column::BrowseIndexedRows, Expr::case(logs, result.row_count).finally(Expr::null()).into())
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

/// A task that fails before the file is whole fails its export; one that fails while indexing
/// leaves the export done, not browsable.
async fn failed(conn: &impl ConnectionTrait, task_id: &str, message: &str, at: i64) -> Result<(), DbErr> {
    let done = ExportStatus::Done.as_str();
    export::Entity::update_many()
        .filter(export::Column::TaskId.eq(task_id))
        .filter(export::Column::Status.eq(done))
        .col_expr(export::Column::BrowseStatus, Expr::value(BrowseStatus::Failed.as_str()))
        .exec(conn)
        .await?;
    export::Entity::update_many()
        .filter(export::Column::TaskId.eq(task_id))
        .filter(export::Column::Status.ne(done))
        .col_expr(export::Column::Status, Expr::value(ExportStatus::Failed.as_str()))
        .col_expr(export::Column::FinishedAtMs, Expr::value(at))
        .col_expr(export::Column::Error, Expr::value(message))
        .exec(conn)
        .await
        .map(|_| ())
}

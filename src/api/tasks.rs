//! `/v1/tasks`: background tasks, their progress and errors; cancelling.

use actix_web::{HttpRequest, get, post, web};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::api::auth::ProjectMember;
use crate::api::dto::ListOut;
use crate::api::extract::{ListParams, ListQuery};
use crate::api::request_log;
use crate::domain::log::{RelatedKind, RelatedRef};
use crate::domain::params::Params;
use crate::domain::task::{ProcessingStatus, Task, TaskError, TaskFilter, TaskStatus, TaskType};
use crate::domain::time::{ProjectTimeZone, format_in_zone, format_utc, now_ms};
use crate::error::{ApiResult, ErrorBody};
use crate::services::tasks;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressOut {
    pub processed: i64,
    /// `null` while unknown (an import learns its row count as it reads).
    pub total: Option<i64>,
    pub percent: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedByOut {
    /// `user`, `server_key` or `system`.
    pub kind: String,
    pub id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskOut {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: TaskType,
    pub status: TaskStatus,
    /// `null` until the task ends.
    pub processing_status: Option<ProcessingStatus>,
    pub progress: ProgressOut,
    /// Time spent running: until now while running, until the end once finished.
    pub processing_time_ms: Option<i64>,
    pub created_at: String,
    pub created_at_project: String,
    pub started_at: Option<String>,
    pub started_at_project: Option<String>,
    pub finished_at: Option<String>,
    pub finished_at_project: Option<String>,
    pub created_by: CreatedByOut,
    /// The log id of the request that scheduled the task.
    pub request_id: Option<String>,
    pub related: Vec<RelatedRef>,
    /// The outcome so far: an import's row counts, a purge's removed counts.
    #[schema(value_type = Object)]
    pub result: Value,
    pub error_count: i64,
    /// The first 1,000 errors; only in `GET /v1/tasks/{id}` and cancel responses (lists carry
    /// `error_count`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<TaskError>>,
}

impl TaskOut {
    pub fn new(task: Task, zone: &ProjectTimeZone, errors: Option<Vec<TaskError>>) -> Self {
        let at = |ms: Option<i64>| ms.map(format_utc);
        let at_project = |ms: Option<i64>| ms.map(|ms| format_in_zone(ms, zone));
        Self {
            processing_time_ms: task.processing_time_ms(now_ms()),
            task_type: task.task_type,
            status: task.status,
            processing_status: task.processing_status,
            progress: ProgressOut { processed: task.processed, total: task.total, percent: task.percent },
            created_at: format_utc(task.created_at_ms),
            created_at_project: format_in_zone(task.created_at_ms, zone),
            started_at: at(task.started_at_ms),
            started_at_project: at_project(task.started_at_ms),
            finished_at: at(task.finished_at_ms),
            finished_at_project: at_project(task.finished_at_ms),
            created_by: CreatedByOut {
                kind: task.created_by.kind.as_str().to_owned(),
                id: task.created_by.id,
            },
            request_id: task.request_id,
            related: task.related,
            result: task.result,
            error_count: task.error_count,
            errors,
            id: task.id,
        }
    }
}

/// A task with its kept errors, as the detail endpoints answer.
pub async fn detail(state: &AppState, task: Task, zone: &ProjectTimeZone) -> ApiResult<TaskOut> {
    let errors = tasks::errors(&state.db, &task.id).await?;
    Ok(TaskOut::new(task, zone, Some(errors)))
}

#[utoipa::path(
    operation_id = "list_tasks", tag = "tasks", security(("bearer" = [])),
    params(ListParams<TaskFilter>),
    responses(
        (status = 200, description = "OK", body = ListOut<TaskOut>),
    )
)]
#[get("/tasks")]
async fn list_tasks(state: web::Data<AppState>, member: ProjectMember, params: Params) -> ApiResult<web::Json<ListOut<TaskOut>>> {

    let zone = member.access.project.time_zone;
    let query = ListQuery::<TaskFilter>::read(&params, &zone)?;
    let page = tasks::list(&state.db, member.project_id(), &query.filter, query.limit, query.cursor.as_ref()).await?;
    Ok(web::Json(ListOut::from_page(page, |row| TaskOut::new(row, &zone, None))))
}

#[utoipa::path(
    operation_id = "get_task", tag = "tasks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = TaskOut),)
)]
#[get("/tasks/{id}")]
async fn get_task(state: web::Data<AppState>, member: ProjectMember, id: web::Path<String>) -> ApiResult<web::Json<TaskOut>> {
    let row = tasks::get(&state.db, member.project_id(), &id).await?;
    Ok(web::Json(detail(&state, row, &member.access.project.time_zone).await?))
}

#[utoipa::path(
    operation_id = "cancel_task", tag = "tasks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "Cancelled: a scheduled task never starts, a running one stops at its next step", body = TaskOut), (status = 409, description = "The task has already finished", body = ErrorBody),
    )
)]
#[post("/tasks/{id}/cancel")]
async fn cancel_task(state: web::Data<AppState>, member: ProjectMember, req: HttpRequest, id: web::Path<String>) -> ApiResult<web::Json<TaskOut>> {
    request_log::relate(&req, RelatedKind::Task, &id);
    let row = tasks::cancel(&state.store, member.project_id(), &id, &member.meta).await?;
    Ok(web::Json(detail(&state, row, &member.access.project.time_zone).await?))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_tasks).service(get_task).service(cancel_task);
}

//! Background tasks: scheduling, reading, cancelling, and the fenced steps that workers commit.
//!
//! A worker owns a task only as long as the task's checkpoint is the one it last committed: each
//! step re-reads the task in the appending transaction and appends only if nothing else moved it
//! (a cancel, or another worker that took over after a lease expired). On PostgreSQL two writers
//! racing past that check both append the task's next stream version, and the loser's transaction
//! fails on the unique version. So a step, with the events it publishes, happens exactly once.

use entity::{task, task_error};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};

use super::events::with_sendouts;
use super::Keyset;
use crate::domain::event::system;
use crate::domain::ids::{IdKind, new_id};
use crate::domain::log::RelatedRef;
use crate::domain::pagination::{Cursor, Limit, Page};
use crate::domain::actor::Actor;
use crate::domain::task::{ProcessingStatus, Task, TaskError, TaskFilter, TaskStatus, TaskType};
use super::error::{ServiceError, ServiceResult};
use crate::event_log::{
    DomainEvent, EventMetadata, EventStore, StoreError, TaskCompleted, TaskFailed, TaskProgressed, TaskRef,
    TaskScheduled, Writer,
};

/// What a new task is about; the id is minted by [`scheduled`].
pub struct NewTask {
    pub project_id: String,
    pub task_type: TaskType,
    pub params: Value,
    pub related: Vec<RelatedRef>,
    pub total: Option<i64>,
}

/// The event that creates a task, with a fresh id.
pub fn scheduled(meta: &EventMetadata, new: NewTask) -> TaskScheduled {
    TaskScheduled {
        id: new_id(IdKind::Task),
        project_id: new.project_id,
        task_type: new.task_type,
        created_by: meta.actor.clone(),
        request_id: meta.request_log_id.clone(),
        related: new.related,
        params: new.params,
        total: new.total,
    }
}

/// The task, decoded.
pub async fn get(db: &impl ConnectionTrait, project_id: &str, id: &str) -> ServiceResult<Task> {
    Ok(read(row(db, project_id, id).await?))
}

async fn row(db: &impl ConnectionTrait, project_id: &str, id: &str) -> ServiceResult<task::Model> {
    task::Entity::find_by_id(id)
        .filter(task::Column::ProjectId.eq(project_id))
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::NotFound("task"))
}

/// Decodes a projection row. The projector wrote every field from a typed event, so a value
/// that does not parse can only come from a hand-edited database; it reads as its safe default.
pub fn read(row: task::Model) -> Task {
    Task {
        task_type: TaskType::parse(&row.task_type).unwrap_or(TaskType::Import),
        status: status(&row),
        processing_status: row.processing_status.as_deref().and_then(|s| ProcessingStatus::parse(s).ok()),
        processed: row.processed,
        total: row.total,
        percent: row.percent,
        created_at_ms: row.created_at_ms,
        started_at_ms: row.started_at_ms,
        finished_at_ms: row.finished_at_ms,
        created_by: Actor::stored(&row.created_by_kind, row.created_by_id),
        request_id: row.request_id,
        related: serde_json::from_str(&row.related).unwrap_or_default(),
        result: serde_json::from_str(&row.result).unwrap_or(Value::Null),
        error_count: row.error_count,
        id: row.id,
    }
}

/// The kept errors of a task, in order.
pub async fn errors(db: &DatabaseConnection, task_id: &str) -> ServiceResult<Vec<TaskError>> {
    let rows = task_error::Entity::find()
        .filter(task_error::Column::TaskId.eq(task_id))
        .order_by_asc(task_error::Column::Position)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| TaskError { line: r.line, message: r.message }).collect())
}

/// The tasks `f` selects, in list order.
pub fn lister(project_id: &str, f: &TaskFilter) -> Keyset<task::Entity> {
    let mut c = Condition::all().add(task::Column::ProjectId.eq(project_id));
    if let Some(after) = f.created_after {
        c = c.add(task::Column::CreatedAtMs.gte(after));
    }
    if let Some(before) = f.created_before {
        c = c.add(task::Column::CreatedAtMs.lt(before));
    }
    if !f.task_type.is_empty() {
        c = c.add(task::Column::TaskType.is_in(f.task_type.iter().map(|t| t.as_str())));
    }
    if !f.status.is_empty() {
        c = c.add(task::Column::Status.is_in(f.status.iter().map(|s| s.as_str())));
    }
    if !f.processing_status.is_empty() {
        c = c.add(task::Column::ProcessingStatus.is_in(f.processing_status.iter().map(|s| s.as_str())));
    }
    if !f.request_id.is_empty() {
        c = c.add(task::Column::RequestId.is_in(f.request_id.iter().cloned()));
    }
    Keyset::new(task::Entity::find().filter(c), task::Column::CreatedAtMs, task::Column::Id, |r| Cursor { time_ms: r.created_at_ms, id: r.id.clone() })
}

pub async fn list(db: &DatabaseConnection, project_id: &str, f: &TaskFilter, limit: Limit, cursor: Option<&Cursor>) -> ServiceResult<Page<Task>> {
    Ok(lister(project_id, f).page(db, limit, cursor).await?.map(read))
}

pub fn status(row: &task::Model) -> TaskStatus {
    TaskStatus::parse(&row.status).unwrap_or(TaskStatus::Failed)
}

/// Cancels a scheduled task before it starts, or a running one at its next step (what it already
/// committed stays). A finished task answers 409.
pub async fn cancel(store: &EventStore, project_id: &str, id: &str, meta: &EventMetadata) -> ServiceResult<Task> {
    // A race with a worker's step is lost by one side on PostgreSQL; cancelling simply tries again.
    for _ in 0..5 {
        let writer = store.begin().await?;
        let current = status(&row(writer.conn(), project_id, id).await?);
        if current.is_finished() {
            return Err(ServiceError::Conflict(format!("The task is already {}; only scheduled or running tasks can be cancelled.", current.as_str())));
        }
        let event = DomainEvent::TaskCancelled(TaskRef { id: id.to_owned(), project_id: project_id.to_owned() });
        match writer.append(meta, vec![event]).await {
            Ok(_) => {
                let task = get(writer.conn(), project_id, id).await?;
                writer.commit().await?;
                return Ok(task);
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ServiceError::Conflict("The task changed while cancelling it; try again.".into()))
}

/// Why a worker stopped working on a task.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The task was cancelled, finished, or taken over; the worker lets go.
    #[error("the task is no longer this worker's to run")]
    Lost,
    /// The process is stopping: the task stopped between steps (what it committed stays) and its
    /// job goes back to the queue for another worker to resume.
    #[error("the process is stopping")]
    Stopping,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something the step needs has not happened yet (an export still running, the search index
    /// behind): the job is tried again later, as after a storage error.
    #[error("{0}")]
    NotYet(String),
    /// The task cannot be done as it was asked (say, a filter that no longer reads): it fails at
    /// once with this reason, since trying again would fail the same way.
    #[error(transparent)]
    Refused(ServiceError),
}

impl From<sea_orm::DbErr> for StepError {
    fn from(e: sea_orm::DbErr) -> Self {
        StepError::Store(StoreError::Db(e))
    }
}

impl From<ServiceError> for StepError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Store(e) => StepError::Store(e),
            ServiceError::Db(e) => e.into(),
            other => StepError::Refused(other),
        }
    }
}

impl StepError {
    /// What a task that ends on this error says, in its `error`.
    pub fn reason(&self) -> String {
        match self {
            StepError::Refused(ServiceError::Internal(_)) => "The task failed on an internal error; the server log has the cause.".into(),
            other => format!("The task cannot be done: {other}."),
        }
    }
}

/// Ends as failed a task whose job has used up its attempts, so that it does not stay `in_progress`
/// with nothing left to run it. Nothing happens to a task that has finished or been cancelled.
pub async fn give_up(store: &EventStore, task_id: &str, message: String) -> Result<(), StepError> {
    let Some(mut run) = TaskRun::start(store, task_id).await? else { return Ok(()) };
    // An export says so itself too, however it failed.
    let events = match super::exports::export_of(&run).filter(|_| run.task.task_type == TaskType::Export.as_str()) {
        Some(export_id) => vec![super::exports::failed_event(&run, &export_id, &message)],
        None => Vec::new(),
    };
    run.fail(events, message).await
}

/// A worker's hold on a running task; see the module comment.
pub struct TaskRun {
    store: EventStore,
    pub task: task::Model,
    meta: EventMetadata,
    /// Turns true when the process stops; the next step is then not begun.
    stop: Option<tokio::sync::watch::Receiver<bool>>,
}

impl TaskRun {
    /// Starts (or, after a crash, resumes) a task. `None` when it is finished or cancelled.
    pub async fn start(store: &EventStore, task_id: &str) -> Result<Option<TaskRun>, StepError> {
        let writer = store.begin().await?;
        let Some(row) = task::Entity::find_by_id(task_id).one(writer.conn()).await? else { return Ok(None) };
        if status(&row).is_finished() {
            return Ok(None);
        }
        let meta = EventMetadata { actor: crate::domain::actor::Actor::system(), request_log_id: row.request_id.clone() };
        let started = DomainEvent::TaskStarted(TaskRef { id: row.id.clone(), project_id: row.project_id.clone() });
        match writer.append(&meta, vec![started]).await {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let task = task::Entity::find_by_id(task_id).one(writer.conn()).await?.unwrap_or(row);
        writer.commit().await?;
        Ok(Some(TaskRun { store: store.clone(), task, meta, stop: None }))
    }

    /// Makes the run stop before its next step once `stop` turns true (a step under way is
    /// finished and committed first: a transaction is never cut off).
    pub fn stops_with(mut self, stop: tokio::sync::watch::Receiver<bool>) -> Self {
        self.stop = Some(stop);
        self
    }

    pub fn checkpoint(&self) -> Option<Value> {
        self.task.checkpoint.as_deref().and_then(|c| serde_json::from_str(c).ok())
    }

    pub fn params(&self) -> Value {
        serde_json::from_str(&self.task.params).unwrap_or(Value::Null)
    }

    pub fn metadata(&self) -> &EventMetadata {
        &self.meta
    }

    /// Opens a step's transaction if the task is still this worker's; the step's own writes go
    /// through it, and [`TaskRun::finish_step`] commits them with the progress.
    pub async fn begin_step(&self) -> Result<Writer, StepError> {
        if self.stop.as_ref().is_some_and(|stop| *stop.borrow()) {
            return Err(StepError::Stopping);
        }
        let writer = self.store.begin().await?;
        let row = task::Entity::find_by_id(&self.task.id).one(writer.conn()).await?.ok_or(StepError::Lost)?;
        if status(&row) != TaskStatus::InProgress || row.checkpoint != self.task.checkpoint {
            return Err(StepError::Lost);
        }
        Ok(writer)
    }

    /// Appends the step's events (published ones with their sendouts) and commits (the dispatcher
    /// queues the new sendouts' deliveries).
    async fn commit(&mut self, writer: Writer, mut events: Vec<DomainEvent>, last: DomainEvent) -> Result<(), StepError> {
        events.push(last);
        let events = with_sendouts(writer.conn(), events).await?;
        match writer.append(&self.meta, events).await {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => return Err(StepError::Lost),
            Err(e) => return Err(e.into()),
        }
        let row = task::Entity::find_by_id(&self.task.id).one(writer.conn()).await?.ok_or(StepError::Lost)?;
        writer.commit().await?;
        self.task = row;
        Ok(())
    }

    /// Commits `events` (what this step did) with the task's new progress, all or nothing.
    pub async fn step(&mut self, events: Vec<DomainEvent>, progress: Progress) -> Result<(), StepError> {
        let writer = self.begin_step().await?;
        self.finish_step(writer, events, progress).await
    }

    pub async fn finish_step(&mut self, writer: Writer, events: Vec<DomainEvent>, progress: Progress) -> Result<(), StepError> {
        let last = DomainEvent::TaskProgressed(TaskProgressed {
            id: self.task.id.clone(),
            project_id: self.task.project_id.clone(),
            processed: progress.processed,
            total: progress.total,
            percent: progress.percent,
            checkpoint: progress.checkpoint,
            result: progress.result,
            errors: progress.errors,
        });
        self.commit(writer, events, last).await
    }

    /// Ends the task as done; `failure` if some items failed.
    pub async fn complete(&mut self, events: Vec<DomainEvent>, processed: i64, failed_items: bool, result: Value) -> Result<(), StepError> {
        let writer = self.begin_step().await?;
        let processing_status = if failed_items || self.task.error_count > 0 { ProcessingStatus::Failure } else { ProcessingStatus::Success };
        let last = DomainEvent::TaskCompleted(TaskCompleted {
            id: self.task.id.clone(),
            project_id: self.task.project_id.clone(),
            processing_status,
            processed,
            result,
        });
        self.commit(writer, events, last).await
    }

    /// Ends the task as failed with `message`, and publishes `task.failed` (plus `events`).
    pub async fn fail(&mut self, mut events: Vec<DomainEvent>, message: String) -> Result<(), StepError> {
        let writer = self.begin_step().await?;
        events.push(self.system_event(system::TASK_FAILED, json!({
            "task_id": self.task.id, "type": self.task.task_type, "message": message,
        })));
        let last = DomainEvent::TaskFailed(TaskFailed { id: self.task.id.clone(), project_id: self.task.project_id.clone(), message });
        self.commit(writer, events, last).await
    }

    /// An event the server publishes about this task (`import.done`, `task.failed`).
    pub fn system_event(&self, event_type: &'static str, data: Value) -> DomainEvent {
        super::events::system_event(&self.task.project_id, event_type, data)
    }

}

/// A step's effect on the task.
pub struct Progress {
    pub processed: i64,
    pub total: Option<i64>,
    pub percent: i32,
    pub checkpoint: Value,
    pub result: Value,
    pub errors: Vec<TaskError>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_error_is_retried_and_any_other_service_error_fails_the_task_with_its_reason() {
        assert!(matches!(StepError::from(ServiceError::Db(sea_orm::DbErr::Custom("down".into()))), StepError::Store(_)));
        let refused = StepError::from(ServiceError::NotFound("export"));
        assert!(matches!(refused, StepError::Refused(_)));
        assert_eq!(refused.reason(), "The task cannot be done: no export with that id exists in this project.");
        let internal = StepError::from(ServiceError::Internal(anyhow::anyhow!("secret detail")));
        assert!(!internal.reason().contains("secret detail"), "an internal cause stays in the server log");
    }
}

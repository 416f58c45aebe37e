//! The retention purge: removes a project's data older than its retention window, event-log
//! entries included, in small batches (each its own transaction) so writers are never held back
//! for long. A batch and the task's progress commit together, so a resumed purge counts right.

use entity::{event_idempotency, event_log, export, export_row, file, import, log, log_related, published_event, sendout, sendout_attempt, task, task_error};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Statement};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::files;
use super::tasks::{self, NewTask, Progress, StepError, TaskRun};
use crate::domain::task::TaskType;
use crate::domain::time::{format_utc, now_ms};
use super::error::ServiceResult;
use crate::dialect;
use crate::event_log::{DailyRetentionRun, DomainEvent, EventMetadata, EventStore, StoreError, Writer, in_streams};

const DAY_MS: i64 = 86_400_000;
/// Rows removed per transaction.
const BATCH: u64 = 500;

/// Schedules a purge of `project_id` with the cutoff fixed now: whatever runs later never removes
/// anything younger than the window was when the purge was asked for.
pub async fn schedule(store: &EventStore, project_id: &str, meta: &EventMetadata) -> ServiceResult<crate::domain::task::Task> {
    let project = super::projects::get(store.db(), project_id).await?;
    let task = purge_task(meta, &project.id, project.retention_days);
    let id = task.id.clone();
    store.append(meta, vec![DomainEvent::TaskScheduled(task)]).await?;
    tasks::get(store.db(), project_id, &id).await
}

fn purge_task(meta: &EventMetadata, project_id: &str, retention_days: i32) -> crate::event_log::TaskScheduled {
    let cutoff_ms = now_ms() - i64::from(retention_days) * DAY_MS;
    tasks::scheduled(meta, NewTask {
        project_id: project_id.to_owned(),
        task_type: TaskType::RetentionPurge,
        params: json!({ "cutoff_ms": cutoff_ms, "retention_days": retention_days }),
        related: Vec::new(),
        total: None,
    })
}

/// The daily run: one purge task per project. The day's stream admits one event, so however many
/// nodes fire the schedule, one run happens.
pub async fn daily(store: &EventStore, day: String) -> Result<usize, StoreError> {
    let meta = EventMetadata::system();
    let projects: Vec<(String, i32)> = entity::project::Entity::find()
        .select_only()
        .columns([entity::project::Column::Id, entity::project::Column::RetentionDays])
        .into_tuple()
        .all(store.db())
        .await?;
    let tasks: Vec<_> = projects.iter().map(|(id, days)| purge_task(&meta, id, *days)).collect();
    let count = tasks.len();
    let mut events = vec![DomainEvent::DailyRetentionRun(DailyRetentionRun { day })];
    events.extend(tasks.into_iter().map(DomainEvent::TaskScheduled));
    match store.append(&meta, events).await {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => return Ok(0),
        Err(e) => return Err(e),
    }
    Ok(count)
}

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Removed {
    logs: i64,
    events: i64,
    imports: i64,
    #[serde(default)]
    exports: i64,
    files: i64,
    tasks: i64,
    sendouts: i64,
    event_log_entries: i64,
}

impl Removed {
    fn total(&self) -> i64 {
        self.logs + self.events + self.imports + self.exports + self.tasks + self.sendouts
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Logs,
    Sendouts,
    Events,
    Imports,
    Exports,
    Tasks,
}

pub async fn run(store: &EventStore, mut run: TaskRun) -> Result<(), StepError> {
    let cutoff_ms = run.params()["cutoff_ms"].as_i64().unwrap_or(i64::MIN);
    let project_id = run.task.project_id.clone();
    let mut removed: Removed = run.checkpoint().and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
    let result = |r: &Removed| {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        v["cutoff"] = Value::String(format_utc(cutoff_ms));
        v
    };
    for kind in [Kind::Logs, Kind::Sendouts, Kind::Events, Kind::Imports, Kind::Exports, Kind::Tasks] {
        loop {
            let writer = run.begin_step().await?;
            let mut purged_seqs = Vec::new();
            let n = purge_batch(&writer, kind, &project_id, &run.task.id, cutoff_ms, &mut removed, &mut purged_seqs).await?;
            if n == 0 {
                break;
            }
            let progress = Progress {
                processed: removed.total(),
                total: None,
                percent: 0,
                checkpoint: serde_json::to_value(removed).unwrap_or_default(),
                result: result(&removed),
                errors: Vec::new(),
            };
            run.finish_step(writer, Vec::new(), progress).await?;
            if let Err(err) = store.search().forget(&purged_seqs).await {
                tracing::warn!(error = %err, "purged logs stay in the search index (they match nothing)");
            }
        }
    }
    prune_endpoints(store, &project_id).await?;
    run.complete(Vec::new(), removed.total(), false, result(&removed)).await
}

/// Removes one batch of `kind`; returns how many resources went, and adds the positions of purged
/// logs to `purged_seqs` (for the search index, kept apart).
async fn purge_batch(
    writer: &Writer,
    kind: Kind,
    project_id: &str,
    this_task: &str,
    cutoff_ms: i64,
    removed: &mut Removed,
    purged_seqs: &mut Vec<i64>,
) -> Result<u64, DbErr> {
    let conn = writer.conn();
    let n = match kind {
        Kind::Logs => {
            let rows: Vec<(String, i64)> = log::Entity::find()
                .select_only()
                .columns([log::Column::Id, log::Column::EventSeq])
                .filter(log::Column::ProjectId.eq(project_id))
                .filter(log::Column::OccurredAtMs.lt(cutoff_ms))
                .limit(BATCH)
                .into_tuple()
                .all(conn)
                .await?;
            let (ids, seqs): (Vec<String>, Vec<i64>) = rows.into_iter().unzip();
            log_related::Entity::delete_many().filter(log_related::Column::LogId.is_in(ids.clone())).exec(conn).await?;
            log::Entity::delete_many().filter(log::Column::Id.is_in(ids.clone())).exec(conn).await?;
            removed.event_log_entries += delete_events(conn, project_id, event_log::Column::Seq.is_in(seqs.clone())).await? as i64;
            purged_seqs.extend(seqs);
            removed.logs += ids.len() as i64;
            ids.len()
        }
        Kind::Sendouts => {
            // Only finished ones: a sendout still retrying keeps its schedule.
            let ids: Vec<String> = sendout::Entity::find()
                .select_only()
                .column(sendout::Column::Id)
                .filter(sendout::Column::ProjectId.eq(project_id))
                .filter(sendout::Column::CreatedAtMs.lt(cutoff_ms))
                .filter(sendout::Column::Status.is_in(["delivered", "failed"]))
                .limit(BATCH)
                .into_tuple()
                .all(conn)
                .await?;
            sendout_attempt::Entity::delete_many().filter(sendout_attempt::Column::SendoutId.is_in(ids.clone())).exec(conn).await?;
            sendout::Entity::delete_many().filter(sendout::Column::Id.is_in(ids.clone())).exec(conn).await?;
            let stream = in_streams("sendout", ids.clone());
            removed.event_log_entries += delete_events(conn, project_id, stream).await? as i64;
            removed.sendouts += ids.len() as i64;
            ids.len()
        }
        Kind::Events => {
            let rows: Vec<(String, i64)> = published_event::Entity::find()
                .select_only()
                .columns([published_event::Column::Id, published_event::Column::EventSeq])
                .filter(published_event::Column::ProjectId.eq(project_id))
                .filter(published_event::Column::CreatedAtMs.lt(cutoff_ms))
                .limit(BATCH)
                .into_tuple()
                .all(conn)
                .await?;
            let (ids, seqs): (Vec<String>, Vec<i64>) = rows.into_iter().unzip();
            published_event::Entity::delete_many().filter(published_event::Column::Id.is_in(ids.clone())).exec(conn).await?;
            event_idempotency::Entity::delete_many().filter(event_idempotency::Column::EventId.is_in(ids.clone())).exec(conn).await?;
            removed.event_log_entries += delete_events(conn, project_id, event_log::Column::Seq.is_in(seqs)).await? as i64;
            removed.events += ids.len() as i64;
            ids.len()
        }
        Kind::Imports => {
            // Only imports whose task has ended: a running import keeps its file.
            let rows: Vec<(String, String)> = import::Entity::find()
                .select_only()
                .columns([import::Column::Id, import::Column::FileId])
                .filter(import::Column::ProjectId.eq(project_id))
                .filter(import::Column::CreatedAtMs.lt(cutoff_ms))
                .filter(import::Column::TaskId.in_subquery(finished_tasks(project_id, cutoff_ms, this_task)))
                .limit(BATCH / 5)
                .into_tuple()
                .all(conn)
                .await?;
            let (ids, file_ids): (Vec<String>, Vec<String>) = rows.into_iter().unzip();
            removed.files += files::delete(conn, &file_ids).await? as i64;
            import::Entity::delete_many().filter(import::Column::Id.is_in(ids.clone())).exec(conn).await?;
            let stream = in_streams("import", ids.clone());
            removed.event_log_entries += delete_events(conn, project_id, stream).await? as i64;
            removed.imports += ids.len() as i64;
            ids.len()
        }
        Kind::Exports => {
            // Only finished ones: a running export is still writing its file.
            let rows: Vec<(String, Option<String>)> = export::Entity::find()
                .select_only()
                .columns([export::Column::Id, export::Column::FileId])
                .filter(export::Column::ProjectId.eq(project_id))
                .filter(export::Column::CreatedAtMs.lt(cutoff_ms))
                .filter(export::Column::TaskId.in_subquery(finished_tasks(project_id, cutoff_ms, this_task)))
                .limit(BATCH / 5)
                .into_tuple()
                .all(conn)
                .await?;
            let (ids, file_ids): (Vec<String>, Vec<Option<String>>) = rows.into_iter().unzip();
            removed.files += files::delete(conn, &file_ids.into_iter().flatten().collect::<Vec<_>>()).await? as i64;
            export_row::Entity::delete_many().filter(export_row::Column::ExportId.is_in(ids.clone())).exec(conn).await?;
            super::browse_index::delete(conn, ids.clone()).await?;
            export::Entity::delete_many().filter(export::Column::Id.is_in(ids.clone())).exec(conn).await?;
            let stream = in_streams("export", ids.clone());
            removed.event_log_entries += delete_events(conn, project_id, stream).await? as i64;
            removed.exports += ids.len() as i64;
            ids.len()
        }
        Kind::Tasks => {
            let ids: Vec<String> = task::Entity::find()
                .select_only()
                .column(task::Column::Id)
                .filter(task::Column::Id.in_subquery(finished_tasks(project_id, cutoff_ms, this_task)))
                // An import's task goes with its import (purged after it, once nothing refers to it).
                .filter(task::Column::Id.not_in_subquery(
                    Query::select().column(import::Column::TaskId).from(import::Entity).and_where(import::Column::ProjectId.eq(project_id)).to_owned(),
                ))
                // So does an export's.
                .filter(task::Column::Id.not_in_subquery(
                    Query::select().column(export::Column::TaskId).from(export::Entity).and_where(export::Column::ProjectId.eq(project_id)).to_owned(),
                ))
                .limit(BATCH)
                .into_tuple()
                .all(conn)
                .await?;
            task_error::Entity::delete_many().filter(task_error::Column::TaskId.is_in(ids.clone())).exec(conn).await?;
            task::Entity::delete_many().filter(task::Column::Id.is_in(ids.clone())).exec(conn).await?;
            let stream = in_streams("task", ids.clone());
            removed.event_log_entries += delete_events(conn, project_id, stream).await? as i64;
            removed.tasks += ids.len() as i64;
            ids.len()
        }
    };
    Ok(n as u64)
}

/// Tasks of the project created before the cutoff that have ended, other than this purge.
fn finished_tasks(project_id: &str, cutoff_ms: i64, this_task: &str) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(task::Column::Id)
        .from(task::Entity)
        .and_where(task::Column::ProjectId.eq(project_id))
        .and_where(task::Column::CreatedAtMs.lt(cutoff_ms))
        .and_where(task::Column::Status.is_in(["done", "failed", "cancelled"]))
        .and_where(task::Column::Id.ne(this_task))
        .to_owned()
}

/// Deletes event-log rows of the project; the append-only trigger lets them go only while this
/// transaction holds a purge permit, which it drops again before committing.
async fn delete_events(conn: &impl ConnectionTrait, project_id: &str, which: sea_orm::sea_query::SimpleExpr) -> Result<u64, DbErr> {
    let permit = format!("purge-{}", crate::domain::ids::new_id(crate::domain::ids::IdKind::Task));
    dialect::grant_purge_permit(conn, &permit).await?;
    let deleted = event_log::Entity::delete_many()
        .filter(event_log::Column::ProjectId.eq(project_id))
        .filter(which)
        .exec(conn)
        .await?
        .rows_affected;
    dialect::revoke_purge_permit(conn, &permit).await?;
    Ok(deleted)
}

/// Drops endpoints of the filter picker that no remaining log uses.
async fn prune_endpoints(store: &EventStore, project_id: &str) -> Result<(), DbErr> {
    let backend = store.db().get_database_backend();
    let p = dialect::ph(backend, 1);
    let sql = format!(
        "DELETE FROM log_endpoints WHERE project_id = {p} AND NOT EXISTS \
         (SELECT 1 FROM logs WHERE logs.project_id = log_endpoints.project_id AND logs.endpoint = log_endpoints.endpoint)"
    );
    let writer = store.begin().await?;
    writer.conn().execute_raw(Statement::from_sql_and_values(backend, &sql, [project_id.into()])).await?;
    writer.commit().await
}

/// Stored files of uploads that never completed (the node died mid-upload), after an hour.
pub async fn remove_abandoned_uploads(store: &EventStore) -> Result<u64, DbErr> {
    let ids: Vec<String> = file::Entity::find()
        .select_only()
        .column(file::Column::Id)
        .filter(file::Column::Complete.eq(false))
        .filter(file::Column::CreatedAtMs.lt(now_ms() - 3_600_000))
        .limit(100)
        .into_tuple()
        .all(store.db())
        .await?;
    files::delete(store.db(), &ids).await
}

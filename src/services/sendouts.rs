//! Sendouts: listing, detail with attempts, retrying one by hand, and recovery tasks that retry
//! every sendout matching a filter.

use entity::{sendout, sendout_attempt};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::newest_first;
use super::tasks::{Progress, StepError, TaskRun};
use crate::domain::pagination::{Cursor, Limit, Page};
use crate::domain::sendout::SendoutFilter;
use crate::domain::task::percent;
use super::error::{ServiceError, ServiceResult};
use crate::event_log::{DomainEvent, EventMetadata, EventStore, SendoutRetryRequested};

fn condition(project_id: &str, f: &SendoutFilter) -> Condition {
    let mut c = Condition::all().add(sendout::Column::ProjectId.eq(project_id));
    if let Some(after) = f.created_after {
        c = c.add(sendout::Column::CreatedAtMs.gte(after));
    }
    if let Some(before) = f.created_before {
        c = c.add(sendout::Column::CreatedAtMs.lt(before));
    }
    let any_of = |c: Condition, col: sendout::Column, values: &[String]| {
        if values.is_empty() { c } else { c.add(col.is_in(values.iter().cloned())) }
    };
    let statuses: Vec<String> = f.status.iter().map(|s| s.as_str().to_owned()).collect();
    let c = any_of(c, sendout::Column::Status, &statuses);
    let c = any_of(c, sendout::Column::EventType, &f.event_type);
    let c = any_of(c, sendout::Column::WebhookId, &f.webhook_id);
    let c = any_of(c, sendout::Column::SourceId, &f.source_id);
    any_of(c, sendout::Column::RequestId, &f.request_id)
}

pub async fn list(db: &DatabaseConnection, project_id: &str, f: &SendoutFilter, limit: Limit, cursor: Option<&Cursor>) -> ServiceResult<Page<sendout::Model>> {
    let query = sendout::Entity::find().filter(condition(project_id, f));
    let rows = newest_first(query, sendout::Column::CreatedAtMs, sendout::Column::Id, limit, cursor).all(db).await?;
    Ok(Page::from_overfetch(rows, limit, |r| Cursor { time_ms: r.created_at_ms, id: r.id.clone() }))
}

pub async fn get(db: &impl ConnectionTrait, project_id: &str, id: &str) -> ServiceResult<sendout::Model> {
    sendout::Entity::find_by_id(id)
        .filter(sendout::Column::ProjectId.eq(project_id))
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::NotFound("sendout"))
}

pub async fn attempts(db: &DatabaseConnection, sendout_id: &str) -> ServiceResult<Vec<sendout_attempt::Model>> {
    Ok(sendout_attempt::Entity::find()
        .filter(sendout_attempt::Column::SendoutId.eq(sendout_id))
        .order_by_asc(sendout_attempt::Column::AttemptedAtMs)
        .order_by_asc(sendout_attempt::Column::Id)
        .all(db)
        .await?)
}

/// One more attempt now, whatever the status.
pub async fn retry(store: &EventStore, project_id: &str, id: &str, meta: &EventMetadata) -> ServiceResult<sendout::Model> {
    let writer = store.begin().await?;
    let row = get(writer.conn(), project_id, id).await?;
    let generation = row.generation + 1;
    let event = DomainEvent::SendoutRetryRequested(SendoutRetryRequested { id: id.to_owned(), project_id: project_id.to_owned(), generation });
    writer.append(meta, vec![event]).await?;
    let row = get(writer.conn(), project_id, id).await?;
    writer.commit().await?;
    Ok(row)
}

/// Where a recovery task stands: the last sendout it queued, oldest first.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RecoveryCheckpoint {
    after: Option<(i64, String)>,
    queued: i64,
}

const RECOVERY_BATCH: u64 = 500;

/// Runs a `webhook_recovery` task: every sendout matching its filter gets one more attempt.
pub async fn run_recovery(store: &EventStore, mut run: TaskRun) -> Result<(), StepError> {
    let filter: SendoutFilter = serde_json::from_value(run.params()["filter"].clone()).unwrap_or_default();
    let project_id = run.task.project_id.clone();
    let mut at: RecoveryCheckpoint = run.checkpoint().and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
    let base = condition(&project_id, &filter);
    let remaining = {
        let mut c = base.clone();
        if let Some((time, id)) = &at.after {
            c = c.add(after(*time, id));
        }
        sendout::Entity::find().filter(c).count(store.db()).await? as i64
    };
    let total = at.queued + remaining;
    loop {
        let mut c = base.clone();
        if let Some((time, id)) = &at.after {
            c = c.add(after(*time, id));
        }
        let rows: Vec<(String, i32, i64)> = sendout::Entity::find()
            .select_only()
            .columns([sendout::Column::Id, sendout::Column::Generation, sendout::Column::CreatedAtMs])
            .filter(c)
            .order_by_asc(sendout::Column::CreatedAtMs)
            .order_by_asc(sendout::Column::Id)
            .limit(RECOVERY_BATCH)
            .into_tuple()
            .all(store.db())
            .await?;
        let Some(last) = rows.last() else { break };
        at.after = Some((last.2, last.0.clone()));
        at.queued += rows.len() as i64;
        let events = rows
            .iter()
            .map(|(id, generation, _)| {
                DomainEvent::SendoutRetryRequested(SendoutRetryRequested { id: id.clone(), project_id: project_id.clone(), generation: generation + 1 })
            })
            .collect();
        let progress = Progress {
            processed: at.queued,
            total: Some(total),
            percent: percent(at.queued as u64, total.max(1) as u64),
            checkpoint: serde_json::to_value(&at).unwrap_or_default(),
            result: json!({ "sendouts_retried": at.queued }),
            errors: Vec::new(),
        };
        run.step(events, progress).await?;
    }
    run.complete(Vec::new(), at.queued, false, json!({ "sendouts_retried": at.queued })).await
}

fn after(time: i64, id: &str) -> Condition {
    Condition::any()
        .add(sendout::Column::CreatedAtMs.gt(time))
        .add(Condition::all().add(sendout::Column::CreatedAtMs.eq(time)).add(sendout::Column::Id.gt(id)))
}

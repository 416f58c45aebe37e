//! Sendouts: listing, detail with attempts, retrying one by hand, and recovery tasks that retry
//! every sendout matching a filter.

use std::collections::HashMap;

use entity::{sendout, sendout_attempt};
use futures_util::future::BoxFuture;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Keyset;
use super::tasks::{Progress, StepError, TaskRun};
use crate::domain::pagination::{Cursor, Limit, Page};
use crate::domain::histogram::{Buckets, sum_bins};
use crate::domain::sendout::{AttemptTrigger, FailureKind, Sendout, SendoutAttempt, SendoutFilter, SendoutStatus};
use crate::domain::task::percent;
use super::error::{ServiceError, ServiceResult};
use crate::event_log::group::{Batching, GroupCommit, GroupWrite};
use crate::event_log::{DomainEvent, EventMetadata, EventStore, SendoutRetryRequested, StoreError, Writer};

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
    let c = any_of(c, sendout::Column::RequestId, &f.request_id);
    let c = if f.http_status.is_empty() { c } else { c.add(sendout::Column::LastHttpStatus.is_in(f.http_status.iter().copied())) };
    let kinds: Vec<String> = f.error.iter().map(|k| k.as_str().to_owned()).collect();
    any_of(c, sendout::Column::LastError, &kinds)
}

/// The sendouts `f` selects, in list order: one definition for the list, bulk retries and exports.
pub fn lister(project_id: &str, f: &SendoutFilter) -> Keyset<sendout::Entity> {
    let select = sendout::Entity::find().filter(condition(project_id, f));
    Keyset::new(select, sendout::Column::CreatedAtMs, sendout::Column::Id, |r| Cursor { time_ms: r.created_at_ms, id: r.id.clone() })
}

pub async fn list(db: &DatabaseConnection, project_id: &str, f: &SendoutFilter, limit: Limit, cursor: Option<&Cursor>) -> ServiceResult<Page<Sendout>> {
    Ok(lister(project_id, f).page(db, limit, cursor).await?.map(read))
}

/// Delivered, failed and still pending (pending or retrying) sendouts among those `f` selects in
/// `buckets`' range, per bucket.
pub async fn histogram(db: &DatabaseConnection, project_id: &str, f: &SendoutFilter, buckets: &Buckets) -> ServiceResult<Vec<[i64; 3]>> {
    let f = SendoutFilter { created_after: Some(buckets.after), created_before: Some(buckets.before), ..f.clone() };
    let select = sendout::Entity::find().filter(condition(project_id, &f));
    let bin_ms = buckets.interval.bin_ms();
    let counted = [
        "CASE WHEN status = 'delivered' THEN 1 ELSE 0 END",
        "CASE WHEN status = 'failed' THEN 1 ELSE 0 END",
        "CASE WHEN status IN ('pending', 'retrying') THEN 1 ELSE 0 END",
    ];
    let bins = super::count_bins(db, select, "created_at_ms", bin_ms, counted).await?;
    Ok(sum_bins(&buckets.starts, bin_ms, bins))
}

/// Sendouts that failed alike: one endpoint, and one last answer (HTTP status) or kind of failure
/// when no answer came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureGroup {
    pub webhook_id: String,
    pub url: String,
    pub http_status: Option<i32>,
    pub error: Option<FailureKind>,
    pub count: i64,
    pub last_attempt_at_ms: Option<i64>,
}

/// At most this many groups, largest first.
const FAILURE_GROUPS: u64 = 100;

/// The sendouts `f` selects, grouped by endpoint and last answer, largest group first.
pub async fn failure_groups(db: &DatabaseConnection, project_id: &str, f: &SendoutFilter) -> ServiceResult<Vec<FailureGroup>> {
    use sea_orm::QuerySelect;
    use sea_orm::sea_query::Expr;
    let rows: Vec<(String, String, Option<i32>, Option<String>, i64, Option<i64>)> = sendout::Entity::find()
        .filter(condition(project_id, f))
        .select_only()
        .columns([sendout::Column::WebhookId, sendout::Column::Url, sendout::Column::LastHttpStatus, sendout::Column::LastError])
        .column_as(Expr::cust("COUNT(*)"), "n")
        .column_as(Expr::cust("MAX(last_attempt_at_ms)"), "last_at")
        .group_by(sendout::Column::WebhookId)
        .group_by(sendout::Column::Url)
        .group_by(sendout::Column::LastHttpStatus)
        .group_by(sendout::Column::LastError)
        .order_by_desc(Expr::cust("n"))
        .order_by_asc(sendout::Column::WebhookId)
        .limit(FAILURE_GROUPS)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(webhook_id, url, http_status, error, count, last_attempt_at_ms)| FailureGroup {
            error: error.and_then(|e| FailureKind::parse(&e).ok()),
            webhook_id,
            url,
            http_status,
            count,
            last_attempt_at_ms,
        })
        .collect())
}

/// What a bulk retry of `f` would send: how many sendouts, and how many of them per endpoint.
pub async fn retry_preview(db: &DatabaseConnection, project_id: &str, f: &SendoutFilter) -> ServiceResult<(i64, Vec<(String, String, i64)>)> {
    use sea_orm::QuerySelect;
    use sea_orm::sea_query::Expr;
    let per_endpoint: Vec<(String, String, i64)> = sendout::Entity::find()
        .filter(condition(project_id, f))
        .select_only()
        .columns([sendout::Column::WebhookId, sendout::Column::Url])
        .column_as(Expr::cust("COUNT(*)"), "n")
        .group_by(sendout::Column::WebhookId)
        .group_by(sendout::Column::Url)
        .order_by_desc(Expr::cust("n"))
        .order_by_asc(sendout::Column::WebhookId)
        .into_tuple()
        .all(db)
        .await?;
    Ok((per_endpoint.iter().map(|(_, _, n)| n).sum(), per_endpoint))
}

/// The sendout, decoded.
pub async fn get(db: &impl ConnectionTrait, project_id: &str, id: &str) -> ServiceResult<Sendout> {
    Ok(read(row(db, project_id, id).await?))
}

/// Decodes a projection row; a status that does not parse (only a hand-edited database has one)
/// reads as `pending`, which a retry or the sweeper settles.
pub fn read(row: sendout::Model) -> Sendout {
    Sendout {
        status: SendoutStatus::parse(&row.status).unwrap_or(SendoutStatus::Pending),
        id: row.id,
        webhook_id: row.webhook_id,
        url: row.url,
        event_id: row.event_id,
        event_type: row.event_type,
        source_id: row.source_id,
        request_id: row.request_id,
        attempt_count: row.attempt_count,
        next_attempt_at_ms: row.next_attempt_at_ms,
        created_at_ms: row.created_at_ms,
        sent_at_ms: row.sent_at_ms,
        delivered_at_ms: row.delivered_at_ms,
    }
}

async fn row(db: &impl ConnectionTrait, project_id: &str, id: &str) -> ServiceResult<sendout::Model> {
    sendout::Entity::find_by_id(id)
        .filter(sendout::Column::ProjectId.eq(project_id))
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::NotFound("sendout"))
}

/// Every recorded attempt of the sendout, oldest first.
pub async fn attempts(db: &DatabaseConnection, sendout_id: &str) -> ServiceResult<Vec<SendoutAttempt>> {
    let rows = sendout_attempt::Entity::find()
        .filter(sendout_attempt::Column::SendoutId.eq(sendout_id))
        .order_by_asc(sendout_attempt::Column::AttemptedAtMs)
        .order_by_asc(sendout_attempt::Column::Id)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|a| SendoutAttempt {
            trigger: AttemptTrigger::parse(&a.trigger).unwrap_or(AttemptTrigger::Scheduled),
            response_headers: serde_json::from_str(&a.response_headers).unwrap_or_default(),
            id: a.id,
            attempted_at_ms: a.attempted_at_ms,
            http_status: a.http_status,
            response_body: a.response_body,
            duration_ms: a.duration_ms,
            error: a.error,
        })
        .collect())
}

/// A retry by hand of one sendout: one more attempt now, whatever its status.
pub struct Retry {
    pub project_id: String,
    pub sendout_id: String,
    pub meta: EventMetadata,
}

/// Retries by hand, group-committed like publishing (users retry in loops, too).
pub type Retrier = GroupCommit<Retries>;

pub struct Retries;

pub fn start_retrier(store: EventStore) -> Retrier {
    GroupCommit::start(store, Retries, Batching::default())
}

/// Asks for one more attempt of the sendout now; answers with the sendout as it then stands.
pub async fn retry(retrier: &Retrier, retry: Retry) -> ServiceResult<Sendout> {
    retrier.submit(retry).await?
}

impl GroupWrite for Retries {
    type Item = Retry;
    type Output = ServiceResult<Sendout>;

    fn write<'a>(&'a self, writer: &'a Writer, items: &'a [Retry]) -> BoxFuture<'a, Result<Vec<Self::Output>, StoreError>> {
        Box::pin(async move {
            let ids: Vec<&str> = items.iter().map(|r| r.sendout_id.as_str()).collect();
            let rows = by_id(writer.conn(), ids.clone()).await?;
            // Two retries of one sendout in a batch each get a generation of their own.
            let mut generations: HashMap<&str, i32> = HashMap::new();
            let mut events = Vec::new();
            let mut found = Vec::with_capacity(items.len());
            for item in items {
                let Some(row) = rows.get(&item.sendout_id).filter(|r| r.project_id == item.project_id) else {
                    found.push(false);
                    continue;
                };
                let generation = generations.entry(&row.id).or_insert(row.generation);
                *generation += 1;
                let event = SendoutRetryRequested { id: row.id.clone(), project_id: row.project_id.clone(), generation: *generation };
                events.push((item.meta.clone(), DomainEvent::SendoutRetryRequested(event)));
                found.push(true);
            }
            writer.append_each(events).await?;
            let after = by_id(writer.conn(), ids).await?;
            Ok(items
                .iter()
                .zip(found)
                .map(|(item, found)| match after.get(&item.sendout_id).filter(|_| found) {
                    Some(row) => Ok(read(row.clone())),
                    None => Err(ServiceError::NotFound("sendout")),
                })
                .collect())
        })
    }
}

async fn by_id(conn: &impl ConnectionTrait, ids: Vec<&str>) -> Result<HashMap<String, sendout::Model>, DbErr> {
    let rows = sendout::Entity::find().filter(sendout::Column::Id.is_in(ids)).all(conn).await?;
    Ok(rows.into_iter().map(|r| (r.id.clone(), r)).collect())
}

/// Where a recovery task stands: the resume point after the last sendout it queued (in list
/// order), and how many it queued. (`next` is a new name: a checkpoint of the old oldest-first walk
/// starts over, which queues only what still matches.)
#[derive(Debug, Default, Serialize, Deserialize)]
struct RecoveryCheckpoint {
    #[serde(default)]
    next: Option<(i64, String)>,
    queued: i64,
}

const RECOVERY_BATCH: i64 = 500;

/// Runs a `webhook_recovery` task: every sendout matching its filter, walked in the list's order
/// through the list's own lister, gets one more attempt.
pub async fn run_recovery(store: &EventStore, mut run: TaskRun) -> Result<(), StepError> {
    let filter: SendoutFilter = serde_json::from_value(run.params()["filter"].clone()).unwrap_or_default();
    let project_id = run.task.project_id.clone();
    let mut at: RecoveryCheckpoint = run.checkpoint().and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
    let rows = lister(&project_id, &filter);
    let batch = Limit::try_from(RECOVERY_BATCH).unwrap_or_default();
    let cursor = |at: &RecoveryCheckpoint| at.next.clone().map(|(time_ms, id)| Cursor { time_ms, id });
    let total = at.queued + rows.count_after(store.db(), cursor(&at).as_ref()).await? as i64;
    loop {
        let page = rows.page(store.db(), batch, cursor(&at).as_ref()).await?;
        let Some(last) = page.rows.last() else { break };
        at.next = Some((last.created_at_ms, last.id.clone()));
        at.queued += page.rows.len() as i64;
        let events = page
            .rows
            .iter()
            .map(|row| {
                DomainEvent::SendoutRetryRequested(SendoutRetryRequested { id: row.id.clone(), project_id: project_id.clone(), generation: row.generation + 1 })
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


//! Erasing a customer: their personal data leaves the projections and the event log, while the
//! log keeps every event (and so its order, its streams and what the projections are rebuilt
//! from). Each event that carried the data is rewritten in place under the purge permit, and the
//! projection rows built from it are rewritten the same way in the same transaction, so a
//! rebuild reproduces what is left. Their logs keep who called what and when; their bodies,
//! headers and query go. Their events (published by requests naming the customer) keep type and
//! time; their data goes, and with it the sendouts' payloads and the answers their endpoints
//! gave. The task, scheduled and completed with its counts, is the record of the erasure.

use entity::{event_log, export, log, published_event, sendout, sendout_attempt};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::{ServiceError, ServiceResult};
use super::exports;
use super::tasks::{self, NewTask, Progress, StepError, TaskRun};
use crate::domain::export::{ExportResource, ExportStatus};
use crate::dialect;
use crate::domain::ids::{IdKind, new_id};
use crate::domain::task::{Task, TaskType};
use crate::event_log::{DomainEvent, EventMetadata, EventStore, Writer, in_streams};

/// The customer's logs handled per transaction.
const BATCH: u64 = 200;
/// How long an erasure waits for the search indexer to pass its rewritten logs before taking
/// them out of the index (an indexer that read a log before the rewrite would put it back).
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A customer as the host application names them (`Logbook-Customer-Id`, `customer_id`).
pub struct CustomerId(String);

impl CustomerId {
    pub fn parse(text: &str) -> ServiceResult<Self> {
        if text.is_empty() || text.len() > 255 || text.chars().any(char::is_control) {
            return Err(ServiceError::invalid("customer_id", "must be 1 to 255 characters, none of them control characters"));
        }
        Ok(Self(text.to_owned()))
    }
}

pub async fn schedule(store: &EventStore, project_id: &str, customer: CustomerId, meta: &EventMetadata) -> ServiceResult<Task> {
    let task = tasks::scheduled(meta, NewTask {
        project_id: project_id.to_owned(),
        task_type: TaskType::CustomerErasure,
        params: json!({ "customer_id": customer.0 }),
        related: Vec::new(),
        total: None,
    });
    let id = task.id.clone();
    store.append(meta, vec![DomainEvent::TaskScheduled(task)]).await?;
    tasks::get(store.db(), project_id, &id).await
}

/// What was erased; also the checkpoint (the last log handled).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Erased {
    logs: i64,
    events: i64,
    sendout_attempts: i64,
    event_log_entries: i64,
    #[serde(default)]
    exports_withdrawn: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after_log: Option<String>,
}

pub async fn run(store: &EventStore, mut run: TaskRun) -> Result<(), StepError> {
    let project_id = run.task.project_id.clone();
    let customer = run.params()["customer_id"].as_str().unwrap_or_default().to_owned();
    let mut erased: Erased = run.checkpoint().and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
    let report = |e: &Erased| {
        let mut v = serde_json::to_value(e).unwrap_or_default();
        v.as_object_mut().map(|m| m.remove("after_log"));
        v["customer_id"] = Value::String(customer.clone());
        v
    };
    loop {
        let writer = run.begin_step().await?;
        let Some(batch) = erase_batch(&writer, &project_id, &customer, &mut erased).await? else { break };
        erased.exports_withdrawn += withdraw_exports(store, &writer, &project_id, &batch).await?;
        let progress = Progress {
            processed: erased.logs,
            total: None,
            percent: 0,
            checkpoint: serde_json::to_value(&erased).unwrap_or_default(),
            result: report(&erased),
            errors: Vec::new(),
        };
        run.finish_step(writer, Vec::new(), progress).await?;
        forget_in_index(store, &batch.log_seqs).await?;
    }
    if !store.drop_old_versions().await? {
        tracing::warn!(task_id = %run.task.id, "old page versions stay in the WAL until its next checkpoint: readers kept it busy");
    }
    run.complete(Vec::new(), erased.logs, false, report(&erased)).await
}

/// What one batch erased.
struct Batch {
    log_ids: Vec<String>,
    log_seqs: Vec<i64>,
    event_ids: Vec<String>,
}

/// Erases the next batch of the customer's logs and what their requests published; `None` when
/// none is left.
async fn erase_batch(writer: &Writer, project_id: &str, customer: &str, erased: &mut Erased) -> Result<Option<Batch>, DbErr> {
    let conn = writer.conn();
    let mut logs = log::Entity::find()
        .select_only()
        .columns([log::Column::Id, log::Column::EventSeq])
        .filter(log::Column::ProjectId.eq(project_id))
        .filter(log::Column::CustomerId.eq(customer))
        .order_by_asc(log::Column::Id)
        .limit(BATCH);
    if let Some(after) = &erased.after_log {
        logs = logs.filter(log::Column::Id.gt(after.as_str()));
    }
    let logs: Vec<(String, i64)> = logs.into_tuple().all(conn).await?;
    let Some((last, _)) = logs.last() else { return Ok(None) };
    erased.after_log = Some(last.clone());
    let (log_ids, log_seqs): (Vec<String>, Vec<i64>) = logs.into_iter().unzip();

    let events: Vec<(String, i64)> = published_event::Entity::find()
        .select_only()
        .columns([published_event::Column::Id, published_event::Column::EventSeq])
        .filter(published_event::Column::ProjectId.eq(project_id))
        .filter(published_event::Column::RequestId.is_in(log_ids.clone()))
        .into_tuple()
        .all(conn)
        .await?;
    let (event_ids, event_seqs): (Vec<String>, Vec<i64>) = events.into_iter().unzip();
    let sendout_ids: Vec<String> = if event_ids.is_empty() {
        Vec::new()
    } else {
        sendout::Entity::find()
            .select_only()
            .column(sendout::Column::Id)
            .filter(sendout::Column::EventId.is_in(event_ids.clone()))
            .into_tuple()
            .all(conn)
            .await?
    };

    let permit = format!("erase-{}", new_id(IdKind::Task));
    dialect::grant_purge_permit(conn, &permit).await?;
    let mut rewritten = 0;
    rewritten += rewrite(conn, event_log::Column::Seq.is_in(log_seqs.clone()), erase_log).await?;
    rewritten += rewrite(conn, event_log::Column::Seq.is_in(event_seqs), erase_event).await?;
    if !sendout_ids.is_empty() {
        let attempts = in_streams("sendout", sendout_ids.clone()).and(event_log::Column::EventType.eq("sendout.attempted"));
        rewritten += rewrite(conn, attempts, erase_attempt).await?;
        let result = sendout_attempt::Entity::update_many()
            .col_expr(sendout_attempt::Column::ResponseBody, Expr::value(Option::<String>::None))
            .col_expr(sendout_attempt::Column::ResponseHeaders, Expr::value("{}"))
            .filter(sendout_attempt::Column::SendoutId.is_in(sendout_ids))
            .exec(conn)
            .await?;
        erased.sendout_attempts += result.rows_affected as i64;
    }
    dialect::revoke_purge_permit(conn, &permit).await?;
    erased.logs += log_ids.len() as i64;
    erased.events += event_ids.len() as i64;
    erased.event_log_entries += rewritten;
    Ok(Some(Batch { log_ids, log_seqs, event_ids }))
}

/// Withdraws the done exports whose files hold any of the batch's logs or events: their CSV
/// files are copies the rewrite cannot reach. Returns how many.
async fn withdraw_exports(store: &EventStore, writer: &Writer, project_id: &str, batch: &Batch) -> Result<i64, StepError> {
    let done = export::Entity::find()
        .filter(export::Column::ProjectId.eq(project_id))
        .filter(export::Column::Status.eq(ExportStatus::Done.as_str()))
        .filter(export::Column::Resource.is_in([ExportResource::Logs.as_str(), ExportResource::Events.as_str()]))
        .all(writer.conn())
        .await?;
    let mut withdrawn = 0;
    for row in done {
        let export = exports::read(row);
        let holds = exports::holds_any(store, project_id, &export, &batch.log_ids, &batch.event_ids).await.map_err(exports::step_error)?;
        if holds {
            exports::withdraw(writer, project_id, &export, "Withdrawn: it held data of a customer since erased. Export again for the data as it is now.").await?;
            withdrawn += 1;
        }
    }
    Ok(withdrawn)
}

/// Rewrites the payloads of the events `which` with `erase`; returns how many changed.
async fn rewrite(conn: &impl ConnectionTrait, which: sea_orm::sea_query::SimpleExpr, erase: fn(&mut Map<String, Value>)) -> Result<i64, DbErr> {
    let rows: Vec<(i64, String)> = event_log::Entity::find()
        .select_only()
        .columns([event_log::Column::Seq, event_log::Column::Payload])
        .filter(which)
        .into_tuple()
        .all(conn)
        .await?;
    let mut changed = 0;
    for (seq, payload) in rows {
        let Ok(Value::Object(mut content)) = serde_json::from_str::<Value>(&payload) else { continue };
        erase(&mut content);
        let text = Value::Object(content).to_string();
        if text != payload {
            event_log::Entity::update_many().col_expr(event_log::Column::Payload, Expr::value(text)).filter(event_log::Column::Seq.eq(seq)).exec(conn).await?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// A logged request keeps who called what, when and with what answer; not what was said.
fn erase_log(record: &mut Map<String, Value>) {
    for field in ["query", "request_headers"] {
        record.insert(field.into(), json!({}));
    }
    for field in ["request_body", "response_body"] {
        record.insert(field.into(), Value::Null);
    }
    for field in ["request_body_truncated", "response_body_truncated"] {
        record.insert(field.into(), Value::Bool(false));
    }
}

fn erase_event(event: &mut Map<String, Value>) {
    event.insert("data".into(), json!({}));
}

fn erase_attempt(attempted: &mut Map<String, Value>) {
    if let Some(Value::Object(attempt)) = attempted.get_mut("attempt") {
        attempt.insert("response_headers".into(), json!({}));
        attempt.insert("response_body".into(), Value::Null);
    }
}

/// Takes the rewritten logs out of the search index once the indexer has passed them.
async fn forget_in_index(store: &EventStore, seqs: &[i64]) -> Result<(), StepError> {
    let Some(&last) = seqs.iter().max() else { return Ok(()) };
    let search = store.search();
    let started = std::time::Instant::now();
    while search.checkpoint().await? < last && started.elapsed() < INDEX_WAIT {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // An index that had not reached them yet will read the rewritten events.
    search.forget(seqs).await?;
    Ok(())
}

//! Erasing a customer: their personal data leaves the projections and the event log, while the
//! log keeps every event (and so its order, its streams and what the projections are rebuilt
//! from). Each event that carried the data is rewritten in place under the purge permit, and the
//! projection rows built from it are rewritten the same way in the same transaction, so a
//! rebuild reproduces what is left. Their logs keep who called what and when; their bodies,
//! headers and query go. Their events (published by requests naming the customer) keep type and
//! time; their data goes, and with it the sendouts' payloads and the answers their endpoints
//! gave. The task, scheduled and completed with its counts, is the record of the erasure.

use entity::{event_log, export, import, log, published_event, sendout, sendout_attempt};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::{ServiceError, ServiceResult};
use super::{exports, files};
use super::tasks::{self, NewTask, Progress, StepError, TaskRun};
use crate::domain::export::{BrowseStatus, ExportResource, ExportStatus};
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

/// What was erased (each count is of records that changed), and where the task stands.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Erased {
    logs: i64,
    events: i64,
    sendout_attempts: i64,
    event_log_entries: i64,
    #[serde(default)]
    exports_withdrawn: i64,
    /// Original files of imports uploaded by the customer's requests, deleted.
    #[serde(default)]
    import_files: i64,
    /// The last log handled in this pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after_log: Option<String>,
    /// 0, then 1 for a second pass from the start: it catches what was written meanwhile (a
    /// request logged after its id's time, an attempt in flight recording its answer).
    #[serde(default)]
    pass: u8,
    /// Positions of rewritten logs not yet known to be out of the search index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unforgotten: Vec<i64>,
}

pub async fn run(store: &EventStore, mut run: TaskRun) -> Result<(), StepError> {
    let project_id = run.task.project_id.clone();
    let customer = run.params()["customer_id"].as_str().unwrap_or_default().to_owned();
    let mut erased: Erased = run.checkpoint().and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
    let report = |e: &Erased| {
        let mut v = serde_json::to_value(e).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            for internal in ["after_log", "pass", "unforgotten"] {
                m.remove(internal);
            }
        }
        v["customer_id"] = Value::String(customer.clone());
        v
    };
    let progress = |e: &Erased| Progress {
        processed: e.logs,
        total: None,
        percent: 0,
        checkpoint: serde_json::to_value(e).unwrap_or_default(),
        result: report(e),
        errors: Vec::new(),
    };
    loop {
        // The index is cleaned before the next step, so a crash in between repeats it.
        forget_in_index(store, &erased.unforgotten).await?;
        erased.unforgotten.clear();
        let writer = run.begin_step().await?;
        match erase_batch(&writer, &project_id, &customer, &mut erased).await? {
            Some(seqs) => erased.unforgotten = seqs,
            None if erased.pass == 0 => {
                erased.pass = 1;
                erased.after_log = None;
            }
            None => break,
        }
        run.finish_step(writer, Vec::new(), progress(&erased)).await?;
    }
    let writer = run.begin_step().await?;
    erased.exports_withdrawn += withdraw_exports(store, &writer, &project_id, &customer).await?;
    erased.import_files += erase_import_files(&writer, &project_id, &customer).await?;
    run.finish_step(writer, Vec::new(), progress(&erased)).await?;
    // Nothing was forgotten from the index when no log was erased.
    if erased.logs > 0 && !store.search().compact().await? {
        tracing::warn!(task_id = %run.task.id, "old pages of the search index stay in its WAL until its next checkpoint: readers kept it busy");
    }
    if !store.drop_old_versions().await? {
        tracing::warn!(task_id = %run.task.id, "old page versions stay in the WAL until its next checkpoint: readers kept it busy");
    }
    run.complete(Vec::new(), erased.logs, false, report(&erased)).await
}

/// Erases the next batch of the customer's logs and what their requests published; `None` when
/// none is left in this pass. Returns the logs' positions in the event log.
async fn erase_batch(writer: &Writer, project_id: &str, customer: &str, erased: &mut Erased) -> Result<Option<Vec<i64>>, DbErr> {
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
        .filter(published_event::Column::RequestId.is_in(log_ids))
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
            .filter(sendout::Column::EventId.is_in(event_ids))
            .into_tuple()
            .all(conn)
            .await?
    };

    let permit = format!("erase-{}", new_id(IdKind::Task));
    dialect::grant_purge_permit(conn, &permit).await?;
    let logs = rewrite(conn, event_log::Column::Seq.is_in(log_seqs.clone()), erase_log).await?;
    let events = rewrite(conn, event_log::Column::Seq.is_in(event_seqs), erase_event).await?;
    let mut attempts = 0;
    if !sendout_ids.is_empty() {
        let attempted = in_streams("sendout", sendout_ids.clone()).and(event_log::Column::EventType.eq("sendout.attempted"));
        attempts = rewrite(conn, attempted, erase_attempt).await?;
        sendout_attempt::Entity::update_many()
            .col_expr(sendout_attempt::Column::ResponseBody, Expr::value(Option::<String>::None))
            .col_expr(sendout_attempt::Column::ResponseHeaders, Expr::value("{}"))
            .filter(sendout_attempt::Column::SendoutId.is_in(sendout_ids))
            .exec(conn)
            .await?;
    }
    dialect::revoke_purge_permit(conn, &permit).await?;
    erased.logs += logs;
    erased.events += events;
    erased.sendout_attempts += attempts;
    erased.event_log_entries += logs + events + attempts;
    Ok(Some(log_seqs))
}

/// Withdraws the done exports whose rows include the customer's logs, or events their requests
/// published (each export's filters re-read as when it ran): their CSV files are copies the
/// rewrite cannot reach. An export still being written is waited for (the step fails and is
/// retried), since it may be copying them now. Returns how many were withdrawn.
async fn withdraw_exports(store: &EventStore, writer: &Writer, project_id: &str, customer: &str) -> Result<i64, StepError> {
    let exports = export::Entity::find()
        .filter(export::Column::ProjectId.eq(project_id))
        .filter(export::Column::Resource.is_in([ExportResource::Logs.as_str(), ExportResource::Events.as_str()]))
        .filter(export::Column::Status.is_in([ExportStatus::Scheduled.as_str(), ExportStatus::InProgress.as_str(), ExportStatus::Done.as_str()]))
        .all(writer.conn())
        .await?;
    // A done logs export still indexing its rows for browsing is still running.
    let running = |e: &&export::Model| e.status != ExportStatus::Done.as_str() || e.browse_status.as_deref() == Some(BrowseStatus::Indexing.as_str());
    if let Some(running) = exports.iter().find(running) {
        let wait = format!("the erasure waits for export {} to finish, as it may hold the customer's data", running.id);
        return Err(StepError::NotYet(wait));
    }
    let mut withdrawn = 0;
    for row in exports {
        let export = exports::read(row);
        if exports::holds_customer(store, project_id, &export, customer).await? {
            exports::withdraw(writer, project_id, &export, "Withdrawn: it held data of a customer since erased. Export again for the data as it is now.").await?;
            withdrawn += 1;
        }
    }
    Ok(withdrawn)
}

/// Deletes the original files of imports uploaded by requests naming the customer (their rows
/// became events, erased above); the imports stay, and their file answers 404. Returns how many.
async fn erase_import_files(writer: &Writer, project_id: &str, customer: &str) -> Result<i64, DbErr> {
    let customers_logs = sea_orm::sea_query::Query::select()
        .column(log::Column::Id)
        .from(log::Entity)
        .and_where(log::Column::ProjectId.eq(project_id))
        .and_where(log::Column::CustomerId.eq(customer))
        .to_owned();
    let file_ids: Vec<String> = import::Entity::find()
        .select_only()
        .column(import::Column::FileId)
        .filter(import::Column::ProjectId.eq(project_id))
        .filter(import::Column::RequestId.in_subquery(customers_logs))
        .into_tuple()
        .all(writer.conn())
        .await?;
    Ok(files::delete(writer.conn(), &file_ids).await? as i64)
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

/// Takes the rewritten logs out of the search index once the indexer has passed them (one that
/// read them before the rewrite could otherwise put them back). An indexer that does not get
/// there in time fails the step; the task's retry repeats this from its checkpoint.
async fn forget_in_index(store: &EventStore, seqs: &[i64]) -> Result<(), StepError> {
    let Some(&last) = seqs.iter().max() else { return Ok(()) };
    let search = store.search();
    let started = std::time::Instant::now();
    while search.checkpoint().await? < last {
        if started.elapsed() > INDEX_WAIT {
            let message = format!("the search index did not reach position {last} within {} s", INDEX_WAIT.as_secs());
            return Err(StepError::NotYet(message));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    search.forget(seqs).await?;
    Ok(())
}

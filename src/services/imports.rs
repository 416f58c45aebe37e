//! Imports: a stored CSV or NDJSON file whose rows are published as events by a background task.

use entity::import;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::events::published;
use super::files::{self, FileReader, StoredFile, UploadError};
use super::tasks::{self, NewTask, Progress, StepError, TaskRun};
use crate::domain::event::system;
use crate::domain::ids::{IdKind, new_id};
use crate::domain::import::{Batch, FileError, Import, ImportFormat, Position, Row, RowReader, read_csv_header};
use crate::domain::log::{RelatedKind, RelatedRef};
use crate::domain::task::{TaskType, percent};
use super::error::{ServiceError, ServiceResult};
use crate::event_log::{DomainEvent, EventMetadata, EventStore, ImportCreated};

/// Rows per committed step: progress moves every few thousand rows...
const STEP_ROWS: usize = 4096;
/// ...or sooner when rows are large, so a step's memory stays bounded.
const STEP_BYTES: u64 = 8 << 20;

/// What the upload said about the file.
pub struct Upload {
    pub file: StoredFile,
    pub name: String,
    pub content_type: String,
    pub format: ImportFormat,
}

/// Stores an upload's bytes as they stream in (one chunk in memory), and tells its format from
/// the declared type, the file name, or the first bytes.
pub async fn receive<E: std::fmt::Display>(
    store: &EventStore,
    project_id: &str,
    body: impl futures_util::Stream<Item = Result<bytes::Bytes, E>>,
    name: Option<String>,
    declared_type: Option<String>,
    max_bytes: u64,
) -> Result<Upload, UploadError> {
    use futures_util::StreamExt;
    let mut head = Vec::new();
    let body = body.inspect(|chunk| {
        if let Ok(bytes) = chunk
            && head.len() < 256
        {
            head.extend_from_slice(&bytes[..bytes.len().min(256 - head.len())]);
        }
    });
    let file = files::store(store, project_id, body, max_bytes).await?;
    let format = ImportFormat::decide(declared_type.as_deref(), name.as_deref(), &head);
    let name = name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| format.default_file_name().to_owned());
    let content_type = declared_type.filter(|t| t != "application/octet-stream").unwrap_or_else(|| format.content_type().to_owned());
    Ok(Upload { file, name: name.chars().take(255).collect(), content_type, format })
}

/// Records the import and its task (whose job the dispatcher queues).
pub async fn create(store: &EventStore, project_id: &str, meta: &EventMetadata, upload: Upload) -> ServiceResult<Import> {
    let id = new_id(IdKind::Import);
    let task = tasks::scheduled(meta, NewTask {
        project_id: project_id.to_owned(),
        task_type: TaskType::Import,
        params: json!({ "import_id": id }),
        related: vec![RelatedRef { kind: RelatedKind::Import, id: id.clone() }],
        total: None,
    });
    let created = DomainEvent::ImportCreated(ImportCreated {
        id: id.clone(),
        project_id: project_id.to_owned(),
        task_id: task.id.clone(),
        file_id: upload.file.id,
        file_name: upload.name,
        content_type: upload.content_type,
        size_bytes: upload.file.size_bytes as i64,
        sha256: upload.file.sha256,
        format: upload.format,
    });
    store.append(meta, vec![created, DomainEvent::TaskScheduled(task)]).await?;
    get(store.db(), project_id, &id).await
}

pub async fn get(db: &impl ConnectionTrait, project_id: &str, id: &str) -> ServiceResult<Import> {
    import::Entity::find_by_id(id)
        .filter(import::Column::ProjectId.eq(project_id))
        .one(db)
        .await?
        .map(read)
        .ok_or_else(|| ServiceError::NotFound("import"))
}

/// Decodes a projection row; the format was written from a typed event, so an unknown one can
/// only come from a hand-edited database and reads as CSV.
fn read(row: import::Model) -> Import {
    Import {
        format: ImportFormat::from_name(&row.format).unwrap_or(ImportFormat::Csv),
        id: row.id,
        task_id: row.task_id,
        file_id: row.file_id,
        file_name: row.file_name,
        content_type: row.content_type,
        size_bytes: row.size_bytes,
        sha256: row.sha256,
        rows_total: row.rows_total,
        rows_imported: row.rows_imported,
        rows_failed: row.rows_failed,
        created_at_ms: row.created_at_ms,
    }
}

/// The import uploaded by the request logged as `log_id`.
pub async fn uploaded_by(db: &impl ConnectionTrait, project_id: &str, log_id: &str) -> ServiceResult<Import> {
    import::Entity::find()
        .filter(import::Column::ProjectId.eq(project_id))
        .filter(import::Column::RequestId.eq(log_id))
        .one(db)
        .await?
        .map(read)
        .ok_or_else(|| ServiceError::NotFound("file uploaded by this request"))
}

/// Where a resumed import carries on, and its counts so far.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Checkpoint {
    next: Option<Position>,
    rows_total: i64,
    rows_imported: i64,
    rows_failed: i64,
}

impl Checkpoint {
    fn result(&self, import_id: &str) -> Value {
        json!({
            "import_id": import_id,
            "rows_total": self.rows_total,
            "rows_imported": self.rows_imported,
            "rows_failed": self.rows_failed,
        })
    }
}

/// Runs (or resumes) an import task to its end, a committed step at a time.
pub async fn run(store: &EventStore, mut run: TaskRun) -> Result<(), StepError> {
    let import_id = run.params()["import_id"].as_str().unwrap_or_default().to_owned();
    let Some(import) = import::Entity::find_by_id(&import_id).one(store.db()).await? else {
        return run.fail(Vec::new(), format!("import {import_id} does not exist")).await;
    };
    let format = if import.format == "ndjson" { ImportFormat::Ndjson } else { ImportFormat::Csv };
    let mut at: Checkpoint = run.checkpoint().and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();

    // Parsing runs on a blocking thread and hands over a step's rows at a time; a full channel
    // holds it back, so memory stays at a few steps whatever the file's size.
    let (tx, mut rx) = mpsc::channel(1);
    let (db, file_id, next) = (store.db().clone(), import.file_id.clone(), at.next);
    let parser = tokio::task::spawn_blocking(move || parse(db, &file_id, format, next, &tx));

    let size = import.size_bytes.max(1) as u64;
    while let Some(batch) = rx.recv().await {
        let batch = match batch {
            Ok(batch) => batch,
            Err(FileError(message)) => {
                let failed = run.system_event(system::IMPORT_FAILED, json!({
                    "import_id": import.id, "task_id": run.task.id, "message": message,
                }));
                return run.fail(vec![failed], format!("The file cannot be imported: {message}.")).await;
            }
        };
        let Some(end) = batch.end else { continue };
        let (mut new, mut errors) = (Vec::with_capacity(batch.rows.len()), Vec::new());
        for row in batch.rows {
            match row {
                Row::Event(event) => new.push(event),
                Row::Bad(error) => errors.push(error),
            }
        }
        at.rows_total += (new.len() + errors.len()) as i64;
        at.rows_imported += new.len() as i64;
        at.rows_failed += errors.len() as i64;
        at.next = Some(end);
        let progress = Progress {
            processed: at.rows_total,
            total: None,
            percent: percent(end.offset, size),
            checkpoint: serde_json::to_value(at).unwrap_or_default(),
            result: at.result(&import.id),
            errors,
        };
        run.step(published(&import.project_id, new), progress).await?;
    }
    let _ = parser.await;
    let done = run.system_event(system::IMPORT_DONE, json!({
        "import_id": import.id, "task_id": run.task.id,
        "rows_total": at.rows_total, "rows_imported": at.rows_imported, "rows_failed": at.rows_failed,
    }));
    run.complete(vec![done], at.rows_total, at.rows_failed > 0, at.result(&import.id)).await
}

/// Reads the file from `next` (or its first row) and sends a step's rows at a time, until the file
/// ends or the receiver stops listening (the task was cancelled or taken over).
fn parse(db: DatabaseConnection, file_id: &str, format: ImportFormat, next: Option<Position>, tx: &mpsc::Sender<Result<Batch, FileError>>) {
    let open = |offset| FileReader::open_at(db.clone(), file_id, offset);
    let rows = match format {
        ImportFormat::Ndjson => {
            let start = next.unwrap_or(Position::START);
            Ok(RowReader::ndjson(open(start.offset), start))
        }
        ImportFormat::Csv => read_csv_header(open(0)).map(|(header, first)| {
            let start = next.unwrap_or(first);
            RowReader::csv(open(start.offset), header, start)
        }),
    };
    let mut rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            let _ = tx.blocking_send(Err(e));
            return;
        }
    };
    loop {
        let batch = rows.next_batch(STEP_ROWS, STEP_BYTES);
        let last = !matches!(&batch, Ok(b) if b.end.is_some());
        if tx.blocking_send(batch).is_err() || last {
            return;
        }
    }
}

//! Exports: a background task that walks one list (its own filter definition and lister, page by
//! page in list order) and writes its rows as CSV into a stored file, one chunk in memory, so an
//! export of millions of rows costs no more memory than one of ten.

use std::time::{Duration, Instant};

use entity::{export, export_row, log, published_event, sendout, task};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter, Statement};
use serde_json::{Value, json};

use super::Keyset;
use super::error::{ServiceError, ServiceResult};
use super::events::{self, EventFilter};
use super::files::{self, FileReader, FileSink};
use super::tasks::{self, NewTask, Progress, StepError, TaskRun};
use super::{browse_index, logs, sendouts};
use crate::domain::actor::Actor;
use crate::domain::event::system;
use crate::domain::export::{BrowseStatus, Clock, Export, ExportFilter, ExportFormat, ExportResource, ExportRow, ExportStatus, Fields};
use crate::domain::filter::{Context, Filter, FilterErrors};
use crate::domain::ids::{IdKind, new_id};
use crate::domain::log::{LogFilter, RelatedKind, RelatedRef, StoredLogRecord};
use crate::domain::pagination::{Cursor, Limit, Page};
use crate::domain::sendout::SendoutFilter;
use crate::domain::task::{TaskFilter, TaskType, percent};
use crate::domain::time::{ProjectTimeZone, now_ms};
use crate::projections::exports::INDEXED_ROWS;
use crate::event_log::{DomainEvent, EventMetadata, EventStore, ExportCreated, ExportWithdrawn, ExportWritten, StoreError, Writer};

/// What a client asks for.
pub struct NewExport {
    pub resource: ExportResource,
    pub filters: Value,
    pub fields: Option<Vec<String>>,
    pub format: ExportFormat,
}

/// An export's rows: the filter of its resource's list, read by that list's own definition.
enum Selection {
    Logs(LogFilter),
    Tasks(TaskFilter),
    Sendouts(SendoutFilter),
    Events(EventFilter),
}

impl Selection {
    fn read(resource: ExportResource, filters: &Value, cx: Context<'_>) -> Result<Self, FilterErrors> {
        Ok(match resource {
            ExportResource::Logs => Selection::Logs(LogFilter::from_json(filters, cx)?),
            ExportResource::Tasks => Selection::Tasks(TaskFilter::from_json(filters, cx)?),
            ExportResource::WebhookSendouts => Selection::Sendouts(SendoutFilter::from_json(filters, cx)?),
            ExportResource::Events => Selection::Events(EventFilter::from_json(filters, cx)?),
        })
    }
}

/// Checks the request and records the export with its task (whose job the dispatcher queues).
pub async fn create(store: &EventStore, project_id: &str, zone: ProjectTimeZone, meta: &EventMetadata, new: NewExport) -> ServiceResult<Export> {
    let filters = match new.filters {
        Value::Null => Value::Object(Default::default()),
        other => other,
    };
    let mut errors = Selection::read(new.resource, &filters, Context { zone: &zone, now_ms: now_ms() }).err().unwrap_or_default();
    let fields = Fields::new(new.resource, new.fields).map_err(|e| errors.extend(e)).ok();
    let Some(fields) = fields.filter(|_| errors.is_empty()) else { return Err(ServiceError::Rejected(errors)) };
    let id = new_id(IdKind::Export);
    let task = tasks::scheduled(meta, NewTask {
        project_id: project_id.to_owned(),
        task_type: TaskType::Export,
        params: json!({ "export_id": id }),
        related: vec![RelatedRef { kind: RelatedKind::Export, id: id.clone() }],
        total: None,
    });
    let created = DomainEvent::ExportCreated(ExportCreated {
        id: id.clone(),
        project_id: project_id.to_owned(),
        task_id: task.id.clone(),
        resource: new.resource,
        filters,
        fields: fields.names().to_vec(),
        format: new.format,
        time_zone: zone,
    });
    store.append(meta, vec![created, DomainEvent::TaskScheduled(task)]).await?;
    get(store.db(), project_id, &id).await
}

pub async fn get(db: &impl ConnectionTrait, project_id: &str, id: &str) -> ServiceResult<Export> {
    export::Entity::find_by_id(id)
        .filter(export::Column::ProjectId.eq(project_id))
        .one(db)
        .await?
        .map(read)
        .ok_or_else(|| ServiceError::NotFound("export"))
}

/// The exports `f` selects, in list order.
pub fn lister(project_id: &str, f: &ExportFilter) -> Keyset<export::Entity> {
    let mut c = Condition::all().add(export::Column::ProjectId.eq(project_id));
    if let Some(after) = f.created_after {
        c = c.add(export::Column::CreatedAtMs.gte(after));
    }
    if let Some(before) = f.created_before {
        c = c.add(export::Column::CreatedAtMs.lt(before));
    }
    if !f.resource.is_empty() {
        c = c.add(export::Column::Resource.is_in(f.resource.iter().map(|r| r.as_str())));
    }
    if !f.status.is_empty() {
        c = c.add(export::Column::Status.is_in(f.status.iter().map(|s| s.as_str())));
    }
    Keyset::new(export::Entity::find().filter(c), export::Column::CreatedAtMs, export::Column::Id, |r| Cursor { time_ms: r.created_at_ms, id: r.id.clone() })
}

pub async fn list(db: &DatabaseConnection, project_id: &str, f: &ExportFilter, limit: Limit, cursor: Option<&Cursor>) -> ServiceResult<Page<Export>> {
    Ok(lister(project_id, f).page(db, limit, cursor).await?.map(read))
}

/// The export and its file, for a download: 409 until it is done.
pub async fn file(db: &impl ConnectionTrait, project_id: &str, id: &str) -> ServiceResult<(Export, String)> {
    let export = get(db, project_id, id).await?;
    match (&export.status, &export.file_id) {
        (ExportStatus::Done, Some(file_id)) => {
            let file_id = file_id.clone();
            Ok((export, file_id))
        }
        (ExportStatus::Failed, _) => Err(ServiceError::Conflict(format!(
            "The export failed ({}); there is nothing to download.",
            export.error.as_deref().unwrap_or("no reason recorded")
        ))),
        (status, _) => Err(ServiceError::Conflict(format!("The export is {}; its file can be downloaded once it is done.", status.as_str()))),
    }
}

/// Decodes a projection row; every field was written from a typed event, so a value that does not
/// parse can only come from a hand-edited database and reads as its safe default.
pub fn read(row: export::Model) -> Export {
    Export {
        resource: ExportResource::parse(&row.resource).unwrap_or(ExportResource::Logs),
        status: ExportStatus::parse(&row.status).unwrap_or(ExportStatus::Failed),
        filters: serde_json::from_str(&row.filters).unwrap_or(Value::Null),
        fields: Fields::trusted(serde_json::from_str(&row.fields).unwrap_or_default()),
        format: ExportFormat::parse(&row.format).unwrap_or(ExportFormat::Csv),
        created_by: Actor::stored(&row.created_by_kind, row.created_by_id),
        id: row.id,
        // Written from a validated zone; a name this build no longer knows reads as UTC.
        time_zone: ProjectTimeZone::try_from(row.time_zone).unwrap_or_else(|_| ProjectTimeZone::utc()),
        task_id: row.task_id,
        request_id: row.request_id,
        created_at_ms: row.created_at_ms,
        finished_at_ms: row.finished_at_ms,
        row_count: row.row_count,
        size_bytes: row.size_bytes,
        file_id: row.file_id,
        error: row.error,
        browse_status: row.browse_status.as_deref().and_then(|s| BrowseStatus::parse(s).ok()),
        browse_indexed_rows: row.browse_indexed_rows,
    }
}

/// A list walked page by page in list order: the same rows the list shows, by construction.
enum Lister {
    Logs(Keyset<log::Entity>),
    Tasks(Keyset<task::Entity>),
    Sendouts(Keyset<sendout::Entity>),
    Events(Keyset<published_event::Entity>),
}

impl Lister {
    async fn open(store: &EventStore, project_id: &str, selection: &Selection) -> ServiceResult<Self> {
        Ok(match selection {
            Selection::Logs(f) => Lister::Logs(logs::lister(store, project_id, f).await?),
            Selection::Tasks(f) => Lister::Tasks(tasks::lister(project_id, f)),
            Selection::Sendouts(f) => Lister::Sendouts(sendouts::lister(project_id, f)),
            Selection::Events(f) => Lister::Events(events::lister(project_id, f)),
        })
    }

    async fn count(&self, db: &impl ConnectionTrait) -> ServiceResult<u64> {
        Ok(match self {
            Lister::Logs(k) => k.count_after(db, None).await?,
            Lister::Tasks(k) => k.count_after(db, None).await?,
            Lister::Sendouts(k) => k.count_after(db, None).await?,
            Lister::Events(k) => k.count_after(db, None).await?,
        })
    }

    /// The page after `cursor`, and the next page's cursor.
    async fn fetch(&self, db: &impl ConnectionTrait, cursor: Option<&Cursor>) -> ServiceResult<(Rows, Option<Cursor>)> {
        let limit = Limit::try_from(Limit::MAX as i64).unwrap_or_default();
        Ok(match self {
            Lister::Logs(k) => {
                let page = logs::records(db, k, limit, cursor).await?;
                (Rows::Logs(page.rows), page.next_cursor)
            }
            Lister::Tasks(k) => {
                let page = k.page(db, limit, cursor).await?.map(tasks::read);
                (Rows::Tasks(page.rows), page.next_cursor)
            }
            Lister::Sendouts(k) => {
                let page = k.page(db, limit, cursor).await?.map(sendouts::read);
                (Rows::Sendouts(page.rows), page.next_cursor)
            }
            Lister::Events(k) => {
                let page = k.page(db, limit, cursor).await?;
                (Rows::Events(events::with_data(db, page.rows).await?), page.next_cursor)
            }
        })
    }
}

/// A page of one resource's rows.
enum Rows {
    /// Stored records, parsed as they are written.
    Logs(Vec<String>),
    Tasks(Vec<crate::domain::task::Task>),
    Sendouts(Vec<crate::domain::sendout::Sendout>),
    Events(Vec<crate::domain::event::PublishedEvent>),
}

impl Rows {
    /// Writes the rows as CSV; returns how many.
    fn write(&self, csv: &mut CsvRows, clock: &Clock<'_>) -> ServiceResult<usize> {
        Ok(match self {
            Rows::Logs(rows) => {
                for payload in rows {
                    let record: StoredLogRecord<'_> = serde_json::from_str(payload).map_err(|e| ServiceError::internal(anyhow::anyhow!("a stored log does not read: {e}")))?;
                    csv.row(&record, clock);
                }
                rows.len()
            }
            Rows::Tasks(rows) => csv.rows(rows, clock),
            Rows::Sendouts(rows) => csv.rows(rows, clock),
            Rows::Events(rows) => csv.rows(rows, clock),
        })
    }
}

/// CSV text of rows, built up between writes to the file.
struct CsvRows {
    fields: Vec<String>,
    out: csv::Writer<Vec<u8>>,
    cell: String,
}

impl CsvRows {
    fn new(fields: &Fields) -> Self {
        let mut out = Self::writer();
        // Nothing written into memory can fail.
        let _ = out.write_record(fields.names());
        Self { fields: fields.names().to_vec(), out, cell: String::new() }
    }

    fn writer() -> csv::Writer<Vec<u8>> {
        csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::with_capacity(WRITE_BYTES + 64 * 1024))
    }

    fn rows<R: ExportRow>(&mut self, rows: &[R], clock: &Clock<'_>) -> usize {
        for row in rows {
            self.row(row, clock);
        }
        rows.len()
    }

    fn row<R: ExportRow>(&mut self, row: &R, clock: &Clock<'_>) {
        for field in &self.fields {
            self.cell.clear();
            row.cell(field, clock).write(&mut self.cell);
            let _ = self.out.write_field(&self.cell);
        }
        let _ = self.out.write_record(None::<&[u8]>);
    }

    fn buffered(&mut self) -> usize {
        let _ = self.out.flush();
        self.out.get_ref().len()
    }

    /// The text so far, leaving the buffer empty.
    fn take(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.out, Self::writer()).into_inner().unwrap_or_default()
    }
}

/// Text handed to the file once this much has built up (the file stores 1 MiB chunks).
const WRITE_BYTES: usize = 1 << 20;
/// Progress is committed at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Whether the export's rows include logs of `customer`, or events their requests published (by
/// its resource): its filters are read as when it ran, and narrowed to the customer. Filters that
/// no longer read answer yes: a copy is withdrawn when in doubt.
pub async fn holds_customer(store: &EventStore, project_id: &str, export: &Export, customer: &str) -> ServiceResult<bool> {
    if matches!(export.resource, ExportResource::Tasks | ExportResource::WebhookSendouts) {
        return Ok(false); // they carry no bodies or event data
    }
    let zone = export.time_zone;
    let Ok(selection) = Selection::read(export.resource, &export.filters, Context { zone: &zone, now_ms: export.created_at_ms }) else {
        return Ok(true);
    };
    let db = store.db();
    let customers_logs = || {
        sea_orm::sea_query::Query::select()
            .column(log::Column::Id)
            .from(log::Entity)
            .and_where(log::Column::ProjectId.eq(project_id))
            .and_where(log::Column::CustomerId.eq(customer))
            .to_owned()
    };
    Ok(match Lister::open(store, project_id, &selection).await? {
        Lister::Logs(k) => k.holds_any(db, log::Column::CustomerId.eq(customer)).await?,
        Lister::Events(k) => k.holds_any(db, published_event::Column::RequestId.in_subquery(customers_logs())).await?,
        Lister::Tasks(_) | Lister::Sendouts(_) => false,
    })
}

/// Takes back a done export whose rows held data since erased: its file and browsable rows go.
pub async fn withdraw(writer: &Writer, project_id: &str, export: &Export, reason: &str) -> Result<(), StoreError> {
    let event = DomainEvent::ExportWithdrawn(ExportWithdrawn { id: export.id.clone(), project_id: project_id.to_owned(), reason: reason.to_owned() });
    writer.append(&EventMetadata::system(), vec![event]).await?;
    export_row::Entity::delete_many().filter(export_row::Column::ExportId.eq(export.id.as_str())).exec(writer.conn()).await?;
    browse_index::delete(writer.conn(), vec![export.id.clone()]).await?;
    files::delete(writer.conn(), &export.file_id.iter().cloned().collect::<Vec<_>>()).await?;
    Ok(())
}

/// Runs an `export` task: writes the file (the export is then done) and, for a logs export,
/// indexes its rows for browsing. A resumed export (after a crash) whose file was not yet whole
/// writes it again from the start: the half-written file of the first run is removed by the hourly
/// clean-up of incomplete files. One whose file was whole indexes its rows again.
pub async fn run(store: &EventStore, mut run: TaskRun) -> Result<(), StepError> {
    let project_id = run.task.project_id.clone();
    let export_id = run.params()["export_id"].as_str().unwrap_or_default().to_owned();
    let export = match get(store.db(), &project_id, &export_id).await {
        Ok(export) => export,
        Err(ServiceError::NotFound(_)) => return run.fail(Vec::new(), format!("The export {export_id} no longer exists.")).await,
        Err(e) => return Err(e.into()),
    };
    if let (ExportStatus::Done, Some(file_id)) = (export.status, &export.file_id) {
        let file = Written { file_id: file_id.clone(), rows: export.row_count.unwrap_or(0), size_bytes: export.size_bytes.unwrap_or(0) };
        return index(store, &mut run, &export, file).await;
    }
    let zone = export.time_zone;
    let selection = match Selection::read(export.resource, &export.filters, Context { zone: &zone, now_ms: export.created_at_ms }) {
        Ok(selection) => selection,
        Err(errors) => {
            let message = errors.into_iter().map(|(f, m)| format!("{f} {m}")).collect::<Vec<_>>().join("; ");
            return fail(&mut run, &export, format!("The export's filters cannot be read: {message}.")).await;
        }
    };
    let mut sink = FileSink::create(store, &project_id).await?;
    let rows = match write(store, &mut run, &export, &selection, &zone, &mut sink).await {
        Ok(rows) => rows,
        Err(e) => {
            sink.discard().await;
            return Err(e);
        }
    };
    let file = sink.finish().await?;
    let file = Written { file_id: file.id, rows, size_bytes: file.size_bytes as i64 };
    let browse = export.resource == ExportResource::Logs;
    let events = vec![
        DomainEvent::ExportWritten(ExportWritten {
            id: export.id.clone(),
            project_id: project_id.clone(),
            file_id: file.file_id.clone(),
            row_count: file.rows,
            size_bytes: file.size_bytes,
            browse,
        }),
        run.system_event(system::EXPORT_DONE, json!({
            "export_id": export.id, "task_id": run.task.id, "resource": export.resource.as_str(),
            "row_count": file.rows, "size_bytes": file.size_bytes,
        })),
    ];
    if !browse {
        return run.complete(events, file.rows, false, file.result(None)).await;
    }
    run.step(events, file.progress(0)).await?;
    index(store, &mut run, &export, file).await
}

/// A whole export file.
struct Written {
    file_id: String,
    rows: i64,
    size_bytes: i64,
}

impl Written {
    fn result(&self, indexed: Option<i64>) -> Value {
        let mut result = json!({ "file_id": self.file_id, "row_count": self.rows, "size_bytes": self.size_bytes });
        if let Some(indexed) = indexed {
            result[INDEXED_ROWS] = indexed.into();
        }
        result
    }

    /// A logs export's task counts each row twice, written and then indexed.
    fn progress(&self, indexed: i64) -> Progress {
        let total = 2 * self.rows;
        Progress {
            processed: self.rows + indexed,
            total: Some(total),
            percent: percent((self.rows + indexed) as u64, total.max(1) as u64),
            checkpoint: json!({ "written": true, INDEXED_ROWS: indexed }),
            result: self.result(Some(indexed)),
            errors: Vec::new(),
        }
    }
}

/// Writes every row into `sink`; returns how many.
async fn write(store: &EventStore, run: &mut TaskRun, export: &Export, selection: &Selection, zone: &ProjectTimeZone, sink: &mut FileSink) -> Result<i64, StepError> {
    let db = store.db();
    let project_id = run.task.project_id.clone();
    let lister = Lister::open(store, &project_id, selection).await?;
    let total = lister.count(db).await? as i64;
    // A logs export's task goes on to index each row.
    let per_row = if export.resource == ExportResource::Logs { 2 } else { 1 };
    let clock = Clock { zone, now_ms: now_ms() };
    let mut csv = CsvRows::new(&export.fields);
    let (mut rows, mut reported) = (0i64, Instant::now());
    let mut page = Some(lister.fetch(db, None).await?);
    // While a page is written, the next is read: on SQLite the query runs on a database thread,
    // on PostgreSQL in the server, so the two overlap.
    while let Some((these, cursor)) = page.take() {
        let next = async {
            match &cursor {
                Some(c) => lister.fetch(db, Some(c)).await.map(Some),
                None => Ok(None),
            }
        };
        let write = async {
            let n = these.write(&mut csv, &clock)?;
            if csv.buffered() >= WRITE_BYTES || cursor.is_none() {
                sink.write(&csv.take()).await?;
            }
            Ok::<_, ServiceError>(n)
        };
        let (next, written) = tokio::join!(next, write);
        rows += written? as i64;
        page = next?;
        if page.is_some() && reported.elapsed() >= PROGRESS_EVERY {
            let total = per_row * total.max(rows);
            let progress = Progress {
                processed: rows,
                total: Some(total),
                percent: percent(rows as u64, total.max(1) as u64),
                checkpoint: json!({ "rows": rows }),
                result: json!({ "row_count": rows, "size_bytes": sink.size() }),
                errors: Vec::new(),
            };
            run.step(Vec::new(), progress).await?;
            reported = Instant::now();
        }
    }
    Ok(rows)
}

/// Text as `q` compares it: lowercased a character at a time, so that a piece of a text folds to a
/// piece of the text folded (`str::to_lowercase` folds a Greek capital sigma by its place in the
/// word, so "ΟΔΟΣ" was not found in "ΟΔΟΣΑ").
fn fold(text: &str) -> String {
    if text.is_ascii() { text.to_ascii_lowercase() } else { text.chars().flat_map(char::to_lowercase).collect() }
}

/// Rows read back from an export's file, and indexed, per batch.
const INDEX_BATCH: usize = 1_000;

/// Browse rows as stored: each row's cells as a JSON array, and their lowercased text (`q`).
#[derive(Default)]
struct BrowseRows {
    cells: Vec<String>,
    folded: Vec<String>,
    /// The exact-value index's rows of the blocks these rows completed (and, with the last batch,
    /// its column marks and the columns to withdraw).
    postings: Vec<browse_index::Posting>,
    withdrawn: Vec<i32>,
    /// The text index's filters of the blocks these rows completed (and, last, its mark).
    grams: Vec<browse_index::GramBlock>,
}

impl BrowseRows {
    fn push(&mut self, record: &csv::StringRecord) {
        let cells: Vec<&str> = record.iter().collect();
        self.folded.push(fold(&cells.join("\n")));
        self.cells.push(serde_json::to_string(&cells).unwrap_or_default());
    }

    fn len(&self) -> usize {
        self.cells.len()
    }
}

/// Indexes a done logs export's rows for browsing, read back from its file (so they are the
/// file's cells, in its order), then ends the task. The file is parsed and the rows encoded on a
/// blocking thread, a batch ahead, and a batch is stored while the next is received.
async fn index(store: &EventStore, run: &mut TaskRun, export: &Export, file: Written) -> Result<(), StepError> {
    let db = store.db();
    // A resumed index starts again.
    export_row::Entity::delete_many().filter(export_row::Column::ExportId.eq(&export.id)).exec(db).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<BrowseRows, String>>(2);
    browse_index::delete(db, vec![export.id.clone()]).await?;
    let reader = FileReader::open_at(db.clone(), &file.file_id, 0);
    let columns = export.fields.names().len();
    let parser = tokio::task::spawn_blocking(move || {
        let mut csv = csv::ReaderBuilder::new().has_headers(true).from_reader(reader);
        let (mut batch, mut record) = (BrowseRows::default(), csv::StringRecord::new());
        let mut cells = browse_index::CellIndexer::new(columns);
        let mut grams = browse_index::GramIndexer::default();
        loop {
            match csv.read_record(&mut record) {
                Ok(true) => {
                    batch.push(&record);
                    if let Some(block) = cells.push(record.iter()) {
                        batch.postings.extend(block);
                    }
                    if let Some(block) = batch.folded.last().and_then(|folded| grams.push(folded)) {
                        batch.grams.push(block);
                    }
                }
                Ok(false) => break,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e.to_string()));
                    return;
                }
            }
            if batch.len() == INDEX_BATCH && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                return;
            }
        }
        let (last, withdrawn) = cells.finish();
        batch.postings.extend(last);
        batch.withdrawn = withdrawn;
        batch.grams.extend(grams.finish());
        let _ = tx.blocking_send(Ok(batch));
    });
    let (mut sent, mut reported) = (0i64, Instant::now());
    let mut storing: Option<tokio::task::JoinHandle<Result<(), sea_orm::DbErr>>> = None;
    let stored = |storing: Option<tokio::task::JoinHandle<Result<(), sea_orm::DbErr>>>| async move {
        match storing {
            Some(storing) => storing.await.map_err(|e| sea_orm::DbErr::Custom(format!("indexing a batch stopped: {e}")))?,
            None => Ok(()),
        }
    };
    while let Some(batch) = rx.recv().await {
        let batch = batch.map_err(|e| StepError::NotYet(format!("the export's file does not read back: {e}")))?;
        stored(storing.take()).await?;
        // Every row sent before this batch is stored.
        if reported.elapsed() >= PROGRESS_EVERY {
            run.step(Vec::new(), file.progress(sent)).await?;
            reported = Instant::now();
        }
        let (store, export_id, first, n) = (store.clone(), export.id.clone(), sent, batch.len() as i64);
        storing = Some(tokio::spawn(async move { keep_rows(&store, &export_id, first, batch).await }));
        sent += n;
    }
    stored(storing.take()).await?;
    let _ = parser.await;
    run.complete(Vec::new(), 2 * file.rows, false, file.result(Some(sent))).await
}

/// Stores rows for browsing, numbered from `first`, in file order.
async fn keep_rows(store: &EventStore, export_id: &str, first: i64, rows: BrowseRows) -> Result<(), sea_orm::DbErr> {
    let (n, positions) = (rows.len(), (first..).take(rows.len()));
    let writer = store.begin().await?;
    browse_index::store(writer.conn(), export_id, rows.postings).await?;
    browse_index::withdraw(writer.conn(), export_id, rows.withdrawn).await?;
    browse_index::store_grams(writer.conn(), export_id, rows.grams).await?;
    if !rows.cells.is_empty() {
        if writer.conn().get_database_backend() == sea_orm::DbBackend::Postgres {
            // One statement of fixed text with an array per column, not 4,000 bound values.
            crate::projections::unnest::Unnest::insert_into("export_rows")
                .text("export_id", std::iter::repeat_n(export_id.to_owned(), n))
                .big_int("position", positions)
                .text("cells", rows.cells)
                .text("folded", rows.folded)
                .exec(writer.conn(), None)
                .await?;
        } else {
            let models = positions.zip(rows.cells).zip(rows.folded).map(|((position, cells), folded)| {
                export_row::Model { export_id: export_id.to_owned(), position, cells, folded }.into_active_model()
            });
            export_row::Entity::insert_many(models).exec_without_returning(writer.conn()).await?;
        }
    }
    writer.commit().await
}

async fn fail(run: &mut TaskRun, export: &Export, message: String) -> Result<(), StepError> {
    let failed = failed_event(run, &export.id, &message);
    run.fail(vec![failed], message).await
}

/// `export.failed`, published with the task's failure however the export failed.
pub fn failed_event(run: &TaskRun, export_id: &str, message: &str) -> DomainEvent {
    run.system_event(system::EXPORT_FAILED, json!({ "export_id": export_id, "task_id": run.task.id, "message": message }))
}

/// The export a task runs, from its parameters.
pub fn export_of(run: &TaskRun) -> Option<String> {
    run.params()["export_id"].as_str().map(str::to_owned)
}



/// Rows of an export read per query while browsing: 16 blocks of the text index, whose filters
/// are read together.
const BROWSE_WINDOW: i64 = 16 * browse_index::GRAM_BLOCK_ROWS;
/// Exports older than this are no longer browsed (their rows stay until retention removes them).
const BROWSABLE_DAYS: i64 = 90;

/// What a browse asks for: a case-insensitive search across every column, exact values of some
/// columns, and the page after `after` (a row position) in file order.
pub struct Browse {
    pub q: Option<String>,
    pub columns: Vec<(String, String)>,
    pub limit: Limit,
    pub after: Option<i64>,
}

/// A page of an export's rows: each row's position and cells, in the file's column order.
pub struct BrowsePage {
    pub export: Export,
    pub rows: Vec<(i64, Vec<String>)>,
    pub has_more: bool,
}

/// Reads a page of a done logs export's rows from its index: a search costs one indexed range
/// read of this export's rows, never a read of the file.
pub async fn browse(db: &impl ConnectionTrait, project_id: &str, id: &str, browse: Browse) -> ServiceResult<BrowsePage> {
    let export = get(db, project_id, id).await?;
    if export.resource != ExportResource::Logs {
        return Err(ServiceError::NotBrowsable(format!("only logs exports can be browsed, and this one holds {}", export.resource.as_str())));
    }
    if export.status != ExportStatus::Done {
        return Err(ServiceError::NotBrowsable(format!("it is {}; an export can be browsed once it is done", export.status.as_str())));
    }
    match export.browse_status {
        Some(BrowseStatus::Ready) => {}
        Some(BrowseStatus::Failed) => {
            return Err(ServiceError::NotBrowsable("its rows could not be indexed for browsing; export the logs again to browse them".into()));
        }
        Some(BrowseStatus::Indexing) | None => {
            let (indexed, total) = (export.browse_indexed_rows.unwrap_or(0), export.row_count.unwrap_or(0));
            return Err(ServiceError::NotBrowsable(format!(
                "its rows are being indexed for browsing ({indexed} of {total} so far); its file can be downloaded meanwhile"
            )));
        }
    }
    if now_ms() - export.created_at_ms > BROWSABLE_DAYS * 86_400_000 {
        return Err(ServiceError::NotBrowsable(format!("it was made more than {BROWSABLE_DAYS} days ago; export the logs again to browse them")));
    }
    let names = export.fields.names();
    let backend = db.get_database_backend();
    // Positions 2 and 3 are each window's bounds, set below.
    let mut values: Vec<sea_orm::Value> = vec![export.id.clone().into(), 0i64.into(), 0i64.into()];
    let ph = |n: usize| crate::dialect::ph(backend, n);
    let mut sql = format!("SELECT position, cells FROM export_rows WHERE export_id = {} AND position > {} AND position <= {}", ph(1), ph(2), ph(3));
    let mut errors = Vec::new();
    let mut needle = None;
    if let Some(q) = browse.q.as_deref().filter(|q| !q.is_empty()) {
        let folded = fold(q);
        if backend == sea_orm::DbBackend::Postgres {
            let escaped = folded.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            values.push(format!("%{escaped}%").into());
            sql.push_str(&format!(" AND folded LIKE {} ESCAPE '\\'", ph(values.len())));
        } else {
            // The text is lowercased on both sides, so SQLite's case-sensitive GLOB finds what its
            // LIKE would, at twice the speed (LIKE folds case byte by byte as it goes).
            let escaped: String = folded.chars().map(|c| if matches!(c, '*' | '?' | '[') { format!("[{c}]") } else { c.to_string() }).collect();
            values.push(format!("*{escaped}*").into());
            sql.push_str(&format!(" AND folded GLOB {}", ph(values.len())));
        }
        if browse_index::has_grams(db, &export.id).await? {
            needle = browse_index::Needle::new(&folded);
        }
    }
    let mut exact = Vec::new();
    for (column, value) in &browse.columns {
        match names.iter().position(|n| n == column) {
            Some(at) => exact.push((at, value.as_str())),
            None => errors.push((format!("filter.{column}"), format!("is not a column of this export; its columns are {}", names.join(", ")))),
        }
    }
    if !errors.is_empty() {
        return Err(ServiceError::Rejected(errors));
    }
    // Exact values of indexed columns are looked up; the rest is checked on each row read.
    let indexed = browse_index::indexed(db, &export.id, &exact.iter().map(|(at, _)| *at).collect::<Vec<_>>()).await?;
    let (looked_up, checked): (Vec<(usize, &str)>, Vec<(usize, &str)>) = exact.into_iter().partition(|(at, _)| indexed.contains(at));
    for (at, value) in checked {
        values.push(value.to_owned().into());
        sql.push_str(&match backend {
            sea_orm::DbBackend::Postgres => format!(" AND (cells::json ->> {at}) = {}", ph(values.len())),
            _ => format!(" AND json_extract(cells, '$[{at}]') = {}", ph(values.len())),
        });
    }
    let wanted = browse.limit.get() + 1;
    // A cursor past the end (it is the client's to send) reads nothing and cannot overflow.
    let after = browse.after.unwrap_or(-1).clamp(-1, export.row_count.unwrap_or(0));
    let rows = if looked_up.is_empty() {
        read_windows(db, &export, sql, values, wanted, after, needle.as_ref()).await?
    } else {
        read_looked_up(db, &export, &looked_up, sql, values, wanted, after).await?
    };
    let mut rows = rows;
    let has_more = rows.len() as u64 > browse.limit.get();
    rows.truncate(browse.limit.get() as usize);
    Ok(BrowsePage { export, rows, has_more })
}

type BrowseRow = (i64, Vec<String>);

fn browse_rows(found: Vec<sea_orm::QueryResult>, room: usize) -> Result<Vec<BrowseRow>, sea_orm::DbErr> {
    found
        .iter()
        .take(room)
        .map(|row| {
            let position: i64 = row.try_get("", "position")?;
            let cells: String = row.try_get("", "cells")?;
            Ok((position, serde_json::from_str::<Vec<String>>(&cells).unwrap_or_default()))
        })
        .collect()
}

/// Up to `wanted` rows after position `after` among those the exact-value index names for
/// `looked_up`, read by position and checked against the rest of `sql`'s conditions.
async fn read_looked_up(
    db: &impl ConnectionTrait,
    export: &Export,
    looked_up: &[(usize, &str)],
    sql: String,
    mut values: Vec<sea_orm::Value>,
    wanted: u64,
    after: i64,
) -> ServiceResult<Vec<BrowseRow>> {
    const POSITIONS_PER_READ: usize = 500;
    let backend = db.get_database_backend();
    let first_block = (after + 1) / browse_index::BLOCK_ROWS as i64;
    let mut rows = Vec::new();
    // Only blocks holding every looked-up value can hold a match.
    let mut blocks: Option<Vec<i64>> = None;
    for filter in looked_up {
        let with = browse_index::blocks_with(db, &export.id, *filter, first_block).await?;
        blocks = Some(match blocks {
            None => with,
            Some(so_far) => so_far.into_iter().filter(|b| with.binary_search(b).is_ok()).collect(),
        });
    }
    for block in blocks.unwrap_or_default() {
        let positions: Vec<i64> = browse_index::block_positions(db, &export.id, looked_up, block).await?.into_iter().filter(|p| *p > after).collect();
        for chunk in positions.chunks(POSITIONS_PER_READ) {
            let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else { continue };
            values[1] = (first - 1).into();
            values[2] = (*last).into();
            // The positions come from the index, not from the request.
            let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            let room = wanted as usize - rows.len();
            let sql = format!("{sql} AND position IN ({list}) ORDER BY position LIMIT {room}");
            let found = db.query_all_raw(Statement::from_sql_and_values(backend, sql, values.clone())).await?;
            rows.extend(browse_rows(found, room)?);
            if rows.len() as u64 >= wanted {
                return Ok(rows);
            }
        }
    }
    Ok(rows)
}

/// Up to `wanted` rows after position `after` matching `sql`'s conditions; with a `needle`, only
/// from the blocks whose text filter passes it.
async fn read_windows(
    db: &impl ConnectionTrait,
    export: &Export,
    sql: String,
    mut values: Vec<sea_orm::Value>,
    wanted: u64,
    mut after: i64,
    needle: Option<&browse_index::Needle>,
) -> ServiceResult<Vec<BrowseRow>> {
    let backend = db.get_database_backend();
    // Read in windows of positions, each an index range, until the page is full: a page of a
    // common match ends in the first window, and no planner can choose to scan and sort the whole
    // export for a search it guessed to be rare (PostgreSQL did, 2 s for a common word).
    let sql = format!("{sql} ORDER BY position LIMIT {wanted}");
    let end = export.row_count.unwrap_or(0);
    let mut rows = Vec::new();
    while (rows.len() as u64) < wanted && after < end {
        let until = (after + BROWSE_WINDOW).min(end);
        let ranges = match needle {
            Some(needle) => browse_index::gram_ranges(db, &export.id, needle, after, until).await?,
            None => vec![(after, until)],
        };
        for (from, to) in ranges {
            values[1] = from.into();
            values[2] = to.into();
            let found = db.query_all_raw(Statement::from_sql_and_values(backend, sql.clone(), values.clone())).await?;
            rows.extend(browse_rows(found, wanted as usize - rows.len())?);
            if rows.len() as u64 >= wanted {
                break;
            }
        }
        after = until;
    }
    Ok(rows)
}

//! Exports: which resource, which columns, and how a value becomes a CSV cell that a spreadsheet
//! shows as text and never runs.

use std::borrow::Cow;

use serde_json::Value;
use serde_json::value::RawValue;

use super::event::PublishedEvent;
use super::filter::{CREATED_AFTER, CREATED_BEFORE, Context, Field, Filter, FilterErrors, Values, each};
use super::log::{StoredLogRecord, failure};
use super::params::Params;
use super::sendout::Sendout;
use super::task::{Task, wire_enum};
use super::time::{ProjectTimeZone, format_in_zone, format_utc};

wire_enum!(
    /// What an export holds: the rows of one list.
    ExportResource { Logs = "logs", Tasks = "tasks", WebhookSendouts = "webhook_sendouts", Events = "events" }
);

wire_enum!(
    ExportStatus { Scheduled = "scheduled", InProgress = "in_progress", Done = "done", Failed = "failed" }
);

wire_enum!(
    ExportFormat { Csv = "csv" }
);

wire_enum!(
    /// A logs export's browse index: built from its file once the file is whole.
    BrowseStatus { Indexing = "indexing", Ready = "ready", Failed = "failed" }
);

/// The columns of one resource's exports: the list summary's (the default, times in UTC), then
/// those given only when named (`_project` twins, bodies and other detail).
struct Columns {
    summary: &'static [&'static str],
    named: &'static [&'static str],
}

const LOG_COLUMNS: Columns = Columns {
    summary: &[
        "id", "occurred_at", "channel", "status", "method", "endpoint", "path", "http_status", "duration_ms", "user_id",
        "customer_id", "server_key_id", "client_key_id",
    ],
    named: &[
        "occurred_at_project", "query", "request_headers", "request_body", "response_body", "request_body_truncated",
        "response_body_truncated", "related",
    ],
};
const TASK_COLUMNS: Columns = Columns {
    summary: &[
        "id", "type", "status", "processing_status", "progress.processed", "progress.total", "progress.percent",
        "processing_time_ms", "created_at", "started_at", "finished_at", "created_by.kind", "created_by.id", "request_id",
        "error_count",
    ],
    named: &["created_at_project", "started_at_project", "finished_at_project", "related", "result"],
};
const SENDOUT_COLUMNS: Columns = Columns {
    summary: &[
        "id", "webhook_id", "url", "event_id", "event_type", "source_id", "request_id", "status", "attempt_count",
        "next_attempt_at", "created_at", "sent_at", "delivered_at",
    ],
    named: &["next_attempt_at_project", "created_at_project", "sent_at_project", "delivered_at_project"],
};
const EVENT_COLUMNS: Columns =
    Columns { summary: &["id", "type", "source_id", "data", "created_at", "request_id"], named: &["created_at_project"] };

/// Columns whose cells hold JSON text; browsing gives them back as JSON values.
pub const JSON_FIELDS: &[&str] = &["query", "request_headers", "request_body", "response_body", "related", "result", "data"];

impl ExportResource {
    fn columns(self) -> &'static Columns {
        match self {
            ExportResource::Logs => &LOG_COLUMNS,
            ExportResource::Tasks => &TASK_COLUMNS,
            ExportResource::WebhookSendouts => &SENDOUT_COLUMNS,
            ExportResource::Events => &EVENT_COLUMNS,
        }
    }

    /// Every column this resource's exports may hold.
    pub fn fields(self) -> Vec<&'static str> {
        let columns = self.columns();
        columns.summary.iter().chain(columns.named).copied().collect()
    }

    /// The list summary's columns, times in UTC (a `_project` twin is there when asked for).
    pub fn summary_fields(self) -> &'static [&'static str] {
        self.columns().summary
    }

    pub fn default_fields(self) -> Vec<String> {
        self.summary_fields().iter().map(|f| (*f).to_owned()).collect()
    }

    /// The list whose filters an export of this resource takes, as named in its file name.
    pub fn file_name(self, export_id: &str) -> String {
        format!("{}-{export_id}.csv", self.as_str())
    }
}

/// The columns of an export, checked against its resource: known, each once, at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields(Vec<String>);

impl Fields {
    /// `None` means the default columns. Errors name `fields[i]`.
    pub fn new(resource: ExportResource, fields: Option<Vec<String>>) -> Result<Self, FilterErrors> {
        let Some(fields) = fields else { return Ok(Self(resource.default_fields())) };
        if fields.is_empty() {
            return Err(vec![("fields".into(), "must name at least one column, or be left out for the default ones".into())]);
        }
        let known = resource.fields();
        let mut errors = Vec::new();
        for (i, field) in fields.iter().enumerate() {
            if !known.contains(&field.as_str()) {
                errors.push((format!("fields[{i}]"), format!("'{field}' is not a column of {} exports; use {}", resource.as_str(), known.join(", "))));
            } else if fields[..i].contains(field) {
                errors.push((format!("fields[{i}]"), format!("'{field}' is named twice")));
            }
        }
        if errors.is_empty() { Ok(Self(fields)) } else { Err(errors) }
    }

    /// Columns as stored: only ever written from a checked list.
    pub fn trusted(fields: Vec<String>) -> Self {
        Self(fields)
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }
}

/// One cell's value before it is written.
pub enum Cell<'a> {
    Empty,
    /// Text a person or a client wrote: neutralised if a spreadsheet would read it as a formula.
    Text(Cow<'a, str>),
    /// A number or flag the server made.
    Plain(String),
    /// A JSON value, written as its compact text (a JSON string keeps its quotes).
    Json(&'a Value),
    /// JSON text as stored (compact, written by us), `null` or missing being no value.
    Raw(Option<&'a RawValue>),
}

impl Cell<'_> {
    pub fn write(&self, out: &mut String) {
        match self {
            Cell::Empty => {}
            Cell::Text(t) => out.push_str(&inert(t)),
            Cell::Plain(p) => out.push_str(p),
            Cell::Json(Value::Null) => {}
            Cell::Json(v) => out.push_str(&inert(&v.to_string())),
            Cell::Raw(None) => {}
            Cell::Raw(Some(v)) if v.get() == "null" => {}
            Cell::Raw(Some(v)) => out.push_str(&inert(v.get())),
        }
    }
}

fn text(value: &str) -> Cell<'_> {
    Cell::Text(Cow::Borrowed(value))
}

fn opt(value: &Option<String>) -> Cell<'_> {
    value.as_deref().map_or(Cell::Empty, text)
}

fn num(value: impl ToString) -> Cell<'static> {
    Cell::Plain(value.to_string())
}

/// A cell a spreadsheet would run (`=`, `+`, `-`, `@`, tab or carriage return first) is kept as
/// text by a leading apostrophe, as OWASP recommends for CSV injection.
pub fn inert(cell: &str) -> Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

/// Times of one export: UTC, and the project's zone for `_project` columns.
pub struct Clock<'a> {
    pub zone: &'a ProjectTimeZone,
    pub now_ms: i64,
}

impl Clock<'_> {
    /// `X_at` or `X_at_project` of the instant `ms`.
    fn time(&self, field: &str, ms: Option<i64>) -> Cell<'static> {
        match ms {
            None => Cell::Empty,
            Some(ms) if field.ends_with("_project") => Cell::Plain(format_in_zone(ms, self.zone)),
            Some(ms) => Cell::Plain(format_utc(ms)),
        }
    }
}

/// A row of an export: the cell of each of its resource's columns.
pub trait ExportRow {
    fn cell<'a>(&'a self, field: &str, clock: &Clock<'_>) -> Cell<'a>;
}

impl ExportRow for StoredLogRecord<'_> {
    fn cell<'a>(&'a self, field: &str, clock: &Clock<'_>) -> Cell<'a> {
        match field {
            "id" => text(&self.id),
            "occurred_at" | "occurred_at_project" => clock.time(field, Some(self.occurred_at_ms)),
            "channel" => text(&self.channel),
            "status" => Cell::Plain(if failure(self.http_status) { "failure" } else { "success" }.into()),
            "method" => text(&self.method),
            "endpoint" => text(&self.endpoint),
            "path" => text(&self.path),
            "http_status" => num(self.http_status),
            "duration_ms" => num(self.duration_ms),
            "user_id" => opt(&self.user_id),
            "customer_id" => opt(&self.customer_id),
            "server_key_id" => opt(&self.server_key_id),
            "client_key_id" => opt(&self.client_key_id),
            "query" => Cell::Raw(self.query),
            "request_headers" => Cell::Raw(self.request_headers),
            "request_body" => Cell::Raw(self.request_body),
            "response_body" => Cell::Raw(self.response_body),
            "request_body_truncated" => num(self.request_body_truncated),
            "response_body_truncated" => num(self.response_body_truncated),
            "related" => Cell::Plain(self.related.map_or("[]", RawValue::get).to_owned()),
            _ => Cell::Empty,
        }
    }
}

impl ExportRow for Task {
    fn cell<'a>(&'a self, field: &str, clock: &Clock<'_>) -> Cell<'a> {
        match field {
            "id" => text(&self.id),
            "type" => Cell::Plain(self.task_type.as_str().into()),
            "status" => Cell::Plain(self.status.as_str().into()),
            "processing_status" => self.processing_status.map_or(Cell::Empty, |s| Cell::Plain(s.as_str().into())),
            "progress.processed" => num(self.processed),
            "progress.total" => self.total.map_or(Cell::Empty, num),
            "progress.percent" => num(self.percent),
            "processing_time_ms" => self.processing_time_ms(clock.now_ms).map_or(Cell::Empty, num),
            "created_at" | "created_at_project" => clock.time(field, Some(self.created_at_ms)),
            "started_at" | "started_at_project" => clock.time(field, self.started_at_ms),
            "finished_at" | "finished_at_project" => clock.time(field, self.finished_at_ms),
            "created_by.kind" => Cell::Plain(self.created_by.kind.as_str().to_owned()),
            "created_by.id" => opt(&self.created_by.id),
            "request_id" => opt(&self.request_id),
            "error_count" => num(self.error_count),
            "related" => Cell::Plain(serde_json::to_string(&self.related).unwrap_or_default()),
            "result" => Cell::Json(&self.result),
            _ => Cell::Empty,
        }
    }
}

impl ExportRow for Sendout {
    fn cell<'a>(&'a self, field: &str, clock: &Clock<'_>) -> Cell<'a> {
        match field {
            "id" => text(&self.id),
            "webhook_id" => text(&self.webhook_id),
            "url" => text(&self.url),
            "event_id" => text(&self.event_id),
            "event_type" => text(&self.event_type),
            "source_id" => opt(&self.source_id),
            "request_id" => opt(&self.request_id),
            "status" => Cell::Plain(self.status.as_str().into()),
            "attempt_count" => num(self.attempt_count),
            "next_attempt_at" | "next_attempt_at_project" => clock.time(field, self.next_attempt_at_ms),
            "created_at" | "created_at_project" => clock.time(field, Some(self.created_at_ms)),
            "sent_at" | "sent_at_project" => clock.time(field, self.sent_at_ms),
            "delivered_at" | "delivered_at_project" => clock.time(field, self.delivered_at_ms),
            _ => Cell::Empty,
        }
    }
}

impl ExportRow for PublishedEvent {
    fn cell<'a>(&'a self, field: &str, clock: &Clock<'_>) -> Cell<'a> {
        match field {
            "id" => text(&self.id),
            "type" => text(&self.event_type),
            "source_id" => opt(&self.source_id),
            "data" => Cell::Json(&self.data),
            "created_at" | "created_at_project" => clock.time(field, Some(self.created_at_ms)),
            "request_id" => opt(&self.request_id),
            _ => Cell::Empty,
        }
    }
}

/// An export as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub id: String,
    pub resource: ExportResource,
    pub status: ExportStatus,
    /// As given, read-only: the list filters, a repeated one as an array.
    pub filters: Value,
    pub fields: Fields,
    pub format: ExportFormat,
    /// The zone its filters and `_project` columns are read in (the project's when it was made).
    pub time_zone: ProjectTimeZone,
    pub task_id: String,
    pub created_by: super::actor::Actor,
    pub request_id: Option<String>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub row_count: Option<i64>,
    pub size_bytes: Option<i64>,
    pub file_id: Option<String>,
    pub error: Option<String>,
    /// Logs exports only, once done.
    pub browse_status: Option<BrowseStatus>,
    pub browse_indexed_rows: Option<i64>,
}

/// The filters of `GET /v1/exports`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFilter {
    pub resource: Vec<ExportResource>,
    pub status: Vec<ExportStatus>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
}

impl Filter for ExportFilter {
    const RESOURCE: &'static str = "export";
    const FIELDS: &'static [Field] = &[
        Field::any_of("resource", Values::OneOf("ExportResource"), ""),
        Field::any_of("status", Values::OneOf("ExportStatus"), ""),
        CREATED_AFTER,
        CREATED_BEFORE,
    ];

    fn from_params(params: &Params, cx: Context<'_>) -> Result<Self, FilterErrors> {
        let mut errors = Vec::new();
        let (created_after, created_before) = params.created_window(cx.zone, &mut errors);
        let resource = each(params, "resource", ExportResource::parse, &mut errors);
        let status = each(params, "status", ExportStatus::parse, &mut errors);
        if errors.is_empty() { Ok(Self { resource, status, created_after, created_before }) } else { Err(errors) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_a_spreadsheet_would_run_are_kept_as_text() {
        for formula in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(inert(formula), format!("'{formula}"));
        }
        assert_eq!(inert("plain"), "plain");
        assert_eq!(inert(""), "");
        let mut out = String::new();
        Cell::Json(&serde_json::json!("=HYPERLINK()")).write(&mut out);
        assert_eq!(out, "\"=HYPERLINK()\"", "a JSON string keeps its quotes, so it cannot start a formula");
        out.clear();
        Cell::Plain("-5".into()).write(&mut out);
        assert_eq!(out, "-5", "numbers the server made are left alone");
    }

    #[test]
    fn a_stored_log_record_is_written_as_its_json_text_without_parsing_the_bodies() {
        let payload = serde_json::json!({
            "id": "log_1", "occurred_at_ms": 0, "channel": "a\\\"b", "method": "POST", "endpoint": "POST /x", "path": "/x",
            "http_status": 422, "duration_ms": 3, "query": null, "request_headers": {"h": "v"},
            "request_body": {"note": "=cmd", "n": [1, 2]}, "response_body": -5, "user_id": "+1", "customer_id": null,
            "server_key_id": null, "client_key_id": null,
        })
        .to_string();
        let record: StoredLogRecord<'_> = serde_json::from_str(&payload).unwrap();
        let clock = Clock { zone: &ProjectTimeZone::utc(), now_ms: 0 };
        let cell = |field: &str| {
            let mut out = String::new();
            record.cell(field, &clock).write(&mut out);
            out
        };
        assert_eq!(cell("request_body"), r#"{"n":[1,2],"note":"=cmd"}"#, "the stored text, compact");
        assert_eq!(cell("response_body"), "'-5", "JSON text that starts a formula is inert too");
        assert_eq!(cell("query"), "", "null is no value");
        assert_eq!(cell("related"), "[]", "older records have none");
        assert_eq!(cell("channel"), "a\\\"b", "escaped strings are read whole");
        assert_eq!(cell("user_id"), "'+1");
        assert_eq!(cell("status"), "failure");
        assert_eq!(cell("occurred_at"), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn fields_default_to_the_summary_and_are_checked() {
        let default = Fields::new(ExportResource::Logs, None).unwrap();
        assert_eq!(default.names().first().map(String::as_str), Some("id"));
        assert!(!default.names().iter().any(|f| f.ends_with("_project") || f == "request_body"));
        let errors = Fields::new(ExportResource::Logs, Some(vec!["id".into(), "nope".into(), "id".into()])).unwrap_err();
        let named: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(named, vec!["fields[1]", "fields[2]"]);
        assert!(Fields::new(ExportResource::Events, Some(Vec::new())).is_err());
        assert!(Fields::new(ExportResource::Tasks, Some(vec!["progress.percent".into(), "created_at_project".into()])).is_ok());
    }

    #[test]
    fn every_default_field_is_a_known_field() {
        for r in ExportResource::ALL {
            assert!(r.default_fields().iter().all(|f| r.fields().contains(&f.as_str())));
            assert!(r.default_fields().iter().all(|f| !f.ends_with("_project")), "{r:?}");
        }
    }
}

//! The event log: every state change, as a typed event. `store` is the only code that writes it.

pub mod group;
pub mod live;
mod store;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::actor::Actor;
use crate::domain::event::{EventType, SourceId};
use crate::domain::export::{ExportFormat, ExportResource};
use crate::domain::import::ImportFormat;
use crate::domain::log::{LogRecord, RelatedRef};
use crate::domain::task::{ProcessingStatus, TaskError, TaskType};
use crate::domain::webhook::{EventTypePattern, WebhookUrl};
use crate::vault::SealedSecret;
use crate::domain::project::{Email, KeyKind, KeyName, Plan, ProjectName, RetentionDays, UserName};
use crate::domain::time::ProjectTimeZone;

pub use store::{AfterCommit, EventStore, StoreError, StoredEvent, Writer, decode, in_streams, payloads, read_batch};

/// Every state change the server knows. The serde tag is `<event type>.v<schema version>`: a change
/// of shape gets a new variant with the next version, and old rows keep decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "c")]
pub enum DomainEvent {
    #[serde(rename = "system.bootstrapped.v1")]
    Bootstrapped(Bootstrapped),
    #[serde(rename = "admin_token.created.v1")]
    AdminTokenCreated(AdminTokenCreated),
    #[serde(rename = "project.created.v1")]
    ProjectCreated(ProjectCreated),
    #[serde(rename = "project.updated.v1")]
    ProjectUpdated(ProjectUpdated),
    #[serde(rename = "api_key.created.v1")]
    ApiKeyCreated(ApiKeyCreated),
    #[serde(rename = "api_key.revoked.v1")]
    ApiKeyRevoked(ApiKeyRevoked),
    #[serde(rename = "user.created.v1")]
    UserCreated(UserCreated),
    #[serde(rename = "request.logged.v1")]
    RequestLogged(Box<LogRecord>),
    #[serde(rename = "task.scheduled.v1")]
    TaskScheduled(TaskScheduled),
    #[serde(rename = "task.started.v1")]
    TaskStarted(TaskRef),
    #[serde(rename = "task.progressed.v1")]
    TaskProgressed(TaskProgressed),
    #[serde(rename = "task.completed.v1")]
    TaskCompleted(TaskCompleted),
    #[serde(rename = "task.failed.v1")]
    TaskFailed(TaskFailed),
    #[serde(rename = "task.cancelled.v1")]
    TaskCancelled(TaskRef),
    #[serde(rename = "import.created.v1")]
    ImportCreated(ImportCreated),
    #[serde(rename = "export.created.v1")]
    ExportCreated(ExportCreated),
    #[serde(rename = "export.written.v1")]
    ExportWritten(ExportWritten),
    #[serde(rename = "export.withdrawn.v1")]
    ExportWithdrawn(ExportWithdrawn),
    #[serde(rename = "event.published.v1")]
    EventPublished(EventPublished),
    #[serde(rename = "retention.daily_run.v1")]
    DailyRetentionRun(DailyRetentionRun),
    #[serde(rename = "webhook.created.v1")]
    WebhookCreated(WebhookCreated),
    #[serde(rename = "webhook.updated.v1")]
    WebhookUpdated(WebhookUpdated),
    #[serde(rename = "webhook.deleted.v1")]
    WebhookDeleted(WebhookRef),
    #[serde(rename = "webhook.secret_rotated.v1")]
    WebhookSecretRotated(WebhookSecretRotated),
    #[serde(rename = "webhook.disabled.v1")]
    WebhookDisabled(WebhookDisabled),
    #[serde(rename = "sendout.created.v1")]
    SendoutCreated(SendoutCreated),
    #[serde(rename = "sendout.attempted.v1")]
    SendoutAttempted(SendoutAttempted),
    #[serde(rename = "sendout.retry_requested.v1")]
    SendoutRetryRequested(SendoutRetryRequested),
}

/// Marks that first-start set-up ran; its stream can hold one event only, so two nodes starting at
/// once on one database cannot both bootstrap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bootstrapped {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminTokenCreated {
    pub id: String,
    pub token_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectCreated {
    pub id: String,
    pub name: ProjectName,
    pub time_zone: ProjectTimeZone,
    pub plan: Plan,
    pub retention_days: RetentionDays,
}

/// Only the fields that changed are present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectUpdated {
    pub id: String,
    pub name: Option<ProjectName>,
    pub time_zone: Option<ProjectTimeZone>,
    pub plan: Option<Plan>,
    pub retention_days: Option<RetentionDays>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyCreated {
    pub id: String,
    pub project_id: String,
    pub kind: KeyKind,
    pub name: KeyName,
    pub token_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRevoked {
    pub id: String,
    pub project_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCreated {
    pub id: String,
    pub project_id: String,
    pub name: UserName,
    pub email: Email,
    pub token_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskScheduled {
    pub id: String,
    pub project_id: String,
    pub task_type: TaskType,
    pub created_by: Actor,
    pub request_id: Option<String>,
    pub related: Vec<RelatedRef>,
    /// What the worker needs, e.g. `{"import_id": …}` or `{"cutoff_ms": …}`.
    pub params: Value,
    pub total: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRef {
    pub id: String,
    pub project_id: String,
}

/// A committed step of a running task. `checkpoint` is where a resumed worker carries on; the
/// step's own items are in the same transaction, so a step happens entirely or not at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskProgressed {
    pub id: String,
    pub project_id: String,
    pub processed: i64,
    pub total: Option<i64>,
    pub percent: i32,
    pub checkpoint: Value,
    /// The outcome so far (an import's row counts).
    pub result: Value,
    /// Errors of this step only.
    pub errors: Vec<TaskError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCompleted {
    pub id: String,
    pub project_id: String,
    pub processing_status: ProcessingStatus,
    pub processed: i64,
    pub result: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFailed {
    pub id: String,
    pub project_id: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportCreated {
    pub id: String,
    pub project_id: String,
    pub task_id: String,
    pub file_id: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub format: ImportFormat,
}

/// An export's file is whole: the export is done and can be downloaded. A logs export's rows are
/// then indexed for browsing (`browse`), and its task ends when they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportWritten {
    pub id: String,
    pub project_id: String,
    pub file_id: String,
    pub row_count: i64,
    pub size_bytes: i64,
    pub browse: bool,
}

/// A done export taken back because its rows held data since erased: its file and browsable
/// rows are gone, and it reads as failed with `reason`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportWithdrawn {
    pub id: String,
    pub project_id: String,
    pub reason: String,
}

/// An export as asked for; its task (scheduled with it) does the work, and the export's state
/// follows the task's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportCreated {
    pub id: String,
    pub project_id: String,
    pub task_id: String,
    pub resource: ExportResource,
    /// The list filters as given; read when the task runs, in `time_zone`, as of the export's
    /// creation (a window left open means the last 24 hours before it, as in the list).
    pub filters: Value,
    pub fields: Vec<String>,
    pub format: ExportFormat,
    pub time_zone: ProjectTimeZone,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventPublished {
    pub id: String,
    pub project_id: String,
    pub event_type: EventType,
    pub source_id: Option<SourceId>,
    pub data: Map<String, Value>,
    pub created_at_ms: i64,
    /// The `Idempotency-Key` it was published with, honoured for 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// An endpoint as created; `secret` signs its deliveries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookCreated {
    pub id: String,
    pub project_id: String,
    pub url: WebhookUrl,
    pub event_types: Vec<EventTypePattern>,
    pub description: Option<String>,
    pub enabled: bool,
    pub rate_limit_per_second: Option<i32>,
    /// Sealed by the store's vault: the log holds no secret in plaintext.
    pub secret: SealedSecret,
}

/// The endpoint's settings after a change, in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookUpdated {
    pub id: String,
    pub project_id: String,
    pub url: WebhookUrl,
    pub event_types: Vec<EventTypePattern>,
    pub description: Option<String>,
    pub enabled: bool,
    pub rate_limit_per_second: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookRef {
    pub id: String,
    pub project_id: String,
}

/// A new secret; the one it replaces keeps signing until `previous_secret_until_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookSecretRotated {
    pub id: String,
    pub project_id: String,
    pub secret: SealedSecret,
    pub previous_secret_until_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDisabled {
    pub id: String,
    pub project_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendoutCreated {
    pub id: String,
    pub project_id: String,
    pub webhook_id: String,
    pub url: String,
    pub event_id: String,
    pub event_type: String,
    pub source_id: Option<String>,
    pub created_at_ms: i64,
}

/// One HTTP attempt and what follows from it. `generation` is the attempt's delivery job; the
/// next job, if any, has `generation + 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendoutAttempted {
    pub id: String,
    pub project_id: String,
    pub webhook_id: String,
    pub generation: i32,
    pub attempt: Attempt,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub id: String,
    pub attempted_at_ms: i64,
    pub trigger: AttemptTrigger,
    pub http_status: Option<i32>,
    pub response_headers: Map<String, Value>,
    pub response_body: Option<String>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

pub use crate::domain::sendout::AttemptTrigger;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AttemptOutcome {
    Delivered,
    Retrying { next_attempt_at_ms: i64 },
    Failed,
    /// Made while a retry by hand replaced it: kept in the history, while the sendout's state
    /// follows the newer attempt.
    Superseded,
}

/// One more attempt now, by hand or by a recovery task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendoutRetryRequested {
    pub id: String,
    pub project_id: String,
    pub generation: i32,
}

/// The daily retention run of one UTC day; its stream admits one event, so one node runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyRetentionRun {
    pub day: String,
}

/// Which aggregate an event belongs to; versions are counted per stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamRef {
    pub kind: &'static str,
    pub id: String,
}

impl DomainEvent {
    pub fn stream(&self) -> StreamRef {
        let (kind, id) = match self {
            DomainEvent::Bootstrapped(_) => ("system", "bootstrap"),
            DomainEvent::AdminTokenCreated(e) => ("admin_token", e.id.as_str()),
            DomainEvent::ProjectCreated(e) => ("project", e.id.as_str()),
            DomainEvent::ProjectUpdated(e) => ("project", e.id.as_str()),
            DomainEvent::ApiKeyCreated(e) => ("api_key", e.id.as_str()),
            DomainEvent::ApiKeyRevoked(e) => ("api_key", e.id.as_str()),
            DomainEvent::UserCreated(e) => ("user", e.id.as_str()),
            DomainEvent::RequestLogged(e) => ("log", e.id.as_str()),
            DomainEvent::TaskScheduled(e) => ("task", e.id.as_str()),
            DomainEvent::TaskStarted(e) | DomainEvent::TaskCancelled(e) => ("task", e.id.as_str()),
            DomainEvent::TaskProgressed(e) => ("task", e.id.as_str()),
            DomainEvent::TaskCompleted(e) => ("task", e.id.as_str()),
            DomainEvent::TaskFailed(e) => ("task", e.id.as_str()),
            DomainEvent::ImportCreated(e) => ("import", e.id.as_str()),
            DomainEvent::ExportCreated(e) => ("export", e.id.as_str()),
            DomainEvent::ExportWritten(e) => ("export", e.id.as_str()),
            DomainEvent::ExportWithdrawn(e) => ("export", e.id.as_str()),
            DomainEvent::EventPublished(e) => ("event", e.id.as_str()),
            DomainEvent::DailyRetentionRun(e) => ("retention_run", e.day.as_str()),
            DomainEvent::WebhookCreated(e) => ("webhook", e.id.as_str()),
            DomainEvent::WebhookUpdated(e) => ("webhook", e.id.as_str()),
            DomainEvent::WebhookDeleted(e) => ("webhook", e.id.as_str()),
            DomainEvent::WebhookSecretRotated(e) => ("webhook", e.id.as_str()),
            DomainEvent::WebhookDisabled(e) => ("webhook", e.id.as_str()),
            DomainEvent::SendoutCreated(e) => ("sendout", e.id.as_str()),
            DomainEvent::SendoutAttempted(e) => ("sendout", e.id.as_str()),
            DomainEvent::SendoutRetryRequested(e) => ("sendout", e.id.as_str()),
        };
        StreamRef { kind, id: id.to_owned() }
    }

    /// The project whose data this is (`None` for operator-level state); the retention purge and
    /// tenant scoping key on it.
    pub fn project_id(&self) -> Option<&str> {
        match self {
            DomainEvent::Bootstrapped(_) | DomainEvent::AdminTokenCreated(_) | DomainEvent::DailyRetentionRun(_) => None,
            DomainEvent::ProjectCreated(e) => Some(&e.id),
            DomainEvent::ProjectUpdated(e) => Some(&e.id),
            DomainEvent::ApiKeyCreated(e) => Some(&e.project_id),
            DomainEvent::ApiKeyRevoked(e) => Some(&e.project_id),
            DomainEvent::UserCreated(e) => Some(&e.project_id),
            DomainEvent::RequestLogged(e) => e.project_id.as_deref(),
            DomainEvent::TaskScheduled(e) => Some(&e.project_id),
            DomainEvent::TaskStarted(e) | DomainEvent::TaskCancelled(e) => Some(&e.project_id),
            DomainEvent::TaskProgressed(e) => Some(&e.project_id),
            DomainEvent::TaskCompleted(e) => Some(&e.project_id),
            DomainEvent::TaskFailed(e) => Some(&e.project_id),
            DomainEvent::ImportCreated(e) => Some(&e.project_id),
            DomainEvent::ExportCreated(e) => Some(&e.project_id),
            DomainEvent::ExportWritten(e) => Some(&e.project_id),
            DomainEvent::ExportWithdrawn(e) => Some(&e.project_id),
            DomainEvent::EventPublished(e) => Some(&e.project_id),
            DomainEvent::WebhookCreated(e) => Some(&e.project_id),
            DomainEvent::WebhookUpdated(e) => Some(&e.project_id),
            DomainEvent::WebhookDeleted(e) => Some(&e.project_id),
            DomainEvent::WebhookSecretRotated(e) => Some(&e.project_id),
            DomainEvent::WebhookDisabled(e) => Some(&e.project_id),
            DomainEvent::SendoutCreated(e) => Some(&e.project_id),
            DomainEvent::SendoutAttempted(e) => Some(&e.project_id),
            DomainEvent::SendoutRetryRequested(e) => Some(&e.project_id),
        }
    }

    /// Whether this event opens a new stream, so its version is 1 without looking anything up.
    pub fn starts_stream(&self) -> bool {
        matches!(
            self,
            DomainEvent::Bootstrapped(_)
                | DomainEvent::AdminTokenCreated(_)
                | DomainEvent::ProjectCreated(_)
                | DomainEvent::ApiKeyCreated(_)
                | DomainEvent::UserCreated(_)
                | DomainEvent::RequestLogged(_)
                | DomainEvent::TaskScheduled(_)
                | DomainEvent::ImportCreated(_)
                | DomainEvent::ExportCreated(_)
                | DomainEvent::EventPublished(_)
                | DomainEvent::DailyRetentionRun(_)
                | DomainEvent::WebhookCreated(_)
                | DomainEvent::SendoutCreated(_)
        )
    }
}

/// Context stored beside each event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub actor: Actor,
    /// The log id of the request that caused the change, if a request did.
    pub request_log_id: Option<String>,
}

impl EventMetadata {
    pub fn system() -> Self {
        Self { actor: Actor::system(), request_log_id: None }
    }
}

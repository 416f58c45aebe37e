//! Background tasks: what kind, how far, how it ended.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::filter::{CREATED_AFTER, CREATED_BEFORE, Context, Field, Filter, FilterErrors, Values, each};
use super::params::Params;

/// Declares a string enum with its wire names, `as_str`, `parse` and its OpenAPI schema from one list.
///
/// The schema is written out rather than derived: utoipa's derive does not see a `serde(rename)`
/// whose literal comes through a macro, and documented the Rust variant names instead.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                ::utoipa::openapi::ObjectBuilder::new()
                    .schema_type(::utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl ::utoipa::ToSchema for $name {}

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Result<Self, $crate::domain::Invalid> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::domain::Invalid::new(format!(
                        "must be one of: {}", [$($text),+].join(", ")
                    ))),
                }
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum!(
    TaskType { Import = "import", Export = "export", WebhookRecovery = "webhook_recovery", RetentionPurge = "retention_purge", CustomerErasure = "customer_erasure" }
);

wire_enum!(
    TaskStatus { Scheduled = "scheduled", InProgress = "in_progress", Done = "done", Failed = "failed", Cancelled = "cancelled" }
);

wire_enum!(
    /// Set when a task ends: `success` if everything worked, `failure` if the task failed or some
    /// of its items did.
    ProcessingStatus { Success = "success", Failure = "failure" }
);

/// A task as read: every stored field decoded into its domain type.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: String,
    pub task_type: TaskType,
    pub status: TaskStatus,
    /// Set once it has finished.
    pub processing_status: Option<ProcessingStatus>,
    pub processed: i64,
    pub total: Option<i64>,
    pub percent: i32,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub created_by: crate::domain::actor::Actor,
    pub request_id: Option<String>,
    pub related: Vec<crate::domain::log::RelatedRef>,
    /// The outcome so far: an import's row counts, a purge's removed counts.
    pub result: serde_json::Value,
    pub error_count: i64,
}

impl Task {
    /// From start to finish, or to `now_ms` while it runs; `None` before it starts.
    pub fn processing_time_ms(&self, now_ms: i64) -> Option<i64> {
        self.started_at_ms.map(|s| self.finished_at_ms.unwrap_or(now_ms) - s)
    }
}

impl TaskStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, TaskStatus::Done | TaskStatus::Failed | TaskStatus::Cancelled)
    }
}

/// One failed item of a task: an import row with its line number, or a message of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskError {
    pub line: Option<i64>,
    pub message: String,
}

/// How many errors a task keeps; `error_count` goes on counting past it.
pub const MAX_KEPT_ERRORS: i64 = 1000;

/// Percent done, whole and never 100 before the end.
pub fn percent(done: u64, total: u64) -> i32 {
    if total == 0 {
        return 0;
    }
    ((done.min(total) * 100) / total).min(99) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for t in TaskType::ALL {
            assert_eq!(TaskType::parse(t.as_str()), Ok(*t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Ok(*s));
        }
        assert!(TaskStatus::parse("running").unwrap_err().0.contains("in_progress"));
    }

    #[test]
    fn percent_stays_below_100_until_the_end() {
        assert_eq!(percent(0, 0), 0);
        assert_eq!(percent(50, 100), 50);
        assert_eq!(percent(100, 100), 99);
        assert_eq!(percent(200, 100), 99);
    }
}

/// The filters of `GET /v1/tasks` (and of task exports).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub task_type: Vec<TaskType>,
    pub status: Vec<TaskStatus>,
    pub processing_status: Vec<ProcessingStatus>,
    pub request_id: Vec<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
}

impl Filter for TaskFilter {
    const RESOURCE: &'static str = "task";
    const FIELDS: &'static [Field] = &[
        Field::any_of("type", Values::OneOf("TaskType"), ""),
        Field::any_of("status", Values::OneOf("TaskStatus"), ""),
        Field::any_of("processing_status", Values::OneOf("ProcessingStatus"), "Set once a task has finished."),
        Field::any_of("request_id", Values::Text, "The log id of the request that scheduled the task."),
        CREATED_AFTER,
        CREATED_BEFORE,
    ];

    fn from_params(params: &Params, cx: Context<'_>) -> Result<Self, FilterErrors> {
        let mut errors = Vec::new();
        let (created_after, created_before) = params.created_window(cx.zone, &mut errors);
        let filter = Self {
            task_type: each(params, "type", TaskType::parse, &mut errors),
            status: each(params, "status", TaskStatus::parse, &mut errors),
            processing_status: each(params, "processing_status", ProcessingStatus::parse, &mut errors),
            request_id: params.all("request_id"),
            created_after,
            created_before,
        };
        if errors.is_empty() { Ok(filter) } else { Err(errors) }
    }
}

//! A recorded API request: what the request-log middleware captures and what `POST /v1/logs` ingests.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::channel::Channel;
use super::ids::{IdKind, new_id};
use super::redact::{RedactKeys, redact_header_map, replace_nul_in, stored_body, stored_json};
use super::time::{now_ms, parse_instant};

/// A resource a request touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelatedRef {
    #[serde(rename = "type")]
    pub kind: RelatedKind,
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RelatedKind {
    Task,
    Import,
    Export,
    Event,
    Webhook,
    Sendout,
}

impl RelatedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RelatedKind::Task => "task",
            RelatedKind::Import => "import",
            RelatedKind::Export => "export",
            RelatedKind::Event => "event",
            RelatedKind::Webhook => "webhook",
            RelatedKind::Sendout => "sendout",
        }
    }
}

/// Everything known about one request. Headers are already redacted and bodies already redacted
/// and truncated when a record is built; it is stored once, in the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub id: String,
    pub project_id: Option<String>,
    pub occurred_at_ms: i64,
    pub channel: String,
    pub method: String,
    pub endpoint: String,
    pub path: String,
    pub http_status: i32,
    pub duration_ms: i64,
    #[serde(default)]
    pub query: Value,
    #[serde(default)]
    pub request_headers: Value,
    #[serde(default)]
    pub request_body: Value,
    #[serde(default)]
    pub response_body: Value,
    #[serde(default)]
    pub request_body_truncated: bool,
    #[serde(default)]
    pub response_body_truncated: bool,
    pub user_id: Option<String>,
    pub customer_id: Option<String>,
    pub server_key_id: Option<String>,
    pub client_key_id: Option<String>,
    #[serde(default)]
    pub related: Vec<RelatedRef>,
}

/// A status of 400 or more is a failure; `success` or `failure` is never stored apart from it.
pub fn failure(http_status: i32) -> bool {
    http_status >= 400
}

/// A stored [`LogRecord`] read to be copied out: its JSON parts stay the text they were stored
/// as, so an export of a million logs builds no tree of a body only to write it out again.
#[derive(Debug, Deserialize)]
pub struct StoredLogRecord<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    pub occurred_at_ms: i64,
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    #[serde(borrow)]
    pub endpoint: Cow<'a, str>,
    #[serde(borrow)]
    pub path: Cow<'a, str>,
    pub http_status: i32,
    pub duration_ms: i64,
    #[serde(borrow, default)]
    pub query: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub request_headers: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub request_body: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub response_body: Option<&'a RawValue>,
    #[serde(default)]
    pub request_body_truncated: bool,
    #[serde(default)]
    pub response_body_truncated: bool,
    pub user_id: Option<String>,
    pub customer_id: Option<String>,
    pub server_key_id: Option<String>,
    pub client_key_id: Option<String>,
    #[serde(borrow, default)]
    pub related: Option<&'a RawValue>,
}

impl LogRecord {
    /// `success` or `failure` is derived, never stored apart from the status code.
    pub fn failed(&self) -> bool {
        failure(self.http_status)
    }

    pub fn summary(&self) -> LogSummary {
        LogSummary {
            id: self.id.clone(),
            occurred_at_ms: self.occurred_at_ms,
            channel: self.channel.clone(),
            status: if self.failed() { LogStatus::Failure } else { LogStatus::Success },
            method: self.method.clone(),
            endpoint: self.endpoint.clone(),
            path: self.path.clone(),
            http_status: self.http_status,
            duration_ms: self.duration_ms,
            user_id: self.user_id.clone(),
            customer_id: self.customer_id.clone(),
            server_key_id: self.server_key_id.clone(),
            client_key_id: self.client_key_id.clone(),
        }
    }
}

/// A log as listed: what the list shows and its filters select on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSummary {
    pub id: String,
    pub occurred_at_ms: i64,
    pub channel: String,
    pub status: LogStatus,
    pub method: String,
    pub endpoint: String,
    pub path: String,
    pub http_status: i32,
    pub duration_ms: i64,
    pub user_id: Option<String>,
    pub customer_id: Option<String>,
    pub server_key_id: Option<String>,
    pub client_key_id: Option<String>,
}

/// An entry sent by the host application. Secrets in headers and bodies are redacted on arrival.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogIn {
    /// RFC 3339; may lie in the past.
    pub occurred_at: String,
    pub channel: String,
    pub method: String,
    pub path: String,
    /// Route template; default `<method> <path>`.
    pub endpoint: Option<String>,
    pub http_status: i64,
    pub duration_ms: i64,
    #[schema(value_type = Option<Object>)]
    pub query: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    pub request_headers: Option<Map<String, Value>>,
    /// Any JSON value; a string is stored as text.
    pub request_body: Option<Value>,
    pub response_body: Option<Value>,
    pub user_id: Option<String>,
    pub customer_id: Option<String>,
    pub server_key_id: Option<String>,
    pub client_key_id: Option<String>,
    pub related: Option<Vec<RelatedRef>>,
}

/// Most entries in one `POST /v1/logs`.
pub const MAX_INGEST_BATCH: usize = 1000;
/// Entries may be back-dated freely but not dated in the future beyond clock skew.
const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;

impl LogIn {
    /// Checks every field, collecting all problems as `(logs[i].field, message)`, and stores the
    /// bodies and headers redacted.
    pub fn into_record(self, index: usize, project_id: &str, keys: &RedactKeys, errors: &mut Vec<(String, String)>) -> Option<LogRecord> {
        let before = errors.len();
        let mut bad = |field: &str, message: &str| {
            errors.push((format!("logs[{index}].{field}"), message.to_owned()));
        };
        let occurred_at_ms = match parse_instant(&self.occurred_at) {
            Ok(ms) if ms > now_ms() + MAX_FUTURE_MS => {
                bad("occurred_at", "must not lie in the future");
                0
            }
            Ok(ms) => ms,
            Err(e) => {
                bad("occurred_at", &e.0);
                0
            }
        };
        if let Err(e) = Channel::try_from(self.channel.clone()) {
            bad("channel", &e.0);
        }
        let method = self.method.to_ascii_uppercase();
        if !(1..=16).contains(&method.len()) || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            bad("method", "must be an HTTP method such as GET or POST");
        }
        if !self.path.starts_with('/') || self.path.len() > 2048 {
            bad("path", "must start with / and be at most 2048 characters");
        }
        // Names and ids are stored as text columns, which (on PostgreSQL) cannot hold NUL.
        for (field, value) in [("path", Some(&self.path)), ("endpoint", self.endpoint.as_ref()), ("user_id", self.user_id.as_ref()),
            ("customer_id", self.customer_id.as_ref()), ("server_key_id", self.server_key_id.as_ref()), ("client_key_id", self.client_key_id.as_ref())]
        {
            if value.is_some_and(|v| v.contains('\0')) {
                bad(field, "must not contain NUL characters");
            }
        }
        let endpoint = self.endpoint.clone().unwrap_or_else(|| format!("{method} {}", self.path));
        if endpoint.is_empty() || endpoint.len() > 300 {
            bad("endpoint", "must be 1 to 300 characters");
        }
        if !(100..=599).contains(&self.http_status) {
            bad("http_status", "must be an HTTP status from 100 to 599");
        }
        if !(0..=86_400_000).contains(&self.duration_ms) {
            bad("duration_ms", "must be from 0 to 86400000");
        }
        for (field, value) in [
            ("user_id", &self.user_id),
            ("customer_id", &self.customer_id),
            ("server_key_id", &self.server_key_id),
            ("client_key_id", &self.client_key_id),
        ] {
            if value.as_ref().is_some_and(|v| v.is_empty() || v.len() > 255) {
                bad(field, "must be 1 to 255 characters");
            }
        }
        let related = self.related.unwrap_or_default();
        if related.len() > 100 || related.iter().any(|r| r.id.is_empty() || r.id.len() > 255 || r.id.contains('\0')) {
            bad("related", "must hold at most 100 entries, each with an id of 1 to 255 characters and no NUL");
        }
        if errors.len() > before {
            return None;
        }
        let body = |value: Option<Value>| match value {
            None | Some(Value::Null) => (Value::Null, false),
            Some(Value::String(text)) => stored_body(text.as_bytes(), true, keys),
            Some(json) => stored_json(json, keys),
        };
        let (request_body, request_body_truncated) = body(self.request_body);
        let (response_body, response_body_truncated) = body(self.response_body);
        let mut headers = self.request_headers.unwrap_or_default();
        replace_nul_in(&mut headers);
        redact_header_map(&mut headers);
        let mut query = self.query.unwrap_or_default();
        replace_nul_in(&mut query);
        let mut unique_related: Vec<RelatedRef> = Vec::with_capacity(related.len());
        for r in related {
            if !unique_related.iter().any(|u| u.id == r.id) {
                unique_related.push(r);
            }
        }
        Some(LogRecord {
            id: new_id(IdKind::Log),
            project_id: Some(project_id.to_owned()),
            occurred_at_ms,
            channel: self.channel,
            method,
            endpoint,
            path: self.path,
            http_status: self.http_status as i32,
            duration_ms: self.duration_ms,
            query: Value::Object(query),
            request_headers: Value::Object(headers),
            request_body,
            response_body,
            request_body_truncated,
            response_body_truncated,
            user_id: self.user_id,
            customer_id: self.customer_id,
            server_key_id: self.server_key_id,
            client_key_id: self.client_key_id,
            related: unique_related,
        })
    }
}

crate::domain::task::wire_enum!(
    /// `success` (HTTP status below 400) or `failure`.
    LogStatus { Success = "success", Failure = "failure" }
);

use crate::domain::filter::{Context, Field, Filter, FilterErrors, Values, each};
use crate::domain::params::Params;

crate::domain::task::wire_enum!(
    /// A log attribute whose most frequent values `GET /v1/logs/facets` counts.
    LogFacet {
        Channel = "channel", Status = "status", Endpoint = "endpoint", HttpStatus = "http_status", UserId = "user_id",
        CustomerId = "customer_id", ServerKeyId = "server_key_id", ClientKeyId = "client_key_id"
    }
);

/// The one definition of the log filters, shared by the list, exports and browsing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub occurred_after: Option<i64>,
    pub occurred_before: Option<i64>,
    pub channel: Vec<String>,
    pub status: Vec<LogStatus>,
    pub endpoint: Vec<String>,
    pub user_id: Vec<String>,
    pub customer_id: Vec<String>,
    pub server_key_id: Vec<String>,
    pub client_key_id: Vec<String>,
    pub request_body_contains: Vec<String>,
    pub response_body_contains: Vec<String>,
    pub related_id: Vec<String>,
}

const DAY_MS: i64 = 86_400_000;

impl Filter for LogFilter {
    const RESOURCE: &'static str = "log";
    const FIELDS: &'static [Field] = &[
        Field::bound(
            "occurred_after",
            "Inclusive: an RFC 3339 instant, or a local date-time or date in the project's zone. Without either bound, the last 24 hours.",
        ),
        Field::bound("occurred_before", "Exclusive, same forms as `occurred_after`."),
        Field::any_of("channel", Values::Text, "`api`, `client`, `dashboard`, `admin`, `anonymous` or an integration's slug."),
        Field::any_of("status", Values::OneOf("LogStatus"), "`failure`: HTTP status 400 and above."),
        Field::any_of("endpoint", Values::Text, "A route template such as `POST /v1/exports`."),
        Field::any_of("user_id", Values::Text, ""),
        Field::any_of("customer_id", Values::Text, ""),
        Field::any_of("server_key_id", Values::Text, ""),
        Field::any_of("client_key_id", Values::Text, ""),
        Field::any_of("request_body_contains", Values::Text, "Case-insensitive substring of the request body (at most 200 characters)."),
        Field::any_of("response_body_contains", Values::Text, "Case-insensitive substring of the response body (at most 200 characters)."),
        Field::any_of("related_id", Values::Text, "Id of a task, import, export, event, webhook or sendout the request touched."),
    ];

    /// Every bad value is reported. Without either date bound the window is the 24 hours before now.
    fn from_params(params: &Params, cx: Context<'_>) -> Result<Self, FilterErrors> {
        let (zone, now_ms) = (cx.zone, cx.now_ms);
        use crate::domain::time::parse_filter;
        let mut errors = Vec::new();
        let mut date = |name: &str| match params.one(name) {
            Ok(Some(v)) => parse_filter(v, zone).map(Some).unwrap_or_else(|e| {
                errors.push((name.to_owned(), e.0));
                None
            }),
            Ok(None) => None,
            Err(e) => {
                errors.push((name.to_owned(), e.0));
                None
            }
        };
        let (mut after, before) = (date("occurred_after"), date("occurred_before"));
        if after.is_none() && before.is_none() && !errors.iter().any(|(f, _)| f.starts_with("occurred")) {
            after = Some(now_ms - DAY_MS);
        }
        let status = each(params, "status", LogStatus::parse, &mut errors);
        let channel = params.all("channel");
        for c in &channel {
            if crate::domain::channel::Channel::try_from(c.clone()).is_err() {
                errors.push(("channel".into(), format!("'{c}' is not a channel: 1 to 32 characters of a-z, 0-9, '_' or '-'")));
            }
        }
        for name in ["request_body_contains", "response_body_contains"] {
            if params.all(name).iter().any(|v| v.chars().count() > 200) {
                errors.push((name.into(), "must be at most 200 characters".into()));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            occurred_after: after,
            occurred_before: before,
            channel,
            status,
            endpoint: params.all("endpoint"),
            user_id: params.all("user_id"),
            customer_id: params.all("customer_id"),
            server_key_id: params.all("server_key_id"),
            client_key_id: params.all("client_key_id"),
            request_body_contains: params.all("request_body_contains"),
            response_body_contains: params.all("response_body_contains"),
            related_id: params.all("related_id"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::params::Params;
    use crate::domain::time::{ProjectTimeZone, parse_instant};

    const NOW: i64 = 1_795_000_000_000;

    fn parse(params: &Params, zone: &ProjectTimeZone, now_ms: i64) -> Result<LogFilter, FilterErrors> {
        LogFilter::from_params(params, Context { zone, now_ms })
    }

    #[test]
    fn without_dates_the_window_is_the_last_24_hours() {
        let f = parse(&Params::default(), &ProjectTimeZone::utc(), NOW).unwrap();
        assert_eq!((f.occurred_after, f.occurred_before), (Some(NOW - DAY_MS), None));
    }

    #[test]
    fn dates_are_read_in_the_project_zone_and_values_repeat() {
        let zone = ProjectTimeZone::try_from("Asia/Tokyo".to_string()).unwrap();
        let p = Params::parse("occurred_after=2026-11-23&status=failure&status=success&channel=api&channel=shopify");
        let f = parse(&p, &zone, NOW).unwrap();
        assert_eq!(f.occurred_after, Some(parse_instant("2026-11-22T15:00:00Z").unwrap()));
        assert_eq!(f.occurred_before, None);
        assert_eq!(f.status, vec![LogStatus::Failure, LogStatus::Success]);
        assert_eq!(f.channel, vec!["api", "shopify"]);
    }

    #[test]
    fn every_bad_value_is_reported_by_name() {
        let p = Params::parse("occurred_after=yesterday&status=broken&channel=Not%20A%20Slug");
        let errors = parse(&p, &ProjectTimeZone::utc(), NOW).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, vec!["occurred_after", "status", "channel"]);
    }
}

//! `/v1/logs`: the request log of a project, and ingestion of the host application's own entries.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::auth::{ProjectMember, ServerKey};
use crate::api::dto::ListOut;
use crate::api::extract::{Json, ListParams, ListQuery};
use crate::api::request_log;
use crate::domain::channel::Channel;
use crate::domain::ids::{IdKind, new_id};
use crate::domain::log::{LogFilter, LogRecord, LogStatus, RelatedRef};
use crate::domain::params::Params;
use crate::domain::redact::{self, redact_header_map};
use crate::domain::time::{ProjectTimeZone, format_in_zone, format_utc, now_ms, parse_instant};
use crate::error::{ApiError, ApiResult, ErrorBody, FieldError};
use crate::services::{imports, logs};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct LogSummaryOut {
    pub id: String,
    pub occurred_at: String,
    pub occurred_at_project: String,
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

impl LogSummaryOut {
    fn new(row: entity::log::Model, zone: &ProjectTimeZone) -> Self {
        Self {
            occurred_at: format_utc(row.occurred_at_ms),
            occurred_at_project: format_in_zone(row.occurred_at_ms, zone),
            status: if row.failed { LogStatus::Failure } else { LogStatus::Success },
            id: row.id,
            channel: row.channel,
            method: row.method,
            endpoint: row.endpoint,
            path: row.path,
            http_status: row.http_status,
            duration_ms: row.duration_ms,
            user_id: row.user_id,
            customer_id: row.customer_id,
            server_key_id: row.server_key_id,
            client_key_id: row.client_key_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogDetailOut {
    #[serde(flatten)]
    pub summary: LogSummaryOut,
    /// Query parameters; a repeated one as an array.
    #[schema(value_type = Object)]
    pub query: Value,
    /// Headers, with credentials replaced by `[redacted]`.
    #[schema(value_type = Object)]
    pub request_headers: Value,
    /// Any JSON value when the body parsed as JSON, else a string; `null` when empty.
    pub request_body: Value,
    /// As `request_body`.
    pub response_body: Value,
    pub request_body_truncated: bool,
    pub response_body_truncated: bool,
    pub related: Vec<RelatedRef>,
}

#[utoipa::path(
    operation_id = "list_logs", tag = "logs", security(("bearer" = [])),
    params(ListParams<LogFilter>),
    responses(
        (status = 200, description = "OK", body = ListOut<LogSummaryOut>),
    )
)]
#[get("/logs")]
async fn list_logs(state: web::Data<AppState>, member: ProjectMember, params: Params) -> ApiResult<web::Json<ListOut<LogSummaryOut>>> {
    let zone = member.access.project.time_zone;
    let query = ListQuery::<LogFilter>::read(&params, &zone)?;
    let page = logs::list(&state.store, member.project_id(), &query.filter, query.limit, query.cursor.as_ref()).await?;
    Ok(web::Json(ListOut::from_page(page, |row| LogSummaryOut::new(row, &zone))))
}


#[utoipa::path(
    operation_id = "list_log_endpoints", tag = "logs", security(("bearer" = [])),
    responses((status = 200, body = Vec<String>, description = "Distinct endpoints, sorted"),)
)]
#[get("/logs/endpoints")]
async fn list_log_endpoints(state: web::Data<AppState>, member: ProjectMember) -> ApiResult<web::Json<Vec<String>>> {
    Ok(web::Json(logs::endpoints(&state.db, member.project_id()).await?))
}

#[utoipa::path(
    operation_id = "get_log", tag = "logs", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = LogDetailOut),)
)]
#[get("/logs/{id}")]
async fn get_log(state: web::Data<AppState>, member: ProjectMember, id: web::Path<String>) -> ApiResult<web::Json<LogDetailOut>> {
    let (row, record) = logs::get(&state.db, member.project_id(), &id).await?;
    Ok(web::Json(LogDetailOut {
        summary: LogSummaryOut::new(row, &member.access.project.time_zone),
        query: record.query,
        request_headers: record.request_headers,
        request_body: record.request_body,
        response_body: record.response_body,
        request_body_truncated: record.request_body_truncated,
        response_body_truncated: record.response_body_truncated,
        related: record.related,
    }))
}

#[utoipa::path(
    operation_id = "download_log_file", tag = "logs", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "The file uploaded by the logged request (an import), byte for byte", content((crate::api::dto::FileBody = "text/csv"), (crate::api::dto::FileBody = "application/x-ndjson"))),
        (status = 404, description = "No such log, or its request uploaded no file", body = ErrorBody),
    )
)]
#[get("/logs/{id}/file")]
async fn download_log_file(state: web::Data<AppState>, member: ProjectMember, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let import = imports::uploaded_by(&state.db, member.project_id(), &id).await?;
    Ok(crate::api::imports::file_response(&state, import))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestIn {
    /// 1 to 1,000 entries; all are stored or none.
    pub logs: Vec<LogIn>,
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
    #[schema(value_type = Option<Object>)]
    pub request_body: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub response_body: Option<Value>,
    pub user_id: Option<String>,
    pub customer_id: Option<String>,
    pub server_key_id: Option<String>,
    pub client_key_id: Option<String>,
    pub related: Option<Vec<RelatedRef>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestOut {
    pub ids: Vec<String>,
}

const MAX_BATCH: usize = 1000;
/// Entries may be back-dated freely but not dated in the future beyond clock skew.
const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;

impl LogIn {
    /// Checks every field, collecting all problems as `logs[i].field`.
    fn into_record(self, index: usize, project_id: &str, state: &AppState, errors: &mut Vec<FieldError>) -> Option<LogRecord> {
        let before = errors.len();
        let mut bad = |field: &str, message: &str| {
            errors.push(FieldError { field: format!("logs[{index}].{field}"), message: message.to_owned() });
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
        if related.len() > 100 || related.iter().any(|r| r.id.is_empty() || r.id.len() > 255) {
            bad("related", "must hold at most 100 entries, each with an id of 1 to 255 characters");
        }
        if errors.len() > before {
            return None;
        }
        let keys = &state.settings.redact_keys;
        let body = |value: Option<Value>| match value {
            None | Some(Value::Null) => (Value::Null, false),
            Some(Value::String(text)) => redact::stored_body(text.as_bytes(), true, keys),
            Some(json) => redact::stored_json(json, keys),
        };
        let (request_body, request_body_truncated) = body(self.request_body);
        let (response_body, response_body_truncated) = body(self.response_body);
        let mut headers = self.request_headers.unwrap_or_default();
        redact_header_map(&mut headers);
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
            query: Value::Object(self.query.unwrap_or_default()),
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

#[utoipa::path(
    operation_id = "ingest_logs", tag = "logs", security(("bearer" = [])),
    request_body = IngestIn,
    responses(
        (status = 201, body = IngestOut, description = "All entries stored, ids in input order"),
        (status = 413, description = "Body too large", body = ErrorBody), (status = 422, body = ErrorBody, description = "No entry stored; details name each bad field as logs[i].field"),
    )
)]
#[post("/logs")]
async fn ingest_logs(
    state: web::Data<AppState>,
    key: ServerKey,
    req: HttpRequest,
    body: Json<IngestIn>,
) -> ApiResult<HttpResponse> {
    let entries = body.0.logs;
    if entries.is_empty() || entries.len() > MAX_BATCH {
        return Err(ApiError::invalid_field("logs", format!("must hold 1 to {MAX_BATCH} entries")));
    }
    let project_id = key.access.project.id.as_str();
    let mut errors = Vec::new();
    let records: Vec<LogRecord> =
        entries.into_iter().enumerate().filter_map(|(i, e)| e.into_record(i, project_id, &state, &mut errors)).collect();
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    logs::ingest(&state.store, &key.meta, records).await?;
    request_log::summarize_request_body(&req, format!("[{} log entries, stored as logs of their own]", ids.len()));
    Ok(HttpResponse::Created().json(IngestOut { ids }))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_logs).service(list_log_endpoints).service(get_log).service(download_log_file).service(ingest_logs);
}

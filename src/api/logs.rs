//! `/v1/logs`: the request log of a project, and ingestion of the host application's own entries.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::api::auth::{ProjectMember, ServerKey};
use crate::api::dto::ListOut;
use crate::api::extract::{FilterParams, Json, ListParams, ListQuery, aggregate_filter, histogram_buckets};
use crate::api::request_log;
use crate::domain::log::{LogFacet, LogFilter, LogIn, LogStatus, LogSummary, RelatedRef};
use crate::domain::params::Params;
use crate::domain::time::{ProjectTimeZone, format_in_zone, format_utc};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::services::{imports, logs, projects};
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
    pub fn new(row: LogSummary, zone: &ProjectTimeZone) -> Self {
        Self {
            occurred_at: format_utc(row.occurred_at_ms),
            occurred_at_project: format_in_zone(row.occurred_at_ms, zone),
            status: row.status,
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
    /// The dashboard user who made the request, with name and email.
    pub user: Option<UserRefOut>,
    /// The keys the request was made with, by name.
    pub server_key: Option<KeyRefOut>,
    pub client_key: Option<KeyRefOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserRefOut {
    pub id: String,
    pub name: String,
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyRefOut {
    pub id: String,
    pub name: String,
    /// When the key was revoked, if it was.
    pub revoked_at: Option<String>,
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


#[derive(Debug, Serialize, ToSchema)]
pub struct LogBucketOut {
    pub start: String,
    pub start_project: String,
    pub success: i64,
    pub failure: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogHistogramOut {
    /// The bucket width: `1m`, `5m`, `15m`, `30m`, `1h`, `3h`, `6h`, `12h` or `1d`.
    pub interval: String,
    /// Every bucket of the range, oldest first, empty ones included; aligned on the project's clock.
    pub buckets: Vec<LogBucketOut>,
}

/// Logs over time, successes and failures apart, for the list's filters.
#[utoipa::path(
    operation_id = "log_histogram", tag = "logs", security(("bearer" = [])),
    params(
        FilterParams<LogFilter>,
        ("interval" = Option<String>, Query, description = "`1m`, `5m`, `15m`, `30m`, `1h`, `3h`, `6h`, `12h` or `1d`; chosen from the range (about 120 buckets) when absent. At most 2,000 buckets."),
    ),
    responses(
        (status = 200, description = "OK", body = LogHistogramOut),
        (status = 400, description = "Unknown parameter or bad value; details name them", body = ErrorBody),
    )
)]
#[get("/logs/histogram")]
async fn log_histogram(state: web::Data<AppState>, member: ProjectMember, params: Params) -> ApiResult<web::Json<LogHistogramOut>> {
    let zone = member.access.project.time_zone;
    let filter: LogFilter = aggregate_filter(&params, &zone, &["interval"])?;
    let buckets = histogram_buckets(&params, &zone, filter.occurred_after, filter.occurred_before)?;
    let counts = logs::histogram(&state.store, member.project_id(), &filter, &buckets).await?;
    Ok(web::Json(LogHistogramOut {
        interval: buckets.interval.name().to_owned(),
        buckets: buckets
            .starts
            .iter()
            .zip(counts)
            .map(|(start, [success, failure])| LogBucketOut { start: format_utc(*start), start_project: format_in_zone(*start, &zone), success, failure })
            .collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FacetValueOut {
    /// The value as text (an HTTP status as its digits), as a filter takes it.
    pub value: String,
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogFacetOut {
    pub field: LogFacet,
    /// The 20 most frequent values, most frequent first.
    pub values: Vec<FacetValueOut>,
}

/// The most frequent values of one attribute among the logs the list's filters select.
#[utoipa::path(
    operation_id = "log_facets", tag = "logs", security(("bearer" = [])),
    params(FilterParams<LogFilter>, ("field" = LogFacet, Query, description = "The attribute to count.")),
    responses(
        (status = 200, description = "OK", body = LogFacetOut),
        (status = 400, description = "Unknown parameter or bad value; details name them", body = ErrorBody),
    )
)]
#[get("/logs/facets")]
async fn log_facets(state: web::Data<AppState>, member: ProjectMember, params: Params) -> ApiResult<web::Json<LogFacetOut>> {
    let zone = member.access.project.time_zone;
    let filter: LogFilter = aggregate_filter(&params, &zone, &["field"])?;
    let field = match params.one("field").map_err(|e| ApiError::invalid_query("field", e.0))? {
        Some(v) => LogFacet::parse(v).map_err(|e| ApiError::invalid_query("field", e.0))?,
        None => return Err(ApiError::invalid_query("field", "is required")),
    };
    let values = logs::facet(&state.store, member.project_id(), &filter, field).await?;
    Ok(web::Json(LogFacetOut { field, values: values.into_iter().map(|(value, count)| FacetValueOut { value, count }).collect() }))
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
    let project_id = member.project_id();
    let record = logs::get(&state.db, project_id, &id).await?;
    let user = match &record.user_id {
        Some(id) => projects::find_user(&state.db, project_id, id).await?.map(|u| UserRefOut { id: u.id, name: u.name, email: u.email }),
        None => None,
    };
    let key = async |id: &Option<String>| -> ApiResult<Option<KeyRefOut>> {
        let Some(id) = id else { return Ok(None) };
        let key = projects::find_key(&state.db, project_id, id).await?;
        Ok(key.map(|k| KeyRefOut { id: k.id, name: k.name, revoked_at: k.revoked_at_ms.map(format_utc) }))
    };
    let (server_key, client_key) = (key(&record.server_key_id).await?, key(&record.client_key_id).await?);
    Ok(web::Json(LogDetailOut {
        user,
        server_key,
        client_key,
        summary: LogSummaryOut::new(record.summary(), &member.access.project.time_zone),
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
    crate::api::imports::file_response(&state, import).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestIn {
    /// 1 to 1,000 entries; all are stored or none.
    pub logs: Vec<LogIn>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestOut {
    pub ids: Vec<String>,
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
    let ids = logs::ingest(&state.store, &state.log_writer, &key.meta, key.access.project.id.as_str(), body.0.logs, &state.settings.redact_keys).await?;
    request_log::summarize_request_body(&req, format!("[{} log entries, stored as logs of their own]", ids.len()));
    Ok(HttpResponse::Created().json(IngestOut { ids }))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_logs).service(log_histogram).service(log_facets).service(list_log_endpoints).service(get_log).service(download_log_file).service(ingest_logs);
}

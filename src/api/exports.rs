//! `/v1/exports`: CSV exports of a list, made by a background task; their files; browsing them.

use actix_web::http::header::{CONTENT_TYPE, ContentDisposition};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::api::auth::ProjectMember;
use crate::api::dto::{FileBody, ListOut};
use crate::api::extract::{Json, ListParams, ListQuery, paging};
use crate::api::request_log;
use crate::api::tasks::CreatedByOut;
use crate::domain::export::{BrowseStatus, Export, ExportFilter, ExportFormat, ExportResource, ExportStatus, JSON_FIELDS};
use crate::domain::log::RelatedKind;
use crate::domain::params::Params;
use crate::domain::time::{ProjectTimeZone, format_in_zone, format_utc};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::services::{exports, files};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportIn {
    pub resource: ExportResource,
    /// The filters of the resource's list, by the same names and values; a repeated parameter as
    /// an array. For `logs`, leaving both date bounds out means the 24 hours before the export.
    #[schema(value_type = Object)]
    #[serde(default)]
    pub filters: Value,
    /// Columns in order; by default the list summary's (times in UTC; a `_project` twin such as
    /// `occurred_at_project` when named; `request_body` and the other detail columns when named).
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    #[serde(default = "csv")]
    pub format: ExportFormat,
}

fn csv() -> ExportFormat {
    ExportFormat::Csv
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExportOut {
    pub id: String,
    pub resource: ExportResource,
    pub status: ExportStatus,
    /// The filters as given when the export was made; read-only.
    #[schema(value_type = Object)]
    pub filters: Value,
    pub fields: Vec<String>,
    pub format: ExportFormat,
    /// The background task that writes the file: its progress is the export's.
    pub task_id: String,
    pub created_by: CreatedByOut,
    /// The log id of the request that asked for the export.
    pub request_id: Option<String>,
    pub created_at: String,
    pub created_at_project: String,
    /// Once done (or failed).
    pub finished_at: Option<String>,
    pub finished_at_project: Option<String>,
    /// Once done: rows in the file (the header not counted) and its size.
    pub row_count: Option<i64>,
    pub size_bytes: Option<i64>,
    /// The download's file name.
    pub file_name: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Logs exports, once done: their rows are indexed for browsing (`GET /v1/exports/{id}/rows`)
    /// after the file is written, which can be downloaded meanwhile. `null` for other exports.
    pub browse_status: Option<BrowseStatus>,
    /// Rows indexed for browsing so far (of `row_count`).
    pub browse_indexed_rows: Option<i64>,
}

impl ExportOut {
    pub fn new(e: Export, zone: &ProjectTimeZone) -> Self {
        Self {
            file_name: e.resource.file_name(&e.id),
            resource: e.resource,
            status: e.status,
            filters: e.filters,
            fields: e.fields.names().to_vec(),
            format: e.format,
            task_id: e.task_id,
            created_by: CreatedByOut {
                kind: e.created_by.kind.as_str().to_owned(),
                id: e.created_by.id,
            },
            request_id: e.request_id,
            created_at: format_utc(e.created_at_ms),
            created_at_project: format_in_zone(e.created_at_ms, zone),
            finished_at: e.finished_at_ms.map(format_utc),
            finished_at_project: e.finished_at_ms.map(|ms| format_in_zone(ms, zone)),
            row_count: e.row_count,
            size_bytes: e.size_bytes,
            error: e.error,
            browse_status: e.browse_status,
            browse_indexed_rows: e.browse_indexed_rows,
            id: e.id,
        }
    }
}

#[utoipa::path(
    operation_id = "create_export", tag = "exports", security(("bearer" = [])),
    request_body = ExportIn,
    responses(
        (status = 202, description = "The export is scheduled; its task writes the file", body = ExportOut),
        (status = 422, description = "Unknown resource, filter or field, or a bad value; details name each", body = ErrorBody),
    )
)]
#[post("/exports")]
async fn create_export(state: web::Data<AppState>, member: ProjectMember, req: HttpRequest, body: Json<ExportIn>) -> ApiResult<HttpResponse> {
    let zone = member.access.project.time_zone;
    let body = body.0;
    let new = exports::NewExport { resource: body.resource, filters: body.filters, fields: body.fields, format: body.format };
    let export = exports::create(&state.store, member.project_id(), zone, &member.meta, new).await?;
    request_log::relate(&req, RelatedKind::Export, &export.id);
    request_log::relate(&req, RelatedKind::Task, &export.task_id);
    Ok(HttpResponse::Accepted().json(ExportOut::new(export, &zone)))
}

#[utoipa::path(
    operation_id = "list_exports", tag = "exports", security(("bearer" = [])),
    params(ListParams<ExportFilter>),
    responses((status = 200, description = "OK", body = ListOut<ExportOut>),)
)]
#[get("/exports")]
async fn list_exports(state: web::Data<AppState>, member: ProjectMember, params: Params) -> ApiResult<web::Json<ListOut<ExportOut>>> {
    let zone = member.access.project.time_zone;
    let query = ListQuery::<ExportFilter>::read(&params, &zone)?;
    let page = exports::list(&state.db, member.project_id(), &query.filter, query.limit, query.cursor.as_ref()).await?;
    Ok(web::Json(ListOut::from_page(page, |row| ExportOut::new(row, &zone))))
}

/// The columns an export of one resource may hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportFieldsOut {
    pub resource: ExportResource,
    /// Written when `fields` is left out: the list summary's columns, times in UTC.
    pub default_fields: Vec<&'static str>,
    /// Every column `fields` may name, the default ones first.
    pub fields: Vec<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExportFieldsListOut {
    pub data: Vec<ExportFieldsOut>,
}

#[utoipa::path(
    operation_id = "list_export_fields", tag = "exports", security(("bearer" = [])),
    responses((status = 200, description = "Per resource, the columns an export may hold", body = ExportFieldsListOut),)
)]
#[get("/exports/fields")]
async fn list_export_fields(_member: ProjectMember) -> web::Json<ExportFieldsListOut> {
    let data = ExportResource::ALL
        .iter()
        .map(|&resource| ExportFieldsOut { resource, default_fields: resource.summary_fields().to_vec(), fields: resource.fields() })
        .collect();
    web::Json(ExportFieldsListOut { data })
}

#[utoipa::path(
    operation_id = "get_export", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = ExportOut),)
)]
#[get("/exports/{id}")]
async fn get_export(state: web::Data<AppState>, member: ProjectMember, id: web::Path<String>) -> ApiResult<web::Json<ExportOut>> {
    let export = exports::get(&state.db, member.project_id(), &id).await?;
    Ok(web::Json(ExportOut::new(export, &member.access.project.time_zone)))
}

#[utoipa::path(
    operation_id = "download_export", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "The CSV file, streamed, with its name in Content-Disposition", content((FileBody = "text/csv"))),
        (status = 409, description = "The export is not done (yet, or it failed)", body = ErrorBody),
    )
)]
#[get("/exports/{id}/download")]
async fn download_export(state: web::Data<AppState>, member: ProjectMember, req: HttpRequest, id: web::Path<String>) -> ApiResult<HttpResponse> {
    request_log::relate(&req, RelatedKind::Export, &id);
    let (export, file_id) = exports::file(&state.db, member.project_id(), &id).await?;
    let body = files::stream(state.db.clone(), file_id).map(|chunk| chunk.map_err(actix_web::error::ErrorInternalServerError));
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header(ContentDisposition::attachment(export.resource.file_name(&export.id)))
        .no_chunking(export.size_bytes.unwrap_or(0) as u64)
        .streaming(body))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExportRowsOut {
    /// The export's columns, in file order.
    pub columns: Vec<String>,
    /// The filters the export was made with.
    #[schema(value_type = Object)]
    pub original_filters: Value,
    /// Rows in file order, `{column: value}`: body, header, query and related columns as JSON
    /// values, others as the file's text; an empty cell is `null`.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<serde_json::Map<String, Value>>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    operation_id = "browse_export", tag = "exports", security(("bearer" = [])),
    description = "Pages through a done logs export's rows in file order. Besides `q`, any `filter.<column>=<value>` keeps the rows whose cell in that column is exactly the value (several are AND-ed).",
    params(
        ("id" = String, Path),
        ("q" = Option<String>, Query, description = "Case-insensitive text searched in every exported column."),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 50."),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "OK", body = ExportRowsOut),
        (status = 409, description = "`export_not_browsable`: not a logs export, not done, or older than 90 days; the message says which", body = ErrorBody),
        (status = 422, description = "A `filter.<column>` names no column of the export", body = ErrorBody),
    )
)]
#[get("/exports/{id}/rows")]
async fn browse_export(state: web::Data<AppState>, member: ProjectMember, req: HttpRequest, id: web::Path<String>, params: Params) -> ApiResult<web::Json<ExportRowsOut>> {
    request_log::relate(&req, RelatedKind::Export, &id);
    let mut columns = Vec::new();
    for (name, value) in params.pairs() {
        match name.strip_prefix("filter.") {
            Some(column) => columns.push((column.to_owned(), value.clone())),
            None if ["q", "limit", "cursor"].contains(&name.as_str()) => {}
            None => return Err(ApiError::invalid_query(name, "is not a parameter of browsing; use q, filter.<column>, limit or cursor")),
        }
    }
    let q = params.one("q").map_err(|e| ApiError::invalid_query("q", e.0))?.map(str::to_owned);
    let (limit, _) = paging(&Params::from_pairs(params.pairs().iter().filter(|(k, _)| k == "limit").cloned().collect()), &[])?;
    let after = match params.one("cursor").map_err(|e| ApiError::invalid_query("cursor", e.0))? {
        Some(c) => Some(c.strip_prefix("row_").and_then(|n| n.parse::<i64>().ok()).filter(|n| *n >= 0).ok_or_else(|| ApiError::invalid_query("cursor", "is not a cursor of this export's rows"))?),
        None => None,
    };
    let page = exports::browse(&state.db, member.project_id(), &id, exports::Browse { q, columns, limit, after }).await?;
    let names: Vec<String> = page.export.fields.names().to_vec();
    let next_cursor = page.has_more.then(|| page.rows.last().map(|(p, _)| format!("row_{p}"))).flatten();
    let json: Vec<bool> = names.iter().map(|n| JSON_FIELDS.contains(&n.as_str())).collect();
    let data = page
        .rows
        .into_iter()
        .map(|(_, cells)| names.iter().zip(&json).zip(cells).map(|((name, json), cell)| (name.clone(), cell_value(cell, *json))).collect())
        .collect();
    Ok(web::Json(ExportRowsOut { columns: names, original_filters: page.export.filters, data, has_more: next_cursor.is_some(), next_cursor }))
}

/// A browsed cell: JSON columns as their value, others as text; empty as `null`.
fn cell_value(cell: String, json: bool) -> Value {
    match cell.is_empty() {
        true => Value::Null,
        false if json => serde_json::from_str(&cell).unwrap_or(Value::String(cell)),
        false => Value::String(cell),
    }
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    // `/exports/fields` before `/exports/{id}`, which would take it for an id.
    cfg.service(create_export).service(list_exports).service(list_export_fields).service(get_export).service(download_export).service(browse_export);
}

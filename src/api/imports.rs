//! `/v1/imports`: upload a CSV or NDJSON file whose rows become events; download it again.

use actix_multipart::Multipart;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, ContentDisposition};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use futures_util::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::auth::ProjectMember;
use crate::api::dto::FileBody;
use crate::api::request_log;
use crate::domain::import::{Import, ImportFormat};
use crate::domain::log::RelatedKind;
use crate::domain::params::Params;
use crate::domain::time::{ProjectTimeZone, format_in_zone, format_utc};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::services::files::{self, UploadError};
use crate::services::imports;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct FileOut {
    pub name: String,
    pub content_type: String,
    pub size_bytes: i64,
    /// Hex SHA-256 of the bytes as uploaded.
    pub sha256: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportOut {
    pub id: String,
    pub task_id: String,
    pub file: FileOut,
    pub format: ImportFormat,
    /// Rows read so far (the task's progress), imported and refused.
    pub rows_total: i64,
    pub rows_imported: i64,
    pub rows_failed: i64,
    pub created_at: String,
    pub created_at_project: String,
}

impl ImportOut {
    fn new(row: Import, zone: &ProjectTimeZone) -> Self {
        Self {
            task_id: row.task_id,
            file: FileOut { name: row.file_name, content_type: row.content_type, size_bytes: row.size_bytes, sha256: row.sha256 },
            format: row.format,
            rows_total: row.rows_total,
            rows_imported: row.rows_imported,
            rows_failed: row.rows_failed,
            created_at: format_utc(row.created_at_ms),
            created_at_project: format_in_zone(row.created_at_ms, zone),
            id: row.id,
        }
    }
}

/// The multipart form of an upload, for the document only: the handler streams the parts.
pub struct ImportUpload;

impl utoipa::PartialSchema for ImportUpload {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let file = FileBody::object().description(Some(
            "The CSV or NDJSON file; its content type (`text/csv`, `application/x-ndjson`) or its name's extension tells the format.",
        ));
        utoipa::openapi::ObjectBuilder::new().property("file", file).required("file").into()
    }
}

impl ToSchema for ImportUpload {}

/// Room for multipart boundaries and part headers beyond the file itself.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

#[utoipa::path(
    operation_id = "create_import", tag = "imports", security(("bearer" = [])),
    params(("name" = Option<String>, Query, description = "File name for a raw-body upload (default `import.csv` or `import.ndjson`)")),
    request_body(
        description = "The file: as `multipart/form-data` with a field `file`, or as the raw body with content type `text/csv` or `application/x-ndjson`.",
        content((ImportUpload = "multipart/form-data"), (FileBody = "text/csv"), (FileBody = "application/x-ndjson"))
    ),
    responses(
        (status = 202, description = "Stored; a background task publishes its rows as events", body = ImportOut),
        (status = 413, description = "Larger than LOGBOOK_MAX_IMPORT_BYTES", body = ErrorBody), (status = 415, description = "Neither multipart, CSV nor NDJSON", body = ErrorBody),
        (status = 422, description = "A multipart upload without a `file` field", body = ErrorBody),
    )
)]
#[post("/imports")]
async fn create_import(
    state: web::Data<AppState>,
    member: ProjectMember,
    req: HttpRequest,
    params: Params,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let max = state.settings.max_import_bytes;
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let multipart = content_type.to_ascii_lowercase().starts_with("multipart/form-data");
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max + if multipart { MULTIPART_OVERHEAD } else { 0 }) {
        return Err(UploadError::TooLarge(max).into());
    }
    let project_id = member.project_id().to_owned();
    let upload = if multipart {
        let mut form = Multipart::new(req.headers(), payload);
        loop {
            let Some(field) = form.next().await else {
                return Err(ApiError::invalid_field("file", "a multipart upload needs a field named `file` holding the file"));
            };
            let field = field.map_err(|e| ApiError::malformed(format!("The multipart body is malformed: {e}")))?;
            if field.name() != Some("file") {
                continue;
            }
            let name = field.content_disposition().and_then(|d| d.get_filename()).map(str::to_owned);
            let declared_type = field.content_type().map(|m| m.essence_str().to_owned());
            break imports::receive(&state.store, &project_id, field, name, declared_type, max).await?;
        }
    } else {
        if ImportFormat::from_content_type(&content_type).is_none() {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "Send the file as multipart/form-data (field `file`), or as the raw body with content type text/csv or application/x-ndjson.",
            ));
        }
        let name = params.one("name").map_err(|e| ApiError::invalid_query("name", e.0))?.map(str::to_owned);
        imports::receive(&state.store, &project_id, payload, name, Some(content_type), max).await?
    };
    let import = imports::create(&state.store, &project_id, &member.meta, upload).await?;
    request_log::relate(&req, RelatedKind::Import, &import.id);
    request_log::relate(&req, RelatedKind::Task, &import.task_id);
    request_log::summarize_request_body(&req, format!(
        "[file {:?}, {}, {} bytes, sha256 {}: stored with import {}; download it from GET /v1/logs/{{this log id}}/file or GET /v1/imports/{}/file]",
        import.file_name, import.content_type, import.size_bytes, import.sha256, import.id, import.id
    ));
    Ok(HttpResponse::Accepted().json(ImportOut::new(import, &member.access.project.time_zone)))
}


#[utoipa::path(
    operation_id = "get_import", tag = "imports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = ImportOut),)
)]
#[get("/imports/{id}")]
async fn get_import(state: web::Data<AppState>, member: ProjectMember, id: web::Path<String>) -> ApiResult<web::Json<ImportOut>> {
    let row = imports::get(&state.db, member.project_id(), &id).await?;
    Ok(web::Json(ImportOut::new(row, &member.access.project.time_zone)))
}

#[utoipa::path(
    operation_id = "download_import_file", tag = "imports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "The original file, byte for byte, under its format's content type", content((FileBody = "text/csv"), (FileBody = "application/x-ndjson"))),
    )
)]
#[get("/imports/{id}/file")]
async fn download_import_file(state: web::Data<AppState>, member: ProjectMember, req: HttpRequest, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let row = imports::get(&state.db, member.project_id(), &id).await?;
    request_log::relate(&req, RelatedKind::Import, &row.id);
    file_response(&state, row).await
}

/// Streams an import's stored file with its name, under its format's content type (what the
/// document promises, whatever type the upload declared).
/// A file erased with its customer answers 404.
pub async fn file_response(state: &AppState, row: Import) -> ApiResult<HttpResponse> {
    if !files::exists(&state.db, &row.file_id).await? {
        return Err(ApiError::new(ErrorCode::NotFound, "The import's file is no longer stored: it was erased with the customer whose request uploaded it."));
    }
    let content_type = row.format.content_type();
    let body = files::stream(state.db.clone(), row.file_id).map(|chunk| chunk.map_err(actix_web::error::ErrorInternalServerError));
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, content_type))
        .insert_header(ContentDisposition::attachment(row.file_name))
        .no_chunking(row.size_bytes as u64)
        .streaming(body))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(create_import).service(get_import).service(download_import_file);
}

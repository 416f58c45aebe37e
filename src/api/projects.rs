//! `/v1/projects`: projects, API keys and users (admin token).

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::auth::{Admin, ProjectMember};
use crate::api::dto::ListOut;
use crate::api::extract::{Json, paging};
use crate::api::request_log;
use crate::domain::log::RelatedKind;
use crate::domain::params::Params;
use crate::domain::project::{ApiKey, Email, KeyKind, KeyName, Plan, Project, ProjectName, RetentionDays, User, UserName};
use crate::domain::time::{ProjectTimeZone, format_in_zone, format_utc};
use crate::error::{ApiResult, ErrorBody};
use crate::services::projects::{self, IssuedKey, NewProject, ProjectChanges};
use crate::services::retention;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectIn {
    pub name: ProjectName,
    /// IANA time zone; default `UTC`.
    #[schema(value_type = Option<String>, example = "Europe/Berlin")]
    pub time_zone: Option<ProjectTimeZone>,
    /// Default `shared`.
    pub plan: Option<Plan>,
    /// Default 183 on `shared`, 365 on `dedicated`.
    pub retention_days: Option<RetentionDays>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    pub name: Option<ProjectName>,
    #[schema(value_type = Option<String>)]
    pub time_zone: Option<ProjectTimeZone>,
    pub plan: Option<Plan>,
    pub retention_days: Option<RetentionDays>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectOut {
    pub id: String,
    pub name: String,
    pub time_zone: String,
    pub plan: Plan,
    pub retention_days: i32,
    pub created_at: String,
    pub created_at_project: String,
    pub updated_at: String,
    pub updated_at_project: String,
}

impl From<Project> for ProjectOut {
    fn from(p: Project) -> Self {
        Self {
            created_at: format_utc(p.created_at_ms),
            created_at_project: format_in_zone(p.created_at_ms, &p.time_zone),
            updated_at: format_utc(p.updated_at_ms),
            updated_at_project: format_in_zone(p.updated_at_ms, &p.time_zone),
            time_zone: p.time_zone.name().to_owned(),
            id: p.id,
            name: p.name,
            plan: p.plan,
            retention_days: p.retention_days,
        }
    }
}

/// A new project with its two keys; the tokens are shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectCreatedOut {
    #[serde(flatten)]
    pub project: ProjectOut,
    /// Server-side key token (`sk_…`).
    pub server_key: String,
    /// Client-side key token (`pk_…`).
    pub client_key: String,
    pub server_key_id: String,
    pub client_key_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIn {
    pub kind: KeyKind,
    pub name: KeyName,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyOut {
    pub id: String,
    pub kind: KeyKind,
    pub name: String,
    pub created_at: String,
    pub created_at_project: String,
    pub revoked_at: Option<String>,
    pub revoked_at_project: Option<String>,
}

impl ApiKeyOut {
    fn new(k: ApiKey, zone: &ProjectTimeZone) -> Self {
        Self {
            created_at: format_utc(k.created_at_ms),
            created_at_project: format_in_zone(k.created_at_ms, zone),
            revoked_at: k.revoked_at_ms.map(format_utc),
            revoked_at_project: k.revoked_at_ms.map(|ms| format_in_zone(ms, zone)),
            id: k.id,
            kind: k.kind,
            name: k.name,
        }
    }
}

/// A new key; `token` is shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreatedOut {
    #[serde(flatten)]
    pub key: ApiKeyOut,
    pub token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    pub name: UserName,
    pub email: Email,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    pub id: String,
    pub name: String,
    pub email: String,
    pub created_at: String,
    pub created_at_project: String,
}

impl UserOut {
    fn new(u: User, zone: &ProjectTimeZone) -> Self {
        Self {
            created_at: format_utc(u.created_at_ms),
            created_at_project: format_in_zone(u.created_at_ms, zone),
            id: u.id,
            name: u.name,
            email: u.email,
        }
    }
}

/// A new user; `token` (`ut_…`) is shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserCreatedOut {
    #[serde(flatten)]
    pub user: UserOut,
    pub token: String,
}

#[utoipa::path(
    operation_id = "create_project", tag = "projects", security(("bearer" = [])),
    request_body = ProjectIn,
    responses(
        (status = 201, description = "Created, with its keys", body = ProjectCreatedOut),
        (status = 422, description = "Invalid content; details name the fields", body = ErrorBody),
    )
)]
#[post("/projects")]
async fn create_project(state: web::Data<AppState>, admin: Admin, body: Json<ProjectIn>) -> ApiResult<HttpResponse> {
    let body = body.0;
    let new = NewProject {
        name: body.name,
        time_zone: body.time_zone.unwrap_or_else(ProjectTimeZone::utc),
        plan: body.plan.unwrap_or_default(),
        retention_days: body.retention_days,
    };
    let created = projects::create(&state.store, &admin.meta, new).await?;
    Ok(HttpResponse::Created().json(ProjectCreatedOut {
        project: created.project.into(),
        server_key_id: created.server_key.key.id,
        client_key_id: created.client_key.key.id,
        server_key: created.server_key.token,
        client_key: created.client_key.token,
    }))
}

#[utoipa::path(
    operation_id = "list_projects", tag = "projects", security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, description = "1 to 1000, default 50"), ("cursor" = Option<String>, Query)),
    responses(
        (status = 200, description = "OK", body = ListOut<ProjectOut>),
    )
)]
#[get("/projects")]
async fn list_projects(state: web::Data<AppState>, _admin: Admin, params: Params) -> ApiResult<web::Json<ListOut<ProjectOut>>> {
    let (limit, cursor) = paging(&params, &[])?;
    let page = projects::list(&state.db, limit, cursor.as_ref()).await?;
    Ok(web::Json(ListOut::from_page(page, ProjectOut::from)))
}

#[utoipa::path(
    operation_id = "get_project", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = ProjectOut),)
)]
#[get("/projects/{id}")]
async fn get_project(state: web::Data<AppState>, _admin: Admin, id: web::Path<String>) -> ApiResult<web::Json<ProjectOut>> {
    Ok(web::Json(projects::get(&state.db, &id).await?.into()))
}

#[utoipa::path(
    operation_id = "update_project", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ProjectPatch,
    responses(
        (status = 200, description = "OK", body = ProjectOut), (status = 409, description = "State conflict", body = ErrorBody), (status = 422, description = "Invalid content; details name the fields", body = ErrorBody),
    )
)]
#[patch("/projects/{id}")]
async fn update_project(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    body: Json<ProjectPatch>,
) -> ApiResult<web::Json<ProjectOut>> {
    let p = body.0;
    let changes = ProjectChanges { name: p.name, time_zone: p.time_zone, plan: p.plan, retention_days: p.retention_days };
    Ok(web::Json(projects::update(&state.store, &admin.meta, &id, changes).await?.into()))
}

#[utoipa::path(
    operation_id = "create_api_key", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ApiKeyIn,
    responses(
        (status = 201, description = "Created", body = ApiKeyCreatedOut), (status = 422, description = "Invalid content; details name the fields", body = ErrorBody),
    )
)]
#[post("/projects/{id}/api-keys")]
async fn create_api_key(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    body: Json<ApiKeyIn>,
) -> ApiResult<HttpResponse> {
    let IssuedKey { key, token } = projects::create_key(&state.store, &admin.meta, &id, body.0.kind, body.0.name).await?;
    let zone = projects::get(&state.db, &id).await?.time_zone;
    Ok(HttpResponse::Created().json(ApiKeyCreatedOut { key: ApiKeyOut::new(key, &zone), token }))
}

#[utoipa::path(
    operation_id = "list_api_keys", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path), ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "OK", body = ListOut<ApiKeyOut>),)
)]
#[get("/projects/{id}/api-keys")]
async fn list_api_keys(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<String>,
    params: Params,
) -> ApiResult<web::Json<ListOut<ApiKeyOut>>> {
    let (limit, cursor) = paging(&params, &[])?;
    let zone = projects::get(&state.db, &id).await?.time_zone;
    let page = projects::list_keys(&state.db, &id, limit, cursor.as_ref()).await?;
    Ok(web::Json(ListOut::from_page(page, |k| ApiKeyOut::new(k, &zone))))
}

#[utoipa::path(
    operation_id = "revoke_api_key", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path), ("key_id" = String, Path)),
    responses((status = 204, description = "Revoked (also when it already was)"),)
)]
#[delete("/projects/{id}/api-keys/{key_id}")]
async fn revoke_api_key(state: web::Data<AppState>, admin: Admin, path: web::Path<(String, String)>) -> ApiResult<HttpResponse> {
    let (project_id, key_id) = path.into_inner();
    projects::revoke_key(&state.store, &admin.meta, &project_id, &key_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    operation_id = "create_user", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = UserIn,
    responses(
        (status = 201, description = "Created", body = UserCreatedOut), (status = 409, description = "State conflict", body = ErrorBody), (status = 422, description = "Invalid content; details name the fields", body = ErrorBody),
    )
)]
#[post("/projects/{id}/users")]
async fn create_user(state: web::Data<AppState>, admin: Admin, id: web::Path<String>, body: Json<UserIn>) -> ApiResult<HttpResponse> {
    let issued = projects::create_user(&state.store, &admin.meta, &id, body.0.name, body.0.email).await?;
    let zone = projects::get(&state.db, &id).await?.time_zone;
    Ok(HttpResponse::Created().json(UserCreatedOut { user: UserOut::new(issued.user, &zone), token: issued.token }))
}

#[utoipa::path(
    operation_id = "list_users", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path), ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "OK", body = ListOut<UserOut>),)
)]
#[get("/projects/{id}/users")]
async fn list_users(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<String>,
    params: Params,
) -> ApiResult<web::Json<ListOut<UserOut>>> {
    let (limit, cursor) = paging(&params, &[])?;
    let zone = projects::get(&state.db, &id).await?.time_zone;
    let page = projects::list_users(&state.db, &id, limit, cursor.as_ref()).await?;
    Ok(web::Json(ListOut::from_page(page, |u| UserOut::new(u, &zone))))
}

/// The caller's own project (server key or user token): lets a dashboard or script learn its time zone.
#[utoipa::path(
    operation_id = "get_current_project", tag = "projects", security(("bearer" = [])),
    responses((status = 200, description = "OK", body = ProjectOut),)
)]
#[get("/project")]
async fn get_current_project(member: ProjectMember) -> web::Json<ProjectOut> {
    web::Json(member.access.project.into())
}

#[utoipa::path(
    operation_id = "run_retention", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 202, description = "A retention_purge task for the project, scheduled now", body = crate::api::tasks::TaskOut), (status = 404, description = "Not found", body = ErrorBody),
    )
)]
#[post("/projects/{id}/retention/run")]
async fn run_retention(state: web::Data<AppState>, admin: Admin, req: HttpRequest, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let project = projects::get(&state.db, &id).await?;
    let task = retention::schedule(&state.store, &project.id, &admin.meta).await?;
    request_log::relate(&req, RelatedKind::Task, &task.id);
    let out = crate::api::tasks::TaskOut::new(task, &project.time_zone, Some(Vec::new()));
    Ok(HttpResponse::Accepted().json(out))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(create_project)
        .service(list_projects)
        .service(get_project)
        .service(update_project)
        .service(create_api_key)
        .service(list_api_keys)
        .service(revoke_api_key)
        .service(create_user)
        .service(list_users)
        .service(get_current_project)
        .service(run_retention);
}

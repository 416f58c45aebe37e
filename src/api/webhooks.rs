//! `/v1/webhooks`: endpoints that receive the project's events, their secrets, and recovery.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::api::auth::ProjectMember;
use crate::api::dto::ListOut;
use crate::api::extract::{Json, paging};
use crate::api::request_log;
use crate::api::sendouts::SendoutOut;
use crate::api::tasks::TaskOut;
use crate::domain::log::RelatedKind;
use crate::domain::params::Params;
use crate::domain::time::{ProjectTimeZone, format_in_zone, format_utc, parse_filter};
use crate::domain::webhook::{EventTypePattern, SigningSecrets, Webhook, WebhookUrl};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::services::webhooks::{self, Settings};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookIn {
    /// `http` or `https`; must reach a public address unless `LOGBOOK_WEBHOOK_ALLOW_PRIVATE=true`.
    pub url: WebhookUrl,
    /// `["*"]`, prefixes such as `order.*`, or exact types; 1 to 100 of them.
    pub event_types: Vec<EventTypePattern>,
    pub description: Option<String>,
    /// Default `true`.
    pub enabled: Option<bool>,
    /// At most this many deliveries a second to this endpoint (1 to 10,000); none by default.
    pub rate_limit_per_second: Option<i32>,
}

/// Only the fields given change; `null` clears `description` and `rate_limit_per_second`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    pub url: Option<WebhookUrl>,
    pub event_types: Option<Vec<EventTypePattern>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Enabling a disabled endpoint clears its `disabled_reason`.
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>)]
    pub rate_limit_per_second: Option<Option<i32>>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookOut {
    pub id: String,
    pub url: String,
    #[schema(value_type = Vec<String>)]
    pub event_types: serde_json::Value,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why the endpoint was disabled automatically, if it was.
    pub disabled_reason: Option<String>,
    pub rate_limit_per_second: Option<i32>,
    pub created_at: String,
    pub created_at_project: String,
    pub updated_at: String,
    pub updated_at_project: String,
    /// Only in the creation response; later from `GET /v1/webhooks/{id}/secret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl WebhookOut {
    fn new(row: Webhook, zone: &ProjectTimeZone, secret: Option<String>) -> Self {
        Self {
            url: row.url.as_str().to_owned(),
            event_types: serde_json::to_value(&row.event_types).unwrap_or_default(),
            description: row.description,
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            rate_limit_per_second: row.rate_limit_per_second,
            created_at: format_utc(row.created_at_ms),
            created_at_project: format_in_zone(row.created_at_ms, zone),
            updated_at: format_utc(row.updated_at_ms),
            updated_at_project: format_in_zone(row.updated_at_ms, zone),
            secret,
            id: row.id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretOut {
    /// `whsec_…`: signs every delivery.
    pub secret: String,
    /// After a rotation, the old secret, which also signs until `previous_secret_expires_at`.
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<String>,
}

impl SecretOut {
    fn new(secrets: SigningSecrets) -> Self {
        let live = secrets.live_previous(crate::domain::time::now_ms());
        Self {
            previous_secret: live.map(|(s, _)| s.to_owned()),
            previous_secret_expires_at: live.map(|(_, until)| format_utc(until)),
            secret: secrets.secret,
        }
    }
}


#[utoipa::path(
    operation_id = "create_webhook", tag = "webhooks", security(("bearer" = [])),
    request_body = WebhookIn,
    responses(
        (status = 201, description = "Created; the response holds the signing secret", body = WebhookOut),
        (status = 422, description = "Invalid content, or `webhook_url_not_allowed`: the URL reaches an internal address", body = ErrorBody),
    )
)]
#[post("/webhooks")]
async fn create_webhook(state: web::Data<AppState>, member: ProjectMember, req: HttpRequest, body: Json<WebhookIn>) -> ApiResult<HttpResponse> {
    let b = body.0;
    let settings = Settings { url: b.url, event_types: b.event_types, description: b.description, enabled: b.enabled.unwrap_or(true), rate_limit_per_second: b.rate_limit_per_second };
    let (row, secrets) = webhooks::create(&state.store, member.project_id(), &member.meta, settings, state.settings.webhook_allow_private).await?;
    request_log::relate(&req, RelatedKind::Webhook, &row.id);
    Ok(HttpResponse::Created().json(WebhookOut::new(row, &member.access.project.time_zone, Some(secrets.secret))))
}

#[utoipa::path(
    operation_id = "list_webhooks", tag = "webhooks", security(("bearer" = [])),
    params(("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "OK", body = ListOut<WebhookOut>),)
)]
#[get("/webhooks")]
async fn list_webhooks(state: web::Data<AppState>, member: ProjectMember, params: Params) -> ApiResult<web::Json<ListOut<WebhookOut>>> {
    let (limit, cursor) = paging(&params, &[])?;
    let zone = member.access.project.time_zone;
    let page = webhooks::list(&state.db, member.project_id(), limit, cursor.as_ref()).await?;
    Ok(web::Json(ListOut::from_page(page, |row| WebhookOut::new(row, &zone, None))))
}

#[utoipa::path(
    operation_id = "get_webhook", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = WebhookOut),)
)]
#[get("/webhooks/{id}")]
async fn get_webhook(state: web::Data<AppState>, member: ProjectMember, id: web::Path<String>) -> ApiResult<web::Json<WebhookOut>> {
    let row = webhooks::get(&state.db, member.project_id(), &id).await?;
    Ok(web::Json(WebhookOut::new(row, &member.access.project.time_zone, None)))
}

#[utoipa::path(
    operation_id = "update_webhook", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = WebhookPatch,
    responses(
        (status = 200, description = "OK", body = WebhookOut),
        (status = 422, description = "Invalid content, or `webhook_url_not_allowed`", body = ErrorBody),
    )
)]
#[patch("/webhooks/{id}")]
async fn update_webhook(state: web::Data<AppState>, member: ProjectMember, req: HttpRequest, id: web::Path<String>, body: Json<WebhookPatch>) -> ApiResult<web::Json<WebhookOut>> {
    let p = body.0;
    request_log::relate(&req, RelatedKind::Webhook, &id);
    let allow_private = state.settings.webhook_allow_private;
    let row = webhooks::update(&state.store, member.project_id(), &id, &member.meta, allow_private, |mut s| {
        s.url = p.url.unwrap_or(s.url);
        s.event_types = p.event_types.unwrap_or(s.event_types);
        s.description = p.description.unwrap_or(s.description);
        s.enabled = p.enabled.unwrap_or(s.enabled);
        s.rate_limit_per_second = p.rate_limit_per_second.unwrap_or(s.rate_limit_per_second);
        s
    })
    .await?;
    Ok(web::Json(WebhookOut::new(row, &member.access.project.time_zone, None)))
}

#[utoipa::path(
    operation_id = "delete_webhook", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "Deleted; its pending sendouts fail"),)
)]
#[delete("/webhooks/{id}")]
async fn delete_webhook(state: web::Data<AppState>, member: ProjectMember, req: HttpRequest, id: web::Path<String>) -> ApiResult<HttpResponse> {
    request_log::relate(&req, RelatedKind::Webhook, &id);
    webhooks::delete(&state.store, member.project_id(), &id, &member.meta).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    operation_id = "get_webhook_secret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = SecretOut),)
)]
#[get("/webhooks/{id}/secret")]
async fn get_webhook_secret(state: web::Data<AppState>, member: ProjectMember, id: web::Path<String>) -> ApiResult<web::Json<SecretOut>> {
    Ok(web::Json(SecretOut::new(webhooks::secrets(&state.store, member.project_id(), &id).await?)))
}

#[utoipa::path(
    operation_id = "rotate_webhook_secret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "A new secret; the old one signs beside it for 24 hours", body = SecretOut),)
)]
#[post("/webhooks/{id}/secret/rotate")]
async fn rotate_webhook_secret(state: web::Data<AppState>, member: ProjectMember, req: HttpRequest, id: web::Path<String>) -> ApiResult<web::Json<SecretOut>> {
    request_log::relate(&req, RelatedKind::Webhook, &id);
    Ok(web::Json(SecretOut::new(webhooks::rotate_secret(&state.store, member.project_id(), &id, &member.meta).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverIn {
    /// Inclusive: an RFC 3339 instant, or a local date-time or date in the project's zone.
    pub since: String,
    /// Exclusive, same forms; default now.
    pub until: Option<String>,
}

#[utoipa::path(
    operation_id = "recover_webhook", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = RecoverIn,
    responses(
        (status = 202, description = "A webhook_recovery task that sends every failed sendout of the window again", body = TaskOut), (status = 422, description = "Invalid content; details name the fields", body = ErrorBody),
    )
)]
#[post("/webhooks/{id}/recover")]
async fn recover_webhook(state: web::Data<AppState>, member: ProjectMember, req: HttpRequest, id: web::Path<String>, body: Json<RecoverIn>) -> ApiResult<HttpResponse> {
    let zone = member.access.project.time_zone;
    let since = parse_filter(&body.0.since, &zone).map_err(|e| ApiError::invalid_field("since", e.0))?;
    let until = body.0.until.as_deref().map(|u| parse_filter(u, &zone)).transpose().map_err(|e| ApiError::invalid_field("until", e.0))?;
    request_log::relate(&req, RelatedKind::Webhook, &id);
    let task = webhooks::recover(&state.store, member.project_id(), &id, &member.meta, since, until).await?;
    request_log::relate(&req, RelatedKind::Task, &task.id);
    Ok(HttpResponse::Accepted().json(TaskOut::new(task, &zone, Some(Vec::new()))))
}

/// Sends a `webhook.test` event to this endpoint alone (whatever its event types), to check the
/// receiver and its signature verification.
#[utoipa::path(
    operation_id = "test_webhook", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 202, description = "The test event's sendout, queued for delivery", body = SendoutOut),)
)]
#[post("/webhooks/{id}/test")]
async fn test_webhook(state: web::Data<AppState>, member: ProjectMember, req: HttpRequest, id: web::Path<String>) -> ApiResult<HttpResponse> {
    request_log::relate(&req, RelatedKind::Webhook, &id);
    let sendout = webhooks::send_test(&state.store, member.project_id(), &id, &member.meta).await?;
    request_log::relate(&req, RelatedKind::Event, &sendout.event_id);
    request_log::relate(&req, RelatedKind::Sendout, &sendout.id);
    Ok(HttpResponse::Accepted().json(SendoutOut::new(sendout, &member.access.project.time_zone, None)))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(create_webhook)
        .service(list_webhooks)
        .service(get_webhook)
        .service(update_webhook)
        .service(delete_webhook)
        .service(get_webhook_secret)
        .service(rotate_webhook_secret)
        .service(recover_webhook)
        .service(test_webhook);
}

//! `/v1/events`: events published by the project (its imports' rows, the server's own notices).

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::auth::{AnyProjectKey, ProjectMember};
use crate::api::dto::ListOut;
use crate::api::extract::{Json, ListParams, ListQuery};
use crate::api::request_log;
use crate::domain::event::{EventType, NewEvent, SourceId};
use crate::domain::log::RelatedKind;
use crate::domain::params::Params;
use crate::domain::time::{ProjectTimeZone, format_in_zone, format_utc};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::domain::event::PublishedEvent;
use crate::services::events::{self, EventFilter, Publish};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct EventOut {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source_id: Option<String>,
    #[schema(value_type = Object)]
    pub data: Value,
    pub created_at: String,
    pub created_at_project: String,
    /// The log id of the request that published it (for an import's rows, the upload).
    pub request_id: Option<String>,
}

impl EventOut {
    fn new(row: PublishedEvent, zone: &ProjectTimeZone) -> Self {
        Self {
            event_type: row.event_type,
            source_id: row.source_id,
            data: row.data,
            created_at: format_utc(row.created_at_ms),
            created_at_project: format_in_zone(row.created_at_ms, zone),
            request_id: row.request_id,
            id: row.id,
        }
    }
}

#[utoipa::path(
    operation_id = "list_events", tag = "events", security(("bearer" = [])),
    params(ListParams<EventFilter>),
    responses(
        (status = 200, description = "OK", body = ListOut<EventOut>),
    )
)]
#[get("/events")]
async fn list_events(state: web::Data<AppState>, member: ProjectMember, params: Params) -> ApiResult<web::Json<ListOut<EventOut>>> {

    let zone = member.access.project.time_zone;
    let query = ListQuery::<EventFilter>::read(&params, &zone)?;
    let page = events::list(&state.db, member.project_id(), &query.filter, query.limit, query.cursor.as_ref()).await?;
    Ok(web::Json(ListOut::from_page(page, |view| EventOut::new(view, &zone))))
}

#[utoipa::path(
    operation_id = "get_event", tag = "events", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = EventOut),)
)]
#[get("/events/{id}")]
async fn get_event(state: web::Data<AppState>, member: ProjectMember, id: web::Path<String>) -> ApiResult<web::Json<EventOut>> {
    let view = events::get(&state.db, member.project_id(), &id).await?;
    Ok(web::Json(EventOut::new(view, &member.access.project.time_zone)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    #[serde(rename = "type")]
    pub event_type: EventType,
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    pub source_id: Option<SourceId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SendoutRefOut {
    pub id: String,
    pub webhook_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventAcceptedOut {
    #[serde(flatten)]
    pub event: EventOut,
    /// One per enabled endpoint whose patterns match, created with the event.
    pub sendouts: Vec<SendoutRefOut>,
}

const IDEMPOTENCY_HEADER: &str = "idempotency-key";

#[utoipa::path(
    operation_id = "publish_event", tag = "events", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "A repeat within 24 hours answers with the first event and sends nothing again (1 to 255 characters)")),
    request_body = EventIn,
    responses(
        (status = 202, description = "Published; deliveries are queued", body = EventAcceptedOut),
        (status = 413, description = "Body too large", body = ErrorBody), (status = 422, description = "Invalid content; details name the fields", body = ErrorBody),
    )
)]
#[post("/events")]
async fn publish_event(state: web::Data<AppState>, key: AnyProjectKey, req: HttpRequest, body: Json<EventIn>) -> ApiResult<HttpResponse> {
    let idempotency_key = match req.headers().get(IDEMPOTENCY_HEADER) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= 255 => Some(k.to_owned()),
            _ => return Err(ApiError::malformed("The Idempotency-Key header must be 1 to 255 visible ASCII characters.")),
        },
    };
    let event = NewEvent { event_type: body.0.event_type, source_id: body.0.source_id, data: body.0.data };
    let publish = Publish { project_id: key.access.project.id.clone(), meta: key.meta.clone(), event, idempotency_key };
    let accepted = state.publisher.submit(publish).await?;
    request_log::relate(&req, RelatedKind::Event, &accepted.event.id);
    for (id, _) in &accepted.sendouts {
        request_log::relate(&req, RelatedKind::Sendout, id);
    }
    let out = EventAcceptedOut {
        sendouts: accepted.sendouts.into_iter().map(|(id, webhook_id)| SendoutRefOut { id, webhook_id }).collect(),
        event: EventOut::new(accepted.event, &key.access.project.time_zone),
    };
    let mut response = HttpResponse::Accepted();
    if accepted.replayed {
        response.insert_header(("idempotent-replayed", "true"));
    }
    Ok(response.json(out))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_events).service(get_event).service(publish_event);
}

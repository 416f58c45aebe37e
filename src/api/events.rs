//! `/v1/events`: events published by the project (its imports' rows, the server's own notices).

use actix_web::{get, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::auth::ProjectMember;
use crate::api::dto::ListOut;
use crate::api::extract::paging;
use crate::api::logs::query_errors;
use crate::domain::params::Params;
use crate::domain::time::{ProjectTimeZone, format_in_zone, format_utc};
use crate::error::{ApiResult, ErrorBody};
use crate::services::events::{self, EventFilter, EventView};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EventListParams {
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<Vec<String>>,
    source_id: Option<Vec<String>>,
    /// Inclusive: an RFC 3339 instant, or a local date-time or date in the project's zone.
    created_after: Option<String>,
    /// Exclusive, same forms.
    created_before: Option<String>,
    /// 1 to 1000, default 50.
    limit: Option<i64>,
    cursor: Option<String>,
}

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
    fn new(view: EventView, zone: &ProjectTimeZone) -> Self {
        let row = view.row;
        Self {
            event_type: row.event_type,
            source_id: row.source_id,
            data: view.data,
            created_at: format_utc(row.created_at_ms),
            created_at_project: format_in_zone(row.created_at_ms, zone),
            request_id: row.request_id,
            id: row.id,
        }
    }
}

#[utoipa::path(
    operation_id = "list_events", tag = "events", security(("bearer" = [])),
    params(EventListParams),
    responses(
        (status = 200, description = "OK", body = ListOut<EventOut>),
        (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or unknown token", body = ErrorBody), (status = 403, description = "Token not allowed here", body = ErrorBody),
    )
)]
#[get("/events")]
async fn list_events(state: web::Data<AppState>, member: ProjectMember, params: Params) -> ApiResult<web::Json<ListOut<EventOut>>> {
    let (limit, cursor) = paging(&params, EventFilter::NAMES)?;
    let zone = member.access.project.time_zone;
    let filter = EventFilter::parse(&params, &zone).map_err(query_errors)?;
    let page = events::list(&state.db, member.project_id(), &filter, limit, cursor.as_ref()).await?;
    Ok(web::Json(ListOut::from_page(page, |view| EventOut::new(view, &zone))))
}

#[utoipa::path(
    operation_id = "get_event", tag = "events", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = EventOut), (status = 401, description = "Missing or unknown token", body = ErrorBody), (status = 403, description = "Token not allowed here", body = ErrorBody), (status = 404, description = "Not found in this project", body = ErrorBody))
)]
#[get("/events/{id}")]
async fn get_event(state: web::Data<AppState>, member: ProjectMember, id: web::Path<String>) -> ApiResult<web::Json<EventOut>> {
    let view = events::get(&state.db, member.project_id(), &id).await?;
    Ok(web::Json(EventOut::new(view, &member.access.project.time_zone)))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_events).service(get_event);
}

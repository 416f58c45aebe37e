//! `/v1/customers`: erasing what the project holds about one of its customers.

use actix_web::{HttpRequest, HttpResponse, post, web};

use crate::api::auth::ServerKey;
use crate::api::request_log;
use crate::api::tasks::TaskOut;
use crate::domain::log::RelatedKind;
use crate::error::{ApiResult, ErrorBody};
use crate::services::erasure::{self, CustomerId};
use crate::state::AppState;

#[utoipa::path(
    operation_id = "erase_customer", tag = "customers", security(("bearer" = [])),
    params(("customer_id" = String, Path, description = "The customer as the host application names them (`Logbook-Customer-Id`, a log's `customer_id`)")),
    responses(
        (status = 202, description = "A customer_erasure task: the customer's log bodies, headers and queries, the data of the events their requests published, and what those events' endpoints answered are erased from the projections and the event log; its result counts what was erased", body = TaskOut),
        (status = 422, description = "Not a valid customer id", body = ErrorBody),
    )
)]
#[post("/customers/{customer_id}/erase")]
async fn erase_customer(state: web::Data<AppState>, key: ServerKey, req: HttpRequest, customer_id: web::Path<String>) -> ApiResult<HttpResponse> {
    let customer = CustomerId::parse(&customer_id)?;
    let task = erasure::schedule(&state.store, &key.access.project.id, customer, &key.meta).await?;
    request_log::relate(&req, RelatedKind::Task, &task.id);
    Ok(HttpResponse::Accepted().json(TaskOut::new(task, &key.access.project.time_zone, Some(Vec::new()))))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(erase_customer);
}

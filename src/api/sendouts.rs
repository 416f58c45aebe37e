//! `/v1/webhook-sendouts`: every delivery of an event to an endpoint, its attempts, and retries.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::api::auth::ProjectMember;
use crate::api::dto::ListOut;
use crate::api::extract::{FilterParams, Json, ListParams, ListQuery, aggregate_filter, histogram_buckets, json_filter};
use crate::api::request_log;
use crate::api::tasks::TaskOut;
use crate::domain::log::RelatedKind;
use crate::domain::params::Params;
use crate::domain::sendout::{AttemptTrigger, FailureKind, Sendout, SendoutAttempt, SendoutFilter, SendoutStatus};
use crate::domain::time::{ProjectTimeZone, format_in_zone, format_utc};
use crate::error::{ApiResult, ErrorBody};
use crate::services::{sendouts, webhooks};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    pub id: String,
    pub attempted_at: String,
    pub attempted_at_project: String,
    pub trigger: AttemptTrigger,
    /// `null` when no answer came (timeout, connection refused, address not allowed).
    pub http_status: Option<i32>,
    #[schema(value_type = Object)]
    pub response_headers: Value,
    /// The first 4 KiB of the answer.
    pub response_body: Option<String>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SendoutOut {
    pub id: String,
    pub webhook_id: String,
    pub url: String,
    pub event_id: String,
    pub event_type: String,
    pub source_id: Option<String>,
    pub request_id: Option<String>,
    pub status: SendoutStatus,
    pub attempt_count: i32,
    pub next_attempt_at: Option<String>,
    pub next_attempt_at_project: Option<String>,
    pub created_at: String,
    pub created_at_project: String,
    /// The first attempt.
    pub sent_at: Option<String>,
    pub sent_at_project: Option<String>,
    pub delivered_at: Option<String>,
    pub delivered_at_project: Option<String>,
    /// Every attempt, oldest first; only in the detail view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptOut>>,
}

impl SendoutOut {
    pub fn new(s: Sendout, zone: &ProjectTimeZone, attempts: Option<Vec<SendoutAttempt>>) -> Self {
        let at = |ms: Option<i64>| ms.map(format_utc);
        let at_project = |ms: Option<i64>| ms.map(|ms| format_in_zone(ms, zone));
        Self {
            status: s.status,
            next_attempt_at: at(s.next_attempt_at_ms),
            next_attempt_at_project: at_project(s.next_attempt_at_ms),
            created_at: format_utc(s.created_at_ms),
            created_at_project: format_in_zone(s.created_at_ms, zone),
            sent_at: at(s.sent_at_ms),
            sent_at_project: at_project(s.sent_at_ms),
            delivered_at: at(s.delivered_at_ms),
            delivered_at_project: at_project(s.delivered_at_ms),
            attempts: attempts.map(|list| {
                list.into_iter()
                    .map(|a| AttemptOut {
                        attempted_at: format_utc(a.attempted_at_ms),
                        attempted_at_project: format_in_zone(a.attempted_at_ms, zone),
                        trigger: a.trigger,
                        http_status: a.http_status,
                        response_headers: Value::Object(a.response_headers),
                        response_body: a.response_body,
                        duration_ms: a.duration_ms,
                        error: a.error,
                        id: a.id,
                    })
                    .collect()
            }),
            id: s.id,
            webhook_id: s.webhook_id,
            url: s.url,
            event_id: s.event_id,
            event_type: s.event_type,
            source_id: s.source_id,
            request_id: s.request_id,
            attempt_count: s.attempt_count,
        }
    }
}

#[utoipa::path(
    operation_id = "list_sendouts", tag = "sendouts", security(("bearer" = [])),
    params(ListParams<SendoutFilter>),
    responses(
        (status = 200, description = "OK", body = ListOut<SendoutOut>),
    )
)]
#[get("/webhook-sendouts")]
async fn list_sendouts(state: web::Data<AppState>, member: ProjectMember, params: Params) -> ApiResult<web::Json<ListOut<SendoutOut>>> {

    let zone = member.access.project.time_zone;
    let query = ListQuery::<SendoutFilter>::read(&params, &zone)?;
    let page = sendouts::list(&state.db, member.project_id(), &query.filter, query.limit, query.cursor.as_ref()).await?;
    Ok(web::Json(ListOut::from_page(page, |row| SendoutOut::new(row, &zone, None))))
}

#[utoipa::path(
    operation_id = "get_sendout", tag = "sendouts", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = SendoutOut),)
)]
#[get("/webhook-sendouts/{id}")]
async fn get_sendout(state: web::Data<AppState>, member: ProjectMember, id: web::Path<String>) -> ApiResult<web::Json<SendoutOut>> {
    let row = sendouts::get(&state.db, member.project_id(), &id).await?;
    let attempts = sendouts::attempts(&state.db, &row.id).await?;
    Ok(web::Json(SendoutOut::new(row, &member.access.project.time_zone, Some(attempts))))
}

#[utoipa::path(
    operation_id = "retry_sendout", tag = "sendouts", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 202, description = "One more attempt is queued now, whatever the status", body = SendoutOut),
    )
)]
#[post("/webhook-sendouts/{id}/retry")]
async fn retry_sendout(state: web::Data<AppState>, member: ProjectMember, req: HttpRequest, id: web::Path<String>) -> ApiResult<HttpResponse> {
    request_log::relate(&req, RelatedKind::Sendout, &id);
    let retry = sendouts::Retry { project_id: member.project_id().to_owned(), sendout_id: id.into_inner(), meta: member.meta.clone() };
    let row = sendouts::retry(&state.retrier, retry).await?;
    Ok(HttpResponse::Accepted().json(SendoutOut::new(row, &member.access.project.time_zone, None)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRetryIn {
    /// The list's filters, a repeated one as an array; `status` defaults to `failed`.
    #[schema(value_type = Object)]
    pub filters: Value,
    /// Only count what a retry would send: 200 with the count per endpoint, and nothing is sent.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetryEndpointOut {
    pub webhook_id: String,
    pub url: String,
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetryPreviewOut {
    /// How many sendouts the retry would send again.
    pub matching: i64,
    /// Their endpoints, most sendouts first.
    pub webhooks: Vec<RetryEndpointOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SendoutBucketOut {
    pub start: String,
    pub start_project: String,
    pub delivered: i64,
    pub failed: i64,
    /// Pending or retrying.
    pub pending: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SendoutHistogramOut {
    /// The bucket width: `1m`, `5m`, `15m`, `30m`, `1h`, `3h`, `6h`, `12h` or `1d`.
    pub interval: String,
    /// Every bucket of the range by creation time, oldest first, empty ones included.
    pub buckets: Vec<SendoutBucketOut>,
}

/// Sendouts over time by creation, delivered, failed and pending apart, for the list's filters.
#[utoipa::path(
    operation_id = "sendout_histogram", tag = "sendouts", security(("bearer" = [])),
    params(
        FilterParams<SendoutFilter>,
        ("interval" = Option<String>, Query, description = "`1m`, `5m`, `15m`, `30m`, `1h`, `3h`, `6h`, `12h` or `1d`; chosen from the range when absent. Without `created_after`, the range is the 24 hours before `created_before` (or now)."),
    ),
    responses(
        (status = 200, description = "OK", body = SendoutHistogramOut),
        (status = 400, description = "Unknown parameter or bad value; details name them", body = ErrorBody),
    )
)]
#[get("/webhook-sendouts/histogram")]
async fn sendout_histogram(state: web::Data<AppState>, member: ProjectMember, params: Params) -> ApiResult<web::Json<SendoutHistogramOut>> {
    let zone = member.access.project.time_zone;
    let filter: SendoutFilter = aggregate_filter(&params, &zone, &["interval"])?;
    let buckets = histogram_buckets(&params, &zone, filter.created_after, filter.created_before)?;
    let counts = sendouts::histogram(&state.db, member.project_id(), &filter, &buckets).await?;
    Ok(web::Json(SendoutHistogramOut {
        interval: buckets.interval.name().to_owned(),
        buckets: buckets
            .starts
            .iter()
            .zip(counts)
            .map(|(start, [delivered, failed, pending])| SendoutBucketOut {
                start: format_utc(*start),
                start_project: format_in_zone(*start, &zone),
                delivered,
                failed,
                pending,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FailureGroupOut {
    pub webhook_id: String,
    pub url: String,
    /// The last attempt's HTTP status; `null` when it got no answer.
    pub http_status: Option<i32>,
    /// Why the last attempt got no answer; `null` when one came.
    pub error: Option<FailureKind>,
    pub count: i64,
    pub last_attempt_at: Option<String>,
    pub last_attempt_at_project: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FailureGroupsOut {
    /// Largest group first, at most 100. `webhook_id`, `http_status` and `error` are list filters:
    /// with the same `status` they select exactly the group's sendouts.
    pub data: Vec<FailureGroupOut>,
}

/// The sendouts the list's filters select (`status` defaults to `failed`), grouped by endpoint and
/// by their last attempt's HTTP status or kind of failure.
#[utoipa::path(
    operation_id = "sendout_failure_groups", tag = "sendouts", security(("bearer" = [])),
    params(FilterParams<SendoutFilter>),
    responses(
        (status = 200, description = "OK", body = FailureGroupsOut),
        (status = 400, description = "Unknown parameter or bad value; details name them", body = ErrorBody),
    )
)]
#[get("/webhook-sendouts/failure-groups")]
async fn sendout_failure_groups(state: web::Data<AppState>, member: ProjectMember, params: Params) -> ApiResult<web::Json<FailureGroupsOut>> {
    let zone = member.access.project.time_zone;
    let mut filter: SendoutFilter = aggregate_filter(&params, &zone, &[])?;
    if filter.status.is_empty() {
        filter.status = vec![SendoutStatus::Failed];
    }
    let groups = sendouts::failure_groups(&state.db, member.project_id(), &filter).await?;
    Ok(web::Json(FailureGroupsOut {
        data: groups
            .into_iter()
            .map(|g| FailureGroupOut {
                last_attempt_at: g.last_attempt_at_ms.map(format_utc),
                last_attempt_at_project: g.last_attempt_at_ms.map(|ms| format_in_zone(ms, &zone)),
                webhook_id: g.webhook_id,
                url: g.url,
                http_status: g.http_status,
                error: g.error,
                count: g.count,
            })
            .collect(),
    }))
}

#[utoipa::path(
    operation_id = "retry_sendouts", tag = "sendouts", security(("bearer" = [])),
    request_body = BulkRetryIn,
    responses(
        (status = 202, description = "A webhook_recovery task that sends every matching sendout again", body = TaskOut),
        (status = 200, description = "`dry_run`: what the retry would send; nothing is sent", body = RetryPreviewOut),
        (status = 422, description = "Unknown filter or bad value; details name them", body = ErrorBody),
    )
)]
#[post("/webhook-sendouts/retry")]
async fn retry_sendouts(state: web::Data<AppState>, member: ProjectMember, req: HttpRequest, body: Json<BulkRetryIn>) -> ApiResult<HttpResponse> {
    let zone = member.access.project.time_zone;
    let mut filter: SendoutFilter = json_filter(&body.0.filters, &zone)?;
    if filter.status.is_empty() {
        filter.status = vec![SendoutStatus::Failed];
    }
    if body.0.dry_run {
        let (matching, per_endpoint) = sendouts::retry_preview(&state.db, member.project_id(), &filter).await?;
        let webhooks = per_endpoint.into_iter().map(|(webhook_id, url, count)| RetryEndpointOut { webhook_id, url, count }).collect();
        return Ok(HttpResponse::Ok().json(RetryPreviewOut { matching, webhooks }));
    }
    let task = webhooks::schedule_recovery(&state.store, member.project_id(), &member.meta, filter, Vec::new()).await?;
    request_log::relate(&req, RelatedKind::Task, &task.id);
    Ok(HttpResponse::Accepted().json(TaskOut::new(task, &zone, Some(Vec::new()))))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    // The bulk retry and the aggregates before `{id}`, so that their names are not read as ids.
    cfg.service(retry_sendouts)
        .service(sendout_histogram)
        .service(sendout_failure_groups)
        .service(list_sendouts)
        .service(get_sendout)
        .service(retry_sendout);
}

//! Operations endpoints (no auth): health, readiness, metrics, docs, and the dashboard entry page.

use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct HealthOut {
    /// `ok`, `ready` or `not_ready`.
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(operation_id = "healthz", tag = "operations", responses((status = 200, description = "OK", body = HealthOut)))]
#[get("/healthz")]
async fn healthz() -> web::Json<HealthOut> {
    web::Json(HealthOut { status: "ok" })
}

/// The database answers and every migration is applied.
#[utoipa::path(
    operation_id = "readyz", tag = "operations",
    responses((status = 200, description = "OK", body = HealthOut), (status = 503, description = "Not ready", body = HealthOut))
)]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if db::ready(&state.db).await {
        HttpResponse::Ok().json(HealthOut { status: "ready" })
    } else {
        HttpResponse::ServiceUnavailable().json(HealthOut { status: "not_ready" })
    }
}

/// Prometheus text exposition.
#[utoipa::path(
    operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "Prometheus / OpenMetrics text", content_type = "application/openmetrics-text", body = String))
)]
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8"))
        .body(state.metrics.render(&state.db, state.store.search().lag().await.unwrap_or(-1)))
}

#[get("/docs")]
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((LOCATION, "/docs/")).finish()
}

/// The dashboard's entry page.
#[utoipa::path(operation_id = "dashboard", tag = "operations", responses((status = 200, description = "OK", content_type = "text/html", body = String)))]
#[get("/")]
async fn dashboard() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(include_str!("../../assets/index.html"))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics).service(dashboard);
    cfg.map(|c| c.service(docs_redirect));
}

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

/// A readiness probe gives up sooner than this; an unreachable database answers not ready by then.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The database answers (within 2 s) and every migration is applied.
#[utoipa::path(
    operation_id = "readyz", tag = "operations",
    responses((status = 200, description = "OK", body = HealthOut), (status = 503, description = "Not ready", body = HealthOut))
)]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if tokio::time::timeout(READY_WITHIN, db::ready(&state.db)).await.unwrap_or(false) {
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
        .body(state.metrics.render(&state.db, state.store.search().lag().await.unwrap_or(-1), crate::services::backlog(&state.db).await.unwrap_or_default()))
}

#[get("/docs")]
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((LOCATION, "/docs/")).finish()
}

/// The console's files, embedded in the binary: it works offline and needs no build step.
const CONSOLE_HTML: &str = include_str!("../../assets/console/index.html");
const CONSOLE_JS: &str = include_str!("../../assets/console/app.js");
const CONSOLE_CSS: &str = include_str!("../../assets/console/app.css");

/// Only the console's own files run: no inline script or style, no other origin, no framing.
const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

fn console_file(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Content-Security-Policy", CONSOLE_CSP))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        // Revalidated on every load: a new binary serves new files at the same names.
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}

/// The dashboard's entry page.
#[utoipa::path(operation_id = "dashboard", tag = "operations", responses((status = 200, description = "OK", content_type = "text/html", body = String)))]
#[get("/")]
async fn dashboard() -> HttpResponse {
    console_file("text/html; charset=utf-8", CONSOLE_HTML)
}

#[get("/console/app.js")]
async fn console_js() -> HttpResponse {
    console_file("text/javascript; charset=utf-8", CONSOLE_JS)
}

#[get("/console/app.css")]
async fn console_css() -> HttpResponse {
    console_file("text/css; charset=utf-8", CONSOLE_CSS)
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics).service(dashboard);
    cfg.map(|c| c.service(docs_redirect).service(console_js).service(console_css));
}

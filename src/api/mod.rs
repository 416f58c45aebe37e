//! The HTTP API: one module per resource, each with its DTOs, handlers and routes.

pub mod auth;
pub mod customers;
pub mod docs;
pub mod dto;
pub mod events;
pub mod exports;
pub mod extract;
pub mod imports;
pub mod logs;
pub mod ops;
pub mod projects;
pub mod request_log;
pub mod sendouts;
pub mod stream;
pub mod tasks;
pub mod webhooks;

pub use docs::openapi;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{App, HttpRequest, HttpResponse, web};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Every route, for the server and for the generated OpenAPI document alike.
pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(
        utoipa_actix_web::scope("/v1")
            .configure(projects::routes)
            .configure(logs::routes)
            .configure(tasks::routes)
            .configure(imports::routes)
            .configure(events::routes)
            .configure(webhooks::routes)
            .configure(sendouts::routes)
            .configure(exports::routes)
            .configure(stream::routes)
            .configure(customers::routes),
    );
    cfg.configure(ops::routes);
}

/// The application with its middleware, state and error mapping.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let max_body = state.settings.max_body_bytes;
    let (app, api) = App::new()
        .into_utoipa_app()
        .openapi(docs::ApiDoc::openapi())
        .app_data(state)
        .app_data(web::PayloadConfig::new(max_body))
        .app_data(web::PathConfig::default().error_handler(|err, _| {
            ApiError::new(ErrorCode::NotFound, format!("The path is not valid: {err}.")).into()
        }))
        .configure(configure)
        .split_for_parts();
    drop(api); // the served document is the one `openapi` completes, the same as `logbook openapi` prints
    app.service(utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", docs::openapi()))
        .default_service(web::to(no_route))
        .wrap(actix_web::middleware::from_fn(auth::authenticate))
        .wrap(actix_web::middleware::from_fn(request_log::record_requests))
        .wrap(actix_web::middleware::from_fn(observe))
}

async fn no_route(req: HttpRequest) -> HttpResponse {
    let err = ApiError::new(ErrorCode::NotFound, format!("No endpoint {} {} exists; see /docs.", req.method(), req.path()));
    actix_web::ResponseError::error_response(&err)
}

/// Request count and latency per route template (never per concrete path, to bound cardinality).
async fn observe(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let response = next.call(req).await?;
    if let Some(state) = state {
        let endpoint = response.request().match_pattern().unwrap_or_else(|| "(unmatched)".to_owned());
        let method = response.request().method().as_str().to_owned();
        state.metrics.observe_request(&method, &endpoint, response.status().as_u16(), started.elapsed().as_secs_f64());
    }
    Ok(response)
}

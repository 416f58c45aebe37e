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

use actix_web::body::{EitherBody, MessageBody};
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
        .wrap(actix_web::middleware::from_fn(limit_head))
        .wrap(actix_web::middleware::from_fn(observe))
}

/// The longest query string read.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
/// The largest header value, and all headers together (names and values).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
pub const MAX_HEADERS_BYTES: usize = 32 * 1024;

/// Refuses oversized query strings (414) and headers (431) before anything reads or stores them.
/// (Beyond what the HTTP parser itself buffers, about 32 KiB of request head, it answers alone.)
async fn limit_head(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refusal = if req.query_string().len() > MAX_QUERY_BYTES {
        Some(ApiError::new(ErrorCode::UriTooLong, format!("The query string is longer than {MAX_QUERY_BYTES} bytes.")))
    } else {
        let sizes = req.headers().iter().map(|(name, value)| (name, name.as_str().len() + value.len()));
        let mut total = 0;
        let mut refusal = None;
        for (name, size) in sizes {
            total += size;
            if size > MAX_HEADER_BYTES {
                refusal = Some(ApiError::new(ErrorCode::HeadersTooLarge, format!("The header {name} is larger than {MAX_HEADER_BYTES} bytes.")));
                break;
            }
        }
        refusal.or_else(|| (total > MAX_HEADERS_BYTES).then(|| ApiError::new(ErrorCode::HeadersTooLarge, format!("The headers add up to more than {MAX_HEADERS_BYTES} bytes."))))
    };
    match refusal {
        Some(err) => Ok(req.error_response(err).map_into_right_body()),
        None => next.call(req).await.map(ServiceResponse::map_into_left_body),
    }
}

/// 405 with `Allow` for a documented path asked with another method; 404 for anything else.
async fn no_route(req: HttpRequest) -> HttpResponse {
    if let Some(allowed) = allowed_methods(req.path()) {
        let message = format!("{} {} is not supported; this path answers {allowed}.", req.method(), req.path());
        let mut response = actix_web::ResponseError::error_response(&ApiError::new(ErrorCode::MethodNotAllowed, message));
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allowed) {
            response.headers_mut().insert(actix_web::http::header::ALLOW, value);
        }
        return response;
    }
    let err = ApiError::new(ErrorCode::NotFound, format!("No endpoint {} {} exists; see /docs.", req.method(), req.path()));
    actix_web::ResponseError::error_response(&err)
}

/// The methods of the documented path `path` falls under (the one with the most literal segments,
/// so `/v1/logs/histogram` is not read as `/v1/logs/{id}`), as an `Allow` value.
fn allowed_methods(path: &str) -> Option<String> {
    static PATHS: std::sync::LazyLock<Vec<(Vec<String>, String)>> = std::sync::LazyLock::new(|| {
        let doc = serde_json::to_value(openapi()).unwrap_or_default();
        let Some(paths) = doc["paths"].as_object() else { return Vec::new() };
        let methods = ["get", "post", "put", "patch", "delete", "head", "options", "trace"];
        paths
            .iter()
            .map(|(template, item)| {
                let allowed = item.as_object().into_iter().flat_map(|ops| ops.keys()).filter(|m| methods.contains(&m.as_str()));
                (template.split('/').map(str::to_owned).collect(), allowed.map(|m| m.to_ascii_uppercase()).collect::<Vec<_>>().join(", "))
            })
            .collect()
    });
    let segments: Vec<&str> = path.split('/').collect();
    PATHS
        .iter()
        .filter(|(template, _)| {
            template.len() == segments.len() && template.iter().zip(&segments).all(|(t, s)| if t.starts_with('{') { !s.is_empty() } else { t == s })
        })
        .max_by_key(|(template, _)| template.iter().filter(|t| !t.starts_with('{')).count())
        .map(|(_, allowed)| allowed.clone())
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

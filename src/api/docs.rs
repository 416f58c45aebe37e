//! The OpenAPI document: its header, security scheme and the error responses every operation
//! shares. Operations document their own success and resource-specific errors beside their handler.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use crate::error::{ErrorBody, ErrorCode, FieldError};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Logbook API",
        description = "Audit logs, background tasks, exports and webhook sendouts. Authenticate with `Authorization: Bearer <token>`: `adm_` (admin), `sk_` (server key), `pk_` (client key: POST /v1/events only) or `ut_` (dashboard user).",
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, ErrorCode, FieldError, crate::services::stream::Topic)),
    tags(
        (name = "projects", description = "Projects, API keys and users"),
        (name = "logs", description = "Request logs"),
        (name = "tasks", description = "Background tasks: progress, errors, cancelling"),
        (name = "imports", description = "CSV and NDJSON files whose rows become events"),
        (name = "events", description = "Events published by the project and by the server"),
        (name = "webhooks", description = "Endpoints that receive events, signed per Standard Webhooks"),
        (name = "sendouts", description = "Deliveries of events to endpoints, their attempts and retries"),
        (name = "exports", description = "CSV exports of logs, tasks, sendouts and events; downloading and browsing them"),
        (name = "stream", description = "Live changes as Server-Sent Events"),
        (name = "customers", description = "Erasing a customer's personal data"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The errors any `/v1` operation can answer with, added once here instead of on every handler:
/// which apply follows from what the operation takes (a token, a body, an id in its path).
struct SharedErrors;

impl SharedErrors {
    const COMMON: &[(&str, &str)] = &[
        ("400", "Malformed request: an unreadable query parameter or `Logbook-` header"),
        ("401", "Missing or unknown token"),
        ("403", "This token may not call this operation"),
        ("414", "The query string is longer than 8 KiB"),
        ("431", "A header is larger than 8 KiB, or all of them than 32 KiB"),
        ("429", "This credential made more requests than `LOGBOOK_RATE_LIMIT` allows per window; retry after `Retry-After` seconds"),
        ("500", "Internal error; the cause is logged under the request's log id"),
        ("503", "The database is unavailable; retry later"),
    ];
    const WITH_BODY: &[(&str, &str)] = &[
        ("408", "The body did not arrive within 30 s"),
        ("413", "The body is larger than the server accepts"),
        ("415", "The body's content type is not one this operation reads"),
    ];
    const WITH_ID: &[(&str, &str)] = &[("404", "No such resource in this project")];

    fn add(op: &mut Operation, errors: &[(&str, &str)]) {
        for (status, description) in errors {
            if op.responses.responses.contains_key(*status) {
                continue;
            }
            let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            let response = ResponseBuilder::new().description(*description).content("application/json", content).build();
            op.responses.responses.insert((*status).to_owned(), response.into());
        }
    }
}

impl Modify for SharedErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1") {
                continue;
            }
            let has_id = path.contains('{');
            let ops = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for op in ops.into_iter().flatten() {
                Self::add(op, Self::COMMON);
                if op.request_body.is_some() {
                    Self::add(op, Self::WITH_BODY);
                }
                if has_id {
                    Self::add(op, Self::WITH_ID);
                }
            }
        }
    }
}

/// The OpenAPI document, generated from the routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = actix_web::App::new().into_utoipa_app().openapi(ApiDoc::openapi()).configure(super::configure).split_for_parts();
    // Modifiers run before the routes are added; the shared errors need the routes.
    SharedErrors.modify(&mut api);
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api
}

//! Authorization as extractors: a handler states what it needs in its signature.

use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::http::header::{AUTHORIZATION, RETRY_AFTER};
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use crate::domain::actor::Actor;
use crate::error::{ApiError, ErrorCode};
use crate::event_log::EventMetadata;
use crate::services::auth::{Credential, Principal, ProjectAccess};
use crate::state::AppState;

use super::request_log::LogContext;

/// The operator, holding an admin token.
pub struct Admin {
    pub meta: EventMetadata,
}

/// A server key or a dashboard user: full access to one project.
pub struct ProjectMember {
    pub access: ProjectAccess,
    pub meta: EventMetadata,
}

/// Any credential of a project, client keys included (for `POST /v1/events`).
pub struct AnyProjectKey {
    pub access: ProjectAccess,
    pub meta: EventMetadata,
}

/// A server key only (for `POST /v1/logs`).
pub struct ServerKey {
    pub access: ProjectAccess,
    pub meta: EventMetadata,
}

impl ProjectMember {
    pub fn project_id(&self) -> &str {
        &self.access.project.id
    }
}

async fn principal(req: &HttpRequest) -> Result<Principal, ApiError> {
    if let Some(p) = req.extensions().get::<Principal>() {
        return Ok(p.clone());
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state missing")))?;
    let header = req.headers().get(AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("This endpoint needs an Authorization: Bearer <token> header.")
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| ApiError::unauthorized("The Authorization header must read: Bearer <token>."))?;
    let principal = state.auth.authenticate(token)
        .await?
        .ok_or_else(|| ApiError::unauthorized("The token is unknown or has been revoked."))?;
    // The request log attributes the request to this project and credential, even if refused below.
    req.extensions_mut().insert(principal.clone());
    Ok(principal)
}

fn metadata(req: &HttpRequest, actor: Actor) -> EventMetadata {
    let request_log_id = req.extensions().get::<LogContext>().map(|c| c.id.clone());
    EventMetadata { actor, request_log_id }
}

/// Authenticates every `/v1` request before its handler reads anything, so that an unknown token
/// is refused with 401 whatever the body holds; the extractors below then only check the role.
pub async fn authenticate(req: ServiceRequest, next: Next<BoxBody>) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if !req.path().starts_with("/v1/") || req.match_pattern().is_none() {
        return next.call(req).await;
    }
    let access = match principal(req.request()).await {
        Ok(Principal::Project(access)) => access,
        Ok(Principal::Admin) => return next.call(req).await,
        Err(err) => return Ok(req.error_response(err)),
    };
    let limiter = req.app_data::<web::Data<AppState>>().map(|s| s.rate_limiter.clone());
    if let Some(Err(wait)) = limiter.map(|l| l.admit(access.credential.id())) {
        let seconds = wait.as_millis().div_ceil(1000).max(1) as u64;
        if let Some(state) = req.app_data::<web::Data<AppState>>() {
            state.metrics.rate_limited.inc();
        }
        req.extensions_mut().insert(super::request_log::NotLogged);
        let err = ApiError::new(ErrorCode::RateLimited, format!("This credential made too many requests; retry in {seconds} s."));
        let mut response = req.error_response(err);
        response.headers_mut().insert(RETRY_AFTER, seconds.into());
        return Ok(response);
    }
    next.call(req).await
}

const CLIENT_KEY_LIMIT: &str = "A client key (pk_) may only call POST /v1/events; use a server key.";

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match principal(&req).await? {
                Principal::Admin => Ok(Admin { meta: metadata(&req, Actor::admin()) }),
                Principal::Project(_) => Err(ApiError::forbidden("This endpoint needs the admin token (adm_).")),
            }
        })
    }
}

impl FromRequest for ProjectMember {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match principal(&req).await? {
                Principal::Admin => Err(ApiError::forbidden(
                    "The admin token manages projects; use a project's server key or a user token for its data.",
                )),
                Principal::Project(access) => match access.credential {
                    Credential::ClientKey(_) => Err(ApiError::forbidden(CLIENT_KEY_LIMIT)),
                    _ => Ok(ProjectMember { meta: metadata(&req, access.credential.actor()), access }),
                },
            }
        })
    }
}

impl FromRequest for AnyProjectKey {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match principal(&req).await? {
                Principal::Project(access) => Ok(AnyProjectKey { meta: metadata(&req, access.credential.actor()), access }),
                Principal::Admin => Err(ApiError::forbidden("The admin token manages projects; publish events with a project's key.")),
            }
        })
    }
}

impl FromRequest for ServerKey {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match principal(&req).await? {
                Principal::Project(access) if matches!(access.credential, Credential::ServerKey(_)) => {
                    Ok(ServerKey { meta: metadata(&req, access.credential.actor()), access })
                }
                Principal::Project(ProjectAccess { credential: Credential::ClientKey(_), .. }) => {
                    Err(ApiError::forbidden(CLIENT_KEY_LIMIT))
                }
                _ => Err(ApiError::forbidden("This endpoint needs a server key (sk_).")),
            }
        })
    }
}

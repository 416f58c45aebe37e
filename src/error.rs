//! The one error type of the HTTP API, rendered as the contract's body:
//! `{"error": {"code", "message", "details": [{"field", "message"}]}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Invalid;
use crate::event_log::StoreError;
use crate::services::error::ServiceError;
use crate::services::files::UploadError;

/// Every error code the API answers with, and the one HTTP status each maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON, or the request is malformed in its form.
    MalformedRequest,
    /// A query parameter could not be read.
    InvalidQuery,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// The resource is not in a state that allows this.
    Conflict,
    /// An export that cannot be browsed: not a logs export, not done, or older than 90 days.
    ExportNotBrowsable,
    /// The body did not arrive in time (a slow or stalled client).
    RequestTimeout,
    PayloadTooLarge,
    /// The query string is longer than the server reads.
    UriTooLong,
    UnsupportedMediaType,
    /// A request header, or all of them together, is larger than the server reads.
    HeadersTooLarge,
    /// Valid JSON whose content breaks a rule; `details` says which fields.
    ValidationFailed,
    /// A webhook URL that resolves to a loopback, private or otherwise internal address.
    WebhookUrlNotAllowed,
    RateLimited,
    /// Something broke on our side; the cause is in the server log under the request's log id.
    Internal,
    ServiceUnavailable,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::MalformedRequest | ErrorCode::InvalidQuery => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict | ErrorCode::ExportNotBrowsable => StatusCode::CONFLICT,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::ValidationFailed | ErrorCode::WebhookUrlNotAllowed => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The JSON path or parameter name, e.g. `name`, `logs[3].channel`, `occurred_after`.
    pub field: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    pub code: ErrorCode,
    pub message: String,
    pub details: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Vec<FieldError>,
    /// The cause of an internal error; logged, never shown.
    #[source]
    pub cause: Option<anyhow::Error>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: Vec::new(), cause: None }
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::MalformedRequest, message)
    }

    pub fn invalid_query(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(ErrorCode::InvalidQuery, format!("Query parameter '{field}' {message}."))
            .with_detail(field, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("No {what} with that id exists in this project."))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// A 422 for one field; more can be added with [`ApiError::with_detail`].
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let (field, message) = (field.into(), message.into());
        Self::new(ErrorCode::ValidationFailed, format!("'{field}' {message}.")).with_detail(field, message)
    }

    pub fn validation(details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("'{}' {}.", one.field, one.message),
            _ => format!("{} fields are invalid; see details.", details.len()),
        };
        Self { details, ..Self::new(ErrorCode::ValidationFailed, message) }
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::new(ErrorCode::Internal, "The server failed to handle this request; it has been logged.")
        }
    }

    pub fn with_detail(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.details.push(FieldError { field: field.into(), message: message.into() });
        self
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorObject { code: self.code, message: self.message.clone(), details: self.details.clone() },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(cause) = &self.cause {
            tracing::error!(error = ?cause, "internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        if self.code == ErrorCode::ServiceUnavailable {
            response.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
        }
        response.json(self.body())
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        if crate::db::unavailable(&err) {
            tracing::warn!(error = %err, "the database is unavailable");
            return Self::new(ErrorCode::ServiceUnavailable, "The database is unavailable; retry shortly.");
        }
        Self::internal(err)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => {
                Self::conflict(format!("A concurrent change to {what} was made first; retry the request."))
            }
            StoreError::Db(e) => e.into(),
            other => Self::internal(other),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::NotFound(what) => Self::not_found(what),
            ServiceError::Conflict(message) => Self::conflict(message),
            ServiceError::NotBrowsable(why) => Self::new(ErrorCode::ExportNotBrowsable, format!("This export cannot be browsed: {why}.")),
            ServiceError::Invalid { field, message } => Self::invalid_field(field, message),
            ServiceError::Rejected(errors) => {
                Self::validation(errors.into_iter().map(|(field, message)| FieldError { field, message }).collect())
            }
            ServiceError::UrlNotAllowed(why) => Self::new(
                ErrorCode::WebhookUrlNotAllowed,
                format!("The webhook URL reaches {why}; only public addresses are allowed."),
            )
            .with_detail("url", format!("reaches {why}")),
            ServiceError::Store(e) => e.into(),
            ServiceError::Db(e) => e.into(),
            ServiceError::Internal(e) => Self::internal(e),
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(err: UploadError) -> Self {
        match err {
            UploadError::TooLarge(max) => Self::new(
                ErrorCode::PayloadTooLarge,
                format!("The file is larger than the import limit of {max} bytes (LOGBOOK_MAX_IMPORT_BYTES)."),
            ),
            UploadError::Body(message) => Self::malformed(format!("The upload could not be read: {message}")),
            UploadError::Stalled => Self::new(ErrorCode::RequestTimeout, format!("The upload stalled: {err}.")),
            UploadError::Db(e) => e.into(),
        }
    }
}

/// Turns a domain rule's refusal into a 422 on `field`.
pub trait InvalidExt<T> {
    fn field(self, field: &str) -> ApiResult<T>;
}

impl<T> InvalidExt<T> for Result<T, Invalid> {
    fn field(self, field: &str) -> ApiResult<T> {
        self.map_err(|e| ApiError::invalid_field(field, e.0))
    }
}

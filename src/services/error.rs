//! What a use case can refuse or fail with, in the domain's words. `error.rs` maps each to the
//! contract's error body once; a worker or the CLI reads it without any HTTP in sight.

use sea_orm::DbErr;

use crate::event_log::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such resource in the caller's project (another project's id reads the same).
    #[error("no {0} with that id exists in this project")]
    NotFound(&'static str),
    /// The resource is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// An export that browsing refuses, and why.
    #[error("the export cannot be browsed: {0}")]
    NotBrowsable(String),
    /// A value breaks a rule that needs the world to check (a URL's host, a unique e-mail).
    #[error("'{field}' {message}")]
    Invalid { field: String, message: String },
    /// Several values break their rules: `(field, message)` each.
    #[error("{} fields are invalid", .0.len())]
    Rejected(Vec<(String, String)>),
    /// A webhook URL that reaches an internal address.
    #[error("the webhook URL reaches {0}; only public addresses are allowed")]
    UrlNotAllowed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] DbErr),
    /// A broken invariant of stored data; logged with its cause, answered as an internal error.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(cause.into())
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

//! Validated domain types. Nothing here knows about HTTP or the database: a value of one of these
//! types is valid by construction, so the layers above never re-check it.

pub mod actor;
pub mod channel;
pub mod event;
pub mod export;
pub mod filter;
pub mod histogram;
pub mod ids;
pub mod import;
pub mod job;
pub mod log;
pub mod pagination;
pub mod params;
#[cfg(test)]
mod properties;
pub mod project;
pub mod redact;
pub mod sendout;
pub mod task;
pub mod time;
pub mod token;
pub mod webhook;

/// Why a value was refused; the API layer turns it into a 422 detail naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

//! The event log: every state change, as a typed event. `store` is the only code that writes it.

mod store;

use serde::{Deserialize, Serialize};

use crate::domain::actor::Actor;
use crate::domain::log::LogRecord;
use crate::domain::project::{Email, KeyKind, KeyName, Plan, ProjectName, RetentionDays, UserName};
use crate::domain::time::ProjectTimeZone;

pub use store::{EventStore, StoreError, StoredEvent, Writer, read_batch};

/// Every state change the server knows. The serde tag is `<event type>.v<schema version>`: a change
/// of shape gets a new variant with the next version, and old rows keep decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "c")]
pub enum DomainEvent {
    #[serde(rename = "system.bootstrapped.v1")]
    Bootstrapped(Bootstrapped),
    #[serde(rename = "admin_token.created.v1")]
    AdminTokenCreated(AdminTokenCreated),
    #[serde(rename = "project.created.v1")]
    ProjectCreated(ProjectCreated),
    #[serde(rename = "project.updated.v1")]
    ProjectUpdated(ProjectUpdated),
    #[serde(rename = "api_key.created.v1")]
    ApiKeyCreated(ApiKeyCreated),
    #[serde(rename = "api_key.revoked.v1")]
    ApiKeyRevoked(ApiKeyRevoked),
    #[serde(rename = "user.created.v1")]
    UserCreated(UserCreated),
    #[serde(rename = "request.logged.v1")]
    RequestLogged(Box<LogRecord>),
}

/// Marks that first-start set-up ran; its stream can hold one event only, so two nodes starting at
/// once on one database cannot both bootstrap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bootstrapped {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminTokenCreated {
    pub id: String,
    pub token_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectCreated {
    pub id: String,
    pub name: ProjectName,
    pub time_zone: ProjectTimeZone,
    pub plan: Plan,
    pub retention_days: RetentionDays,
}

/// Only the fields that changed are present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectUpdated {
    pub id: String,
    pub name: Option<ProjectName>,
    pub time_zone: Option<ProjectTimeZone>,
    pub plan: Option<Plan>,
    pub retention_days: Option<RetentionDays>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyCreated {
    pub id: String,
    pub project_id: String,
    pub kind: KeyKind,
    pub name: KeyName,
    pub token_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRevoked {
    pub id: String,
    pub project_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCreated {
    pub id: String,
    pub project_id: String,
    pub name: UserName,
    pub email: Email,
    pub token_hash: String,
}

/// Which aggregate an event belongs to; versions are counted per stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamRef {
    pub kind: &'static str,
    pub id: String,
}

impl DomainEvent {
    pub fn stream(&self) -> StreamRef {
        let (kind, id) = match self {
            DomainEvent::Bootstrapped(_) => ("system", "bootstrap"),
            DomainEvent::AdminTokenCreated(e) => ("admin_token", e.id.as_str()),
            DomainEvent::ProjectCreated(e) => ("project", e.id.as_str()),
            DomainEvent::ProjectUpdated(e) => ("project", e.id.as_str()),
            DomainEvent::ApiKeyCreated(e) => ("api_key", e.id.as_str()),
            DomainEvent::ApiKeyRevoked(e) => ("api_key", e.id.as_str()),
            DomainEvent::UserCreated(e) => ("user", e.id.as_str()),
            DomainEvent::RequestLogged(e) => ("log", e.id.as_str()),
        };
        StreamRef { kind, id: id.to_owned() }
    }

    /// The project whose data this is (`None` for operator-level state); the retention purge and
    /// tenant scoping key on it.
    pub fn project_id(&self) -> Option<&str> {
        match self {
            DomainEvent::Bootstrapped(_) | DomainEvent::AdminTokenCreated(_) => None,
            DomainEvent::ProjectCreated(e) => Some(&e.id),
            DomainEvent::ProjectUpdated(e) => Some(&e.id),
            DomainEvent::ApiKeyCreated(e) => Some(&e.project_id),
            DomainEvent::ApiKeyRevoked(e) => Some(&e.project_id),
            DomainEvent::UserCreated(e) => Some(&e.project_id),
            DomainEvent::RequestLogged(e) => e.project_id.as_deref(),
        }
    }

    /// Whether this event opens a new stream, so its version is 1 without looking anything up.
    pub fn starts_stream(&self) -> bool {
        matches!(
            self,
            DomainEvent::Bootstrapped(_)
                | DomainEvent::AdminTokenCreated(_)
                | DomainEvent::ProjectCreated(_)
                | DomainEvent::ApiKeyCreated(_)
                | DomainEvent::UserCreated(_)
                | DomainEvent::RequestLogged(_)
        )
    }
}

/// Context stored beside each event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub actor: Actor,
    /// The log id of the request that caused the change, if a request did.
    pub request_log_id: Option<String>,
}

impl EventMetadata {
    pub fn system() -> Self {
        Self { actor: Actor::system(), request_log_id: None }
    }
}

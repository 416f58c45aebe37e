use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who caused a state change; recorded in every event's metadata and shown as `created_by`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    ServerKey,
    ClientKey,
    Admin,
    System,
}

impl ActorKind {
    /// The wire name (`server_key`), as stored in projections too.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::ServerKey => "server_key",
            ActorKind::ClientKey => "client_key",
            ActorKind::Admin => "admin",
            ActorKind::System => "system",
        }
    }
}

impl Actor {
    /// The `created_by` of a task or export as its projection stored it: a user or a server key,
    /// else (the operator, the server itself) the system, without an id.
    pub fn stored(kind: &str, id: Option<String>) -> Self {
        let kind = [ActorKind::User, ActorKind::ServerKey]
            .into_iter()
            .find(|k| k.as_str() == kind)
            .unwrap_or(ActorKind::System);
        Self { kind, id: if kind == ActorKind::System { None } else { id } }
    }

    pub fn system() -> Self {
        Self { kind: ActorKind::System, id: None }
    }

    pub fn admin() -> Self {
        Self { kind: ActorKind::Admin, id: None }
    }
}

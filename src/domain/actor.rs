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

impl Actor {
    pub fn system() -> Self {
        Self { kind: ActorKind::System, id: None }
    }

    pub fn admin() -> Self {
        Self { kind: ActorKind::Admin, id: None }
    }
}

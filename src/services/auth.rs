//! Who is calling: resolves a bearer token to the admin or to a project credential.

use entity::{admin_token, api_key, user};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

use crate::domain::actor::{Actor, ActorKind};
use crate::domain::channel::Channel;
use crate::domain::project::Project;
use crate::domain::token::{self, TokenKind};
use crate::services::projects;

#[derive(Debug, Clone)]
pub enum Principal {
    Admin,
    Project(ProjectAccess),
}

#[derive(Debug, Clone)]
pub struct ProjectAccess {
    pub project: Project,
    pub credential: Credential,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    ServerKey(String),
    ClientKey(String),
    User(String),
}

impl Credential {
    pub fn actor(&self) -> Actor {
        let (kind, id) = match self {
            Credential::ServerKey(id) => (ActorKind::ServerKey, id),
            Credential::ClientKey(id) => (ActorKind::ClientKey, id),
            Credential::User(id) => (ActorKind::User, id),
        };
        Actor { kind, id: Some(id.clone()) }
    }

    /// The log channel of a request made with this credential.
    pub fn channel(&self) -> &'static str {
        match self {
            Credential::ServerKey(_) => Channel::API,
            Credential::ClientKey(_) => Channel::CLIENT,
            Credential::User(_) => Channel::DASHBOARD,
        }
    }
}

/// Resolves `token`; `None` when it is unknown or revoked. `configured_admin_hash` is the hash of
/// `LOGBOOK_ADMIN_TOKEN`, if set.
pub async fn authenticate(
    db: &DatabaseConnection,
    configured_admin_hash: Option<&str>,
    token: &str,
) -> Result<Option<Principal>, DbErr> {
    let Some(kind) = TokenKind::of(token) else { return Ok(None) };
    let hash = token::hash(token);
    match kind {
        TokenKind::Admin => {
            if configured_admin_hash.is_some_and(|h| token::constant_time_equal(h, &hash)) {
                return Ok(Some(Principal::Admin));
            }
            let stored = admin_token::Entity::find().filter(admin_token::Column::TokenHash.eq(&hash)).one(db).await?;
            Ok(stored.map(|_| Principal::Admin))
        }
        TokenKind::Server | TokenKind::Client => {
            let key = api_key::Entity::find()
                .filter(api_key::Column::TokenHash.eq(&hash))
                .filter(api_key::Column::RevokedAtMs.is_null())
                .one(db)
                .await?;
            let Some(key) = key else { return Ok(None) };
            let credential = match key.kind.as_str() {
                "server" => Credential::ServerKey(key.id),
                _ => Credential::ClientKey(key.id),
            };
            access(db, &key.project_id, credential).await
        }
        TokenKind::User => {
            let found = user::Entity::find().filter(user::Column::TokenHash.eq(&hash)).one(db).await?;
            let Some(found) = found else { return Ok(None) };
            access(db, &found.project_id, Credential::User(found.id)).await
        }
    }
}

async fn access(db: &DatabaseConnection, project_id: &str, credential: Credential) -> Result<Option<Principal>, DbErr> {
    let project = projects::find(db, project_id).await?;
    Ok(project.map(|project| Principal::Project(ProjectAccess { project, credential })))
}

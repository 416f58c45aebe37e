//! Who is calling: resolves a bearer token to the admin or to a project credential.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use entity::{admin_token, api_key, user};
use futures_util::future::BoxFuture;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

use crate::domain::actor::{Actor, ActorKind};
use crate::domain::channel::Channel;
use crate::domain::project::Project;
use crate::domain::token::{self, TokenKind};
use crate::event_log::{AfterCommit, DomainEvent, StoredEvent};
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
    /// The key's or the user's id.
    pub fn id(&self) -> &str {
        match self {
            Credential::ServerKey(id) | Credential::ClientKey(id) | Credential::User(id) => id,
        }
    }

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
/// Resolves bearer tokens, remembering what a token resolved to for [`REMEMBER`]: clients that
/// send one request after another would otherwise cost two lookups each. A change on this node
/// (a key revoked, a project changed) is seen at once, since the commit clears what is
/// remembered; one made through another node within [`REMEMBER`].
pub struct Authenticator {
    db: DatabaseConnection,
    /// Hash of `LOGBOOK_ADMIN_TOKEN`, if configured.
    admin_hash: Option<String>,
    known: Mutex<HashMap<String, (Instant, Principal)>>,
}

/// How long a resolved token is remembered.
pub const REMEMBER: Duration = Duration::from_secs(1);
/// Most tokens remembered at once; past it, the memory starts over.
const MOST_REMEMBERED: usize = 10_000;

impl Authenticator {
    pub fn new(db: DatabaseConnection, admin_token: Option<&str>) -> Self {
        Self { db, admin_hash: admin_token.map(token::hash), known: Mutex::default() }
    }

    /// The principal `token` stands for, or `None` if it is unknown or revoked.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, DbErr> {
        if TokenKind::of(token).is_none() {
            return Ok(None);
        }
        let hash = token::hash(token);
        if let Some(principal) = self.remembered(&hash) {
            return Ok(Some(principal));
        }
        let found = authenticate(&self.db, self.admin_hash.as_deref(), token).await?;
        if let Some(principal) = &found {
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            if known.len() >= MOST_REMEMBERED {
                known.clear();
            }
            known.insert(hash, (Instant::now(), principal.clone()));
        }
        Ok(found)
    }

    fn remembered(&self, hash: &str) -> Option<Principal> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(hash).filter(|(at, _)| at.elapsed() < REMEMBER).map(|(_, p)| p.clone())
    }
}

impl AfterCommit for Authenticator {
    /// What changes what a token may do: revocation, and the project a principal carries.
    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(event, DomainEvent::ApiKeyRevoked(_) | DomainEvent::ProjectUpdated(_))
    }

    fn committed(&self, _: Vec<StoredEvent>) -> BoxFuture<'_, ()> {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Box::pin(async {})
    }
}

async fn authenticate(
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

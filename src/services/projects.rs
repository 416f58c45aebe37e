//! Projects, their API keys and dashboard users; first-start bootstrap.

use entity::{api_key, event_log, project, user};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter};

use crate::domain::ids::{IdKind, new_id};
use crate::domain::pagination::{Cursor, Limit, Page};
use crate::domain::project::{ApiKey, Email, KeyKind, KeyName, Plan, Project, ProjectName, RetentionDays, User, UserName};
use crate::domain::time::ProjectTimeZone;
use crate::domain::token::{self, TokenKind};
use super::error::{ServiceError, ServiceResult};
use crate::event_log::{
    AdminTokenCreated, ApiKeyCreated, ApiKeyRevoked, Bootstrapped, DomainEvent, EventMetadata, EventStore,
    ProjectCreated, ProjectUpdated, StoreError, UserCreated,
};
use crate::services::newest_first;

pub struct NewProject {
    pub name: ProjectName,
    pub time_zone: ProjectTimeZone,
    pub plan: Plan,
    pub retention_days: Option<RetentionDays>,
}

#[derive(Default)]
pub struct ProjectChanges {
    pub name: Option<ProjectName>,
    pub time_zone: Option<ProjectTimeZone>,
    pub plan: Option<Plan>,
    pub retention_days: Option<RetentionDays>,
}

/// A key with its token, which is shown only once.
pub struct IssuedKey {
    pub key: ApiKey,
    pub token: String,
}

pub struct IssuedUser {
    pub user: User,
    pub token: String,
}

pub struct CreatedProject {
    pub project: Project,
    pub server_key: IssuedKey,
    pub client_key: IssuedKey,
}

pub async fn create(store: &EventStore, meta: &EventMetadata, new: NewProject) -> ServiceResult<CreatedProject> {
    let id = new_id(IdKind::Project);
    let (server_key, server_token) = new_key(&id, KeyKind::Server, KeyName::from_static("Default server key"));
    let (client_key, client_token) = new_key(&id, KeyKind::Client, KeyName::from_static("Default client key"));
    let (server_id, client_id) = (server_key.id.clone(), client_key.id.clone());
    let retention_days = new.retention_days.unwrap_or_else(|| new.plan.default_retention());
    let created = DomainEvent::ProjectCreated(ProjectCreated {
        id: id.clone(),
        name: new.name,
        time_zone: new.time_zone,
        plan: new.plan,
        retention_days,
    });
    let events = vec![created, DomainEvent::ApiKeyCreated(server_key), DomainEvent::ApiKeyCreated(client_key)];
    store.append(meta, events).await?;
    let project = get(store.db(), &id).await?;
    Ok(CreatedProject {
        project,
        server_key: issued(store.db(), &server_id, server_token).await?,
        client_key: issued(store.db(), &client_id, client_token).await?,
    })
}

/// A new key's event and its token (only the hash goes into the event).
fn new_key(project_id: &str, kind: KeyKind, name: KeyName) -> (ApiKeyCreated, String) {
    let token = token::generate(match kind {
        KeyKind::Server => TokenKind::Server,
        KeyKind::Client => TokenKind::Client,
    });
    let event = ApiKeyCreated {
        id: new_id(IdKind::ApiKey),
        project_id: project_id.to_owned(),
        kind,
        name,
        token_hash: token::hash(&token),
    };
    (event, token)
}

async fn issued(db: &DatabaseConnection, key_id: &str, token: String) -> ServiceResult<IssuedKey> {
    let row = api_key::Entity::find_by_id(key_id).one(db).await?;
    let key = row.map(to_key).ok_or_else(|| ServiceError::internal(anyhow::anyhow!("key {key_id} vanished")))?;
    Ok(IssuedKey { key, token })
}

pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Option<Project>, DbErr> {
    Ok(project::Entity::find_by_id(id).one(db).await?.map(to_project))
}

/// The project, or 404.
pub async fn get(db: &DatabaseConnection, id: &str) -> ServiceResult<Project> {
    find(db, id).await?.ok_or_else(|| ServiceError::NotFound("project"))
}

pub async fn list(db: &DatabaseConnection, limit: Limit, cursor: Option<&Cursor>) -> ServiceResult<Page<Project>> {
    let query = newest_first(project::Entity::find(), project::Column::CreatedAtMs, project::Column::Id, limit, cursor);
    let rows = query.all(db).await?;
    Ok(Page::from_overfetch(rows, limit, |r| Cursor { time_ms: r.created_at_ms, id: r.id.clone() }).map(to_project))
}

pub async fn update(store: &EventStore, meta: &EventMetadata, id: &str, changes: ProjectChanges) -> ServiceResult<Project> {
    let writer = store.begin().await?;
    let current = find(writer.conn(), id).await?.ok_or_else(|| ServiceError::NotFound("project"))?;
    let changed = ProjectUpdated {
        id: id.to_owned(),
        name: changes.name.filter(|n| n.as_str() != current.name),
        time_zone: changes.time_zone.filter(|z| *z != current.time_zone),
        plan: changes.plan.filter(|p| *p != current.plan),
        retention_days: changes.retention_days.filter(|d| d.get() != current.retention_days),
    };
    if changed.name.is_none() && changed.time_zone.is_none() && changed.plan.is_none() && changed.retention_days.is_none() {
        return Ok(current);
    }
    writer.append(meta, vec![DomainEvent::ProjectUpdated(changed)]).await?;
    let updated = find(writer.conn(), id).await?;
    writer.commit().await?;
    updated.ok_or_else(|| ServiceError::NotFound("project"))
}

pub async fn create_key(store: &EventStore, meta: &EventMetadata, project_id: &str, kind: KeyKind, name: KeyName) -> ServiceResult<IssuedKey> {
    get(store.db(), project_id).await?;
    let (event, token) = new_key(project_id, kind, name);
    let key_id = event.id.clone();
    store.append(meta, vec![DomainEvent::ApiKeyCreated(event)]).await?;
    issued(store.db(), &key_id, token).await
}

pub async fn list_keys(db: &DatabaseConnection, project_id: &str, limit: Limit, cursor: Option<&Cursor>) -> ServiceResult<Page<ApiKey>> {
    get(db, project_id).await?;
    let query = api_key::Entity::find().filter(api_key::Column::ProjectId.eq(project_id));
    let rows = newest_first(query, api_key::Column::CreatedAtMs, api_key::Column::Id, limit, cursor).all(db).await?;
    Ok(Page::from_overfetch(rows, limit, |r| Cursor { time_ms: r.created_at_ms, id: r.id.clone() }).map(to_key))
}

/// Revokes a key; revoking a revoked key again changes nothing.
pub async fn revoke_key(store: &EventStore, meta: &EventMetadata, project_id: &str, key_id: &str) -> ServiceResult<()> {
    let writer = store.begin().await?;
    let key = api_key::Entity::find_by_id(key_id)
        .filter(api_key::Column::ProjectId.eq(project_id))
        .one(writer.conn())
        .await?
        .ok_or_else(|| ServiceError::NotFound("API key"))?;
    if key.revoked_at_ms.is_none() {
        let event = ApiKeyRevoked { id: key.id, project_id: project_id.to_owned() };
        writer.append(meta, vec![DomainEvent::ApiKeyRevoked(event)]).await?;
        writer.commit().await?;
    }
    Ok(())
}

pub async fn create_user(store: &EventStore, meta: &EventMetadata, project_id: &str, name: UserName, email: Email) -> ServiceResult<IssuedUser> {
    let writer = store.begin().await?;
    find(writer.conn(), project_id).await?.ok_or_else(|| ServiceError::NotFound("project"))?;
    let taken = user::Entity::find()
        .filter(user::Column::ProjectId.eq(project_id))
        .filter(user::Column::Email.eq(email.as_str()))
        .count(writer.conn())
        .await?;
    if taken > 0 {
        return Err(ServiceError::Conflict(format!("A user with e-mail {} already exists in this project.", email.as_str())));
    }
    let token = token::generate(TokenKind::User);
    let id = new_id(IdKind::User);
    let event = UserCreated { id: id.clone(), project_id: project_id.to_owned(), name, email, token_hash: token::hash(&token) };
    writer.append(meta, vec![DomainEvent::UserCreated(event)]).await?;
    let row = user::Entity::find_by_id(id).one(writer.conn()).await?;
    writer.commit().await?;
    let user = row.map(to_user).ok_or_else(|| ServiceError::internal(anyhow::anyhow!("user vanished")))?;
    Ok(IssuedUser { user, token })
}

pub async fn list_users(db: &DatabaseConnection, project_id: &str, limit: Limit, cursor: Option<&Cursor>) -> ServiceResult<Page<User>> {
    get(db, project_id).await?;
    let query = user::Entity::find().filter(user::Column::ProjectId.eq(project_id));
    let rows = newest_first(query, user::Column::CreatedAtMs, user::Column::Id, limit, cursor).all(db).await?;
    Ok(Page::from_overfetch(rows, limit, |r| Cursor { time_ms: r.created_at_ms, id: r.id.clone() }).map(to_user))
}

/// The project's user of this id, if there is one: who made a logged request.
pub async fn find_user(db: &impl ConnectionTrait, project_id: &str, id: &str) -> Result<Option<User>, DbErr> {
    let row = user::Entity::find_by_id(id).filter(user::Column::ProjectId.eq(project_id)).one(db).await?;
    Ok(row.map(to_user))
}

/// The project's API key of this id (revoked ones too), if there is one.
pub async fn find_key(db: &impl ConnectionTrait, project_id: &str, id: &str) -> Result<Option<ApiKey>, DbErr> {
    let row = api_key::Entity::find_by_id(id).filter(api_key::Column::ProjectId.eq(project_id)).one(db).await?;
    Ok(row.map(to_key))
}

/// What first start created; printed once and never stored in clear.
pub struct FirstStart {
    /// `None` when `LOGBOOK_ADMIN_TOKEN` is set.
    pub admin_token: Option<String>,
    pub project: CreatedProject,
    pub user: IssuedUser,
}

/// On an empty event log: an admin token (unless configured) and a `default` project with a server
/// key, a client key and a dashboard user. `None` on every later start, and on the losing node when
/// several start at once.
pub async fn bootstrap(store: &EventStore, admin_token_configured: bool) -> ServiceResult<Option<FirstStart>> {
    let empty = event_log::Entity::find().count(store.db()).await? == 0;
    if !empty {
        return Ok(None);
    }
    let meta = EventMetadata::system();
    match store.append(&meta, vec![DomainEvent::Bootstrapped(Bootstrapped {})]).await {
        Err(StoreError::Conflict(_)) => return Ok(None),
        other => other?,
    };
    let admin_token = if admin_token_configured {
        None
    } else {
        let token = token::generate(TokenKind::Admin);
        let event = AdminTokenCreated { id: new_id(IdKind::AdminToken), token_hash: token::hash(&token) };
        store.append(&meta, vec![DomainEvent::AdminTokenCreated(event)]).await?;
        Some(token)
    };
    let project = create(
        store,
        &meta,
        NewProject {
            name: ProjectName::from_static("default"),
            time_zone: ProjectTimeZone::utc(),
            plan: Plan::Shared,
            retention_days: None,
        },
    )
    .await?;
    let user = create_user(
        store,
        &meta,
        &project.project.id,
        UserName::from_static("Admin"),
        Email::try_from("admin@localhost.localdomain".to_owned()).map_err(|e| ServiceError::internal(anyhow::anyhow!(e)))?,
    )
    .await?;
    Ok(Some(FirstStart { admin_token, project, user }))
}

fn to_project(row: project::Model) -> Project {
    Project {
        time_zone: ProjectTimeZone::try_from(row.time_zone).unwrap_or_else(|_| ProjectTimeZone::utc()),
        plan: Plan::parse(&row.plan).unwrap_or_default(),
        id: row.id,
        name: row.name,
        retention_days: row.retention_days,
        created_at_ms: row.created_at_ms,
        updated_at_ms: row.updated_at_ms,
    }
}

fn to_key(row: api_key::Model) -> ApiKey {
    ApiKey {
        kind: KeyKind::parse(&row.kind).unwrap_or(KeyKind::Client),
        id: row.id,
        project_id: row.project_id,
        name: row.name,
        created_at_ms: row.created_at_ms,
        revoked_at_ms: row.revoked_at_ms,
    }
}

fn to_user(row: user::Model) -> User {
    User { id: row.id, project_id: row.project_id, name: row.name, email: row.email, created_at_ms: row.created_at_ms }
}

//! Projects, admin tokens, API keys and users.

use entity::{admin_token, api_key, project, user};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel};

use crate::event_log::{DomainEvent, StoredEvent};

pub async fn apply(conn: &impl ConnectionTrait, stored: &StoredEvent) -> Result<(), DbErr> {
    let at = stored.recorded_at_ms;
    match &stored.event {
        DomainEvent::AdminTokenCreated(e) => {
            let row = admin_token::Model { id: e.id.clone(), token_hash: e.token_hash.clone(), created_at_ms: at };
            admin_token::Entity::insert(row.into_active_model()).exec_without_returning(conn).await?;
        }
        DomainEvent::ProjectCreated(e) => {
            let row = project::Model {
                id: e.id.clone(),
                name: e.name.as_str().to_owned(),
                time_zone: e.time_zone.name().to_owned(),
                plan: e.plan.as_str().to_owned(),
                retention_days: e.retention_days.get(),
                created_at_ms: at,
                updated_at_ms: at,
            };
            project::Entity::insert(row.into_active_model()).exec_without_returning(conn).await?;
        }
        DomainEvent::ProjectUpdated(e) => {
            let mut row = project::ActiveModel { id: Set(e.id.clone()), updated_at_ms: Set(at), ..Default::default() };
            if let Some(name) = &e.name {
                row.name = Set(name.as_str().to_owned());
            }
            if let Some(zone) = &e.time_zone {
                row.time_zone = Set(zone.name().to_owned());
            }
            if let Some(plan) = e.plan {
                row.plan = Set(plan.as_str().to_owned());
            }
            if let Some(days) = e.retention_days {
                row.retention_days = Set(days.get());
            }
            project::Entity::update(row).exec(conn).await?;
        }
        DomainEvent::ApiKeyCreated(e) => {
            let row = api_key::Model {
                id: e.id.clone(),
                project_id: e.project_id.clone(),
                kind: e.kind.as_str().to_owned(),
                name: e.name.as_str().to_owned(),
                token_hash: e.token_hash.clone(),
                created_at_ms: at,
                revoked_at_ms: None,
            };
            api_key::Entity::insert(row.into_active_model()).exec_without_returning(conn).await?;
        }
        DomainEvent::ApiKeyRevoked(e) => {
            let row = api_key::ActiveModel { id: Set(e.id.clone()), revoked_at_ms: Set(Some(at)), ..Default::default() };
            api_key::Entity::update(row).exec(conn).await?;
        }
        DomainEvent::UserCreated(e) => {
            let row = user::Model {
                id: e.id.clone(),
                project_id: e.project_id.clone(),
                name: e.name.as_str().to_owned(),
                email: e.email.as_str().to_owned(),
                token_hash: e.token_hash.clone(),
                created_at_ms: at,
            };
            user::Entity::insert(row.into_active_model()).exec_without_returning(conn).await?;
        }
        // Other events belong to other projectors.
        _ => {}
    }
    Ok(())
}

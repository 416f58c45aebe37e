//! Published events: a narrow row each; `data` stays in the event row.

use entity::published_event;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, IntoActiveModel};

use crate::event_log::{EventPublished, StoredEvent};

const CHUNK: usize = 512;

pub async fn insert(conn: &impl ConnectionTrait, events: &[(&StoredEvent, &EventPublished)]) -> Result<(), DbErr> {
    for chunk in super::pow2_chunks(events, CHUNK) {
        let rows = chunk.iter().map(|(stored, e)| {
            published_event::Model {
                id: e.id.clone(),
                project_id: e.project_id.clone(),
                event_type: e.event_type.as_str().to_owned(),
                source_id: e.source_id.as_ref().map(|s| s.as_str().to_owned()),
                created_at_ms: e.created_at_ms,
                event_seq: stored.seq,
                request_id: stored.metadata.request_log_id.clone(),
            }
            .into_active_model()
        });
        published_event::Entity::insert_many(rows).exec_without_returning(conn).await?;
    }
    Ok(())
}

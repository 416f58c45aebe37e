//! Publishing events: the one path for `POST /v1/events`, import rows and the server's own events.

use crate::domain::event::NewEvent;
use crate::domain::ids::{IdKind, new_id};
use crate::domain::time::now_ms;
use crate::events::{DomainEvent, EventPublished};

/// The events that publish `new` in `project_id`, ready to append (webhook fan-out hooks in here).
pub fn published(project_id: &str, new: Vec<NewEvent>) -> Vec<DomainEvent> {
    let created_at_ms = now_ms();
    new.into_iter()
        .map(|e| {
            DomainEvent::EventPublished(EventPublished {
                id: new_id(IdKind::Event),
                project_id: project_id.to_owned(),
                event_type: e.event_type,
                source_id: e.source_id,
                data: e.data,
                created_at_ms,
            })
        })
        .collect()
}

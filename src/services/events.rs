//! Publishing events: the one path for `POST /v1/events`, import rows and the server's own events.

use std::collections::HashMap;

use entity::{event_log, published_event};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use serde_json::Value;

use super::newest_first;
use crate::domain::event::{EventType, NewEvent};
use crate::domain::ids::{IdKind, new_id};
use crate::domain::pagination::{Cursor, Limit, Page};
use crate::domain::params::Params;
use crate::domain::time::{ProjectTimeZone, now_ms, parse_filter};
use crate::error::{ApiError, ApiResult};
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
                idempotency_key: None,
            })
        })
        .collect()
}

/// The filters of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub event_type: Vec<String>,
    pub source_id: Vec<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
}

impl EventFilter {
    pub const NAMES: &'static [&'static str] = &["type", "source_id", "created_after", "created_before"];

    pub fn parse(params: &Params, zone: &ProjectTimeZone) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut date = |name: &str| {
            let parsed = params.one(name).and_then(|v| v.map(|v| parse_filter(v, zone)).transpose());
            parsed.unwrap_or_else(|e| {
                errors.push((name.to_owned(), e.0));
                None
            })
        };
        let (created_after, created_before) = (date("created_after"), date("created_before"));
        let event_type = params.all("type");
        for t in &event_type {
            if let Err(e) = EventType::try_from(t.clone()) {
                errors.push(("type".into(), format!("'{t}' {e}")));
            }
        }
        if errors.is_empty() {
            Ok(Self { event_type, source_id: params.all("source_id"), created_after, created_before })
        } else {
            Err(errors)
        }
    }
}

/// An event as listed: its index row and its data.
pub struct EventView {
    pub row: published_event::Model,
    pub data: Value,
}

pub async fn list(db: &DatabaseConnection, project_id: &str, f: &EventFilter, limit: Limit, cursor: Option<&Cursor>) -> ApiResult<Page<EventView>> {
    let mut c = Condition::all().add(published_event::Column::ProjectId.eq(project_id));
    if let Some(after) = f.created_after {
        c = c.add(published_event::Column::CreatedAtMs.gte(after));
    }
    if let Some(before) = f.created_before {
        c = c.add(published_event::Column::CreatedAtMs.lt(before));
    }
    if !f.event_type.is_empty() {
        c = c.add(published_event::Column::EventType.is_in(f.event_type.iter().cloned()));
    }
    if !f.source_id.is_empty() {
        c = c.add(published_event::Column::SourceId.is_in(f.source_id.iter().cloned()));
    }
    let query = newest_first(
        published_event::Entity::find().filter(c),
        published_event::Column::CreatedAtMs,
        published_event::Column::Id,
        limit,
        cursor,
    );
    let rows = query.all(db).await?;
    let page = Page::from_overfetch(rows, limit, |r| Cursor { time_ms: r.created_at_ms, id: r.id.clone() });
    let seqs: Vec<i64> = page.rows.iter().map(|r| r.event_seq).collect();
    let mut payloads: HashMap<i64, String> = event_log::Entity::find()
        .select_only()
        .columns([event_log::Column::Seq, event_log::Column::Payload])
        .filter(event_log::Column::Seq.is_in(seqs))
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .collect();
    Ok(Page {
        next_cursor: page.next_cursor,
        rows: page.rows.into_iter().map(|row| EventView { data: data_of(payloads.remove(&row.event_seq)), row }).collect(),
    })
}

pub async fn get(db: &DatabaseConnection, project_id: &str, id: &str) -> ApiResult<EventView> {
    let row = published_event::Entity::find_by_id(id)
        .filter(published_event::Column::ProjectId.eq(project_id))
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found("event"))?;
    let payload = event_log::Entity::find_by_id(row.event_seq).one(db).await?.map(|e| e.payload);
    Ok(EventView { data: data_of(payload), row })
}

fn data_of(payload: Option<String>) -> Value {
    payload
        .and_then(|p| serde_json::from_str::<EventPublished>(&p).ok())
        .map(|e| Value::Object(e.data))
        .unwrap_or(Value::Null)
}

//! Publishing events: the one path for `POST /v1/events`, import rows and the server's own events.

use std::collections::{HashMap, HashSet};

use entity::{event_idempotency, event_log, published_event, sendout, webhook};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::Keyset;
use crate::domain::event::{EventType, NewEvent, PublishedEvent};
use crate::domain::ids::{IdKind, new_id};
use crate::domain::pagination::{Cursor, Limit, Page};
use crate::domain::filter::{CREATED_AFTER, CREATED_BEFORE, Context, Field, Filter, FilterErrors, Values};
use crate::domain::params::Params;
use crate::domain::time::now_ms;
use crate::domain::webhook::EventTypePattern;
use super::error::{ServiceError, ServiceResult};
use crate::event_log::group::{Batching, GroupCommit, GroupWrite};
use crate::event_log::{DomainEvent, EventMetadata, EventPublished, EventStore, SendoutCreated, StoreError, Writer};

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

/// An event the server publishes itself (`import.done`, `sendout.failed`, …); `data` is an object.
pub fn system_event(project_id: &str, event_type: &'static str, data: Value) -> DomainEvent {
    let data = match data {
        Value::Object(map) => map,
        _ => Default::default(),
    };
    let new = NewEvent { event_type: EventType::from_static(event_type), source_id: None, data };
    published(project_id, vec![new]).pop().unwrap_or_else(|| unreachable!("one event in, one out"))
}

/// The filters of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub event_type: Vec<String>,
    pub source_id: Vec<String>,
    pub request_id: Vec<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
}

impl Filter for EventFilter {
    const RESOURCE: &'static str = "event";
    const FIELDS: &'static [Field] = &[
        Field::any_of("type", Values::Text, "An event type such as `order.created`."),
        Field::any_of("source_id", Values::Text, ""),
        Field::any_of("request_id", Values::Text, "The log id of the request that published the event."),
        CREATED_AFTER,
        CREATED_BEFORE,
    ];

    fn from_params(params: &Params, cx: Context<'_>) -> Result<Self, FilterErrors> {
        let mut errors = Vec::new();
        let (created_after, created_before) = params.created_window(cx.zone, &mut errors);
        let event_type = params.all("type");
        for t in &event_type {
            if let Err(e) = EventType::try_from(t.clone()) {
                errors.push(("type".into(), format!("'{t}' {e}")));
            }
        }
        if errors.is_empty() {
            Ok(Self { event_type, source_id: params.all("source_id"), request_id: params.all("request_id"), created_after, created_before })
        } else {
            Err(errors)
        }
    }
}

/// Joins an index row with its data from the event log.
fn view(row: published_event::Model, data: Value) -> PublishedEvent {
    PublishedEvent {
        id: row.id,
        event_type: row.event_type,
        source_id: row.source_id,
        data,
        created_at_ms: row.created_at_ms,
        request_id: row.request_id,
    }
}

/// The published events `f` selects, in list order.
pub fn lister(project_id: &str, f: &EventFilter) -> Keyset<published_event::Entity> {
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
    if !f.request_id.is_empty() {
        c = c.add(published_event::Column::RequestId.is_in(f.request_id.iter().cloned()));
    }
    Keyset::new(published_event::Entity::find().filter(c), published_event::Column::CreatedAtMs, published_event::Column::Id, |r| Cursor {
        time_ms: r.created_at_ms,
        id: r.id.clone(),
    })
}

pub async fn list(db: &DatabaseConnection, project_id: &str, f: &EventFilter, limit: Limit, cursor: Option<&Cursor>) -> ServiceResult<Page<PublishedEvent>> {
    let page = lister(project_id, f).page(db, limit, cursor).await?;
    Ok(Page { rows: with_data(db, page.rows).await?, next_cursor: page.next_cursor })
}

/// Index rows joined with their data from the event log, in order.
pub async fn with_data(db: &impl ConnectionTrait, rows: Vec<published_event::Model>) -> ServiceResult<Vec<PublishedEvent>> {
    let mut payloads = crate::event_log::payloads(db, rows.iter().map(|r| r.event_seq).collect()).await?;
    Ok(rows.into_iter().map(|row| { let data = data_of(payloads.remove(&row.event_seq)); view(row, data) }).collect())
}

pub async fn get(db: &impl ConnectionTrait, project_id: &str, id: &str) -> ServiceResult<PublishedEvent> {
    let row = published_event::Entity::find_by_id(id)
        .filter(published_event::Column::ProjectId.eq(project_id))
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::NotFound("event"))?;
    let payload = event_log::Entity::find_by_id(row.event_seq).one(db).await?.map(|e| e.payload);
    Ok(view(row, data_of(payload)))
}

fn data_of(payload: Option<String>) -> Value {
    payload
        .and_then(|p| serde_json::from_str::<EventPublished>(&p).ok())
        .map(|e| Value::Object(e.data))
        .unwrap_or(Value::Null)
}

/// Adds to `events`, for every published event among them, one sendout per enabled endpoint of its
/// project whose patterns match: all in the caller's transaction, so no accepted event ever lacks
/// its sendouts (their deliveries are queued by the dispatcher once committed).
pub async fn with_sendouts(conn: &impl ConnectionTrait, events: Vec<DomainEvent>) -> Result<Vec<DomainEvent>, DbErr> {
    let projects: HashSet<&str> = events
        .iter()
        .filter_map(|e| match e {
            DomainEvent::EventPublished(p) => Some(p.project_id.as_str()),
            _ => None,
        })
        .collect();
    if projects.is_empty() {
        return Ok(events);
    }
    let endpoints: Vec<(webhook::Model, Vec<EventTypePattern>)> = webhook::Entity::find()
        .filter(webhook::Column::ProjectId.is_in(projects))
        .filter(webhook::Column::Enabled.eq(true))
        .all(conn)
        .await?
        .into_iter()
        .map(|w| {
            let patterns = serde_json::from_str(&w.event_types).unwrap_or_default();
            (w, patterns)
        })
        .collect();
    if endpoints.is_empty() {
        return Ok(events);
    }
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let created: Vec<DomainEvent> = match &event {
            DomainEvent::EventPublished(p) => endpoints
                .iter()
                .filter(|(w, patterns)| w.project_id == p.project_id && patterns.iter().any(|pat| pat.matches(p.event_type.as_str())))
                .map(|(w, _)| {
                    DomainEvent::SendoutCreated(SendoutCreated {
                        id: new_id(IdKind::Sendout),
                        project_id: p.project_id.clone(),
                        webhook_id: w.id.clone(),
                        url: w.url.clone(),
                        event_id: p.id.clone(),
                        event_type: p.event_type.as_str().to_owned(),
                        source_id: p.source_id.as_ref().map(|s| s.as_str().to_owned()),
                        created_at_ms: p.created_at_ms,
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        out.push(event);
        out.extend(created);
    }
    Ok(out)
}

/// What `POST /v1/events` answers: the event and its sendouts.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub event: PublishedEvent,
    /// (sendout id, webhook id), by sendout id.
    pub sendouts: Vec<(String, String)>,
    /// True when an earlier request with the same `Idempotency-Key` published it.
    pub replayed: bool,
}

/// How long an `Idempotency-Key` is honoured.
const IDEMPOTENCY_MS: i64 = 24 * 3_600_000;

/// One `POST /v1/events`.
pub struct Publish {
    pub project_id: String,
    pub meta: EventMetadata,
    pub event: NewEvent,
    /// A repeat within 24 hours answers with the first event and publishes nothing.
    pub idempotency_key: Option<String>,
}

/// Publishes events for `POST /v1/events`, group-committed: concurrent requests share one
/// transaction (one webhook lookup, one insert per table, one sync to disk), and each answers once
/// its event and sendouts are committed.
pub type Publisher = GroupCommit<Publishes>;

pub struct Publishes;

pub fn start_publisher(store: EventStore) -> Publisher {
    GroupCommit::start(store, Publishes, Batching::default())
}

impl GroupWrite for Publishes {
    type Item = Publish;
    type Output = Accepted;

    fn write<'a>(&'a self, writer: &'a Writer, items: &'a [Publish]) -> BoxFuture<'a, Result<Vec<Accepted>, StoreError>> {
        Box::pin(publish_all(writer, items))
    }
}

/// The answer of each item: a replay (of an earlier request, or of an item before it in the batch)
/// or the index of its new event among `fresh`.
enum Answer {
    Replay(Box<Accepted>),
    SameAs(usize),
    Fresh(usize),
}

async fn publish_all(writer: &Writer, items: &[Publish]) -> Result<Vec<Accepted>, StoreError> {
    let conn = writer.conn();
    // Requests with one key take turns: keys are locked in one order, so batches cannot deadlock.
    let mut keys: Vec<String> = items.iter().filter_map(|i| i.idempotency_key.as_ref().map(|k| format!("{}/{k}", i.project_id))).collect();
    keys.sort();
    keys.dedup();
    for key in &keys {
        crate::dialect::lock_key(conn, key).await?;
    }
    let mut answers = Vec::with_capacity(items.len());
    let mut fresh: Vec<(EventMetadata, DomainEvent)> = Vec::new();
    let mut first_with_key: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(key) = &item.idempotency_key {
            if let Some(&earlier) = first_with_key.get(&(item.project_id.as_str(), key.as_str())) {
                answers.push(Answer::SameAs(earlier));
                continue;
            }
            first_with_key.insert((&item.project_id, key), i);
            if let Some(seen) = event_idempotency::Entity::find_by_id((item.project_id.clone(), key.clone())).one(conn).await?
                && seen.created_at_ms > now_ms() - IDEMPOTENCY_MS
            {
                let mut replay = accepted(conn, &item.project_id, &seen.event_id).await.map_err(|e| match e {
                    ServiceError::Store(e) => e,
                    other => StoreError::Db(DbErr::Custom(other.to_string())),
                })?;
                replay.replayed = true;
                answers.push(Answer::Replay(Box::new(replay)));
                continue;
            }
        }
        let mut event = published(&item.project_id, vec![item.event.clone()]);
        if let Some(DomainEvent::EventPublished(e)) = event.first_mut() {
            e.idempotency_key = item.idempotency_key.clone();
        }
        answers.push(Answer::Fresh(fresh.len()));
        fresh.extend(event.into_iter().map(|e| (item.meta.clone(), e)));
    }
    // One webhook lookup for the batch; each sendout follows its event and takes its metadata.
    let (metas, events): (Vec<EventMetadata>, Vec<DomainEvent>) = fresh.into_iter().unzip();
    let mut accepted_new: Vec<Accepted> = Vec::with_capacity(events.len());
    let mut appended = Vec::new();
    let mut metas = metas.into_iter();
    let mut meta = None;
    for event in with_sendouts(conn, events).await? {
        match &event {
            DomainEvent::EventPublished(e) => {
                meta = metas.next();
                let request_id = meta.as_ref().and_then(|m| m.request_log_id.clone());
                accepted_new.push(Accepted {
                    event: PublishedEvent {
                        id: e.id.clone(),
                        event_type: e.event_type.as_str().to_owned(),
                        source_id: e.source_id.as_ref().map(|s| s.as_str().to_owned()),
                        data: Value::Object(e.data.clone()),
                        created_at_ms: e.created_at_ms,
                        request_id,
                    },
                    sendouts: Vec::new(),
                    replayed: false,
                });
            }
            DomainEvent::SendoutCreated(s) => {
                if let Some(last) = accepted_new.last_mut() {
                    last.sendouts.push((s.id.clone(), s.webhook_id.clone()));
                }
            }
            _ => {}
        }
        let Some(meta) = &meta else { continue };
        appended.push((meta.clone(), event));
    }
    writer.append_each(appended).await?;
    let mut out: Vec<Accepted> = Vec::with_capacity(items.len());
    for answer in answers {
        let next = match answer {
            Answer::Replay(a) => *a,
            Answer::SameAs(i) => Accepted { replayed: true, ..out[i].clone() },
            Answer::Fresh(i) => {
                let mut a = accepted_new[i].clone();
                a.sendouts.sort();
                a
            }
        };
        out.push(next);
    }
    Ok(out)
}

async fn accepted(conn: &impl ConnectionTrait, project_id: &str, event_id: &str) -> ServiceResult<Accepted> {
    let event = get(conn, project_id, event_id).await?;
    let sendouts = sendout::Entity::find()
        .select_only()
        .columns([sendout::Column::Id, sendout::Column::WebhookId])
        .filter(sendout::Column::EventId.eq(event_id))
        .order_by_asc(sendout::Column::Id)
        .into_tuple()
        .all(conn)
        .await?;
    Ok(Accepted { event, sendouts, replayed: false })
}

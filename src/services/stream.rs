//! The live stream: the project's changes as they commit, for dashboards and scripts.
//!
//! One reader per node (the [`Feed`]) follows the event log from its position, woken by every
//! commit (this node's at once, other nodes' through PostgreSQL's NOTIFY), loads each changed
//! resource's summary once, renders it once, and passes the frames to every subscriber through a
//! bounded ring. A subscriber that falls a whole ring behind is told where to resume and closed:
//! a slow client costs the server nothing but its place in the ring. Frame ids are event-log
//! positions, so a client that reconnects with `Last-Event-ID` first reads what it missed from
//! the log itself, whichever node it reconnects to.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use entity::{event_log, export, project, sendout, task};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::{Mutex, broadcast, watch};

use super::{exports, sendouts, tasks};
use crate::domain::export::Export;
use crate::domain::log::LogSummary;
use crate::domain::sendout::Sendout;
use crate::domain::task::{Task, wire_enum};
use crate::domain::time::ProjectTimeZone;
use crate::event_log::{DomainEvent, EventStore, StoredEvent, decode};

wire_enum!(
    /// What changed: a log was recorded, or a task, export or sendout moved.
    Topic { LogRecorded = "log.recorded", TaskUpdated = "task.updated", ExportUpdated = "export.updated", SendoutUpdated = "sendout.updated" }
);

/// The changed resource, as it stands when the change is passed on.
pub enum Resource {
    Log(LogSummary),
    Task(Task),
    Export(Export),
    Sendout(Sendout),
}

pub struct Change {
    /// The event-log position of the change: the frame's id.
    pub seq: i64,
    pub topic: Topic,
    pub resource: Resource,
}

/// A change rendered for the wire, once for all its subscribers.
#[derive(Clone)]
pub struct Frame {
    pub seq: i64,
    pub project_id: Arc<str>,
    pub topic: Topic,
    pub text: Bytes,
}

/// Renders a change as an SSE frame, with times in the project's zone (the API layer's summaries).
pub type Render = Arc<dyn Fn(&Change, &ProjectTimeZone) -> Bytes + Send + Sync>;

/// Events read per query.
const BATCH: u64 = 1000;
/// Batches the ring holds: how far a subscriber may fall behind before it is closed.
const RING: usize = 64;
/// On PostgreSQL a position is taken at insert and becomes visible at commit: a gap may be a
/// transaction still committing. The feed waits this long for it before taking it for a
/// rolled-back number (a rollback is rare: a lost race that is retried).
const GAP_PATIENCE: Duration = Duration::from_secs(1);
/// How often the feed looks even without a wake-up: a gap to re-check, a lost notification.
const IDLE_LOOK: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    store: EventStore,
    render: Render,
    ring: broadcast::Sender<Arc<Vec<Frame>>>,
    /// The position up to which changes have been passed to the ring.
    position: AtomicI64,
    /// True while nobody listens: the position is then left behind instead of read from the log
    /// on every commit, and is read again when someone subscribes. Changed only under `sync`.
    stale: AtomicBool,
    sync: Mutex<()>,
    /// Turns true when the process stops: every subscriber is sent its resume point and closed.
    closing: watch::Sender<bool>,
}

impl Feed {
    /// Starts following the log from its end; it stops with the process.
    pub async fn start(store: EventStore, render: Render) -> Result<Self, DbErr> {
        let position = top(store.db()).await?;
        let inner = Arc::new(Inner {
            store,
            render,
            ring: broadcast::channel(RING).0,
            position: AtomicI64::new(position),
            stale: AtomicBool::new(false),
            sync: Mutex::new(()),
            closing: watch::channel(false).0,
        });
        tokio::spawn(follow(inner.clone()));
        Ok(Self { inner })
    }

    /// Ends every subscription with its resume point, so that clients reconnect (to another node,
    /// while this one stops) and miss nothing.
    pub fn close(&self) {
        let _ = self.inner.closing.send(true);
    }

    /// A subscriber of `project_id`'s changes of `topics` (all when empty), from just after
    /// `last_seen` when given (what it missed comes first), else from now.
    pub async fn subscribe(&self, project_id: &str, topics: Vec<Topic>, last_seen: Option<i64>) -> Result<Subscription, DbErr> {
        // Subscribe first, then read the position: every change past it is in the ring.
        let live = self.inner.ring.subscribe();
        let upto = self.inner.synced_position().await?;
        // A client ahead of this node (it came from a node that had read further) is sent only
        // what comes after what it saw.
        let sent = last_seen.unwrap_or(upto);
        let closing = self.inner.closing.subscribe();
        Ok(Subscription { feed: self.inner.clone(), project_id: project_id.into(), topics, live, sent, backlog_until: upto, closing })
    }
}

impl Inner {
    /// The position, read from the log first if it was left behind while nobody listened.
    async fn synced_position(&self) -> Result<i64, DbErr> {
        let _sync = self.sync.lock().await;
        if self.stale.load(Ordering::SeqCst) {
            self.position.fetch_max(top(self.store.db()).await?, Ordering::SeqCst);
            self.stale.store(false, Ordering::SeqCst);
        }
        Ok(self.position.load(Ordering::SeqCst))
    }

    /// Marks the position stale if nobody listens; `false` then. Under `sync`, so a subscriber
    /// that joined meanwhile either is counted or finds the position marked and reads it again.
    async fn listened(&self) -> bool {
        let _sync = self.sync.lock().await;
        if self.ring.receiver_count() == 0 {
            self.stale.store(true, Ordering::SeqCst);
            return false;
        }
        true
    }
}

/// What a subscriber receives next.
pub enum Next {
    Frames(Vec<Bytes>),
    /// It fell too far behind: resume from this position (sent as the last id before closing).
    Resume(i64),
}

pub struct Subscription {
    feed: Arc<Inner>,
    project_id: Arc<str>,
    topics: Vec<Topic>,
    live: broadcast::Receiver<Arc<Vec<Frame>>>,
    /// The position of the last change passed on (or skipped as another project's).
    sent: i64,
    /// What it missed, up to here, is read from the log before live changes.
    backlog_until: i64,
    closing: watch::Receiver<bool>,
}

impl Subscription {
    /// The position of the last change passed on: where a reconnect resumes.
    pub fn position(&self) -> i64 {
        self.sent
    }

    fn wants(&self, frame: &Frame) -> bool {
        frame.seq > self.sent && *frame.project_id == *self.project_id && (self.topics.is_empty() || self.topics.contains(&frame.topic))
    }

    /// The next frames for this subscriber; waits until there are some.
    pub async fn next(&mut self) -> Result<Next, DbErr> {
        while self.sent < self.backlog_until {
            let rows = read(self.feed.store.db(), self.sent, Some(self.backlog_until), Some(&self.project_id)).await?;
            let Some(last) = rows.last().map(|r| r.seq) else {
                self.sent = self.backlog_until;
                break;
            };
            let events: Vec<StoredEvent> = rows.iter().filter_map(|r| decode(r).ok()).collect();
            let frames = frames(&self.feed, &events).await?;
            let out: Vec<Bytes> = frames.iter().filter(|f| self.wants(f)).map(|f| f.text.clone()).collect();
            self.sent = last;
            if !out.is_empty() {
                return Ok(Next::Frames(out));
            }
        }
        loop {
            let received = tokio::select! {
                received = self.live.recv() => received,
                _ = self.closing.wait_for(|c| *c) => return Ok(Next::Resume(self.sent)),
            };
            match received {
                Ok(batch) => {
                    let out: Vec<Bytes> = batch.iter().filter(|f| self.wants(f)).map(|f| f.text.clone()).collect();
                    if let Some(last) = batch.last() {
                        self.sent = self.sent.max(last.seq);
                    }
                    if !out.is_empty() {
                        return Ok(Next::Frames(out));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => return Ok(Next::Resume(self.sent)),
                // The feed is gone (the process is stopping).
                Err(broadcast::error::RecvError::Closed) => return Ok(Next::Resume(self.sent)),
            }
        }
    }
}

/// The feed's loop: read what was committed past the position, pass it on, wait for more.
async fn follow(feed: Arc<Inner>) {
    let mut commits = feed.store.commits().subscribe();
    let mut gap: Option<(i64, Instant)> = None;
    loop {
        let _ = tokio::time::timeout(IDLE_LOOK, commits.changed()).await;
        loop {
            match step(&feed, &mut gap).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "the live stream could not read the event log; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

/// Passes on one batch; `true` if there may be more right away.
async fn step(feed: &Inner, gap: &mut Option<(i64, Instant)>) -> Result<bool, DbErr> {
    // Nobody listens: no query at all, however often commits wake the feed.
    if !feed.listened().await {
        return Ok(false);
    }
    let db = feed.store.db();
    let position = feed.synced_position().await?;
    let rows = read(db, position, None, None).await?;
    let mut next = position;
    let mut taken = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.seq != next + 1 {
            let waited = match gap {
                Some((seq, since)) if *seq == next + 1 => since.elapsed() >= GAP_PATIENCE,
                _ => {
                    *gap = Some((next + 1, Instant::now()));
                    false
                }
            };
            if !waited {
                break;
            }
        }
        next = row.seq;
        taken.push(row);
    }
    if taken.is_empty() {
        return Ok(false);
    }
    *gap = None;
    let events: Vec<StoredEvent> = taken.iter().filter_map(|r| decode(r).ok()).collect();
    let frames = frames(feed, &events).await?;
    feed.position.store(next, Ordering::SeqCst);
    // The last frame always carries the batch's end, so subscribers move past skipped events.
    let _ = feed.ring.send(Arc::new(frames));
    Ok(rows.len() as u64 == BATCH && taken.len() == rows.len())
}

/// Up to [`BATCH`] events after `after` (up to `until`), of one project when given.
async fn read(db: &impl ConnectionTrait, after: i64, until: Option<i64>, project_id: Option<&str>) -> Result<Vec<event_log::Model>, DbErr> {
    let mut query = event_log::Entity::find().filter(event_log::Column::Seq.gt(after));
    if let Some(until) = until {
        query = query.filter(event_log::Column::Seq.lte(until));
    }
    if let Some(project_id) = project_id {
        query = query.filter(event_log::Column::ProjectId.eq(project_id));
    }
    query.order_by_asc(event_log::Column::Seq).limit(BATCH).all(db).await
}

async fn top(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    let top: Option<Option<i64>> = event_log::Entity::find().select_only().column_as(event_log::Column::Seq.max(), "top").into_tuple().one(db).await?;
    Ok(top.flatten().unwrap_or(0))
}

/// The frames of `events`: each changed resource loaded once per batch (its latest change
/// carries it), rendered once in its project's zone. A batch's last event yields a frame even
/// when nothing changed (an empty marker no subscriber wants), so positions move on.
async fn frames(feed: &Inner, events: &[StoredEvent]) -> Result<Vec<Frame>, DbErr> {
    let db = feed.store.db();
    let mut touched: Vec<(i64, &str, Topic, &str)> = Vec::new(); // seq, project, topic, resource id
    for stored in events {
        let Some(project_id) = stored.event.project_id() else { continue };
        for (topic, id) in topics_of(&stored.event) {
            touched.push((stored.seq, project_id, topic, id));
        }
    }
    // The latest change of each resource in the batch stands for the earlier ones.
    let mut latest: HashMap<(Topic, &str), i64> = HashMap::new();
    for (seq, _, topic, id) in &touched {
        latest.insert((*topic, *id), *seq);
    }
    touched.retain(|(seq, _, topic, id)| latest.get(&(*topic, *id)) == Some(seq));

    let ids = |topic: Topic| touched.iter().filter(|t| t.2 == topic).map(|t| t.3.to_owned()).collect::<Vec<_>>();
    let tasks: HashMap<String, Task> =
        by_ids(task::Entity::find().filter(task::Column::Id.is_in(ids(Topic::TaskUpdated))).all(db).await?, |r| r.id.clone(), tasks::read);
    let sendouts: HashMap<String, Sendout> = by_ids(
        sendout::Entity::find().filter(sendout::Column::Id.is_in(ids(Topic::SendoutUpdated))).all(db).await?,
        |r| r.id.clone(),
        sendouts::read,
    );
    // An export changes with its task: its id here may be the export's or its task's.
    let export_ids = ids(Topic::ExportUpdated);
    let export_rows = export::Entity::find()
        .filter(sea_orm::Condition::any().add(export::Column::Id.is_in(export_ids.clone())).add(export::Column::TaskId.is_in(export_ids)))
        .all(db)
        .await?;
    let mut exports: HashMap<String, Export> = HashMap::new();
    for row in export_rows {
        let task_id = row.task_id.clone();
        let export = exports::read(row);
        exports.insert(task_id, export.clone());
        exports.insert(export.id.clone(), export);
    }
    let logs: HashMap<&str, LogSummary> = events
        .iter()
        .filter_map(|e| match &e.event {
            DomainEvent::RequestLogged(record) => Some((record.id.as_str(), record.summary())),
            _ => None,
        })
        .collect();
    let zones = zones(db, touched.iter().map(|t| t.1)).await?;

    let mut out = Vec::with_capacity(touched.len() + 1);
    for (seq, project_id, topic, id) in touched {
        let resource = match topic {
            Topic::LogRecorded => logs.get(id).cloned().map(Resource::Log),
            Topic::TaskUpdated => tasks.get(id).cloned().map(Resource::Task),
            Topic::SendoutUpdated => sendouts.get(id).cloned().map(Resource::Sendout),
            Topic::ExportUpdated => exports.get(id).cloned().map(Resource::Export),
        };
        // Gone since (purged): nothing to show.
        let Some(resource) = resource else { continue };
        let zone = zones.get(project_id).copied().unwrap_or_else(ProjectTimeZone::utc);
        let change = Change { seq, topic, resource };
        out.push(Frame { seq, project_id: project_id.into(), topic, text: (feed.render)(&change, &zone) });
    }
    if let Some(last) = events.last()
        && out.last().is_none_or(|f| f.seq < last.seq)
    {
        out.push(Frame { seq: last.seq, project_id: Arc::from(""), topic: Topic::LogRecorded, text: Bytes::new() });
    }
    Ok(out)
}

/// The topics an event touches, with the id of the resource to show for each.
fn topics_of(event: &DomainEvent) -> Vec<(Topic, &str)> {
    match event {
        DomainEvent::RequestLogged(e) => vec![(Topic::LogRecorded, e.id.as_str())],
        DomainEvent::TaskScheduled(e) => vec![(Topic::TaskUpdated, e.id.as_str())],
        // Tasks of any type move their export, if they have one (looked up by task id).
        DomainEvent::TaskStarted(e) | DomainEvent::TaskCancelled(e) => vec![(Topic::TaskUpdated, &e.id), (Topic::ExportUpdated, &e.id)],
        DomainEvent::TaskProgressed(e) => vec![(Topic::TaskUpdated, &e.id), (Topic::ExportUpdated, &e.id)],
        DomainEvent::TaskCompleted(e) => vec![(Topic::TaskUpdated, &e.id), (Topic::ExportUpdated, &e.id)],
        DomainEvent::TaskFailed(e) => vec![(Topic::TaskUpdated, &e.id), (Topic::ExportUpdated, &e.id)],
        DomainEvent::ExportCreated(e) => vec![(Topic::ExportUpdated, e.id.as_str())],
        DomainEvent::ExportWritten(e) => vec![(Topic::ExportUpdated, e.id.as_str())],
        DomainEvent::ExportWithdrawn(e) => vec![(Topic::ExportUpdated, e.id.as_str())],
        DomainEvent::SendoutCreated(e) => vec![(Topic::SendoutUpdated, e.id.as_str())],
        DomainEvent::SendoutAttempted(e) => vec![(Topic::SendoutUpdated, e.id.as_str())],
        DomainEvent::SendoutRetryRequested(e) => vec![(Topic::SendoutUpdated, e.id.as_str())],
        _ => Vec::new(),
    }
}

fn by_ids<R, T>(rows: Vec<R>, id: impl Fn(&R) -> String, read: impl Fn(R) -> T) -> HashMap<String, T> {
    rows.into_iter().map(|r| (id(&r), read(r))).collect()
}

/// The time zones of the projects named.
async fn zones<'a>(db: &impl ConnectionTrait, ids: impl Iterator<Item = &'a str>) -> Result<HashMap<String, ProjectTimeZone>, DbErr> {
    let mut ids: Vec<&str> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String)> = project::Entity::find()
        .select_only()
        .columns([project::Column::Id, project::Column::TimeZone])
        .filter(project::Column::Id.is_in(ids))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(|(id, zone)| Some((id, ProjectTimeZone::try_from(zone).ok()?))).collect())
}

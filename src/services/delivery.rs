//! Webhook delivery: one attempt of a sendout, signed per Standard Webhooks, through one shared
//! HTTP client whose resolver refuses internal addresses at connection time (so a DNS answer that
//! changed since the endpoint was created cannot slip through), redirects not followed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use entity::{event_log, published_event, sendout, webhook};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sea_orm::{ColumnTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect};
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::events::{system_event, with_sendouts};
use super::webhooks::open_secrets;
use crate::config::Settings;
use crate::domain::actor::Actor;
use crate::domain::event::system;
use crate::domain::ids::{IdKind, new_id};
use crate::domain::sendout::{next_delay, parse_retry_after};
use crate::domain::time::{format_utc, now_ms};
use crate::domain::webhook::{SigningSecrets, refused_address, sign};
use crate::event_log::group::{Batching, GroupCommit, GroupWrite};
use crate::event_log::{
    Attempt, AttemptOutcome, AttemptTrigger, DomainEvent, EventMetadata, EventPublished, EventStore, SendoutAttempted, StoreError,
    WebhookDisabled, Writer,
};
use crate::domain::job::DeliveryJob;

/// Response bodies are kept up to this many bytes.
const MAX_RESPONSE_BODY: usize = 4096;

pub struct Deliverer {
    store: EventStore,
    recorder: GroupCommit<Records>,
    client: reqwest::Client,
    allow_private: bool,
    schedule: Vec<Duration>,
    timeout: Duration,
    disable_after_ms: i64,
    /// Requests per endpoint in the current second, for endpoints with a rate limit.
    windows: Mutex<HashMap<String, (u64, i32)>>,
}

/// Resolves host names and refuses any that reaches an internal address.
struct VettingResolver;

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(why) = found.iter().find_map(|a| refused_address(a.ip())) {
                return Err(format!("{host} resolves to {why}; only public addresses are allowed").into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

impl Deliverer {
    pub fn new(store: EventStore, settings: &Settings) -> anyhow::Result<Self> {
        crate::startup::install_tls();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.webhook_timeout)
            .connect_timeout(settings.webhook_timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(256)
            .user_agent(concat!("Logbook-Webhooks/", env!("CARGO_PKG_VERSION")));
        if !settings.webhook_allow_private {
            builder = builder.dns_resolver(Arc::new(VettingResolver));
        }
        let batching = Batching { max: 256, ..Batching::default() };
        Ok(Self {
            recorder: GroupCommit::start(store.clone(), Records, batching),
            store,
            client: builder.build()?,
            allow_private: settings.webhook_allow_private,
            schedule: settings.webhook_retry_schedule.0.clone(),
            timeout: settings.webhook_timeout,
            disable_after_ms: settings.webhook_disable_after.as_millis() as i64,
            windows: Mutex::new(HashMap::new()),
        })
    }

    /// Reads what the attempts of `jobs` need in three queries for the whole batch: the sendouts
    /// with their endpoints, then the events' bodies. A job whose sendout is gone or at another
    /// generation (retried by hand, or already attempted) is left out.
    pub async fn prepare(&self, mut jobs: Vec<DeliveryJob>) -> Result<Vec<Prepared>, StoreError> {
        jobs.sort_by(|a, b| (&a.sendout_id, a.generation).cmp(&(&b.sendout_id, b.generation)));
        jobs.dedup_by(|a, b| a.sendout_id == b.sendout_id && a.generation == b.generation);
        let db = self.store.db();
        let ids: Vec<String> = jobs.iter().map(|j| j.sendout_id.clone()).collect();
        let mut found: HashMap<String, (sendout::Model, Option<webhook::Model>)> = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let rows = sendout::Entity::find().filter(sendout::Column::Id.is_in(chunk.to_vec())).find_also_related(webhook::Entity).all(db).await?;
            found.extend(rows.into_iter().map(|(row, endpoint)| (row.id.clone(), (row, endpoint))));
        }
        let current: Vec<(DeliveryJob, sendout::Model, Option<webhook::Model>)> = jobs
            .into_iter()
            .filter_map(|job| {
                // (A sendout's jobs of older generations come first and stay behind.)
                found.get(&job.sendout_id).filter(|(row, _)| row.generation == job.generation)?;
                let (row, endpoint) = found.remove(&job.sendout_id)?;
                Some((job, row, endpoint))
            })
            .collect();
        let bodies = self.bodies(current.iter().map(|(_, row, _)| row)).await?;
        Ok(current
            .into_iter()
            .map(|(job, row, endpoint)| {
                let body = bodies.get(&row.event_id).cloned().unwrap_or_else(|| body_of(&row, None));
                Prepared { job, row, endpoint, body }
            })
            .collect())
    }

    /// Makes one prepared attempt, records it, and queues what follows.
    pub async fn attempt(&self, prepared: Prepared) -> Result<(), StoreError> {
        let Prepared { job, row, endpoint, body } = prepared;
        // The queue schedules in whole seconds; a retry due within the next second waits here.
        if let Some(due) = row.next_attempt_at_ms.filter(|_| !job.manual) {
            let wait = due - now_ms();
            if (1..2000).contains(&wait) {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
        }
        let trigger = if job.manual { AttemptTrigger::Manual } else { AttemptTrigger::Scheduled };
        let (attempt, retry_after) = match &endpoint {
            None => (self.no_request(trigger, "the endpoint was deleted"), None),
            Some(w) if !w.enabled && !job.manual => {
                let reason = w.disabled_reason.as_deref().unwrap_or("disabled by a user");
                (self.no_request(trigger, &format!("the endpoint is disabled ({reason})")), None)
            }
            Some(w) => match open_secrets(self.store.vault(), w) {
                Ok(secrets) => {
                    self.wait_for_rate_limit(w).await;
                    self.post(&row, w, &secrets, trigger, body).await
                }
                Err(e) => (self.no_request(trigger, &format!("the signing secret cannot be opened: {e}")), None),
            },
        };
        let delivered = attempt.http_status.is_some_and(|s| (200..300).contains(&s));
        let scheduled_done = row.scheduled_attempts as usize + usize::from(trigger == AttemptTrigger::Scheduled);
        let outcome = if delivered {
            AttemptOutcome::Delivered
        } else if endpoint.as_ref().is_none_or(|w| !w.enabled && !job.manual) {
            AttemptOutcome::Failed
        } else {
            match next_delay(&self.schedule, scheduled_done, retry_after) {
                Some(delay) => AttemptOutcome::Retrying { next_attempt_at_ms: now_ms() + delay.as_millis() as i64 },
                None => AttemptOutcome::Failed,
            }
        };
        self.record(&row, endpoint.as_ref(), job.generation, attempt, outcome).await
    }

    /// The delivered body of each event of `rows`, by event id.
    async fn bodies<'r>(&self, rows: impl Iterator<Item = &'r sendout::Model>) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        let rows: HashMap<&str, &sendout::Model> = rows.map(|r| (r.event_id.as_str(), r)).collect();
        let event_ids: Vec<String> = rows.keys().map(|id| (*id).to_owned()).collect();
        let db = self.store.db();
        let mut bodies = HashMap::with_capacity(event_ids.len());
        for chunk in event_ids.chunks(500) {
            let seqs: Vec<i64> = published_event::Entity::find()
                .select_only()
                .column(published_event::Column::EventSeq)
                .filter(published_event::Column::Id.is_in(chunk.to_vec()))
                .into_tuple()
                .all(db)
                .await?;
            let payloads: Vec<String> = event_log::Entity::find()
                .select_only()
                .column(event_log::Column::Payload)
                .filter(event_log::Column::Seq.is_in(seqs))
                .into_tuple()
                .all(db)
                .await?;
            for payload in payloads {
                let Ok(event) = serde_json::from_str::<EventPublished>(&payload) else { continue };
                if let Some(row) = rows.get(event.id.as_str()) {
                    bodies.insert(event.id.clone(), body_of(row, Some(event)));
                }
            }
        }
        Ok(bodies)
    }

    fn no_request(&self, trigger: AttemptTrigger, why: &str) -> Attempt {
        Attempt {
            id: new_id(IdKind::Attempt),
            attempted_at_ms: now_ms(),
            trigger,
            http_status: None,
            response_headers: Map::new(),
            response_body: None,
            duration_ms: 0,
            error: Some(why.to_owned()),
        }
    }

    /// Holds the attempt until the endpoint's per-second budget allows it. On PostgreSQL the budget
    /// is counted in the shared table, one atomic increment per attempt, so it holds however many
    /// worker processes deliver to the endpoint; on SQLite (one node) in memory.
    async fn wait_for_rate_limit(&self, w: &webhook::Model) {
        let Some(limit) = w.rate_limit_per_second.filter(|l| *l > 0) else { return };
        loop {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            let second = now.as_secs();
            let admitted = match self.shared_window(&w.id, second).await {
                Some(Ok(count)) => count <= i64::from(limit),
                Some(Err(err)) => {
                    tracing::warn!(error = %err, webhook_id = w.id, "the shared delivery rate limit could not be counted; this worker counts alone");
                    self.local_window(&w.id, second, limit)
                }
                None => self.local_window(&w.id, second, limit),
            };
            if admitted {
                return;
            }
            tokio::time::sleep(Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos()))).await;
        }
    }

    /// Counts an attempt in the endpoint's shared window of `second`; the count so far, this one
    /// included. `None` on SQLite.
    async fn shared_window(&self, webhook_id: &str, second: u64) -> Option<Result<i64, DbErr>> {
        let db = self.store.db();
        if db.get_database_backend() != DbBackend::Postgres {
            return None;
        }
        Some(super::rate_limit::count_shared(db, &format!("endpoint:{webhook_id}"), second as i64 * 1000).await)
    }

    fn local_window(&self, webhook_id: &str, second: u64, limit: i32) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(webhook_id.to_owned()).or_insert((second, 0));
        if window.0 != second {
            *window = (second, 0);
        }
        window.1 += 1;
        window.1 <= limit
    }

    async fn post(&self, row: &sendout::Model, w: &webhook::Model, secrets: &SigningSecrets, trigger: AttemptTrigger, body: Vec<u8>) -> (Attempt, Option<Duration>) {
        let started = Instant::now();
        let attempted_at_ms = now_ms();
        let timestamp = attempted_at_ms / 1000;
        let signatures: Vec<String> = secrets.signing(attempted_at_ms).into_iter().map(|s| sign(s, &row.id, timestamp, &body)).collect();
        let mut attempt = Attempt {
            id: new_id(IdKind::Attempt),
            attempted_at_ms,
            trigger,
            http_status: None,
            response_headers: Map::new(),
            response_body: None,
            duration_ms: 0,
            error: None,
        };
        // IP literals never reach the resolver, so they are vetted here.
        if !self.allow_private
            && let Ok(url) = url::Url::parse(&w.url)
            && let Some(why) = match url.host() {
                Some(url::Host::Ipv4(ip)) => refused_address(ip.into()),
                Some(url::Host::Ipv6(ip)) => refused_address(ip.into()),
                _ => None,
            }
        {
            attempt.error = Some(format!("the URL reaches {why}; only public addresses are allowed"));
            return (attempt, None);
        }
        let request = self
            .client
            .post(&w.url)
            .header("content-type", "application/json")
            .header("webhook-id", &row.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.join(" "))
            .body(body);
        let mut retry_after = None;
        match request.send().await {
            Ok(mut response) => {
                attempt.http_status = Some(i32::from(response.status().as_u16()));
                for (name, value) in response.headers() {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    match attempt.response_headers.get_mut(name.as_str()) {
                        Some(Value::String(existing)) => {
                            existing.push_str(", ");
                            existing.push_str(&value);
                        }
                        _ => {
                            attempt.response_headers.insert(name.as_str().to_owned(), Value::String(value));
                        }
                    }
                }
                retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let mut kept = Vec::new();
                loop {
                    match response.chunk().await {
                        Ok(Some(chunk)) => {
                            kept.extend_from_slice(&chunk[..chunk.len().min(MAX_RESPONSE_BODY - kept.len())]);
                            if kept.len() >= MAX_RESPONSE_BODY {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            attempt.error = Some(format!("reading the response failed: {}", error_text(&e)));
                            break;
                        }
                    }
                }
                attempt.response_body = Some(String::from_utf8_lossy(&kept).into_owned());
                if !response.status().is_success() && attempt.error.is_none() {
                    attempt.error = Some(format!("the endpoint answered {}", response.status()));
                }
            }
            Err(e) if e.is_timeout() => attempt.error = Some(format!("no answer within {}s", self.timeout.as_secs_f64())),
            Err(e) => attempt.error = Some(error_text(&e)),
        }
        attempt.duration_ms = started.elapsed().as_millis() as i64;
        (attempt, retry_after)
    }

    /// Records the attempt, group-committed with other deliveries' records; a record that says
    /// another attempt follows has it queued by the dispatcher on commit. A record outrun by a
    /// retry by hand is dropped, and so is its next attempt.
    async fn record(
        &self,
        row: &sendout::Model,
        endpoint: Option<&webhook::Model>,
        generation: i32,
        attempt: Attempt,
        outcome: AttemptOutcome,
    ) -> Result<(), StoreError> {
        let events = self.attempt_events(row, endpoint, generation, attempt, outcome);
        let meta = EventMetadata { actor: Actor::system(), request_log_id: row.request_id.clone() };
        // (A lost race with a retry by hand is written again against what won, which decides
        // whether the record still counts or is kept as superseded: see `event_log::group`.)
        let record = Record { sendout_id: row.id.clone(), generation, meta, events };
        self.recorder.submit(record).await.map(|_| ())
    }

    /// The attempt, and what it sets off: `sendout.failed` after the last one, and disabling an
    /// endpoint that has failed for `LOGBOOK_WEBHOOK_DISABLE_AFTER`.
    fn attempt_events(
        &self,
        row: &sendout::Model,
        endpoint: Option<&webhook::Model>,
        generation: i32,
        attempt: Attempt,
        outcome: AttemptOutcome,
    ) -> Vec<DomainEvent> {
        let failed = matches!(outcome, AttemptOutcome::Failed);
        let attempted_at_ms = attempt.attempted_at_ms;
        let succeeded = attempt.http_status.is_some_and(|s| (200..300).contains(&s));
        let mut events = vec![DomainEvent::SendoutAttempted(SendoutAttempted {
            id: row.id.clone(),
            project_id: row.project_id.clone(),
            webhook_id: row.webhook_id.clone(),
            generation,
            attempt,
            outcome,
        })];
        // Notices about notices are not sent again, so two failing endpoints cannot feed each other.
        let about_a_notice = [system::SENDOUT_FAILED, system::WEBHOOK_DISABLED].contains(&row.event_type.as_str());
        if failed && !about_a_notice {
            events.push(system_event(&row.project_id, system::SENDOUT_FAILED, json!({
                "sendout_id": row.id, "webhook_id": row.webhook_id, "event_id": row.event_id,
                "event_type": row.event_type, "url": row.url, "attempt_count": row.attempt_count + 1,
            })));
        }
        if !succeeded && let Some(w) = endpoint.filter(|w| w.enabled) {
            let since = w.failing_since_ms.unwrap_or(attempted_at_ms);
            if attempted_at_ms - since >= self.disable_after_ms {
                let reason = format!("every attempt failed since {}", format_utc(since));
                events.push(DomainEvent::WebhookDisabled(WebhookDisabled { id: w.id.clone(), project_id: w.project_id.clone(), reason: reason.clone() }));
                if !about_a_notice {
                    events.push(system_event(&w.project_id, system::WEBHOOK_DISABLED, json!({ "webhook_id": w.id, "url": w.url, "reason": reason })));
                }
            }
        }
        events
    }
}

/// A delivery job with what its attempt needs (see [`Deliverer::prepare`]).
pub struct Prepared {
    pub job: DeliveryJob,
    row: sendout::Model,
    endpoint: Option<webhook::Model>,
    body: Vec<u8>,
}

impl Prepared {
    /// Whether the endpoint limits its rate: such attempts may wait long for their turn.
    pub fn rate_limited(&self) -> bool {
        self.endpoint.as_ref().and_then(|w| w.rate_limit_per_second).is_some_and(|l| l > 0)
    }
}

/// The delivered body: `{"id", "type", "timestamp", "data"}` of the sendout's event (`null` data
/// if the event is gone).
fn body_of(row: &sendout::Model, event: Option<EventPublished>) -> Vec<u8> {
    let (data, created_at_ms) = event.map(|e| (Value::Object(e.data), e.created_at_ms)).unwrap_or((Value::Null, row.created_at_ms));
    let body = json!({ "id": row.event_id, "type": row.event_type, "timestamp": format_utc(created_at_ms), "data": data });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// An attempt to record. The first record of a generation wins: a worker that lost its lease may
/// have made the same attempt.
pub struct Record {
    sendout_id: String,
    generation: i32,
    meta: EventMetadata,
    events: Vec<DomainEvent>,
}

/// Attempts' records, group-committed: concurrent deliveries share one transaction (and, on
/// SQLite, one sync to disk), which is what lets one node sustain thousands of deliveries a second.
/// The output says whether the record was taken.
pub struct Records;

impl GroupWrite for Records {
    type Item = Record;
    type Output = bool;

    fn write<'a>(&'a self, writer: &'a Writer, batch: &'a [Record]) -> BoxFuture<'a, Result<Vec<bool>, StoreError>> {
        Box::pin(commit_records(writer, batch))
    }
}

/// Appends the records whose sendout is still at their generation; returns which were.
async fn commit_records(writer: &Writer, batch: &[Record]) -> Result<Vec<bool>, StoreError> {
    let ids: Vec<&str> = batch.iter().map(|r| r.sendout_id.as_str()).collect();
    let current: HashMap<String, i32> = sendout::Entity::find()
        .select_only()
        .columns([sendout::Column::Id, sendout::Column::Generation])
        .filter(sendout::Column::Id.is_in(ids))
        .into_tuple::<(String, i32)>()
        .all(writer.conn())
        .await?
        .into_iter()
        .collect();
    let mut taken: HashSet<&str> = HashSet::new();
    let mut recorded = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    for record in batch {
        let current = current.get(&record.sendout_id).copied();
        // A second record of the current generation in this batch loses too.
        let ok = current == Some(record.generation) && taken.insert(record.sendout_id.as_str());
        if ok {
            // (Only a failure's notice is published here; most records look nothing up.)
            let with = with_sendouts(writer.conn(), record.events.clone()).await?;
            events.extend(with.into_iter().map(|e| (record.meta.clone(), e)));
        } else if let Some(DomainEvent::SendoutAttempted(attempt)) = record.events.first()
            && current.is_some_and(|current| attempt.generation < current)
        {
            // Outrun by a retry by hand while it was made: the request did reach the endpoint,
            // so it is kept in the history, without what it would have set off.
            let superseded = SendoutAttempted { outcome: AttemptOutcome::Superseded, ..attempt.clone() };
            events.push((record.meta.clone(), DomainEvent::SendoutAttempted(superseded)));
        }
        recorded.push(ok);
    }
    writer.append_each(events).await?;
    Ok(recorded)
}

/// An error with its causes, which is where reqwest keeps the useful part.
fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

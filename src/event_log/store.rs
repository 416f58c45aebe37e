//! Appends events and applies the projectors in the same transaction. There is no update or delete
//! path here; the database refuses both with a trigger (see the foundation migration).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use futures_util::future::BoxFuture;

use entity::event_log;
use sea_orm::sea_query::{Expr, ExprTrait, Func, Query, SimpleExpr};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, SqlErr, DbBackend, SqliteTransactionMode, TransactionOptions, TransactionTrait,
    ColumnTrait,
};
use serde_json::{Value, json};
use tokio::sync::OwnedMutexGuard;

use super::live::Commits;
use super::{DomainEvent, EventMetadata, StreamRef};
use crate::domain::ids::{IdKind, new_id};
use crate::domain::time::now_ms;
use crate::db::SqliteWriter;
use crate::vault::Vault;
use crate::projections;
use crate::projections::search::SearchIndex;
use crate::projections::unnest::Unnest;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the same stream first.
    #[error("a concurrent change to {0} won")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("event {seq} cannot be decoded: {source}")]
    Decode { seq: i64, source: serde_json::Error },
}

impl StoreError {
    /// Whether the database could not be reached (see [`crate::db::unavailable`]).
    pub fn unavailable(&self) -> bool {
        matches!(self, StoreError::Db(e) if crate::db::unavailable(e))
    }
}

/// An event as stored, with its global position.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub event_id: String,
    pub recorded_at_ms: i64,
    pub metadata: EventMetadata,
    pub event: DomainEvent,
}

/// What follows a commit (queueing the jobs it implies, waking live subscribers): told the
/// committed events it asked for, once the commit has succeeded and before the committing call
/// returns, so a caller that saw its write committed also sees its jobs queued.
pub trait AfterCommit: Send + Sync {
    /// Whether `event` matters here; only those are kept for [`AfterCommit::committed`], so the
    /// request log's bodies are never copied for it.
    fn wants(&self, event: &DomainEvent) -> bool;
    fn committed(&self, events: Vec<StoredEvent>) -> BoxFuture<'_, ()>;
}

/// Two observers of commits, in order; each is told only the events it wants.
struct Both(Arc<dyn AfterCommit>, Arc<dyn AfterCommit>);

impl AfterCommit for Both {
    fn wants(&self, event: &DomainEvent) -> bool {
        self.0.wants(event) || self.1.wants(event)
    }

    fn committed(&self, events: Vec<StoredEvent>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let second: Vec<StoredEvent> = events.iter().filter(|e| self.1.wants(&e.event)).cloned().collect();
            let first: Vec<StoredEvent> = events.into_iter().filter(|e| self.0.wants(&e.event)).collect();
            if !first.is_empty() {
                self.0.committed(first).await;
            }
            if !second.is_empty() {
                self.1.committed(second).await;
            }
        })
    }
}

#[derive(Clone)]
pub struct EventStore {
    db: DatabaseConnection,
    /// Set at start-up; empty in tools that only read or replay the log.
    after_commit: Arc<RwLock<Option<Arc<dyn AfterCommit>>>>,
    /// Woken after every commit, for live subscribers.
    commits: Commits,
    /// The asynchronous projection with storage of its own (on SQLite, a file of its own).
    search: SearchIndex,
    /// SQLite has one writer at a time; queueing writers here instead of in SQLite's busy handler
    /// keeps latency fair and avoids `SQLITE_BUSY` on lock upgrades. PostgreSQL needs no lock.
    sqlite_writer: Option<SqliteWriter>,
    /// Seals the secrets that events carry.
    vault: Vault,
}

impl EventStore {
    pub fn new(db: DatabaseConnection, search: SearchIndex, sqlite_writer: Option<SqliteWriter>, vault: Vault) -> Self {
        Self { db, after_commit: Arc::default(), commits: Commits::default(), search, sqlite_writer, vault }
    }

    /// Wakes on every commit: this node's at once, other nodes' through PostgreSQL once
    /// [`Commits::listen`] runs.
    pub fn commits(&self) -> &Commits {
        &self.commits
    }

    /// Hands every later commit to `observer` too (after those added before it).
    pub fn add_after_commit(&self, observer: Arc<dyn AfterCommit>) {
        let mut current = self.after_commit.write().unwrap_or_else(PoisonError::into_inner);
        *current = Some(match current.take() {
            Some(first) => Arc::new(Both(first, observer)),
            None => observer,
        });
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// After a rewrite that must leave no copy (an erasure), empties SQLite's WAL of the old page
    /// versions (see `db::truncate_wal`); `false` if readers kept it from doing so. PostgreSQL
    /// reuses the space of old row versions by its own vacuum.
    pub async fn drop_old_versions(&self) -> Result<bool, DbErr> {
        match &self.sqlite_writer {
            Some(writer) => crate::db::truncate_wal(writer, 10).await,
            None => Ok(true),
        }
    }

    pub fn search(&self) -> &SearchIndex {
        &self.search
    }

    /// Starts a write transaction. Reads made through [`Writer::conn`] see a consistent state that
    /// no other writer can change before commit on SQLite; on PostgreSQL the per-stream unique
    /// version turns a lost race into [`StoreError::Conflict`].
    pub async fn begin(&self) -> Result<Writer, DbErr> {
        let after_commit = self.after_commit.read().unwrap_or_else(PoisonError::into_inner).clone();
        let Some(writer) = &self.sqlite_writer else {
            return Ok(Writer { txn: self.db.begin().await?, guard: None, after_commit, committed: Mutex::default(), commits: self.commits.clone() });
        };
        let guard = writer.lock.clone().lock_owned().await;
        let options = TransactionOptions { sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate), ..Default::default() };
        let txn = writer.db.begin_with_options(options).await?;
        Ok(Writer { txn, guard: Some(guard), after_commit, committed: Mutex::default(), commits: self.commits.clone() })
    }

    /// Appends `events` in a transaction of their own and commits.
    pub async fn append(&self, metadata: &EventMetadata, events: Vec<DomainEvent>) -> Result<Vec<StoredEvent>, StoreError> {
        let writer = self.begin().await?;
        let stored = writer.append(metadata, events).await?;
        writer.commit().await?;
        Ok(stored)
    }
}

pub struct Writer {
    txn: DatabaseTransaction,
    guard: Option<OwnedMutexGuard<()>>,
    after_commit: Option<Arc<dyn AfterCommit>>,
    /// The appended events the after-commit dispatcher wants, handed over once committed.
    committed: Mutex<Vec<StoredEvent>>,
    commits: Commits,
}

/// Most rows per INSERT statement: well under SQLite's 32,766 bound parameters at 10 columns a row.
const INSERT_CHUNK: usize = 512;

impl Writer {
    /// The transaction, for reads that decide what to append.
    pub fn conn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Commits, releases the write lock, then hands what was committed to the dispatcher.
    pub async fn commit(self) -> Result<(), DbErr> {
        let Writer { txn, guard, after_commit, committed, commits } = self;
        txn.commit().await?;
        drop(guard);
        commits.committed();
        let committed = committed.into_inner().unwrap_or_else(PoisonError::into_inner);
        if let Some(dispatcher) = after_commit
            && !committed.is_empty()
        {
            dispatcher.committed(committed).await;
        }
        Ok(())
    }

    /// Appends events in order and projects them. All or nothing with the rest of the transaction.
    pub async fn append(&self, metadata: &EventMetadata, events: Vec<DomainEvent>) -> Result<Vec<StoredEvent>, StoreError> {
        self.append_recorded_at(metadata, events, now_ms()).await
    }

    /// [`Writer::append`] with a given record time: for back-filling history from another system
    /// (and for tests of what happens to old data).
    pub async fn append_recorded_at(
        &self,
        metadata: &EventMetadata,
        events: Vec<DomainEvent>,
        recorded_at_ms: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.append_all(events.into_iter().map(|e| (metadata.clone(), e)).collect(), recorded_at_ms).await
    }

    /// Appends events that each carry their own metadata (the records of many deliveries, each
    /// caused by its own request), as one batch.
    pub async fn append_each(&self, events: Vec<(EventMetadata, DomainEvent)>) -> Result<Vec<StoredEvent>, StoreError> {
        self.append_all(events, now_ms()).await
    }

    async fn append_all(&self, events: Vec<(EventMetadata, DomainEvent)>, recorded_at_ms: i64) -> Result<Vec<StoredEvent>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut next_version = self.current_versions(&events).await?;
        let mut rows = Vec::with_capacity(events.len());
        // Events of one batch mostly share their metadata: serialise each distinct one once.
        let mut last_metadata: Option<(&EventMetadata, String)> = None;
        for (metadata, event) in &events {
            let stream = event.stream();
            // A stream not found is a new one.
            let version = next_version.get(&stream).copied().unwrap_or(1);
            next_version.insert(stream.clone(), version + 1);
            let (event_type, schema_version, payload) = encode(event);
            let metadata_json = match &last_metadata {
                Some((m, json)) if *m == metadata => json.clone(),
                _ => {
                    let json = serde_json::to_string(metadata).map_err(|source| StoreError::Decode { seq: 0, source })?;
                    last_metadata = Some((metadata, json.clone()));
                    json
                }
            };
            rows.push(EventRow {
                event_id: new_id(IdKind::LogEntry),
                stream,
                version,
                event_type,
                schema_version,
                payload,
                project_id: event.project_id().map(str::to_owned),
                metadata: metadata_json,
            });
        }

        let seqs = if self.txn.get_database_backend() == DbBackend::Postgres {
            self.insert_postgres(&rows, recorded_at_ms).await?
        } else {
            self.insert_sqlite(&rows, recorded_at_ms).await?
        };

        let stored: Vec<StoredEvent> = rows
            .into_iter()
            .zip(events)
            .map(|(row, (metadata, event))| StoredEvent {
                seq: seqs.get(&row.event_id).copied().unwrap_or_default(),
                event_id: row.event_id,
                recorded_at_ms,
                metadata,
                event,
            })
            .collect();
        projections::apply(&self.txn, &stored).await?;
        if let Some(dispatcher) = &self.after_commit {
            let wanted = stored.iter().filter(|e| dispatcher.wants(&e.event)).cloned();
            self.committed.lock().unwrap_or_else(PoisonError::into_inner).extend(wanted);
        }
        Ok(stored)
    }

    /// Inserts rows in multi-row statements; returns each event's position by its id.
    async fn insert_sqlite(&self, rows: &[EventRow], recorded_at_ms: i64) -> Result<HashMap<String, i64>, StoreError> {
        let mut seqs = HashMap::with_capacity(rows.len());
        for chunk in projections::pow2_chunks(rows, INSERT_CHUNK) {
            let mut insert = Query::insert();
            insert.into_table(event_log::Entity).columns([
                event_log::Column::EventId,
                event_log::Column::ProjectId,
                event_log::Column::StreamType,
                event_log::Column::StreamId,
                event_log::Column::StreamVersion,
                event_log::Column::EventType,
                event_log::Column::SchemaVersion,
                event_log::Column::Payload,
                event_log::Column::Metadata,
                event_log::Column::RecordedAtMs,
            ]);
            for row in chunk {
                insert.values_panic([
                    row.event_id.clone().into(),
                    row.project_id.clone().into(),
                    row.stream.kind.into(),
                    row.stream.id.clone().into(),
                    row.version.into(),
                    row.event_type.clone().into(),
                    row.schema_version.into(),
                    row.payload.clone().into(),
                    row.metadata.clone().into(),
                    recorded_at_ms.into(),
                ]);
            }
            insert.returning(Query::returning().columns([event_log::Column::Seq, event_log::Column::EventId]));
            let result = self.txn.query_all(&insert).await.map_err(|e| conflict(e, &chunk[0]))?;
            collect_seqs(result, &mut seqs)?;
        }
        Ok(seqs)
    }

    /// Inserts all rows in one statement of array parameters (see `projections::unnest`).
    async fn insert_postgres(&self, rows: &[EventRow], recorded_at_ms: i64) -> Result<HashMap<String, i64>, StoreError> {
        let result = Unnest::insert_into("event_log")
            .text("event_id", rows.iter().map(|r| r.event_id.clone()))
            .optional_text("project_id", rows.iter().map(|r| r.project_id.clone()))
            .text("stream_type", rows.iter().map(|r| r.stream.kind.to_owned()))
            .text("stream_id", rows.iter().map(|r| r.stream.id.clone()))
            .big_int("stream_version", rows.iter().map(|r| r.version))
            .text("event_type", rows.iter().map(|r| r.event_type.clone()))
            .int("schema_version", rows.iter().map(|r| r.schema_version))
            .text("payload", rows.iter().map(|r| r.payload.clone()))
            .text("metadata", rows.iter().map(|r| r.metadata.clone()))
            .big_int("recorded_at_ms", rows.iter().map(|_| recorded_at_ms))
            .exec(&self.txn, Some("seq, event_id"))
            .await
            .map_err(|e| conflict(e, &rows[0]))?;
        let mut seqs = HashMap::with_capacity(rows.len());
        collect_seqs(result, &mut seqs)?;
        Ok(seqs)
    }

    /// The next version of every existing stream the events continue, in one query per stream
    /// kind (new streams start at 1 without a lookup).
    async fn current_versions(&self, events: &[(EventMetadata, DomainEvent)]) -> Result<HashMap<StreamRef, i64>, DbErr> {
        let mut by_kind: HashMap<&'static str, Vec<String>> = HashMap::new();
        for (_, event) in events {
            if !event.starts_stream() {
                let stream = event.stream();
                let ids = by_kind.entry(stream.kind).or_default();
                if !ids.contains(&stream.id) {
                    ids.push(stream.id);
                }
            }
        }
        let mut next = HashMap::new();
        for (kind, ids) in by_kind {
            for chunk in ids.chunks(500) {
                let found: Vec<(String, Option<i64>)> = event_log::Entity::find()
                    .select_only()
                    .column(event_log::Column::StreamId)
                    .column_as(Expr::expr(Func::max(Expr::col(event_log::Column::StreamVersion))), "v")
                    .filter(in_streams(kind, chunk.to_vec()))
                    .group_by(event_log::Column::StreamId)
                    .into_tuple()
                    .all(&self.txn)
                    .await?;
                for (id, max) in found {
                    next.insert(StreamRef { kind, id }, max.unwrap_or(0) + 1);
                }
            }
        }
        Ok(next)
    }
}

/// An event's row, before insert.
struct EventRow {
    event_id: String,
    stream: StreamRef,
    version: i64,
    event_type: String,
    schema_version: i32,
    payload: String,
    project_id: Option<String>,
    metadata: String,
}

/// A unique-index violation on insert is a concurrent append to the same stream.
fn conflict(err: DbErr, row: &EventRow) -> StoreError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::Conflict(format!("{} {}", row.stream.kind, row.stream.id)),
        _ => StoreError::Db(err),
    }
}

fn collect_seqs(rows: Vec<sea_orm::QueryResult>, seqs: &mut HashMap<String, i64>) -> Result<(), DbErr> {
    for row in rows {
        seqs.insert(row.try_get::<String>("", "event_id")?, row.try_get::<i64>("", "seq")?);
    }
    Ok(())
}

/// Splits an event into its stored columns: `("project.created", 1, "{…}")`.
fn encode(event: &DomainEvent) -> (String, i32, String) {
    // Serialising a DomainEvent cannot fail: every field is a plain value. Adjacent tagging writes
    // `{"t":"<tag>","c":<content>}`; the content is sliced out rather than re-serialised, since
    // request logs with large bodies make this the hot path of ingestion.
    let json = serde_json::to_string(event).unwrap_or_default();
    let sliced = json.strip_prefix("{\"t\":\"").and_then(|rest| {
        let (tag, rest) = rest.split_once('"')?;
        let content = rest.strip_prefix(",\"c\":")?.strip_suffix('}')?;
        let (event_type, version) = tag.rsplit_once(".v")?;
        Some((event_type.to_owned(), version.parse().ok()?, content.to_owned()))
    });
    sliced.unwrap_or_else(|| ("unknown".to_owned(), 1, "{}".to_owned()))
}

/// A stored row as its typed event.
pub fn decode(row: &event_log::Model) -> Result<StoredEvent, StoreError> {
    let err = |source| StoreError::Decode { seq: row.seq, source };
    let content: Value = serde_json::from_str(&row.payload).map_err(err)?;
    let tagged = json!({ "t": format!("{}.v{}", row.event_type, row.schema_version), "c": content });
    Ok(StoredEvent {
        seq: row.seq,
        event_id: row.event_id.clone(),
        recorded_at_ms: row.recorded_at_ms,
        metadata: serde_json::from_str(&row.metadata).map_err(err)?,
        event: serde_json::from_value(tagged).map_err(err)?,
    })
}

/// The events of streams `ids` of `kind`, in the terms the stream index serves: request logs and
/// published events are left out of it (see `migration::VERSIONED_STREAMS`), and SQLite uses a
/// partial index only for a query that repeats its condition.
pub fn in_streams(kind: &'static str, ids: Vec<String>) -> SimpleExpr {
    Expr::cust(migration::VERSIONED_STREAMS)
        .and(event_log::Column::StreamType.eq(kind))
        .and(event_log::Column::StreamId.is_in(ids))
}

/// The stored payloads (JSON text) of the events at `seqs`: projections keep narrow rows and
/// read bodies and data from here.
pub async fn payloads(conn: &impl ConnectionTrait, seqs: Vec<i64>) -> Result<HashMap<i64, String>, DbErr> {
    Ok(event_log::Entity::find()
        .select_only()
        .columns([event_log::Column::Seq, event_log::Column::Payload])
        .filter(event_log::Column::Seq.is_in(seqs))
        .into_tuple()
        .all(conn)
        .await?
        .into_iter()
        .collect())
}

/// Up to `limit` events after position `after_seq`, in order: for rebuilds and asynchronous projectors.
pub async fn read_batch(conn: &impl ConnectionTrait, after_seq: i64, limit: u64) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = event_log::Entity::find()
        .filter(event_log::Column::Seq.gt(after_seq))
        .order_by_asc(event_log::Column::Seq)
        .limit(limit)
        .all(conn)
        .await?;
    rows.iter().map(decode).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_log::{ApiKeyRevoked, Bootstrapped};

    #[test]
    fn an_event_splits_into_type_version_and_payload_and_decodes_back() {
        let event = DomainEvent::ApiKeyRevoked(ApiKeyRevoked { id: "key_1".into(), project_id: "prj_1".into() });
        let (event_type, version, payload) = encode(&event);
        assert_eq!((event_type.as_str(), version), ("api_key.revoked", 1));
        let row = event_log::Model {
            seq: 7,
            event_id: "ev_1".into(),
            project_id: Some("prj_1".into()),
            stream_type: "api_key".into(),
            stream_id: "key_1".into(),
            stream_version: 2,
            event_type,
            schema_version: version,
            payload,
            metadata: serde_json::to_string(&EventMetadata::system()).unwrap(),
            recorded_at_ms: 1,
        };
        assert_eq!(decode(&row).unwrap().event, event);
    }

    #[test]
    fn an_unknown_event_version_is_a_decode_error_not_a_panic() {
        let (event_type, _, payload) = encode(&DomainEvent::Bootstrapped(Bootstrapped {}));
        let row = event_log::Model {
            seq: 1, event_id: "ev".into(), project_id: None, stream_type: "system".into(), stream_id: "bootstrap".into(),
            stream_version: 1, event_type, schema_version: 99, payload,
            metadata: serde_json::to_string(&EventMetadata::system()).unwrap(), recorded_at_ms: 1,
        };
        assert!(matches!(decode(&row), Err(StoreError::Decode { seq: 1, .. })));
    }
}

//! Request logs: recording (group-committed), ingestion, queries.

use std::time::Duration;

use entity::{event_log, log, log_endpoint, log_related};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select, Statement,
};
use futures_util::future::BoxFuture;

use crate::domain::histogram::{Buckets, sum_bins};
use crate::domain::log::{LogFacet, LogFilter, LogIn, LogRecord, LogStatus, LogSummary, MAX_INGEST_BATCH};
use crate::domain::redact::RedactKeys;
use crate::domain::pagination::{Cursor, Limit, Page};
use super::error::{ServiceError, ServiceResult};
use crate::event_log::group::{Batching, GroupCommit, GroupWrite};
use crate::event_log::{DomainEvent, EventMetadata, EventStore, StoreError, Writer};
use crate::projections::search::{self, Body, SearchIndex};
use crate::services::Keyset;

/// Log writes: every request waits until its entry is durable, and the requests that arrive while
/// a commit runs share the next one (see `event_log::group`). The request log's own entries go
/// through it, and so do the entries of `POST /v1/logs`, which clients send one at a time too.
pub type LogWriter = GroupCommit<Logs>;

/// Entries appended together, all or none, with the metadata of who sent them.
pub struct LogEntries {
    pub meta: EventMetadata,
    pub records: Vec<LogRecord>,
}

impl LogEntries {
    /// A request's own log entry.
    pub fn request(record: LogRecord) -> Self {
        Self { meta: EventMetadata::system(), records: vec![record] }
    }
}

pub struct Logs;

impl GroupWrite for Logs {
    type Item = LogEntries;
    type Output = ();

    fn write<'a>(&'a self, writer: &'a Writer, items: &'a [LogEntries]) -> BoxFuture<'a, Result<Vec<()>, StoreError>> {
        Box::pin(async move {
            let events = items
                .iter()
                .flat_map(|item| item.records.iter().map(|r| (item.meta.clone(), DomainEvent::RequestLogged(Box::new(r.clone())))))
                .collect();
            writer.append_each(events).await?;
            Ok(vec![(); items.len()])
        })
    }
}

/// Starts the log writer; it stops once every handle is dropped.
pub fn start_writer(store: EventStore) -> LogWriter {
    GroupCommit::start(store, Logs, Batching::default())
}

/// Checks and appends the host application's entries, all or none; returns their ids in order.
/// A batch of at most this many entries shares a commit with other requests; a bigger one is a
/// commit of its own already, and keeps shared commits small.
const SHARED_INGEST: usize = 16;

pub async fn ingest(store: &EventStore, writer: &LogWriter, meta: &EventMetadata, project_id: &str, entries: Vec<LogIn>, keys: &RedactKeys) -> ServiceResult<Vec<String>> {
    if entries.is_empty() || entries.len() > MAX_INGEST_BATCH {
        return Err(ServiceError::invalid("logs", format!("must hold 1 to {MAX_INGEST_BATCH} entries")));
    }
    let mut errors = Vec::new();
    let records: Vec<LogRecord> =
        entries.into_iter().enumerate().filter_map(|(i, e)| e.into_record(i, project_id, keys, &mut errors)).collect();
    if !errors.is_empty() {
        return Err(ServiceError::Rejected(errors));
    }
    let ids = records.iter().map(|r| r.id.clone()).collect();
    if records.len() <= SHARED_INGEST {
        writer.submit(LogEntries { meta: meta.clone(), records }).await?;
    } else {
        let events = records.into_iter().map(|r| DomainEvent::RequestLogged(Box::new(r))).collect();
        store.append(meta, events).await?;
    }
    Ok(ids)
}

/// The logs `filter` selects: one definition for the list, exports, histograms and facets. Body
/// searches and related ids are resolved here, once.
async fn matching(store: &EventStore, project_id: &str, filter: &LogFilter) -> ServiceResult<Select<log::Entity>> {
    let related = related_logs(store.db(), project_id, &filter.related_id).await?;
    let searches = body_searches(store.search(), filter).await?;
    Ok(log::Entity::find().filter(filter_condition(project_id, filter, related.as_deref(), &searches)))
}

/// The logs `filter` selects, in list order.
pub async fn lister(store: &EventStore, project_id: &str, filter: &LogFilter) -> ServiceResult<Keyset<log::Entity>> {
    let select = matching(store, project_id, filter).await?;
    Ok(Keyset::new(select, log::Column::OccurredAtMs, log::Column::Id, |r| Cursor { time_ms: r.occurred_at_ms, id: r.id.clone() }))
}

/// Successes and failures among the logs `filter` selects in `buckets`' range, per bucket.
pub async fn histogram(store: &EventStore, project_id: &str, filter: &LogFilter, buckets: &Buckets) -> ServiceResult<Vec<[i64; 2]>> {
    let filter = LogFilter { occurred_after: Some(buckets.after), occurred_before: Some(buckets.before), ..filter.clone() };
    let select = matching(store, project_id, &filter).await?;
    let bin_ms = buckets.interval.bin_ms();
    let bins = super::count_bins(store.db(), select, "occurred_at_ms", bin_ms, ["CASE WHEN failed THEN 0 ELSE 1 END", "CASE WHEN failed THEN 1 ELSE 0 END"]).await?;
    Ok(sum_bins(&buckets.starts, bin_ms, bins))
}

/// Values offered for a filter: at most this many.
const FACET_VALUES: u64 = 20;

/// The most frequent values of `field` among the logs `filter` selects, with their counts.
pub async fn facet(store: &EventStore, project_id: &str, filter: &LogFilter, field: LogFacet) -> ServiceResult<Vec<(String, i64)>> {
    let value = match field {
        LogFacet::Status => "CASE WHEN failed THEN 'failure' ELSE 'success' END",
        LogFacet::HttpStatus => "CAST(http_status AS TEXT)",
        other => other.as_str(),
    };
    let select = matching(store, project_id, filter).await?;
    Ok(super::top_values(store.db(), select, value, FACET_VALUES).await?)
}

pub async fn list(
    store: &EventStore,
    project_id: &str,
    filter: &LogFilter,
    limit: Limit,
    cursor: Option<&Cursor>,
) -> ServiceResult<Page<LogSummary>> {
    Ok(lister(store, project_id, filter).await?.page(store.db(), limit, cursor).await?.map(summary))
}

/// A page of full records (bodies, headers, query) in list order, read from the event log in the
/// same query: exports walk whole lists this way.
/// The stored records (event payloads, as text) of a page of `lister`, for copying out.
pub async fn records(db: &impl ConnectionTrait, lister: &Keyset<log::Entity>, limit: Limit, cursor: Option<&Cursor>) -> ServiceResult<Page<String>> {
    let rows: Vec<(String, i64, Option<String>)> = lister
        .query(limit, cursor)
        .select_only()
        .columns([log::Column::Id, log::Column::OccurredAtMs])
        .column_as(Expr::cust("(SELECT payload FROM event_log WHERE event_log.seq = logs.event_seq)"), "payload")
        .into_tuple()
        .all(db)
        .await?;
    let page = Page::from_overfetch(rows, limit, |(id, time_ms, _)| Cursor { time_ms: *time_ms, id: id.clone() });
    let rows = page
        .rows
        .into_iter()
        .map(|(id, _, payload)| payload.ok_or_else(|| ServiceError::internal(anyhow::anyhow!("log {id} has no event"))))
        .collect::<ServiceResult<Vec<_>>>()?;
    Ok(Page { rows, next_cursor: page.next_cursor })
}

fn summary(row: log::Model) -> LogSummary {
    LogSummary {
        status: if row.failed { LogStatus::Failure } else { LogStatus::Success },
        id: row.id,
        occurred_at_ms: row.occurred_at_ms,
        channel: row.channel,
        method: row.method,
        endpoint: row.endpoint,
        path: row.path,
        http_status: row.http_status,
        duration_ms: row.duration_ms,
        user_id: row.user_id,
        customer_id: row.customer_id,
        server_key_id: row.server_key_id,
        client_key_id: row.client_key_id,
    }
}

/// Every filter as one condition on `logs`, body searches already resolved.
fn filter_condition(project_id: &str, f: &LogFilter, related: Option<&[String]>, searches: &[BodyMatches]) -> Condition {
    let mut c = Condition::all().add(log::Column::ProjectId.eq(project_id));
    if let Some(after) = f.occurred_after {
        c = c.add(log::Column::OccurredAtMs.gte(after));
    }
    if let Some(before) = f.occurred_before {
        c = c.add(log::Column::OccurredAtMs.lt(before));
    }
    let any_of = |c: Condition, col: log::Column, values: &[String]| match values {
        [] => c,
        [one] => c.add(col.eq(one.as_str())),
        many => c.add(col.is_in(many.iter().cloned())),
    };
    // The indexes on nullable columns are partial (`WHERE x IS NOT NULL`); stating it lets SQLite
    // use them for IN lists too.
    let any_of_nullable = |c: Condition, col: log::Column, values: &[String]| {
        if values.is_empty() { c } else { any_of(c.add(col.is_not_null()), col, values) }
    };
    c = any_of(c, log::Column::Channel, &f.channel);
    c = any_of(c, log::Column::Endpoint, &f.endpoint);
    c = any_of_nullable(c, log::Column::UserId, &f.user_id);
    c = any_of_nullable(c, log::Column::CustomerId, &f.customer_id);
    c = any_of_nullable(c, log::Column::ServerKeyId, &f.server_key_id);
    c = any_of_nullable(c, log::Column::ClientKeyId, &f.client_key_id);
    let (success, failure) = (f.status.contains(&LogStatus::Success), f.status.contains(&LogStatus::Failure));
    if success != failure {
        // Literal, as the partial index of failures states it (migration 000011).
        c = c.add(Expr::cust(if failure { "\"logs\".\"failed\"" } else { "NOT \"logs\".\"failed\"" }));
    }
    if let Some(ids) = related {
        c = c.add(log::Column::Id.is_in(ids.iter().cloned()));
    }
    for search in searches {
        c = c.add(match search {
            // Inlined (they are integers): a list can outgrow the bound-parameter limits.
            BodyMatches::Few(seqs) if seqs.is_empty() => Expr::cust("1 = 0"),
            BodyMatches::Few(seqs) => {
                let list = seqs.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
                Expr::cust(format!("\"logs\".\"event_seq\" IN ({list})"))
            }
            BodyMatches::Many(sql, values) => Expr::cust_with_values(sql.clone(), values.clone()),
        });
    }
    c
}

/// The ids of the logs related to any of `related_ids`, looked up first: they are few, and
/// listing them lets the query fetch exactly those rows instead of scanning by time.
async fn related_logs(db: &DatabaseConnection, project_id: &str, related_ids: &[String]) -> ServiceResult<Option<Vec<String>>> {
    if related_ids.is_empty() {
        return Ok(None);
    }
    let ids: Vec<String> = log_related::Entity::find()
        .select_only()
        .column(log_related::Column::LogId)
        .filter(log_related::Column::ProjectId.eq(project_id))
        .filter(log_related::Column::RelatedId.is_in(related_ids.iter().cloned()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(Some(ids))
}

/// The logs a body search matches: few enough to list (then the query is driven by them), or a
/// per-row condition (then the newest-first scan checks rows until the page is full).
enum BodyMatches {
    Few(Vec<i64>),
    Many(String, Vec<sea_orm::Value>),
}

/// A search whose needles are common is checked row by row as the query walks its index newest
/// first (a page fills quickly); a rarer one is listed from the search index (up to
/// [`MAX_LISTED`] matches) and the query fetches exactly those. Common means: on SQLite, more than
/// [`CANDIDATE_CAP`] rows hold every trigram of a needle (counting them reads the index alone); on
/// PostgreSQL, whose index checks the bodies itself, at least [`DENSE`] of the newest [`SAMPLE`]
/// logs match. (A rare phrase of common words is the slow case of any trigram index: it is
/// checked row by row through the whole window.)
const CANDIDATE_CAP: u64 = 20_000;
const SAMPLE: u64 = 1000;
const DENSE: u64 = 5;
const MAX_LISTED: usize = 20_000;

async fn body_searches(index: &SearchIndex, f: &LogFilter) -> ServiceResult<Vec<BodyMatches>> {
    let wanted = [(Body::Request, &f.request_body_contains), (Body::Response, &f.response_body_contains)];
    if wanted.iter().all(|(_, needles)| needles.is_empty()) {
        return Ok(Vec::new());
    }
    let db = index.db();
    let backend = db.get_database_backend();
    let covered = index.checkpoint().await?;
    let mut out = Vec::new();
    for (body, needles) in wanted.into_iter().filter(|(_, n)| !n.is_empty()) {
        let dense = match search::candidate_count(backend, body, needles, covered, CANDIDATE_CAP + 1) {
            Some(candidates) => scalar(db, candidates).await? > CANDIDATE_CAP,
            None => scalar(db, search::sample_matches(backend, body, needles, SAMPLE)).await? >= DENSE,
        };
        let listed = match dense {
            true => None,
            false => seqs(db, search::matching_seqs(backend, body, needles, covered), MAX_LISTED).await?,
        };
        out.push(match listed {
            Some(seqs) => BodyMatches::Few(seqs),
            None => {
                let (sql, values) = search::row_matches(backend, body, needles, covered);
                BodyMatches::Many(sql, values)
            }
        });
    }
    Ok(out)
}

/// The sorted, distinct `seq`s the query selects, or `None` if there are more than `max` or, on
/// PostgreSQL, if listing them takes longer than [`LIST_BUDGET`].
async fn seqs(db: &DatabaseConnection, (sql, values): (String, Vec<sea_orm::Value>), max: usize) -> ServiceResult<Option<Vec<i64>>> {
    let backend = db.get_database_backend();
    let probe = Statement::from_sql_and_values(backend, format!("SELECT seq FROM ({sql}) AS m LIMIT {}", max + 1), values);
    let Some(rows) = crate::dialect::query_within(db, probe, LIST_BUDGET).await? else { return Ok(None) };
    if rows.len() > max {
        return Ok(None);
    }
    let mut seqs = rows.iter().map(|r| r.try_get::<i64>("", "seq")).collect::<Result<Vec<_>, _>>()?;
    seqs.sort_unstable();
    seqs.dedup();
    Ok(Some(seqs))
}

/// How long PostgreSQL may spend listing a search's matches before the search is checked row by
/// row instead. The sample that picks the listing counts matches, but what a trigram lookup costs
/// depends on how common its trigrams are: a phrase of common words that the sample happened to
/// find rare read most of the index (740 ms at 200,000 logs), where checking rows fills a page in
/// about 100 ms.
const LIST_BUDGET: Duration = Duration::from_millis(100);

/// The single number a `SELECT COUNT(*) AS n` returns.
async fn scalar(db: &DatabaseConnection, (sql, values): (String, Vec<sea_orm::Value>)) -> ServiceResult<u64> {
    let backend = db.get_database_backend();
    let row = db.query_one_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0) as u64)
}

/// A log entry's full stored record, scoped to the project.
pub async fn get(db: &DatabaseConnection, project_id: &str, id: &str) -> ServiceResult<LogRecord> {
    let row = log::Entity::find_by_id(id)
        .filter(log::Column::ProjectId.eq(project_id))
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::NotFound("log entry"))?;
    let event = event_log::Entity::find_by_id(row.event_seq).one(db).await?;
    let record = event
        .and_then(|e| serde_json::from_str::<LogRecord>(&e.payload).ok())
        .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("log {id} has no readable event")))?;
    Ok(record)
}

pub async fn endpoints(db: &DatabaseConnection, project_id: &str) -> ServiceResult<Vec<String>> {
    Ok(log_endpoint::Entity::find()
        .select_only()
        .column(log_endpoint::Column::Endpoint)
        .filter(log_endpoint::Column::ProjectId.eq(project_id))
        .order_by_asc(log_endpoint::Column::Endpoint)
        .into_tuple()
        .all(db)
        .await?)
}

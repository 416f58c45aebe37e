//! Read models built from the event log. Projectors run inside the appending transaction, so a read
//! right after a write sees it; `rebuild` replays the whole log into fresh tables.

mod events;
pub mod exports;
mod logs;
mod projects;
pub mod search;
mod tasks;
pub mod unnest;
mod webhooks;

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, PaginatorTrait};

use crate::domain::log::LogRecord;
use crate::event_log::{DomainEvent, EventPublished, EventStore, SendoutAttempted, SendoutCreated, StoreError, StoredEvent, read_batch};

/// Every projection table, children before parents. `rebuild` empties exactly these.
pub const TABLES: &[&str] = &[
    "event_idempotency", "sendout_attempts", "sendouts", "webhooks", "events", "exports", "imports", "task_errors", "tasks", "log_endpoints", "log_related", "logs", "users", "api_keys",
    "projects", "admin_tokens",
];

/// Applies events in order. Consecutive request logs, and consecutive published events, are written
/// as one multi-row insert each: that is what makes group-committed logging, `POST /v1/logs` and
/// imports cheap.
pub async fn apply(conn: &impl ConnectionTrait, events: &[StoredEvent]) -> Result<(), DbErr> {
    let mut bulk = Bulk::default();
    for stored in events {
        match &stored.event {
            DomainEvent::RequestLogged(record) => bulk.logs.push((stored.seq, record.as_ref())),
            DomainEvent::EventPublished(event) => bulk.published.push((stored, event)),
            DomainEvent::SendoutCreated(sendout) => bulk.sendouts.push((stored, sendout)),
            DomainEvent::SendoutAttempted(attempt) => bulk.attempts.push((stored, attempt)),
            _ => {
                bulk.flush(conn).await?;
                projects::apply(conn, stored).await?;
                tasks::apply(conn, stored).await?;
                exports::apply(conn, stored).await?;
                webhooks::apply(conn, stored).await?;
            }
        }
    }
    bulk.flush(conn).await
}

/// Events that arrive in runs and are written as multi-row inserts.
#[derive(Default)]
struct Bulk<'a> {
    logs: Vec<(i64, &'a LogRecord)>,
    published: Vec<(&'a StoredEvent, &'a EventPublished)>,
    sendouts: Vec<(&'a StoredEvent, &'a SendoutCreated)>,
    attempts: Vec<(&'a StoredEvent, &'a SendoutAttempted)>,
}

impl Bulk<'_> {
    async fn flush(&mut self, conn: &impl ConnectionTrait) -> Result<(), DbErr> {
        logs::insert(conn, &self.logs).await?;
        events::insert(conn, &self.published).await?;
        let keys: Vec<(&str, &str, &str, i64)> = self
            .published
            .iter()
            .filter_map(|(_, e)| Some((e.project_id.as_str(), e.idempotency_key.as_deref()?, e.id.as_str(), e.created_at_ms)))
            .collect();
        webhooks::insert_idempotency(conn, &keys).await?;
        webhooks::insert_sendouts(conn, &self.sendouts).await?;
        webhooks::record_attempts(conn, &self.attempts).await?;
        self.logs.clear();
        self.attempts.clear();
        self.published.clear();
        self.sendouts.clear();
        Ok(())
    }
}

const REBUILD_BATCH: u64 = 2000;

/// Splits `items` into chunks of power-of-two sizes up to `max` (13 rows: 8 + 4 + 1). A multi-row
/// INSERT's text depends on its row count; keeping to a few counts lets the prepared statements be
/// reused from the connection's cache instead of parsed for every batch.
pub fn pow2_chunks<T>(mut items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let mut size = max.min(items.len()).next_power_of_two();
        if size > items.len() {
            size /= 2;
        }
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

/// Empties every projection and replays the log into it, in one transaction: readers keep seeing the
/// old projections until the new ones are complete. Calls `progress(done, total)` as it goes.
pub async fn rebuild(store: &EventStore, mut progress: impl FnMut(u64, u64)) -> Result<u64, StoreError> {
    let writer = store.begin().await?;
    let conn = writer.conn();
    for table in TABLES {
        conn.execute_unprepared(&format!("DELETE FROM {table}")).await?;
    }
    let total = entity::event_log::Entity::find().count(conn).await?;
    let (mut done, mut after) = (0, 0);
    loop {
        let batch = read_batch(conn, after, REBUILD_BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        apply(conn, &batch).await?;
        done += batch.len() as u64;
        progress(done, total);
    }
    writer.commit().await?;
    // The search index is asynchronous: rewound here, refilled by the indexer.
    store.search().reset().await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::pow2_chunks;

    #[test]
    fn chunks_have_power_of_two_sizes_and_keep_every_item_in_order() {
        let items: Vec<u32> = (0..1013).collect();
        let chunks: Vec<&[u32]> = pow2_chunks(&items, 512).collect();
        assert!(chunks.iter().all(|c| c.len().is_power_of_two() && c.len() <= 512));
        assert_eq!(chunks.concat(), items);
        assert_eq!(pow2_chunks(&items[..13], 512).map(<[u32]>::len).collect::<Vec<_>>(), vec![8, 4, 1]);
        assert_eq!(pow2_chunks::<u32>(&[], 512).count(), 0);
    }
}

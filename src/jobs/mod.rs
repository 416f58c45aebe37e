//! Background work that runs in `serve` (unless `--no-workers`) and in `logbook worker`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::task::JoinHandle;

use crate::events::EventStore;
use crate::metrics::Metrics;
use crate::projections::search::SearchIndexer;

/// Events the search indexer takes per transaction: small enough that on SQLite, where it shares the
/// one write lock with request logging, it never holds writers back for long.
const SEARCH_BATCH: u64 = 1000;

/// Background tasks of this process; dropping it stops them (their work is transactional).
pub struct Workers {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

pub fn start(store: EventStore, metrics: Arc<Metrics>) -> Workers {
    let indexed = Counter::default();
    metrics.register("search_indexed_events", "Events consumed by the log search indexer", indexed.clone());
    Workers { tasks: vec![tokio::spawn(run_search_indexer(store, indexed))] }
}

async fn run_search_indexer(store: EventStore, indexed: Counter) {
    let mut indexer = SearchIndexer::default();
    loop {
        match indexer.step(&store, SEARCH_BATCH).await {
            Ok(0) => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(n) => {
                indexed.inc_by(n as u64);
            }
            Err(err) => {
                tracing::warn!(error = %err, "search indexing failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

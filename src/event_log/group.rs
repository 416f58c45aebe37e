//! Group commit: concurrent callers of one kind of write share transactions. Each caller waits
//! until its own item is committed (so an answer still means durable), and every item that arrives
//! while a commit is running goes into the next one: one transaction, one sync to disk and a few
//! round trips for a whole batch instead of for each item. Request logs, published events and
//! delivery attempts are written this way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use sea_orm::DbErr;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{EventStore, StoreError, Writer};
use crate::metrics::Metrics;

/// One kind of write whose items can share a transaction.
pub trait GroupWrite: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Output: Send + 'static;

    /// Writes `items` in `writer`'s transaction (committed by the caller), returning one output per
    /// item, in order. An error fails the whole batch; each item is then written alone, so one bad
    /// item costs only its own caller.
    fn write<'a>(&'a self, writer: &'a Writer, items: &'a [Self::Item]) -> BoxFuture<'a, Result<Vec<Self::Output>, StoreError>>;
}

/// How batches are gathered.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most items one commit takes; more waiting items go into the next.
    pub max: usize,
    /// A commit costs about the same for 5 items as for 50, so when items are arriving together
    /// but fewer than `full` are waiting, the committer waits `delay` for more. A lone item
    /// commits at once.
    pub full: usize,
    pub delay: Duration,
    /// Committers taking turns: while one commits, the next gathers its batch (on PostgreSQL their
    /// transactions also overlap).
    pub committers: usize,
}

impl Default for Batching {
    /// Measured with 128 clients of `GET /v1/project` on SQLite: waiting 1 ms took request-log
    /// commits from 13 to 47 entries and server CPU per request from 221 to 190 µs.
    fn default() -> Self {
        Self { max: 512, full: 64, delay: Duration::from_millis(1), committers: 2 }
    }
}

struct Pending<W: GroupWrite> {
    item: W::Item,
    done: oneshot::Sender<Result<W::Output, StoreError>>,
}

/// The handle callers submit items through; the committers stop once every handle is dropped.
pub struct GroupCommit<W: GroupWrite> {
    tx: mpsc::Sender<Pending<W>>,
    stats: CommitStats,
}

impl<W: GroupWrite> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), stats: self.stats.clone() }
    }
}

/// How group commit goes, for `/metrics`: items per commit and how long a commit takes.
#[derive(Clone)]
struct CommitStats {
    items: Histogram,
    seconds: Histogram,
}

/// Times one item is written again after losing a race to another writer of its stream.
const CONFLICT_RETRIES: usize = 5;

/// Longest a caller waits for its commit before it is told the write failed.
const WAIT: Duration = Duration::from_secs(60);

fn stopped() -> StoreError {
    StoreError::Db(DbErr::Custom("the group committer stopped".into()))
}

impl<W: GroupWrite> GroupCommit<W> {
    pub fn start(store: EventStore, write: W, batching: Batching) -> Self {
        let (tx, rx) = mpsc::channel(16 * batching.max);
        let stats = CommitStats {
            items: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        };
        let shared = Arc::new(Committer { store, write, batching, rx: Mutex::new(rx), stats: stats.clone() });
        for _ in 0..batching.committers.max(1) {
            tokio::spawn(shared.clone().run());
        }
        Self { tx, stats }
    }

    /// `<name>_commit_entries` and `<name>_commit_seconds`.
    pub fn register_metrics(&self, metrics: &Metrics, name: &str, what: &str) {
        metrics.register(&format!("{name}_commit_entries"), &format!("{what} per group commit"), self.stats.items.clone());
        metrics.register(&format!("{name}_commit_seconds"), &format!("Time a group commit of {what} takes"), self.stats.seconds.clone());
    }

    /// Returns once `item` is committed, with its output.
    pub async fn submit(&self, item: W::Item) -> Result<W::Output, StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Pending { item, done }).await.map_err(|_| stopped())?;
        match tokio::time::timeout(WAIT, wait).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(StoreError::Db(DbErr::Custom("the write was not committed within a minute".into()))),
        }
    }
}

struct Committer<W: GroupWrite> {
    store: EventStore,
    write: W,
    batching: Batching,
    rx: Mutex<mpsc::Receiver<Pending<W>>>,
    stats: CommitStats,
}

impl<W: GroupWrite> Committer<W> {
    async fn run(self: Arc<Self>) {
        let Batching { max, full, delay, .. } = self.batching;
        let mut batch = Vec::with_capacity(max);
        loop {
            {
                // One committer gathers at a time; the others are committing meanwhile.
                let mut rx = self.rx.lock().await;
                if rx.recv_many(&mut batch, max).await == 0 {
                    return;
                }
                if (2..full).contains(&batch.len()) {
                    tokio::time::sleep(delay).await;
                    while batch.len() < max {
                        let Ok(pending) = rx.try_recv() else { break };
                        batch.push(pending);
                    }
                }
            }
            let (items, waiting): (Vec<W::Item>, Vec<_>) = batch.drain(..).map(|p| (p.item, p.done)).unzip();
            let started = Instant::now();
            self.stats.items.observe(items.len() as f64);
            let result = self.commit(&items).await;
            // Observed before anyone is answered, so a scrape after an answer counts its commit.
            self.stats.seconds.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(outputs) => {
                    for (done, output) in waiting.into_iter().zip(outputs) {
                        let _ = done.send(Ok(output));
                    }
                }
                // Unreachable, the database would refuse each item alone too, after as long a wait.
                Err(err) if err.unavailable() => {
                    for done in waiting {
                        let _ = done.send(Err(StoreError::Db(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::ConnectionClosed))));
                    }
                    tracing::warn!(error = %err, size = items.len(), "a group commit failed: the database is unavailable");
                }
                Err(err) => {
                    if items.len() > 1 && !matches!(err, StoreError::Conflict(_)) {
                        tracing::warn!(error = %err, size = items.len(), "a group commit failed; writing its items one by one");
                    }
                    for (item, done) in items.iter().zip(waiting) {
                        let _ = done.send(self.commit_alone(item).await);
                    }
                }
            }
        }
    }

    /// Writes one item in a transaction of its own. On PostgreSQL a concurrent append to one of
    /// its streams is a conflict; the write reads what won and is made again, a few times.
    async fn commit_alone(&self, item: &W::Item) -> Result<W::Output, StoreError> {
        let mut conflicts = 0;
        loop {
            match self.commit(std::slice::from_ref(item)).await {
                Ok(mut out) => return out.pop().ok_or_else(stopped),
                Err(StoreError::Conflict(_)) if conflicts < CONFLICT_RETRIES => conflicts += 1,
                Err(err) => return Err(err),
            }
        }
    }

    async fn commit(&self, items: &[W::Item]) -> Result<Vec<W::Output>, StoreError> {
        let writer = self.store.begin().await?;
        let outputs = self.write.write(&writer, items).await?;
        writer.commit().await?;
        Ok(outputs)
    }
}

//! Tells live subscribers that something was committed, on this node at once and, on PostgreSQL,
//! on every node: a statement trigger on the event log sends `NOTIFY logbook_commits` (delivered at
//! commit, one per transaction, no extra round trip), and each node's listener passes it on. A
//! wake-up carries no data: a subscriber reads the log from its own position, which is also how it
//! resumes after a reconnect, so a missed or merged notification loses nothing.

use std::sync::Arc;

use tokio::sync::watch;

/// The PostgreSQL channel the event log's trigger notifies (migration 000012).
pub const CHANNEL: &str = "logbook_commits";

/// A counter of commits seen; subscribers wait for it to change.
#[derive(Clone)]
pub struct Commits {
    tx: Arc<watch::Sender<u64>>,
}

impl Default for Commits {
    fn default() -> Self {
        Self { tx: Arc::new(watch::channel(0).0) }
    }
}

impl Commits {
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// Something was committed (here, or on another node).
    pub fn committed(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Passes on other nodes' commits: listens on [`CHANNEL`] until the process ends. Subscribers
    /// are woken on a reconnect too, since notifications sent meanwhile are gone.
    pub fn listen(&self, pool: sqlx::PgPool) -> tokio::task::JoinHandle<()> {
        let commits = self.clone();
        crate::db::listen(pool, &[CHANNEL], move |_| commits.committed())
    }
}

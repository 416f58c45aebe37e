//! Per-credential rate limits: each key (or user) may make `limit` requests per fixed window, so
//! one noisy integration cannot starve the others. A node admits on its own counts and, on
//! PostgreSQL, adds its counts to a shared table every [`SYNC`] and learns the others' from it; so
//! the limit holds across nodes, overshot at most by what the other nodes admitted since their last
//! sync. SQLite serves one node, whose counts are the whole truth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

use crate::domain::time::now_ms;

/// How often a node shares its counts.
const SYNC: Duration = Duration::from_millis(100);
/// Shared windows older than this are deleted.
const KEEP_MS: i64 = 10 * 60 * 1000;

/// One credential's current window, as this node sees it.
#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: i64,
    /// Admitted here and not yet shared.
    pending: u64,
    /// The shared count at the last sync (every node's, this one's shared part included).
    shared: u64,
}

#[derive(Clone)]
pub struct RateLimiter(Arc<Inner>);

struct Inner {
    limit: u64,
    window_ms: i64,
    windows: Mutex<HashMap<String, Window>>,
}

impl RateLimiter {
    /// `limit` requests per `window` per credential; a limit of 0 admits everything. On
    /// PostgreSQL, starts sharing counts through `db`.
    pub fn start(db: &DatabaseConnection, limit: u32, window: Duration) -> Self {
        let window_ms = (window.as_millis() as i64).max(1);
        let limiter = Self(Arc::new(Inner { limit: u64::from(limit), window_ms, windows: Mutex::default() }));
        if limit > 0 {
            tokio::spawn(sync_forever(limiter.clone(), db.clone()));
        }
        limiter
    }

    /// Counts a request of `credential`; `Err(retry_after)` when its window is full.
    pub fn admit(&self, credential: &str) -> Result<(), Duration> {
        let inner = &self.0;
        if inner.limit == 0 {
            return Ok(());
        }
        let now = now_ms();
        let start_ms = now - now.rem_euclid(inner.window_ms);
        let mut windows = inner.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(credential.to_owned()).or_insert(Window { start_ms, pending: 0, shared: 0 });
        if window.start_ms != start_ms {
            *window = Window { start_ms, pending: 0, shared: 0 };
        }
        if window.shared + window.pending >= inner.limit {
            let left = (start_ms + inner.window_ms - now).max(1) as u64;
            return Err(Duration::from_millis(left));
        }
        window.pending += 1;
        Ok(())
    }

    /// Shares this node's counts and reads everyone's, those of credentials this node has not
    /// seen yet included; drops windows that have ended.
    async fn sync(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        let now = now_ms();
        let current = now - now.rem_euclid(self.0.window_ms);
        let outgoing: Vec<(String, Window)> = {
            let mut windows = self.0.windows.lock().unwrap_or_else(|e| e.into_inner());
            windows.retain(|_, w| w.start_ms >= current);
            windows.iter().filter(|(_, w)| w.pending > 0).map(|(k, w)| (k.clone(), *w)).collect()
        };
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        self.share(db, &outgoing).await?;
        let sql = "SELECT credential, count FROM rate_limit_windows WHERE window_start_ms = $1";
        let rows = db.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, [current.into()])).await?;
        let mut windows = self.0.windows.lock().unwrap_or_else(|e| e.into_inner());
        for row in rows {
            let (credential, count): (String, i64) = (row.try_get("", "credential")?, row.try_get("", "count")?);
            let window = windows.entry(credential).or_insert(Window { start_ms: current, pending: 0, shared: 0 });
            if window.start_ms == current {
                window.shared = window.shared.max(count as u64);
            }
        }
        Ok(())
    }

    /// Adds the pending counts of `outgoing` to the shared table.
    async fn share(&self, db: &DatabaseConnection, outgoing: &[(String, Window)]) -> Result<(), DbErr> {
        for chunk in outgoing.chunks(1000) {
            let mut values = Vec::with_capacity(chunk.len() * 3);
            let rows: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(i, (key, w))| {
                    values.extend([key.as_str().into(), w.start_ms.into(), (w.pending as i64).into()]);
                    format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3)
                })
                .collect();
            let sql = format!(
                "INSERT INTO rate_limit_windows (credential, window_start_ms, count) VALUES {} \
                 ON CONFLICT (credential, window_start_ms) DO UPDATE SET count = rate_limit_windows.count + EXCLUDED.count \
                 RETURNING credential, window_start_ms, count",
                rows.join(", ")
            );
            let mut shared = HashMap::new();
            for row in db.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await? {
                let key: (String, i64) = (row.try_get("", "credential")?, row.try_get("", "window_start_ms")?);
                shared.insert(key, row.try_get::<i64>("", "count")?);
            }
            let mut windows = self.0.windows.lock().unwrap_or_else(|e| e.into_inner());
            for (key, sent) in chunk {
                let count = shared.get(&(key.clone(), sent.start_ms));
                if let (Some(w), Some(count)) = (windows.get_mut(key).filter(|w| w.start_ms == sent.start_ms), count) {
                    w.pending -= sent.pending.min(w.pending);
                    w.shared = w.shared.max(*count as u64);
                }
            }
        }
        Ok(())
    }
}

/// Counts one use of `key` in its shared window that starts at `window_start_ms` (PostgreSQL) and
/// returns the window's count, this use included: an exact limit across nodes for one round trip
/// per use, for the few uses that need one (deliveries to an endpoint with a per-second limit).
/// The windows are deleted with the credentials' ones.
pub async fn count_shared(db: &DatabaseConnection, key: &str, window_start_ms: i64) -> Result<i64, DbErr> {
    let sql = "INSERT INTO rate_limit_windows (credential, window_start_ms, count) VALUES ($1, $2, 1) \
               ON CONFLICT (credential, window_start_ms) DO UPDATE SET count = rate_limit_windows.count + 1 RETURNING count";
    let values = [key.into(), window_start_ms.into()];
    let row = db.query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await?;
    row.ok_or_else(|| DbErr::RecordNotFound("rate limit window".into()))?.try_get("", "count")
}

async fn sync_forever(limiter: RateLimiter, db: DatabaseConnection) {
    let mut last_cleanup = 0;
    loop {
        tokio::time::sleep(SYNC).await;
        if let Err(err) = limiter.sync(&db).await {
            tracing::warn!(error = %err, "rate-limit counts could not be shared; this node limits on its own counts");
        }
        let now = now_ms();
        if db.get_database_backend() == DbBackend::Postgres && now - last_cleanup > KEEP_MS {
            last_cleanup = now;
            // Never the current window's row, however long windows are.
            let keep = KEEP_MS.max(2 * limiter.0.window_ms);
            let sql = "DELETE FROM rate_limit_windows WHERE window_start_ms < $1";
            if let Err(err) = db.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, [(now - keep).into()])).await {
                tracing::warn!(error = %err, "old rate-limit windows could not be deleted");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limit: u64, window_ms: i64) -> RateLimiter {
        RateLimiter(Arc::new(Inner { limit, window_ms, windows: Mutex::default() }))
    }

    #[test]
    fn a_credential_gets_its_limit_per_window_and_others_are_not_affected() {
        let limiter = limiter(3, 60_000);
        for _ in 0..3 {
            assert!(limiter.admit("key_a").is_ok());
        }
        let wait = limiter.admit("key_a").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60), "{wait:?}");
        assert!(limiter.admit("key_b").is_ok(), "another key has its own window");
    }

    #[test]
    fn what_other_nodes_admitted_counts_and_a_new_window_starts_afresh() {
        let limiter = limiter(3, 60_000);
        assert!(limiter.admit("key_a").is_ok());
        {
            let mut windows = limiter.0.windows.lock().unwrap();
            let w = windows.get_mut("key_a").unwrap();
            // A sync: this node's one request is shared, and another node admitted two.
            w.pending = 0;
            w.shared = 3;
        }
        assert!(limiter.admit("key_a").is_err());
        limiter.0.windows.lock().unwrap().get_mut("key_a").unwrap().start_ms -= 60_000;
        assert!(limiter.admit("key_a").is_ok(), "the next window starts empty");
    }

    #[test]
    fn a_limit_of_zero_admits_everything() {
        let limiter = limiter(0, 1000);
        assert!((0..10_000).all(|_| limiter.admit("key_a").is_ok()));
    }
}

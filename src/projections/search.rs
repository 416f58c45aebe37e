//! The log body search index, kept asynchronously: an indexer follows the event log from its
//! checkpoint, and a search reads the index up to the checkpoint plus the not-yet-indexed tail
//! straight from the log, so results are complete whatever the indexer's lag. PostgreSQL keeps it in
//! the application database (`pg_trgm` GIN); SQLite in a file of its own (FTS5 `trigram`, see
//! `db::connect_search`).

use std::time::{Duration, Instant};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode, Statement, TransactionOptions,
    TransactionTrait, Value,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::Settings;
use crate::dialect::{for_update, ph};
use crate::projections::unnest::Unnest;

pub const CHECKPOINT: &str = "log_search";
const LOG_EVENT: &str = "request.logged";

/// On PostgreSQL a sequence number is taken at insert but becomes visible at commit, so a gap may be
/// a transaction still committing. The indexer waits this long for a gap before taking it for a
/// rolled-back (or purged) number.
const GAP_PATIENCE: Duration = Duration::from_secs(10);

/// The SQLite index file's tables (PostgreSQL's are made by the migrations). One contentless FTS5
/// table per body (the bodies stay in the event log), rowid = the event's `seq`. `detail=none`
/// keeps only which rows hold each trigram, not where: about half the indexing work. A search
/// takes the rows holding all of a needle's trigrams as candidates and checks them against the
/// stored body, so the result is exact (and a row left behind by a purge matches nothing).
const SQLITE_SCHEMA: &[&str] = &[
    "CREATE VIRTUAL TABLE IF NOT EXISTS main.log_search_request USING fts5(
        body, content='', contentless_delete=1, detail=none, tokenize='trigram')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS main.log_search_response USING fts5(
        body, content='', contentless_delete=1, detail=none, tokenize='trigram')",
    // Measured indexing 100,000 logs' bodies (python, SQLite 3.51): 9,800 logs/s with the
    // defaults and statements of 1,024 rows; 12,500 with one statement per batch, a 32 MiB hash
    // (one segment per batch) and merges of 8 segments instead of 4 (fewer merge passes).
    "INSERT INTO main.log_search_request (log_search_request, rank) VALUES ('hashsize', 33554432), ('automerge', 8)",
    "INSERT INTO main.log_search_response (log_search_response, rank) VALUES ('hashsize', 33554432), ('automerge', 8)",
    "CREATE TABLE IF NOT EXISTS main.projection_checkpoints (name TEXT PRIMARY KEY, last_seq BIGINT NOT NULL)",
];

/// The body-search index and the connection it is kept through (see `db::connect_search`).
#[derive(Clone)]
pub struct SearchIndex {
    db: DatabaseConnection,
}

impl SearchIndex {
    /// Opens the index. On SQLite it creates the index file's tables; an index ahead of the event
    /// log (a database restored from an older copy beside a newer index) starts over.
    pub async fn open(main: &DatabaseConnection, settings: &Settings) -> anyhow::Result<Self> {
        let db = crate::db::connect_search(main, settings).await?;
        if db.get_database_backend() == DbBackend::Sqlite {
            for sql in SQLITE_SCHEMA {
                db.execute_unprepared(sql).await?;
            }
        }
        let index = Self { db };
        if read_checkpoint(&index.db, Lock::None).await?.is_none() {
            index.restart().await?;
        }
        if index.checkpoint().await? > top_seq(&index.db).await? {
            tracing::warn!("the search index is ahead of the event log; rebuilding it");
            index.reset().await?;
        }
        Ok(index)
    }

    /// The connection searches run on (it reads the event log too).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The position up to which the index is complete (0 while it is being started over).
    pub async fn checkpoint(&self) -> Result<i64, DbErr> {
        Ok(read_checkpoint(&self.db, Lock::None).await?.unwrap_or(0))
    }

    /// Events the index has not yet covered.
    pub async fn lag(&self) -> Result<i64, DbErr> {
        let covered = self.checkpoint().await?;
        Ok((top_seq(&self.db).await? - covered).max(0))
    }

    /// Empties the index and rewinds its checkpoint, so the indexer rebuilds it from the log.
    pub async fn reset(&self) -> Result<(), DbErr> {
        tracing::info!("search index emptied; the indexer rebuilds it from the event log");
        let txn = write_transaction(&self.db).await?;
        empty(&txn).await?;
        txn.commit().await
    }

    /// Starts the index over when its checkpoint is gone: on PostgreSQL both are unlogged, and crash
    /// recovery empties them together (migration 000010). Whatever the index still holds is dropped
    /// with it, so the rebuild meets no rows of its own. Returns the checkpoint, 0 unless another
    /// indexer restored it first.
    async fn restart(&self) -> Result<i64, DbErr> {
        let txn = write_transaction(&self.db).await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            // Indexers on other nodes meeting the same loss take turns here.
            txn.execute_unprepared("LOCK TABLE projection_checkpoints IN SHARE ROW EXCLUSIVE MODE").await?;
        }
        if let Some(last) = read_checkpoint(&txn, Lock::None).await? {
            return Ok(last);
        }
        tracing::info!("the search index has no checkpoint (a new index, or one emptied by crash recovery); indexing the event log from the start");
        empty(&txn).await?;
        txn.commit().await?;
        Ok(0)
    }

    /// Removes purged logs. Called after the purge committed; a row left behind (the process died
    /// in between) is harmless, since every candidate is checked against the event log.
    pub async fn forget(&self, seqs: &[i64]) -> Result<(), DbErr> {
        if seqs.is_empty() {
            return Ok(());
        }
        let list = seqs.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let statements = match self.db.get_database_backend() {
            DbBackend::Postgres => vec![format!("DELETE FROM log_search WHERE seq IN ({list})")],
            _ => vec![
                format!("DELETE FROM log_search_request WHERE rowid IN ({list})"),
                format!("DELETE FROM log_search_response WHERE rowid IN ({list})"),
            ],
        };
        let txn = write_transaction(&self.db).await?;
        for sql in statements {
            txn.execute_unprepared(&sql).await?;
        }
        txn.commit().await
    }

    /// Leaves no trace of forgotten rows in SQLite's index file: a contentless FTS5 delete only
    /// marks the row, its trigrams staying in the segments until a merge rewrites them, so every
    /// segment is merged into one (`optimize`, which drops marked rows; with `secure_delete` the
    /// freed pages are zeroed), and the file's WAL is emptied. It rewrites the whole index, so the
    /// indexer waits meanwhile (searches stay complete: they read the log past the checkpoint).
    /// On PostgreSQL the index is a table; its dead rows go with vacuum.
    pub async fn compact(&self) -> Result<bool, DbErr> {
        if self.db.get_database_backend() == DbBackend::Postgres {
            return Ok(true);
        }
        let txn = write_transaction(&self.db).await?;
        for table in ["log_search_request", "log_search_response"] {
            txn.execute_unprepared(&format!("INSERT INTO main.{table} ({table}) VALUES ('optimize')")).await?;
        }
        txn.commit().await?;
        crate::db::truncate_derived_wal(&self.db, 10).await
    }
}

/// A write transaction on the index. On SQLite it takes the file's write lock at `BEGIN`: FTS5 reads
/// its own tables before it writes, and a transaction that has read cannot wait for the lock
/// (SQLite answers `SQLITE_BUSY` at once rather than risk a deadlock), so a reset or a purge that
/// met the indexer mid-batch failed ("database is locked", 2 runs in 20 of the purge test).
async fn write_transaction(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions { sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate), ..Default::default() })
        .await
}

/// Deletes every indexed body and sets the checkpoint to 0 (creating it if it is gone).
async fn empty(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    if backend == DbBackend::Postgres {
        txn.execute_unprepared("DELETE FROM log_search").await?;
    } else {
        txn.execute_unprepared("DELETE FROM log_search_request").await?;
        txn.execute_unprepared("DELETE FROM log_search_response").await?;
    }
    let table = checkpoints(backend);
    txn.execute_unprepared(&format!(
        "INSERT INTO {table} (name, last_seq) VALUES ('{CHECKPOINT}', 0) ON CONFLICT (name) DO UPDATE SET last_seq = 0"
    ))
    .await?;
    Ok(())
}

/// The newest position in the event log.
async fn top_seq(conn: &impl ConnectionTrait) -> Result<i64, DbErr> {
    let backend = conn.get_database_backend();
    let row = conn.query_one_raw(Statement::from_string(backend, "SELECT COALESCE(MAX(seq), 0) AS top FROM event_log")).await?;
    Ok(row.map(|r| r.try_get("", "top")).transpose()?.unwrap_or(0))
}

#[derive(Default)]
pub struct SearchIndexer {
    gap: Option<(i64, Instant)>,
    /// The last checkpoint this indexer committed: the checkpoint never goes back below it but
    /// through `SearchIndex::reset`.
    committed: i64,
}

#[derive(Deserialize)]
struct Bodies<'a> {
    #[serde(borrow, default)]
    request_body: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response_body: Option<&'a RawValue>,
}

/// The text a body is searched in: a string as is, JSON as its compact text. The stored event
/// holds exactly that text, so it is taken verbatim instead of parsed and written out again.
fn text(body: Option<&RawValue>) -> Option<String> {
    let raw = body?.get();
    if raw.starts_with('"') { serde_json::from_str(raw).ok() } else { Some(raw.to_owned()) }
}

impl SearchIndexer {
    /// Indexes up to `batch` events past the checkpoint in one transaction; returns how many it
    /// consumed (0 when caught up).
    pub async fn step(&mut self, index: &SearchIndex, batch: u64) -> Result<usize, DbErr> {
        let db = &index.db;
        let backend = db.get_database_backend();
        // On PostgreSQL the indexers of a cluster's nodes take turns before reading anything: the
        // one that locks the checkpoint reads and indexes the batch, the others skip this round
        // (they would only read the same events to find the checkpoint moved). On SQLite the
        // events are read before the transaction: a read kept open while the bodies are indexed
        // would keep SQLite from restarting its WAL (readers of old snapshots hold it back).
        let (turn, last) = if backend == DbBackend::Postgres {
            let txn = db.begin().await?;
            match read_checkpoint(&txn, Lock::SkipLocked).await? {
                Some(last) => (Some(txn), last),
                None if read_checkpoint(db, Lock::None).await?.is_some() => return Ok(0),
                None => (None, index.restart().await?),
            }
        } else {
            match read_checkpoint(db, Lock::None).await? {
                Some(last) => (None, last),
                None => (None, index.restart().await?),
            }
        };
        if last < self.committed {
            tracing::warn!(last, committed = self.committed, "the search index checkpoint went back; indexing again from it");
        }
        let read = Statement::from_sql_and_values(
            backend,
            format!(
                // Only request logs have bodies to index; other payloads are not even read.
                "SELECT seq, CASE WHEN event_type = {} THEN payload END AS payload FROM event_log \
                 WHERE seq > {} ORDER BY seq LIMIT {}",
                ph(backend, 1),
                ph(backend, 2),
                ph(backend, 3)
            ),
            [LOG_EVENT.into(), last.into(), (batch as i64).into()],
        );
        let rows = match &turn {
            Some(txn) => txn.query_all_raw(read).await?,
            None => db.query_all_raw(read).await?,
        };

        let mut next = last;
        let mut docs: Vec<(i64, Option<String>, Option<String>)> = Vec::new();
        for row in rows {
            let seq: i64 = row.try_get("", "seq")?;
            if seq != next + 1 && !self.gap_expired(next + 1) {
                break;
            }
            next = seq;
            if let Some(payload) = row.try_get::<Option<String>>("", "payload")?
                && let Ok(bodies) = serde_json::from_str::<Bodies>(&payload) {
                    let (req, res) = (text(bodies.request_body), text(bodies.response_body));
                    if req.is_some() || res.is_some() {
                        docs.push((seq, req, res));
                    }
                }
        }
        if next == last {
            return Ok(0);
        }
        self.gap = None;
        let txn = match turn {
            Some(txn) => txn,
            // On SQLite a deferred transaction on the index file alone (after a restart on
            // PostgreSQL, a locked one). The checkpoint must still be the one read above.
            None => {
                let txn = write_transaction(db).await?;
                if read_checkpoint(&txn, Lock::Wait).await? != Some(last) {
                    return Ok(0);
                }
                txn
            }
        };
        insert_docs(&txn, backend, &docs).await?;
        // Compare and set: the checkpoint only ever moves forward from the one read.
        let moved = txn
            .execute_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "UPDATE {} SET last_seq = {} WHERE name = {} AND last_seq = {}",
                    checkpoints(backend),
                    ph(backend, 1),
                    ph(backend, 2),
                    ph(backend, 3)
                ),
                [next.into(), CHECKPOINT.into(), last.into()],
            ))
            .await?
            .rows_affected();
        if moved != 1 {
            return Ok(0);
        }
        txn.commit().await?;
        self.committed = next;
        Ok((next - last) as usize)
    }

    /// Whether the missing `seq` has stayed missing long enough to be skipped.
    fn gap_expired(&mut self, seq: i64) -> bool {
        match self.gap {
            Some((s, since)) if s == seq => since.elapsed() >= GAP_PATIENCE,
            _ => {
                self.gap = Some((seq, Instant::now()));
                false
            }
        }
    }
}

/// Writes indexed bodies: on PostgreSQL one row per log, on SQLite one row per body and table.
async fn insert_docs(conn: &impl ConnectionTrait, backend: DbBackend, docs: &[(i64, Option<String>, Option<String>)]) -> Result<(), DbErr> {
    if docs.is_empty() {
        return Ok(());
    }
    if backend == DbBackend::Postgres {
        // Stored case-folded (the same folding as the needles'): a row check is then a plain
        // `LIKE` on the body, not `ILIKE` on the whole stored event (see `row_matches`).
        Unnest::insert_into("log_search")
            .big_int("seq", docs.iter().map(|d| d.0))
            .optional_text("request_body", docs.iter().map(|d| d.1.as_deref().map(str::to_lowercase)))
            .optional_text("response_body", docs.iter().map(|d| d.2.as_deref().map(str::to_lowercase)))
            .exec(conn, None)
            .await?;
        return Ok(());
    }
    for (table, pick) in [("log_search_request", 0), ("log_search_response", 1)] {
        let bodies: Vec<(i64, &String)> =
            docs.iter().filter_map(|(seq, req, res)| Some((*seq, if pick == 0 { req.as_ref()? } else { res.as_ref()? }))).collect();
        // FTS5 writes its pending terms out as a new segment at every statement (and whenever they
        // outgrow its hash size, raised in `SQLITE_SCHEMA`), and later merges segments: one
        // statement per batch leaves the least merging. `json_each` keeps that statement's text
        // fixed and its bound values to one, whatever the batch size.
        let rows = serde_json::to_string(&bodies).map_err(|e| DbErr::Custom(e.to_string()))?;
        let sql = format!("INSERT INTO {table} (rowid, body) SELECT value ->> 0, value ->> 1 FROM json_each(?)");
        conn.execute_raw(Statement::from_sql_and_values(backend, sql, [rows.into()])).await?;
    }
    Ok(())
}

/// How the checkpoint is read: locked for the rest of the transaction on PostgreSQL (SQLite's single
/// writer needs no row lock), waiting for another holder or not.
#[derive(Clone, Copy)]
enum Lock {
    None,
    Wait,
    /// No row when another transaction holds it.
    SkipLocked,
}

/// The checkpoint. `None` when its row is gone, which only [`SearchIndex::restart`] answers: it
/// empties the index too, as a rewound checkpoint alone would meet indexed rows again.
async fn read_checkpoint(conn: &impl ConnectionTrait, lock: Lock) -> Result<Option<i64>, DbErr> {
    let backend = conn.get_database_backend();
    let lock = match lock {
        Lock::None => "",
        Lock::Wait => for_update(backend),
        Lock::SkipLocked if backend == DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        Lock::SkipLocked => "",
    };
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            format!("SELECT last_seq FROM {} WHERE name = {}{lock}", checkpoints(backend), ph(backend, 1)),
            [CHECKPOINT.into()],
        ))
        .await?;
    row.map(|r| r.try_get("", "last_seq")).transpose()
}

/// The checkpoint table. On SQLite the one in the index file, named with its schema: the main file
/// had a table of that name too (before migration 000008), and an unqualified name must never
/// reach it.
fn checkpoints(backend: DbBackend) -> &'static str {
    if backend == DbBackend::Postgres { "projection_checkpoints" } else { "main.projection_checkpoints" }
}

/// Which body a search looks in.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    Request,
    Response,
}

impl Body {
    fn column(self) -> &'static str {
        match self {
            Body::Request => "request_body",
            Body::Response => "response_body",
        }
    }
}

/// SQL selecting the `seq` of every log event whose `body` contains any of `needles`
/// (case-insensitive), with its bound values: the index up to `covered`, the log after. It is not
/// scoped to a project (the caller's query on `logs` is): the only access paths left are the index
/// and the event positions, which keeps planners from scanning a project's whole log instead.
/// Placeholders start at 1.
pub fn matching_seqs(backend: DbBackend, body: Body, needles: &[String], covered: i64) -> (String, Vec<Value>) {
    let column = body.column();
    let mut values: Vec<Value> = Vec::new();
    let mut bind = |v: Value| {
        values.push(v);
        ph(backend, values.len())
    };
    // Trigram lookups need at least three characters; a shorter needle searches the whole log.
    let covered = if needles.iter().any(|n| n.chars().count() < 3) { 0 } else { covered };

    // Bound in text order: SQLite's `?` placeholders are positional.
    let indexed = if covered == 0 {
        None
    } else if backend == DbBackend::Postgres {
        let likes: Vec<String> =
            needles.iter().map(|n| format!("{column} LIKE {} ESCAPE '!'", bind(like_pattern(n).into()))).collect();
        Some(format!("SELECT seq FROM log_search WHERE {}", likes.join(" OR ")))
    } else {
        // Candidates hold every trigram of a needle; the stored body decides.
        let (table, query) = fts_match(body, needles);
        let candidates = format!("SELECT rowid FROM {table} WHERE {table} MATCH {} AND rowid <= {}", bind(query.into()), bind(covered.into()));
        let contains = any_contains(backend, "payload", body, needles, &mut bind);
        // CROSS JOIN fixes the loop order in SQLite: candidates outside, one lookup each. (As
        // `seq IN (…)` the planner read the whole event log at a million rows.)
        Some(format!("SELECT e.seq FROM ({candidates}) AS c CROSS JOIN event_log e ON e.seq = c.rowid WHERE {contains}"))
    };
    let after = bind(covered.into());
    let contains = any_contains(backend, "payload", body, needles, &mut bind);
    let tail = format!("SELECT seq FROM event_log WHERE seq > {after} AND event_type = '{LOG_EVENT}' AND {contains}");
    let sql = match indexed {
        // UNION ALL lets a capped probe stop early; a row an indexer batch put in both parts
        // meanwhile is a harmless duplicate in an IN list (and removed from listed matches).
        Some(indexed) => format!("{indexed} UNION ALL {tail}"),
        None => tail,
    };
    (sql, values)
}

/// SQL counting the matches (`n`) among the newest `sample` logs that have the body: how densely
/// the needles occur. Bodies over 16 KiB (the server's own list responses, say) are left out:
/// checking them would cost more than the sample tells. PostgreSQL samples its index table, which
/// holds only logs with a body, already extracted (the server's own body-less requests would
/// otherwise make every needle look rare, and a common one was then listed through the whole index:
/// 4.5 s).
pub fn sample_matches(backend: DbBackend, body: Body, needles: &[String], sample: u64) -> (String, Vec<Value>) {
    let mut values: Vec<Value> = Vec::new();
    let mut bind = |v: Value| {
        values.push(v);
        ph(backend, values.len())
    };
    let column = body.column();
    let (newest, contains) = if backend == DbBackend::Postgres {
        let newest = format!(
            "SELECT {column} FROM log_search s WHERE {column} IS NOT NULL AND octet_length({column}) <= 16384 \
             ORDER BY seq DESC LIMIT {sample}"
        );
        (newest, folded_contains("s", body, needles, &mut bind))
    } else {
        let newest = format!(
            "SELECT payload FROM event_log WHERE event_type = '{LOG_EVENT}' AND octet_length(payload) <= 16384 \
             ORDER BY seq DESC LIMIT {sample}"
        );
        (newest, any_contains(backend, "payload", body, needles, &mut bind))
    };
    (format!("SELECT COUNT(*) AS n FROM ({newest}) AS s WHERE {contains}"), values)
}

/// SQL counting, up to `cap`, the rows of SQLite's index holding every trigram of some needle:
/// candidates, before they are checked against the stored body. `None` where the index cannot tell
/// (PostgreSQL's index checks bodies itself; needles under three characters).
pub fn candidate_count(backend: DbBackend, body: Body, needles: &[String], covered: i64, cap: u64) -> Option<(String, Vec<Value>)> {
    if backend == DbBackend::Postgres || covered == 0 || needles.iter().any(|n| n.chars().count() < 3) {
        return None;
    }
    let (table, query) = fts_match(body, needles);
    let sql = format!("SELECT COUNT(*) AS n FROM (SELECT rowid FROM {table} WHERE {table} MATCH ? AND rowid <= ? LIMIT {cap})");
    Some((sql, vec![query.into(), covered.into()]))
}

/// Whether a log's `body` contains any of `needles`, as a condition on the row of `logs` being
/// filtered: for searches that match too many rows to list. On PostgreSQL an indexed log is
/// checked against its case-folded body in the index table (plain `LIKE` on the body: measured
/// 10 µs a row, where `ILIKE` on the stored event took 20–58 µs); the rest against the event log.
pub fn row_matches(backend: DbBackend, body: Body, needles: &[String], covered: i64) -> (String, Vec<Value>) {
    let mut values: Vec<Value> = Vec::new();
    let mut bind = |v: Value| {
        values.push(v);
        ph(backend, values.len())
    };
    let seq = "\"logs\".\"event_seq\"";
    // Scalar subqueries, not EXISTS: PostgreSQL turns EXISTS into a semi-join and then reads the
    // whole event log for a page (measured 4 s); these stay a lookup per row checked.
    let contains = any_contains(backend, "e.payload", body, needles, &mut bind);
    let in_log = format!("(SELECT {contains} FROM event_log e WHERE e.seq = {seq})");
    let sql = if backend == DbBackend::Postgres && covered > 0 {
        let folded = folded_contains("s", body, needles, &mut bind);
        format!("CASE WHEN {seq} <= {covered} THEN (SELECT {folded} FROM log_search s WHERE s.seq = {seq}) ELSE {in_log} END")
    } else {
        in_log
    };
    (sql, values)
}

/// PostgreSQL: whether the case-folded `body` of index row `alias` contains any of `needles`.
fn folded_contains(alias: &str, body: Body, needles: &[String], bind: &mut impl FnMut(Value) -> String) -> String {
    let column = body.column();
    let likes: Vec<String> = needles.iter().map(|n| format!("{alias}.{column} LIKE {} ESCAPE '!'", bind(like_pattern(n).into()))).collect();
    format!("({})", likes.join(" OR "))
}

/// Whether the `body` of the log event whose stored JSON is `payload` contains any of `needles`,
/// case-insensitively; `bind` takes a value and returns its placeholder.
fn any_contains(backend: DbBackend, payload: &str, body: Body, needles: &[String], bind: &mut impl FnMut(Value) -> String) -> String {
    let extract = match backend {
        // `json`, not `jsonb`: it returns the stored text as written, as the index holds it.
        DbBackend::Postgres => format!("LOWER(CAST({payload} AS json) ->> '{}')", body.column()),
        _ => format!("LOWER(json_extract({payload}, '$.{}'))", body.column()),
    };
    let likes: Vec<String> = needles
        .iter()
        .map(|n| {
            let pattern = like_pattern(n);
            if !appears_verbatim_in_json(n) {
                return format!("{extract} LIKE {} ESCAPE '!'", bind(pattern.into()));
            }
            // A cheap test on the raw stored text first: it rules out most rows without decoding
            // their JSON, and cannot rule out a match (the needle is stored unescaped).
            let raw = match backend {
                DbBackend::Postgres => format!("{payload} ILIKE {} ESCAPE '!'", bind(pattern.clone().into())),
                _ => format!("{payload} LIKE {} ESCAPE '!'", bind(pattern.clone().into())),
            };
            format!("({raw} AND {extract} LIKE {} ESCAPE '!')", bind(pattern.into()))
        })
        .collect();
    format!("({})", likes.join(" OR "))
}

/// A LIKE pattern finding `needle` anywhere, case folded.
fn like_pattern(needle: &str) -> String {
    format!("%{}%", escape_like(&needle.to_lowercase()))
}

/// Whether `needle` is written as is inside JSON text: serde_json escapes only `"`, `\` and control
/// characters. (Case is not an issue: the raw test is case-insensitive like the exact one.)
fn appears_verbatim_in_json(needle: &str) -> bool {
    !needle.chars().any(|c| c == '"' || c == '\\' || c.is_control())
}

/// SQLite's FTS table of `body`, and the query for rows holding every trigram of some needle.
fn fts_match(body: Body, needles: &[String]) -> (String, String) {
    let table = format!("log_search_{}", body.column().trim_end_matches("_body"));
    let query = needles.iter().map(|n| format!("({})", trigram_query(n))).collect::<Vec<_>>().join(" OR ");
    (table, query)
}

/// An FTS5 query requiring every trigram of `needle` (at least three characters long).
fn trigram_query(needle: &str) -> String {
    let chars: Vec<char> = needle.to_lowercase().chars().collect();
    let mut grams: Vec<String> = chars.windows(3).map(|w| w.iter().collect::<String>()).collect();
    grams.sort();
    grams.dedup();
    grams.iter().map(|g| format!("\"{}\"", g.replace('"', "\"\""))).collect::<Vec<_>>().join(" AND ")
}

/// `!` is the LIKE escape character: a backslash reads differently in SQLite and PostgreSQL.
fn escape_like(text: &str) -> String {
    text.replace('!', "!!").replace('%', "!%").replace('_', "!_")
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_searched_as_its_string_or_its_compact_json() {
        let event = serde_json::json!({
            "request_body": {"note": "say \"hi\"", "n": 1},
            "response_body": "line one\nzwei ü",
            "request_headers": {"x": "y"},
        });
        let payload = event.to_string();
        let bodies: Bodies = serde_json::from_str(&payload).unwrap();
        assert_eq!(text(bodies.request_body).as_deref(), Some(event["request_body"].to_string().as_str()));
        assert_eq!(text(bodies.response_body).as_deref(), Some("line one\nzwei ü"));
        let empty: Bodies = serde_json::from_str(r#"{"request_body": null}"#).unwrap();
        assert_eq!((text(empty.request_body), text(empty.response_body)), (None, None));
    }
}

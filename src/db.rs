//! Opens the database: embedded SQLite by default, PostgreSQL through `DATABASE_URL`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, SqlxPostgresConnector, SqlxSqliteConnector, Statement};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::config::Settings;

/// SQLite's one writer at a time: the event store holds it for every write transaction (queueing
/// writers here is fairer than SQLite's busy handler), and the checkpointer to restart the WAL,
/// which needs a moment without writers.
pub type SqliteWriteLock = Arc<tokio::sync::Mutex<()>>;

/// How the event store writes to a SQLite file: it takes `lock`, then writes through `db`, a pool
/// of one connection of its own. Only holders of the lock use that connection, so a writer never
/// queues for a connection behind readers: from the shared pool, a busy API (128 clients reading
/// their keys) kept the request-log writer waiting 2 ms per group commit for one, a third of its time.
#[derive(Clone)]
pub struct SqliteWriter {
    pub lock: SqliteWriteLock,
    pub db: DatabaseConnection,
}

/// Opens the database; for SQLite also the write lock its users share.
pub async fn connect(settings: &Settings) -> anyhow::Result<(DatabaseConnection, Option<SqliteWriter>)> {
    match &settings.database_url {
        Some(url) if url.starts_with("postgres") => {
            // Plan every execution for its actual values: a cached generic plan cannot tell a rare
            // search term or a selective filter pair from a common one and picked scans (measured
            // 300 ms instead of a few) in the benchmark.
            let options = PgConnectOptions::from_str(url)
                .with_context(|| format!("DATABASE_URL {} is not a PostgreSQL URL", redact_url(url)))?
                .options([("plan_cache_mode", "force_custom_plan")])
                // A runaway query is cancelled by the database rather than holding a connection.
                .options([("statement_timeout", settings.db_statement_timeout.as_millis().to_string())]);
            let pool = PgPoolOptions::new()
                .max_connections(settings.db_pool_size)
                // While the database is unreachable a request waits this long, then answers 503.
                .acquire_timeout(settings.db_acquire_timeout)
                .connect_with(options)
                .await
                .with_context(|| format!("cannot connect to PostgreSQL at {}", redact_url(url)))?;
            spawn_analyzer(pool.clone());
            Ok((SqlxPostgresConnector::from_sqlx_postgres_pool(pool), None))
        }
        Some(url) => connect_sqlite(SqliteConnectOptions::from_str(url)?, settings).await,
        None => {
            std::fs::create_dir_all(&settings.data_dir)
                .with_context(|| format!("cannot create the data folder {}", settings.data_dir.display()))?;
            let path = settings.data_dir.join("logbook.db");
            connect_sqlite(SqliteConnectOptions::new().filename(path), settings).await
        }
    }
}

async fn connect_sqlite(
    options: SqliteConnectOptions,
    settings: &Settings,
) -> anyhow::Result<(DatabaseConnection, Option<SqliteWriter>)> {
    // WAL lets readers run beside the one writer; synchronous=FULL makes every commit survive a power
    // cut, which group commit keeps cheap. These are set on every connection the pool opens.
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true)
        .pragma("temp_store", "memory")
        // Deleted and overwritten content is zeroed, not left in free space: a retention purge or
        // an erasure leaves no readable copy in the file.
        .pragma("secure_delete", "on")
        // Checkpoints run in the background (below), not inside whichever commit crosses the limit.
        .pragma("wal_autocheckpoint", "0")
        // `ANALYZE` (run by the checkpointer) samples this many rows per index.
        .pragma("analysis_limit", "1000")
        // 16 MiB of page cache per connection: the working set of the hot indexes stays in memory
        // while a busy pool still fits in a small server (the OS page cache holds the rest).
        .pragma("cache_size", "-16384");
    // A connection loads the planner's statistics when it opens and keeps them: one opened while
    // the tables were empty planned a listed body search as a walk over every log (0.5 s at a
    // million logs, where current statistics give 0.1 ms). So a connection opened before the last
    // `ANALYZE` is replaced when it is next taken from the pool.
    let analyzed = StatisticsAge::default();
    let pool = |size: u32| {
        let analyzed = analyzed.clone();
        SqlitePoolOptions::new()
            .max_connections(size)
            .acquire_timeout(Duration::from_secs(30))
            .before_acquire(move |_, meta| {
                let current = analyzed.opened_since(meta.age);
                Box::pin(async move { Ok(current) })
            })
            .after_connect(|conn, _| Box::pin(async move { enable_stable_plans(conn).await }))
            .connect_with(options.clone())
    };
    let readers = pool(settings.db_pool_size).await.context("cannot open the SQLite database")?;
    let writer = pool(1).await.context("cannot open the SQLite database for writing")?;
    let lock = SqliteWriteLock::default();
    spawn_checkpointer(readers.clone(), lock.clone(), analyzed);
    let writer = SqliteWriter { lock, db: SqlxSqliteConnector::from_sqlx_sqlite_pool(writer) };
    Ok((SqlxSqliteConnector::from_sqlx_sqlite_pool(readers), Some(writer)))
}

/// When SQLite's planner statistics were last refreshed.
#[derive(Clone, Default)]
struct StatisticsAge(Arc<std::sync::Mutex<Option<Instant>>>);

impl StatisticsAge {
    fn refreshed(&self) {
        if let Ok(mut at) = self.0.lock() {
            *at = Some(Instant::now());
        }
    }

    /// Whether a connection of age `age` was opened after the last refresh (and so loaded it).
    fn opened_since(&self, age: Duration) -> bool {
        self.0.lock().map(|at| at.is_none_or(|at| at.elapsed() >= age)).unwrap_or(true)
    }
}

/// The connection the log search index is kept through (see `projections::search`). PostgreSQL:
/// the application database. SQLite: a file of its own beside the database (`logbook-search.db` for
/// `logbook.db`), with its own WAL and write lock, so indexing runs beside the one writer of the
/// main file instead of taking turns with it. Its connections open the index file and attach the
/// main file read-only as `log`; SQLite resolves unqualified names through attached databases, so
/// the index's SQL reads the same on both backends. The index is derived data: a lost or stale
/// file is rebuilt from the event log.
pub async fn connect_search(main: &DatabaseConnection, settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    if main.get_database_backend() == DbBackend::Postgres {
        return Ok(main.clone());
    }
    let main_path = sqlite_path(main)?;
    let index_path = beside(&main_path, "search");
    let main_uri = url::Url::from_file_path(&main_path)
        .map_err(|()| anyhow::anyhow!("{} is not an absolute path", main_path.display()))?;
    let main_uri = format!("{main_uri}?mode=ro");
    // A commit lost to a power cut is indexed again: the checkpoint lives in the same file.
    let options = derived_file(&index_path).pragma("cache_size", "-16384");
    let pool = derived_pool(settings)
        .after_connect(move |conn, _| {
            let main_uri = main_uri.clone();
            Box::pin(async move {
                sqlx::query("ATTACH DATABASE ? AS log").bind(main_uri).execute(&mut *conn).await?;
                enable_stable_plans(conn).await
            })
        })
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open the search index {}", index_path.display()))?;
    Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
}

/// The pool apalis keeps its job queues in. PostgreSQL: the application database. SQLite: a file of
/// its own beside the database (`logbook-jobs.db`). apalis claims jobs with an `UPDATE`, and on
/// SQLite every `UPDATE`, even one that claims nothing, takes the file's one write lock, outside
/// the event store's queue: in the main file, idle pollers (the delivery queue's 50 a second)
/// stalled request logging, and waited up to 17 s for the lock themselves, in a million-log
/// ingest. Nothing needs a job and an event in one transaction: a job is queued after its task or
/// sendout is committed, and the sweeper queues again what a crash lost in between.
pub async fn connect_jobs(main: &DatabaseConnection, settings: &Settings) -> anyhow::Result<Option<sqlx::SqlitePool>> {
    if main.get_database_backend() == DbBackend::Postgres {
        return Ok(None);
    }
    let path = beside(&sqlite_path(main)?, "jobs");
    // A job lost to a power cut is queued again by the sweeper.
    let pool = derived_pool(settings)
        .connect_with(derived_file(&path))
        .await
        .with_context(|| format!("cannot open the job queue {}", path.display()))?;
    Ok(Some(pool))
}

/// The main SQLite file, resolved (a file beside it belongs to the same database).
fn sqlite_path(main: &DatabaseConnection) -> anyhow::Result<std::path::PathBuf> {
    let path = main.get_sqlite_connection_pool().connect_options().get_filename().to_owned();
    std::fs::canonicalize(&path).with_context(|| format!("the SQLite database {} must be a file", path.display()))
}

/// A file of data derived from the main database or recoverable without it (the search index, the
/// job queues): WAL, and `synchronous=NORMAL`, since what a power cut loses there is made again.
fn derived_file(path: &std::path::Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .pragma("temp_store", "memory")
        .pragma("secure_delete", "on")
}

/// The pool of such a file: its users are few background tasks and the search queries.
fn derived_pool(settings: &Settings) -> SqlitePoolOptions {
    SqlitePoolOptions::new().max_connections(settings.db_pool_size.clamp(2, 8)).acquire_timeout(Duration::from_secs(30))
}

/// `dir/logbook-<what>.db` for `dir/logbook.db`.
fn beside(main_path: &std::path::Path, what: &str) -> std::path::PathBuf {
    let stem = main_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    main_path.with_file_name(format!("{stem}-{what}.db"))
}

/// WAL size (in pages) above which the checkpointer restarts the log instead of copying passively.
const WAL_RESTART_PAGES: i64 = 16_384;

/// Copies the WAL back into the database file every second, off the request path, and refreshes
/// the planner's statistics every minute. PASSIVE never waits for readers or blocks writers, but
/// under constant load it never lets the WAL start over (measured: 10 GB for 200,000 logs), so once
/// the WAL passes [`WAL_RESTART_PAGES`] a RESTART waits briefly for readers and resets it.
fn spawn_checkpointer(pool: sqlx::SqlitePool, write_lock: SqliteWriteLock, analyzed: StatisticsAge) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for second in 0u64.. {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            // Fresh statistics let the planner tell a selective filter (one customer) from a broad
            // one (a channel), and a listed body search (a few event positions) from a walk over
            // the project's logs. `ANALYZE` samples `analysis_limit` rows per index; it leaves the
            // event log out, whose row count alone took 5 s to read at a million logs (nothing plans
            // over it: it is read by position). It writes its results, so it takes the
            // application's write lock (in SQLite's busy handler instead it waited up to 5 s and
            // held request logging up meanwhile). Each connection loads statistics when it opens,
            // so the pools replace connections older than this (`connect_sqlite`).
            if second % 60 == 5 {
                let _writers_wait = write_lock.lock().await;
                match analyze_projections(&pool).await {
                    Ok(()) => analyzed.refreshed(),
                    Err(err) => tracing::warn!(error = %err, "ANALYZE failed"),
                }
            }
            let passive: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await;
            let result = match passive {
                Ok((_, wal_pages, _)) if wal_pages > WAL_RESTART_PAGES => restart_wal(&pool, &write_lock).await,
                other => other.map(|_| ()),
            };
            if let Err(err) = result {
                tracing::warn!(error = %err, "WAL checkpoint failed");
            }
        }
    });
}

/// `ANALYZE` of every table but the event log.
async fn analyze_projections(pool: &sqlx::SqlitePool) -> Result<(), sqlx::Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'event_log'",
    )
    .fetch_all(pool)
    .await?;
    let mut conn = pool.acquire().await?;
    for table in tables {
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE \"{}\"", table.replace('"', "\"\"")))).execute(&mut *conn).await?;
    }
    Ok(())
}

/// A RESTART checkpoint, between two of the application's write transactions. It needs a moment
/// with no writer and no reader of an older snapshot: under steady writes SQLite's busy handler
/// never found one (the WAL grew to 3 GB in a million-log ingest), while its wait held writers
/// back. Taking the application's write lock gives it that moment; readers are
/// short, and it waits a second for them at most, then tries again next second.
async fn restart_wal(pool: &sqlx::SqlitePool, write_lock: &SqliteWriteLock) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let _writers_wait = write_lock.lock().await;
    sqlx::query("PRAGMA busy_timeout = 1000").execute(&mut *conn).await?;
    let result = sqlx::query("PRAGMA wal_checkpoint(RESTART)").execute(&mut *conn).await;
    sqlx::query("PRAGMA busy_timeout = 30000").execute(&mut *conn).await?;
    result.map(|_| ())
}

/// Copies the whole WAL into the database file and empties it (a TRUNCATE checkpoint), so that
/// the old page versions it holds (an erased customer's among them) are gone from disk; with
/// `secure_delete` the file keeps no freed content either. Waits for a moment without readers,
/// at most `tries` seconds.
pub async fn truncate_wal(writer: &SqliteWriter, tries: usize) -> Result<bool, DbErr> {
    for _ in 0..tries {
        let row = {
            let _writers_wait = writer.lock.lock().await;
            writer.db.query_one_raw(Statement::from_string(DbBackend::Sqlite, "PRAGMA wal_checkpoint(TRUNCATE)")).await?
        };
        let busy: i64 = row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(1);
        if busy == 0 {
            return Ok(true);
        }
        // Writers go on meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(false)
}

/// A TRUNCATE checkpoint of a derived SQLite file (the search index), whose writers hold no lock of
/// ours. It runs on a connection of its own that waits a second at most per try, so that an index
/// held busy by readers or the indexer makes it try again, `tries` times, rather than block the
/// pool's other users for the 30 s of the pool's busy timeout. The connection is closed after, not
/// returned with its short timeout, even when the caller stops waiting midway.
pub async fn truncate_derived_wal(db: &DatabaseConnection, tries: usize) -> Result<bool, DbErr> {
    let as_db_err = |e: sqlx::Error| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(Arc::new(e)));
    let mut conn = db.get_sqlite_connection_pool().acquire().await.map_err(as_db_err)?;
    conn.close_on_drop();
    sqlx::query("PRAGMA busy_timeout = 1000").execute(&mut *conn).await.map_err(as_db_err)?;
    for attempt in 0..tries {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let busy: i64 = sqlx::query_scalar("PRAGMA main.wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await.map_err(as_db_err)?;
        if busy == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Refreshes PostgreSQL's planner statistics of a fast-growing table once it has doubled.
/// Autovacuum does this too where it is on (it is off on some installations, this machine's among
/// them), and it waits for a fifth plus a minute. Without fresh statistics the planner took a
/// selective filter pair for a rare one (300 ms instead of 2 ms on a million logs), and in the
/// first minute after a bulk load into an empty table a time-window page took 46 ms (0.3 ms once
/// analyzed, 200,000 logs).
fn spawn_analyzer(pool: sqlx::PgPool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            if let Err(err) = analyze_grown(&pool).await {
                tracing::warn!(error = %err, "ANALYZE failed");
            }
        }
    });
}

/// `ANALYZE` of the fast-growing tables that have doubled (plus 1,000 rows) since their last;
/// returns their names. What the planner gets wrong is an empty table's statistics (for one, it
/// read the event log's not-yet-indexed tail by a full scan: 2.5 s at a million logs); doubling
/// keeps a load from nothing to a million logs to about ten runs, each sampling up to 30,000 rows
/// (bodies excluded, see migration 000009). apalis' job table too, its columns that queries select
/// on: with the statistics of an empty table, its acknowledgement (`handle_result.sql`) finds a
/// batch's jobs by scanning every job its worker ever claimed (18 ms at 30,000, against 0.2 ms once
/// analyzed), and a cluster's workers, which take every delivery from the queue, spent a third of
/// PostgreSQL's time there. One node at a time analyzes (concurrent runs of one table wait for
/// each other); the others skip the round.
pub async fn analyze_grown(pool: &sqlx::PgPool) -> Result<Vec<String>, sqlx::Error> {
    const TABLES: &[&str] = &["event_log", "logs", "log_related", "log_search"];
    /// The advisory lock of the analyzing node.
    const ANALYZER: i64 = 0x6c62_616e_616c_7a65;
    let mut txn = pool.begin().await?;
    if !sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_xact_lock($1)").bind(ANALYZER).fetch_one(&mut *txn).await? {
        return Ok(Vec::new());
    }
    let grown: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(schemaname) || '.' || quote_ident(relname) FROM pg_stat_user_tables
         WHERE ((schemaname = current_schema() AND relname = ANY($1)) OR (schemaname = 'apalis' AND relname = 'jobs'))
           AND n_mod_since_analyze > 1000 + n_live_tup / 2",
    )
    .bind(TABLES)
    .fetch_all(&mut *txn)
    .await?;
    let targets: Vec<&str> =
        grown.iter().map(|t| if t == "apalis.jobs" { "apalis.jobs (id, job_type, status, lock_by, run_at, priority, attempts, max_attempts)" } else { t }).collect();
    if !targets.is_empty() {
        // The names are from `TABLES`.
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {}", targets.join(", ")))).execute(&mut *txn).await?;
    }
    txn.commit().await?;
    Ok(grown)
}

/// Turns on SQLite's query planner stability guarantee. Without it a statement whose plan could
/// depend on a bound value (`LIMIT ?`, comparisons against partial-index conditions) is re-prepared
/// on every execution, which profiling showed costing about an eighth of the CPU under load.
async fn enable_stable_plans(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is the live connection handle, locked for the duration of this call; the variadic
    // arguments are the (int, int*) pair this option documents, and a null out-pointer is allowed.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::ffi::c_int,
            std::ptr::null_mut::<std::ffi::c_int>(),
        )
    };
    if rc == libsqlite3_sys::SQLITE_OK {
        Ok(())
    } else {
        Err(sqlx::Error::Protocol(format!("cannot enable SQLite's stable query plans (code {rc})")))
    }
}

pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None).await.context("database migration failed")
}

/// Whether `err` says the database could not be reached (down, restarting, unreachable, or no
/// connection free in time), rather than that a statement was wrong: a request failing so is
/// answered 503 with `Retry-After`, and a batch failing so is not written item by item.
pub fn unavailable(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    match err {
        DbErr::ConnectionAcquire(_) => true,
        DbErr::Conn(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
                // Class 08 is a connection exception; 57P01..57P05 an administrator's shutdown,
                // a crash restart, a database still starting or gone idle.
                sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
                _ => false,
            }
        }
        DbErr::Conn(_) => true,
        _ => false,
    }
}

/// Whether the database answers and has every migration applied.
pub async fn ready(db: &DatabaseConnection) -> bool {
    db.execute_unprepared("SELECT 1").await.is_ok()
        && Migrator::get_pending_migrations(db).await.is_ok_and(|pending| pending.is_empty())
}

/// (connections open, connections idle, most connections) of the pool, for `/metrics`.
pub fn pool_usage(db: &DatabaseConnection) -> (u32, usize, u32) {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle(), pool.options().get_max_connections())
        }
        _ => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle(), pool.options().get_max_connections())
        }
    }
}

/// `postgres://user:secret@host/db` without the password, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Listens on PostgreSQL `channels` until the process ends, calling `on` with each notification,
/// and with `None` whenever the listening connection was (re-)established: notifications sent
/// meanwhile are gone, so a listener should then look for itself. A lost connection is opened again.
pub fn listen(pool: sqlx::PgPool, channels: &'static [&'static str], on: impl Fn(Option<&sqlx::postgres::PgNotification>) + Send + 'static) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, ?channels, "cannot listen for notifications; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen_all(channels.iter().copied()).await {
                tracing::warn!(error = %e, ?channels, "cannot listen for notifications; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            on(None);
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => on(Some(&notification)),
                    // The connection was lost and is being re-established.
                    Ok(None) => on(None),
                    Err(e) => {
                        tracing::warn!(error = %e, ?channels, "listening for notifications failed; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
        }
    })
}

//! Opens the database: embedded SQLite by default, PostgreSQL through `DATABASE_URL`.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, SqlxPostgresConnector, SqlxSqliteConnector};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::config::Settings;

pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    match &settings.database_url {
        Some(url) if url.starts_with("postgres") => {
            let pool = PgPoolOptions::new()
                .max_connections(settings.db_pool_size)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .with_context(|| format!("cannot connect to PostgreSQL at {}", redact_url(url)))?;
            Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
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

async fn connect_sqlite(options: SqliteConnectOptions, settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    // WAL lets readers run beside the one writer; synchronous=FULL makes every commit survive a power
    // cut, which group commit keeps cheap. These are set on every connection the pool opens.
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true)
        .pragma("temp_store", "memory")
        .pragma("cache_size", "-65536");
    let pool = SqlitePoolOptions::new()
        .max_connections(settings.db_pool_size)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .context("cannot open the SQLite database")?;
    Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
}

pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None).await.context("database migration failed")
}

/// Whether the database answers and has every migration applied.
pub async fn ready(db: &DatabaseConnection) -> bool {
    db.execute_unprepared("SELECT 1").await.is_ok()
        && Migrator::get_pending_migrations(db).await.is_ok_and(|pending| pending.is_empty())
}

/// (connections open, connections idle) of the pool, for `/metrics`.
pub fn pool_usage(db: &DatabaseConnection) -> (u32, usize) {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
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

//! Builds the server: database, migrations, first-start bootstrap, log writer, HTTP listener.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{HttpServer, web};
use anyhow::Context;
use sea_orm::DatabaseConnection;

use crate::api;
use crate::config::Settings;
use crate::event_log::EventStore;
use crate::jobs::{self, JobQueue, Workers};
use crate::projections::search::SearchIndex;
use crate::services::projects::{self, FirstStart};
use crate::state::AppState;
use crate::vault::Vault;

pub struct Application {
    port: u16,
    server: Server,
    store: EventStore,
    feed: crate::services::stream::Feed,
    workers: Option<Workers>,
    grace: std::time::Duration,
    /// Set on the very first start of an empty database; its secrets are shown once.
    pub first_start: Option<FirstStart>,
}

/// Makes ring the process' TLS provider (reqwest is built without one of its own, so that a single
/// crypto library is linked). Call before creating an HTTP client; repeated calls are harmless.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Connects, applies migrations, and opens the search index and the job queues.
pub async fn open_database(settings: &Settings) -> anyhow::Result<(EventStore, JobQueue)> {
    let (db, sqlite_writer) = crate::db::connect(settings).await?;
    crate::db::migrate(&db).await?;
    let jobs = JobQueue::open(&db, settings).await.context("opening the job queues failed")?;
    let search = SearchIndex::open(&db, settings).await?;
    let vault = Vault::load(settings.secret_key.as_ref(), &settings.previous_secret_keys, &settings.data_dir)?;
    if settings.secret_key.is_none() && db.get_database_backend() == sea_orm::DbBackend::Postgres {
        tracing::warn!("LOGBOOK_SECRET_KEY is unset: webhook secrets are sealed with the key file in the data folder; every node sharing this database needs that same key");
    }
    let store = EventStore::new(db, search, sqlite_writer, vault);
    let resealed = crate::services::webhooks::reseal_secrets(&store).await.context("re-sealing webhook secrets failed")?;
    if resealed > 0 {
        tracing::info!(resealed, key_id = store.vault().current_key_id(), "re-sealed webhook secrets under the current key");
    }
    // Every commit's jobs are queued by one dispatcher, on API-only nodes too (workers elsewhere
    // take them).
    store.add_after_commit(std::sync::Arc::new(jobs::Dispatcher::new(jobs.clone())));
    Ok((store, jobs))
}

/// On PostgreSQL, makes commits through other nodes wake this one's live subscribers and search
/// indexer as its own commits do.
pub fn hear_other_nodes(store: &EventStore) {
    if store.db().get_database_backend() == sea_orm::DbBackend::Postgres {
        store.commits().listen(store.db().get_postgres_connection_pool().clone());
    }
}

impl Application {
    /// Binds `listen` (port 0 picks a free port; see [`Application::port`]).
    pub async fn build(settings: Settings, listen: &str, with_workers: bool) -> anyhow::Result<Self> {
        install_tls();
        let (store, jobs) = open_database(&settings).await?;
        hear_other_nodes(&store);
        let first_start = projects::bootstrap(&store, settings.admin_token.is_some())
            .await
            .map_err(|e| anyhow::anyhow!("first-start setup failed: {e}"))?;
        let feed = crate::services::stream::Feed::start(store.clone(), api::stream::render()).await?;
        let grace = settings.shutdown_grace;
        let state = web::Data::new(AppState::new(store.clone(), jobs, settings, feed.clone()));
        let workers = match with_workers {
            true => Some(jobs::start(store.clone(), state.jobs.clone(), state.metrics.clone(), &state.settings)?),
            false => None,
        };

        let listener = TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || api::app(state.clone()))
            // Idle keep-alive connections stay open this long (nginx's default), not actix' 5 s:
            // a client reusing a connection the server has just closed sees its request fail, and
            // clients keep idle connections for up to 90 s. (Slow heads are still cut off at 5 s.)
            .keep_alive(std::time::Duration::from_secs(75))
            .listen(listener)?
            // Signals are handled in `run_until_stopped`, so that tests can run several servers.
            .disable_signals()
            .shutdown_timeout(grace.as_secs().max(1))
            .run();
        Ok(Self { port, server, store, feed, workers, grace, first_start })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn db(&self) -> &DatabaseConnection {
        self.store.db()
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Serves until SIGINT or SIGTERM, then stops accepting, ends live streams with their resume
    /// point (clients reconnect to another node), lets in-flight requests finish (their logs are
    /// committed before they answer), stops the workers (see [`Workers::shutdown`]) and returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let feed = self.feed.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down gracefully");
            let drained = handle.stop(true);
            feed.close();
            drained.await;
        });
        self.server.await?;
        if let Some(workers) = self.workers {
            workers.shutdown(self.grace).await;
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// Serves until the returned future is dropped or the process ends; for tests.
    pub fn spawn(self) -> tokio::task::JoinHandle<std::io::Result<()>> {
        let workers = self.workers;
        let server = self.server;
        tokio::spawn(async move {
            let result = server.await;
            drop(workers);
            result
        })
    }
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::config::Settings;
use crate::services::auth::Authenticator;
use crate::event_log::EventStore;
use crate::jobs::JobQueue;
use crate::metrics::Metrics;
use crate::services::events::Publisher;
use crate::services::logs::{self, LogWriter};
use crate::services::rate_limit::RateLimiter;
use crate::services::sendouts::Retrier;
use crate::services::stream::Feed;

/// What every handler can reach, shared by all HTTP workers.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub store: EventStore,
    pub settings: Arc<Settings>,
    pub log_writer: LogWriter,
    /// `POST /v1/events`, group-committed.
    pub publisher: Publisher,
    /// `POST /v1/webhook-sendouts/{id}/retry`, group-committed.
    pub retrier: Retrier,
    pub jobs: JobQueue,
    pub metrics: Arc<Metrics>,
    /// Resolves bearer tokens.
    pub auth: Arc<Authenticator>,
    /// `GET /v1/stream`: this node's reader of committed changes.
    pub feed: Feed,
    /// Requests per credential and window.
    pub rate_limiter: RateLimiter,
}

impl AppState {
    /// Starts the group committers of the request paths, with their metrics.
    pub fn new(store: EventStore, jobs: JobQueue, settings: Settings, feed: Feed) -> Self {
        let db = store.db().clone();
        let metrics = Arc::new(Metrics::default());
        let log_writer = logs::start_writer(store.clone());
        log_writer.register_metrics(&metrics, "log_writer", "Request logs");
        let publisher = crate::services::events::start_publisher(store.clone());
        publisher.register_metrics(&metrics, "publisher", "Published events");
        let auth = Arc::new(Authenticator::new(db.clone(), settings.admin_token.as_deref()));
        store.add_after_commit(auth.clone());
        let retrier = crate::services::sendouts::start_retrier(store.clone());
        retrier.register_metrics(&metrics, "retrier", "Retries by hand");
        let rate_limiter = RateLimiter::start(&db, settings.rate_limit, settings.rate_limit_window);
        Self {
            rate_limiter,
            feed,
            publisher,
            retrier,
            store,
            jobs,
            auth,
            settings: Arc::new(settings),
            metrics,
            db,
            log_writer,
        }
    }
}

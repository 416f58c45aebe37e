use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::config::Settings;
use crate::domain::token;
use crate::event_log::EventStore;
use crate::jobs::JobQueue;
use crate::metrics::Metrics;
use crate::services::logs::LogWriter;

/// What every handler can reach, shared by all HTTP workers.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub store: EventStore,
    pub settings: Arc<Settings>,
    pub log_writer: LogWriter,
    pub jobs: JobQueue,
    pub metrics: Arc<Metrics>,
    /// Hash of `LOGBOOK_ADMIN_TOKEN`, if configured.
    pub admin_token_hash: Option<String>,
}

impl AppState {
    pub fn new(store: EventStore, jobs: JobQueue, settings: Settings, log_writer: LogWriter) -> Self {
        let db = store.db().clone();
        Self {
            store,
            jobs,
            admin_token_hash: settings.admin_token.as_deref().map(token::hash),
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::default()),
            db,
            log_writer,
        }
    }
}

//! Prometheus metrics: requests by endpoint and status, latency, database pool use.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sea_orm::DatabaseConnection;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    endpoint: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    method: String,
    endpoint: String,
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    pool_open: Gauge,
    pool_idle: Gauge,
    pool_max: Gauge,
    search_lag: Gauge,
    backlog: [Gauge; 4],
    pub rate_limited: Counter,
}

/// The work waiting, read from the database at each scrape.
#[derive(Debug, Default, Clone, Copy)]
pub struct Backlog {
    /// Delivery attempts whose time has come, and how long the oldest has waited (the delivery lag).
    pub deliveries_due: i64,
    pub delivery_lag_ms: i64,
    /// Tasks scheduled and not started, and how long the oldest has waited.
    pub tasks_waiting: i64,
    pub oldest_task_wait_ms: i64,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let (pool_open, pool_idle, search_lag) = (Gauge::default(), Gauge::default(), Gauge::default());
        let mut registry = Registry::with_prefix("logbook");
        registry.register("http_requests", "HTTP requests by endpoint and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency", latency.clone());
        registry.register("db_pool_connections", "Database connections open", pool_open.clone());
        registry.register("db_pool_idle_connections", "Database connections idle", pool_idle.clone());
        let pool_max = Gauge::default();
        registry.register("db_pool_max_connections", "Database connections the pool may open (saturated when open - idle reaches it)", pool_max.clone());
        registry.register("search_index_lag_events", "Events not yet in the log search index", search_lag.clone());
        let backlog: [Gauge; 4] = Default::default();
        registry.register("deliveries_due", "Delivery attempts whose time has come, not yet made", backlog[0].clone());
        registry.register("delivery_lag_seconds", "How long the oldest due delivery attempt has waited", backlog[1].clone());
        registry.register("tasks_waiting", "Tasks scheduled and not yet started", backlog[2].clone());
        registry.register("oldest_task_wait_seconds", "How long the oldest scheduled task has waited", backlog[3].clone());
        let rate_limited = Counter::default();
        registry.register("rate_limited_requests", "Requests refused by a credential's rate limit", rate_limited.clone());
        Self { registry: Mutex::new(registry), requests, latency, pool_open, pool_idle, pool_max, search_lag, backlog, rate_limited }
    }
}

impl Metrics {
    pub fn observe_request(&self, method: &str, endpoint: &str, status: u16, seconds: f64) {
        let (method, endpoint) = (method.to_owned(), endpoint.to_owned());
        self.latency.get_or_create(&EndpointLabels { method: method.clone(), endpoint: endpoint.clone() }).observe(seconds);
        self.requests.get_or_create(&RequestLabels { method, endpoint, status }).inc();
    }

    /// Lets later subsystems (workers, projectors) add their own metrics.
    pub fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.register(name, help, metric);
        }
    }

    /// Renders every metric; `search_lag` and `backlog` are read from the database by the caller.
    pub fn render(&self, db: &DatabaseConnection, search_lag: i64, backlog: Backlog) -> String {
        self.search_lag.set(search_lag);
        let seconds = |ms: i64| ms.max(0) / 1000;
        for (gauge, value) in self.backlog.iter().zip([
            backlog.deliveries_due,
            seconds(backlog.delivery_lag_ms),
            backlog.tasks_waiting,
            seconds(backlog.oldest_task_wait_ms),
        ]) {
            gauge.set(value);
        }
        let (open, idle, max) = crate::db::pool_usage(db);
        self.pool_open.set(i64::from(open));
        self.pool_idle.set(idle as i64);
        self.pool_max.set(i64::from(max));
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = encode(&mut out, &registry);
        }
        out
    }
}

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
    search_lag: Gauge,
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
        registry.register("search_index_lag_events", "Events not yet in the log search index", search_lag.clone());
        Self { registry: Mutex::new(registry), requests, latency, pool_open, pool_idle, search_lag }
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

    /// Renders every metric; `search_lag` is read from the database by the caller.
    pub fn render(&self, db: &DatabaseConnection, search_lag: i64) -> String {
        self.search_lag.set(search_lag);
        let (open, idle) = crate::db::pool_usage(db);
        self.pool_open.set(i64::from(open));
        self.pool_idle.set(idle as i64);
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = encode(&mut out, &registry);
        }
        out
    }
}

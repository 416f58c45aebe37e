//! Rate limits per credential: a key gets its requests per window, then 429 with `Retry-After`,
//! without touching other credentials; on PostgreSQL two nodes share the count.

use std::time::Duration;

use reqwest::StatusCode;

use crate::conformance::Conform;
use crate::helpers::{assert_error, restart, spawn_with};

const LIMIT: u32 = 5;
const WINDOW_MS: i64 = 5000;

/// Waits for the start of a window, so that a test's requests fall in one.
async fn start_of_window() {
    loop {
        let into = logbook::domain::time::now_ms().rem_euclid(WINDOW_MS);
        if into < 1000 {
            return;
        }
        tokio::time::sleep(Duration::from_millis((WINDOW_MS - into) as u64 + 10)).await;
    }
}

#[tokio::test]
async fn a_credential_over_its_limit_gets_429_with_retry_after_and_nobody_else_does() {
    let app = spawn_with(|s| {
        s.rate_limit = LIMIT;
        s.rate_limit_window = Duration::from_millis(WINDOW_MS as u64);
    })
    .await;
    start_of_window().await;
    for _ in 0..LIMIT {
        assert_eq!(app.get("/v1/project", &app.server_key).await.status(), StatusCode::OK);
    }
    let refused = app.get("/v1/project", &app.server_key).await;
    assert!(refused.headers().get("logbook-log-id").is_none(), "a flood past the limit writes no logs");
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let metrics = app.request(reqwest::Method::GET, "/metrics", None, None).await.text().await.unwrap();
    assert_eq!(metric(&metrics, "logbook_rate_limited_requests_total"), 1.0);
    // Other credentials of the project, and the admin, are not held back.
    assert_eq!(app.get("/v1/project", &app.user_token).await.status(), StatusCode::OK);
    assert_eq!(app.get("/v1/projects", &app.admin).await.status(), StatusCode::OK);

    // Another node on the same PostgreSQL learns the count (SQLite serves a single node).
    if app.settings.database_url.as_deref().is_some_and(|u| u.starts_with("postgres")) {
        let (other, port) = restart(&app).await;
        let _server = other.spawn();
        start_of_window().await;
        for _ in 0..LIMIT {
            assert_eq!(app.get("/v1/project", &app.client_key).await.status(), StatusCode::FORBIDDEN);
        }
        tokio::time::sleep(Duration::from_millis(400)).await; // both nodes share their counts
        let there = app.client.get(format!("http://127.0.0.1:{port}/v1/project")).bearer_auth(&app.client_key).checked().await.unwrap();
        assert_error(there, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or_else(|| panic!("{name} in {text}"))
}

#[tokio::test]
async fn metrics_show_the_backlog_refusals_and_pool_size_an_operator_watches() {
    // No workers: whatever is scheduled waits.
    let app = crate::helpers::spawn_without_workers().await;
    let read = || async { app.request(reqwest::Method::GET, "/metrics", None, None).await.text().await.unwrap() };
    let before = read().await;
    assert_eq!(metric(&before, "logbook_deliveries_due"), 0.0);
    assert_eq!(metric(&before, "logbook_tasks_waiting"), 0.0);
    assert_eq!(metric(&before, "logbook_db_pool_max_connections"), 5.0);

    let webhook = serde_json::json!({"url": "https://192.0.2.1/hook", "event_types": ["*"]});
    assert_eq!(app.post("/v1/webhooks", &app.server_key, webhook).await.status(), StatusCode::CREATED);
    app.publish("order.created", serde_json::json!({})).await;
    let export = app.post("/v1/exports", &app.server_key, serde_json::json!({"resource": "tasks"})).await;
    assert_eq!(export.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = read().await;
    assert_eq!(metric(&after, "logbook_deliveries_due"), 1.0);
    assert!(metric(&after, "logbook_delivery_lag_seconds") >= 1.0, "{after}");
    assert_eq!(metric(&after, "logbook_tasks_waiting"), 1.0);
    assert!(metric(&after, "logbook_oldest_task_wait_seconds") >= 1.0, "{after}");
    assert_eq!(metric(&after, "logbook_rate_limited_requests_total"), 0.0);
}

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
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
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

use crate::conformance::Conform;
use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_error, entry, json_of, spawn_app};

fn set(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

#[tokio::test]
async fn the_servers_own_requests_are_logged_with_who_what_and_the_answer() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/v1/logs?status=failure&status=success", app.address))
        .bearer_auth(&app.server_key)
        .header("Logbook-Channel", "shopify")
        .header("Logbook-Customer-Id", "cus_42")
        .header("X-Api-Key", "secret-value")
        .checked()
        .await
        .unwrap();
    let log_id = res.headers()["logbook-log-id"].to_str().unwrap().to_owned();
    assert_eq!(res.status(), StatusCode::OK);

    let log = app.get_ok(&format!("/v1/logs/{log_id}"), &app.server_key).await;
    assert_eq!(log["channel"], "shopify");
    assert_eq!(log["endpoint"], "GET /v1/logs");
    assert_eq!(log["path"], "/v1/logs");
    assert_eq!(log["method"], "GET");
    assert_eq!((log["http_status"].as_i64(), log["status"].as_str()), (Some(200), Some("success")));
    assert_eq!(log["server_key_id"], app.server_key_id.as_str());
    assert_eq!(log["customer_id"], "cus_42");
    assert_eq!(log["query"]["status"], json!(["failure", "success"]));
    assert_eq!(log["request_headers"]["authorization"], "[redacted]");
    assert_eq!(log["request_headers"]["x-api-key"], "[redacted]");
    // A read's answer is stored data already: it is summarised, not copied.
    assert!(log["response_body"].as_str().is_some_and(|s| s.contains("bytes, not copied")), "{log}");

    // A user's request is on the dashboard channel; a client key's refused request is logged too.
    let res = app.get("/v1/logs", &app.user_token).await;
    let user_log = res.headers()["logbook-log-id"].to_str().unwrap().to_owned();
    let res = app.get("/v1/logs", &app.client_key).await;
    let client_log = res.headers()["logbook-log-id"].to_str().unwrap().to_owned();
    let user_entry = app.get_ok(&format!("/v1/logs/{user_log}"), &app.server_key).await;
    assert_eq!((user_entry["channel"].as_str(), user_entry["user_id"].as_str()), (Some("dashboard"), Some(app.user_id.as_str())));
    let client_entry = app.get_ok(&format!("/v1/logs/{client_log}"), &app.server_key).await;
    assert_eq!(client_entry["channel"], "client");
    assert_eq!(client_entry["client_key_id"], app.client_key_id.as_str());
    assert_eq!((client_entry["http_status"].as_i64(), client_entry["status"].as_str()), (Some(403), Some("failure")));
    assert_eq!(client_entry["response_body"]["error"]["code"], "forbidden");

    let endpoints = app.get_ok("/v1/logs/endpoints", &app.server_key).await;
    assert!(endpoints.as_array().unwrap().contains(&json!("GET /v1/logs/{id}")), "{endpoints}");
}

#[tokio::test]
async fn secrets_in_bodies_are_redacted_and_large_bodies_truncated() {
    let app = spawn_app().await;
    let big = "y".repeat(300 * 1024);
    let mut e = entry("2026-11-20T10:00:00Z");
    e["request_body"] = json!({"user": {"password": "hunter2", "name": "ada"}, "card_number": "4111"});
    e["response_body"] = json!({"blob": big});
    e["request_headers"] = json!({"Authorization": "Bearer x", "Cookie": "a=b", "Accept": "*/*"});
    let ids = app.ingest(vec![e]).await;
    let log = app.get_ok(&format!("/v1/logs/{}", ids[0]), &app.server_key).await;
    assert_eq!(log["request_body"], json!({"user": {"password": "[redacted]", "name": "ada"}, "card_number": "[redacted]"}));
    assert_eq!(log["request_headers"], json!({"Authorization": "[redacted]", "Cookie": "[redacted]", "Accept": "*/*"}));
    assert_eq!(log["response_body_truncated"], true);
    assert!(log["response_body"].as_str().unwrap().len() <= 256 * 1024);
    assert_eq!(log["request_body_truncated"], false);
}

#[tokio::test]
async fn ingestion_is_all_or_none_with_every_bad_field_named() {
    let app = spawn_app().await;
    let mut bad = entry("not a date");
    bad["http_status"] = json!(42);
    let res = app.post("/v1/logs", &app.server_key, json!({"logs": [entry("2026-11-20T10:00:00Z"), bad]})).await;
    let body = assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields: Vec<&str> = body["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, vec!["logs[1].occurred_at", "logs[1].http_status"]);
    assert!(app.log_ids("occurred_after=2026-11-01&channel=shopify").await.is_empty(), "the good entry was not stored either");

    let too_many: Vec<Value> = (0..1001).map(|_| entry("2026-11-20T10:00:00Z")).collect();
    assert_error(app.post("/v1/logs", &app.server_key, json!({"logs": too_many})).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_error(app.post("/v1/logs", &app.server_key, json!({"logs": []})).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_error(app.post("/v1/logs", &app.user_token, json!({"logs": [entry("2026-11-20T10:00:00Z")]})).await, StatusCode::FORBIDDEN, "forbidden").await;

    let thousand: Vec<Value> = (0..1000).map(|_| entry("2026-11-20T10:00:00Z")).collect();
    assert_eq!(app.ingest(thousand).await.len(), 1000);
}

#[tokio::test]
async fn every_filter_returns_exactly_the_matching_entries() {
    let app = spawn_app().await;
    let base = |at: &str, f: &dyn Fn(&mut Value)| {
        let mut e = entry(at);
        f(&mut e);
        e
    };
    let logs = vec![
        base("2026-11-20T10:00:00Z", &|e| {
            e["channel"] = json!("shopify");
            e["user_id"] = json!("u1");
            e["request_body"] = json!({"note": "Gift WRAP please"});
        }),
        base("2026-11-20T11:00:00Z", &|e| {
            e["channel"] = json!("stripe");
            e["http_status"] = json!(502);
            e["customer_id"] = json!("c1");
            e["response_body"] = json!({"error": "Upstream timeout"});
        }),
        base("2026-11-20T12:00:00Z", &|e| {
            e["channel"] = json!("web");
            e["endpoint"] = json!("POST /orders/{id}");
            e["method"] = json!("POST");
            e["server_key_id"] = json!("key_a");
            e["related"] = json!([{"type": "import", "id": "imp_1"}]);
        }),
        base("2026-11-20T13:00:00Z", &|e| {
            e["channel"] = json!("web");
            e["client_key_id"] = json!("key_b");
            e["http_status"] = json!(404);
            e["request_body"] = "100% off_sale".into();
        }),
    ];
    let ids = app.ingest(logs).await;
    let window = "occurred_after=2026-11-20&occurred_before=2026-11-21";
    let cases: Vec<(&str, Vec<usize>)> = vec![
        ("", vec![0, 1, 2, 3]),
        ("channel=shopify", vec![0]),
        ("channel=shopify&channel=stripe", vec![0, 1]),
        ("status=failure", vec![1, 3]),
        ("status=success", vec![0, 2]),
        ("status=success&status=failure", vec![0, 1, 2, 3]),
        ("endpoint=POST%20/orders/{id}", vec![2]),
        ("endpoint=GET%20/orders", vec![0, 1, 3]),
        ("user_id=u1", vec![0]),
        ("customer_id=c1", vec![1]),
        ("server_key_id=key_a", vec![2]),
        ("client_key_id=key_b", vec![3]),
        ("related_id=imp_1", vec![2]),
        ("request_body_contains=gift%20wrap", vec![0]),
        ("request_body_contains=100%25%20off_", vec![3]),
        ("request_body_contains=50%25", vec![]),
        ("response_body_contains=TIMEOUT", vec![1]),
        ("channel=shopify&status=failure", vec![]),
        ("status=failure&channel=stripe&customer_id=c1", vec![1]),
        ("occurred_after=2026-11-20T11:00:00Z&occurred_before=2026-11-20T13:00:00Z", vec![1, 2]),
    ];
    for (filter, expected) in cases {
        let query = if filter.starts_with("occurred_after") { filter.to_owned() } else { format!("{window}&{filter}") };
        let found = app.log_ids(&query).await;
        let expected: Vec<String> = expected.iter().rev().map(|i| ids[*i].clone()).collect();
        assert_eq!(found, expected, "filter {filter}");
    }
}

#[tokio::test]
async fn date_filters_are_read_in_the_project_zone_across_a_dst_change() {
    let app = spawn_app().await;
    let berlin = app.create_project("Berlin", "Europe/Berlin").await;
    let key = berlin["server_key"].as_str().unwrap();
    // 2026-10-25 is 25 hours long in Berlin: from 2026-10-24T22:00Z to 2026-10-25T23:00Z.
    let times = ["2026-10-24T21:59:59Z", "2026-10-24T22:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-25T22:59:59Z", "2026-10-25T23:00:00Z"];
    let ids = app.ingest_with(key, times.iter().map(|t| entry(t)).collect()).await;
    let fetch = |query: String| {
        let app = &app;
        async move {
            let page = app.get_ok(&format!("/v1/logs?limit=100&channel=shopify&{query}"), key).await;
            page["data"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    let day = fetch("occurred_after=2026-10-25&occurred_before=2026-10-26".into()).await;
    assert_eq!(set(&day), set(&ids[1..5]));
    // 02:30 local happens twice; a local time means its first occurrence (00:30Z).
    let ambiguous = fetch("occurred_after=2026-10-25T02:30&occurred_before=2026-10-26".into()).await;
    assert_eq!(set(&ambiguous), set(&ids[2..5]));
    let page = app.get_ok(&format!("/v1/logs/{}", ids[2]), key).await;
    assert_eq!(page["occurred_at"], "2026-10-25T00:30:00.000Z");
    assert_eq!(page["occurred_at_project"], "2026-10-25T02:30:00.000+02:00");
    let later = app.get_ok(&format!("/v1/logs/{}", ids[3]), key).await;
    assert_eq!(later["occurred_at_project"], "2026-10-25T02:30:00.000+01:00");
}

#[tokio::test]
async fn pages_stay_stable_while_new_logs_arrive() {
    let app = spawn_app().await;
    let ids = app.ingest((0..30).map(|i| entry(&format!("2026-11-20T10:{i:02}:00Z"))).collect()).await;
    let query = "occurred_after=2026-11-20&occurred_before=2026-11-21&channel=shopify&limit=7";
    let mut seen = Vec::new();
    let mut path = format!("/v1/logs?{query}");
    loop {
        let page = app.get_ok(&path, &app.server_key).await;
        seen.extend(page["data"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_owned()));
        // New entries, newer and older than the page boundary, arrive between pages.
        app.ingest(vec![entry("2026-11-20T23:00:00Z"), entry("2026-11-20T09:00:00Z")]).await;
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/logs?{query}&cursor={c}"),
            None => break,
        }
    }
    let original: Vec<String> = ids.iter().rev().cloned().collect();
    let seen_original: Vec<String> = seen.iter().filter(|id| ids.contains(id)).cloned().collect();
    assert_eq!(seen_original, original, "every original entry once, in order");
    assert_eq!(set(&seen).len(), seen.len(), "no entry twice");
}

#[tokio::test]
async fn the_default_window_is_the_last_24_hours() {
    let app = spawn_app().await;
    let old = app.ingest(vec![entry("2020-01-01T00:00:00Z")]).await;
    let recent_at = logbook::domain::time::format_utc(logbook::domain::time::now_ms() - 3_600_000);
    let recent = app.ingest(vec![entry(&recent_at)]).await;
    let page = app.get_ok("/v1/logs?channel=shopify", &app.server_key).await;
    let found: Vec<&str> = page["data"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(found, vec![recent[0].as_str()]);
    assert!(!found.contains(&old[0].as_str()));
    let body = json_of(app.get(&format!("/v1/logs/{}", old[0]), &app.server_key).await, StatusCode::OK).await;
    assert_eq!(body["occurred_at"], "2020-01-01T00:00:00.000Z");
}

#[tokio::test]
async fn an_ingestion_request_is_logged_without_storing_its_entries_twice() {
    let app = spawn_app().await;
    let res = app.post("/v1/logs", &app.server_key, json!({"logs": [entry("2026-11-20T10:00:00Z"), entry("2026-11-20T10:00:01Z")]})).await;
    let log_id = res.headers()["logbook-log-id"].to_str().unwrap().to_owned();
    assert_eq!(res.status(), StatusCode::CREATED);
    let log = app.get_ok(&format!("/v1/logs/{log_id}"), &app.server_key).await;
    assert_eq!(log["endpoint"], "POST /v1/logs");
    assert_eq!(log["request_body"], "[2 log entries, stored as logs of their own]");
    assert_eq!(log["response_body"]["ids"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn concurrent_requests_are_all_logged_and_group_commits_are_measured() {
    let app = spawn_app().await;
    let responses = futures_util::future::join_all((0..40).map(|_| app.get("/v1/project", &app.server_key))).await;
    let ids: Vec<String> = responses
        .iter()
        .map(|r| {
            assert_eq!(r.status(), StatusCode::OK);
            r.headers()["logbook-log-id"].to_str().unwrap().to_owned()
        })
        .collect();
    let listed = set(&app.log_ids("endpoint=GET%20/v1/project").await);
    assert!(set(&ids).is_subset(&listed), "every answered request is logged");

    let metrics = app.request(reqwest::Method::GET, "/metrics", None, None).await.text().await.unwrap();
    let value = |name: &str| -> f64 {
        metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    let (entries, commits) = (value("logbook_log_writer_commit_entries_sum"), value("logbook_log_writer_commit_entries_count"));
    assert!(entries >= 40.0 && commits >= 1.0 && commits <= entries, "{entries} entries in {commits} commits");
    assert!(value("logbook_log_writer_commit_seconds_count") == commits);
}

/// PostgreSQL's planner statistics follow a bulk load without waiting for autovacuum (see
/// `db::analyze_grown`); SQLite analyzes on a timer of its own.
#[tokio::test]
async fn after_a_bulk_load_postgresql_statistics_are_refreshed() {
    let app = spawn_app().await;
    if sea_orm::ConnectionTrait::get_database_backend(&app.db) != sea_orm::DbBackend::Postgres {
        return;
    }
    let pool = app.db.get_postgres_connection_pool();
    for batch in 0..3 {
        let logs: Vec<Value> = (0..1000).map(|i| entry(&format!("2026-11-20T{:02}:{:02}:{:02}Z", 10 + batch, i / 60, i % 60))).collect();
        app.ingest(logs).await;
    }
    let analyzed = || async {
        sqlx::query_scalar::<_, bool>("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'logs'")
            .fetch_one(pool)
            .await
            .unwrap()
    };
    // The statistics system takes up to a second to count the inserts.
    for _ in 0..100 {
        if analyzed().await {
            break;
        }
        logbook::db::analyze_grown(pool).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(analyzed().await, "logs analyzed after 3,000 new rows");
}

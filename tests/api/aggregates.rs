//! Histograms, facets, failure groups and dry-run retries: the aggregates the dashboard draws,
//! each over the list's own filters.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_error, entry, json_of, quick_webhooks, spawn_app, spawn_with};
use crate::receiver::{Receiver, free_port};

fn at(time: &str, http_status: u16, channel: &str) -> Value {
    let mut e = entry(time);
    e["http_status"] = json!(http_status);
    e["channel"] = json!(channel);
    e
}

#[tokio::test]
async fn the_log_histogram_counts_per_bucket_of_the_project_clock_and_facets_count_values() {
    let app = spawn_app().await;
    let project = app.create_project("Berlin shop", "Europe/Berlin").await;
    let key = project["server_key"].as_str().unwrap();
    app.ingest_with(
        key,
        vec![
            at("2026-11-20T09:30:00Z", 200, "shopify"),
            at("2026-11-20T10:05:00Z", 200, "shopify"),
            at("2026-11-20T10:40:00Z", 500, "stripe"),
            at("2026-11-20T11:10:00Z", 200, "shopify"),
            at("2026-11-20T15:00:00Z", 404, "stripe"), // outside the range below
        ],
    )
    .await;
    // Local 10:00 to 13:00 (UTC+1 in November).
    let range = "occurred_after=2026-11-20T10:00&occurred_before=2026-11-20T13:00";
    let histogram = app.get_ok(&format!("/v1/logs/histogram?{range}&interval=1h"), key).await;
    assert_eq!(histogram["interval"], "1h");
    let buckets = histogram["buckets"].as_array().unwrap();
    let starts: Vec<&str> = buckets.iter().map(|b| b["start_project"].as_str().unwrap()).collect();
    assert_eq!(starts, ["2026-11-20T10:00:00.000+01:00", "2026-11-20T11:00:00.000+01:00", "2026-11-20T12:00:00.000+01:00"]);
    assert_eq!(buckets[0]["start"], "2026-11-20T09:00:00.000Z");
    let counts: Vec<(i64, i64)> = buckets.iter().map(|b| (b["success"].as_i64().unwrap(), b["failure"].as_i64().unwrap())).collect();
    assert_eq!(counts, [(1, 0), (1, 1), (1, 0)]);

    // The list's filters apply; without an interval one is chosen from the span, empty buckets kept.
    let failures = app.get_ok(&format!("/v1/logs/histogram?{range}&status=failure"), key).await;
    assert_eq!(failures["interval"], "5m");
    let buckets = failures["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 36);
    assert_eq!(buckets.iter().map(|b| b["failure"].as_i64().unwrap()).sum::<i64>(), 1);
    assert_eq!(buckets.iter().map(|b| b["success"].as_i64().unwrap()).sum::<i64>(), 0);
    assert_eq!(buckets[20]["start_project"], "2026-11-20T11:40:00.000+01:00");
    assert_eq!(buckets[20]["failure"], 1);

    // A local day is 23 hours long on the spring change.
    let spring = app.get_ok("/v1/logs/histogram?occurred_after=2026-03-28&occurred_before=2026-03-31&interval=1d", key).await;
    let starts: Vec<&str> = spring["buckets"].as_array().unwrap().iter().map(|b| b["start"].as_str().unwrap()).collect();
    assert_eq!(starts, ["2026-03-27T23:00:00.000Z", "2026-03-28T23:00:00.000Z", "2026-03-29T22:00:00.000Z"]);

    let facet = app.get_ok(&format!("/v1/logs/facets?{range}&field=channel"), key).await;
    assert_eq!(facet, json!({ "field": "channel", "values": [{ "value": "shopify", "count": 3 }, { "value": "stripe", "count": 1 }] }));
    let facet = app.get_ok(&format!("/v1/logs/facets?{range}&field=http_status&channel=stripe"), key).await;
    assert_eq!(facet["values"], json!([{ "value": "500", "count": 1 }]));
    let facet = app.get_ok(&format!("/v1/logs/facets?{range}&field=status"), key).await;
    assert_eq!(facet["values"], json!([{ "value": "success", "count": 3 }, { "value": "failure", "count": 1 }]));
    // Values with no value (no customer named) are left out.
    let facet = app.get_ok(&format!("/v1/logs/facets?{range}&field=customer_id"), key).await;
    assert_eq!(facet["values"], json!([]));

    for (query, field) in [
        ("interval=2m", "interval"),
        (&format!("{range}&interval=fortnight") as &str, "interval"),
        ("occurred_after=2026-01-01&occurred_before=2026-03-01&interval=1m", "interval"),
        ("occurred_after=2026-03-01&occurred_before=2026-01-01", "interval"),
        ("colour=red", "colour"),
        ("limit=5", "limit"),
        ("status=lost", "status"),
    ] {
        let body = assert_error(app.get(&format!("/v1/logs/histogram?{query}"), key).await, StatusCode::BAD_REQUEST, "invalid_query").await;
        assert_eq!(body["error"]["details"][0]["field"], field, "{query}: {body}");
    }
    for (query, field) in [("", "field"), ("field=path", "field"), ("field=channel&interval=1h", "interval")] {
        let body = assert_error(app.get(&format!("/v1/logs/facets?{query}"), key).await, StatusCode::BAD_REQUEST, "invalid_query").await;
        assert_eq!(body["error"]["details"][0]["field"], field, "{query}: {body}");
    }
    // Another project's logs never count.
    let own = app.get_ok(&format!("/v1/logs/facets?{range}&field=channel"), &app.server_key).await;
    assert_eq!(own["values"], json!([]));
}

fn finished(s: &Value) -> bool {
    s["status"] == "delivered" || s["status"] == "failed"
}

#[tokio::test]
async fn failure_groups_name_each_endpoint_and_answer_and_a_group_is_previewed_then_retried() {
    let app = spawn_with(quick_webhooks).await;
    let receiver = Receiver::start().await;
    let answering = app.create_webhook(&receiver.url(), &["order.*"]).await;
    receiver.configure(json!({ "secrets": [answering["secret"]], "status": 503 })).await;
    let dead_url = format!("http://127.0.0.1:{}/hook", free_port());
    let dead = app.create_webhook(&dead_url, &["order.*"]).await;
    let (answering_id, dead_id) = (answering["id"].as_str().unwrap(), dead["id"].as_str().unwrap());
    let mut sendouts = Vec::new();
    for n in 0..3 {
        let event = app.publish("order.created", json!({ "n": n })).await;
        sendouts.extend(event["sendouts"].as_array().unwrap().iter().map(|s| (s["id"].as_str().unwrap().to_owned(), s["webhook_id"].clone())));
    }
    for (id, _) in &sendouts {
        assert_eq!(app.wait_sendout(id, finished).await["status"], "failed");
    }

    let groups = app.get_ok("/v1/webhook-sendouts/failure-groups", &app.server_key).await;
    let groups = groups["data"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{groups:?}");
    let by_webhook = |id: &str| groups.iter().find(|g| g["webhook_id"] == id).unwrap().clone();
    let refused = by_webhook(answering_id);
    assert_eq!((&refused["http_status"], &refused["error"], &refused["count"]), (&json!(503), &Value::Null, &json!(3)));
    assert_eq!(refused["url"], receiver.url());
    assert!(refused["last_attempt_at"].is_string());
    let unreachable = by_webhook(dead_id);
    assert_eq!((&unreachable["http_status"], &unreachable["error"], &unreachable["count"]), (&Value::Null, &json!("connect"), &json!(3)));
    // A group's fields are list filters that select exactly its sendouts.
    let listed = app.get_ok("/v1/webhook-sendouts?status=failed&error=connect", &app.server_key).await;
    assert!(listed["data"].as_array().unwrap().iter().all(|s| s["webhook_id"] == dead_id));
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
    let listed = app.get_ok(&format!("/v1/webhook-sendouts?webhook_id={answering_id}&http_status=503"), &app.server_key).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
    let other = app.get_ok("/v1/webhook-sendouts/failure-groups?status=delivered", &app.server_key).await;
    assert_eq!(other["data"], json!([]));
    for query in ["http_status=abc", "http_status=700", "error=gone", "cursor=x"] {
        let response = app.get(&format!("/v1/webhook-sendouts/failure-groups?{query}"), &app.server_key).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    }

    let histogram = app.get_ok("/v1/webhook-sendouts/histogram?interval=1h", &app.server_key).await;
    let buckets = histogram["buckets"].as_array().unwrap();
    assert!(buckets.len() >= 24 && buckets.len() <= 25, "{}", buckets.len());
    let total = |name: &str| buckets.iter().map(|b| b[name].as_i64().unwrap()).sum::<i64>();
    assert_eq!((total("delivered"), total("failed"), total("pending")), (0, 6, 0));

    // The dry run counts and sends nothing.
    let group = json!({ "filters": { "webhook_id": answering_id, "http_status": "503" }, "dry_run": true });
    let preview = json_of(app.post("/v1/webhook-sendouts/retry", &app.server_key, group.clone()).await, StatusCode::OK).await;
    assert_eq!(preview, json!({ "matching": 3, "webhooks": [{ "webhook_id": answering_id, "url": receiver.url(), "count": 3 }] }));
    let everything = json!({ "filters": {}, "dry_run": true });
    let preview = json_of(app.post("/v1/webhook-sendouts/retry", &app.server_key, everything).await, StatusCode::OK).await;
    assert_eq!(preview["matching"], 6);
    assert_eq!(preview["webhooks"].as_array().unwrap().len(), 2);
    let seen = receiver.records().len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.records().len(), seen, "a dry run sends nothing");
    let tasks = app.get_ok("/v1/tasks?type=webhook_recovery", &app.server_key).await;
    assert_eq!(tasks["data"], json!([]), "and schedules nothing");
    let bad = json!({ "filters": { "http_status": "teapot" }, "dry_run": true });
    assert_error(app.post("/v1/webhook-sendouts/retry", &app.server_key, bad).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    // Retrying the group sends exactly its sendouts; the group is gone once they are delivered.
    receiver.configure(json!({ "secrets": [answering["secret"]], "status": 200 })).await;
    let mut run = group;
    run["dry_run"] = json!(false);
    let task = json_of(app.post("/v1/webhook-sendouts/retry", &app.server_key, run).await, StatusCode::ACCEPTED).await;
    let task = app.wait_finished(task["id"].as_str().unwrap()).await;
    assert_eq!(task["result"]["sendouts_retried"], 3);
    for (id, webhook) in &sendouts {
        if webhook == answering_id {
            assert_eq!(app.wait_sendout(id, |s| s["status"] == "delivered").await["status"], "delivered");
        }
    }
    let groups = app.get_ok("/v1/webhook-sendouts/failure-groups", &app.server_key).await;
    assert_eq!(groups["data"].as_array().unwrap().len(), 1);
    assert_eq!(groups["data"][0]["webhook_id"], dead_id);
    let histogram = app.get_ok("/v1/webhook-sendouts/histogram?interval=1h", &app.server_key).await;
    let delivered: i64 = histogram["buckets"].as_array().unwrap().iter().map(|b| b["delivered"].as_i64().unwrap()).sum();
    assert_eq!(delivered, 3);
}

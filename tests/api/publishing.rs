//! Publishing under concurrency: requests share commits (group commit), yet each answers with its
//! own event and sendouts, an Idempotency-Key still publishes once, every event is delivered once,
//! and concurrent retries by hand of one sendout each get a generation of their own.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::conformance::Conform;
use crate::helpers::{json_of, quick_webhooks, spawn_with};
use crate::receiver::Receiver;

const CLIENTS: usize = 64;
const SAME_KEY: usize = 16;

fn metric(metrics: &str, name: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or_else(|| panic!("{name} in {metrics}"))
}

#[tokio::test]
async fn concurrent_publishes_share_commits_each_answers_with_its_own_event_and_each_is_delivered_once() {
    let app = spawn_with(quick_webhooks).await;
    let receiver = Receiver::start().await;
    let webhook = app.create_webhook(&receiver.url(), &["order.*"]).await;
    receiver.configure(json!({ "secrets": [webhook["secret"]] })).await;

    // 48 distinct events and 16 requests with one Idempotency-Key, all at once.
    let requests = (0..CLIENTS).map(|n| {
        let mut request = app
            .client
            .post(format!("{}/v1/events", app.address))
            .bearer_auth(&app.server_key)
            .json(&json!({ "type": "order.created", "source_id": format!("src-{n}"), "data": { "n": n } }));
        if n < SAME_KEY {
            request = request.header("idempotency-key", "order-once");
        }
        async move {
            let response = request.checked().await.unwrap();
            let replayed = response.headers().get("idempotent-replayed").is_some();
            (n, replayed, json_of(response, StatusCode::ACCEPTED).await)
        }
    });
    let answers = futures_util::future::join_all(requests).await;

    let keyed: Vec<&(usize, bool, Value)> = answers.iter().filter(|(n, _, _)| *n < SAME_KEY).collect();
    let keyed_ids: HashSet<&str> = keyed.iter().map(|(_, _, a)| a["id"].as_str().unwrap()).collect();
    assert_eq!(keyed_ids.len(), 1, "one event for one key: {keyed:?}");
    assert_eq!(keyed.iter().filter(|(_, replayed, _)| !replayed).count(), 1, "all but the first are replays");
    for (n, _, answer) in &answers {
        assert_eq!(answer["type"], "order.created");
        let sendouts = answer["sendouts"].as_array().unwrap();
        assert_eq!(sendouts.len(), 1, "{answer}");
        assert_eq!(sendouts[0]["webhook_id"], webhook["id"]);
        if *n >= SAME_KEY {
            // Each request gets its own event back, not a neighbour's from the same commit.
            assert_eq!(answer["data"], json!({ "n": n }), "{answer}");
            assert_eq!(answer["source_id"], format!("src-{n}"));
            assert!(answer["request_id"].as_str().unwrap().starts_with("log_"));
        }
    }
    let events: HashSet<&str> = answers.iter().map(|(_, _, a)| a["id"].as_str().unwrap()).collect();
    let expected = CLIENTS - SAME_KEY + 1;
    assert_eq!(events.len(), expected);

    // Every event is stored as answered, and delivered exactly once.
    for (_, _, answer) in answers.iter().filter(|(n, _, _)| *n >= SAME_KEY - 1) {
        let stored = app.get_ok(&format!("/v1/events/{}", answer["id"].as_str().unwrap()), &app.server_key).await;
        let mut expected = answer.clone();
        expected.as_object_mut().unwrap().remove("sendouts");
        assert_eq!(stored, expected);
    }
    let records = receiver.wait_for(expected).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = if receiver.records().len() > records.len() { receiver.records() } else { records };
    let mut per_sendout: HashMap<String, usize> = HashMap::new();
    for r in &records {
        *per_sendout.entry(r["webhook_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(per_sendout.len(), expected, "one delivery per event");
    assert!(per_sendout.values().all(|n| *n == 1), "no duplicate delivery: {per_sendout:?}");

    // The publishes shared commits: fewer commits than requests, every request counted once.
    let metrics = app.request(reqwest::Method::GET, "/metrics", None, None).await.text().await.unwrap();
    let (items, commits) = (metric(&metrics, "logbook_publisher_commit_entries_sum"), metric(&metrics, "logbook_publisher_commit_entries_count"));
    assert_eq!(items, CLIENTS as f64, "{metrics}");
    assert!(commits < items, "{items} publishes in {commits} commits");
}

#[tokio::test]
async fn concurrent_retries_of_one_sendout_each_get_a_generation_and_a_missing_one_is_404() {
    let app = spawn_with(quick_webhooks).await;
    let receiver = Receiver::start().await;
    let webhook = app.create_webhook(&receiver.url(), &["*"]).await;
    receiver.configure(json!({ "secrets": [webhook["secret"]] })).await;
    let event = app.publish("order.created", json!({})).await;
    let sendout_id = event["sendouts"][0]["id"].as_str().unwrap().to_owned();
    receiver.wait_for(1).await;

    let retry = |id: String| {
        let request = app.client.post(format!("{}/v1/webhook-sendouts/{id}/retry", app.address)).bearer_auth(&app.server_key).json(&json!({}));
        async move { request.checked().await.unwrap() }
    };
    let mut requests: Vec<_> = (0..8).map(|_| retry(sendout_id.clone())).collect();
    requests.push(retry("snd_01jd000000000000000000000".into()));
    let mut answers = futures_util::future::join_all(requests).await;
    let missing = answers.pop().unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND, "a missing sendout fails alone, not its batch");
    for answer in answers {
        let body = json_of(answer, StatusCode::ACCEPTED).await;
        assert_eq!(body["id"], sendout_id.as_str());
    }
    // Each retry supersedes the one before; at least the last is attempted, by hand, and it is
    // recorded once per delivery the receiver saw.
    let mut detail = Value::Null;
    for _ in 0..100 {
        detail = app.get_ok(&format!("/v1/webhook-sendouts/{sendout_id}"), &app.server_key).await;
        let manual = detail["attempts"].as_array().unwrap().iter().filter(|a| a["trigger"] == "manual").count();
        if manual >= 1 && detail["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let manual = detail["attempts"].as_array().unwrap().iter().filter(|a| a["trigger"] == "manual").count();
    assert!((1..=8).contains(&manual), "{detail}");
    // Superseded retries still in flight land too; then each request the receiver saw is recorded.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let detail = app.get_ok(&format!("/v1/webhook-sendouts/{sendout_id}"), &app.server_key).await;
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(receiver.records().len(), attempts.len(), "every delivery made is recorded, and only those: {detail}");
    assert_eq!(detail["attempt_count"], attempts.len());
    assert_eq!(detail["status"], "delivered");
}

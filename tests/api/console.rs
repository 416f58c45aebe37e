//! What the console needs of the server: its files with a strict policy, and the API additions it
//! uses (names of who made a request, a test event for one endpoint).

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{json_of, quick_webhooks, spawn_app, spawn_with};
use crate::receiver::Receiver;

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy_and_no_inline_code() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let mut total = 0;
    for (path, kind) in [("/", "text/html"), ("/console/app.js", "text/javascript"), ("/console/app.css", "text/css")] {
        let response = client.get(format!("{}{path}", app.address)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"), "{csp}");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        let body = response.text().await.unwrap();
        total += body.len();
        if path == "/" {
            // Every script and style comes from a file of its own (the policy would block inline ones).
            assert!(!body.contains("<style") && !body.contains(" style="), "no inline style");
            for script in body.split("<script").skip(1) {
                assert!(script.trim_start().starts_with("src="), "no inline script: <script{script}");
            }
            assert!(!body.contains("http://") && !body.contains("https://"), "nothing from another origin");
        }
    }
    // Uncompressed, so well under the 300 KB compressed budget.
    assert!(total < 300_000, "the console is {total} bytes");
}

#[tokio::test]
async fn a_log_names_its_user_and_keys_and_a_test_event_reaches_only_its_endpoint() {
    let app = spawn_with(quick_webhooks).await;
    let project = app.get_ok("/v1/project", &app.server_key).await;
    let user = app.post(&format!("/v1/projects/{}/users", project["id"].as_str().unwrap()), &app.admin, json!({ "name": "Ada", "email": "ada@example.com" })).await;
    let user = json_of(user, StatusCode::CREATED).await;
    let response = app.get("/v1/tasks", user["token"].as_str().unwrap()).await;
    let log_id = response.headers()["logbook-log-id"].to_str().unwrap().to_owned();
    let log = app.get_ok(&format!("/v1/logs/{log_id}"), &app.server_key).await;
    assert_eq!(log["channel"], "dashboard");
    assert_eq!(log["user"], json!({ "id": user["id"], "name": "Ada", "email": "ada@example.com" }));
    let response = app.get("/v1/tasks", &app.server_key).await;
    let log_id = response.headers()["logbook-log-id"].to_str().unwrap().to_owned();
    let log = app.get_ok(&format!("/v1/logs/{log_id}"), &app.server_key).await;
    assert_eq!(log["user"], serde_json::Value::Null);
    assert_eq!(log["server_key"]["id"], log["server_key_id"]);
    assert!(log["server_key"]["name"].as_str().is_some_and(|n| !n.is_empty()), "{log}");

    let receiver = Receiver::start().await;
    let tested = app.create_webhook(&receiver.url(), &["order.*"]).await;
    receiver.configure(json!({ "secrets": [tested["secret"]] })).await;
    let other = app.create_webhook(&receiver.url(), &["*"]).await;
    let response = app.request(reqwest::Method::POST, &format!("/v1/webhooks/{}/test", tested["id"].as_str().unwrap()), Some(&app.server_key), None).await;
    let sendout = json_of(response, StatusCode::ACCEPTED).await;
    assert_eq!(sendout["webhook_id"], tested["id"]);
    assert_eq!(sendout["event_type"], "webhook.test");
    let delivered = app.wait_sendout(sendout["id"].as_str().unwrap(), |s| s["status"] == "delivered").await;
    assert_eq!(delivered["attempts"][0]["http_status"], 200);
    let records = receiver.wait_for(1).await;
    assert_eq!(records[0]["body"]["type"], "webhook.test");
    assert_eq!(records[0]["verified_with"], json!([0]), "signed like any delivery");
    let others = app.get_ok(&format!("/v1/webhook-sendouts?webhook_id={}", other["id"].as_str().unwrap()), &app.server_key).await;
    assert_eq!(others["data"], json!([]), "the `*` endpoint got nothing");
    let missing = app.request(reqwest::Method::POST, "/v1/webhooks/whk_missing/test", Some(&app.server_key), None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_demo_seed_fills_a_project_through_the_api() {
    let app = spawn_app().await;
    logbook::demo::seed(&app.address, &app.server_key).await.unwrap();
    let failures = app.log_ids("occurred_after=2000-01-01&channel=shopify&channel=stripe&status=failure").await;
    let all = app.log_ids("occurred_after=2000-01-01&channel=shopify&channel=stripe").await;
    assert_eq!(all.len(), 600, "a day of the integration's requests");
    assert!(!failures.is_empty() && failures.len() < all.len() / 4, "{} failures", failures.len());
    let hooks = app.get_ok("/v1/webhooks", &app.server_key).await;
    assert_eq!(hooks["data"][0]["url"], logbook::demo::UNREACHABLE_URL);
    let sendouts = app.get_ok("/v1/webhook-sendouts?limit=100", &app.server_key).await;
    assert_eq!(sendouts["data"].as_array().unwrap().len(), 12, "the order events fan out to it, the imported ones do not");
    let tasks = app.get_ok("/v1/tasks?type=import", &app.server_key).await;
    let task = app.wait_finished(tasks["data"][0]["id"].as_str().unwrap()).await;
    assert_eq!(task["result"]["rows_imported"], 2000, "{task}");
    assert_eq!(task["error_count"], 1);
}

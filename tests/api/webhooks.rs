//! Webhooks and sendouts, delivered to a real receiver that verifies each request with the
//! official Standard Webhooks library.

use crate::conformance::Conform;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{assert_error, json_of, quick_webhooks, spawn_app, spawn_with};
use crate::receiver::{Receiver, free_port};

fn delivered(s: &Value) -> bool {
    s["status"] == "delivered"
}

fn finished(s: &Value) -> bool {
    s["status"] == "delivered" || s["status"] == "failed"
}

#[tokio::test]
async fn deliveries_are_signed_per_standard_webhooks_and_verified_by_the_official_library() {
    let app = spawn_with(quick_webhooks).await;
    let receiver = Receiver::start().await;
    let webhook = app.create_webhook(&receiver.url(), &["order.*"]).await;
    let secret = webhook["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    receiver.configure(json!({ "secrets": [secret] })).await;
    app.create_webhook(&receiver.url(), &["user.*"]).await; // matches nothing below

    // Client keys may publish events.
    let body = json!({ "type": "order.created", "source_id": "o1", "data": { "total": 12, "items": [1, 2] } });
    let response = app.post("/v1/events", &app.client_key, body).await;
    let log_id = response.headers()["logbook-log-id"].to_str().unwrap().to_owned();
    let event = json_of(response, StatusCode::ACCEPTED).await;
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(event["request_id"], log_id);
    let sendouts = event["sendouts"].as_array().unwrap();
    assert_eq!(sendouts.len(), 1, "one sendout per matching endpoint");
    assert_eq!(sendouts[0]["webhook_id"], webhook["id"]);
    let sendout_id = sendouts[0]["id"].as_str().unwrap();

    let records = receiver.wait_for(1).await;
    assert_eq!(records[0]["verified_with"], json!([0]), "the official library verifies it: {}", records[0]);
    assert_eq!(records[0]["webhook_id"], sendout_id);
    assert_eq!(records[0]["body"]["id"], event["id"]);
    assert_eq!(records[0]["body"]["type"], "order.created");
    assert_eq!(records[0]["body"]["data"], json!({ "total": 12, "items": [1, 2] }));
    assert_eq!(records[0]["body"]["timestamp"], event["created_at"]);

    let sendout = app.wait_sendout(sendout_id, delivered).await;
    assert_eq!(sendout["attempt_count"], 1);
    assert_eq!(sendout["request_id"], log_id);
    assert_eq!(sendout["source_id"], "o1");
    assert!(sendout["delivered_at"].is_string() && sendout["sent_at"].is_string());
    let attempt = &sendout["attempts"][0];
    assert_eq!(attempt["trigger"], "scheduled");
    assert_eq!(attempt["http_status"], 200);
    assert_eq!(attempt["response_body"], "received");
    assert_eq!(attempt["response_headers"]["x-receiver"], "test");
    assert_eq!(attempt["error"], Value::Null);
    // The publishing request's log names the event and its sendout.
    let log = app.get_ok(&format!("/v1/logs/{log_id}"), &app.server_key).await;
    let related: Vec<&str> = log["related"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(related.contains(&event["id"].as_str().unwrap()) && related.contains(&sendout_id), "{log}");
    assert_eq!(log["channel"], "client");
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_third_attempt_and_every_attempt_is_recorded() {
    let app = spawn_with(quick_webhooks).await;
    let receiver = Receiver::start().await;
    let webhook = app.create_webhook(&receiver.url(), &["*"]).await;
    receiver.configure(json!({ "secrets": [webhook["secret"]], "fail_first": 2 })).await;
    let event = app.publish("order.created", json!({})).await;
    let sendout_id = event["sendouts"][0]["id"].as_str().unwrap();
    let sendout = app.wait_sendout(sendout_id, delivered).await;
    let statuses: Vec<&Value> = sendout["attempts"].as_array().unwrap().iter().map(|a| &a["http_status"]).collect();
    assert_eq!(statuses, vec![&json!(500), &json!(500), &json!(200)]);
    assert_eq!(sendout["attempt_count"], 3);
    assert_eq!(sendout["attempts"][0]["response_body"], "failing on purpose");
    assert!(sendout["attempts"][0]["error"].as_str().unwrap().contains("500"));
    let records = receiver.records();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r["webhook_id"] == sendout_id && r["verified_with"] == json!([0])), "same webhook-id, all verified");
}

#[tokio::test]
async fn a_dead_receiver_ends_failed_and_a_manual_retry_or_a_recovery_delivers_once_it_is_back() {
    let app = spawn_with(quick_webhooks).await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let webhook = app.create_webhook(&url, &["order.*"]).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    let first = app.publish("order.created", json!({ "n": 1 })).await["sendouts"][0]["id"].as_str().unwrap().to_owned();
    let second = app.publish("order.created", json!({ "n": 2 })).await["sendouts"][0]["id"].as_str().unwrap().to_owned();
    for id in [&first, &second] {
        let sendout = app.wait_sendout(id, finished).await;
        assert_eq!(sendout["status"], "failed", "{sendout}");
        assert_eq!(sendout["attempt_count"], 3, "the whole schedule was used");
        assert_eq!(sendout["attempts"][0]["http_status"], Value::Null);
        assert!(sendout["attempts"][0]["error"].as_str().unwrap().to_lowercase().contains("connect"), "{sendout}");
    }
    let failed = app.get_ok("/v1/events?type=sendout.failed", &app.server_key).await;
    assert_eq!(failed["data"].as_array().unwrap().len(), 2);
    let listed = app.get_ok(&format!("/v1/webhook-sendouts?status=failed&webhook_id={webhook_id}"), &app.server_key).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);

    let receiver = Receiver::start_on(port).await;
    receiver.configure(json!({ "secrets": [webhook["secret"]] })).await;
    let retried = app.request(Method::POST, &format!("/v1/webhook-sendouts/{first}/retry"), Some(&app.server_key), None).await;
    assert_eq!(json_of(retried, StatusCode::ACCEPTED).await["status"], "retrying");
    let sendout = app.wait_sendout(&first, delivered).await;
    assert_eq!(sendout["attempt_count"], 4);
    assert_eq!(sendout["attempts"][3]["trigger"], "manual");

    let recovery = app.post(&format!("/v1/webhooks/{webhook_id}/recover"), &app.server_key, json!({ "since": "2000-01-01" })).await;
    let task = json_of(recovery, StatusCode::ACCEPTED).await;
    assert_eq!(task["type"], "webhook_recovery");
    let task = app.wait_finished(task["id"].as_str().unwrap()).await;
    assert_eq!(task["status"], "done", "{task}");
    assert_eq!(task["result"]["sendouts_retried"], 1, "only the one still failed");
    app.wait_sendout(&second, delivered).await;
    let records = receiver.wait_for(2).await;
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r["verified_with"] == json!([0])));
}

#[tokio::test]
async fn bulk_retry_sends_again_every_sendout_matching_the_filters() {
    let app = spawn_with(quick_webhooks).await;
    let port = free_port();
    let webhook = app.create_webhook(&format!("http://127.0.0.1:{port}/hook"), &["*"]).await;
    for i in 0..3 {
        let kind = if i == 2 { "user.created" } else { "order.created" };
        let s = app.publish(kind, json!({})).await["sendouts"][0]["id"].as_str().unwrap().to_owned();
        app.wait_sendout(&s, finished).await;
    }
    let receiver = Receiver::start_on(port).await;
    receiver.configure(json!({ "secrets": [webhook["secret"]] })).await;
    let bad = app.post("/v1/webhook-sendouts/retry", &app.server_key, json!({ "filters": { "colour": "red" } })).await;
    assert_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let bad = app.post("/v1/webhook-sendouts/retry", &app.server_key, json!({ "filters": { "status": "lost" } })).await;
    assert_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let response = app.post("/v1/webhook-sendouts/retry", &app.server_key, json!({ "filters": { "event_type": ["order.created"] } })).await;
    let task = json_of(response, StatusCode::ACCEPTED).await;
    let task = app.wait_finished(task["id"].as_str().unwrap()).await;
    assert_eq!(task["result"]["sendouts_retried"], 2);
    assert_eq!(task["progress"]["total"], 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // (The endpoint also takes `*`, so notices of the failures may arrive too.)
    let retried: Vec<Value> = receiver.records().into_iter().filter(|r| r["body"]["type"] != "sendout.failed").collect();
    assert_eq!(retried.len(), 2, "the user.created sendout was not retried: {retried:?}");
    assert!(retried.iter().all(|r| r["body"]["type"] == "order.created"));
}

#[tokio::test]
async fn private_and_internal_urls_are_refused_at_creation_and_at_delivery() {
    let app = spawn_app().await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.0.0.8/hook",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
    ] {
        let response = app.post("/v1/webhooks", &app.server_key, json!({ "url": url, "event_types": ["*"] })).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "webhook_url_not_allowed").await;
    }
    for (body, field) in [
        (json!({ "url": "ftp://example.com/", "event_types": ["*"] }), "url"),
        (json!({ "url": "https://example.com/", "event_types": [] }), "event_types"),
        (json!({ "url": "https://example.com/", "event_types": ["Order.*"] }), "event_types[0]"),
        (json!({ "url": "https://example.com/", "event_types": ["*"], "rate_limit_per_second": 0 }), "rate_limit_per_second"),
    ] {
        let body = assert_error(app.post("/v1/webhooks", &app.server_key, body).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["error"]["details"][0]["field"], field, "{body}");
    }
    assert_eq!(app.get_ok("/v1/webhooks", &app.server_key).await["data"], json!([]), "nothing was created");

    // An endpoint whose address turned internal after creation (here: written straight into the
    // log, as a DNS change would make it) is refused when delivering, and never connected to.
    let receiver = Receiver::start().await;
    let store = app.store.clone();
    for url in [receiver.url(), format!("http://localhost:{}/hook", receiver.port)] {
        let id = logbook::domain::ids::new_id(logbook::domain::ids::IdKind::Webhook);
        let event = logbook::event_log::DomainEvent::WebhookCreated(logbook::event_log::WebhookCreated {
            secret: store.vault().seal(&logbook::domain::webhook::new_secret(), &id),
            id,
            project_id: app.project_id.clone(),
            url: logbook::domain::webhook::WebhookUrl::try_from(url).unwrap(),
            event_types: vec![logbook::domain::webhook::EventTypePattern::try_from("*".to_owned()).unwrap()],
            description: None,
            enabled: true,
            rate_limit_per_second: None,
        });
        store.append(&logbook::event_log::EventMetadata::system(), vec![event]).await.unwrap();
    }
    let event = app.publish("order.created", json!({})).await;
    for s in event["sendouts"].as_array().unwrap() {
        let sendout = app.wait_sendout(s["id"].as_str().unwrap(), |s| s["attempt_count"].as_i64() >= Some(1)).await;
        let error = sendout["attempts"][0]["error"].as_str().unwrap();
        assert!(error.contains("loopback"), "{error}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.records().is_empty(), "no request reached the internal address");
}

#[tokio::test]
async fn an_idempotency_key_answers_with_the_first_event_and_sends_once() {
    let app = spawn_with(quick_webhooks).await;
    let receiver = Receiver::start().await;
    let webhook = app.create_webhook(&receiver.url(), &["*"]).await;
    receiver.configure(json!({ "secrets": [webhook["secret"]] })).await;
    let send = |key: &str, n: i64| {
        app.client
            .post(format!("{}/v1/events", app.address))
            .bearer_auth(&app.server_key)
            .header("idempotency-key", key)
            .json(&json!({ "type": "order.created", "data": { "n": n } }))
            .checked()
    };
    let first = send("order-42", 1).await.unwrap();
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = json_of(first, StatusCode::ACCEPTED).await;
    let again = send("order-42", 2).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again = json_of(again, StatusCode::ACCEPTED).await;
    assert_eq!(again, first, "the first response, data and sendouts included");
    let other = json_of(send("order-43", 3).await.unwrap(), StatusCode::ACCEPTED).await;
    assert_ne!(other["id"], first["id"]);
    receiver.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.records().len(), 2);
    assert_eq!(app.get_ok("/v1/events?type=order.created", &app.server_key).await["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_rotated_secret_keeps_signing_beside_the_new_one() {
    let app = spawn_with(quick_webhooks).await;
    let receiver = Receiver::start().await;
    let webhook = app.create_webhook(&receiver.url(), &["*"]).await;
    let id = webhook["id"].as_str().unwrap();
    let old = webhook["secret"].as_str().unwrap().to_owned();
    let rotated = json_of(app.post(&format!("/v1/webhooks/{id}/secret/rotate"), &app.server_key, json!({})).await, StatusCode::OK).await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["previous_secret"], old.as_str());
    assert!(rotated["previous_secret_expires_at"].is_string());
    assert_eq!(app.get_ok(&format!("/v1/webhooks/{id}/secret"), &app.server_key).await, rotated);
    receiver.configure(json!({ "secrets": [old, new] })).await;
    app.publish("order.created", json!({})).await;
    let records = receiver.wait_for(1).await;
    assert_eq!(records[0]["verified_with"], json!([0, 1]), "both the old and the new secret verify it");
    assert_eq!(records[0]["signature"].as_str().unwrap().split(' ').count(), 2);
}

/// Every sealed secret in storage, with the id of the key it is sealed with.
async fn sealed_secrets(db: &sea_orm::DatabaseConnection) -> Vec<(String, String)> {
    use sea_orm::{ConnectionTrait, Statement};
    let sql = "SELECT payload AS text FROM event_log WHERE event_type IN ('webhook.created', 'webhook.secret_rotated') \
               UNION ALL SELECT secret FROM webhooks UNION ALL SELECT previous_secret FROM webhooks WHERE previous_secret IS NOT NULL";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter()
        .map(|row| {
            let text: String = row.try_get("", "text").unwrap();
            let key = text.split("sealed:v1:").nth(1).and_then(|rest| rest.split(':').next()).unwrap_or("plaintext").to_owned();
            (key, text)
        })
        .collect()
}

#[tokio::test]
async fn rotating_the_secret_key_reseals_every_secret_and_a_node_without_the_key_does_not_start() {
    use logbook::vault::SecretKey;
    let (old, new) = (SecretKey::generate(), SecretKey::generate());
    let first_key = old.clone();
    let app = crate::helpers::spawn_full(
        move |s| {
            quick_webhooks(s);
            s.secret_key = Some(first_key);
        },
        false,
    )
    .await;
    let receiver = Receiver::start().await;
    let webhook = app.create_webhook(&receiver.url(), &["*"]).await;
    let id = webhook["id"].as_str().unwrap();
    let rotated = json_of(app.post(&format!("/v1/webhooks/{id}/secret/rotate"), &app.server_key, json!({})).await, StatusCode::OK).await;
    let sealed = sealed_secrets(&app.db).await;
    assert_eq!(sealed.len(), 4, "two events and the row's two columns: {sealed:?}");
    assert!(sealed.iter().all(|(key, text)| *key == old.id() && !text.contains("whsec_")), "{sealed:?}");

    // A restart with the new key, the old one kept as previous, re-seals everything under the new one.
    let mut settings = app.settings.clone();
    settings.secret_key = Some(new.clone());
    settings.previous_secret_keys = vec![old.clone()];
    let again = logbook::startup::Application::build(settings.clone(), "127.0.0.1:0", true).await.expect("starts with the new key");
    let base = format!("http://127.0.0.1:{}", again.port());
    let _server = again.spawn();
    assert!(sealed_secrets(&app.db).await.iter().all(|(key, _)| *key == new.id()), "{:?}", sealed_secrets(&app.db).await);
    let secret = app.client.get(format!("{base}/v1/webhooks/{id}/secret")).bearer_auth(&app.server_key).send().await.unwrap();
    assert_eq!(json_of(secret, StatusCode::OK).await, rotated, "the same secrets, opened with the new key");

    // Deliveries sign with them.
    receiver.configure(json!({ "secrets": [rotated["previous_secret"], rotated["secret"]] })).await;
    let published = app.client.post(format!("{base}/v1/events")).bearer_auth(&app.server_key).json(&json!({"type": "order.created", "data": {}}));
    assert_eq!(published.send().await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(receiver.wait_for(1).await[0]["verified_with"], json!([0, 1]));

    // A node that has only the old key refuses to start, naming the key it lacks.
    settings.secret_key = Some(old);
    settings.previous_secret_keys = vec![];
    let refused = format!("{:#}", logbook::startup::Application::build(settings, "127.0.0.1:0", false).await.err().expect("refused"));
    assert!(refused.contains(&format!("sealed with key {}", new.id())) && refused.contains("LOGBOOK_SECRET_KEY"), "{refused}");
}

#[tokio::test]
async fn an_endpoint_failing_for_too_long_is_disabled_and_announced() {
    let app = spawn_with(|s| {
        quick_webhooks(s);
        s.webhook_disable_after = Duration::from_millis(200);
    })
    .await;
    let watcher = Receiver::start().await;
    let dead = app.create_webhook(&format!("http://127.0.0.1:{}/hook", free_port()), &["order.*"]).await;
    let watch = app.create_webhook(&watcher.url(), &["webhook.disabled"]).await;
    watcher.configure(json!({ "secrets": [watch["secret"]] })).await;
    let event = app.publish("order.created", json!({})).await;
    app.wait_sendout(event["sendouts"][0]["id"].as_str().unwrap(), finished).await;
    let id = dead["id"].as_str().unwrap();
    let webhook = app.get_ok(&format!("/v1/webhooks/{id}"), &app.server_key).await;
    let sendout = app.get_ok(&format!("/v1/webhook-sendouts/{}", event["sendouts"][0]["id"].as_str().unwrap()), &app.server_key).await;
    assert_eq!(webhook["enabled"], false, "{webhook} {sendout}");
    assert!(webhook["disabled_reason"].as_str().unwrap().contains("failed since"), "{webhook}");
    let notice = watcher.wait_for(1).await;
    assert_eq!(notice[0]["body"]["type"], "webhook.disabled");
    assert_eq!(notice[0]["body"]["data"]["webhook_id"], id);
    // A disabled endpoint gets no new sendouts; enabling it again clears the reason.
    assert_eq!(app.publish("order.created", json!({})).await["sendouts"], json!([]));
    let enabled = app.request(Method::PATCH, &format!("/v1/webhooks/{id}"), Some(&app.server_key), Some(json!({ "enabled": true }))).await;
    let enabled = json_of(enabled, StatusCode::OK).await;
    assert_eq!((enabled["enabled"].as_bool(), enabled["disabled_reason"].clone()), (Some(true), Value::Null));
}

#[tokio::test]
async fn endpoints_are_managed_and_stay_inside_their_project() {
    let app = spawn_with(quick_webhooks).await;
    let created = app.create_webhook("https://example.com/hooks", &["order.*", "import.done"]).await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("whk_"));
    assert_eq!(created["enabled"], true);
    let fetched = app.get_ok(&format!("/v1/webhooks/{id}"), &app.server_key).await;
    assert!(fetched.get("secret").is_none(), "the secret is shown at creation and on its own endpoint only");
    let patch = json!({ "description": "Orders", "rate_limit_per_second": 5, "event_types": ["*"] });
    let patched = json_of(app.request(Method::PATCH, &format!("/v1/webhooks/{id}"), Some(&app.user_token), Some(patch)).await, StatusCode::OK).await;
    assert_eq!((patched["description"].as_str(), patched["rate_limit_per_second"].as_i64()), (Some("Orders"), Some(5)));
    assert_eq!(patched["event_types"], json!(["*"]));
    let cleared = app.request(Method::PATCH, &format!("/v1/webhooks/{id}"), Some(&app.server_key), Some(json!({ "description": null }))).await;
    let cleared = json_of(cleared, StatusCode::OK).await;
    assert_eq!((cleared["description"].clone(), cleared["rate_limit_per_second"].as_i64()), (Value::Null, Some(5)));
    let bad = app.request(Method::PATCH, &format!("/v1/webhooks/{id}"), Some(&app.server_key), Some(json!({ "event_types": [] }))).await;
    assert_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(app.get_ok(&format!("/v1/webhooks/{id}"), &app.server_key).await["event_types"], json!(["*"]), "a refused change changes nothing");

    let foreign = app.other_project_key("Other").await;
    assert_error(app.get(&format!("/v1/webhooks/{id}"), &foreign).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(app.get("/v1/webhooks", &app.client_key).await, StatusCode::FORBIDDEN, "forbidden").await;
    let deleted = app.request(Method::DELETE, &format!("/v1/webhooks/{id}"), Some(&app.server_key), None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_error(app.get(&format!("/v1/webhooks/{id}"), &app.server_key).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.publish("order.created", json!({})).await["sendouts"], json!([]));
}

#[tokio::test]
async fn bad_events_are_refused_and_publish_nothing() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({ "type": "Order Created", "data": {} }), "type"),
        (json!({ "type": "order.created", "data": [1] }), "data"),
        (json!({ "type": "order.created" }), "data"),
        (json!({ "type": "order.created", "data": {}, "source_id": "" }), "source_id"),
        (json!({ "type": "order.created", "data": {}, "extra": 1 }), "extra"),
    ] {
        let response = app.post("/v1/events", &app.client_key, body).await;
        let status = response.status();
        let body = json_of(response, status).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"]["details"][0]["field"].as_str().unwrap_or_default().contains(field) || body["error"]["message"].as_str().unwrap().contains(field), "{body}");
    }
    assert_error(app.post("/v1/events", &app.admin, json!({ "type": "a", "data": {} })).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_error(app.get("/v1/events", &app.client_key).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_error(app.get("/v1/events?type=Bad%20Type", &app.server_key).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    assert_error(app.get("/v1/webhook-sendouts?status=lost", &app.server_key).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    assert_eq!(app.get_ok("/v1/events", &app.server_key).await["data"], json!([]));
}

#[tokio::test]
async fn sendouts_filter_by_every_field() {
    let app = spawn_with(quick_webhooks).await;
    let receiver = Receiver::start().await;
    let a = app.create_webhook(&receiver.url(), &["order.*"]).await;
    let b = app.create_webhook(&receiver.url(), &["*"]).await;
    receiver.configure(json!({ "secrets": [a["secret"], b["secret"]] })).await;
    let body = json!({ "type": "order.created", "source_id": "o1", "data": {} });
    let response = app.post("/v1/events", &app.server_key, body).await;
    let request_id = response.headers()["logbook-log-id"].to_str().unwrap().to_owned();
    json_of(response, StatusCode::ACCEPTED).await;
    app.publish("user.created", json!({})).await;
    receiver.wait_for(3).await;
    let count = |query: String| {
        let app = &app;
        async move { app.get_ok(&format!("/v1/webhook-sendouts?{query}"), &app.server_key).await["data"].as_array().unwrap().len() }
    };
    assert_eq!(count(String::new()).await, 3);
    assert_eq!(count(format!("webhook_id={}", a["id"].as_str().unwrap())).await, 1);
    assert_eq!(count("event_type=user.created".into()).await, 1);
    assert_eq!(count("source_id=o1".into()).await, 2);
    assert_eq!(count(format!("request_id={request_id}")).await, 2);
    assert_eq!(count("created_after=2000-01-01&created_before=2000-01-02".into()).await, 0);
    for _ in 0..40 {
        if count("status=delivered".into()).await == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count("status=delivered".into()).await, 3);
    assert_eq!(count("status=failed&status=pending".into()).await, 0);
}

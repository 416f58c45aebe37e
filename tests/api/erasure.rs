//! Erasing a customer: afterwards none of their personal data is found anywhere in storage (every
//! table of the database, the search index included, and on SQLite every byte of the files), the
//! exports that held it are withdrawn, the other customers' data is untouched, the
//! projections are still exactly what replaying the event log produces, and the erasure is on
//! record as a task with its counts.

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::conformance::Conform;
use crate::helpers::{TestApp, assert_error, entry, json_of, quick_webhooks, spawn_with};
use crate::receiver::Receiver;

/// Logs a customer's activity: an ingested entry, and an event published by a request naming them.
async fn activity(app: &TestApp, customer: &str, email: &str) -> (String, Value) {
    let mut log = entry("2026-11-20T10:00:00Z");
    log["customer_id"] = json!(customer);
    log["query"] = json!({"email": email});
    log["request_headers"] = json!({"x-customer-email": email});
    log["request_body"] = json!({"email": email, "name": "Personal Name"});
    log["response_body"] = json!({"greeting": format!("hello {email}")});
    let log_id = app.ingest(vec![log]).await.remove(0);
    let published = app
        .client
        .post(format!("{}/v1/events", app.address))
        .bearer_auth(&app.server_key)
        .header("logbook-customer-id", customer)
        .json(&json!({"type": "customer.updated", "data": {"email": email}}))
        .checked()
        .await
        .unwrap();
    (log_id, json_of(published, StatusCode::ACCEPTED).await)
}

/// Trigrams only the erased address has ("ed@", ".er", "a.e"), as the SQLite search index's
/// vocabulary lists them with their document counts.
async fn erased_trigrams(app: &TestApp) -> Vec<String> {
    // (One connection: the vocabulary tables are temporary.)
    let search = sea_orm::TransactionTrait::begin(app.store.search().db()).await.unwrap();
    let mut left = Vec::new();
    for table in ["log_search_request", "log_search_response"] {
        search.execute_unprepared(&format!("CREATE VIRTUAL TABLE IF NOT EXISTS temp.{table}_terms USING fts5vocab(main, {table}, row)")).await.unwrap();
        let sql = format!("SELECT term || ' ' || doc AS t FROM temp.{table}_terms WHERE term IN ('ed@', '.er', 'a.e')");
        for row in search.query_all_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Sqlite, sql)).await.unwrap() {
            left.push(format!("{table}: {}", row.try_get::<String>("", "t").unwrap()));
        }
    }
    left
}

/// The logs whose request or response body holds `text`, by endpoint.
async fn search(app: &TestApp, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for side in ["request", "response"] {
        let page = app.get_ok(&format!("/v1/logs?{side}_body_contains={text}&occurred_after=2020-01-01&limit=100"), &app.server_key).await;
        found.extend(page["data"].as_array().unwrap().iter().map(|l| format!("{} {}", l["id"], l["endpoint"])));
    }
    found.sort();
    found.dedup();
    found
}

#[tokio::test]
async fn an_erased_customer_is_found_nowhere_and_everyone_else_is_untouched() {
    let app = spawn_with(quick_webhooks).await;
    let receiver = Receiver::start().await;
    let webhook = app.create_webhook(&receiver.url(), &["customer.*"]).await;
    receiver.configure(json!({"secrets": [webhook["secret"]], "echo": true})).await;
    let (gone_email, kept_email) = ("ada.erased@example.com", "grace.kept@example.com");
    let (gone_log, gone_event) = activity(&app, "cust_gone", gone_email).await;
    let (kept_log, kept_event) = activity(&app, "cust_kept", kept_email).await;
    // An import uploaded by a request naming the customer: its file and its rows' events.
    let csv = format!("type,source_id,contact.email\ncustomer.imported,c1,{gone_email}\n");
    let part = reqwest::multipart::Part::bytes(csv.into_bytes()).file_name("contacts.csv").mime_str("text/csv").unwrap();
    let upload = app.client.post(format!("{}/v1/imports", app.address)).bearer_auth(&app.server_key).header("logbook-customer-id", "cust_gone");
    let import = json_of(upload.multipart(reqwest::multipart::Form::new().part("file", part)).checked().await.unwrap(), StatusCode::ACCEPTED).await;
    let import_id = import["id"].as_str().unwrap().to_owned();
    assert_eq!(app.wait_finished(import["task_id"].as_str().unwrap()).await["status"], "done");
    let sendout = gone_event["sendouts"][0]["id"].as_str().unwrap().to_owned();
    let delivered = app.wait_sendout(&sendout, |s| s["status"] == "delivered").await;
    assert!(delivered["attempts"][0]["response_body"].as_str().unwrap().contains(gone_email), "the receiver echoes: {delivered}");
    app.wait_sendout(kept_event["sendouts"][0]["id"].as_str().unwrap(), |s| s["status"] == "delivered").await;
    app.wait_for_search_index().await;
    // The ingested entry, and the publishing request's own log (reads of either copy nothing).
    let found = search(&app, "ada.erased").await;
    assert_eq!(found.len(), 2, "found before the erasure: {found:?}");
    if app.db.get_database_backend() == sea_orm::DbBackend::Sqlite {
        assert!(!erased_trigrams(&app).await.is_empty(), "the index holds the address's trigrams");
    }

    // Exports made before: copies in CSV files, with bodies and data.
    let export = |body: Value| {
        let app = &app;
        async move {
            let created = json_of(app.post("/v1/exports", &app.server_key, body).await, StatusCode::ACCEPTED).await;
            let id = created["id"].as_str().unwrap().to_owned();
            app.wait_finished(created["task_id"].as_str().unwrap()).await;
            id
        }
    };
    let all_logs = export(json!({"resource": "logs", "filters": {"occurred_after": "2020-01-01"}, "fields": ["id", "customer_id", "request_body"]})).await;
    let kept_logs = export(json!({"resource": "logs", "filters": {"occurred_after": "2020-01-01", "customer_id": "cust_kept"}, "fields": ["id", "request_body"]})).await;
    let all_events = export(json!({"resource": "events", "filters": {"created_after": "2020-01-01"}, "fields": ["id", "data"]})).await;
    let tasks = export(json!({"resource": "tasks"})).await;
    let download = |id: String| {
        let app = &app;
        async move { app.get(&format!("/v1/exports/{id}/download"), &app.server_key).await }
    };
    let csv = download(all_logs.clone()).await.text().await.unwrap();
    assert!(csv.contains(gone_email), "the export holds the customer's data: {csv}");

    // Bad ids are refused, and client keys may not erase.
    assert_error(app.post("/v1/customers/%01x/erase", &app.server_key, json!({})).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_error(app.post("/v1/customers/cust_gone/erase", &app.client_key, json!({})).await, StatusCode::FORBIDDEN, "forbidden").await;

    let task = json_of(app.post("/v1/customers/cust_gone/erase", &app.server_key, json!({})).await, StatusCode::ACCEPTED).await;
    assert_eq!(task["type"], "customer_erasure");
    let done = app.wait_finished(task["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "done", "{done}");
    // The ingested entry, the publishing and the uploading requests' own logs; the published event,
    // the imported one and the import's `import.done` notice; the attempts of the first two (the
    // endpoint takes `customer.*`); the import's file.
    assert_eq!(done["result"]["logs"], 3, "{done}");
    assert_eq!(done["result"]["events"], 3, "{done}");
    assert_eq!(done["result"]["sendout_attempts"], 2, "{done}");
    assert_eq!(done["result"]["import_files"], 1, "{done}");
    assert_error(app.get(&format!("/v1/imports/{import_id}/file"), &app.server_key).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.get_ok(&format!("/v1/imports/{import_id}"), &app.server_key).await["id"], import_id.as_str(), "the import itself stays");
    assert_eq!(done["result"]["customer_id"], "cust_gone");
    assert_eq!(done["result"]["exports_withdrawn"], 2, "{done}");

    // Exports that held the customer's data are withdrawn; the others stay.
    for id in [&all_logs, &all_events] {
        let withdrawn = app.get_ok(&format!("/v1/exports/{id}"), &app.server_key).await;
        assert_eq!(withdrawn["status"], "failed", "{withdrawn}");
        assert!(withdrawn["error"].as_str().unwrap().contains("erased"), "{withdrawn}");
        assert_eq!(download(id.clone()).await.status(), StatusCode::CONFLICT);
    }
    for id in [&kept_logs, &tasks] {
        assert_eq!(app.get_ok(&format!("/v1/exports/{id}"), &app.server_key).await["status"], "done");
        assert_eq!(download(id.clone()).await.status(), StatusCode::OK);
    }

    // Through the API: the records stay, their content is gone.
    let log = app.get_ok(&format!("/v1/logs/{gone_log}"), &app.server_key).await;
    assert_eq!((log["request_body"].clone(), log["response_body"].clone()), (Value::Null, Value::Null), "{log}");
    assert_eq!(log["customer_id"], "cust_gone");
    let event = app.get_ok(&format!("/v1/events/{}", gone_event["id"].as_str().unwrap()), &app.server_key).await;
    assert_eq!(event["data"], json!({}));
    let attempt = &app.get_ok(&format!("/v1/webhook-sendouts/{sendout}"), &app.server_key).await["attempts"][0];
    assert_eq!(attempt["response_body"], Value::Null);
    assert_eq!(attempt["http_status"], 200);
    assert_eq!(search(&app, "ada.erased").await, Vec::<String>::new());

    // Everyone else keeps everything.
    let kept = app.get_ok(&format!("/v1/logs/{kept_log}"), &app.server_key).await;
    assert_eq!(kept["request_body"]["email"], kept_email);
    let event = app.get_ok(&format!("/v1/events/{}", kept_event["id"].as_str().unwrap()), &app.server_key).await;
    assert_eq!(event["data"]["email"], kept_email);
    assert_eq!(search(&app, "grace.kept").await.len(), 2);

    // In storage: no table of the database holds any of the erased values.
    let url = app.settings.database_url.clone().unwrap();
    let rows = crate::credentials::dump(&url, &app.settings.data_dir).await;
    assert!(rows.iter().any(|(_, row)| row.contains(kept_email)), "the dump sees the kept customer's data");
    // (The searches above are on record with their terms, "ada.erased"; the address is not.)
    let found: Vec<&(String, String)> = rows.iter().filter(|(_, row)| row.contains(gone_email)).collect();
    assert!(found.is_empty(), "{gone_email} is still stored: {found:?}");

    // On SQLite, not in the files' bytes either: no freed space or old page version keeps a copy.
    if url.starts_with("sqlite") {
        for entry in std::fs::read_dir(&app.settings.data_dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap_or_default();
            let copies = bytes.windows(gone_email.len()).filter(|w| *w == gone_email.as_bytes()).count();
            assert_eq!(copies, 0, "{gone_email} is in the bytes of {}", path.display());
        }
        // Nor in the search index's trigrams: a contentless FTS5 delete only marks the row, and its
        // trigrams stay in the segments until they are merged.
        let left = erased_trigrams(&app).await;
        assert!(left.is_empty(), "the index keeps trigrams of the erased address: {left:?}");
    }

    // The projections are still what the log replays to.
    let before = crate::event_log::dump(&app.db).await;
    logbook::projections::rebuild(&app.store, |_, _| {}).await.unwrap();
    let after = crate::event_log::dump(&app.db).await;
    for ((table, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a, b, "projection {table} differs after a rebuild");
    }
}

#[tokio::test]
async fn an_erasure_in_one_project_leaves_the_same_customer_id_in_another_alone() {
    let app = spawn_with(quick_webhooks).await;
    let (log_id, _) = activity(&app, "cust_shared", "shared@example.com").await;
    let other = app.other_project_key("Other").await;
    let task = json_of(app.post("/v1/customers/cust_shared/erase", &other, json!({})).await, StatusCode::ACCEPTED).await;
    let done = app.client.get(format!("{}/v1/tasks/{}", app.address, task["id"].as_str().unwrap())).bearer_auth(&other);
    let mut finished = Value::Null;
    for _ in 0..200 {
        finished = json_of(done.try_clone().unwrap().checked().await.unwrap(), StatusCode::OK).await;
        if finished["status"] == "done" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(finished["status"], "done", "{finished}");
    assert_eq!(finished["result"]["logs"], 0);
    let log = app.get_ok(&format!("/v1/logs/{log_id}"), &app.server_key).await;
    assert_eq!(log["request_body"]["email"], "shared@example.com");
}

//! Imports and background tasks: upload, progress, bad rows, downloads, cancelling.

use crate::conformance::Conform;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_error, json_of, orders_csv, spawn_app, spawn_with, spawn_without_workers};

#[tokio::test]
async fn a_csv_with_bad_rows_imports_the_good_ones_and_lists_the_bad_lines() {
    let app = spawn_app().await;
    let csv = "type,source_id,customer.email,customer.name,total\n\
               order.created,o1,ann@example.com,Ann,12\n\
               Bad Type,o2,bob@example.com,Bob,3\n\
               order.paid,o3,,Cy,5\n\
               order.created,o4,too-few\n";
    let import = app.upload("orders.csv", "text/csv", csv.as_bytes().to_vec()).await;
    assert!(import["id"].as_str().unwrap().starts_with("imp_"));
    assert_eq!(import["file"]["name"], "orders.csv");
    assert_eq!(import["file"]["content_type"], "text/csv");
    assert_eq!(import["file"]["size_bytes"], csv.len());
    let task_id = import["task_id"].as_str().unwrap();

    let task = app.wait_finished(task_id).await;
    assert_eq!(task["type"], "import");
    assert_eq!(task["status"], "done", "{task}");
    assert_eq!(task["processing_status"], "failure", "rows failed");
    assert_eq!(task["progress"]["processed"], 4);
    assert_eq!(task["progress"]["percent"], 100);
    assert_eq!(task["error_count"], 2);
    assert_eq!(task["errors"][0]["line"], 3);
    assert!(task["errors"][0]["message"].as_str().unwrap().starts_with("type:"));
    assert_eq!(task["errors"][1]["line"], 5);
    assert_eq!(task["errors"][1]["message"], "has 3 fields, the header has 5");
    assert_eq!(task["created_by"], json!({"kind": "server_key", "id": app.server_key_id}));
    assert!(task["started_at"].is_string() && task["finished_at"].is_string());
    let at = |field: &str| chrono::DateTime::parse_from_rfc3339(task[field].as_str().unwrap()).unwrap().timestamp_millis();
    assert_eq!(task["processing_time_ms"].as_i64().unwrap(), at("finished_at") - at("started_at"), "{task}");
    assert_eq!(task["result"]["rows_imported"], 2);

    let import = app.get_ok(&format!("/v1/imports/{}", import["id"].as_str().unwrap()), &app.server_key).await;
    assert_eq!((import["rows_total"].as_i64(), import["rows_imported"].as_i64(), import["rows_failed"].as_i64()), (Some(4), Some(2), Some(2)));

    // The good rows are events, with nested data and the upload as their request.
    let events = app.events("type=order.created&type=order.paid").await;
    assert_eq!(events.len(), 2);
    let first = events.iter().find(|e| e["source_id"] == "o1").unwrap();
    assert_eq!(first["data"], json!({"customer": {"email": "ann@example.com", "name": "Ann"}, "total": "12"}));
    assert_eq!(first["request_id"], task["request_id"]);
    let paid = events.iter().find(|e| e["source_id"] == "o3").unwrap();
    assert_eq!(paid["data"], json!({"customer": {"name": "Cy"}, "total": "5"}), "empty cells are absent fields");
    // The server announces the end.
    let done = app.events("type=import.done").await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["data"]["rows_failed"], 2);
}

#[tokio::test]
async fn the_original_file_downloads_byte_for_byte_from_the_import_and_from_the_upload_log() {
    let app = spawn_app().await;
    // Larger than one storage chunk, with bytes that are not valid in a CSV row.
    let mut bytes = orders_csv(40_000, 0);
    bytes.extend_from_slice(&[0xff, 0x00, b'\r', b'\n']);
    let response = app
        .client
        .post(format!("{}/v1/imports?name=big%20orders.csv", app.address))
        .bearer_auth(&app.server_key)
        .header("content-type", "text/csv")
        .body(bytes.clone())
        .checked()
        .await
        .unwrap();
    let log_id = response.headers()["logbook-log-id"].to_str().unwrap().to_owned();
    let import = json_of(response, StatusCode::ACCEPTED).await;
    assert_eq!(import["file"]["name"], "big orders.csv");
    let sha = sha256_hex(&bytes);
    assert_eq!(import["file"]["sha256"], sha);
    let id = import["id"].as_str().unwrap();

    for path in [format!("/v1/imports/{id}/file"), format!("/v1/logs/{log_id}/file")] {
        let response = app.get(&path, &app.server_key).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-type"], "text/csv");
        assert!(response.headers()["content-disposition"].to_str().unwrap().contains("big orders.csv"));
        let body = response.bytes().await.unwrap();
        assert_eq!(body.len(), bytes.len(), "{path}");
        assert_eq!(sha256_hex(&body), sha, "{path}");
    }
    // The upload's log entry names the import and its task, and does not store the file twice.
    let log = app.get_ok(&format!("/v1/logs/{log_id}"), &app.server_key).await;
    let related: Vec<&str> = log["related"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(related.contains(&id) && related.contains(&import["task_id"].as_str().unwrap()), "{log}");
    assert!(log["request_body"].as_str().unwrap().contains(id));
    // A log without a file, and another project's import, are 404.
    let other = app.get_ok("/v1/logs?limit=1", &app.server_key).await;
    let plain_log = other["data"][0]["id"].as_str().unwrap();
    assert_error(app.get(&format!("/v1/logs/{plain_log}/file"), &app.server_key).await, StatusCode::NOT_FOUND, "not_found").await;
    let foreign_key = app.other_project_key("Other").await;
    assert_error(app.get(&format!("/v1/imports/{id}/file"), &foreign_key).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(app.get(&format!("/v1/imports/{id}"), &foreign_key).await, StatusCode::NOT_FOUND, "not_found").await;

    let task = app.wait_finished(import["task_id"].as_str().unwrap()).await;
    assert_eq!(task["result"]["rows_imported"], 40_000, "{task}");
    assert_eq!(task["error_count"], 1, "the last line is not UTF-8");
    assert_eq!(task["errors"][0]["line"], 40_002);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn ndjson_imports_as_a_raw_body() {
    let app = spawn_app().await;
    let body = "{\"type\":\"user.signed_up\",\"source_id\":\"u1\",\"data\":{\"plan\":\"pro\"}}\n\n{\"type\":\"user.signed_up\",\"data\":[1]}\n{\"type\":\"user.left\"}\n";
    let response = app
        .client
        .post(format!("{}/v1/imports", app.address))
        .bearer_auth(&app.user_token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .checked()
        .await
        .unwrap();
    let import = json_of(response, StatusCode::ACCEPTED).await;
    assert_eq!(import["format"], "ndjson");
    let task = app.wait_finished(import["task_id"].as_str().unwrap()).await;
    assert_eq!(task["status"], "done");
    assert_eq!(task["created_by"], json!({"kind": "user", "id": app.user_id}));
    assert_eq!(task["errors"], json!([{"line": 3, "message": "data: must be an object"}]));
    let events = app.events("type=user.signed_up&type=user.left").await;
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn a_file_that_cannot_be_read_fails_the_task_with_a_message_and_announces_it() {
    let app = spawn_app().await;
    let cases: [(&str, &str, Vec<u8>, &str); 3] = [
        ("people.csv", "text/csv", b"name,email\nann,a@b.c\n".to_vec(), "no `type` column"),
        ("empty.csv", "text/csv", Vec::new(), "empty"),
        ("rows.ndjson", "application/x-ndjson", b"type,name\nx,y\n".to_vec(), "not a JSON object"),
    ];
    for (name, content_type, bytes, expected) in cases {
        let import = app.upload(name, content_type, bytes).await;
        let task = app.wait_finished(import["task_id"].as_str().unwrap()).await;
        assert_eq!(task["status"], "failed", "{name}: {task}");
        assert_eq!(task["processing_status"], "failure");
        let message = task["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{name}: {message}");
    }
    assert_eq!(app.events("type=import.failed").await.len(), 3);
    assert_eq!(app.events("type=task.failed").await.len(), 3);
    let failed = app.get_ok("/v1/tasks?status=failed&type=import", &app.server_key).await;
    assert_eq!(failed["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn bad_uploads_are_refused_and_create_nothing() {
    let app = spawn_with(|s| s.max_import_bytes = 1000).await;
    let too_big = orders_csv(100, 0);
    let response = app
        .client
        .post(format!("{}/v1/imports", app.address))
        .bearer_auth(&app.server_key)
        .header("content-type", "text/csv")
        .body(too_big.clone())
        .checked()
        .await
        .unwrap();
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // Without a declared length, the limit is found while streaming.
    let stream = futures_util::stream::iter(too_big.chunks(100).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>());
    let response = app
        .client
        .post(format!("{}/v1/imports", app.address))
        .bearer_auth(&app.server_key)
        .header("content-type", "text/csv")
        .body(reqwest::Body::wrap_stream(stream))
        .checked()
        .await
        .unwrap();
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let response = app
        .client
        .post(format!("{}/v1/imports", app.address))
        .bearer_auth(&app.server_key)
        .header("content-type", "application/pdf")
        .body("%PDF")
        .checked()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    let form = reqwest::multipart::Form::new().text("other", "x");
    let response = app.client.post(format!("{}/v1/imports", app.address)).bearer_auth(&app.server_key).multipart(form).checked().await.unwrap();
    assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let response = app
        .client
        .post(format!("{}/v1/imports", app.address))
        .bearer_auth(&app.client_key)
        .header("content-type", "text/csv")
        .body("type\n")
        .checked()
        .await
        .unwrap();
    assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;

    let tasks = app.get_ok("/v1/tasks", &app.server_key).await;
    assert_eq!(tasks["data"], json!([]), "no task was created");
    let files = logbook::services::retention::remove_abandoned_uploads(&app.store.clone()).await.unwrap();
    assert_eq!(files, 0, "no partial file was left behind");
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(entity::file::Entity::find().count(&app.db).await.unwrap(), 0);
}

#[tokio::test]
async fn task_filters_and_bad_filter_values() {
    let app = spawn_app().await;
    let ok = app.upload("a.csv", "text/csv", b"type\norder.created\n".to_vec()).await;
    let bad = app.upload("b.csv", "text/csv", b"nope\n".to_vec()).await;
    app.wait_finished(ok["task_id"].as_str().unwrap()).await;
    app.wait_finished(bad["task_id"].as_str().unwrap()).await;
    let ids = |v: serde_json::Value| -> Vec<String> { v["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect() };
    assert_eq!(ids(app.get_ok("/v1/tasks?processing_status=success", &app.server_key).await), vec![ok["task_id"].as_str().unwrap()]);
    assert_eq!(ids(app.get_ok("/v1/tasks?status=failed", &app.server_key).await), vec![bad["task_id"].as_str().unwrap()]);
    assert_eq!(ids(app.get_ok("/v1/tasks?status=done&status=failed&type=import", &app.server_key).await).len(), 2);
    assert_eq!(ids(app.get_ok("/v1/tasks?type=export", &app.server_key).await).len(), 0);
    assert_eq!(ids(app.get_ok("/v1/tasks?created_after=2000-01-01&created_before=2000-01-02", &app.server_key).await).len(), 0);
    let page = app.get_ok("/v1/tasks?limit=1", &app.server_key).await;
    assert_eq!(page["has_more"], true);
    assert!(page["data"][0].get("errors").is_none(), "lists carry error_count only");
    let next = app.get_ok(&format!("/v1/tasks?limit=1&cursor={}", page["next_cursor"].as_str().unwrap()), &app.server_key).await;
    assert_eq!(next["has_more"], false);
    for query in ["status=running", "type=imports", "processing_status=ok", "created_after=yesterday", "colour=red"] {
        assert_error(app.get(&format!("/v1/tasks?{query}"), &app.server_key).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    assert_error(app.get("/v1/tasks/task_nope", &app.server_key).await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_scheduled_task_cancelled_never_runs_and_a_finished_one_cannot_be_cancelled() {
    let app = spawn_without_workers().await;
    let import = app.upload("a.csv", "text/csv", orders_csv(10, 0)).await;
    let task_id = import["task_id"].as_str().unwrap();
    let task = app.get_ok(&format!("/v1/tasks/{task_id}"), &app.server_key).await;
    assert_eq!(task["status"], "scheduled");
    assert_eq!(task["processing_status"], serde_json::Value::Null);
    let cancelled = json_of(app.post(&format!("/v1/tasks/{task_id}/cancel"), &app.server_key, json!({})).await, StatusCode::OK).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["finished_at"].is_string());
    assert_error(app.post(&format!("/v1/tasks/{task_id}/cancel"), &app.server_key, json!({})).await, StatusCode::CONFLICT, "conflict").await;

    // Workers starting later find the job and leave the task alone.
    let (worker, _) = crate::helpers::restart(&app).await;
    let _server = worker.spawn();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let task = app.get_ok(&format!("/v1/tasks/{task_id}"), &app.server_key).await;
    assert_eq!(task["status"], "cancelled");
    assert_eq!(app.count_events().await.0, 0);

    let done = app.upload("b.csv", "text/csv", orders_csv(3, 0)).await;
    let done_id = done["task_id"].as_str().unwrap();
    app.wait_finished(done_id).await;
    assert_error(app.post(&format!("/v1/tasks/{done_id}/cancel"), &app.server_key, json!({})).await, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn cancelling_a_running_import_stops_it_and_keeps_what_was_published() {
    let app = spawn_app().await;
    let import = app.upload("big.csv", "text/csv", orders_csv(200_000, 0)).await;
    let task_id = import["task_id"].as_str().unwrap();
    let running = app.wait_task(task_id, |t| t["progress"]["processed"].as_i64().unwrap_or(0) > 0).await;
    assert_eq!(running["status"], "in_progress", "{running}");
    let cancelled = app.post(&format!("/v1/tasks/{task_id}/cancel"), &app.server_key, json!({})).await;
    let cancelled = json_of(cancelled, StatusCode::OK).await;
    assert_eq!(cancelled["status"], "cancelled");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let task = app.get_ok(&format!("/v1/tasks/{task_id}"), &app.server_key).await;
    assert_eq!(task["status"], "cancelled");
    let imported = task["result"]["rows_imported"].as_i64().unwrap();
    assert!(imported > 0 && imported < 200_000, "{task}");
    // Exactly the committed steps' rows are events, and nothing moves after the cancel.
    assert_eq!(app.count_events().await, (imported, imported));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.count_events().await.0, imported);
}

#[tokio::test]
async fn workers_on_several_nodes_share_the_queue_and_run_each_import_once() {
    let app = spawn_app().await;
    let (second, _) = crate::helpers::restart(&app).await;
    let _second = second.spawn();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let mut csv = String::from("type,source_id\n");
        for j in 0..500 {
            csv.push_str(&format!("order.created,f{i}-{j}\n"));
        }
        tasks.push(app.upload(&format!("f{i}.csv"), "text/csv", csv.into_bytes()).await["task_id"].as_str().unwrap().to_owned());
    }
    for id in &tasks {
        let task = app.wait_finished(id).await;
        assert_eq!(task["status"], "done", "{task}");
        assert_eq!(task["result"]["rows_imported"], 500);
    }
    assert_eq!(app.count_events().await, (3000, 3000));
}

/// A step that fails on a storage error every time is retried, and after its job's last attempt the
/// task fails instead of staying `in_progress` with nothing left to run it, even if recording the
/// failure fails too at first (the database still failing).
#[tokio::test]
async fn a_task_failing_on_every_attempt_ends_failed_not_in_progress() {
    use sea_orm::ConnectionTrait;
    let app = spawn_app().await;
    // The database itself refuses every event the import would publish, and for a while the
    // task's own `task.failed` (and nothing else).
    let refuse = |name: &str, event_type: &str| -> Vec<String> {
        match app.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => vec![
                format!(
                    "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN IF NEW.event_type = '{event_type}' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$"
                ),
                format!("CREATE TRIGGER {name} BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION {name}()"),
            ],
            _ => vec![format!(
                "CREATE TRIGGER {name} BEFORE INSERT ON events WHEN NEW.event_type = '{event_type}'
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )],
        }
    };
    for statement in refuse("refuse_orders", "order.created").into_iter().chain(refuse("refuse_failure", "task.failed")) {
        app.db.execute_unprepared(&statement).await.unwrap();
    }
    let csv = "type,source_id,customer.email,customer.name,total\norder.created,o1,ann@example.com,Ann,12\n";
    let import = app.upload("orders.csv", "text/csv", csv.as_bytes().to_vec()).await;
    let task_id = import["task_id"].as_str().unwrap();

    // Every attempt starts the task once; the eleventh start is the give-up's, whose record of the
    // failure is refused.
    let starts = format!("SELECT COUNT(*) AS n FROM event_log WHERE stream_id = '{task_id}' AND event_type = 'task.started'");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let row = app.db.query_one_raw(sea_orm::Statement::from_string(app.db.get_database_backend(), starts.clone())).await.unwrap().unwrap();
        if row.try_get::<i64>("", "n").unwrap() > 10 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the job did not use up its attempts in 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let task = app.get_ok(&format!("/v1/tasks/{task_id}"), &app.server_key).await;
    assert_eq!(task["status"], "in_progress", "{task}");
    let drop_trigger = match app.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => "DROP TRIGGER refuse_failure ON events",
        _ => "DROP TRIGGER refuse_failure",
    };
    app.db.execute_unprepared(drop_trigger).await.unwrap();

    let task = app.wait_finished(task_id).await;
    assert_eq!(task["status"], "failed", "{task}");
    let message = task["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("10 times") && !message.contains("refused by the test"), "no database internals: {message}");
    assert!(app.events("type=order.created").await.is_empty(), "no row got through");
    assert_eq!(app.events("type=task.failed").await.len(), 1);
}

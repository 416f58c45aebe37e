//! Exports: the rows of a list, as the list shows them, in a CSV file a spreadsheet opens safely.

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, entry, json_of, quick_webhooks, spawn_app, spawn_with, spawn_without_workers};

fn iso(ms: i64) -> String {
    logbook::domain::time::format_utc(ms)
}

impl TestApp {
    /// Creates an export (202) and waits for it to finish; returns the finished export.
    async fn export(&self, body: Value) -> Value {
        let created = json_of(self.post("/v1/exports", &self.server_key, body).await, StatusCode::ACCEPTED).await;
        assert_eq!(created["status"], "scheduled", "{created}");
        let task = self.wait_finished(created["task_id"].as_str().unwrap()).await;
        assert_eq!(task["status"], "done", "{task}");
        self.get_ok(&format!("/v1/exports/{}", created["id"].as_str().unwrap()), &self.server_key).await
    }

    /// The export's file as CSV records, the header first.
    async fn download(&self, export: &Value) -> Vec<Vec<String>> {
        let response = self.get(&format!("/v1/exports/{}/download", export["id"].as_str().unwrap()), &self.server_key).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/csv"));
        let disposition = headers["content-disposition"].to_str().unwrap();
        assert!(disposition.contains("attachment") && disposition.contains(export["file_name"].as_str().unwrap()), "{disposition}");
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes.len() as i64, export["size_bytes"].as_i64().unwrap());
        let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(bytes.as_ref());
        reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect()
    }
}

fn column<'a>(records: &'a [Vec<String>], name: &str) -> Vec<&'a str> {
    let at = records[0].iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}: {:?}", records[0]));
    records[1..].iter().map(|r| r[at].as_str()).collect()
}

#[tokio::test]
async fn a_logs_export_holds_exactly_the_rows_of_the_same_list_query_in_list_order() {
    let app = spawn_app().await;
    let now = logbook::domain::time::now_ms();
    let mut entries = Vec::new();
    for i in 0..2600 {
        let mut e = entry(&iso(now - 3_600_000 + i * 1000));
        e["http_status"] = json!(if i % 3 == 0 { 500 } else { 200 });
        e["channel"] = json!(if i % 2 == 0 { "shopify" } else { "stripe" });
        entries.push(e);
    }
    for chunk in entries.chunks(1000) {
        app.ingest(chunk.to_vec()).await;
    }
    let query = format!("status=failure&channel=shopify&channel=stripe&occurred_after={}", iso(now - 7_200_000));
    let expected = app.log_ids(&query).await;
    assert!(expected.len() > 800, "{}", expected.len());

    let filters = json!({"status": "failure", "channel": ["shopify", "stripe"], "occurred_after": iso(now - 7_200_000)});
    let export = app.export(json!({"resource": "logs", "filters": filters})).await;
    assert_eq!(export["status"], "done");
    assert_eq!(export["filters"], filters, "the filters are kept as given");
    assert_eq!(export["row_count"], expected.len());
    assert!(export["finished_at"].is_string() && export["size_bytes"].as_i64().unwrap() > 0);
    assert_eq!(export["created_by"]["kind"], "server_key");
    let records = app.download(&export).await;
    assert_eq!(records[0], export["fields"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect::<Vec<_>>());
    assert_eq!(records[0][..3], ["id", "occurred_at", "channel"]);
    assert_eq!(column(&records, "id"), expected, "same rows, same order");
    assert!(column(&records, "status").iter().all(|s| *s == "failure"));
    assert!(column(&records, "occurred_at").iter().all(|t| t.ends_with('Z')), "times in UTC");

    // It is listed, and the export.done event says so.
    let listed = app.get_ok("/v1/exports?resource=logs&status=done", &app.server_key).await;
    assert_eq!(listed["data"][0]["id"], export["id"]);
    assert!(app.get_ok("/v1/exports?status=failed", &app.server_key).await["data"].as_array().unwrap().is_empty());
    let done = app.events("type=export.done").await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["data"]["export_id"], export["id"]);
    assert_eq!(done[0]["data"]["row_count"], expected.len());
}

#[tokio::test]
async fn bodies_are_json_text_and_cells_a_spreadsheet_would_run_are_inert() {
    let app = spawn_app().await;
    let now = logbook::domain::time::now_ms();
    let mut e = entry(&iso(now - 1000));
    e["customer_id"] = json!("=HYPERLINK(\"http://evil\")");
    e["user_id"] = json!("@SUM(A1:A9)");
    e["request_body"] = json!({"note": "a, \"quoted\"\nline", "n": -1});
    e["response_body"] = json!("=2+2");
    e["path"] = json!("/orders/-1");
    let id = app.ingest(vec![e]).await.remove(0);
    let fields = json!(["id", "customer_id", "user_id", "request_body", "response_body", "occurred_at", "occurred_at_project", "http_status"]);
    let export = app.export(json!({"resource": "logs", "filters": {"customer_id": "=HYPERLINK(\"http://evil\")"}, "fields": fields})).await;
    let records = app.download(&export).await;
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0], fields.as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect::<Vec<_>>());
    let row = &records[1];
    assert_eq!(row[0], id);
    assert_eq!(row[1], "'=HYPERLINK(\"http://evil\")");
    assert_eq!(row[2], "'@SUM(A1:A9)");
    assert_eq!(serde_json::from_str::<Value>(&row[3]).unwrap(), json!({"note": "a, \"quoted\"\nline", "n": -1}));
    assert_eq!(row[4], "\"=2+2\"", "a JSON string keeps its quotes, so it is no formula");
    assert!(row[5].ends_with('Z'));
    let log = app.get_ok(&format!("/v1/logs/{id}"), &app.server_key).await;
    assert_eq!(row[6], log["occurred_at_project"], "the project-zone twin, asked for");
    assert_eq!(row[7], "200");
}

#[tokio::test]
async fn tasks_sendouts_and_events_export_through_their_own_lists() {
    let app = spawn_with(quick_webhooks).await;
    let receiver = crate::receiver::Receiver::start().await;
    app.create_webhook(&receiver.url(), &["order.*"]).await;
    let upload = app.upload("orders.csv", "text/csv", b"type,source_id,total\norder.created,o1,10\norder.paid,o2,-5\n".to_vec()).await;
    app.wait_finished(upload["task_id"].as_str().unwrap()).await;
    let events = app.events("type=order.created&type=order.paid").await;
    assert_eq!(events.len(), 2);

    let export = app.export(json!({"resource": "events", "filters": {"type": "order.paid"}})).await;
    let records = app.download(&export).await;
    assert_eq!(records[0], ["id", "type", "source_id", "data", "created_at", "request_id"]);
    assert_eq!(column(&records, "source_id"), ["o2"]);
    assert_eq!(serde_json::from_str::<Value>(column(&records, "data")[0]).unwrap(), json!({"total": "-5"}));

    let export = app.export(json!({"resource": "tasks", "filters": {"type": "import"}, "fields": ["id", "type", "status", "progress.processed", "created_by.kind"]})).await;
    let records = app.download(&export).await;
    assert_eq!(records[1..], [vec![upload["task_id"].as_str().unwrap().to_owned(), "import".into(), "done".into(), "2".into(), "server_key".into()]]);

    let listed = app.get_ok("/v1/webhook-sendouts?limit=1000", &app.server_key).await;
    let mut expected: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(expected.len(), 2);
    let export = app.export(json!({"resource": "webhook_sendouts", "filters": {"event_type": ["order.created", "order.paid"]}})).await;
    let records = app.download(&export).await;
    assert_eq!(records[0][..3], ["id", "webhook_id", "url"]);
    let mut ids = column(&records, "id");
    ids.sort_unstable();
    expected.sort_unstable();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn bad_requests_are_422_naming_each_problem_and_create_nothing() {
    let app = spawn_app().await;
    let cases = [
        (json!({"resource": "invoices"}), "resource"),
        (json!({"resource": "logs", "filters": {"colour": "red"}}), "filters.colour"),
        (json!({"resource": "logs", "filters": {"status": "maybe"}}), "filters.status"),
        (json!({"resource": "logs", "filters": {"occurred_after": "yesterday"}}), "filters.occurred_after"),
        (json!({"resource": "tasks", "filters": {"type": ["import", 3]}}), "filters.type"),
        (json!({"resource": "logs", "fields": ["id", "password"]}), "fields[1]"),
        (json!({"resource": "events", "fields": []}), "fields"),
        (json!({"resource": "logs", "format": "xlsx"}), "format"),
        (json!({"resource": "logs", "filters": ["status"]}), "filters"),
        (json!({"resource": "logs", "extra": true}), "extra"),
    ];
    for (body, field) in cases {
        let err = assert_error(app.post("/v1/exports", &app.server_key, body.clone()).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        let details = err["error"]["details"].as_array().unwrap();
        assert!(details.iter().any(|d| d["field"].as_str().unwrap_or_default().contains(field)), "{body}: {err}");
    }
    assert_error(app.post("/v1/exports", &app.server_key, json!("logs")).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let listed = app.get_ok("/v1/exports", &app.server_key).await;
    assert!(listed["data"].as_array().unwrap().is_empty(), "nothing was created: {listed}");
    let tasks = app.get_ok("/v1/tasks?type=export", &app.server_key).await;
    assert!(tasks["data"].as_array().unwrap().is_empty());
    assert_error(app.get("/v1/exports?status=nearly", &app.server_key).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    // A client key may only publish events.
    assert_error(app.post("/v1/exports", &app.client_key, json!({"resource": "logs"})).await, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_download_is_409_until_done_and_another_project_sees_nothing() {
    let app = spawn_without_workers().await;
    let created = json_of(app.post("/v1/exports", &app.user_token, json!({"resource": "logs"})).await, StatusCode::ACCEPTED).await;
    assert_eq!(created["created_by"]["kind"], "user");
    assert_eq!(created["created_by"]["id"], app.user_id);
    let id = created["id"].as_str().unwrap();
    let err = assert_error(app.get(&format!("/v1/exports/{id}/download"), &app.server_key).await, StatusCode::CONFLICT, "conflict").await;
    assert!(err["error"]["message"].as_str().unwrap().contains("scheduled"), "{err}");
    let task = app.get_ok(&format!("/v1/tasks/{}", created["task_id"].as_str().unwrap()), &app.server_key).await;
    assert_eq!(task["type"], "export");
    assert_eq!(task["related"], json!([{"type": "export", "id": id}]));

    let other = app.other_project_key("Other").await;
    assert_error(app.get(&format!("/v1/exports/{id}"), &other).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(app.get(&format!("/v1/exports/{id}/download"), &other).await, StatusCode::NOT_FOUND, "not_found").await;
    assert!(app.get_ok("/v1/exports", &other).await["data"].as_array().unwrap().is_empty());

    // Cancelled before it ran: the export failed, and says why.
    json_of(app.post(&format!("/v1/tasks/{}/cancel", created["task_id"].as_str().unwrap()), &app.server_key, json!({})).await, StatusCode::OK).await;
    let export = app.get_ok(&format!("/v1/exports/{id}"), &app.server_key).await;
    assert_eq!(export["status"], "failed");
    assert!(export["error"].as_str().unwrap().contains("cancelled"), "{export}");
    let err = assert_error(app.get(&format!("/v1/exports/{id}/download"), &app.server_key).await, StatusCode::CONFLICT, "conflict").await;
    assert!(err["error"]["message"].as_str().unwrap().contains("failed"), "{err}");
}

#[tokio::test]
async fn a_big_download_streams_while_other_requests_go_on() {
    let app = spawn_app().await;
    let now = logbook::domain::time::now_ms();
    for batch in 0..5 {
        let entries: Vec<Value> = (0..1000)
            .map(|i| {
                let mut e = entry(&iso(now - 60_000 - (batch * 1000 + i)));
                e["request_body"] = json!({"pad": "x".repeat(600), "i": i});
                e
            })
            .collect();
        app.ingest(entries).await;
    }
    let export = app.export(json!({"resource": "logs", "filters": {"channel": "shopify"}, "fields": ["id", "request_body"]})).await;
    assert_eq!(export["row_count"], 5000);
    assert!(export["size_bytes"].as_i64().unwrap() > 3 << 20, "more than one stored chunk: {export}");
    let url = format!("{}/v1/exports/{}/download", app.address, export["id"].as_str().unwrap());
    let mut response = app.client.get(url).bearer_auth(&app.server_key).send().await.unwrap();
    let first = response.chunk().await.unwrap().expect("a first chunk");
    // Mid-download, the server answers other requests.
    let started = std::time::Instant::now();
    app.get_ok("/v1/exports", &app.server_key).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let mut size = first.len();
    while let Some(chunk) = response.chunk().await.unwrap() {
        size += chunk.len();
    }
    assert_eq!(size as i64, export["size_bytes"].as_i64().unwrap());
}

#[tokio::test]
async fn a_logs_export_browses_with_search_and_column_filters_in_file_order() {
    let app = spawn_app().await;
    let now = logbook::domain::time::now_ms();
    let entries: Vec<Value> = (0..120)
        .map(|i| {
            let mut e = entry(&iso(now - 100_000 + i * 100));
            e["channel"] = json!(if i % 4 == 0 { "stripe" } else { "shopify" });
            // Bodies over 64 bytes: their column is left out of the exact-value index.
            e["request_body"] = json!({"animal": if i % 10 == 0 { "ZeBrA" } else { "horse" }, "i": i, "note": "long enough to be read, not looked up"});
            e
        })
        .collect();
    app.ingest(entries).await;
    let filters = json!({"channel": ["shopify", "stripe"]});
    let export = app.export(json!({"resource": "logs", "filters": filters, "fields": ["id", "channel", "request_body"]})).await;
    assert_eq!((&export["browse_status"], &export["browse_indexed_rows"]), (&json!("ready"), &json!(120)), "{export}");
    let task = app.get_ok(&format!("/v1/tasks/{}", export["task_id"].as_str().unwrap()), &app.server_key).await;
    assert_eq!(task["progress"], json!({"processed": 240, "total": 240, "percent": 100}), "each row written, then indexed");
    let records = app.download(&export).await;
    let file_ids = column(&records, "id");
    let base = format!("/v1/exports/{}/rows", export["id"].as_str().unwrap());
    let app = &app;
    let rows = |query: &str| {
        let path = format!("{base}?{query}");
        async move { app.get_ok(&path, &app.server_key).await }
    };

    // Every row, a page at a time, in the file's order.
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let page = rows(&format!("limit=50{}", cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default())).await;
        assert_eq!(page["columns"], json!(["id", "channel", "request_body"]));
        assert_eq!(page["original_filters"], filters);
        seen.extend(page["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, file_ids);

    let zebras = rows("q=zebra&limit=1000").await;
    let data = zebras["data"].as_array().unwrap();
    assert_eq!(data.len(), 12, "case-insensitive, inside the JSON body");
    assert_eq!(data[0]["request_body"]["animal"], "ZeBrA", "body columns come back as JSON values");
    let stripe_zebras = rows("q=ZEBRA&filter.channel=stripe&limit=1000").await;
    assert!(stripe_zebras["data"].as_array().unwrap().iter().all(|r| r["channel"] == "stripe" && r["request_body"]["animal"] == "ZeBrA"));
    assert_eq!(stripe_zebras["data"].as_array().unwrap().len(), 6, "i % 20 == 0 for i in 0..120");
    assert!(rows("q=%25_&limit=5").await["data"].as_array().unwrap().is_empty(), "LIKE wildcards are searched as text");
    let one = rows(&format!("filter.id={}", file_ids[7])).await;
    assert_eq!(one["data"].as_array().unwrap().len(), 1);

    // Exact filters on the short columns go through the exact-value index, a page at a time and
    // in file order; on the bodies' column they read the rows. Both give the same answers.
    let sql = format!("SELECT col FROM export_cells WHERE export_id = '{}' AND block = -1 ORDER BY col", export["id"].as_str().unwrap());
    let marked: Vec<i32> = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(app.db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("", "col").unwrap())
        .collect();
    assert_eq!(marked, vec![0, 1], "id and channel are indexed, the long bodies are not");
    let channels = column(&records, "channel");
    let stripe_ids: Vec<&str> = file_ids.iter().zip(&channels).filter(|(_, c)| **c == "stripe").map(|(id, _)| *id).collect();
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let page = rows(&format!("filter.channel=stripe&limit=7{}", cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default())).await;
        seen.extend(page["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, stripe_ids, "every stripe row, in file order, over pages of 7");
    let count = |query: String| async move { rows(&query).await["data"].as_array().unwrap().len() };
    let shopify_id = file_ids.iter().zip(&channels).find(|(_, c)| **c == "shopify").unwrap().0;
    assert_eq!(count(format!("filter.channel=stripe&filter.id={}", stripe_ids[3])).await, 1, "two looked-up filters intersect");
    assert_eq!(count(format!("filter.channel=stripe&filter.id={shopify_id}")).await, 0);
    assert_eq!(count("filter.channel=Stripe".into()).await, 0, "exact, so case counts");
    assert_eq!(count("filter.channel=stripe&q=zebra&limit=100".into()).await, 6, "a looked-up filter with a search");
    let first_stripe = channels.iter().position(|c| *c == "stripe").unwrap();
    let body = column(&records, "request_body")[first_stripe].to_owned();
    let encoded: String = url::form_urlencoded::byte_serialize(body.as_bytes()).collect();
    assert_eq!(count(format!("filter.request_body={encoded}&filter.channel=stripe")).await, 1, "a read filter beside a looked-up one");
    assert_eq!(count(format!("filter.request_body={encoded}")).await, 1, "a read filter alone");

    let path = format!("/v1/exports/{}/rows", export["id"].as_str().unwrap());
    assert_error(app.get(&format!("{path}?filter.colour=red"), &app.server_key).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_error(app.get(&format!("{path}?cursor=nope"), &app.server_key).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    assert_error(app.get(&format!("{path}?cursor=row_-9223372036854775808"), &app.server_key).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    for past_the_end in ["filter.channel=stripe&cursor=row_9223372036854775807", "cursor=row_9223372036854775807", "cursor=row_120"] {
        let page = rows(past_the_end).await;
        assert!(page["data"].as_array().unwrap().is_empty() && page["next_cursor"].is_null(), "{past_the_end}: {page}");
    }
    assert_error(app.get(&format!("{path}?sort=id"), &app.server_key).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    let other = app.other_project_key("Other").await;
    assert_error(app.get(&path, &other).await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_search_reads_only_the_blocks_whose_text_filter_passes_and_finds_every_match_across_them() {
    let app = spawn_app().await;
    let now = logbook::domain::time::now_ms();
    // Three blocks of the text index (1,024 rows each) and a part of a fourth.
    let rows = 3 * 1024 + 100;
    let rare = [5, 1023, 1024, 2999, 3100];
    for chunk in (0..rows).collect::<Vec<_>>().chunks(500) {
        let entries: Vec<Value> = chunk
            .iter()
            .map(|&i| {
                let mut e = entry(&iso(now - 1_000_000 + i as i64 * 100));
                e["request_body"] = json!({"n": i, "word": if rare.contains(&i) { "Quetzal*[?]'ΟΔΟΣΑ" } else { "sparrow" }});
                e
            })
            .collect();
        app.ingest(entries).await;
    }
    // The entries alone, not the server's logs of their ingest.
    let export = app.export(json!({"resource": "logs", "filters": {"channel": "shopify"}, "fields": ["id", "request_body"]})).await;
    assert_eq!(export["browse_indexed_rows"], json!(rows), "{export}");
    let sql = format!("SELECT block FROM export_grams WHERE export_id = '{}' ORDER BY block", export["id"].as_str().unwrap());
    let blocks: Vec<i64> =
        app.db.query_all_raw(sea_orm::Statement::from_string(app.db.get_database_backend(), sql)).await.unwrap().iter().map(|r| r.try_get("", "block").unwrap()).collect();
    assert_eq!(blocks, vec![-1, 0, 1, 2, 3], "a filter per block and the mark");

    let base = format!("/v1/exports/{}/rows", export["id"].as_str().unwrap());
    let app = &app;
    let search = |q: &str, limit: usize| {
        let base = base.clone();
        let q = q.to_owned();
        async move {
            let (mut seen, mut cursor) = (Vec::new(), None::<String>);
            loop {
                let path = format!("{base}?q={q}&limit={limit}{}", cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default());
                let page = app.get_ok(&path, &app.server_key).await;
                seen.extend(page["data"].as_array().unwrap().iter().map(|r| r["request_body"]["n"].as_i64().unwrap()));
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => return seen,
                }
            }
        }
    };
    // In ascending order of `n`: the file lists the newest first.
    let mut found = search("QUETZAL", 2).await;
    found.reverse();
    assert_eq!(found, rare.iter().map(|&i| i as i64).collect::<Vec<_>>(), "every match, two a page, across blocks");
    // SQLite's GLOB wildcards and PostgreSQL's LIKE ones, quotes and brackets are searched as text;
    // a capital sigma ending the search ("ΟΔΟΣ") is found inside a word ("ΟΔΟΣΑ").
    for held in ["zal%2A%5B%3F%5D%27", "%2A", "%3F", "%5B", "%5D", "%27", "%CE%9F%CE%94%CE%9F%CE%A3"] {
        assert_eq!(search(held, 10).await.len(), 5, "{held}");
    }
    for absent in ["zal%5B%2A%5D", "zal%3F", "zal_", "zal%25", "%5C"] {
        assert!(search(absent, 10).await.is_empty(), "{absent}");
    }
    assert!(search("nightingale", 10).await.is_empty(), "text no block holds");
    assert_eq!(search("sparrow", 1000).await.len(), rows - rare.len(), "a common word, page after page");
    assert_eq!(search("w%22", 1000).await.len(), rows - rare.len(), "shorter than a trigram: every block is read");

    // The filters decide which blocks are read: one emptied, its block's matches are not found.
    // The file lists the newest first, so n = 5 is in the last block and n = 3100 in the first.
    let empty_bits = match app.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => "'\\x00'::bytea",
        _ => "X'00'",
    };
    let sql = format!("UPDATE export_grams SET bits = {empty_bits} WHERE export_id = '{}' AND block = 3", export["id"].as_str().unwrap());
    app.db.execute_unprepared(&sql).await.unwrap();
    let mut found = search("quetzal", 10).await;
    found.reverse();
    assert_eq!(found, vec![1023, 1024, 2999, 3100], "n = 5 was in block 3");
}

#[tokio::test]
async fn the_fields_each_resource_exports_are_listed_and_are_what_an_export_takes() {
    let app = spawn_app().await;
    let listed = app.get_ok("/v1/exports/fields", &app.server_key).await;
    let data = listed["data"].as_array().unwrap();
    let resources: Vec<&str> = data.iter().map(|f| f["resource"].as_str().unwrap()).collect();
    assert_eq!(resources, ["logs", "tasks", "webhook_sendouts", "events"]);
    for entry in data {
        let (resource, defaults, all) = (&entry["resource"], &entry["default_fields"], entry["fields"].as_array().unwrap());
        assert!(all.len() > defaults.as_array().unwrap().len() && all.starts_with(defaults.as_array().unwrap()), "{entry}");
        let by_default = app.export(json!({"resource": resource})).await;
        assert_eq!(&by_default["fields"], defaults, "what an export writes when fields is left out");
        let every = app.export(json!({"resource": resource, "fields": all})).await;
        assert_eq!(&every["fields"], &entry["fields"], "every listed field is taken");
    }
    assert!(data[0]["fields"].as_array().unwrap().contains(&json!("request_body")));
    assert_error(app.get("/v1/exports/fields", "sk_not_a_key").await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn browsing_refuses_other_resources_unfinished_and_old_exports_saying_why() {
    let app = spawn_app().await;
    let tasks = app.export(json!({"resource": "tasks"})).await;
    assert!(tasks["browse_status"].is_null() && tasks["browse_indexed_rows"].is_null(), "{tasks}");
    let err = assert_error(app.get(&format!("/v1/exports/{}/rows", tasks["id"].as_str().unwrap()), &app.server_key).await, StatusCode::CONFLICT, "export_not_browsable").await;
    assert!(err["error"]["message"].as_str().unwrap().contains("only logs exports"), "{err}");

    // Made 100 days ago, and done.
    use logbook::event_log::{DomainEvent, EventMetadata, TaskCompleted, TaskScheduled};
    let at = logbook::domain::time::now_ms() - 100 * 86_400_000;
    let task = TaskScheduled {
        id: logbook::domain::ids::new_id(logbook::domain::ids::IdKind::Task),
        project_id: app.project_id.clone(),
        task_type: logbook::domain::task::TaskType::Export,
        created_by: logbook::domain::actor::Actor::system(),
        request_id: None,
        related: Vec::new(),
        params: json!({}),
        total: None,
    };
    let old_id = logbook::domain::ids::new_id(logbook::domain::ids::IdKind::Export);
    let events = vec![
        app.logs_export_created(&old_id, &task.id),
        DomainEvent::TaskCompleted(TaskCompleted {
            id: task.id.clone(),
            project_id: app.project_id.clone(),
            processing_status: logbook::domain::task::ProcessingStatus::Success,
            processed: 0,
            result: json!({"row_count": 0, "size_bytes": 0}),
        }),
    ];
    let writer = app.store.begin().await.unwrap();
    let mut all = vec![DomainEvent::TaskScheduled(task)];
    all.extend(events);
    writer.append_recorded_at(&EventMetadata::system(), all, at).await.unwrap();
    writer.commit().await.unwrap();
    let err = assert_error(app.get(&format!("/v1/exports/{old_id}/rows"), &app.server_key).await, StatusCode::CONFLICT, "export_not_browsable").await;
    assert!(err["error"]["message"].as_str().unwrap().contains("90 days"), "{err}");
}

#[tokio::test]
async fn browsing_an_unfinished_export_is_refused() {
    let app = spawn_without_workers().await;
    let created = json_of(app.post("/v1/exports", &app.server_key, json!({"resource": "logs"})).await, StatusCode::ACCEPTED).await;
    let err = assert_error(app.get(&format!("/v1/exports/{}/rows", created["id"].as_str().unwrap()), &app.server_key).await, StatusCode::CONFLICT, "export_not_browsable").await;
    assert!(err["error"]["message"].as_str().unwrap().contains("scheduled"), "{err}");
}

/// An export scheduled by hand, as `POST /v1/exports` does, with its task's events.
fn export_task(app: &TestApp, export_id: &str) -> logbook::event_log::TaskScheduled {
    logbook::event_log::TaskScheduled {
        id: logbook::domain::ids::new_id(logbook::domain::ids::IdKind::Task),
        project_id: app.project_id.clone(),
        task_type: logbook::domain::task::TaskType::Export,
        created_by: logbook::domain::actor::Actor::system(),
        request_id: None,
        related: Vec::new(),
        params: json!({ "export_id": export_id }),
        total: None,
    }
}

#[tokio::test]
async fn a_logs_export_is_done_and_downloadable_before_its_rows_are_browsable() {
    use logbook::event_log::{DomainEvent, EventMetadata, ExportWritten, TaskFailed, TaskProgressed, TaskRef};
    let app = spawn_without_workers().await;
    let id = logbook::domain::ids::new_id(logbook::domain::ids::IdKind::Export);
    let task = export_task(&app, &id);
    let append = |events: Vec<DomainEvent>| async {
        let writer = app.store.begin().await.unwrap();
        writer.append(&EventMetadata::system(), events).await.unwrap();
        writer.commit().await.unwrap();
    };
    let started = TaskRef { id: task.id.clone(), project_id: app.project_id.clone() };
    let written = ExportWritten { id: id.clone(), project_id: app.project_id.clone(), file_id: "fil_none".into(), row_count: 10, size_bytes: 99, browse: true };
    append(vec![app.logs_export_created(&id, &task.id), DomainEvent::TaskScheduled(task.clone()), DomainEvent::TaskStarted(started.clone()), DomainEvent::ExportWritten(written)]).await;
    let path = format!("/v1/exports/{id}");
    let export = app.get_ok(&path, &app.server_key).await;
    assert_eq!((&export["status"], &export["browse_status"], &export["row_count"]), (&json!("done"), &json!("indexing"), &json!(10)), "{export}");
    let progressed = |indexed: i64| TaskProgressed {
        id: task.id.clone(), project_id: app.project_id.clone(), processed: 10 + indexed, total: Some(20), percent: 0,
        checkpoint: json!({}), result: json!({"indexed_rows": indexed}), errors: Vec::new(),
    };
    append(vec![DomainEvent::TaskProgressed(progressed(4))]).await;
    assert_eq!(app.get_ok(&path, &app.server_key).await["browse_indexed_rows"], 4);
    let err = assert_error(app.get(&format!("{path}/rows"), &app.server_key).await, StatusCode::CONFLICT, "export_not_browsable").await;
    assert!(err["error"]["message"].as_str().unwrap().contains("being indexed for browsing (4 of 10"), "{err}");

    // A task resumed meanwhile leaves the export done; one that fails while indexing leaves it
    // done and downloadable, but never browsable.
    append(vec![DomainEvent::TaskStarted(started)]).await;
    assert_eq!(app.get_ok(&path, &app.server_key).await["status"], "done");
    append(vec![DomainEvent::TaskFailed(TaskFailed { id: task.id.clone(), project_id: app.project_id.clone(), message: "boom".into() })]).await;
    let export = app.get_ok(&path, &app.server_key).await;
    assert_eq!((&export["status"], &export["browse_status"]), (&json!("done"), &json!("failed")), "{export}");
    let err = assert_error(app.get(&format!("{path}/rows"), &app.server_key).await, StatusCode::CONFLICT, "export_not_browsable").await;
    assert!(err["error"]["message"].as_str().unwrap().contains("could not be indexed"), "{err}");
}

#[tokio::test]
async fn an_export_task_resumed_after_its_file_was_whole_indexes_that_file() {
    use logbook::event_log::{DomainEvent, EventMetadata, ExportWritten};
    let app = spawn_app().await;
    let now = logbook::domain::time::now_ms();
    app.ingest((0..30).map(|i| entry(&iso(now - 60_000 + i * 1000))).collect()).await;
    let first = app.export(json!({"resource": "logs", "fields": ["id"]})).await;
    // A second export whose worker died once its file was whole: its task runs again and finds
    // the export done, so it only indexes the rows, from that file.
    let id = logbook::domain::ids::new_id(logbook::domain::ids::IdKind::Export);
    let task = export_task(&app, &id);
    use sea_orm::EntityTrait;
    let file_id = entity::export::Entity::find_by_id(first["id"].as_str().unwrap()).one(&app.db).await.unwrap().unwrap().file_id.unwrap();
    let written = ExportWritten {
        id: id.clone(), project_id: app.project_id.clone(), file_id,
        row_count: first["row_count"].as_i64().unwrap(), size_bytes: first["size_bytes"].as_i64().unwrap(), browse: true,
    };
    let writer = app.store.begin().await.unwrap();
    let events = vec![app.logs_export_created(&id, &task.id), DomainEvent::TaskScheduled(task.clone()), DomainEvent::ExportWritten(written)];
    writer.append(&EventMetadata::system(), events).await.unwrap();
    writer.commit().await.unwrap();
    let done = app.wait_finished(&task.id).await;
    assert_eq!(done["status"], "done", "{done}");
    let export = app.get_ok(&format!("/v1/exports/{id}"), &app.server_key).await;
    assert_eq!((&export["browse_status"], &export["browse_indexed_rows"]), (&json!("ready"), &first["row_count"]), "{export}");
    let app = &app;
    let ids = |e: &Value| {
        let path = format!("/v1/exports/{}/rows?limit=100", e["id"].as_str().unwrap());
        async move { app.get_ok(&path, &app.server_key).await["data"].as_array().unwrap().iter().map(|r| r["id"].clone()).collect::<Vec<_>>() }
    };
    let (a, b) = (ids(&first).await, ids(&export).await);
    assert!(a.len() as i64 == first["row_count"].as_i64().unwrap() && a.len() >= 30, "{}", a.len());
    assert_eq!(a, b, "the same file, the same rows in its order");
    assert_eq!(app.events("type=export.done").await.len(), 1, "the resumed task announces nothing again");
}

//! The event log is append-only, and the projections are exactly what replaying it produces.

use crate::conformance::Conform;
use logbook::projections::{self, TABLES};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};

use crate::helpers::{entry, json_of, quick_webhooks, spawn_app, spawn_with};

#[tokio::test]
async fn the_database_refuses_to_update_or_delete_events() {
    let app = spawn_app().await;
    let db = &app.db;
    for sql in ["UPDATE event_log SET payload = '{}'", "DELETE FROM event_log"] {
        let err = db.execute_unprepared(sql).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    let count = count_events(db).await;
    assert!(count > 0);
}

async fn count_events(db: &DatabaseConnection) -> i64 {
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), "SELECT COUNT(*) AS n FROM event_log")).await.unwrap().unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Every projection table as JSON rows in a stable order.
pub async fn dump(db: &DatabaseConnection) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT * FROM {table}");
        let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
        let mut rows: Vec<Value> = rows.iter().map(row_json).collect();
        rows.sort_by_key(|r| r.to_string());
        out.push((table.to_string(), rows));
    }
    out
}

fn row_json(row: &sea_orm::QueryResult) -> Value {
    let mut map = serde_json::Map::new();
    for column in row.column_names() {
        let value = row
            .try_get::<Option<i64>>("", &column)
            .map(|v| json!(v))
            .or_else(|_| row.try_get::<Option<bool>>("", &column).map(|v| json!(v)))
            .or_else(|_| row.try_get::<Option<String>>("", &column).map(|v| json!(v)))
            .unwrap_or(Value::String("<unreadable>".into()));
        map.insert(column, value);
    }
    Value::Object(map)
}

#[tokio::test]
async fn rebuilding_the_projections_reproduces_them_exactly() {
    let app = spawn_with(quick_webhooks).await;
    // A varied workload: projects, keys, revocation, users, patches, requests, ingested logs.
    let other = app.create_project("Other", "America/New_York").await;
    let other_id = other["id"].as_str().unwrap();
    let keys = format!("/v1/projects/{other_id}/api-keys");
    let key = json_of(app.post(&keys, &app.admin, json!({"kind": "client", "name": "web"})).await, StatusCode::CREATED).await;
    app.request(Method::DELETE, &format!("{keys}/{}", key["id"].as_str().unwrap()), Some(&app.admin), None).await;
    app.post(&format!("/v1/projects/{other_id}/users"), &app.admin, json!({"name": "B", "email": "b@example.com"})).await;
    app.request(Method::PATCH, &format!("/v1/projects/{other_id}"), Some(&app.admin), Some(json!({"retention_days": 90}))).await;
    let mut batch: Vec<Value> = (0..50).map(|i| entry(&format!("2026-11-{:02}T10:00:00Z", 1 + i % 20))).collect();
    batch[3]["related"] = json!([{"type": "task", "id": "task_1"}]);
    app.ingest(batch).await;
    app.get("/v1/logs?status=failure", &app.server_key).await;
    app.get("/v1/logs", &app.client_key).await;
    let import = app.upload("orders.csv", "text/csv", b"type,source_id,a.b\norder.created,o1,x\nBAD,o2,y\n".to_vec()).await;
    app.wait_finished(import["task_id"].as_str().unwrap()).await;
    // Webhooks: an endpoint that never answers, changed, rotated; an event with an idempotency
    // key whose sendout fails, is retried by hand and fails again.
    let webhook = app.create_webhook(&format!("http://127.0.0.1:{}/hook", crate::receiver::free_port()), &["order.*"]).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    app.request(Method::PATCH, &format!("/v1/webhooks/{webhook_id}"), Some(&app.server_key), Some(json!({"description": "dead"}))).await;
    app.post(&format!("/v1/webhooks/{webhook_id}/secret/rotate"), &app.server_key, json!({})).await;
    let published = app
        .client
        .post(format!("{}/v1/events", app.address))
        .bearer_auth(&app.server_key)
        .header("idempotency-key", "k-1")
        .json(&json!({"type": "order.created", "data": {"n": 1}, "source_id": "o-1"}))
        .checked()
        .await
        .unwrap();
    let published = json_of(published, StatusCode::ACCEPTED).await;
    let sendout = published["sendouts"][0]["id"].as_str().unwrap();
    let failed = |s: &Value| s["status"] == "failed";
    app.wait_sendout(sendout, failed).await;
    app.request(Method::POST, &format!("/v1/webhook-sendouts/{sendout}/retry"), Some(&app.server_key), None).await;
    app.wait_sendout(sendout, |s| failed(s) && s["attempt_count"] == 4).await;

    let export = json_of(app.post("/v1/exports", &app.server_key, json!({"resource": "tasks"})).await, StatusCode::ACCEPTED).await;
    app.wait_finished(export["task_id"].as_str().unwrap()).await;

    let before = dump(&app.db).await;
    // (admin_tokens stays empty: the tests configure LOGBOOK_ADMIN_TOKEN.)
    let empty: Vec<&str> = before.iter().filter(|(_, rows)| rows.is_empty()).map(|(t, _)| t.as_str()).collect();
    assert_eq!(empty, vec!["admin_tokens"], "the workload touches every other projection");
    let store = app.store.clone();
    let replayed = projections::rebuild(&store, |_, _| {}).await.unwrap();
    assert_eq!(replayed as i64, count_events(&app.db).await);
    let after = dump(&app.db).await;
    for ((table, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a, b, "projection {table} differs after a rebuild");
    }
}

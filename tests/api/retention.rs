//! The retention purge: exactly what is past the window goes, event-log entries included.

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, entry, json_of, restart, spawn_app, spawn_with};
use logbook::domain::actor::Actor;
use logbook::domain::event::{EventType, SourceId};
use logbook::domain::import::ImportFormat;
use logbook::domain::task::{ProcessingStatus, TaskType};
use logbook::event_log::{DomainEvent, EventMetadata, EventPublished, ImportCreated, TaskCompleted, TaskScheduled};

const DAY_MS: i64 = 86_400_000;

fn iso(ms: i64) -> String {
    logbook::domain::time::format_utc(ms)
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let backend = app.db.get_database_backend();
    let row = app.db.query_one_raw(Statement::from_string(backend, sql.to_owned())).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Appends, recorded `days` ago, a finished task, and an import (with its stored file, its task
/// and one published row), and a finished export with its file: what a project that has run for a
/// while holds.
async fn back_date_history(app: &TestApp, days: i64) -> (String, String, String, String) {
    let store = app.store.clone();
    let at = logbook::domain::time::now_ms() - days * DAY_MS;
    let meta = EventMetadata { actor: Actor::system(), request_log_id: None };
    let task = |task_type| TaskScheduled {
        id: logbook::domain::ids::new_id(logbook::domain::ids::IdKind::Task),
        project_id: app.project_id.clone(),
        task_type,
        created_by: Actor::system(),
        request_id: None,
        related: Vec::new(),
        params: json!({}),
        total: None,
    };
    let completed = |id: &str| {
        DomainEvent::TaskCompleted(TaskCompleted {
            id: id.to_owned(),
            project_id: app.project_id.clone(),
            processing_status: ProcessingStatus::Success,
            processed: 1,
            result: json!({}),
        })
    };
    let (purge, import_task, export_task) = (task(TaskType::RetentionPurge), task(TaskType::Import), task(TaskType::Export));
    let file = logbook::services::files::store(&store, &app.project_id, futures_util::stream::iter([Ok::<_, std::io::Error>(actix_web::web::Bytes::from_static(b"type\na\n"))]), 1000)
        .await
        .unwrap();
    let export_file = logbook::services::files::store(&store, &app.project_id, futures_util::stream::iter([Ok::<_, std::io::Error>(actix_web::web::Bytes::from_static(b"id\r\n"))]), 1000)
        .await
        .unwrap();
    let export_id = logbook::domain::ids::new_id(logbook::domain::ids::IdKind::Export);
    let import_id = logbook::domain::ids::new_id(logbook::domain::ids::IdKind::Import);
    let event_id = logbook::domain::ids::new_id(logbook::domain::ids::IdKind::Event);
    let events = vec![
        completed(&purge.id),
        DomainEvent::ImportCreated(ImportCreated {
            id: import_id.clone(),
            project_id: app.project_id.clone(),
            task_id: import_task.id.clone(),
            file_id: file.id.clone(),
            file_name: "old.csv".into(),
            content_type: "text/csv".into(),
            size_bytes: file.size_bytes as i64,
            sha256: file.sha256.clone(),
            format: ImportFormat::Csv,
        }),
        completed(&import_task.id),
        app.logs_export_created(&export_id, &export_task.id),
        DomainEvent::TaskCompleted(TaskCompleted {
            id: export_task.id.clone(),
            project_id: app.project_id.clone(),
            processing_status: ProcessingStatus::Success,
            processed: 0,
            result: json!({"file_id": export_file.id, "row_count": 0, "size_bytes": export_file.size_bytes}),
        }),
        DomainEvent::EventPublished(EventPublished {
            id: event_id.clone(),
            project_id: app.project_id.clone(),
            event_type: EventType::try_from("order.old".to_owned()).unwrap(),
            source_id: Some(SourceId::try_from("o-old".to_owned()).unwrap()),
            data: Default::default(),
            created_at_ms: at,
            idempotency_key: None,
        }),
    ];
    let mut all = vec![DomainEvent::TaskScheduled(purge.clone()), DomainEvent::TaskScheduled(import_task.clone()), DomainEvent::TaskScheduled(export_task.clone())];
    all.extend(events);
    let writer = store.begin().await.unwrap();
    writer.append_recorded_at(&meta, all, at).await.unwrap();
    writer.commit().await.unwrap();
    (purge.id, import_id, event_id, export_id)
}

#[tokio::test]
async fn a_purge_removes_exactly_what_is_past_retention_with_its_event_log_entries() {
    let app = spawn_app().await;
    let project = app.get_ok("/v1/project", &app.server_key).await;
    let days = project["retention_days"].as_i64().unwrap();
    let now = logbook::domain::time::now_ms();
    let mut old_entry = entry(&iso(now - (days + 3) * DAY_MS));
    old_entry["request_body"] = json!({"note": "ancient zebra"});
    let old_logs = app.ingest(vec![old_entry.clone(), old_entry.clone(), old_entry]).await;
    let young_logs = app.ingest(vec![entry(&iso(now - (days - 3) * DAY_MS)), entry(&iso(now - 1000))]).await;
    let (old_task, old_import, old_event, old_export) = back_date_history(&app, days + 1).await;
    let (young_task, young_import, young_event, young_export) = back_date_history(&app, days - 1).await;
    let young_upload = app.upload("new.csv", "text/csv", b"type,source_id\norder.created,n1\n".to_vec()).await;
    app.wait_finished(young_upload["task_id"].as_str().unwrap()).await;
    // Another project's old data is not this purge's business.
    let other_key = app.other_project_key("Other").await;
    let other_old = app.ingest_with(&other_key, vec![entry(&iso(now - (days + 3) * DAY_MS))]).await;
    app.wait_for_search_index().await;
    let event_rows_before = count(&app, "SELECT COUNT(*) FROM event_log").await;

    let run = app.request(reqwest::Method::POST, &format!("/v1/projects/{}/retention/run", app.project_id), Some(&app.admin), None).await;
    let task = json_of(run, StatusCode::ACCEPTED).await;
    assert_eq!(task["type"], "retention_purge");
    let task = app.wait_finished(task["id"].as_str().unwrap()).await;
    assert_eq!(task["status"], "done", "{task}");
    assert_eq!(task["processing_status"], "success");
    let result = &task["result"];
    assert_eq!(result["logs"], 3, "{result}");
    assert_eq!(result["events"], 1, "{result}");
    assert_eq!(result["imports"], 1, "{result}");
    assert_eq!(result["exports"], 1, "{result}");
    assert_eq!(result["files"], 2, "{result}");
    assert_eq!(result["tasks"], 3, "{result}");
    // 3 log events, 1 published event, 1 import event, 1 export event, 3 tasks × 2 events.
    assert_eq!(result["event_log_entries"], 3 + 1 + 1 + 1 + 6, "{result}");
    let in_log = |ids: [&String; 3]| format!("SELECT COUNT(*) FROM event_log WHERE stream_id IN ('{}', '{}', '{}')", ids[0], ids[1], ids[2]);
    assert_eq!(count(&app, &in_log([&old_task, &old_import, &old_event])).await, 0);
    assert_eq!(count(&app, &in_log([&young_task, &young_import, &young_event])).await, 4, "young history stays in the log");
    assert!(count(&app, "SELECT COUNT(*) FROM event_log").await >= event_rows_before - 12);
    assert_error(app.get(&format!("/v1/exports/{old_export}"), &app.server_key).await, StatusCode::NOT_FOUND, "not_found").await;
    let young = app.get_ok(&format!("/v1/exports/{young_export}"), &app.server_key).await;
    assert_eq!(young["status"], "done", "{young}");
    let file = app.get(&format!("/v1/exports/{young_export}/download"), &app.server_key).await;
    assert_eq!(file.bytes().await.unwrap().as_ref(), b"id\r\n", "a young export keeps its file");

    for id in &old_logs {
        assert_error(app.get(&format!("/v1/logs/{id}"), &app.server_key).await, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(count(&app, &format!("SELECT COUNT(*) FROM event_log WHERE stream_id = '{id}'")).await, 0);
    }
    for id in &young_logs {
        app.get_ok(&format!("/v1/logs/{id}"), &app.server_key).await;
    }
    let found = app.log_ids("occurred_after=2000-01-01&request_body_contains=ancient%20zebra").await;
    assert!(found.is_empty(), "purged bodies are gone from search too: {found:?}");
    assert_error(app.get(&format!("/v1/tasks/{old_task}"), &app.server_key).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(app.get(&format!("/v1/imports/{old_import}"), &app.server_key).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(app.get(&format!("/v1/events/{old_event}"), &app.server_key).await, StatusCode::NOT_FOUND, "not_found").await;
    app.get_ok(&format!("/v1/tasks/{young_task}"), &app.server_key).await;
    app.get_ok(&format!("/v1/imports/{young_import}"), &app.server_key).await;
    app.get_ok(&format!("/v1/events/{young_event}"), &app.server_key).await;
    let young_file = app.get(&format!("/v1/imports/{}/file", young_upload["id"].as_str().unwrap()), &app.server_key).await;
    assert_eq!(young_file.bytes().await.unwrap().as_ref(), b"type,source_id\norder.created,n1\n");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM files").await, 3, "the young files stay");
    for id in &other_old {
        app.get_ok(&format!("/v1/logs/{id}"), &other_key).await;
    }

    // The projections still follow from what is left of the log.
    let before = table_counts(&app).await;
    logbook::projections::rebuild(&app.store.clone(), |_, _| {}).await.unwrap();
    assert_eq!(table_counts(&app).await, before);
}

async fn table_counts(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in ["logs", "log_related", "events", "tasks", "task_errors", "imports", "exports"] {
        counts.push(count(app, &format!("SELECT COUNT(*) FROM {table}")).await);
    }
    counts
}

#[tokio::test]
async fn only_the_admin_runs_a_purge_and_unknown_projects_are_404() {
    let app = spawn_app().await;
    let path = format!("/v1/projects/{}/retention/run", app.project_id);
    assert_error(app.request(reqwest::Method::POST, &path, Some(&app.server_key), None).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_error(app.request(reqwest::Method::POST, &path, None, None).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let missing = app.request(reqwest::Method::POST, "/v1/projects/prj_nope/retention/run", Some(&app.admin), None).await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.get_ok("/v1/tasks", &app.server_key).await["data"], json!([]));
}

#[tokio::test]
async fn the_daily_schedule_runs_once_a_day_across_all_nodes() {
    // Fires every second on two nodes sharing the database; the day's run happens once.
    let app = spawn_with(|s| s.retention_schedule = "* * * * * *".into()).await;
    let (second, _) = restart(&app).await;
    let _second = second.spawn();
    app.create_project("Second", "Europe/Berlin").await;
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let tasks = app.get_ok("/v1/tasks?type=retention_purge", &app.server_key).await;
    let list: &Vec<Value> = tasks["data"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{tasks}");
    assert_eq!(list[0]["created_by"]["kind"], "system");
    let finished = app.wait_finished(list[0]["id"].as_str().unwrap()).await;
    assert_eq!(finished["status"], "done");
    let runs = count(&app, "SELECT COUNT(*) FROM event_log WHERE stream_type = 'retention_run'").await;
    assert_eq!(runs, 1);
}

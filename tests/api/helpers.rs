//! Spawns the real application on a free port with a fresh database: a SQLite file per test, or a
//! new PostgreSQL database per test when `TEST_DATABASE_URL` is set.

use crate::conformance::Conform;
use logbook::config::Settings;
use logbook::startup::Application;
use reqwest::{Method, Response, StatusCode};
use sea_orm::DatabaseConnection;
use serde_json::Value;
use sqlx::Connection;

pub const ADMIN_TOKEN: &str = "adm_test_0123456789abcdefghijklmnop";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub admin: String,
    pub server_key: String,
    pub client_key: String,
    pub user_token: String,
    pub project_id: String,
    pub server_key_id: String,
    pub client_key_id: String,
    pub user_id: String,
    pub db: DatabaseConnection,
    pub store: logbook::event_log::EventStore,
    pub settings: Settings,
    _dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// A fresh database URL for one test.
pub async fn fresh_database(dir: &tempfile::TempDir) -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => {
            let name = format!("lbtest_{}", ulid::Ulid::new().to_string().to_ascii_lowercase());
            let mut conn = sqlx::PgConnection::connect(&base).await.expect("TEST_DATABASE_URL reachable");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("create database");
            let mut url = url::Url::parse(&base).expect("TEST_DATABASE_URL is a URL");
            url.set_path(&name);
            url.to_string()
        }
        _ => format!("sqlite://{}", dir.path().join("logbook.db").display()),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// Spawns with settings adjusted by `tweak` (applied after the test defaults).
pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_full(tweak, true).await
}

/// Spawns without background workers (so, for one, the search index never catches up).
pub async fn spawn_without_workers() -> TestApp {
    spawn_full(|_| {}, false).await
}

pub async fn spawn_full(tweak: impl FnOnce(&mut Settings), workers: bool) -> TestApp {
    logbook::startup::install_tls();
    // Quiet unless asked: TEST_LOG=1 (with RUST_LOG) shows the server's logs.
    if std::env::var_os("TEST_LOG").is_some() {
        logbook::telemetry::init("text");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::defaults();
    settings.database_url = Some(fresh_database(&dir).await);
    settings.data_dir = dir.path().to_path_buf();
    settings.admin_token = Some(ADMIN_TOKEN.to_owned());
    settings.db_pool_size = 5;
    // A crashed worker's jobs come back after this long.
    settings.job_lease = std::time::Duration::from_secs(3);
    tweak(&mut settings);
    start(settings, dir, workers).await
}

/// Starts the app again on the database of `previous` (which keeps running), as a restart would.
pub async fn restart(previous: &TestApp) -> (Application, u16) {
    let app = Application::build(previous.settings.clone(), "127.0.0.1:0", true).await.expect("app builds");
    let port = app.port();
    (app, port)
}

async fn start(settings: Settings, dir: tempfile::TempDir, workers: bool) -> TestApp {
    let app = Application::build(settings.clone(), "127.0.0.1:0", workers).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let db = app.db().clone();
    let store = app.store().clone();
    let first = app.first_start.as_ref().expect("a fresh database bootstraps");
    assert!(first.admin_token.is_none(), "a configured admin token is not generated again");
    let (project, user) = (&first.project, &first.user);
    let (server_key, client_key, user_token) =
        (project.server_key.token.clone(), project.client_key.token.clone(), user.token.clone());
    let (project_id, server_key_id, client_key_id, user_id) = (
        project.project.id.clone(),
        project.server_key.key.id.clone(),
        project.client_key.key.id.clone(),
        user.user.id.clone(),
    );
    TestApp {
        address,
        client: reqwest::Client::new(),
        admin: ADMIN_TOKEN.to_owned(),
        server_key,
        client_key,
        user_token,
        project_id,
        server_key_id,
        client_key_id,
        user_id,
        db,
        store,
        settings,
        _dir: dir,
        _server: app.spawn(),
    }
}

impl TestApp {
    pub async fn request(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        let mut req = self.client.request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.checked().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(token), Some(body)).await
    }

    /// GET that must answer 200; returns the JSON body.
    pub async fn get_ok(&self, path: &str, token: &str) -> Value {
        json_of(self.get(path, token).await, StatusCode::OK).await
    }

    /// Creates a project as admin; returns its creation response.
    pub async fn create_project(&self, name: &str, time_zone: &str) -> Value {
        let body = serde_json::json!({"name": name, "time_zone": time_zone});
        json_of(self.post("/v1/projects", &self.admin, body).await, StatusCode::CREATED).await
    }

    /// Ingests entries with the default server key; returns their ids.
    pub async fn ingest(&self, logs: Vec<Value>) -> Vec<String> {
        self.ingest_with(&self.server_key, logs).await
    }

    pub async fn ingest_with(&self, key: &str, logs: Vec<Value>) -> Vec<String> {
        let body = json_of(self.post("/v1/logs", key, serde_json::json!({ "logs": logs })).await, StatusCode::CREATED).await;
        body["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    }

    /// Waits until the search indexer has caught up with the event log.
    pub async fn wait_for_search_index(&self) {
        // Generous: tens of thousands of bodies in a debug build, beside the other tests.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if self.store.search().lag().await.unwrap() == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the search index did not catch up in 60 s");
    }

    /// Ids of `GET /v1/logs?{query}`, following every page.
    pub async fn log_ids(&self, query: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/logs?limit=1000&{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.get_ok(&path, &self.server_key).await;
            ids.extend(page["data"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_owned()));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return ids,
            }
        }
    }
}

/// Asserts the status and returns the JSON body.
pub async fn json_of(response: Response, expected: StatusCode) -> Value {
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, expected, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Asserts a contract error body with this status and code.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    assert!(response.headers().contains_key("content-type"));
    let body = json_of(response, status).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["error"]["details"].is_array(), "{body}");
    body
}

/// A minimal valid ingested entry.
pub fn entry(occurred_at: &str) -> Value {
    serde_json::json!({
        "occurred_at": occurred_at, "channel": "shopify", "method": "GET", "path": "/orders",
        "http_status": 200, "duration_ms": 5
    })
}

impl TestApp {
    /// Uploads `bytes` as a multipart import; returns the 202 body.
    pub async fn upload(&self, name: &str, content_type: &str, bytes: Vec<u8>) -> Value {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()).mime_str(content_type).unwrap();
        let form = reqwest::multipart::Form::new().part("file", part);
        let response = self
            .client
            .post(format!("{}/v1/imports", self.address))
            .bearer_auth(&self.server_key)
            .multipart(form)
            .checked()
            .await
            .expect("upload sent");
        json_of(response, StatusCode::ACCEPTED).await
    }

    /// Polls the task until `done(task)` holds (at most a minute); returns it.
    pub async fn wait_task(&self, task_id: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..600 {
            let task = self.get_ok(&format!("/v1/tasks/{task_id}"), &self.server_key).await;
            if done(&task) {
                return task;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("task {task_id} did not get there");
    }

    /// Waits for the task to finish, whatever the outcome.
    pub async fn wait_finished(&self, task_id: &str) -> Value {
        self.wait_task(task_id, |t| ["done", "failed", "cancelled"].contains(&t["status"].as_str().unwrap_or_default())).await
    }

    /// Every event of `GET /v1/events?{query}`, following every page.
    pub async fn events(&self, query: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/events?limit=1000&{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.get_ok(&path, &self.server_key).await;
            all.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return all,
            }
        }
    }

    /// `(events, distinct source ids)` of the project, counted in the database: a row published
    /// twice shows as more events than source ids.
    pub async fn count_events(&self) -> (i64, i64) {
        use sea_orm::{ConnectionTrait, Statement};
        let backend = self.db.get_database_backend();
        let sql = format!(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT source_id) AS d FROM events WHERE project_id = '{}' AND event_type LIKE 'order.%'",
            self.project_id
        );
        let row = self.db.query_one_raw(Statement::from_string(backend, sql)).await.unwrap().unwrap();
        (row.try_get::<i64>("", "n").unwrap(), row.try_get::<i64>("", "d").unwrap())
    }
}

/// A CSV of `rows` order events with unique source ids; every `bad_every`-th row has a bad type.
pub fn orders_csv(rows: usize, bad_every: usize) -> Vec<u8> {
    let mut csv = String::from("type,source_id,customer.email,amount\n");
    for i in 1..=rows {
        let kind = if bad_every > 0 && i % bad_every == 0 { "Not A Type" } else { "order.created" };
        csv.push_str(&format!("{kind},o{i},c{i}@example.com,{}\n", i % 1000));
    }
    csv.into_bytes()
}

impl TestApp {
    /// Creates another project with a server key; returns the key.
    pub async fn other_project_key(&self, name: &str) -> String {
        let project = self.create_project(name, "UTC").await;
        let path = format!("/v1/projects/{}/api-keys", project["id"].as_str().unwrap());
        let key = json_of(self.post(&path, &self.admin, serde_json::json!({"kind": "server", "name": "backend"})).await, StatusCode::CREATED).await;
        key["token"].as_str().unwrap().to_owned()
    }
}

impl TestApp {
    /// Creates a webhook endpoint; returns the 201 body (with its secret).
    pub async fn create_webhook(&self, url: &str, event_types: &[&str]) -> Value {
        let body = serde_json::json!({ "url": url, "event_types": event_types });
        json_of(self.post("/v1/webhooks", &self.server_key, body).await, StatusCode::CREATED).await
    }

    /// Publishes an event with the server key; returns the 202 body.
    pub async fn publish(&self, event_type: &str, data: Value) -> Value {
        let body = serde_json::json!({ "type": event_type, "data": data });
        json_of(self.post("/v1/events", &self.server_key, body).await, StatusCode::ACCEPTED).await
    }

    /// Polls the sendout until `done(sendout)` holds; returns it with its attempts.
    pub async fn wait_sendout(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..600 {
            let sendout = self.get_ok(&format!("/v1/webhook-sendouts/{id}"), &self.server_key).await;
            if done(&sendout) {
                return sendout;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("sendout {id} did not get there");
    }
}

/// Test settings for webhooks: private addresses allowed (the receiver is on loopback) and a quick
/// retry schedule.
pub fn quick_webhooks(s: &mut Settings) {
    s.webhook_allow_private = true;
    s.webhook_retry_schedule = logbook::config::RetrySchedule(vec![
        std::time::Duration::ZERO,
        std::time::Duration::from_millis(300),
        std::time::Duration::from_millis(300),
    ]);
}

impl TestApp {
    /// `export.created` of a logs export of the `id` column, run by task `task_id`: for history
    /// appended by hand (back-dated).
    pub fn logs_export_created(&self, id: &str, task_id: &str) -> logbook::event_log::DomainEvent {
        logbook::event_log::DomainEvent::ExportCreated(logbook::event_log::ExportCreated {
            id: id.to_owned(),
            project_id: self.project_id.clone(),
            task_id: task_id.to_owned(),
            resource: logbook::domain::export::ExportResource::Logs,
            filters: serde_json::json!({}),
            fields: vec!["id".into()],
            format: logbook::domain::export::ExportFormat::Csv,
            time_zone: logbook::domain::time::ProjectTimeZone::utc(),
        })
    }
}

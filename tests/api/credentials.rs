//! No credential this server issues is kept in plaintext anywhere: the real binary creates every kind
//! of credential, uses each one, and then every table of every database file (and, on SQLite, every
//! byte of the data folder) and everything the server printed is searched for each of them.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Column, Connection, Row};

use crate::conformance::Conform;
use crate::helpers::{ADMIN_TOKEN, fresh_database};

struct Server {
    child: std::process::Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Api<'a> {
    client: reqwest::Client,
    base: &'a str,
}

impl Api<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value, String) {
        let mut req = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.checked().await.expect("request sent");
        let status = response.status();
        let log_id = response.headers().get("logbook-log-id").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body, log_id)
    }

    async fn created(&self, path: &str, token: &str, body: Value) -> (Value, String) {
        let (status, body, log_id) = self.call(reqwest::Method::POST, path, token, Some(body)).await;
        assert!(status.is_success(), "POST {path}: {status} {body}");
        (body, log_id)
    }

    async fn ok(&self, method: reqwest::Method, path: &str, token: &str) -> (Value, String) {
        let (status, body, log_id) = self.call(method.clone(), path, token, None).await;
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        (body, log_id)
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("a credential string, got {v}")).to_owned()
}

#[tokio::test]
async fn no_credential_is_found_in_storage_or_in_the_server_output() {
    logbook::startup::install_tls();
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(&dir).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (out_path, err_path) = (dir.path().join("stdout.txt"), dir.path().join("stderr.txt"));
    let data_dir = dir.path().join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &url)
        .env("LOGBOOK_DATA_DIR", &data_dir)
        .env("LOGBOOK_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("LOGBOOK_WEBHOOK_ALLOW_PRIVATE", "true")
        // No key of the default list: credentials must be kept out by their form, not by key names.
        .env("LOGBOOK_REDACT_KEYS", "nothing_at_all")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::from(std::fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err_path).unwrap()))
        .spawn()
        .expect("the binary starts");
    let server = Server { child, base: format!("http://127.0.0.1:{port}") };
    let api = Api { client: reqwest::Client::new(), base: &server.base };
    for _ in 0..600 {
        if api.client.get(format!("{}/readyz", server.base)).checked().await.is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every kind of credential, each revealed by its one response.
    let (project, project_log) = api.created("/v1/projects", ADMIN_TOKEN, json!({"name": "Shop", "time_zone": "UTC"})).await;
    let project_id = text(&project["id"]);
    let (server_key, client_key) = (text(&project["server_key"]), text(&project["client_key"]));
    let keys_path = format!("/v1/projects/{project_id}/api-keys");
    let (extra_server, _) = api.created(&keys_path, ADMIN_TOKEN, json!({"kind": "server", "name": "backend"})).await;
    let (extra_client, _) = api.created(&keys_path, ADMIN_TOKEN, json!({"kind": "client", "name": "browser"})).await;
    let users_path = format!("/v1/projects/{project_id}/users");
    let (user, _) = api.created(&users_path, ADMIN_TOKEN, json!({"name": "Ada", "email": "ada@example.com"})).await;
    let (extra_server, extra_client, user_token) = (text(&extra_server["token"]), text(&extra_client["token"]), text(&user["token"]));
    let (webhook, webhook_log) =
        api.created("/v1/webhooks", &server_key, json!({"url": "http://127.0.0.1:9/hook", "event_types": ["*"]})).await;
    let webhook_id = text(&webhook["id"]);
    let first_secret = text(&webhook["secret"]);
    let (revealed, _) = api.ok(reqwest::Method::GET, &format!("/v1/webhooks/{webhook_id}/secret"), &server_key).await;
    assert_eq!(text(&revealed["secret"]), first_secret);
    let (rotated, _) = api.ok(reqwest::Method::POST, &format!("/v1/webhooks/{webhook_id}/secret/rotate"), &server_key).await;
    let second_secret = text(&rotated["secret"]);
    assert_ne!(first_secret, second_secret);

    // Each credential used, and some carried where a careless recorder would keep them.
    api.created("/v1/events", &client_key, json!({"type": "order.created", "data": {"n": 1}})).await;
    api.created("/v1/events", &extra_client, json!({"type": "order.created", "data": {"n": 2}})).await;
    api.ok(reqwest::Method::GET, "/v1/logs", &user_token).await;
    api.ok(reqwest::Method::GET, "/v1/logs", &extra_server).await;
    let (status, _, _) = api.call(reqwest::Method::GET, &format!("/v1/logs?customer_id={server_key}&cursor={second_secret}"), &server_key, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a cursor that is a secret is no cursor");
    let with_header = api.client.get(format!("{}/v1/project", server.base)).bearer_auth(&server_key).header("x-note", format!("key {user_token}"));
    assert_eq!(with_header.checked().await.unwrap().status(), StatusCode::OK);
    // (Refused, so only the request log would keep it: a description is stored as written.)
    let patch = json!({"description": format!("signs with {second_secret}"), "url": "not a url"});
    let (status, _, _) = api.call(reqwest::Method::PATCH, &format!("/v1/webhooks/{webhook_id}"), &server_key, Some(patch)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // The creation responses are logged, with the credentials redacted.
    let (logged, _) = api.ok(reqwest::Method::GET, &format!("/v1/logs/{webhook_log}"), &server_key).await;
    assert_eq!(logged["response_body"]["secret"], "[redacted]", "{logged}");
    assert_eq!(logged["response_body"]["id"], webhook_id.as_str());

    // Let the search index take in every body, then stop the server.
    let mut caught_up = false;
    for _ in 0..600 {
        let metrics = api.client.get(format!("{}/metrics", server.base)).checked().await.unwrap().text().await.unwrap();
        if metrics.lines().any(|l| l.starts_with("logbook_search_index_lag_events ") && l.ends_with(" 0")) {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(caught_up, "the search index did not catch up");
    drop(server);

    let tokens = [ADMIN_TOKEN.to_owned(), server_key.clone(), client_key, extra_server, extra_client, user_token];
    let secrets = [first_secret, second_secret];
    // Raw bytes first (the WAL files and free pages included), before a reader opens the files.
    if url.starts_with("sqlite:") {
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("logbook")) {
                continue; // the server's captured output, checked below
            }
            let mut bytes = Vec::new();
            std::fs::File::open(&path).unwrap().read_to_end(&mut bytes).unwrap();
            for credential in tokens.iter().chain(&secrets) {
                assert!(!contains(&bytes, credential.as_bytes()), "{credential} is in the bytes of {}", path.display());
            }
        }
    }

    let rows = dump(&url, dir.path()).await;
    assert!(rows.iter().any(|(table, _)| table == "logs"), "the dump reads the tables");
    // The admin's project creation is logged (outside any project, so only storage shows it), with
    // its keys redacted.
    let creation = rows.iter().find(|(table, row)| table == "event_log" && row.contains("request.logged") && row.contains(&project_log)).expect("the creation is logged");
    let creation = creation.1.replace("\"\"", "\""); // PostgreSQL's row text doubles quotes
    assert!(creation.contains(r#""server_key":"[redacted]""#) && creation.contains(r#""client_key":"[redacted]""#), "{creation}");
    // Signing secrets too: they are sealed with a key that is not in the database, and their
    // random part is not found either (in any encoding a careless writer might use).
    let secret_parts: Vec<String> = secrets.iter().map(|s| s.trim_start_matches("whsec_").to_owned()).collect();
    for credential in tokens.iter().chain(&secrets).chain(&secret_parts) {
        let found: Vec<&String> = rows.iter().filter(|(_, row)| row.contains(credential.as_str())).map(|(t, _)| t).collect();
        assert!(found.is_empty(), "{credential} is stored in {found:?}");
    }
    let sealed: Vec<&(String, String)> = rows.iter().filter(|(table, row)| table == "event_log" && is_webhook_event(row) && row.contains("sealed:v1:")).collect();
    assert_eq!(sealed.len(), 2, "the creation and the rotation carry their secrets sealed: {rows:?}");
    // The first start prints the default project's keys once, by design; nothing else is printed.
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(stderr.len() > 1000, "the server logged at debug level: {} bytes", stderr.len());
    for credential in tokens.iter().chain(&secrets) {
        assert!(!stdout.contains(credential.as_str()), "{credential} is in the server's stdout");
        assert!(!stderr.contains(credential.as_str()), "{credential} is in the server's logs");
    }
}

/// An event-log row of a webhook's own stream (a row is its columns
/// joined by `|` on SQLite and `,` on PostgreSQL).
fn is_webhook_event(row: &str) -> bool {
    ["webhook.created", "webhook.updated", "webhook.secret_rotated"]
        .iter()
        .any(|t| row.contains(&format!("|{t}|")) || row.contains(&format!(",{t},")))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `(table, row as text)` of every row of every table: on PostgreSQL every schema of the database,
/// on SQLite every database file beside the database.
pub async fn dump(url: &str, db_dir: &std::path::Path) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let tables: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_schema::text, table_name::text FROM information_schema.tables
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for (schema, table) in tables {
            let sql = format!("SELECT t::text FROM \"{schema}\".\"{table}\" t");
            let texts: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut conn).await.unwrap();
            rows.extend(texts.into_iter().map(|(t,)| (table.clone(), t)));
        }
        return rows;
    }
    for entry in std::fs::read_dir(db_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "db") {
            continue;
        }
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", path.display())).await.unwrap();
        let tables: Vec<(String,)> = sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(&mut conn).await.unwrap();
        for (table,) in tables {
            let sql = format!("SELECT * FROM \"{table}\"");
            let Ok(found) = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut conn).await else { continue };
            for row in found {
                let mut text = String::new();
                for column in row.columns() {
                    let cell: Option<Vec<u8>> = row.try_get_unchecked(column.ordinal()).unwrap_or(None);
                    text.push_str(&String::from_utf8_lossy(&cell.unwrap_or_default()));
                    text.push('|');
                }
                rows.push((table.clone(), text));
            }
        }
    }
    rows
}

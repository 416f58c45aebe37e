//! Crash recovery, with the real binary killed by SIGKILL in the middle of an import.

use crate::conformance::Conform;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::Value;

use crate::helpers::{ADMIN_TOKEN, fresh_database, orders_csv};

struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `logbook serve`; the receiver gets the server key it prints on a fresh database.
fn start(url: &str, dir: &std::path::Path) -> (Node, std::sync::mpsc::Receiver<Option<String>>) {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", url)
        .env("LOGBOOK_DATA_DIR", dir)
        .env("LOGBOOK_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("LOGBOOK_JOB_LEASE", "3s")
        .env("LOGBOOK_WEBHOOK_ALLOW_PRIVATE", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut key = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(k) = line.trim().strip_prefix("server key:") {
                key = Some(k.trim().to_owned());
            }
            if line.contains("API docs:") {
                break;
            }
        }
        let _ = tx.send(key);
    });
    (Node { child, base: format!("http://127.0.0.1:{port}") }, rx)
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..300 {
        if client.get(format!("{base}/readyz")).checked().await.is_ok_and(|r| r.status() == StatusCode::OK) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not get ready");
}

async fn task(client: &reqwest::Client, base: &str, key: &str, id: &str) -> Value {
    client.get(format!("{base}/v1/tasks/{id}")).bearer_auth(key).checked().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn an_import_killed_mid_way_finishes_after_a_restart_with_every_row_exactly_once() {
    logbook::startup::install_tls();
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(&dir).await;
    let client = reqwest::Client::new();

    let (node, printed) = start(&url, dir.path());
    let key = printed.recv_timeout(Duration::from_secs(60)).ok().flatten().expect("the first start prints a server key");
    wait_ready(&client, &node.base).await;
    const ROWS: usize = 150_000;
    let response = client
        .post(format!("{}/v1/imports", node.base))
        .bearer_auth(&key)
        .header("content-type", "text/csv")
        .body(orders_csv(ROWS, 1000))
        .checked()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let import: Value = response.json().await.unwrap();
    let task_id = import["task_id"].as_str().unwrap().to_owned();
    let mut seen_progress = false;
    for _ in 0..600 {
        let t = task(&client, &node.base, &key, &task_id).await;
        if t["progress"]["processed"].as_i64().unwrap_or(0) > 0 {
            assert_eq!(t["status"], "in_progress", "the import must still be running when killed: {t}");
            seen_progress = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen_progress, "the import never started");
    drop(node); // SIGKILL

    let (node, _) = start(&url, dir.path());
    wait_ready(&client, &node.base).await;
    let mut finished = Value::Null;
    for _ in 0..900 {
        let t = task(&client, &node.base, &key, &task_id).await;
        if ["done", "failed", "cancelled"].contains(&t["status"].as_str().unwrap_or_default()) {
            finished = t;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(finished["status"], "done", "{finished}");
    let bad = (ROWS / 1000) as i64;
    assert_eq!(finished["result"]["rows_total"], ROWS as i64);
    assert_eq!(finished["result"]["rows_failed"], bad);
    assert_eq!(finished["error_count"], bad, "no bad row recorded twice");

    // Every good row is exactly one event: as many events as distinct source ids.
    let db = Database::connect(&url).await.unwrap();
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(backend, "SELECT COUNT(*) AS n, COUNT(DISTINCT source_id) AS d FROM events WHERE event_type = 'order.created'"))
        .await
        .unwrap()
        .unwrap();
    let (n, d) = (row.try_get::<i64>("", "n").unwrap(), row.try_get::<i64>("", "d").unwrap());
    assert_eq!((n, d), (ROWS as i64 - bad, ROWS as i64 - bad));
    assert!(finished["progress"]["processed"].as_i64() == Some(ROWS as i64));
}

#[tokio::test]
async fn a_delivery_cut_off_by_a_crash_is_attempted_again_with_the_same_webhook_id() {
    logbook::startup::install_tls();
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(&dir).await;
    let client = reqwest::Client::new();
    let receiver = crate::receiver::Receiver::start().await;

    let (node, printed) = start(&url, dir.path());
    let key = printed.recv_timeout(Duration::from_secs(60)).ok().flatten().expect("the first start prints a server key");
    wait_ready(&client, &node.base).await;
    let webhook: Value = client
        .post(format!("{}/v1/webhooks", node.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "url": receiver.url(), "event_types": ["*"] }))
        .checked()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The receiver holds the first request for 3 s: the server dies while it waits.
    receiver.configure(serde_json::json!({ "secrets": [webhook["secret"]], "delay": 3.0 })).await;
    let event: Value = client
        .post(format!("{}/v1/events", node.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "type": "order.created", "data": {} }))
        .checked()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sendout_id = event["sendouts"][0]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(800)).await;
    drop(node); // SIGKILL mid-delivery
    receiver.configure(serde_json::json!({ "secrets": [webhook["secret"]], "delay": 0.0 })).await;

    let (node, _) = start(&url, dir.path());
    wait_ready(&client, &node.base).await;
    // The attempt was handed over in the dead node's memory: the sweeper takes it for lost once it
    // is due for longer than an attempt can take (5 s to start + the 15 s timeout + 5 s).
    let mut sendout = Value::Null;
    for _ in 0..600 {
        sendout = client.get(format!("{}/v1/webhook-sendouts/{sendout_id}", node.base)).bearer_auth(&key).checked().await.unwrap().json().await.unwrap();
        if sendout["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sendout["status"], "delivered", "{sendout}");
    let records = receiver.wait_for(2).await;
    assert!(records.iter().all(|r| r["webhook_id"] == sendout_id.as_str() && r["verified_with"] == serde_json::json!([0])), "{records:?}");
}

//! `GET /v1/stream`: live changes as Server-Sent Events; nothing missed across reconnects, nodes
//! or slow readers; another project's changes never arrive.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, entry, spawn_app};

/// One SSE event.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: Value,
}

/// A stream read as a client reads it.
struct Client {
    response: reqwest::Response,
    buffer: String,
    ended: bool,
}

impl Client {
    async fn open(app: &TestApp, base: &str, query: &str, token: &str, last_event_id: Option<&str>) -> Client {
        let mut req = app.client.get(format!("{base}/v1/stream{query}")).bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert!(response.headers().contains_key("logbook-log-id"));
        let mut client = Client { response, buffer: String::new(), ended: false };
        // The stream opens with a comment at once.
        let first = client.raw_frame(Duration::from_secs(5)).await.expect("the stream opens at once");
        assert!(first.contains(": connected"), "{first}");
        client
    }

    /// The next frame's text, comments included; `None` on timeout or end.
    async fn raw_frame(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(at) = self.buffer.find("\n\n") {
                let frame = self.buffer[..at].to_owned();
                self.buffer.drain(..at + 2);
                return Some(frame);
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(_) => self.ended = true,
                Err(_) => return None,
            }
        }
    }

    /// The next event (comments skipped).
    async fn next(&mut self, wait: Duration) -> Option<Sse> {
        loop {
            let frame = self.raw_frame(wait).await?;
            let (mut id, mut event, mut data) = (None, None, None);
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(v).unwrap());
                }
            }
            if let Some(data) = data {
                return Some(Sse { id, event, data });
            }
        }
    }

    /// Events until one satisfies `stop` (included), for at most `wait` in all.
    async fn until(&mut self, wait: Duration, stop: impl Fn(&Sse) -> bool) -> Vec<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut seen = Vec::new();
        while let Some(e) = self.next(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
            let done = stop(&e);
            seen.push(e);
            if done {
                return seen;
            }
        }
        panic!("the awaited event did not come; saw {:?}", seen.iter().map(|e| (&e.event, &e.id)).collect::<Vec<_>>());
    }
}

fn iso(ms: i64) -> String {
    logbook::domain::time::format_utc(ms)
}

#[tokio::test]
async fn changes_arrive_live_with_the_list_summary_and_an_import_shows_its_progress() {
    let app = spawn_app().await;
    let mut stream = Client::open(&app, &app.address, "", &app.server_key, None).await;
    let id = app.ingest(vec![entry(&iso(logbook::domain::time::now_ms() - 1000))]).await.remove(0);
    let seen = stream.until(Duration::from_secs(10), |e| e.data["id"] == id.as_str()).await;
    let event = seen.last().unwrap();
    assert_eq!(event.event.as_deref(), Some("log.recorded"));
    assert!(event.id.as_deref().unwrap().parse::<i64>().is_ok());
    let listed = app.get_ok("/v1/logs?channel=shopify", &app.server_key).await;
    assert_eq!(event.data, listed["data"][0], "the summary as the list shows it");

    let upload = app.upload("orders.csv", "text/csv", crate::helpers::orders_csv(50, 0)).await;
    let task_id = upload["task_id"].as_str().unwrap().to_owned();
    let seen = stream.until(Duration::from_secs(20), |e| e.data["id"] == task_id.as_str() && e.data["status"] == "done").await;
    let task = seen.iter().filter(|e| e.event.as_deref() == Some("task.updated") && e.data["id"] == task_id.as_str());
    let statuses: Vec<&str> = task.map(|e| e.data["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.last(), Some(&"done"), "{statuses:?}");
    let ids: Vec<i64> = seen.iter().map(|e| e.id.as_deref().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids rise: {ids:?}");
}

#[tokio::test]
async fn topics_choose_and_another_projects_changes_never_arrive() {
    let app = spawn_app().await;
    let other_key = app.other_project_key("Other").await;
    let mut tasks_only = Client::open(&app, &app.address, "?topics=task.updated&topics=export.updated", &app.server_key, None).await;
    let mut other = Client::open(&app, &app.address, "", &other_key, None).await;
    app.ingest(vec![entry(&iso(logbook::domain::time::now_ms() - 1000))]).await;
    let created = app.post("/v1/exports", &app.server_key, json!({"resource": "logs"})).await;
    let export = crate::helpers::json_of(created, StatusCode::ACCEPTED).await;
    let export_id = export["id"].as_str().unwrap().to_owned();
    let seen = tasks_only.until(Duration::from_secs(20), |e| e.data["id"] == export_id.as_str() && e.data["status"] == "done").await;
    assert!(seen.iter().all(|e| ["task.updated", "export.updated"].contains(&e.event.as_deref().unwrap())), "{seen:?}");
    assert!(seen.iter().any(|e| e.event.as_deref() == Some("task.updated") && e.data["type"] == "export"));
    let done = seen.last().unwrap();
    assert_eq!(done.event.as_deref(), Some("export.updated"));
    assert!(done.data["row_count"].as_i64().unwrap() >= 1, "{:?}", done.data);

    // The other project's stream saw only its own requests.
    let own: HashSet<String> = [app.project_id.clone()].into();
    while let Some(e) = other.next(Duration::from_millis(500)).await {
        let text = e.data.to_string();
        assert!(!text.contains(&export_id) && !text.contains("shopify"), "a foreign change arrived: {text}");
        assert!(!own.iter().any(|p| text.contains(p.as_str())));
    }
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_gets_everything_it_missed_first() {
    let app = spawn_app().await;
    let now = logbook::domain::time::now_ms();
    let mut stream = Client::open(&app, &app.address, "?topics=log.recorded", &app.server_key, None).await;
    let first = app.ingest(vec![entry(&iso(now - 5000))]).await.remove(0);
    let seen = stream.until(Duration::from_secs(10), |e| e.data["id"] == first.as_str()).await;
    let last_id = seen.last().unwrap().id.clone().unwrap();
    drop(stream);

    // Missed while away: 30 requests of 10 entries.
    let mut missed = HashSet::new();
    for i in 0..30 {
        let batch: Vec<Value> = (0..10).map(|j| entry(&iso(now - 4000 + i * 10 + j))).collect();
        missed.extend(app.ingest(batch).await);
    }
    let mut again = Client::open(&app, &app.address, "?topics=log.recorded", &app.server_key, Some(&last_id)).await;
    let live = app.ingest(vec![entry(&iso(now - 100))]).await.remove(0);
    let seen = again.until(Duration::from_secs(20), |e| e.data["id"] == live.as_str()).await;
    let got: HashSet<String> = seen.iter().map(|e| e.data["id"].as_str().unwrap().to_owned()).collect();
    assert!(missed.is_subset(&got), "missed {} of {}", missed.difference(&got).count(), missed.len());
    assert!(!got.contains(&first), "nothing before Last-Event-ID comes again");
    assert_eq!(got.len(), seen.len(), "no change twice");

    assert_error(app.get("/v1/stream?topics=everything", &app.server_key).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    assert_error(app.get("/v1/stream?last_event_id=-3", &app.server_key).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    assert_error(app.get("/v1/stream?since=1", &app.server_key).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    assert_error(app.get("/v1/stream", &app.client_key).await, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_told_where_to_resume_and_loses_nothing() {
    let app = spawn_app().await;
    let now = logbook::domain::time::now_ms();
    // Opened, then not read while far more than its buffer is written (each request is one commit).
    let mut slow = Client::open(&app, &app.address, "?topics=log.recorded", &app.server_key, None).await;
    let mut written = HashSet::new();
    for i in 0..100 {
        let batch: Vec<Value> = (0..1000).map(|j| entry(&iso(now - 200_000 + i * 1000 + j))).collect();
        written.extend(app.ingest(batch).await);
    }
    let mut got = HashSet::new();
    let mut resume = None;
    loop {
        let Some(frame) = slow.raw_frame(Duration::from_secs(30)).await else { break };
        if frame.contains("event: resume") {
            resume = frame.lines().find_map(|l| l.strip_prefix("id: ")).map(str::to_owned);
            break;
        }
        if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
            let v: Value = serde_json::from_str(data).unwrap();
            got.insert(v["id"].as_str().unwrap().to_owned());
        }
    }
    let resume = resume.expect("a slow subscriber is sent a resume point");
    assert!(slow.raw_frame(Duration::from_secs(5)).await.is_none(), "and the stream ends");
    assert!(got.len() < written.len(), "it had fallen behind");

    let mut again = Client::open(&app, &app.address, "?topics=log.recorded", &app.server_key, Some(&resume)).await;
    let marker = app.ingest(vec![entry(&iso(now - 10))]).await.remove(0);
    for e in again.until(Duration::from_secs(60), |e| e.data["id"] == marker.as_str()).await {
        got.insert(e.data["id"].as_str().unwrap().to_owned());
    }
    assert!(written.is_subset(&got), "{} changes were lost", written.difference(&got).count());
}

#[tokio::test]
async fn a_subscriber_on_one_node_sees_changes_made_through_another() {
    let app = spawn_app().await;
    let postgres = app.settings.database_url.as_deref().is_some_and(|u| u.starts_with("postgres"));
    if !postgres {
        // One SQLite file has one process; several nodes share a PostgreSQL database.
        return;
    }
    let other = logbook::startup::Application::build(app.settings.clone(), "127.0.0.1:0", false).await.expect("second node");
    let other_base = format!("http://127.0.0.1:{}", other.port());
    let _server = other.spawn();
    let mut there = Client::open(&app, &other_base, "?topics=log.recorded", &app.server_key, None).await;
    let id = app.ingest(vec![entry(&iso(logbook::domain::time::now_ms() - 1000))]).await.remove(0);
    let seen = there.until(Duration::from_secs(10), |e| e.data["id"] == id.as_str()).await;
    assert_eq!(seen.last().unwrap().event.as_deref(), Some("log.recorded"));
}

#[tokio::test]
async fn a_client_ahead_of_this_node_gets_only_what_comes_after_what_it_saw() {
    let app = spawn_app().await;
    let now = logbook::domain::time::now_ms();
    let mut stream = Client::open(&app, &app.address, "?topics=log.recorded", &app.server_key, None).await;
    let first = app.ingest(vec![entry(&iso(now - 5000))]).await.remove(0);
    let seen = stream.until(Duration::from_secs(10), |e| e.data["id"] == first.as_str()).await;
    let last: i64 = seen.last().unwrap().id.as_deref().unwrap().parse().unwrap();
    drop(stream);
    // As if another node had passed on ten more positions already.
    let ahead = (last + 10).to_string();
    let mut again = Client::open(&app, &app.address, "?topics=log.recorded", &app.server_key, Some(&ahead)).await;
    let mut written = Vec::new();
    for i in 0..20 {
        written.extend(app.ingest(vec![entry(&iso(now - 4000 + i))]).await);
    }
    let marker = written.last().unwrap().clone();
    let got = again.until(Duration::from_secs(20), |e| e.data["id"] == marker.as_str()).await;
    assert!(got.iter().all(|e| e.id.as_deref().unwrap().parse::<i64>().unwrap() > last + 10), "nothing at or before its id");
}

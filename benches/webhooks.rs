//! Webhook delivery benchmark (issue 5): 100,000 events to one endpoint served by a fast local
//! receiver. Reports deliveries per second sustained, and publish-to-first-attempt latency while
//! otherwise idle. The server is the release binary in a process of its own.
//!
//!     cargo bench --bench webhooks                                 # SQLite
//!     BENCH_DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres' cargo bench --bench webhooks
//!     BENCH_ROWS=20000 cargo bench --bench webhooks                # a quicker run
//!
//! The 100,000 events are published by one NDJSON import (each row an event, fanned out to the
//! endpoint in the import's own transactions), so the delivery rate is measured, not the rate of
//! `POST /v1/events` calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

mod common;

/// When each event id arrived, and how many deliveries came.
#[derive(Default)]
struct Seen {
    arrivals: HashMap<String, Instant>,
    count: usize,
    first: Option<Instant>,
    last: Option<Instant>,
}

async fn receive(seen: web::Data<Arc<Mutex<Seen>>>, body: web::Bytes) -> HttpResponse {
    let now = Instant::now();
    let id = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["id"].as_str().map(str::to_owned)).unwrap_or_default();
    let mut seen = seen.lock().unwrap();
    seen.count += 1;
    seen.first.get_or_insert(now);
    seen.last = Some(now);
    seen.arrivals.entry(id).or_insert(now);
    HttpResponse::NoContent().finish()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[actix_web::main]
async fn main() {
    logbook::startup::install_tls();
    let rows: usize = std::env::var("BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let db_name = format!("lbbench_whk_{}", std::process::id());
    let url = common::database_url(&dir, &db_name).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let data = web::Data::new(seen.clone());
    let receiver = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(receive)))
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
    let receiver_port = receiver.addrs()[0].port();
    actix_web::rt::spawn(receiver.run());

    let server = common::start_server(&url, dir.path(), &[("LOGBOOK_WEBHOOK_ALLOW_PRIVATE", "true".into())]).await;
    let (base, key) = (server.base.clone(), server.key.clone());
    let client = reqwest::Client::new();
    let hook = json!({ "url": format!("http://127.0.0.1:{receiver_port}/hook"), "event_types": ["bench.*"] });
    let created = client.post(format!("{base}/v1/webhooks")).bearer_auth(&key).json(&hook).send().await.unwrap();
    assert_eq!(created.status(), 201);

    // Latency while idle: one event at a time, publish to first attempt.
    let mut latencies = Vec::new();
    for i in 0..200 {
        let sent = Instant::now();
        let event = common::post_json(&client, &format!("{base}/v1/events"), &key, &json!({ "type": "bench.ping", "data": { "i": i } })).await;
        let id = event["id"].as_str().unwrap().to_owned();
        let arrived = loop {
            if let Some(at) = seen.lock().unwrap().arrivals.get(&id) {
                break *at;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        latencies.push(arrived.duration_since(sent).as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort_by(f64::total_cmp);

    // Throughput: an import publishes `rows` events at once.
    *seen.lock().unwrap() = Seen::default();
    let mut ndjson = String::new();
    for i in 0..rows {
        ndjson.push_str(&format!("{{\"type\":\"bench.order\",\"source_id\":\"o{i}\",\"data\":{{\"n\":{i},\"note\":\"delivery benchmark\"}}}}\n"));
    }
    let started = Instant::now();
    let import = client
        .post(format!("{base}/v1/imports"))
        .bearer_auth(&key)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    assert_eq!(import.status(), 202);
    let mut last_report = Instant::now();
    loop {
        let count = seen.lock().unwrap().count;
        if count >= rows {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            println!("  … {count} delivered after {:.0} s", started.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(1800) {
            println!("gave up after 30 minutes with {count} delivered");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (count, span, mut arrivals) = {
        let s = seen.lock().unwrap();
        let arrivals: Vec<Instant> = s.arrivals.values().copied().collect();
        (s.count, s.last.unwrap().duration_since(s.first.unwrap()).as_secs_f64(), arrivals)
    };
    // The steady state: from the 10th to the 90th percentile of arrivals, past the ramp while the
    // import is still publishing.
    arrivals.sort();
    let (p10, p90) = (arrivals[arrivals.len() / 10], arrivals[arrivals.len() * 9 / 10]);
    let sustained = (arrivals.len() * 8 / 10) as f64 / p90.duration_since(p10).as_secs_f64();
    println!("backend: {}", if url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" });
    println!("publish to first attempt, idle, 200 events: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5), percentile(&latencies, 0.99), latencies[latencies.len() - 1]);
    println!("{} deliveries of {rows} events: {:.0} deliveries/s between the first and the last ({span:.1} s), {sustained:.0}/s sustained (10th to 90th percentile of arrivals); upload to last delivery {:.1} s",
        count, count as f64 / span, started.elapsed().as_secs_f64());
    drop(server);
    common::drop_database(&db_name).await;
}

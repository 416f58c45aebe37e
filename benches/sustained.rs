//! Sustained mixed load against a cluster on PostgreSQL over TCP (issue 18): two API nodes
//! (`serve --no-workers`) and a `worker`, for `BENCH_SECONDS` (default 600), driven open-loop at
//! fixed rates as many integrations would: single-entry log ingestion, event publishing (each
//! delivered to a receiver in another process), list queries, stream subscribers held open the
//! whole run, and an import and an export every two minutes. Reports each kind's latency
//! percentiles and errors (target 0), the deliveries, and every process' memory sampled every 10 s
//! (target: flat after warm-up).
//!
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench sustained
//!     BENCH_SECONDS=180 BENCH_SCALE=2 …     # a shorter run; twice the rates
//!
//! Rates at scale 1, per second: 200 log entries, 100 events, 20 list queries; 20 subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

mod common;

/// Latencies (ms) and failures of one kind of request.
#[derive(Default)]
struct Kind {
    took: Vec<f64>,
    errors: usize,
    first_errors: Vec<String>,
}

type Stats = Arc<Mutex<HashMap<&'static str, Kind>>>;

fn record(stats: &Stats, kind: &'static str, took: Duration, outcome: Result<(), String>) {
    let mut stats = stats.lock().unwrap();
    let entry = stats.entry(kind).or_default();
    match outcome {
        Ok(()) => entry.took.push(took.as_secs_f64() * 1000.0),
        Err(e) => {
            entry.errors += 1;
            if entry.first_errors.len() < 3 {
                entry.first_errors.push(e);
            }
        }
    }
}

/// Sends one request and records how it went (a non-2xx answer is an error).
async fn timed(stats: Stats, kind: &'static str, request: reqwest::RequestBuilder) -> Option<serde_json::Value> {
    let started = Instant::now();
    match request.send().await {
        Ok(r) if r.status().is_success() => {
            let body = r.json().await.unwrap_or_default();
            record(&stats, kind, started.elapsed(), Ok(()));
            Some(body)
        }
        Ok(r) => {
            let status = r.status();
            record(&stats, kind, started.elapsed(), Err(format!("{status} {}", r.text().await.unwrap_or_default())));
            None
        }
        Err(e) => {
            record(&stats, kind, started.elapsed(), Err(format!("{e:?}")));
            None
        }
    }
}

/// Runs `make(i)` `per_second` times a second until `until`, each request in a task of its own
/// (open loop: a slow answer does not slow the arrivals), at most 512 in flight.
fn paced<F>(per_second: f64, until: Instant, make: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(usize) -> futures_util::future::BoxFuture<'static, ()> + Send + 'static,
{
    tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(512));
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut i = 0;
        while Instant::now() < until {
            tick.tick().await;
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let request = make(i);
            tokio::spawn(async move {
                request.await;
                drop(slot);
            });
            i += 1;
        }
        let _ = slots.acquire_many(512).await;
    })
}

#[tokio::main]
async fn main() {
    if std::env::var_os("BENCH_RECEIVER").is_some() {
        return tokio::task::block_in_place(common::receiver);
    }
    logbook::startup::install_tls();
    let seconds: u64 = common::setting("BENCH_SECONDS", 600);
    let scale: f64 = common::setting("BENCH_SCALE", 1.0);
    if std::env::var("BENCH_DATABASE_URL").map_or(true, |u| !u.starts_with("postgres")) {
        eprintln!("set BENCH_DATABASE_URL=postgres://…: the sustained run is a cluster on PostgreSQL");
        return;
    }

    let (mut receiver, port, lines) = common::spawn_receiver();
    let delivered: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    {
        let delivered = delivered.clone();
        std::thread::spawn(move || {
            for line in lines {
                if let Some((id, _)) = line.split_once(' ') {
                    *delivered.lock().unwrap().entry(id.to_owned()).or_default() += 1;
                }
            }
        });
    }

    let dir = tempfile::tempdir().unwrap();
    let db_name = format!("lbbench_sustained_{}", std::process::id());
    let url = common::database_url(&dir, &db_name).await;
    let env = vec![
        ("LOGBOOK_WEBHOOK_ALLOW_PRIVATE", "true".to_owned()),
        ("LOGBOOK_SECRET_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_owned()),
    ];
    let a = common::start_node(&url, dir.path(), &env, &["--no-workers"], true).await;
    let b = common::start_node(&url, dir.path(), &env, &["--no-workers"], false).await;
    let workers = common::start_workers(1, &url, dir.path(), &env);
    let processes: Vec<(&str, u32)> = vec![("api-a", a.child.id()), ("api-b", b.child.id()), ("worker", workers[0].child.id())];
    let nodes = Arc::new(vec![a.base.clone(), b.base.clone()]);
    let key = a.key.clone();
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let hook = json!({"url": format!("http://127.0.0.1:{port}/hook"), "event_types": ["*"]});
    let webhook = common::post_json(&client, &format!("{}/v1/webhooks", a.base), &key, &hook).await;
    assert!(webhook["id"].is_string(), "webhook created: {webhook}");
    println!(
        "# Sustained load on PostgreSQL: {seconds} s, two API nodes and a worker; per second {:.0} log entries, {:.0} events, {:.0} list queries; {:.0} stream subscribers",
        200.0 * scale,
        100.0 * scale,
        20.0 * scale,
        (20.0 * scale).round()
    );

    let stats: Stats = Arc::default();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let sendouts: Arc<Mutex<Vec<String>>> = Arc::default();
    let stream_bytes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut load = Vec::new();

    // Subscribers, held open the whole run (each reconnects if its stream ends).
    for s in 0..(20.0 * scale).round() as usize {
        let (client, node, key, bytes) = (client.clone(), nodes[s % 2].clone(), key.clone(), stream_bytes.clone());
        load.push(tokio::spawn(async move {
            while Instant::now() < until {
                let Ok(response) = client.get(format!("{node}/v1/stream")).bearer_auth(&key).send().await else { continue };
                let mut body = response.bytes_stream();
                while let Ok(Some(Ok(chunk))) = tokio::time::timeout(until.saturating_duration_since(Instant::now()), body.next()).await {
                    bytes.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    let (c, k, n, st) = (client.clone(), key.clone(), nodes.clone(), stats.clone());
    load.push(paced(200.0 * scale, until, move |i| {
        let entry = json!({"logs": [{"occurred_at": logbook::domain::time::format_utc(logbook::domain::time::now_ms()), "channel": "shopify",
            "method": "POST", "path": format!("/orders/{i}"), "http_status": if i % 10 == 0 { 500 } else { 201 }, "duration_ms": 12,
            "customer_id": format!("c{}", i % 100), "request_body": {"order": i, "note": "x".repeat(120)}}]});
        let request = c.post(format!("{}/v1/logs", n[i % 2])).bearer_auth(&k).json(&entry);
        let st = st.clone();
        Box::pin(async move {
            timed(st, "POST /v1/logs (1 entry)", request).await;
        })
    }));
    let (c, k, n, st, so) = (client.clone(), key.clone(), nodes.clone(), stats.clone(), sendouts.clone());
    load.push(paced(100.0 * scale, until, move |i| {
        let body = json!({"type": "order.created", "source_id": format!("o{i}"), "data": {"order": i, "note": "x".repeat(160)}});
        let request = c.post(format!("{}/v1/events", n[i % 2])).bearer_auth(&k).json(&body);
        let (st, so) = (st.clone(), so.clone());
        Box::pin(async move {
            if let Some(event) = timed(st, "POST /v1/events", request).await {
                so.lock().unwrap().extend(event["sendouts"].as_array().into_iter().flatten().filter_map(|s| s["id"].as_str().map(str::to_owned)));
            }
        })
    }));
    let (c, k, n, st) = (client.clone(), key.clone(), nodes.clone(), stats.clone());
    load.push(paced(20.0 * scale, until, move |i| {
        let (kind, path) = match i % 4 {
            0 => ("GET /v1/logs", "/v1/logs?limit=50"),
            1 => ("GET /v1/logs (errors, one customer)", "/v1/logs?limit=50&status=failure&customer_id=c7"),
            2 => ("GET /v1/webhook-sendouts", "/v1/webhook-sendouts?limit=50"),
            _ => ("GET /v1/tasks", "/v1/tasks?limit=50"),
        };
        let request = c.get(format!("{}{path}", n[i % 2])).bearer_auth(&k);
        let st = st.clone();
        Box::pin(async move {
            timed(st, kind, request).await;
        })
    }));
    // An import (10,000 rows) and an export every two minutes, the first at once.
    let (c, k, n, st) = (client.clone(), key.clone(), nodes.clone(), stats.clone());
    load.push(paced(1.0 / 120.0, until, move |i| {
        let mut csv = String::from("type,source_id,amount\n");
        for r in 0..10_000 {
            csv.push_str(&format!("import.row,i{i}-{r},{r}\n"));
        }
        let import = c.post(format!("{}/v1/imports?name=rows.csv", n[i % 2])).bearer_auth(&k).header("content-type", "text/csv").body(csv);
        let export = c.post(format!("{}/v1/exports", n[(i + 1) % 2])).bearer_auth(&k).json(&json!({"resource": "logs", "filters": {"status": "failure"}}));
        let st = st.clone();
        Box::pin(async move {
            timed(st.clone(), "POST /v1/imports (10,000 rows)", import).await;
            timed(st, "POST /v1/exports", export).await;
        })
    }));

    // Memory of every process, every 10 s.
    let mut samples: Vec<(u64, Vec<f64>)> = Vec::new();
    while Instant::now() < until {
        samples.push((started.elapsed().as_secs(), processes.iter().map(|(_, pid)| common::rss_mib(*pid)).collect()));
        tokio::time::sleep(Duration::from_secs(10).min(until.saturating_duration_since(Instant::now()))).await;
    }
    samples.push((started.elapsed().as_secs(), processes.iter().map(|(_, pid)| common::rss_mib(*pid)).collect()));
    for task in load {
        let _ = task.await;
    }

    // Every accepted event delivered? (Two minutes at most after the load.)
    let sendouts = sendouts.lock().unwrap().clone();
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(120) && delivered.lock().unwrap().len() < sendouts.len() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delivered = delivered.lock().unwrap().clone();
    let missing = sendouts.iter().filter(|s| !delivered.contains_key(*s)).count();
    let repeated: usize = delivered.values().map(|n| n - 1).sum();

    println!("| request | count | p50 ms | p99 ms | max ms | errors |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut total_errors = 0;
    let mut stats = std::mem::take(&mut *stats.lock().unwrap()).into_iter().collect::<Vec<_>>();
    stats.sort_by_key(|(k, _)| *k);
    for (kind, mut s) in stats {
        s.took.sort_by(f64::total_cmp);
        total_errors += s.errors;
        println!(
            "| {kind} | {} | {:.1} | {:.1} | {:.1} | {} |",
            s.took.len() + s.errors,
            common::percentile(&s.took, 0.5),
            common::percentile(&s.took, 0.99),
            s.took.last().copied().unwrap_or(f64::NAN),
            s.errors
        );
        for e in s.first_errors {
            println!("  e.g. {e}");
        }
    }
    println!("errors: {total_errors}");
    println!(
        "deliveries: {} events accepted, {} delivered, {missing} missing, {repeated} repeated; {} bytes reached the stream subscribers",
        sendouts.len(),
        sendouts.len() - missing,
        stream_bytes.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!("memory (RSS, MiB) over time:");
    println!("| s | {} |", processes.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" | "));
    for (at, rss) in &samples {
        println!("| {at} | {} |", rss.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(" | "));
    }
    let _ = receiver.kill();
    drop(workers);
    drop(b);
    drop(a);
    common::drop_database(&db_name).await;
}

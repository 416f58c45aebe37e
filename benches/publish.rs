//! Per-request publishing benchmark (issue 14): many concurrent keep-alive clients each send one
//! `POST /v1/events` at a time (a 200-byte payload) to the release binary, one endpoint is
//! subscribed, and a receiver in another process answers 204 and notes when each delivery
//! arrived. Reports events/s published and delivered, publish latency, publish → delivery latency,
//! server CPU per 1,000 events, and the rate over each tenth of the run (flat with size?).
//!
//!     cargo bench --bench publish                                   # SQLite, 20,000 events, 64 clients
//!     BENCH_DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres' cargo bench --bench publish
//!     BENCH_EVENTS=1000000 BENCH_CLIENTS=64 cargo bench --bench publish
//!     BENCH_RATE=1000 cargo bench --bench publish                   # a steady 1,000 events/s instead of flat out
//!     BENCH_PATH=logs cargo bench --bench publish                   # single-entry `POST /v1/logs` instead
//!     BENCH_PATH=retry cargo bench --bench publish                  # `POST /v1/webhook-sendouts/{id}/retry`
//!     BENCH_PATH=bulk BENCH_EVENTS=100000 …                           # one bulk retry of that many failed sendouts
//!     BENCH_NODES=2 BENCH_WORKERS=2 BENCH_DATABASE_URL=postgres://… cargo bench --bench publish
//!                       # a cluster: API nodes (`serve --no-workers`) taking the clients in turn, and
//!                       # `worker` processes; CPU is summed over them, and PostgreSQL's transactions
//!                       # and rows written per event are reported
//!
//! The receiver is this benchmark's own executable, started again with `BENCH_RECEIVER=1`: it
//! prints its port, then one `<webhook-id> <unix ns>` line per delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

mod common;

use common::unix_ns;

#[tokio::main]
async fn main() {
    if std::env::var_os("BENCH_RECEIVER").is_some() {
        return tokio::task::block_in_place(common::receiver);
    }
    logbook::startup::install_tls();
    let events: usize = common::setting("BENCH_EVENTS", 20_000);
    let clients: usize = common::setting("BENCH_CLIENTS", 64);
    let rate: Option<f64> = std::env::var("BENCH_RATE").ok().and_then(|v| v.parse().ok());

    // The receiver, in a process of its own.
    let (mut child, port, lines) = common::spawn_receiver();
    let arrivals: Arc<Mutex<HashMap<String, u128>>> = Arc::default();
    let duplicates = Arc::new(Mutex::new(0usize));
    {
        let (arrivals, duplicates) = (arrivals.clone(), duplicates.clone());
        std::thread::spawn(move || {
            for line in lines {
                let Some((id, at)) = line.split_once(' ') else { continue };
                let at: u128 = at.parse().unwrap_or_default();
                if arrivals.lock().unwrap().insert(id.to_owned(), at).is_some() {
                    *duplicates.lock().unwrap() += 1;
                }
            }
        });
    }

    let dir = tempfile::tempdir().unwrap();
    let db_name = format!("lbbench_pub_{}", std::process::id());
    let url = common::database_url(&dir, &db_name).await;
    let backend = if url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" };
    let nodes: usize = common::setting("BENCH_NODES", 1).max(1);
    let worker_count: usize = common::setting("BENCH_WORKERS", 0);
    let cluster = nodes > 1 || worker_count > 0;
    let mut env = vec![("LOGBOOK_WEBHOOK_ALLOW_PRIVATE", "true".to_owned())];
    if cluster {
        // Every process opens the secrets the others sealed.
        env.push(("LOGBOOK_SECRET_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_owned()));
    }
    if std::env::var("BENCH_PATH").as_deref() == Ok("bulk") {
        // One attempt: a sendout fails at its first refused connection.
        env.push(("LOGBOOK_WEBHOOK_RETRY_SCHEDULE", "0s".to_owned()));
    }
    let api_only: &[&str] = if cluster { &["--no-workers"] } else { &[] };
    let server = common::start_node(&url, dir.path(), &env, api_only, true).await;
    let mut others = Vec::new();
    for _ in 1..nodes {
        others.push(common::start_node(&url, dir.path(), &env, api_only, false).await);
    }
    others.extend(common::start_workers(worker_count, &url, dir.path(), &env));
    let bases: Vec<String> = std::iter::once(server.base.clone()).chain(others.iter().filter(|o| !o.base.is_empty()).map(|o| o.base.clone())).collect();
    let pids: Vec<u32> = std::iter::once(server.child.id()).chain(others.iter().map(|o| o.child.id())).collect();
    let server_cpu = || pids.iter().map(|pid| common::cpu_seconds(*pid)).sum::<f64>();
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();
    let hook = json!({"url": format!("http://127.0.0.1:{port}/hook"), "event_types": ["*"]});
    let webhook = common::post_json(&client, &format!("{}/v1/webhooks", server.base), &server.key, &hook).await;
    assert!(webhook["id"].is_string(), "webhook created: {webhook}");
    let path = match std::env::var("BENCH_PATH").as_deref() {
        Ok("logs") => Some(Path::Logs),
        Ok("retry") => Some(Path::Retry),
        _ => None,
    };
    if let Some(path) = path {
        other_path(&server, &client, clients, events, path).await;
        let _ = child.kill();
        return;
    }
    if std::env::var("BENCH_PATH").as_deref() == Ok("bulk") {
        let webhook_id = webhook["id"].as_str().unwrap_or_default().to_owned();
        let receiver_url = webhook["url"].as_str().unwrap_or_default().to_owned();
        bulk_retry(&server, &client, clients, events, (&webhook_id, &receiver_url), &arrivals, &db_name).await;
        let _ = child.kill();
        drop(others);
        drop(server);
        common::drop_database(&db_name).await;
        return;
    }
    let mode = rate.map(|r| format!("a steady {r:.0} events/s")).unwrap_or_else(|| "as fast as answers come".into());
    let shape = if cluster { format!(", {nodes} API nodes and {worker_count} worker processes") } else { String::new() };
    println!("# Publishing benchmark on {backend}: {events} events, {clients} clients, {mode}{shape}");

    // Each client publishes its share one request at a time; the sendout id is the webhook-id.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu_before = server_cpu();
    let pg_before = common::pg_activity(&db_name).await;
    let (own_before, receiver_before, db_before) =
        (common::cpu_seconds(std::process::id()), common::cpu_seconds(child.id()), common::cpu_seconds_named("postgres"));
    let started = Instant::now();
    let start_ns = unix_ns();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, base, key, next) = (client.clone(), bases[c % bases.len()].clone(), server.key.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let padding = "x".repeat(160);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= events {
                    return sent;
                }
                if let Some(rate) = rate {
                    let due = Duration::from_secs_f64(i as f64 / rate);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                let body = json!({"type": "order.created", "data": {"order": i, "note": padding}});
                let at = unix_ns();
                let t = Instant::now();
                let response = client.post(format!("{base}/v1/events")).bearer_auth(&key).json(&body).send().await;
                let Ok(response) = response else { continue };
                let took = t.elapsed().as_secs_f64() * 1000.0;
                let accepted: serde_json::Value = response.json().await.unwrap_or_default();
                let sendout = accepted["sendouts"][0]["id"].as_str().unwrap_or_default().to_owned();
                sent.push((i, sendout, at, took));
            }
        }));
    }
    let mut sent = Vec::with_capacity(events);
    for t in tasks {
        sent.extend(t.await.unwrap());
    }
    let published_in = started.elapsed();
    // Wait for every delivery (bounded: two minutes after the last publish without progress).
    let mut last_count = 0;
    let mut idle_since = Instant::now();
    loop {
        let count = arrivals.lock().unwrap().len();
        if count >= sent.len() {
            break;
        }
        if count != last_count {
            (last_count, idle_since) = (count, Instant::now());
        } else if idle_since.elapsed() > Duration::from_secs(120) {
            println!("gave up waiting: {count} of {} delivered", sent.len());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = server_cpu() - cpu_before;
    let pg_after = common::pg_activity(&db_name).await;
    let own = common::cpu_seconds(std::process::id()) - own_before;
    let receiver_cpu = common::cpu_seconds(child.id()) - receiver_before;
    let db_cpu = common::cpu_seconds_named("postgres") - db_before;
    let arrivals = arrivals.lock().unwrap().clone();
    let _ = child.kill();

    let mut publish: Vec<f64> = sent.iter().map(|s| s.3).collect();
    publish.sort_by(f64::total_cmp);
    let mut to_delivery: Vec<f64> =
        sent.iter().filter_map(|(_, id, at, _)| arrivals.get(id).map(|d| (d.saturating_sub(*at)) as f64 / 1e6)).collect();
    to_delivery.sort_by(f64::total_cmp);
    let last_arrival = arrivals.values().max().copied().unwrap_or(start_ns);
    let total_s = (last_arrival.saturating_sub(start_ns)) as f64 / 1e9;
    println!(
        "published {} in {:.1} s ({:.0}/s); delivered {} of them, {:.0} events/s published and delivered (first publish to last delivery, {total_s:.1} s)",
        sent.len(),
        published_in.as_secs_f64(),
        sent.len() as f64 / published_in.as_secs_f64(),
        to_delivery.len(),
        to_delivery.len() as f64 / total_s.max(1e-9)
    );
    println!(
        "publish latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        common::percentile(&publish, 0.5),
        common::percentile(&publish, 0.99),
        publish.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "publish -> delivery: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        common::percentile(&to_delivery, 0.5),
        common::percentile(&to_delivery, 0.99),
        to_delivery.last().copied().unwrap_or(f64::NAN)
    );
    let per_1000 = |seconds: f64| seconds * 1000.0 / sent.len().max(1) as f64;
    println!("server CPU: {:.2} s per 1,000 events; duplicate deliveries: {}", per_1000(cpu), duplicates.lock().unwrap());
    println!(
        "meanwhile, per 1,000 events: PostgreSQL {:.2} s of CPU, these clients {:.2} s, the receiver {:.2} s",
        per_1000(db_cpu),
        per_1000(own),
        per_1000(receiver_cpu)
    );
    if let (Some(before), Some(after)) = (pg_before, pg_after) {
        let per_event = |a: i64, b: i64| (a - b) as f64 / sent.len().max(1) as f64;
        println!(
            "PostgreSQL per event (published, queued, delivered, recorded): {:.2} transactions, {:.1} rows inserted, {:.1} rows updated",
            per_event(after.0, before.0),
            per_event(after.1, before.1),
            per_event(after.2, before.2)
        );
    }
    // Each tenth of the events in publish order: how fast that tenth was published and delivered.
    sent.sort_by_key(|s| s.0);
    let tenth = (sent.len() / 10).max(1);
    let rates: Vec<String> = sent
        .chunks(tenth)
        .take(10)
        .map(|chunk| {
            let from = chunk.iter().map(|s| s.2).min().unwrap_or(0);
            let to = chunk.iter().filter_map(|s| arrivals.get(&s.1)).max().copied().unwrap_or(from);
            format!("{:.0}", chunk.len() as f64 / ((to.saturating_sub(from)) as f64 / 1e9).max(1e-9))
        })
        .collect();
    println!("events/s over each tenth: {}", rates.join(", "));
    drop(others);
    drop(server);
    common::drop_database(&db_name).await;
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Logs,
    Retry,
}

/// The other single-request writes users make in a loop, `n` requests from `clients` clients:
/// one-entry `POST /v1/logs`, or retries by hand of `n` sendouts published (and delivered) first.
async fn other_path(server: &common::Server, client: &reqwest::Client, clients: usize, n: usize, path: Path) {
    let mut sendouts = Vec::new();
    if path == Path::Retry {
        let published = drive(clients, n, |i| {
            let body = json!({"type": "order.created", "data": {"order": i}});
            client.post(format!("{}/v1/events", server.base)).bearer_auth(&server.key).json(&body)
        })
        .await;
        sendouts = published.1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let name = if path == Path::Logs { "single-entry POST /v1/logs" } else { "POST /v1/webhook-sendouts/{id}/retry" };
    println!("# {name}: {n} requests, {clients} clients");
    let cpu_before = common::cpu_seconds(server.child.id());
    let started = Instant::now();
    let (mut took, _) = drive(clients, n, |i| match path {
        Path::Logs => {
            let entry = json!({"logs": [{"occurred_at": "2026-12-01T10:00:00Z", "channel": "shopify", "method": "POST",
                "path": format!("/orders/{i}"), "http_status": 201, "duration_ms": 12, "request_body": {"order": i, "note": "x".repeat(120)}}]});
            client.post(format!("{}/v1/logs", server.base)).bearer_auth(&server.key).json(&entry)
        }
        Path::Retry => client
            .post(format!("{}/v1/webhook-sendouts/{}/retry", server.base, sendouts[i % sendouts.len().max(1)]))
            .bearer_auth(&server.key)
            .json(&json!({})),
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = common::cpu_seconds(server.child.id()) - cpu_before;
    took.sort_by(f64::total_cmp);
    println!(
        "{} answered in {elapsed:.1} s: {:.0} requests/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; server CPU {:.2} s per 1,000",
        took.len(),
        took.len() as f64 / elapsed,
        common::percentile(&took, 0.5),
        common::percentile(&took, 0.99),
        took.last().copied().unwrap_or(f64::NAN),
        cpu * 1000.0 / took.len().max(1) as f64
    );
}

/// Sends `n` requests made by `make`, `clients` at a time, each client one after another; returns
/// the latencies (ms) of the successful ones and the first sendout id of each answer that has one.
async fn drive<F>(clients: usize, n: usize, make: F) -> (Vec<f64>, Vec<String>)
where
    F: Fn(usize) -> reqwest::RequestBuilder + Sync,
{
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = (0..clients).map(|_| async {
        let (mut took, mut ids) = (Vec::new(), Vec::new());
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= n {
                return (took, ids);
            }
            let t = Instant::now();
            let Ok(response) = make(i).send().await else { continue };
            let ok = response.status().is_success();
            let answer: serde_json::Value = response.json().await.unwrap_or_default();
            if ok {
                took.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            if let Some(id) = answer["sendouts"][0]["id"].as_str() {
                ids.push(id.to_owned());
            }
        }
    });
    let all = futures_util::future::join_all(workers).await;
    all.into_iter().fold((Vec::new(), Vec::new()), |(mut t, mut i), (t2, i2)| {
        t.extend(t2);
        i.extend(i2);
        (t, i)
    })
}

/// `n` failed sendouts (published while their endpoint points at a closed port, with one attempt
/// each), then the endpoint pointed back at the receiver and one `POST /v1/webhook-sendouts/retry`:
/// how long until every one has arrived, and which worker made the attempts taken from the shared
/// queue (those the recovery task's own process handed over in memory have no queue row).
async fn bulk_retry(
    server: &common::Server,
    client: &reqwest::Client,
    clients: usize,
    n: usize,
    (webhook_id, receiver_url): (&str, &str),
    arrivals: &Arc<Mutex<HashMap<String, u128>>>,
    db_name: &str,
) {
    let webhook_url = format!("{}/v1/webhooks/{webhook_id}", server.base);
    let patch = |url: &str| client.patch(&webhook_url).bearer_auth(&server.key).json(&json!({"url": url})).send();
    assert!(patch("http://127.0.0.1:1/closed").await.is_ok_and(|r| r.status().is_success()), "endpoint pointed at a closed port");
    println!("# Bulk retry: {n} failed sendouts, one POST /v1/webhook-sendouts/retry");
    let started = Instant::now();
    drive(clients, n, |i| {
        let body = json!({"type": "order.created", "data": {"order": i, "note": "x".repeat(160)}});
        client.post(format!("{}/v1/events", server.base)).bearer_auth(&server.key).json(&body)
    })
    .await;
    let dry_run = json!({"filters": {"status": "failed"}, "dry_run": true});
    let retry_url = format!("{}/v1/webhook-sendouts/retry", server.base);
    loop {
        let matching = common::post_json(client, &retry_url, &server.key, &dry_run).await["matching"].as_u64().unwrap_or(0);
        if matching as usize >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("{n} sendouts published and failed in {:.1} s", started.elapsed().as_secs_f64());
    assert!(patch(receiver_url).await.is_ok_and(|r| r.status().is_success()), "endpoint pointed at the receiver");
    let queued_before = delivery_jobs_by_worker(db_name).await;
    let cpu_before = common::cpu_seconds_named("logbook");
    let started = Instant::now();
    let task = common::post_json(client, &retry_url, &server.key, &json!({"filters": {"status": "failed"}})).await;
    assert!(task["id"].is_string(), "a recovery task: {task}");
    let mut last = (0, Instant::now());
    while arrivals.lock().unwrap().len() < n && last.1.elapsed() < Duration::from_secs(120) {
        let count = arrivals.lock().unwrap().len();
        if count != last.0 {
            last = (count, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let delivered = arrivals.lock().unwrap().len();
    let task = reqwest::Client::new().get(format!("{}/v1/tasks/{}", server.base, task["id"].as_str().unwrap_or_default())).bearer_auth(&server.key).send().await;
    let task: serde_json::Value = match task { Ok(r) => r.json().await.unwrap_or_default(), Err(_) => Default::default() };
    println!(
        "retried: {delivered} of {n} delivered in {took:.1} s ({:.0}/s); the recovery task {} in {} ms; the logbook processes used {:.2} s of CPU per 1,000",
        delivered as f64 / took,
        task["status"].as_str().unwrap_or("?"),
        task["processing_time_ms"],
        (common::cpu_seconds_named("logbook") - cpu_before) * 1000.0 / delivered.max(1) as f64
    );
    let queued = delivery_jobs_by_worker(db_name).await;
    let mut from_queue = 0;
    for (worker, count) in &queued {
        let count = count - queued_before.get(worker).copied().unwrap_or(0);
        if count > 0 {
            println!("  worker {worker}: {count} attempts from the shared queue");
            from_queue += count;
        }
    }
    println!("  handed over in memory by the recovery task's process: {}", delivered as i64 - from_queue);
}

/// Finished delivery jobs per worker name (PostgreSQL; empty on SQLite).
async fn delivery_jobs_by_worker(db_name: &str) -> HashMap<String, i64> {
    use sqlx::Connection;
    let Ok(base) = std::env::var("BENCH_DATABASE_URL") else { return HashMap::new() };
    let Ok(mut url) = url::Url::parse(&base) else { return HashMap::new() };
    url.set_path(db_name);
    let Ok(mut conn) = sqlx::PgConnection::connect(url.as_str()).await else { return HashMap::new() };
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT lock_by, COUNT(*) FROM apalis.jobs WHERE job_type = 'logbook.delivery' AND status = 'Done' GROUP BY lock_by",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    rows.into_iter().map(|(w, n)| (w.unwrap_or_default(), n)).collect()
}

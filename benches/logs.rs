//! Logs benchmark (issue 3): ingest logs with ~1 KiB bodies through `POST /v1/logs` in batches of
//! 1,000, then time first-page queries, body searches and logging overhead under load.
//!
//!     cargo bench --bench logs                                    # SQLite, 1,000,000 logs
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench logs
//!     BENCH_ROWS=100000 cargo bench --bench logs                  # a quicker run
//!     BENCH_TIMES=random cargo bench --bench logs                 # back-dated entries at random times
//!     BENCH_KEEP=1 cargo bench --bench logs                       # keep the database, skip the load test
//!     BENCH_CLIENTS=8 cargo bench --bench logs                    # ingest with 8 clients instead of 4
//!     BENCH_PART=console cargo bench --bench logs                 # ingest, then only the console's views
//!
//! The console part times what the Logs tab asks for, as it asks: sign-in (the project, then the
//! first page and the histogram of the last 24 hours together) and each filter change (page and
//! histogram together), and the value counts offered while a filter is typed.
//!
//! The server is the release binary in a process of its own, on a fresh database (a temporary
//! SQLite file, or a new PostgreSQL database next to BENCH_DATABASE_URL), driven over HTTP on
//! loopback.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

const BATCH: usize = 1000;
/// Concurrent ingest clients, unless `BENCH_CLIENTS` says otherwise.
const CLIENTS: usize = 4;
const QUERY_RUNS: usize = 30;
/// Clients of the logging-overhead load test.
const CONCURRENCY: usize = 128;

/// How the entries' times are spread over the last seven days.
#[derive(Clone, Copy, PartialEq)]
enum Times {
    /// In arrival order, as a host application forwards its requests (the default).
    Live,
    /// Uniformly at random: a back-fill of history (`BENCH_TIMES=random`), the worst case for the
    /// time-ordered indexes.
    Random,
}

const WORDS: &[&str] = &[
    "order", "invoice", "customer", "shipping", "address", "blue", "green", "payment", "refund", "item",
    "quantity", "price", "discount", "coupon", "warehouse", "parcel", "tracking", "express", "standard", "note",
];
const ENDPOINTS: &[&str] = &[
    "GET /v1/orders", "POST /v1/orders", "GET /v1/orders/{id}", "PATCH /v1/orders/{id}", "GET /v1/customers",
    "POST /v1/customers", "GET /v1/customers/{id}", "POST /v1/refunds", "GET /v1/invoices", "POST /v1/payments",
];
const CHANNELS: &[&str] = &["api", "client", "dashboard", "shopify", "stripe"];

/// A deterministic pseudo-random entry `i`, its bodies about 1 KiB together.
fn entry(i: usize, rows: usize, times: Times, now_ms: i64) -> Value {
    // splitmix64 of (i, salt): fields vary independently, so combined filters have realistic hits.
    let r = |salt: usize| {
        let mut z = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (salt as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as usize
    };
    let words: Vec<&str> = (0..60).map(|k| WORDS[r(k) % WORDS.len()]).collect();
    let mut note = words.join(" ");
    if i % 10_000 == 42 {
        note.push_str(&format!(" needle-{}", i / 10_000));
    }
    let failed = r(99) % 10 == 0;
    let endpoint = ENDPOINTS[r(3) % ENDPOINTS.len()];
    let (method, path) = endpoint.split_once(' ').unwrap();
    let mut e = json!({
        "occurred_at": logbook::domain::time::format_utc(occurred_at(i, rows, times, now_ms, r(5))),
        "channel": CHANNELS[r(7) % CHANNELS.len()],
        "method": method,
        "path": path.replace("{id}", &format!("ord_{}", r(11) % 100_000)),
        "endpoint": endpoint,
        "http_status": if failed { [400, 404, 422, 500, 502][r(13) % 5] } else { [200, 201, 204][r(17) % 3] },
        "duration_ms": r(19) % 900,
        "user_id": format!("usr_{}", r(23) % 1000),
        "customer_id": format!("cus_{}", r(29) % 10_000),
        "server_key_id": format!("key_s{}", r(31) % 5),
        "request_body": {"note": note, "amount": r(37) % 100_000, "currency": "EUR", "items": [{"sku": format!("sku-{}", r(41) % 5000), "qty": 1 + r(43) % 5}]},
        "response_body": {"id": format!("ord_{i}"), "status": if failed { "declined by issuer" } else { "accepted" }, "words": words[..20].join(" ")},
    });
    if i.is_multiple_of(100) {
        e["related"] = json!([{"type": "task", "id": format!("task_{}", i / 100)}]);
    }
    e
}

const WEEK_MS: i64 = 7 * 86_400_000;

fn occurred_at(i: usize, rows: usize, times: Times, now_ms: i64, random: usize) -> i64 {
    match times {
        // Entry i of n at i/n of the week, give or take a second.
        Times::Live => now_ms - WEEK_MS + (i as i64 * WEEK_MS) / rows as i64 - (random % 1000) as i64,
        Times::Random => now_ms - (random as i64 % WEEK_MS),
    }
}

/// Every request body, made before the clock starts: the load generator shares the machine's two
/// cores with the server, and its JSON work is not the server's.
fn batches(rows: usize, times: Times) -> Vec<actix_web::web::Bytes> {
    let now = logbook::domain::time::now_ms();
    (0..rows.div_ceil(BATCH))
        .map(|b| {
            let logs: Vec<Value> = (b * BATCH..((b + 1) * BATCH).min(rows)).map(|i| entry(i, rows, times, now)).collect();
            serde_json::to_vec(&json!({ "logs": logs })).unwrap().into()
        })
        .collect()
}

async fn ingest(server: &common::Server, bodies: Vec<actix_web::web::Bytes>, clients: usize) -> f64 {
    let client = reqwest::Client::new();
    let rows: usize = bodies.len() * BATCH;
    let bodies = std::sync::Arc::new(bodies);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, base, key, bodies) = (client.clone(), server.base.clone(), server.key.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            for b in (c..bodies.len()).step_by(clients) {
                let body = bodies[b].clone();
                let res = client
                    .post(format!("{base}/v1/logs"))
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201, "{}", res.text().await.unwrap_or_default());
                if b % 100 == 0 {
                    eprint!("\r  ingested {} / {rows}", (b + 1) * BATCH);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!();
    rows as f64 / started.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn time_query(server: &common::Server, client: &reqwest::Client, query: &str) -> (f64, f64, usize) {
    // One untimed run first: the timed ones measure a server in use, not its first read from disk.
    client.get(format!("{}/v1/logs?{query}", server.base)).bearer_auth(&server.key).send().await.unwrap();
    let mut times = Vec::with_capacity(QUERY_RUNS);
    let mut count = 0;
    for _ in 0..QUERY_RUNS {
        let started = Instant::now();
        let res = client.get(format!("{}/v1/logs?{query}", server.base)).bearer_auth(&server.key).send().await.unwrap();
        assert_eq!(res.status(), 200, "{query}");
        let body: Value = res.json().await.unwrap();
        times.push(started.elapsed());
        count = body["data"].as_array().map(Vec::len).unwrap_or(0);
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.95), count)
}

async fn load(server: &common::Server, seconds: u64, concurrency: usize) -> f64 {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, key) = (client.clone(), format!("{}/v1/project", server.base), server.key.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let res = client.get(&url).bearer_auth(&key).send().await.unwrap();
                assert_eq!(res.status(), 200);
                res.bytes().await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / seconds as f64
}

#[tokio::main]
async fn main() {
    logbook::startup::install_tls();
    let rows: usize = std::env::var("BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let times = if std::env::var("BENCH_TIMES").is_ok_and(|v| v == "random") { Times::Random } else { Times::Live };
    let backend = if std::env::var("BENCH_DATABASE_URL").is_ok_and(|v| !v.is_empty()) { "PostgreSQL" } else { "SQLite" };
    let order = if times == Times::Live { "in arrival order" } else { "at random times" };
    println!("# Logs benchmark on {backend}, {rows} logs over seven days, {order}");
    let dir = tempfile::tempdir().unwrap();
    let db_name = format!("lbbench_logs_{}", std::process::id());
    let url = common::database_url(&dir, &db_name).await;
    let server = common::start_server(&url, dir.path(), &[]).await;
    let console_only = std::env::var("BENCH_PART").is_ok_and(|v| v == "console");
    if rows > 0 {
        ingest_and_query(&server, rows, times, !console_only).await;
        console_views(&server).await;
    }
    if console_only {
        drop(server);
        common::drop_database(&db_name).await;
        return;
    }
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!("database kept in {}", dir.keep().display());
        return;
    }

    println!("\nsmall authenticated endpoint (GET /v1/project), {CONCURRENCY} concurrent clients, 8 s each:");
    let with = load(&server, 8, CONCURRENCY).await;
    drop(server);
    common::drop_database(&db_name).await;
    let dir = tempfile::tempdir().unwrap();
    let url = common::database_url(&dir, &db_name).await;
    let plain = common::start_server(&url, dir.path(), &[("LOGBOOK_REQUEST_LOGGING", "false".into())]).await;
    let without = load(&plain, 8, CONCURRENCY).await;
    drop(plain);
    common::drop_database(&db_name).await;
    println!("with logging: {with:.0} req/s; without: {without:.0} req/s; ratio {:.0}% (target >= 70%)", 100.0 * with / without);
}

/// Events not yet in the search index, from the server's `/metrics`.
async fn search_lag(server: &common::Server) -> i64 {
    let text = reqwest::get(format!("{}/metrics", server.base)).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("logbook_search_index_lag_events "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("search lag in /metrics") as i64
}

async fn ingest_and_query(server: &common::Server, rows: usize, times: Times, queries: bool) {
    let bodies = batches(rows, times);
    let clients = std::env::var("BENCH_CLIENTS").ok().and_then(|v| v.parse().ok()).filter(|&c| c > 0).unwrap_or(CLIENTS);
    let cpu_before = common::cpu_seconds(server.child.id());
    let rate = ingest(server, bodies, clients).await;
    let cpu = common::cpu_seconds(server.child.id()) - cpu_before;
    let indexer = if std::env::var("LOGBOOK_NO_WORKERS").is_ok_and(|v| v == "true") { "no search indexer" } else { "search indexer running" };
    println!("ingest: {rate:.0} logs/s ({clients} clients, batches of {BATCH}; {indexer})");
    println!("server CPU: {:.0} µs per log", cpu * 1e6 / rows as f64);

    let lag_at_end = search_lag(server).await;
    let started = Instant::now();
    while search_lag(server).await > 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let catch_up = started.elapsed().as_secs_f64();
    let own_rate = if catch_up > 1.0 { format!(" ({:.0} events/s on its own)", lag_at_end as f64 / catch_up) } else { String::new() };
    println!("search indexer: {lag_at_end} events behind when ingestion ended, caught up {catch_up:.1} s later{own_rate}");

    if !queries {
        return;
    }
    let client = reqwest::Client::new();
    let w = "occurred_after=2020-01-01";
    let queries = [
        w.to_string(),
        format!("{w}&channel=shopify"),
        format!("{w}&status=failure"),
        format!("{w}&endpoint=POST%20/v1/refunds"),
        format!("{w}&user_id=usr_17"),
        format!("{w}&customer_id=cus_1234"),
        format!("{w}&server_key_id=key_s3"),
        format!("{w}&related_id=task_77"),
        format!("{w}&status=failure&channel=api"),
        format!("{w}&channel=stripe&endpoint=GET%20/v1/orders"),
        format!("{w}&status=failure&server_key_id=key_s1"),
        format!("{w}&user_id=usr_5&status=success"),
        format!("{w}&customer_id=cus_77&channel=shopify&status=failure"),
        "occurred_after=2026-01-01T00:00:00Z&occurred_before=2030-01-01".to_owned(),
    ];
    println!("\nfirst page (limit 50), {QUERY_RUNS} runs each:");
    println!("{:<70} {:>8} {:>8} {:>6}", "query", "p50 ms", "p95 ms", "rows");
    let mut worst: f64 = 0.0;
    for q in &queries {
        let (p50, p95, n) = time_query(server, &client, q).await;
        worst = worst.max(p95);
        println!("{q:<70} {p50:>8.1} {p95:>8.1} {n:>6}");
    }
    println!("worst filter p95: {worst:.1} ms (target <= 20 ms)");

    println!("\nbody-text search (indexed), {QUERY_RUNS} runs each:");
    let mut worst_search: f64 = 0.0;
    for q in [
        format!("{w}&request_body_contains=needle-42"),
        format!("{w}&request_body_contains=NEEDLE-7&status=failure"),
        format!("{w}&response_body_contains=declined%20by"),
        format!("{w}&request_body_contains=blue%20order%20refund"),
    ] {
        let (p50, p95, n) = time_query(server, &client, &q).await;
        worst_search = worst_search.max(p95);
        println!("{q:<70} {p50:>8.1} {p95:>8.1} {n:>6}");
    }
    println!("worst search p95: {worst_search:.1} ms (target <= 250 ms)");
}

/// One console request set, timed as the browser waits for it: every path at once, until the last
/// answers.
async fn together(server: &common::Server, client: &reqwest::Client, paths: &[String]) -> Duration {
    let started = Instant::now();
    let calls = paths.iter().map(|p| {
        let request = client.get(format!("{}{p}", server.base)).bearer_auth(&server.key);
        async move {
            let res = request.send().await.unwrap();
            assert_eq!(res.status(), 200, "{p}");
            res.bytes().await.unwrap();
        }
    });
    futures_util::future::join_all(calls).await;
    started.elapsed()
}

const CONSOLE_RUNS: usize = 20;

async fn console_views(server: &common::Server) {
    let client = reqwest::Client::new();
    let runs = |paths: Vec<String>| {
        let client = client.clone();
        async move {
            together(server, &client, &paths).await; // untimed first run
            let mut times = Vec::with_capacity(CONSOLE_RUNS);
            for _ in 0..CONSOLE_RUNS {
                times.push(together(server, &client, &paths).await);
            }
            times.sort();
            (percentile(&times, 0.5), percentile(&times, 0.95))
        }
    };
    // The console's default window: the last 24 hours, as the Logs tab asks for it.
    let after = logbook::domain::time::format_utc(logbook::domain::time::now_ms() - 86_400_000);
    let window = format!("occurred_after={after}");
    println!("\nconsole views, last 24 hours, page and histogram together, {CONSOLE_RUNS} runs each:");
    println!("{:<70} {:>8} {:>8}", "view", "p50 ms", "p95 ms");
    let (p50, p95) = runs(vec!["/v1/project".into()]).await;
    let (l50, l95) = runs(vec![format!("/v1/logs?{window}"), format!("/v1/logs/histogram?{window}")]).await;
    println!("{:<70} {:>8.1} {:>8.1}", "sign-in: project, then first page + histogram", p50 + l50, p95 + l95);
    let mut worst: f64 = 0.0;
    for filter in [
        "status=failure",
        "channel=shopify",
        "endpoint=POST%20/v1/refunds",
        "customer_id=cus_1234",
        "user_id=usr_17&status=failure",
        "request_body_contains=needle-42",
        "response_body_contains=declined%20by",
    ] {
        let q = format!("{window}&{filter}");
        let (p50, p95) = runs(vec![format!("/v1/logs?{q}"), format!("/v1/logs/histogram?{q}")]).await;
        worst = worst.max(p95);
        println!("{:<70} {p50:>8.1} {p95:>8.1}", format!("filter {filter}"));
    }
    println!("worst filter change p95: {worst:.1} ms (target <= 300 ms)");
    let mut worst_facet: f64 = 0.0;
    for field in ["channel", "status", "endpoint", "customer_id", "http_status"] {
        let (p50, p95) = runs(vec![format!("/v1/logs/facets?{window}&field={field}")]).await;
        worst_facet = worst_facet.max(p95);
        println!("{:<70} {p50:>8.1} {p95:>8.1}", format!("facet {field}"));
    }
    println!("worst facet p95: {worst_facet:.1} ms");
}

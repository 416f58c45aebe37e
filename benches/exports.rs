//! Exports, browsing and the live stream, driven over HTTP against the release binary.
//!
//!     cargo bench --bench exports                                   # SQLite, 1,000,000 logs
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench exports
//!     BENCH_ROWS=100000 cargo bench --bench exports                 # a quicker run
//!     BENCH_PART=stream cargo bench --bench exports                 # only the stream
//!     BENCH_SUBSCRIBERS=1000 BENCH_PROJECTS=50 BENCH_RATE=2000 BENCH_SECONDS=20 BENCH_PART=stream cargo bench --bench exports
//!
//! Export: `BENCH_ROWS` logs with bodies (about 1 KiB each) are ingested, then exported with their
//! bodies; rows per second from the task's start to its end, and the server's resident memory
//! sampled every 50 ms meanwhile (its peak, and its peak over the whole run). Browse: the first
//! page of `q` searches (a common and a rare needle) and of a column filter over that export,
//! 20 each, p50/p95. `BENCH_VARIED=1` adds random text to every body (a 16-digit hex trace id and
//! six words of seven random letters from a 20,000-word vocabulary): nearly every letter trigram
//! is then in every block of 1,024 rows, where the plain bodies hold 2,200 trigrams a block, so a
//! search's text passes every block's filter and is read row by row: the text index's worst
//! case. Stream: `BENCH_SUBSCRIBERS` SSE clients spread over `BENCH_PROJECTS`
//! projects while logs are written at `BENCH_RATE` a second (in requests of 100, to projects in
//! turn); every subscriber counts the logs of its project it receives (none may be missed), and
//! the time from an entry's `occurred_at` (set just before it is sent) to its arrival.

#[path = "common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

fn now_ms() -> i64 {
    logbook::domain::time::now_ms()
}

fn iso(ms: i64) -> String {
    logbook::domain::time::format_utc(ms)
}

/// Resident memory of `pid` now and at its peak, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {

    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    logbook::startup::install_tls();
    let rows: usize = std::env::var("BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let part = std::env::var("BENCH_PART").unwrap_or_else(|_| "all".into());
    let backend = if std::env::var("BENCH_DATABASE_URL").is_ok_and(|v| !v.is_empty()) { "PostgreSQL over TCP" } else { "SQLite" };
    let dir = tempfile::tempdir().unwrap();
    let db_name = format!("lbbench_exports_{}", std::process::id());
    let url = common::database_url(&dir, &db_name).await;
    let server = common::start_server(&url, dir.path(), &[]).await;
    if part == "all" || part == "export" {
        println!("# Export and browse on {backend}, {rows} logs with bodies");
        export_and_browse(&server, rows).await;
    }
    if part == "all" || part == "stream" {
        println!("\n# Live stream on {backend}");
        stream(&server).await;
    }
    drop(server);
    common::drop_database(&db_name).await;
}

/// SplitMix64: the varied text's pseudo-random numbers, the same every run.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Word `n` of the varied text's vocabulary: seven letters.
fn word(n: u64) -> String {
    let mut h = mix(n ^ 0xABCD);
    (0..7).map(|_| { let c = (b'a' + (h % 26) as u8) as char; h /= 26; c }).collect()
}

/// A log entry with about 1 KiB of bodies; one in 97 holds the rare word.
fn entry(i: usize, at: i64, varied: bool) -> Value {
    let note = if i % 97 == 0 { "a rare quetzal" } else { "nothing special" };
    let (channel, status) = (["shopify", "stripe", "api"][i % 3], [200, 201, 422, 500][i % 4]);
    let mut e = json!({
        "occurred_at": iso(at), "channel": channel, "method": "POST",
        "path": format!("/v1/orders/{i}"), "endpoint": "POST /v1/orders", "http_status": status,
        "duration_ms": i % 250, "customer_id": format!("cus_{}", i % 5000), "user_id": format!("usr_{}", i % 50),
        "request_body": {"note": note, "amount": i * 7 % 100_000, "currency": "EUR", "lines": (0..6).map(|l| json!({"sku": format!("sku-{}", (i + l) % 5000), "qty": 1 + l, "label": "a label long enough to make a body"})).collect::<Vec<_>>()},
        "response_body": {"id": format!("ord_{i}"), "status": "accepted", "total": {"amount": i * 7 % 100_000, "currency": "EUR"}, "links": ["https://example.com/orders/1", "https://example.com/orders/2"]},
    });
    if varied {
        let r = mix(i as u64);
        e["request_body"]["trace"] = json!(format!("{r:016x}"));
        e["request_body"]["comment"] = json!((0..6).map(|k| word(mix(r + k) % 20_000)).collect::<Vec<_>>().join(" "));
    }
    e
}

async fn export_and_browse(server: &common::Server, rows: usize) {
    let varied = std::env::var("BENCH_VARIED").is_ok_and(|v| v == "1");
    let client = reqwest::Client::new();
    let pid = server.child.id();
    let start = now_ms() - 3_600_000;
    let started = Instant::now();
    let bodies: Vec<Value> = (0..rows.div_ceil(1000))
        .map(|b| json!({"logs": (b * 1000..((b + 1) * 1000).min(rows)).map(|i| entry(i, start + (i as i64 * 3_000_000 / rows.max(1) as i64), varied)).collect::<Vec<_>>()}))
        .collect();
    let queue = Arc::new(Mutex::new(bodies.into_iter()));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (queue, client, server_url, key) = (queue.clone(), client.clone(), format!("{}/v1/logs", server.base), server.key.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().await.next() else { break };
                let r = client.post(&server_url).bearer_auth(&key).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    println!("ingested {rows} logs in {:.1} s", started.elapsed().as_secs_f64());
    // The export runs alone, not beside the search indexer's catching up.
    let lag = || async {
        let text = client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
        text.lines().find_map(|l| l.strip_prefix("logbook_search_index_lag_events ")).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    while lag().await > 0.0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("search index caught up {:.1} s after the start", started.elapsed().as_secs_f64());
    let (rss_before, _) = rss_mib(pid);

    let fields = json!(["id", "occurred_at", "channel", "status", "method", "endpoint", "path", "http_status", "duration_ms", "user_id", "customer_id", "server_key_id", "client_key_id", "request_body", "response_body"]);
    let body = json!({"resource": "logs", "filters": {"occurred_after": iso(start - 1000)}, "fields": fields});
    let asked = Instant::now();
    let export = common::post_json(&client, &format!("{}/v1/exports", server.base), &server.key, &body).await;
    let id = export["id"].as_str().expect("export created").to_owned();
    let task_id = export["task_id"].as_str().unwrap().to_owned();
    let mut peak: f64 = rss_before;
    let get = |url: String| {
        let (client, key) = (client.clone(), server.key.clone());
        async move { client.get(url).bearer_auth(key).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // The export is done once its file is whole; its task goes on to index the rows for browsing.
    let export = loop {
        peak = peak.max(rss_mib(pid).0);
        let export = get(format!("{}/v1/exports/{id}", server.base)).await;
        if ["done", "failed"].contains(&export["status"].as_str().unwrap_or_default()) {
            break export;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let wall = asked.elapsed().as_secs_f64();
    assert_eq!(export["status"], "done", "{export}");
    let done_at = Instant::now();
    let task = get(format!("{}/v1/tasks/{task_id}", server.base)).await;
    let written = export["row_count"].as_i64().unwrap();
    let instant = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp_millis() as f64;
    let ms = instant(&export["finished_at"]) - instant(&task["started_at"]);
    println!(
        "export: {written} rows, {:.0} MiB, in {:.1} s from its task's start to its file being whole ({:.0} rows/s; {:.1} s from request to done)",
        export["size_bytes"].as_f64().unwrap() / 1048576.0,
        ms / 1000.0,
        written as f64 / (ms / 1000.0),
        wall
    );
    let (_, hwm) = rss_mib(pid);
    println!("server RSS: {rss_before:.0} MiB before, peak {peak:.0} MiB while exporting (target <= 150), peak over the whole run {hwm:.0} MiB");
    let mut peak_indexing: f64 = 0.0;
    loop {
        peak_indexing = peak_indexing.max(rss_mib(pid).0);
        let export = get(format!("{}/v1/exports/{id}", server.base)).await;
        match export["browse_status"].as_str() {
            Some("ready") => break,
            Some("indexing") => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => panic!("the export's rows are not indexed: {export}"),
        }
    }
    let first = client.get(format!("{}/v1/exports/{id}/rows?limit=50", server.base)).bearer_auth(&server.key).send().await.unwrap();
    println!(
        "done to browsable: {:.1} s ({:.0} rows/s indexed; first page answered {}); server RSS peak while indexing {peak_indexing:.0} MiB",
        done_at.elapsed().as_secs_f64(),
        written as f64 / done_at.elapsed().as_secs_f64(),
        first.status()
    );

    let started = Instant::now();
    let download = client.get(format!("{}/v1/exports/{id}/download", server.base)).bearer_auth(&server.key).send().await.unwrap().bytes().await.unwrap();
    println!("download: {:.0} MiB in {:.1} s", download.len() as f64 / 1048576.0, started.elapsed().as_secs_f64());
    drop(download);

    for (what, query) in [
        ("q common ('special')", "q=special"),
        ("q rare ('QUETZAL', 1 row in 97)", "q=QUETZAL"),
        ("q absent ('okapi', in no row: read from the text index alone)", "q=okapi"),
        ("filter.channel=stripe", "filter.channel=stripe"),
        ("filter.customer_id=cus_4321", "filter.customer_id=cus_4321"),
        ("q + filter", "q=quetzal&filter.status=failure"),
    ] {
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..20 {
            let t = Instant::now();
            let page: Value = client.get(format!("{}/v1/exports/{id}/rows?limit=50&{query}", server.base)).bearer_auth(&server.key).send().await.unwrap().json().await.unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            found = page["data"].as_array().map_or(0, Vec::len);
        }
        times.sort_by(f64::total_cmp);
        println!("browse {what}: first page p50 {:.0} ms, p95 {:.0} ms ({found} rows)", percentile(&times, 0.5), percentile(&times, 0.95));
    }
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    latencies: Vec<f64>,
}

async fn stream(server: &common::Server) {
    let subscribers: usize = std::env::var("BENCH_SUBSCRIBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let projects: usize = std::env::var("BENCH_PROJECTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50).max(1);
    let rate: usize = std::env::var("BENCH_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let pid = server.child.id();
    let client = reqwest::Client::builder().pool_max_idle_per_host(2000).build().unwrap();
    let mut keys = Vec::new();
    for p in 0..projects {
        let created = common::post_json(&client, &format!("{}/v1/projects", server.base), common::ADMIN, &json!({"name": format!("stream {p}")})).await;
        keys.push(created["server_key"].as_str().expect("project created").to_owned());
    }
    let (rss_before, _) = rss_mib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for s in 0..subscribers {
        let (client, url, key, stop) = (client.clone(), format!("{}/v1/stream?topics=log.recorded", server.base), keys[s % projects].clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut response = client.get(url).bearer_auth(key).send().await.expect("stream opens");
            assert_eq!(response.status(), 200);
            let mut buffer = String::new();
            while !stop.load(Ordering::Relaxed) {
                let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_millis(500), response.chunk()).await else { continue };
                let at = now_ms();
                buffer.push_str(std::str::from_utf8(&chunk).unwrap());
                while let Some(end) = buffer.find("\n\n") {
                    if let Some(data) = buffer[..end].lines().find_map(|l| l.strip_prefix("data: ")) {
                        #[derive(serde::Deserialize)]
                        struct Log<'a> {
                            id: &'a str,
                            occurred_at: &'a str,
                            channel: &'a str,
                        }
                        if let Ok(log) = serde_json::from_str::<Log>(data)
                            && log.channel == "bench"
                        {
                            seen.ids.insert(log.id.to_owned());
                            if let Ok(sent) = logbook::domain::time::parse_instant(log.occurred_at) {
                                seen.latencies.push((at - sent) as f64);
                            }
                        }
                    }
                    buffer.drain(..end + 2);
                }
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_connected, _) = rss_mib(pid);

    // Writers: requests of 100 entries, to the projects in turn, paced to `rate` entries a second.
    let per_request = 100;
    let interval = Duration::from_secs_f64(per_request as f64 / rate as f64);
    let mut written: Vec<Vec<String>> = vec![Vec::new(); projects];
    let cpu_before = common::cpu_seconds(pid);
    let started = Instant::now();
    let mut next = tokio::time::Instant::now();
    let mut in_flight = Vec::new();
    let mut peak = rss_connected;
    let mut i = 0usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep_until(next).await;
        next += interval;
        let project = i % projects;
        let at = now_ms();
        let logs: Vec<Value> = (0..per_request)
            .map(|j| json!({"occurred_at": iso(at), "channel": "bench", "method": "GET", "path": format!("/r/{i}/{j}"), "http_status": 200, "duration_ms": 1}))
            .collect();
        let (client, url, key) = (client.clone(), format!("{}/v1/logs", server.base), keys[project].clone());
        in_flight.push(tokio::spawn(async move {
            let answer = common::post_json(&client, &url, &key, &json!({"logs": logs})).await;
            (project, answer["ids"].as_array().map(|ids| ids.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect::<Vec<_>>()).unwrap_or_default())
        }));
        if i % 20 == 0 {
            peak = peak.max(rss_mib(pid).0);
        }
        i += 1;
    }
    for h in in_flight {
        let (project, ids) = h.await.unwrap();
        written[project].extend(ids);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = common::cpu_seconds(pid) - cpu_before;
    tokio::time::sleep(Duration::from_secs(3)).await;
    peak = peak.max(rss_mib(pid).0);
    stop.store(true, Ordering::Relaxed);
    let total: usize = written.iter().map(Vec::len).sum();

    let (mut missed, mut worst, mut latencies) = (0usize, 0usize, Vec::new());
    for (s, h) in handles.into_iter().enumerate() {
        let seen = h.await.unwrap();
        let expected = &written[s % projects];
        let lost = expected.iter().filter(|id| !seen.ids.contains(*id)).count();
        missed += lost;
        worst = worst.max(lost);
        latencies.extend(seen.latencies);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{subscribers} subscribers over {projects} projects; {total} logs written in {elapsed:.1} s ({:.0}/s), each to the {} subscribers of its project ({:.0} deliveries/s)",
        total as f64 / elapsed,
        subscribers / projects,
        (total * subscribers / projects) as f64 / elapsed
    );
    println!(
        "change -> subscriber: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (target p99 <= 250)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    println!("missed: {missed} in all, {worst} at worst by one subscriber (target 0)");
    println!(
        "server RSS: {rss_before:.0} MiB before, {rss_connected:.0} MiB with every subscriber connected, peak {peak:.0} MiB (growth {:.0} MiB, target < 100); server CPU {:.2} s per second",
        peak - rss_before,
        cpu / elapsed
    );
}

//! Import benchmark (issue 4): upload a 1,000,000-row CSV and time the import task to its end,
//! sampling the server's resident memory. The server is the release binary in a process of its
//! own, so the memory measured is the server's alone.
//!
//!     cargo bench --bench imports                                  # SQLite, 1,000,000 rows
//!     BENCH_DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres' cargo bench --bench imports
//!     BENCH_ROWS=100000 cargo bench --bench imports                # a quicker run

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

/// Kilobytes of the process' resident set: now and at its peak.
fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main]
async fn main() {
    logbook::startup::install_tls();
    let rows: usize = std::env::var("BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let db_name = format!("lbbench_imp_{}", std::process::id());
    let url = common::database_url(&dir, &db_name).await;

    // A file of order events with ~100-byte rows, every 1,000th row bad.
    let path = dir.path().join("orders.csv");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(out, "type,source_id,customer.email,customer.country,amount,currency").unwrap();
        for i in 1..=rows {
            let kind = if i % 1000 == 0 { "Bad Type" } else { "order.created" };
            writeln!(out, "{kind},ord_{i:08},customer{}@example.com,DE,{}.{:02},EUR", i % 5000, i % 997, i % 100).unwrap();
        }
    }
    let size = std::fs::metadata(&path).unwrap().len();

    let server = common::start_server(&url, dir.path(), &[("LOGBOOK_MAX_IMPORT_BYTES", (size + 1).to_string())]).await;
    let (base, key, pid) = (server.base.clone(), server.key.clone(), server.child.id());
    let client = reqwest::Client::new();
    let (idle_rss, _) = rss_kb(pid);

    let started = Instant::now();
    let body = reqwest::Body::wrap_stream(file_stream(std::fs::File::open(&path).unwrap()));
    let response = client
        .post(format!("{base}/v1/imports?name=orders.csv"))
        .bearer_auth(&key)
        .header("content-type", "text/csv")
        .header("content-length", size.to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap_or_default());
    let import: Value = response.json().await.unwrap();
    let uploaded = started.elapsed();
    let task_id = import["task_id"].as_str().unwrap().to_owned();
    let mut peak_rss = 0;
    let task = loop {
        let task: Value = client.get(format!("{base}/v1/tasks/{task_id}")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        peak_rss = peak_rss.max(rss_kb(pid).0);
        if ["done", "failed", "cancelled"].contains(&task["status"].as_str().unwrap_or_default()) {
            break task;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let total = started.elapsed();
    let (_, hwm) = rss_kb(pid);
    let processing = task["processing_time_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    println!("backend: {}", if url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" });
    println!("file: {rows} rows, {:.1} MiB", size as f64 / 1048576.0);
    println!("upload (stored byte for byte): {:.2} s ({:.0} MiB/s)", uploaded.as_secs_f64(), size as f64 / 1048576.0 / uploaded.as_secs_f64());
    println!("import task: {} ({}), rows imported {}, failed {}", task["status"], task["processing_status"], task["result"]["rows_imported"], task["result"]["rows_failed"]);
    println!("import processing: {processing:.2} s = {:.0} rows/s", rows as f64 / processing);
    println!("upload to done: {:.2} s = {:.0} rows/s", total.as_secs_f64(), rows as f64 / total.as_secs_f64());
    println!("server memory: idle {} MiB, sampled peak {} MiB, high-water mark {} MiB", idle_rss / 1024, peak_rss / 1024, hwm / 1024);
    drop(server);
    common::drop_database(&db_name).await;
}

/// The file as a stream of 256 KiB chunks (read synchronously: this is the load generator).
fn file_stream(file: std::fs::File) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> {
    use std::io::Read;
    futures_util::stream::unfold(file, |mut file| async move {
        let mut chunk = vec![0; 256 * 1024];
        match file.read(&mut chunk) {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok(chunk), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

//! PostgreSQL over TCP against the Unix socket (issue 13): the same calls, on the same data, through
//! one server started twice, once per transport. Without TCP_NODELAY (sqlx 0.9.0 unpatched) the TCP
//! figures were about five times the socket's.
//!
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench postgres_tcp
//!     BENCH_SOCKET=/var/run/postgresql   # the socket folder, if not this default
//!
//! Seeds 2,000 logs, then times 200 first pages of `GET /v1/logs`, 200 log details and 200
//! `POST /v1/events` (one event each) per transport, one request at a time; reports the medians
//! and p95s.

use std::time::{Duration, Instant};

use serde_json::json;

mod common;

const CALLS: usize = 200;
const SEED: usize = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn time(client: &reqwest::Client, key: &str, calls: impl Fn(usize) -> reqwest::RequestBuilder) -> (f64, f64) {
    let mut took = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let started = Instant::now();
        let response = client.execute(calls(i).bearer_auth(key).build().unwrap()).await.expect("request");
        assert!(response.status().is_success(), "{}", response.status());
        response.bytes().await.unwrap();
        took.push(started.elapsed());
    }
    took.sort();
    (percentile(&took, 0.5), percentile(&took, 0.95))
}

#[tokio::main]
async fn main() {
    let Ok(base) = std::env::var("BENCH_DATABASE_URL") else {
        eprintln!("set BENCH_DATABASE_URL to a PostgreSQL server reached over TCP");
        std::process::exit(2);
    };
    assert!(base.starts_with("postgres"), "BENCH_DATABASE_URL must be PostgreSQL");
    let dir = tempfile::tempdir().unwrap();
    let socket = std::env::var("BENCH_SOCKET").unwrap_or_else(|_| "/var/run/postgresql".into());
    logbook::startup::install_tls();
    let client = reqwest::Client::new();

    println!("transport  call                         p50 ms   p95 ms");
    // TCP, the socket, then TCP again: a drift of the machine over the run shows as two TCP rows apart.
    for (run, transport) in ["tcp", "socket", "tcp"].into_iter().enumerate() {
        let name = format!("logbook_bench_transport_{run}");
        let tcp_url = common::database_url(&dir, &name).await;
        let url = if transport == "tcp" {
            tcp_url
        } else {
            let mut url = url::Url::parse(&tcp_url).unwrap();
            url.set_host(Some("localhost")).unwrap();
            url.query_pairs_mut().append_pair("host", &socket);
            url.to_string()
        };
        let data = tempfile::tempdir().unwrap();
        let server = common::start_server(&url, data.path(), &[]).await;
        let key = server.key.clone();
        let base = server.base.clone();
        let ids: Vec<String> = {
            let logs: Vec<_> = (0..SEED)
                .map(|i| json!({"occurred_at": "2026-11-30T12:00:00Z", "channel": "shop", "method": "GET", "path": format!("/orders/{i}"),
                    "http_status": if i % 10 == 0 { 500 } else { 200 }, "duration_ms": 5, "response_body": {"order": i, "note": "x".repeat(600)}}))
                .collect();
            let mut ids = Vec::new();
            for chunk in logs.chunks(1000) {
                let body = common::post_json(&client, &format!("{base}/v1/logs"), &key, &json!({"logs": chunk})).await;
                ids.extend(body["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()));
            }
            ids
        };
        let (p50, p95) = time(&client, &key, |_| client.get(format!("{base}/v1/logs?occurred_after=2026-11-01&limit=50"))).await;
        println!("{transport:<10} GET /v1/logs (first page)    {p50:>7.2}  {p95:>7.2}");
        let (p50, p95) = time(&client, &key, |i| client.get(format!("{base}/v1/logs/{}", ids[i % ids.len()]))).await;
        println!("{transport:<10} GET /v1/logs/{{id}}            {p50:>7.2}  {p95:>7.2}");
        let (p50, p95) = time(&client, &key, |i| {
            client.post(format!("{base}/v1/events")).json(&json!({"type": "order.created", "data": {"n": i}}))
        })
        .await;
        println!("{transport:<10} POST /v1/events              {p50:>7.2}  {p95:>7.2}");
        drop(server);
        common::drop_database(&name).await;
    }
}

//! What the benchmarks that run the release binary share: a fresh database, and the server in a
//! process of its own.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::Connection;

pub const ADMIN: &str = "adm_bench_0123456789abcdefghijklmnop";

/// A temporary SQLite file, or a new PostgreSQL database named `name` next to BENCH_DATABASE_URL.
pub async fn database_url(dir: &tempfile::TempDir, name: &str) -> String {
    match std::env::var("BENCH_DATABASE_URL") {
        Ok(base) if !base.is_empty() => {
            let mut conn = sqlx::PgConnection::connect(&base).await.expect("BENCH_DATABASE_URL reachable");
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).execute(&mut conn).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
            let mut url = url::Url::parse(&base).unwrap();
            url.set_path(name);
            url.to_string()
        }
        _ => format!("sqlite://{}", dir.path().join("bench.db").display()),
    }
}

/// Drops the PostgreSQL database of [`database_url`], if one was made.
pub async fn drop_database(name: &str) {
    if let Ok(base) = std::env::var("BENCH_DATABASE_URL")
        && !base.is_empty()
    {
        let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).execute(&mut conn).await;
    }
}

pub struct Server {
    pub base: String,
    pub key: String,
    pub child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `logbook serve` on a free port with `env`, and waits until it is ready; returns it with
/// the server key its first start printed.
pub async fn start_server(url: &str, dir: &std::path::Path, env: &[(&str, String)]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_logbook"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", url)
        .env("LOGBOOK_DATA_DIR", dir)
        .env("LOGBOOK_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "warn")
        // The limiter stays in the path, but with one key driving thousands of requests a second
        // the default (10,000 per second) must not be what a benchmark measures.
        .env("LOGBOOK_RATE_LIMIT", "1000000")
        .stdout(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("release binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
    let key = lines.by_ref().find_map(|line| line.trim().strip_prefix("server key:").map(|k| k.trim().to_owned()));
    // Keep reading: a server whose stdout is closed dies of the next line it prints.
    std::thread::spawn(move || lines.for_each(drop));
    let server = Server { base: format!("http://127.0.0.1:{port}"), key: key.expect("server key printed"), child };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("{}/readyz", server.base)).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

/// Seconds of CPU the process `pid` has used (user + system).
#[allow(dead_code)] // not every benchmark reads it
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields.get(11..13).map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()).unwrap_or(0.0);
    ticks / 100.0
}

/// Seconds of CPU used by every live process named `name` (such as `postgres`, whose backends come
/// and go with the pool's connections; an exited backend's time is lost, so this reads low).
#[allow(dead_code)] // not every benchmark reads it
pub fn cpu_seconds_named(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name))
        .map(cpu_seconds)
        .sum()
}

/// POSTs `body` as JSON with `key` and returns the JSON answer (panics on a transport error).
#[allow(dead_code)] // not every benchmark posts
pub async fn post_json(client: &reqwest::Client, url: &str, key: &str, body: &serde_json::Value) -> serde_json::Value {
    client.post(url).bearer_auth(key).json(body).send().await.expect("request sent").json().await.unwrap_or_default()
}

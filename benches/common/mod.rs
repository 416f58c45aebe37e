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
#[allow(dead_code)] // the cluster benchmarks start nodes
pub async fn start_server(url: &str, dir: &std::path::Path, env: &[(&str, String)]) -> Server {
    start_node(url, dir, env, &[], true).await
}

/// As [`start_server`], with more `serve` arguments (`--no-workers` for an API-only node). Only a
/// database's `first` node prints a key (the others' is empty).
pub async fn start_node(url: &str, dir: &std::path::Path, env: &[(&str, String)], args: &[&str], first: bool) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_logbook"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
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
    let key = match first {
        true => lines.by_ref().find_map(|line| line.trim().strip_prefix("server key:").map(|k| k.trim().to_owned())),
        false => Some(String::new()),
    };
    // Keep reading: a server whose stdout is closed dies of the next line it prints.
    std::thread::spawn(move || lines.for_each(drop));
    let server = Server { base: format!("http://127.0.0.1:{port}"), key: key.unwrap_or_default(), child };
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

/// Starts `logbook worker` processes with `env`; they are killed when dropped.
#[allow(dead_code)] // only the cluster benchmarks run workers alone
pub fn start_workers(n: usize, url: &str, dir: &std::path::Path, env: &[(&str, String)]) -> Vec<Server> {
    (0..n)
        .map(|i| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_logbook"));
            command
                .arg("worker")
                .env("DATABASE_URL", url)
                .env("LOGBOOK_DATA_DIR", dir.join(format!("worker-{i}")))
                .env("LOGBOOK_ADMIN_TOKEN", ADMIN)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null());
            for (name, value) in env {
                command.env(name, value);
            }
            Server { base: String::new(), key: String::new(), child: command.spawn().expect("release binary starts") }
        })
        .collect()
}

/// `(transactions committed, rows inserted, rows updated)` in PostgreSQL database `name` so far.
#[allow(dead_code)]
pub async fn pg_activity(name: &str) -> Option<(i64, i64, i64)> {
    let base = std::env::var("BENCH_DATABASE_URL").ok().filter(|b| !b.is_empty())?;
    let mut conn = sqlx::PgConnection::connect(&base).await.ok()?;
    let row: (i64, i64, i64) = sqlx::query_as("SELECT xact_commit, tup_inserted, tup_updated FROM pg_stat_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .ok()?;
    Some(row)
}

/// Now, in nanoseconds since the Unix epoch.
#[allow(dead_code)]
pub fn unix_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
}

/// A webhook receiver, run as a benchmark's own executable started again: 204 to everything; it
/// prints `port <n>`, then one `<webhook-id> <unix ns>` line per delivery on stdout.
#[allow(dead_code)]
pub fn receiver() {
    use std::io::Write;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        while let Ok(line) = rx.recv() {
            let _ = writeln!(out, "{line}");
            while let Ok(more) = rx.try_recv() {
                let _ = writeln!(out, "{more}");
            }
            let _ = out.flush();
        }
    });
    actix_web::rt::System::new().block_on(async move {
        use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
        let port_tx = tx.clone();
        let tx = web::Data::new(std::sync::Mutex::new(tx));
        let server = HttpServer::new(move || {
            // The body is taken even though unused: actix closes the connection after a request
            // whose body was left unread, and every delivery would then connect anew.
            App::new().app_data(tx.clone()).default_service(web::to(|req: HttpRequest, _body: web::Bytes, tx: web::Data<std::sync::Mutex<std::sync::mpsc::Sender<String>>>| async move {
                let at = unix_ns();
                let id = req.headers().get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
                let _ = tx.lock().unwrap().send(format!("{id} {at}"));
                HttpResponse::NoContent().finish()
            }))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        // Through the writer thread, which holds stdout.
        let _ = port_tx.send(format!("port {}", server.addrs()[0].port()));
        server.run().await.unwrap();
    });
}

/// Resident memory of process `pid`, in MiB.
#[allow(dead_code)]
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0.0);
    kib / 1024.0
}

/// The value at quantile `p` of `sorted`.
#[allow(dead_code)]
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() { f64::NAN } else { sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] }
}

/// Setting `name` from the environment, or `default` when unset or unreadable.
#[allow(dead_code)]
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Starts [`receiver`] in a process of its own (this executable again, with `BENCH_RECEIVER`);
/// returns it, its port, and its lines.
#[allow(dead_code)]
pub fn spawn_receiver() -> (Child, u16, impl Iterator<Item = String> + Send + 'static) {
    let mut child = Command::new(std::env::current_exe().unwrap()).env("BENCH_RECEIVER", "1").stdout(Stdio::piped()).spawn().expect("receiver starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
    let port: u16 = lines.next().and_then(|l| l.strip_prefix("port ").and_then(|p| p.parse().ok())).expect("receiver port");
    (child, port, lines)
}

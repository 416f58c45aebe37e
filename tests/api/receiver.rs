//! A webhook receiver in Python that verifies deliveries with the official `standardwebhooks`
//! library (`tests/receiver/receiver.py`), driven from the tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub struct Receiver {
    pub port: u16,
    child: Child,
    records: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("records.jsonl");
        let mut child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/receiver/receiver.py"))
            .arg(port.to_string())
            .arg(&records)
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the receiver (pip install standardwebhooks)");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Self { port, child, records, _dir: dir };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the receiver did not start; is standardwebhooks installed?");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Sets the secrets it verifies with and how it answers (see receiver.py).
    pub async fn configure(&self, config: Value) {
        let response = reqwest::Client::new().post(format!("http://127.0.0.1:{}/_config", self.port)).json(&config).send().await.unwrap();
        assert!(response.status().is_success());
    }

    /// Complete lines only: the receiver may be half-way through writing the last one.
    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.records).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until at least `n` deliveries arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..400 {
            let records = self.records();
            if records.len() >= n {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the receiver got {} deliveries, not {n}", self.records().len());
    }
}

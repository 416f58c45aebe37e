//! `serve --demo`: on a fresh database, fills the `default` project with a day of example data
//! through the public API (as a user's script would), so that the console has something to show
//! from the first sign-in: an integration's requests with bodies (some failing), an endpoint that
//! cannot be reached with the events fanned out to it, and an import with a bad row.

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::domain::time::{format_utc, now_ms};

/// A documentation address (TEST-NET-1, RFC 5737): public, so the SSRF policy lets it through, and
/// never answered, so its sendouts fail and form a failure group.
pub const UNREACHABLE_URL: &str = "http://192.0.2.1/webhooks/orders";

const CUSTOMERS: &[&str] = &["cus_acme", "cus_globex", "cus_initech", "cus_umbrella", "cus_hooli"];
const SKUS: &[&str] = &["TEA-GREEN", "TEA-BLACK", "COFFEE-DARK", "COFFEE-MILD", "MUG-WHITE"];

/// Entry `i` of `n`, spread over the last 24 hours: one in seven fails, with the upstream's error.
fn entry(i: usize, n: usize, now: i64) -> Value {
    let at = now - 86_000_000 + (i as i64 * 86_000_000) / n as i64;
    let (channel, endpoint, method, path) = match i % 4 {
        0 => ("shopify", "POST /orders", "POST", format!("/orders/{}", 5000 + i)),
        1 => ("shopify", "GET /orders/{id}", "GET", format!("/orders/{}", 5000 + i / 2)),
        2 => ("stripe", "POST /payments", "POST", "/payments".to_owned()),
        _ => ("stripe", "POST /refunds", "POST", "/refunds".to_owned()),
    };
    let failed = i % 7 == 3;
    let customer = CUSTOMERS[i % CUSTOMERS.len()];
    let sku = SKUS[(i / 3) % SKUS.len()];
    json!({
        "occurred_at": format_utc(at),
        "channel": channel,
        "method": method,
        "path": path,
        "endpoint": endpoint,
        "http_status": if failed { [502, 422, 500][i % 3] } else if method == "POST" { 201 } else { 200 },
        "duration_ms": 40 + (i * 37) % 900,
        "customer_id": customer,
        "request_headers": { "content-type": "application/json", "user-agent": format!("{channel}-connector/2.4") },
        "request_body": { "order": 5000 + i, "customer": customer, "items": [{ "sku": sku, "qty": 1 + i % 3 }], "currency": "EUR" },
        "response_body": if failed {
            json!({ "error": { "code": "upstream_unavailable", "message": "The warehouse did not answer in time." } })
        } else {
            json!({ "id": format!("ord_{}", 5000 + i), "status": "accepted" })
        },
    })
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    async fn send(&self, path: &str, content_type: &str, body: Vec<u8>) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        if !response.status().is_success() {
            bail!("POST {path} answered {}: {}", response.status(), response.text().await.unwrap_or_default());
        }
        Ok(())
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<()> {
        self.send(path, "application/json", serde_json::to_vec(&body)?).await
    }
}

/// Seeds the project of `server_key` on the server at `base`.
pub async fn seed(base: &str, server_key: &str) -> anyhow::Result<()> {
    let client = Client { http: reqwest::Client::new(), base: base.to_owned(), key: server_key.to_owned() };
    let now = now_ms();
    const LOGS: usize = 600;
    for start in (0..LOGS).step_by(200) {
        let logs: Vec<Value> = (start..start + 200).map(|i| entry(i, LOGS, now)).collect();
        client.post("/v1/logs", json!({ "logs": logs })).await?;
    }
    let webhook = json!({ "url": UNREACHABLE_URL, "event_types": ["order.*"], "description": "ERP connector (never answers)" });
    client.post("/v1/webhooks", webhook).await?;
    for i in 0..12 {
        let event = json!({
            "type": if i % 3 == 0 { "order.paid" } else { "order.created" },
            "source_id": format!("ord_{}", 5000 + i),
            "data": { "order": 5000 + i, "customer": CUSTOMERS[i % CUSTOMERS.len()], "total": 12.5 + i as f64 },
        });
        client.post("/v1/events", event).await?;
    }
    let mut csv = String::from("type,source_id,customer.email,customer.plan\n");
    for i in 0..2_000 {
        csv.push_str(&format!("customer.imported,cus_{i:04},user{i}@example.com,{}\n", ["free", "team", "enterprise"][i % 3]));
        if i == 1_234 {
            csv.push_str("customer.imported\n"); // a row too short: the import reports it and goes on
        }
    }
    client.send("/v1/imports", "text/csv", csv.into_bytes()).await?;
    Ok(())
}

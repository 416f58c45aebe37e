//! Isolation over the whole surface: every operation of the OpenAPI document has an access rule
//! here (a route added without one fails), and each is called with every kind of credential, and
//! with a second project's key on the first project's resources. Reads and writes of another
//! project's ids answer 404, lists never show them, refusals are the contract's 401/403, nothing
//! answers 5xx, and nothing of the first project changes.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::conformance::Conform;
use crate::helpers::{TestApp, entry, json_of, orders_csv, quick_webhooks, spawn_with};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Access {
    /// No credential needed (operations and the console).
    Public,
    /// The admin token only.
    Admin,
    /// A server key or a user token of the project.
    Member,
    /// A server key only.
    ServerKey,
    /// Any credential of the project, client keys included.
    AnyKey,
}

/// The rule of every operation, by operation id, with the query and body it is called with (a
/// valid body, so that a refusal is about who asks, not about what is sent).
fn rules() -> BTreeMap<&'static str, (Access, &'static str, Option<Value>)> {
    use Access::*;
    let retry = json!({"filters": {"status": ["failed"]}, "dry_run": true});
    BTreeMap::from([
        ("dashboard", (Public, "", None)),
        ("healthz", (Public, "", None)),
        ("readyz", (Public, "", None)),
        ("metrics", (Public, "", None)),
        ("list_projects", (Admin, "", None)),
        ("create_project", (Admin, "", Some(json!({"name": "Made", "time_zone": "UTC"})))),
        ("get_project", (Admin, "", None)),
        ("update_project", (Admin, "", Some(json!({"name": "Renamed"})))),
        ("list_api_keys", (Admin, "", None)),
        ("create_api_key", (Admin, "", Some(json!({"kind": "server", "name": "made"})))),
        ("revoke_api_key", (Admin, "", None)),
        ("run_retention", (Admin, "", Some(json!({})))),
        ("list_users", (Admin, "", None)),
        ("create_user", (Admin, "", Some(json!({"name": "Made", "email": "made@example.com"})))),
        ("get_current_project", (Member, "", None)),
        ("publish_event", (AnyKey, "", Some(json!({"type": "order.created", "data": {}})))),
        ("list_events", (Member, "", None)),
        ("get_event", (Member, "", None)),
        ("ingest_logs", (ServerKey, "", Some(json!({"logs": [entry("2026-11-20T10:00:00Z")]})))),
        ("list_logs", (Member, "?occurred_after=2020-01-01", None)),
        ("list_log_endpoints", (Member, "", None)),
        ("log_facets", (Member, "?field=customer_id&occurred_after=2020-01-01", None)),
        ("log_histogram", (Member, "?occurred_after=2026-11-01&occurred_before=2026-12-31", None)),
        ("get_log", (Member, "", None)),
        ("download_log_file", (Member, "", None)),
        ("list_exports", (Member, "", None)),
        ("list_export_fields", (Member, "", None)),
        ("create_export", (Member, "", Some(json!({"resource": "logs"})))),
        ("get_export", (Member, "", None)),
        ("download_export", (Member, "", None)),
        ("browse_export", (Member, "", None)),
        ("create_import", (Member, "", None)),
        ("get_import", (Member, "", None)),
        ("download_import_file", (Member, "", None)),
        ("list_tasks", (Member, "", None)),
        ("get_task", (Member, "", None)),
        ("cancel_task", (Member, "", None)),
        ("stream_changes", (Member, "", None)),
        ("erase_customer", (ServerKey, "", Some(json!({})))),
        ("list_sendouts", (Member, "", None)),
        ("sendout_failure_groups", (Member, "", None)),
        ("sendout_histogram", (Member, "?created_after=2026-11-01&created_before=2026-12-31", None)),
        ("retry_sendouts", (Member, "", Some(retry))),
        ("get_sendout", (Member, "", None)),
        ("retry_sendout", (Member, "", Some(json!({})))),
        ("list_webhooks", (Member, "", None)),
        ("create_webhook", (Member, "", Some(json!({"url": "http://127.0.0.1:9/made", "event_types": ["*"]})))),
        ("get_webhook", (Member, "", None)),
        ("update_webhook", (Member, "", Some(json!({"description": "changed by someone"})))),
        ("delete_webhook", (Member, "", None)),
        ("recover_webhook", (Member, "", Some(json!({"since": "2026-11-01"})))),
        ("get_webhook_secret", (Member, "", None)),
        ("rotate_webhook_secret", (Member, "", None)),
        ("test_webhook", (Member, "", None)),
    ])
}

struct Operation {
    id: String,
    method: Method,
    template: String,
}

fn operations() -> Vec<Operation> {
    let doc: Value = serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
    let mut found = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else { continue };
            if let Some(id) = op["operationId"].as_str() {
                found.push(Operation { id: id.to_owned(), method, template: template.clone() });
            }
        }
    }
    found
}

/// The first project's resources, one of each kind, and its customer.
struct Owned {
    ids: BTreeMap<&'static str, String>,
    customer: &'static str,
}

impl Owned {
    async fn create(app: &TestApp) -> Self {
        let customer = "cust_isolated_a";
        let mut ids = BTreeMap::new();
        let mut log = entry("2026-11-20T10:00:00Z");
        log["customer_id"] = json!(customer);
        log["request_body"] = json!({"note": "only project A may read this"});
        ids.insert("log", app.ingest(vec![log]).await.remove(0));
        let webhook = app.create_webhook("http://127.0.0.1:9/hook", &["*"]).await;
        ids.insert("webhook", webhook["id"].as_str().unwrap().to_owned());
        let event = app.publish("order.created", json!({"customer": customer})).await;
        ids.insert("event", event["id"].as_str().unwrap().to_owned());
        ids.insert("sendout", event["sendouts"][0]["id"].as_str().unwrap().to_owned());
        let import = app.upload("orders.csv", "text/csv", orders_csv(3, 0)).await;
        ids.insert("import", import["id"].as_str().unwrap().to_owned());
        ids.insert("task", import["task_id"].as_str().unwrap().to_owned());
        app.wait_finished(import["task_id"].as_str().unwrap()).await;
        let export = json_of(app.post("/v1/exports", &app.server_key, json!({"resource": "logs"})).await, StatusCode::ACCEPTED).await;
        app.wait_finished(export["task_id"].as_str().unwrap()).await;
        ids.insert("export", export["id"].as_str().unwrap().to_owned());
        Self { ids, customer }
    }

    /// The concrete path of `template` on these resources, for the admin routes on `project`.
    fn path(&self, template: &str, project: &str, key_id: &str) -> String {
        let kind = match template.split('/').nth(2) {
            Some("logs") => "log",
            Some("events") => "event",
            Some("exports") => "export",
            Some("imports") => "import",
            Some("tasks") => "task",
            Some("webhook-sendouts") => "sendout",
            Some("webhooks") => "webhook",
            _ => "",
        };
        let id = self.ids.get(kind).map_or(project, String::as_str);
        template.replace("{id}", id).replace("{key_id}", key_id).replace("{customer_id}", self.customer)
    }
}

/// One operation on one path, called with several credentials.
struct Probe<'a> {
    app: &'a TestApp,
    op: &'a Operation,
    path: &'a str,
    body: Option<&'a Value>,
    name: &'a str,
}

impl Probe<'_> {
    /// Calls as `token`; a status not in `wanted` (or any 5xx) is a problem. Returns the body.
    async fn expect(&self, problems: &mut Vec<String>, token: Option<&str>, who: &str, wanted: &[StatusCode]) -> String {
        let (status, text) = call(self.app, self.op, self.path, token, self.body).await;
        if status.is_server_error() || !wanted.contains(&status) {
            problems.push(format!("{} as {who}: {status}, wanted {wanted:?}: {}", self.name, &text[..text.len().min(300)]));
        }
        text
    }
}

async fn call(app: &TestApp, op: &Operation, path: &str, token: Option<&str>, body: Option<&Value>) -> (StatusCode, String) {
    let mut request = app.client.request(op.method.clone(), format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if op.id == "create_import" {
        let part = reqwest::multipart::Part::bytes(orders_csv(2, 0)).file_name("orders.csv").mime_str("text/csv").unwrap();
        request = request.multipart(reqwest::multipart::Form::new().part("file", part));
    } else if let Some(body) = body {
        request = request.json(body);
    }
    if op.id == "stream_changes" {
        // An endless stream: only its status is read.
        let response = request.send().await.expect("request sent");
        return (response.status(), String::new());
    }
    let response = request.checked().await.expect("request sent");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn no_credential_reaches_beyond_its_project_and_role_on_any_operation() {
    let app = spawn_with(quick_webhooks).await;
    let owned = Owned::create(&app).await;
    let webhook_before = app.get_ok(&format!("/v1/webhooks/{}", owned.ids["webhook"]), &app.server_key).await;
    let secret_before = app.get_ok(&format!("/v1/webhooks/{}/secret", owned.ids["webhook"]), &app.server_key).await;
    let other = app.create_project("Other", "UTC").await;
    let other_key = other["server_key"].as_str().unwrap().to_owned();
    let other_user = json_of(
        app.post(&format!("/v1/projects/{}/users", other["id"].as_str().unwrap()), &app.admin, json!({"name": "Eve", "email": "eve@example.com"})).await,
        StatusCode::CREATED,
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let rules = rules();
    let operations = operations();
    let documented: BTreeSet<&str> = operations.iter().map(|o| o.id.as_str()).collect();
    let unruled: Vec<&&str> = documented.iter().filter(|id| !rules.contains_key(**id)).collect();
    assert!(unruled.is_empty(), "operations without an access rule in this test: {unruled:?}");
    let stale: Vec<&&str> = rules.keys().filter(|id| !documented.contains(**id)).collect();
    assert!(stale.is_empty(), "rules for operations the document lacks: {stale:?}");

    // As JSON string values: the other project's own request logs name these ids in their paths.
    let secret_words: Vec<String> = owned
        .ids
        .values()
        .map(String::as_str)
        .chain(["only project A may read this"])
        .map(|w| format!("\"{w}\""))
        .collect();
    let mut problems = Vec::new();
    // Writes that change the caller's own state last, so that earlier calls see every resource.
    let mut ordered: Vec<&Operation> = operations.iter().collect();
    ordered.sort_by_key(|o| (["delete_webhook", "revoke_api_key"].contains(&o.id.as_str()), o.id.clone()));
    for op in ordered {
        let (access, query, body) = &rules[op.id.as_str()];
        let path = format!("{}{query}", owned.path(&op.template, &app.project_id, &app.client_key_id));
        let name = format!("{} {} ({})", op.method, op.template, op.id);
        let probe = Probe { app: &app, op, path: &path, body: body.as_ref(), name: &name };
        if *access == Access::Public {
            probe.expect(&mut problems, None, "anyone", &[StatusCode::OK]).await;
            continue;
        }
        probe.expect(&mut problems, None, "no token", &[StatusCode::UNAUTHORIZED]).await;
        probe.expect(&mut problems, Some("sk_unknown0000000000000000000000"), "an unknown key", &[StatusCode::UNAUTHORIZED]).await;
        let refused = [StatusCode::FORBIDDEN];
        if *access != Access::AnyKey {
            probe.expect(&mut problems, Some(&app.client_key), "a client key", &refused).await;
        }
        if *access == Access::Admin {
            probe.expect(&mut problems, Some(&app.server_key), "a server key", &refused).await;
            probe.expect(&mut problems, Some(&app.user_token), "a user token", &refused).await;
            continue;
        }
        probe.expect(&mut problems, Some(&app.admin), "the admin token", &refused).await;
        if *access == Access::ServerKey {
            probe.expect(&mut problems, Some(&app.user_token), "a user token", &refused).await;
        }
        // The other project's credentials on this project's ids.
        let has_id = op.template.contains("{id}");
        let others: Vec<(&str, &str)> = match access {
            Access::ServerKey => vec![(other_key.as_str(), "another project's server key")],
            _ => vec![(other_key.as_str(), "another project's server key"), (other_user.as_str(), "another project's user")],
        };
        for (token, who) in others {
            let wanted: &[StatusCode] = if has_id { &[StatusCode::NOT_FOUND] } else { &[StatusCode::OK, StatusCode::CREATED, StatusCode::ACCEPTED] };
            let text = probe.expect(&mut problems, Some(token), who, wanted).await;
            if let Some(word) = secret_words.iter().find(|w| text.contains(w.as_str())) {
                problems.push(format!("{name} as {who} shows {word}: {}", &text[..text.len().min(300)]));
            }
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));

    // Nothing of the first project changed.
    let webhook_after = app.get_ok(&format!("/v1/webhooks/{}", owned.ids["webhook"]), &app.server_key).await;
    assert_eq!(webhook_after, webhook_before);
    assert_eq!(app.get_ok(&format!("/v1/webhooks/{}/secret", owned.ids["webhook"]), &app.server_key).await, secret_before);
    let sendout = app.get_ok(&format!("/v1/webhook-sendouts/{}", owned.ids["sendout"]), &app.server_key).await;
    assert!(sendout["attempts"].as_array().unwrap().iter().all(|a| a["trigger"] != "manual"), "{sendout}");
    let project = app.get_ok("/v1/project", &app.server_key).await;
    assert_ne!(project["name"], "Renamed");
    let log = app.get_ok(&format!("/v1/logs/{}", owned.ids["log"]), &app.server_key).await;
    assert_eq!(log["request_body"]["note"], "only project A may read this");
}
